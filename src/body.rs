//! Understanding what the console sent back: the `errors[]` envelope, and the
//! HTML, plain-text and foreign JSON bodies that also occur.

use alloc::{
    borrow::ToOwned,
    format,
    string::{String, ToString},
    vec::Vec,
};

use serde::Deserialize;
use serde_json::Value;

/// Longest server text quoted in a message.
const QUOTE_LIMIT: usize = 240;

/// The SentinelOne error envelope `{"errors":[{"code","title","detail"}]}`,
/// read leniently: every field is optional and of any JSON type.
#[derive(Debug, Default, Deserialize)]
struct Envelope {
    #[serde(default)]
    errors: Option<Value>,
    #[serde(default)]
    error: Option<Value>,
    #[serde(default)]
    message: Option<Value>,
}

/// A short, single-line, printable description of an error body, e.g.
/// `Authentication Failed (code 4010010)` or `HTML page "429 Too Many
/// Requests"`. Never fails; an empty body gives `empty body`.
pub fn summarize(body: &str) -> String {
    let text = body.trim();
    if text.is_empty() {
        return "empty body".into();
    }
    if let Some(summary) = serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|value| summarize_json(&value))
    {
        return summary;
    }
    if let Some(title) = html_title(text) {
        return format!("HTML page \"{}\"", quote(&title));
    }
    if looks_like_html(text) {
        return "an HTML page".into();
    }
    // Plain text, possibly followed by junk (seen: JSON then an HTML page).
    let first_line = text.lines().next().unwrap_or_default();
    quote(first_line)
}

fn summarize_json(value: &Value) -> Option<String> {
    let envelope = Envelope::deserialize(value).ok()?;
    let errors = envelope.errors.or_else(|| {
        envelope
            .error
            .as_ref()
            .and_then(|e| e.get("errors").cloned())
    });
    if let Some(Value::Array(items)) = errors {
        let parts: Vec<String> = items.iter().filter_map(describe_error_item).collect();
        if !parts.is_empty() {
            return Some(quote(&parts.join("; ")));
        }
    }
    // Spring-style `{"status":500,"error":"Internal Server Error","path":...}`
    // and `{"message": ...}` bodies.
    let mut parts = Vec::new();
    if let Some(e) = envelope.error.as_ref().and_then(Value::as_str) {
        parts.push(e.to_owned());
    }
    if let Some(m) = envelope.message.as_ref().and_then(Value::as_str) {
        parts.push(m.to_owned());
    }
    (!parts.is_empty()).then(|| quote(&parts.join(": ")))
}

