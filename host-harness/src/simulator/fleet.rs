//! The simulated agent fleet, built to contain every host-resolution trap:
//! two agents sharing a hostname, an IP that is a prefix of another agent's,
//! an isolated agent, a decommissioned one and an offline one.

use serde_json::{Value, json};

/// Agent ids of the built-in fleet, for tests and the demo.
pub mod agents {
    /// `FIN-LT-0042`, 10.0.0.1, MAC 00:b0:d0:63:c2:26, connected.
    pub const FINANCE_LAPTOP: &str = "1900000000000000001";
    /// `FIN-LT-0043`, 10.0.0.12 (10.0.0.1 is a prefix of it), connected.
    pub const PREFIX_TRAP: &str = "1900000000000000002";
    /// `Reception-PC`, the stale agent of a re-imaged machine now called
    /// `RECEPTION-PC`.
    pub const RECEPTION_OLD: &str = "1900000000000000003";
    /// `RECEPTION-PC`, the current agent.
    pub const RECEPTION_NEW: &str = "1900000000000000004";
    /// `ISOLATED-SRV`, already disconnected.
    pub const ISOLATED: &str = "1900000000000000005";
    /// `HR-LT-0007`, decommissioned (a live agent shares its hostname).
    pub const DECOMMISSIONED: &str = "1900000000000000006";
    /// `HR-LT-0007`, the live agent.
    pub const HR_LAPTOP: &str = "1900000000000000007";
    /// `WAREHOUSE-WS`, offline (`isActive: false`): actions affect nothing.
    pub const OFFLINE: &str = "1900000000000000008";
    /// `DC-01`, a domain controller at 10.0.0.2.
    pub const DOMAIN_CONTROLLER: &str = "1900000000000000009";
}

struct Spec {
    id: &'static str,
    name: &'static str,
    ip: &'static str,
    mac: &'static str,
    state: &'static str,
    active: bool,
    decommissioned: bool,
    last_active: &'static str,
}

const SPECS: &[Spec] = &[
    Spec {
        id: agents::FINANCE_LAPTOP,
        name: "FIN-LT-0042",
        ip: "10.0.0.1",
        mac: "00-b0-d0-63-c2-26",
        state: "connected",
        active: true,
        decommissioned: false,
        last_active: "2026-11-23T09:00:00.000000Z",
    },
    Spec {
        id: agents::PREFIX_TRAP,
        name: "FIN-LT-0043",
        ip: "10.0.0.12",
        mac: "00-b0-d0-63-c2-27",
        state: "connected",
        active: true,
        decommissioned: false,
        last_active: "2026-11-23T09:01:00.000000Z",
    },
    Spec {
        id: agents::RECEPTION_OLD,
        // The machine was renamed in another case when it was re-imaged.
        name: "Reception-PC",
        ip: "10.0.1.20",
        mac: "3c-52-82-11-22-33",
        state: "connected",
        active: true,
        decommissioned: false,
        last_active: "2026-09-30T17:45:00.000000Z",
    },
    Spec {
        id: agents::RECEPTION_NEW,
        name: "RECEPTION-PC",
        ip: "10.0.1.21",
        mac: "3c-52-82-11-22-34",
        state: "connected",
        active: true,
        decommissioned: false,
        last_active: "2026-11-23T08:59:00.000000Z",
    },
    Spec {
        id: agents::ISOLATED,
        name: "ISOLATED-SRV",
        ip: "10.0.2.5",
        mac: "52-54-00-aa-bb-05",
        state: "disconnected",
        active: true,
        decommissioned: false,
        last_active: "2026-11-23T08:30:00.000000Z",
    },
    Spec {
        id: agents::DECOMMISSIONED,
        name: "HR-LT-0007",
        ip: "10.0.3.7",
        mac: "f0-18-98-00-00-06",
        state: "connected",
        active: false,
        decommissioned: true,
        last_active: "2025-02-01T12:00:00.000000Z",
    },
    Spec {
        id: agents::HR_LAPTOP,
        name: "HR-LT-0007",
        ip: "10.0.3.8",
        mac: "f0-18-98-00-00-07",
        state: "connected",
        active: true,
        decommissioned: false,
        last_active: "2026-11-23T09:02:00.000000Z",
    },
    Spec {
        id: agents::OFFLINE,
        name: "WAREHOUSE-WS",
        ip: "10.0.4.4",
        mac: "f0-18-98-00-00-08",
        state: "connected",
        active: false,
        decommissioned: false,
        last_active: "2026-11-02T06:00:00.000000Z",
    },
    Spec {
        id: agents::DOMAIN_CONTROLLER,
        name: "DC-01",
        ip: "10.0.0.2",
        mac: "00-15-5d-00-00-09",
        state: "connected",
        active: true,
        decommissioned: false,
        last_active: "2026-11-23T09:03:00.000000Z",
    },
];

