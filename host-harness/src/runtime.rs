//! Loading the connector component and running one call in a fresh instance.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{Component, Instance, InstancePre, Linker, ResourceTable};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store,
};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use tracing::Instrument;

use crate::audit::{AuditLog, AuditRecord};
use crate::cache::{self, CacheStatus};
use crate::error::HostError;
use crate::exports::{Exports, invoke};
use crate::hooks::{PolicyHooks, Violations};
use crate::limits::{self, CpuMeter, Limits, metered, start_epoch_ticker, with_deadline};
use crate::pace::Pacer;
use crate::policy::CallPolicy;
use crate::pool::{PoolLimits, Pools};
use crate::redact::{Redact, Secret};
use crate::slots::{Slot, Slots};
use crate::text::shorten;

pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        world: "sentinelone",
        path: "../wit",
        exports: { default: async },
        with: {
            "wasi:http": wasmtime_wasi_http::p2::bindings::http,
            "wasi:io": wasmtime_wasi::p2::bindings::io,
            "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
        },
    });
}

use bindings::exports::soar::connector::{connector, events, types};
pub use connector::{
    ActionInfo, ActionOptions, ActionOutcome, ConnectionReport, ConnectorInfo, FormField,
    PermissionCheck, PermissionState,
};
pub use events::{FetchOptions, Threat, ThreatPage};
pub use types::{AmbiguousHosts, ConnectorError, Host, HostSelector, NetworkState, RateLimit};

/// What the user saved for a connection. `Debug` never shows the token, not
/// even pasted into the hostname or a protected host.
#[derive(Clone, PartialEq, Eq)]
pub struct Connection {
    /// The Management Hostname as typed.
    pub management_host: String,
    /// The API token as typed.
    pub api_token: String,
    /// Hosts that must never be isolated (hostname, agent id, UUID, IP,
    /// IP range or MAC; see the WIT `connection` record).
    pub protected_hosts: Vec<String>,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secret = Secret::new(Some(&self.api_token));
        let shown = |text: &str| {
            let mut text = text.to_owned();
            secret.redact_message(&mut text);
            text
        };
        let protected: Vec<String> = self.protected_hosts.iter().map(|h| shown(h)).collect();
        f.debug_struct("Connection")
            .field("management_host", &shown(&self.management_host))
            .field("api_token", &"[REDACTED]")
            .field("protected_hosts", &protected)
            .finish()
    }
}

impl Connection {
    /// A connection with no protected hosts.
    pub fn new(management_host: &str, api_token: &str) -> Connection {
        Connection {
            management_host: management_host.to_owned(),
            api_token: api_token.to_owned(),
            protected_hosts: Vec::new(),
        }
    }

    fn to_wit(&self) -> types::Connection {
        types::Connection {
            management_host: self.management_host.clone(),
            api_token: self.api_token.clone(),
            protected_hosts: self.protected_hosts.clone(),
        }
    }
}

/// The message field of a [`ConnectorError`], shared or mutable as
/// `$error` is.
macro_rules! connector_message {
    ($error:expr) => {
        match $error {
            ConnectorError::InvalidConfig(m)
            | ConnectorError::Unauthorized(m)
            | ConnectorError::Forbidden(m)
            | ConnectorError::NotFound(m)
            | ConnectorError::Unreachable(m)
            | ConnectorError::EgressDenied(m)
            | ConnectorError::Upstream(m)
            | ConnectorError::ProtectedHost(m) => m,
            ConnectorError::RateLimited(types::RateLimit { message, .. })
            | ConnectorError::Ambiguous(types::AmbiguousHosts { message, .. }) => message,
        }
    };
}

impl ConnectorError {
    /// The WIT case name, e.g. `invalid-config`.
    pub fn kind(&self) -> &'static str {
        match self {
            ConnectorError::InvalidConfig(_) => "invalid-config",
            ConnectorError::Unauthorized(_) => "unauthorized",
            ConnectorError::Forbidden(_) => "forbidden",
            ConnectorError::NotFound(_) => "not-found",
            ConnectorError::RateLimited(_) => "rate-limited",
            ConnectorError::Unreachable(_) => "unreachable",
            ConnectorError::EgressDenied(_) => "egress-denied",
            ConnectorError::Upstream(_) => "upstream",
            ConnectorError::Ambiguous(_) => "ambiguous",
            ConnectorError::ProtectedHost(_) => "protected-host",
        }
    }

    /// The message for the connection's owner.
    pub fn message(&self) -> &str {
        connector_message!(self)
    }

    /// The message, to rewrite in place (to redact it).
    pub(crate) fn message_mut(&mut self) -> &mut String {
        connector_message!(self)
    }
}

