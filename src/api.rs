//! The SentinelOne Management API v2.1 client: requests, bounded retries, and
//! the mapping from HTTP outcomes to [`Error`]s an admin can act on.

use alloc::{
    borrow::ToOwned,
    format,
    string::{String, ToString},
    vec,
};

use serde::de::DeserializeOwned;

use crate::body;
use crate::console::Console;
use crate::error::{Error, Result};
use crate::retry::{RetryPolicy, is_retryable_status, parse_retry_after};
use crate::token::ApiToken;
use crate::transport::{Method, Request, Response, Transport, TransportError};

/// Every endpoint lives under this prefix.
pub const API_PREFIX: &str = "/web/api/v2.1";

/// Where the user regenerates a token, quoted in `unauthorized` messages.
pub const TOKEN_FIX: &str = "Generate a new API token in the SentinelOne console \
     (Settings → My User → API Token → Generate; for a service user: Settings → Users → \
     Service Users), then edit this connection and paste the new token.";

/// Whether a request may be sent again after a retryable status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idempotency {
    /// A read: retried on 429, 502, 503 and 504, and when the connection
    /// drops before the answer.
    Read,
    /// A state change: resent only after a 429, which the console answers
    /// before processing; never after a server error or timeout.
    Action,
}

/// Why a state change got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionFailure {
    /// What went wrong, worded for the admin.
    pub error: Error,
    /// True when the failure proves the request never reached the console
    /// (refused by the host, no name, no connection, no TLS), so the
    /// change cannot have happened.
    pub never_sent: bool,
}

/// A connected client for one console and token.
pub struct Client<'t, T: Transport> {
    console: Console,
    token: ApiToken,
    transport: &'t mut T,
    retry: RetryPolicy,
}

impl<'t, T: Transport> Client<'t, T> {
    /// A client that sends through `transport`.
    pub fn new(console: Console, token: ApiToken, transport: &'t mut T) -> Self {
        Client {
            console,
            token,
            transport,
            retry: RetryPolicy::default(),
        }
    }

    /// Replaces the retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The console this client talks to.
    pub fn console(&self) -> &Console {
        &self.console
    }

    /// Waits, through the transport (between state polls).
    pub fn pause(&mut self, duration: core::time::Duration) {
        self.transport.pause(duration);
    }

    /// The transport's monotonic clock.
    pub fn now(&mut self) -> core::time::Duration {
        self.transport.now()
    }

    /// The token, for the one endpoint that takes it in a body.
    pub(crate) fn token(&self) -> &ApiToken {
        &self.token
    }

