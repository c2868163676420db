//! The simulator's API tokens: who they belong to, what they may do, and the
//! faults they trigger.

use std::time::Duration;

/// Well-known tokens of the built-in profiles. They are simulator fixtures,
/// not secrets.
pub mod tokens {
    /// Admin role, all permissions, 180 days left.
    pub const ADMIN: &str = "sim-admin-7f3a9c";
    /// The admin again, with a token shaped and sized as consoles issue
    /// them (a JWT of 351 characters): what the bench sends, since the
    /// token's length is part of every request's cost (its header, and
    /// the host's search for it in what it hands back).
    pub const ADMIN_JWT: &str = "eyJraWQiOiJzaW0tY29uc29sZS0xIiwiYWxnIjoiUlMyNTYiLCJ0eXAiOiJKV1QifQ.\
        eyJzdWIiOiJzb2FyLWF1dG9tYXRpb25AYWNtZS5leGFtcGxlIiwiaXNzIjoic2ltLnNlbnRpbmVsb25lLm5ldCIsInR5\
        cGUiOiJ1c2VyIiwic2NvcGUiOiJhY2NvdW50IiwiaWF0IjoxNzY0MDAwMDAwLCJleHAiOjE3Nzk1NTIwMDB9.\
        af5LJYe1ZSdt-I9iyo_mgKSp-BG89ITlndt-bOil3Gwm4U9zNVO9fgvtTrExMpmtUn7iS5QfbgUYVzSp_hU591B6movj0U\
        WobaqWRLKL9Co";
    /// Viewer role: reads only.
    pub const VIEWER: &str = "sim-viewer-2b81d4";
    /// Admin role, expires in 5 days.
    pub const EXPIRING: &str = "sim-expiring-5e0c71";
    /// Expired: every call answers 401.
    pub const EXPIRED: &str = "sim-expired-a4d290";
    /// Site-scoped role without `Users.view` and `Threats.view`.
    pub const RESTRICTED: &str = "sim-restricted-c61e08";
    /// Admin; the first request answers 429 (HTML, `Retry-After: 1`).
    pub const RATE_LIMITED_ONCE: &str = "sim-429-once-93bf12";
    /// Admin; every request answers 429 (HTML, `Retry-After: 1`).
    pub const RATE_LIMITED: &str = "sim-429-always-0d5e66";
    /// Admin; the first request answers 503.
    pub const UNAVAILABLE_ONCE: &str = "sim-503-once-47ac3b";
    /// Admin; every request answers 500 with a plain-text body.
    pub const SERVER_ERROR: &str = "sim-500-text-8e2f50";
    /// Admin; every request answers 200 with truncated JSON.
    pub const MALFORMED: &str = "sim-malformed-1c7d9e";
    /// Admin; every request answers 200 with JSON nested 100,000 levels deep.
    pub const DEEP_JSON: &str = "sim-deep-json-3f81c5";
    /// Admin; every request answers 200 with a 12 MiB body.
    pub const OVERSIZED: &str = "sim-oversized-6a0b3f";
    /// Admin; requests never get an answer.
    pub const STALL: &str = "sim-stall-d28e4a";
    /// Admin; the first isolate/release answers 429 (`Retry-After: 1`).
    pub const ACTION_RATE_LIMITED_ONCE: &str = "sim-action-429-5b7e21";
    /// Admin; isolate/release answer a plain-text 500 without acting.
    pub const ACTION_SERVER_ERROR: &str = "sim-action-500-e49a03";
    /// Admin; isolate/release act, then answer a plain-text 500.
    pub const ACTION_ERROR_AFTER_APPLYING: &str = "sim-action-500-applied-71c2f8";
    /// Admin; isolate/release never get an answer.
    pub const ACTION_STALL: &str = "sim-action-stall-0f6d95";
    /// Admin; isolate/release act, then the connection closes unanswered.
    pub const ACTION_HANG_UP_AFTER_APPLYING: &str = "sim-action-hangup-applied-9a4c17";
    /// Admin; isolate/release act and answer, but the connection closes
    /// halfway through the answer's body.
    pub const ACTION_CUT_SHORT: &str = "sim-action-cut-short-e5b830";
    /// Admin; its first 40 threat pages each update two older threats.
    pub const THREATS_CHURN: &str = "sim-threats-churn-8d3b47";
    /// Admin; threat pages after the third answer a plain-text 500.
    pub const THREATS_FAIL_AFTER_3: &str = "sim-threats-fail-after-3-2c9e10";
    /// Admin; every answer echoes this token back, plainly and in escapes.
    pub const ECHO: &str = "sim-echo-token-b5d07e";
}

/// Every permission the simulator checks.
pub const ALL_PERMISSIONS: &[&str] = &[
    "Users.view",
    "Endpoints.view",
    "Threats.view",
    "Endpoints.disconnectFromNetwork",
    "Endpoints.reconnectToNetwork",
];

