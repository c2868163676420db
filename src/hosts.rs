//! Finding exactly one agent: selector validation, the `/agents` query, and
//! exact client-side matching on top of the API's substring filters.

use std::net::IpAddr;

use serde_json::Value;

use crate::api::{Client, encode_query_value};
use crate::body;
use crate::error::{Error, Result};
use crate::transport::{Method, Transport};

/// Largest page asked for; the API refuses more than 1000.
const PAGE_SIZE: u32 = 200;
/// Pages followed before giving up: a selector matching more than
/// `PAGE_SIZE * MAX_PAGES` agents is far too broad anyway.
const MAX_PAGES: usize = 10;

/// How the caller names an endpoint, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// Decimal agent id.
    AgentId(String),
    /// Lower-case hex UUID.
    Uuid(String),
    /// Computer name, compared case-insensitively.
    Hostname(String),
    /// An interface address.
    Ip(IpAddr),
    /// An interface MAC, 12 lower-case hex digits.
    Mac(String),
}

/// A network isolation state. Mirrors the WIT `network-state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkState {
    /// On the network.
    Connected,
    /// Isolation pending.
    Disconnecting,
    /// Isolated.
    Disconnected,
    /// Release pending.
    Connecting,
    /// Missing or unknown.
    Unknown,
}

impl NetworkState {
    fn parse(value: Option<&str>) -> NetworkState {
        match value.map(str::to_ascii_lowercase).as_deref() {
            Some("connected") => NetworkState::Connected,
            Some("disconnecting") => NetworkState::Disconnecting,
            Some("disconnected") => NetworkState::Disconnected,
            Some("connecting") => NetworkState::Connecting,
            _ => NetworkState::Unknown,
        }
    }

    /// The console's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkState::Connected => "connected",
            NetworkState::Disconnecting => "disconnecting",
            NetworkState::Disconnected => "disconnected",
            NetworkState::Connecting => "connecting",
            NetworkState::Unknown => "unknown",
        }
    }
}

/// One agent. Mirrors the WIT `host`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// Agent id.
    pub agent_id: String,
    /// Agent UUID.
    pub uuid: String,
    /// Computer name.
    pub hostname: String,
    /// Site name.
    pub site: String,
    /// Account name.
    pub account: String,
    /// OS name.
    pub os: String,
    /// Interface IP addresses.
    pub ip_addresses: Vec<String>,
    /// Last report, RFC 3339.
    pub last_active: Option<String>,
    /// Connected to the console now.
    pub active: bool,
    /// Isolation state.
    pub network_state: NetworkState,
    /// Interface MACs, normalised (not in the WIT record).
    pub macs: Vec<String>,
    /// Decommissioned agents are never acted on (not in the WIT record).
    pub decommissioned: bool,
}

impl Selector {
    /// Validates a selector value of the given kind (`agent-id`, `uuid`,
    /// `hostname`, `ip`, `mac`). Bad values are `invalid-config`.
    pub fn parse(kind: &str, value: &str) -> Result<Selector> {
        let v = value.trim();
        let bad = |why: &str| {
            Err(Error::InvalidConfig(format!(
                "The {kind} \"{}\" is not valid: {why}.",
                body::quote(v)
            )))
        };
        if v.is_empty() {
            return bad("it is empty");
        }
        match kind {
            "agent-id" if v.len() <= 20 && v.bytes().all(|b| b.is_ascii_digit()) => {
                Ok(Selector::AgentId(v.to_owned()))
            }
            "agent-id" => bad("an agent id is a decimal number, e.g. 1234567890123456789"),
            "uuid" => {
                let u = v.to_ascii_lowercase();
                if (8..=64).contains(&u.len())
                    && u.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
                {
                    Ok(Selector::Uuid(u))
                } else {
                    bad("an agent UUID is hexadecimal, e.g. b7b2d39171be4ae1af90f93d7ed20f07")
                }
            }
            "hostname" => {
                if v.len() > 255 || v.chars().any(|c| c.is_control() || c == ',') {
                    bad(
                        "a computer name has no commas or control characters and at most 255 characters",
                    )
                } else {
                    Ok(Selector::Hostname(v.to_owned()))
                }
            }
            "ip" => match v.parse::<IpAddr>() {
                Ok(ip) => Ok(Selector::Ip(ip)),
                Err(_) => bad("expected an IPv4 or IPv6 address such as 10.0.0.12"),
            },
            "mac" => match normalize_mac(v) {
                Some(mac) => Ok(Selector::Mac(mac)),
                None => bad("expected a MAC address such as 00:b0:d0:63:c2:26"),
            },
            _ => bad("unknown selector kind"),
        }
    }

