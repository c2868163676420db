//! A SentinelOne Management API v2.1 simulator: a real HTTP server on
//! loopback that speaks the response shapes the connector relies on, with
//! tokens of several roles and expiries, fault modes, and a request log.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use connector_host::simulator::{Simulator, tokens};
//! let sim = Simulator::start().await?;
//! println!("listening on {}; try token {}", sim.addr(), tokens::ADMIN);
//! # Ok(()) }
//! ```

mod fleet;
mod profiles;
mod query;
mod routes;
mod threat_store;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use fleet::agents;
pub use profiles::{ALL_PERMISSIONS, Fault, FaultKind, TokenProfile, tokens};
pub use threat_store::THREAT_COUNT;

/// One request as the simulator received it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoggedRequest {
    /// HTTP method.
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// The raw query string, if any.
    pub query: Option<String>,
    /// The `Host` header.
    pub host: Option<String>,
    /// The request body as text.
    pub body: String,
    /// The profile name of the token in the `Authorization` header, if valid.
    pub token: Option<String>,
    /// The `Authorization` scheme used (`ApiToken`), never the token.
    pub auth_scheme: Option<String>,
}

/// Mutable simulator state, shared by connections.
#[derive(Default)]
pub(crate) struct State {
    pub(crate) tokens: HashMap<String, TokenProfile>,
    /// Per `(token, fault index)`: matching requests seen, faults applied.
    pub(crate) fault_hits: HashMap<(String, usize), (u32, u32)>,
    pub(crate) log: Vec<LoggedRequest>,
    pub(crate) agents: Vec<serde_json::Value>,
    pub(crate) threats: Option<threat_store::ThreatStore>,
    /// Threat pages served with churn so far, per token.
    pub(crate) churned: HashMap<String, u32>,
    /// TCP connections accepted so far.
    pub(crate) connections: u64,
    /// TCP connections that have ended since (either side closed them).
    pub(crate) closed: u64,
    /// Whether requests are appended to `log` (off for benchmarks).
    pub(crate) logging: bool,
    /// Agents whose pending state never settles: they accept an action
    /// but never confirm it.
    pub(crate) unconfirming: Vec<String>,
}

/// A running simulator. Dropping it stops the server.
pub struct Simulator {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    shutdown: watch::Sender<bool>,
}

impl Simulator {
    /// Starts on `127.0.0.1` with an ephemeral port and the built-in tokens.
    pub async fn start() -> std::io::Result<Simulator> {
        Simulator::start_on(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts on `addr` (which should be loopback) with the built-in tokens.
    pub async fn start_on(addr: SocketAddr) -> std::io::Result<Simulator> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let mut state = State {
            agents: fleet::builtin(),
            threats: Some(threat_store::ThreatStore::builtin()),
            logging: true,
            ..State::default()
        };
        for (token, profile) in profiles::builtin() {
            state.tokens.insert(token.to_owned(), profile);
        }
        let state = Arc::new(Mutex::new(state));
        let (shutdown, stop) = watch::channel(false);
        tokio::spawn(accept_loop(listener, state.clone(), stop));
        Ok(Simulator {
            addr,
            state,
            shutdown,
        })
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Registers (or replaces) a token.
    pub fn add_token(&self, token: &str, profile: TokenProfile) {
        self.lock().tokens.insert(token.to_owned(), profile);
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.lock().log.clone()
    }

    /// The current `networkStatus` of agent `id`.
    pub fn network_status(&self, id: &str) -> Option<String> {
        let state = self.lock();
        let agent = state.agents.iter().find(|a| a["id"] == id)?;
        agent["networkStatus"].as_str().map(str::to_owned)
    }

    /// Sets agent `id`'s `networkStatus` (to stage a test).
    pub fn set_network_status(&self, id: &str, status: &str) {
        let mut state = self.lock();
        if let Some(agent) = state.agents.iter_mut().find(|a| a["id"] == id) {
            agent["networkStatus"] = serde_json::json!(status);
        }
    }

    /// Makes agent `id` accept actions but never confirm them, as an agent
    /// that lost its connection to the console right after does: its
    /// `disconnecting` or `connecting` state stays.
    pub fn never_confirm(&self, id: &str) {
        self.lock().unconfirming.push(id.to_owned());
    }

    /// Every threat's current `(id, updatedAt as served)`; `None` where the
    /// feed serves no usable timestamp.
    pub fn threat_versions(&self) -> Vec<(String, Option<String>)> {
        self.lock()
            .threats
            .as_ref()
            .map(|t| t.versions())
            .unwrap_or_default()
    }

    /// The exact JSON text the feed serves for threat `id` now.
    pub fn served_threat_json(&self, id: &str) -> Option<String> {
        self.lock().threats.as_ref().and_then(|t| t.served_json(id))
    }

    /// Forgets the request log.
    pub fn clear_requests(&self) {
        self.lock().log.clear();
    }

    /// Turns the request log on (the default) or off; a benchmark sending
    /// millions of requests turns it off.
    pub fn set_logging(&self, on: bool) {
        self.lock().logging = on;
    }

    /// TCP connections accepted so far: with keep-alive, far fewer than
    /// requests.
    pub fn connections_accepted(&self) -> u64 {
        self.lock().connections
    }

    /// TCP connections open now: accepted and not yet closed by either side.
    pub fn open_connections(&self) -> u64 {
        let state = self.lock();
        state.connections - state.closed
    }

    /// Adds a connected agent named `hostname` with id `id`, a copy of the
    /// finance laptop otherwise (for benchmarks that need one agent each).
    pub fn add_agent(&self, id: &str, hostname: &str) {
        let mut state = self.lock();
        let mut agent = fleet::template();
        agent["id"] = serde_json::json!(id);
        agent["computerName"] = serde_json::json!(hostname);
        agent["uuid"] = serde_json::json!(format!("bench{id}"));
        state.agents.push(agent);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// The body type of every simulator response. Its error is the simulator's
/// hang-up, which makes hyper close the connection.
pub(crate) type SimBody = http_body_util::combinators::BoxBody<Bytes, routes::HangUp>;

async fn accept_loop(
    listener: TcpListener,
    state: Arc<Mutex<State>>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
            _ = stop.changed() => return,
        };
        let state = state.clone();
        state.lock().unwrap_or_else(|e| e.into_inner()).connections += 1;
        let conn_stop = stop.clone();
        tokio::spawn(async move {
            let on_close = state.clone();
            let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                let state = state.clone();
                let stop = conn_stop.clone();
                async move {
                    let (parts, body) = request.into_parts();
                    // A request whose body was cut off is never acted on.
                    let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
                        return Ok(routes::incomplete_body());
                    };
                    routes::handle(&state, parts, body, stop).await
                }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
            on_close.lock().unwrap_or_else(|e| e.into_inner()).closed += 1;
        });
    }
}
