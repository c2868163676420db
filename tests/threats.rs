//! End-to-end threat ingestion against the simulator's 2,400-threat feed:
//! exactly once per version, through updates while paging, faults and
//! kills at random points, with byte-exact `raw` and cursors.

mod support;

use std::collections::{HashMap, HashSet};

use connector_host::simulator::{Fault, FaultKind, Simulator, THREAT_COUNT, TokenProfile, tokens};
use connector_host::{CallError, CallPolicy, FetchOptions, ThreatPage};
use proptest::prelude::*;
use support::*;

type Version = (String, Option<String>);

/// Pulls until a caught-up call brings nothing new, resuming from the last
/// committed checkpoint after every failure (at most `max_failures`).
/// Returns the delivered versions, the pages, and the failures.
async fn pull(
    sim: &Simulator,
    token: &str,
    page_size: u32,
    max_failures: usize,
) -> (Vec<Version>, Vec<ThreatPage>, usize) {
    pull_under(&policy(sim), token, page_size, max_failures).await
}

/// [`pull`] under `policy`.
async fn pull_under(
    policy: &CallPolicy,
    token: &str,
    page_size: u32,
    max_failures: usize,
) -> (Vec<Version>, Vec<ThreatPage>, usize) {
    pull_from(policy, token, page_size, max_failures, None).await
}

/// [`pull_under`], resuming from the checkpoint `start`.
async fn pull_from(
    policy: &CallPolicy,
    token: &str,
    page_size: u32,
    max_failures: usize,
    start: Option<String>,
) -> (Vec<Version>, Vec<ThreatPage>, usize) {
    let options = FetchOptions {
        page_size,
        lookback_seconds: None,
    };
    let conn = connection(CONSOLE, token);
    let (mut committed, mut delivered, mut pages, mut failures) = (start, vec![], vec![], 0);
    for _ in 0..500 {
        let outcome = runtime()
            .fetch_threats(&conn, committed.as_deref(), &options, policy)
            .await;
        match outcome.result {
            Ok(page) => {
                // Deliver and commit together, as a SOAR engine's store would.
                delivered.extend(
                    page.threats
                        .iter()
                        .map(|t| (t.id.clone(), t.updated_at.clone())),
                );
                committed = Some(page.checkpoint.clone());
                // Caught up and nothing new: updates made while paging have
                // all been picked up (a real poller would keep polling).
                let done = !page.more && page.threats.is_empty();
                pages.push(page);
                if done {
                    return (delivered, pages, failures);
                }
            }
            Err(e) => {
                failures += 1;
                assert!(failures <= max_failures, "too many failures, last: {e}");
            }
        }
    }
    panic!("the pull did not catch up");
}

/// The first `n` pages of a pull from scratch, each leaving more to
/// fetch: the checkpoint after them and the versions they delivered.
async fn first_pages(
    sim: &Simulator,
    token: &str,
    page_size: u32,
    n: usize,
) -> (String, Vec<Version>) {
    let options = FetchOptions {
        page_size,
        lookback_seconds: None,
    };
    let conn = connection(CONSOLE, token);
    let (mut checkpoint, mut delivered) = (None::<String>, vec![]);
    for _ in 0..n {
        let page = runtime()
            .fetch_threats(&conn, checkpoint.as_deref(), &options, &policy(sim))
            .await
            .result
            .unwrap();
        delivered.extend(
            page.threats
                .iter()
                .map(|t| (t.id.clone(), t.updated_at.clone())),
        );
        assert!(page.more);
        checkpoint = Some(page.checkpoint);
    }
    (checkpoint.expect("at least one page"), delivered)
}

fn assert_no_duplicates(delivered: &[Version]) {
    let mut seen = HashSet::new();
    for v in delivered {
        assert!(seen.insert(v.clone()), "delivered twice: {v:?}");
    }
}

/// Every threat's current version was delivered (those without a usable
/// timestamp at least once by id).
fn assert_all_current_versions(sim: &Simulator, delivered: &[Version]) {
    let got: HashSet<&Version> = delivered.iter().collect();
    let ids: HashSet<&str> = delivered.iter().map(|(id, _)| id.as_str()).collect();
    for (id, at) in sim.threat_versions() {
        match at {
            Some(_) => assert!(
                got.contains(&(id.clone(), at.clone())),
                "missing {id} at {at:?}"
            ),
            None => assert!(ids.contains(id.as_str()), "missing {id}"),
        }
    }
}

