//! The protected-hosts list: which entry, if any, names an agent.
//!
//! Every doubt here resolves towards protecting. A wrongly refused isolation
//! costs the admin a retry with the entry removed; a protected domain
//! controller taken off the network costs the whole company.

use alloc::{borrow::ToOwned, string::String};

use core::net::IpAddr;

use crate::hosts::{Host, normalize_mac, same_name, uuid_key};

/// The entry of `protected` that names `host`, as it was written, if any.
///
/// An entry names the host by agent id, UUID, IP address, IP range in CIDR
/// notation (`10.0.0.0/24`), MAC address (any notation) or hostname
/// (case-insensitive; a fully qualified entry also protects the bare
/// computer name). An entry holding a list (`DC-01, 10.0.0.2`, as the
/// connection form's example reads) is also read item by item.
pub fn entry_naming(host: &Host, protected: &[String]) -> Option<String> {
    protected
        .iter()
        .flat_map(|entry| items(entry))
        .find(|item| names(item, host))
        .map(str::to_owned)
}

/// The entry, trimmed, then each item of it split at commas, semicolons and
/// white space. A platform with a single text box stores a typed list as one
/// entry, and no name, address or id contains those separators (a computer
/// name with spaces still matches as the whole entry).
fn items(entry: &str) -> impl Iterator<Item = &str> {
    let whole = entry.trim();
    let parts = whole
        .split(|c: char| c == ',' || c == ';' || c.is_whitespace())
        .filter(move |p| *p != whole);
    core::iter::once(whole)
        .chain(parts)
        .filter(|item| !item.is_empty())
}

/// Whether one item names `host`, in any of the ways it could.
fn names(item: &str, host: &Host) -> bool {
    let ip = item.parse::<IpAddr>().ok();
    let by_ip = ip.is_some_and(|ip| host.addresses().any(|a| a == ip));
    let by_range =
        parse_range(item).is_some_and(|range| host.addresses().any(|a| range.contains(a)));
    let by_mac = normalize_mac(item).is_some_and(|mac| host.macs.contains(&mac));
    // A UUID compares without dashes: the console lists it undashed, other
    // tools print it dashed.
    let uuid = uuid_key(&host.uuid);
    let by_id = item == host.agent_id || (!uuid.is_empty() && uuid_key(item) == uuid);
    by_ip || by_range || by_mac || by_id || names_by_hostname(item, ip.is_some(), host)
}

/// By name, or for a fully qualified name by its first label (unless the
/// item is an IP address, whose first "label" is just a number).
fn names_by_hostname(item: &str, is_ip: bool, host: &Host) -> bool {
    if host.hostname.is_empty() {
        return false;
    }
    let first_label = item.split('.').next().unwrap_or(item);
    same_name(&host.hostname, item) || (!is_ip && same_name(&host.hostname, first_label))
}

/// An address range: the network's address and its prefix length.
struct Range {
    network: IpAddr,
    prefix: u32,
}

fn parse_range(item: &str) -> Option<Range> {
    let (address, prefix) = item.split_once('/')?;
    let network: IpAddr = address.parse().ok()?;
    let prefix: u32 = prefix.parse().ok()?;
    let bits = if network.is_ipv4() { 32 } else { 128 };
    (prefix <= bits).then_some(Range { network, prefix })
}

