//! What `describe` returns: the connection form and the action list.

/// One connection-form field. Mirrors the WIT `form-field`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormField {
    /// The `connection` field it fills.
    pub name: &'static str,
    /// Label shown to the user.
    pub label: &'static str,
    /// Help text.
    pub help: &'static str,
    /// Example value.
    pub example: &'static str,
    /// Mask it and never show it again.
    pub secret: bool,
    /// Needed to save the form.
    pub required: bool,
}

/// One offered action. Mirrors the WIT `action-info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionInfo {
    /// The exported function.
    pub id: &'static str,
    /// Display name.
    pub name: &'static str,
    /// One sentence.
    pub description: &'static str,
    /// Changes state on the console or endpoints.
    pub destructive: bool,
    /// Console permissions it needs.
    pub permissions: &'static [&'static str],
}

/// Stable identifier.
pub const ID: &str = "sentinelone";
/// Display name.
pub const NAME: &str = "SentinelOne";
/// Catalogue description.
pub const DESCRIPTION: &str = "Connects to a SentinelOne Singularity management console \
     (Management API v2.1) with an API token: validates the connection (token expiry and \
     permissions), isolates or releases exactly one endpoint at a time, and ingests threats \
     exactly once per version.";

/// The connection form, in display order.
pub const FIELDS: &[FormField] = &[
    FormField {
        name: "management-host",
        label: "Management Hostname",
        help: "Your console's hostname. For https://u1234-s123.sentinelone.net enter \
               u1234-s123 (the part before .sentinelone.net) or the full hostname, or paste the \
               console's address from the browser. Consoles on other domains: enter the full \
               hostname.",
        example: "u1234-s123",
        secret: false,
        required: true,
    },
    FormField {
        name: "api-token",
        label: "API Token",
        help: "Generate it in the console under Settings → My User → API Token → Generate \
               (or create a service user under Settings → Users → Service Users). Use a role \
               with the permissions the actions need; Test Connection lists them.",
        example: "eyJraWQiOiJ0b2tlblNpZ25pbmci...",
        secret: true,
        required: true,
    },
    FormField {
        name: "protected-hosts",
        label: "Protected Hosts",
        help: "Hosts that must never be isolated through this connection, such as domain \
               controllers and the SOAR server itself: hostnames, agent ids or UUIDs, IP addresses, \
               IP ranges such as 10.0.0.0/24, or MAC addresses, separated by commas.",
        example: "DC-01, 10.0.0.2",
        secret: false,
        required: false,
    },
];

/// The actions offered.
pub const ACTIONS: &[ActionInfo] = &[
    ActionInfo {
        id: "validate-connection",
        name: "Test Connection",
        description: "Checks the hostname and token, and reports the token's expiry, user, role \
                      and permissions.",
        destructive: false,
        permissions: &[],
    },
    ActionInfo {
        id: "get-host",
        name: "Get Host",
        description: "Finds exactly one endpoint by agent id, UUID, hostname, IP or MAC address \
                      and shows its details and isolation state.",
        destructive: false,
        permissions: &["Endpoints.view"],
    },
    ActionInfo {
        id: "isolate-host",
        name: "Isolate Host",
        description: "Disconnects exactly one endpoint from the network (only the console can \
                      still reach it). Refuses protected hosts and ambiguous matches.",
        destructive: true,
        permissions: &["Endpoints.view", "Endpoints.disconnectFromNetwork"],
    },
    ActionInfo {
        id: "release-host",
        name: "Release Host",
        description: "Reconnects an isolated endpoint to the network.",
        destructive: true,
        permissions: &["Endpoints.view", "Endpoints.reconnectToNetwork"],
    },
    ActionInfo {
        id: "fetch-threats",
        name: "Ingest Threats",
        description: "Pulls threats updated since the last checkpoint, each version exactly \
                      once, resumable from a host-stored checkpoint.",
        destructive: false,
        permissions: &["Threats.view"],
    },
];