/// A misbehaviour of the simulated console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultKind {
    /// 429 with nginx's HTML page and `Retry-After: <secs>`.
    RateLimited {
        /// The `Retry-After` value.
        retry_after: u32,
    },
    /// 503 with an HTML page.
    Unavailable,
    /// 500 with `text/plain` "Server could not process the request."
    PlainTextError,
    /// 200 with a JSON body cut short.
    MalformedJson,
    /// 200 with JSON arrays nested this many levels deep.
    DeeplyNested(usize),
    /// 200 with a body of this many bytes.
    Oversized(usize),
    /// No answer: the request hangs until the client gives up.
    Stall,
    /// 403 `Insufficient permissions`, whatever the role.
    Forbidden,
    /// 404 with the plain-text body a host that is not a console sends.
    NotFound,
    /// 302 to this location, as a login page or a moved console answers.
    Redirect(String),
    /// The request is carried out, then answered with a plain-text 500
    /// (the server acted but the client cannot know).
    ErrorAfterApplying,
    /// The request is read, then the connection is closed without an
    /// answer and without acting on it.
    HangUp,
    /// The request is carried out, then the connection is closed without
    /// an answer (a console or proxy that restarted mid-request).
    HangUpAfterApplying,
    /// The request is carried out and answered, but the connection closes
    /// halfway through the body, short of its `Content-Length` (a console
    /// or proxy that died while answering).
    CutShort,
    /// The request is carried out and answered, but the first character of
    /// every `computerName` and `osName` in the answer is the byte 0xFF,
    /// which is not UTF-8 (a proxy or a console bug that garbled it).
    Garbled,
}

/// A fault and when it applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// What happens.
    pub kind: FaultKind,
    /// Only requests whose path contains this; `None` for all.
    pub path_contains: Option<String>,
    /// How many matching requests it hits, then stops; `None` for all.
    pub times: Option<u32>,
    /// Matching requests let through before it starts ("a fault after
    /// page N").
    pub after: u32,
}

impl Fault {
    /// `kind` on every request.
    pub fn always(kind: FaultKind) -> Fault {
        Fault {
            kind,
            path_contains: None,
            times: None,
            after: 0,
        }
    }

    /// `kind` on the first `times` requests.
    pub fn first(times: u32, kind: FaultKind) -> Fault {
        Fault {
            kind,
            path_contains: None,
            times: Some(times),
            after: 0,
        }
    }

    /// Lets the first `n` matching requests through before the fault starts.
    pub fn after(mut self, n: u32) -> Fault {
        self.after = n;
        self
    }

    /// Restricts the fault to paths containing `fragment`.
    pub fn on_path(mut self, fragment: &str) -> Fault {
        self.path_contains = Some(fragment.to_owned());
        self
    }
}

/// A simulated API token's owner and behaviour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenProfile {
    /// Short name, recorded in the request log instead of the token.
    pub name: String,
    /// The user's full name.
    pub full_name: String,
    /// The user's e-mail.
    pub email: String,
    /// Role name.
    pub role: String,
    /// Scope level: `tenant`, `account`, `site`.
    pub scope: String,
    /// Time until expiry; negative means expired (every call answers 401).
    pub expires_in: i64,
    /// Granted permissions, by SentinelOne name.
    pub permissions: Vec<String>,
    /// Misbehaviours, checked in order.
    pub faults: Vec<Fault>,
    /// `GET /threats` requests by this token that also update two older
    /// threats (updates while a client pages); 0 for none.
    pub threat_churn: u32,
    /// Serve `nextCursor` percent-encoded, as some consoles do.
    pub percent_encoded_cursors: bool,
    /// Echo the caller's token back in every JSON answer, as a broken or
    /// hostile console might: appended to display fields (site, account,
    /// OS, user and threat names), and spelt with `\u` escapes in a `note`
    /// field of every record.
    pub echo_token: bool,
}

const DAY: i64 = 86_400;

/// The path fragment of the isolate/release endpoints.
const ACTIONS: &str = "/agents/actions/";

impl TokenProfile {
    /// An admin with every permission, expiring in 180 days.
    pub fn admin(name: &str) -> TokenProfile {
        TokenProfile {
            name: name.into(),
            full_name: "SOAR Automation".into(),
            email: "soar-automation@example.com".into(),
            role: "Admin".into(),
            scope: "account".into(),
            expires_in: 180 * DAY,
            permissions: ALL_PERMISSIONS.iter().map(|p| (*p).into()).collect(),
            faults: Vec::new(),
            threat_churn: 0,
            percent_encoded_cursors: false,
            echo_token: false,
        }
    }

    /// Replaces the role and its permissions.
    pub fn role(mut self, role: &str, permissions: &[&str]) -> TokenProfile {
        self.role = role.into();
        self.permissions = permissions.iter().map(|p| (*p).into()).collect();
        self
    }

