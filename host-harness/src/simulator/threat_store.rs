//! The simulated threat feed: thousands of threats sorted by `updatedAt`,
//! keyset cursors that contain `+`, `/` and `=`, no `totalItems`, optional
//! updates to older threats while a client pages, and a few threats with a
//! missing or unparsable timestamp.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use serde_json::{Value, json};

use super::query::Query;

/// Threats in the built-in feed.
pub const THREAT_COUNT: usize = 2_400;
/// Indices whose JSON has no `threatInfo.updatedAt`.
const MISSING_TIMESTAMP: [usize; 2] = [500, 1_500];
/// Index whose `threatInfo.updatedAt` is not a date.
const GARBAGE_TIMESTAMP: usize = 900;

#[derive(Debug, Clone)]
struct SimThreat {
    id: String,
    created: i64,
    updated: i64,
    incident_status: &'static str,
}

/// Where a cursor continues: after `(updated, id)` of the query `since`.
#[derive(Debug, Clone)]
struct Keyset {
    since: i64,
    after: (i64, String),
}

/// The feed and the cursors it issued.
pub(crate) struct ThreatStore {
    threats: Vec<SimThreat>,
    /// Newest `updatedAt`, so updates always move forward.
    clock: i64,
    cursors: HashMap<String, Keyset>,
    /// GET /threats requests served, for deterministic churn.
    requests: u64,
}

