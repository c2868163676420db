//! HTTP keep-alive connection pools, keyed by tenant and destination.
//!
//! A connection opened for one tenant is only ever reused by a later call of
//! the same tenant to the same destination: a connection is shared state
//! (TLS session, server-side keep-alive context), and tenants share none.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::client::conn::http1::SendRequest;
use wasmtime_wasi_http::WasiBody;

use crate::policy::Route;

/// Where a pooled connection goes: the name the guest asked for and how it
/// was reached.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct PoolKey {
    tenant: Arc<str>,
    host: String,
    route: Route,
}

impl PoolKey {
    pub(crate) fn new(tenant: Arc<str>, host: String, route: Route) -> PoolKey {
        PoolKey {
            tenant,
            host,
            route,
        }
    }

    pub(crate) fn host(&self) -> &str {
        &self.host
    }

    pub(crate) fn route(&self) -> &Route {
        &self.route
    }
}

/// How long idle connections are kept, and how many.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PoolLimits {
    /// Idle connections kept per tenant and destination; 0 disables reuse.
    pub(crate) max_idle_per_destination: usize,
    /// Idle connections kept in total, across tenants.
    pub(crate) max_idle_total: usize,
    /// An idle connection older than this is closed rather than reused.
    /// Shorter than common server keep-alive timeouts (nginx: 75 s), so a
    /// reused connection is rarely one the server is closing.
    pub(crate) idle_timeout: Duration,
}

struct Idle {
    sender: SendRequest<WasiBody>,
    since: Instant,
}

/// The idle connections of every tenant, and how new ones verify TLS.
pub(crate) struct Pools {
    limits: PoolLimits,
    idle: Mutex<HashMap<PoolKey, Vec<Idle>>>,
    tls: tokio_rustls::TlsConnector,
}

impl Pools {
    pub(crate) fn new(limits: PoolLimits, tls: tokio_rustls::TlsConnector) -> Pools {
        Pools {
            limits,
            idle: Mutex::new(HashMap::new()),
            tls,
        }
    }

    /// TLS for new connections, verified against the runtime's roots.
    pub(crate) fn tls(&self) -> &tokio_rustls::TlsConnector {
        &self.tls
    }

    /// An idle, open connection for `key`, if there is one. It may still be
    /// finishing its previous response: await `ready()` before sending.
    pub(crate) fn take(&self, key: &PoolKey) -> Option<SendRequest<WasiBody>> {
        let mut idle = self.lock();
        let list = idle.get_mut(key)?;
        let found = loop {
            let Some(entry) = list.pop() else { break None };
            if self.usable(&entry) {
                break Some(entry.sender);
            }
        };
        if list.is_empty() {
            idle.remove(key);
        }
        found
    }

    /// Idle connections held now, across tenants.
    pub(crate) fn idle_count(&self) -> usize {
        total(&self.lock())
    }

    /// Keeps `sender` for reuse by the same tenant. Call it only once its
    /// response has been read to the end: a connection whose response was
    /// abandoned cannot carry another request and is dropped instead.
    pub(crate) fn put(&self, key: PoolKey, sender: SendRequest<WasiBody>) {
        if self.limits.max_idle_per_destination == 0 || sender.is_closed() {
            return;
        }
        let mut idle = self.lock();
        if total(&idle) >= self.limits.max_idle_total {
            self.prune(&mut idle);
            if total(&idle) >= self.limits.max_idle_total {
                return;
            }
        }
        let list = idle.entry(key).or_default();
        list.retain(|entry| self.usable(entry));
        if list.len() < self.limits.max_idle_per_destination {
            list.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }

    /// Closes every idle connection that is past the idle timeout or that
    /// the server has closed.
    pub(crate) fn sweep(&self) {
        self.prune(&mut self.lock());
    }

    fn prune(&self, idle: &mut HashMap<PoolKey, Vec<Idle>>) {
        idle.retain(|_, list| {
            list.retain(|entry| self.usable(entry));
            !list.is_empty()
        });
    }

    /// Sweeps `pools` in the background, often enough that an idle
    /// connection is closed at most a quarter of the idle timeout (and at
    /// most 5 s) after it expires, even when no call comes to notice it:
    /// a tenant that goes quiet must not keep a socket open on the server.
    /// The thread ends once the pools are dropped.
    pub(crate) fn start_sweeper(pools: &Arc<Pools>) -> std::io::Result<()> {
        let every = (pools.limits.idle_timeout / 4)
            .clamp(Duration::from_millis(10), Duration::from_secs(5));
        let weak = Arc::downgrade(pools);
        std::thread::Builder::new()
            .name("connector-pool-sweeper".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(every);
                    match weak.upgrade() {
                        Some(pools) => pools.sweep(),
                        None => return,
                    }
                }
            })
            .map(drop)
    }

    fn usable(&self, entry: &Idle) -> bool {
        !entry.sender.is_closed() && entry.since.elapsed() < self.limits.idle_timeout
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PoolKey, Vec<Idle>>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn total(idle: &HashMap<PoolKey, Vec<Idle>>) -> usize {
    idle.values().map(Vec::len).sum()
}
