//! The `wasi:http` hook: every request the guest makes passes through here,
//! where the call's policy is enforced and the audit record is written.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Limited};
use tracing::Instrument;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, TlsAlertReceivedPayload};
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use crate::audit::{AuditLog, AuditRecord};
use crate::connect::ProxyFailed;
use crate::pace::{NoTurn, Pacer, RequestRate, Reservation};
use crate::policy::CallPolicy;
use crate::pool::{PoolKey, Pools};

type IoFuture = Box<dyn Future<Output = Result<(), HttpError>> + Send>;
type SendResult = Result<(http::Response<WasiBody>, IoFuture), HttpError>;

/// Per-call hook state.
pub(crate) struct PolicyHooks {
    pub(crate) policy: Arc<CallPolicy>,
    /// The call's audit trail, which keeps the API token out of it.
    pub(crate) audit: AuditLog,
    /// Requests the guest has asked to send in this call.
    pub(crate) requested: u32,
    /// What the guest tried and was refused, beyond the request cap.
    pub(crate) violations: Violations,
    /// The runtime's keep-alive connections.
    pub(crate) pools: Arc<Pools>,
    /// The tenant, which owns the connections this call opens.
    pub(crate) tenant: Arc<str>,
    /// The runtime's request pacing, shared by every call of a tenant.
    pub(crate) pacer: Arc<Pacer>,
    /// When the call's deadline passes, if it can be told.
    pub(crate) deadline_at: Option<Instant>,
    /// The turns this call's requests reserved: those still unused when
    /// the call ends go back to the tenant, as the call's state is dropped.
    pub(crate) turns: Vec<Reservation>,
}

impl PolicyHooks {
    /// Whether the guest asked for more requests than the policy allows.
    pub(crate) fn over_request_cap(&self) -> bool {
        self.requested > self.policy.max_requests
    }

    /// The turn of a request paced in `bucket` (its host, and the path
    /// prefix whose rate applies) at `rate`.
    fn turn(&self, bucket: &str, rate: RequestRate) -> Result<Reservation, NoTurn> {
        self.pacer
            .reserve(&self.tenant, bucket, rate, Instant::now(), self.deadline_at)
    }
}

/// Policy violations seen in one call, shared with the request futures and
/// bodies that detect them.
#[derive(Clone, Default)]
pub(crate) struct Violations(Arc<Mutex<Seen>>);

#[derive(Default)]
struct Seen {
    denied: Option<String>,
    oversized_request: bool,
}

impl Violations {
    fn denied(&self, destination: &str) {
        self.with(|seen| {
            seen.denied.get_or_insert_with(|| destination.to_owned());
        });
    }

    fn oversized_request(&self) {
        self.with(|seen| seen.oversized_request = true);
    }

    /// The first destination refused, by name or after DNS.
    pub(crate) fn first_denied(&self) -> Option<String> {
        self.with(|seen| seen.denied.clone())
    }

    /// Whether a request body went over the cap.
    pub(crate) fn request_too_large(&self) -> bool {
        self.with(|seen| seen.oversized_request)
    }

