//! End-to-end response actions: every assertion on what was *sent* reads the
//! simulator's request log, because "isolated the right machine" is a fact
//! about the request, not about the result the connector reports.

mod support;

use std::time::Duration;

use connector_host::simulator::{Fault, FaultKind, Simulator, TokenProfile, agents, tokens};
use connector_host::{
    ActionOptions, CallError, ConnectorError, HostSelector, NetworkState, PermissionState,
};
use serde_json::json;
use support::*;

const DISCONNECT: &str = "/web/api/v2.1/agents/actions/disconnect";
const CONNECT: &str = "/web/api/v2.1/agents/actions/connect";

fn body_for(id: &str) -> serde_json::Value {
    json!({"filter": {"ids": [id]}, "data": {}})
}

fn error<T: std::fmt::Debug>(outcome: connector_host::Outcome<T>) -> ConnectorError {
    match outcome.result {
        Err(CallError::Connector(e)) => e,
        other => panic!("expected a connector error, got {other:?}"),
    }
}

async fn isolate(
    sim: &Simulator,
    token: &str,
    selector: HostSelector,
    options: ActionOptions,
) -> connector_host::Outcome<connector_host::ActionOutcome> {
    runtime()
        .isolate_host(
            &connection(CONSOLE, token),
            &selector,
            &options,
            &policy(sim),
        )
        .await
}

#[tokio::test]
async fn every_selector_kind_isolates_exactly_the_named_agent() {
    let selectors = [
        HostSelector::AgentId(agents::FINANCE_LAPTOP.into()),
        HostSelector::Uuid("B7B2D39171BE4AE1AF90F93D7ED20000".into()),
        // Dashed, as tools other than the console print it.
        HostSelector::Uuid("b7b2d391-71be-4ae1-af90-f93d7ed20000".into()),
        HostSelector::Hostname("fin-lt-0042".into()),
        HostSelector::Ip("10.0.0.1".into()),
        HostSelector::Ip("fe80::1".into()),
        HostSelector::Mac("00:B0:D0:63:C2:26".into()),
        HostSelector::Mac("00b0.d063.c226".into()),
    ];
    for selector in selectors {
        let sim = Simulator::start().await.unwrap();
        let outcome = isolate(&sim, tokens::ADMIN, selector.clone(), no_options()).await;
        let done = outcome
            .result
            .unwrap_or_else(|e| panic!("{selector:?}: {e}"));
        assert_eq!(done.host.agent_id, agents::FINANCE_LAPTOP, "{selector:?}");
        assert!(done.changed);
        assert_eq!(done.network_state, NetworkState::Disconnecting);
        assert_eq!(
            action_posts(&sim),
            [(DISCONNECT.to_owned(), body_for(agents::FINANCE_LAPTOP))],
            "{selector:?}"
        );
        assert_eq!(
            sim.network_status(agents::FINANCE_LAPTOP).as_deref(),
            Some("disconnected")
        );
        assert_eq!(
            sim.network_status(agents::PREFIX_TRAP).as_deref(),
            Some("connected")
        );
    }
}

#[tokio::test]
async fn an_ip_that_is_a_prefix_of_another_never_matches_it() {
    let sim = Simulator::start().await.unwrap();
    let done = isolate(
        &sim,
        tokens::ADMIN,
        HostSelector::Ip("10.0.0.1".into()),
        no_options(),
    )
    .await
    .result
    .unwrap();
    assert_eq!(done.host.hostname, "FIN-LT-0042");
    // The server's substring filter returned both; only the exact one was acted on.
    let first = &sim.requests()[0];
    assert_eq!(
        first.query.as_deref(),
        Some("networkInterfaceInet__contains=10.0.0.1&limit=200&skipCount=true")
    );
    assert_eq!(
        action_posts(&sim),
        [(DISCONNECT.to_owned(), body_for(agents::FINANCE_LAPTOP))]
    );

    let sim = Simulator::start().await.unwrap();
    let done = isolate(
        &sim,
        tokens::ADMIN,
        HostSelector::Ip("10.0.0.12".into()),
        no_options(),
    )
    .await
    .result
    .unwrap();
    assert_eq!(done.host.agent_id, agents::PREFIX_TRAP);
}