#[tokio::test]
async fn a_full_pull_delivers_each_threat_exactly_once() {
    let sim = Simulator::start().await.unwrap();
    let (delivered, pages, _) = pull(&sim, tokens::ADMIN, 250, 0).await;
    assert_eq!(delivered.len(), THREAT_COUNT);
    assert_no_duplicates(&delivered);
    assert_all_current_versions(&sim, &delivered);
    let warnings: Vec<_> = pages.iter().flat_map(|p| p.warnings.iter()).collect();
    assert_eq!(warnings.len(), 3, "{warnings:?}");
    // Sorted ascending by updatedAt, never relying on totalItems (the feed has none).
    for r in sim
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/threats"))
    {
        let q = r.query.as_deref().unwrap();
        assert!(
            q.contains("sortBy=updatedAt&sortOrder=asc&limit=250"),
            "{q}"
        );
        assert!(q.starts_with("updatedAt__gte="), "{q}");
    }
    // Caught up after the last full page: the next call delivered nothing.
    assert!(pages.last().unwrap().threats.is_empty());
    assert!(!pages[pages.len() - 2].threats.is_empty());
}

/// A saved cursor the console no longer accepts (it expired while the
/// platform was paused) restarts the pull from the watermark: nothing is
/// lost or repeated, and ingestion does not stay stuck on the same error.
#[tokio::test]
async fn an_expired_cursor_in_the_checkpoint_loses_and_repeats_nothing() {
    let sim = Simulator::start().await.unwrap();
    let (text, mut delivered) = first_pages(&sim, tokens::ADMIN, 250, 2).await;
    // The checkpoint is opaque to the platform, but this test knows its
    // shape: replace the cursor with one the console does not know.
    let (prefix, json) = text.split_once(':').unwrap();
    let mut state: serde_json::Value = serde_json::from_str(json).unwrap();
    assert!(state["cursor"][0].is_string(), "{state}");
    state["cursor"][0] = "expired-cursor".into();
    let stale = format!("{prefix}:{state}");
    sim.clear_requests();
    let (rest, pages, failures) =
        pull_from(&policy(&sim), tokens::ADMIN, 250, 0, Some(stale)).await;
    assert_eq!(failures, 0);
    let warning = &pages[0].warnings[0];
    assert!(
        warning.starts_with("The console refused the saved page cursor (HTTP 400: Validation Error: cursor: Invalid cursor."),
        "{warning}"
    );
    let queries: Vec<String> = sim
        .requests()
        .iter()
        .filter_map(|r| r.query.clone())
        .collect();
    assert!(
        queries[0].ends_with("&cursor=expired-cursor"),
        "{queries:?}"
    );
    assert!(!queries[1].contains("cursor="), "{queries:?}");
    delivered.extend(rest);
    assert_eq!(delivered.len(), THREAT_COUNT);
    assert_no_duplicates(&delivered);
    assert_all_current_versions(&sim, &delivered);
}

/// Pages of 1000 and 250 threats are over this policy's 128 KiB response limit:
/// the connector asks for smaller pages, says so, and still delivers every
/// version exactly once.
#[tokio::test]
async fn pages_too_large_for_the_response_limit_are_fetched_smaller() {
    let sim = Simulator::start().await.unwrap();
    let policy = policy(&sim).max_response_bytes(128 * 1024);
    let (delivered, pages, failures) = pull_under(&policy, tokens::ADMIN, 1000, 0).await;
    assert_eq!((delivered.len(), failures), (THREAT_COUNT, 0));
    assert_no_duplicates(&delivered);
    assert_all_current_versions(&sim, &delivered);
    let shrunk = "A page of 1000 threats was larger than the connector may read, so 62 were \
                  fetched instead. Set the page size to 62 or less to save the wasted download.";
    // Every page cut to 62 says so; the remainder at the end fits whole.
    let noted = |p: &&ThreatPage| p.warnings.iter().any(|w| w == shrunk);
    let cut: Vec<&ThreatPage> = pages.iter().filter(|p| p.threats.len() == 62).collect();
    assert!(cut.len() >= 30 && cut.iter().all(noted), "{}", cut.len());
    assert_eq!(pages.iter().filter(noted).count(), cut.len());
    let limits: Vec<String> = sim
        .requests()
        .iter()
        .filter_map(|r| {
            r.query
                .as_deref()?
                .split("limit=")
                .nth(1)
                .map(str::to_owned)
        })
        .map(|rest| rest.split('&').next().unwrap_or_default().to_owned())
        .take(3)
        .collect();
    assert_eq!(limits, ["1000", "250", "62"]);
}