    fn with<R>(&self, f: impl FnOnce(&mut Seen) -> R) -> R {
        f(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl WasiHttpHooks for PolicyHooks {
    /// Tells the guest a certificate it should not trust, and an alert the
    /// server sent, apart from other TLS failures (wasmtime-wasi-http
    /// reports every one as a protocol error), so the admin is told which.
    fn p2_error_from_tls(&mut self, err: &std::io::Error) -> ErrorCode {
        tls_error_code(err)
    }

    /// A connection the server closed before its answer was complete is
    /// told apart from a broken answer (wasmtime-wasi-http reports both as
    /// a protocol error): the request may have been acted on, and the admin
    /// is told the connection dropped rather than that the console spoke
    /// bad HTTP.
    fn p2_error_from_hyper(&mut self, err: &hyper::Error) -> ErrorCode {
        hyper_error_code(err)
    }

    /// A proxy that could not be reached or refused the tunnel is the
    /// platform's configuration at fault, not the destination: the guest is
    /// told so.
    fn p2_error_from_connect(&mut self, err: &std::io::Error) -> ErrorCode {
        match err.get_ref().and_then(|e| e.downcast_ref::<ProxyFailed>()) {
            Some(_) => ErrorCode::ConfigurationError,
            None => ErrorCode::ConnectionRefused,
        }
    }

    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: IoFuture,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        self.requested = self.requested.saturating_add(1);
        let max = self.policy.max_requests;
        if self.requested > max {
            // Only the first refusal is audited: a flood must not flood the log.
            if self.requested == max + 1 {
                let outcome =
                    format!("denied: request cap of {max} reached; later requests not recorded");
                self.audit.record(audit_record(&request, outcome));
            }
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }
        let mut record = audit_record(&request, "pending".into());
        let uri = request.uri();
        let (host, route) = match self.policy.egress.decide(uri) {
            Ok(decided) => decided,
            Err(why) => {
                record.outcome = format!("denied: {why}");
                self.audit.record(record);
                // The user-info part (`user@`) says nothing about where the
                // request went, and may hold a secret. (The call's errors are
                // redacted as the call ends.)
                let authority = uri.authority().map_or("", |a| a.as_str());
                let destination = authority.rsplit_once('@').map_or(authority, |(_, d)| d);
                self.violations.denied(destination);
                return Box::new(async { Err(HttpError::HttpRequestDenied) });
            }
        };
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let paced = self
            .policy
            .rate_for(path)
            .map(|(prefix, rate)| (format!("{host}{prefix}"), rate));
        let turn = match paced.map(|(bucket, rate)| (self.turn(&bucket, rate), bucket)) {
            None => None,
            Some((Ok(turn), _)) => {
                self.turns.push(turn.copy());
                Some(turn)
            }
            Some((Err(NoTurn { wait }), bucket)) => {
                record.outcome = format!(
                    "denied: paced: this tenant's next turn for {bucket} is {} ms away, after \
                     the call's deadline",
                    wait.as_millis()
                );
                self.audit.record(record);
                return Box::new(async { Err(HttpError::ConnectionLimitReached) });
            }
        };
        let key = PoolKey::new(self.tenant.clone(), host, route);
        let request = cap_request_body(
            request,
            self.policy.max_request_bytes,
            self.violations.clone(),
        );
        let options = clamp(options, &self.policy);
        let index = self.audit.push(record);
        let sink = Sink {
            audit: self.audit.clone(),
            index,
            bytes: 0,
        };
        let (pools, cap) = (self.pools.clone(), self.policy.max_response_bytes);
        let violations = self.violations.clone();
        let span = self.audit.span(index);
        let paced = async move {
            let sink = wait_for(turn, sink).await;
            send(pools, key, sink, violations, cap, request, options).await
        };
        Box::new(paced.instrument(span))
    }
}

/// Where a request's outcome is recorded. Whoever holds it last (the
/// request's future, then its response body) finishes the record; dropped
/// before that, because the connector gave up on the request, it records
/// the request as `abandoned`.
struct Sink {
    audit: AuditLog,
    index: usize,
    /// Response body bytes delivered to the connector so far.
    bytes: u64,
}

impl Sink {
    fn finish(&self, outcome: String) {
        let bytes = self.bytes;
        self.audit.finish(self.index, |r| {
            r.bytes = bytes;
            r.outcome = outcome;
        });
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        // A no-op once the record is finished (see `AuditLog::finish`).
        self.finish("abandoned".into());
    }
}

/// Waits for the request's turn, if it has one, and starts its clock after.
/// Cut off before then, its record shows the wait and no exchange, and the
/// turn goes back to the tenant (see [`Reservation`]).
async fn wait_for(turn: Option<Reservation>, sink: Sink) -> Sink {
    let Some(turn) = turn else {
        return sink;
    };
    if turn.at() > Instant::now() {
        sink.audit.waiting(sink.index);
        tokio::time::sleep_until(turn.at().into()).await;
        sink.audit.sending(sink.index);
    }
    turn.taken();
    sink
}

async fn send(
    pools: Arc<Pools>,
    key: PoolKey,
    sink: Sink,
    violations: Violations,
    cap: u64,
    request: http::Request<WasiBody>,
    options: RequestOptions,
) -> SendResult {
    let host = key.host().to_owned();
    let sent = crate::connect::send(&pools, key, request, options).await;
    if let Err(HttpError::DestinationIpProhibited) = &sent {
        violations.denied(&host);
    }
    match sent {
        Ok((response, io)) => {
            let status = Some(response.status().as_u16());
            sink.audit.update(sink.index, |r| r.status = status);
            let response = response.map(|body| {
                AuditedBody {
                    inner: body.boxed_unsync(),
                    sink,
                    cap,
                }
                .boxed_unsync()
            });
            Ok((response, io))
        }
        Err(error) => {
            sink.finish(outcome_of(&error));
            Err(error)
        }
    }
}

/// A new record for `request` (the log redacts it).
fn audit_record(request: &http::Request<WasiBody>, outcome: String) -> AuditRecord {
    let uri = request.uri();
    AuditRecord {
        method: request.method().to_string(),
        host: uri.host().unwrap_or_default().to_ascii_lowercase(),
        path: uri.path_and_query().map_or("/", |p| p.as_str()).to_owned(),
        status: None,
        bytes: 0,
        duration_ms: 0,
        waited_ms: 0,
        outcome,
    }
}

/// Every timeout the guest asks for, bounded by the policy's.
fn clamp(options: Option<RequestOptions>, policy: &CallPolicy) -> RequestOptions {
    let max = policy.http_timeout;
    let bound = |asked: Option<std::time::Duration>| Some(asked.map_or(max, |d| d.min(max)));
    let o = options.unwrap_or_default();
    RequestOptions {
        connect_timeout: bound(o.connect_timeout),
        first_byte_timeout: bound(o.first_byte_timeout),
        between_bytes_timeout: bound(o.between_bytes_timeout),
    }
}

fn cap_request_body(
    request: http::Request<WasiBody>,
    cap: u64,
    violations: Violations,
) -> http::Request<WasiBody> {
    let limit = usize::try_from(cap).unwrap_or(usize::MAX);
    request.map(|body| {
        Limited::new(body, limit)
            .map_err(move |e| match e.downcast::<HttpError>() {
                Ok(e) => *e,
                Err(_) => {
                    violations.oversized_request();
                    HttpError::HttpRequestBodySize(Some(cap))
                }
            })
            .boxed_unsync()
    })
}

/// The `wasi:http` code for a failed exchange on an open connection.
fn hyper_error_code(err: &hyper::Error) -> ErrorCode {
    if dropped(err) {
        ErrorCode::ConnectionTerminated
    } else if err.is_parse_too_large() {
        ErrorCode::HttpResponseHeaderSectionSize(None)
    } else {
        ErrorCode::HttpProtocolError
    }
}

/// A response body's failure, with a dropped connection named as one:
/// wasmtime-wasi-http hands body errors to the guest as text only (no
/// `wasi:http` code), and hyper words a connection closed mid-body "error
/// reading a body from connection", which reads as a broken answer.
fn body_error(error: HttpError) -> HttpError {
    match error {
        HttpError::Hyper(e) if dropped(&e) => HttpError::ConnectionTerminated,
        other => other,
    }
}

/// Whether hyper failed because the connection ended before the message
/// did, rather than because the message was malformed.
fn dropped(err: &hyper::Error) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    if err.is_incomplete_message() || err.is_closed() || err.is_canceled() {
        return true;
    }
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe
            );
        }
        source = cause.source();
    }
    false
}