/// The simulator's `computerName` filter is case-sensitive, as the real
/// one probably is, and the two agents' names differ in case: asking for
/// either spelling, or a third, must still find both.
#[tokio::test]
async fn two_agents_with_one_hostname_are_ambiguous_and_nothing_is_sent() {
    let sim = Simulator::start().await.unwrap();
    for name in [
        "RECEPTION-PC",
        "Reception-PC",
        "reception-pc",
        "reception-PC",
    ] {
        sim.clear_requests();
        let err = error(
            isolate(
                &sim,
                tokens::ADMIN,
                HostSelector::Hostname(name.into()),
                no_options(),
            )
            .await,
        );
        let ConnectorError::Ambiguous(a) = &err else {
            panic!("{name}: {err:?}")
        };
        let ids: Vec<_> = a.candidates.iter().map(|h| h.agent_id.as_str()).collect();
        assert_eq!(
            ids,
            [agents::RECEPTION_OLD, agents::RECEPTION_NEW],
            "{name}"
        );
        let names: Vec<_> = a.candidates.iter().map(|h| h.hostname.as_str()).collect();
        assert_eq!(names, ["Reception-PC", "RECEPTION-PC"]);
        assert!(
            a.candidates
                .iter()
                .all(|h| h.site == "HQ" && h.last_active.is_some())
        );
        assert!(a.message.contains("agent id"), "{}", a.message);
        assert!(action_posts(&sim).is_empty());
        let searches: Vec<_> = sim
            .requests()
            .into_iter()
            .map(|r| (r.method, r.path, r.query.unwrap_or_default()))
            .collect();
        let variants = [name.to_owned(), name.to_uppercase(), name.to_lowercase()];
        let mut unique: Vec<&str> = Vec::new();
        for v in &variants {
            if !unique.contains(&v.as_str()) {
                unique.push(v);
            }
        }
        assert_eq!(
            searches,
            [(
                "GET".to_owned(),
                "/web/api/v2.1/agents".to_owned(),
                format!(
                    "computerName__contains={}&limit=200&skipCount=true",
                    unique.join("%2C")
                )
            )]
        );
    }

    // Retrying with the agent id then works.
    let done = isolate(
        &sim,
        tokens::ADMIN,
        HostSelector::AgentId(agents::RECEPTION_NEW.into()),
        no_options(),
    )
    .await;
    assert_eq!(done.result.unwrap().host.agent_id, agents::RECEPTION_NEW);
    assert_eq!(
        action_posts(&sim),
        [(DISCONNECT.to_owned(), body_for(agents::RECEPTION_NEW))]
    );
}

#[tokio::test]
async fn decommissioned_agents_are_ignored() {
    let sim = Simulator::start().await.unwrap();
    let host = runtime()
        .get_host(
            &connection(CONSOLE, tokens::ADMIN),
            &HostSelector::Hostname("HR-LT-0007".into()),
            &policy(&sim),
        )
        .await
        .result
        .unwrap();
    assert_eq!(host.agent_id, agents::HR_LAPTOP);
    let err = error(
        runtime()
            .get_host(
                &connection(CONSOLE, tokens::ADMIN),
                &HostSelector::AgentId(agents::DECOMMISSIONED.into()),
                &policy(&sim),
            )
            .await,
    );
    assert_eq!(err.kind(), "not-found");
}

#[tokio::test]
async fn no_match_is_not_found_and_nothing_is_sent() {
    let sim = Simulator::start().await.unwrap();
    for selector in [
        HostSelector::Hostname("NO-SUCH-HOST".into()),
        HostSelector::Ip("10.9.9.9".into()),
        HostSelector::Mac("de:ad:be:ef:00:01".into()),
        HostSelector::AgentId("1".into()),
    ] {
        let err = error(isolate(&sim, tokens::ADMIN, selector.clone(), no_options()).await);
        assert_eq!(err.kind(), "not-found", "{selector:?}");
        assert!(err.message().contains("No active SentinelOne agent"));
    }
    assert!(action_posts(&sim).is_empty());
}

