//! `demo`: the connector against the built-in simulator, no setup needed.
//! Validates three tokens, then finds, isolates, re-isolates and releases a
//! host, and shows the two refusals that keep the wrong machine safe.

use std::process::ExitCode;

use connector_host::simulator::{Simulator, tokens};
use connector_host::{
    ActionOptions, CallError, CallPolicy, Connection, EgressPolicy, HostSelector, Outcome, Runtime,
};
use serde_json::{Value, json};

use crate::output::{self, Printer};

/// The demo console's name; requests for it are routed to the simulator.
const CONSOLE: &str = "demo-tenant";
const HOST: &str = "demo-tenant.sentinelone.net";

/// What a step does.
enum Call {
    Validate(&'static str),
    GetHost(&'static str),
    Isolate(&'static str, &'static [&'static str]),
    Release(&'static str),
}

/// One demonstrated situation and the outcome it should show.
struct Step {
    title: &'static str,
    call: Call,
    /// `None` for success, or the expected error kind.
    expect_error: Option<&'static str>,
    /// For actions: the expected `changed`.
    expect_changed: Option<bool>,
}

const STEPS: &[Step] = &[
    Step {
        title: "Test Connection: a healthy admin token",
        call: Call::Validate(tokens::ADMIN),
        expect_error: None,
        expect_changed: None,
    },
    Step {
        title: "Test Connection: a token that expires in 5 days",
        call: Call::Validate(tokens::EXPIRING),
        expect_error: None,
        expect_changed: None,
    },
    Step {
        title: "Test Connection: an expired token",
        call: Call::Validate(tokens::EXPIRED),
        expect_error: Some("unauthorized"),
        expect_changed: None,
    },
    Step {
        title: "Get Host --hostname fin-lt-0042 (case does not matter)",
        call: Call::GetHost("fin-lt-0042"),
        expect_error: None,
        expect_changed: None,
    },
    Step {
        title: "Isolate Host --hostname FIN-LT-0042",
        call: Call::Isolate("FIN-LT-0042", &[]),
        expect_error: None,
        expect_changed: Some(true),
    },
    Step {
        title: "Isolate Host again: already isolated, nothing is sent",
        call: Call::Isolate("FIN-LT-0042", &[]),
        expect_error: None,
        expect_changed: Some(false),
    },
    Step {
        title: "Release Host --hostname FIN-LT-0042",
        call: Call::Release("FIN-LT-0042"),
        expect_error: None,
        expect_changed: Some(true),
    },
    Step {
        title: "Isolate Host --hostname RECEPTION-PC: two agents match (one named Reception-PC), nothing is done",
        call: Call::Isolate("RECEPTION-PC", &[]),
        expect_error: Some("ambiguous"),
        expect_changed: None,
    },
    Step {
        title: "Isolate Host --hostname DC-01 --protect DC-01: refused, nothing is sent",
        call: Call::Isolate("DC-01", &["DC-01"]),
        expect_error: Some("protected-host"),
        expect_changed: None,
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
        outln!("SentinelOne connector demo: the component runs against a simulated console at");
        outln!("{} (routed to {}).\n", HOST, sim.addr());
    }
    let mut steps = Vec::new();
    let mut all_as_expected = true;
    for step in STEPS {
        let (result, as_expected) = run_step(runtime, &policy, step, printer).await;
        all_as_expected &= as_expected;
        steps.push(result);
    }
    if printer.json {
        output::emit(json!({"ok": all_as_expected, "result": {"steps": steps}, "requests": []}));
    } else if all_as_expected {
        outln!("Demo complete: every step behaved as expected.");
    } else {
        outln!("Demo finished, but a step did not behave as expected (see above).");
    }
    if all_as_expected {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Runs one step, prints it in text mode, and returns its JSON and whether
/// it behaved as expected.
async fn run_step(
    runtime: &Runtime,
    policy: &CallPolicy,
    step: &Step,
    printer: Printer,
) -> (Value, bool) {
    let admin = Connection::new(CONSOLE, tokens::ADMIN);
    let hostname = |h: &str| HostSelector::Hostname(h.to_owned());
    let options = |protect: &[&str]| ActionOptions {
        protected_hosts: protect.iter().map(|p| (*p).to_owned()).collect(),
        wait_seconds: 0,
    };
    let (value, kind, changed) = match &step.call {
        Call::Validate(token) => {
            let o = runtime
                .validate_connection(&Connection::new(CONSOLE, token), policy)
                .await;
            let (v, k) = report(step, &o, output::report_json, output::report_text, printer);
            (v, k, None)
        }
        Call::GetHost(h) => {
            let o = runtime.get_host(&admin, &hostname(h), policy).await;
            let (v, k) = report(step, &o, output::host_json, output::host_text, printer);
            (v, k, None)
        }
        Call::Isolate(h, protect) => {
            let o = runtime
                .isolate_host(&admin, &hostname(h), &options(protect), policy)
                .await;
            let (v, k) = report(step, &o, output::action_json, output::action_text, printer);
            (v, k, o.result.as_ref().ok().map(|a| a.changed))
        }
        Call::Release(h) => {
            let o = runtime
                .release_host(&admin, &hostname(h), &options(&[]), policy)
                .await;
            let (v, k) = report(step, &o, output::action_json, output::action_text, printer);
            (v, k, o.result.as_ref().ok().map(|a| a.changed))
        }
    };
    let as_expected = kind == step.expect_error
        && (step.expect_changed.is_none() || changed == step.expect_changed);
    (value, as_expected)
}

/// Prints a step (text mode) and returns its JSON and error kind.
fn report<T>(
    step: &Step,
    outcome: &Outcome<T>,
    to_json: fn(&T) -> Value,
    to_text: fn(&T) -> String,
    printer: Printer,
) -> (Value, Option<&'static str>) {
    let kind = match &outcome.result {
        Ok(_) => None,
        Err(CallError::Connector(e)) => Some(e.kind()),
        Err(CallError::Host(e)) => Some(e.kind()),
    };
    if !printer.json {
        outln!("== {} ==", step.title);
        match &outcome.result {
            Ok(value) => out!("{}", to_text(value)),
            Err(e) => outln!("{}", output::error_text(e)),
        }
        out!("{}", output::requests_text(&outcome.requests));
        outln!();
    }
    let value = match &outcome.result {
        Ok(v) => {
            json!({"title": step.title, "ok": true, "result": to_json(v), "requests": outcome.requests})
        }
        Err(e) => {
            json!({"title": step.title, "ok": false, "error": output::error_json(e), "requests": outcome.requests})
        }
    };
    (value, kind)
}
