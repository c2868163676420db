//! The runtime's cost, measured side by side against native Rust in one
//! process: `connector-host bench` prints these figures.
//!
//! Both sides run against the same in-process simulator on loopback, through
//! the same HTTP client and keep-alive pools as the runtime. The
//! native side is a hand-written Rust client doing the connector's exact
//! `isolate-host` request sequence for an agent id: list the agent, POST the
//! disconnect, read the agent back, reading the same agent fields as the
//! connector into typed structs. The wasm side is the real connector in a
//! fresh instance per call, with every limit of the default [`CallPolicy`]
//! on. A third side, the floor, makes the same exchanges from a guest of
//! the same world that parses nothing (the hostile test connector's
//! `floor:` mode), under the same runtime and policy: what the sandbox
//! alone costs, whatever a connector does with the answers. Rounds
//! alternate between the sides, so machine noise hits them alike.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde::Serialize;
use serde_json::json;
use wasmtime::component::{Component, InstancePre};
use wasmtime_wasi_http::{RequestOptions, WasiBody};

use crate::pool::{PoolKey, Pools};
use crate::runtime::CallState;
use crate::simulator::{Simulator, tokens};
use crate::{
    ActionOptions, CallPolicy, Connection, EgressPolicy, HostError, HostSelector, Route, Runtime,
    RuntimeConfig,
};

/// The name both sides address; routed to the simulator.
const HOST: &str = "bench.sentinelone.net";

/// The smallest valid component: the preamble alone.
const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";

/// A component that only instantiates a core module with a 256 KiB memory,
/// the connector's initial size, and imports and exports nothing:
///
/// ```wat
/// (component
///   (core module (memory 4))
///   (core instance (instantiate 0)))
/// ```
const MEMORY_ONLY_COMPONENT: &[u8] =
    b"\0asm\x0d\0\x01\0\x01\x0d\0asm\x01\0\0\0\x05\x03\x01\x00\x04\x02\x04\x01\x00\x00\x00";

/// How long a benchmark runs.
#[derive(Debug, Clone, Copy)]
pub struct BenchOptions {
    /// Calls per side and round at concurrency 1 (other levels scale it).
    pub calls: usize,
    /// Alternating rounds per side and concurrency level.
    pub rounds: usize,
    /// Concurrency levels of the overhead and throughput figures.
    pub levels: &'static [usize],
}

impl BenchOptions {
    /// The full run behind the README's figures (about 15 s here).
    pub const FULL: BenchOptions = BenchOptions {
        calls: 400,
        rounds: 5,
        levels: &[1, 16, 64, 256],
    };
    /// A seconds-long run that exercises every figure (for tests).
    pub const QUICK: BenchOptions = BenchOptions {
        calls: 20,
        rounds: 1,
        levels: &[1, 16],
    };
}

/// One measured figure.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    /// What was measured, e.g. `overhead_median_c1`.
    pub name: String,
    /// The value, in `unit`.
    pub value: f64,
    /// `ratio`, `us`, `calls/s`, `bytes`, `KiB` or `count`.
    pub unit: &'static str,
    /// The target, e.g. `<= 1.25`, or empty when the figure is context.
    pub target: String,
    /// Whether the value meets the target (`None` without a target).
    pub met: Option<bool>,
}

impl Figure {
    fn new(name: impl Into<String>, value: f64, unit: &'static str) -> Figure {
        Figure {
            name: name.into(),
            value,
            unit,
            target: String::new(),
            met: None,
        }
    }

    fn at_most(mut self, limit: f64) -> Figure {
        self.target = format!("<= {limit}");
        self.met = Some(self.value <= limit);
        self
    }

    fn at_least(mut self, limit: f64) -> Figure {
        self.target = format!(">= {limit}");
        self.met = Some(self.value >= limit);
        self
    }
}

