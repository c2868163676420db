//! `isolate-host` and `release-host`: act on exactly one agent, never twice,
//! and report the state the console shows afterwards.

use alloc::{borrow::ToOwned, format, string::String};

use core::time::Duration;

use serde_json::{Value, json};

use crate::api::{self, ActionFailure, Client, parse_json};
use crate::body;
use crate::error::{Error, Result};
use crate::hosts::{self, Host, NetworkState, Selector};
use crate::protected;
use crate::transport::{Method, Transport};

/// Longest wait for the agent to confirm a new state.
pub const MAX_WAIT: Duration = Duration::from_secs(300);
/// Time before the first state re-read while waiting; it doubles after
/// each read up to [`MAX_POLL_INTERVAL`]. Agents usually confirm within
/// seconds, and a five-minute wait then costs about 35 reads, not 300: the
/// console's rate limits and the host's request cap are shared.
const FIRST_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Longest time between state reads while waiting.
const MAX_POLL_INTERVAL: Duration = Duration::from_secs(10);

/// Which way the network switch goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Disconnect from the network.
    Isolate,
    /// Reconnect to the network.
    Release,
}

impl Direction {
    fn endpoint(self) -> &'static str {
        match self {
            Direction::Isolate => "/agents/actions/disconnect",
            Direction::Release => "/agents/actions/connect",
        }
    }

    /// The console permission the action needs.
    pub fn permission(self) -> &'static str {
        match self {
            Direction::Isolate => "Endpoints.disconnectFromNetwork",
            Direction::Release => "Endpoints.reconnectToNetwork",
        }
    }

    fn verb(self) -> &'static str {
        match self {
            Direction::Isolate => "isolate",
            Direction::Release => "release",
        }
    }

    /// Already in, or moving to, the asked-for state.
    fn already(self, state: NetworkState) -> bool {
        match self {
            Direction::Isolate => matches!(
                state,
                NetworkState::Disconnected | NetworkState::Disconnecting
            ),
            Direction::Release => {
                matches!(state, NetworkState::Connected | NetworkState::Connecting)
            }
        }
    }

    /// The agent confirmed the asked-for state.
    fn settled(self, state: NetworkState) -> bool {
        match self {
            Direction::Isolate => state == NetworkState::Disconnected,
            Direction::Release => state == NetworkState::Connected,
        }
    }
}

/// What an action did. Mirrors the WIT `action-outcome`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionOutcome {
    /// The agent, as read before acting.
    pub host: Host,
    /// False when nothing needed doing (and nothing was sent).
    pub changed: bool,
    /// The state read back afterwards.
    pub network_state: NetworkState,
    /// One sentence for the admin, then a warning if the console reports
    /// more agents affected than the one named.
    pub detail: String,
}