/// Why a call produced no result.
#[derive(Debug)]
pub enum CallError {
    /// The connector ran and reported an error about the console or connection.
    Connector(ConnectorError),
    /// The host stopped or could not run the connector.
    Host(HostError),
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Connector(e) => write!(f, "{}: {}", e.kind(), e.message()),
            CallError::Host(e) => e.fmt(f),
        }
    }
}

/// The result of one call, with the audit trail of the requests it made.
#[derive(Debug)]
pub struct Outcome<T> {
    /// What the call returned.
    pub result: Result<T, CallError>,
    /// One record per outgoing request, in order.
    pub requests: Vec<AuditRecord>,
    /// Wall-clock time of the whole call, instantiation included.
    pub elapsed: Duration,
    /// The part of `elapsed` spent waiting for the tenant's turn and a call
    /// slot before the call started: how far the runtime is behind. For a
    /// call that failed with `queue-timeout` or `tenant-limit`, all of it.
    pub queued: Duration,
    /// The most linear memory the call's instance had, in bytes (0 if it
    /// never started).
    pub memory_bytes: usize,
    /// The running time charged against the policy's `cpu_budget`: the
    /// guest's time in wasm and in host calls that do not wait, its
    /// instantiation included, and never its waits for the console. What
    /// the call cost this process, for accounting per tenant.
    pub cpu_time: Duration,
}

/// Shortens an action's wait to what `policy` leaves room for; returns the
/// sentence the outcome then carries, so the admin knows why it returned
/// before the agent confirmed.
fn fit_wait(options: &mut ActionOptions, policy: &CallPolicy) -> Option<String> {
    let asked = options.wait_seconds;
    let longest = u32::try_from(policy.longest_wait().as_secs()).unwrap_or(u32::MAX);
    (asked > longest).then(|| {
        options.wait_seconds = longest;
        format!(
            " The wait was shortened from {asked} s to {longest} s to fit this call's deadline \
             of {} s.",
            policy.deadline.as_secs()
        )
    })
}

/// The future of one exported call.
type CallFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, HostError>> + Send + 'a>>;

/// Per-call store data.
pub(crate) struct CallState {
    table: ResourceTable,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    hooks: PolicyHooks,
    limits: Limits,
    cpu: CpuMeter,
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for CallState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Bytes at the top of each host stack zeroed in place after a call when
/// [`RuntimeConfig::zero_stacks`] is on; the rest is handed back to the
/// kernel, which zeroes it, at the price of a page fault when a later call
/// reaches that deep. An isolate reaches between 8 and 16 KiB (page faults
/// per isolate: 1.9 keeping 4 KiB, 0.9 keeping 8 KiB, none from 16 KiB);
/// twice that leaves a margin for deeper calls.
const STACK_KEEP_RESIDENT: usize = 32 << 10;

/// Process-wide settings of a [`Runtime`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RuntimeConfig {
    /// Calls running at once; further calls wait (see
    /// [`CallPolicy::queue_timeout`]). Default 64.
    pub max_concurrent_calls: usize,
    /// Calls of one tenant ([`CallPolicy::tenant`]) running at once. A
    /// tenant's further calls wait for one of its own to finish, holding no
    /// slot meanwhile, so one busy tenant cannot take every slot from the
    /// others. `None` (the default) is half of `max_concurrent_calls`.
    pub max_concurrent_calls_per_tenant: Option<usize>,
    /// Where compiled components are cached across restarts; `None` (the
    /// default) compiles on every start.
    pub cache_dir: Option<std::path::PathBuf>,
    /// The most linear memory any one instance may have, in bytes: the size
    /// of a slot in the pooling allocator. A call's
    /// [`CallPolicy::max_memory_bytes`] is bounded by it. Default 256 MiB.
    pub max_memory_per_instance: usize,
    /// Idle keep-alive connections kept per tenant and destination; 0 turns
    /// reuse off. Default 8.
    pub max_idle_connections_per_destination: usize,
    /// Idle keep-alive connections kept in total. Default 1024.
    pub max_idle_connections: usize,
    /// How long an idle connection is kept for reuse. Default 30 s. A
    /// background sweep closes expired ones within a quarter of this (at
    /// most 5 s) after they expire, whether or not calls keep coming.
    pub idle_connection_timeout: Duration,
    /// Bytes of each pool slot's linear memory (and tables) that are zeroed
    /// in place after a call and stay resident, instead of being handed
    /// back to the kernel. The next instance in that slot then takes no
    /// page faults there. Costs up to this much resident memory per memory
    /// slot once used (see [`RuntimeConfig::max_resident_bytes`]). Default
    /// 256 KiB, which covers this connector's whole memory on every call
    /// it makes.
    pub keep_resident_bytes: usize,
    /// Whether the host stack a call's wasm ran on is zeroed before the
    /// next call uses it. Compiled wasm never reads a stack slot it did not
    /// write, so this guards against a compiler bug only: defence in depth,
    /// so that no tenant's values can be read off another tenant's stack.
    /// Costs about 2 µs per call. Default on.
    pub zero_stacks: bool,
    /// Certificate authorities trusted for TLS besides the public web's
    /// (Mozilla's list, built in): for a proxy that re-signs TLS, or a
    /// console with a private CA. Empty by default. See
    /// [`RuntimeConfig::trust_certificates_pem`].
    pub extra_root_certificates: Vec<rustls::pki_types::CertificateDer<'static>>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            max_concurrent_calls: 64,
            max_concurrent_calls_per_tenant: None,
            cache_dir: None,
            max_memory_per_instance: 256 << 20,
            max_idle_connections_per_destination: 8,
            max_idle_connections: 1024,
            idle_connection_timeout: Duration::from_secs(30),
            keep_resident_bytes: 256 << 10,
            zero_stacks: true,
            extra_root_certificates: Vec::new(),
        }
    }
}

