//! The host contains a misbehaving connector: each hostile behaviour of
//! `tests/hostile` is stopped with its own typed error, within its budget,
//! while well-behaved calls running at the same time succeed.

mod support;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use connector_host::simulator::{Simulator, tokens};
use connector_host::{CallError, CallPolicy, HostError, Outcome, Runtime, RuntimeConfig};
use support::*;

fn hostile() -> &'static Runtime {
    static HOSTILE: OnceLock<Runtime> = OnceLock::new();
    HOSTILE.get_or_init(|| {
        Runtime::new(connector_host::HOSTILE_COMPONENT).expect("hostile component loads")
    })
}

async fn misbehave(
    behaviour: &str,
    policy: &CallPolicy,
) -> Outcome<connector_host::ConnectionReport> {
    hostile()
        .validate_connection(&connection(behaviour, "hostile-token"), policy)
        .await
}

fn host_error<T: std::fmt::Debug>(outcome: Outcome<T>) -> HostError {
    match outcome.result {
        Err(CallError::Host(e)) => e,
        other => panic!("expected a host error, got {other:?}"),
    }
}

#[tokio::test]
async fn an_endless_loop_is_stopped_by_the_cpu_budget() {
    // In wasm, in a host call that never waits, and in a loop that waits a
    // little between long computations: each is CPU time.
    for behaviour in ["spin", "spin-host", "duty"] {
        let policy = CallPolicy::default().cpu_budget(Duration::from_millis(300));
        let started = Instant::now();
        let outcome = misbehave(behaviour, &policy).await;
        // The outcome charges the time it ran, which ended it.
        let cpu_time = outcome.cpu_time;
        assert!(
            cpu_time > Duration::from_millis(300) && cpu_time <= started.elapsed(),
            "{behaviour}: {cpu_time:?}"
        );
        let err = host_error(outcome);
        assert!(
            matches!(err, HostError::CpuBudget(d) if d == Duration::from_millis(300)),
            "{behaviour}: {err:?}"
        );
        // CPU time is never more than wall time: not stopped early.
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "{behaviour}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{behaviour}: stopped near its budget: {:?}",
            started.elapsed()
        );
    }
}

#[tokio::test]
async fn waiting_is_not_cpu_time_however_often_a_guest_waits() {
    // 40 waits of 15 ms, each spanning a 10 ms epoch tick: 600 ms of
    // waiting against a 100 ms budget. Were each wait's tick charged, it
    // would stop after 10.
    let policy = CallPolicy::default().cpu_budget(Duration::from_millis(100));
    let started = Instant::now();
    let outcome = misbehave("wait:40", &policy).await;
    assert!(
        outcome.cpu_time < Duration::from_millis(100),
        "{:?} charged",
        outcome.cpu_time
    );
    assert!(outcome.cpu_time > Duration::ZERO, "it did run");
    assert_eq!(outcome.result.unwrap().user.as_deref(), Some("40"));
    assert!(started.elapsed() >= Duration::from_millis(600));
}

