//! The runtime's process-wide behaviour: the compiled-component cache and
//! backpressure when every call slot is busy.

mod support;

use std::time::{Duration, Instant};

use connector_host::simulator::{Simulator, agents, tokens};
use connector_host::{
    CacheStatus, CallError, CallPolicy, Connection, ConnectorError, EgressPolicy, HostError,
    HostSelector, PathRate, RequestRate, Runtime, RuntimeConfig,
};
use support::*;

fn cached(dir: &std::path::Path) -> Runtime {
    Runtime::with_config(
        connector_host::COMPONENT,
        RuntimeConfig::default().cache_dir(dir),
    )
    .unwrap()
}

fn entry(dir: &std::path::Path) -> std::path::PathBuf {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    entries.pop().unwrap()
}

#[tokio::test]
async fn the_cache_is_reused_and_a_corrupt_entry_is_rebuilt_not_trusted() {
    let dir = std::env::temp_dir().join(format!("component-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(cached(&dir).cache_status(), CacheStatus::Miss);
    let hit = cached(&dir);
    assert_eq!(hit.cache_status(), CacheStatus::Hit);
    assert_eq!(hit.describe().await.unwrap().id, "sentinelone");

    let path = entry(&dir);
    let good = std::fs::read(&path).unwrap();
    let mut flipped = good.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0xff;
    let damaged: [Vec<u8>; 3] = [
        flipped,
        good[..good.len() / 3].to_vec(),
        b"not a cache entry".to_vec(),
    ];
    for bytes in damaged {
        std::fs::write(&path, bytes).unwrap();
        let rebuilt = cached(&dir);
        assert_eq!(rebuilt.cache_status(), CacheStatus::Rebuilt);
        let sim = Simulator::start().await.unwrap();
        let report = rebuilt
            .validate_connection(&connection(CONSOLE, tokens::ADMIN), &policy(&sim))
            .await;
        assert!(report.result.is_ok(), "the rebuilt component works");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            good,
            "the entry was rewritten"
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[cfg(unix)]
fn set_mode(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[cfg(unix)]
#[tokio::test]
async fn a_cache_another_user_could_write_to_is_not_trusted() {
    let dir = std::env::temp_dir().join(format!("component-cache-perm-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // Created private, with a private entry.
    assert_eq!(cached(&dir).cache_status(), CacheStatus::Miss);
    assert_eq!(mode(&dir), 0o700);
    let path = entry(&dir);
    assert_eq!(mode(&path), 0o600);

    // A directory others may write to is neither read nor written.
    set_mode(&dir, 0o777);
    let untrusted = cached(&dir);
    assert_eq!(untrusted.cache_status(), CacheStatus::Untrusted);
    assert_eq!(untrusted.describe().await.unwrap().id, "sentinelone");
    std::fs::remove_file(&path).unwrap();
    assert_eq!(cached(&dir).cache_status(), CacheStatus::Untrusted);
    assert!(
        std::fs::read_dir(&dir).unwrap().next().is_none(),
        "nothing written"
    );

    // A valid entry others may write to is replaced unread, then private.
    set_mode(&dir, 0o700);
    assert_eq!(cached(&dir).cache_status(), CacheStatus::Miss);
    set_mode(&path, 0o666);
    assert_eq!(cached(&dir).cache_status(), CacheStatus::Rebuilt);
    assert_eq!(mode(&path), 0o600);
    assert_eq!(cached(&dir).cache_status(), CacheStatus::Hit);

    // A directory of another user's (possible to set up only as root).
    if std::os::unix::fs::chown(&dir, Some(65534), None).is_ok() {
        assert_eq!(cached(&dir).cache_status(), CacheStatus::Untrusted);
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_runtime_makes_callers_wait_then_times_them_out() {
    let sim = Simulator::start().await.unwrap();
    let runtime = Runtime::with_config(
        connector_host::COMPONENT,
        RuntimeConfig::default().max_concurrent_calls(1),
    )
    .unwrap();
    // Three tenants, so that only the runtime's limit is in play.
    // Holds the only slot for about a second.
    let busy = policy(&sim)
        .tenant("acme")
        .http_timeout(Duration::from_secs(1));
    // Cannot wait that long.
    let impatient = policy(&sim)
        .tenant("globex")
        .queue_timeout(Duration::from_millis(200));
    // Waits, then runs.
    let patient = policy(&sim)
        .tenant("initech")
        .queue_timeout(Duration::from_secs(20));
    let stall = connection(CONSOLE, tokens::STALL);
    let admin = connection(CONSOLE, tokens::ADMIN);
    let (first, second, third, load) = tokio::join!(
        runtime.validate_connection(&stall, &busy),
        async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            runtime.validate_connection(&admin, &impatient).await
        },
        async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            runtime.validate_connection(&admin, &patient).await
        },
        async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            (runtime.calls_running(), runtime.calls_waiting())
        },
    );
    assert_eq!(load, (1, 2), "one call ran while two waited");
    assert_eq!((runtime.calls_running(), runtime.calls_waiting()), (0, 0));
    assert!(
        matches!(first.result, Err(CallError::Connector(_))),
        "the stalled call timed out: {:?}",
        first.result
    );
    assert!(
        matches!(second.result, Err(CallError::Host(HostError::QueueTimeout(d))) if d == Duration::from_millis(200)),
        "{:?}",
        second.result
    );
    assert!(
        second.requests.is_empty(),
        "a queued-out call sends nothing"
    );
    assert!(third.result.is_ok(), "{:?}", third.result);
    assert!(
        third.elapsed >= Duration::from_millis(500),
        "it waited for the slot"
    );
    // Each outcome says how long it queued: the first none, the impatient
    // one its whole queue timeout, the patient one until the slot freed.
    assert!(first.queued < Duration::from_millis(100), "{first:?}");
    assert!(second.queued >= Duration::from_millis(200), "{second:?}");
    assert_eq!(second.queued, second.elapsed);
    assert!(third.queued >= Duration::from_millis(500), "{third:?}");
    assert!(third.queued < third.elapsed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_the_embedder_drops_frees_its_slot_and_its_connection() {
    let sim = Simulator::start().await.unwrap();
    let runtime = Runtime::with_config(
        connector_host::COMPONENT,
        RuntimeConfig::default().max_concurrent_calls(1),
    )
    .unwrap();
    let patient = policy(&sim).http_timeout(Duration::from_secs(30));
    let stall = connection(CONSOLE, tokens::STALL);
    let stalled = runtime.validate_connection(&stall, &patient);
    let given_up = tokio::time::timeout(Duration::from_millis(300), stalled).await;
    assert!(given_up.is_err(), "the stalled call was still running");
    assert_eq!(sim.requests().len(), 1, "it had sent its first request");

    // The only slot is free again at once, and the half-answered connection
    // is not handed to the next call.
    let next = policy(&sim).queue_timeout(Duration::from_millis(200));
    let outcome = runtime
        .validate_connection(&connection(CONSOLE, tokens::ADMIN), &next)
        .await;
    assert!(outcome.result.is_ok(), "{:?}", outcome.result);
    assert_eq!(sim.connections_accepted(), 2);
    assert_eq!(runtime.idle_connections(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_tenant_waits_for_its_own_calls_and_leaves_the_slots_to_others() {
    let sim = Simulator::start().await.unwrap();
    let config = RuntimeConfig::default()
        .max_concurrent_calls(2)
        .max_concurrent_calls_per_tenant(1);
    let runtime = Runtime::with_config(connector_host::COMPONENT, config).unwrap();
    let acme = |wait: u64| {
        policy(&sim)
            .tenant("acme")
            .http_timeout(Duration::from_secs(1))
            .queue_timeout(Duration::from_millis(wait))
    };
    let globex = policy(&sim)
        .tenant("globex")
        .queue_timeout(Duration::from_millis(200));
    let (stall, admin) = (
        connection(CONSOLE, tokens::STALL),
        connection(CONSOLE, tokens::ADMIN),
    );
    let later = |ms| tokio::time::sleep(Duration::from_millis(ms));
    let (holding, impatient, patient) = (acme(200), acme(200), acme(20_000));
    let (busy, refused, queued, other, tenants) = tokio::join!(
        // Holds acme's only turn for about a second.
        runtime.validate_connection(&stall, &holding),
        async {
            later(100).await;
            runtime.validate_connection(&admin, &impatient).await
        },
        // Waits for acme's turn without holding the runtime's other slot...
        async {
            later(100).await;
            runtime.validate_connection(&admin, &patient).await
        },
        // ...which globex gets at once.
        async {
            later(300).await;
            runtime.validate_connection(&admin, &globex).await
        },
        async {
            later(800).await;
            runtime.active_tenants()
        },
    );
    assert!(
        matches!(busy.result, Err(CallError::Connector(_))),
        "{busy:?}"
    );
    let error = match refused.result {
        Err(CallError::Host(e)) => e,
        other => panic!("acme's impatient call was refused: {other:?}"),
    };
    assert!(
        matches!(error, HostError::TenantLimit { running: 1, waited } if waited == Duration::from_millis(200)),
        "{error:?}"
    );
    assert_eq!(error.kind(), "tenant-limit");
    assert!(
        error
            .to_string()
            .contains("this tenant already has 1 calls running")
    );
    assert!(refused.requests.is_empty(), "a refused call sends nothing");
    // Had acme's queued call held the other slot, globex would have timed
    // out waiting for it.
    assert!(other.result.is_ok(), "{:?}", other.result);
    assert!(queued.result.is_ok(), "{:?}", queued.result);
    assert!(
        queued.elapsed >= Duration::from_millis(600),
        "it waited for acme's turn"
    );
    assert_eq!(tenants, 1, "acme, with a call running and one queued");
    assert_eq!(runtime.active_tenants(), 0, "no tenant is remembered after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_set_to_the_largest_duration_mean_no_limit_not_a_crash() {
    let sim = Simulator::start().await.unwrap();
    let config = RuntimeConfig::default().idle_connection_timeout(Duration::MAX);
    let runtime = Runtime::with_config(connector_host::COMPONENT, config).unwrap();
    let unlimited = policy(&sim)
        .http_timeout(Duration::MAX)
        .deadline(Duration::MAX)
        .cpu_budget(Duration::MAX)
        .queue_timeout(Duration::MAX);
    // (The between-bytes timer, which only a body that pauses arms, is
    // tested with an unlimited timeout in `connect`'s unit tests.)
    let outcome = runtime
        .fetch_threats(
            &connection(CONSOLE, tokens::ADMIN),
            None,
            &connector_host::FetchOptions {
                page_size: 500,
                lookback_seconds: None,
            },
            &unlimited,
        )
        .await;
    assert!(outcome.result.is_ok(), "{:?}", outcome.result);
    let outcome = runtime
        .validate_connection(&connection(CONSOLE, tokens::ADMIN), &unlimited)
        .await;
    assert!(outcome.result.is_ok(), "{:?}", outcome.result);
}

#[tokio::test]
async fn a_policy_that_no_call_could_pass_is_refused_before_anything_runs() {
    let sim = Simulator::start().await.unwrap();
    let admin = connection(CONSOLE, tokens::ADMIN);
    for (policy, message) in [
        (
            policy(&sim).http_timeout(Duration::ZERO),
            "the call policy is unusable: http_timeout is zero, so no request could complete; \
             set it above zero",
        ),
        (
            policy(&sim).deadline(Duration::ZERO),
            "the call policy is unusable: deadline is zero, so no call could complete; set it \
             above zero",
        ),
        (
            policy(&sim).cpu_budget(Duration::ZERO),
            "the call policy is unusable: cpu_budget is zero, so the connector could not run; \
             set it above zero",
        ),
        (
            policy(&sim).request_rate(RequestRate::new(0, 5)),
            "the call policy is unusable: request_rate allows 0 requests per second in bursts \
             of 5, so no request could be sent; set both above zero",
        ),
        (
            policy(&sim).request_rate(RequestRate::new(5, 0)),
            "the call policy is unusable: request_rate allows 5 requests per second in bursts \
             of 0, so no request could be sent; set both above zero",
        ),
    ] {
        let outcome = runtime().validate_connection(&admin, &policy).await;
        match outcome.result {
            Err(CallError::Host(e)) => {
                assert_eq!(e.kind(), "invalid-policy");
                assert_eq!(e.to_string(), message);
            }
            other => panic!("expected invalid-policy, got {other:?}"),
        }
        assert!(outcome.requests.is_empty());
    }
    assert!(sim.requests().is_empty(), "nothing was sent");
    assert!(policy(&sim).check().is_ok());
}

#[tokio::test]
async fn an_isolation_the_pacing_could_not_fit_is_not_sent_and_says_so() {
    let runtime = Runtime::new(connector_host::COMPONENT).unwrap();
    let sim = Simulator::start().await.unwrap();
    let admin = connection(CONSOLE, tokens::ADMIN);
    // The agent lookup takes the burst; the POST's turn, a second later,
    // is past the deadline.
    let hurried = policy(&sim)
        .tenant("acme")
        .request_rate(RequestRate::new(1, 1))
        .deadline(Duration::from_millis(400));
    let outcome = runtime
        .isolate_host(&admin, &finance_laptop(), &no_options(), &hurried)
        .await;
    match &outcome.result {
        Err(CallError::Connector(e @ ConnectorError::RateLimited(_))) => assert!(
            e.message().contains(
                "the turn for POST /web/api/v2.1/agents/actions/disconnect would have come \
                 after this action's time limit, so it was not sent"
            ),
            "{e:?}"
        ),
        other => panic!("expected rate-limited, got {other:?}"),
    }
    assert_eq!(
        request_lines(&sim),
        [format!(
            "GET /web/api/v2.1/agents?ids={}&limit=200&skipCount=true",
            agents::FINANCE_LAPTOP
        )],
        "only the lookup went out: no POST, and no read-back of an action never sent"
    );
    assert_eq!(
        sim.network_status(agents::FINANCE_LAPTOP).as_deref(),
        Some("connected")
    );
}

fn finance_laptop() -> HostSelector {
    HostSelector::AgentId(agents::FINANCE_LAPTOP.into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_requests_are_paced_across_its_calls_and_no_other_tenants() {
    let runtime = Runtime::new(connector_host::COMPONENT).unwrap();
    let sim = Simulator::start().await.unwrap();
    let admin = connection(CONSOLE, tokens::ADMIN);
    let every_250_ms = RequestRate::new(4, 1);
    let acme = policy(&sim).tenant("acme").request_rate(every_250_ms);
    let globex = policy(&sim).tenant("globex").request_rate(every_250_ms);

    let laptop = finance_laptop();
    let started = Instant::now();
    let acme_call = || runtime.get_host(&admin, &laptop, &acme);
    let (a, b, c, d, globex_outcome) = tokio::join!(
        acme_call(),
        acme_call(),
        acme_call(),
        acme_call(),
        runtime.get_host(&admin, &laptop, &globex)
    );
    let elapsed = started.elapsed();
    let acme_outcomes = [a, b, c, d];

    let mut acme_requests = Vec::new();
    for outcome in acme_outcomes {
        assert!(outcome.result.is_ok(), "{:?}", outcome.result);
        acme_requests.extend(outcome.requests);
    }
    assert!(acme_requests.iter().all(|r| r.outcome == "ok"));
    // One burst, then one request every 250 ms: the last cannot have gone
    // before 250 ms times the others.
    let spaced = Duration::from_millis(250) * (acme_requests.len() as u32 - 1);
    assert!(acme_requests.len() >= 4, "{acme_requests:?}");
    assert!(elapsed >= spaced, "{elapsed:?} for {}", acme_requests.len());
    assert!(
        acme_requests.iter().any(|r| r.waited_ms > 0),
        "{acme_requests:?}"
    );
    // globex's request had its own turn, at once, however busy acme was.
    assert!(globex_outcome.result.is_ok(), "{:?}", globex_outcome.result);
    assert!(
        globex_outcome.requests.iter().all(|r| r.waited_ms == 0),
        "{:?}",
        globex_outcome.requests
    );
    assert_eq!(
        sim.requests().len(),
        acme_requests.len() + globex_outcome.requests.len()
    );
}

/// A console limits each part of its API on its own: paced by path, two
/// validations at once share one turn a second for `/user`, and their
/// other requests go at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_path_prefix_is_paced_on_its_own() {
    const USER: &str = "/web/api/v2.1/user";
    let runtime = Runtime::new(connector_host::COMPONENT).unwrap();
    let sim = Simulator::start().await.unwrap();
    let admin = connection(CONSOLE, tokens::ADMIN);
    let acme = policy(&sim)
        .tenant("acme")
        .path_rates([PathRate::new(USER, RequestRate::new(1, 1))]);
    let started = Instant::now();
    let (a, b) = tokio::join!(
        runtime.validate_connection(&admin, &acme),
        runtime.validate_connection(&admin, &acme)
    );
    let elapsed = started.elapsed();
    let mut requests = Vec::new();
    for outcome in [a, b] {
        assert!(outcome.result.is_ok(), "{:?}", outcome.result);
        requests.extend(outcome.requests);
    }
    let (user, other): (Vec<_>, Vec<_>) = requests.iter().partition(|r| r.path == USER);
    assert_eq!(user.len(), 2, "{requests:?}");
    assert!(other.len() >= 6, "{requests:?}");
    // One of the two `/user` reads waited its turn, a second after the
    // other; nothing else was paced.
    let mut waits: Vec<u64> = user.iter().map(|r| r.waited_ms).collect();
    waits.sort_unstable();
    assert_eq!(waits[0], 0, "{user:?}");
    assert!(waits[1] >= 900, "{user:?}");
    assert!(elapsed >= Duration::from_millis(900), "{elapsed:?}");
    assert!(other.iter().all(|r| r.waited_ms == 0), "{other:?}");

    // The next `/user` turn is a second away: a call that must end sooner
    // is refused for that path, and the audit names it.
    let hurried = acme.clone().deadline(Duration::from_millis(300));
    let outcome = runtime.validate_connection(&admin, &hurried).await;
    let refused: Vec<_> = outcome
        .requests
        .iter()
        .filter(|r| r.outcome.starts_with("denied: paced"))
        .collect();
    let [record] = &refused[..] else {
        panic!("{:?}", outcome.requests)
    };
    assert_eq!(record.path, USER);
    assert!(
        record.outcome.starts_with(
            "denied: paced: this tenant's next turn for tenant.sentinelone.net/web/api/v2.1/user is "
        ),
        "{}",
        record.outcome
    );
}

/// A playbook cancelled while its requests wait for their turns (the
/// embedder drops the calls) leaves no phantom turns: the admin's next
/// call takes the first turn they gave back.
#[tokio::test]
async fn turns_of_calls_dropped_while_they_wait_go_back_to_the_tenant() {
    let runtime = Runtime::new(connector_host::COMPONENT).unwrap();
    let sim = Simulator::start().await.unwrap();
    let admin = connection(CONSOLE, tokens::ADMIN);
    let acme = policy(&sim)
        .tenant("acme")
        .request_rate(RequestRate::new(1, 1));
    let started = Instant::now();
    let first = runtime.get_host(&admin, &finance_laptop(), &acme).await;
    assert!(first.result.is_ok(), "{:?}", first.result);
    // Two more calls take the turns a second and two seconds away, and are
    // given up on before either comes.
    let laptop = finance_laptop();
    let give_up = || {
        tokio::time::timeout(
            Duration::from_millis(300),
            runtime.get_host(&admin, &laptop, &acme),
        )
    };
    let (b, c) = tokio::join!(give_up(), give_up());
    assert!(b.is_err() && c.is_err(), "both calls were still waiting");
    assert_eq!(sim.requests().len(), 1, "the dropped calls sent nothing");

    let next = runtime.get_host(&admin, &finance_laptop(), &acme).await;
    let elapsed = started.elapsed();
    assert!(next.result.is_ok(), "{:?}", next.result);
    let [record] = &next.requests[..] else {
        panic!("{:?}", next.requests)
    };
    // Its turn is the first one given back, a second after the first
    // request, not the fourth, three seconds after it.
    assert!(record.waited_ms > 0, "{record:?}");
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_millis(2000),
        "{elapsed:?}"
    );
    assert_eq!(sim.requests().len(), 2);
}

#[tokio::test]
async fn a_request_whose_turn_comes_after_the_deadline_is_not_sent() {
    let runtime = Runtime::new(connector_host::COMPONENT).unwrap();
    let other_version = runtime.load_version(connector_host::COMPONENT).unwrap();
    let sim = Simulator::start().await.unwrap();
    let admin = connection(CONSOLE, tokens::ADMIN);
    let once_a_second = RequestRate::new(1, 1);
    let acme = policy(&sim).tenant("acme").request_rate(once_a_second);
    let first = runtime.get_host(&admin, &finance_laptop(), &acme).await;
    assert!(first.result.is_ok(), "{:?}", first.result);
    let sent = sim.requests().len();

    // acme's next turn is about a second away: a call that must end sooner
    // sends nothing, in this runtime or in another version loaded into it.
    let hurried = acme.clone().deadline(Duration::from_millis(400));
    for runtime in [&runtime, &other_version] {
        let outcome = runtime.get_host(&admin, &finance_laptop(), &hurried).await;
        match &outcome.result {
            Err(CallError::Connector(ConnectorError::RateLimited(limit))) => {
                assert_eq!(limit.retry_after_seconds, None);
                assert!(
                    limit.message.contains(
                        "The SOAR platform paces this connection's requests to \
                         tenant.sentinelone.net, and the turn for GET /web/api/v2.1/agents \
                         would have come after this action's time limit, so it was not sent."
                    ),
                    "{}",
                    limit.message
                );
            }
            other => panic!("expected rate-limited, got {other:?}"),
        }
        let [record] = &outcome.requests[..] else {
            panic!("{:?}", outcome.requests)
        };
        assert!(
            record.outcome.starts_with(
                "denied: paced: this tenant's next turn for tenant.sentinelone.net is "
            ),
            "{record:?}"
        );
        assert_eq!(record.status, None);
    }
    assert_eq!(sim.requests().len(), sent, "nothing more was sent");

    // Another tenant's turn is its own.
    let globex = hurried.clone().tenant("globex");
    let outcome = runtime.get_host(&admin, &finance_laptop(), &globex).await;
    assert!(outcome.result.is_ok(), "{:?}", outcome.result);
}

async fn validate_as(runtime: &Runtime, sim: &Simulator, tenant: &str) -> usize {
    let outcome = runtime
        .validate_connection(
            &connection(CONSOLE, tokens::ADMIN),
            &policy(sim).tenant(tenant),
        )
        .await;
    assert!(outcome.result.is_ok(), "{:?}", outcome.result);
    outcome.requests.len()
}

#[tokio::test]
async fn keep_alive_connections_are_reused_within_a_tenant_and_never_across() {
    let runtime = Runtime::new(connector_host::COMPONENT).unwrap();
    let sim = Simulator::start().await.unwrap();
    let mut sent = 0;
    for _ in 0..3 {
        sent += validate_as(&runtime, &sim, "acme").await;
    }
    assert!(sent >= 9, "validation makes several requests: {sent}");
    assert_eq!(sim.requests().len(), sent);
    assert_eq!(sim.connections_accepted(), 1, "one connection for acme");
    assert_eq!(runtime.idle_connections(), 1);

    validate_as(&runtime, &sim, "globex").await;
    assert_eq!(sim.connections_accepted(), 2, "globex never gets acme's");
    validate_as(&runtime, &sim, "acme").await;
    assert_eq!(sim.connections_accepted(), 2, "acme's is still there");
    assert_eq!(runtime.idle_connections(), 2);
}

#[tokio::test]
async fn idle_connections_are_closed_after_the_timeout_without_further_calls() {
    let config = RuntimeConfig::default().idle_connection_timeout(Duration::from_millis(200));
    let runtime = Runtime::with_config(connector_host::COMPONENT, config).unwrap();
    let sim = Simulator::start().await.unwrap();
    validate_as(&runtime, &sim, "acme").await;
    assert_eq!(runtime.idle_connections(), 1);
    assert_eq!(sim.open_connections(), 1, "kept open for reuse");

    // No call comes to notice the expiry: the background sweep must.
    let idle_since = Instant::now();
    while sim.open_connections() > 0 && idle_since.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(runtime.idle_connections(), 0);
    assert_eq!(sim.open_connections(), 0, "the console sees it closed");
    // 200 ms of timeout plus a 50 ms sweep period, with room for a slow
    // machine; without the sweep it would stay open for good.
    assert!(idle_since.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn keep_alive_can_be_turned_off() {
    let config = RuntimeConfig::default().max_idle_connections_per_destination(0);
    let runtime = Runtime::with_config(connector_host::COMPONENT, config).unwrap();
    let sim = Simulator::start().await.unwrap();
    let sent = validate_as(&runtime, &sim, "acme").await;
    assert_eq!(sim.connections_accepted(), sent as u64);
    assert_eq!(runtime.idle_connections(), 0);
}

#[tokio::test]
async fn an_abandoned_response_does_not_leave_its_connection_for_reuse() {
    let runtime = Runtime::new(connector_host::COMPONENT).unwrap();
    let sim = Simulator::start().await.unwrap();
    // The connector stops reading the 12 MiB answer at the host's cap.
    let outcome = runtime
        .validate_connection(
            &connection(CONSOLE, tokens::OVERSIZED),
            &policy(&sim).tenant("acme"),
        )
        .await;
    assert!(outcome.result.is_err());
    assert_eq!(runtime.idle_connections(), 0);
    validate_as(&runtime, &sim, "acme").await;
    assert_eq!(sim.connections_accepted(), 2);
}

#[tokio::test]
async fn another_version_loads_into_the_same_engine() {
    let runtime = Runtime::new(connector_host::COMPONENT).unwrap();
    let other = runtime
        .load_version(connector_host::HOSTILE_COMPONENT)
        .unwrap();
    assert!(wasmtime::Engine::same(runtime.engine(), other.engine()));
    // The hostile component's `describe` grows its memory until stopped.
    assert!(matches!(
        other.describe().await,
        Err(HostError::MemoryLimit(_))
    ));
    assert_eq!(runtime.describe().await.unwrap().id, "sentinelone");
}

/// A component of the `sentinelone` world as `wit/` describes it after
/// `patch`, whose functions all trap: what a connector built against
/// another version of the contract looks like to the host.
fn stand_in(patch: impl Fn(String) -> String) -> Vec<u8> {
    let wit = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("wit");
    // Tests run in parallel in one process: each stand-in gets its own copy.
    static BUILT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = BUILT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("stand-in-wit-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("deps")).unwrap();
    for entry in std::fs::read_dir(wit.join("deps")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.join("deps").join(path.file_name().unwrap())).unwrap();
    }
    let contract = std::fs::read_to_string(wit.join("connector.wit")).unwrap();
    std::fs::write(dir.join("connector.wit"), patch(contract)).unwrap();

    let mut resolve = wit_parser::Resolve::default();
    let (package, _) = resolve.push_dir(&dir).unwrap();
    let world = resolve
        .select_world(&[package], Some("sentinelone"))
        .unwrap();
    let mangling = wit_parser::ManglingAndAbi::Legacy(wit_parser::LiftLowerAbi::Sync);
    let mut module = wit_component::dummy_module(&resolve, world, mangling);
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )
    .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    wit_component::ComponentEncoder::default()
        .module(&module)
        .unwrap()
        .validate(true)
        .encode()
        .unwrap()
}

#[test]
fn a_component_missing_an_export_does_not_load() {
    let empty = b"\0asm\x0d\0\x01\0";
    match Runtime::new(empty) {
        Err(HostError::Load(message)) => assert!(
            message.contains("soar:connector/"),
            "names what is missing: {message}"
        ),
        other => panic!("expected a load error, got {:?}", other.err()),
    }

    let renamed =
        stand_in(|wit| wit.replace("    release-host: func(", "    reconnect-host: func("));
    match Runtime::new(&renamed) {
        Err(HostError::Load(message)) => {
            assert!(
                message.contains("release-host"),
                "names the export: {message}"
            )
        }
        other => panic!("expected a load error, got {:?}", other.err()),
    }
}

#[tokio::test]
async fn an_export_of_another_type_is_refused_before_it_runs() {
    let isolate =
        "    isolate-host: func(conn: connection, host: host-selector, options: action-options)";
    let mistyped = stand_in(|wit| {
        assert!(
            wit.contains(isolate),
            "the contract still declares isolate-host this way"
        );
        wit.replace(
            isolate,
            "    isolate-host: func(conn: connection, host: host-selector)",
        )
    });
    // It has every export the runtime needs, so it loads; its isolate-host
    // takes two parameters, not three.
    let runtime = Runtime::new(&mistyped).unwrap();
    let sim = Simulator::start().await.unwrap();
    let host = connector_host::HostSelector::Hostname("RECEPTION-PC".into());
    let outcome = runtime
        .isolate_host(
            &connection(CONSOLE, tokens::ADMIN),
            &host,
            &no_options(),
            &policy(&sim),
        )
        .await;
    match &outcome.result {
        Err(CallError::Host(HostError::Load(message))) => {
            assert!(message.contains("does not match the contract"), "{message}")
        }
        other => panic!("expected a load error, got {other:?}"),
    }
    assert!(outcome.requests.is_empty());
    assert!(sim.requests().is_empty(), "nothing reached the console");

    // Its correctly typed functions run (and trap: they are stand-ins).
    let report = runtime
        .validate_connection(&connection(CONSOLE, tokens::ADMIN), &policy(&sim))
        .await;
    assert!(
        matches!(report.result, Err(CallError::Host(HostError::Trap(_)))),
        "{:?}",
        report.result
    );
}

/// The connector's initial linear memory (`.cargo/config.toml`).
const INITIAL_MEMORY: usize = 256 * 1024;

/// A call that grows linear memory pays for it every time (the pool makes
/// the pages accessible, then protects them again for the next call, which
/// interrupts every thread of the process): about 16% of an isolate. The
/// everyday calls, with the simulator's real-sized 4 KB agent records, must
/// fit in the initial memory.
#[tokio::test]
async fn everyday_calls_never_grow_linear_memory() {
    use connector_host::simulator::agents;
    use connector_host::{ActionOptions, HostSelector};
    let sim = Simulator::start().await.unwrap();
    let conn = connection(CONSOLE, tokens::ADMIN);
    let by_id = HostSelector::AgentId(agents::FINANCE_LAPTOP.into());
    let by_name = HostSelector::Hostname("reception-pc".into());
    let options = ActionOptions {
        protected_hosts: vec!["DC-01, 10.0.0.2/32".into()],
        wait_seconds: 0,
    };
    let rt = runtime();
    let validate = rt.validate_connection(&conn, &policy(&sim)).await;
    let get = rt.get_host(&conn, &by_id, &policy(&sim)).await;
    let ambiguous = rt.get_host(&conn, &by_name, &policy(&sim)).await;
    let isolate = rt
        .isolate_host(&conn, &by_id, &options, &policy(&sim))
        .await;
    let release = rt
        .release_host(&conn, &by_id, &options, &policy(&sim))
        .await;
    assert!(validate.result.is_ok() && get.result.is_ok());
    assert!(isolate.result.is_ok(), "{:?}", isolate.result);
    assert!(release.result.is_ok(), "{:?}", release.result);
    assert!(ambiguous.result.is_err(), "two agents share the name");
    for (call, memory) in [
        ("validate", validate.memory_bytes),
        ("get-host", get.memory_bytes),
        ("ambiguous get-host", ambiguous.memory_bytes),
        ("isolate", isolate.memory_bytes),
        ("release", release.memory_bytes),
    ] {
        assert_eq!(memory, INITIAL_MEMORY, "{call} grew linear memory");
    }
}

/// A console behind TLS with a private CA, reached through a proxy: the
/// setup of a SOAR platform in a network with no direct way out.
mod behind_a_proxy {
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};

    use connector_host::simulator::Simulator;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// A private certificate authority, and a TLS front that presents a
    /// certificate it signed for `host` and passes the plain stream on to
    /// `sim`. Returns the authority's PEM and the front's address.
    pub async fn tls_front(sim: &Simulator, host: &str) -> (String, SocketAddr) {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec![host.to_owned()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        let der = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![leaf.der().clone()], der)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let front = listener.local_addr().unwrap();
        let backend = sim.addr();
        tokio::spawn(async move {
            loop {
                let (socket, _) = listener.accept().await.unwrap();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    // A client that does not trust the authority hangs up.
                    let Ok(mut tls) = acceptor.accept(socket).await else {
                        return;
                    };
                    let mut plain = TcpStream::connect(backend).await.unwrap();
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        });
        (ca.pem(), front)
    }

    /// An HTTP proxy that opens every `CONNECT` tunnel to `to`, whatever it
    /// names, and records each request head it gets.
    pub async fn proxy(to: SocketAddr) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let seen = heads.clone();
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    while !head.ends_with(b"\r\n\r\n") {
                        head.push(socket.read_u8().await.unwrap());
                    }
                    let head = String::from_utf8(head).unwrap();
                    let allowed = head.contains("Proxy-Authorization: Basic c29hcjpzM2NyZXQ=");
                    seen.lock().unwrap().push(head);
                    if !allowed {
                        let refusal = b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n";
                        let _ = socket.write_all(refusal).await;
                        return;
                    }
                    socket
                        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                        .await
                        .unwrap();
                    let mut upstream = TcpStream::connect(to).await.unwrap();
                    let _ = tokio::io::copy_bidirectional(&mut socket, &mut upstream).await;
                });
            }
        });
        (addr, heads)
    }
}

#[tokio::test]
async fn a_console_is_reached_through_a_proxy_with_tls_verified_against_a_private_ca() {
    use connector_host::Proxy;
    let sim = Simulator::start().await.unwrap();
    let host = "u9999-s1.sentinelone.net";
    let (ca, front) = behind_a_proxy::tls_front(&sim, host).await;
    let (proxy_addr, heads) = behind_a_proxy::proxy(front).await;
    let proxy = Proxy::parse(&format!("http://soar:s3cret@{proxy_addr}")).unwrap();
    let policy = CallPolicy::with_egress(EgressPolicy::default().via_proxy(proxy.clone()))
        .http_timeout(Duration::from_secs(5));
    let connection = Connection::new("u9999-s1", tokens::ADMIN);

    let trusting = Runtime::with_config(
        connector_host::COMPONENT,
        RuntimeConfig::default()
            .trust_certificates_pem(ca.as_bytes())
            .unwrap(),
    )
    .unwrap();
    let outcome = trusting.validate_connection(&connection, &policy).await;
    let report = outcome.result.expect("validated through the proxy");
    assert_eq!(report.role.as_deref(), Some("Admin"));
    // Each request was tunnelled, the token never shown to the proxy; one
    // kept-alive tunnel carried them all.
    let heads = heads.lock().unwrap().clone();
    assert_eq!(
        heads,
        [format!(
            "CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\
             Proxy-Authorization: Basic c29hcjpzM2NyZXQ=\r\n\r\n"
        )]
    );
    assert!(sim.requests().len() >= 3, "{:?}", request_lines(&sim));
    assert!(outcome.requests.iter().all(|r| r.status == Some(200)));

    // Without the private CA the console's certificate is refused.
    let outcome = runtime().validate_connection(&connection, &policy).await;
    match outcome.result {
        Err(CallError::Connector(e)) => {
            assert_eq!(e.kind(), "unreachable");
            assert!(
                e.message().starts_with(
                    "The secure (TLS) connection to u9999-s1.sentinelone.net failed (the \
                     server's certificate was not accepted)."
                ),
                "{}",
                e.message()
            );
        }
        other => panic!("an untrusted certificate was accepted: {other:?}"),
    }

    // A proxy that refuses the tunnel: the call fails, and the audit record
    // says what the proxy answered, without its password.
    let wrong = Proxy::parse(&format!("http://soar:wrong@{proxy_addr}")).unwrap();
    let policy = CallPolicy::with_egress(EgressPolicy::default().via_proxy(wrong))
        .http_timeout(Duration::from_secs(5));
    let outcome = trusting.validate_connection(&connection, &policy).await;
    match &outcome.result {
        Err(CallError::Connector(e)) => assert_eq!(
            e.message(),
            "Could not connect to u9999-s1.sentinelone.net (the SOAR platform's proxy or \
             network configuration did not let it through). Check that the hostname is right \
             and that the SOAR platform can reach it on port 443."
        ),
        other => panic!("a refused tunnel was not an error: {other:?}"),
    }
    let audit = format!("{:?}", outcome.requests);
    assert!(
        audit.contains("407 Proxy Authentication Required"),
        "{audit}"
    );
    assert!(
        !audit.contains("d3Jvbmc") && !audit.contains("wrong"),
        "{audit}"
    );
}