    /// Sends `method path` (below [`API_PREFIX`]) and returns the final
    /// response, whatever its status, after retrying reads as the policy allows.
    /// Transport failures become `unreachable`, `egress-denied`, `rate-limited`
    /// (the host's pacing) or `upstream`.
    pub fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
        idempotency: Idempotency,
    ) -> Result<Response> {
        self.exchange(method, path, body, idempotency)
            .map_err(|e| self.transport_error(e, method, path))
    }

    /// As [`Client::send`], except that an answer larger than the body
    /// size limit comes back as `Ok(Err(limit))`, for a caller that can ask
    /// for less (a smaller page) instead of failing.
    pub fn send_sized(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
        idempotency: Idempotency,
    ) -> Result<core::result::Result<Response, u64>> {
        match self.exchange(method, path, body, idempotency) {
            Ok(response) => Ok(Ok(response)),
            Err(TransportError::BodyTooLarge(limit)) => Ok(Err(limit)),
            Err(e) => Err(self.transport_error(e, method, path)),
        }
    }

    /// Sends a state change (`POST path` with `body`), resent only after a
    /// 429. A failure says whether the request can have reached the
    /// console, which decides whether the caller must look for its effect.
    pub fn send_action(
        &mut self,
        path: &str,
        body: &serde_json::Value,
    ) -> core::result::Result<Response, ActionFailure> {
        self.exchange(Method::Post, path, Some(body), Idempotency::Action)
            .map_err(|e| ActionFailure {
                never_sent: e.never_sent(),
                error: self.transport_error(e, Method::Post, path),
            })
    }

    /// Sends the request, retrying as `idempotency` allows, and returns the
    /// final response whatever its status.
    fn exchange(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
        idempotency: Idempotency,
    ) -> core::result::Result<Response, TransportError> {
        let request = self.request(method, path, body);
        let started = self.transport.now();
        let mut attempt = 1;
        loop {
            let response = match self.transport.send(&request) {
                Ok(response) => response,
                // A load balancer or proxy that drops a connection usually
                // answers the next one; a read is safe to send again. A
                // state change is not: the console may have acted.
                Err(TransportError::ConnectionLost)
                    if idempotency == Idempotency::Read
                        && self.back_off(attempt, started, None) =>
                {
                    attempt += 1;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let retryable = match idempotency {
                Idempotency::Read => is_retryable_status(response.status),
                Idempotency::Action => response.status == 429,
            };
            if !retryable {
                return Ok(response);
            }
            let retry_after = parse_retry_after(response.header("retry-after"));
            if !self.back_off(attempt, started, retry_after) {
                return Ok(response);
            }
            attempt += 1;
        }
    }

    /// Waits before attempt `attempt + 1` if the policy allows one more
    /// within its budget (counted from `started`); false when it does not.
    fn back_off(
        &mut self,
        attempt: u32,
        started: core::time::Duration,
        retry_after: Option<u32>,
    ) -> bool {
        let delay = self
            .retry
            .delay(attempt, retry_after, self.transport.random());
        let out_of_budget =
            self.transport.now().saturating_sub(started) + delay > self.retry.budget;
        if attempt >= self.retry.max_attempts || out_of_budget {
            return false;
        }
        self.transport.pause(delay);
        true
    }

    /// Sends a read and parses a successful JSON body as `D`. Any other status
    /// becomes an error; `permission` names what a 403 means.
    pub fn read_json<D: DeserializeOwned>(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
        permission: Option<&str>,
    ) -> Result<D> {
        let response = self.send(method, path, body, Idempotency::Read)?;
        if !response.is_success() {
            return Err(self.status_error(method, path, &response, permission));
        }
        parse_json(&response, method, path)
    }

    fn request(&self, method: Method, path: &str, body: Option<&serde_json::Value>) -> Request {
        let mut headers = vec![
            ("authorization".to_owned(), self.token.authorization()),
            ("accept".to_owned(), "application/json".to_owned()),
            (
                "user-agent".to_owned(),
                concat!("soar-sentinelone-connector/", env!("CARGO_PKG_VERSION")).to_owned(),
            ),
        ];
        let body = body.map(|b| b.to_string().into_bytes());
        if let Some(b) = &body {
            headers.push(("content-type".to_owned(), "application/json".to_owned()));
            headers.push(("content-length".to_owned(), b.len().to_string()));
        }
        Request {
            method,
            authority: self.console.host().to_owned(),
            path_and_query: format!("{API_PREFIX}{path}"),
            headers,
            body,
        }
    }

    fn transport_error(&self, error: TransportError, method: Method, path: &str) -> Error {
        let host = self.console.host();
        let what = what(method, path);
        match error {
            TransportError::Denied => Error::EgressDenied(format!(
                "The SOAR platform's network policy does not allow connections to {host}. \
                 If this is your SentinelOne console, ask the platform administrator to allow \
                 its domain; otherwise correct the Management Hostname."
            )),
            TransportError::Dns => Error::Unreachable(format!(
                "The hostname {host} does not resolve. Check the Management Hostname: {} If the \
                 hostname is right, the SOAR platform may reach the internet only through a \
                 proxy, which it must be set to use.",
                self.where_to_find_hostname()
            )),
            TransportError::DnsTimeout => Error::Unreachable(format!(
                "Looking up {host} timed out: the SOAR platform's DNS servers did not answer. \
                 This is a network problem on the platform's side, not a sign of a wrong \
                 Management Hostname; try again, and if it persists ask the platform \
                 administrator to check DNS."
            )),
            TransportError::Timeout => Error::Unreachable(format!(
                "{host} did not answer {what} in time. The console may be down or overloaded, \
                 or a firewall may be dropping traffic; try again later, and check that the \
                 SOAR platform can reach {host} on port 443."
            )),
            TransportError::ConnectTimeout => Error::Unreachable(format!(
                "Could not connect to {host}: the connection was not accepted in time. The \
                 console may be down, or a firewall may be dropping traffic; check that the \
                 SOAR platform can reach {host} on port 443."
            )),
            TransportError::ConnectionLost => Error::Unreachable(format!(
                "The connection to {host} closed before the answer to {what} was complete: \
                 the console, or a proxy on the way, dropped it."
            )),
            TransportError::Connect(detail) => Error::Unreachable(format!(
                "Could not connect to {host} ({}). Check that the hostname is right and that the \
                 SOAR platform can reach it on port 443.",
                body::quote(&detail)
            )),
            TransportError::Tls(detail) => Error::Unreachable(format!(
                "The secure (TLS) connection to {host} failed ({}). A proxy that intercepts TLS, \
                 or a wrong hostname, usually causes this; if the SOAR platform's network \
                 re-signs TLS, the platform must trust that network's certificate authority.",
                body::quote(&detail)
            )),
            TransportError::BodyTooLarge(limit) => Error::Upstream(format!(
                "The console's answer to {what} was larger than the {limit}-byte limit, so it \
                 was not read. If this persists, report it to SentinelOne support."
            )),
            TransportError::HostRateLimit => Error::RateLimited {
                message: format!(
                    "The SOAR platform paces this connection's requests to {host}, and the turn \
                     for {what} would have come after this action's time limit, so it was not \
                     sent. Other actions or ingestion using this connection are taking its \
                     turns; try again shortly, or ask the platform administrator about the \
                     request rate set for this connection."
                ),
                retry_after_seconds: None,
            },
            TransportError::Protocol(detail) => Error::Upstream(format!(
                "{host} broke the HTTP protocol while answering {what} ({}).",
                body::quote(&detail)
            )),
            TransportError::Other(detail) => Error::Unreachable(format!(
                "The request {what} to {host} failed: {}",
                body::full_stop(&body::quote(&detail))
            )),
        }
    }

    /// Where the user finds the right Management Hostname. The usual
    /// "part before .sentinelone.net" advice would mislead for a console
    /// on a domain of its own, whose whole name is what they enter.
    fn where_to_find_hostname(&self) -> String {
        let label = self.console.label();
        if label == self.console.host() {
            "for a console outside sentinelone.net it is the whole hostname, exactly as shown \
             in the browser's address bar when you are signed in (a SentinelOne cloud console's \
             ends in .sentinelone.net: for https://u1234-s123.sentinelone.net enter u1234-s123)."
                .to_owned()
        } else {
            format!(
                "it is the part of your console's address before .sentinelone.net (for \
                 https://{label}.sentinelone.net enter {label}), as shown in the browser's \
                 address bar when you are signed in."
            )
        }
    }

    /// The error for a final non-2xx response.
    pub fn status_error(
        &self,
        method: Method,
        path: &str,
        response: &Response,
        permission: Option<&str>,
    ) -> Error {
        let what = what(method, path);
        let said = body::summarize(&response.body);
        let status = response.status;
        match status {
            300..=399 => Error::Upstream(redirect_message(&what, status, response)),
            401 => Error::Unauthorized(format!(
                "SentinelOne rejected the API token (HTTP 401: {said}): it is wrong, expired or \
                 revoked. {TOKEN_FIX}"
            )),
            403 => Error::Forbidden(match permission {
                Some(p) => format!(
                    "The token's role lacks the permission {p}, which {what} needs (HTTP 403: \
                     {said}). Use a token of a user or service user whose role has {p}."
                ),
                None => format!(
                    "The token's role is not allowed to call {what} (HTTP 403: {said}). Use a \
                     token whose role and scope allow it."
                ),
            }),
            404 => Error::NotFound(format!(
                "The console answered 404 to {what} ({said}). Check that the Management \
                 Hostname is your management console."
            )),
            429 => {
                let retry_after_seconds = parse_retry_after(response.header("retry-after"));
                let wait = retry_after_seconds
                    .map(|s| format!(" It asked to wait {s} s."))
                    .unwrap_or_default();
                Error::RateLimited {
                    message: format!(
                        "SentinelOne rate-limited {what} (HTTP 429) and kept doing so after \
                         {} attempts.{wait} Other tools sharing this token may be using up its \
                         rate limit; try again shortly.",
                        self.retry.max_attempts
                    ),
                    retry_after_seconds,
                }
            }
            _ => Error::Upstream(format!(
                "SentinelOne answered HTTP {status} to {what}: {}",
                body::full_stop(&said)
            )),
        }
    }
}

/// A redirect is never followed: the token would go wherever it points.
/// A console that moved, or a name that is not the console (a login page,
/// a proxy), answers this way, so the message shows where it pointed.
fn redirect_message(what: &str, status: u16, response: &Response) -> String {
    let target = match response.header("location") {
        Some(location) => format!(" to {}", body::quote(location)),
        None => String::new(),
    };
    format!(
        "The console redirected {what} (HTTP {status}){target}. The connector does not follow \
         redirects, so the API token is never sent anywhere else. Check the Management Hostname: \
         it must be the console's own hostname, as shown in the browser's address bar when you \
         are signed in."
    )
}

/// Parses a successful response's JSON body.
pub fn parse_json<'a, D: serde::Deserialize<'a>>(
    response: &'a Response,
    method: Method,
    path: &str,
) -> Result<D> {
    // Text, not bytes: serde_json then checks no string's UTF-8 again, and
    // the component carries one copy of its readers, not two (13 KB).
    serde_json::from_str(&response.body).map_err(|e| {
        // The excerpt goes last: it is arbitrary text, often cut mid-token,
        // and would blur the boundary of any sentence after it.
        Error::Upstream(format!(
            "The console's answer to {} was not the expected JSON ({e}). A proxy or an \
             incompatible console version can cause this. The answer began: {}",
            what(method, path),
            body::summarize(&response.body)
        ))
    })
}

/// Percent-encodes a query value exactly as given: a `%` is sent as
/// `%25`, so no value can smuggle an escaped `,` or `&` into a filter.
pub fn encode_query_value(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// Percent-encodes a pagination cursor. Cursors sometimes arrive already
/// URL-encoded (`...%3D%3D`); such a cursor is decoded first, so it is never
/// encoded twice. Only cursors get this: they are opaque tokens of the
/// console's, where a literal `%XX` never occurs.
pub fn encode_cursor(cursor: &str) -> String {
    let bytes = cursor.as_bytes();
    let already_encoded = bytes
        .windows(3)
        .any(|w| w[0] == b'%' && w[1].is_ascii_hexdigit() && w[2].is_ascii_hexdigit());
    if !already_encoded {
        return encode_query_value(cursor);
    }
    let decoded = form_urlencoded::parse(format!("v={}", cursor.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned());
    encode_query_value(decoded.as_deref().unwrap_or(cursor))
}

/// A request as messages name it, e.g. `GET /web/api/v2.1/agents`: the
/// query is left out, since it can hold long filters or cursors.
pub(crate) fn what(method: Method, path: &str) -> String {
    format!("{} {API_PREFIX}{}", method.as_str(), strip_query(path))
}

fn strip_query(path: &str) -> &str {
    path.split('?').next().unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::testing::Scripted;
    use core::time::Duration;

    fn client(t: &mut Scripted) -> Client<'_, Scripted> {
        t.client("u1-s1", "tok-1234")
    }

    fn with_retry_after(status: u16, secs: &str, body: &str) -> Response {
        Response {
            status,
            headers: vec![("retry-after".into(), secs.into())],
            body: body.into(),
        }
    }

    #[test]
    fn sends_token_only_in_authorization_header() {
        let mut t = Scripted::default().reply(200, "{}");
        client(&mut t)
            .send(Method::Get, "/agents?limit=1", None, Idempotency::Read)
            .unwrap();
        let r = &t.sent[0];
        assert_eq!(r.authority, "u1-s1.sentinelone.net");
        assert_eq!(r.path_and_query, "/web/api/v2.1/agents?limit=1");
        assert!(
            r.headers
                .contains(&("authorization".into(), "ApiToken tok-1234".into()))
        );
        assert!(!r.path_and_query.contains("tok-1234"));
        assert!(!format!("{r:?}").contains("tok-1234"));
    }

    #[test]
    fn retries_reads_on_retryable_statuses_honouring_retry_after() {
        let mut t = Scripted::default()
            .reply_with(with_retry_after(
                429,
                "2",
                "<html><title>429 Too Many Requests</title></html>",
            ))
            .reply(503, "unavailable")
            .reply(200, r#"{"data":{}}"#);
        let r = client(&mut t)
            .send(Method::Get, "/user", None, Idempotency::Read)
            .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(t.sent.len(), 3);
        assert_eq!(t.pauses[0], Duration::from_secs(2));
        assert!(t.pauses[1] >= Duration::from_millis(250));
    }

    #[test]
    fn does_not_retry_other_statuses_or_actions() {
        for status in [400, 401, 403, 404, 500, 501] {
            let mut t = Scripted::default().reply(status, "{}");
            let r = client(&mut t)
                .send(Method::Get, "/x", None, Idempotency::Read)
                .unwrap();
            assert_eq!((r.status, t.sent.len()), (status, 1));
        }
        let mut t = Scripted::default().reply(503, "{}");
        client(&mut t)
            .send(
                Method::Post,
                "/agents/actions/disconnect",
                None,
                Idempotency::Action,
            )
            .unwrap();
        assert_eq!(t.sent.len(), 1);
    }

    #[test]
    fn gives_up_after_max_attempts_with_rate_limited() {
        let mut t = Scripted::default();
        for _ in 0..4 {
            t = t.reply_with(with_retry_after(
                429,
                "1",
                "<html><head><title>429 Too Many Requests</title></head></html>",
            ));
        }
        let err = client(&mut t)
            .read_json::<serde_json::Value>(Method::Get, "/user", None, None)
            .unwrap_err();
        assert_eq!(t.sent.len(), 4);
        assert_eq!(t.pauses.len(), 3);
        match err {
            Error::RateLimited {
                retry_after_seconds,
                message,
            } => {
                assert_eq!(retry_after_seconds, Some(1));
                assert!(message.contains("4 attempts"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn stops_early_when_retry_after_exceeds_the_budget() {
        let mut t = Scripted::default().reply_with(with_retry_after(429, "10", ""));
        let mut c = client(&mut t).with_retry(RetryPolicy {
            budget: Duration::from_secs(5),
            ..RetryPolicy::default()
        });
        let r = c
            .send(Method::Get, "/user", None, Idempotency::Read)
            .unwrap();
        assert_eq!(r.status, 429);
        assert_eq!(t.sent.len(), 1);
    }

    /// The budget counts the waits already made, through the transport's
    /// clock: 5 s + 5 s fit in 12 s, a third wait would not.
    #[test]
    fn the_budget_counts_the_waits_already_made() {
        let mut t = Scripted::default();
        for _ in 0..4 {
            t = t.reply_with(with_retry_after(429, "5", ""));
        }
        let mut c = client(&mut t).with_retry(RetryPolicy {
            budget: Duration::from_secs(12),
            ..RetryPolicy::default()
        });
        let r = c
            .send(Method::Get, "/user", None, Idempotency::Read)
            .unwrap();
        assert_eq!(r.status, 429);
        assert_eq!(t.sent.len(), 3);
        assert_eq!(t.pauses, [Duration::from_secs(5); 2]);
    }

    #[test]
    fn maps_statuses_to_error_kinds() {
        let cases = [
            (
                401,
                r#"{"errors":[{"code":4010010,"detail":null,"title":"Authentication Failed"}]}"#,
                "unauthorized",
                "Settings → My User → API Token",
            ),
            (
                403,
                r#"{"errors":[{"code":4030010,"detail":null,"title":"Insufficient permissions"}]}"#,
                "forbidden",
                "Endpoints.view",
            ),
            (
                404,
                "404 page not found\n",
                "not-found",
                "404 page not found",
            ),
            (
                500,
                "Server could not process the request.",
                "upstream",
                "HTTP 500",
            ),
            (
                501,
                r#"{"errors":[{"code":5010010,"detail":null,"title":"Not supported"}]}"#,
                "upstream",
                "Not supported",
            ),
            (302, "", "upstream", "HTTP 302"),
        ];
        for (status, body, kind, needle) in cases {
            let mut t = Scripted::default().reply(status, body);
            let err = client(&mut t)
                .read_json::<serde_json::Value>(
                    Method::Get,
                    "/agents?limit=1",
                    None,
                    Some("Endpoints.view"),
                )
                .unwrap_err();
            assert_eq!(err.kind(), kind, "{status}");
            assert!(err.message().contains(needle), "{status}: {err}");
            assert!(!err.message().contains("limit=1"), "query leaked: {err}");
        }
    }

    #[test]
    fn maps_transport_errors() {
        let cases = [
            (TransportError::Denied, "egress-denied", "network policy"),
            (
                TransportError::Dns,
                "unreachable",
                "for https://u1-s1.sentinelone.net enter u1-s1",
            ),
            (
                TransportError::DnsTimeout,
                "unreachable",
                "DNS servers did not answer",
            ),
            (TransportError::Timeout, "unreachable", "did not answer GET"),
            (
                TransportError::ConnectTimeout,
                "unreachable",
                "connection was not accepted in time",
            ),
            (
                TransportError::Connect("refused".into()),
                "unreachable",
                "refused",
            ),
            (TransportError::Tls("bad cert".into()), "unreachable", "TLS"),
            (TransportError::BodyTooLarge(1024), "upstream", "1024-byte"),
            (
                TransportError::HostRateLimit,
                "rate-limited",
                "turn for GET /web/api/v2.1/user would have come after",
            ),
            (
                TransportError::Protocol("junk".into()),
                "upstream",
                "protocol",
            ),
        ];
        for (error, kind, needle) in cases {
            let mut t = Scripted::default().fail(error);
            let err = client(&mut t)
                .send(Method::Get, "/user", None, Idempotency::Read)
                .unwrap_err();
            assert_eq!(err.kind(), kind);
            assert!(err.message().contains(needle), "{err}");
            assert_eq!(t.sent.len(), 1, "transport errors are not retried");
        }
    }

    #[test]
    fn an_unresolvable_console_of_its_own_domain_is_not_told_to_drop_a_suffix() {
        let mut t = Scripted::default().fail(TransportError::Dns);
        let err = t
            .client("edr.example.com", "tok-1234")
            .send(Method::Get, "/user", None, Idempotency::Read)
            .unwrap_err();
        assert_eq!(err.kind(), "unreachable");
        let message = err.message();
        assert!(
            message.contains("edr.example.com does not resolve"),
            "{err}"
        );
        assert!(message.contains("it is the whole hostname"), "{err}");
        assert!(
            !message.contains("edr.example.com.sentinelone.net"),
            "{err}"
        );
    }

    #[test]
    fn actions_are_resent_only_after_429() {
        let mut t = Scripted::default()
            .reply_with(with_retry_after(429, "1", ""))
            .reply(200, r#"{"data":{"affected":1}}"#);
        let r = client(&mut t)
            .send(
                Method::Post,
                "/agents/actions/disconnect",
                None,
                Idempotency::Action,
            )
            .unwrap();
        assert_eq!((r.status, t.sent.len()), (200, 2));
        for status in [500, 502, 503, 504] {
            let mut t = Scripted::default().reply(status, "");
            client(&mut t)
                .send(
                    Method::Post,
                    "/agents/actions/disconnect",
                    None,
                    Idempotency::Action,
                )
                .unwrap();
            assert_eq!(t.sent.len(), 1, "{status}");
        }
    }

    #[test]
    fn a_read_whose_connection_dropped_is_sent_again_an_action_is_not() {
        let mut t = Scripted::default()
            .fail(TransportError::ConnectionLost)
            .reply(200, "{}");
        let r = client(&mut t)
            .send(Method::Get, "/user", None, Idempotency::Read)
            .unwrap();
        assert_eq!((r.status, t.sent.len()), (200, 2));
        assert_eq!(t.pauses.len(), 1, "it backs off first");

        // Within the policy's attempts: then the failure is reported.
        let mut t = Scripted::default();
        for _ in 0..4 {
            t = t.fail(TransportError::ConnectionLost);
        }
        let err = client(&mut t)
            .send(Method::Get, "/user", None, Idempotency::Read)
            .unwrap_err();
        assert_eq!(err.kind(), "unreachable");
        assert!(
            err.message().contains(
                "The connection to u1-s1.sentinelone.net closed before the answer to GET \
                 /web/api/v2.1/user was complete"
            ),
            "{err}"
        );
        assert_eq!(t.sent.len(), 4);

        let mut t = Scripted::default().fail(TransportError::ConnectionLost);
        let failed = client(&mut t)
            .send_action("/agents/actions/disconnect", &serde_json::json!({}))
            .unwrap_err();
        assert!(!failed.never_sent, "it may have arrived");
        assert_eq!(t.sent.len(), 1, "a state change is never sent twice");
    }

    /// JSON is UTF-8; a byte a proxy garbled becomes U+FFFD when the
    /// transport makes the body text, and the rest of the answer still reads.
    #[test]
    fn a_body_that_is_not_utf8_is_read_with_the_bad_bytes_replaced() {
        let mut body = br#"{"data":[{"id":"17","computerName":"PC-"#.to_vec();
        body.extend_from_slice(&[0xff, b'1']);
        body.extend_from_slice(br#"","osName":"Win"#);
        body.push(0xfe);
        body.extend_from_slice(br#""}]}"#);
        let reply = Response {
            status: 200,
            headers: vec![],
            body: Response::text(body),
        };
        let mut t = Scripted::default().reply_with(reply);
        let value = client(&mut t)
            .read_json::<serde_json::Value>(Method::Get, "/agents?limit=1", None, None)
            .unwrap();
        assert_eq!(value["data"][0]["id"], "17");
        assert_eq!(value["data"][0]["computerName"], "PC-\u{fffd}1");
        assert_eq!(value["data"][0]["osName"], "Win\u{fffd}");
        // Valid text is kept as it came, without a copy.
        let valid = b"{\"a\":\"caf\xc3\xa9\"}".to_vec();
        let at = valid.as_ptr();
        let text = Response::text(valid);
        assert_eq!((text.as_str(), text.as_ptr()), ("{\"a\":\"café\"}", at));
    }

    #[test]
    fn query_values_are_encoded_exactly() {
        assert_eq!(encode_query_value("a b&c=d"), "a+b%26c%3Dd");
        assert_eq!(encode_query_value("100%"), "100%25");
        // A value holding an escape is not decoded: `%2C` must not become
        // a second item of a CSV filter.
        assert_eq!(encode_query_value("PC-1%2CDC-01"), "PC-1%252CDC-01");
    }

    #[test]
    fn cursors_are_encoded_once() {
        assert_eq!(encode_cursor("YWdl+bnQ/aWQ=="), "YWdl%2BbnQ%2FaWQ%3D%3D");
        assert_eq!(
            encode_cursor("YWdl%2BbnQ%2FaWQ%3D%3D"),
            "YWdl%2BbnQ%2FaWQ%3D%3D"
        );
        assert_eq!(encode_cursor("100%"), "100%25");
    }

    #[test]
    fn a_redirect_is_not_followed_and_says_where_it_pointed() {
        let mut t = Scripted::default().reply_with(Response {
            status: 302,
            headers: vec![(
                "location".into(),
                "https://login.example.com/sso?next=/web".into(),
            )],
            body: String::new(),
        });
        let err = client(&mut t)
            .read_json::<serde_json::Value>(Method::Get, "/agents?limit=1", None, None)
            .unwrap_err();
        assert_eq!(err.kind(), "upstream");
        assert_eq!(
            err.message(),
            "The console redirected GET /web/api/v2.1/agents (HTTP 302) to \
             https://login.example.com/sso?next=/web. The connector does not follow redirects, \
             so the API token is never sent anywhere else. Check the Management Hostname: it \
             must be the console's own hostname, as shown in the browser's address bar when you \
             are signed in."
        );
        assert_eq!(t.sent.len(), 1, "a redirect is not retried or followed");
    }

    #[test]
    fn malformed_json_is_upstream() {
        let mut t = Scripted::default().reply(200, "{\"data\": [");
        let err = client(&mut t)
            .read_json::<serde_json::Value>(Method::Get, "/user", None, None)
            .unwrap_err();
        assert_eq!(err.kind(), "upstream");
        assert_eq!(
            err.message(),
            "The console's answer to GET /web/api/v2.1/user was not the expected JSON (EOF \
             while parsing a list at line 1 column 10). A proxy or an incompatible console \
             version can cause this. The answer began: {\"data\": ["
        );
    }

    #[test]
    fn a_quoted_answer_ends_its_sentence_once() {
        let said = "SentinelOne answered HTTP 500 to GET /web/api/v2.1/user:";
        for (body, message) in [
            (
                "Server could not process the request.",
                format!("{said} Server could not process the request."),
            ),
            ("Bad gateway", format!("{said} Bad gateway.")),
        ] {
            let mut t = Scripted::default().reply(500, body);
            let err = client(&mut t)
                .read_json::<serde_json::Value>(Method::Get, "/user", None, None)
                .unwrap_err();
            assert_eq!(err.message(), message);
        }
    }
}
