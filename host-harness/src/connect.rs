//! Sending a request to a vetted address: resolve the name, refuse
//! addresses a connector must never reach, then connect to the address that
//! passed, verifying TLS against the name. Connecting to the checked address
//! (rather than resolving again) means DNS rebinding cannot slip a private
//! address in between the check and the connection. Behind a proxy
//! ([`crate::Proxy`]) the proxy resolves the name, and TLS runs through its
//! `CONNECT` tunnel, still verified against the name.
//!
//! This is `wasmtime_wasi_http::default_send_request` with the connect step
//! replaced and keep-alive added (see [`crate::pool`]); its timeouts mean
//! the same. A reused connection was vetted when it was opened.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep, sleep, timeout, timeout_at};
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody};

use crate::address::is_forbidden;
use crate::limits::instant_after;
use crate::policy::{Proxy, Route};
use crate::pool::{PoolKey, Pools};

type IoFuture = Box<dyn Future<Output = Result<(), HttpError>> + Send>;

/// A request's connect timeout, shared by every step of opening its
/// connection (lookup, TCP, a proxy's tunnel, TLS, the HTTP handshake):
/// each step gets what the steps before it left, so together they never
/// outlast the timeout, however slowly each one goes.
#[derive(Clone, Copy, Debug)]
struct ConnectBudget {
    /// The whole timeout, for messages.
    limit: Duration,
    deadline: Instant,
}

impl ConnectBudget {
    fn starting_now(limit: Duration) -> ConnectBudget {
        ConnectBudget {
            limit,
            deadline: instant_after(limit),
        }
    }

    /// `step`, or `None` if the budget runs out first.
    async fn within<F: Future>(&self, step: F) -> Option<F::Output> {
        timeout_at(self.deadline, step).await.ok()
    }
}

/// The first address of `host:port` a connector may reach, looked up
/// within the connect budget.
async fn resolve(host: &str, port: u16, budget: ConnectBudget) -> Result<SocketAddr, HttpError> {
    let found: Vec<SocketAddr> = lookup_within(budget, tokio::net::lookup_host((host, port)))
        .await?
        .collect();
    if found.is_empty() {
        return Err(HttpError::DnsError {
            rcode: Some("no addresses".into()),
            info_code: None,
        });
    }
    found
        .into_iter()
        .find(|a| !is_forbidden(a.ip()))
        .ok_or(HttpError::DestinationIpProhibited)
}

