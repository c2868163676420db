//! Printing results as readable text or as one JSON object.

use std::borrow::Cow;
use std::process::ExitCode;

use connector_host::{
    ActionOutcome, AuditRecord, CallError, ConnectionReport, ConnectorError, ConnectorInfo, Host,
    NetworkState, Outcome, PermissionState,
};
use serde_json::{Value, json};

use crate::args::UsageError;

/// Prints in the format the user chose.
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    /// One JSON object on stdout instead of text.
    pub json: bool,
}

impl Printer {
    pub fn describe(&self, info: &ConnectorInfo) -> ExitCode {
        if self.json {
            emit(json!({"ok": true, "result": info_json(info), "requests": []}));
        } else {
            out!("{}", describe_text(info));
        }
        ExitCode::SUCCESS
    }

    /// Prints a call's result (with `to_json` / `to_text`) or its error,
    /// then the audit trail; returns the exit status.
    pub fn outcome<T>(
        &self,
        outcome: &Outcome<T>,
        to_json: fn(&T) -> Value,
        to_text: fn(&T) -> String,
    ) -> ExitCode {
        match &outcome.result {
            Ok(value) => {
                if self.json {
                    emit(
                        json!({"ok": true, "result": to_json(value), "requests": outcome.requests}),
                    );
                } else {
                    out!("{}", to_text(value));
                    out!("{}", requests_text(&outcome.requests));
                }
                ExitCode::SUCCESS
            }
            Err(error) => self.failure(error, &outcome.requests),
        }
    }

    pub fn failure(&self, error: &CallError, requests: &[AuditRecord]) -> ExitCode {
        if self.json {
            emit(json!({"ok": false, "error": error_json(error), "requests": requests}));
        } else {
            eprintln!("{}", error_text(error));
            out!("{}", requests_text(requests));
        }
        ExitCode::from(1)
    }

    pub fn usage(&self, error: &UsageError) -> ExitCode {
        if self.json {
            emit(
                json!({"ok": false, "error": {"kind": "usage", "source": "cli", "message": error.0}, "requests": []}),
            );
        } else {
            eprintln!("error: {error}");
        }
        ExitCode::from(2)
    }
}

/// Writes to stdout. A reader that went away (`EPIPE`) is not an error of
/// the command; any other write failure is reported on stderr.
pub fn write_out(args: std::fmt::Arguments) {
    use std::io::Write;
    match std::io::stdout().lock().write_fmt(args) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            eprintln!("error: writing to stdout failed: {e}");
        }
        _ => {}
    }
}

pub fn emit(value: Value) {
    outln!("{value}");
}

pub fn info_json(info: &ConnectorInfo) -> Value {
    json!({
        "id": info.id, "name": info.name, "version": info.version, "description": info.description,
        "connection_fields": info.connection_fields.iter().map(|f| json!({
            "name": f.name, "label": f.label, "help": f.help, "example": f.example,
            "secret": f.secret, "required": f.required,
        })).collect::<Vec<_>>(),
        "actions": info.actions.iter().map(|a| json!({
            "id": a.id, "name": a.name, "description": a.description,
            "destructive": a.destructive, "permissions": a.permissions,
        })).collect::<Vec<_>>(),
    })
}

pub fn report_json(r: &ConnectionReport) -> Value {
    json!({
        "console_url": r.console_url,
        "token_expires_at": r.token_expires_at,
        "token_days_left": r.token_days_left,
        "user": r.user, "role": r.role, "scope": r.scope,
        "permissions": r.permissions.iter().map(|p| json!({
            "permission": p.permission, "needed_for": p.needed_for,
            "state": state_name(p.state), "detail": p.detail,
        })).collect::<Vec<_>>(),
        "warnings": r.warnings,
    })
}

pub fn error_json(error: &CallError) -> Value {
    match error {
        CallError::Connector(e) => {
            let mut v = json!({"kind": e.kind(), "source": "connector", "message": e.message()});
            match e {
                ConnectorError::RateLimited(r) => {
                    v["retry_after_seconds"] = json!(r.retry_after_seconds)
                }
                ConnectorError::Ambiguous(a) => {
                    v["candidates"] = a.candidates.iter().map(host_json).collect();
                }
                _ => {}
            }
            v
        }
        CallError::Host(e) => json!({"kind": e.kind(), "source": "host", "message": e.to_string()}),
    }
}

fn state_name(state: PermissionState) -> &'static str {
    match state {
        PermissionState::Granted => "granted",
        PermissionState::Denied => "denied",
        PermissionState::Unknown => "unknown",
    }
}

pub fn describe_text(info: &ConnectorInfo) -> String {
    let mut out = format!(
        "{} connector {} ({})\n{}\n\nConnection form:\n",
        shown(&info.name),
        shown(&info.version),
        shown(&info.id),
        shown(&info.description)
    );
    for f in &info.connection_fields {
        let flags = match (f.required, f.secret) {
            (true, true) => " [required, secret]",
            (true, false) => " [required]",
            (false, true) => " [secret]",
            (false, false) => "",
        };
        out += &format!(
            "  {}{flags}  e.g. {}\n    {}\n",
            shown(&f.label),
            shown(&f.example),
            shown(&f.help)
        );
    }
    out += "\nActions:\n";
    for a in &info.actions {
        let kind = if a.destructive {
            "destructive"
        } else {
            "read-only"
        };
        out += &format!(
            "  {} ({}, {kind}): {}\n",
            shown(&a.name),
            shown(&a.id),
            shown(&a.description)
        );
    }
    out
}

