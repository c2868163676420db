//! Normalising the "Management Hostname" a user typed into one console URL.
//!
//! The rules are strict because the token goes wherever this points: a host
//! that is not plainly a DNS name reachable over HTTPS on the default port is
//! refused before a request is made. What follows the host in an address
//! pasted from the browser (a path, query or fragment) never changes where
//! the token goes, so it is dropped rather than refused.

use alloc::{borrow::ToOwned, format, string::String};

use core::fmt;

use crate::error::{Error, Result};

/// The domain of SentinelOne's commercial cloud consoles.
pub const SENTINELONE_DOMAIN: &str = "sentinelone.net";

/// Longest input echoed back in an error message; hostile values can be huge.
const ECHO_LIMIT: usize = 80;

/// Appended to most rejections so the user knows what to type instead.
const EXPECTED: &str = "Enter the console's hostname, e.g. u1234-s123 or \
     u1234-s123.sentinelone.net for https://u1234-s123.sentinelone.net.";

/// A validated management console: an HTTPS origin on the default port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Console {
    host: String,
}

impl Console {
    /// Parses what the user typed. See the module docs for the rules.
    pub fn parse(input: &str) -> Result<Console> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(invalid(format!(
                "The Management Hostname is empty. {EXPECTED}"
            )));
        }
        check_characters(trimmed)?;
        let lower = trimmed.to_ascii_lowercase();
        let rest = strip_scheme(&lower, trimmed)?;
        let host = split_authority(rest, trimmed)?;
        check_ascii(host, trimmed)?;
        let host = host.strip_suffix('.').unwrap_or(host);
        check_not_ip(host, trimmed)?;
        check_dns_name(host, trimmed)?;
        let host = if host.contains('.') {
            host.to_owned()
        } else {
            format!("{host}.{SENTINELONE_DOMAIN}")
        };
        check_is_tenant_console(&host)?;
        Ok(Console { host })
    }

    /// The hostname, lower-case, e.g. `u1234-s123.sentinelone.net`.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The origin every request goes to, e.g. `https://u1234-s123.sentinelone.net`.
    pub fn url(&self) -> String {
        format!("https://{}", self.host)
    }

    /// The tenant label a user would type, for hints in messages: the part
    /// before `.sentinelone.net`, or the whole name for other domains.
    pub fn label(&self) -> &str {
        self.host
            .strip_suffix(SENTINELONE_DOMAIN)
            .and_then(|h| h.strip_suffix('.'))
            .unwrap_or(&self.host)
    }
}

impl fmt::Display for Console {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url())
    }
}

fn invalid(message: String) -> Error {
    Error::InvalidConfig(message)
}

/// The input, shortened, with only printable ASCII and any `user:password@`
/// part replaced, so it is safe to echo.
fn echo(input: &str) -> String {
    let input = redact_userinfo(input);
    let mut shown: String = input
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .take(ECHO_LIMIT)
        .collect();
    if input.chars().count() > ECHO_LIMIT {
        shown.push('…');
    }
    shown
}

/// `https://user:pw@host` → `https://[redacted]@host`. Everything before
/// the last `@` but a leading scheme is hidden: a password may itself hold
/// `://` or `@`, so no later part of the value can mark where it starts.
fn redact_userinfo(input: &str) -> alloc::borrow::Cow<'_, str> {
    let Some(at) = input.rfind('@') else {
        return input.into();
    };
    let start = leading_scheme_len(input).min(at);
    format!("{}[redacted]{}", &input[..start], &input[at..]).into()
}

/// The length of a leading `scheme://` or `//`, else 0.
fn leading_scheme_len(input: &str) -> usize {
    if input.starts_with("//") {
        return 2;
    }
    let name_len = input
        .bytes()
        .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        .count();
    let is_scheme = name_len > 0
        && input.as_bytes()[0].is_ascii_alphabetic()
        && input[name_len..].starts_with("://");
    if is_scheme { name_len + 3 } else { 0 }
}