    /// Sets the time until expiry (negative: expired).
    pub fn expires_in(mut self, d: Duration, expired: bool) -> TokenProfile {
        let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        self.expires_in = if expired { -secs } else { secs };
        self
    }

    /// Adds a fault.
    pub fn fault(mut self, fault: Fault) -> TokenProfile {
        self.faults.push(fault);
        self
    }

    /// Updates two older threats on each of the first `requests` threat
    /// pages this token reads.
    pub fn threat_churn(mut self, requests: u32) -> TokenProfile {
        self.threat_churn = requests;
        self
    }

    /// Serves threat cursors percent-encoded.
    pub fn percent_encoded_cursors(mut self) -> TokenProfile {
        self.percent_encoded_cursors = true;
        self
    }

    /// Echoes the token back in answers (see [`TokenProfile::echo_token`]).
    pub fn echo_token(mut self) -> TokenProfile {
        self.echo_token = true;
        self
    }

    /// Whether the token has expired.
    pub fn is_expired(&self) -> bool {
        self.expires_in <= 0
    }

    /// Whether the role grants `permission`.
    pub fn can(&self, permission: &str) -> bool {
        self.permissions.iter().any(|p| p == permission)
    }
}

/// The built-in `(token, profile)` pairs.
pub fn builtin() -> Vec<(&'static str, TokenProfile)> {
    use tokens::*;
    let day = Duration::from_secs(DAY as u64);
    let viewer_perms = ["Users.view", "Endpoints.view", "Threats.view"];
    // An admin whose every isolate and release meets `kind`.
    let every_action =
        |name, kind| TokenProfile::admin(name).fault(Fault::always(kind).on_path(ACTIONS));
    vec![
        (ADMIN, TokenProfile::admin("admin")),
        (ADMIN_JWT, TokenProfile::admin("admin")),
        (
            VIEWER,
            TokenProfile::admin("viewer").role("Viewer", &viewer_perms),
        ),
        (
            EXPIRING,
            TokenProfile::admin("expiring").expires_in(day * 5, false),
        ),
        (
            EXPIRED,
            TokenProfile::admin("expired").expires_in(day * 3, true),
        ),
        (RESTRICTED, {
            let mut p =
                TokenProfile::admin("restricted").role("SOC Site Analyst", &["Endpoints.view"]);
            p.scope = "site".into();
            p
        }),
        (
            RATE_LIMITED_ONCE,
            TokenProfile::admin("rate-limited-once")
                .fault(Fault::first(1, FaultKind::RateLimited { retry_after: 1 })),
        ),
        (
            RATE_LIMITED,
            TokenProfile::admin("rate-limited")
                .fault(Fault::always(FaultKind::RateLimited { retry_after: 1 })),
        ),
        (
            UNAVAILABLE_ONCE,
            TokenProfile::admin("unavailable-once").fault(Fault::first(1, FaultKind::Unavailable)),
        ),
        (
            SERVER_ERROR,
            TokenProfile::admin("server-error").fault(Fault::always(FaultKind::PlainTextError)),
        ),
        (
            MALFORMED,
            TokenProfile::admin("malformed").fault(Fault::always(FaultKind::MalformedJson)),
        ),
        (
            DEEP_JSON,
            TokenProfile::admin("deep-json").fault(Fault::always(FaultKind::DeeplyNested(100_000))),
        ),
        (
            OVERSIZED,
            TokenProfile::admin("oversized")
                .fault(Fault::always(FaultKind::Oversized(12 * 1024 * 1024))),
        ),
        (
            STALL,
            TokenProfile::admin("stall").fault(Fault::always(FaultKind::Stall)),
        ),
        (
            ACTION_RATE_LIMITED_ONCE,
            TokenProfile::admin("action-429-once")
                .fault(Fault::first(1, FaultKind::RateLimited { retry_after: 1 }).on_path(ACTIONS)),
        ),
        (
            ACTION_SERVER_ERROR,
            every_action("action-500", FaultKind::PlainTextError),
        ),
        (
            ACTION_ERROR_AFTER_APPLYING,
            every_action("action-500-applied", FaultKind::ErrorAfterApplying),
        ),
        (
            THREATS_CHURN,
            TokenProfile::admin("threats-churn").threat_churn(40),
        ),
        (
            THREATS_FAIL_AFTER_3,
            TokenProfile::admin("threats-fail-after-3").fault(
                Fault::always(FaultKind::PlainTextError)
                    .on_path("/threats")
                    .after(3),
            ),
        ),
        (ECHO, TokenProfile::admin("echo").echo_token()),
        (ACTION_STALL, every_action("action-stall", FaultKind::Stall)),
        (
            ACTION_HANG_UP_AFTER_APPLYING,
            every_action("action-hangup-applied", FaultKind::HangUpAfterApplying),
        ),
        (
            ACTION_CUT_SHORT,
            every_action("action-cut-short", FaultKind::CutShort),
        ),
    ]
}
