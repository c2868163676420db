//! Sending a request to a vetted address: resolve the name, refuse
//! addresses a connector must never reach, then connect to the address that
//! passed, verifying TLS against the name. Connecting to the checked address
//! (rather than resolving again) means DNS rebinding cannot slip a private
//! address in between the check and the connection.
//!
//! This is `wasmtime_wasi_http::default_send_request` with the connect step
//! replaced and keep-alive added (see [`crate::pool`]); its timeouts mean
//! the same. A reused connection was vetted when it was opened.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::{Sleep, sleep, timeout};
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody};

use crate::address::is_forbidden;
use crate::limits::instant_after;
use crate::policy::Route;
use crate::pool::{PoolKey, Pools};

type IoFuture = Box<dyn Future<Output = Result<(), HttpError>> + Send>;

/// The first address of `host:port` a connector may reach, looked up
/// within `limit` (the request's connect timeout).
pub(crate) async fn resolve(
    host: &str,
    port: u16,
    limit: Duration,
) -> Result<SocketAddr, HttpError> {
    let found: Vec<SocketAddr> = lookup_within(limit, tokio::net::lookup_host((host, port)))
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

/// `lookup`, given up after `limit`: a lookup against an unresponsive name
/// server would otherwise outlast the connect timeout by up to half a
/// minute (by default glibc tries each of up to three servers twice, 5 s
/// apiece).
async fn lookup_within<A>(
    limit: Duration,
    lookup: impl Future<Output = std::io::Result<A>>,
) -> Result<A, HttpError> {
    timeout(limit, lookup)
        .await
        .map_err(|_| HttpError::DnsTimeout)?
        .map_err(|e| HttpError::DnsError {
            rcode: Some(e.to_string()),
            info_code: None,
        })
}

fn tls() -> tokio_rustls::TlsConnector {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.into(),
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(config)
    });
    tokio_rustls::TlsConnector::from(config.clone())
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
    let idle = match pools.take(&key) {
        Some(mut sender) => match timeout(timeouts.connect, sender.ready()).await {
            Ok(Ok(())) => Some(sender),
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
    let mut sender = connect(&key, timeouts.connect).await?;
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
/// vetting the name first, then TLS verified against it, unless the key is
/// an explicit loopback test route.
async fn connect(key: &PoolKey, limit: Duration) -> Result<SendRequest<WasiBody>, HttpError> {
    let addr = match key.route() {
        Route::Loopback(addr) => addr,
        Route::Direct => resolve(key.host(), 443, limit).await?,
    };
    let tcp = timeout(limit, TcpStream::connect(addr))
        .await
        .map_err(|_| HttpError::ConnectionTimeout)?
        .map_err(HttpError::Connect)?;
    // Requests are small and written whole; waiting to coalesce them only
    // adds latency.
    let _ = tcp.set_nodelay(true);
    let stream: Box<dyn Io> = match key.route() {
        Route::Direct => {
            let server = rustls::pki_types::ServerName::try_from(key.host().to_owned())?;
            let tls = timeout(limit, tls().connect(server, tcp))
                .await
                .map_err(|_| HttpError::ConnectionTimeout)?
                .map_err(HttpError::Tls)?;
            Box::new(tls)
        }
        Route::Loopback(_) => Box::new(tcp),
    };
    let (sender, conn) = timeout(
        limit,
        hyper::client::conn::http1::handshake(TokioIo::new(stream)),
    )
    .await
    .map_err(|_| HttpError::ConnectionTimeout)??;
    // The connection lives as long as someone holds its sender: the call
    // that opened it, then the pool.
    tokio::spawn(conn);
    Ok(sender)
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

    /// Serves one response on loopback that declares 20 body bytes, sends
    /// 10 at once, then the rest one every `gap` (or never), and returns
    /// its body wrapped as the connector's responses are.
    async fn body_from_server(gap: Option<Duration>, limit: Duration) -> BetweenBytes {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                let mut byte = [0u8];
                socket.read_exact(&mut byte).await.unwrap();
                head.push(byte[0]);
            }
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

    #[tokio::test]
    async fn names_resolving_to_loopback_are_refused() {
        assert!(matches!(
            resolve("localhost", 443, Duration::from_secs(5)).await,
            Err(HttpError::DestinationIpProhibited)
        ));
    }

    #[tokio::test]
    async fn a_lookup_is_bounded_by_the_connect_timeout() {
        let limit = Duration::from_millis(50);
        let unanswered = std::future::pending::<std::io::Result<()>>();
        let started = std::time::Instant::now();
        let result = lookup_within(limit, unanswered).await;
        assert!(matches!(result, Err(HttpError::DnsTimeout)), "{result:?}");
        assert!(started.elapsed() >= limit);
    }
}
