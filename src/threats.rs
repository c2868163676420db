//! `fetch-threats`: pull SentinelOne threats page by page so that every
//! threat version (id + `updatedAt`) is delivered exactly once, with all
//! state in an opaque checkpoint the host stores.
//!
//! Each call fetches one API page: `GET /threats?updatedAt__gte=<watermark>
//! &sortBy=updatedAt&sortOrder=asc`, following `pagination.nextCursor` on
//! later calls. The checkpoint holds the watermark (the newest `updatedAt`
//! delivered), the versions already delivered at exactly that instant (the
//! next query includes them again while more could still appear there; see
//! [`SETTLE_MICROS`]), and a cursor in progress.

use alloc::{
    borrow::ToOwned,
    format,
    string::{String, ToString},
    vec,
    vec::Vec,
};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::api::{Client, Idempotency, encode_cursor, encode_query_value};
use crate::body;
use crate::error::{Error, Result};
use crate::time::{format_rfc3339_micros, parse_rfc3339_micros};
use crate::transport::{Method, Transport};

/// Page size when the caller passes 0.
pub const DEFAULT_PAGE_SIZE: u32 = 100;
/// The API refuses larger pages.
pub const MAX_PAGE_SIZE: u32 = 1000;
/// First-run look-back when the caller passes none: 24 hours.
pub const DEFAULT_LOOKBACK_SECS: u64 = 24 * 3600;
/// How long after the watermark a new query still starts at it rather than
/// just after it, in microseconds (5 minutes), so that a version written at
/// that same instant but shown late by the console is still read. After
/// that the versions at the watermark, all delivered, are not downloaded
/// again: a bulk action can give thousands of threats one `updatedAt`, and a
/// quiet console would otherwise send them all on every poll until some
/// newer update came.
pub const SETTLE_MICROS: i64 = 5 * 60 * 1_000_000;
/// Marks a checkpoint of this connector, version 2.
const CHECKPOINT_PREFIX: &str = "s1-threats-v2:";
/// Version 1, still read: it kept each delivered version's `updatedAt`
/// beside its id, always the watermark, which doubled its size.
const CHECKPOINT_PREFIX_V1: &str = "s1-threats-v1:";

/// Options of one fetch. Mirrors the WIT `fetch-options`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchOptions {
    /// Threats per API page, 1 to 1000; 0 means [`DEFAULT_PAGE_SIZE`].
    pub page_size: u32,
    /// How far back the first run (no checkpoint) starts, in seconds.
    pub lookback_secs: Option<u64>,
}

/// One threat. Mirrors the WIT `threat`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Threat {
    /// Threat id.
    pub id: String,
    /// Threat (file) name.
    pub name: String,
    /// Classification, e.g. `Malware`.
    pub classification: String,
    /// `malicious` or `suspicious`.
    pub confidence: String,
    /// Analyst verdict.
    pub analyst_verdict: String,
    /// Incident status.
    pub incident_status: String,
    /// Mitigation status.
    pub mitigation_status: String,
    /// The agent that reported it.
    pub agent_id: String,
    /// The agent's computer name.
    pub hostname: String,
    /// Site name.
    pub site: String,
    /// Account name.
    pub account: String,
    /// Creation time as sent.
    pub created_at: Option<String>,
    /// Last update time as sent.
    pub updated_at: Option<String>,
    /// The threat object exactly as the console sent it.
    pub raw: String,
}

/// One call's result. Mirrors the WIT `threat-page`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreatPage {
    /// New threat versions, oldest update first.
    pub threats: Vec<Threat>,
    /// Where the next call continues; store it after the threats.
    pub checkpoint: String,
    /// True when the console has more right now: call again at once.
    pub more: bool,
    /// Data problems worth a look (e.g. a threat without a timestamp).
    pub warnings: Vec<String>,
}

/// The decoded checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Checkpoint {
    /// The console it belongs to.
    console: String,
    /// Watermark: newest delivered `updatedAt`, Unix microseconds.
    watermark: i64,
    /// Ids of the versions delivered at exactly the watermark. A bulk
    /// action can give thousands of threats one `updatedAt`, so this is
    /// what bounds the checkpoint's size: about 22 bytes per such threat.
    seen: Vec<String>,
    /// A cursor in progress and the `updatedAt__gte` of its query.
    cursor: Option<(String, i64)>,
}

