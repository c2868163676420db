//! What one call's guest may use, and how the host tells which limit
//! stopped it: linear memory, CPU time, the wall clock, and the host memory
//! a guest can make the runtime hold on its behalf.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use wasmtime::{Engine, ResourceLimiter, StoreLimits, StoreLimitsBuilder, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder};
use wasmtime_wasi_http::WasiHttpCtx;

use crate::error::HostError;
use crate::policy::CallPolicy;

/// How often the engine's epoch advances: how often a running guest's CPU
/// budget is checked, and how often it yields to other tasks.
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
    /// The linear memory the call may have, in bytes: the policy's cap
    /// within the runtime's slot size.
    pub(crate) max_memory: usize,
    /// A memory grow was refused (or a memory's initial size, at
    /// instantiation).
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
            max_memory,
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

/// Measures the time a call's guest runs, in wasm or in host calls that do
/// not wait, against its CPU budget: the time spent inside polls of the
/// call's future (see [`metered`]). A guest waiting on I/O or a timer
/// suspends the call, whose future then returns `Pending`, so waiting costs
/// nothing however often the guest waits, and no pattern of short waits
/// hides the time between them. The epoch's ticks are when the budget is
/// checked, so a guest is stopped within a tick of running out.
///
/// A poll is timed by the wall clock until the guest has run through an
/// epoch tick; from then on the call is computing, and each poll is timed
/// by its thread's own CPU clock. So on a busy machine the time the
/// operating system gives to other threads is not charged to the guest,
/// while the everyday short polls of an action pay no system call.
pub(crate) struct CpuMeter {
    budget: Duration,
    time: Arc<RunTime>,
    /// The budget ran out and the guest was interrupted.
    pub(crate) exceeded: bool,
}

/// The running time of one call, shared by its store and its future.
struct RunTime {
    origin: Instant,
    /// Nanoseconds since `origin` at which the current poll began.
    poll_started: AtomicU64,
    /// The polling thread's CPU clock when the current poll began, in
    /// nanoseconds, or [`UNTIMED`] while the poll is timed by the wall clock.
    poll_cpu_started: AtomicU64,
    /// The guest has run through an epoch tick: time polls by CPU clock.
    computing: AtomicBool,
    /// Nanoseconds spent in polls that have ended.
    spent: AtomicU64,
}

/// No CPU clock reading: the poll is timed by the wall clock.
const UNTIMED: u64 = u64::MAX;

impl RunTime {
    fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Starts timing a poll on the current thread.
    fn start_poll(&self) {
        let cpu = match self.computing.load(Ordering::Relaxed) {
            true => thread_cpu_nanos().unwrap_or(UNTIMED),
            false => UNTIMED,
        };
        self.poll_cpu_started.store(cpu, Ordering::Relaxed);
        self.poll_started.store(self.now(), Ordering::Relaxed);
    }

    /// The time the current poll has run so far, on the polling thread.
    fn in_poll(&self) -> u64 {
        let cpu_started = self.poll_cpu_started.load(Ordering::Relaxed);
        if cpu_started != UNTIMED
            && let Some(now) = thread_cpu_nanos()
        {
            return now.saturating_sub(cpu_started);
        }
        let started = self.poll_started.load(Ordering::Relaxed);
        self.now().saturating_sub(started)
    }
}

/// The CPU time the current thread has used, in nanoseconds: it stands
/// still while the thread waits for a processor. `None` where the platform
/// has no per-thread clock.
fn thread_cpu_nanos() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `now` is a valid, writable timespec.
        let status = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
        let (secs, nanos) = (
            u64::try_from(now.tv_sec).ok()?,
            u64::try_from(now.tv_nsec).ok()?,
        );
        (status == 0).then(|| secs.saturating_mul(1_000_000_000).saturating_add(nanos))
    }
    #[cfg(not(unix))]
    {
        None
    }
}

impl CpuMeter {
    /// A meter for `budget` of CPU time.
    pub(crate) fn new(budget: Duration) -> CpuMeter {
        CpuMeter {
            budget,
            time: Arc::new(RunTime {
                origin: Instant::now(),
                poll_started: AtomicU64::new(0),
                poll_cpu_started: AtomicU64::new(UNTIMED),
                computing: AtomicBool::new(false),
                spent: AtomicU64::new(0),
            }),
            exceeded: false,
        }
    }

    /// What the store does at each epoch tick while the guest runs: yield
    /// to other tasks, or stop the guest once its running time, the current
    /// poll included, is over budget.
    pub(crate) fn tick(&mut self) -> UpdateDeadline {
        let time = &self.time;
        time.computing.store(true, Ordering::Relaxed);
        let spent = time.spent.load(Ordering::Relaxed);
        let ran = Duration::from_nanos(spent.saturating_add(time.in_poll()));
        if ran > self.budget {
            self.exceeded = true;
            return UpdateDeadline::Interrupt;
        }
        UpdateDeadline::Yield(1)
    }

    /// The running time charged so far, between polls: the polls that
    /// have ended.
    pub(crate) fn spent(&self) -> Duration {
        Duration::from_nanos(self.time.spent.load(Ordering::Relaxed))
    }

    /// What [`metered`] needs to time the call's polls.
    pub(crate) fn timer(&self) -> PollTimer {
        PollTimer(self.time.clone())
    }
}