#[tokio::test]
async fn raw_is_byte_for_byte_the_served_json() {
    let sim = Simulator::start().await.unwrap();
    let (_, pages, _) = pull(&sim, tokens::ADMIN, 1000, 0).await;
    let mut checked = 0;
    for t in pages.iter().flat_map(|p| &p.threats) {
        assert_eq!(
            Some(&t.raw),
            sim.served_threat_json(&t.id).as_ref(),
            "{}",
            t.id
        );
        checked += 1;
    }
    assert_eq!(checked, THREAT_COUNT);
}

#[tokio::test]
async fn cursors_round_trip_byte_for_byte_plain_or_percent_encoded() {
    for encoded in [false, true] {
        let sim = Simulator::start().await.unwrap();
        let mut profile = TokenProfile::admin("cursors");
        if encoded {
            profile = profile.percent_encoded_cursors();
        }
        sim.add_token("cursor-token", profile);
        // The simulator answers 400 to any cursor it did not issue, so a
        // complete pull proves every cursor came back exactly.
        let (delivered, pages, _) = pull(&sim, "cursor-token", 100, 0).await;
        assert_eq!(delivered.len(), THREAT_COUNT);
        let cursors: Vec<String> = sim
            .requests()
            .iter()
            .filter_map(|r| r.query.as_deref())
            .flat_map(|q| {
                form_urlencoded::parse(q.as_bytes())
                    .into_owned()
                    .collect::<Vec<_>>()
            })
            .filter(|(k, _)| k == "cursor")
            .map(|(_, v)| v)
            .collect();
        let followed = pages.iter().filter(|p| p.more).count();
        assert_eq!(
            cursors.len(),
            followed,
            "every page with more used the cursor it returned"
        );
        assert!(
            cursors
                .iter()
                .all(|c| c.contains('+') && c.contains('/') && c.ends_with('=')),
            "{cursors:?}"
        );
    }
}

#[tokio::test]
async fn updates_during_paging_are_delivered_as_new_versions() {
    let sim = Simulator::start().await.unwrap();
    let (delivered, _, _) = pull(&sim, tokens::THREATS_CHURN, 100, 0).await;
    assert_no_duplicates(&delivered);
    assert_all_current_versions(&sim, &delivered);
    let mut versions: HashMap<&str, usize> = HashMap::new();
    for (id, _) in &delivered {
        *versions.entry(id).or_default() += 1;
    }
    let updated = versions.values().filter(|n| **n > 1).count();
    assert!(
        updated >= 20,
        "only {updated} threats delivered as new versions"
    );
    assert!(delivered.len() > THREAT_COUNT);
}

#[tokio::test]
async fn fault_after_page_n_surfaces_and_resume_continues() {
    let sim = Simulator::start().await.unwrap();
    let options = FetchOptions {
        page_size: 100,
        lookback_seconds: None,
    };
    let (checkpoint, _) = first_pages(&sim, tokens::THREATS_FAIL_AFTER_3, 100, 3).await;
    let checkpoint = Some(checkpoint);
    let conn = connection(CONSOLE, tokens::THREATS_FAIL_AFTER_3);
    let failed = runtime()
        .fetch_threats(&conn, checkpoint.as_deref(), &options, &policy(&sim))
        .await;
    match failed.result {
        Err(CallError::Connector(e)) => assert_eq!(e.kind(), "upstream"),
        other => panic!("{other:?}"),
    }
    // The same checkpoint works with a token that is not failing.
    let conn = connection(CONSOLE, tokens::ADMIN);
    let page = runtime()
        .fetch_threats(&conn, checkpoint.as_deref(), &options, &policy(&sim))
        .await
        .result
        .unwrap();
    assert_eq!(page.threats.len(), 100);
}

