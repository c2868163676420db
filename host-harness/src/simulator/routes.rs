//! Request handling: authentication, faults, and the v2.1 endpoints.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::request::Parts;
use http::{Method, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::query::Query;
use super::{FaultKind, LoggedRequest, SimBody, State, TokenProfile};

const PREFIX: &str = "/web/api/v2.1";

/// The simulator closes the connection instead of answering.
#[derive(Debug)]
pub(crate) struct HangUp;

impl std::fmt::Display for HangUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the simulator hung up on purpose")
    }
}

impl std::error::Error for HangUp {}

/// Answers one request, or hangs up when a fault says so.
pub(crate) async fn handle(
    state: &Arc<Mutex<State>>,
    parts: Parts,
    body: Bytes,
    stop: watch::Receiver<bool>,
) -> Result<Response<SimBody>, HangUp> {
    let (auth_scheme, token) = authorization(&parts);
    let (profile, fault) = {
        let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
        let profile = token.as_ref().and_then(|t| state.tokens.get(t)).cloned();
        if state.logging {
            let entry = LoggedRequest {
                method: parts.method.to_string(),
                path: parts.uri.path().to_owned(),
                query: parts.uri.query().map(str::to_owned),
                host: parts
                    .headers
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_owned),
                body: String::from_utf8_lossy(&body).into_owned(),
                token: profile.as_ref().map(|p| p.name.clone()),
                auth_scheme,
            };
            state.log.push(entry);
        }
        let fault = match (&token, &profile) {
            (Some(t), Some(p)) if !p.is_expired() => take_fault(&mut state, t, p, parts.uri.path()),
            _ => None,
        };
        (profile, fault)
    };
    let path = parts.uri.path();
    if parts.method == Method::GET && path == format!("{PREFIX}/system/status") {
        return Ok(json_response(
            StatusCode::OK,
            &json!({"data": {"health": "ok"}}),
        ));
    }
    let Some(profile) = profile.filter(|p| !p.is_expired()) else {
        return Ok(error(
            StatusCode::UNAUTHORIZED,
            4010010,
            "Authentication Failed",
            None,
        ));
    };
    Ok(match fault {
        Some(FaultKind::ErrorAfterApplying) => {
            let _ = route(state, &parts, &body, &profile);
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Server could not process the request.",
            )
        }
        Some(FaultKind::HangUp) => return Err(HangUp),
        Some(FaultKind::HangUpAfterApplying) => {
            let _ = route(state, &parts, &body, &profile);
            return Err(HangUp);
        }
        Some(FaultKind::CutShort) => cut_short(route(state, &parts, &body, &profile)).await?,
        Some(FaultKind::Garbled) => garbled(route(state, &parts, &body, &profile)).await?,
        Some(fault) => fault_response(fault, stop).await,
        None if profile.echo_token => {
            let token = token.unwrap_or_default();
            echo(route(state, &parts, &body, &profile), &token).await?
        }
        None => route(state, &parts, &body, &profile),
    })
}

/// `response` with its full `Content-Length` but only the first half of its
/// body, after which the connection closes: a console or proxy that died
/// while answering.
async fn cut_short(response: Response<SimBody>) -> Result<Response<SimBody>, HangUp> {
    let (mut parts, body) = response.into_parts();
    let bytes = whole(body).await?;
    parts
        .headers
        .insert(http::header::CONTENT_LENGTH, bytes.len().into());
    let half = bytes.slice(..bytes.len() / 2);
    Ok(Response::from_parts(
        parts,
        HalfBody {
            half: Some(half),
            flushed: false,
        }
        .boxed(),
    ))
}