/// Runs every measurement of `component` (a connector implementing the
/// `sentinelone` world, e.g. [`crate::COMPONENT`]) and returns the figures in
/// a fixed order.
pub async fn run(options: BenchOptions, component: &[u8]) -> Result<Vec<Figure>, HostError> {
    let max_level = options.levels.iter().copied().max().unwrap_or(1);
    let sim = Simulator::start()
        .await
        .map_err(|e| HostError::Config(format!("cannot start the simulator: {e}")))?;
    sim.set_logging(false);
    let agents: Vec<String> = (0..max_level)
        .map(|n| {
            let id = format!("{}", 1_800_000_000_000_000_000u64 + n as u64);
            sim.add_agent(&id, &format!("BENCH-{n:04}"));
            id
        })
        .collect();
    let config = RuntimeConfig::default().max_concurrent_calls(max_level);
    let bench = Arc::new(Bench {
        wasm: Wasm::new(component, sim.addr(), &config)?,
        native: Native::new(sim.addr(), &config),
        sim,
        agents,
        isolate_memory: AtomicUsize::new(0),
    });
    let mut figures = Vec::new();
    for &level in options.levels {
        figures.extend(bench.compare(level, options).await?);
    }
    figures.extend(bench.instantiation(options.calls.max(200) * 5).await?);
    let fixed = bench.call_without_request(options.calls.max(200)).await?;
    figures.extend(breakdown(fixed, &figures));
    figures.extend(bench.memory(component, max_level.min(256)).await?);
    figures.push(Figure::new(
        "isolate_linear_memory",
        bench.isolate_memory.load(Ordering::Relaxed) as f64 / 1024.0,
        "KiB",
    ));
    figures.push(Figure::new("component_size", component.len() as f64, "bytes").at_most(200_000.0));
    Ok(figures)
}

/// Who makes a round's isolates.
#[derive(Clone, Copy)]
enum Side {
    Native,
    Wasm,
    Floor,
}

struct Bench {
    wasm: Wasm,
    native: Native,
    sim: Simulator,
    agents: Vec<String>,
    /// The most linear memory any benchmarked isolate reached. An isolate
    /// that grows its memory pays for it in every call: the pool makes the
    /// new pages accessible, and protects them again when the slot is
    /// reused, which interrupts every thread of the process.
    isolate_memory: AtomicUsize,
}

/// Latencies and wall time of one round.
struct Round {
    latencies: Vec<Duration>,
    wall: Duration,
    /// Times an executor thread went to sleep and was woken again.
    wakeups: u64,
}

/// Times the current executor's threads have parked and been unparked so
/// far. Each is a sleep and a wake-up of an OS thread: on a multi-threaded
/// executor, mostly one thread handing a task to another.
///
/// # Panics
/// Outside a tokio runtime.
pub fn executor_wakeups() -> u64 {
    let metrics = tokio::runtime::Handle::current().metrics();
    (0..metrics.num_workers())
        .map(|worker| metrics.worker_park_unpark_count(worker))
        .sum()
}