#[tokio::test]
async fn bad_options_and_checkpoints_are_invalid_config_and_send_nothing() {
    let sim = Simulator::start().await.unwrap();
    let conn = connection(CONSOLE, tokens::ADMIN);
    let too_big = FetchOptions {
        page_size: 1001,
        lookback_seconds: None,
    };
    let ok = FetchOptions {
        page_size: 10,
        lookback_seconds: None,
    };
    let cases = [
        (None, too_big),
        (Some("not a checkpoint"), ok),
        (
            Some(
                "s1-threats-v1:{\"console\":\"other.sentinelone.net\",\"watermark\":0,\"seen\":[],\"cursor\":null}",
            ),
            ok,
        ),
    ];
    for (checkpoint, options) in cases {
        let outcome = runtime()
            .fetch_threats(&conn, checkpoint, &options, &policy(&sim))
            .await;
        match outcome.result {
            Err(CallError::Connector(e)) => {
                assert_eq!(e.kind(), "invalid-config", "{checkpoint:?}")
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(sim.requests().is_empty());
}

#[tokio::test]
async fn the_simulator_refuses_a_limit_above_1000() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sim = Simulator::start().await.unwrap();
    let mut stream = tokio::net::TcpStream::connect(sim.addr()).await.unwrap();
    let request = format!(
        "GET /web/api/v2.1/threats?limit=1001 HTTP/1.1\r\nHost: x\r\nAuthorization: ApiToken {}\r\nConnection: close\r\n\r\n",
        tokens::ADMIN
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    assert!(response.contains("limit"));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Kill the pull at random points (a failed call is a worker that died
    /// mid-page), resume from the last committed checkpoint, with updates
    /// arriving meanwhile: every version is delivered exactly once.
    #[test]
    fn kills_at_random_points_deliver_every_version_exactly_once(
        kills in proptest::collection::btree_set(1u32..40, 1..6),
        page_size in prop_oneof![Just(50u32), Just(97), Just(250)],
        malformed in any::<bool>(),
    ) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let sim = Simulator::start().await.unwrap();
            let kind = if malformed { FaultKind::MalformedJson } else { FaultKind::PlainTextError };
            let mut profile = TokenProfile::admin("killed").threat_churn(15);
            for k in &kills {
                profile = profile.fault(Fault::first(1, kind.clone()).on_path("/threats").after(*k));
            }
            sim.add_token("killed-token", profile);
            let (delivered, _, failures) = pull(&sim, "killed-token", page_size, kills.len()).await;
            assert_no_duplicates(&delivered);
            assert_all_current_versions(&sim, &delivered);
            // A kill "after k" fails request k + 1, if the pull got that far.
            let requests = sim.requests().iter().filter(|r| r.path.ends_with("/threats")).count() as u32;
            let expected = kills.iter().filter(|k| **k < requests).count();
            assert_eq!(failures, expected, "kills {kills:?} in {requests} requests");
        });
    }
}

#[tokio::test]
async fn a_console_echoing_the_token_never_gets_it_into_a_threat() {
    let sim = Simulator::start().await.unwrap();
    let options = FetchOptions {
        page_size: 50,
        lookback_seconds: None,
    };
    let outcome = runtime()
        .fetch_threats(
            &connection(CONSOLE, tokens::ECHO),
            None,
            &options,
            &policy(&sim),
        )
        .await;
    let everything = format!("{outcome:?}");
    assert!(!everything.contains(tokens::ECHO), "{everything}");
    let page = outcome.result.unwrap();
    assert_eq!(page.threats.len(), 50);
    for threat in &page.threats {
        assert!(threat.name.ends_with(" [REDACTED]"), "{threat:?}");
        // The simulator spelt the token with `\u` escapes in `note`: the
        // raw record is still JSON, and decodes without it.
        let raw: serde_json::Value = serde_json::from_str(&threat.raw).unwrap();
        assert_eq!(raw["note"], "[REDACTED]", "{}", threat.raw);
        assert!(!raw.to_string().contains(tokens::ECHO));
    }
}