    /// The `/agents` filter. Exact where the API has one; otherwise a
    /// substring filter whose results [`Selector::matches`] narrows.
    fn query(&self) -> String {
        match self {
            Selector::AgentId(id) => format!("ids={}", encode_query_value(id)),
            Selector::Uuid(uuid) => format!("uuids={}", encode_query_value(uuid)),
            Selector::Hostname(name) => format!("computerName={}", encode_query_value(name)),
            Selector::Ip(ip) => format!(
                "networkInterfaceInet__contains={}",
                encode_query_value(&ip.to_string())
            ),
            Selector::Mac(mac) => {
                // Consoles store either notation; the filter's CSV asks for both.
                let pairs: Vec<&str> = (0..6).map(|i| &mac[i * 2..i * 2 + 2]).collect();
                let both = format!("{},{}", pairs.join(":"), pairs.join("-"));
                format!(
                    "networkInterfacePhysical__contains={}",
                    encode_query_value(&both)
                )
            }
        }
    }

    /// Exact, client-side: whatever the server's filter matched, only an
    /// agent this selector names is kept.
    pub fn matches(&self, host: &Host) -> bool {
        match self {
            Selector::AgentId(id) => host.agent_id == *id,
            Selector::Uuid(uuid) => host.uuid.eq_ignore_ascii_case(uuid),
            Selector::Hostname(name) => host.hostname.eq_ignore_ascii_case(name),
            Selector::Ip(ip) => host
                .ip_addresses
                .iter()
                .any(|a| a.parse::<IpAddr>().is_ok_and(|a| a == *ip)),
            Selector::Mac(mac) => host.macs.iter().any(|m| m == mac),
        }
    }

    /// For messages, e.g. `hostname "FIN-LT-0042"`.
    pub fn describe(&self) -> String {
        match self {
            Selector::AgentId(v) => format!("agent id {v}"),
            Selector::Uuid(v) => format!("UUID {v}"),
            Selector::Hostname(v) => format!("hostname \"{}\"", body::quote(v)),
            Selector::Ip(v) => format!("IP address {v}"),
            Selector::Mac(v) => format!("MAC address {v}"),
        }
    }
}

/// `aa:bb:cc:dd:ee:ff`, `AA-BB-...`, `aabb.ccdd.eeff` or `aabbccddeeff` →
/// `aabbccddeeff`.
pub fn normalize_mac(text: &str) -> Option<String> {
    let hex: String = text
        .chars()
        .filter(|c| !matches!(c, ':' | '-' | '.'))
        .collect::<String>()
        .to_ascii_lowercase();
    (hex.len() == 12 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hex)
}

/// Reads one agent object leniently; `None` without an id.
pub fn host_from(agent: &Value) -> Option<Host> {
    let text = |key: &str| match agent.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    };
    let flag = |key: &str| match agent.get(key) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    };
    let agent_id = text("id");
    if agent_id.is_empty() {
        return None;
    }
    let interfaces = agent.get("networkInterfaces").and_then(Value::as_array);
    let mut ip_addresses = Vec::new();
    let mut macs = Vec::new();
    for iface in interfaces.into_iter().flatten() {
        for key in ["inet", "inet6"] {
            let addrs = iface
                .get(key)
                .and_then(Value::as_array)
                .into_iter()
                .flatten();
            ip_addresses.extend(addrs.filter_map(Value::as_str).map(str::to_owned));
        }
        if let Some(mac) = iface
            .get("physical")
            .and_then(Value::as_str)
            .and_then(normalize_mac)
        {
            macs.push(mac);
        }
    }
    let os = match text("osName") {
        s if s.is_empty() => text("osType"),
        s => s,
    };
    Some(Host {
        uuid: text("uuid"),
        hostname: text("computerName"),
        site: text("siteName"),
        account: text("accountName"),
        os,
        ip_addresses,
        last_active: Some(text("lastActiveDate")).filter(|s| !s.is_empty()),
        active: flag("isActive"),
        network_state: NetworkState::parse(agent.get("networkStatus").and_then(Value::as_str)),
        macs,
        decommissioned: flag("isDecommissioned"),
        agent_id,
    })
}

/// Every agent of one `/agents` response body.
pub fn hosts_in(page: &Value) -> Vec<Host> {
    page.get("data")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(host_from)
        .collect()
}

/// Finds exactly one live agent for `selector`.
pub fn resolve<T: Transport>(client: &mut Client<'_, T>, selector: &Selector) -> Result<Host> {
    let candidates: Vec<Host> = list(client, &selector.query())?
        .into_iter()
        .filter(|h| !h.decommissioned && selector.matches(h))
        .collect();
    match candidates.len() {
        0 => Err(Error::NotFound(format!(
            "No active SentinelOne agent has the {}. Decommissioned agents are ignored; check the \
             value, or find the endpoint in the console's Sentinels list.",
            selector.describe()
        ))),
        1 => Ok(candidates.into_iter().next().expect("one candidate")),
        n => Err(Error::Ambiguous {
            message: format!(
                "{n} agents have the {}, so nothing was done. Pick the right one from the list \
                 (a re-imaged machine often leaves a stale agent) and retry with its agent id.",
                selector.describe()
            ),
            candidates,
        }),
    }
}

/// Reads the agent with `id` again (for state checks after an action).
pub fn read_by_id<T: Transport>(client: &mut Client<'_, T>, id: &str) -> Result<Host> {
    let selector = Selector::AgentId(id.to_owned());
    list(client, &selector.query())?
        .into_iter()
        .find(|h| h.agent_id == id)
        .ok_or_else(|| {
            Error::NotFound(format!(
                "The agent {id} is no longer listed by the console."
            ))
        })
}

