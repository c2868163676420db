//! The host side of the SOAR connector: load a connector component, run its
//! calls in fresh sandboxed instances, and enforce where it may connect.
//!
//! ```no_run
//! use connector_host::{CallPolicy, Connection, EgressPolicy, Runtime};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let runtime = Runtime::builtin()?; // compile once, reuse for every call
//! let connection = Connection::new("u1234-s123", &std::env::var("S1_API_TOKEN")?);
//! let policy = CallPolicy::with_egress(EgressPolicy::default()); // sentinelone.net only
//! let outcome = runtime.validate_connection(&connection, &policy).await;
//! match outcome.result {
//!     Ok(report) => println!("token expires {:?}", report.token_expires_at),
//!     Err(e) => eprintln!("{e}"),
//! }
//! for request in &outcome.requests {
//!     println!("{} {} -> {:?}", request.method, request.path, request.status);
//! }
//! # Ok(()) }
//! ```
//!
//! - [`Runtime`] compiles the component once and instantiates it per call
//!   from wasmtime's pooling allocator, behind a bound on calls in flight
//!   in all and per tenant, with keep-alive connections pooled per tenant
//!   and destination.
//! - [`CallPolicy`] and [`EgressPolicy`] bound each call: allowed domains,
//!   timeouts, body caps, memory, CPU, request count and a deadline; a
//!   [`RequestRate`] paces each tenant's requests to its console across
//!   calls, and a [`PathRate`] each part of the console's API on its own.
//! - [`bench`](mod@bench) measures the runtime against native Rust (`connector-host bench`).
//! - Every request yields an [`AuditRecord`]; the call's token is redacted from
//!   it, from its trace event, and from the call's result or error, wherever
//!   the guest or the console put it.
//! - [`simulator`] is a SentinelOne Management API simulator for demos and tests.

#![warn(missing_docs)]

mod address;
mod audit;
pub mod bench;
mod cache;
mod connect;
mod error;
mod exports;
mod hooks;
mod limits;
mod pace;
mod policy;
mod pool;
mod redact;
mod runtime;
pub mod simulator;
mod slots;
mod text;

pub use audit::AuditRecord;
pub use cache::CacheStatus;
pub use error::HostError;
pub use pace::{PathRate, RequestRate};
pub use policy::{CallPolicy, EgressPolicy, PolicyError, Proxy, Route};
pub use runtime::{
    ActionInfo, ActionOptions, ActionOutcome, AmbiguousHosts, CallError, Connection,
    ConnectionReport, ConnectorError, ConnectorInfo, FetchOptions, FormField, Host, HostSelector,
    NetworkState, Outcome, PermissionCheck, PermissionState, RateLimit, Runtime, RuntimeConfig,
    Threat, ThreatPage,
};

/// The SentinelOne connector component built from this repository
/// (`wasm32-wasip2`, size-optimised profile).
pub const COMPONENT: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/sentinelone_connector.wasm"));

/// A deliberately misbehaving connector component (`tests/hostile`), for
/// testing a host's limits. Its `validate-connection` spins, grows memory,
/// recurses, floods requests, traps, counts calls in a global, fetches a
/// given authority or uploads a huge body, chosen by the connection's
/// `management-host` (`spin`, `grow`, `recurse`, `flood`, `trap`, `state`,
/// `fetch:<authority>`, `post:<MiB>`); its `describe` grows memory without
/// bound.
pub const HOSTILE_COMPONENT: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/hostile_connector.wasm"));