/// `title: detail (code N)` for one `errors[]` item; `None` when it says nothing.
fn describe_error_item(item: &Value) -> Option<String> {
    let text = |key: &str| {
        item.get(key)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    let title = text("title").or_else(|| text("message"));
    let detail = text("detail");
    let code = item.get("code").filter(|c| !c.is_null()).map(|c| match c {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    });
    let mut out = match (title, detail) {
        (Some(t), Some(d)) if t != d => format!("{t}: {d}"),
        (Some(t), _) => t.to_owned(),
        (None, Some(d)) => d.to_owned(),
        (None, None) => return code.map(|c| format!("error code {c}")),
    };
    if let Some(code) = code {
        out.push_str(&format!(" (code {code})"));
    }
    Some(out)
}

/// Non-empty, non-blank items of a 200 response's `errors[]`, described.
/// SentinelOne sometimes sends `"errors": [{}]` with a normal body; those
/// empty items are ignored.
pub fn warnings_in(value: &Value) -> Vec<String> {
    value.get("errors").map(describe_errors).unwrap_or_default()
}

/// [`warnings_in`] for an `errors` value already taken out of its body.
pub fn describe_errors(errors: &Value) -> Vec<String> {
    match errors {
        Value::Array(items) => items
            .iter()
            .filter_map(describe_error_item)
            .map(|s| quote(&s))
            .collect(),
        _ => Vec::new(),
    }
}

fn looks_like_html(text: &str) -> bool {
    let head = text
        .get(..text.len().min(512))
        .unwrap_or(text)
        .to_ascii_lowercase();
    head.contains("<html") || head.contains("<!doctype html") || head.contains("<head")
}

fn html_title(text: &str) -> Option<String> {
    let lower = text.to_ascii_lowercase();
    let start = lower.find("<title>")? + "<title>".len();
    let end = start + lower.get(start..)?.find("</title>")?;
    let title = text.get(start..end)?.trim();
    (!title.is_empty()).then(|| title.to_owned())
}

/// `text` ending a sentence: with a full stop, unless it already ends
/// with one (or `?`, `!`, `…`), so a quoted answer never gives `..`.
pub fn full_stop(text: &str) -> String {
    if text.ends_with(['.', '?', '!', '…']) {
        text.to_owned()
    } else {
        format!("{text}.")
    }
}

/// Printable, single-line, bounded.
pub fn quote(text: &str) -> String {
    let mut out = String::new();
    for (n, c) in text.chars().enumerate() {
        if n == QUOTE_LIMIT {
            out.push('…');
            break;
        }
        out.push(if c.is_control() { ' ' } else { c });
    }
    out.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_variants() {
        let cases = [
            (
                r#"{"errors":[{"code":4010010,"detail":null,"title":"Authentication Failed"}]}"#,
                "Authentication Failed (code 4010010)",
            ),
            (
                r#"{"errors":[{"code":5000010,"detail":"Server could not process the request.","title":"Internal server error"}]}"#,
                "Internal server error: Server could not process the request. (code 5000010)",
            ),
            (
                r#"{"errors":[{"code":400,"title":"scopeId field can't be empty","detail":""}]}"#,
                "scopeId field can't be empty (code 400)",
            ),
            (
                r#"{"errors":[{"message":"bad thing","code":"E1"}]}"#,
                "bad thing (code E1)",
            ),
            (r#"{"error":{"errors":[{"title":"nested"}]}}"#, "nested"),
            (
                r#"{"timestamp":"2026-04-28T04:06:32.776+00:00","status":500,"error":"Internal Server Error","path":"/x"}"#,
                "Internal Server Error",
            ),
            (
                r#"{"error":"missing scope information"}"#,
                "missing scope information",
            ),
            (
                "<html>\r\n<head><title>429 Too Many Requests</title></head></html>",
                "HTML page \"429 Too Many Requests\"",
            ),
            ("<!DOCTYPE html><html><body>x</body></html>", "an HTML page"),
            ("404 page not found\n", "404 page not found"),
            (
                "Server could not process the request.",
                "Server could not process the request.",
            ),
            ("", "empty body"),
            ("{\"data\": [", "{\"data\": ["),
            (r#"{"errors":[{}]}"#, "{\"errors\":[{}]}"),
            ("[1,2,3]", "[1,2,3]"),
        ];
        for (body, want) in cases {
            assert_eq!(summarize(body), want, "{body}");
        }
    }

    #[test]
    fn hostile_bodies_are_bounded_and_printable() {
        let long = "x".repeat(100_000);
        assert!(summarize(&long).chars().count() <= QUOTE_LIMIT + 1);
        let s = summarize("a\x1b[31mred\x07\nsecond line");
        assert!(!s.chars().any(char::is_control), "{s:?}");
        assert_eq!(
            summarize(&crate::transport::Response::text(vec![
                0xff, 0xfe, 0x00, 0x41
            ])),
            "\u{fffd}\u{fffd} A"
        );
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(!summarize(&deep).is_empty());
    }

    #[test]
    fn warnings_skip_empty_items() {
        let v: Value = serde_json::from_str(r#"{"errors":[{}],"data":[]}"#).unwrap();
        assert!(warnings_in(&v).is_empty());
        let v: Value =
            serde_json::from_str(r#"{"errors":[{"title":"partial"}],"data":[]}"#).unwrap();
        assert_eq!(warnings_in(&v), vec!["partial"]);
    }
}
