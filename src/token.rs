//! The API token: validated once, then only ever placed in a header.

use alloc::{borrow::ToOwned, format, string::String};

use core::cell::OnceCell;
use core::fmt;

use crate::error::{Error, Result};
use crate::scrub::Scrub;

/// Tokens are JWTs of a few hundred bytes; anything far larger is a paste
/// accident, and a header that size would be refused upstream anyway.
const MAX_TOKEN_LEN: usize = 8 * 1024;

/// Real tokens are JWTs of hundreds of characters. Refusing very short values
/// also keeps redaction meaningful: every accepted token is long enough that
/// replacing it in a message cannot mangle ordinary words.
pub const MIN_TOKEN_LEN: usize = 8;

/// What to tell the user when the token field is unusable.
const HOW_TO_GET_ONE: &str = "Paste the API token exactly as the console shows it \
     (Settings → My User → API Token → Generate, or the service user's token).";

/// A validated SentinelOne API token.
///
/// `Debug` and `Display` never print it; only [`ApiToken::authorization`]
/// reveals it, for the `Authorization` header.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken(String);

impl ApiToken {
    /// Trims surrounding whitespace and rejects empty tokens and tokens with
    /// an auth-scheme prefix, quotation marks, inner whitespace, control or
    /// non-ASCII characters.
    pub fn parse(input: &str) -> Result<ApiToken> {
        let token = input.trim();
        // A token as consoles issue it passes every check of `refuse`; one
        // pass over its bytes says so (a JWT is hundreds of them, and each
        // of those checks walks them all, decoding characters).
        let plain = token
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b'\'' | b'`'));
        if !(plain && (MIN_TOKEN_LEN..=MAX_TOKEN_LEN).contains(&token.len())) {
            refuse(token)?;
        }
        Ok(ApiToken(token.to_owned()))
    }

    /// The `Authorization` header value: `ApiToken <token>`.
    pub fn authorization(&self) -> String {
        format!("ApiToken {}", self.0)
    }

    /// The raw token, for the one request body that must carry it
    /// (`users/api-token-details`).
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// `text` with every occurrence of the token replaced by `[REDACTED]`.
    pub fn redact(&self, text: &str) -> String {
        let mut text = text.to_owned();
        text.scrub(&self.0);
        text
    }
}

/// Why `token` (trimmed) is not a token, one check at a time, so that the
/// message names what is wrong; `Ok` when it is one.
fn refuse(token: &str) -> Result<()> {
    if token.is_empty() {
        return Err(Error::InvalidConfig(format!(
            "The API token is empty. {HOW_TO_GET_ONE}"
        )));
    }
    if let Some(scheme) = auth_scheme_prefix(token) {
        return Err(Error::InvalidConfig(format!(
            "The API token starts with \"{scheme} \". Paste only the token itself, \
             without the \"{scheme}\" prefix."
        )));
    }
    if token.chars().any(char::is_whitespace) {
        return Err(Error::InvalidConfig(format!(
            "The API token contains spaces or line breaks, so it was pasted incompletely \
             or with extra text. {HOW_TO_GET_ONE}"
        )));
    }
    if token.contains(['"', '\'', '`', '\u{201c}', '\u{201d}']) {
        // Copied from JSON, a script or a chat message. The console
        // would answer 401, and "wrong, expired or revoked" would send
        // the admin off to generate a token that is not the problem.
        return Err(Error::InvalidConfig(
            "The API token contains quotation marks, which no SentinelOne token has. Paste \
             only the token itself, without the quotes around it."
                .into(),
        ));
    }
    if token.chars().any(|c| c.is_control() || !c.is_ascii()) {
        return Err(Error::InvalidConfig(format!(
            "The API token contains control or non-ASCII characters, which no SentinelOne \
             token has. {HOW_TO_GET_ONE}"
        )));
    }
    if token.len() < MIN_TOKEN_LEN {
        return Err(Error::InvalidConfig(format!(
            "The API token is only {} characters long; SentinelOne tokens are much longer, so \
             it was probably cut off. {HOW_TO_GET_ONE}",
            token.len()
        )));
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(Error::InvalidConfig(format!(
            "The API token is {} bytes long; SentinelOne tokens are far shorter \
             (at most {MAX_TOKEN_LEN} accepted). {HOW_TO_GET_ONE}",
            token.len()
        )));
    }
    Ok(())
}

/// The checks of one call's other values against its API token, before
/// any request. They share one index of the token's parts, built the first
/// time a value is long enough to hold one.
pub struct TokenChecks<'a> {
    /// The token as typed, trimmed.
    token: &'a str,
    parts: OnceCell<token_redact::Parts>,
}

