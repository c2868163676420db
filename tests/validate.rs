//! End-to-end: the built component, run in the host, against the simulator.
//! Each test asserts what was sent (simulator log), what came back, and the
//! host's audit trail.

mod support;

use std::time::Duration;

use connector_host::simulator::{Fault, FaultKind, Simulator, TokenProfile, tokens};
use connector_host::{CallError, ConnectorError, EgressPolicy, HostError, PermissionState};
use support::*;

fn connector_error<T: std::fmt::Debug>(outcome: connector_host::Outcome<T>) -> ConnectorError {
    match outcome.result {
        Err(CallError::Connector(e)) => e,
        other => panic!("expected a connector error, got {other:?}"),
    }
}

const VALIDATE_SEQUENCE: [&str; 4] = [
    "POST /web/api/v2.1/users/api-token-details",
    "GET /web/api/v2.1/user",
    "GET /web/api/v2.1/agents?limit=1&skipCount=true",
    "GET /web/api/v2.1/threats?limit=1&skipCount=true",
];

#[tokio::test]
async fn healthy_token_gives_a_full_report_and_sends_exactly_four_reads() {
    let sim = Simulator::start().await.unwrap();
    let outcome = validate(&sim, tokens::ADMIN).await;
    let report = outcome.result.expect("validation succeeds");

    assert_eq!(report.console_url, "https://tenant.sentinelone.net");
    assert_eq!(report.user.as_deref(), Some("SOAR Automation"));
    assert_eq!(report.role.as_deref(), Some("Admin"));
    assert_eq!(report.scope.as_deref(), Some("account"));
    assert_eq!(report.token_days_left, Some(180));
    assert!(report.token_expires_at.as_deref().unwrap().ends_with('Z'));
    let perms: Vec<_> = report
        .permissions
        .iter()
        .map(|p| (p.permission.as_str(), p.state))
        .collect();
    assert_eq!(
        perms,
        [
            ("Endpoints.view", PermissionState::Granted),
            ("Threats.view", PermissionState::Granted),
            ("Endpoints.disconnectFromNetwork", PermissionState::Unknown),
            ("Endpoints.reconnectToNetwork", PermissionState::Unknown),
        ]
    );
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);

    assert_eq!(request_lines(&sim), VALIDATE_SEQUENCE);
    let log = sim.requests();
    assert_eq!(
        log[0].body,
        format!(r#"{{"data":{{"apiToken":"{}"}}}}"#, tokens::ADMIN)
    );
    for r in &log {
        assert_eq!(
            r.host.as_deref(),
            Some(HOST),
            "Host header is the console's name"
        );
        assert_eq!(r.auth_scheme.as_deref(), Some("ApiToken"));
        assert_eq!(r.token.as_deref(), Some("admin"));
        assert!(
            !r.path.contains(tokens::ADMIN)
                && r.query
                    .as_deref()
                    .is_none_or(|q| !q.contains(tokens::ADMIN))
        );
    }

    let audit = &outcome.requests;
    assert_eq!(audit.len(), 4);
    assert_eq!(audit[0].method, "POST");
    assert_eq!(audit[0].host, HOST);
    assert_eq!(audit[0].path, "/web/api/v2.1/users/api-token-details");
    assert!(
        audit
            .iter()
            .all(|r| r.status == Some(200) && r.outcome == "ok" && r.bytes > 0)
    );
}

#[tokio::test]
async fn token_expiring_within_thirty_days_is_a_warning_with_the_days_left() {
    let sim = Simulator::start().await.unwrap();
    let report = validate(&sim, tokens::EXPIRING).await.result.unwrap();
    assert_eq!(report.token_days_left, Some(5));
    assert_eq!(report.warnings.len(), 1);
    assert!(
        report.warnings[0].contains("expires in 5 days"),
        "{:?}",
        report.warnings
    );
    assert!(report.warnings[0].contains("Settings → My User → API Token"));
}

