//! `threats`: pull threats as NDJSON, saving the checkpoint after each page.
//!
//! Order per page: write the threats, flush (and, with `--output`, fsync),
//! then atomically replace the checkpoint file. With `--output FILE` the
//! checkpoint file also records how many output bytes are committed, and a
//! restart first cuts the file back to that length, so a kill at any point
//! delivers every threat version exactly once. On stdout, a kill between the
//! flush and the rename repeats that one page on restart (each line carries
//! `id` and `updated_at` to dedupe on).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use connector_host::{
    CallError, CallPolicy, Connection, ConnectorError, FetchOptions, HostError, Runtime, Threat,
};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::args::{ThreatsArgs, UsageError, read_capped};
use crate::output::{self, Printer};

/// A checkpoint file holds a few KiB (the versions delivered at the
/// watermark); anything this large is some other file.
const MAX_CHECKPOINT_FILE: u64 = 16 << 20;

/// What the checkpoint file holds.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Saved {
    /// The connector's opaque checkpoint.
    checkpoint: Option<String>,
    /// Bytes of `--output` committed with this checkpoint.
    #[serde(default)]
    output_bytes: u64,
}

/// One NDJSON line. `raw` is embedded verbatim.
#[derive(Serialize)]
struct Line<'a> {
    id: &'a str,
    name: &'a str,
    classification: &'a str,
    confidence: &'a str,
    analyst_verdict: &'a str,
    incident_status: &'a str,
    mitigation_status: &'a str,
    agent_id: &'a str,
    hostname: &'a str,
    site: &'a str,
    account: &'a str,
    created_at: Option<&'a str>,
    updated_at: Option<&'a str>,
    raw: &'a RawValue,
}

/// Where threats go.
enum Sink {
    Stdout(io::Stdout),
    File { file: File, len: u64 },
}

impl Sink {
    fn write_page(&mut self, threats: &[Threat]) -> io::Result<()> {
        let mut buf = Vec::new();
        for t in threats {
            let raw = RawValue::from_string(t.raw.clone())
                .or_else(|_| {
                    RawValue::from_string(serde_json::to_string(&t.raw).unwrap_or_default())
                })
                .map_err(io::Error::other)?;
            let line = Line {
                id: &t.id,
                name: &t.name,
                classification: &t.classification,
                confidence: &t.confidence,
                analyst_verdict: &t.analyst_verdict,
                incident_status: &t.incident_status,
                mitigation_status: &t.mitigation_status,
                agent_id: &t.agent_id,
                hostname: &t.hostname,
                site: &t.site,
                account: &t.account,
                created_at: t.created_at.as_deref(),
                updated_at: t.updated_at.as_deref(),
                raw: &raw,
            };
            serde_json::to_writer(&mut buf, &line).map_err(io::Error::other)?;
            buf.push(b'\n');
        }
        match self {
            Sink::Stdout(out) => {
                let mut out = out.lock();
                out.write_all(&buf)?;
                out.flush()
            }
            Sink::File { file, len } => {
                file.write_all(&buf)?;
                file.sync_data()?;
                *len += buf.len() as u64;
                Ok(())
            }
        }
    }

    fn committed_len(&self) -> u64 {
        match self {
            Sink::Stdout(_) => 0,
            Sink::File { len, .. } => *len,
        }
    }
}