fn check_characters(input: &str) -> Result<()> {
    if input.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(format!(
            "The Management Hostname \"{}\" contains spaces or control characters. {EXPECTED}",
            echo(input)
        )));
    }
    // URL parsers disagree on a backslash (a path separator to browsers),
    // so no input holding one is guessed at.
    if input.contains('\\') {
        return Err(invalid(format!(
            "The Management Hostname \"{}\" contains '\\', which no hostname or browser \
             address has. {EXPECTED}",
            echo(input)
        )));
    }
    Ok(())
}

fn check_ascii(host: &str, original: &str) -> Result<()> {
    if host.is_ascii() {
        return Ok(());
    }
    Err(invalid(format!(
        "The Management Hostname \"{}\" contains non-ASCII characters; SentinelOne console \
         names are plain ASCII, and look-alike letters are refused on purpose. {EXPECTED}",
        echo(original)
    )))
}

/// Removes `https://`; refuses every other scheme. A `://` after the
/// host (`u1.sentinelone.net/x?next=http://...`) is not a scheme.
fn strip_scheme<'a>(lower: &'a str, original: &str) -> Result<&'a str> {
    let scheme = lower
        .split_once("://")
        .filter(|(scheme, _)| !scheme.contains(['/', '?', '#']));
    match scheme {
        Some(("https", rest)) => Ok(rest),
        Some((scheme, _)) => Err(invalid(format!(
            "The Management Hostname \"{}\" uses the scheme \"{}\"; the console API is only \
             reached over https://. {EXPECTED}",
            echo(original),
            echo(scheme)
        ))),
        None => Ok(lower),
    }
}

/// Returns the host part, refusing userinfo and ports other than HTTPS's
/// own `:443`, which names the origin the connector uses anyway. The path,
/// query and fragment of a pasted address are dropped: the host is what the
/// token goes to, and requests are built from it alone.
fn split_authority<'a>(rest: &'a str, original: &str) -> Result<&'a str> {
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    if authority.contains('@') {
        return Err(invalid(format!(
            "The Management Hostname \"{}\" contains '@' (a user name in a URL), which is not \
             allowed. {EXPECTED}",
            echo(original)
        )));
    }
    if authority.starts_with('[') {
        return Err(invalid(format!(
            "The Management Hostname \"{}\" is an IP address; use the console's hostname. {EXPECTED}",
            echo(original)
        )));
    }
    let host = authority.strip_suffix(":443").unwrap_or(authority);
    if host.contains(':') {
        return Err(invalid(format!(
            "The Management Hostname \"{}\" contains a port other than 443 or a ':'; the \
             console is always reached on the default HTTPS port, 443. {EXPECTED}",
            echo(original)
        )));
    }
    Ok(host)
}

/// Refuses IP literals in every notation a URL parser accepts (`127.1`,
/// `0x7f000001`, `2130706433`, octal, ...). The WHATWG URL standard treats
/// any host whose last label is a number ("ends in a number") as an IPv4
/// address, so that is the test; no DNS name ends that way.
fn check_not_ip(host: &str, original: &str) -> Result<()> {
    let last = host
        .strip_suffix('.')
        .unwrap_or(host)
        .rsplit('.')
        .next()
        .unwrap_or_default();
    let hex = last
        .strip_prefix("0x")
        .or_else(|| last.strip_prefix("0X"))
        .is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
    let number = !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit());
    if number || hex || host.parse::<core::net::IpAddr>().is_ok() {
        return Err(invalid(format!(
            "The Management Hostname \"{}\" is an IP address; the API token must only be sent to \
             the console's hostname. {EXPECTED}",
            echo(original)
        )));
    }
    Ok(())
}