#[tokio::test]
async fn forbidden_user_read_is_a_warning_and_missing_permissions_are_reported() {
    let sim = Simulator::start().await.unwrap();
    let report = validate(&sim, tokens::RESTRICTED).await.result.unwrap();
    assert_eq!(report.user, None);
    assert_eq!(report.role, None);
    assert_eq!(report.permissions[0].state, PermissionState::Granted);
    assert_eq!(report.permissions[1].permission, "Threats.view");
    assert_eq!(report.permissions[1].state, PermissionState::Denied);
    assert!(report.warnings.iter().any(|w| w.contains("Users.view")));
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("lacks Threats.view"))
    );
    assert_eq!(request_lines(&sim), VALIDATE_SEQUENCE);
}

#[tokio::test]
async fn viewer_token_validates() {
    let sim = Simulator::start().await.unwrap();
    let report = validate(&sim, tokens::VIEWER).await.result.unwrap();
    assert_eq!(report.role.as_deref(), Some("Viewer"));
    // Reads are granted; the action permissions can only be proven by acting.
    let read: Vec<_> = report.permissions[..2].iter().map(|p| p.state).collect();
    assert_eq!(read, [PermissionState::Granted, PermissionState::Granted]);
    // ...but the built-in Viewer role cannot, and the admin is told now,
    // not during an incident.
    assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
    assert!(
        report.warnings[0].contains("Isolate Host and Release Host will be refused"),
        "{:?}",
        report.warnings
    );
    assert!(report.permissions[2].detail.contains("only role is Viewer"));
    // The warning is right: the console refuses the isolation.
    let outcome = runtime()
        .isolate_host(
            &connection(CONSOLE, tokens::VIEWER),
            &connector_host::HostSelector::AgentId(
                connector_host::simulator::agents::FINANCE_LAPTOP.into(),
            ),
            &no_options(),
            &policy(&sim),
        )
        .await;
    assert_eq!(connector_error(outcome).kind(), "forbidden");
}

#[tokio::test]
async fn expired_and_unknown_tokens_are_unauthorized_with_the_fix() {
    let sim = Simulator::start().await.unwrap();
    for token in [tokens::EXPIRED, "eyJ-not-a-token-the-console-knows"] {
        sim.clear_requests();
        let err = connector_error(validate(&sim, token).await);
        assert_eq!(err.kind(), "unauthorized");
        assert!(
            err.message()
                .contains("Settings → My User → API Token → Generate"),
            "{err:?}"
        );
        assert!(err.message().contains("edit this connection"));
        assert!(!err.message().contains(token));
        assert_eq!(
            request_lines(&sim),
            ["POST /web/api/v2.1/users/api-token-details"]
        );
    }
}

#[tokio::test]
async fn an_address_pasted_from_the_browser_works_the_first_time() {
    let sim = Simulator::start().await.unwrap();
    let pasted = "https://tenant.sentinelone.net/#/incidents/threats?filter=%7B%7D";
    let report = runtime()
        .validate_connection(&connection(pasted, tokens::ADMIN), &policy(&sim))
        .await
        .result
        .unwrap();
    assert_eq!(report.console_url, "https://tenant.sentinelone.net");
    assert_eq!(request_lines(&sim), VALIDATE_SEQUENCE);
}

#[tokio::test]
async fn invalid_config_sends_nothing() {
    let sim = Simulator::start().await.unwrap();
    let cases = [
        ("http://tenant.sentinelone.net", tokens::ADMIN),
        ("tenant.sentinelone.net:8443", tokens::ADMIN),
        ("127.0.0.1", tokens::ADMIN),
        ("console.sentinelone.net", tokens::ADMIN),
        ("", tokens::ADMIN),
        (CONSOLE, ""),
        (CONSOLE, "two words"),
    ];
    for (console, token) in cases {
        let outcome = runtime()
            .validate_connection(&connection(console, token), &policy(&sim))
            .await;
        assert!(outcome.requests.is_empty(), "{console:?}");
        let err = connector_error(outcome);
        assert_eq!(err.kind(), "invalid-config", "{console:?} {token:?}");
    }
    assert!(sim.requests().is_empty());
}

#[tokio::test]
async fn retries_reads_after_429_honouring_retry_after_and_after_503() {
    let sim = Simulator::start().await.unwrap();
    let outcome = validate(&sim, tokens::RATE_LIMITED_ONCE).await;
    assert!(outcome.result.is_ok(), "{:?}", outcome.result);
    let statuses: Vec<_> = outcome.requests.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [Some(429), Some(200), Some(200), Some(200), Some(200)]
    );
    assert!(
        outcome.elapsed >= Duration::from_secs(1),
        "Retry-After: 1 was honoured"
    );
    let lines = request_lines(&sim);
    assert_eq!(lines[0], lines[1], "the same read was sent again");

    let sim = Simulator::start().await.unwrap();
    let outcome = validate(&sim, tokens::UNAVAILABLE_ONCE).await;
    assert!(outcome.result.is_ok());
    assert_eq!(outcome.requests[0].status, Some(503));
    assert_eq!(sim.requests().len(), 5);
}