/// `lookup`, given up when the budget runs out: a lookup against an
/// unresponsive name server would otherwise outlast the connect timeout by
/// up to half a minute (by default glibc tries each of up to three servers
/// twice, 5 s apiece).
async fn lookup_within<A>(
    budget: ConnectBudget,
    lookup: impl Future<Output = std::io::Result<A>>,
) -> Result<A, HttpError> {
    budget
        .within(lookup)
        .await
        .ok_or(HttpError::DnsTimeout)?
        .map_err(|e| HttpError::DnsError {
            rcode: Some(e.to_string()),
            info_code: None,
        })
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// The request's timeouts, which the hook has always set.
struct Timeouts {
    connect: Duration,
    first_byte: Duration,
    between_bytes: Duration,
}

impl From<RequestOptions> for Timeouts {
    fn from(options: RequestOptions) -> Timeouts {
        let limit = |d: Option<Duration>| d.unwrap_or(Duration::from_secs(30));
        Timeouts {
            connect: limit(options.connect_timeout),
            first_byte: limit(options.first_byte_timeout),
            between_bytes: limit(options.between_bytes_timeout),
        }
    }
}

/// Sends `request` to the destination `key` names, on an idle connection of
/// the same tenant when one is ready, otherwise on a new one. A request that
/// an idle connection could not take (the server closed it first) goes out
/// on a new connection; one that was written is never sent twice.
pub(crate) async fn send(
    pools: &Arc<Pools>,
    key: PoolKey,
    request: http::Request<WasiBody>,
    options: RequestOptions,
) -> Result<(http::Response<WasiBody>, IoFuture), HttpError> {
    let timeouts = Timeouts::from(options);
    let mut request = origin_form(request)?;
    // An idle connection is ready as soon as hyper has noted the end of its
    // previous response, which the guest has already read.
    let budget = ConnectBudget::starting_now(timeouts.connect);
    let idle = match pools.take(&key) {
        Some(mut sender) => match budget.within(sender.ready()).await {
            Some(Ok(())) => Some(sender),
            _ => None,
        },
        None => None,
    };
    if let Some(mut sender) = idle {
        match timeout(timeouts.first_byte, sender.try_send_request(request)).await {
            Err(_) => return Err(HttpError::ConnectionReadTimeout),
            Ok(Ok(response)) => return Ok(respond(pools, key, sender, response, &timeouts)),
            Ok(Err(mut refused)) => match refused.take_message() {
                Some(unsent) => request = unsent,
                None => return Err(send_error(refused.into_error())),
            },
        }
    }
    let mut sender = connect(&key, pools.tls(), budget).await?;
    let response = timeout(timeouts.first_byte, sender.send_request(request))
        .await
        .map_err(|_| HttpError::ConnectionReadTimeout)?
        .map_err(send_error)?;
    Ok(respond(pools, key, sender, response, &timeouts))
}

/// hyper wraps an error of the request body (the cap on its size) as its
/// own; unwrap it so the guest and the audit see what happened.
fn send_error(error: hyper::Error) -> HttpError {
    use std::error::Error as _;
    match error.source().and_then(|e| e.downcast_ref::<HttpError>()) {
        Some(HttpError::HttpRequestBodySize(cap)) => HttpError::HttpRequestBodySize(*cap),
        _ => HttpError::from(error),
    }
}

/// The request line carries only the path; the Host header names the host.
fn origin_form(mut request: http::Request<WasiBody>) -> Result<http::Request<WasiBody>, HttpError> {
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    *request.uri_mut() = http::Uri::builder()
        .path_and_query(path)
        .build()
        .map_err(|_| HttpError::HttpRequestUriInvalid)?;
    Ok(request)
}

/// Opens a new HTTP/1.1 connection to `key`'s destination: resolving and
/// vetting the name first (or through the proxy's tunnel), then TLS
/// verified against the name, unless the key is an explicit loopback test
/// route. Every step shares `budget`.
async fn connect(
    key: &PoolKey,
    tls: &tokio_rustls::TlsConnector,
    budget: ConnectBudget,
) -> Result<SendRequest<WasiBody>, HttpError> {
    let tcp = match key.route() {
        Route::Loopback(addr) => tcp_connect(*addr, budget).await?,
        Route::Direct => tcp_connect(resolve(key.host(), 443, budget).await?, budget).await?,
        Route::Proxied(proxy) => tunnel(proxy, key.host(), budget).await?,
    };
    let stream: Box<dyn Io> = match key.route() {
        Route::Direct | Route::Proxied(_) => {
            let server = rustls::pki_types::ServerName::try_from(key.host().to_owned())?;
            let tls = budget
                .within(tls.connect(server, tcp))
                .await
                .ok_or(HttpError::ConnectionTimeout)?
                .map_err(HttpError::Tls)?;
            Box::new(tls)
        }
        Route::Loopback(_) => Box::new(tcp),
    };
    let handshake = hyper::client::conn::http1::handshake(TokioIo::new(stream));
    let (sender, conn) = budget
        .within(handshake)
        .await
        .ok_or(HttpError::ConnectionTimeout)??;
    // The connection lives as long as someone holds its sender: the call
    // that opened it, then the pool.
    tokio::spawn(conn);
    Ok(sender)
}

async fn tcp_connect(addr: SocketAddr, budget: ConnectBudget) -> Result<TcpStream, HttpError> {
    let tcp = budget
        .within(TcpStream::connect(addr))
        .await
        .ok_or(HttpError::ConnectionTimeout)?
        .map_err(HttpError::Connect)?;
    // Requests are small and written whole; waiting to coalesce them only
    // adds latency.
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

/// The longest answer to `CONNECT` read before giving up on the proxy.
const MAX_TUNNEL_HEAD: usize = 8 * 1024;

/// A `CONNECT` tunnel to `host` on port 443 through `proxy`, opened within
/// `budget`. The proxy's address is the embedder's choice, so it is not
/// vetted like a destination's. Any failure is the proxy's, and says so.
async fn tunnel(proxy: &Proxy, host: &str, budget: ConnectBudget) -> Result<TcpStream, HttpError> {
    open_tunnel(proxy, host, budget).await.map_err(|why| {
        let (name, port) = (proxy.host(), proxy.port());
        let failed = ProxyFailed(format!("the proxy {name}:{port} {why}"));
        HttpError::Connect(std::io::Error::other(failed))
    })
}

/// [`tunnel`], failing with what went wrong, worded after "the proxy".
async fn open_tunnel(
    proxy: &Proxy,
    host: &str,
    budget: ConnectBudget,
) -> Result<TcpStream, String> {
    let limit = budget.limit;
    let lookup = tokio::net::lookup_host((proxy.host(), proxy.port()));
    let addr = match lookup_within(budget, lookup).await {
        Ok(mut found) => found.next().ok_or("has no addresses")?,
        Err(HttpError::DnsTimeout) => {
            return Err(format!("could not be looked up within {limit:?}"));
        }
        Err(e) => return Err(format!("could not be looked up: {}", cause(e))),
    };
    let mut tcp = match tcp_connect(addr, budget).await {
        Ok(tcp) => tcp,
        Err(HttpError::ConnectionTimeout) => {
            return Err(format!("did not accept a connection within {limit:?}"));
        }
        Err(e) => return Err(format!("could not be reached: {}", cause(e))),
    };
    let exchange = async {
        tcp.write_all(proxy.connect_request(host).as_bytes())
            .await
            .map_err(|e| format!("closed the connection: {e}"))?;
        read_tunnel_answer(&mut tcp, host).await
    };
    match budget.within(exchange).await {
        None => Err(format!(
            "did not answer the tunnel request within {limit:?}"
        )),
        Some(Err(why)) => Err(why),
        Some(Ok(())) => Ok(tcp),
    }
}

/// What a failed lookup or TCP connect says, without the "connection
/// error:" or "DNS error:" its own wording adds: the proxy's message says
/// that already.
fn cause(error: HttpError) -> String {
    match error {
        HttpError::Connect(io) => io.to_string(),
        HttpError::DnsError {
            rcode: Some(why), ..
        } => why,
        other => other.to_string(),
    }
}

/// A proxy's failure to open a tunnel, told apart from other connection
/// failures so the guest can be told the proxy is at fault (see
/// [`crate::hooks`]).
#[derive(Debug)]
pub(crate) struct ProxyFailed(String);

impl std::fmt::Display for ProxyFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ProxyFailed {}

/// Reads the proxy's answer to `CONNECT` up to its blank line, one byte at a
/// time so that nothing of the tunnel is consumed.
async fn read_tunnel_answer(tcp: &mut TcpStream, host: &str) -> Result<(), String> {
    let mut head = Vec::with_capacity(256);
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() == MAX_TUNNEL_HEAD {
            return Err(format!("sent an answer over {MAX_TUNNEL_HEAD} bytes"));
        }
        let byte = tcp.read_u8().await;
        head.push(byte.map_err(|e| format!("closed the connection: {e}"))?);
    }
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let line: String = String::from_utf8_lossy(line)
        .chars()
        .filter(|c| !c.is_control())
        .take(120)
        .collect();
    let mut parts = line.split(' ');
    let version_ok = parts.next().is_some_and(|v| v.starts_with("HTTP/1."));
    let status = parts.next().and_then(|s| s.parse::<u16>().ok());
    match (version_ok, status) {
        (true, Some(200..=299)) => Ok(()),
        _ => Err(format!("refused the tunnel to {host}: {line:?}")),
    }
}

/// Wraps the body in the between-bytes timeout; the connection goes back to
/// the pool when the body has been read to the end.
fn respond(
    pools: &Arc<Pools>,
    key: PoolKey,
    sender: SendRequest<WasiBody>,
    response: http::Response<hyper::body::Incoming>,
    timeouts: &Timeouts,
) -> (http::Response<WasiBody>, IoFuture) {
    let limit = timeouts.between_bytes;
    let mut reuse = Some((pools.clone(), key, sender));
    if response.body().is_end_stream() {
        release(&mut reuse);
    }
    let response =
        response.map(|incoming| BetweenBytes::new(incoming, limit, reuse).boxed_unsync());
    (response, Box::new(async { Ok(()) }) as IoFuture)
}

/// A connection waiting for its response to be read to the end.
type Reuse = Option<(Arc<Pools>, PoolKey, SendRequest<WasiBody>)>;

fn release(reuse: &mut Reuse) {
    if let Some((pools, key, sender)) = reuse.take() {
        pools.put(key, sender);
    }
}

/// A response body that fails when no bytes arrive for `limit`.
struct BetweenBytes {
    inner: hyper::body::Incoming,
    limit: Duration,
    /// Armed only while the body is waiting for bytes. Re-arming a tokio
    /// timer for every frame that is already there costs a timer-wheel
    /// insert and, on a multi-threaded runtime whose time driver is asleep,
    /// a wake-up of that thread; a whole agent list usually arrives at once.
    timer: Option<Pin<Box<Sleep>>>,
    /// Whether `timer` counts the current wait; false again after a frame.
    waiting: bool,
    /// Returned to the pool at the end of the body; dropped (closing the
    /// connection) if the body is abandoned or fails.
    reuse: Reuse,
}

impl BetweenBytes {
    fn new(inner: hyper::body::Incoming, limit: Duration, reuse: Reuse) -> BetweenBytes {
        BetweenBytes {
            inner,
            limit,
            timer: None,
            waiting: false,
            reuse,
        }
    }

    /// The timer for the wait that starts or goes on now.
    fn wait(&mut self) -> Pin<&mut Sleep> {
        let starts = !std::mem::replace(&mut self.waiting, true);
        let limit = self.limit;
        let timer = self.timer.get_or_insert_with(|| Box::pin(sleep(limit)));
        if starts {
            timer.as_mut().reset(instant_after(limit));
        }
        timer.as_mut()
    }
}

impl Body for BetweenBytes {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.waiting = false;
                match &frame {
                    None => release(&mut this.reuse),
                    Some(Ok(_)) if this.inner.is_end_stream() => release(&mut this.reuse),
                    Some(Ok(_)) => {}
                    Some(Err(_)) => this.reuse = None,
                }
                Poll::Ready(frame.map(|f| f.map_err(HttpError::from)))
            }
            Poll::Pending => {
                ready!(this.wait().poll(cx));
                Poll::Ready(Some(Err(HttpError::ConnectionReadTimeout)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(millis: u64) -> ConnectBudget {
        ConnectBudget::starting_now(Duration::from_millis(millis))
    }

    /// A test server's first connection, and the request head read from it.
    async fn accept_head(listener: tokio::net::TcpListener) -> (TcpStream, Vec<u8>) {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            head.push(socket.read_u8().await.unwrap());
        }
        (socket, head)
    }

    /// Serves one response on loopback that declares 20 body bytes, sends
    /// 10 at once, then the rest one every `gap` (or never), and returns
    /// its body wrapped as the connector's responses are.
    async fn body_from_server(gap: Option<Duration>, limit: Duration) -> BetweenBytes {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = accept_head(listener).await;
            let start = b"HTTP/1.1 200 OK\r\ncontent-length: 20\r\n\r\n0123456789";
            socket.write_all(start).await.unwrap();
            match gap {
                Some(gap) => {
                    for byte in b"abcdefghij" {
                        tokio::time::sleep(gap).await;
                        socket.write_all(&[*byte]).await.unwrap();
                    }
                }
                None => std::future::pending().await,
            }
        });
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake::<
            _,
            http_body_util::Empty<Bytes>,
        >(TokioIo::new(tcp))
        .await
        .unwrap();
        tokio::spawn(conn);
        let request = http::Request::get("/")
            .header("host", "test")
            .body(Default::default())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        BetweenBytes::new(response.into_body(), limit, None)
    }

    #[tokio::test]
    async fn a_body_that_stops_midway_times_out() {
        let limit = Duration::from_millis(200);
        let mut body = body_from_server(None, limit).await;
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&first[..], b"0123456789");
        let waited = std::time::Instant::now();
        let next = timeout(limit * 10, body.frame()).await;
        assert!(matches!(
            next.expect("the body never timed out"),
            Some(Err(HttpError::ConnectionReadTimeout))
        ));
        let waited = waited.elapsed();
        assert!(waited >= limit && waited < limit * 10, "{waited:?}");
    }

    #[tokio::test]
    async fn a_slow_but_steady_body_is_read_whole() {
        // Ten gaps of 60 ms: the body takes longer than the limit in all,
        // but no single wait does.
        let limit = Duration::from_millis(250);
        let body = body_from_server(Some(Duration::from_millis(60)), limit).await;
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"0123456789abcdefghij");
    }

    #[tokio::test]
    async fn a_timeout_of_the_largest_duration_means_none() {
        let body = body_from_server(Some(Duration::from_millis(5)), Duration::MAX).await;
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"0123456789abcdefghij");
    }

    /// A proxy on loopback that reads one request head, answers `answer`
    /// (then echoes what the tunnel carries), and hands back the head.
    async fn proxy_answering(
        answer: &'static [u8],
    ) -> (Proxy, tokio::sync::oneshot::Receiver<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (mut socket, head) = accept_head(listener).await;
            let _ = tx.send(String::from_utf8(head).unwrap());
            socket.write_all(answer).await.unwrap();
            let mut echo = [0u8; 4];
            if socket.read_exact(&mut echo).await.is_ok() {
                socket.write_all(&echo).await.unwrap();
            }
            std::future::pending::<()>().await;
        });
        (
            Proxy::parse(&format!("http://127.0.0.1:{port}")).unwrap(),
            rx,
        )
    }

    #[tokio::test]
    async fn a_tunnel_is_asked_for_the_destination_and_carries_bytes_untouched() {
        let (proxy, head) = proxy_answering(b"HTTP/1.1 200 Connection established\r\n\r\n").await;
        let proxy = proxy.basic_auth("soar", "pa:ss");
        let mut tcp = tunnel(&proxy, "u1.sentinelone.net", budget(5_000))
            .await
            .unwrap();
        assert_eq!(
            head.await.unwrap(),
            "CONNECT u1.sentinelone.net:443 HTTP/1.1\r\nHost: u1.sentinelone.net:443\r\n\
             Proxy-Authorization: Basic c29hcjpwYTpzcw==\r\n\r\n"
        );
        tcp.write_all(b"ping").await.unwrap();
        let mut echo = [0u8; 4];
        tcp.read_exact(&mut echo).await.unwrap();
        assert_eq!(&echo, b"ping");
    }

    #[tokio::test]
    async fn a_refused_tunnel_says_what_the_proxy_answered() {
        let answer =
            b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\n\r\n";
        let (proxy, _) = proxy_answering(answer).await;
        let err = tunnel(&proxy, "u1.sentinelone.net", budget(5_000))
            .await
            .unwrap_err();
        let port = proxy.port();
        assert_eq!(
            err.to_string(),
            format!(
                "connection error: the proxy 127.0.0.1:{port} refused the tunnel to \
                 u1.sentinelone.net: \"HTTP/1.1 407 Proxy Authentication Required\""
            )
        );
    }

    #[tokio::test]
    async fn an_endless_or_missing_proxy_answer_is_given_up() {
        let endless: &'static [u8] = Box::leak(vec![b'x'; 3 * MAX_TUNNEL_HEAD].into_boxed_slice());
        let (proxy, _) = proxy_answering(endless).await;
        let err = tunnel(&proxy, "u1.sentinelone.net", budget(5_000))
            .await
            .unwrap_err();
        assert!(
            err.to_string().ends_with("sent an answer over 8192 bytes"),
            "{err}"
        );

        let (silent, _) = proxy_answering(b"").await;
        let err = tunnel(&silent, "u1.sentinelone.net", budget(100))
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .ends_with("did not answer the tunnel request within 100ms"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn an_unreachable_proxy_is_named_as_the_failure() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let proxy = Proxy::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        let err = tunnel(&proxy, "u1.sentinelone.net", budget(5_000))
            .await
            .unwrap_err();
        let text = err.to_string();
        let expected =
            format!("connection error: the proxy 127.0.0.1:{port} could not be reached: ");
        assert!(text.starts_with(&expected), "{text}");
        assert_eq!(text.matches("connection error").count(), 1, "{text}");
        let inner = match &err {
            HttpError::Connect(e) => e.get_ref().and_then(|e| e.downcast_ref::<ProxyFailed>()),
            _ => None,
        };
        assert!(inner.is_some(), "{err:?}");
    }

    #[tokio::test]
    async fn the_steps_of_a_connection_share_one_connect_timeout() {
        // The proxy takes half the timeout to open the tunnel, and the
        // console behind it never answers TLS. Were each step given the
        // whole timeout, the connection would be given up only after 150%.
        // (Halves leave a loaded machine room either way.)
        let limit = Duration::from_millis(2_000);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut socket, _) = accept_head(listener).await;
            sleep(limit / 2).await;
            socket
                .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                .await
                .unwrap();
            std::future::pending::<()>().await;
        });
        let proxy = Proxy::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        let key = PoolKey::new(
            "tenant".into(),
            "u1.sentinelone.net".into(),
            Route::Proxied(Arc::new(proxy)),
        );
        let tls = crate::RuntimeConfig::default().tls();
        let started = std::time::Instant::now();
        let result = connect(&key, &tls, ConnectBudget::starting_now(limit)).await;
        let took = started.elapsed();
        assert!(
            matches!(result, Err(HttpError::ConnectionTimeout)),
            "{:?}",
            result.err()
        );
        assert!(took >= limit && took < limit * 13 / 10, "{took:?}");
    }

    #[tokio::test]
    async fn names_resolving_to_loopback_are_refused() {
        assert!(matches!(
            resolve("localhost", 443, budget(5_000)).await,
            Err(HttpError::DestinationIpProhibited)
        ));
    }

    #[tokio::test]
    async fn a_lookup_is_bounded_by_the_connect_timeout() {
        let limit = Duration::from_millis(50);
        let unanswered = std::future::pending::<std::io::Result<()>>();
        let started = std::time::Instant::now();
        let result = lookup_within(ConnectBudget::starting_now(limit), unanswered).await;
        assert!(matches!(result, Err(HttpError::DnsTimeout)), "{result:?}");
        assert!(started.elapsed() >= limit);
    }
}