/// `response` with the first character of each `computerName` and
/// `osName` value replaced by the byte 0xFF, which no UTF-8 text holds.
async fn garbled(response: Response<SimBody>) -> Result<Response<SimBody>, HangUp> {
    let (mut parts, body) = response.into_parts();
    let mut bytes = whole(body).await?.to_vec();
    for key in [&b"\"computerName\":\""[..], b"\"osName\":\""] {
        let mut at = 0;
        while let Some(found) = bytes[at..].windows(key.len()).position(|w| w == key) {
            at += found + key.len();
            if bytes.get(at).is_some_and(|b| b.is_ascii_alphanumeric()) {
                bytes[at] = 0xff;
            }
        }
    }
    parts.headers.remove(http::header::CONTENT_LENGTH);
    Ok(Response::from_parts(parts, full(Bytes::from(bytes))))
}

/// Yields its bytes, lets hyper send them, then fails, which makes hyper
/// close the connection (a body that merely ended short of its length
/// would leave the client waiting for the rest on an open connection).
struct HalfBody {
    half: Option<Bytes>,
    flushed: bool,
}

impl http_body::Body for HalfBody {
    type Data = Bytes;
    type Error = HangUp;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, HangUp>>> {
        use std::task::Poll;
        if let Some(half) = self.half.take() {
            return Poll::Ready(Some(Ok(http_body::Frame::data(half))));
        }
        // hyper writes what it holds only when the body has nothing ready;
        // failing at once would drop the head with the connection.
        if !self.flushed {
            self.flushed = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Poll::Ready(Some(Err(HangUp)))
    }
}

/// The bytes of an answer built here: only a fault's body fails.
async fn whole(body: SimBody) -> Result<Bytes, HangUp> {
    Ok(body.collect().await?.to_bytes())
}

/// Display fields an echoing console appends the token to. Fields that
/// selectors match on (ids, names, addresses) are left alone, so lookups
/// still find their agents.
const ECHO_FIELDS: [&str; 7] = [
    "siteName",
    "accountName",
    "osName",
    "fullName",
    "roleName",
    "threatName",
    "agentComputerName",
];

/// Stands for the escaped token until the answer is serialised.
const ECHO_MARK: &str = "@@echo@@";

/// `response`, a JSON answer, rewritten the way a console that echoes the
/// caller's token would write it.
async fn echo(response: Response<SimBody>, token: &str) -> Result<Response<SimBody>, HangUp> {
    let (mut parts, body) = response.into_parts();
    let bytes = whole(body).await?;
    let Ok(mut value) = serde_json::from_slice::<Value>(&bytes) else {
        return Ok(Response::from_parts(parts, full(bytes)));
    };
    match value.get_mut("data") {
        Some(Value::Array(items)) => items.iter_mut().for_each(|item| echo_into(item, token)),
        Some(item) => echo_into(item, token),
        None => {}
    }
    let spelt: String = token
        .chars()
        .map(|c| format!("\\u{:04x}", u32::from(c)))
        .collect();
    let text = value.to_string().replace(ECHO_MARK, &spelt);
    parts.headers.remove(http::header::CONTENT_LENGTH);
    Ok(Response::from_parts(parts, full(Bytes::from(text))))
}

/// Appends `token` to the display fields of `record` and everything in it,
/// and gives the record a `note` holding the token in escapes.
fn echo_into(record: &mut Value, token: &str) {
    fn append(value: &mut Value, token: &str) {
        match value {
            Value::Object(map) => {
                for (key, v) in map.iter_mut() {
                    match v {
                        Value::String(s) if ECHO_FIELDS.contains(&key.as_str()) => {
                            s.push(' ');
                            s.push_str(token);
                        }
                        other => append(other, token),
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| append(v, token)),
            _ => {}
        }
    }
    append(record, token);
    if let Value::Object(map) = record {
        map.insert("note".into(), Value::String(ECHO_MARK.into()));
    }
}

/// `(scheme, token)` from `Authorization: ApiToken <token>`.
fn authorization(parts: &Parts) -> (Option<String>, Option<String>) {
    let Some(value) = parts
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return (None, None);
    };
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("apitoken") => {
            (Some(scheme.to_owned()), Some(token.trim().to_owned()))
        }
        Some((scheme, _)) => (Some(scheme.to_owned()), None),
        None => (None, None),
    }
}

/// The first fault of `profile` that applies to this request. Every
/// matching fault counts the request, so "after N" points stay exact when a
/// profile has several.
fn take_fault(
    state: &mut State,
    token: &str,
    profile: &TokenProfile,
    path: &str,
) -> Option<FaultKind> {
    let mut chosen = None;
    for (index, fault) in profile.faults.iter().enumerate() {
        if fault
            .path_contains
            .as_deref()
            .is_some_and(|f| !path.contains(f))
        {
            continue;
        }
        let (seen, applied) = state
            .fault_hits
            .entry((token.to_owned(), index))
            .or_default();
        *seen += 1;
        let due = *seen > fault.after && fault.times.is_none_or(|t| *applied < t);
        if due && chosen.is_none() {
            *applied += 1;
            chosen = Some(fault.kind.clone());
        }
    }
    chosen
}

async fn fault_response(fault: FaultKind, mut stop: watch::Receiver<bool>) -> Response<SimBody> {
    match fault {
        FaultKind::RateLimited { retry_after } => {
            let mut r = html(StatusCode::TOO_MANY_REQUESTS, "429 Too Many Requests");
            r.headers_mut().insert("retry-after", retry_after.into());
            r
        }
        FaultKind::Unavailable => html(
            StatusCode::SERVICE_UNAVAILABLE,
            "503 Service Temporarily Unavailable",
        ),
        FaultKind::PlainTextError => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Server could not process the request.",
        ),
        FaultKind::MalformedJson => raw(
            StatusCode::OK,
            "application/json",
            Bytes::from_static(b"{\"data\": [{\"id\": \"12"),
        ),
        FaultKind::DeeplyNested(depth) => {
            let body = format!("{{\"data\":{}{}}}", "[".repeat(depth), "]".repeat(depth));
            raw(StatusCode::OK, "application/json", Bytes::from(body))
        }
        FaultKind::Oversized(n) => {
            let mut body = Vec::with_capacity(n);
            body.extend_from_slice(b"{\"data\":\"");
            body.resize(n.saturating_sub(2), b'x');
            body.extend_from_slice(b"\"}");
            raw(StatusCode::OK, "application/json", Bytes::from(body))
        }
        FaultKind::Stall => {
            // Hold the request until the simulator stops (or an hour passes).
            let _ = tokio::time::timeout(Duration::from_secs(3600), stop.wait_for(|s| *s)).await;
            text(StatusCode::SERVICE_UNAVAILABLE, "stalled")
        }
        FaultKind::Forbidden => error(
            StatusCode::FORBIDDEN,
            4030010,
            "Insufficient permissions",
            None,
        ),
        FaultKind::NotFound => not_found(),
        FaultKind::Redirect(location) => {
            let mut r = text(StatusCode::FOUND, "Found");
            if let Ok(value) = location.parse() {
                r.headers_mut().insert("location", value);
            }
            r
        }
        FaultKind::ErrorAfterApplying
        | FaultKind::HangUp
        | FaultKind::HangUpAfterApplying
        | FaultKind::CutShort
        | FaultKind::Garbled => unreachable!("handled by the caller"),
    }
}

