//! What a connector call may do: where it may connect and its budgets.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::pace::{PathRate, RequestRate};

/// A policy value the embedder supplied is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PolicyError(String);

/// Where a connector may send requests.
///
/// Decisions use the request URI's authority only, never a `Host` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressPolicy {
    allowed_suffixes: Vec<String>,
    connect_to: HashMap<String, SocketAddr>,
    proxy: Option<Arc<Proxy>>,
    /// Domains reached directly even when `proxy` is set.
    bypass_proxy: Vec<String>,
}

impl Default for EgressPolicy {
    /// HTTPS to `sentinelone.net` and its subdomains only, directly.
    fn default() -> Self {
        EgressPolicy {
            allowed_suffixes: vec!["sentinelone.net".into()],
            connect_to: HashMap::new(),
            proxy: None,
            bypass_proxy: Vec::new(),
        }
    }
}

/// An HTTP proxy that HTTPS requests are tunnelled through with `CONNECT`,
/// as networks that allow no direct outbound connections require. TLS
/// still runs end to end and is verified against the destination's name:
/// the proxy sees the host name and port, never the token.
///
/// The proxy is the embedder's own infrastructure, so its address is not
/// vetted like a destination's (it is usually private), and it resolves the
/// destination's name itself: a proxy must not be one that reaches
/// internal addresses for names under the allowed domains.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Proxy {
    host: String,
    port: u16,
    /// The `Proxy-Authorization` value, a secret.
    authorization: Option<String>,
}

