//! A connector that misbehaves on purpose, so the host's limits can be
//! tested against a real component. `validate-connection` picks the
//! misbehaviour from `management-host`:
//!
//! - `spin`: loops forever (CPU budget);
//! - `spin-host`: loops forever in a host call that does not wait
//!   (`wasi:random`), which counts as CPU time too;
//! - `duty`: loops forever, computing 8 ms then sleeping 2 ms (CPU budget);
//! - `work:<n>`: computes `n` million loop turns, then reports `n` (a
//!   fixed amount of CPU time);
//! - `wait:<n>`: sleeps 15 ms, `n` times, and reports `n` (waiting is not
//!   CPU time, however often a guest waits);
//! - `grow`: allocates without bound (memory limit);
//! - `recurse`: recurses without bound (stack exhaustion trap);
//! - `flood`: sends 10,000 requests (request cap);
//! - `trap`: panics; `exit`: calls `exit(0)` in the middle of the call;
//! - `front:<host>`: GETs the allowed console with a `Host: <host>` header
//!   (domain fronting), reporting what each way of setting it gave and
//!   the response status;
//! - `state`: counts calls in a global, reported as `user` (a fresh
//!   instance per call always reports 1), and counts the marks an earlier
//!   call left in linear memory before leaving its own on the heap and the
//!   shadow stack, reported as `role` (`residue 0, then 4608` unless
//!   memory leaks between calls);
//! - `hoard:<kib>`: keeps creating `wasi:http` header maps holding one
//!   `<kib>` KiB header each, never dropping them (host memory that linear
//!   memory limits do not see); reports how many it made;
//! - `random:<bytes>`: asks the host for that many random bytes, reporting
//!   how many came;
//! - `shout:<kib>`: fails with an error message of `<kib>` KiB;
//! - `echo`: returns the connection's token as `user`, and in its error
//!   text when the token asks for an error (`...-fail`);
//! - `echo-part`: fails quoting all of the token but its last character,
//!   cut short with `…`, as a message quoting a long value would;
//! - `fetch:<authority>[/<path>]`: one GET to `https://<authority>/<path>`
//!   (the console's status path when none is given), its outcome (the
//!   `wasi:http` error code, or the status) reported as `user`;
//! - `floor:<authority>/<agent-id>`: the HTTP exchanges of the connector's
//!   `isolate-host` for that agent, made as the connector makes them (its
//!   headers, token, timeouts and POST body, each answer read to its end)
//!   but parsing nothing, reporting each status and the bytes read: what
//!   the sandbox costs a guest that does no work of its own (the bench's
//!   floor);
//! - anything else: returns a minimal report.
//!
//! `describe`, which has no input to choose by, allocates without bound
//! (memory limit), like `grow`.
//!
//! Compiled only for wasm32; natively this crate is empty.

#![cfg(target_arch = "wasm32")]
#![no_std]

extern crate alloc;

use alloc::{
    format,
    string::{String, ToString},
    vec,
    vec::Vec,
};
use core::sync::atomic::{AtomicU32, Ordering};

/// The connector's own heap and `cabi_realloc`, so that instantiating this
/// component costs what the connector's set-up does.
#[path = "../../../src/heap.rs"]
mod heap;

use wasi::clocks::monotonic_clock;

mod bindings {
    wit_bindgen::generate!({
        world: "sentinelone",
        path: "../../wit",
        with: {
            "wasi:http/outgoing-handler@0.2.12": wasi::http::outgoing_handler,
            "wasi:http/types@0.2.12": wasi::http::types,
            "wasi:io/error@0.2.12": wasi::io::error,
            "wasi:io/poll@0.2.12": wasi::io::poll,
            "wasi:io/streams@0.2.12": wasi::io::streams,
            "wasi:clocks/monotonic-clock@0.2.12": wasi::clocks::monotonic_clock,
        },
    });
}

use bindings::exports::soar::connector::connector as c;
use bindings::exports::soar::connector::events as e;
use bindings::exports::soar::connector::types as t;

struct Hostile;

bindings::export!(Hostile with_types_in bindings);

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    core::arch::wasm32::unreachable()
}

static CALLS: AtomicU32 = AtomicU32::new(0);

fn refuse<T>() -> Result<T, t::ConnectorError> {
    Err(t::ConnectorError::Upstream(
        "not implemented by the hostile connector".into(),
    ))
}

/// Written to the heap and the shadow stack by `state`. An immediate in the
/// code, so it is in linear memory only where a call wrote it.
const MARK: u64 = 0x5EC2_E75E_C2E7_0DD1;