#[tokio::test]
async fn malformed_selectors_are_invalid_config_and_send_nothing() {
    let sim = Simulator::start().await.unwrap();
    for selector in [
        HostSelector::AgentId("12; DROP".into()),
        HostSelector::Ip("10.0.0".into()),
        HostSelector::Mac("00:11".into()),
        HostSelector::Hostname("".into()),
        HostSelector::Hostname("A,B".into()),
        HostSelector::Uuid("not hex!".into()),
    ] {
        let outcome = isolate(&sim, tokens::ADMIN, selector.clone(), no_options()).await;
        assert!(outcome.requests.is_empty());
        assert_eq!(error(outcome).kind(), "invalid-config", "{selector:?}");
    }
    assert!(sim.requests().is_empty());
}

/// A computer name goes to the console as a search filter, into its request
/// logs: a token pasted into the host field must never leave.
#[tokio::test]
async fn a_token_pasted_as_the_host_is_refused_and_never_sent() {
    const TOKEN: &str = "eyJraWQiOiJ1cy1lYXN0LTEifQ.eyJzdWIiOiJib2IifQ.c2ltLXRva2VuLWJ5dGVz";
    let sim = Simulator::start().await.unwrap();
    sim.add_token(TOKEN, TokenProfile::admin("bob"));
    let leaks = |text: &str| (0..=TOKEN.len() - 16).find(|&at| text.contains(&TOKEN[at..at + 16]));
    for selector in [
        HostSelector::Hostname(TOKEN.into()),
        HostSelector::Hostname(format!("reception-pc {}", &TOKEN[20..44])),
        HostSelector::Uuid(TOKEN.into()),
    ] {
        let outcome = isolate(&sim, TOKEN, selector.clone(), no_options()).await;
        assert!(outcome.requests.is_empty(), "{:?}", outcome.requests);
        let err = error(outcome);
        assert_eq!(err.kind(), "invalid-config", "{selector:?}");
        assert!(
            err.message()
                .starts_with("The host to act on holds the API token"),
            "{err:?}"
        );
        assert_eq!(leaks(err.message()), None, "{err:?}");
        let found = runtime()
            .get_host(&connection(CONSOLE, TOKEN), &selector, &policy(&sim))
            .await;
        assert_eq!(error(found).kind(), "invalid-config", "{selector:?}");
    }
    assert!(sim.requests().is_empty(), "{:?}", sim.requests());
}

#[tokio::test]
async fn already_in_the_asked_state_succeeds_unchanged_without_a_post() {
    let sim = Simulator::start().await.unwrap();
    let done = isolate(
        &sim,
        tokens::ADMIN,
        HostSelector::Hostname("ISOLATED-SRV".into()),
        no_options(),
    )
    .await
    .result
    .unwrap();
    assert!(!done.changed);
    assert_eq!(done.network_state, NetworkState::Disconnected);
    let done = runtime()
        .release_host(
            &connection(CONSOLE, tokens::ADMIN),
            &HostSelector::Hostname("FIN-LT-0042".into()),
            &no_options(),
            &policy(&sim),
        )
        .await
        .result
        .unwrap();
    assert!(!done.changed);
    assert_eq!(done.network_state, NetworkState::Connected);
    sim.set_network_status(agents::FINANCE_LAPTOP, "disconnecting");
    let done = isolate(
        &sim,
        tokens::ADMIN,
        HostSelector::Hostname("FIN-LT-0042".into()),
        no_options(),
    )
    .await
    .result
    .unwrap();
    assert!(!done.changed);
    assert!(action_posts(&sim).is_empty());
}

