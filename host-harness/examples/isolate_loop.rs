//! One side of the benchmark's isolate comparison, alone and in a loop, for
//! a profiler: `wasm` runs the connector's `isolate-host` in a fresh sandboxed
//! instance per call, `native` the same requests in plain Rust over the same
//! HTTP client, and `floor` the same requests from a sandboxed guest that
//! parses nothing. Prints the time and executor wake-ups per isolate.
//!
//! ```sh
//! cargo build -p connector-host --example isolate_loop
//! ./target/debug/examples/isolate_loop wasm 2000                  # one thread
//! ./target/debug/examples/isolate_loop native 2000 --multi-thread # 2 workers
//! # Another build of the connector, e.g. to compare two guest builds:
//! ./target/debug/examples/isolate_loop wasm 2000 --component old.wasm
//! # 256 tenants at once, each isolating its own agent (the bench's top level):
//! ./target/debug/examples/isolate_loop wasm 20000 --multi-thread --tenants 256
//! # Instructions per isolate: the difference of two runs, over 300 calls.
//! valgrind --tool=callgrind --smc-check=all-non-file \
//!     ./target/debug/examples/isolate_loop wasm 100   # then 400
//! ```

use std::sync::Arc;
use std::time::Instant;

use connector_host::RuntimeConfig;
use connector_host::bench::{Native, Wasm, executor_wakeups};
use connector_host::simulator::Simulator;

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let side = match args.first().map(String::as_str) {
        Some(side @ ("wasm" | "native" | "floor")) => side,
        _ => {
            return Err(
                "usage: isolate_loop wasm|native|floor [CALLS] [--multi-thread] [--component FILE] \
                 [--tenants N]"
                    .into(),
            );
        }
    };
    let component = match args.iter().position(|a| a == "--component") {
        Some(i) => std::fs::read(args.get(i + 1).ok_or("--component needs a FILE")?)?,
        None => connector_host::COMPONENT.to_vec(),
    };
    let calls: u32 = args.get(1).map_or(Ok(2000), |n| n.parse())?;
    let tenants: u32 = match args.iter().position(|a| a == "--tenants") {
        Some(i) => args.get(i + 1).ok_or("--tenants needs N")?.parse()?,
        None => 1,
    };
    let runtime = if args.iter().any(|a| a == "--multi-thread") {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    };
    // Spawned, so that on two workers the loop is a task like any caller's.
    let calls = calls.max(1);
    let side = side.to_owned();
    runtime.block_on(async { tokio::spawn(run(side, calls, tenants.max(1), component)).await? })
}

async fn run(
    side: String,
    calls: u32,
    tenants: u32,
    component: Vec<u8>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // One call at a time: one call slot keeps the pool's address-space
    // reservation small enough for valgrind. More tenants get the default.
    let config = match tenants {
        1 => RuntimeConfig::default().max_concurrent_calls(1),
        _ => RuntimeConfig::default(),
    };
    let sim = Arc::new(Simulator::start().await?);
    sim.set_logging(false);
    let agents: Vec<String> = (0..tenants)
        .map(|t| format!("{}", 1_800_000_000_000_000_000u64 + u64::from(t)))
        .collect();
    for (t, agent) in agents.iter().enumerate() {
        sim.add_agent(agent, &format!("BENCH-{t:04}"));
    }
    let wasm_side = Arc::new(Wasm::new(&component, sim.addr(), &config)?);
    let native = Arc::new(Native::new(sim.addr(), &config));

    let wakeups_before = executor_wakeups();
    let start = Instant::now();
    let per_tenant = calls.div_ceil(tenants);
    let mut tasks = tokio::task::JoinSet::new();
    for (t, agent) in agents.into_iter().enumerate() {
        let (sim, wasm_side, native) = (sim.clone(), wasm_side.clone(), native.clone());
        let side = side.clone();
        tasks.spawn(async move {
            let tenant = format!("tenant-{t}");
            let mut memory = 0;
            for _ in 0..per_tenant {
                sim.set_network_status(&agent, "connected");
                match side.as_str() {
                    "wasm" => memory = memory.max(wasm_side.isolate(&tenant, &agent).await?),
                    "floor" => wasm_side.floor(&tenant, &agent).await?,
                    _ => native.isolate(&tenant, &agent).await?,
                }
            }
            Ok::<_, connector_host::HostError>(memory)
        });
    }
    let mut memory = 0;
    while let Some(done) = tasks.join_next().await {
        memory = memory.max(done??);
    }
    let calls = per_tenant * tenants;
    println!(
        "{}: {:?} and {:.2} executor wake-ups per isolate, over {calls} calls by {tenants} \
         tenant(s){}",
        side,
        start.elapsed() / calls,
        (executor_wakeups() - wakeups_before) as f64 / f64::from(calls),
        if side == "wasm" {
            format!("; linear memory reached {} KiB", memory / 1024)
        } else {
            String::new()
        },
    );
    Ok(())
}
