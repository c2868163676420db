//! The one seam between the domain logic and the network.
//!
//! The component implements [`Transport`] over `wasi:http`; unit tests
//! implement it with scripted responses. Everything above this trait is plain
//! Rust.

use alloc::{borrow::ToOwned, string::String, vec::Vec};

use core::fmt;
use core::time::Duration;

/// Largest response body the connector reads, in bytes. The host may cap
/// lower.
pub const MAX_RESPONSE_BYTES: u64 = 8 * 1024 * 1024;

/// HTTP methods the connector uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// A read.
    Get,
    /// An action or a read that needs a body.
    Post,
}

impl Method {
    /// The method's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
        }
    }
}

/// One outgoing HTTPS request to the console.
#[derive(Clone, PartialEq, Eq)]
pub struct Request {
    /// GET or POST.
    pub method: Method,
    /// The console's hostname; the scheme is always `https`.
    pub authority: String,
    /// Path and query, e.g. `/web/api/v2.1/agents?limit=1`.
    pub path_and_query: String,
    /// Header names (lower-case) and values, `authorization` included.
    pub headers: Vec<(String, String)>,
    /// A JSON body for POSTs.
    pub body: Option<Vec<u8>>,
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Headers and body can hold the token, so they are left out.
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("authority", &self.authority)
            .field("path_and_query", &self.path_and_query)
            .finish_non_exhaustive()
    }
}

/// A response with its body read (up to the transport's cap).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// Header names (lower-case) and values.
    pub headers: Vec<(String, String)>,
    /// The body, as text. JSON is UTF-8, so a transport replaces a byte that
    /// is not (a proxy or a console bug garbled it) with U+FFFD
    /// ([`Response::text`]): the rest of the answer stays readable, and the
    /// JSON reader need not check each string again.
    pub body: String,
}

impl Response {
    /// The first value of header `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// `bytes` (a body or a header value) as text, each byte that is not
    /// valid UTF-8 replaced by U+FFFD. The bytes are checked once and, when
    /// valid, kept without a copy.
    pub fn text(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }

    /// True for 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Why no response was received.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportError {
    /// The host's egress policy refused the destination.
    Denied,
    /// The hostname did not resolve.
    Dns,
    /// Looking up the hostname took longer than the connect timeout: the
    /// name servers did not answer, which says nothing about the name.
    DnsTimeout,
    /// No connection could be made: refused, no route, or a proxy that
    /// would not open a tunnel. The request did not leave.
    Connect(String),
    /// No connection was made within the connect timeout. The request did
    /// not leave.
    ConnectTimeout,
    /// The connection closed before the response was complete. The request
    /// may have reached the console.
    ConnectionLost,
    /// The first-byte or between-bytes timeout expired: the request went
    /// out, and the console may have acted on it.
    Timeout,
    /// The TLS handshake failed (certificate, protocol). The request did not
    /// leave.
    Tls(String),
    /// The response body exceeded the cap, in bytes.
    BodyTooLarge(u64),
    /// The host paces this tenant's requests to the console, and the
    /// request's turn would have come after the call's deadline. Nothing
    /// was sent.
    HostRateLimit,
    /// The peer broke the HTTP protocol.
    Protocol(String),
    /// Anything else the transport reported.
    Other(String),
}

impl TransportError {
    /// True when the failure proves the request never reached the console,
    /// so a state change it asked for cannot have happened. False when it
    /// may have arrived (a timeout after sending, a dropped connection, a
    /// broken answer) or nothing is known.
    pub fn never_sent(&self) -> bool {
        matches!(
            self,
            TransportError::Denied
                | TransportError::Dns
                | TransportError::DnsTimeout
                | TransportError::Connect(_)
                | TransportError::ConnectTimeout
                | TransportError::Tls(_)
                | TransportError::HostRateLimit
        )
    }

