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

/// Answers every request with one canned response.
struct Canned(Response);

impl Transport for Canned {
    fn send(&mut self, _: &Request) -> Result<Response, TransportError> {
        Ok(self.0.clone())
    }
    fn pause(&mut self, _: Duration) {}
    fn now(&mut self) -> Duration {
        Duration::ZERO
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
        let bytes = std::fs::read(&path).unwrap();
        let response = Response {
            status: 200,
            headers: vec![],
            body: bytes.clone(),
        };
        let value: Value = parse_json(&response, Method::Get, "/x")
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(printable(&body::summarize(&bytes)), "{}", path.display());
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
        let mut transport = Canned(Response {
            status: status as u16,
            headers: vec![],
            body: raw.as_bytes().to_vec(),
        });
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
    assert_eq!(
        body::summarize(page.as_bytes()),
        "HTML page \"429 Too Many Requests\""
    );
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
        let mut transport = Canned(Response {
            status: 200,
            headers: vec![],
            body: bytes.clone(),
        });
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
