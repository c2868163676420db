//! Keeping the call's API token out of everything the host hands back.
//!
//! A guest may put the token anywhere in a request (the host name, the
//! user-info, the method), percent-encoded or not, and a console may echo
//! it back into the text a connector returns. The built-in connector scrubs
//! its own results; the host does it again for every connector, so that a
//! buggy one cannot put the token into an audit record, a log line or a
//! SOAR case record either. The host finds the token in any letter case
//! (its audit records lowercase host names) and with any of its bytes
//! percent-encoded.

use std::sync::Arc;

use serde_json::Value;

use crate::error::HostError;
use crate::runtime::{
    ActionOutcome, ConnectionReport, ConnectorError, Host, PermissionCheck, Threat, ThreatPage,
};

/// What stands where the token stood.
const REDACTED: &str = "[REDACTED]";

/// The call's API token, as something to remove from text.
#[derive(Debug, Clone, Default)]
pub(crate) struct Secret(Option<Arc<str>>);

impl Secret {
    /// Short values are not tokens the connector accepts; replacing them
    /// would only mangle ordinary text.
    const MIN_LEN: usize = 8;

    /// The secret `token` (trimmed, as the connector uses it), or none.
    pub(crate) fn new(token: Option<&str>) -> Secret {
        Secret(
            token
                .map(str::trim)
                .filter(|t| t.len() >= Secret::MIN_LEN)
                .map(Arc::from),
        )
    }

    /// Whether `text` holds the secret, spelt any way [`spellings`] finds.
    fn is_in(&self, text: &str) -> bool {
        self.0
            .as_deref()
            .is_some_and(|s| !spellings(text.as_bytes(), s.as_bytes()).is_empty())
    }

    /// `text` with every spelling of the secret replaced by `[REDACTED]`.
    pub(crate) fn redact(&self, text: &str) -> String {
        let mut text = text.to_owned();
        self.redact_in_place(&mut text);
        text
    }

    /// Like [`Secret::redact`], without allocating when there is nothing to do.
    pub(crate) fn redact_in_place(&self, text: &mut String) {
        let Some(secret) = self.0.as_deref() else {
            return;
        };
        let found = spellings(text.as_bytes(), secret.as_bytes());
        if found.is_empty() {
            return;
        }
        let mut out = Vec::with_capacity(text.len());
        let mut done = 0;
        for range in found {
            out.extend_from_slice(&text.as_bytes()[done..range.start]);
            out.extend_from_slice(REDACTED.as_bytes());
            done = range.end;
        }
        out.extend_from_slice(&text.as_bytes()[done..]);
        // Every spelling starts and ends on a character boundary (it begins
        // with the secret's first character or a `%`, and ends after its
        // last character or an escape), so this is never lossy.
        *text = String::from_utf8(out)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
    }
}

/// Each place `secret` is spelt in `text`, as byte ranges in order: in any
/// ASCII letter case, and with any of its bytes percent-encoded (`%41` or
/// `%61` for `A`). A guest's request line may carry it either way: the
/// audit lowercases host names (as DNS ignores case), and a query or path
/// may be percent-encoded. A random token of at least [`Secret::MIN_LEN`]
/// characters does not occur in ordinary text in another case by chance.
fn spellings(text: &[u8], secret: &[u8]) -> Vec<std::ops::Range<usize>> {
    let mut found = Vec::new();
    let Some(&first) = secret.first() else {
        return found;
    };
    // Only where the first byte could start a spelling (a threat page's
    // raw JSON runs to megabytes, and is searched for every call).
    let (lower, upper) = (first.to_ascii_lowercase(), first.to_ascii_uppercase());
    let mut done = 0;
    for at in memchr::memchr3_iter(lower, upper, b'%', text) {
        if at >= done
            && let Some(end) = spelt_at(text, at, secret)
        {
            found.push(at..end);
            done = end;
        }
    }
    found
}

/// Where a spelling of `secret` that starts at `text[at]` ends, if one does.
fn spelt_at(text: &[u8], mut at: usize, secret: &[u8]) -> Option<usize> {
    for &want in secret {
        let here = *text.get(at)?;
        at += if here.eq_ignore_ascii_case(&want) {
            1
        } else if here == b'%'
            && percent_decoded(text.get(at + 1..at + 3)?)?.eq_ignore_ascii_case(&want)
        {
            3
        } else {
            return None;
        };
    }
    Some(at)
}

/// The byte two hex digits stand for.
fn percent_decoded(hex: &[u8]) -> Option<u8> {
    let digit = |b: &u8| char::from(*b).to_digit(16);
    let (high, low) = (digit(hex.first()?)?, digit(hex.get(1)?)?);
    u8::try_from(high * 16 + low).ok()
}

