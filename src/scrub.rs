//! Keeping the API token out of everything a call returns.
//!
//! Messages the connector writes never contain the token, but results also
//! carry text the console sent: host names, user names, threat records. A
//! broken or hostile console that echoes the caller's token into those
//! fields would otherwise put it into the SOAR platform's case records,
//! where anyone reading the case could take over the connection. So every
//! result and error passes through [`Scrub`] at the component boundary,
//! which finds the token as `token_redact` does: in any letter case, with
//! bytes percent-encoded, and in error messages, any run of 16 or more of
//! its characters (a value the message quotes cut short).

use alloc::{string::String, vec::Vec};

use alloc::borrow::Cow;

use crate::actions::ActionOutcome;
use crate::error::Error;
use crate::hosts::Host;
use crate::threats::{Threat, ThreatPage};
use crate::validate::{ConnectionReport, PermissionCheck};

pub use token_redact::REDACTED;

/// A value whose text can be cleared of the token.
pub trait Scrub {
    /// Replaces every occurrence of `secret` in the value's text with
    /// [`REDACTED`]. `secret` must be non-empty.
    fn scrub(&mut self, secret: &str);
}

impl Scrub for String {
    /// Any spelling [`token_redact::redact`] finds: any letter case, bytes
    /// percent-encoded.
    fn scrub(&mut self, secret: &str) {
        // Most fields are shorter than any token (no spelling of it is
        // shorter than it): no search needed.
        if self.len() >= secret.len()
            && let Some(scrubbed) = token_redact::redact(self, secret)
        {
            *self = scrubbed;
        }
    }
}

impl<T: Scrub> Scrub for Option<T> {
    fn scrub(&mut self, secret: &str) {
        if let Some(v) = self {
            v.scrub(secret);
        }
    }
}

impl<T: Scrub> Scrub for Vec<T> {
    fn scrub(&mut self, secret: &str) {
        for v in self {
            v.scrub(secret);
        }
    }
}

impl<T: Scrub, E: Scrub> Scrub for Result<T, E> {
    fn scrub(&mut self, secret: &str) {
        match self {
            Ok(v) => v.scrub(secret),
            Err(e) => e.scrub(secret),
        }
    }
}

impl Scrub for Error {
    fn scrub(&mut self, secret: &str) {
        self.message_mut().scrub(secret);
        // An error may quote what the admin typed, cut short (`…`): the
        // token pasted into the wrong field would show in part.
        if let Some(scrubbed) = token_redact::redact_parts(self.message(), secret) {
            *self.message_mut() = scrubbed;
        }
        if let Error::Ambiguous { candidates, .. } = self {
            candidates.scrub(secret);
        }
    }
}

// Each impl below names every field of its type, with no `..`: a field
// added later does not compile until it is scrubbed here or marked as
// holding no text.

impl Scrub for Host {
    fn scrub(&mut self, secret: &str) {
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
            macs,
            decommissioned: _,
        } = self;
        for text in [agent_id, uuid, hostname, site, account, os] {
            text.scrub(secret);
        }
        ip_addresses.scrub(secret);
        last_active.scrub(secret);
        macs.scrub(secret);
    }
}

impl Scrub for ActionOutcome {
    fn scrub(&mut self, secret: &str) {
        let ActionOutcome {
            host,
            changed: _,
            network_state: _,
            detail,
        } = self;
        host.scrub(secret);
        detail.scrub(secret);
    }
}

impl Scrub for PermissionCheck {
    fn scrub(&mut self, secret: &str) {
        let PermissionCheck {
            permission,
            needed_for,
            state: _,
            detail,
        } = self;
        for text in [permission, needed_for, detail] {
            text.scrub(secret);
        }
    }
}

impl Scrub for ConnectionReport {
    fn scrub(&mut self, secret: &str) {
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
        console_url.scrub(secret);
        for text in [token_expires_at, user, role, scope] {
            text.scrub(secret);
        }
        permissions.scrub(secret);
        warnings.scrub(secret);
    }
}

