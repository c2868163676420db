//! Finding exactly one agent: selector validation, the `/agents` query, and
//! exact client-side matching on top of the API's substring filters.

use alloc::{
    borrow::ToOwned,
    format,
    string::{String, ToString},
    vec::Vec,
};

use core::net::IpAddr;

use serde::Deserialize;

use crate::api::{Client, encode_cursor, encode_query_value};
use crate::body;
use crate::error::{Error, Result};
use crate::lenient::{self, Flag, List, Object, Str, Text};
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
    /// Lower-case hex UUID without dashes: consoles list agent UUIDs that
    /// way, while other tools print the same UUID dashed.
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
    fn parse(value: &str) -> NetworkState {
        [
            NetworkState::Connected,
            NetworkState::Disconnecting,
            NetworkState::Disconnected,
            NetworkState::Connecting,
        ]
        .into_iter()
        .find(|state| state.as_str().eq_ignore_ascii_case(value))
        .unwrap_or(NetworkState::Unknown)
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

impl Host {
    /// The interface addresses that parse as IP addresses.
    pub fn addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.ip_addresses.iter().filter_map(|a| a.parse().ok())
    }
}

impl Selector {
    /// Validates a selector value of the given kind (`agent-id`, `uuid`,
    /// `hostname`, `ip`, `mac`). Bad values are `invalid-config`.
    pub fn parse(kind: &str, value: &str) -> Result<Selector> {
        let v = value.trim();
        let label = match kind {
            "agent-id" => "agent id",
            "uuid" => "agent UUID",
            "ip" => "IP address",
            "mac" => "MAC address",
            other => other,
        };
        let bad = |why: &str| {
            Err(Error::InvalidConfig(format!(
                "The {label} \"{}\" is not valid: {why}.",
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
                let hex_or_dash = v.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
                let key = uuid_key(v);
                if hex_or_dash && (8..=64).contains(&key.len()) {
                    Ok(Selector::Uuid(key))
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
                Err(_) => bad(ip_mistake(v)),
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
            // Both spellings, in case a console keeps the dashed one.
            Selector::Uuid(key) => format!(
                "uuids={}",
                csv_of_distinct([key.clone(), dashed_uuid(key).unwrap_or_default()])
            ),
            // Not `computerName=`: that filter is probably case-sensitive,
            // so it would miss `reception-pc` when asked for `RECEPTION-PC`,
            // and a stale agent of a re-imaged machine that differs only in
            // case would go unseen: no `ambiguous`, and perhaps the wrong
            // agent isolated. The free-text filter is a superset of it; the
            // upper- and lower-case variants cover consoles where free text
            // is case-sensitive too. Upper case is ASCII only: Unicode upper
            // casing would add 17 KB of tables to the component for names
            // that are rare and that a case-insensitive search finds anyway.
            Selector::Hostname(name) => format!(
                "computerName__contains={}",
                csv_of_distinct([name.clone(), name.to_ascii_uppercase(), name.to_lowercase()])
            ),
            Selector::Ip(ip) => format!(
                "networkInterfaceInet__contains={}",
                encode_query_value(&ip.to_string())
            ),
            Selector::Mac(mac) => {
                // Consoles store either notation, in either case; the
                // filter's CSV asks for all four in case it is case-sensitive.
                let pairs: Vec<&str> = (0..6).map(|i| &mac[i * 2..i * 2 + 2]).collect();
                let [colons, dashes] = [pairs.join(":"), pairs.join("-")];
                let upper = [colons.to_ascii_uppercase(), dashes.to_ascii_uppercase()];
                format!(
                    "networkInterfacePhysical__contains={}",
                    csv_of_distinct([colons, dashes].into_iter().chain(upper))
                )
            }
        }
    }

    /// Exact, client-side: whatever the server's filter matched, only an
    /// agent this selector names is kept.
    pub fn matches(&self, host: &Host) -> bool {
        match self {
            Selector::AgentId(id) => host.agent_id == *id,
            Selector::Uuid(key) => uuid_key(&host.uuid) == *key,
            Selector::Hostname(name) => same_name(&host.hostname, name),
            Selector::Ip(ip) => host.addresses().any(|a| a == *ip),
            Selector::Mac(mac) => host.macs.iter().any(|m| m == mac),
        }
    }

    /// A sentence to add when nothing matched and the value looks like a
    /// common slip: an IP or a fully qualified name given as a hostname, or
    /// a public address (from a firewall log) given as an IP.
    /// The bare name is not searched for automatically: in a console that
    /// serves several domains or customers it may be another machine.
    fn not_found_hint(&self) -> String {
        if let Selector::Ip(_) = self {
            return " Only the endpoint's own network interface addresses are searched, not a \
                    public (NAT) address a firewall or proxy log may show for it."
                .to_owned();
        }
        let Selector::Hostname(name) = self else {
            return String::new();
        };
        if name.parse::<IpAddr>().is_ok() {
            return " This is an IP address: look it up as an IP address instead.".to_owned();
        }
        match name.split_once('.') {
            Some((bare, _)) if !bare.is_empty() => format!(
                " Consoles usually list Windows and macOS computer names without their \
                 domain: if the machine is named \"{}\" in the console, retry with that name, \
                 after checking there that it is the machine you mean.",
                body::quote(bare)
            ),
            _ => String::new(),
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

/// Whether two computer names are the same, ignoring case in any script:
/// `büro-pc` is `BÜRO-PC`, as `reception-pc` is `RECEPTION-PC`.
pub fn same_name(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
        || ((!a.is_ascii() || !b.is_ascii()) && a.to_lowercase() == b.to_lowercase())
}

/// A UUID as compared: lower case, dashes removed, so that
/// `B7B2D391-71BE-...` and `b7b2d39171be...` are the same agent.
pub fn uuid_key(uuid: &str) -> String {
    uuid.trim()
        .chars()
        .filter(|&c| c != '-')
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// The 8-4-4-4-12 spelling of a 32-digit UUID key.
fn dashed_uuid(key: &str) -> Option<String> {
    (key.len() == 32 && key.is_ascii()).then(|| {
        [
            &key[..8],
            &key[8..12],
            &key[12..16],
            &key[16..20],
            &key[20..],
        ]
        .join("-")
    })
}

/// The values, first spelling of each kept, as one encoded CSV value.
/// Empty values are left out.
fn csv_of_distinct(values: impl IntoIterator<Item = String>) -> String {
    let mut kept: Vec<String> = Vec::new();
    for v in values {
        if !v.is_empty() && !kept.contains(&v) {
            kept.push(v);
        }
    }
    encode_query_value(&kept.join(","))
}

/// Why a value is not one IP address, naming the usual pastes: an address
/// with leading zeros (which some tools read as octal, so it is never
/// guessed at), a range, a port or an interface name.
fn ip_mistake(value: &str) -> &'static str {
    let v4_parts: Vec<&str> = value.split('.').collect();
    let all_digits = v4_parts
        .iter()
        .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if v4_parts.len() == 4
        && all_digits
        && v4_parts.iter().any(|p| p.len() > 1 && p.starts_with('0'))
    {
        "write each number without leading zeros, e.g. 10.0.0.1 for 010.000.000.001"
    } else if value.contains('/') {
        "it names a range; give the one address of the endpoint, e.g. 10.0.0.12"
    } else if value.contains('%') {
        "remove the interface name after '%', e.g. fe80::1 for fe80::1%eth0"
    } else if value.starts_with('[') || value.matches(':').count() == 1 {
        "give the address alone, without brackets or a port, e.g. 10.0.0.12"
    } else {
        "expected an IPv4 or IPv6 address such as 10.0.0.12"
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

/// One agent record as the console sent it, read leniently: every field
/// the connector uses, of whatever type it arrived as; all others skipped.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct AgentRecord {
    id: Text,
    uuid: Text,
    computer_name: Text,
    site_name: Text,
    account_name: Text,
    os_name: Text,
    os_type: Text,
    last_active_date: Text,
    is_active: Flag,
    is_decommissioned: Flag,
    network_status: Str,
    network_interfaces: List<Object<Interface>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Interface {
    inet: List<Str>,
    inet6: List<Str>,
    physical: Str,
}

impl AgentRecord {
    /// The host it describes; `None` without an id.
    pub fn into_host(self) -> Option<Host> {
        let agent_id = self.id.0;
        if agent_id.is_empty() {
            return None;
        }
        let mut ip_addresses = Vec::new();
        let mut macs = Vec::new();
        for Object(iface) in self.network_interfaces.0 {
            let addrs = iface.inet.0.into_iter().chain(iface.inet6.0);
            ip_addresses.extend(addrs.map(|a| a.0).filter(|a| !a.is_empty()));
            macs.extend(normalize_mac(&iface.physical.0));
        }
        let os = match self.os_name.0 {
            s if s.is_empty() => self.os_type.0,
            s => s,
        };
        let last_active = Some(self.last_active_date.0).filter(|s| !s.is_empty());
        Some(Host {
            uuid: self.uuid.0,
            hostname: self.computer_name.0,
            site: self.site_name.0,
            account: self.account_name.0,
            os,
            ip_addresses,
            last_active,
            active: self.is_active.0,
            network_state: NetworkState::parse(&self.network_status.0),
            macs,
            decommissioned: self.is_decommissioned.0,
            agent_id,
        })
    }
}

/// One page of `GET /agents`: its agents, and the cursor of the next page.
///
/// The body must be an object whose `data` is an array (or absent); any
/// other shape fails to parse, so it becomes an `upstream` error.
#[derive(Debug, Default)]
pub struct AgentPage {
    /// The page's agents, in order.
    pub hosts: Vec<Host>,
    /// Items of `data` that are not agent records with an id.
    pub unreadable: usize,
    /// The next page's cursor; `None` on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct RawPage {
    data: Option<Vec<Object<AgentRecord>>>,
    pagination: Object<Pagination>,
}

#[derive(Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Pagination {
    next_cursor: Str,
}

impl<'de> Deserialize<'de> for AgentPage {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> core::result::Result<Self, D::Error> {
        // An agent list that is not an object is not an empty list.
        let raw: RawPage = lenient::object_only(d)?;
        let items = raw.data.unwrap_or_default();
        let count = items.len();
        let hosts: Vec<Host> = items
            .into_iter()
            .filter_map(|Object(a)| a.into_host())
            .collect();
        let cursor = raw.pagination.0.next_cursor.0;
        Ok(AgentPage {
            unreadable: count - hosts.len(),
            hosts,
            next_cursor: Some(cursor).filter(|c| !c.is_empty()),
        })
    }
}

/// Finds exactly one live agent for `selector`.
pub fn resolve<T: Transport>(client: &mut Client<'_, T>, selector: &Selector) -> Result<Host> {
    let mut candidates: Vec<Host> = Vec::new();
    for host in list(client, selector)? {
        // Pages that overlap (a record moving while the client pages) can
        // list one agent twice; the same record twice is one candidate. Two
        // different records with one id stay two: the console contradicts
        // itself, and nothing is chosen.
        if !host.decommissioned && selector.matches(&host) && !candidates.contains(&host) {
            candidates.push(host);
        }
    }
    match candidates.len() {
        0 => Err(Error::NotFound(format!(
            "No active SentinelOne agent has the {}. Decommissioned agents are ignored; check the \
             value, or find the endpoint in the console's Sentinels list.{}",
            selector.describe(),
            selector.not_found_hint()
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
    list(client, &Selector::AgentId(id.to_owned()))?
        .into_iter()
        .find(|h| h.agent_id == id)
        .ok_or_else(|| {
            Error::NotFound(format!(
                "The agent {id} is no longer listed by the console."
            ))
        })
}

/// All pages of `GET /agents` filtered for `selector`.
fn list<T: Transport>(client: &mut Client<'_, T>, selector: &Selector) -> Result<Vec<Host>> {
    let filter = selector.query();
    let mut hosts = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_PAGES {
        // The total is never read, and counting every match costs the
        // console time on each page.
        let mut path = format!("/agents?{filter}&limit={PAGE_SIZE}&skipCount=true");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={}", encode_cursor(c)));
        }
        let page: AgentPage = client.read_json(Method::Get, &path, None, Some("Endpoints.view"))?;
        if page.unreadable > 0 {
            // An unreadable record could be the very agent the selector
            // names, or a second one: acting on the rest could pick the
            // wrong machine.
            return Err(Error::Upstream(format!(
                "The console's agent list held {} item(s) that are not agent records with an \
                 id, so the search could not be trusted and nothing was done. A proxy or an \
                 incompatible console version can cause this.",
                page.unreadable
            )));
        }
        hosts.extend(page.hosts);
        cursor = page.next_cursor;
        if cursor.is_none() {
            return Ok(hosts);
        }
    }
    // The console's IP, MAC and name searches match parts of values, so
    // even an exact value can draw this many.
    Err(Error::Upstream(format!(
        "The console's search for the {} returned more than {} agents, too many to check, so \
         nothing was done. Retry with the agent id from the console's Sentinels list.",
        selector.describe(),
        PAGE_SIZE as usize * MAX_PAGES
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::testing::Scripted;

    fn agent(id: &str, name: &str, ip: &str, mac: &str) -> serde_json::Value {
        serde_json::json!({"id": id, "computerName": name, "isActive": true, "isDecommissioned": false,
            "networkStatus": "connected",
            "networkInterfaces": [{"inet": [ip], "inet6": ["fe80::1"], "physical": mac}]})
    }

    fn host_from(agent: &serde_json::Value) -> Option<Host> {
        let text = agent.to_string();
        serde_json::from_str::<AgentRecord>(&text)
            .unwrap()
            .into_host()
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
            Selector::parse("uuid", "B7B2D391-71BE-4AE1-AF90-F93D7ED20F07").unwrap(),
            Selector::Uuid("b7b2d39171be4ae1af90f93d7ed20f07".into())
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
        // The message names the kind as an admin would.
        for (kind, value, message) in [
            (
                "ip",
                "10.0.0",
                "The IP address \"10.0.0\" is not valid: expected an IPv4 or IPv6 address such \
                 as 10.0.0.12.",
            ),
            (
                "ip",
                "010.000.000.001",
                "The IP address \"010.000.000.001\" is not valid: write each number without \
                 leading zeros, e.g. 10.0.0.1 for 010.000.000.001.",
            ),
            (
                "ip",
                "10.0.0.0/24",
                "The IP address \"10.0.0.0/24\" is not valid: it names a range; give the one \
                 address of the endpoint, e.g. 10.0.0.12.",
            ),
            (
                "ip",
                "fe80::1%eth0",
                "The IP address \"fe80::1%eth0\" is not valid: remove the interface name after \
                 '%', e.g. fe80::1 for fe80::1%eth0.",
            ),
            (
                "ip",
                "10.0.0.12:3389",
                "The IP address \"10.0.0.12:3389\" is not valid: give the address alone, without \
                 brackets or a port, e.g. 10.0.0.12.",
            ),
            (
                "ip",
                "[::1]",
                "The IP address \"[::1]\" is not valid: give the address alone, without \
                 brackets or a port, e.g. 10.0.0.12.",
            ),
            (
                "mac",
                "zz",
                "The MAC address \"zz\" is not valid: expected a MAC address such as \
                 00:b0:d0:63:c2:26.",
            ),
        ] {
            let err = Selector::parse(kind, value).unwrap_err();
            assert_eq!(err.message(), message);
        }
    }

    #[test]
    fn queries_use_exact_filters_where_they_exist() {
        let q = |k, v| Selector::parse(k, v).unwrap().query();
        assert_eq!(
            q("agent-id", "1900000000000000001"),
            "ids=1900000000000000001"
        );
        assert_eq!(
            q("hostname", "Fin LT&1"),
            "computerName__contains=Fin+LT%261%2CFIN+LT%261%2Cfin+lt%261"
        );
        assert_eq!(
            q("hostname", "FIN-LT-0042"),
            "computerName__contains=FIN-LT-0042%2Cfin-lt-0042"
        );
        assert_eq!(q("hostname", "42"), "computerName__contains=42");
        assert_eq!(
            q("hostname", "Büro-PC"),
            "computerName__contains=B%C3%BCro-PC%2CB%C3%BCRO-PC%2Cb%C3%BCro-pc"
        );
        // An escape typed into a name is sent as typed, never decoded into
        // a second item of the list.
        assert_eq!(
            q("hostname", "pc-1%2cdc-01"),
            "computerName__contains=pc-1%252cdc-01%2CPC-1%252CDC-01"
        );
        for uuid in [
            "b7b2d39171be4ae1af90f93d7ed20f07",
            "B7B2D391-71BE-4AE1-AF90-F93D7ED20F07",
        ] {
            assert_eq!(
                q("uuid", uuid),
                "uuids=b7b2d39171be4ae1af90f93d7ed20f07\
                 %2Cb7b2d391-71be-4ae1-af90-f93d7ed20f07"
            );
        }
        assert_eq!(q("uuid", "b7b2-d391"), "uuids=b7b2d391");
        assert_eq!(
            q("ip", "10.0.0.1"),
            "networkInterfaceInet__contains=10.0.0.1"
        );
        assert_eq!(
            q("mac", "00B0D063C226"),
            "networkInterfacePhysical__contains=00%3Ab0%3Ad0%3A63%3Ac2%3A26%2C00-b0-d0-63-c2-26\
             %2C00%3AB0%3AD0%3A63%3AC2%3A26%2C00-B0-D0-63-C2-26"
        );
        // All digits: no case to vary.
        assert_eq!(
            q("mac", "001122334455"),
            "networkInterfacePhysical__contains=00%3A11%3A22%3A33%3A44%3A55%2C00-11-22-33-44-55"
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
        let sel = |kind, value| Selector::parse(kind, value).unwrap();
        assert!(sel("hostname", "PC-2").matches(&exact));
        assert!(!sel("hostname", "PC").matches(&exact));
        let mut umlaut = exact.clone();
        umlaut.hostname = "BÜRO-PC".into();
        assert!(sel("hostname", "büro-pc").matches(&umlaut));
        assert!(!sel("hostname", "buro-pc").matches(&umlaut));
        let mut dashed = exact.clone();
        dashed.uuid = "B7B2D391-71BE-4AE1-AF90-F93D7ED20F07".into();
        for typed in [
            "b7b2d39171be4ae1af90f93d7ed20f07",
            "b7b2d391-71be-4ae1-af90-f93d7ed20f07",
        ] {
            assert!(sel("uuid", typed).matches(&dashed), "{typed}");
            assert!(!sel("uuid", typed).matches(&prefix), "{typed}");
        }
        assert!(sel("mac", "00:b0:d0:63:c2:26").matches(&exact));
        assert!(!sel("mac", "00:b0:d0:63:c2:26").matches(&prefix));
    }

    fn page(json: &str) -> serde_json::Result<AgentPage> {
        serde_json::from_str(json)
    }

    #[test]
    fn agent_pages_read_records_and_cursor() {
        let p = page(
            r#"{"data": [{"id": "1", "computerName": "A", "unused": {"x": [1, 2]}},
                {"id": 2, "computerName": "B"}], "pagination": {"nextCursor": "c2", "totalItems": 9}}"#,
        )
        .unwrap();
        let names: Vec<&str> = p.hosts.iter().map(|h| h.hostname.as_str()).collect();
        assert_eq!(names, ["A", "B"]);
        assert_eq!(p.hosts[1].agent_id, "2");
        assert_eq!((p.unreadable, p.next_cursor.as_deref()), (0, Some("c2")));

        let last = page(r#"{"data": [], "pagination": {"nextCursor": null}}"#).unwrap();
        assert!(last.hosts.is_empty() && last.next_cursor.is_none());
        assert!(page(r#"{"pagination": "odd"}"#).unwrap().hosts.is_empty());
    }

    #[test]
    fn junk_agent_items_are_counted_and_other_shapes_fail() {
        let p =
            page(r#"{"data": [{"id": "1"}, "junk", [[[]]], {"computerName": "no id"}]}"#).unwrap();
        assert_eq!((p.hosts.len(), p.unreadable), (1, 3));
        for bad in [
            r#"[]"#,
            r#""x""#,
            r#"{"data": "x"}"#,
            r#"{"data": {}}"#,
            r#"{"data": ["#,
        ] {
            assert!(page(bad).is_err(), "{bad}");
        }
        let twice = r#"{"data": [{"id": "1", "id": "2"}]}"#;
        assert!(
            page(twice).is_err(),
            "a record naming two ids is not trusted"
        );
    }

    #[test]
    fn an_unreadable_record_stops_the_search() {
        let mut t = Scripted::default().reply(
            200,
            r#"{"data": [{"id": "1", "computerName": "PC-1"}, {"computerName": "PC-1"}]}"#,
        );
        let mut client = t.client("u1-s1", "tok-1234");
        let selector = Selector::parse("hostname", "PC-1").unwrap();
        let err = resolve(&mut client, &selector).unwrap_err();
        assert_eq!(err.kind(), "upstream");
        assert!(
            err.message()
                .contains("1 item(s) that are not agent records"),
            "{err:?}"
        );
        assert_eq!(t.sent.len(), 1);
    }

    #[test]
    fn a_name_search_keeps_only_exact_names_in_any_case() {
        let page = serde_json::json!({"data": [
            agent("1", "PC-10", "10.0.0.10", "00:b0:d0:63:c2:10"),
            agent("2", "pc-1", "10.0.0.1", "00:b0:d0:63:c2:01"),
            agent("3", "XPC-1", "10.0.0.3", "00:b0:d0:63:c2:03"),
        ]});
        let mut t = Scripted::default().reply(200, &page.to_string());
        let selector = Selector::parse("hostname", "PC-1").unwrap();
        let host = resolve(&mut t.client("u1-s1", "tok-1234"), &selector).unwrap();
        assert_eq!(host.agent_id, "2");
    }

    #[test]
    fn not_found_hints_at_a_domain_or_an_ip_typed_as_a_hostname() {
        let empty = r#"{"data": [], "pagination": {"nextCursor": null}}"#;
        let message = |name: &str| {
            let mut t = Scripted::default().reply(200, empty);
            let selector = Selector::parse("hostname", name).unwrap();
            let err = resolve(&mut t.client("u1-s1", "tok-1234"), &selector).unwrap_err();
            assert_eq!(err.kind(), "not-found");
            // Only the name typed was searched for.
            assert_eq!(t.sent.len(), 1);
            err.message().to_owned()
        };
        assert!(message("fin-lt-0042.corp.example").ends_with(
            "Consoles usually list Windows and macOS computer names without their domain: \
                 if the machine is named \"fin-lt-0042\" in the console, retry with that name, \
                 after checking there that it is the machine you mean."
        ));
        assert!(
            message("10.0.0.1")
                .ends_with("This is an IP address: look it up as an IP address instead.")
        );
        assert!(message("FIN-LT-0042").ends_with("in the console's Sentinels list."));
        let mut t = Scripted::default().reply(200, empty);
        let selector = Selector::parse("ip", "203.0.113.7").unwrap();
        let err = resolve(&mut t.client("u1-s1", "tok-1234"), &selector).unwrap_err();
        assert!(
            err.message().ends_with(
                "Only the endpoint's own network interface addresses are searched, not a \
                 public (NAT) address a firewall or proxy log may show for it."
            ),
            "{err}"
        );
        assert!(message(".hidden").ends_with("in the console's Sentinels list."));
    }

    #[test]
    fn a_search_past_the_page_limit_acts_on_nothing() {
        let mut t = Scripted::default();
        for page in 0..MAX_PAGES {
            let body = serde_json::json!({
                "data": [agent(&page.to_string(), "SRV1", "10.0.0.1", "00:b0:d0:63:c2:26")],
                "pagination": {"nextCursor": format!("c{page}")}});
            t = t.reply(200, &body.to_string());
        }
        let selector = Selector::parse("hostname", "SRV1").unwrap();
        let err = resolve(&mut t.client("u1-s1", "tok-1234"), &selector).unwrap_err();
        assert_eq!(err.kind(), "upstream");
        assert_eq!(
            err.message(),
            "The console's search for the hostname \"SRV1\" returned more than 2000 agents, too \
             many to check, so nothing was done. Retry with the agent id from the console's \
             Sentinels list."
        );
        assert_eq!(t.sent.len(), MAX_PAGES);
    }

    #[test]
    fn one_agent_listed_twice_is_one_candidate_but_two_versions_of_it_are_not() {
        let a = agent("7", "PC-1", "10.0.0.7", "00:b0:d0:63:c2:26");
        let mut changed = a.clone();
        changed["networkStatus"] = "disconnected".into();
        let pages = |first: &serde_json::Value, second: &serde_json::Value| {
            Scripted::default()
                .reply(
                    200,
                    &serde_json::json!({"data": [first], "pagination": {"nextCursor": "c2"}})
                        .to_string(),
                )
                .reply(200, &serde_json::json!({"data": [second]}).to_string())
        };
        let selector = Selector::parse("hostname", "PC-1").unwrap();
        let mut t = pages(&a, &a);
        let host = resolve(&mut t.client("u1-s1", "tok-1234"), &selector).unwrap();
        assert_eq!((host.agent_id.as_str(), t.sent.len()), ("7", 2));
        let mut t = pages(&a, &changed);
        let err = resolve(&mut t.client("u1-s1", "tok-1234"), &selector).unwrap_err();
        assert_eq!(err.kind(), "ambiguous");
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
