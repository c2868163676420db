//! Every call runs in a tracing span carrying its tenant and action, and
//! ends with an event giving its duration and outcome; each request runs in
//! a span of its own inside it. Alone in its test
//! binary: tracing caches per-callsite interest process-wide, so a test on
//! another thread without a subscriber could otherwise disable the callsites
//! this one observes.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use connector_host::simulator::{Simulator, tokens};
use support::*;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// Captures this thread's events, at INFO and above, while the guard lives.
    fn start() -> (Captured, tracing::subscriber::DefaultGuard) {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        (captured, tracing::subscriber::set_default(subscriber))
    }

    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }

    /// The captured lines holding `needle`.
    fn lines_with(&self, needle: &str) -> Vec<String> {
        self.text()
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_owned)
            .collect()
    }
}

#[tokio::test]
async fn every_call_has_a_span_with_tenant_action_and_outcome() {
    let (captured, _guard) = Captured::start();
    let sim = Simulator::start().await.unwrap();
    let policy = policy(&sim).tenant("acme-corp");
    runtime()
        .validate_connection(&connection(CONSOLE, tokens::ADMIN), &policy)
        .await
        .result
        .unwrap();
    runtime()
        .validate_connection(&connection(CONSOLE, tokens::EXPIRED), &policy)
        .await;
    let log = captured.text();
    let finished = captured.lines_with("call finished");
    assert_eq!(finished.len(), 2, "{log}");
    assert!(
        finished[0].contains("connector_call{tenant=acme-corp action=\"validate-connection\"}"),
        "{}",
        finished[0]
    );
    assert!(
        finished[0].contains("outcome=\"ok\"")
            && finished[0].contains("requests=4")
            && finished[0].contains("queued_ms=0")
            && finished[0].contains("cpu_us="),
        "{}",
        finished[0]
    );
    assert!(
        finished[1].contains("outcome=\"unauthorized\"")
            && finished[1].contains("source=\"connector\""),
        "{}",
        finished[1]
    );
    // Each request has its own span inside the call's, and its audit event
    // is traced in it.
    let audited = captured.lines_with("connector_host::audit");
    assert_eq!(audited.len(), 5, "{log}");
    assert!(
        audited[0].contains(
            "connector_call{tenant=acme-corp action=\"validate-connection\"}:connector_request{\
             method=POST host=tenant.sentinelone.net path=/web/api/v2.1/users/api-token-details}"
        ),
        "{}",
        audited[0]
    );
    assert!(
        audited.iter().all(|l| l.contains("}:connector_request{")),
        "{log}"
    );
    assert!(
        !log.contains(tokens::ADMIN) && !log.contains(tokens::EXPIRED),
        "no token in logs"
    );
}

#[tokio::test]
async fn a_call_the_embedder_drops_is_traced_as_cancelled_with_its_request_cut_off() {
    let (captured, _guard) = Captured::start();
    let sim = Simulator::start().await.unwrap();
    let policy = policy(&sim)
        .tenant("initech")
        .http_timeout(std::time::Duration::from_secs(30));
    let stall = connection(CONSOLE, tokens::STALL);
    let stalled = runtime().validate_connection(&stall, &policy);
    let given_up = tokio::time::timeout(std::time::Duration::from_millis(300), stalled).await;
    assert!(given_up.is_err(), "the stalled call was still running");

    let log = captured.text();
    let call = "connector_call{tenant=initech action=\"validate-connection\"}";
    let finished = captured.lines_with("call finished");
    assert_eq!(finished.len(), 1, "{log}");
    assert!(
        finished[0].contains(call)
            && finished[0].contains("outcome=\"cancelled\"")
            && finished[0].contains("source=\"embedder\"")
            && finished[0].contains("requests=1")
            && !finished[0].contains("cpu_us"),
        "{}",
        finished[0]
    );
    let audited = captured.lines_with("connector_host::audit");
    assert_eq!(audited.len(), 1, "{log}");
    assert!(
        audited[0].contains(&format!("{call}:connector_request{{method=POST"))
            && audited[0].contains("outcome=cut-off"),
        "{}",
        audited[0]
    );
    assert!(!log.contains(tokens::STALL), "no token in logs");
}

#[tokio::test]
async fn describe_is_traced_like_every_other_call() {
    let (captured, _guard) = Captured::start();
    let info = runtime().describe().await.unwrap();
    assert!(!info.actions.is_empty());
    let log = captured.text();
    let finished = captured.lines_with("call finished");
    assert_eq!(finished.len(), 1, "{log}");
    assert!(
        finished[0].contains("connector_call{tenant=- action=\"describe\"}")
            && finished[0].contains("outcome=\"ok\"")
            && finished[0].contains("requests=0"),
        "{}",
        finished[0]
    );
}
