//! The component boundary: generated bindings, and conversions between the
//! WIT types and the domain types. Nothing else in the crate sees `bindings`.

use alloc::string::String;

use core::time::Duration;

use crate::actions::{self, ActionOutcome, Direction};
use crate::api::Client;
use crate::console::Console;
use crate::error::Error;
use crate::hosts::{self, Host, NetworkState, Selector};
use crate::info;
use crate::scrub::Scrub;
use crate::threats;
use crate::token::{ApiToken, TokenChecks};
use crate::validate::{self, PermissionState};
use crate::wasi_transport::WasiTransport;

mod bindings {
    wit_bindgen::generate!({
        world: "sentinelone",
        path: "wit",
        with: {
            "wasi:http/outgoing-handler@0.2.12": wasi::http::outgoing_handler,
            "wasi:http/types@0.2.12": wasi::http::types,
            "wasi:io/error@0.2.12": wasi::io::error,
            "wasi:io/poll@0.2.12": wasi::io::poll,
            "wasi:io/streams@0.2.12": wasi::io::streams,
            "wasi:clocks/monotonic-clock@0.2.12": wasi::clocks::monotonic_clock,
        },
    });
}

use bindings::exports::soar::connector::connector as wit;
use bindings::exports::soar::connector::events as wit_events;
use bindings::exports::soar::connector::types as wit_types;

struct Component;

bindings::export!(Component with_types_in bindings);

/// A panic is a bug in the connector: it traps, which ends only this call's
/// instance, and the host reports a `trap` with the failing function.
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    core::arch::wasm32::unreachable()
}

impl wit::Guest for Component {
    fn describe() -> wit::ConnectorInfo {
        wit::ConnectorInfo {
            id: info::ID.into(),
            name: info::NAME.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: info::DESCRIPTION.into(),
            connection_fields: info::FIELDS.iter().map(form_field).collect(),
            actions: info::ACTIONS.iter().map(action_info).collect(),
        }
    }

    fn validate_connection(
        conn: wit_types::Connection,
    ) -> Result<wit::ConnectionReport, wit_types::ConnectorError> {
        with_client(&conn, |client, _| validate::validate(client, unix_now()))
            .map(connection_report)
    }

    fn get_host(
        conn: wit_types::Connection,
        host: wit_types::HostSelector,
    ) -> Result<wit_types::Host, wit_types::ConnectorError> {
        with_client(&conn, |client, checks| {
            hosts::resolve(client, &selector(&host, checks)?)
        })
        .map(host_record)
    }

    fn isolate_host(
        conn: wit_types::Connection,
        host: wit_types::HostSelector,
        options: wit::ActionOptions,
    ) -> Result<wit::ActionOutcome, wit_types::ConnectorError> {
        act(&conn, &host, &options, Direction::Isolate)
    }

    fn release_host(
        conn: wit_types::Connection,
        host: wit_types::HostSelector,
        options: wit::ActionOptions,
    ) -> Result<wit::ActionOutcome, wit_types::ConnectorError> {
        act(&conn, &host, &options, Direction::Release)
    }
}

impl wit_events::Guest for Component {
    fn fetch_threats(
        conn: wit_types::Connection,
        checkpoint: Option<String>,
        options: wit_events::FetchOptions,
    ) -> Result<wit_events::ThreatPage, wit_types::ConnectorError> {
        let options = threats::FetchOptions {
            page_size: options.page_size,
            lookback_secs: options.lookback_seconds,
        };
        with_client(&conn, |client, _| {
            let now = unix_now().saturating_mul(1_000_000);
            threats::fetch(client, checkpoint.as_deref(), options, now)
        })
        .map(threat_page)
    }
}

fn threat_page(p: threats::ThreatPage) -> wit_events::ThreatPage {
    wit_events::ThreatPage {
        threats: p
            .threats
            .into_iter()
            .map(|t| wit_events::Threat {
                id: t.id,
                name: t.name,
                classification: t.classification,
                confidence: t.confidence,
                analyst_verdict: t.analyst_verdict,
                incident_status: t.incident_status,
                mitigation_status: t.mitigation_status,
                agent_id: t.agent_id,
                hostname: t.hostname,
                site: t.site,
                account: t.account,
                created_at: t.created_at,
                updated_at: t.updated_at,
                raw: t.raw,
            })
            .collect(),
        checkpoint: p.checkpoint,
        more: p.more,
        warnings: p.warnings,
    }
}

fn act(
    conn: &wit_types::Connection,
    host: &wit_types::HostSelector,
    options: &wit::ActionOptions,
    direction: Direction,
) -> Result<wit::ActionOutcome, wit_types::ConnectorError> {
    let mut protected = conn.protected_hosts.clone();
    protected.extend(options.protected_hosts.iter().cloned());
    let wait = Duration::from_secs(options.wait_seconds.into());
    with_client(conn, |client, checks| {
        let selector = selector(host, checks)?;
        actions::run(client, &selector, direction, &protected, wait)
    })
    .map(action_outcome)
}