impl Bench {
    /// Overhead (median and p99 latency ratios) and throughput at `level`
    /// concurrent tenants.
    async fn compare(
        self: &Arc<Self>,
        level: usize,
        options: BenchOptions,
    ) -> Result<Vec<Figure>, HostError> {
        let per_task = (options.calls / level).max(4);
        // Warm every side: pools, connections, caches.
        for side in [Side::Native, Side::Wasm, Side::Floor] {
            self.round(side, level, 2).await?;
        }
        let (mut native, mut wasm, mut floor) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..options.rounds {
            native.push(self.round(Side::Native, level, per_task).await?);
            wasm.push(self.round(Side::Wasm, level, per_task).await?);
            floor.push(self.round(Side::Floor, level, per_task).await?);
        }
        let all = |rounds: &[Round]| -> Vec<Duration> {
            let mut v: Vec<Duration> = rounds.iter().flat_map(|r| r.latencies.clone()).collect();
            v.sort();
            v
        };
        let throughput = |rounds: &[Round]| -> f64 {
            median(
                rounds
                    .iter()
                    .map(|r| r.latencies.len() as f64 / r.wall.as_secs_f64())
                    .collect(),
            )
        };
        let (n, w, f) = (all(&native), all(&wasm), all(&floor));
        let (n50, w50, f50) = (percentile(&n, 50), percentile(&w, 50), percentile(&f, 50));
        let (n99, w99) = (percentile(&n, 99), percentile(&w, 99));
        let (ntp, wtp, ftp) = (throughput(&native), throughput(&wasm), throughput(&floor));
        let wakeups = |rounds: &[Round]| -> f64 {
            let calls: usize = rounds.iter().map(|r| r.latencies.len()).sum();
            rounds.iter().map(|r| r.wakeups).sum::<u64>() as f64 / calls.max(1) as f64
        };
        let mut ratio = Figure::new(format!("overhead_median_c{level}"), w50 / n50, "ratio");
        if level == 1 {
            ratio = ratio.at_most(1.25);
        }
        let mut tp_ratio = Figure::new(format!("throughput_ratio_c{level}"), wtp / ntp, "ratio");
        if level == 256 {
            tp_ratio = tp_ratio.at_least(0.8);
        }
        let mut figures = vec![
            Figure::new(format!("native_median_c{level}"), n50, "us"),
            Figure::new(format!("wasm_median_c{level}"), w50, "us"),
            ratio,
            Figure::new(format!("native_p99_c{level}"), n99, "us"),
            Figure::new(format!("wasm_p99_c{level}"), w99, "us"),
            Figure::new(format!("overhead_p99_c{level}"), w99 / n99, "ratio"),
            Figure::new(format!("native_throughput_c{level}"), ntp, "calls/s"),
            Figure::new(format!("wasm_throughput_c{level}"), wtp, "calls/s"),
            tp_ratio,
            Figure::new(format!("floor_median_c{level}"), f50, "us"),
            Figure::new(
                format!("floor_overhead_median_c{level}"),
                f50 / n50,
                "ratio",
            ),
            Figure::new(format!("floor_throughput_c{level}"), ftp, "calls/s"),
            Figure::new(
                format!("floor_throughput_ratio_c{level}"),
                ftp / ntp,
                "ratio",
            ),
        ];
        if level == 1 {
            figures.push(Figure::new(
                "native_wakeups_per_call_c1",
                wakeups(&native),
                "count",
            ));
            figures.push(Figure::new(
                "wasm_wakeups_per_call_c1",
                wakeups(&wasm),
                "count",
            ));
        }
        Ok(figures)
    }

    /// `level` tenants, each a task isolating its own agent `per_task`
    /// times.
    async fn round(
        self: &Arc<Self>,
        side: Side,
        level: usize,
        per_task: usize,
    ) -> Result<Round, HostError> {
        let started = Instant::now();
        let woken = executor_wakeups();
        let mut tasks = tokio::task::JoinSet::new();
        for t in 0..level {
            let bench = self.clone();
            tasks.spawn(async move {
                let tenant = format!("tenant-{t}");
                let agent = &bench.agents[t];
                let mut latencies = Vec::with_capacity(per_task);
                for _ in 0..per_task {
                    bench.sim.set_network_status(agent, "connected");
                    let began = Instant::now();
                    match side {
                        Side::Native => bench.native.isolate(&tenant, agent).await?,
                        Side::Wasm => {
                            let memory = bench.wasm.isolate(&tenant, agent).await?;
                            bench.isolate_memory.fetch_max(memory, Ordering::Relaxed);
                        }
                        Side::Floor => bench.wasm.floor(&tenant, agent).await?,
                    }
                    latencies.push(began.elapsed());
                }
                Ok::<_, HostError>(latencies)
            });
        }
        let mut latencies = Vec::new();
        while let Some(done) = tasks.join_next().await {
            let done = done.map_err(|e| fail(&e.to_string()))?;
            latencies.extend(done?);
        }
        Ok(Round {
            latencies,
            wall: started.elapsed(),
            wakeups: executor_wakeups() - woken,
        })
    }