impl Proxy {
    /// Parses `http://[user:password@]host:port`, as `HTTPS_PROXY` is
    /// usually written; the port defaults to 80, and a value without a
    /// scheme means `http://`, as curl reads it. User and password may be
    /// percent-encoded.
    pub fn parse(url: &str) -> Result<Proxy, PolicyError> {
        // Never echo the value: it may hold a password.
        let bad = |why: &str| Err(PolicyError(format!("the proxy address is unusable: {why}")));
        let url = url.trim();
        let with_scheme;
        let url = if url.contains("://") {
            url
        } else {
            with_scheme = format!("http://{url}");
            &with_scheme
        };
        let Ok(parsed) = url::Url::parse(url) else {
            return bad("expected http://host:port or http://user:password@host:port");
        };
        if parsed.scheme() != "http" {
            return bad("only http:// proxies are supported (the tunnel then carries TLS)");
        }
        if parsed.path() != "/" || parsed.query().is_some() || parsed.fragment().is_some() {
            return bad("it must be just http://host:port");
        }
        let Some(host) = parsed.host_str().filter(|h| !h.is_empty()) else {
            return bad("it names no host");
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let proxy = Proxy {
            host: host.to_owned(),
            port: parsed.port().unwrap_or(80),
            authorization: None,
        };
        if parsed.username().is_empty() && parsed.password().is_none() {
            return Ok(proxy);
        }
        let decode = |s: &str| {
            let decoded = percent_encoding::percent_decode_str(s).decode_utf8();
            decoded.map(String::from).map_err(|_| {
                PolicyError(
                    "the proxy address is unusable: its user or password is not valid \
                     percent-encoded UTF-8"
                        .into(),
                )
            })
        };
        let user = decode(parsed.username())?;
        let password = decode(parsed.password().unwrap_or(""))?;
        Ok(proxy.basic_auth(&user, &password))
    }

    /// Authenticates to the proxy with HTTP Basic credentials.
    pub fn basic_auth(mut self, user: &str, password: &str) -> Proxy {
        use base64::Engine as _;
        let pair = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        self.authorization = Some(format!("Basic {pair}"));
        self
    }

    /// The proxy's host name or IP address.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The `CONNECT` request that opens a tunnel to `host` on port 443.
    pub(crate) fn connect_request(&self, host: &str) -> String {
        let mut request = format!("CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n");
        if let Some(authorization) = &self.authorization {
            request.push_str(&format!("Proxy-Authorization: {authorization}\r\n"));
        }
        request.push_str("\r\n");
        request
    }
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("host", &self.host)
            .field("port", &self.port)
            .field(
                "authorization",
                &self.authorization.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

/// How an allowed request is delivered.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Route {
    /// Over HTTPS to the named host, as asked.
    Direct,
    /// Over HTTPS to the named host, through this proxy's tunnel.
    Proxied(Arc<Proxy>),
    /// Over plain HTTP to this loopback address (test and demo routing).
    Loopback(SocketAddr),
}

impl EgressPolicy {
    /// A policy allowing no destination at all.
    pub fn deny_all() -> Self {
        EgressPolicy {
            allowed_suffixes: Vec::new(),
            connect_to: HashMap::new(),
            proxy: None,
            bypass_proxy: Vec::new(),
        }
    }

    /// Sends every allowed HTTPS request through `proxy`'s `CONNECT`
    /// tunnel instead of connecting directly. Loopback routes
    /// ([`EgressPolicy::connect_to`]) still go straight to their address.
    pub fn via_proxy(mut self, proxy: Proxy) -> Self {
        self.proxy = Some(Arc::new(proxy));
        self
    }

    /// The proxy requests go through, if any.
    pub fn proxy(&self) -> Option<&Proxy> {
        self.proxy.as_deref()
    }

    /// Reaches `domain` and its subdomains directly even when a proxy is
    /// set, as an entry of `NO_PROXY` does: for a console the platform's
    /// network reaches without its proxy. It changes only the route; the
    /// allow-list and the address checks of a direct connection still
    /// apply.
    pub fn bypass_proxy(mut self, domain: &str) -> Result<Self, PolicyError> {
        let domain = domain_name(domain).ok_or_else(|| {
            PolicyError(format!(
                "{domain:?} is not a domain name to reach without the proxy (expected e.g. \
                 corp.example or s1.corp.example)"
            ))
        })?;
        if !self.bypass_proxy.contains(&domain) {
            self.bypass_proxy.push(domain);
        }
        Ok(self)
    }

    /// Also allows `suffix` and its subdomains (`example.com` allows
    /// `a.example.com` but not `badexample.com`).
    pub fn allow_domain(mut self, suffix: &str) -> Result<Self, PolicyError> {
        let suffix = domain_name(suffix).ok_or_else(|| {
            PolicyError(format!(
                "--allow-domain {:?} is not a domain name (expected e.g. sentinelone.net)",
                suffix.trim()
            ))
        })?;
        if !self.allowed_suffixes.contains(&suffix) {
            self.allowed_suffixes.push(suffix);
        }
        Ok(self)
    }

    /// Sends requests for `host` over plain HTTP to `addr`, like curl's
    /// `--connect-to`. Only loopback addresses are accepted, so this can
    /// never be used to reach another machine without TLS.
    pub fn connect_to(mut self, host: &str, addr: SocketAddr) -> Result<Self, PolicyError> {
        if !addr.ip().is_loopback() {
            return Err(PolicyError(format!(
                "--connect-to may only route to a loopback address (127.0.0.0/8 or ::1), not {}",
                addr.ip()
            )));
        }
        let host = host.trim().trim_end_matches('.').to_ascii_lowercase();
        if host.is_empty() {
            return Err(PolicyError("--connect-to needs HOST=ADDR:PORT".into()));
        }
        self.connect_to.insert(host, addr);
        Ok(self)
    }

    /// Parses a `HOST=ADDR:PORT` argument into [`EgressPolicy::connect_to`].
    pub fn connect_to_arg(self, arg: &str) -> Result<Self, PolicyError> {
        let (host, addr) = arg
            .split_once('=')
            .ok_or_else(|| PolicyError(format!("--connect-to {arg:?}: expected HOST=ADDR:PORT")))?;
        let addr: SocketAddr = addr.parse().map_err(|_| {
            PolicyError(format!(
                "--connect-to {arg:?}: {addr:?} is not an IP address and port, e.g. 127.0.0.1:8080"
            ))
        })?;
        self.connect_to(host, addr)
    }

    /// The allowed domain suffixes.
    pub fn allowed_domains(&self) -> &[String] {
        &self.allowed_suffixes
    }

    /// Decides on a request URI: HTTPS on the default port, to an allowed
    /// domain. Returns how to deliver it, or why it is refused.
    pub fn route(&self, uri: &http::Uri) -> Result<Route, String> {
        self.decide(uri).map(|(_, route)| route)
    }

    /// Like [`EgressPolicy::route`], also returning the host the decision
    /// was made on: lower-cased, without a trailing dot.
    pub(crate) fn decide(&self, uri: &http::Uri) -> Result<(String, Route), String> {
        if uri.scheme() != Some(&http::uri::Scheme::HTTPS) {
            return Err("only https is allowed".into());
        }
        let authority = uri.authority().ok_or("no authority")?;
        if authority.port_u16().is_some_and(|p| p != 443) {
            return Err(format!(
                "port {} is not allowed",
                authority.port_u16().unwrap_or(0)
            ));
        }
        let host = authority.host().trim_end_matches('.').to_ascii_lowercase();
        if !self.allowed_suffixes.iter().any(|s| is_under(&host, s)) {
            return Err(format!("{host} is not under an allowed domain"));
        }
        let bypass = || self.bypass_proxy.iter().any(|d| is_under(&host, d));
        let route = match (self.connect_to.get(&host), &self.proxy) {
            (Some(addr), _) => Route::Loopback(*addr),
            (None, Some(proxy)) if !bypass() => Route::Proxied(proxy.clone()),
            (None, _) => Route::Direct,
        };
        Ok((host, route))
    }
}

/// `name` lower-cased without surrounding dots, if it is a DNS name.
fn domain_name(name: &str) -> Option<String> {
    let name = name
        .trim()
        .trim_start_matches('.')
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let valid = !name.is_empty()
        && name.len() <= 253
        && name
            .split('.')
            .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    valid.then_some(name)
}

/// Whether `host` is `domain` or one of its subdomains (`a.example.com`
/// is under `example.com`; `badexample.com` is not).
fn is_under(host: &str, domain: &str) -> bool {
    host == domain || host.strip_suffix(domain).is_some_and(|h| h.ends_with('.'))
}

/// Everything the embedder sets for one call.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CallPolicy {
    /// Where requests may go.
    pub egress: EgressPolicy,
    /// Upper bound for each of the connect, first-byte and between-bytes
    /// timeouts, whatever the guest asks for.
    pub http_timeout: Duration,
    /// Wall-clock limit for the whole call. An isolate or release asking
    /// to wait longer than [`CallPolicy::longest_wait`] has its wait
    /// shortened to fit, and its outcome says so.
    pub deadline: Duration,
    /// Largest response body delivered to the guest, in bytes.
    pub max_response_bytes: u64,
    /// Largest request body the guest may send, in bytes.
    pub max_request_bytes: u64,
    /// Largest linear memory the guest may grow to, in bytes.
    pub max_memory_bytes: usize,
    /// Time the guest may spend running, in wasm or in host calls that do
    /// not wait, checked every 10 ms. Waiting on I/O or a timer costs
    /// nothing, however often the guest waits, and neither does time the
    /// operating system gives other threads while a guest computes.
    pub cpu_budget: Duration,
    /// Outgoing requests one call may send; later ones are refused and the
    /// call fails with `HostError::TooManyRequests`.
    pub max_requests: u32,
    /// `wasi:http` requests, header maps, streams and other resources the
    /// guest may hold at once. Each lives in host memory, which
    /// `max_memory_bytes` does not see; going over fails the call with
    /// `HostError::HostResources`. The connector's end-to-end tests all pass
    /// with 10. Default 1,000 (wasmtime's is 100,000).
    pub max_live_handles: usize,
    /// Bytes one header map built by the guest may take, by
    /// wasmtime-wasi-http's in-memory measure; with `max_live_handles` this
    /// bounds the host memory header maps can hold (32 MiB by default).
    /// Default 32 KiB: room for an 8 KiB token in `Authorization` and the
    /// rest of a request's headers (wasmtime-wasi-http's is 128 KiB).
    pub max_header_map_bytes: usize,
    /// Random bytes one `wasi:random` call may ask for. The host allocates
    /// them before the guest's memory cap could refuse them. Default 64 KiB
    /// (wasmtime-wasi's is 64 MiB); seeds and nonces need a few dozen.
    pub max_random_bytes: u64,
    /// How long a call waits, in all, for its tenant's turn and a free
    /// slot before failing with `HostError::TenantLimit` or
    /// `HostError::QueueTimeout`.
    pub queue_timeout: Duration,
    /// The tenant the call runs for: named in tracing spans and logs, and
    /// the key of `RuntimeConfig::max_concurrent_calls_per_tenant`.
    /// Default `-`, which every unlabelled call shares.
    pub tenant: String,
    /// How fast the tenant's requests may go to one console host, across
    /// all of its calls in this runtime (and in versions loaded with
    /// `Runtime::load_version`). A request waits in the host for its turn
    /// (the wait counts against `deadline`, not the HTTP timeouts); one
    /// whose turn would come after the call's deadline is not sent, and the
    /// connector reports `rate-limited`. Set it below the console's own
    /// limit for the token, so that a burst of a tenant's calls is spread
    /// out instead of answered with HTTP 429. Default none: no pacing.
    /// Requests under one of `path_rates` are paced by that rate instead.
    pub request_rate: Option<RequestRate>,
    /// Rates for the paths under given prefixes, each paced on its own
    /// (per tenant and console host), as a console limits each part of its
    /// API: a request goes by the longest prefix it is under, and by
    /// `request_rate` when it is under none. [`PathRate::sentinelone`]
    /// gives SentinelOne's published rates. Default none.
    pub path_rates: Vec<PathRate>,
}

impl Default for CallPolicy {
    fn default() -> Self {
        CallPolicy {
            egress: EgressPolicy::default(),
            http_timeout: Duration::from_secs(30),
            deadline: Duration::from_secs(120),
            max_response_bytes: 8 * 1024 * 1024,
            max_request_bytes: 1024 * 1024,
            max_memory_bytes: 64 * 1024 * 1024,
            cpu_budget: Duration::from_secs(10),
            max_requests: 100,
            max_live_handles: 1_000,
            max_header_map_bytes: 32 * 1024,
            max_random_bytes: 64 * 1024,
            queue_timeout: Duration::from_secs(30),
            tenant: "-".into(),
            request_rate: None,
            path_rates: Vec::new(),
        }
    }
}

impl CallPolicy {
    /// The default policy with `egress`.
    pub fn with_egress(egress: EgressPolicy) -> Self {
        CallPolicy {
            egress,
            ..CallPolicy::default()
        }
    }

