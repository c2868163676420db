//! Shared setup for the end-to-end tests: one compiled runtime per test
//! binary, and a policy that routes the test console to a simulator.

#![allow(dead_code)]

use std::sync::OnceLock;
use std::time::Duration;

use connector_host::simulator::Simulator;
use connector_host::{
    ActionOptions, CallPolicy, Connection, ConnectionReport, EgressPolicy, Outcome, Runtime,
};

/// The console name the tests type; `tenant.sentinelone.net` is routed to the simulator.
pub const CONSOLE: &str = "tenant";
pub const HOST: &str = "tenant.sentinelone.net";

/// The built-in component, compiled once for the whole test binary.
pub fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| Runtime::builtin().expect("the built-in component loads"))
}

/// Default policy, with the test console routed to `sim`.
pub fn policy(sim: &Simulator) -> CallPolicy {
    let egress = EgressPolicy::default()
        .connect_to(HOST, sim.addr())
        .unwrap();
    CallPolicy::with_egress(egress).http_timeout(Duration::from_secs(5))
}

/// Isolate or release with no extra protected hosts, returning at once.
pub fn no_options() -> ActionOptions {
    ActionOptions {
        protected_hosts: vec![],
        wait_seconds: 0,
    }
}

pub fn connection(console: &str, token: &str) -> Connection {
    Connection::new(console, token)
}

/// Validates `token` against `sim` under the default test policy.
pub async fn validate(sim: &Simulator, token: &str) -> Outcome<ConnectionReport> {
    runtime()
        .validate_connection(&connection(CONSOLE, token), &policy(sim))
        .await
}

/// The simulator's log as `METHOD path[?query]` lines.
pub fn request_lines(sim: &Simulator) -> Vec<String> {
    sim.requests()
        .iter()
        .map(|r| match &r.query {
            Some(q) => format!("{} {}?{q}", r.method, r.path),
            None => format!("{} {}", r.method, r.path),
        })
        .collect()
}

/// The JSON bodies of every isolate/release POST the simulator received.
pub fn action_posts(sim: &Simulator) -> Vec<(String, serde_json::Value)> {
    sim.requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.starts_with("/web/api/v2.1/agents/actions/"))
        .map(|r| {
            (
                r.path.clone(),
                serde_json::from_str(&r.body).expect("JSON body"),
            )
        })
        .collect()
}