/// The domain selector, refused before any request if it holds the token.
fn selector(host: &wit_types::HostSelector, checks: &TokenChecks) -> Result<Selector, Error> {
    use wit_types::HostSelector as S;
    let (S::AgentId(v) | S::Uuid(v) | S::Hostname(v) | S::Ip(v) | S::Mac(v)) = host;
    checks.not_in_selector(v)?;
    match host {
        S::AgentId(v) => Selector::parse("agent-id", v),
        S::Uuid(v) => Selector::parse("uuid", v),
        S::Hostname(v) => Selector::parse("hostname", v),
        S::Ip(v) => Selector::parse("ip", v),
        S::Mac(v) => Selector::parse("mac", v),
    }
}

fn network_state(state: NetworkState) -> wit_types::NetworkState {
    use wit_types::NetworkState as W;
    match state {
        NetworkState::Connected => W::Connected,
        NetworkState::Disconnecting => W::Disconnecting,
        NetworkState::Disconnected => W::Disconnected,
        NetworkState::Connecting => W::Connecting,
        NetworkState::Unknown => W::Unknown,
    }
}

fn host_record(h: Host) -> wit_types::Host {
    wit_types::Host {
        agent_id: h.agent_id,
        uuid: h.uuid,
        hostname: h.hostname,
        site: h.site,
        account: h.account,
        os: h.os,
        ip_addresses: h.ip_addresses,
        last_active: h.last_active,
        active: h.active,
        network_state: network_state(h.network_state),
    }
}

fn action_outcome(o: ActionOutcome) -> wit::ActionOutcome {
    wit::ActionOutcome {
        host: host_record(o.host),
        changed: o.changed,
        network_state: network_state(o.network_state),
        detail: o.detail,
    }
}

/// Checks and parses the connection, runs `f` with a client and the token
/// checks for its other values, scrubs the token from whatever it returns
/// (the console may have echoed it into a field, and an error may quote a
/// hostile console value), and converts the error.
fn with_client<R: Scrub>(
    conn: &wit_types::Connection,
    f: impl FnOnce(&mut Client<'_, WasiTransport>, &TokenChecks) -> Result<R, Error>,
) -> Result<R, wit_types::ConnectorError> {
    let raw_token = conn.api_token.trim();
    let checks = TokenChecks::new(&conn.api_token);
    let mut result = checks
        .fields_not_swapped(&conn.management_host)
        .and_then(|()| Console::parse(&conn.management_host))
        .and_then(|console| {
            let token = ApiToken::parse(&conn.api_token)?;
            let mut transport = WasiTransport;
            let mut client = Client::new(console, token, &mut transport);
            f(&mut client, &checks)
        });
    // A value too short to be a token was refused before any request, and
    // replacing it could mangle ordinary words.
    if raw_token.len() >= crate::token::MIN_TOKEN_LEN {
        result.scrub(raw_token);
    }
    result.map_err(connector_error)
}

fn unix_now() -> i64 {
    i64::try_from(wasi::clocks::wall_clock::now().seconds).unwrap_or(i64::MAX)
}

fn connector_error(e: Error) -> wit_types::ConnectorError {
    use wit_types::ConnectorError as W;
    match e {
        Error::InvalidConfig(m) => W::InvalidConfig(m),
        Error::Unauthorized(m) => W::Unauthorized(m),
        Error::Forbidden(m) => W::Forbidden(m),
        Error::NotFound(m) => W::NotFound(m),
        Error::RateLimited {
            message,
            retry_after_seconds,
        } => W::RateLimited(wit_types::RateLimit {
            message,
            retry_after_seconds,
        }),
        Error::Unreachable(m) => W::Unreachable(m),
        Error::EgressDenied(m) => W::EgressDenied(m),
        Error::Upstream(m) => W::Upstream(m),
        Error::Ambiguous {
            message,
            candidates,
        } => W::Ambiguous(wit_types::AmbiguousHosts {
            message,
            candidates: candidates.into_iter().map(host_record).collect(),
        }),
        Error::ProtectedHost(m) => W::ProtectedHost(m),
    }
}

fn form_field(f: &info::FormField) -> wit::FormField {
    wit::FormField {
        name: f.name.into(),
        label: f.label.into(),
        help: f.help.into(),
        example: f.example.into(),
        secret: f.secret,
        required: f.required,
    }
}

fn action_info(a: &info::ActionInfo) -> wit::ActionInfo {
    wit::ActionInfo {
        id: a.id.into(),
        name: a.name.into(),
        description: a.description.into(),
        destructive: a.destructive,
        permissions: a.permissions.iter().map(|p| (*p).into()).collect(),
    }
}

fn connection_report(r: validate::ConnectionReport) -> wit::ConnectionReport {
    wit::ConnectionReport {
        console_url: r.console_url,
        token_expires_at: r.token_expires_at,
        token_days_left: r.token_days_left,
        user: r.user,
        role: r.role,
        scope: r.scope,
        permissions: r
            .permissions
            .into_iter()
            .map(|p| wit::PermissionCheck {
                permission: p.permission,
                needed_for: p.needed_for,
                state: match p.state {
                    PermissionState::Granted => wit::PermissionState::Granted,
                    PermissionState::Denied => wit::PermissionState::Denied,
                    PermissionState::Unknown => wit::PermissionState::Unknown,
                },
                detail: p.detail,
            })
            .collect(),
        warnings: r.warnings,
    }
}
