//! One audit record per outgoing request, with secrets redacted.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

/// What happened to one request the connector made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    /// HTTP method.
    pub method: String,
    /// The hostname the connector asked for (before any test re-routing).
    pub host: String,
    /// Path and query, with the API token and token-like parameters redacted.
    pub path: String,
    /// The response status, when one arrived.
    pub status: Option<u16>,
    /// Response body bytes delivered to the connector.
    pub bytes: u64,
    /// From sending to the end of the response body (or the failure), in ms.
    pub duration_ms: u64,
    /// `ok`, `denied`, or what went wrong (`timeout`, `body-too-large`, ...).
    pub outcome: String,
}

/// The records of one call, shared between the hooks and the response bodies.
#[derive(Debug, Clone, Default)]
pub(crate) struct AuditLog(Arc<Mutex<Vec<AuditRecord>>>);

impl AuditLog {
    /// Adds a record and returns its index for later updates.
    pub(crate) fn push(&self, record: AuditRecord) -> usize {
        let mut records = self.0.lock().unwrap_or_else(|e| e.into_inner());
        records.push(record);
        records.len() - 1
    }

    /// Changes record `index` in place.
    pub(crate) fn update(&self, index: usize, f: impl FnOnce(&mut AuditRecord)) {
        let mut records = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(record) = records.get_mut(index) {
            f(record);
        }
    }

    /// A copy of every record so far.
    pub(crate) fn snapshot(&self) -> Vec<AuditRecord> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Milliseconds, saturating.
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `path` with `secret` and the values of token-like query parameters
/// replaced by `[REDACTED]`.
pub(crate) fn redact_path(path: &str, secret: Option<&str>) -> String {
    let path = match secret {
        // Short values are not tokens the connector accepts; replacing them
        // would only mangle the path.
        Some(s) if s.len() >= 8 => path.replace(s, "[REDACTED]"),
        _ => path.to_owned(),
    };
    let Some((base, query)) = path.split_once('?') else {
        return path;
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if is_secret_param(k) => format!("{k}=[REDACTED]"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{base}?{}", query.join("&"))
}

fn is_secret_param(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["token", "apikey", "api_key", "password", "secret"]
        .iter()
        .any(|s| name.contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_secret_and_token_params() {
        assert_eq!(
            redact_path(
                "/a/s3cr3t-token?APIToken=s3cr3t-token&limit=1&apiToken=other",
                Some("s3cr3t-token")
            ),
            "/a/[REDACTED]?APIToken=[REDACTED]&limit=1&apiToken=[REDACTED]"
        );
        assert_eq!(
            redact_path("/web/api/v2.1/user", None),
            "/web/api/v2.1/user"
        );
    }
}