/// All pages of `GET /agents?<filter>`.
fn list<T: Transport>(client: &mut Client<'_, T>, filter: &str) -> Result<Vec<Host>> {
    let mut hosts = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let mut path = format!("/agents?{filter}&limit={PAGE_SIZE}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={}", encode_query_value(c)));
        }
        let page: Value = client.read_json(Method::Get, &path, None, Some("Endpoints.view"))?;
        hosts.extend(hosts_in(&page));
        cursor = page
            .pointer("/pagination/nextCursor")
            .and_then(Value::as_str)
            .filter(|c| !c.is_empty())
            .map(str::to_owned);
        if cursor.is_none() {
            return Ok(hosts);
        }
    }
    Err(Error::Upstream(format!(
        "The agent search matched more than {} agents; use a more specific selector such as the \
         agent id.",
        PAGE_SIZE as usize * MAX_PAGES
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(id: &str, name: &str, ip: &str, mac: &str) -> Value {
        serde_json::json!({"id": id, "computerName": name, "isActive": true, "isDecommissioned": false,
            "networkStatus": "connected",
            "networkInterfaces": [{"inet": [ip], "inet6": ["fe80::1"], "physical": mac}]})
    }

    #[test]
    fn selector_validation() {
        assert_eq!(
            Selector::parse("agent-id", " 123 ").unwrap(),
            Selector::AgentId("123".into())
        );
        assert_eq!(
            Selector::parse("uuid", "B7B2").unwrap_err().kind(),
            "invalid-config"
        );
        assert_eq!(
            Selector::parse("uuid", "B7B2D391").unwrap(),
            Selector::Uuid("b7b2d391".into())
        );
        assert_eq!(
            Selector::parse("mac", "00-B0-D0-63-C2-26").unwrap(),
            Selector::Mac("00b0d063c226".into())
        );
        assert_eq!(
            Selector::parse("mac", "00b0.d063.c226").unwrap(),
            Selector::Mac("00b0d063c226".into())
        );
        for (kind, bad) in [
            ("agent-id", "12a"),
            ("agent-id", ""),
            ("agent-id", "1".repeat(21).as_str()),
            ("ip", "10.0.0"),
            ("ip", "10.0.0.1/24"),
            ("mac", "00:b0:d0"),
            ("hostname", "a,b"),
            ("hostname", "a\nb"),
            ("uuid", "zz-zz-zz-zz"),
            ("hostname", " "),
        ] {
            assert_eq!(
                Selector::parse(kind, bad).unwrap_err().kind(),
                "invalid-config",
                "{kind} {bad:?}"
            );
        }
    }

    #[test]
    fn queries_use_exact_filters_where_they_exist() {
        let q = |k, v| Selector::parse(k, v).unwrap().query();
        assert_eq!(
            q("agent-id", "1900000000000000001"),
            "ids=1900000000000000001"
        );
        assert_eq!(q("hostname", "FIN LT&1"), "computerName=FIN+LT%261");
        assert_eq!(
            q("ip", "10.0.0.1"),
            "networkInterfaceInet__contains=10.0.0.1"
        );
        assert_eq!(
            q("mac", "00B0D063C226"),
            "networkInterfacePhysical__contains=00%3Ab0%3Ad0%3A63%3Ac2%3A26%2C00-b0-d0-63-c2-26"
        );
    }

    #[test]
    fn matching_is_exact() {
        let prefix = host_from(&agent("1", "PC-1", "10.0.0.12", "00:b0:d0:63:c2:27")).unwrap();
        let exact = host_from(&agent("2", "pc-2", "10.0.0.1", "00-B0-D0-63-C2-26")).unwrap();
        let ip = Selector::parse("ip", "10.0.0.1").unwrap();
        assert!(!ip.matches(&prefix));
        assert!(ip.matches(&exact));
        assert!(Selector::parse("ip", "fe80::1").unwrap().matches(&exact));
        assert!(Selector::parse("hostname", "PC-2").unwrap().matches(&exact));
        assert!(!Selector::parse("hostname", "PC").unwrap().matches(&exact));
        assert!(
            Selector::parse("mac", "00:b0:d0:63:c2:26")
                .unwrap()
                .matches(&exact)
        );
        assert!(
            !Selector::parse("mac", "00:b0:d0:63:c2:26")
                .unwrap()
                .matches(&prefix)
        );
    }

    #[test]
    fn lenient_agent_parsing() {
        let h = host_from(
            &serde_json::json!({"id": 657613730168123595u64, "isActive": "True",
            "isDecommissioned": "true", "networkStatus": "CONNECTING", "osType": "windows",
            "networkInterfaces": [{"inet": null, "physical": null}], "lastActiveDate": null}),
        )
        .unwrap();
        assert_eq!(h.agent_id, "657613730168123595");
        assert!(h.active && h.decommissioned);
        assert_eq!(h.network_state, NetworkState::Connecting);
        assert_eq!(h.os, "windows");
        assert_eq!(h.last_active, None);
        assert!(host_from(&serde_json::json!({"computerName": "no id"})).is_none());
    }
}
