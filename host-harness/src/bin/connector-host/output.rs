//! Printing results as readable text or as one JSON object.

use std::process::ExitCode;

use connector_host::{
    AuditRecord, CallError, ConnectionReport, ConnectorError, ConnectorInfo, Outcome,
    PermissionState,
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
            print!("{}", describe_text(info));
        }
        ExitCode::SUCCESS
    }

    pub fn validation(&self, outcome: &Outcome<ConnectionReport>) -> ExitCode {
        match &outcome.result {
            Ok(report) => {
                if self.json {
                    emit(
                        json!({"ok": true, "result": report_json(report), "requests": outcome.requests}),
                    );
                } else {
                    print!("{}", report_text(report));
                    print!("{}", requests_text(&outcome.requests));
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
            print!("{}", requests_text(requests));
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

pub fn emit(value: Value) {
    println!("{value}");
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
            if let ConnectorError::RateLimited(r) = e {
                v["retry_after_seconds"] = json!(r.retry_after_seconds);
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
        info.name, info.version, info.id, info.description
    );
    for f in &info.connection_fields {
        let flags = match (f.required, f.secret) {
            (true, true) => " [required, secret]",
            (true, false) => " [required]",
            (false, true) => " [secret]",
            (false, false) => "",
        };
        out += &format!("  {}{flags}  e.g. {}\n    {}\n", f.label, f.example, f.help);
    }
    out += "\nActions:\n";
    for a in &info.actions {
        let kind = if a.destructive {
            "destructive"
        } else {
            "read-only"
        };
        out += &format!("  {} ({}, {kind}): {}\n", a.name, a.id, a.description);
    }
    out
}

pub fn report_text(r: &ConnectionReport) -> String {
    let mut out = format!("Connection OK: {}\n", r.console_url);
    let unknown = "(not readable with this token)";
    out += &format!("  User         {}\n", r.user.as_deref().unwrap_or(unknown));
    out += &format!(
        "  Role         {}{}\n",
        r.role.as_deref().unwrap_or(unknown),
        r.scope
            .as_ref()
            .map(|s| format!(" (scope: {s})"))
            .unwrap_or_default()
    );
    out += &match (&r.token_expires_at, r.token_days_left) {
        (Some(at), Some(days)) => format!("  Token        expires {at} ({days} days left)\n"),
        _ => "  Token        expiry unknown\n".into(),
    };
    out += "  Permissions\n";
    for p in &r.permissions {
        out += &format!(
            "    {:<8} {:<32} {}\n",
            state_name(p.state),
            p.permission,
            p.needed_for
        );
    }
    if !r.warnings.is_empty() {
        out += "  Warnings\n";
        for w in &r.warnings {
            out += &format!("    ! {w}\n");
        }
    }
    out
}

pub fn error_text(error: &CallError) -> String {
    match error {
        CallError::Connector(e) => format!("Connector error ({}): {}", e.kind(), e.message()),
        CallError::Host(e) => format!("Host error ({}): {e}", e.kind()),
    }
}

pub fn requests_text(requests: &[AuditRecord]) -> String {
    let mut out = format!("Requests ({}):\n", requests.len());
    for r in requests {
        let status = r.status.map_or("---".to_owned(), |s| s.to_string());
        out += &format!(
            "  {:<4} {}{}  {status}  {} B  {} ms  {}\n",
            r.method, r.host, r.path, r.bytes, r.duration_ms, r.outcome
        );
    }
    out
}