/// The built-in fleet as v2.1 agent objects, each with the 120-odd fields
/// a current console sends (about 4 KB of JSON), so that reading them costs
/// what it costs against a real console.
pub(crate) fn builtin() -> Vec<Value> {
    SPECS
        .iter()
        .enumerate()
        .map(|(n, s)| record(n, s))
        .collect()
}

/// A copy of the finance laptop's record, to be renamed: for benchmarks
/// that add an agent per tenant.
pub(crate) fn template() -> Value {
    record(0, &SPECS[0])
}

/// Agent `n` of the fleet as the console sends it.
fn record(n: usize, s: &Spec) -> Value {
    let mut agent = json!({
        "id": s.id,
        "uuid": format!("b7b2d39171be4ae1af90f93d7ed2{n:04x}"),
        "computerName": s.name,
        "accountId": "1111111111111111111", "accountName": "Acme",
        "siteId": "2222222222222222222", "siteName": "HQ",
        "groupName": "Default Group",
        "osType": "windows", "osName": "Windows 11 Pro", "agentVersion": "24.1.2.3",
        "isActive": s.active, "isDecommissioned": s.decommissioned, "isUninstalled": false,
        "networkStatus": s.state,
        "networkQuarantineEnabled": false,
        "lastActiveDate": s.last_active,
        "externalIp": "203.0.113.9",
        "networkInterfaces": [{"id": "444", "name": "Ethernet", "inet": [s.ip],
            "inet6": [format!("fe80::{:x}", n + 1)], "physical": s.mac,
            "gatewayIp": "10.0.0.254", "gatewayMacAddress": "00-00-5e-00-53-01"}],
    });
    if let Some(fields) = agent.as_object_mut() {
        for part in detail(n) {
            if let Value::Object(more) = part {
                fields.extend(more);
            }
        }
    }
    agent
}