    /// What a failure while reading a response body was, from its text.
    ///
    /// wasmtime-wasi-http 48 keeps body errors as its own error type, so
    /// `wasi:http`'s `http-error-code` cannot recover a code for them and
    /// the text is all the guest gets. Its wording is wasmtime's `Display`
    /// of that type ("connection terminated", "connection read timeout",
    /// "HTTP response body size exceeds limit: N bytes"); anything else is
    /// taken for a broken answer.
    pub fn from_body_failure(text: &str) -> TransportError {
        let lower = text.to_ascii_lowercase();
        if lower.contains("body size exceeds limit") {
            let limit = lower
                .split("limit: ")
                .nth(1)
                .and_then(|rest| rest.split(' ').next())
                .and_then(|n| n.parse().ok());
            return TransportError::BodyTooLarge(limit.unwrap_or(MAX_RESPONSE_BYTES));
        }
        if lower.contains("timeout") || lower.contains("timed out") {
            return TransportError::Timeout;
        }
        if lower.contains("connection terminated") {
            return TransportError::ConnectionLost;
        }
        TransportError::Protocol(text.to_owned())
    }
}

/// Sends requests and waits between retries.
pub trait Transport {
    /// Sends `request` and returns the response with its body read.
    fn send(&mut self, request: &Request) -> Result<Response, TransportError>;

    /// Waits `duration` before a retry.
    fn pause(&mut self, duration: Duration);

    /// Monotonic time since an arbitrary origin, for deadlines that must
    /// count the time spent in [`Transport::send`] and [`Transport::pause`].
    fn now(&mut self) -> Duration;

    /// A random number, for retry jitter.
    fn random(&mut self) -> u64;
}

#[cfg(test)]
pub(crate) mod testing {
    //! A scripted transport for unit tests.

    use super::*;
    use crate::api::Client;
    use crate::console::Console;
    use crate::token::ApiToken;
    use alloc::collections::VecDeque;

    /// Answers requests from a queue and records what was sent.
    #[derive(Default)]
    pub struct Scripted {
        pub replies: VecDeque<Result<Response, TransportError>>,
        pub sent: Vec<Request>,
        pub pauses: Vec<Duration>,
    }

    impl Scripted {
        pub fn reply(mut self, status: u16, body: &str) -> Self {
            self.replies.push_back(Ok(Response {
                status,
                headers: vec![("content-type".into(), "application/json".into())],
                body: body.into(),
            }));
            self
        }

        pub fn reply_with(mut self, response: Response) -> Self {
            self.replies.push_back(Ok(response));
            self
        }

        pub fn fail(mut self, error: TransportError) -> Self {
            self.replies.push_back(Err(error));
            self
        }

        /// A client of `console` with `token`, sending through this transport.
        pub fn client(&mut self, console: &str, token: &str) -> Client<'_, Scripted> {
            Client::new(
                Console::parse(console).unwrap(),
                ApiToken::parse(token).unwrap(),
                self,
            )
        }

        pub fn paths(&self) -> Vec<String> {
            self.sent
                .iter()
                .map(|r| format!("{} {}", r.method.as_str(), r.path_and_query))
                .collect()
        }
    }

    impl Transport for Scripted {
        fn send(&mut self, request: &Request) -> Result<Response, TransportError> {
            self.sent.push(request.clone());
            self.replies
                .pop_front()
                .unwrap_or_else(|| panic!("no scripted reply for {request:?}"))
        }

        fn pause(&mut self, duration: Duration) {
            self.pauses.push(duration);
        }

        /// Time passes only while the connector pauses.
        fn now(&mut self) -> Duration {
            self.pauses.iter().sum()
        }

        fn random(&mut self) -> u64 {
            0x9e37_79b9_7f4a_7c15
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_failure_is_named_from_wasmtimes_wording() {
        let read = TransportError::from_body_failure;
        assert_eq!(
            read("connection terminated"),
            TransportError::ConnectionLost
        );
        assert_eq!(read("connection read timeout"), TransportError::Timeout);
        assert_eq!(
            read("HTTP response body size exceeds limit: 4096 bytes"),
            TransportError::BodyTooLarge(4096)
        );
        assert_eq!(
            read("HTTP response body size exceeds limit"),
            TransportError::BodyTooLarge(MAX_RESPONSE_BYTES)
        );
        // hyper's own wording says nothing about why; it stays a broken
        // answer, never a retried one.
        assert_eq!(
            read("hyper error: error reading a body from connection"),
            TransportError::Protocol("hyper error: error reading a body from connection".into())
        );
    }
}
