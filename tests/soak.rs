//! Memory after abuse: 10,000 hostile calls leave the process's resident
//! memory within a stated tolerance of its baseline. Alone in its binary,
//! because resident memory is process-wide.

mod support;

use std::sync::Arc;
use std::time::Duration;

use connector_host::bench::resident_bytes;
use connector_host::simulator::Simulator;
use connector_host::{CallError, Runtime, RuntimeConfig};
use support::*;
use tokio::task::JoinSet;

/// How far resident memory may drift above the baseline after the run,
/// beyond what the pool keeps resident by design: slots the warm-up did not
/// reach may become resident later (`RuntimeConfig::max_resident_bytes`).
/// Allocator caches and the tokio/hyper pools legitimately keep a few MiB;
/// a leak of even 1 KiB per call would show as 10 MiB.
const TOLERANCE: u64 = 8 << 20;

const CALLS: usize = 10_000;

/// The hostile behaviour of call `n`, and the host error it must end in.
fn behaviour(n: usize) -> (&'static str, &'static str) {
    if n.is_multiple_of(100) {
        return ("flood", "too-many-requests");
    }
    if n % 100 == 50 {
        return ("spin", "cpu-budget");
    }
    [
        ("state", "ok"),
        ("trap", "trap"),
        ("grow", "memory-limit"),
        ("recurse", "trap"),
        ("fetch:evil.example.com", "egress-denied"),
        ("post:2", "request-too-large"),
    ][n % 6]
}

async fn run(runtime: &Arc<Runtime>, sim: &Simulator, range: std::ops::Range<usize>) {
    let policy = policy(sim).max_memory_bytes(16 << 20).max_requests(5);
    // Eight at a time, as an engine would run them.
    let mut calls = JoinSet::new();
    for n in range {
        if calls.len() == 8 {
            calls.join_next().await.unwrap().unwrap();
        }
        let (behaviour, expected) = behaviour(n);
        let mut policy = policy.clone().tenant(&format!("tenant-{}", n % 50));
        if behaviour == "spin" {
            policy = policy.cpu_budget(Duration::from_millis(100));
        }
        let runtime = runtime.clone();
        calls.spawn(async move {
            let outcome = runtime
                .validate_connection(&connection(behaviour, "hostile-token"), &policy)
                .await;
            let kind = match &outcome.result {
                Ok(_) => "ok",
                Err(CallError::Host(e)) => e.kind(),
                Err(CallError::Connector(e)) => e.kind(),
            };
            assert_eq!(
                kind, expected,
                "call {n} ({behaviour}): {:?}",
                outcome.result
            );
        });
    }
    while let Some(done) = calls.join_next().await {
        done.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_hostile_calls_leave_memory_at_its_baseline() {
    let config = RuntimeConfig::default().max_concurrent_calls(8);
    let bound = TOLERANCE + config.max_resident_bytes() as u64;
    let runtime =
        Arc::new(Runtime::with_config(connector_host::HOSTILE_COMPONENT, config).unwrap());
    let sim = Simulator::start().await.unwrap();
    sim.set_logging(false);
    // Warm up: pool slots, allocator arenas, connection pools, lazy statics.
    run(&runtime, &sim, 1..601).await;
    let baseline = resident_bytes().expect("Linux /proc");
    run(&runtime, &sim, 601..601 + CALLS).await;
    let after = resident_bytes().expect("Linux /proc");
    let growth = after.saturating_sub(baseline);
    println!(
        "resident: baseline {:.1} MiB, after {CALLS} hostile calls {:.1} MiB (+{:.2} MiB, \
         allowed {:.1} MiB)",
        baseline as f64 / 1048576.0,
        after as f64 / 1048576.0,
        growth as f64 / 1048576.0,
        bound as f64 / 1048576.0
    );
    assert!(
        growth <= bound,
        "resident memory grew by {growth} bytes over {CALLS} calls"
    );
}
