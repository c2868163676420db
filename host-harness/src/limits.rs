//! What one call's guest may use, and how the host tells which limit
//! stopped it: linear memory, CPU time, the wall clock, and the host memory
//! a guest can make the runtime hold on its behalf.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use wasmtime::{Engine, ResourceLimiter, StoreLimits, StoreLimitsBuilder, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder};
use wasmtime_wasi_http::WasiHttpCtx;

use crate::error::HostError;
use crate::policy::CallPolicy;

/// How often the engine's epoch advances; the unit of the CPU budget.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// A call's WASI: no preopens, environment, arguments, stdio or sockets,
/// and random bytes in the amounts `policy` allows.
pub(crate) fn wasi_ctx(policy: &CallPolicy) -> WasiCtx {
    WasiCtxBuilder::new()
        .max_random_size(policy.max_random_bytes)
        .build()
}

/// A call's `wasi:http`, with header maps bounded by `policy`.
pub(crate) fn http_ctx(policy: &CallPolicy) -> WasiHttpCtx {
    let mut http = WasiHttpCtx::new();
    http.set_field_size_limit(policy.max_header_map_bytes);
    http
}

/// The store's limits, remembering whether a memory grow was refused so a
/// resulting trap can be reported as what it is.
pub(crate) struct Limits {
    inner: StoreLimits,
    /// A memory grow was refused.
    pub(crate) memory_denied: bool,
    /// The largest memory size granted, initial sizes included.
    pub(crate) peak: usize,
}

impl Limits {
    /// Linear memory up to `max_memory` bytes, and room for the instances,
    /// tables and memories of one component.
    pub(crate) fn new(max_memory: usize) -> Limits {
        Limits {
            inner: StoreLimitsBuilder::new()
                .memory_size(max_memory)
                .instances(16)
                .tables(16)
                .memories(8)
                .build(),
            memory_denied: false,
            peak: 0,
        }
    }
}

impl ResourceLimiter for Limits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.inner.memory_growing(current, desired, maximum)?;
        self.memory_denied |= !allowed;
        if allowed {
            self.peak = self.peak.max(desired);
        }
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }
}

/// The engine's epoch, counted again by the ticker, so that a call can tell
/// which ticks landed while its guest was suspended.
#[derive(Clone, Default)]
pub(crate) struct Ticks(Arc<AtomicU64>);

impl Ticks {
    fn now(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}

/// Counts the epoch ticks that land while the guest runs, in wasm or in a
/// host call that does not wait, against its CPU budget. A tick that lands
/// while the call is suspended (waiting on I/O or a timer) is not charged,
/// however often the guest waits: the call's future notes the tick at which
/// it was last resumed (see [`metered`]), and a tick is charged only if it
/// came later.
pub(crate) struct CpuMeter {
    charged: u64,
    budget_ticks: u64,
    clock: Ticks,
    resumed: Arc<AtomicU64>,
    /// The budget ran out and the guest was interrupted.
    pub(crate) exceeded: bool,
}

impl CpuMeter {
    /// A meter for `budget` of CPU time (at least one tick) on `clock`.
    pub(crate) fn new(budget: Duration, clock: &Ticks) -> CpuMeter {
        CpuMeter {
            charged: 0,
            budget_ticks: u64::try_from(budget.as_millis() / EPOCH_TICK.as_millis())
                .unwrap_or(u64::MAX)
                .max(1),
            clock: clock.clone(),
            resumed: Arc::new(AtomicU64::new(clock.now())),
            exceeded: false,
        }
    }

    /// What the store does when the epoch passes the deadline: charge the
    /// tick if it landed while the guest ran, then yield, or stop the guest.
    pub(crate) fn tick(&mut self) -> UpdateDeadline {
        if self.clock.now() > self.resumed.load(Ordering::Acquire) {
            self.charged += 1;
        }
        if self.charged > self.budget_ticks {
            self.exceeded = true;
            return UpdateDeadline::Interrupt;
        }
        // The yield suspends the call; `metered` notes the tick it resumes at.
        UpdateDeadline::Yield(1)
    }

    /// What [`metered`] needs to note when the call resumes.
    pub(crate) fn resume_marker(&self) -> ResumeMarker {
        ResumeMarker {
            clock: self.clock.clone(),
            resumed: self.resumed.clone(),
        }
    }
}

/// Notes, each time a call's future is polled, the tick it resumed at.
pub(crate) struct ResumeMarker {
    clock: Ticks,
    resumed: Arc<AtomicU64>,
}

/// `run`, with every resumption noted for the call's [`CpuMeter`]: a guest
/// suspended in a host call that waits makes `run` return `Pending`, and is
/// running again only when `run` is polled.
pub(crate) async fn metered<T>(marker: ResumeMarker, run: impl Future<Output = T>) -> T {
    let mut run = std::pin::pin!(run);
    std::future::poll_fn(|cx| {
        marker.resumed.store(marker.clock.now(), Ordering::Release);
        run.as_mut().poll(cx)
    })
    .await
}

/// Advances `engine`'s epoch every [`EPOCH_TICK`] until the engine is
/// dropped; the returned [`Ticks`] counts the same ticks.
pub(crate) fn start_epoch_ticker(engine: &Engine) -> Result<Ticks, HostError> {
    let weak = engine.weak();
    let ticks = Ticks::default();
    let counted = ticks.clone();
    std::thread::Builder::new()
        .name("connector-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                // Counted before the epoch moves, so that a deadline callback
                // that sees the new epoch also sees the new count.
                counted.0.fetch_add(1, Ordering::AcqRel);
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .map(|_| ticks)
        .map_err(|e| HostError::Config(format!("cannot start the epoch ticker: {e}")))
}

/// A short trap description (the trap code, or the root cause); the full
/// wasm backtrace goes to a debug event instead of the error.
pub(crate) fn trap(error: wasmtime::Error) -> HostError {
    tracing::debug!(target: "connector_host::trap", "{error:?}");
    HostError::Trap(match error.downcast_ref::<wasmtime::Trap>() {
        Some(code) => format!("wasm trap: {code}"),
        None => error.root_cause().to_string(),
    })
}

/// Which of `policy`'s host-memory limits a trap with `reason` ran into, as
/// the message of a [`HostError::HostResources`]. Those limits stop a guest
/// with a plain error, told apart here by wasmtime's own wording, which the
/// sandbox tests pin down.
pub(crate) fn host_resource(reason: &str, policy: &CallPolicy) -> Option<String> {
    if reason.contains("handle limit exceeded") {
        Some(format!(
            "more than {} live handles",
            policy.max_live_handles
        ))
    } else if reason.contains("fields exceeds limit") {
        let limit = policy.max_header_map_bytes;
        Some(format!("a header map over {limit} bytes"))
    } else if reason.starts_with("requested len") && reason.contains("exceeds limit") {
        let limit = policy.max_random_bytes;
        Some(format!("over {limit} random bytes at once"))
    } else {
        None
    }
}

/// `run`, stopped with [`HostError::Deadline`] once `deadline` has passed.
pub(crate) async fn with_deadline<T>(
    deadline: Duration,
    run: impl Future<Output = Result<T, HostError>>,
) -> Result<T, HostError> {
    tokio::time::timeout(deadline, run)
        .await
        .unwrap_or(Err(HostError::Deadline(deadline)))
}