/// Validates through a console that meets the first request with `kind`,
/// checks the same read was sent again and validation went on to succeed,
/// and returns the first request's audit record.
async fn validate_past_one(kind: FaultKind) -> connector_host::AuditRecord {
    let sim = Simulator::start().await.unwrap();
    sim.add_token(
        "t-faulty-once",
        TokenProfile::admin("faulty-once").fault(Fault::first(1, kind)),
    );
    let outcome = validate(&sim, "t-faulty-once").await;
    assert!(outcome.result.is_ok(), "{:?}", outcome.result);
    assert_eq!(outcome.requests[1].status, Some(200));
    assert_eq!(outcome.requests[1].outcome, "ok");
    let lines = request_lines(&sim);
    assert_eq!(lines[0], lines[1], "the same read was sent again");
    assert_eq!(lines.len(), 5, "{lines:?}");
    outcome.requests[0].clone()
}

#[tokio::test]
async fn a_read_whose_connection_dropped_is_sent_again() {
    // Dropped before the answer's head...
    let first = validate_past_one(FaultKind::HangUp).await;
    assert_eq!(first.status, None);
    assert!(
        first
            .outcome
            .contains("connection closed before message completed"),
        "{first:?}"
    );
    // ...or part-way through its body, which is no broken answer.
    let first = validate_past_one(FaultKind::CutShort).await;
    assert_eq!(first.status, Some(200));
    assert_eq!(first.outcome, "error: connection terminated", "{first:?}");
}