impl RuntimeConfig {
    /// Also trusts the certificate authorities in `pem` (one or more
    /// `BEGIN CERTIFICATE` blocks) for TLS. Fails with
    /// [`HostError::Config`] when `pem` holds no certificate or one that
    /// cannot serve as a root.
    pub fn trust_certificates_pem(mut self, pem: &[u8]) -> Result<Self, HostError> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let bad = |why: String| HostError::Config(format!("the trusted certificates: {why}"));
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(format!("not PEM ({e})")))?;
        if certs.is_empty() {
            return Err(bad("no BEGIN CERTIFICATE block".into()));
        }
        let mut check = rustls::RootCertStore::empty();
        for cert in certs {
            check
                .add(cert.clone())
                .map_err(|e| bad(format!("a certificate is unusable as a root ({e})")))?;
            self.extra_root_certificates.push(cert);
        }
        Ok(self)
    }

    /// TLS for new connections: Mozilla's roots and the extra ones, with
    /// TLS 1.2 and 1.3 from `ring`.
    pub(crate) fn tls(&self) -> tokio_rustls::TlsConnector {
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.into(),
        };
        // Checked when added (`trust_certificates_pem`), or the embedder's
        // own DER: one that fails here is left out rather than trusted.
        let _ = roots.add_parsable_certificates(self.extra_root_certificates.iter().cloned());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }

    /// Sets the concurrency limit (at least 1).
    pub fn max_concurrent_calls(mut self, calls: usize) -> Self {
        self.max_concurrent_calls = calls.max(1);
        self
    }

    /// Sets how many calls of one tenant run at once (at least 1; see
    /// [`RuntimeConfig::max_concurrent_calls_per_tenant`]).
    pub fn max_concurrent_calls_per_tenant(mut self, calls: usize) -> Self {
        self.max_concurrent_calls_per_tenant = Some(calls.max(1));
        self
    }

    /// The per-tenant limit in force: as set, or half of
    /// `max_concurrent_calls`; at least 1 and at most `max_concurrent_calls`.
    pub fn per_tenant_limit(&self) -> usize {
        self.max_concurrent_calls_per_tenant
            .unwrap_or(self.max_concurrent_calls / 2)
            .clamp(1, self.max_concurrent_calls.max(1))
    }

    /// Caches compiled components in `dir`.
    pub fn cache_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self
    }

    /// Sets how many idle connections are kept per tenant and destination
    /// (0: a new connection for every request).
    pub fn max_idle_connections_per_destination(mut self, connections: usize) -> Self {
        self.max_idle_connections_per_destination = connections;
        self
    }

    /// Sets how many idle connections are kept in total.
    pub fn max_idle_connections(mut self, connections: usize) -> Self {
        self.max_idle_connections = connections;
        self
    }

    /// Sets the size of each pool slot's linear memory, the most any one
    /// instance may have whatever its policy says. Below what a component
    /// starts with (256 KiB for this connector), loading it fails.
    pub fn max_memory_per_instance(mut self, bytes: usize) -> Self {
        self.max_memory_per_instance = bytes;
        self
    }

    /// Sets how long an idle connection is kept for reuse (at least 1 ms).
    pub fn idle_connection_timeout(mut self, timeout: Duration) -> Self {
        self.idle_connection_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// Sets how much of each slot's memory stays resident between calls
    /// (0: all of it is returned to the kernel after every call).
    pub fn keep_resident_bytes(mut self, bytes: usize) -> Self {
        self.keep_resident_bytes = bytes;
        self
    }

    /// Turns the zeroing of used host stacks on or off (see
    /// [`RuntimeConfig::zero_stacks`]).
    pub fn zero_stacks(mut self, zero: bool) -> Self {
        self.zero_stacks = zero;
        self
    }

    /// The most linear memory the pool keeps resident between calls once
    /// every slot has been used: [`RuntimeConfig::keep_resident_bytes`] for
    /// each of its memory slots.
    pub fn max_resident_bytes(&self) -> usize {
        self.keep_resident_bytes.saturating_mul(self.memory_slots())
    }

    /// Linear memory slots in the pool: one per call, doubled as a margin
    /// for other components (see `Runtime::load_version`).
    fn memory_slots(&self) -> usize {
        self.max_concurrent_calls.saturating_mul(2)
    }

    pub(crate) fn pool_limits(&self) -> PoolLimits {
        PoolLimits {
            max_idle_per_destination: self.max_idle_connections_per_destination,
            max_idle_total: self.max_idle_connections,
            idle_timeout: self.idle_connection_timeout,
        }
    }

    /// The engine: pooling allocator sized for the concurrency limit, epoch
    /// interruption, parallel compilation.
    fn engine(&self) -> Result<Engine, HostError> {
        // Every call runs in one component instance with one core instance
        // per core module (3 for a Rust component) and one memory; the
        // margins admit other components (see `Runtime::load_version`).
        let slots = u32::try_from(self.max_concurrent_calls).unwrap_or(u32::MAX);
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(slots)
            .total_core_instances(slots.saturating_mul(8))
            .total_memories(u32::try_from(self.memory_slots()).unwrap_or(u32::MAX))
            .total_tables(slots.saturating_mul(4))
            .total_stacks(slots)
            .max_memory_size(self.max_memory_per_instance)
            .max_core_instances_per_component(8)
            .max_memories_per_component(2)
            .max_tables_per_component(4)
            .linear_memory_keep_resident(self.keep_resident_bytes)
            .table_keep_resident(self.keep_resident_bytes)
            // Where Linux has PAGEMAP_SCAN (6.7+), reset only the pages a
            // call dirtied instead of zeroing the whole kept-resident
            // prefix, which was a fifth of an instantiation in a profile.
            .pagemap_scan(Enabled::Auto)
            .async_stack_keep_resident(STACK_KEEP_RESIDENT);
        let mut config = Config::new();
        config
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .parallel_compilation(true)
            .wasm_component_model(true)
            .epoch_interruption(true)
            .async_stack_zeroing(self.zero_stacks);
        if std::env::var_os("CONNECTOR_HOST_PERFMAP").is_some() {
            // Names guest functions in `perf report`; see docs/performance.md.
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config).map_err(|e| HostError::Config(e.to_string()))?;
        start_epoch_ticker(&engine)?;
        Ok(engine)
    }
}