/// Words of linear memory holding [`MARK`], from just above address 0 to
/// the end of memory.
fn residue() -> usize {
    let end = core::arch::wasm32::memory_size(0) * 65536;
    (8..end)
        .step_by(8)
        // SAFETY: every address below `memory_size` is readable in wasm;
        // the read is volatile so it is not reasoned about or elided.
        .filter(|&addr| unsafe { core::ptr::read_volatile(addr as *const u64) } == MARK)
        .count()
}

fn leave_residue() {
    // Through black_box, so the marks are stored, not copied from a
    // constant in the data segment.
    let mark = core::hint::black_box(MARK);
    core::mem::forget(vec![mark; 4096]);
    let mut stack = [0u64; 512];
    stack.fill(mark);
    core::hint::black_box(&stack);
}

/// Unbounded on purpose: the host must stop it.
#[inline(never)]
#[allow(unconditional_recursion)]
fn recurse(depth: u64, pad: &mut [u8; 256]) -> u64 {
    pad[(depth % 256) as usize] = depth as u8;
    let mut next = [0u8; 256];
    recurse(depth + 1, &mut next) + u64::from(pad[0])
}

/// GET `https://<target>` once and describe what happened. `target` is an
/// authority, then optionally a path and query (the console's status path
/// when there is none).
fn request(target: &str) -> String {
    use wasi::http::types::{Fields, OutgoingRequest, Scheme};
    let (authority, path) = match target.find('/') {
        Some(at) => target.split_at(at),
        None => (target, "/web/api/v2.1/system/status"),
    };
    let req = OutgoingRequest::new(Fields::new());
    let _ = req.set_scheme(Some(&Scheme::Https));
    let _ = req.set_authority(Some(authority));
    let _ = req.set_path_with_query(Some(path));
    send(req)
}

/// Sends `req`, waits for its answer and describes it: the status, or the
/// `wasi:http` error code.
fn send(req: wasi::http::types::OutgoingRequest) -> String {
    match wasi::http::outgoing_handler::handle(req, None) {
        Err(code) => format!("{code:?}"),
        Ok(pending) => {
            pending.subscribe().block();
            match pending.get() {
                Some(Ok(Ok(response))) => format!("status {}", response.status()),
                Some(Ok(Err(code))) => format!("{code:?}"),
                other => format!("{other:?}"),
            }
        }
    }
}

/// The connector's isolate sequence for an agent id (list it, POST the
/// disconnect, read it back) against `target` (`<authority>/<agent-id>`),
/// reading every answer but parsing none; reports each status, then the
/// bytes read.
fn floor(target: &str, token: &str) -> String {
    let (authority, agent) = target.split_once('/').unwrap_or((target, ""));
    let list = format!("/web/api/v2.1/agents?ids={agent}&limit=200&skipCount=true");
    let body = format!(r#"{{"filter":{{"ids":["{agent}"]}},"data":{{}}}}"#);
    let disconnect = "/web/api/v2.1/agents/actions/disconnect";
    let exchanges = [
        (list.as_str(), None),
        (disconnect, Some(body.as_bytes())),
        (list.as_str(), None),
    ];
    let mut report = String::new();
    let mut bytes = 0;
    for (path, body) in exchanges {
        match exchange(authority, path, token, body) {
            Ok((status, read)) => {
                report.push_str(&format!("{status} "));
                bytes += read;
            }
            Err(why) => return why,
        }
    }
    format!("{report}{bytes} bytes")
}

/// One exchange as the connector's transport makes it; the status and the
/// body's length, or what failed.
fn exchange(
    authority: &str,
    path: &str,
    token: &str,
    body: Option<&[u8]>,
) -> Result<(u16, usize), String> {
    use wasi::http::types::{OutgoingBody, RequestOptions};
    let req = floor_request(authority, path, token, body)?;
    let options = RequestOptions::new();
    let _ = options.set_connect_timeout(Some(10_000_000_000));
    let _ = options.set_first_byte_timeout(Some(30_000_000_000));
    let _ = options.set_between_bytes_timeout(Some(30_000_000_000));
    let outgoing = match body {
        Some(bytes) => Some((req.body().map_err(|()| "no body".to_string())?, bytes)),
        None => None,
    };
    let pending =
        wasi::http::outgoing_handler::handle(req, Some(options)).map_err(|e| format!("{e:?}"))?;
    if let Some((outgoing, bytes)) = outgoing {
        let stream = outgoing
            .write()
            .map_err(|()| "no body stream".to_string())?;
        stream
            .blocking_write_and_flush(bytes)
            .map_err(|e| format!("{e:?}"))?;
        drop(stream);
        OutgoingBody::finish(outgoing, None).map_err(|e| format!("{e:?}"))?;
    }
    pending.subscribe().block();
    match pending.get() {
        Some(Ok(Ok(response))) => Ok((response.status(), read_answer(response)?)),
        other => Err(format!("{other:?}")),
    }
}

/// The request line and headers the connector sends, with `body`'s type and
/// length when there is one.
fn floor_request(
    authority: &str,
    path: &str,
    token: &str,
    body: Option<&[u8]>,
) -> Result<wasi::http::types::OutgoingRequest, String> {
    use wasi::http::types::{Fields, Method, OutgoingRequest, Scheme};
    let header = |name: &str, value: &[u8]| (name.to_string(), value.to_vec());
    let mut headers = vec![
        header("authorization", format!("ApiToken {token}").as_bytes()),
        header("accept", b"application/json"),
        header("user-agent", b"soar-sentinelone-connector/0.1.0"),
    ];
    if let Some(body) = body {
        headers.push(header("content-type", b"application/json"));
        headers.push(header("content-length", body.len().to_string().as_bytes()));
    }
    let fields = Fields::from_list(&headers).map_err(|e| format!("{e:?}"))?;
    let req = OutgoingRequest::new(fields);
    let method = if body.is_some() {
        Method::Post
    } else {
        Method::Get
    };
    let _ = req.set_method(&method);
    let _ = req.set_scheme(Some(&Scheme::Https));
    let _ = req.set_authority(Some(authority));
    let _ = req.set_path_with_query(Some(path));
    Ok(req)
}

/// Reads an answer's headers and body as the connector does, parsing
/// neither; the body's length.
fn read_answer(response: wasi::http::types::IncomingResponse) -> Result<usize, String> {
    use wasi::http::types::IncomingBody;
    use wasi::io::streams::StreamError;
    core::hint::black_box(response.headers().entries());
    let incoming = response.consume().map_err(|()| "no body".to_string())?;
    let stream = incoming.stream().map_err(|()| "no stream".to_string())?;
    let mut read = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => read.extend_from_slice(&chunk),
            Err(StreamError::Closed) => break,
            Err(e) => return Err(format!("reading the body failed: {e:?}")),
        }
    }
    drop(stream);
    drop(IncomingBody::finish(incoming));
    Ok(read.len())
}