#[tokio::test]
async fn protected_hosts_are_refused_from_options_or_connection() {
    let sim = Simulator::start().await.unwrap();
    for entry in [
        "dc-01",
        "DC-01.corp.example",
        agents::DOMAIN_CONTROLLER,
        "10.0.0.2",
        "10.0.0.0/30",
        "00:15:5D:00:00:09",
        "SQL-01, dc-01",
        "B7B2D391-71BE-4AE1-AF90-F93D7ED20008",
    ] {
        let options = ActionOptions {
            protected_hosts: vec![entry.into()],
            wait_seconds: 0,
        };
        let err = error(
            isolate(
                &sim,
                tokens::ADMIN,
                HostSelector::Hostname("DC-01".into()),
                options,
            )
            .await,
        );
        assert_eq!(err.kind(), "protected-host", "{entry}");
        assert!(err.message().contains("DC-01"));
    }
    let mut conn = connection(CONSOLE, tokens::ADMIN);
    conn.protected_hosts = vec!["10.0.0.2".into()];
    let err = error(
        runtime()
            .isolate_host(
                &conn,
                &HostSelector::Ip("10.0.0.2".into()),
                &no_options(),
                &policy(&sim),
            )
            .await,
    );
    assert_eq!(err.kind(), "protected-host");
    assert!(action_posts(&sim).is_empty());
    // The form's own example, typed into one text box, protects each item.
    let info = runtime().describe().await.unwrap();
    let field = info
        .connection_fields
        .iter()
        .find(|f| f.name == "protected-hosts");
    conn.protected_hosts = vec![field.unwrap().example.clone()];
    let err = error(
        runtime()
            .isolate_host(
                &conn,
                &HostSelector::Hostname("dc-01".into()),
                &no_options(),
                &policy(&sim),
            )
            .await,
    );
    assert_eq!(
        err.message(),
        "DC-01 (agent 1900000000000000009) is on the protected-hosts list (as \"DC-01\") and must \
         never be isolated, so nothing was sent. Remove it from the connection's protected hosts \
         if isolating it is really intended."
    );
    assert!(action_posts(&sim).is_empty());
    // A protected entry never blocks a different host with a similar name or IP.
    let options = ActionOptions {
        protected_hosts: vec!["10.0.0.1".into(), "FIN-LT-004".into()],
        wait_seconds: 0,
    };
    assert!(
        isolate(
            &sim,
            tokens::ADMIN,
            HostSelector::Ip("10.0.0.12".into()),
            options
        )
        .await
        .result
        .is_ok()
    );
}

#[tokio::test]
async fn zero_affected_is_an_error_that_says_why() {
    let sim = Simulator::start().await.unwrap();
    let err = error(
        isolate(
            &sim,
            tokens::ADMIN,
            HostSelector::Hostname("WAREHOUSE-WS".into()),
            no_options(),
        )
        .await,
    );
    assert_eq!(err.kind(), "upstream");
    assert!(
        err.message().contains("affected no agent") && err.message().contains("offline"),
        "{err:?}"
    );
    assert_eq!(
        action_posts(&sim),
        [(DISCONNECT.to_owned(), body_for(agents::OFFLINE))]
    );
}

fn faulty(kind: FaultKind) -> TokenProfile {
    TokenProfile::admin("faulty").fault(Fault::always(kind).on_path("/agents/actions"))
}

/// A proxy that garbled a byte of the agent list (not UTF-8) leaves the
/// rest of the answer readable: the agent named by id is isolated, and the
/// garbled name matches no hostname, so nothing is isolated by it.
#[tokio::test]
async fn an_agent_list_with_bytes_that_are_not_utf8_still_reads() {
    const TOKEN: &str = "sim-garbled-agents-5d20e1";
    let sim = Simulator::start().await.unwrap();
    let garbled = Fault::always(FaultKind::Garbled).on_path("/agents");
    sim.add_token(TOKEN, TokenProfile::admin("garbled").fault(garbled));
    let by_id = HostSelector::AgentId(agents::FINANCE_LAPTOP.into());
    let done = isolate(&sim, TOKEN, by_id, no_options())
        .await
        .result
        .unwrap();
    assert_eq!(done.host.agent_id, agents::FINANCE_LAPTOP);
    assert!(done.host.hostname.starts_with('\u{fffd}'), "{done:?}");
    assert_eq!(
        action_posts(&sim),
        [(DISCONNECT.to_owned(), body_for(agents::FINANCE_LAPTOP))]
    );
    let sim = Simulator::start().await.unwrap();
    let garbled = Fault::always(FaultKind::Garbled).on_path("/agents");
    sim.add_token(TOKEN, TokenProfile::admin("garbled").fault(garbled));
    let by_name = HostSelector::Hostname("fin-lt-0042".into());
    let err = error(isolate(&sim, TOKEN, by_name, no_options()).await);
    assert_eq!(err.kind(), "not-found", "{err:?}");
    assert!(action_posts(&sim).is_empty());
}