/// A version 1 checkpoint, read into the current form. Through
/// `serde_json::Value`, whose reader the component has anyway: a derived
/// reader for the old form would add 4 KB.
fn from_v1(json: &str) -> Option<Checkpoint> {
    let v: Value = serde_json::from_str(json).ok()?;
    let pair = |p: &Value| {
        let p = p.as_array().filter(|p| p.len() == 2)?;
        Some((p[0].as_str()?.to_owned(), p[1].as_i64()?))
    };
    let watermark = v.get("watermark")?.as_i64()?;
    let seen = v.get("seen")?.as_array()?.iter().map(pair);
    let cursor = match v.get("cursor")? {
        Value::Null => None,
        c => Some(pair(c)?),
    };
    Some(Checkpoint {
        console: v.get("console")?.as_str()?.to_owned(),
        watermark,
        // Version 1 only ever kept versions at the watermark; one that was
        // not could never be returned by a query from it anyway.
        seen: seen
            .collect::<Option<Vec<_>>>()?
            .into_iter()
            .filter(|(_, at)| *at == watermark)
            .map(|(id, _)| id)
            .collect(),
        cursor,
    })
}

impl Checkpoint {
    fn encode(&self) -> String {
        let json = serde_json::to_string(self).expect("a checkpoint always serialises");
        format!("{CHECKPOINT_PREFIX}{json}")
    }

    fn decode(text: &str, console: &str) -> Result<Checkpoint> {
        let bad = |why: &str| {
            Err(Error::InvalidConfig(format!(
                "The stored threat checkpoint is unusable ({why}). Delete it to start again from \
                 the look-back window; threats already ingested may then be delivered again."
            )))
        };
        let text = text.trim();
        let read = if let Some(json) = text.strip_prefix(CHECKPOINT_PREFIX) {
            serde_json::from_str::<Checkpoint>(json).ok()
        } else if let Some(json) = text.strip_prefix(CHECKPOINT_PREFIX_V1) {
            from_v1(json)
        } else {
            return bad("it was not written by this connector");
        };
        let Some(checkpoint) = read else {
            return bad("it is malformed");
        };
        if checkpoint.console != console {
            return bad(&format!(
                "it belongs to the console {}, not {console}",
                body::quote(&checkpoint.console)
            ));
        }
        Ok(checkpoint)
    }
}

/// The page of a `/threats` response, each item kept as its exact text.
#[derive(Deserialize)]
struct Page<'a> {
    #[serde(borrow, default)]
    data: Option<Vec<&'a RawValue>>,
    #[serde(default)]
    pagination: Option<Pagination>,
    /// Read in the same pass, so the body is parsed once.
    #[serde(default)]
    errors: Option<Value>,
}

#[derive(Deserialize)]
struct Pagination {
    #[serde(default, rename = "nextCursor")]
    next_cursor: Option<String>,
}