/// The rest of a v2.1 agent record: directory, inventory, policy and scan
/// state that the connector never reads but must skip. (In parts: one
/// `json!` this large exceeds the macro recursion limit.)
fn detail(n: usize) -> [Value; 5] {
    [
        json!({
            "activeDirectory": {
                "computerDistinguishedName": format!("CN=HOST{n},OU=Workstations,DC=acme,DC=example"),
                "computerMemberOf": ["CN=Workstations,OU=Groups,DC=acme,DC=example"],
                "lastUserDistinguishedName": "CN=Jane Doe,OU=Users,DC=acme,DC=example",
                "lastUserMemberOf": ["CN=Finance,OU=Groups,DC=acme,DC=example"],
                "mail": "jane.doe@acme.example", "userPrincipalName": "jane.doe@acme.example"
            },
            "activeThreats": 0, "agentLicenseType": "complete", "allowRemoteShell": true,
            "appsVulnerabilityStatus": "not_applicable", "cloudProviders": {},
            "consoleMigrationStatus": "N/A", "containerizedWorkloadCounts": null,
            "coreCount": 8, "cpuCount": 1, "cpuId": "Intel(R) Core(TM) i7-1185G7 @ 3.00GHz",
            "createdAt": "2025-01-14T09:12:33.501223Z", "detectionState": null,
            "domain": "ACME", "encryptedApplications": true, "externalId": "",
            "firewallEnabled": true, "firstFullModeTime": "2025-01-14T09:20:01.000000Z",
            "fullDiskScanLastUpdatedAt": "2026-11-20T02:14:09.884103Z",
            "groupId": "3333333333333333333", "groupIp": "203.0.113.x",
            "hasContainerizedWorkload": false, "hasNetworkStatusChanges": false,
            "hasPendingActions": false, "inRemoteShellSession": false, "infected": false,
        }),
        json!({
            "installerType": ".msi", "isAdConnector": false, "isHyperAutomate": false,
            "isPendingUninstall": false, "isUpToDate": true, "lastIpToMgmt": "10.0.0.200",
            "lastLoggedInUserName": "jane.doe", "lastSuccessfulScanDate": "2026-11-20T02:14:09.884103Z",
            "licenseKey": "", "locationEnabled": true, "locationType": "fallback",
            "locations": [{"id": "629380164464502476", "name": "Fallback", "scope": "global"}],
            "machineSid": format!("S-1-5-21-3623811015-3361044348-30300820-{}", 1000 + n),
        }),
        json!({
            "machineType": "laptop", "missingPermissions": [], "mitigationMode": "protect",
            "mitigationModeSuspicious": "detect", "modelName": "Dell Inc. - Latitude 7420",
            "networkStatusChangedAt": "2026-11-01T08:00:00.000000Z",
            "operationalState": "na", "operationalStateExpiration": null,
            "osArch": "64 bit", "osRevision": "22631", "osStartTime": "2026-11-22T07:55:12Z",
            "osUsername": null, "proxyStates": {"console": false, "deepVisibility": false},
            "rangerStatus": "Enabled", "rangerVersion": "24.1.2.3",
            "registeredAt": "2025-01-14T09:12:33.497108Z",
            "remoteProfilingState": "disabled", "remoteProfilingStateExpiration": null,
            "scanAbortedAt": null, "scanFinishedAt": "2026-11-20T02:14:09.884103Z",
            "scanStartedAt": "2026-11-20T01:02:44.210330Z", "scanStatus": "finished",
            "serialNumber": format!("5CG{n:07}"), "showAlertIcon": false,
            "storageName": null, "storageType": null,
            "tags": {"sentinelone": [{"assignedAt": "2025-02-01T10:00:00.000000Z",
                "assignedBy": "Jane Admin", "assignedById": "4444444444444444444",
                "id": "5555555555555555555", "key": "department", "value": "finance"}]},
        }),
        json!({
            "threatRebootRequired": false, "totalMemory": 16088,
            "updatedAt": "2026-11-23T09:00:00.000000Z", "userActionsNeeded": [],
        }),
        json!({
            "firewallStatus": "enabled", "fileIntegrityMonitoring": false,
            "deviceControl": "disabled", "deepVisibility": "enabled",
            "lastActiveDateTimezone": "UTC", "vulnerabilityStatus": "up_to_date",
            "agentUpdateStatus": "up_to_date", "autoUpgradeEnabled": true,
            "antiTamper": "enabled", "snapshotsEnabled": true, "vssStatus": "ok",
            "vssProtection": "enabled", "vssRollbackStatus": "ok",
            "networkInterfaceCount": 1, "diskEncryption": "BitLocker",
            "biosVersion": "1.21.0", "manufacturer": "Dell Inc.",
            "timezone": "Europe/Berlin", "locale": "en-US",
            "osBuild": "22631.4460", "osEdition": "Professional",
            "kernelVersion": null, "lastRebootAt": "2026-11-22T07:55:12Z",
            "policyName": "Default Policy", "policyId": "6666666666666666666",
            "engines": {"reputation": true, "staticAi": true, "behavioralAi": true,
                "documentScripts": true, "lateralMovement": true, "exploits": true},
            "isBenchmark": false, "externalIpv6": null, "healthScore": 100,
            "notes": null, "customerIdentifier": null,
            "lastHeartbeatAt": "2026-11-23T09:00:00.000000Z"
        }),
    ]
}

