//! One audit record per outgoing request, with secrets redacted.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::redact::Secret;
use crate::text::shorten;

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
    /// From sending to the end of the response body (or the failure), in
    /// ms; 0 for a request that ended while waiting for its turn.
    pub duration_ms: u64,
    /// How long the request waited for its tenant's turn before it was
    /// sent (`CallPolicy::request_rate`), or until it ended if it never was,
    /// in ms; not part of `duration_ms`.
    pub waited_ms: u64,
    /// `ok`, `denied: <why>` (including `denied: paced: ...` for a request
    /// whose turn would have come after the call's deadline), or what went wrong: `timeout`,
    /// `body-too-large`, `request-body-too-large`, `error: <what>`,
    /// `abandoned` (the connector dropped the request or its body before
    /// the end), or `cut-off` (the call ended while the request was in
    /// flight: its deadline, CPU budget or a trap, or the embedder dropped
    /// the call).
    pub outcome: String,
}

/// The records of one call, shared between the hooks and the response
/// bodies. Every record is redacted as it is stored, and has a
/// `connector_request` span, a child of the call's, in which its
/// completion is traced once: whatever finishes a record first decides its
/// outcome, and [`AuditLog::close`] finishes any still open when the call
/// ends.
#[derive(Debug, Clone, Default)]
pub(crate) struct AuditLog {
    entries: Arc<Mutex<Vec<Entry>>>,
    secret: Secret,
}

#[derive(Debug)]
struct Entry {
    record: AuditRecord,
    span: tracing::Span,
    /// When the record's current phase began: its wait for a turn, then
    /// its exchange.
    started: Instant,
    waiting: bool,
    finished: bool,
}

impl AuditLog {
    /// An empty log that keeps `secret` out of its records.
    pub(crate) fn new(secret: Secret) -> AuditLog {
        AuditLog {
            entries: Arc::default(),
            secret,
        }
    }

    /// Adds a record still in progress, opening its span inside the current
    /// one, and returns its index for [`AuditLog::finish`].
    pub(crate) fn push(&self, mut record: AuditRecord) -> usize {
        self.redact(&mut record);
        let span = tracing::info_span!(
            "connector_request",
            method = %record.method,
            host = %record.host,
            path = %record.path,
        );
        let mut entries = self.lock();
        entries.push(Entry {
            record,
            span,
            started: Instant::now(),
            waiting: false,
            finished: false,
        });
        entries.len() - 1
    }

    /// Record `index` now waits for its tenant's turn: time from here on
    /// counts as `waited_ms` until [`AuditLog::sending`].
    pub(crate) fn waiting(&self, index: usize) {
        if let Some(entry) = self.lock().get_mut(index).filter(|e| !e.finished) {
            entry.waiting = true;
            entry.started = Instant::now();
        }
    }

    /// Record `index`'s turn has come: its wait ends, and its
    /// `duration_ms` counts from here.
    pub(crate) fn sending(&self, index: usize) {
        if let Some(entry) = self.lock().get_mut(index).filter(|e| !e.finished) {
            entry.stop_clock();
            entry.waiting = false;
            entry.started = Instant::now();
        }
    }

    /// The span of record `index`, to run the request in.
    pub(crate) fn span(&self, index: usize) -> tracing::Span {
        self.lock()
            .get(index)
            .map_or_else(tracing::Span::none, |e| e.span.clone())
    }

    /// Adds a finished record, and traces it.
    pub(crate) fn record(&self, record: AuditRecord) {
        let index = self.push(record);
        self.finish(index, |_| {});
    }

    /// Changes record `index` in place while it is open: its status, size
    /// or outcome (the request line was redacted when it was pushed).
    pub(crate) fn update(&self, index: usize, f: impl FnOnce(&mut AuditRecord)) {
        self.change(index, f, false);
    }

    /// Completes record `index` as [`AuditLog::update`] does, times it,
    /// and traces it. A record already finished keeps its outcome.
    pub(crate) fn finish(&self, index: usize, f: impl FnOnce(&mut AuditRecord)) {
        self.change(index, f, true);
    }

    /// Finishes every record still open as `cut-off`, timed to now: the
    /// call has ended, so no response will complete them. Without this a
    /// request stopped by the deadline would read `pending` for ever and
    /// never be traced.
    pub(crate) fn close(&self) {
        for entry in self.lock().iter_mut().filter(|e| !e.finished) {
            entry.record.outcome = "cut-off".into();
            entry.finish();
        }
    }

    fn change(&self, index: usize, f: impl FnOnce(&mut AuditRecord), finish: bool) {
        let mut entries = self.lock();
        let Some(entry) = entries.get_mut(index).filter(|e| !e.finished) else {
            return;
        };
        f(&mut entry.record);
        self.secret.redact_message(&mut entry.record.outcome);
        if finish {
            entry.finish();
        }
    }

    /// A copy of every record so far.
    pub(crate) fn snapshot(&self) -> Vec<AuditRecord> {
        self.lock().iter().map(|e| e.record.clone()).collect()
    }

    /// The secret this log keeps out, for the call's errors.
    pub(crate) fn secret(&self) -> &Secret {
        &self.secret
    }