/// Fetches the next page after `checkpoint` (`None` on the first run).
/// `now_micros` is the current time, for the first run's look-back.
pub fn fetch<T: Transport>(
    client: &mut Client<'_, T>,
    checkpoint: Option<&str>,
    options: FetchOptions,
    now_micros: i64,
) -> Result<ThreatPage> {
    let page_size = match options.page_size {
        0 => DEFAULT_PAGE_SIZE,
        n if n <= MAX_PAGE_SIZE => n,
        n => {
            return Err(Error::InvalidConfig(format!(
                "The page size {n} is too large: SentinelOne returns at most {MAX_PAGE_SIZE} \
                 threats per page."
            )));
        }
    };
    let console = client.console().host().to_owned();
    let mut state = match checkpoint {
        Some(text) => Checkpoint::decode(text, &console)?,
        None => {
            let lookback = options.lookback_secs.unwrap_or(DEFAULT_LOOKBACK_SECS);
            let lookback = i64::try_from(lookback.saturating_mul(1_000_000)).unwrap_or(i64::MAX);
            Checkpoint {
                console,
                // "As far back as possible" is a fair reading of a huge
                // look-back; a date before 1970 would be refused by the
                // console (HTTP 400) on every poll.
                watermark: now_micros.saturating_sub(lookback).max(0),
                seen: vec![],
                cursor: None,
            }
        }
    };
    let (mut since, mut cursor) = match &state.cursor {
        Some((cursor, since)) => (*since, Some(cursor.clone())),
        None => (query_start(&state, now_micros), None),
    };
    let mut warnings = Vec::new();
    let (mut path, mut response) =
        read_page(client, since, cursor.as_deref(), page_size, &mut warnings)?;
    if response.status == 400 && cursor.is_some() {
        // A saved cursor can expire while the platform is paused. Everything
        // older than the watermark was delivered (pages come oldest first)
        // and the versions at it are in `seen`, so the query from the
        // watermark loses and repeats nothing. Retrying the cursor would
        // fail on every poll, for good.
        warnings.push(format!(
            "The console refused the saved page cursor (HTTP 400: {}), so the pull restarted \
             from the newest update already delivered ({}). No threat is lost or delivered twice.",
            body::summarize(&response.body),
            format_rfc3339_micros(state.watermark)
        ));
        // The query stopped midway, so versions at the watermark may be
        // unread: start at it, however settled.
        (since, cursor) = (state.watermark, None);
        (path, response) = read_page(client, since, None, page_size, &mut warnings)?;
    }
    if !response.is_success() {
        return Err(client.status_error(Method::Get, &path, &response, Some("Threats.view")));
    }
    let page: Page<'_> = crate::api::parse_json(&response, Method::Get, "/threats")?;
    let Some(items) = page.data else {
        return Err(Error::Upstream(format!(
            "The console's threats answer has no data list: {}",
            body::full_stop(&body::summarize(&response.body))
        )));
    };
    warnings.extend(
        page.errors
            .as_ref()
            .map(body::describe_errors)
            .unwrap_or_default(),
    );
    let mut threats = Vec::new();
    let mut delivered: Vec<(String, i64)> = Vec::new();
    // Versions delivered before or on this page. A set, not a scan of
    // `seen`: after a bulk action thousands of threats can share the
    // watermark, and every poll re-reads them until a newer one comes. It is
    // serde_json's map (a B-tree the component has anyway) with the values
    // unused: a set type of its own added 9 KB to the component.
    let mut known = serde_json::Map::new();
    let mut first_time =
        |id: &str, at: i64| known.insert(format!("{at} {id}"), Value::Null).is_none();
    for id in &state.seen {
        first_time(id, state.watermark);
    }
    for (n, raw) in items.into_iter().enumerate() {
        let value: Value = serde_json::from_str(raw.get()).unwrap_or(Value::Null);
        let threat = threat_from(&value, raw.get());
        // Without an id a record can be neither deduplicated nor acted on.
        if !value.is_object() || threat.id.is_empty() {
            warnings.push(format!(
                "Item {} of the threats page is not a threat with an id ({}); it was skipped.",
                n + 1,
                body::summarize(raw.get())
            ));
            continue;
        }
        let version = threat.updated_at.as_deref().and_then(parse_rfc3339_micros);
        match version {
            Some(at) if !first_time(&threat.id, at) => continue,
            Some(at) => delivered.push((threat.id.clone(), at)),
            None => warnings.push(format!(
                "Threat {} has no usable updatedAt ({}); it is delivered, but does not move the \
                 checkpoint.",
                body::quote(&threat.id),
                body::quote(threat.updated_at.as_deref().unwrap_or("missing"))
            )),
        }
        threats.push(threat);
    }
    advance(&mut state, &delivered);
    let next = page
        .pagination
        .and_then(|p| p.next_cursor)
        .filter(|c| !c.is_empty());
    if next.is_some() && next == cursor {
        return Err(Error::Upstream(
            "The console returned the same page cursor again; stopping so ingestion does not \
             loop. The checkpoint was not advanced."
                .into(),
        ));
    }
    let more = next.is_some();
    state.cursor = next.map(|c| (c, since));
    Ok(ThreatPage {
        threats,
        checkpoint: state.encode(),
        more,
        warnings,
    })
}

/// Times a page too large to read is asked for again, a quarter the size.
const MAX_SHRINKS: u32 = 4;

/// Sends the page query; returns its path and the answer. A page larger
/// than the body size limit (threats carry their indicators, so a page of
/// 1000 can pass 8 MiB) is asked for again, smaller, with a warning, so
/// ingestion goes on instead of failing on the same page every poll.
fn read_page<T: Transport>(
    client: &mut Client<'_, T>,
    since: i64,
    cursor: Option<&str>,
    page_size: u32,
    warnings: &mut Vec<String>,
) -> Result<(String, crate::transport::Response)> {
    let mut limit = page_size;
    let mut shrinks = 0;
    loop {
        let mut path = format!(
            "/threats?updatedAt__gte={}&sortBy=updatedAt&sortOrder=asc&limit={limit}&skipCount=true",
            encode_query_value(&format_rfc3339_micros(since))
        );
        if let Some(c) = cursor {
            path.push_str(&format!("&cursor={}", encode_cursor(c)));
        }
        let cap = match client.send_sized(Method::Get, &path, None, Idempotency::Read)? {
            Ok(response) => {
                if limit < page_size {
                    warnings.push(format!(
                        "A page of {page_size} threats was larger than the connector may read, so \
                         {limit} were fetched instead. Set the page size to {limit} or less to \
                         save the wasted download."
                    ));
                }
                return Ok((path, response));
            }
            Err(cap) => cap,
        };
        if limit == 1 || shrinks == MAX_SHRINKS {
            return Err(Error::Upstream(format!(
                "A page of {limit} threat(s) from the console was larger than the {cap}-byte \
                 limit, so it was not read and the checkpoint was not advanced. Either the \
                 console sends oversized threats, or the SOAR platform's response size limit \
                 is set too low for them."
            )));
        }
        limit = (limit / 4).max(1);
        shrinks += 1;
    }
}