pub fn report_text(r: &ConnectionReport) -> String {
    let mut out = format!("Connection OK: {}\n", shown(&r.console_url));
    let unknown = "(not readable with this token)";
    out += &format!(
        "  User         {}\n",
        shown(r.user.as_deref().unwrap_or(unknown))
    );
    out += &format!(
        "  Role         {}{}\n",
        shown(r.role.as_deref().unwrap_or(unknown)),
        r.scope
            .as_ref()
            .map(|s| format!(" (scope: {})", shown(s)))
            .unwrap_or_default()
    );
    out += &match (&r.token_expires_at, r.token_days_left) {
        (Some(at), Some(days)) => {
            format!("  Token        expires {} ({days} days left)\n", shown(at))
        }
        _ => "  Token        expiry unknown\n".into(),
    };
    out += "  Permissions\n";
    for p in &r.permissions {
        out += &format!(
            "    {:<8} {:<32} {}\n",
            state_name(p.state),
            shown(&p.permission),
            shown(&p.needed_for)
        );
    }
    if !r.warnings.is_empty() {
        out += "  Warnings\n";
        for w in &r.warnings {
            out += &format!("    ! {}\n", shown(w));
        }
    }
    out
}

pub fn error_text(error: &CallError) -> String {
    match error {
        CallError::Connector(ConnectorError::Ambiguous(a)) => {
            let mut out = format!(
                "Connector error (ambiguous): {}\nCandidates:",
                shown(&a.message)
            );
            for h in &a.candidates {
                out += &format!("\n  {}", host_line(h));
            }
            out
        }
        CallError::Connector(e) => {
            format!("Connector error ({}): {}", e.kind(), shown(e.message()))
        }
        CallError::Host(e) => format!("Host error ({}): {}", e.kind(), shown(&e.to_string())),
    }
}

pub fn requests_text(requests: &[AuditRecord]) -> String {
    let mut out = format!("Requests ({}):\n", requests.len());
    for r in requests {
        let status = r.status.map_or("---".to_owned(), |s| s.to_string());
        out += &format!(
            "  {:<4} {}{}  {status}  {} B  {} ms  {}\n",
            shown(&r.method),
            shown(&r.host),
            shown(&r.path),
            r.bytes,
            r.duration_ms,
            shown(&r.outcome)
        );
    }
    out
}

fn network_state_name(state: NetworkState) -> &'static str {
    match state {
        NetworkState::Connected => "connected",
        NetworkState::Disconnecting => "disconnecting",
        NetworkState::Disconnected => "disconnected",
        NetworkState::Connecting => "connecting",
        NetworkState::Unknown => "unknown",
    }
}

pub fn host_json(h: &Host) -> Value {
    json!({
        "agent_id": h.agent_id, "uuid": h.uuid, "hostname": h.hostname, "site": h.site,
        "account": h.account, "os": h.os, "ip_addresses": h.ip_addresses,
        "last_active": h.last_active, "active": h.active,
        "network_state": network_state_name(h.network_state),
    })
}

/// One line per host, for candidate lists.
fn host_line(h: &Host) -> String {
    format!(
        "agent {}  {}  site {}  last active {}  {}",
        shown(&h.agent_id),
        shown(&h.hostname),
        shown(&h.site),
        shown(h.last_active.as_deref().unwrap_or("unknown")),
        if h.active { "online" } else { "offline" }
    )
}

pub fn host_text(h: &Host) -> String {
    format!(
        "{} (agent {}, uuid {})\n  Site         {} / {}\n  OS           {}\n  IPs          {}\n  Last active  {}{}\n  Network      {}\n",
        shown(&h.hostname),
        shown(&h.agent_id),
        shown(&h.uuid),
        shown(&h.account),
        shown(&h.site),
        shown(&h.os),
        shown(&h.ip_addresses.join(", ")),
        shown(h.last_active.as_deref().unwrap_or("unknown")),
        if h.active { "" } else { " (offline)" },
        network_state_name(h.network_state)
    )
}

pub fn action_json(o: &ActionOutcome) -> Value {
    json!({
        "host": host_json(&o.host), "changed": o.changed,
        "network_state": network_state_name(o.network_state), "detail": o.detail,
    })
}

pub fn action_text(o: &ActionOutcome) -> String {
    format!(
        "{}\n  Changed      {}\n  Network now  {}\n  Host         {}\n",
        shown(&o.detail),
        if o.changed {
            "yes"
        } else {
            "no (already in that state)"
        },
        network_state_name(o.network_state),
        host_line(&o.host)
    )
}

/// `1 page`, `3 pages`.
pub fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// Text from the console or a connector, made safe to print on a terminal.
/// Control characters (escape sequences, line breaks) and invisible
/// formatting characters (bidirectional overrides, zero-width spaces) are
/// shown as `\u{..}` escapes: an endpoint can name itself, and a name that
/// could drive the admin's terminal, or pass for another host in a list of
/// candidates, must show what it is. (JSON output escapes control
/// characters by itself.)
pub fn shown(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_hidden) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if is_hidden(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
}