impl<'a> TokenChecks<'a> {
    /// The checks for `token`, the API token field as typed.
    pub fn new(token: &'a str) -> TokenChecks<'a> {
        TokenChecks {
            token: token.trim(),
            parts: OnceCell::new(),
        }
    }

    /// Whether `text` holds the token, in any letter case or
    /// percent-encoded, or a part of it ([`token_redact::PART`] characters
    /// or more). A value too short to be a token holds nothing: the token's
    /// own check refuses it.
    fn holds_token(&self, text: &str) -> bool {
        let token = self.token;
        token.len() >= MIN_TOKEN_LEN
            && (token_redact::holds(text, token)
                || (text.len() >= token_redact::PART
                    && self
                        .parts
                        .get_or_init(|| token_redact::Parts::new(token))
                        .holds(text)))
    }

    /// Refuses a connection whose two fields were mixed up: a Management
    /// Hostname that holds the API token, which would otherwise go out as a
    /// name to resolve; and an API token field that holds a console
    /// address, which the console would only answer with a 401 that sends
    /// the admin off to generate a token. Neither value is quoted.
    pub fn fields_not_swapped(&self, console: &str) -> Result<()> {
        let lower = self.token.to_ascii_lowercase();
        let address = lower.starts_with("http://")
            || lower.starts_with("https://")
            || lower.contains(".sentinelone.net");
        if address {
            return Err(Error::InvalidConfig(format!(
                "The API token field holds a console address, not a token. Enter the address in \
                 the Management Hostname field, and paste the API token into the API token \
                 field. {HOW_TO_GET_ONE}"
            )));
        }
        if self.holds_token(console) {
            return Err(Error::InvalidConfig(
                "The Management Hostname holds the API token (or part of it). Enter the \
                 console's hostname there, e.g. u1234-s123 for \
                 https://u1234-s123.sentinelone.net, and paste the token only into the API token \
                 field. If the platform showed or logged the hostname field, generate a new \
                 token (Settings → My User → API Token → Generate)."
                    .into(),
            ));
        }
        Ok(())
    }

    /// Refuses a host selector that holds the API token: a computer name
    /// goes to the console as a search filter, into its request logs, so a
    /// token pasted into the host field would be written there in clear.
    /// Neither value is quoted.
    pub fn not_in_selector(&self, selector: &str) -> Result<()> {
        if !self.holds_token(selector) {
            return Ok(());
        }
        Err(Error::InvalidConfig(
            "The host to act on holds the API token (or part of it), not an endpoint. Enter the \
             endpoint's computer name, agent id, agent UUID, IP or MAC address there. If the \
             platform showed or logged that field, generate a new token (Settings → My User → \
             API Token → Generate)."
                .into(),
        ))
    }
}

/// Recognises a pasted `ApiToken xyz` / `Bearer xyz` header value.
fn auth_scheme_prefix(token: &str) -> Option<&str> {
    let (first, rest) = token.split_once(char::is_whitespace)?;
    let known = ["apitoken", "bearer", "token"];
    (known.contains(&first.to_ascii_lowercase().as_str()) && !rest.trim().is_empty())
        .then_some(first)
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiToken([REDACTED])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_console_value_holding_the_token_is_refused_without_quoting_it() {
        let token = "eyJraWQiOiJ1cy1lYXN0In0.eyJzdWIiOiJib2IifQ.c2lnbmF0dXJlLWJ5dGVz";
        for console in [
            token.to_owned(),
            format!("https://{token}.sentinelone.net"),
            format!("  {}", &token[..20]),
            format!("u1234-s123/{}", &token[30..50]),
            // The whole token as a selector would be found: in another
            // letter case, and percent-encoded.
            token.to_ascii_uppercase(),
            token.replace('.', "%2E"),
        ] {
            let typed = format!(" {token}\n");
            let err = TokenChecks::new(&typed)
                .fields_not_swapped(&console)
                .unwrap_err();
            assert_eq!(err.kind(), "invalid-config");
            assert!(
                err.message()
                    .starts_with("The Management Hostname holds the API token")
            );
            assert!(!token_redact::holds_part(err.message(), token), "{err:?}");
        }
        for console in ["u1234-s123", "u1234-s123.sentinelone.net", &token[..15]] {
            let checks = TokenChecks::new(token);
            assert!(checks.fields_not_swapped(console).is_ok(), "{console}");
        }
    }

    #[test]
    fn a_console_address_in_the_token_field_is_refused_without_quoting_it() {
        for (console, token) in [
            ("u1234-s123", "https://u1234-s123.sentinelone.net"),
            ("", "u1234-s123.SentinelOne.net"),
            ("console.example.org", "HTTP://console.example.org/"),
        ] {
            let err = TokenChecks::new(token)
                .fields_not_swapped(console)
                .unwrap_err();
            assert_eq!(err.kind(), "invalid-config");
            assert!(
                err.message()
                    .starts_with("The API token field holds a console address"),
                "{err:?}"
            );
            assert!(!err.message().contains(token.trim()), "{err:?}");
        }
        // Two values too short to be tokens: the token's own checks say so.
        assert!(TokenChecks::new("short-tok").fields_not_swapped("").is_ok());
        assert!(
            TokenChecks::new("eyJhbGciOiJIUzI1NiJ9.e30.c2ln")
                .fields_not_swapped("u1234-s123")
                .is_ok()
        );
    }

    #[test]
    fn a_selector_holding_the_token_is_refused_without_quoting_it() {
        let token = "eyJraWQiOiJ1cy1lYXN0In0.eyJzdWIiOiJib2IifQ.c2lnbmF0dXJlLWJ5dGVz";
        for selector in [
            token.to_owned(),
            token.to_ascii_uppercase(),
            format!("fin-lt-{}", &token[24..40]),
        ] {
            let typed = format!("{token}\n");
            let err = TokenChecks::new(&typed)
                .not_in_selector(&selector)
                .unwrap_err();
            assert_eq!(err.kind(), "invalid-config");
            assert!(
                err.message()
                    .starts_with("The host to act on holds the API token")
            );
            assert!(!token_redact::holds_part(err.message(), token), "{err:?}");
        }
        // Endpoint names, and the JWT header's common start, are not tokens.
        for selector in ["fin-lt-0042", "1234567890123456789", &token[..15]] {
            let checks = TokenChecks::new(token);
            assert!(checks.not_in_selector(selector).is_ok(), "{selector}");
        }
    }

    proptest::proptest! {
        /// The one-pass acceptance never takes a value the full checks
        /// would refuse, nor refuses one they would take.
        #[test]
        fn the_quick_check_agrees_with_the_full_ones(
            input in "[ \t\"'`a-zA-Z0-9._é\u{201c}\u{7f}-]{0,24}|(ApiToken|Bearer) [a-z0-9.]{0,12}"
        ) {
            proptest::prop_assert_eq!(
                ApiToken::parse(&input).is_ok(),
                refuse(input.trim()).is_ok()
            );
        }
    }

    #[test]
    fn trims_and_builds_header() {
        let t = ApiToken::parse("  eyJhbGciOi.abc-DEF_123  \n").unwrap();
        assert_eq!(t.authorization(), "ApiToken eyJhbGciOi.abc-DEF_123");
    }

    #[test]
    fn rejects_bad_tokens_without_echoing_them() {
        let cases = [
            "",
            "   ",
            "abcd efgh",
            "abcd\tefgh",
            "abcd\nefgh",
            "abcd\u{0}efgh",
            "abcd\u{7f}efgh",
            "tökén-tökén",
            "short",
            "ApiToken secretvalue",
            "Bearer secretvalue",
            "\"secretvalue\"",
            "'secretvalue'",
            "`secretvalue`",
        ];
        for case in cases {
            let err = ApiToken::parse(case).unwrap_err();
            assert_eq!(err.kind(), "invalid-config", "{case:?}");
            for part in ["secretvalue", "efgh", "tökén", "short"] {
                assert!(!err.message().contains(part), "{case:?} leaked: {err}");
            }
        }
        let huge = "a".repeat(MAX_TOKEN_LEN + 1);
        assert_eq!(ApiToken::parse(&huge).unwrap_err().kind(), "invalid-config");
    }

    #[test]
    fn prefix_message_names_the_scheme() {
        let err = ApiToken::parse("ApiToken xyz12345").unwrap_err();
        assert!(
            err.message().contains("without the \"ApiToken\" prefix"),
            "{err}"
        );
    }

    #[test]
    fn quotes_around_a_pasted_token_are_named() {
        for quoted in [
            "\"eyJhbGciOi.abc\"",
            "'eyJhbGciOi.abc'",
            "\u{201c}eyJhbGciOi.abc\u{201d}",
        ] {
            let err = ApiToken::parse(quoted).unwrap_err();
            assert_eq!(
                err.message(),
                "The API token contains quotation marks, which no SentinelOne token has. Paste \
                 only the token itself, without the quotes around it."
            );
        }
    }

    #[test]
    fn debug_and_redact_hide_the_token() {
        let t = ApiToken::parse("s3cr3t-token").unwrap();
        assert_eq!(format!("{t:?}"), "ApiToken([REDACTED])");
        assert_eq!(t.redact("x s3cr3t-token y"), "x [REDACTED] y");
    }
}
