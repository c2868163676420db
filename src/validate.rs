//! `validate-connection`: prove the token works and say what it may do.

use alloc::{format, string::String, vec::Vec};

use serde_json::Value;

use crate::api::{Client, Idempotency};
use crate::body;
use crate::error::{Error, Result};
use crate::time::{DAY, format_rfc3339, parse_rfc3339};
use crate::transport::{Method, Response, Transport};

/// Warn when the token has this many days left or fewer.
pub const EXPIRY_WARNING_DAYS: i64 = 30;

/// Whether the token holds one permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PermissionState {
    /// A read needing it succeeded.
    Granted,
    /// A read needing it was refused with 403.
    Denied,
    /// Not checkable without acting, or the check failed for another reason.
    Unknown,
}

/// The outcome of checking one permission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermissionCheck {
    /// SentinelOne permission name, e.g. `Endpoints.view`.
    pub permission: String,
    /// Why the connector needs it.
    pub needed_for: String,
    /// What the check found.
    pub state: PermissionState,
    /// How it was checked, or why it could not be.
    pub detail: String,
}

/// What a successful validation learned. Mirrors the WIT `connection-report`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectionReport {
    /// `https://<host>`.
    pub console_url: String,
    /// Token expiry, RFC 3339 UTC.
    pub token_expires_at: Option<String>,
    /// Days until expiry, rounded to the nearest day; negative once expired.
    pub token_days_left: Option<i64>,
    /// The token's user.
    pub user: Option<String>,
    /// The user's role names.
    pub role: Option<String>,
    /// The user's scope level.
    pub scope: Option<String>,
    /// One entry per needed permission.
    pub permissions: Vec<PermissionCheck>,
    /// Things that need attention.
    pub warnings: Vec<String>,
}

/// A permission checked with a cheap read.
struct Probe {
    permission: &'static str,
    needed_for: &'static str,
    path: &'static str,
}

/// One read per permission the connector's actions need.
const PROBES: &[Probe] = &[
    Probe {
        permission: "Endpoints.view",
        needed_for: "finding hosts for response actions",
        path: "/agents?limit=1&skipCount=true",
    },
    Probe {
        permission: "Threats.view",
        needed_for: "ingesting threats",
        path: "/threats?limit=1&skipCount=true",
    },
];

/// Permissions only an action itself can prove: there is no dry run.
const ACTION_PERMISSIONS: &[(&str, &str)] = &[
    ("Endpoints.disconnectFromNetwork", "isolating hosts"),
    ("Endpoints.reconnectToNetwork", "releasing isolated hosts"),
];

/// Runs the validation against the client's console. `now` is Unix seconds.
pub fn validate<T: Transport>(client: &mut Client<'_, T>, now: i64) -> Result<ConnectionReport> {
    let mut report = ConnectionReport {
        console_url: client.console().url(),
        ..ConnectionReport::default()
    };
    let token_expiry = token_details(client, &mut report)?;
    let user = current_user(client, &mut report)?;
    match token_expiry.or(user.expiry) {
        Some(expires) => note_expiry(&mut report, expires, now),
        None => report.warnings.push(
            "The console did not say when this API token expires; check it under Settings → \
             My User → API Token, and note the date."
                .into(),
        ),
    }
    for probe in PROBES {
        let check = run_probe(client, probe, &mut report.warnings)?;
        report.permissions.push(check);
    }
    let detail = if user.viewer_only {
        report.warnings.push(VIEWER_WARNING.into());
        "The token's only role is Viewer, SentinelOne's built-in read-only role, which does not \
         have this permission."
    } else {
        "SentinelOne offers no read-only check for this permission; the first isolate or \
         release verifies it, and a refusal names it."
    };
    for (permission, needed_for) in ACTION_PERMISSIONS {
        report.permissions.push(PermissionCheck {
            permission: (*permission).into(),
            needed_for: (*needed_for).into(),
            state: PermissionState::Unknown,
            detail: detail.into(),
        });
    }
    Ok(report)
}

/// Said when every role of the token's user is the built-in Viewer: the
/// connection tests fine, and the first isolation during an incident would
/// be refused.
const VIEWER_WARNING: &str = "The token's only role is Viewer, SentinelOne's built-in read-only \
     role: Isolate Host and Release Host will be refused (they need \
     Endpoints.disconnectFromNetwork and Endpoints.reconnectToNetwork), while finding hosts and \
     ingesting threats work. To use the actions, give the token's user or service user a role \
     that has both permissions.";

/// What `GET /user` told about the token's user, beyond the report.
#[derive(Default)]
struct UserFacts {
    /// The token's expiry, Unix seconds, when `/user` says.
    expiry: Option<i64>,
    /// Every role the user holds is the built-in `Viewer`.
    viewer_only: bool,
}