    /// Sets the per-request HTTP timeout clamp.
    pub fn http_timeout(mut self, timeout: Duration) -> Self {
        self.http_timeout = timeout;
        self
    }

    /// Sets the whole-call deadline.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// Checks that a call under this policy could succeed at all: the
    /// HTTP timeout, deadline and CPU budget must be above zero. A zero
    /// timeout would otherwise fail every request as if the console had
    /// not answered, and send the admin looking in the wrong place. A
    /// `request_rate` of zero requests would refuse every request. Calls
    /// check this before they run; an embedder can also check a tenant's
    /// policy when it is saved.
    pub fn check(&self) -> Result<(), PolicyError> {
        let zero = [
            (
                "http_timeout",
                self.http_timeout,
                "no request could complete",
            ),
            ("deadline", self.deadline, "no call could complete"),
            ("cpu_budget", self.cpu_budget, "the connector could not run"),
        ];
        if let Some((name, _, effect)) = zero.iter().find(|(_, value, _)| value.is_zero()) {
            return Err(PolicyError(format!(
                "{name} is zero, so {effect}; set it above zero"
            )));
        }
        let never = |rate: &RequestRate| rate.per_second == 0 || rate.burst == 0;
        if let Some(rate) = self.request_rate.filter(never) {
            return Err(PolicyError(format!(
                "request_rate allows {} requests per second in bursts of {}, so no request \
                 could be sent; set both above zero",
                rate.per_second, rate.burst
            )));
        }
        for PathRate { prefix, rate } in &self.path_rates {
            if !prefix.starts_with('/') {
                return Err(PolicyError(format!(
                    "the path rate for {prefix:?} would cover no request: a path prefix starts \
                     with '/', e.g. /web/api/v2.1/agents"
                )));
            }
            if never(rate) {
                return Err(PolicyError(format!(
                    "the path rate for {prefix} allows {} requests per second in bursts of {}, \
                     so no request under it could be sent; set both above zero",
                    rate.per_second, rate.burst
                )));
            }
        }
        Ok(())
    }