/// A loaded connector: compile once, then run any number of calls, each in a
/// fresh instance with its own policy.
pub struct Runtime {
    engine: Engine,
    pre: InstancePre<CallState>,
    exports: Arc<Exports>,
    slots: Arc<Slots>,
    pools: Arc<Pools>,
    pacer: Arc<Pacer>,
    config: RuntimeConfig,
    cache_status: CacheStatus,
}

impl Runtime {
    /// Compiles `component` (a `.wasm` component's bytes) and links WASI and
    /// `wasi:http`. Fails with [`HostError::Load`] when the bytes are not a
    /// component implementing the `sentinelone` world.
    pub fn new(component: &[u8]) -> Result<Runtime, HostError> {
        Runtime::with_config(component, RuntimeConfig::default())
    }

    /// Like [`Runtime::new`], with process-wide settings.
    pub fn with_config(component: &[u8], config: RuntimeConfig) -> Result<Runtime, HostError> {
        let engine = config.engine()?;
        let slots = Arc::new(Slots::new(
            config.max_concurrent_calls,
            config.per_tenant_limit(),
        ));
        let pools = Arc::new(Pools::new(config.pool_limits(), config.tls()));
        Pools::start_sweeper(&pools)
            .map_err(|e| HostError::Config(format!("cannot start the pool sweeper: {e}")))?;
        Runtime::load(component, engine, slots, pools, Arc::default(), config)
    }