/// Times the polls of one call's future for its [`CpuMeter`].
pub(crate) struct PollTimer(Arc<RunTime>);

/// `run`, with the time spent inside each of its polls added to the call's
/// running time: a guest suspended in a host call that waits makes `run`
/// return `Pending`, and runs again only when `run` is polled.
pub(crate) async fn metered<T>(timer: PollTimer, run: impl Future<Output = T>) -> T {
    let time = timer.0;
    let mut run = std::pin::pin!(run);
    std::future::poll_fn(|cx| {
        time.start_poll();
        let polled = run.as_mut().poll(cx);
        time.spent.fetch_add(time.in_poll(), Ordering::Relaxed);
        polled
    })
    .await
}

/// Advances `engine`'s epoch every [`EPOCH_TICK`] until the engine is dropped.
pub(crate) fn start_epoch_ticker(engine: &Engine) -> Result<(), HostError> {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("connector-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .map(drop)
        .map_err(|e| HostError::Config(format!("cannot start the epoch ticker: {e}")))
}

/// A short trap description (the trap code, or the root cause); the full
/// wasm backtrace goes to a debug event instead of the error.
pub(crate) fn trap(error: wasmtime::Error) -> HostError {
    tracing::debug!(target: "connector_host::trap", "{error:?}");
    if let Some(exit) = error.downcast_ref::<wasmtime_wasi::I32Exit>() {
        // `wasi:cli/exit` ends a command, not a call: whatever the status,
        // the call returned nothing.
        return HostError::Trap(format!(
            "it called exit (status {}) in the middle of a call, returning nothing",
            exit.0
        ));
    }
    HostError::Trap(match error.downcast_ref::<wasmtime::Trap>() {
        Some(code) => trap_reason(*code),
        None => error.root_cause().to_string(),
    })
}

/// What a trap code means for the person reading the error, then the code
/// as wasmtime words it (`wasm trap: ...`).
fn trap_reason(code: wasmtime::Trap) -> String {
    let meaning = match code {
        // What a Rust guest's panic (`panic = "abort"`) or `abort()` runs.
        wasmtime::Trap::UnreachableCodeReached => "it panicked or aborted",
        // A Rust guest's shadow stack lives in linear memory, so running
        // out of it is usually an out-of-bounds access too.
        wasmtime::Trap::MemoryOutOfBounds => {
            "it accessed memory out of bounds, or ran out of stack"
        }
        wasmtime::Trap::StackOverflow => "it ran out of stack",
        _ => return code.to_string(),
    };
    format!("{meaning} ({code})")
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

/// The instant `limit` from now. A limit too large for the clock (an
/// embedder's `Duration::MAX` for "no limit") gives a century from now, not
/// the panic that adding it would.
pub(crate) fn instant_after(limit: Duration) -> tokio::time::Instant {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    let now = tokio::time::Instant::now();
    now.checked_add(limit).unwrap_or_else(|| now + CENTURY)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Poll;

    /// What `meter` decides at a tick in the second poll of a metered
    /// call, after `second` has run in that poll. The first poll runs
    /// through a tick (or not, per `computing`) and yields.
    async fn second_tick(
        meter: &mut CpuMeter,
        computing: bool,
        second: impl Fn(),
    ) -> UpdateDeadline {
        let timer = meter.timer();
        let mut polls = 0;
        metered(
            timer,
            std::future::poll_fn(|cx| {
                polls += 1;
                if polls == 1 {
                    if computing {
                        assert!(matches!(meter.tick(), UpdateDeadline::Yield(1)));
                    }
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                second();
                Poll::Ready(meter.tick())
            }),
        )
        .await
    }

    /// Spins until this thread has used `cpu` of processor time.
    fn spin(cpu: Duration) {
        let start = thread_cpu_nanos().unwrap();
        while thread_cpu_nanos().unwrap() - start < cpu.as_nanos() as u64 {
            std::hint::spin_loop();
        }
    }

    #[tokio::test]
    async fn a_computing_guest_is_not_charged_for_time_its_thread_is_off_the_processor() {
        // The sleep stands for the operating system running other threads.
        let mut meter = CpuMeter::new(Duration::from_millis(100));
        let sleep = || std::thread::sleep(Duration::from_millis(300));
        let decision = second_tick(&mut meter, true, sleep).await;
        assert!(matches!(decision, UpdateDeadline::Yield(1)));
        assert!(!meter.exceeded);
    }

    #[tokio::test]
    async fn a_computing_guest_is_charged_for_the_processor_time_it_uses() {
        let mut meter = CpuMeter::new(Duration::from_millis(100));
        let decision = second_tick(&mut meter, true, || spin(Duration::from_millis(150))).await;
        assert!(matches!(decision, UpdateDeadline::Interrupt));
        assert!(meter.exceeded);
    }

    #[tokio::test]
    async fn a_poll_before_the_first_tick_is_timed_by_the_wall_clock() {
        // Reading the thread's CPU clock is a system call; the short polls
        // of an everyday call are timed by the wall clock instead.
        let mut meter = CpuMeter::new(Duration::from_millis(100));
        let sleep = || std::thread::sleep(Duration::from_millis(300));
        let decision = second_tick(&mut meter, false, sleep).await;
        assert!(matches!(decision, UpdateDeadline::Interrupt));
    }
}