/// Isolates FIN-LT-0042 on a fresh simulator whose isolate POST meets
/// `kind`; the simulator is returned for its request log.
async fn isolate_meeting(
    kind: FaultKind,
) -> (
    Simulator,
    connector_host::Outcome<connector_host::ActionOutcome>,
) {
    let sim = Simulator::start().await.unwrap();
    sim.add_token("t-faulty-token", faulty(kind));
    let outcome = isolate(
        &sim,
        "t-faulty-token",
        HostSelector::Hostname("FIN-LT-0042".into()),
        no_options(),
    )
    .await;
    (sim, outcome)
}

#[tokio::test]
async fn server_error_on_the_post_is_never_resent_and_the_state_is_reported() {
    // The server did not act: the re-read shows it, and the admin may retry.
    let (sim, outcome) = isolate_meeting(FaultKind::PlainTextError).await;
    let err = error(outcome);
    assert_eq!(err.kind(), "upstream");
    assert!(
        err.message().contains("HTTP 500") && err.message().contains("still reports connected"),
        "{err:?}"
    );
    assert_eq!(action_posts(&sim).len(), 1);

    // The server acted, then failed: the re-read shows the isolation.
    let (sim, outcome) = isolate_meeting(FaultKind::ErrorAfterApplying).await;
    let done = outcome.result.unwrap();
    assert!(done.changed);
    assert!(
        done.detail.starts_with("The isolate was accepted: "),
        "{}",
        done.detail
    );
    assert_eq!(action_posts(&sim).len(), 1);
}

/// Isolates FIN-LT-0042 through a console that acts on the POST and then
/// drops the connection as `kind` says, and checks the outcome: accepted,
/// read back rather than guessed, the failure named a dropped connection,
/// and the POST sent once.
async fn accepted_though_dropped(
    kind: FaultKind,
) -> connector_host::Outcome<connector_host::ActionOutcome> {
    let (sim, outcome) = isolate_meeting(kind).await;
    shows_accepted_though_dropped(&sim, &outcome);
    outcome
}

/// An isolate of FIN-LT-0042 that the console carried out, then dropped the
/// connection on: read back, reported, and sent once.
fn shows_accepted_though_dropped(
    sim: &Simulator,
    outcome: &connector_host::Outcome<connector_host::ActionOutcome>,
) {
    let done = outcome.result.as_ref().unwrap();
    assert!(done.changed);
    // `disconnecting` or `disconnected`, as the simulated agent confirms.
    let verdict = format!(
        "The isolate was accepted: agent {} (FIN-LT-0042) now reports disconnect",
        done.host.agent_id
    );
    assert!(done.detail.starts_with(&verdict), "{}", done.detail);
    assert!(
        done.detail.ends_with(
            ", although the request itself failed (The connection to tenant.sentinelone.net \
             closed before the answer to POST /web/api/v2.1/agents/actions/disconnect was \
             complete: the console, or a proxy on the way, dropped it)."
        ),
        "{}",
        done.detail
    );
    assert_eq!(action_posts(sim).len(), 1);
}

#[tokio::test]
async fn a_post_the_console_hung_up_on_is_looked_for_and_never_resent() {
    // The console acted, then dropped the connection: the request did
    // arrive, so the connector must look, not say it never left.
    accepted_though_dropped(FaultKind::HangUpAfterApplying).await;

    // It dropped the connection without acting: the read-back says so.
    let (sim, outcome) = isolate_meeting(FaultKind::HangUp).await;
    let err = error(outcome);
    assert_eq!(err.kind(), "upstream");
    assert!(
        err.message().contains("closed before the answer")
            && err
                .message()
                .contains("still reports connected, so the isolate has not started"),
        "{err:?}"
    );
    assert!(!err.message().contains("never reached"), "{err:?}");
    assert_eq!(action_posts(&sim).len(), 1);
}

#[tokio::test]
async fn a_post_whose_answer_was_cut_short_is_looked_for_and_never_resent() {
    // The console acted and began to answer, then the connection dropped
    // halfway through the body: that is a dropped connection, not a
    // console that broke HTTP.
    let outcome = accepted_though_dropped(FaultKind::CutShort).await;
    let post = outcome
        .requests
        .iter()
        .find(|r| r.method == "POST")
        .unwrap();
    assert_eq!(post.status, Some(200));
    assert_eq!(post.outcome, "error: connection terminated");
}