/// Whether `agent` passes every filter in `query` the simulator knows.
/// Unknown parameters are ignored, as the real API ignores most.
pub(crate) fn matches(agent: &Value, query: &[(String, String)]) -> bool {
    let text = |key: &str| agent.get(key).and_then(Value::as_str).unwrap_or_default();
    let iface = |key: &str| -> Vec<String> {
        let ifaces = agent.get("networkInterfaces").and_then(Value::as_array);
        ifaces
            .into_iter()
            .flatten()
            .flat_map(|i| match i.get(key) {
                Some(Value::Array(a)) => a
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect(),
                Some(Value::String(s)) => vec![s.clone()],
                _ => vec![],
            })
            .collect()
    };
    query.iter().all(|(key, value)| {
        let csv: Vec<String> = value
            .split(',')
            .map(|v| v.trim().to_ascii_lowercase())
            .collect();
        match key.as_str() {
            "ids" => csv.iter().any(|v| v == text("id")),
            "uuids" => csv.iter().any(|v| v.eq_ignore_ascii_case(text("uuid"))),
            "uuid" => text("uuid").eq_ignore_ascii_case(value),
            // Case-sensitive, as the reference's sources suggest the real
            // one is: a connector relying on it would miss case variants.
            "computerName" => text("computerName") == value,
            // Free text: substrings, any case, several values.
            "computerName__contains" => {
                let name = text("computerName").to_ascii_lowercase();
                csv.iter().any(|v| name.contains(v.as_str()))
            }
            // Searches IPv4 and IPv6 here; the docs only say "local IP". A
            // console that skips inet6 makes an IPv6 selector a safe not-found.
            "networkInterfaceInet__contains" => iface("inet")
                .iter()
                .chain(iface("inet6").iter())
                .any(|ip| csv.iter().any(|v| ip.contains(v.as_str()))),
            "networkInterfacePhysical__contains" => iface("physical").iter().any(|mac| {
                csv.iter()
                    .any(|v| mac.to_ascii_lowercase().contains(v.as_str()))
            }),
            _ => true,
        }
    })
}

/// Moves pending states one step: what the agent confirms on its next report.
pub(crate) fn settle(agent: &mut Value) {
    let next = match agent.get("networkStatus").and_then(Value::as_str) {
        Some("disconnecting") => "disconnected",
        Some("connecting") => "connected",
        _ => return,
    };
    agent["networkStatus"] = json!(next);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_as_large_as_a_real_consoles() {
        for agent in builtin() {
            let fields = agent.as_object().map_or(0, |o| o.len());
            let bytes = agent.to_string().len();
            assert!(fields >= 100, "{fields} fields");
            assert!(bytes >= 3_000, "{bytes} bytes");
        }
    }

    #[test]
    fn the_id_filter_matches_exactly_one_agent() {
        let fleet = builtin();
        let query = [("ids".to_owned(), agents::FINANCE_LAPTOP.to_owned())];
        let found: Vec<&Value> = fleet.iter().filter(|a| matches(a, &query)).collect();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0]["computerName"], "FIN-LT-0042");
        let prefix = [("ids".to_owned(), "190000000000000000".to_owned())];
        assert!(!fleet.iter().any(|a| matches(a, &prefix)));
    }

    #[test]
    fn the_exact_name_filter_is_case_sensitive_and_free_text_is_not() {
        let fleet = builtin();
        let count = |key: &str, value: &str| {
            let query = [(key.to_owned(), value.to_owned())];
            fleet.iter().filter(|a| matches(a, &query)).count()
        };
        assert_eq!(count("computerName", "FIN-LT-0042"), 1);
        assert_eq!(count("computerName", "fin-lt-0042"), 0);
        assert_eq!(count("computerName__contains", "fin-lt-0042"), 1);
        assert_eq!(count("computerName__contains", "nomatch,lt-0042"), 1);
        assert_eq!(count("computerName__contains", "nomatch"), 0);
    }
}