    /// The rate that paces a request for `path` (with its query), and the
    /// prefix it is paced under (empty for `request_rate`); `None` when
    /// the request is not paced.
    pub(crate) fn rate_for(&self, path: &str) -> Option<(&str, RequestRate)> {
        let by_path = self
            .path_rates
            .iter()
            .filter(|r| r.covers(path))
            .max_by_key(|r| r.prefix.len());
        match by_path {
            Some(r) => Some((r.prefix.as_str(), r.rate)),
            None => self.request_rate.map(|rate| ("", rate)),
        }
    }

    /// The longest `wait-seconds` an isolate or release may use under this
    /// policy: the deadline less what the rest of the call may need (half
    /// the deadline, at most a minute). Killing the call at its deadline
    /// would lose the outcome of an action the console already accepted,
    /// so the wait gives way instead.
    pub fn longest_wait(&self) -> Duration {
        let reserve = (self.deadline / 2).min(Duration::from_secs(60));
        self.deadline - reserve
    }

    /// Names the tenant the call runs for.
    pub fn tenant(mut self, tenant: &str) -> Self {
        self.tenant = tenant.to_owned();
        self
    }

    /// Paces the tenant's requests to each console host (see
    /// [`CallPolicy::request_rate`]).
    pub fn request_rate(mut self, rate: RequestRate) -> Self {
        self.request_rate = Some(rate);
        self
    }