#[tokio::test]
async fn persistent_429_gives_rate_limited_after_bounded_attempts() {
    let sim = Simulator::start().await.unwrap();
    let err = connector_error(validate(&sim, tokens::RATE_LIMITED).await);
    match &err {
        ConnectorError::RateLimited(r) => {
            assert_eq!(r.retry_after_seconds, Some(1));
            assert!(r.message.contains("4 attempts"), "{}", r.message);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(sim.requests().len(), 4);
}

#[tokio::test]
async fn plain_text_500_is_upstream_and_not_retried() {
    let sim = Simulator::start().await.unwrap();
    let err = connector_error(validate(&sim, tokens::SERVER_ERROR).await);
    assert_eq!(err.kind(), "upstream");
    assert!(err.message().contains("HTTP 500"), "{err:?}");
    assert!(
        err.message()
            .contains("Server could not process the request.")
    );
    assert_eq!(sim.requests().len(), 1);
}

#[tokio::test]
async fn malformed_json_is_upstream() {
    let sim = Simulator::start().await.unwrap();
    let err = connector_error(validate(&sim, tokens::MALFORMED).await);
    assert_eq!(err.kind(), "upstream");
    assert!(err.message().contains("not the expected JSON"), "{err:?}");
}

/// serde_json stops at 128 levels; the guest's shadow stack must hold that
/// many, so hostile nesting is a typed error, never a stack-overflow trap.
#[tokio::test]
async fn deeply_nested_json_is_upstream_not_a_trap() {
    let sim = Simulator::start().await.unwrap();
    let err = connector_error(validate(&sim, tokens::DEEP_JSON).await);
    assert_eq!(err.kind(), "upstream");
    assert!(err.message().contains("not the expected JSON"), "{err:?}");

    let conn = connection(CONSOLE, tokens::DEEP_JSON);
    let selector = connector_host::HostSelector::Hostname("HR-LT-0007".into());
    let host = connector_error(runtime().get_host(&conn, &selector, &policy(&sim)).await);
    assert_eq!(host.kind(), "upstream");
    assert!(host.message().contains("not agent records"), "{host:?}");
    let options = connector_host::FetchOptions {
        page_size: 10,
        lookback_seconds: None,
    };
    let page = runtime()
        .fetch_threats(&conn, None, &options, &policy(&sim))
        .await
        .result
        .expect("a page whose one item is junk");
    assert!(page.threats.is_empty());
    assert!(page.warnings[0].contains("not a threat with an id"));
}

#[tokio::test]
async fn oversized_body_is_cut_off_by_the_host_cap_and_by_the_guest_cap() {
    let sim = Simulator::start().await.unwrap();
    // Host cap (1 MiB) below the body (12 MiB).
    let policy = policy(&sim).max_response_bytes(1024 * 1024);
    let outcome = runtime()
        .validate_connection(&connection(CONSOLE, tokens::OVERSIZED), &policy)
        .await;
    assert_eq!(outcome.requests[0].outcome, "body-too-large");
    assert!(
        outcome.requests[0].bytes <= 1024 * 1024,
        "{:?}",
        outcome.requests
    );
    let err = connector_error(outcome);
    assert_eq!(err.kind(), "upstream");
    assert!(err.message().contains("larger than"), "{err:?}");

    // Host cap above the body: the guest's own 8 MiB cap stops it.
    let policy = policy_for_large(&sim);
    let outcome = runtime()
        .validate_connection(&connection(CONSOLE, tokens::OVERSIZED), &policy)
        .await;
    // The connector dropped the body part-way: the record says so, and
    // counts what it had read.
    let record = &outcome.requests[0];
    assert_eq!(
        (record.outcome.as_str(), record.status),
        ("abandoned", Some(200)),
        "{record:?}"
    );
    assert!(
        (8 * 1024 * 1024..12 * 1024 * 1024).contains(&record.bytes),
        "{record:?}"
    );
    let err = connector_error(outcome);
    assert_eq!(err.kind(), "upstream");
    assert!(err.message().contains("8388608-byte limit"), "{err:?}");
}

fn policy_for_large(sim: &Simulator) -> connector_host::CallPolicy {
    policy(sim).max_response_bytes(64 * 1024 * 1024)
}

#[tokio::test]
async fn stalled_response_times_out_as_unreachable() {
    let sim = Simulator::start().await.unwrap();
    let policy = policy(&sim).http_timeout(Duration::from_secs(1));
    let outcome = runtime()
        .validate_connection(&connection(CONSOLE, tokens::STALL), &policy)
        .await;
    assert_eq!(outcome.requests.len(), 1);
    assert_eq!(outcome.requests[0].outcome, "timeout");
    let err = connector_error(outcome);
    assert_eq!(err.kind(), "unreachable");
    assert!(err.message().contains("did not answer"), "{err:?}");
}

#[tokio::test]
async fn whole_call_deadline_stops_the_guest() {
    let sim = Simulator::start().await.unwrap();
    let policy = policy(&sim)
        .http_timeout(Duration::from_secs(30))
        .deadline(Duration::from_millis(500));
    let outcome = runtime()
        .validate_connection(&connection(CONSOLE, tokens::STALL), &policy)
        .await;
    assert!(
        matches!(outcome.result, Err(CallError::Host(HostError::Deadline(_)))),
        "{:?}",
        outcome.result
    );
    assert!(outcome.elapsed < Duration::from_secs(10));
    // The request the deadline cut off says so, and for how long it waited.
    let [record] = &outcome.requests[..] else {
        panic!("one request: {:?}", outcome.requests)
    };
    assert_eq!(
        (record.outcome.as_str(), record.status),
        ("cut-off", None),
        "{record:?}"
    );
    assert!(
        (450..5_000).contains(&record.duration_ms),
        "waited until the deadline: {record:?}"
    );
}

#[tokio::test]
async fn egress_policy_denies_other_domains_before_any_connection() {
    let sim = Simulator::start().await.unwrap();
    let outcome = runtime()
        .validate_connection(&connection("edr.example.com", tokens::ADMIN), &policy(&sim))
        .await;
    assert_eq!(outcome.requests.len(), 1);
    assert!(
        outcome.requests[0].outcome.starts_with("denied"),
        "{:?}",
        outcome.requests
    );
    assert_eq!(outcome.requests[0].host, "edr.example.com");
    let err = connector_error(outcome);
    assert_eq!(err.kind(), "egress-denied");
    assert!(err.message().contains("edr.example.com"));
    assert!(sim.requests().is_empty());

    // Routing a name to loopback does not bypass the allow-list either.
    let egress = EgressPolicy::default()
        .connect_to("edr.example.com", sim.addr())
        .unwrap();
    let policy = connector_host::CallPolicy::with_egress(egress);
    let err = connector_error(
        runtime()
            .validate_connection(&connection("edr.example.com", tokens::ADMIN), &policy)
            .await,
    );
    assert_eq!(err.kind(), "egress-denied");
    assert!(sim.requests().is_empty());
}

#[tokio::test]
async fn unresolvable_hostname_is_unreachable_naming_the_host_and_the_fix() {
    let egress = EgressPolicy::default().allow_domain("invalid").unwrap();
    let policy = connector_host::CallPolicy::with_egress(egress);
    let outcome = runtime()
        .validate_connection(
            &connection("no-such-tenant.invalid", tokens::ADMIN),
            &policy,
        )
        .await;
    let audited = &outcome.requests[0].outcome;
    assert!(
        audited.starts_with("error: the name did not resolve: "),
        "{audited}"
    );
    let err = connector_error(outcome);
    assert_eq!(err.kind(), "unreachable");
    assert!(
        err.message()
            .contains("no-such-tenant.invalid does not resolve"),
        "{err:?}"
    );
    // The console is on a domain of its own: its whole name is entered.
    assert!(
        err.message()
            .contains("outside sentinelone.net it is the whole hostname"),
        "{err:?}"
    );
    assert!(
        !err.message().contains("invalid.sentinelone.net"),
        "{err:?}"
    );
    // A network that reaches the internet only through a proxy often
    // resolves no outside names either.
    assert!(
        err.message()
            .ends_with("through a proxy, which it must be set to use.")
    );
}

#[tokio::test]
async fn forbidden_on_every_probe_is_reported_not_fatal() {
    let sim = Simulator::start().await.unwrap();
    sim.add_token(
        "custom-role-token",
        TokenProfile::admin("custom").fault(Fault::always(FaultKind::Forbidden).on_path("/agents")),
    );
    let report = validate(&sim, "custom-role-token").await.result.unwrap();
    assert_eq!(report.permissions[0].state, PermissionState::Denied);
    assert!(
        report.permissions[0]
            .detail
            .contains("Insufficient permissions")
    );
}

#[tokio::test]
async fn a_host_that_is_not_a_console_gives_not_found() {
    let sim = Simulator::start().await.unwrap();
    sim.add_token(
        "not-a-console-token",
        TokenProfile::admin("web").fault(Fault::always(FaultKind::NotFound)),
    );
    let outcome = validate(&sim, "not-a-console-token").await;
    let err = connector_error(outcome);
    assert_eq!(err.kind(), "not-found");
    assert!(err.message().contains("404 page not found"), "{err:?}");
    assert!(err.message().contains("is your management console"));
    // Token details 404 only loses the expiry; the user read's 404 ends it.
    assert_eq!(
        request_lines(&sim),
        [
            "POST /web/api/v2.1/users/api-token-details",
            "GET /web/api/v2.1/user"
        ]
    );
}

#[tokio::test]
async fn a_redirect_is_never_followed_and_the_message_says_where_it_pointed() {
    let sim = Simulator::start().await.unwrap();
    // It points back at the simulator, so a followed redirect would show
    // in the request log.
    let location = format!("http://{}/web/api/v2.1/sso-login", sim.addr());
    sim.add_token(
        "redirected-token",
        TokenProfile::admin("sso").fault(Fault::always(FaultKind::Redirect(location.clone()))),
    );
    let err = connector_error(validate(&sim, "redirected-token").await);
    assert_eq!(err.kind(), "upstream");
    assert!(
        err.message().starts_with(&format!(
            "The console redirected POST /web/api/v2.1/users/api-token-details (HTTP 302) to \
             {location}. The connector does not follow redirects"
        )),
        "{err:?}"
    );
    assert!(err.message().contains("Check the Management Hostname"));
    assert_eq!(
        request_lines(&sim),
        ["POST /web/api/v2.1/users/api-token-details"]
    );
}

#[tokio::test]
async fn describe_lists_the_form_and_actions() {
    let info = runtime().describe().await.unwrap();
    assert_eq!(info.id, "sentinelone");
    assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
    let host = &info.connection_fields[0];
    assert_eq!(
        (host.name.as_str(), host.label.as_str()),
        ("management-host", "Management Hostname")
    );
    assert!(
        host.help.contains("u1234-s123.sentinelone.net") && host.help.contains("enter u1234-s123")
    );
    assert!(!host.secret && host.required);
    let token = &info.connection_fields[1];
    assert_eq!((token.label.as_str(), token.secret), ("API Token", true));
    assert!(
        info.actions
            .iter()
            .any(|a| a.id == "validate-connection" && !a.destructive)
    );
}

#[tokio::test]
async fn a_console_echoing_the_token_never_gets_it_into_the_report() {
    let sim = Simulator::start().await.unwrap();
    let outcome = validate(&sim, tokens::ECHO).await;
    let everything = format!("{outcome:?}");
    assert!(!everything.contains(tokens::ECHO), "{everything}");
    let report = outcome.result.unwrap();
    assert_eq!(
        (report.user.as_deref(), report.role.as_deref()),
        (Some("SOAR Automation [REDACTED]"), Some("Admin [REDACTED]"))
    );
}

/// The two fields mixed up, refused before any request: the token pasted
/// into the Management Hostname field, whole or cut short, is never quoted
/// back, and a console address in the token field is named as such instead
/// of the console's 401.
/// An embedder may log a connection with `{:?}`: the token shows nowhere in
/// it, not even pasted into the hostname or a protected host.
#[test]
fn a_connections_debug_never_shows_the_token() {
    const TOKEN: &str = "eyJraWQiOiJ1cy1lYXN0LTEifQ.eyJzdWIiOiJib2IifQ.ZGVidWctbGVhaw";
    let mut pasted_everywhere = connector_host::Connection::new(TOKEN, TOKEN);
    pasted_everywhere.protected_hosts = vec!["DC-01".into(), format!("DC-02 {}", &TOKEN[10..40])];
    let shown = format!("{pasted_everywhere:?}");
    assert_eq!(
        shown,
        "Connection { management_host: \"[REDACTED]\", api_token: \"[REDACTED]\", \
         protected_hosts: [\"DC-01\", \"DC-02 [REDACTED]\"] }"
    );
    let plain = connector_host::Connection::new("u1234-s123", TOKEN);
    assert!(format!("{plain:?}").contains("management_host: \"u1234-s123\""));
}

#[tokio::test]
async fn a_token_in_the_wrong_field_is_never_quoted_back() {
    const TOKEN: &str = "eyJraWQiOiJ1cy1lYXN0LTEtcHJvZC0wIn0.eyJzdWIiOiJib2JAYWNtZS5jb20iLCJ0eXBlIjoidXNlciJ9.Zm9vYmFyYmF6cXV4";
    let sim = Simulator::start().await.unwrap();
    // Any 16-character run of the token, in the output, is a leak.
    let leaks = |text: &str| (0..=TOKEN.len() - 16).find(|&at| text.contains(&TOKEN[at..at + 16]));
    // Upper case is still a DNS name, and a name the token's runs, which
    // are case-sensitive, would not find.
    let consoles = [
        TOKEN.to_owned(),
        format!("https://{}", &TOKEN[..90]),
        TOKEN.to_ascii_uppercase(),
    ];
    for console in consoles {
        let outcome = runtime()
            .validate_connection(&connection(&console, TOKEN), &policy(&sim))
            .await;
        assert!(outcome.requests.is_empty(), "{:?}", outcome.requests);
        let err = connector_error(outcome);
        assert_eq!(err.kind(), "invalid-config");
        assert!(
            err.message()
                .starts_with("The Management Hostname holds the API token"),
            "{err:?}"
        );
        assert_eq!(leaks(err.message()), None, "{err:?}");
    }
    let swapped = runtime()
        .validate_connection(
            &connection(CONSOLE, "https://u1234-s123.sentinelone.net/"),
            &policy(&sim),
        )
        .await;
    assert!(swapped.requests.is_empty(), "{:?}", swapped.requests);
    let err = connector_error(swapped);
    assert_eq!(err.kind(), "invalid-config");
    assert!(
        err.message()
            .starts_with("The API token field holds a console address, not a token."),
        "{err:?}"
    );
    assert!(sim.requests().is_empty(), "{:?}", sim.requests());
}