fn route(
    state: &Arc<Mutex<State>>,
    parts: &Parts,
    body: &Bytes,
    profile: &TokenProfile,
) -> Response<SimBody> {
    let Some(path) = parts.uri.path().strip_prefix(PREFIX) else {
        return not_found();
    };
    let needs = |permission: &str| (!profile.can(permission)).then(forbidden);
    match (&parts.method, path) {
        (&Method::POST, "/users/api-token-details") => token_details(body, profile),
        (&Method::GET, "/user") => needs("Users.view").unwrap_or_else(|| user(profile)),
        (&Method::GET, "/agents") => {
            needs("Endpoints.view").unwrap_or_else(|| agents(state, parts.uri.query()))
        }
        (&Method::POST, "/agents/actions/disconnect") => needs("Endpoints.disconnectFromNetwork")
            .unwrap_or_else(|| network_action(state, body, "disconnecting")),
        (&Method::POST, "/agents/actions/connect") => needs("Endpoints.reconnectToNetwork")
            .unwrap_or_else(|| network_action(state, body, "connecting")),
        (&Method::GET, "/threats") => {
            needs("Threats.view").unwrap_or_else(|| threats(state, parts.uri.query(), profile))
        }
        // The real API answers a wrong method with 404, not 405.
        _ => not_found(),
    }
}