    /// Loads another version of the connector into this runtime's engine.
    /// The two share the concurrency limit, the connection pools, the
    /// tenants' request pacing and the cache, so one process keeps one
    /// engine however many versions it runs.
    pub fn load_version(&self, component: &[u8]) -> Result<Runtime, HostError> {
        let (slots, pools) = (self.slots.clone(), self.pools.clone());
        Runtime::load(
            component,
            self.engine.clone(),
            slots,
            pools,
            self.pacer.clone(),
            self.config.clone(),
        )
    }

    fn load(
        component: &[u8],
        engine: Engine,
        slots: Arc<Slots>,
        pools: Arc<Pools>,
        pacer: Arc<Pacer>,
        config: RuntimeConfig,
    ) -> Result<Runtime, HostError> {
        let (component, cache_status) = match &config.cache_dir {
            Some(dir) => cache::load(dir, &engine, component),
            None => Component::new(&engine, component).map(|c| (c, CacheStatus::Disabled)),
        }
        .map_err(|e| HostError::Load(format!("{e:#}")))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| HostError::Config(e.to_string()))?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(|e| HostError::Config(e.to_string()))?;
        let pre = linker
            .instantiate_pre(&component)
            .map_err(|e| HostError::Load(format!("{e:#}")))?;
        // Every function a call may run must exist before any call does.
        let exports = Arc::new(Exports::find(&component)?);
        Ok(Runtime {
            engine,
            pre,
            exports,
            slots,
            pools,
            pacer,
            config,
            cache_status,
        })
    }

    /// The connector built into this crate.
    pub fn builtin() -> Result<Runtime, HostError> {
        Runtime::new(crate::COMPONENT)
    }

    /// Whether the compiled component came from the on-disk cache.
    pub fn cache_status(&self) -> CacheStatus {
        self.cache_status
    }

    /// The engine, for embedders that share it.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Idle keep-alive connections held now, across tenants.
    pub fn idle_connections(&self) -> usize {
        self.pools.idle_count()
    }

    /// Tenants with a call queued or running now, across the versions that
    /// share this runtime's slots.
    pub fn active_tenants(&self) -> usize {
        self.slots.active_tenants()
    }

    /// Calls holding a call slot now, across the versions that share this
    /// runtime's slots: at most `RuntimeConfig::max_concurrent_calls`.
    pub fn calls_running(&self) -> usize {
        self.slots.running()
    }

    /// Calls waiting now for their tenant's turn or a call slot. Above zero
    /// for long, the runtime needs more slots (or a tenant is busy): each
    /// call's [`Outcome::queued`] says how long it waited.
    pub fn calls_waiting(&self) -> usize {
        self.slots.waiting()
    }

    /// Calls `describe`. Sends no request.
    pub async fn describe(&self) -> Result<ConnectorInfo, HostError> {
        let policy = Arc::new(CallPolicy::with_egress(crate::EgressPolicy::deny_all()));
        let span = tracing::info_span!(
            "connector_call",
            tenant = %policy.tenant,
            action = "describe"
        );
        async {
            let mut call = Unfinished::new();
            let result = async {
                let _slot = self.slot(&policy).await?;
                call.slot_taken();
                let (mut store, _) = self.store(policy.clone(), None);
                let result = self
                    .run(&mut store, policy.deadline, |instance, exports, store| {
                        Box::pin(
                            async move { invoke(store, &instance, &exports.describe, ()).await },
                        )
                    })
                    .await;
                enforce_limits(result, store.data(), &policy)
            }
            .await;
            call.end_host(result)
        }
        .instrument(span)
        .await
    }

    /// Calls `validate-connection` under `policy`.
    pub async fn validate_connection(
        &self,
        connection: &Connection,
        policy: &CallPolicy,
    ) -> Outcome<ConnectionReport> {
        let conn = connection.to_wit();
        self.call(
            "validate-connection",
            policy,
            &connection.api_token,
            move |instance, exports, store| {
                Box::pin(async move {
                    invoke(store, &instance, &exports.validate_connection, (&conn,)).await
                })
            },
        )
        .await
    }

    /// Calls `get-host`: finds exactly one agent, read-only.
    pub async fn get_host(
        &self,
        connection: &Connection,
        host: &HostSelector,
        policy: &CallPolicy,
    ) -> Outcome<Host> {
        let (conn, host) = (connection.to_wit(), host.clone());
        self.call(
            "get-host",
            policy,
            &connection.api_token,
            move |instance, exports, store| {
                Box::pin(async move {
                    invoke(store, &instance, &exports.get_host, (&conn, &host)).await
                })
            },
        )
        .await
    }

    /// Calls `isolate-host`: network-isolates exactly one endpoint.
    pub async fn isolate_host(
        &self,
        connection: &Connection,
        host: &HostSelector,
        options: &ActionOptions,
        policy: &CallPolicy,
    ) -> Outcome<ActionOutcome> {
        self.act(true, connection, host, options, policy).await
    }

    /// Calls `release-host`: reconnects exactly one endpoint.
    pub async fn release_host(
        &self,
        connection: &Connection,
        host: &HostSelector,
        options: &ActionOptions,
        policy: &CallPolicy,
    ) -> Outcome<ActionOutcome> {
        self.act(false, connection, host, options, policy).await
    }

    async fn act(
        &self,
        isolate: bool,
        connection: &Connection,
        host: &HostSelector,
        options: &ActionOptions,
        policy: &CallPolicy,
    ) -> Outcome<ActionOutcome> {
        let (conn, host, mut options) = (connection.to_wit(), host.clone(), options.clone());
        let shortened = fit_wait(&mut options, policy);
        let action = if isolate {
            "isolate-host"
        } else {
            "release-host"
        };
        let mut outcome: Outcome<ActionOutcome> = self
            .call(
                action,
                policy,
                &connection.api_token,
                move |instance, exports, store| {
                    let export = if isolate {
                        &exports.isolate_host
                    } else {
                        &exports.release_host
                    };
                    Box::pin(async move {
                        invoke(store, &instance, export, (&conn, &host, &options)).await
                    })
                },
            )
            .await;
        if let (Ok(done), Some(note)) = (&mut outcome.result, shortened) {
            done.detail.push_str(&note);
        }
        outcome
    }

    /// Calls `fetch-threats`: the next page after `checkpoint` (none on the
    /// first run). Store the returned checkpoint only after the threats.
    pub async fn fetch_threats(
        &self,
        connection: &Connection,
        checkpoint: Option<&str>,
        options: &FetchOptions,
        policy: &CallPolicy,
    ) -> Outcome<ThreatPage> {
        let (conn, checkpoint, options) =
            (connection.to_wit(), checkpoint.map(str::to_owned), *options);
        self.call(
            "fetch-threats",
            policy,
            &connection.api_token,
            move |instance, exports, store| {
                Box::pin(async move {
                    let params = (&conn, checkpoint.as_deref(), options);
                    invoke(store, &instance, &exports.fetch_threats, params).await
                })
            },
        )
        .await
    }

    /// Runs `export` in a fresh instance under `policy`, with the deadline,
    /// and collects the audit trail.
    async fn call<R: Redact>(
        &self,
        action: &'static str,
        policy: &CallPolicy,
        secret: &str,
        export: impl for<'a> FnOnce(
            Instance,
            &'a Exports,
            &'a mut Store<CallState>,
        ) -> CallFuture<'a, Result<R, ConnectorError>>,
    ) -> Outcome<R> {
        let span = tracing::info_span!("connector_call", tenant = %policy.tenant, action);
        async {
            let mut queued = Unfinished::new();
            if let Err(e) = policy.check() {
                return queued.end(Err(HostError::InvalidPolicy(e.to_string())), Usage::NONE);
            }
            let _slot = match self.slot(policy).await {
                Ok(slot) => slot,
                Err(error) => return queued.end(Err(error), Usage::NONE),
            };
            queued.slot_taken();
            let policy = Arc::new(policy.clone());
            let (mut store, audit) = self.store(policy.clone(), Some(secret));
            // Bound after the store, so it drops first: if the embedder drops
            // the call, requests in flight are recorded as cut off before the
            // store's drop aborts them (they would then read `abandoned`).
            let mut call = queued.running(audit);
            let result = self.run(&mut store, policy.deadline, export).await;
            let result = enforce_limits(result, store.data(), &policy);
            call.end(result, Usage::of(store.data()))
        }
        .instrument(span)
        .await
    }

    /// Runs `export` in a fresh instance in `store`: its running time
    /// metered against the CPU budget, the whole stopped at `deadline`.
    async fn run<R>(
        &self,
        store: &mut Store<CallState>,
        deadline: Duration,
        export: impl for<'a> FnOnce(
            Instance,
            &'a Exports,
            &'a mut Store<CallState>,
        ) -> CallFuture<'a, R>,
    ) -> Result<R, HostError> {
        let timer = store.data().cpu.timer();
        let run = async {
            let instance = instantiate(&self.pre, store).await?;
            export(instance, &self.exports, store).await
        };
        with_deadline(deadline, metered(timer, run)).await
    }

    /// Backpressure: waits for the tenant's turn and a call slot rather
    /// than fail when busy. The slot also guarantees the pooling allocator
    /// has room for the instance.
    async fn slot(&self, policy: &CallPolicy) -> Result<Slot, HostError> {
        self.slots
            .acquire(&policy.tenant, policy.queue_timeout)
            .await
    }

    fn store(&self, policy: Arc<CallPolicy>, secret: Option<&str>) -> (Store<CallState>, AuditLog) {
        let audit = AuditLog::new(Secret::new(secret));
        let max_memory = policy
            .max_memory_bytes
            .min(self.config.max_memory_per_instance);
        let max_handles = policy.max_live_handles;
        let state = CallState {
            table: ResourceTable::new(),
            wasi: limits::wasi_ctx(&policy),
            http: limits::http_ctx(&policy),
            limits: Limits::new(max_memory),
            cpu: CpuMeter::new(policy.cpu_budget),
            hooks: PolicyHooks {
                tenant: Arc::from(policy.tenant.as_str()),
                pacer: self.pacer.clone(),
                deadline_at: Instant::now().checked_add(policy.deadline),
                turns: Vec::new(),
                policy,
                audit: audit.clone(),
                requested: 0,
                violations: Violations::default(),
                pools: self.pools.clone(),
            },
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        store.set_max_component_handles(max_handles);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut ctx| Ok(ctx.data_mut().cpu.tick()));
        (store, audit)
    }

    /// Creates a call's store and instance under `policy`, and drops them:
    /// the fixed cost of every call, for the benchmark.
    pub(crate) async fn instantiate_only(&self, policy: Arc<CallPolicy>) -> Result<(), HostError> {
        self.instantiate_other(&self.pre, policy).await
    }

    /// Like [`Runtime::instantiate_only`], for another component prepared
    /// by [`Runtime::prepare_other`]: the benchmark's baseline.
    pub(crate) async fn instantiate_other(
        &self,
        pre: &InstancePre<CallState>,
        policy: Arc<CallPolicy>,
    ) -> Result<(), HostError> {
        let (mut store, _) = self.store(policy, None);
        instantiate(pre, &mut store).await.map(drop)
    }

    /// `component` prepared for a call's store, with no imports linked.
    pub(crate) fn prepare_other(
        &self,
        component: &Component,
    ) -> Result<InstancePre<CallState>, HostError> {
        Linker::new(&self.engine)
            .instantiate_pre(component)
            .map_err(|e| HostError::Load(format!("{e:#}")))
    }
}

