//! `demo`: the connector against the built-in simulator, no setup needed.

use std::process::ExitCode;

use connector_host::simulator::{Simulator, tokens};
use connector_host::{CallError, CallPolicy, Connection, EgressPolicy, Runtime};
use serde_json::{Value, json};

use crate::output::{self, Printer};

/// The demo console's name; requests for it are routed to the simulator.
const CONSOLE: &str = "demo-tenant";
const HOST: &str = "demo-tenant.sentinelone.net";

/// One demonstrated situation: a token and the outcome it should show.
struct Step {
    title: &'static str,
    token: &'static str,
    expect_error: Option<&'static str>,
}

const STEPS: &[Step] = &[
    Step {
        title: "A healthy admin token",
        token: tokens::ADMIN,
        expect_error: None,
    },
    Step {
        title: "A token that expires in 5 days",
        token: tokens::EXPIRING,
        expect_error: None,
    },
    Step {
        title: "An expired token",
        token: tokens::EXPIRED,
        expect_error: Some("unauthorized"),
    },
];

pub async fn run(runtime: &Runtime, printer: Printer) -> ExitCode {
    let sim = match Simulator::start().await {
        Ok(s) => s,
        Err(e) => {
            return printer.usage(&crate::args::UsageError(format!(
                "cannot start the simulator: {e}"
            )));
        }
    };
    let egress = EgressPolicy::default()
        .connect_to(HOST, sim.addr())
        .expect("the simulator listens on loopback");
    let policy = CallPolicy::with_egress(egress);
    if !printer.json {
        println!("SentinelOne connector demo: the component validates connections against a");
        println!(
            "simulated console at {} (routed to {}).\n",
            HOST,
            sim.addr()
        );
    }
    let mut steps = Vec::new();
    let mut all_as_expected = true;
    for step in STEPS {
        let connection = Connection {
            management_host: CONSOLE.into(),
            api_token: step.token.into(),
        };
        let outcome = runtime.validate_connection(&connection, &policy).await;
        let got = match &outcome.result {
            Ok(_) => None,
            Err(CallError::Connector(e)) => Some(e.kind()),
            Err(CallError::Host(e)) => Some(e.kind()),
        };
        all_as_expected &= got == step.expect_error;
        if printer.json {
            steps.push(step_json(step.title, &outcome));
        } else {
            println!("== {} ==", step.title);
            match &outcome.result {
                Ok(report) => print!("{}", output::report_text(report)),
                Err(e) => println!("{}", output::error_text(e)),
            }
            print!("{}", output::requests_text(&outcome.requests));
            println!();
        }
    }
    if printer.json {
        output::emit(json!({"ok": all_as_expected, "result": {"steps": steps}, "requests": []}));
    } else if all_as_expected {
        println!("Demo complete: every step behaved as expected.");
    } else {
        println!("Demo finished, but a step did not behave as expected (see above).");
    }
    if all_as_expected {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn step_json(
    title: &str,
    outcome: &connector_host::Outcome<connector_host::ConnectionReport>,
) -> Value {
    match &outcome.result {
        Ok(report) => {
            json!({"title": title, "ok": true, "result": output::report_json(report), "requests": outcome.requests})
        }
        Err(e) => {
            json!({"title": title, "ok": false, "error": output::error_json(e), "requests": outcome.requests})
        }
    }
}