/// A busy machine: this thread and one that never stops computing share one
/// processor, so a guest running on this thread gets about half of it.
#[cfg(target_os = "linux")]
mod shared_processor {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Pins the calling thread to the first processor it may run on.
    pub fn pin_to_first_processor() {
        // SAFETY: `set` is a valid cpu_set_t for both calls, which affect
        // only the calling thread (pid 0).
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            let size = std::mem::size_of::<libc::cpu_set_t>();
            assert_eq!(libc::sched_getaffinity(0, size, &mut set), 0);
            let first = (0..libc::CPU_SETSIZE as usize)
                .find(|&cpu| libc::CPU_ISSET(cpu, &set))
                .expect("the thread may run somewhere");
            libc::CPU_ZERO(&mut set);
            libc::CPU_SET(first, &mut set);
            assert_eq!(libc::sched_setaffinity(0, size, &set), 0);
        }
    }

    /// The CPU time the calling thread has used.
    pub fn thread_cpu() -> std::time::Duration {
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `now` is a valid, writable timespec.
        assert_eq!(
            unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) },
            0
        );
        std::time::Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
    }

    /// Starts a thread that computes on this thread's processor until the
    /// returned flag is set.
    pub fn start_competitor() -> Arc<AtomicBool> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::spawn(move || {
            pin_to_first_processor();
            while !flag.load(Ordering::Relaxed) {
                std::hint::spin_loop();
            }
        });
        stop
    }
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn time_a_busy_machine_gives_other_threads_is_not_charged_to_the_guest() {
    use std::sync::atomic::Ordering;
    // The runtime is current-thread: the guest runs on this test's thread.
    hostile(); // compiled before the clock starts
    shared_processor::pin_to_first_processor();
    // Calibrated by this thread's CPU clock, which noise from other tests
    // does not move (a wall-clock calibration would).
    let unlimited = CallPolicy::default();
    let before = shared_processor::thread_cpu();
    let alone = misbehave("work:300", &unlimited).await;
    let work = shared_processor::thread_cpu() - before;
    assert_eq!(alone.result.unwrap().user.as_deref(), Some("300"));
    // The work fits the budget in CPU time, not in wall time once it has
    // to share its processor.
    let budget = work.mul_f64(1.4);
    let stop = shared_processor::start_competitor();
    let shared = Instant::now();
    let outcome = misbehave("work:300", &CallPolicy::default().cpu_budget(budget)).await;
    let shared = shared.elapsed();
    stop.store(true, Ordering::Relaxed);
    let times = format!("{work:?} of CPU alone, {shared:?} shared, budget {budget:?}");
    match outcome.result {
        Ok(report) => assert_eq!(report.user.as_deref(), Some("300"), "{times}"),
        Err(e) => panic!("{e:?}: {times}"),
    }
    assert!(shared > budget, "the processor was not shared: {times}");
}

#[tokio::test]
async fn unbounded_allocation_is_stopped_by_the_memory_limit() {
    let policy = CallPolicy::default().max_memory_bytes(32 * 1024 * 1024);
    let err = host_error(misbehave("grow", &policy).await);
    assert!(matches!(err, HostError::MemoryLimit(33_554_432)), "{err:?}");
    assert_eq!(err.kind(), "memory-limit");
}

#[tokio::test]
async fn the_memory_limit_named_is_the_one_in_force() {
    // The policy asks for more than the runtime's slots hold: the slot size
    // is the limit, and the error says so.
    let config = RuntimeConfig::default().max_memory_per_instance(16 << 20);
    let runtime = Runtime::with_config(connector_host::HOSTILE_COMPONENT, config).unwrap();
    let policy = CallPolicy::default().max_memory_bytes(1 << 30);
    let outcome = runtime
        .validate_connection(&connection("grow", "hostile-token"), &policy)
        .await;
    let err = host_error(outcome);
    assert!(matches!(err, HostError::MemoryLimit(16_777_216)), "{err:?}");
}