pub async fn run(runtime: &Runtime, args: &ThreatsArgs, printer: Printer) -> ExitCode {
    let prepared = prepare(args);
    let (connection, policy, mut saved, mut sink) = match prepared {
        Ok(v) => v,
        Err(e) => return printer.usage(&e),
    };
    let options = FetchOptions {
        page_size: args.page_size,
        lookback_seconds: Some(args.lookback.as_secs()),
    };
    let progress = ProgressBar::new_spinner();
    progress.set_style(ProgressStyle::with_template("{spinner} {msg}").expect("static template"));
    progress.enable_steady_tick(Duration::from_millis(120));
    let (mut delivered, mut pages) = (0u64, 0u64);
    loop {
        let outcome = runtime
            .fetch_threats(&connection, saved.checkpoint.as_deref(), &options, &policy)
            .await
            .result;
        let page = match outcome {
            Ok(page) => page,
            Err(e) if args.follow && is_transient(&e) => {
                // A long-running pull outlives console outages and rate
                // limits: say so, and try again from the same checkpoint.
                let wait = retry_wait(&e, args.interval);
                progress.suspend(|| {
                    eprintln!("{}", output::error_text(&e));
                    eprintln!(
                        "The checkpoint was not advanced; retrying in {} s.",
                        wait.as_secs()
                    );
                });
                tokio::select! {
                    _ = tokio::time::sleep(wait) => continue,
                    _ = tokio::signal::ctrl_c() => break,
                }
            }
            Err(e) => {
                progress.finish_and_clear();
                eprintln!("{}", output::error_text(&e));
                eprintln!("The checkpoint was not advanced; rerun to resume from it.");
                return ExitCode::from(1);
            }
        };
        for warning in &page.warnings {
            progress.suspend(|| eprintln!("warning: {}", output::shown(warning)));
        }
        if let Err(e) = sink.write_page(&page.threats) {
            progress.finish_and_clear();
            eprintln!("error: writing threats failed: {e}; the checkpoint was not advanced");
            return ExitCode::from(1);
        }
        saved = Saved {
            checkpoint: Some(page.checkpoint),
            output_bytes: sink.committed_len(),
        };
        if let Some(path) = &args.checkpoint_file
            && let Err(e) = store(path, &saved)
        {
            progress.finish_and_clear();
            eprintln!(
                "error: saving the checkpoint to {} failed: {e}",
                path.display()
            );
            return ExitCode::from(1);
        }
        delivered += page.threats.len() as u64;
        pages += 1;
        progress.set_message(format!(
            "{delivered} threat versions in {}",
            output::count(pages, "page")
        ));
        if page.more {
            continue;
        }
        if !args.follow {
            break;
        }
        progress.set_message(format!(
            "{delivered} threat versions in {}; caught up, waiting",
            output::count(pages, "page")
        ));
        tokio::select! {
            _ = tokio::time::sleep(args.interval) => {}
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    progress.finish_and_clear();
    eprintln!(
        "Delivered {delivered} threat versions in {}.",
        output::count(pages, "page")
    );
    ExitCode::SUCCESS
}

/// Failures that may pass by themselves: the console unreachable, rate
/// limiting, a server error, or a call that ran out of time. Everything else
/// (a bad token, a missing permission, a refused destination, ...) needs a
/// person, so retrying it would only hide it.
fn is_transient(error: &CallError) -> bool {
    matches!(
        error,
        CallError::Connector(
            ConnectorError::Unreachable(_)
                | ConnectorError::RateLimited(_)
                | ConnectorError::Upstream(_)
        ) | CallError::Host(HostError::Deadline(_))
    )
}

/// The poll interval, or longer when the console asked for a longer pause.
fn retry_wait(error: &CallError, interval: Duration) -> Duration {
    match error {
        CallError::Connector(ConnectorError::RateLimited(limit)) => limit
            .retry_after_seconds
            .map_or(interval, |s| interval.max(Duration::from_secs(s.into()))),
        _ => interval,
    }
}

fn prepare(args: &ThreatsArgs) -> Result<(Connection, CallPolicy, Saved, Sink), UsageError> {
    let (connection, policy) = args.connection.resolve()?;
    let saved = match &args.checkpoint_file {
        Some(path) => load(path)?,
        None => Saved::default(),
    };
    let sink = match &args.output {
        Some(path) => open_output(path, saved.output_bytes)?,
        None => Sink::Stdout(io::stdout()),
    };
    Ok((connection, policy, saved, sink))
}

fn load(path: &Path) -> Result<Saved, UsageError> {
    match read_capped(path, MAX_CHECKPOINT_FILE) {
        Ok(Some(bytes)) => parse_saved(&bytes).map_err(|why| {
            UsageError(format!(
                "--checkpoint-file {} is not a checkpoint file ({why}); move it away to start \
                 over",
                path.display()
            ))
        }),
        Ok(None) => Err(UsageError(format!(
            "--checkpoint-file {} is over {MAX_CHECKPOINT_FILE} bytes, so it is not a checkpoint \
             file; move it away to start over",
            path.display()
        ))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Saved::default()),
        Err(e) => Err(UsageError(format!(
            "cannot read --checkpoint-file {}: {e}",
            path.display()
        ))),
    }
}

/// A checkpoint file's contents: the fields [`store`] writes, the
/// checkpoint among them. Other JSON (a config file named by mistake) is
/// refused, not read as "no checkpoint yet": that would restart ingestion
/// from the lookback and then overwrite the file.
fn parse_saved(bytes: &[u8]) -> Result<Saved, String> {
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if value.get("checkpoint").is_none() {
        return Err("it has no \"checkpoint\" field".into());
    }
    serde_json::from_value(value).map_err(|e| e.to_string())
}

/// Writes `saved` next to `path`, syncs it, and renames it over `path`.
fn store(path: &Path, saved: &Saved) -> io::Result<()> {
    let tmp = temp_path(path);
    let mut file = File::create(&tmp)?;
    serde_json::to_writer(&mut file, saved).map_err(io::Error::other)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Opens `--output` for appending, cut back to the committed length.
fn open_output(path: &Path, committed: u64) -> Result<Sink, UsageError> {
    let fail = |e: io::Error| UsageError(format!("cannot open --output {}: {e}", path.display()));
    let mut file = OpenOptions::new()
        .create(true)
        // Kept: the committed part of an earlier run; set_len cuts the rest.
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .map_err(fail)?;
    let len = file.metadata().map_err(fail)?.len();
    if len < committed {
        return Err(UsageError(format!(
            "--output {} has {len} bytes but the checkpoint records {committed} delivered; it was \
             changed outside this tool, so resuming could lose threats",
            path.display()
        )));
    }
    file.set_len(committed).map_err(fail)?;
    use std::io::Seek;
    file.seek(io::SeekFrom::End(0)).map_err(fail)?;
    Ok(Sink::File {
        file,
        len: committed,
    })
}