fn token_details(body: &Bytes, profile: &TokenProfile) -> Response<SimBody> {
    let asked = serde_json::from_slice::<Value>(body).ok().and_then(|v| {
        v.pointer("/data/apiToken")
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    if asked.is_none() {
        return error(
            StatusCode::BAD_REQUEST,
            4000010,
            "Validation Error",
            Some("data.apiToken: Missing data for required field."),
        );
    }
    json_response(StatusCode::OK, &json!({"data": expiry(profile)}))
}

fn expiry(profile: &TokenProfile) -> Value {
    let now = SystemTime::now();
    let expires = now + Duration::from_secs(profile.expires_in.max(0).unsigned_abs());
    let created = now - Duration::from_secs(30 * 86_400);
    json!({
        "createdAt": humantime::format_rfc3339_micros(created).to_string(),
        "expiresAt": humantime::format_rfc3339_micros(expires).to_string(),
    })
}

fn user(profile: &TokenProfile) -> Response<SimBody> {
    json_response(
        StatusCode::OK,
        &json!({"data": {
            "id": "1000000000000000001",
            "email": profile.email,
            "fullName": profile.full_name,
            "scope": profile.scope,
            "scopeRoles": [{"id": "2000000000000000002", "name": "Acme", "accountName": "Acme",
                            "roleId": "3000000000000000003", "roleName": profile.role, "roles": [profile.role]}],
            "apiToken": expiry(profile),
            "source": "mgmt",
            "twoFaEnabled": false,
            "lowestRole": profile.role,
        }}),
    )
}

/// `GET /agents`: filters, `limit` (1 to 1000) and an offset cursor. The
/// answer shows current states; pending ones then settle for the next read.
fn agents(state: &Arc<Mutex<State>>, query: Option<&str>) -> Response<SimBody> {
    let query = Query::parse(query);
    let limit = match query.limit() {
        Ok(n) => n,
        Err(detail) => {
            return error(
                StatusCode::BAD_REQUEST,
                4000010,
                "Validation Error",
                Some(detail),
            );
        }
    };
    let offset = match query.get("cursor") {
        None => 0,
        Some(c) => match c.strip_prefix("offset:").and_then(|n| n.parse().ok()) {
            Some(n) => n,
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    4000010,
                    "Validation Error",
                    Some("cursor: Invalid cursor."),
                );
            }
        },
    };
    let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
    let matching: Vec<usize> = (0..state.agents.len())
        .filter(|&i| super::fleet::matches(&state.agents[i], query.pairs()))
        .collect();
    let page: Vec<usize> = matching.iter().copied().skip(offset).take(limit).collect();
    let next =
        (offset + page.len() < matching.len()).then(|| format!("offset:{}", offset + page.len()));
    // Written from the records in place: copying hundred-field records on
    // every read would bill the simulator's time to both sides of the bench.
    let response = json_response(
        StatusCode::OK,
        &AgentPage {
            data: page.iter().map(|&i| &state.agents[i]).collect(),
            pagination: json!({"nextCursor": next, "totalItems": matching.len()}),
        },
    );
    for &i in &page {
        let id = state.agents[i]["id"].as_str().unwrap_or_default();
        if !state.unconfirming.iter().any(|u| u == id) {
            super::fleet::settle(&mut state.agents[i]);
        }
    }
    response
}