/// GETs the allowed console with a forged `Host` header, set every way
/// `wasi:http` offers, and describes what each gave, then the status.
fn front(host: &str) -> String {
    use wasi::http::types::{Fields, OutgoingRequest, Scheme};
    let forged = [("host".to_string(), host.as_bytes().to_vec())];
    let from_list = Fields::from_list(&forged).map(drop);
    let fields = Fields::new();
    let append = fields.append("Host", host.as_bytes());
    let req = OutgoingRequest::new(fields);
    let _ = req.set_scheme(Some(&Scheme::Https));
    let _ = req.set_authority(Some("tenant.sentinelone.net"));
    let _ = req.set_path_with_query(Some("/web/api/v2.1/system/status"));
    format!("from-list {from_list:?}; append {append:?}; {}", send(req))
}

/// Creates header maps of one `kib` KiB header each until the host stops it,
/// keeping every one alive; returns how many were made.
fn hoard(kib: usize) -> String {
    use wasi::http::types::Fields;
    let value = vec![b'x'; kib * 1024];
    let mut made = 0u32;
    loop {
        let fields = Fields::new();
        if fields.append("x-hoard", &value).is_err() {
            return format!("made {made}; then append refused");
        }
        core::mem::forget(fields);
        made += 1;
    }
}

/// POST `mib` MiB to the allowed console in 4 KiB writes, and describe
/// what happened.
fn upload(mib: usize) -> String {
    use wasi::http::types::{Fields, Method, OutgoingBody, OutgoingRequest, Scheme};
    let req = OutgoingRequest::new(Fields::new());
    let _ = req.set_method(&Method::Post);
    let _ = req.set_scheme(Some(&Scheme::Https));
    let _ = req.set_authority(Some("tenant.sentinelone.net"));
    let _ = req.set_path_with_query(Some("/web/api/v2.1/agents/actions/disconnect"));
    let Ok(body) = req.body() else {
        return "no body".into();
    };
    let pending = match wasi::http::outgoing_handler::handle(req, None) {
        Ok(pending) => pending,
        Err(code) => return format!("{code:?}"),
    };
    let mut written = 0usize;
    if let Ok(stream) = body.write() {
        let chunk = [b'x'; 4096];
        while written < mib << 20 && stream.blocking_write_and_flush(&chunk).is_ok() {
            written += chunk.len();
        }
    }
    let _ = OutgoingBody::finish(body, None);
    pending.subscribe().block();
    format!("wrote {written} bytes; then {:?}", pending.get())
}

/// Allocates, and writes to, a MiB at a time until the host says no.
fn hoard_without_bound() -> ! {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(vec![1u8; 1 << 20]);
        core::hint::black_box(&hoard);
    }
}