/// RFC 1035 / 1123 syntax: labels of letters, digits and inner hyphens.
fn check_dns_name(host: &str, original: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(invalid(format!(
            "The Management Hostname \"{}\" is not a valid hostname: {why}. {EXPECTED}",
            echo(original)
        )))
    };
    if host.is_empty() {
        return bad("it has no name");
    }
    if host.len() > 253 {
        return bad("it is longer than 253 characters");
    }
    for label in host.split('.') {
        if label.is_empty() {
            return bad("it has an empty label ('..' or a leading dot)");
        }
        if label.len() > 63 {
            return bad("a label is longer than 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return bad("only letters, digits, '-' and '.' are allowed");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return bad("a label starts or ends with '-'");
        }
    }
    if host
        .rsplit('.')
        .next()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return bad("its last label is all digits");
    }
    Ok(())
}

/// Refuses names that are valid DNS but never a tenant's management console.
fn check_is_tenant_console(host: &str) -> Result<()> {
    if host == "localhost" || host.ends_with(".localhost") || host == "localhost.sentinelone.net" {
        return Err(invalid(format!(
            "The Management Hostname points at this machine (localhost); the token may only be \
             sent to a SentinelOne console. {EXPECTED}"
        )));
    }
    if host == SENTINELONE_DOMAIN || host == "www.sentinelone.net" {
        return Err(invalid(format!(
            "\"{host}\" is SentinelOne's domain, not a console. {EXPECTED}"
        )));
    }
    if host == "console.sentinelone.net" {
        return Err(invalid(format!(
            "console.sentinelone.net is not a tenant console. Use the hostname in your browser's \
             address bar when you are signed in to your console. {EXPECTED}"
        )));
    }
    let under_s1 = host
        .strip_suffix(SENTINELONE_DOMAIN)
        .is_some_and(|h| h.ends_with('.'));
    if under_s1 && (host.starts_with("ingest.") || host.starts_with("xdr.")) {
        return Err(invalid(format!(
            "{host} is a Singularity Data Lake / ingest endpoint, not the management console. \
             {EXPECTED}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(input: &str) -> String {
        Console::parse(input)
            .unwrap_or_else(|e| panic!("{input:?}: {e}"))
            .host()
            .to_owned()
    }

    #[test]
    fn accepts_the_documented_forms() {
        for input in [
            "u1234-s123",
            "u1234-s123.sentinelone.net",
            "https://u1234-s123.sentinelone.net",
            "https://u1234-s123.sentinelone.net/",
            "  HTTPS://U1234-S123.SentinelOne.NET/  ",
            "\tU1234-S123\n",
            "u1234-s123.sentinelone.net.",
            // HTTPS's own port is the origin the connector uses anyway.
            "u1234-s123.sentinelone.net:443",
            "https://U1234-S123.sentinelone.net:443/",
            "u1234-s123:443",
            "https://u1234-s123.sentinelone.net:443/#/dashboard",
        ] {
            assert_eq!(host(input), "u1234-s123.sentinelone.net", "{input:?}");
        }
    }

    #[test]
    fn an_address_pasted_from_the_browser_keeps_only_its_host() {
        for input in [
            "https://u1234-s123.sentinelone.net/dashboard",
            "https://u1234-s123.sentinelone.net/#/incidents/threats?filter=%7B%22a%22%7D",
            "https://u1234-s123.sentinelone.net/web/api/v2.1",
            "u1234-s123.sentinelone.net/login?next=https://u1234-s123.sentinelone.net/",
            "u1234-s123.sentinelone.net?x=1",
            "u1234-s123.sentinelone.net#frag",
            "u1234-s123.sentinelone.net/path@evil.com",
            "u1234-s123.sentinelone.net//evil.com",
            "https://u1234-s123.sentinelone.net/ünïcode-page",
        ] {
            assert_eq!(host(input), "u1234-s123.sentinelone.net", "{input:?}");
        }
        // The host is what counts, wherever a console's name appears after
        // it; the egress policy then decides about evil.com.
        assert_eq!(host("evil.com/u1234-s123.sentinelone.net"), "evil.com");
    }

    #[test]
    fn other_domains_are_kept_as_typed() {
        assert_eq!(host("usea1-gov.s1gov.net"), "usea1-gov.s1gov.net");
        assert_eq!(host("https://edr.example.com/"), "edr.example.com");
        assert_eq!(host("a.b.sentinelone.net"), "a.b.sentinelone.net");
    }

    #[test]
    fn url_and_label() {
        let c = Console::parse("u1234-s123").unwrap();
        assert_eq!(c.url(), "https://u1234-s123.sentinelone.net");
        assert_eq!(c.label(), "u1234-s123");
        assert_eq!(
            Console::parse("edr.example.com").unwrap().label(),
            "edr.example.com"
        );
    }

    /// Hostile or mistaken values: each must be refused as `invalid-config`.
    const HOSTILE: &[&str] = &[
        // empty
        "",
        "   ",
        "\n\t",
        // schemes
        "http://u1234-s123.sentinelone.net",
        "HTTP://u1234-s123.sentinelone.net",
        "ftp://u1234-s123.sentinelone.net",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "ws://u1234-s123.sentinelone.net",
        "//u1234-s123.sentinelone.net",
        "https:/u1234-s123.sentinelone.net",
        // userinfo
        "user@u1234-s123.sentinelone.net",
        "https://user:pass@u1234-s123.sentinelone.net",
        "u1234-s123.sentinelone.net@evil.com",
        "https://evil.com@u1234-s123.sentinelone.net",
        // ports other than HTTPS's own
        "u1234-s123.sentinelone.net:8443",
        "https://u1234-s123.sentinelone.net:80/",
        "u1234-s123.sentinelone.net:0443",
        "u1234-s123.sentinelone.net:443:443",
        "u1234-s123.sentinelone.net:",
        "u1234-s123:8443",
        // backslashes, which browsers read as '/', and other parsers not
        "u1234-s123.sentinelone.net\\evil.com",
        "https://evil.com\\@u1234-s123.sentinelone.net",
        "https://u1234-s123.sentinelone.net/a\\b",
        // a console name behind a path or query does not hide the host
        "localhost?u1234-s123.sentinelone.net",
        "127.0.0.1/u1234-s123.sentinelone.net",
        // IP literals in every notation
        "127.0.0.1",
        "https://127.0.0.1/",
        "10.0.0.1",
        "169.254.169.254",
        "0x7f000001",
        "2130706433",
        "0177.0.0.1",
        "127.1",
        "0x7f.0x0.0x0.0x1",
        "1.2.3.4.5",
        "[::1]",
        "https://[::1]/",
        "::1",
        "[fe80::1%25eth0]",
        "::ffff:127.0.0.1",
        // localhost and non-consoles
        "localhost",
        "LOCALHOST",
        "https://localhost/",
        "foo.localhost",
        "console.sentinelone.net",
        "https://console.sentinelone.net/",
        "sentinelone.net",
        "ingest.us1.sentinelone.net",
        "xdr.us1.sentinelone.net",
        // not DNS names
        "u1234 s123",
        "u1234_s123",
        "-u1234",
        "u1234-",
        "u1234..sentinelone.net",
        ".sentinelone.net",
        "exa mple.com",
        "xn--80ak6aa92e.com\u{0}",
        "u1234\u{0}.sentinelone.net",
        "u1234\r\nHost: evil.com",
        "еxample.com",
        "u1234%2e.sentinelone.net",
        "%6c%6f%63%61%6c%68%6f%73%74",
        "a.b.c.123",
        "*.sentinelone.net",
        "u1234;s123",
        "<script>",
    ];

    #[test]
    fn refuses_hostile_inputs() {
        assert!(HOSTILE.len() >= 40);
        for input in HOSTILE {
            match Console::parse(input) {
                Err(Error::InvalidConfig(msg)) => {
                    assert!(!msg.is_empty());
                    assert!(
                        !msg.contains('\0') && !msg.contains('\r'),
                        "{input:?}: {msg}"
                    );
                }
                other => panic!("{input:?} was not refused: {other:?}"),
            }
        }
    }

    #[test]
    fn credentials_typed_into_the_url_are_never_echoed() {
        for input in [
            "https://admin:S3cretPw@u1.sentinelone.net",
            "ftp://admin:S3cretPw@u1.sentinelone.net",
            "admin:S3cretPw@u1.sentinelone.net:8443/x",
            "http://admin:S3cretPw@10.0.0.1",
            // A `://` after the password once made it look like the scheme.
            "//admin:S3cretPw@://",
            "admin:S3cretPw@https://u1.sentinelone.net",
            "https://admin:S3c://retPw@u1.sentinelone.net:8443",
            "https://admin:S3cretPw@x@u1.sentinelone.net:8443",
        ] {
            let err = Console::parse(input).unwrap_err();
            assert!(!err.message().contains("S3c"), "{input}: {err}");
            assert!(!err.message().contains("admin"), "{input}: {err}");
        }
    }

    #[test]
    fn refuses_overlong_names_and_labels() {
        let label = "a".repeat(64);
        assert!(Console::parse(&label).is_err());
        let long = format!("{}.com", ["abcdefghij"; 25].join("."));
        assert!(Console::parse(&long).is_err());
    }

    #[test]
    fn messages_are_specific_and_bounded() {
        let msg = |i: &str| Console::parse(i).unwrap_err().message().to_owned();
        assert!(msg("http://x.sentinelone.net").contains("https://"));
        assert!(msg("x.sentinelone.net:8443").contains("port"));
        assert!(msg("x.sentinelone.net\\web").contains("'\\'"));
        assert!(msg("10.1.2.3").contains("IP address"));
        assert!(msg("console.sentinelone.net").contains("not a tenant console"));
        let huge = format!("{}/x", "a".repeat(10_000));
        assert!(msg(&huge).len() < 600);
        // Every refusal tells the admin what to type instead.
        for input in [
            "",
            "   ",
            "localhost",
            "x.localhost",
            "10.1.2.3",
            "ftp://x",
            "a b",
        ] {
            assert!(msg(input).ends_with(EXPECTED), "{input:?}: {}", msg(input));
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 2_000, ..Default::default() })]

        /// Whatever is typed, the result is a plain DNS name reached over
        /// HTTPS, or `invalid-config` with a readable message that shows
        /// no password typed into the value.
        #[test]
        fn any_value_is_a_plain_https_host_or_refused(
            scheme in "(https?://|//|)",
            userinfo in "([a-z]{0,6}(:SECRET(PW|@PW|://PW|/PW)?)?@|)",
            host in "[a-zA-Z0-9.:\\[\\]%_-]{0,24}|\\PC{0,12}",
            rest in "(:[0-9]{0,6}|)([/?#\\\\@][ -~]{0,12}|)",
        ) {
            let input = format!("{scheme}{userinfo}{host}{rest}");
            match Console::parse(&input) {
                Ok(console) => {
                    let h = console.host();
                    // A value with a user or password is always refused.
                    proptest::prop_assert!(userinfo.is_empty(), "{input:?} -> {h}");
                    proptest::prop_assert!(h.len() <= 253 && !h.is_empty(), "{input:?} -> {h}");
                    proptest::prop_assert!(h.split('.').all(|l| !l.is_empty()
                        && !l.starts_with('-') && !l.ends_with('-')
                        && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')),
                        "{input:?} -> {h}");
                    proptest::prop_assert!(h.parse::<core::net::IpAddr>().is_err(), "{input:?} -> {h}");
                    proptest::prop_assert_eq!(console.url(), format!("https://{h}"));
                }
                Err(err) => {
                    proptest::prop_assert_eq!(err.kind(), "invalid-config");
                    let message = err.message();
                    proptest::prop_assert!(!message.contains("SECRET"), "{input:?}: {message}");
                    proptest::prop_assert!(!message.chars().any(char::is_control), "{input:?}: {message}");
                }
            }
        }
    }
}