fn micros(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

fn format_micros(us: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_micros(us.max(0) as u64);
    humantime::format_rfc3339_micros(t).to_string()
}

fn parse_micros(text: &str) -> Option<i64> {
    humantime::parse_rfc3339(text)
        .or_else(|_| humantime::parse_rfc3339_weak(text))
        .ok()
        .map(micros)
}

impl ThreatStore {
    /// 2,400 threats updated over the last 20 hours; the first 300 in
    /// groups of three sharing one microsecond.
    pub(crate) fn builtin() -> ThreatStore {
        let base = micros(SystemTime::now()) - 20 * 3600 * 1_000_000;
        let threats: Vec<SimThreat> = (0..THREAT_COUNT)
            .map(|i| {
                let step = if i < 300 {
                    (i / 3) as i64 * 60
                } else {
                    i as i64 * 25
                };
                let updated = base + step * 1_000_000 + 123_456;
                SimThreat {
                    id: format!("{}", 2_000_000_000_000_000_000u64 + i as u64),
                    created: updated - 3_600_000_000,
                    updated,
                    incident_status: "unresolved",
                }
            })
            .collect();
        let clock = threats.iter().map(|t| t.updated).max().unwrap_or(base);
        ThreatStore {
            threats,
            clock,
            cursors: HashMap::new(),
            requests: 0,
        }
    }

    /// The JSON the feed serves for threat `index`, as text.
    fn render(&self, index: usize) -> String {
        let t = &self.threats[index];
        let mut threat_info = json!({
            "threatId": t.id, "threatName": format!("payload-{index}.exe"),
            "classification": if index.is_multiple_of(2) { "Malware" } else { "Ransomware" },
            "confidenceLevel": if index.is_multiple_of(3) { "suspicious" } else { "malicious" },
            "analystVerdict": "undefined", "incidentStatus": t.incident_status,
            "mitigationStatus": "not_mitigated", "detectionType": "static",
            "sha1": format!("{:040x}", index), "filePath": format!("\\\\Device\\\\HarddiskVolume3\\\\Users\\\\u{index}\\\\payload.exe"),
            "createdAt": format_micros(t.created), "updatedAt": format_micros(t.updated),
        });
        if MISSING_TIMESTAMP.contains(&index) {
            threat_info.as_object_mut().map(|o| o.remove("updatedAt"));
        } else if index == GARBAGE_TIMESTAMP {
            threat_info["updatedAt"] = json!("not-a-date");
        }
        json!({
            "id": t.id,
            "threatInfo": threat_info,
            "agentRealtimeInfo": {"agentId": "1900000000000000001", "agentComputerName": "FIN-LT-0042",
                "agentNetworkStatus": "connected", "siteName": "HQ", "accountName": "Acme"},
            "agentDetectionInfo": {"agentIpV4": "10.0.0.1"},
            "mitigationStatus": [], "indicators": [], "whiteningOptions": ["hash"],
        })
        .to_string()
    }

    /// Serves `GET /threats` for `query`; `churn` says whether this request
    /// also updates two older threats (after answering).
    pub(crate) fn page(
        &mut self,
        query: &Query,
        churn: bool,
        percent_encode_cursor: bool,
    ) -> Result<String, &'static str> {
        let limit = query.limit()?;
        let (since, after) = match query.get("cursor") {
            Some(c) => match self.cursors.get(c) {
                Some(k) => (k.since, Some(k.after.clone())),
                None => return Err("cursor: Invalid cursor."),
            },
            None => match query.get("updatedAt__gte") {
                Some(t) => (
                    parse_micros(t).ok_or("updatedAt__gte: Not a valid datetime.")?,
                    None,
                ),
                None => (i64::MIN, None),
            },
        };
        let mut order: Vec<usize> = (0..self.threats.len())
            .filter(|&i| self.threats[i].updated >= since)
            .filter(|&i| {
                after
                    .as_ref()
                    .is_none_or(|a| (self.threats[i].updated, &self.threats[i].id) > (a.0, &a.1))
            })
            .collect();
        order.sort_by(|&a, &b| {
            (self.threats[a].updated, &self.threats[a].id)
                .cmp(&(self.threats[b].updated, &self.threats[b].id))
        });
        let page: Vec<usize> = order.iter().copied().take(limit).collect();
        let next = (order.len() > page.len()).then(|| {
            let last = &self.threats[*page.last().expect("a non-empty page")];
            let cursor = self.issue_cursor(since, (last.updated, last.id.clone()));
            if percent_encode_cursor {
                url::form_urlencoded::byte_serialize(cursor.as_bytes()).collect()
            } else {
                cursor
            }
        });
        let data: Vec<String> = page.iter().map(|&i| self.render(i)).collect();
        // No totalItems: some v2.1 responses lack it, and clients must not need it.
        let body = format!(
            "{{\"data\":[{}],\"pagination\":{{\"nextCursor\":{}}}}}",
            data.join(","),
            next.map_or("null".into(), |c| Value::String(c).to_string())
        );
        self.requests += 1;
        if churn {
            self.update_two();
        }
        Ok(body)
    }

    /// Base64 of a keyset, framed so it always contains `+`, `/` and `=`.
    fn issue_cursor(&mut self, since: i64, after: (i64, String)) -> String {
        let mut bytes = vec![0xfb, 0xff];
        bytes.extend_from_slice(format!("{}:{}:{}", since, after.0, after.1).as_bytes());
        while bytes.len() % 3 != 1 {
            bytes.push(b' ');
        }
        let cursor = base64::engine::general_purpose::STANDARD.encode(&bytes);
        self.cursors.insert(cursor.clone(), Keyset { since, after });
        cursor
    }

    /// Updates two older threats: a new `updatedAt`, a new status.
    fn update_two(&mut self) {
        let n = self.threats.len() as u64;
        for k in 0..2u64 {
            let index = ((self.requests * 7_919 + k * 104_729) % n) as usize;
            self.clock += 1_000_000;
            let t = &mut self.threats[index];
            t.updated = self.clock;
            t.incident_status = if t.incident_status == "in_progress" {
                "resolved"
            } else {
                "in_progress"
            };
        }
    }

    /// Every threat's current `(id, updatedAt as served)`, `None` for the
    /// ones served without a usable timestamp.
    pub(crate) fn versions(&self) -> Vec<(String, Option<String>)> {
        (0..self.threats.len())
            .map(|i| {
                let bad = MISSING_TIMESTAMP.contains(&i) || i == GARBAGE_TIMESTAMP;
                (
                    self.threats[i].id.clone(),
                    (!bad).then(|| format_micros(self.threats[i].updated)),
                )
            })
            .collect()
    }

    /// The exact JSON text served for threat `id` right now.
    pub(crate) fn served_json(&self, id: &str) -> Option<String> {
        self.threats
            .iter()
            .position(|t| t.id == id)
            .map(|i| self.render(i))
    }
}