impl Range {
    fn contains(&self, ip: IpAddr) -> bool {
        // Shifting by the full width overflows; a zero prefix matches all.
        let same =
            |a: u128, b: u128, bits: u32| self.prefix == 0 || (a ^ b) >> (bits - self.prefix) == 0;
        match (self.network, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => same(u32::from(n).into(), u32::from(a).into(), 32),
            (IpAddr::V6(n), IpAddr::V6(a)) => same(u128::from(n), u128::from(a), 128),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hosts::NetworkState;

    fn dc() -> Host {
        Host {
            agent_id: "42".into(),
            uuid: "abcd1234".into(),
            hostname: "DC-01".into(),
            site: "HQ".into(),
            account: "Acme".into(),
            os: "Windows Server 2022".into(),
            ip_addresses: vec!["10.0.0.2".into(), "fe80::2".into()],
            last_active: None,
            active: true,
            network_state: NetworkState::Connected,
            macs: vec!["00b0d063c226".into()],
            decommissioned: false,
        }
    }

    fn naming(entries: &[&str]) -> Option<String> {
        let list: Vec<String> = entries.iter().map(|e| (*e).to_owned()).collect();
        entry_naming(&dc(), &list)
    }

    #[test]
    fn every_way_of_naming_a_host_protects_it() {
        for entry in [
            "DC-01",
            " dc-01 ",
            "dc-01.corp.example",
            "42",
            "ABCD1234",
            "10.0.0.2",
            "fe80::2",
            "10.0.0.0/24",
            "10.0.0.2/32",
            "0.0.0.0/0",
            "fe80::/10",
            "00:B0:D0:63:C2:26",
            "00-b0-d0-63-c2-26",
            "00b0.d063.c226",
        ] {
            assert_eq!(
                naming(&["", entry]).as_deref(),
                Some(entry.trim()),
                "{entry}"
            );
        }
    }

    #[test]
    fn a_list_typed_into_one_entry_protects_each_item() {
        // The connection form's own example, stored as one entry.
        assert_eq!(naming(&["DC-01, 10.0.0.2"]).as_deref(), Some("DC-01"));
        assert_eq!(naming(&["SQL-01, 10.0.0.2"]).as_deref(), Some("10.0.0.2"));
        assert_eq!(naming(&["SQL-01;dc-01"]).as_deref(), Some("dc-01"));
        assert_eq!(naming(&["SQL-01\n42\n"]).as_deref(), Some("42"));
        assert_eq!(
            naming(&["SQL-01 10.0.0.0/28"]).as_deref(),
            Some("10.0.0.0/28")
        );
    }

    #[test]
    fn near_misses_do_not_protect() {
        for entry in [
            "10.0.0.22",
            "10.0.1.0/24",
            "10.0.0.0/33",
            "10.0.0.0/x",
            "DC-0",
            "DC-011",
            "4",
            "00:b0:d0:63:c2:27",
            "fe81::/16",
            "::ffff:10.0.0.2/128",
            "SQL-01, WEB-01",
        ] {
            assert_eq!(naming(&[entry]), None, "{entry}");
        }
    }

    #[test]
    fn a_uuid_protects_with_or_without_dashes() {
        let mut host = dc();
        host.uuid = "b7b2d39171be4ae1af90f93d7ed20f07".into();
        for entry in [
            "b7b2d39171be4ae1af90f93d7ed20f07",
            "B7B2D391-71BE-4AE1-AF90-F93D7ED20F07",
            "SQL-01, b7b2d391-71be-4ae1-af90-f93d7ed20f07",
        ] {
            let list = vec![entry.to_owned()];
            assert!(entry_naming(&host, &list).is_some(), "{entry}");
        }
        host.uuid = "B7B2D391-71BE-4AE1-AF90-F93D7ED20F07".into();
        let list = vec!["b7b2d39171be4ae1af90f93d7ed20f07".to_owned()];
        assert!(entry_naming(&host, &list).is_some());
        let list = vec!["b7b2d391-71be-4ae1-af90-f93d7ed20f08".to_owned()];
        assert_eq!(entry_naming(&host, &list), None);
    }

    #[test]
    fn a_computer_name_with_spaces_matches_as_a_whole() {
        let mut host = dc();
        host.hostname = "Front Desk".into();
        let list = vec!["front desk".to_owned()];
        assert_eq!(entry_naming(&host, &list).as_deref(), Some("front desk"));
    }

    #[test]
    fn names_compare_without_case_in_any_script() {
        let mut host = dc();
        host.hostname = "BÜRO-DC".into();
        for entry in ["büro-dc", "Büro-DC.corp.example"] {
            let list = vec![entry.to_owned()];
            assert!(entry_naming(&host, &list).is_some(), "{entry}");
        }
        let list = vec!["buro-dc".to_owned()];
        assert_eq!(entry_naming(&host, &list), None);
    }
}