/// A fresh instance of `pre`. Not through the generated bindings, which
/// would type-check every export for every instance (see
/// [`crate::exports`]).
async fn instantiate(
    pre: &InstancePre<CallState>,
    store: &mut Store<CallState>,
) -> Result<Instance, HostError> {
    pre.instantiate_async(store)
        .await
        .map_err(|e| HostError::Instantiate(format!("{e:#}")))
}

/// Replaces a call's result with the limit it ran into, if any: a trap
/// caused by a refused memory grow is a memory limit, one caused by a
/// host-memory limit is `HostResources`, an interrupted guest
/// is out of CPU budget, and a guest that sent too many requests, too large
/// a body, or to a refused destination without reporting `egress-denied`,
/// has its result discarded.
fn enforce_limits<A: Answer>(
    result: Result<A, HostError>,
    state: &CallState,
    policy: &CallPolicy,
) -> Result<A, HostError> {
    if state.cpu.exceeded {
        return Err(HostError::CpuBudget(policy.cpu_budget));
    }
    // A memory refused at instantiation (a cap below what the component
    // starts with) is the same limit as one refused later.
    if let Err(HostError::Trap(_) | HostError::Instantiate(_)) = &result
        && state.limits.memory_denied
    {
        return Err(HostError::MemoryLimit(state.limits.max_memory));
    }
    if let Err(HostError::Trap(reason)) = &result
        && let Some(exceeded) = limits::host_resource(reason, policy)
    {
        return Err(HostError::HostResources(exceeded));
    }
    let stopped = matches!(result, Err(HostError::Deadline(_)));
    if state.hooks.over_request_cap() && !stopped {
        return Err(HostError::TooManyRequests(policy.max_requests));
    }
    if state.hooks.violations.request_too_large() && !stopped {
        return Err(HostError::RequestTooLarge(policy.max_request_bytes));
    }
    if let Some(destination) = state.hooks.violations.first_denied() {
        let reported = matches!(&result, Ok(answer) if answer.reports_egress_denied());
        if !reported && !stopped {
            return Err(HostError::EgressDenied(destination));
        }
    }
    result
}

