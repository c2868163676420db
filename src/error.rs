//! The connector's error type, one variant per WIT `connector-error` case.

use alloc::{string::String, vec::Vec};

use core::fmt;

/// Why a connector call failed.
///
/// Every message is written for the security admin who owns the connection:
/// it says what is wrong and how to fix it. Converted to the WIT
/// `connector-error` at the component boundary, where the API token is
/// scrubbed from it once more.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A connection value is malformed or not allowed. Nothing was sent.
    InvalidConfig(String),
    /// The console rejected the token (HTTP 401).
    Unauthorized(String),
    /// The token's role lacks a permission (HTTP 403).
    Forbidden(String),
    /// The requested thing does not exist (HTTP 404 or an empty result).
    NotFound(String),
    /// HTTP 429 persisted through the bounded retries.
    RateLimited {
        /// What happened and what to do.
        message: String,
        /// The console's numeric `Retry-After`, in seconds, when it sent one.
        retry_after_seconds: Option<u32>,
    },
    /// DNS, connect, TLS or timeout failure, or a connection that closed
    /// before the answer was complete.
    Unreachable(String),
    /// The embedding host's egress policy refused the destination.
    EgressDenied(String),
    /// An unexpected status or an unreadable body.
    Upstream(String),
    /// A host selector matched several agents; nothing was changed.
    Ambiguous {
        /// What happened and what to do.
        message: String,
        /// Every matching agent.
        candidates: Vec<crate::hosts::Host>,
    },
    /// The host is protected from isolation; nothing was sent.
    ProtectedHost(String),
}

/// The message field of an [`Error`], shared or mutable as `$error` is.
macro_rules! message_of {
    ($error:expr) => {
        match $error {
            Error::InvalidConfig(m)
            | Error::Unauthorized(m)
            | Error::Forbidden(m)
            | Error::NotFound(m)
            | Error::Unreachable(m)
            | Error::EgressDenied(m)
            | Error::Upstream(m)
            | Error::ProtectedHost(m) => m,
            Error::RateLimited { message, .. } | Error::Ambiguous { message, .. } => message,
        }
    };
}

impl Error {
    /// The WIT case name, e.g. `invalid-config`.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::InvalidConfig(_) => "invalid-config",
            Error::Unauthorized(_) => "unauthorized",
            Error::Forbidden(_) => "forbidden",
            Error::NotFound(_) => "not-found",
            Error::RateLimited { .. } => "rate-limited",
            Error::Unreachable(_) => "unreachable",
            Error::EgressDenied(_) => "egress-denied",
            Error::Upstream(_) => "upstream",
            Error::Ambiguous { .. } => "ambiguous",
            Error::ProtectedHost(_) => "protected-host",
        }
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        message_of!(self)
    }

    /// The message, to rewrite in place (used to redact).
    pub fn message_mut(&mut self) -> &mut String {
        message_of!(self)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind(), self.message())
    }
}

impl core::error::Error for Error {}

/// Shorthand for results whose error is [`Error`].
pub type Result<T, E = Error> = core::result::Result<T, E>;