    /// Instantiation alone, the connector versus an empty component, in the
    /// same engine with the same per-call store setup. For context, also
    /// versus a component that only has a linear memory (what any component
    /// with a memory costs, whatever it imports), and versus a component of
    /// the same world whose functions do next to nothing (the hostile test
    /// connector): what any Rust connector with these imports costs.
    async fn instantiation(&self, iterations: usize) -> Result<Vec<Figure>, HostError> {
        let runtime = &self.wasm.runtime;
        let same_world = runtime.load_version(crate::HOSTILE_COMPONENT)?;
        let empty = self.prepare(EMPTY_COMPONENT)?;
        let memory_only = self.prepare(MEMORY_ONLY_COMPONENT)?;
        let policy = Arc::new(self.wasm.policy.clone());
        let mut times: [Vec<Duration>; 4] = Default::default();
        for _ in 0..iterations {
            let began = Instant::now();
            runtime.instantiate_only(policy.clone()).await?;
            times[0].push(began.elapsed());
            let began = Instant::now();
            same_world.instantiate_only(policy.clone()).await?;
            times[1].push(began.elapsed());
            for (pre, slot) in [(&memory_only, 2), (&empty, 3)] {
                let began = Instant::now();
                runtime.instantiate_other(pre, policy.clone()).await?;
                times[slot].push(began.elapsed());
            }
        }
        let [c, m, o, b] = times.map(median_time);
        Ok(vec![
            Figure::new("instantiate_connector", c, "us"),
            Figure::new("instantiate_empty", b, "us"),
            Figure::new("instantiate_ratio", c / b, "ratio").at_most(1.5),
            Figure::new("instantiate_memory_only", o, "us"),
            Figure::new("instantiate_ratio_memory_only", c / o, "ratio"),
            Figure::new("instantiate_same_world", m, "us"),
            Figure::new("instantiate_ratio_same_world", c / m, "ratio"),
        ])
    }

    fn prepare(&self, bytes: &[u8]) -> Result<InstancePre<CallState>, HostError> {
        let component = Component::new(self.wasm.runtime.engine(), bytes)
            .map_err(|e| HostError::Load(e.to_string()))?;
        self.wasm.runtime.prepare_other(&component)
    }

    /// The median cost of a runtime call that sends no request
    /// (`describe`): call slot, store, fresh instance, the guest's start-up
    /// and the lowering of its result.
    async fn call_without_request(&self, iterations: usize) -> Result<f64, HostError> {
        let mut times = Vec::with_capacity(iterations);
        for _ in 0..iterations {
            let began = Instant::now();
            self.wasm.runtime.describe().await?;
            times.push(began.elapsed());
        }
        Ok(median_time(times))
    }

    /// Resident memory per in-flight instance: `count` calls held open on
    /// a stalled console, against the resident size just before. A fresh
    /// runtime, so no pool slot is resident yet (kept-resident slots of
    /// the earlier rounds would hide in the baseline).
    async fn memory(
        self: &Arc<Self>,
        component: &[u8],
        count: usize,
    ) -> Result<Vec<Figure>, HostError> {
        let config = RuntimeConfig::default().max_concurrent_calls(count);
        let runtime = Arc::new(Runtime::with_config(component, config)?);
        let connection = Connection::new("bench", tokens::STALL);
        let policy = self
            .wasm
            .policy
            .clone()
            .http_timeout(Duration::from_secs(2));
        let before = resident_bytes().unwrap_or(0);
        let mut calls = tokio::task::JoinSet::new();
        for t in 0..count {
            let (runtime, connection) = (runtime.clone(), connection.clone());
            let policy = policy.clone().tenant(&format!("tenant-{t}"));
            calls.spawn(async move {
                let outcome = runtime.validate_connection(&connection, &policy).await;
                outcome.memory_bytes
            });
        }
        // Every call is now blocked on the stalled console, mid-request.
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let during = resident_bytes().unwrap_or(0);
        let mut peak = 0;
        while let Some(done) = calls.join_next().await {
            peak = peak.max(done.map_err(|e| fail(&e.to_string()))?);
        }
        let per_instance = during.saturating_sub(before) as f64 / count as f64 / 1024.0;
        Ok(vec![
            Figure::new("resident_per_instance", per_instance, "KiB").at_most(256.0),
            Figure::new("linear_memory_per_instance", peak as f64 / 1024.0, "KiB"),
        ])
    }
}

/// The connector's `isolate-host` for an agent id, in a fresh instance per
/// call under the default [`CallPolicy`], its egress routed to the
/// simulator: the benchmark's wasm side, public so that a profiler can run
/// it alone (`examples/isolate_loop.rs`).
pub struct Wasm {
    runtime: Runtime,
    /// The hostile test connector in the same engine, for the floor.
    floor: Runtime,
    policy: CallPolicy,
}

impl Wasm {
    /// The connector `component`, run by a [`Runtime`] built from `config`,
    /// sending to the simulator listening on `addr`.
    ///
    /// # Errors
    /// [`HostError`] when the component does not load.
    pub fn new(
        component: &[u8],
        addr: std::net::SocketAddr,
        config: &RuntimeConfig,
    ) -> Result<Wasm, HostError> {
        let egress = EgressPolicy::default()
            .connect_to(HOST, addr)
            .map_err(|e| HostError::Config(e.to_string()))?;
        let runtime = Runtime::with_config(component, config.clone())?;
        Ok(Wasm {
            floor: runtime.load_version(crate::HOSTILE_COMPONENT)?,
            runtime,
            policy: CallPolicy::with_egress(egress),
        })
    }