impl Scrub for ThreatPage {
    fn scrub(&mut self, secret: &str) {
        let ThreatPage {
            threats,
            checkpoint,
            more: _,
            warnings,
        } = self;
        threats.scrub(secret);
        checkpoint.scrub(secret);
        warnings.scrub(secret);
    }
}

impl Scrub for Threat {
    fn scrub(&mut self, secret: &str) {
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
            text.scrub(secret);
        }
        created_at.scrub(secret);
        updated_at.scrub(secret);
        scrub_json(raw, secret);
    }
}

/// Scrubs JSON text as its readers will see it. A string may spell the
/// token with escapes (`\u0041` for `A`, `\/` for `/`), which a plain search
/// misses and every JSON reader decodes; so the search runs over the text
/// with those escapes written out. Text without the token stays byte for
/// byte as the console sent it, and scrubbed text stays valid JSON.
fn scrub_json(raw: &mut String, secret: &str) {
    let text: Cow<'_, str> = if raw.contains("\\u") || raw.contains("\\/") {
        canonical_escapes(raw).into()
    } else {
        raw.as_str().into()
    };
    if let Some(scrubbed) = replace_spelt(&text, &json_spelling(secret)) {
        *raw = scrubbed;
    }
    // A last guarantee for tokens holding `"` or `\`, whose plain text is
    // no JSON spelling of them.
    if raw.contains(secret) {
        *raw = raw.replace(secret, REDACTED);
    }
}

/// How `s` is written inside a JSON string, shortest escapes only.
fn json_spelling(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// `raw` with every escape of a printable ASCII character rewritten to the
/// shortest spelling (`\u0041` → `A`, `\/` → `/`, `\u0022` → `\"`). Other
/// escapes are kept as they are.
fn canonical_escapes(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let escape = &rest[at..];
        let printable = escape
            .get(2..6)
            .filter(|hex| {
                escape.as_bytes()[1] == b'u' && hex.bytes().all(|b| b.is_ascii_hexdigit())
            })
            .and_then(|hex| u8::from_str_radix(hex, 16).ok())
            .filter(|c| (0x20..=0x7e).contains(c));
        let used = match (printable, escape.as_bytes().get(1)) {
            (Some(b'"'), _) => push(&mut out, "\\\"", 6),
            (Some(b'\\'), _) => push(&mut out, "\\\\", 6),
            (Some(c), _) => {
                out.push(char::from(c));
                6
            }
            (None, Some(b'/')) => push(&mut out, "/", 2),
            // Any other escape: the backslash and the character after it.
            (None, _) => {
                let len = escape[1..].chars().next().map_or(1, |c| 1 + c.len_utf8());
                push(&mut out, &escape[..len], len)
            }
        };
        rest = &escape[used..];
    }
    out.push_str(rest);
    out
}

fn push(out: &mut String, s: &str, used: usize) -> usize {
    out.push_str(s);
    used
}