#[tokio::test]
async fn a_memory_cap_below_what_the_component_starts_with_is_a_memory_limit() {
    // The connector starts with 256 KiB of linear memory.
    let policy = CallPolicy::default().max_memory_bytes(64 * 1024);
    let outcome = runtime()
        .validate_connection(&connection(CONSOLE, tokens::ADMIN), &policy)
        .await;
    assert!(outcome.requests.is_empty(), "{:?}", outcome.requests);
    let err = host_error(outcome);
    assert!(matches!(err, HostError::MemoryLimit(65_536)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "the connector exceeded its memory limit of 65536 bytes and was stopped"
    );
}

#[tokio::test]
async fn unbounded_recursion_traps() {
    let err = host_error(misbehave("recurse", &CallPolicy::default()).await);
    match &err {
        // The shadow stack lives in linear memory, so overflowing it is an
        // out-of-bounds access (or, for host frames, stack exhaustion).
        HostError::Trap(message) => {
            assert!(
                message.contains("out of bounds") || message.contains("stack"),
                "{message}"
            );
            assert!(
                message.len() < 200,
                "a short reason, not a backtrace: {message}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_request_flood_is_capped_and_the_call_fails() {
    let sim = Simulator::start().await.unwrap();
    let policy = policy(&sim).max_requests(20);
    let outcome = misbehave("flood", &policy).await;
    assert_eq!(
        outcome.requests.len(),
        21,
        "20 sent and the first refusal recorded"
    );
    assert!(outcome.requests[20].outcome.contains("request cap of 20"));
    assert!(matches!(
        host_error(outcome),
        HostError::TooManyRequests(20)
    ));
    assert_eq!(
        sim.requests().len(),
        20,
        "nothing past the cap reached the network"
    );
}

#[tokio::test]
async fn ten_thousand_requests_stop_at_the_default_cap() {
    let sim = Simulator::start().await.unwrap();
    let started = Instant::now();
    let outcome = misbehave("flood", &policy(&sim)).await;
    assert!(matches!(
        host_error(outcome),
        HostError::TooManyRequests(100)
    ));
    assert_eq!(sim.requests().len(), 100);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_panic_is_a_trap() {
    let err = host_error(misbehave("trap", &CallPolicy::default()).await);
    assert_eq!(err.kind(), "trap");
    assert_eq!(
        err.to_string(),
        "the connector crashed: it panicked or aborted (wasm trap: wasm `unreachable` \
         instruction executed)"
    );
}

#[tokio::test]
async fn exiting_in_the_middle_of_a_call_is_a_failure_not_a_success() {
    let err = host_error(misbehave("exit", &CallPolicy::default()).await);
    assert_eq!(err.kind(), "trap");
    assert_eq!(
        err.to_string(),
        "the connector crashed: it called exit (status 0) in the middle of a call, \
         returning nothing"
    );
    // The runtime is unharmed: the next call runs.
    let outcome = misbehave("", &CallPolicy::default()).await;
    assert!(outcome.result.is_ok(), "{:?}", outcome.result);
}

#[tokio::test]
async fn no_state_survives_between_calls() {
    // One call slot, so every call reuses the memory slot of the last.
    let config = RuntimeConfig::default().max_concurrent_calls(1);
    let runtime = Runtime::with_config(connector_host::HOSTILE_COMPONENT, config).unwrap();
    for _ in 0..5 {
        let report = runtime
            .validate_connection(
                &connection("state", "hostile-token"),
                &CallPolicy::default(),
            )
            .await
            .result
            .unwrap();
        assert_eq!(
            report.user.as_deref(),
            Some("1"),
            "each call runs in a fresh instance"
        );
        // The slot is kept resident, yet none of the 4,608 marks the
        // previous call left on its heap and stack is visible.
        assert_eq!(report.role.as_deref(), Some("residue 0, then 4608"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn well_behaved_calls_succeed_beside_hostile_ones() {
    let sim = Simulator::start().await.unwrap();
    let good_policy = policy(&sim);
    let bad_policy = CallPolicy::default()
        .cpu_budget(Duration::from_millis(300))
        .max_memory_bytes(32 * 1024 * 1024);
    let mut tasks = Vec::new();
    for i in 0..12 {
        let (good_policy, bad_policy) = (good_policy.clone(), bad_policy.clone());
        tasks.push(tokio::spawn(async move {
            if i % 2 == 0 {
                let behaviour = ["spin", "grow", "recurse"][i / 2 % 3];
                let outcome = misbehave(behaviour, &bad_policy).await;
                (false, outcome.result.is_err())
            } else {
                let outcome = runtime()
                    .validate_connection(&connection(CONSOLE, tokens::ADMIN), &good_policy)
                    .await;
                (true, outcome.result.is_ok())
            }
        }));
    }
    for task in tasks {
        let (good, as_expected) = task.await.unwrap();
        assert!(
            as_expected,
            "a {} call went wrong",
            if good { "well-behaved" } else { "hostile" }
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_flooding_the_runtime_with_slow_calls_leaves_room_for_others() {
    let config = RuntimeConfig::default()
        .max_concurrent_calls(4)
        .max_concurrent_calls_per_tenant(2);
    let runtime = std::sync::Arc::new(
        Runtime::with_config(connector_host::HOSTILE_COMPONENT, config).unwrap(),
    );
    // Eight calls that each take 300 ms (20 sleeps of 15 ms) and compute
    // nothing, so every one of them is queued at once.
    let mallory = CallPolicy::default().tenant("mallory");
    let flood: Vec<_> = (0..8)
        .map(|_| {
            let (runtime, mallory) = (runtime.clone(), mallory.clone());
            tokio::spawn(async move {
                let slow = connection("wait:20", "hostile-token");
                runtime.validate_connection(&slow, &mallory).await.result
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;

    // In one line behind the flood, these would wait 250 ms or more for a
    // slot; as it is, the flood holds two of the four.
    let polite = CallPolicy::default()
        .tenant("acme")
        .queue_timeout(Duration::from_millis(150));
    for _ in 0..5 {
        let outcome = runtime
            .validate_connection(&connection("", "hostile-token"), &polite)
            .await;
        assert!(outcome.result.is_ok(), "{:?}", outcome.result);
    }
    for call in flood {
        let report = call
            .await
            .unwrap()
            .expect("the flood's calls run, two at a time");
        assert_eq!(report.user.as_deref(), Some("20"));
    }
}

/// A guest that ignores a refused request is stopped with the host's own
/// `egress-denied`, naming the destination; nothing reached the network.
fn assert_egress_denied(outcome: Outcome<connector_host::ConnectionReport>, destination: &str) {
    assert_eq!(outcome.requests.len(), 1, "{:?}", outcome.requests);
    assert!(
        outcome.requests[0].outcome.starts_with("denied"),
        "{destination}: {:?}",
        outcome.requests
    );
    match host_error(outcome) {
        HostError::EgressDenied(d) => assert_eq!(d, destination),
        other => panic!("{destination}: {other:?}"),
    }
}

#[tokio::test]
async fn a_domain_outside_the_allow_list_is_refused() {
    for authority in [
        "evil.example.com",
        "sentinelone.net.evil.com",
        "tenant.sentinelone.net:8443",
    ] {
        let outcome = misbehave(&format!("fetch:{authority}"), &CallPolicy::default()).await;
        assert_egress_denied(outcome, authority);
    }
}

/// An embedder can pin a tenant to its own console: a connector then has
/// nowhere else to send that tenant's token, not even another console
/// under the same domain.
#[tokio::test]
async fn a_tenant_pinned_to_its_console_reaches_no_other_console() {
    let sim = Simulator::start().await.unwrap();
    let pinned = connector_host::EgressPolicy::deny_all()
        .allow_domain("tenant.sentinelone.net")
        .unwrap()
        .connect_to("tenant.sentinelone.net", sim.addr())
        .unwrap();
    let pinned = CallPolicy::with_egress(pinned);
    let own = misbehave("fetch:tenant.sentinelone.net", &pinned).await;
    assert_eq!(own.result.unwrap().user.as_deref(), Some("status 200"));
    for other in [
        "u9999-s999.sentinelone.net",
        "sentinelone.net",
        "eviltenant.sentinelone.net",
    ] {
        assert_egress_denied(misbehave(&format!("fetch:{other}"), &pinned).await, other);
    }
    assert_eq!(sim.requests().len(), 1, "only the own console was reached");
}

#[tokio::test]
async fn private_and_metadata_addresses_are_refused_by_literal_and_by_name() {
    // By literal: an address is never under an allowed domain.
    for literal in ["10.0.0.1", "169.254.169.254", "[::1]", "127.0.0.1"] {
        let outcome = misbehave(&format!("fetch:{literal}"), &CallPolicy::default()).await;
        assert_egress_denied(outcome, literal);
    }
    // By name: an allowed name that resolves to loopback is refused after
    // DNS, before any connection.
    let egress = connector_host::EgressPolicy::default()
        .allow_domain("localhost")
        .unwrap();
    let outcome = misbehave("fetch:localhost", &CallPolicy::with_egress(egress)).await;
    assert_eq!(
        outcome.requests[0].outcome,
        "denied: the name resolves to a forbidden address"
    );
    assert!(matches!(host_error(outcome), HostError::EgressDenied(d) if d == "localhost"));
}

#[tokio::test]
async fn a_huge_request_body_is_cut_off_at_the_cap() {
    let sim = Simulator::start().await.unwrap();
    let started = Instant::now();
    let outcome = misbehave("post:16", &policy(&sim)).await;
    assert_eq!(outcome.requests.len(), 1);
    assert_eq!(outcome.requests[0].outcome, "request-body-too-large");
    assert!(matches!(
        host_error(outcome),
        HostError::RequestTooLarge(1_048_576)
    ));
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    // The server saw at most a truncated request and acted on nothing.
    assert!(sim.requests().is_empty(), "{:?}", sim.requests());
    // A body under the cap goes through.
    let outcome = misbehave("post:0", &policy(&sim)).await;
    assert!(outcome.result.is_ok(), "{:?}", outcome.result);
}

#[tokio::test]
async fn an_explicit_loopback_route_is_the_only_way_to_loopback() {
    let sim = Simulator::start().await.unwrap();
    let outcome = misbehave("fetch:tenant.sentinelone.net", &policy(&sim)).await;
    assert_eq!(outcome.result.unwrap().user.as_deref(), Some("status 200"));
    assert_eq!(sim.requests().len(), 1);
}

#[tokio::test]
async fn a_connector_error_is_cut_to_eight_kib() {
    let outcome = misbehave("shout:1024", &CallPolicy::default()).await;
    let message = match outcome.result {
        Err(CallError::Connector(e)) => e.message().to_owned(),
        other => panic!("expected the connector's error, got {other:?}"),
    };
    assert_eq!(
        message,
        format!("{}…[1040384 more bytes]", "!".repeat(8192))
    );
}

#[tokio::test]
async fn a_forged_host_header_is_refused_and_the_request_goes_where_its_uri_says() {
    let sim = Simulator::start().await.unwrap();
    let outcome = misbehave("front:evil.example.com", &policy(&sim)).await;
    assert_eq!(
        outcome.result.unwrap().user.as_deref(),
        Some(
            "from-list Err(HeaderError::Forbidden); append Err(HeaderError::Forbidden); status 200"
        )
    );
    let log = sim.requests();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].host.as_deref(), Some(HOST));
    assert_eq!(outcome.requests[0].host, HOST);
}

#[tokio::test]
async fn a_guest_that_puts_the_token_in_a_request_line_never_gets_it_into_the_audit_or_an_error() {
    // The hostile connector's connection token is "hostile-token". Per
    // authority: the audited host, and the destination the host error names
    // (`None`: allowed by name, the lookup fails and the guest reports it).
    // The user-info part is never shown: it says nothing about where the
    // request went.
    for (authority, audited, denied) in [
        (
            "hostile-token@evil.example.com",
            "evil.example.com",
            Some("evil.example.com"),
        ),
        (
            "hostile-token.evil.example.com",
            "[REDACTED].evil.example.com",
            Some("[REDACTED].evil.example.com"),
        ),
        (
            "hostile-token.sentinelone.net",
            "[REDACTED].sentinelone.net",
            None,
        ),
    ] {
        let outcome = misbehave(&format!("fetch:{authority}"), &CallPolicy::default()).await;
        let everything = format!("{outcome:?}");
        assert!(!everything.contains("hostile-token"), "{everything}");
        assert_eq!(outcome.requests[0].host, audited);
        match (&outcome.result, denied) {
            (Err(CallError::Host(HostError::EgressDenied(d))), Some(expected)) => {
                assert_eq!(d, expected)
            }
            (Ok(_), None) => {}
            (other, _) => panic!("{authority}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn hoarding_host_side_resources_is_stopped_with_its_own_error() {
    // Header maps live in host memory, which the linear-memory cap does not
    // see: before the handle limit, one such call held 4 GB of host memory
    // when its CPU budget stopped it. Now it is stopped within a thousand
    // handles of 16 KiB, or at the first header map over 32 KiB.
    for (behaviour, why) in [
        ("hoard:16", "more than 1000 live handles"),
        ("hoard:100", "a header map over 32768 bytes"),
    ] {
        let started = Instant::now();
        let err = host_error(misbehave(behaviour, &CallPolicy::default()).await);
        assert!(
            matches!(&err, HostError::HostResources(m) if m == why),
            "{behaviour}: {err:?}"
        );
        assert_eq!(err.kind(), "host-resources");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{behaviour}: stopped after {:?}",
            started.elapsed()
        );
    }
    // Random bytes are allocated by the host before the guest's memory cap
    // could refuse them: a call may ask for 64 KiB, not wasmtime's 64 MiB.
    let small = misbehave("random:65536", &CallPolicy::default()).await;
    assert_eq!(small.result.unwrap().user.as_deref(), Some("65536"));
    let err = host_error(misbehave("random:65537", &CallPolicy::default()).await);
    assert!(
        matches!(&err, HostError::HostResources(m) if m == "over 65536 random bytes at once"),
        "{err:?}"
    );
    // The real connector stays far inside these limits.
    let sim = Simulator::start().await.unwrap();
    assert!(validate(&sim, tokens::ADMIN).await.result.is_ok());
}

#[tokio::test]
async fn host_memory_limits_are_set_per_tenant() {
    // Tighter than the defaults: each limit stops the guest at the embedder's
    // figure, and names it.
    let tight = CallPolicy::default()
        .max_live_handles(40)
        .max_header_map_bytes(8 * 1024)
        .max_random_bytes(512);
    for (behaviour, why) in [
        ("hoard:4", "more than 40 live handles"),
        ("hoard:16", "a header map over 8192 bytes"),
        ("random:513", "over 512 random bytes at once"),
    ] {
        let err = host_error(misbehave(behaviour, &tight).await);
        assert!(
            matches!(&err, HostError::HostResources(m) if m == why),
            "{behaviour}: {err:?}"
        );
    }
    let small = misbehave("random:512", &tight).await;
    assert_eq!(small.result.unwrap().user.as_deref(), Some("512"));
    // Looser: what the defaults refuse runs.
    let loose = CallPolicy::default().max_random_bytes(1 << 20);
    let large = misbehave("random:65537", &loose).await;
    assert_eq!(large.result.unwrap().user.as_deref(), Some("65537"));
    // The real connector runs within the tight limits, and 10 handles.
    let sim = Simulator::start().await.unwrap();
    let tight = policy(&sim)
        .max_live_handles(10)
        .max_header_map_bytes(8 * 1024)
        .max_random_bytes(512);
    let outcome = runtime()
        .validate_connection(&connection(CONSOLE, tokens::ADMIN), &tight)
        .await;
    assert!(outcome.result.is_ok(), "{:?}", outcome.result);
}

#[tokio::test]
async fn a_connector_that_returns_the_token_has_it_redacted_by_the_host() {
    let outcome = misbehave("echo", &CallPolicy::default()).await;
    assert_eq!(outcome.result.unwrap().user.as_deref(), Some("[REDACTED]"));
    let outcome = hostile()
        .validate_connection(
            &connection("echo", "hostile-token-fail"),
            &CallPolicy::default(),
        )
        .await;
    match outcome.result {
        Err(CallError::Connector(e)) => assert_eq!(e.message(), "the console said [REDACTED]"),
        other => panic!("{other:?}"),
    }
}

/// A connector that puts the token into its requests has it redacted from
/// the audit records and the host's errors however it spells it: in a host
/// name (which the audit lowercases) or percent-encoded in a path.
#[tokio::test]
async fn a_token_sent_in_a_request_line_is_redacted_however_it_is_spelt() {
    const TOKEN: &str = "Hostile-Mixed-Case-Token";
    let encoded: String = TOKEN.bytes().map(|b| format!("%{b:02x}")).collect();
    let sim = Simulator::start().await.unwrap();
    let run = |behaviour: String, policy: CallPolicy| async move {
        hostile()
            .validate_connection(&connection(&behaviour, TOKEN), &policy)
            .await
    };
    // In a host name outside the allowed domains: refused, and the refusal
    // names the destination.
    let denied = run(format!("fetch:{TOKEN}.evil.example"), CallPolicy::default()).await;
    assert_eq!(denied.requests[0].host, "[REDACTED].evil.example");
    assert!(
        matches!(&denied.result, Err(CallError::Host(HostError::EgressDenied(d)))
            if d == "[REDACTED].evil.example"),
        "{:?}",
        denied.result
    );
    // Percent-encoded in the path and query of a request that is sent.
    let path = format!("/web/api/v2.1/agents/{encoded}?filter={}", &encoded[..30]);
    let sent = run(format!("fetch:{HOST}{path}&q={encoded}"), policy(&sim)).await;
    assert_eq!(
        sent.requests[0].path,
        format!(
            "/web/api/v2.1/agents/[REDACTED]?filter={}&q=[REDACTED]",
            &encoded[..30]
        )
    );
    let everything = format!("{denied:?} {sent:?}");
    for spelling in [TOKEN, &TOKEN.to_ascii_lowercase(), &encoded] {
        assert!(!everything.contains(spelling), "{spelling} in {everything}");
    }
    // The request did go out as the connector wrote it: redaction is for
    // what the host reports, not what it sends.
    assert!(
        sim.requests()[0].path.contains(&encoded),
        "{:?}",
        sim.requests()
    );
}

/// A connector's message, and the audit of its requests, lose any run of 16
/// or more of the token's characters: a value quoted cut short still shows
/// most of the token.
#[tokio::test]
async fn part_of_the_token_is_redacted_from_messages_and_the_audit() {
    const TOKEN: &str = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJib2IifQ.c2lnbmF0dXJl";
    let sim = Simulator::start().await.unwrap();
    let quoted = hostile()
        .validate_connection(&connection("echo-part", TOKEN), &CallPolicy::default())
        .await;
    match quoted.result {
        Err(CallError::Connector(e)) => {
            assert_eq!(e.message(), "the console said \"[REDACTED]…\"")
        }
        other => panic!("{other:?}"),
    }
    let part = &TOKEN[10..40];
    let sent = hostile()
        .validate_connection(
            &connection(&format!("fetch:{HOST}/web/api/v2.1/agents/{part}"), TOKEN),
            &policy(&sim),
        )
        .await;
    assert_eq!(sent.requests[0].path, "/web/api/v2.1/agents/[REDACTED]");
    assert!(!format!("{sent:?}").contains(&TOKEN[10..26]), "{sent:?}");
}

/// The connector asks its host for eight interfaces and nothing more: no
/// environment, stdio, exit, filesystem or sockets. A host need not provide
/// them, and a connector version that starts using one is caught here.
#[test]
fn the_connector_imports_only_the_interfaces_it_calls() {
    let engine = wasmtime::Engine::default();
    let component =
        wasmtime::component::Component::new(&engine, connector_host::COMPONENT).unwrap();
    let ty = component.component_type();
    let mut imports: Vec<&str> = ty.imports(&engine).map(|(name, _)| name).collect();
    imports.sort_unstable();
    assert_eq!(
        imports,
        [
            "wasi:clocks/monotonic-clock@0.2.12",
            "wasi:clocks/wall-clock@0.2.12",
            "wasi:http/outgoing-handler@0.2.12",
            "wasi:http/types@0.2.12",
            "wasi:io/error@0.2.12",
            "wasi:io/poll@0.2.12",
            "wasi:io/streams@0.2.12",
            "wasi:random/random@0.2.12",
        ]
    );
}