/// `POST /users/api-token-details`: the token's expiry. A 401 ends the
/// validation; other refusals only lose the expiry (it is also in `/user`).
fn token_details<T: Transport>(
    client: &mut Client<'_, T>,
    report: &mut ConnectionReport,
) -> Result<Option<i64>> {
    const PATH: &str = "/users/api-token-details";
    let body = serde_json::json!({ "data": { "apiToken": client.token().expose() } });
    let response = client.send(Method::Post, PATH, Some(&body), Idempotency::Read)?;
    match response.status {
        200..=299 => {
            let value: Value = crate::api::parse_json(&response, Method::Post, PATH)?;
            report.warnings.extend(body::warnings_in(&value));
            Ok(expiry_at(
                &value,
                &["data", "expiresAt"],
                &mut report.warnings,
            ))
        }
        400 | 403 | 404 | 405 => Ok(None),
        _ => Err(client.status_error(Method::Post, PATH, &response, None)),
    }
}

/// `GET /user`: who the token belongs to. A 403 (no `Users.view`) is a warning.
fn current_user<T: Transport>(
    client: &mut Client<'_, T>,
    report: &mut ConnectionReport,
) -> Result<UserFacts> {
    const PATH: &str = "/user";
    let response = client.send(Method::Get, PATH, None, Idempotency::Read)?;
    if response.status == 403 {
        report.warnings.push(
            "The token's role cannot read its own user (Users.view), so user, role and scope \
             are not shown. The connector's actions do not need it."
                .into(),
        );
        return Ok(UserFacts::default());
    }
    if !response.is_success() {
        return Err(client.status_error(Method::Get, PATH, &response, Some("Users.view")));
    }
    let value: Value = crate::api::parse_json(&response, Method::Get, PATH)?;
    let data = value.get("data").unwrap_or(&Value::Null);
    report.user = text(data, "fullName").or_else(|| text(data, "email"));
    report.scope = text(data, "scope");
    let roles = role_names(data);
    report.role = (!roles.is_empty()).then(|| roles.join(", "));
    Ok(UserFacts {
        expiry: expiry_at(data, &["apiToken", "expiresAt"], &mut report.warnings),
        viewer_only: !roles.is_empty() && roles.iter().all(|r| r.eq_ignore_ascii_case("viewer")),
    })
}

/// Role names from `scopeRoles[].roleName`, falling back to the deprecated
/// `lowestRole`; each name once.
fn role_names(user: &Value) -> Vec<String> {
    let listed = user
        .get("scopeRoles")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| text(r, "roleName"));
    let mut names: Vec<String> = Vec::new();
    for name in listed {
        if !names.iter().any(|n| n.eq_ignore_ascii_case(&name)) {
            names.push(name);
        }
    }
    if names.is_empty() {
        names.extend(text(user, "lowestRole"));
    }
    names
}

fn text(value: &Value, key: &str) -> Option<String> {
    value
        .get(key)
        .and_then(Value::as_str)
        .map(body::quote)
        .filter(|s| !s.is_empty())
}

/// The timestamp at `path`, parsed; an unparsable one becomes a warning.
fn expiry_at(value: &Value, path: &[&str], warnings: &mut Vec<String>) -> Option<i64> {
    let raw = path.iter().try_fold(value, |v, k| v.get(*k))?;
    let s = raw.as_str()?;
    let parsed = parse_rfc3339(s);
    if parsed.is_none() {
        warnings.push(format!(
            "The console reported the token's expiry as \"{}\", which is not a date this \
             connector understands; check it in the console.",
            body::quote(s)
        ));
    }
    parsed
}

fn note_expiry(report: &mut ConnectionReport, expires: i64, now: i64) {
    let left = expires - now;
    // Rounded, so a token issued for 5 days reads "5" and not "4" a second later.
    let days = (left + DAY / 2).div_euclid(DAY);
    let date = format_rfc3339(expires);
    report.token_expires_at = Some(date.clone());
    report.token_days_left = Some(days);
    let fix = "Generate a new token in the console (Settings → My User → API Token → Generate) \
               and edit this connection";
    if left <= 0 {
        report
            .warnings
            .push(format!("The API token expired on {date}. {fix}."));
    } else if days <= EXPIRY_WARNING_DAYS {
        let unit = if days == 1 { "day" } else { "days" };
        report.warnings.push(format!(
            "The API token expires in {days} {unit}, on {date}. {fix} before then, or every \
             action and ingestion using this connection will fail."
        ));
    }
}

