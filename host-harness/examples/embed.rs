//! Embedding the connector in a SOAR engine: compile once, then validate a
//! tenant's connection in a fresh sandboxed instance under that tenant's
//! policy. Runs offline against the built-in simulator:
//!
//! ```sh
//! cargo run -p connector-host --example embed
//! ```

use std::time::Duration;

use connector_host::simulator::{Simulator, tokens};
use connector_host::{
    ActionOptions, CallError, CallPolicy, Connection, EgressPolicy, HostSelector, PathRate,
    RequestRate, Runtime, RuntimeConfig,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Once per process (or per connector version): compile and link. The
    // cache makes the next start skip compilation.
    let config = RuntimeConfig::default()
        .cache_dir(std::env::temp_dir().join("soar-connector-cache"))
        .max_concurrent_calls(64)
        // No one tenant may take more than 16 of the 64 slots.
        .max_concurrent_calls_per_tenant(16);
    let runtime = Runtime::with_config(connector_host::COMPONENT, config)?;
    println!("compiled component: {:?}", runtime.cache_status());

    // This tenant's calls may reach its own console and nothing else, so
    // no connector version can send its token to another host, not even
    // another *.sentinelone.net console. (`EgressPolicy::default()` allows
    // all of *.sentinelone.net.) `connect_to` routes the console to a local
    // stand-in; in production leave it out, and requests go over HTTPS,
    // through the network's proxy if it has one:
    // `.via_proxy(Proxy::parse("http://user:password@proxy.corp:3128")?)`,
    // with `RuntimeConfig::trust_certificates_pem` for a proxy that
    // re-signs TLS.
    let sim = Simulator::start().await?;
    let egress = EgressPolicy::deny_all()
        .allow_domain("u1234-s123.sentinelone.net")?
        .connect_to("u1234-s123.sentinelone.net", sim.addr())?;
    let policy = CallPolicy::with_egress(egress)
        .tenant("acme")
        .http_timeout(Duration::from_secs(10))
        .deadline(Duration::from_secs(60))
        // All of acme's calls together keep to the console's published
        // rate for each part of its API (`/user` 2 a second, `/agents` 25,
        // ...), and to 10 a second in bursts of 20 elsewhere, so a burst of
        // actions queues here instead of being answered with HTTP 429.
        .path_rates(PathRate::sentinelone())
        .request_rate(RequestRate::new(10, 20));

    // Per call: what the tenant saved in the connection form.
    let mut connection = Connection::new("u1234-s123", tokens::EXPIRING);
    connection.protected_hosts = vec!["DC-01".into()]; // never isolated through this connection
    let outcome = runtime.validate_connection(&connection, &policy).await;

    match outcome.result {
        Ok(report) => {
            println!(
                "{} works; token has {:?} days left",
                report.console_url, report.token_days_left
            );
            for warning in &report.warnings {
                println!("warning: {warning}");
            }
        }
        Err(CallError::Connector(e)) => println!("tell the admin ({}): {}", e.kind(), e.message()),
        Err(CallError::Host(e)) => println!("platform problem ({}): {e}", e.kind()),
    }
    for r in &outcome.requests {
        println!(
            "audit: {} {}{} -> {:?} in {} ms (waited {} ms for its turn)",
            r.method, r.host, r.path, r.status, r.duration_ms, r.waited_ms
        );
    }
    println!(
        "call took {:?}, {:?} of it queued for a slot, {:?} of CPU; {} calls running, {} waiting",
        outcome.elapsed,
        outcome.queued,
        outcome.cpu_time,
        runtime.calls_running(),
        runtime.calls_waiting()
    );

    // "Isolate Host" during an incident: exactly one machine, or an error.
    let host = HostSelector::Hostname("FIN-LT-0042".into());
    let options = ActionOptions {
        protected_hosts: vec![],
        wait_seconds: 10,
    };
    match runtime
        .isolate_host(&connection, &host, &options, &policy)
        .await
        .result
    {
        Ok(done) => println!(
            "{} (changed: {}, now {:?})",
            done.detail, done.changed, done.network_state
        ),
        Err(e) => println!("isolation refused or failed: {e}"),
    }
    Ok(())
}