    /// The floor: the exchanges of an isolate of `agent` on `tenant`'s
    /// connections, made by a guest of the same world that reads every
    /// answer and parses none, in a fresh instance under the same policy.
    ///
    /// # Errors
    /// [`HostError`] when the call fails or an exchange is not answered
    /// with 200.
    pub async fn floor(&self, tenant: &str, agent: &str) -> Result<(), HostError> {
        let connection = Connection::new(&format!("floor:{HOST}/{agent}"), tokens::ADMIN_JWT);
        let policy = self.policy.clone().tenant(tenant);
        let outcome = self.floor.validate_connection(&connection, &policy).await;
        match outcome.result {
            Ok(report)
                if report
                    .user
                    .as_deref()
                    .is_some_and(|u| u.starts_with("200 200 200 ")) =>
            {
                Ok(())
            }
            other => Err(HostError::Config(format!(
                "the benchmark's floor failed: {other:?}"
            ))),
        }
    }

    /// Isolates `agent` on `tenant`'s connections. Returns the linear
    /// memory the instance reached, in bytes.
    ///
    /// # Errors
    /// [`HostError`] when the call fails or changes nothing.
    pub async fn isolate(&self, tenant: &str, agent: &str) -> Result<usize, HostError> {
        let connection = Connection::new("bench", tokens::ADMIN_JWT);
        let policy = self.policy.clone().tenant(tenant);
        let outcome = self
            .runtime
            .isolate_host(
                &connection,
                &HostSelector::AgentId(agent.to_owned()),
                &ActionOptions {
                    protected_hosts: Vec::new(),
                    wait_seconds: 0,
                },
                &policy,
            )
            .await;
        match outcome.result {
            Ok(o) if o.changed => Ok(outcome.memory_bytes),
            other => Err(HostError::Config(format!(
                "the benchmark's isolate failed: {other:?}"
            ))),
        }
    }
}

/// Requests in the benchmark's isolate: list, disconnect, read back.
const ISOLATE_REQUESTS: f64 = 3.0;

/// Where an isolate's time goes at 1 tenant: the fixed cost of a call,
/// then what each of its three requests costs on each side (the native
/// client has no fixed cost). Empty without a 1-tenant level.
fn breakdown(fixed: f64, figures: &[Figure]) -> Vec<Figure> {
    let find = |name: &str| figures.iter().find(|f| f.name == name).map(|f| f.value);
    let (Some(native), Some(wasm)) = (find("native_median_c1"), find("wasm_median_c1")) else {
        return Vec::new();
    };
    let (native, wasm) = (
        native / ISOLATE_REQUESTS,
        (wasm - fixed).max(0.0) / ISOLATE_REQUESTS,
    );
    vec![
        Figure::new("wasm_call_without_request", fixed, "us"),
        Figure::new("native_per_request_c1", native, "us"),
        Figure::new("wasm_per_request_c1", wasm, "us"),
        Figure::new("per_request_ratio_c1", wasm / native, "ratio"),
    ]
}

/// The connector's `isolate-host` sequence for an agent id, in plain Rust
/// over the same HTTP client and keep-alive pools: the benchmark's native
/// side, public so that a profiler can run it alone
/// (`examples/isolate_loop.rs`).
pub struct Native {
    pools: Arc<Pools>,
    addr: std::net::SocketAddr,
}

impl Native {
    /// A client for the simulator listening on `addr`, with the keep-alive
    /// pools a [`crate::Runtime`] built from `config` would have.
    pub fn new(addr: std::net::SocketAddr, config: &RuntimeConfig) -> Native {
        Native {
            pools: Arc::new(Pools::new(config.pool_limits(), config.tls())),
            addr,
        }
    }