/// A `GET /agents` answer that borrows its records.
#[derive(serde::Serialize)]
struct AgentPage<'a> {
    data: Vec<&'a Value>,
    pagination: Value,
}

/// `POST /agents/actions/{disconnect,connect}`. Only `{"filter":{"ids":[…]}}`
/// is accepted: a simulator that acted on a broad filter would hide the very
/// bug it exists to catch.
fn network_action(state: &Arc<Mutex<State>>, body: &Bytes, pending: &str) -> Response<SimBody> {
    let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let filter = request.get("filter").and_then(Value::as_object);
    let ids: Option<Vec<String>> = filter
        .filter(|f| f.len() == 1)
        .and_then(|f| f.get("ids"))
        .and_then(Value::as_array)
        .map(|ids| {
            ids.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        });
    let Some(ids) = ids.filter(|ids| !ids.is_empty()) else {
        return error(
            StatusCode::BAD_REQUEST,
            4000010,
            "Validation Error",
            Some("filter: only a non-empty ids list is accepted by this simulator."),
        );
    };
    let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
    let mut affected = 0;
    for agent in state
        .agents
        .iter_mut()
        .filter(|a| ids.iter().any(|id| a["id"] == id.as_str()))
    {
        let live = agent["isActive"] == true && agent["isDecommissioned"] == false;
        if live {
            agent["networkStatus"] = json!(pending);
            affected += 1;
        }
    }
    json_response(
        StatusCode::OK,
        &json!({"errors": [], "data": {"affected": affected}}),
    )
}

/// `GET /threats`, served by the threat store.
fn threats(
    state: &Arc<Mutex<State>>,
    query: Option<&str>,
    profile: &TokenProfile,
) -> Response<SimBody> {
    let query = Query::parse(query);
    let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
    let churned = state.churned.entry(profile.name.clone()).or_default();
    let churn = *churned < profile.threat_churn;
    if churn {
        *churned += 1;
    }
    let Some(store) = state.threats.as_mut() else {
        return json_response(
            StatusCode::OK,
            &json!({"data": [], "pagination": {"nextCursor": null}}),
        );
    };
    match store.page(&query, churn, profile.percent_encoded_cursors) {
        Ok(body) => raw(StatusCode::OK, "application/json", Bytes::from(body)),
        Err(detail) => error(
            StatusCode::BAD_REQUEST,
            4000010,
            "Validation Error",
            Some(detail),
        ),
    }
}

fn forbidden() -> Response<SimBody> {
    error(
        StatusCode::FORBIDDEN,
        4030010,
        "Insufficient permissions",
        None,
    )
}

/// The answer to a request whose body never arrived whole.
pub(crate) fn incomplete_body() -> Response<SimBody> {
    text(StatusCode::BAD_REQUEST, "incomplete request body\n")
}

fn not_found() -> Response<SimBody> {
    text(StatusCode::NOT_FOUND, "404 page not found\n")
}

fn error(status: StatusCode, code: u32, title: &str, detail: Option<&str>) -> Response<SimBody> {
    json_response(
        status,
        &json!({"errors": [{"code": code, "detail": detail, "title": title}]}),
    )
}

fn json_response(status: StatusCode, value: &impl serde::Serialize) -> Response<SimBody> {
    match serde_json::to_vec(value) {
        Ok(body) => raw(status, "application/json", Bytes::from(body)),
        // Only maps with non-string keys fail to serialise; no answer has one.
        Err(_) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the simulator could not serialise its answer",
        ),
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<SimBody> {
    raw(
        status,
        "text/plain; charset=utf-8",
        Bytes::from_static(body.as_bytes()),
    )
}

fn html(status: StatusCode, title: &str) -> Response<SimBody> {
    let page = format!(
        "<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    );
    raw(status, "text/html", Bytes::from(page))
}

/// A body of exactly `bytes`.
fn full(bytes: Bytes) -> SimBody {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

fn raw(status: StatusCode, content_type: &str, body: Bytes) -> Response<SimBody> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        response.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    response
}
