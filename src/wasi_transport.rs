//! [`Transport`] over `wasi:http/outgoing-handler`: the only code that does I/O.

use alloc::{borrow::ToOwned, format, string::String, vec::Vec};

use core::time::Duration;

use wasi::http::outgoing_handler;
use wasi::http::types::{
    ErrorCode, Fields, IncomingBody, Method as WasiMethod, OutgoingBody, OutgoingRequest,
    RequestOptions, Scheme, http_error_code,
};

use wasi::io::streams::StreamError;

use crate::transport::{MAX_RESPONSE_BYTES, Method, Request, Response, Transport, TransportError};

/// Timeouts asked of the host; the host clamps them to its own policy.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(30);
const BETWEEN_BYTES_TIMEOUT: Duration = Duration::from_secs(30);

/// Sends over the host's `wasi:http` implementation.
pub struct WasiTransport;

impl Transport for WasiTransport {
    fn send(&mut self, request: &Request) -> Result<Response, TransportError> {
        let outgoing = build(request)?;
        // A request whose body is never taken is sent with an empty one: a
        // GET then costs the host no body stream and the guest no calls.
        let body = match request.body.as_deref() {
            Some(bytes) => Some((
                outgoing
                    .body()
                    .map_err(|()| other("request body already taken"))?,
                bytes,
            )),
            None => None,
        };
        let pending =
            outgoing_handler::handle(outgoing, Some(options())).map_err(map_error_code)?;
        // When the host refuses the request it closes the body stream, so a
        // write error is only reported if the response carries no better one.
        let written = body.map_or(Ok(()), |(body, bytes)| write_body(body, bytes));
        pending.subscribe().block();
        let response = pending
            .get()
            .ok_or_else(|| other("response not ready after waiting"))?
            .map_err(|()| other("response already taken"))?
            .map_err(map_error_code)?;
        written?;
        let status = response.status();
        let headers = response
            .headers()
            .entries()
            .into_iter()
            .map(|(name, value)| (name.to_ascii_lowercase(), Response::text(value)))
            .collect();
        let incoming = response
            .consume()
            .map_err(|()| other("response body already taken"))?;
        let body = read_body(&incoming)?;
        drop(IncomingBody::finish(incoming));
        Ok(Response {
            status,
            headers,
            body: Response::text(body),
        })
    }

    fn pause(&mut self, duration: Duration) {
        let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        wasi::clocks::monotonic_clock::subscribe_duration(nanos).block();
    }

    fn random(&mut self) -> u64 {
        wasi::random::random::get_random_u64()
    }

    fn now(&mut self) -> Duration {
        Duration::from_nanos(wasi::clocks::monotonic_clock::now())
    }
}

fn build(request: &Request) -> Result<OutgoingRequest, TransportError> {
    let entries: Vec<(String, Vec<u8>)> = request
        .headers
        .iter()
        .map(|(n, v)| (n.clone(), v.clone().into_bytes()))
        .collect();
    let headers = Fields::from_list(&entries).map_err(|e| other(&format!("bad header: {e:?}")))?;
    let outgoing = OutgoingRequest::new(headers);
    let method = match request.method {
        Method::Get => WasiMethod::Get,
        Method::Post => WasiMethod::Post,
    };
    let set = [
        outgoing.set_method(&method),
        outgoing.set_scheme(Some(&Scheme::Https)),
        outgoing.set_authority(Some(&request.authority)),
        outgoing.set_path_with_query(Some(&request.path_and_query)),
    ];
    if set.iter().any(Result::is_err) {
        return Err(other("the host refused the request line"));
    }
    Ok(outgoing)
}

fn options() -> RequestOptions {
    let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    let options = RequestOptions::new();
    // A host may not support setting these; its own clamp then applies.
    let _ = options.set_connect_timeout(Some(nanos(CONNECT_TIMEOUT)));
    let _ = options.set_first_byte_timeout(Some(nanos(FIRST_BYTE_TIMEOUT)));
    let _ = options.set_between_bytes_timeout(Some(nanos(BETWEEN_BYTES_TIMEOUT)));
    options
}

fn write_body(body: OutgoingBody, bytes: &[u8]) -> Result<(), TransportError> {
    let stream = body
        .write()
        .map_err(|()| other("request body stream already taken"))?;
    // `blocking-write-and-flush` accepts at most 4096 bytes per call.
    for chunk in bytes.chunks(4096) {
        stream
            .blocking_write_and_flush(chunk)
            .map_err(|e| other(&format!("writing the request body failed: {e:?}")))?;
    }
    // The stream is a child of the body: it must go before `finish`.
    drop(stream);
    OutgoingBody::finish(body, None).map_err(map_error_code)
}

fn read_body(incoming: &IncomingBody) -> Result<Vec<u8>, TransportError> {
    let stream = incoming
        .stream()
        .map_err(|()| other("response stream already taken"))?;
    let mut body = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => {
                if (body.len() + chunk.len()) as u64 > MAX_RESPONSE_BYTES {
                    return Err(TransportError::BodyTooLarge(MAX_RESPONSE_BYTES));
                }
                body.extend_from_slice(&chunk);
            }
            Err(StreamError::Closed) => return Ok(body),
            Err(StreamError::LastOperationFailed(e)) => {
                return Err(match http_error_code(&e) {
                    Some(code) => map_error_code(code),
                    None => TransportError::from_body_failure(&e.to_debug_string()),
                });
            }
        }
    }
}

fn other(message: &str) -> TransportError {
    TransportError::Other(message.to_owned())
}

fn map_error_code(code: ErrorCode) -> TransportError {
    match code {
        ErrorCode::HttpRequestDenied => TransportError::Denied,
        ErrorCode::DnsError(_) => TransportError::Dns,
        ErrorCode::DnsTimeout => TransportError::DnsTimeout,
        ErrorCode::ConnectionTimeout => TransportError::ConnectTimeout,
        ErrorCode::ConnectionReadTimeout
        | ErrorCode::ConnectionWriteTimeout
        | ErrorCode::HttpResponseTimeout => TransportError::Timeout,
        ErrorCode::ConnectionRefused => TransportError::Connect("connection refused".into()),
        ErrorCode::ConfigurationError => TransportError::Connect(
            "the SOAR platform's proxy or network configuration did not let it through".into(),
        ),
        ErrorCode::ConnectionTerminated => TransportError::ConnectionLost,
        ErrorCode::DestinationNotFound | ErrorCode::DestinationUnavailable => {
            TransportError::Connect("destination unavailable".into())
        }
        ErrorCode::DestinationIpProhibited | ErrorCode::DestinationIpUnroutable => {
            TransportError::Denied
        }
        ErrorCode::TlsCertificateError => {
            TransportError::Tls("the server's certificate was not accepted".into())
        }
        ErrorCode::TlsAlertReceived(alert) => TransportError::Tls(match alert.alert_message {
            Some(message) => format!("the server sent the TLS alert {message}"),
            None => "the server sent a TLS alert".into(),
        }),
        ErrorCode::TlsProtocolError => TransportError::Tls("the TLS handshake failed".into()),
        ErrorCode::HttpResponseBodySize(limit) => {
            TransportError::BodyTooLarge(limit.unwrap_or(MAX_RESPONSE_BYTES))
        }
        ErrorCode::ConnectionLimitReached => TransportError::HostRateLimit,
        other => TransportError::Protocol(format!("{other:?}")),
    }
}