    /// Lists the agent, posts its network disconnect and reads it back, on
    /// `tenant`'s connections.
    ///
    /// # Errors
    /// [`HostError`] when a request fails or an answer is not what the
    /// connector would accept.
    pub async fn isolate(&self, tenant: &str, agent: &str) -> Result<(), HostError> {
        let list = format!("/web/api/v2.1/agents?ids={agent}&limit=200&skipCount=true");
        let found: AgentList = self.send(tenant, "GET", &list, None).await?;
        let [only] = found.data.as_slice() else {
            return Err(fail("not exactly one agent"));
        };
        let live = only.is_active && !only.is_decommissioned;
        if only.id != agent || only.network_status != "connected" || !live {
            return Err(fail("the agent is not connected"));
        }
        let body = json!({"filter": {"ids": [agent]}, "data": {}}).to_string();
        let path = "/web/api/v2.1/agents/actions/disconnect";
        let posted: ActionAnswer = self.send(tenant, "POST", path, Some(body)).await?;
        if posted.data.affected != 1 {
            return Err(fail("nothing was affected"));
        }
        let after: AgentList = self.send(tenant, "GET", &list, None).await?;
        match after.data.as_slice() {
            [one] if !one.network_status.is_empty() => Ok(()),
            _ => Err(fail("no state read back")),
        }
    }

    async fn send<T: serde::de::DeserializeOwned>(
        &self,
        tenant: &str,
        method: &str,
        path: &str,
        body: Option<String>,
    ) -> Result<T, HostError> {
        let mut request = http::Request::builder()
            .method(method)
            .uri(format!("https://{HOST}{path}"))
            .header("host", HOST)
            .header("authorization", format!("ApiToken {}", tokens::ADMIN_JWT))
            .header("accept", "application/json")
            .header("user-agent", "soar-sentinelone-connector/0.1.0");
        if let Some(b) = &body {
            request = request
                .header("content-type", "application/json")
                .header("content-length", b.len());
        }
        let body: WasiBody = Full::new(Bytes::from(body.unwrap_or_default()))
            .map_err(|never| match never {})
            .boxed_unsync();
        let request = request.body(body).map_err(|e| fail(&e.to_string()))?;
        let timeout = Some(Duration::from_secs(30));
        let options = RequestOptions {
            connect_timeout: timeout,
            first_byte_timeout: timeout,
            between_bytes_timeout: timeout,
        };
        let route = Route::Loopback(self.addr);
        let key = PoolKey::new(Arc::from(tenant), HOST.to_owned(), route);
        let (response, _io) = crate::connect::send(&self.pools, key, request, options)
            .await
            .map_err(|e| fail(&e.to_string()))?;
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| fail(&e.to_string()))?
            .to_bytes();
        serde_json::from_slice(&bytes).map_err(|e| fail(&e.to_string()))
    }
}

/// What the native client reads of an agent list: the fields the
/// connector reads to pick and check the agent, typed, the rest skipped.
#[derive(serde::Deserialize)]
struct AgentList {
    data: Vec<NativeAgent>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)] // Read as the connector reads them, for its answer; not all are checked.
struct NativeAgent {
    id: String,
    uuid: String,
    computer_name: String,
    site_name: String,
    account_name: String,
    os_name: String,
    os_type: String,
    network_status: String,
    is_active: bool,
    is_decommissioned: bool,
    last_active_date: String,
    network_interfaces: Vec<NativeInterface>,
}

#[derive(serde::Deserialize)]
#[allow(dead_code)] // Read for the same reason as `NativeAgent`'s fields.
struct NativeInterface {
    inet: Vec<String>,
    inet6: Vec<String>,
    physical: String,
}

#[derive(serde::Deserialize)]
struct ActionAnswer {
    data: Affected,
}

#[derive(serde::Deserialize)]
struct Affected {
    affected: u64,
}

fn fail(why: &str) -> HostError {
    HostError::Config(format!("the benchmark's native client failed: {why}"))
}

fn percentile(sorted: &[Duration], p: usize) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = (sorted.len() * p / 100).min(sorted.len() - 1);
    sorted[index].as_secs_f64() * 1e6
}

/// The median of `times`, in µs.
fn median_time(mut times: Vec<Duration>) -> f64 {
    times.sort();
    percentile(&times, 50)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// This process's resident memory in bytes, from `/proc/self/statm`;
/// `None` where that is unavailable (not Linux).
pub fn resident_bytes() -> Option<u64> {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map(|pages| pages * 4096)
}