    /// Adds rates for the paths under given prefixes (see
    /// [`CallPolicy::path_rates`]), e.g. [`PathRate::sentinelone`].
    pub fn path_rates(mut self, rates: impl IntoIterator<Item = PathRate>) -> Self {
        self.path_rates.extend(rates);
        self
    }

    /// Sets how long a call may wait for a free slot.
    pub fn queue_timeout(mut self, timeout: Duration) -> Self {
        self.queue_timeout = timeout;
        self
    }

    /// Sets the CPU budget.
    pub fn cpu_budget(mut self, budget: Duration) -> Self {
        self.cpu_budget = budget;
        self
    }

    /// Sets the per-call request cap.
    pub fn max_requests(mut self, requests: u32) -> Self {
        self.max_requests = requests;
        self
    }

    /// Sets the memory cap.
    pub fn max_memory_bytes(mut self, bytes: usize) -> Self {
        self.max_memory_bytes = bytes;
        self
    }

    /// Sets the response body cap.
    pub fn max_response_bytes(mut self, bytes: u64) -> Self {
        self.max_response_bytes = bytes;
        self
    }

    /// Sets the request body cap.
    pub fn max_request_bytes(mut self, bytes: u64) -> Self {
        self.max_request_bytes = bytes;
        self
    }

    /// Sets how many host resources the guest may hold at once.
    pub fn max_live_handles(mut self, handles: usize) -> Self {
        self.max_live_handles = handles;
        self
    }

    /// Sets the size cap of one header map the guest builds.
    pub fn max_header_map_bytes(mut self, bytes: usize) -> Self {
        self.max_header_map_bytes = bytes;
        self
    }

