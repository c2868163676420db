//! `connector-host bench`: the figures of [`connector_host::bench`] as a
//! table, or as one JSON object with `--json`.

use std::process::ExitCode;

use connector_host::CallError;
use connector_host::bench::{self, BenchOptions, Figure};
use serde_json::json;

use crate::output::{Printer, emit};

pub async fn run(component: &[u8], quick: bool, printer: Printer) -> ExitCode {
    let options = if quick {
        BenchOptions::QUICK
    } else {
        BenchOptions::FULL
    };
    let figures = match bench::run(options, component).await {
        Ok(f) => f,
        Err(e) => return printer.failure(&CallError::Host(e), &[]),
    };
    if printer.json {
        emit(json!({"ok": true, "figures": figures}));
    } else {
        out!("{}", table(&figures));
    }
    ExitCode::SUCCESS
}

fn table(figures: &[Figure]) -> String {
    let mut out = format!(
        "{:<30} {:>12} {:<8} {:<10} {}\n",
        "figure", "value", "unit", "target", "met"
    );
    for f in figures {
        let met = match f.met {
            Some(true) => "yes",
            Some(false) => "NO",
            None => "",
        };
        out += &format!(
            "{:<30} {:>12.2} {:<8} {:<10} {}\n",
            f.name, f.value, f.unit, f.target, met
        );
    }
    out
}