/// Where a new query starts: at the watermark, or just after it once the
/// versions delivered there have settled (see [`SETTLE_MICROS`]). Only a
/// query that ran to its end leaves no cursor behind, so by then every
/// version at the watermark the console showed has been read.
fn query_start(state: &Checkpoint, now_micros: i64) -> i64 {
    let settled =
        !state.seen.is_empty() && now_micros.saturating_sub(state.watermark) >= SETTLE_MICROS;
    if settled {
        state.watermark.saturating_add(1)
    } else {
        state.watermark
    }
}

/// Moves the watermark to the newest delivered version and remembers the
/// versions delivered at it.
fn advance(state: &mut Checkpoint, delivered: &[(String, i64)]) {
    let newest = delivered
        .iter()
        .map(|(_, at)| *at)
        .max()
        .unwrap_or(i64::MIN);
    if newest > state.watermark {
        state.watermark = newest;
        state.seen.clear();
    }
    let at_watermark = delivered
        .iter()
        .filter(|(_, at)| *at == state.watermark)
        .map(|(id, _)| id.clone());
    state.seen.extend(at_watermark);
}

/// Reads a threat leniently: v2.1 nests most fields (`threatInfo`,
/// `agentRealtimeInfo`); v2.0 has them flat.
pub fn threat_from(value: &Value, raw: &str) -> Threat {
    let text = |paths: &[&str]| {
        paths.iter().find_map(|p| match value.pointer(p) {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        })
    };
    let field = |paths: &[&str]| text(paths).unwrap_or_default();
    Threat {
        id: field(&["/id", "/threatInfo/threatId"]),
        name: field(&[
            "/threatInfo/threatName",
            "/threatName",
            "/fileDisplayName",
            "/description",
        ]),
        classification: field(&["/threatInfo/classification", "/classification"]),
        confidence: field(&["/threatInfo/confidenceLevel", "/confidenceLevel"]),
        analyst_verdict: field(&["/threatInfo/analystVerdict", "/analystVerdict"]),
        incident_status: field(&["/threatInfo/incidentStatus", "/incidentStatus"]),
        mitigation_status: field(&["/threatInfo/mitigationStatus", "/mitigationStatus"]),
        agent_id: field(&["/agentRealtimeInfo/agentId", "/agentId"]),
        hostname: field(&["/agentRealtimeInfo/agentComputerName", "/agentComputerName"]),
        site: field(&["/agentRealtimeInfo/siteName", "/siteName"]),
        account: field(&["/agentRealtimeInfo/accountName", "/accountName"]),
        created_at: text(&["/threatInfo/createdAt", "/createdAt"]),
        updated_at: text(&["/threatInfo/updatedAt", "/updatedAt"]),
        raw: raw.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::TransportError;
    use crate::transport::testing::Scripted;

    const NOW: i64 = 1_780_000_000_000_000;

    fn threat(id: &str, updated: &str) -> Value {
        serde_json::json!({"id": id, "threatInfo": {"threatId": id, "threatName": "evil.exe",
            "classification": "Malware", "updatedAt": updated, "createdAt": updated},
            "agentRealtimeInfo": {"agentId": "42", "agentComputerName": "FIN-LT-0042"}})
    }

    fn page(items: &[Value], next: Option<&str>) -> String {
        serde_json::json!({"data": items, "pagination": {"nextCursor": next}}).to_string()
    }

    fn fetch_with(t: &mut Scripted, checkpoint: Option<&str>) -> Result<ThreatPage> {
        fetch_at(t, checkpoint, NOW)
    }

    fn fetch_at(t: &mut Scripted, checkpoint: Option<&str>, now: i64) -> Result<ThreatPage> {
        let mut client = t.client("u1", "tok-12345");
        let options = FetchOptions {
            page_size: 2,
            lookback_secs: None,
        };
        fetch(&mut client, checkpoint, options, now)
    }

    #[test]
    fn first_run_queries_from_the_lookback_sorted_ascending() {
        let mut t = Scripted::default().reply(200, &page(&[], None));
        let p = fetch_with(&mut t, None).unwrap();
        assert_eq!(
            t.sent[0].path_and_query,
            "/web/api/v2.1/threats?updatedAt__gte=2026-05-27T20%3A26%3A40.000000Z&sortBy=updatedAt&sortOrder=asc&limit=2&skipCount=true"
        );
        assert!(!p.more && p.threats.is_empty());
    }

    #[test]
    fn a_look_back_past_1970_starts_at_1970() {
        for lookback in [NOW as u64 / 1_000_000 + 1, 100_000 * 86_400, u64::MAX] {
            let mut t = Scripted::default().reply(200, &page(&[], None));
            let mut client = t.client("u1", "tok-12345");
            let options = FetchOptions {
                page_size: 2,
                lookback_secs: Some(lookback),
            };
            fetch(&mut client, None, options, NOW).unwrap();
            assert!(
                t.sent[0]
                    .path_and_query
                    .contains("updatedAt__gte=1970-01-01T00%3A00%3A00.000000Z&"),
                "{lookback}: {}",
                t.sent[0].path_and_query
            );
        }
    }

    #[test]
    fn follows_cursors_and_dedupes_the_overlap_at_the_watermark() {
        // Updated a minute and a half before `NOW`: versions at the
        // watermark may still appear, so the next query starts at it.
        let a = threat("1", "2026-05-28T20:25:00.000001Z");
        let b = threat("2", "2026-05-28T20:25:00.000002Z");
        let c = threat("3", "2026-05-28T20:25:00.000002Z");
        let mut t = Scripted::default()
            .reply(200, &page(&[a.clone(), b.clone()], Some("cur+/=")))
            .reply(200, &page(core::slice::from_ref(&c), None))
            .reply(200, &page(&[b.clone(), c.clone()], None));
        let p1 = fetch_with(&mut t, None).unwrap();
        assert!(p1.more);
        let p2 = fetch_with(&mut t, Some(&p1.checkpoint)).unwrap();
        assert!(
            t.sent[1].path_and_query.ends_with("&cursor=cur%2B%2F%3D"),
            "{}",
            t.sent[1].path_and_query
        );
        assert!(
            t.sent[1]
                .path_and_query
                .contains("updatedAt__gte=2026-05-27T20"),
            "same query while paging"
        );
        assert!(!p2.more);
        let p3 = fetch_with(&mut t, Some(&p2.checkpoint)).unwrap();
        assert!(
            t.sent[2]
                .path_and_query
                .contains("updatedAt__gte=2026-05-28T20%3A25%3A00.000002Z")
        );
        let ids = |p: &ThreatPage| p.threats.iter().map(|t| t.id.clone()).collect::<Vec<_>>();
        assert_eq!(
            (ids(&p1), ids(&p2), ids(&p3)),
            (vec!["1".into(), "2".into()], vec!["3".into()], vec![])
        );
    }

    /// Checkpoints written before version 2 keep working: what they say
    /// was delivered is not delivered again, and the next one is version 2.
    #[test]
    fn a_version_1_checkpoint_is_read_and_nothing_it_holds_comes_again() {
        let at = NOW - 100_000_000 + 2; // 2026-05-28T20:25:00.000002Z
        let v1 = format!(
            "s1-threats-v1:{{\"console\":\"u1.sentinelone.net\",\"watermark\":{at},\
             \"seen\":[[\"2\",{at}],[\"3\",{at}]],\"cursor\":null}}"
        );
        let served = [
            threat("2", "2026-05-28T20:25:00.000002Z"),
            threat("3", "2026-05-28T20:25:00.000002Z"),
            threat("4", "2026-05-28T20:25:00.000003Z"),
        ];
        let mut t = Scripted::default().reply(200, &page(&served, None));
        let p = fetch_with(&mut t, Some(&v1)).unwrap();
        assert!(
            t.sent[0]
                .path_and_query
                .contains("updatedAt__gte=2026-05-28T20%3A25%3A00.000002Z"),
            "{}",
            t.sent[0].path_and_query
        );
        let ids: Vec<_> = p.threats.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["4"]);
        let next = Checkpoint::decode(&p.checkpoint, "u1.sentinelone.net").unwrap();
        assert!(
            p.checkpoint.starts_with("s1-threats-v2:"),
            "{}",
            p.checkpoint
        );
        assert_eq!((next.watermark, next.seen), (at + 1, vec!["4".to_owned()]));
    }

    /// A bulk action gives thousands of threats one `updatedAt`; the
    /// checkpoint then holds each one's id and nothing more.
    #[test]
    fn a_thousand_threats_at_one_instant_cost_the_checkpoint_their_ids() {
        let served: Vec<Value> = (0..1000)
            .map(|n| {
                threat(
                    &format!("{}", 1_900_000_000_000_000_000u64 + n),
                    "2026-05-28T20:25:00Z",
                )
            })
            .collect();
        let mut t = Scripted::default().reply(200, &page(&served, None));
        let p = fetch_with(&mut t, None).unwrap();
        assert_eq!(p.threats.len(), 1000);
        // 19 digits, two quotes and a comma each.
        assert!(
            p.checkpoint.len() <= 1000 * 22 + 100,
            "{}",
            p.checkpoint.len()
        );
    }

    #[test]
    fn a_version_repeated_within_a_page_is_delivered_once() {
        let a = threat("1", "2026-05-28T10:00:00Z");
        let mut t = Scripted::default().reply(200, &page(&[a.clone(), a], None));
        assert_eq!(fetch_with(&mut t, None).unwrap().threats.len(), 1);
    }

    #[test]
    fn a_bulk_update_plateau_is_delivered_once_across_polls() {
        // A bulk action gave 1,500 threats one `updatedAt`. The first poll
        // delivers them; the next re-reads them from the watermark with one
        // newer version among them and must deliver only that one.
        const AT: &str = "2026-05-28T10:00:00Z";
        let plateau: Vec<Value> = (0..1500).map(|n| threat(&n.to_string(), AT)).collect();
        let mut again = plateau.clone();
        again.insert(700, threat("700", "2026-05-28T10:00:01Z"));
        let mut t = Scripted::default()
            .reply(200, &page(&plateau, None))
            .reply(200, &page(&again, None));
        let p1 = fetch_with(&mut t, None).unwrap();
        assert_eq!(p1.threats.len(), 1500);
        let p2 = fetch_with(&mut t, Some(&p1.checkpoint)).unwrap();
        let ids: Vec<(&str, Option<&str>)> = p2
            .threats
            .iter()
            .map(|t| (t.id.as_str(), t.updated_at.as_deref()))
            .collect();
        assert_eq!(ids, [("700", Some("2026-05-28T10:00:01Z"))]);
    }

    #[test]
    fn a_settled_plateau_is_not_downloaded_again() {
        // A bulk action gave three threats one `updatedAt`. Polls within
        // five minutes of it read them again in case more appear at that
        // instant; later polls start just after it.
        const AT: &str = "2026-05-28T10:00:00Z";
        let minutes_after = |m: i64| parse_rfc3339_micros(AT).unwrap() + m * 60_000_000;
        let plateau: Vec<Value> = (0..3).map(|n| threat(&n.to_string(), AT)).collect();
        let newer = threat("9", "2026-05-28T10:05:30Z");
        let mut t = Scripted::default()
            .reply(200, &page(&plateau[..2], Some("c1")))
            .reply(200, &page(&plateau[2..], None))
            .reply(200, &page(&plateau, None))
            .reply(200, &page(core::slice::from_ref(&newer), None));
        let p1 = fetch_at(&mut t, None, minutes_after(1)).unwrap();
        // A query in progress keeps where it started, settled or not.
        let p2 = fetch_at(&mut t, Some(&p1.checkpoint), minutes_after(6)).unwrap();
        let p3 = fetch_at(&mut t, Some(&p2.checkpoint), minutes_after(4)).unwrap();
        let p4 = fetch_at(&mut t, Some(&p3.checkpoint), minutes_after(6)).unwrap();
        let starts: Vec<&str> = t
            .sent
            .iter()
            .map(|r| {
                let query = r.path_and_query.split_once("updatedAt__gte=").unwrap().1;
                query.split_once('&').unwrap().0
            })
            .collect();
        assert_eq!(
            starts,
            [
                "2026-05-27T10%3A01%3A00.000000Z",
                "2026-05-27T10%3A01%3A00.000000Z",
                "2026-05-28T10%3A00%3A00.000000Z",
                "2026-05-28T10%3A00%3A00.000001Z",
            ]
        );
        assert!(t.sent[1].path_and_query.ends_with("&cursor=c1"));
        let ids = |p: &ThreatPage| p.threats.iter().map(|t| t.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&p1), ["0", "1"]);
        assert_eq!(ids(&p2), ["2"]);
        assert!(
            p3.threats.is_empty(),
            "the plateau read again is not delivered twice"
        );
        assert_eq!(ids(&p4), ["9"]);
    }

    #[test]
    fn an_update_is_a_new_version() {
        let mut t = Scripted::default()
            .reply(200, &page(&[threat("1", "2026-05-28T10:00:00Z")], None))
            .reply(
                200,
                &page(
                    &[
                        threat("1", "2026-05-28T10:00:00Z"),
                        threat("1", "2026-05-28T11:00:00Z"),
                    ],
                    None,
                ),
            );
        let p1 = fetch_with(&mut t, None).unwrap();
        let p2 = fetch_with(&mut t, Some(&p1.checkpoint)).unwrap();
        assert_eq!(p2.threats.len(), 1);
        assert_eq!(
            p2.threats[0].updated_at.as_deref(),
            Some("2026-05-28T11:00:00Z")
        );
    }

    #[test]
    fn bad_timestamps_are_delivered_with_a_warning_and_do_not_move_the_watermark() {
        let mut missing = threat("9", "x");
        missing["threatInfo"]
            .as_object_mut()
            .unwrap()
            .remove("updatedAt");
        let mut t = Scripted::default()
            .reply(200, &page(&[missing, threat("8", "yesterday")], None))
            .reply(200, &page(&[], None));
        let p = fetch_with(&mut t, None).unwrap();
        assert_eq!(p.threats.len(), 2);
        assert_eq!(p.warnings.len(), 2);
        assert!(p.warnings[1].contains("yesterday"));
        fetch_with(&mut t, Some(&p.checkpoint)).unwrap();
        assert!(
            t.sent[1]
                .path_and_query
                .contains("updatedAt__gte=2026-05-27T20"),
            "watermark unchanged"
        );
    }

    #[test]
    fn items_that_are_not_threats_with_an_id_are_skipped_with_a_warning() {
        let mut no_id = threat("", "2026-05-28T10:00:00Z");
        no_id["threatInfo"]["threatId"] = Value::Null;
        let body = page(
            &[
                Value::from("junk"),
                no_id,
                serde_json::json!([[1]]),
                threat("7", "2026-05-28T10:00:00Z"),
            ],
            None,
        );
        let mut t = Scripted::default().reply(200, &body);
        let p = fetch_with(&mut t, None).unwrap();
        let ids: Vec<&str> = p.threats.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["7"]);
        assert_eq!(p.warnings.len(), 3, "{:?}", p.warnings);
        assert!(p.warnings[0].starts_with("Item 1 of the threats page"));
        assert!(p.warnings[2].starts_with("Item 3 of the threats page"));
    }

    #[test]
    fn raw_is_the_exact_served_text() {
        let body = r#"{"data":[{"id": "7", "threatInfo": {"updatedAt":"2026-05-28T10:00:00Z", "x": 1.50}}],"pagination":{"nextCursor":null}}"#;
        let mut t = Scripted::default().reply(200, body);
        let p = fetch_with(&mut t, None).unwrap();
        assert_eq!(
            p.threats[0].raw,
            r#"{"id": "7", "threatInfo": {"updatedAt":"2026-05-28T10:00:00Z", "x": 1.50}}"#
        );
    }

    #[test]
    fn bad_checkpoints_and_page_sizes_are_invalid_config() {
        let mut t = Scripted::default();
        for bad in [
            "",
            "garbage",
            "s1-threats-v1:{",
            "s1-threats-v1:{\"console\":1}",
            "s1-threats-v1:{\"console\":\"u1.sentinelone.net\",\"watermark\":1,\"seen\":[[\"2\"]],\"cursor\":null}",
            "s1-threats-v2:{\"console\":\"u1.sentinelone.net\",\"watermark\":1,\"seen\":[[\"2\",1]],\"cursor\":null}",
        ] {
            assert_eq!(
                fetch_with(&mut t, Some(bad)).unwrap_err().kind(),
                "invalid-config",
                "{bad}"
            );
        }
        let foreign = Checkpoint {
            console: "other.sentinelone.net".into(),
            watermark: 0,
            seen: vec![],
            cursor: None,
        };
        let err = fetch_with(&mut t, Some(&foreign.encode())).unwrap_err();
        assert!(
            err.message()
                .contains("belongs to the console other.sentinelone.net"),
            "{err}"
        );
        let mut client = t.client("u1", "tok-12345");
        let options = FetchOptions {
            page_size: 1001,
            lookback_secs: None,
        };
        assert_eq!(
            fetch(&mut client, None, options, NOW).unwrap_err().kind(),
            "invalid-config"
        );
        assert!(t.sent.is_empty());
    }

    fn fetch_pages_of(t: &mut Scripted, page_size: u32) -> Result<ThreatPage> {
        let mut client = t.client("u1", "tok-12345");
        let options = FetchOptions {
            page_size,
            lookback_secs: None,
        };
        fetch(&mut client, None, options, NOW)
    }

    fn limits(t: &Scripted) -> Vec<String> {
        let limit = |p: &str| {
            let after = p.split("limit=").nth(1).unwrap_or_default();
            after.split('&').next().unwrap_or_default().to_owned()
        };
        t.sent.iter().map(|r| limit(&r.path_and_query)).collect()
    }

    #[test]
    fn a_page_too_large_to_read_is_asked_for_again_smaller() {
        let too_large = TransportError::BodyTooLarge(8 << 20);
        let mut t = Scripted::default().fail(too_large.clone()).reply(
            200,
            &page(&[threat("1", "2026-05-28T10:00:00Z")], Some("c1")),
        );
        let p = fetch_pages_of(&mut t, 1000).unwrap();
        assert_eq!(limits(&t), ["1000", "250"]);
        assert_eq!((p.threats.len(), p.more), (1, true));
        assert_eq!(
            p.warnings,
            [
                "A page of 1000 threats was larger than the connector may read, so 250 were fetched \
              instead. Set the page size to 250 or less to save the wasted download."
            ]
        );

        let mut t = Scripted::default();
        for _ in 0..6 {
            t = t.fail(too_large.clone());
        }
        let err = fetch_pages_of(&mut t, 1000).unwrap_err();
        assert_eq!(limits(&t), ["1000", "250", "62", "15", "3"]);
        assert_eq!(
            (err.kind(), err.message()),
            (
                "upstream",
                "A page of 3 threat(s) from the console was larger than the 8388608-byte limit, \
                 so it was not read and the checkpoint was not advanced. Either the console sends \
                 oversized threats, or the SOAR platform's response size limit is set too low for \
                 them."
            )
        );
        let mut t = Scripted::default().fail(too_large);
        fetch_pages_of(&mut t, 1).unwrap_err();
        assert_eq!(limits(&t), ["1"]);
    }

    #[test]
    fn a_failed_page_leaves_the_old_checkpoint_valid() {
        let mut t = Scripted::default()
            .reply(
                200,
                &page(&[threat("1", "2026-05-28T10:00:00Z")], Some("c1")),
            )
            .reply(500, "Server could not process the request.")
            .reply(200, &page(&[threat("2", "2026-05-28T10:00:01Z")], None));
        let p1 = fetch_with(&mut t, None).unwrap();
        assert_eq!(
            fetch_with(&mut t, Some(&p1.checkpoint)).unwrap_err().kind(),
            "upstream"
        );
        let p2 = fetch_with(&mut t, Some(&p1.checkpoint)).unwrap();
        assert_eq!(p2.threats[0].id, "2");
        assert!(t.sent[2].path_and_query.ends_with("&cursor=c1"));
    }

    #[test]
    fn an_expired_cursor_restarts_from_the_watermark_losing_and_repeating_nothing() {
        let a = threat("1", "2026-05-28T10:00:00.000001Z");
        let b = threat("2", "2026-05-28T10:00:00.000002Z");
        let c = threat("3", "2026-05-28T10:00:00.000002Z");
        let d = threat("4", "2026-05-28T10:00:00.000003Z");
        let refused = r#"{"errors":[{"code":4000010,"title":"Validation Error","detail":"cursor: Invalid cursor."}]}"#;
        let mut t = Scripted::default()
            .reply(200, &page(&[a, b.clone()], Some("c1")))
            .reply(400, refused)
            .reply(200, &page(&[b, c, d], None));
        let p1 = fetch_with(&mut t, None).unwrap();
        let p2 = fetch_with(&mut t, Some(&p1.checkpoint)).unwrap();
        assert!(t.sent[1].path_and_query.ends_with("&cursor=c1"));
        // The same call asks again from the newest update delivered,
        // without the cursor.
        assert_eq!(
            t.sent[2].path_and_query,
            "/web/api/v2.1/threats?updatedAt__gte=2026-05-28T10%3A00%3A00.000002Z&sortBy=updatedAt&sortOrder=asc&limit=2&skipCount=true"
        );
        let ids: Vec<&str> = p2.threats.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["3", "4"], "2 was delivered already");
        assert!(!p2.more);
        assert_eq!(
            p2.warnings,
            [
                "The console refused the saved page cursor (HTTP 400: Validation Error: cursor: \
              Invalid cursor. (code 4000010)), so the pull restarted from the newest update \
              already delivered (2026-05-28T10:00:00.000002Z). No threat is lost or delivered \
              twice."
            ]
        );
        // Without a cursor, a 400 is an error as before.
        let mut t = Scripted::default().reply(400, refused);
        assert_eq!(fetch_with(&mut t, None).unwrap_err().kind(), "upstream");
        assert_eq!(t.sent.len(), 1);
    }

    #[test]
    fn a_repeated_cursor_stops_instead_of_looping() {
        let mut t = Scripted::default()
            .reply(200, &page(&[], Some("same")))
            .reply(200, &page(&[], Some("same")));
        let p1 = fetch_with(&mut t, None).unwrap();
        assert_eq!(
            fetch_with(&mut t, Some(&p1.checkpoint)).unwrap_err().kind(),
            "upstream"
        );
    }

    #[test]
    fn v20_flat_threats_are_read_too() {
        let v: Value = serde_json::json!({"id": "5", "classification": "Trojan", "agentComputerName": "PC",
            "agentId": "9", "createdAt": "2018-02-27T04:49:26.257525Z", "updatedAt": "2018-02-27T04:49:26.257525Z",
            "mitigationStatus": "mitigated"});
        let t = threat_from(&v, "{}");
        assert_eq!(
            (
                t.classification.as_str(),
                t.hostname.as_str(),
                t.agent_id.as_str()
            ),
            ("Trojan", "PC", "9")
        );
        assert_eq!(t.mitigation_status, "mitigated");
    }
}