#[tokio::test]
async fn the_simulators_cut_short_token_drops_every_action_answer() {
    // `connector-host simulate` offers this fault to try by hand.
    let sim = Simulator::start().await.unwrap();
    let outcome = isolate(
        &sim,
        tokens::ACTION_CUT_SHORT,
        HostSelector::Hostname("FIN-LT-0042".into()),
        no_options(),
    )
    .await;
    shows_accepted_though_dropped(&sim, &outcome);
}

#[tokio::test]
async fn a_timed_out_post_is_not_resent() {
    let sim = Simulator::start().await.unwrap();
    sim.add_token("t-stall-token", faulty(FaultKind::Stall));
    let policy = policy(&sim).http_timeout(Duration::from_secs(1));
    let outcome = runtime()
        .isolate_host(
            &connection(CONSOLE, "t-stall-token"),
            &HostSelector::Hostname("FIN-LT-0042".into()),
            &no_options(),
            &policy,
        )
        .await;
    let err = error(outcome);
    assert_eq!(err.kind(), "upstream");
    assert!(err.message().contains("still reports connected"), "{err:?}");
    assert_eq!(action_posts(&sim).len(), 1);
}

#[tokio::test]
async fn a_429_on_the_post_is_retried_after_retry_after() {
    let sim = Simulator::start().await.unwrap();
    sim.add_token(
        "t-429-once",
        TokenProfile::admin("429-once").fault(
            Fault::first(1, FaultKind::RateLimited { retry_after: 1 }).on_path("/agents/actions"),
        ),
    );
    let done = isolate(
        &sim,
        "t-429-once",
        HostSelector::Hostname("FIN-LT-0042".into()),
        no_options(),
    )
    .await
    .result
    .unwrap();
    assert!(done.changed);
    let posts = action_posts(&sim);
    assert_eq!(posts.len(), 2);
    assert!(
        posts
            .iter()
            .all(|p| p.1 == body_for(agents::FINANCE_LAPTOP))
    );
}

#[tokio::test]
async fn forbidden_action_names_the_permission() {
    let sim = Simulator::start().await.unwrap();
    let err = error(
        isolate(
            &sim,
            tokens::VIEWER,
            HostSelector::Hostname("FIN-LT-0042".into()),
            no_options(),
        )
        .await,
    );
    assert_eq!(err.kind(), "forbidden");
    assert!(
        err.message().contains("Endpoints.disconnectFromNetwork"),
        "{err:?}"
    );
    let err = error(
        runtime()
            .release_host(
                &connection(CONSOLE, tokens::VIEWER),
                &HostSelector::Hostname("ISOLATED-SRV".into()),
                &no_options(),
                &policy(&sim),
            )
            .await,
    );
    assert_eq!(err.kind(), "forbidden");
    assert!(
        err.message().contains("Endpoints.reconnectToNetwork"),
        "{err:?}"
    );
    assert_eq!(
        action_posts(&sim).len(),
        2,
        "one refused attempt each, not retried"
    );
}

/// A wait longer than the call's deadline allows is shortened, so the call
/// returns the outcome of the action it took instead of being killed at
/// its deadline, and the polls back off instead of reading every second.
#[tokio::test]
async fn a_wait_past_the_deadline_is_shortened_and_said_so() {
    let sim = Simulator::start().await.unwrap();
    sim.never_confirm(agents::FINANCE_LAPTOP);
    let options = ActionOptions {
        protected_hosts: vec![],
        wait_seconds: 300,
    };
    let policy = policy(&sim).deadline(Duration::from_secs(8));
    let outcome = runtime()
        .isolate_host(
            &connection(CONSOLE, tokens::ADMIN),
            &HostSelector::AgentId(agents::FINANCE_LAPTOP.into()),
            &options,
            &policy,
        )
        .await;
    let done = outcome.result.unwrap();
    assert_eq!(done.network_state, NetworkState::Disconnecting);
    assert!(
        done.detail.ends_with(
            "the console now reports disconnecting. The wait was shortened from 300 s to 4 s to \
             fit this call's deadline of 8 s."
        ),
        "{}",
        done.detail
    );
    assert!(
        outcome.elapsed >= Duration::from_secs(4),
        "{:?}",
        outcome.elapsed
    );
    assert!(
        outcome.elapsed < Duration::from_secs(8),
        "{:?}",
        outcome.elapsed
    );
    // Resolve, POST, then reads at 0, 1, 3 and 4 s (pauses of 1, 2, 1).
    let reads = sim.requests().iter().filter(|r| r.method == "GET").count();
    assert_eq!(reads, 5);
    assert_eq!(action_posts(&sim).len(), 1);
}