/// A call's answer, as [`enforce_limits`] sees it.
trait Answer {
    /// Whether the connector itself reported a refused destination, so
    /// that its answer stands.
    fn reports_egress_denied(&self) -> bool;
}

impl<T> Answer for Result<T, ConnectorError> {
    fn reports_egress_denied(&self) -> bool {
        matches!(self, Err(ConnectorError::EgressDenied(_)))
    }
}

/// `describe`, which has no errors of its own.
impl Answer for ConnectorInfo {
    fn reports_egress_denied(&self) -> bool {
        false
    }
}

/// The most of an error's text a call hands back: room for any real
/// message, far less than a connector could return.
const MAX_MESSAGE: usize = 8192;

/// Cuts the guest-chosen text in `error` to [`MAX_MESSAGE`] bytes.
fn bound_message(error: &mut CallError) {
    let text = match error {
        CallError::Connector(e) => Some(e.message_mut()),
        CallError::Host(e) => e.text_mut(),
    };
    if let Some(text) = text {
        shorten(text, MAX_MESSAGE);
    }
}

/// What a call's instance used, for its [`Outcome`].
struct Usage {
    memory_bytes: usize,
    cpu_time: Duration,
}

impl Usage {
    /// A call that never ran.
    const NONE: Usage = Usage {
        memory_bytes: 0,
        cpu_time: Duration::ZERO,
    };