/// A value the token can be removed from.
pub(crate) trait Redact {
    /// Replaces every occurrence of `secret` in the value's text.
    fn redact(&mut self, secret: &Secret);
}

impl Redact for String {
    fn redact(&mut self, secret: &Secret) {
        secret.redact_in_place(self);
    }
}

impl<T: Redact> Redact for Option<T> {
    fn redact(&mut self, secret: &Secret) {
        if let Some(v) = self {
            v.redact(secret);
        }
    }
}

impl<T: Redact> Redact for Vec<T> {
    fn redact(&mut self, secret: &Secret) {
        for v in self {
            v.redact(secret);
        }
    }
}

impl<T: Redact, E: Redact> Redact for Result<T, E> {
    fn redact(&mut self, secret: &Secret) {
        match self {
            Ok(v) => v.redact(secret),
            Err(e) => e.redact(secret),
        }
    }
}

impl Redact for HostError {
    /// A guest chooses the destinations and the trap causes that the text
    /// quotes.
    fn redact(&mut self, secret: &Secret) {
        if let Some(text) = self.text_mut() {
            text.redact(secret);
        }
    }
}

impl Redact for ConnectorError {
    fn redact(&mut self, secret: &Secret) {
        self.message_mut().redact(secret);
        if let ConnectorError::Ambiguous(a) = self {
            a.candidates.redact(secret);
        }
    }
}

// Each impl below names every field of its record, with no `..`: a field
// added to the WIT contract does not compile until it is redacted here or
// marked as holding no text.

impl Redact for Host {
    fn redact(&mut self, secret: &Secret) {
        let Host {
            agent_id,
            uuid,
            hostname,
            site,
            account,
            os,
            ip_addresses,
            last_active,
            active: _,
            network_state: _,
        } = self;
        for text in [agent_id, uuid, hostname, site, account, os] {
            text.redact(secret);
        }
        ip_addresses.redact(secret);
        last_active.redact(secret);
    }
}

impl Redact for ActionOutcome {
    fn redact(&mut self, secret: &Secret) {
        let ActionOutcome {
            host,
            changed: _,
            network_state: _,
            detail,
        } = self;
        host.redact(secret);
        detail.redact(secret);
    }
}

impl Redact for PermissionCheck {
    fn redact(&mut self, secret: &Secret) {
        let PermissionCheck {
            permission,
            needed_for,
            state: _,
            detail,
        } = self;
        for text in [permission, needed_for, detail] {
            text.redact(secret);
        }
    }
}

impl Redact for ConnectionReport {
    fn redact(&mut self, secret: &Secret) {
        let ConnectionReport {
            console_url,
            token_expires_at,
            token_days_left: _,
            user,
            role,
            scope,
            permissions,
            warnings,
        } = self;
        console_url.redact(secret);
        for text in [token_expires_at, user, role, scope] {
            text.redact(secret);
        }
        permissions.redact(secret);
        warnings.redact(secret);
    }
}

impl Redact for ThreatPage {
    fn redact(&mut self, secret: &Secret) {
        let ThreatPage {
            threats,
            checkpoint,
            more: _,
            warnings,
        } = self;
        threats.redact(secret);
        checkpoint.redact(secret);
        warnings.redact(secret);
    }
}

impl Redact for Threat {
    fn redact(&mut self, secret: &Secret) {
        let Threat {
            id,
            name,
            classification,
            confidence,
            analyst_verdict,
            incident_status,
            mitigation_status,
            agent_id,
            hostname,
            site,
            account,
            created_at,
            updated_at,
            raw,
        } = self;
        for text in [
            id,
            name,
            classification,
            confidence,
            analyst_verdict,
            incident_status,
            mitigation_status,
            agent_id,
            hostname,
            site,
            account,
        ] {
            text.redact(secret);
        }
        created_at.redact(secret);
        updated_at.redact(secret);
        redact_json(raw, secret);
    }
}

/// Redacts JSON text as its readers will see it: a string may spell the
/// token with escapes (`\u0041`), which a search of the text misses. Such
/// text is decoded, and rewritten from its decoded value only when that
/// holds the token; the rest stays byte for byte.
fn redact_json(raw: &mut String, secret: &Secret) {
    let escaped = raw.contains("\\u") || raw.contains("\\/");
    if secret.0.is_none() || (!escaped && !secret.is_in(raw)) {
        return;
    }
    if let Ok(mut value) = serde_json::from_str::<Value>(raw)
        && redact_value(&mut value, secret)
    {
        *raw = value.to_string();
    }
    // The token outside any string (broken JSON) is still removed.
    raw.redact(secret);
}