/// Runs the action on the one agent `selector` names. `protected` lists
/// hosts that must never be isolated; `wait` bounds polling for the agent to
/// confirm (capped at [`MAX_WAIT`]).
pub fn run<T: Transport>(
    client: &mut Client<'_, T>,
    selector: &Selector,
    direction: Direction,
    protected: &[String],
    wait: Duration,
) -> Result<ActionOutcome> {
    let host = hosts::resolve(client, selector)?;
    if direction == Direction::Isolate
        && let Some(entry) = protected::entry_naming(&host, protected)
    {
        return Err(Error::ProtectedHost(format!(
            "{} (agent {}) is on the protected-hosts list (as \"{}\") and must never be \
                 isolated, so nothing was sent. Remove it from the connection's protected hosts \
                 if isolating it is really intended.",
            host.hostname,
            host.agent_id,
            body::quote(&entry)
        )));
    }
    if direction.already(host.network_state) {
        let state = host.network_state;
        return Ok(ActionOutcome {
            detail: format!(
                "{} already reports {}; nothing was sent.",
                host.hostname,
                state.as_str()
            ),
            changed: false,
            network_state: state,
            host,
        });
    }
    let wait = wait.min(MAX_WAIT);
    let request = json!({"filter": {"ids": [host.agent_id]}, "data": {}});
    let what = api::what(Method::Post, direction.endpoint());
    let response = client.send_action(direction.endpoint(), &request);
    let failure = match response {
        Ok(r) if r.is_success() => {
            match parse_json::<Value>(&r, Method::Post, direction.endpoint()) {
                Ok(value) => match value.pointer("/data/affected").and_then(Value::as_u64) {
                    Some(0) => return Err(nothing_affected(&host, direction)),
                    Some(1) => return accepted(client, host, direction, wait, &what),
                    Some(n) => {
                        // The request named one agent id; a console that
                        // reports more has acted beyond it, and the admin
                        // must hear of it even though this agent is done.
                        let mut outcome = accepted(client, host, direction, wait, &what)?;
                        outcome.detail.push_str(&format!(
                            " Warning: the console reports {n} agents affected, although the \
                             request named only this one; check the console's activity log for \
                             which other agents were {}d.",
                            direction.verb()
                        ));
                        return Ok(outcome);
                    }
                    None => format!(
                        "The console answered {what} without an 'affected' count ({}).",
                        body::summarize(&r.body)
                    ),
                },
                Err(_) => format!(
                    "The console's answer to {what} could not be read ({}).",
                    body::summarize(&r.body)
                ),
            }
        }
        // Refused before processing: nothing happened, say why.
        Ok(r) if matches!(r.status, 400..=499) => {
            return Err(client.status_error(
                Method::Post,
                direction.endpoint(),
                &r,
                Some(direction.permission()),
            ));
        }
        Ok(r) => format!(
            "The console answered {what} with HTTP {} ({}).",
            r.status,
            body::summarize(&r.body)
        ),
        // It never left (refused by the host, no connection, no TLS): there
        // is nothing to look for, and the admin can retry safely.
        Err(ActionFailure {
            mut error,
            never_sent: true,
        }) => {
            error.message_mut().push_str(&format!(
                " The {} request never reached the console, so agent {} ({}) is unchanged.",
                direction.verb(),
                host.agent_id,
                host.hostname
            ));
            return Err(error);
        }
        // Already says what failed, in sentences of its own.
        Err(ActionFailure { error, .. }) => error.message().to_owned(),
    };
    // The console may or may not have acted: never resend, look instead.
    uncertain(client, host, direction, wait, &failure)
}

fn accepted<T: Transport>(
    client: &mut Client<'_, T>,
    host: Host,
    direction: Direction,
    wait: Duration,
    what: &str,
) -> Result<ActionOutcome> {
    // The console has acted: a failed read afterwards must not turn that
    // into an error, which would send the admin to retry an isolation that
    // is already under way.
    let (state, detail) = match poll(client, &host.agent_id, direction, wait) {
        Ok(state) => (
            state,
            format!(
                "Sent {what} for agent {} ({}); the console now reports {}.",
                host.agent_id,
                host.hostname,
                state.as_str()
            ),
        ),
        Err(e) => (
            NetworkState::Unknown,
            format!(
                "Sent {what} for agent {} ({}), and the console accepted it; reading the \
                 agent's state afterwards failed ({}), so check its state in the console.",
                host.agent_id,
                host.hostname,
                e.message().trim_end_matches('.')
            ),
        ),
    };
    Ok(ActionOutcome {
        detail,
        changed: true,
        network_state: state,
        host,
    })
}

fn uncertain<T: Transport>(
    client: &mut Client<'_, T>,
    host: Host,
    direction: Direction,
    wait: Duration,
    failure: &str,
) -> Result<ActionOutcome> {
    let verb = direction.verb();
    let state = match hosts::read_by_id(client, &host.agent_id) {
        Ok(now) => now.network_state,
        Err(e) => {
            return Err(Error::Upstream(format!(
                "{failure} Reading agent {} afterwards failed too ({}), so whether the {verb} \
                 started is unknown. Check its state in the console before retrying the {verb}.",
                host.agent_id,
                e.message().trim_end_matches('.')
            )));
        }
    };
    if !direction.already(state) {
        return Err(Error::Upstream(format!(
            "{failure} Agent {} ({}) still reports {}, so the {verb} has not started; it was not \
             resent automatically. Retry the action.",
            host.agent_id,
            host.hostname,
            state.as_str()
        )));
    }
    let state = poll(client, &host.agent_id, direction, wait).unwrap_or(state);
    // The verdict first: the failure's own advice (retry, check the
    // network) is about the request, not about this action, which is done.
    Ok(ActionOutcome {
        detail: format!(
            "The {verb} was accepted: agent {} ({}) now reports {}, although the request itself \
             failed ({}).",
            host.agent_id,
            host.hostname,
            state.as_str(),
            failure.trim_end_matches('.')
        ),
        changed: true,
        network_state: state,
        host,
    })
}