    /// Sets how many random bytes one `wasi:random` call may ask for.
    pub fn max_random_bytes(mut self, bytes: u64) -> Self {
        self.max_random_bytes = bytes;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(s: &str) -> http::Uri {
        s.parse().unwrap()
    }

    #[test]
    fn a_request_goes_by_the_longest_path_prefix_it_is_under() {
        let every = |n| RequestRate::new(n, 1);
        let policy = CallPolicy::default()
            .request_rate(every(7))
            .path_rates(PathRate::sentinelone())
            .path_rates([PathRate::new("/web/api/v2.1/agents/actions", every(1))]);
        let rate_for = |path| {
            policy
                .rate_for(path)
                .map(|(p, r)| (p.to_owned(), r.per_second))
        };
        let agents = "/web/api/v2.1/agents";
        for (path, prefix, per_second) in [
            ("/web/api/v2.1/agents?ids=1", agents, 25),
            ("/web/api/v2.1/agents", agents, 25),
            (
                "/web/api/v2.1/agents/actions/disconnect",
                "/web/api/v2.1/agents/actions",
                1,
            ),
            ("/web/api/v2.1/user", "/web/api/v2.1/user", 2),
            (
                "/web/api/v2.1/users/api-token-details",
                "/web/api/v2.1/users",
                40,
            ),
            ("/web/api/v2.1/threats?limit=1", "/web/api/v2.1/threats", 10),
            // Not under a prefix, only beside one: the default rate.
            ("/web/api/v2.1/agents-summary", "", 7),
            ("/web/api/v2.1/system/status", "", 7),
        ] {
            assert_eq!(
                rate_for(path),
                Some((prefix.to_owned(), per_second)),
                "{path}"
            );
        }
        let unpaced = CallPolicy::default().path_rates(PathRate::sentinelone());
        assert_eq!(unpaced.rate_for("/web/api/v2.1/system/status"), None);
    }

    #[test]
    fn an_unusable_path_rate_is_refused_with_what_to_set() {
        let refused = |rate: PathRate| {
            CallPolicy::default()
                .path_rates([rate])
                .check()
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            refused(PathRate::new("web/api/v2.1/agents", RequestRate::new(5, 1))),
            "the path rate for \"web/api/v2.1/agents\" would cover no request: a path prefix \
             starts with '/', e.g. /web/api/v2.1/agents"
        );
        assert_eq!(
            refused(PathRate::new(
                "/web/api/v2.1/agents",
                RequestRate::new(5, 0)
            )),
            "the path rate for /web/api/v2.1/agents allows 5 requests per second in bursts of 0, \
             so no request under it could be sent; set both above zero"
        );
        let usable = CallPolicy::default().path_rates(PathRate::sentinelone());
        assert_eq!(usable.check(), Ok(()));
    }

    #[test]
    fn routes_only_https_to_allowed_suffixes() {
        let p = EgressPolicy::default();
        assert_eq!(
            p.route(&uri("https://u1.sentinelone.net/x")),
            Ok(Route::Direct)
        );
        assert_eq!(
            p.route(&uri("https://U1.SentinelOne.NET:443/x")),
            Ok(Route::Direct)
        );
        for bad in [
            "http://u1.sentinelone.net/x",
            "https://u1.sentinelone.net:8443/x",
            "https://evilsentinelone.net/x",
            "https://sentinelone.net.evil.com/x",
            "https://127.0.0.1/x",
            "https://example.com/x",
        ] {
            assert!(p.route(&uri(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_proxy_address_is_read_as_https_proxy_is_written() {
        let p = Proxy::parse("http://proxy.corp.example:3128").unwrap();
        assert_eq!((p.host(), p.port()), ("proxy.corp.example", 3128));
        assert_eq!(
            p.connect_request("u1.sentinelone.net"),
            "CONNECT u1.sentinelone.net:443 HTTP/1.1\r\nHost: u1.sentinelone.net:443\r\n\r\n"
        );
        assert_eq!(Proxy::parse(" http://[::1]/ ").unwrap().host(), "::1");
        assert_eq!(Proxy::parse("http://10.0.0.8").unwrap().port(), 80);
        let with_user = Proxy::parse("http://soar:p%40ss%3Aword@10.0.0.8:8080").unwrap();
        assert_eq!(
            with_user,
            Proxy::parse("http://10.0.0.8:8080")
                .unwrap()
                .basic_auth("soar", "p@ss:word")
        );
        // The password never shows, in a debug print or an error.
        assert!(!format!("{with_user:?}").contains("cEBzczp3b3Jk"));
        assert!(format!("{with_user:?}").contains("[redacted]"));
        // Without a scheme, http:// is meant, as curl reads it.
        let bare = Proxy::parse("soar:pw@proxy.corp:3128").unwrap();
        assert_eq!((bare.host(), bare.port()), ("proxy.corp", 3128));
        assert_eq!(
            bare,
            Proxy::parse("http://proxy.corp:3128")
                .unwrap()
                .basic_auth("soar", "pw")
        );
        for bad in [
            "proxy.corp:3128/path",
            "https://proxy.corp:3128",
            "socks5://proxy.corp:1080",
            "http://proxy.corp:3128/path",
            "http://user:s3cret%ff@proxy.corp:3128",
            "http://user:s3cret@proxy.corp:3128?x=1",
        ] {
            let err = Proxy::parse(bad).unwrap_err().to_string();
            assert!(
                err.starts_with("the proxy address is unusable"),
                "{bad}: {err}"
            );
            assert!(!err.contains("s3cret"), "{bad}: {err}");
        }
    }

    #[test]
    fn a_proxied_policy_tunnels_all_but_loopback_routes() {
        let proxy = Proxy::parse("http://10.0.0.8:3128").unwrap();
        let p = EgressPolicy::default()
            .via_proxy(proxy.clone())
            .connect_to_arg("demo.sentinelone.net=127.0.0.1:9000")
            .unwrap();
        assert_eq!(
            p.route(&uri("https://u1.sentinelone.net/web/api/v2.1/agents")),
            Ok(Route::Proxied(Arc::new(proxy)))
        );
        assert!(matches!(
            p.route(&uri("https://demo.sentinelone.net/")),
            Ok(Route::Loopback(_))
        ));
        assert!(p.route(&uri("https://evil.example.com/")).is_err());
    }

    #[test]
    fn bypassed_domains_go_direct_and_stay_under_the_allow_list() {
        let proxy = Proxy::parse("http://10.0.0.8:3128").unwrap();
        let p = EgressPolicy::default()
            .allow_domain("corp.example")
            .unwrap()
            .via_proxy(proxy.clone())
            .bypass_proxy(".Corp.Example.")
            .unwrap()
            .bypass_proxy("intranet.test")
            .unwrap();
        for direct in ["https://corp.example/", "https://s1.corp.example/x"] {
            assert_eq!(p.route(&uri(direct)), Ok(Route::Direct), "{direct}");
        }
        for proxied in [
            "https://u1.sentinelone.net/",
            "https://badcorp.example.sentinelone.net/",
        ] {
            assert_eq!(
                p.route(&uri(proxied)),
                Ok(Route::Proxied(Arc::new(proxy.clone()))),
                "{proxied}"
            );
        }
        // Bypassing the proxy allows nothing new.
        assert!(p.route(&uri("https://a.intranet.test/")).is_err());
        assert!(p.route(&uri("https://badcorp.example/")).is_err());
        for bad in ["", ".", "10.0.0.0/8", "a b", "host:443"] {
            let err = EgressPolicy::default().bypass_proxy(bad).unwrap_err();
            assert!(err.to_string().contains("is not a domain name"), "{bad}");
        }
    }

    #[test]
    fn connect_to_is_loopback_only() {
        let p = EgressPolicy::default()
            .connect_to_arg("demo.sentinelone.net=127.0.0.1:9000")
            .unwrap();
        assert_eq!(
            p.route(&uri("https://demo.sentinelone.net/x")),
            Ok(Route::Loopback("127.0.0.1:9000".parse().unwrap()))
        );
        assert!(
            EgressPolicy::default()
                .connect_to_arg("a=10.0.0.1:80")
                .is_err()
        );
        assert!(
            EgressPolicy::default()
                .connect_to_arg("a=169.254.169.254:80")
                .is_err()
        );
        assert!(
            EgressPolicy::default()
                .connect_to_arg("a=localhost:80")
                .is_err()
        );
        assert!(EgressPolicy::default().connect_to_arg("a").is_err());
        assert!(EgressPolicy::default().connect_to_arg("a=[::1]:80").is_ok());
    }

    #[test]
    fn the_longest_wait_leaves_room_for_the_rest_of_the_call() {
        let wait = |secs| {
            CallPolicy::default()
                .deadline(Duration::from_secs(secs))
                .longest_wait()
                .as_secs()
        };
        assert_eq!(wait(120), 60);
        assert_eq!(wait(420), 360);
        assert_eq!(wait(30), 15);
        assert_eq!(wait(0), 0);
        let forever = CallPolicy::default().deadline(Duration::MAX);
        assert!(forever.longest_wait() > Duration::from_secs(300));
    }

    #[test]
    fn routing_does_not_bypass_the_allow_list() {
        let p = EgressPolicy::default()
            .connect_to_arg("evil.com=127.0.0.1:1")
            .unwrap();
        assert!(p.route(&uri("https://evil.com/")).is_err());
    }

    #[test]
    fn allow_domain_validates() {
        let p = EgressPolicy::deny_all()
            .allow_domain(".Example.COM.")
            .unwrap();
        assert_eq!(p.allowed_domains(), ["example.com"]);
        assert!(p.route(&uri("https://a.example.com/")).is_ok());
        assert!(EgressPolicy::default().allow_domain("").is_err());
        assert!(EgressPolicy::default().allow_domain("a b").is_err());
        assert!(EgressPolicy::default().allow_domain("*.x").is_err());
    }
}