#[tokio::test]
async fn wait_polls_until_the_agent_confirms_then_release_mirrors() {
    let sim = Simulator::start().await.unwrap();
    let options = ActionOptions {
        protected_hosts: vec![],
        wait_seconds: 10,
    };
    let done = isolate(
        &sim,
        tokens::ADMIN,
        HostSelector::AgentId(agents::FINANCE_LAPTOP.into()),
        options.clone(),
    )
    .await
    .result
    .unwrap();
    assert_eq!(done.network_state, NetworkState::Disconnected);
    let done = runtime()
        .release_host(
            &connection(CONSOLE, tokens::ADMIN),
            &HostSelector::AgentId(agents::FINANCE_LAPTOP.into()),
            &options,
            &policy(&sim),
        )
        .await
        .result
        .unwrap();
    assert!(done.changed);
    assert_eq!(done.network_state, NetworkState::Connected);
    assert_eq!(
        action_posts(&sim),
        [
            (DISCONNECT.to_owned(), body_for(agents::FINANCE_LAPTOP)),
            (CONNECT.to_owned(), body_for(agents::FINANCE_LAPTOP))
        ]
    );
}

#[tokio::test]
async fn validate_reports_the_action_permissions_as_unverifiable() {
    let sim = Simulator::start().await.unwrap();
    let report = validate(&sim, tokens::ADMIN).await.result.unwrap();
    let actions: Vec<_> = report.permissions[2..]
        .iter()
        .map(|p| (p.permission.as_str(), p.state))
        .collect();
    assert_eq!(
        actions,
        [
            ("Endpoints.disconnectFromNetwork", PermissionState::Unknown),
            ("Endpoints.reconnectToNetwork", PermissionState::Unknown)
        ]
    );
}

#[tokio::test]
async fn describe_marks_isolate_and_release_destructive() {
    let info = runtime().describe().await.unwrap();
    let flags: Vec<_> = info
        .actions
        .iter()
        .map(|a| (a.id.as_str(), a.destructive))
        .collect();
    assert_eq!(
        flags,
        [
            ("validate-connection", false),
            ("get-host", false),
            ("isolate-host", true),
            ("release-host", true),
            ("fetch-threats", false)
        ]
    );
    assert!(
        info.connection_fields
            .iter()
            .any(|f| f.name == "protected-hosts" && !f.required)
    );
}

#[tokio::test]
async fn a_console_echoing_the_token_never_gets_it_into_a_host_or_an_outcome() {
    let sim = Simulator::start().await.unwrap();
    let echo = |outcome: &dyn std::fmt::Debug| {
        let everything = format!("{outcome:?}");
        assert!(!everything.contains(tokens::ECHO), "{everything}");
    };
    let selector = HostSelector::AgentId(agents::FINANCE_LAPTOP.into());
    let found = runtime()
        .get_host(&connection(CONSOLE, tokens::ECHO), &selector, &policy(&sim))
        .await;
    echo(&found);
    let host = found.result.unwrap();
    assert_eq!(
        (host.site.as_str(), host.os.as_str()),
        ("HQ [REDACTED]", "Windows 11 Pro [REDACTED]")
    );

    let acted = isolate(&sim, tokens::ECHO, selector, no_options()).await;
    echo(&acted);
    let outcome = acted.result.unwrap();
    assert!(outcome.changed);
    assert_eq!(outcome.host.account, "Acme [REDACTED]");
    assert_eq!(
        action_posts(&sim),
        [(DISCONNECT.to_owned(), body_for(agents::FINANCE_LAPTOP))]
    );

    let refused = isolate(
        &sim,
        tokens::ECHO,
        HostSelector::Hostname("RECEPTION-PC".into()),
        no_options(),
    )
    .await;
    echo(&refused);
    let ConnectorError::Ambiguous(details) = error(refused) else {
        panic!("expected ambiguous");
    };
    assert_eq!(details.candidates.len(), 2);
    assert!(details.candidates.iter().all(|h| h.site == "HQ [REDACTED]"));
}