    fn redact(&self, record: &mut AuditRecord) {
        // The guest chose all of these, and may have cut the token short.
        for text in [
            &mut record.method,
            &mut record.host,
            &mut record.path,
            &mut record.outcome,
        ] {
            self.secret.redact_message(text);
        }
        record.path = redact_path(&record.path);
        // The guest chooses these; a log line should not be 64 KiB long.
        for text in [&mut record.method, &mut record.host, &mut record.path] {
            shorten(text, MAX_FIELD);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Entry {
    /// Ends the current phase: the wait for a turn, or the exchange.
    fn stop_clock(&mut self) {
        let ms = millis(self.started.elapsed());
        if self.waiting {
            self.record.waited_ms = ms;
        } else {
            self.record.duration_ms = ms;
        }
    }

    fn finish(&mut self) {
        self.stop_clock();
        self.finished = true;
        let _inside = self.span.enter();
        trace(&self.record);
    }
}

/// One `tracing` event per finished request, in its span.
fn trace(record: &AuditRecord) {
    tracing::info!(
        target: "connector_host::audit",
        method = %record.method,
        host = %record.host,
        path = %record.path,
        status = record.status,
        bytes = record.bytes,
        duration_ms = record.duration_ms,
        waited_ms = record.waited_ms,
        outcome = %record.outcome,
        "request"
    );
}

/// The most of a method, host or path an audit record keeps.
const MAX_FIELD: usize = 2048;

/// Milliseconds, saturating.
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `path` with the values of token-like query parameters replaced by
/// `[REDACTED]`.
fn redact_path(path: &str) -> String {
    let Some((base, query)) = path.split_once('?') else {
        return path.to_owned();
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

    fn record(method: &str, host: &str, path: &str) -> AuditRecord {
        AuditRecord {
            method: method.into(),
            host: host.into(),
            path: path.into(),
            status: None,
            bytes: 0,
            duration_ms: 0,
            waited_ms: 0,
            outcome: "pending".into(),
        }
    }

    #[test]
    fn a_wait_for_a_turn_is_timed_apart_from_the_exchange() {
        let pause = || std::thread::sleep(Duration::from_millis(30));
        let log = AuditLog::new(Secret::new(None));
        let sent = log.push(record("GET", "h", "/a"));
        log.waiting(sent);
        pause();
        log.sending(sent);
        pause();
        log.finish(sent, |r| r.outcome = "ok".into());

        // Cut off before its turn came: all wait, no exchange.
        let unsent = log.push(record("GET", "h", "/b"));
        log.waiting(unsent);
        pause();
        log.close();

        let records = log.snapshot();
        assert!(records[0].waited_ms >= 30, "{:?}", records[0]);
        assert!(records[0].duration_ms >= 30, "{:?}", records[0]);
        assert_eq!(records[1].outcome, "cut-off");
        assert!(records[1].waited_ms >= 30, "{:?}", records[1]);
        assert_eq!(records[1].duration_ms, 0, "it was never sent");
    }

    #[test]
    fn redacts_the_secret_everywhere_and_token_params() {
        let log = AuditLog::new(Secret::new(Some(" s3cr3t-token ")));
        let index = log.push(record(
            "s3cr3t-token",
            "s3cr3t-token.example.com",
            "/a/s3cr3t-token?APIToken=s3cr3t-token&limit=1&apiToken=other",
        ));
        log.finish(index, |r| r.outcome = "failed: s3cr3t-token".into());
        assert_eq!(
            log.snapshot(),
            [AuditRecord {
                outcome: "failed: [REDACTED]".into(),
                ..record(
                    "[REDACTED]",
                    "[REDACTED].example.com",
                    "/a/[REDACTED]?APIToken=[REDACTED]&limit=1&apiToken=[REDACTED]"
                )
            }]
        );
        let plain = AuditLog::new(Secret::new(None));
        plain.record(record("GET", "h", "/web/api/v2.1/user"));
        assert_eq!(plain.snapshot()[0].path, "/web/api/v2.1/user");
    }

    #[test]
    fn long_request_lines_are_shortened_after_redaction() {
        let log = AuditLog::new(Secret::new(Some("s3cr3t-token")));
        let long = format!("/{}é?apiToken=s3cr3t-token", "a".repeat(MAX_FIELD - 2));
        log.record(record("GET", "h", &long));
        let path = &log.snapshot()[0].path;
        assert_eq!(
            *path,
            format!("/{}…[22 more bytes]", "a".repeat(MAX_FIELD - 2)),
            "cut before the 'é' that straddles the limit"
        );
        assert!(!path.contains("s3cr3t"));
    }

    #[test]
    fn a_record_is_finished_once_and_closing_cuts_off_the_open_ones() {
        let log = AuditLog::new(Secret::new(None));
        let done = log.push(record("GET", "h", "/a"));
        let open = log.push(record("POST", "h", "/b"));
        log.finish(done, |r| r.outcome = "ok".into());
        // What finishes second (a body dropped after its end) changes nothing.
        log.finish(done, |r| r.outcome = "abandoned".into());
        log.update(done, |r| r.status = Some(500));
        log.update(open, |r| r.status = Some(200));
        std::thread::sleep(Duration::from_millis(20));
        log.close();
        log.finish(open, |r| r.outcome = "ok".into());

        let records = log.snapshot();
        assert_eq!(
            (records[0].outcome.as_str(), records[0].status),
            ("ok", None)
        );
        assert_eq!(
            (records[1].outcome.as_str(), records[1].status),
            ("cut-off", Some(200))
        );
        assert!(records[1].duration_ms >= 20, "{:?}", records[1]);
    }
}
