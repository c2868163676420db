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

/// The call's API token, as something to remove from text. `Debug` never
/// shows it.
#[derive(Clone, Default)]
pub(crate) struct Secret(Option<Arc<Token>>);

/// The token, and the index of its runs that messages are searched for.
struct Token {
    text: Box<str>,
    parts: token_redact::Parts,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = if self.0.is_some() {
            "[REDACTED]"
        } else {
            "none"
        };
        write!(f, "Secret({shown})")
    }
}

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
                .map(|t| {
                    Arc::new(Token {
                        text: t.into(),
                        parts: token_redact::Parts::new(t),
                    })
                }),
        )
    }

    fn text(&self) -> Option<&str> {
        self.0.as_deref().map(|t| &*t.text)
    }

    /// Whether `text` holds the secret, spelt any way [`token_redact::redact`]
    /// finds: any letter case, bytes percent-encoded.
    fn is_in(&self, text: &str) -> bool {
        self.text().is_some_and(|s| token_redact::holds(text, s))
    }

    /// `text` with every spelling of the secret replaced by `[REDACTED]`.
    pub(crate) fn redact(&self, text: &str) -> String {
        let mut text = text.to_owned();
        self.redact_in_place(&mut text);
        text
    }

    /// Like [`Secret::redact`], without allocating when there is nothing to
    /// do; true when `text` held the secret.
    pub(crate) fn redact_in_place(&self, text: &mut String) -> bool {
        match self.text().and_then(|s| token_redact::redact(text, s)) {
            Some(redacted) => {
                *text = redacted;
                true
            }
            None => false,
        }
    }

    /// Like [`Secret::redact_in_place`], and also every run of
    /// [`token_redact::PART`] or more of the secret's characters: for
    /// messages, which may quote a value cut short.
    pub(crate) fn redact_message(&self, text: &mut String) {
        self.redact_in_place(text);
        if let Some(redacted) = self.0.as_deref().and_then(|t| t.parts.redact(text)) {
            *text = redacted;
        }
    }
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
            secret.redact_message(text);
        }
    }
}

impl Redact for ConnectorError {
    fn redact(&mut self, secret: &Secret) {
        secret.redact_message(self.message_mut());
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
        Value::String(s) => secret.redact_in_place(s),
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

    /// A struct holding the secret (the audit log does) may be printed with
    /// `{:?}` in a log line or a panic; the secret must not be.
    #[test]
    fn debug_never_shows_the_secret() {
        let secret = Secret::new(Some(TOKEN));
        assert_eq!(format!("{secret:?}"), "Secret([REDACTED])");
        assert_eq!(format!("{:?}", Secret::new(None)), "Secret(none)");
        let log = crate::audit::AuditLog::new(secret);
        assert!(!format!("{log:?}").contains(&TOKEN[..16]), "{log:?}");
    }

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
    fn text_loses_every_spelling_and_a_message_every_part() {
        let secret = Secret::new(Some(TOKEN));
        let lower = TOKEN.to_ascii_lowercase();
        assert_eq!(
            secret.redact(&format!("{lower}.example")),
            "[REDACTED].example"
        );
        assert_eq!(
            secret.redact("/x?q=%65yJhbGciOiJIUzI1NiJ9.c2VjcmV0.c2ln"),
            "/x?q=[REDACTED]"
        );
        let cut = format!("said \"{}…\"", &TOKEN[..20]);
        assert_eq!(
            secret.redact(&cut),
            cut,
            "results keep runs: only messages lose them"
        );
        let mut message = cut.clone();
        secret.redact_message(&mut message);
        assert_eq!(message, "said \"[REDACTED]…\"");
    }

    #[test]
    fn a_short_value_is_no_secret() {
        assert_eq!(Secret::new(Some("abc")).redact("abc abc"), "abc abc");
    }
}