/// `text` with every spelling of `spelt` (any letter case, percent-encoded;
/// see [`token_redact::find`]) replaced, or `None` when there is none. An
/// occurrence that starts on the letter of an escape (`\n` then
/// the rest of the token) takes the escape's backslash with it, so the
/// result stays valid JSON.
fn replace_spelt(text: &str, spelt: &str) -> Option<String> {
    let found = token_redact::find(text, spelt);
    if found.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    let mut done = 0;
    for at in found {
        let backslashes = text[..at.start]
            .bytes()
            .rev()
            .take_while(|&b| b == b'\\')
            .count();
        let start = if backslashes % 2 == 1 {
            at.start - 1
        } else {
            at.start
        };
        out.push_str(&text[done..start.max(done)]);
        out.push_str(REDACTED);
        done = at.end;
    }
    out.push_str(&text[done..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    const SECRET: &str = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0.c2ln";

    /// `s` with every character written as a `\uXXXX` escape.
    fn escaped(s: &str) -> String {
        s.chars().map(|c| format!("\\u{:04x}", c as u32)).collect()
    }

    #[test]
    fn a_part_of_the_token_is_scrubbed_from_an_error() {
        let cut = &SECRET[..20];
        let mut err = Error::InvalidConfig(format!(
            "The Management Hostname \"{cut}…\" is not valid; see \"é{}\".",
            &SECRET[10..30]
        ));
        err.scrub(SECRET);
        assert_eq!(
            err.message(),
            "The Management Hostname \"[REDACTED]…\" is not valid; see \"é[REDACTED]\"."
        );
        // Runs shorter than token_redact::PART, and other text, stay.
        let short = &SECRET[..token_redact::PART - 1];
        let mut err = Error::NotFound(format!("No endpoint named {short} (eyJhbGciOi)."));
        let before = err.message().to_owned();
        err.scrub(SECRET);
        assert_eq!(err.message(), before);
    }

    #[test]
    fn raw_json_stays_valid_when_the_token_shows_in_another_case_after_an_escape() {
        let secret = "bXlzZWNyZXQtdG9rZW4tdmFsdWU";
        let mut raw = format!(
            r#"{{"a":"\{}","b":"%62{}"}}"#,
            secret.to_ascii_lowercase(),
            &secret[1..]
        );
        scrub_json(&mut raw, secret);
        let value: Value = serde_json::from_str(&raw).expect("still JSON");
        assert_eq!(value["a"], "[REDACTED]", "{raw}");
        assert_eq!(value["b"], "[REDACTED]", "{raw}");
    }

    #[test]
    fn replaces_every_occurrence_in_text() {
        let mut s = format!("a {SECRET} b {SECRET}");
        s.scrub(SECRET);
        assert_eq!(s, "a [REDACTED] b [REDACTED]");
        let mut short = "FIN-LT-0042".to_owned();
        short.scrub(SECRET);
        assert_eq!(short, "FIN-LT-0042");
    }

    #[test]
    fn reaches_every_field_of_a_host_and_the_candidates_of_an_error() {
        let host = Host {
            agent_id: "1".into(),
            uuid: "u".into(),
            hostname: format!("PC-{SECRET}"),
            site: SECRET.into(),
            account: "a".into(),
            os: "o".into(),
            ip_addresses: vec![format!("{SECRET}x")],
            last_active: Some(SECRET.into()),
            active: true,
            network_state: crate::hosts::NetworkState::Connected,
            macs: vec![],
            decommissioned: false,
        };
        let mut err = Error::Ambiguous {
            message: format!("two match {SECRET}"),
            candidates: vec![host.clone(), host],
        };
        err.scrub(SECRET);
        let text = format!("{err:?}");
        assert!(!text.contains(SECRET), "{text}");
        assert_eq!(err.message(), "two match [REDACTED]");
        let Error::Ambiguous { candidates, .. } = err else {
            unreachable!()
        };
        assert_eq!(candidates[0].hostname, "PC-[REDACTED]");
        assert_eq!(candidates[1].ip_addresses, ["[REDACTED]x"]);
    }

    #[test]
    fn raw_json_without_the_token_is_left_byte_for_byte() {
        let raw = r#"{"z":1.50,"a":"C:\\Users\\x","u":"caf\u00e9"}"#;
        let mut t = Threat {
            raw: raw.into(),
            ..Threat::default()
        };
        t.scrub(SECRET);
        assert_eq!(t.raw, raw);
    }

    /// `raw` scrubbed as a threat's raw text: still JSON, token-free both as
    /// text and decoded.
    fn scrubbed_raw(raw: &str, secret: &str) -> String {
        let mut t = Threat {
            raw: raw.into(),
            ..Threat::default()
        };
        t.scrub(secret);
        let decoded: Value = serde_json::from_str(&t.raw)
            .unwrap_or_else(|e| panic!("{raw} -> {} is no longer JSON: {e}", t.raw));
        assert!(!decoded.to_string().contains(secret), "{raw} -> {}", t.raw);
        assert!(!t.raw.contains(secret), "{raw} -> {}", t.raw);
        t.raw
    }

    #[test]
    fn raw_json_loses_the_token_however_it_is_spelt() {
        let plain = format!(r#"{{"n":"{SECRET}","k":1}}"#);
        assert_eq!(scrubbed_raw(&plain, SECRET), r#"{"n":"[REDACTED]","k":1}"#);
        let spelt = format!(r#"{{"n":"x{}","p":"C:\\T\u00e9"}}"#, escaped(SECRET));
        assert_eq!(
            scrubbed_raw(&spelt, SECRET),
            r#"{"n":"x[REDACTED]","p":"C:\\T\u00e9"}"#
        );
        let as_key = format!(r#"{{"{}":[{{"deep":"{SECRET}"}}]}}"#, escaped(SECRET));
        assert_eq!(
            scrubbed_raw(&as_key, SECRET),
            r#"{"[REDACTED]":[{"deep":"[REDACTED]"}]}"#
        );
    }

    #[test]
    fn a_token_after_an_escape_letter_takes_the_escape_with_it() {
        // The text holds "n<rest>" right after a backslash: the reader sees a
        // newline, yet the token's text is there, so it goes, escape and all.
        let secret = "nXYZ12345";
        assert_eq!(
            scrubbed_raw(r#"{"a":"q\nXYZ12345!"}"#, secret),
            r#"{"a":"q[REDACTED]!"}"#
        );
        assert_eq!(
            scrubbed_raw(r#"{"a":"q\\nXYZ12345"}"#, secret),
            r#"{"a":"q\\[REDACTED]"}"#
        );
    }

    #[test]
    fn a_token_with_json_special_characters_is_found_behind_its_escapes() {
        let secret = r#"tok/en"quoted\x"#;
        assert_eq!(
            scrubbed_raw(r#"{"n":"tok\/en\"quoted\\x"}"#, secret),
            r#"{"n":"[REDACTED]"}"#
        );
        assert_eq!(
            scrubbed_raw(r#"{"n":"tok\u002fen\u0022quoted\u005cx."}"#, secret),
            r#"{"n":"[REDACTED]."}"#
        );
    }

    #[test]
    fn reaches_a_report_and_a_threat_page() {
        let mut report = ConnectionReport {
            user: Some(SECRET.into()),
            warnings: vec![format!("w {SECRET}")],
            permissions: vec![PermissionCheck {
                permission: "Users.view".into(),
                needed_for: "x".into(),
                state: crate::validate::PermissionState::Granted,
                detail: SECRET.into(),
            }],
            ..ConnectionReport::default()
        };
        report.scrub(SECRET);
        assert!(!format!("{report:?}").contains(SECRET));
        let mut page = ThreatPage {
            threats: vec![Threat {
                name: SECRET.into(),
                created_at: Some(SECRET.into()),
                ..Threat::default()
            }],
            checkpoint: format!("s1:{SECRET}"),
            more: false,
            warnings: vec![SECRET.into()],
        };
        page.scrub(SECRET);
        assert!(!format!("{page:?}").contains(SECRET));
    }

    /// A JSON string holding `text`, each character spelt as `\uXXXX` where
    /// `spell` says so and by serde_json otherwise.
    fn spelt_json(text: &str, spell: &[bool]) -> String {
        let mut out = String::from("\"");
        for (i, c) in text.chars().enumerate() {
            if spell[i % spell.len()] && (c as u32) < 0x10000 {
                out.push_str(&format!("\\u{:04x}", c as u32));
            } else {
                let quoted = serde_json::to_string(&c.to_string()).expect("a string");
                out.push_str(&quoted[1..quoted.len() - 1]);
            }
        }
        out.push('"');
        out
    }

    proptest::proptest! {
        #[test]
        fn scrubbed_raw_is_json_without_the_token(
            before in "[a-z\\\\\"/\n é]{0,12}",
            after in "[a-z\\\\\"/\n é]{0,12}",
            spell in proptest::collection::vec(proptest::bool::ANY, 1..8),
            with_token in proptest::bool::ANY,
        ) {
            let text = if with_token { format!("{before}{SECRET}{after}") } else { format!("{before}{after}") };
            let raw = format!(r#"{{"k":{},"n":[1.5,true]}}"#, spelt_json(&text, &spell));
            let out = scrubbed_raw(&raw, SECRET);
            if with_token {
                proptest::prop_assert!(out.contains(REDACTED), "{raw} -> {out}");
            } else {
                proptest::prop_assert_eq!(out, raw);
            }
        }
    }
}