impl c::Guest for Hostile {
    fn describe() -> c::ConnectorInfo {
        hoard_without_bound()
    }

    fn validate_connection(conn: t::Connection) -> Result<c::ConnectionReport, t::ConnectorError> {
        let calls = CALLS.fetch_add(1, Ordering::SeqCst) + 1;
        let mut user = calls.to_string();
        let mut role = None;
        match conn.management_host.as_str() {
            "state" => {
                let before = residue();
                leave_residue();
                role = Some(format!("residue {before}, then {}", residue()));
            }
            "spin" => {
                let mut x = 0u64;
                loop {
                    x = core::hint::black_box(x.wrapping_add(1));
                }
            }
            "spin-host" => loop {
                // Spends its time in a host call that never waits.
                core::hint::black_box(wasi::random::random::get_random_bytes(65_536));
            },
            "duty" => loop {
                // 80% computing, 20% waiting: most ticks land while it runs.
                let until = monotonic_clock::now() + 8_000_000;
                while monotonic_clock::now() < until {
                    core::hint::black_box(until);
                }
                monotonic_clock::subscribe_duration(2_000_000).block();
            },
            other if other.starts_with("work:") => {
                // A fixed amount of computing: millions of loop turns.
                let millions: u64 = other["work:".len()..].parse().unwrap_or(1);
                let mut x = 0u64;
                for _ in 0..millions * 1_000_000 {
                    x = core::hint::black_box(x.wrapping_add(1));
                }
                user = millions.to_string();
            }
            other if other.starts_with("wait:") => {
                let waits: u32 = other["wait:".len()..].parse().unwrap_or(1);
                for _ in 0..waits {
                    monotonic_clock::subscribe_duration(15_000_000).block();
                }
                user = waits.to_string();
            }
            "grow" => hoard_without_bound(),
            "recurse" => {
                let mut pad = [0u8; 256];
                let _ = core::hint::black_box(recurse(0, &mut pad));
            }
            "flood" => {
                for _ in 0..10_000 {
                    request("tenant.sentinelone.net");
                }
            }
            other if other.starts_with("fetch:") => user = request(&other["fetch:".len()..]),
            other if other.starts_with("floor:") => {
                user = floor(&other["floor:".len()..], &conn.api_token);
            }
            other if other.starts_with("front:") => user = front(&other["front:".len()..]),
            other if other.starts_with("hoard:") => {
                user = hoard(other["hoard:".len()..].parse().unwrap_or(1));
            }
            other if other.starts_with("random:") => {
                let len = other["random:".len()..].parse().unwrap_or(1);
                user = wasi::random::random::get_random_bytes(len)
                    .len()
                    .to_string();
            }
            other if other.starts_with("post:") => {
                user = upload(other["post:".len()..].parse().unwrap_or(1));
            }
            other if other.starts_with("shout:") => {
                let kib: usize = other["shout:".len()..].parse().unwrap_or(1);
                return Err(t::ConnectorError::Upstream("!".repeat(kib << 10)));
            }
            "echo" if conn.api_token.ends_with("-fail") => {
                return Err(t::ConnectorError::Upstream(format!(
                    "the console said {}",
                    conn.api_token
                )));
            }
            "echo" => user = conn.api_token.clone(),
            "echo-part" => {
                let token = conn.api_token.as_str();
                let cut = token.get(..token.len().saturating_sub(1)).unwrap_or(token);
                return Err(t::ConnectorError::Upstream(format!(
                    "the console said \"{cut}…\""
                )));
            }
            "trap" => panic!("the hostile connector panics"),
            // Claims success on the way out: status 0.
            "exit" => wasi::cli::exit::exit(Ok(())),
            _ => {}
        }
        Ok(c::ConnectionReport {
            console_url: String::new(),
            token_expires_at: None,
            token_days_left: None,
            user: Some(user),
            role,
            scope: None,
            permissions: vec![],
            warnings: vec![],
        })
    }

    fn get_host(_: t::Connection, _: t::HostSelector) -> Result<t::Host, t::ConnectorError> {
        refuse()
    }

    fn isolate_host(
        _: t::Connection,
        _: t::HostSelector,
        _: c::ActionOptions,
    ) -> Result<c::ActionOutcome, t::ConnectorError> {
        refuse()
    }

    fn release_host(
        _: t::Connection,
        _: t::HostSelector,
        _: c::ActionOptions,
    ) -> Result<c::ActionOutcome, t::ConnectorError> {
        refuse()
    }
}

impl e::Guest for Hostile {
    fn fetch_threats(
        _: t::Connection,
        _: Option<String>,
        _: e::FetchOptions,
    ) -> Result<e::ThreatPage, t::ConnectorError> {
        refuse()
    }
}
