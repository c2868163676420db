//! Sending a request to a vetted address: resolve the name, refuse
//! addresses a connector must never reach, then connect to the address that
//! passed, verifying TLS against the name. Connecting to the checked address
//! (rather than resolving again) means DNS rebinding cannot slip a private
//! address in between the check and the connection.
//!
//! This is `wasmtime_wasi_http::default_send_request` with the connect step
//! replaced; its timeouts mean the same.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::{Sleep, sleep, timeout};
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody};

type IoFuture = Box<dyn Future<Output = Result<(), HttpError>> + Send>;

/// Whether a connector may connect to `ip` after resolving a name: no
/// loopback, private, link-local (cloud metadata lives there), shared
/// (CGNAT), unspecified, multicast or broadcast addresses, in IPv4, IPv6 or
/// IPv4-mapped IPv6 form.
pub(crate) fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && c == 0)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_forbidden(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
        }
    }
}

/// The first address of `host:port` a connector may reach.
pub(crate) async fn resolve(host: &str, port: u16) -> Result<SocketAddr, HttpError> {
    let found: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| HttpError::DnsError {
            rcode: Some(e.to_string()),
            info_code: None,
        })?
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

/// Sends `request` to `addr`, over TLS verified for `tls_name` when given.
/// The timeouts in `options` must be set (the hook clamps them).
pub(crate) async fn send(
    mut request: http::Request<WasiBody>,
    addr: SocketAddr,
    tls_name: Option<&str>,
    options: RequestOptions,
) -> Result<(http::Response<WasiBody>, IoFuture), HttpError> {
    let limit = |d: Option<Duration>| d.unwrap_or(Duration::from_secs(30));
    let (connect, first_byte, between) = (
        limit(options.connect_timeout),
        limit(options.first_byte_timeout),
        limit(options.between_bytes_timeout),
    );
    let tcp = timeout(connect, TcpStream::connect(addr))
        .await
        .map_err(|_| HttpError::ConnectionTimeout)?
        .map_err(HttpError::Connect)?;
    let stream: Box<dyn Io> = match tls_name {
        Some(name) => {
            let server = rustls::pki_types::ServerName::try_from(name.to_owned())?;
            let tls = timeout(connect, tls().connect(server, tcp))
                .await
                .map_err(|_| HttpError::ConnectionTimeout)?
                .map_err(HttpError::Tls)?;
            Box::new(tls)
        }
        None => Box::new(tcp),
    };
    let (mut sender, conn) = timeout(
        connect,
        hyper::client::conn::http1::handshake(TokioIo::new(stream)),
    )
    .await
    .map_err(|_| HttpError::ConnectionTimeout)??;
    // The request line carries only the path; the Host header names the host.
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    *request.uri_mut() = http::Uri::builder()
        .path_and_query(path)
        .build()
        .map_err(|_| HttpError::HttpRequestUriInvalid)?;
    let conn = tokio::spawn(conn);
    let response = timeout(first_byte, sender.send_request(request))
        .await
        .map_err(|_| HttpError::ConnectionReadTimeout)??;
    let response = response.map(|incoming| {
        BetweenBytes {
            inner: incoming,
            limit: between,
            timer: Box::pin(sleep(between)),
        }
        .boxed_unsync()
    });
    let io = async move {
        match conn.await {
            Ok(Ok(())) | Err(_) => Ok(()),
            Ok(Err(e)) => Err(HttpError::from(e)),
        }
    };
    Ok((response, Box::new(io) as IoFuture))
}

/// A response body that fails when no bytes arrive for `limit`.
struct BetweenBytes {
    inner: hyper::body::Incoming,
    limit: Duration,
    timer: Pin<Box<Sleep>>,
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
                let deadline = tokio::time::Instant::now() + this.limit;
                this.timer.as_mut().reset(deadline);
                Poll::Ready(frame.map(|f| f.map_err(HttpError::from)))
            }
            Poll::Pending => {
                ready!(this.timer.as_mut().poll(cx));
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

    #[test]
    fn forbidden_ranges() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "192.0.0.8",
        ] {
            assert!(is_forbidden(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "203.0.113.9",
            "8.8.8.8",
            "34.120.0.1",
            "2606:4700::1",
            "::ffff:8.8.8.8",
            "100.128.0.1",
        ] {
            assert!(!is_forbidden(ip.parse().unwrap()), "{ip}");
        }
    }

    #[tokio::test]
    async fn names_resolving_to_loopback_are_refused() {
        assert!(matches!(
            resolve("localhost", 443).await,
            Err(HttpError::DestinationIpProhibited)
        ));
    }
}