fn run_probe<T: Transport>(
    client: &mut Client<'_, T>,
    probe: &Probe,
    warnings: &mut Vec<String>,
) -> Result<PermissionCheck> {
    let what = format!("GET {}{}", crate::api::API_PREFIX, probe.path);
    let mut check = PermissionCheck {
        permission: probe.permission.into(),
        needed_for: probe.needed_for.into(),
        state: PermissionState::Unknown,
        detail: String::new(),
    };
    let outcome = client.send(Method::Get, probe.path, None, Idempotency::Read);
    match outcome {
        Ok(Response {
            status: 200..=299, ..
        }) => {
            check.state = PermissionState::Granted;
            check.detail = format!("{what} succeeded.");
        }
        Ok(response) if response.status == 403 => {
            check.state = PermissionState::Denied;
            check.detail = format!(
                "{what} was refused (HTTP 403: {}).",
                body::summarize(&response.body)
            );
            warnings.push(format!(
                "The token's role lacks {}, which is needed for {}. Use a token of a user or \
                 service user whose role has it.",
                probe.permission, probe.needed_for
            ));
        }
        Ok(response) if response.status == 401 => {
            return Err(client.status_error(Method::Get, probe.path, &response, None));
        }
        Ok(response) => {
            let err =
                client.status_error(Method::Get, probe.path, &response, Some(probe.permission));
            check.detail = format!("Could not check: {}", err.message());
            warnings.push(format!(
                "{} could not be checked: {}",
                probe.permission,
                err.message()
            ));
        }
        Err(err @ (Error::EgressDenied(_) | Error::InvalidConfig(_))) => return Err(err),
        Err(err) => {
            check.detail = format!("Could not check: {}", err.message());
            warnings.push(format!(
                "{} could not be checked: {}",
                probe.permission,
                err.message()
            ));
        }
    }
    Ok(check)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::TransportError;
    use crate::transport::testing::Scripted;

    const NOW: i64 = 1_780_000_000; // 2026-05-28T20:26:40Z

    fn run(t: &mut Scripted) -> Result<ConnectionReport> {
        let mut client = t.client("u1-s1", "tok-abcd");
        validate(&mut client, NOW)
    }

    fn details(days: i64) -> String {
        format!(
            r#"{{"data":{{"createdAt":"2026-01-01T00:00:00Z","expiresAt":"{}"}}}}"#,
            format_rfc3339(NOW + days * DAY + 3600)
        )
    }

    const USER: &str = r#"{"data":{"id":"1","email":"soar@example.com","fullName":"SOAR Service",
        "scope":"account","scopeRoles":[{"roleName":"IR Team","accountName":"Acme"},{"roleName":"IR Team"}]}}"#;
    const FORBIDDEN: &str =
        r#"{"errors":[{"code":4030010,"detail":null,"title":"Insufficient permissions"}]}"#;

    #[test]
    fn full_report_for_a_healthy_token() {
        let mut t = Scripted::default()
            .reply(200, &details(180))
            .reply(200, USER)
            .reply(200, r#"{"data":[],"pagination":{"nextCursor":null}}"#)
            .reply(200, r#"{"data":[]}"#);
        let r = run(&mut t).unwrap();
        assert_eq!(
            t.paths(),
            [
                "POST /web/api/v2.1/users/api-token-details",
                "GET /web/api/v2.1/user",
                "GET /web/api/v2.1/agents?limit=1&skipCount=true",
                "GET /web/api/v2.1/threats?limit=1&skipCount=true",
            ]
        );
        let body: Value = serde_json::from_slice(t.sent[0].body.as_ref().unwrap()).unwrap();
        assert_eq!(body, serde_json::json!({"data":{"apiToken":"tok-abcd"}}));
        assert_eq!(r.console_url, "https://u1-s1.sentinelone.net");
        assert_eq!(r.token_days_left, Some(180));
        assert_eq!(r.user.as_deref(), Some("SOAR Service"));
        assert_eq!(r.role.as_deref(), Some("IR Team"));
        assert_eq!(r.scope.as_deref(), Some("account"));
        let states: Vec<_> = r
            .permissions
            .iter()
            .map(|p| (p.permission.as_str(), p.state))
            .collect();
        assert_eq!(
            states,
            [
                ("Endpoints.view", PermissionState::Granted),
                ("Threats.view", PermissionState::Granted),
                ("Endpoints.disconnectFromNetwork", PermissionState::Unknown),
                ("Endpoints.reconnectToNetwork", PermissionState::Unknown),
            ]
        );
        assert!(r.permissions[2].detail.contains("no read-only check"));
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    }

    /// A validation whose `/user` answer is `user` and whose reads pass.
    fn run_with_user(user: &str) -> ConnectionReport {
        let mut t = Scripted::default()
            .reply(200, &details(90))
            .reply(200, user)
            .reply(200, "{}")
            .reply(200, "{}");
        run(&mut t).unwrap()
    }

    #[test]
    fn a_viewer_only_token_is_warned_that_the_actions_will_be_refused() {
        let r = run_with_user(
            r#"{"data":{"scope":"site","scopeRoles":[{"roleName":"Viewer"},
            {"roleName":"viewer"}]}}"#,
        );
        assert_eq!(r.warnings, [VIEWER_WARNING]);
        assert!(r.permissions[2].detail.contains("only role is Viewer"));
        assert!(r.permissions[3].detail.contains("only role is Viewer"));
        assert!(r.permissions[0].detail.contains("succeeded"));
        // Viewer on one site and more elsewhere: no warning.
        let r = run_with_user(
            r#"{"data":{"scope":"site","scopeRoles":[{"roleName":"Viewer"},
            {"roleName":"IR Team"}]}}"#,
        );
        assert_eq!(r.role.as_deref(), Some("Viewer, IR Team"));
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
        // The deprecated field alone counts too.
        let r = run_with_user(r#"{"data":{"scope":"site","lowestRole":"Viewer"}}"#);
        assert_eq!(r.warnings, [VIEWER_WARNING]);
    }

    #[test]
    fn warns_within_thirty_days_naming_the_days() {
        let mut t = Scripted::default()
            .reply(200, &details(5))
            .reply(200, USER)
            .reply(200, "{}")
            .reply(200, "{}");
        let r = run(&mut t).unwrap();
        assert_eq!(r.token_days_left, Some(5));
        assert_eq!(r.warnings.len(), 1);
        assert!(
            r.warnings[0].contains("expires in 5 days"),
            "{:?}",
            r.warnings
        );
    }

    #[test]
    fn unauthorized_stops_at_the_first_call() {
        let mut t = Scripted::default().reply(
            401,
            r#"{"errors":[{"code":4010010,"detail":null,"title":"Authentication Failed"}]}"#,
        );
        let err = run(&mut t).unwrap_err();
        assert_eq!(err.kind(), "unauthorized");
        assert!(
            err.message().contains("Settings → My User → API Token"),
            "{err}"
        );
        assert_eq!(t.sent.len(), 1);
    }

    #[test]
    fn forbidden_user_and_probe_are_warnings_not_failures() {
        let mut t = Scripted::default()
            .reply(200, &details(90))
            .reply(403, FORBIDDEN)
            .reply(200, "{}")
            .reply(403, FORBIDDEN);
        let r = run(&mut t).unwrap();
        assert_eq!(r.user, None);
        assert_eq!(r.permissions[0].state, PermissionState::Granted);
        assert_eq!(r.permissions[1].state, PermissionState::Denied);
        assert!(r.permissions[1].detail.contains("Insufficient permissions"));
        assert_eq!(r.warnings.len(), 2, "{:?}", r.warnings);
        assert!(r.warnings[0].contains("Users.view"));
        assert!(r.warnings[1].contains("lacks Threats.view"));
    }

    #[test]
    fn falls_back_to_user_expiry_when_token_details_is_refused() {
        let user = format!(
            r#"{{"data":{{"scope":"site","apiToken":{{"expiresAt":"{}"}}}}}}"#,
            format_rfc3339(NOW + 10 * DAY)
        );
        let mut t = Scripted::default()
            .reply(400, r#"{"errors":[{"code":400,"title":"bad"}]}"#)
            .reply(200, &user)
            .reply(200, "{}")
            .reply(200, "{}");
        let r = run(&mut t).unwrap();
        assert_eq!(r.token_days_left, Some(10));
        assert_eq!(r.scope.as_deref(), Some("site"));
    }

    #[test]
    fn probe_failures_other_than_403_are_unknown() {
        let mut t = Scripted::default()
            .reply(200, &details(90))
            .reply(200, USER)
            .reply(500, "Server could not process the request.")
            .fail(TransportError::Timeout);
        let r = run(&mut t).unwrap();
        assert!(
            r.permissions
                .iter()
                .all(|p| p.state == PermissionState::Unknown)
        );
        assert!(r.permissions[0].detail.contains("HTTP 500"));
        assert_eq!(r.warnings.len(), 2);
    }

    #[test]
    fn unparsable_expiry_is_a_warning() {
        let mut t = Scripted::default()
            .reply(200, r#"{"data":{"expiresAt":"next tuesday"}}"#)
            .reply(200, r#"{"data":{"scope":"tenant"}}"#)
            .reply(200, "{}")
            .reply(200, "{}");
        let r = run(&mut t).unwrap();
        assert_eq!(r.token_days_left, None);
        assert!(r.warnings.iter().any(|w| w.contains("next tuesday")));
        assert!(r.warnings.iter().any(|w| w.contains("did not say when")));
    }

    #[test]
    fn upstream_errors_end_the_validation() {
        let mut t = Scripted::default().reply(200, "<html>proxy login</html>");
        assert_eq!(run(&mut t).unwrap_err().kind(), "upstream");
        let mut t =
            Scripted::default().reply(500, "{\"errors\":[{\"title\":\"Internal server error\"}]}");
        assert_eq!(run(&mut t).unwrap_err().kind(), "upstream");
    }
}