    fn of(state: &CallState) -> Usage {
        Usage {
            memory_bytes: state.limits.peak,
            cpu_time: state.cpu.spent(),
        }
    }
}

/// A call from its start to its outcome. Dropped before [`Unfinished::end`]
/// (the embedder dropped the call's future), it still closes the audit
/// trail and traces the call, as `cancelled`.
struct Unfinished {
    audit: AuditLog,
    started: Instant,
    /// How long the call waited for a slot, once it has one.
    queued: Option<Duration>,
    ended: bool,
}

impl Unfinished {
    fn new() -> Unfinished {
        Unfinished {
            audit: AuditLog::default(),
            started: Instant::now(),
            queued: None,
            ended: false,
        }
    }

    /// The call, now running with `audit` as its trail.
    fn running(mut self, audit: AuditLog) -> Unfinished {
        self.audit = audit;
        self
    }

    /// The call holds a slot: its time queued ends here.
    fn slot_taken(&mut self) {
        self.queued = Some(self.started.elapsed());
    }

    /// The call's outcome: `result` redacted, the audit trail closed (a
    /// request still in flight reads `cut-off`) and the call traced.
    fn end<T: Redact>(
        &mut self,
        mut result: Result<Result<T, ConnectorError>, HostError>,
        usage: Usage,
    ) -> Outcome<T> {
        self.ended = true;
        result.redact(self.audit.secret());
        let mut result = match result {
            Ok(answer) => answer.map_err(CallError::Connector),
            Err(e) => Err(CallError::Host(e)),
        };
        if let Err(error) = &mut result {
            bound_message(error);
        }
        let (kind, source) = match &result {
            Ok(_) => ("ok", "-"),
            Err(CallError::Connector(e)) => (e.kind(), "connector"),
            Err(CallError::Host(e)) => (e.kind(), "host"),
        };
        let (elapsed, queued, requests) = self.close(kind, source, Some(usage.cpu_time));
        Outcome {
            result,
            requests,
            elapsed,
            queued,
            memory_bytes: usage.memory_bytes,
            cpu_time: usage.cpu_time,
        }
    }

    /// Ends a call that sends no request and whose only failures are the
    /// host's (`describe`): traces it, and hands `result` back.
    fn end_host<T>(&mut self, result: Result<T, HostError>) -> Result<T, HostError> {
        self.ended = true;
        let (kind, source) = match &result {
            Ok(_) => ("ok", "-"),
            Err(e) => (e.kind(), "host"),
        };
        self.close(kind, source, None);
        result
    }

    /// Closes the audit trail and traces the call, with its CPU time when
    /// known; returns its time in all, its time queued (all of it if it
    /// never had a slot) and its requests.
    fn close(
        &mut self,
        kind: &str,
        source: &str,
        cpu_time: Option<Duration>,
    ) -> (Duration, Duration, Vec<AuditRecord>) {
        self.audit.close();
        let elapsed = self.started.elapsed();
        let queued = *self.queued.get_or_insert(elapsed);
        let requests = self.audit.snapshot();
        tracing::info!(
            target: "connector_host::call",
            duration_ms = crate::audit::millis(elapsed),
            queued_ms = crate::audit::millis(queued),
            cpu_us = cpu_time.map(|t| u64::try_from(t.as_micros()).unwrap_or(u64::MAX)),
            outcome = kind,
            source,
            requests = requests.len(),
            "call finished"
        );
        (elapsed, queued, requests)
    }
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        if !self.ended {
            self.close("cancelled", "embedder", None);
        }
    }
}