/// The `wasi:http` code for a TLS failure, read from the rustls error
/// inside the I/O error tokio-rustls returns.
fn tls_error_code(err: &std::io::Error) -> ErrorCode {
    match err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::InvalidCertificate(_)) => ErrorCode::TlsCertificateError,
        Some(rustls::Error::AlertReceived(alert)) => {
            ErrorCode::TlsAlertReceived(TlsAlertReceivedPayload {
                alert_id: Some(u8::from(*alert)),
                alert_message: Some(format!("{alert:?}")),
            })
        }
        _ => ErrorCode::TlsProtocolError,
    }
}

fn outcome_of(error: &HttpError) -> String {
    match error {
        HttpError::ConnectionTimeout
        | HttpError::ConnectionReadTimeout
        | HttpError::HttpResponseTimeout => "timeout".into(),
        HttpError::HttpResponseBodySize(_) => "body-too-large".into(),
        HttpError::HttpRequestBodySize(_) => "request-body-too-large".into(),
        HttpError::DestinationIpProhibited => {
            "denied: the name resolves to a forbidden address".into()
        }
        // wasmtime words these "DNS error: rcode <text>", after the DNS
        // field the text is carried in.
        HttpError::DnsError {
            rcode: Some(why), ..
        } => format!("error: the name did not resolve: {why}"),
        HttpError::DnsTimeout => "error: the name lookup timed out".into(),
        other => format!("error: {other}"),
    }
}

/// A response body that counts bytes into the audit record and stops at the
/// policy's cap. Dropped before its end, its sink records it `abandoned`.
struct AuditedBody {
    inner: WasiBody,
    sink: Sink,
    cap: u64,
}

impl Body for AuditedBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let this = &mut *self;
        match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    let total = this.sink.bytes + data.len() as u64;
                    if total > this.cap {
                        this.sink.finish("body-too-large".into());
                        return Poll::Ready(Some(Err(HttpError::HttpResponseBodySize(Some(
                            this.cap,
                        )))));
                    }
                    this.sink.bytes = total;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(error)) => {
                let error = body_error(error);
                this.sink.finish(outcome_of(&error));
                Poll::Ready(Some(Err(error)))
            }
            None => {
                this.sink.finish("ok".into());
                Poll::Ready(None)
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