/// Reads the agent's state until it settles or `wait` passes (at least
/// once, and once more at the end of the wait). Fails only when the first
/// read does: a later failed read ends the wait with the state last read.
fn poll<T: Transport>(
    client: &mut Client<'_, T>,
    id: &str,
    direction: Direction,
    wait: Duration,
) -> Result<NetworkState> {
    let started = client.now();
    let mut interval = FIRST_POLL_INTERVAL;
    let mut last = None;
    loop {
        let state = match hosts::read_by_id(client, id) {
            Ok(agent) => agent.network_state,
            Err(e) => return last.ok_or(e),
        };
        last = Some(state);
        let left = wait.saturating_sub(client.now().saturating_sub(started));
        if direction.settled(state) || left.is_zero() {
            return Ok(state);
        }
        let pause = interval.min(left);
        client.pause(pause);
        interval = (interval * 2).min(MAX_POLL_INTERVAL);
    }
}

fn nothing_affected(host: &Host, direction: Direction) -> Error {
    Error::Upstream(format!(
        "SentinelOne accepted the {} request for agent {} ({}) but affected no agent. This happens \
         when the agent is offline (last active {}), being uninstalled, or decommissioned. Check \
         the agent in the console.",
        direction.verb(),
        host.agent_id,
        host.hostname,
        host.last_active.as_deref().unwrap_or("unknown")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::TransportError;
    use crate::transport::testing::Scripted;

    fn page(state: &str) -> String {
        json!({"data": [{"id": "42", "uuid": "abcd1234", "computerName": "FIN-LT-0042",
            "isActive": true, "isDecommissioned": false, "networkStatus": state,
            "networkInterfaces": [{"inet": ["10.0.0.1"], "physical": "00:b0:d0:63:c2:26"}]}],
            "pagination": {"nextCursor": null}})
        .to_string()
    }

    fn run_with(
        t: &mut Scripted,
        direction: Direction,
        protected: &[&str],
    ) -> Result<ActionOutcome> {
        let mut client = t.client("u1", "tok-12345");
        let protected: Vec<String> = protected.iter().map(|s| (*s).to_owned()).collect();
        run(
            &mut client,
            &Selector::parse("hostname", "fin-lt-0042").unwrap(),
            direction,
            &protected,
            Duration::ZERO,
        )
    }

    fn posts(t: &Scripted) -> Vec<String> {
        t.sent
            .iter()
            .filter(|r| r.method == Method::Post)
            .map(|r| String::from_utf8(r.body.clone().unwrap()).unwrap())
            .collect()
    }

    #[test]
    fn isolates_by_the_one_resolved_id() {
        let mut t = Scripted::default()
            .reply(200, &page("connected"))
            .reply(200, r#"{"data":{"affected":1}}"#)
            .reply(200, &page("disconnecting"));
        let out = run_with(&mut t, Direction::Isolate, &[]).unwrap();
        assert!(out.changed);
        assert_eq!(out.network_state, NetworkState::Disconnecting);
        assert_eq!(posts(&t), [r#"{"data":{},"filter":{"ids":["42"]}}"#]);
        assert_eq!(
            t.sent[1].path_and_query,
            "/web/api/v2.1/agents/actions/disconnect"
        );
    }

    #[test]
    fn more_agents_affected_than_named_is_reported() {
        let mut t = Scripted::default()
            .reply(200, &page("connected"))
            .reply(200, r#"{"data":{"affected":3}}"#)
            .reply(200, &page("disconnecting"));
        let out = run_with(&mut t, Direction::Isolate, &[]).unwrap();
        assert!(out.changed);
        assert_eq!(posts(&t), [r#"{"data":{},"filter":{"ids":["42"]}}"#]);
        assert!(
            out.detail.contains("reports 3 agents affected")
                && out.detail.contains("which other agents were isolated"),
            "{}",
            out.detail
        );
    }

    #[test]
    fn already_in_state_sends_nothing() {
        for state in ["disconnected", "disconnecting"] {
            let mut t = Scripted::default().reply(200, &page(state));
            let out = run_with(&mut t, Direction::Isolate, &[]).unwrap();
            assert!(!out.changed);
            assert!(posts(&t).is_empty());
        }
        for state in ["connected", "connecting"] {
            let mut t = Scripted::default().reply(200, &page(state));
            assert!(!run_with(&mut t, Direction::Release, &[]).unwrap().changed);
            assert!(posts(&t).is_empty());
        }
    }

    #[test]
    fn protected_hosts_are_refused_by_name_id_ip_or_fqdn() {
        for entry in [
            "FIN-LT-0042",
            "fin-lt-0042.corp.example",
            "42",
            "10.0.0.1",
            "ABCD1234",
        ] {
            let mut t = Scripted::default().reply(200, &page("connected"));
            let err = run_with(&mut t, Direction::Isolate, &["", entry]).unwrap_err();
            assert_eq!(err.kind(), "protected-host", "{entry}");
            assert!(posts(&t).is_empty());
        }
        for entry in ["10.0.0.12", "FIN-LT-004", "4"] {
            let mut t = Scripted::default()
                .reply(200, &page("connected"))
                .reply(200, r#"{"data":{"affected":1}}"#)
                .reply(200, &page("disconnecting"));
            assert!(
                run_with(&mut t, Direction::Isolate, &[entry]).is_ok(),
                "{entry}"
            );
        }
        // Releasing a protected host is allowed: it restores connectivity.
        let mut t = Scripted::default()
            .reply(200, &page("disconnected"))
            .reply(200, r#"{"data":{"affected":1}}"#)
            .reply(200, &page("connecting"));
        assert!(run_with(&mut t, Direction::Release, &["FIN-LT-0042"]).is_ok());
    }

    #[test]
    fn zero_affected_is_an_error_explaining_why() {
        let mut t = Scripted::default()
            .reply(200, &page("connected"))
            .reply(200, r#"{"errors":[],"data":{"affected":0}}"#);
        let err = run_with(&mut t, Direction::Isolate, &[]).unwrap_err();
        assert_eq!(err.kind(), "upstream");
        assert!(err.message().contains("offline"), "{err}");
    }

    #[test]
    fn server_error_is_never_resent_and_the_state_is_reread() {
        let mut t = Scripted::default()
            .reply(200, &page("connected"))
            .reply(500, "Server could not process the request.")
            .reply(200, &page("connected"));
        let err = run_with(&mut t, Direction::Isolate, &[]).unwrap_err();
        assert_eq!(err.kind(), "upstream");
        assert_eq!(
            err.message(),
            "The console answered POST /web/api/v2.1/agents/actions/disconnect with HTTP 500 \
             (Server could not process the request.). Agent 42 (FIN-LT-0042) still reports \
             connected, so the isolate has not started; it was not resent automatically. Retry \
             the action."
        );
        assert_eq!(posts(&t).len(), 1);

        let mut t = Scripted::default()
            .reply(200, &page("connected"))
            .fail(TransportError::Timeout)
            .reply(200, &page("disconnecting"))
            .reply(200, &page("disconnecting"));
        let out = run_with(&mut t, Direction::Isolate, &[]).unwrap();
        assert!(out.changed);
        assert_eq!(
            out.detail,
            "The isolate was accepted: agent 42 (FIN-LT-0042) now reports disconnecting, although \
             the request itself failed (u1.sentinelone.net did not answer POST \
             /web/api/v2.1/agents/actions/disconnect in time. The console may be down or \
             overloaded, or a firewall may be dropping traffic; try again later, and check that \
             the SOAR platform can reach u1.sentinelone.net on port 443)."
        );
        assert_eq!(posts(&t).len(), 1);

        let mut t = Scripted::default()
            .reply(200, &page("connected"))
            .reply(200, r#"{"data":{}}"#)
            .fail(TransportError::Timeout);
        let err = run_with(&mut t, Direction::Isolate, &[]).unwrap_err();
        assert_eq!(
            err.message(),
            "The console answered POST /web/api/v2.1/agents/actions/disconnect without an \
             'affected' count ({\"data\":{}}). Reading agent 42 afterwards failed too \
             (u1.sentinelone.net did not answer GET /web/api/v2.1/agents in time. The console \
             may be down or overloaded, or a firewall may be dropping traffic; try again later, \
             and check that the SOAR platform can reach u1.sentinelone.net on port 443), so \
             whether the isolate started is unknown. Check its state in the console before \
             retrying the isolate."
        );
        assert_eq!(posts(&t).len(), 1);
    }

    #[test]
    fn an_accepted_action_is_reported_even_when_reading_it_back_fails() {
        let mut t = Scripted::default()
            .reply(200, &page("connected"))
            .reply(200, r#"{"data":{"affected":1}}"#)
            .fail(TransportError::Timeout);
        let out = run_with(&mut t, Direction::Isolate, &[]).unwrap();
        assert!(out.changed);
        assert_eq!(out.network_state, NetworkState::Unknown);
        assert_eq!(
            out.detail,
            "Sent POST /web/api/v2.1/agents/actions/disconnect for agent 42 (FIN-LT-0042), and \
             the console accepted it; reading the agent's state afterwards failed \
             (u1.sentinelone.net did not answer GET /web/api/v2.1/agents in time. The console \
             may be down or overloaded, or a firewall may be dropping traffic; try again later, \
             and check that the SOAR platform can reach u1.sentinelone.net on port 443), so \
             check its state in the console."
        );
        assert_eq!(posts(&t).len(), 1);
    }

    #[test]
    fn a_poll_that_fails_after_a_first_read_keeps_the_state_read() {
        let mut t = Scripted::default()
            .reply(200, &page("connected"))
            .reply(200, r#"{"data":{"affected":1}}"#)
            .reply(200, &page("disconnecting"))
            .fail(TransportError::Timeout);
        let mut client = t.client("u1", "tok-12345");
        let out = run(
            &mut client,
            &Selector::parse("hostname", "fin-lt-0042").unwrap(),
            Direction::Isolate,
            &[],
            Duration::from_secs(5),
        )
        .unwrap();
        assert!(out.changed);
        assert_eq!(out.network_state, NetworkState::Disconnecting);
        assert_eq!(posts(&t).len(), 1);
    }

    #[test]
    fn an_action_the_host_did_not_send_is_not_looked_for() {
        let mut t = Scripted::default()
            .reply(200, &page("connected"))
            .fail(TransportError::HostRateLimit);
        let err = run_with(&mut t, Direction::Isolate, &[]).unwrap_err();
        assert_eq!(err.kind(), "rate-limited");
        assert!(
            err.message().contains(
                "the turn for POST /web/api/v2.1/agents/actions/disconnect would have come \
                 after this action's time limit, so it was not sent"
            ),
            "{err}"
        );
        assert!(
            err.message().ends_with(
                " The isolate request never reached the console, so agent 42 (FIN-LT-0042) is \
                 unchanged."
            ),
            "{err}"
        );
        assert_eq!(
            t.sent.len(),
            2,
            "no read-back: nothing was sent to look for"
        );
    }

    #[test]
    fn a_request_that_never_left_is_reported_as_unsent_without_a_read_back() {
        let cases = [
            (TransportError::Denied, "egress-denied"),
            (TransportError::Dns, "unreachable"),
            (TransportError::DnsTimeout, "unreachable"),
            (
                TransportError::Connect("connection refused".into()),
                "unreachable",
            ),
            (TransportError::ConnectTimeout, "unreachable"),
            (
                TransportError::Tls("the TLS handshake failed".into()),
                "unreachable",
            ),
        ];
        for (failure, kind) in cases {
            let mut t = Scripted::default()
                .reply(200, &page("disconnected"))
                .fail(failure.clone());
            let err = run_with(&mut t, Direction::Release, &[]).unwrap_err();
            assert_eq!(err.kind(), kind, "{failure:?}");
            assert!(
                err.message().ends_with(
                    ". The release request never reached the console, so agent 42 \
                     (FIN-LT-0042) is unchanged."
                ),
                "{failure:?}: {err}"
            );
            assert_eq!(t.sent.len(), 2, "{failure:?}: no read-back");
        }
    }

    #[test]
    fn a_request_that_may_have_arrived_is_looked_for() {
        for failure in [
            TransportError::Timeout,
            TransportError::ConnectionLost,
            TransportError::Protocol("junk".into()),
            TransportError::Other("anything".into()),
        ] {
            let mut t = Scripted::default()
                .reply(200, &page("connected"))
                .fail(failure.clone())
                .reply(200, &page("disconnecting"))
                .reply(200, &page("disconnecting"));
            let out = run_with(&mut t, Direction::Isolate, &[]).unwrap();
            assert!(out.changed, "{failure:?}");
            assert!(
                out.detail.starts_with(
                    "The isolate was accepted: agent 42 (FIN-LT-0042) now reports \
                     disconnecting, although the request itself failed ("
                ),
                "{failure:?}: {}",
                out.detail
            );
            assert!(!out.detail.contains("never reached"), "{failure:?}");
            assert_eq!(posts(&t).len(), 1, "{failure:?}: never resent");
        }
    }

    #[test]
    fn forbidden_names_the_permission() {
        let mut t = Scripted::default().reply(200, &page("disconnected")).reply(
            403,
            r#"{"errors":[{"code":4030010,"title":"Insufficient permissions"}]}"#,
        );
        let err = run_with(&mut t, Direction::Release, &[]).unwrap_err();
        assert_eq!(err.kind(), "forbidden");
        assert!(
            err.message().contains("Endpoints.reconnectToNetwork"),
            "{err}"
        );
    }

    #[test]
    fn waits_until_settled_within_the_bound() {
        let mut t = Scripted::default()
            .reply(200, &page("connected"))
            .reply(200, r#"{"data":{"affected":1}}"#)
            .reply(200, &page("disconnecting"))
            .reply(200, &page("disconnecting"))
            .reply(200, &page("disconnected"));
        let mut client = t.client("u1", "tok-12345");
        let selector = Selector::parse("agent-id", "42").unwrap();
        let out = run(
            &mut client,
            &selector,
            Direction::Isolate,
            &[],
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(out.network_state, NetworkState::Disconnected);
        assert_eq!(t.pauses, [Duration::from_secs(1), Duration::from_secs(2)]);
    }

    #[test]
    fn a_long_wait_backs_off_and_reads_once_more_at_its_end() {
        let mut t = Scripted::default()
            .reply(200, &page("connected"))
            .reply(200, r#"{"data":{"affected":1}}"#);
        for _ in 0..40 {
            t = t.reply(200, &page("disconnecting"));
        }
        let mut client = t.client("u1", "tok-12345");
        let selector = Selector::parse("agent-id", "42").unwrap();
        let wait = Duration::from_secs(300);
        let out = run(&mut client, &selector, Direction::Isolate, &[], wait).unwrap();
        assert_eq!(out.network_state, NetworkState::Disconnecting);
        let secs: Vec<u64> = t.pauses.iter().map(Duration::as_secs).collect();
        assert_eq!(secs[..6], [1, 2, 4, 8, 10, 10]);
        assert_eq!(t.pauses.iter().sum::<Duration>(), wait);
        // One read per pause plus the first, the resolve and the POST.
        assert_eq!(t.sent.len(), t.pauses.len() + 3);
        assert!(t.sent.len() <= 40, "{}", t.sent.len());
    }
}