/// Redacts every string and key in `value`; true when any held the token.
fn redact_value(value: &mut Value, secret: &Secret) -> bool {
    match value {
        Value::String(s) => {
            let had = secret.is_in(s);
            s.redact(secret);
            had
        }
        Value::Array(items) => items
            .iter_mut()
            .fold(false, |had, v| redact_value(v, secret) | had),
        Value::Object(map) => {
            let keyed = map.keys().any(|k| secret.is_in(k));
            if keyed {
                *map = std::mem::take(map)
                    .into_iter()
                    .map(|(k, v)| (secret.redact(&k), v))
                    .collect();
            }
            map.values_mut()
                .fold(keyed, |had, v| redact_value(v, secret) | had)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0.c2ln";

    fn threat(raw: &str) -> Threat {
        Threat {
            id: "1".into(),
            name: format!("payload {TOKEN}"),
            classification: String::new(),
            confidence: String::new(),
            analyst_verdict: String::new(),
            incident_status: String::new(),
            mitigation_status: String::new(),
            agent_id: String::new(),
            hostname: String::new(),
            site: String::new(),
            account: String::new(),
            created_at: Some(TOKEN.into()),
            updated_at: None,
            raw: raw.into(),
        }
    }

    #[test]
    fn a_threat_loses_the_token_in_its_fields_and_however_its_raw_json_spells_it() {
        let secret = Secret::new(Some(TOKEN));
        let spelt: String = TOKEN
            .chars()
            .map(|c| format!("\\u{:04x}", u32::from(c)))
            .collect();
        for raw in [
            format!(r#"{{"n":"{TOKEN}","k":[1.5]}}"#),
            format!(r#"{{"n":"x{spelt}"}}"#),
            format!(r#"{{"{spelt}":{{"deep":"{TOKEN}"}}}}"#),
        ] {
            let mut t = threat(&raw);
            t.redact(&secret);
            assert_eq!(t.name, "payload [REDACTED]");
            assert_eq!(t.created_at.as_deref(), Some("[REDACTED]"));
            let decoded: Value = serde_json::from_str(&t.raw).expect("still JSON");
            assert!(!decoded.to_string().contains(TOKEN), "{raw} -> {}", t.raw);
            assert!(t.raw.contains("[REDACTED]"), "{raw} -> {}", t.raw);
        }
    }

    #[test]
    fn raw_json_without_the_token_stays_byte_for_byte() {
        let raw = r#"{"z":1.50,"a":"C:\\Users","u":"caf\u00e9"}"#;
        let mut t = threat(raw);
        t.redact(&Secret::new(Some(TOKEN)));
        assert_eq!(t.raw, raw);
    }

    #[test]
    fn an_ambiguous_error_loses_the_token_in_its_candidates() {
        let host = Host {
            agent_id: "1".into(),
            uuid: "u".into(),
            hostname: format!("PC-{TOKEN}"),
            site: String::new(),
            account: String::new(),
            os: String::new(),
            ip_addresses: vec![],
            last_active: None,
            active: true,
            network_state: crate::runtime::NetworkState::Connected,
        };
        let mut err = ConnectorError::Ambiguous(crate::runtime::AmbiguousHosts {
            message: format!("two: {TOKEN}"),
            candidates: vec![host],
        });
        err.redact(&Secret::new(Some(TOKEN)));
        assert!(!format!("{err:?}").contains(TOKEN), "{err:?}");
    }

    #[test]
    fn the_token_is_found_in_any_letter_case_and_percent_encoded() {
        let secret = Secret::new(Some("AbCd-1234_eFgH"));
        let all_encoded: String = "AbCd-1234_eFgH"
            .bytes()
            .map(|b| format!("%{b:02X}"))
            .collect();
        for (text, redacted) in [
            (
                "abcd-1234_efgh.sentinelone.net",
                "[REDACTED].sentinelone.net",
            ),
            ("/x?q=%41b%43d-1234%5feF%67H&y=1", "/x?q=[REDACTED]&y=1"),
            (
                &format!("/{all_encoded}/{all_encoded}"),
                "/[REDACTED]/[REDACTED]",
            ),
            ("ABCD-1234_EFGH", "[REDACTED]"),
            // Ordinary text, `%` signs and near misses stay as they are.
            ("100% done, 50%off", "100% done, 50%off"),
            ("AbCd-1234_eFg", "AbCd-1234_eFg"),
            ("AbCd-1234%5_eFgH", "AbCd-1234%5_eFgH"),
            ("café AbCd-1234_eFgH é", "café [REDACTED] é"),
        ] {
            assert_eq!(secret.redact(text), redacted, "{text}");
            assert_eq!(secret.is_in(text), text != redacted, "{text}");
        }
    }

    #[test]
    fn a_short_value_is_no_secret() {
        assert_eq!(Secret::new(Some("abc")).redact("abc abc"), "abc abc");
    }
}
