//! When and how long to wait before retrying a read.

use core::time::Duration;

/// Bounds on retrying. Reads are retried on 429, 502, 503 and 504, and
/// when the connection drops before the answer; actions only on 429.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included.
    pub max_attempts: u32,
    /// Total time the retries of one request may take, waits included.
    pub budget: Duration,
    /// Longest wait honoured from a `Retry-After` header.
    pub retry_after_cap: Duration,
    /// First backoff when the server gave no `Retry-After`; doubles each time.
    pub base_backoff: Duration,
    /// Longest computed backoff.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            budget: Duration::from_secs(30),
            retry_after_cap: Duration::from_secs(15),
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
        }
    }
}

/// Statuses worth another try for an idempotent request.
pub fn is_retryable_status(status: u16) -> bool {
    matches!(status, 429 | 502 | 503 | 504)
}

/// A numeric `Retry-After` in whole seconds. HTTP dates and junk give `None`
/// (the caller then backs off on its own).
pub fn parse_retry_after(value: Option<&str>) -> Option<u32> {
    let v = value?.trim();
    if v.is_empty() || v.len() > 9 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1` (attempt counts from 1):
    /// the capped `Retry-After` when given, else exponential backoff with
    /// jitter drawn from `random` into [half, full] of the step.
    pub fn delay(&self, attempt: u32, retry_after: Option<u32>, random: u64) -> Duration {
        if let Some(secs) = retry_after {
            return Duration::from_secs(secs.into()).min(self.retry_after_cap);
        }
        let step = self
            .base_backoff
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(self.max_backoff);
        let half = step / 2;
        let jitter_ns = (random % (half.as_nanos() as u64 + 1)) as u32;
        half + Duration::from_nanos(jitter_ns.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_parsing() {
        assert_eq!(parse_retry_after(Some("3")), Some(3));
        assert_eq!(parse_retry_after(Some(" 120 ")), Some(120));
        assert_eq!(
            parse_retry_after(Some("Wed, 21 Oct 2015 07:28:00 GMT")),
            None
        );
        assert_eq!(parse_retry_after(Some("-1")), None);
        assert_eq!(parse_retry_after(Some("1.5")), None);
        assert_eq!(parse_retry_after(Some("99999999999999")), None);
        assert_eq!(parse_retry_after(Some("")), None);
        assert_eq!(parse_retry_after(None), None);
    }

    #[test]
    fn delays_are_capped_and_jittered() {
        let p = RetryPolicy::default();
        assert_eq!(p.delay(1, Some(2), 0), Duration::from_secs(2));
        assert_eq!(p.delay(1, Some(3600), 0), p.retry_after_cap);
        for attempt in 1..40 {
            for random in [0, 1, u64::MAX, 0x1234_5678_9abc] {
                let d = p.delay(attempt, None, random);
                assert!(d <= p.max_backoff, "{attempt} {d:?}");
                assert!(d >= p.base_backoff / 2, "{attempt} {d:?}");
            }
        }
        assert!(p.delay(3, None, 0) >= Duration::from_secs(1));
    }
}
