//! `connector-host`: run the SentinelOne connector component from the shell.
//!
//! Exit status: 0 success, 1 the connector (or the host running it) reported
//! an error, 2 usage error.

/// `print!` that keeps going when stdout's reader has gone (`| head`):
/// the command's work and exit status must not depend on who reads.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::write_out(format_args!($($arg)*))
    };
}

/// `println!`, in the same way as [`out!`].
macro_rules! outln {
    () => {
        out!("\n")
    };
    ($($arg:tt)*) => {
        out!("{}\n", format_args!($($arg)*))
    };
}

mod args;
mod bench;
mod demo;
mod ingest;
mod output;

use std::borrow::Cow;
use std::path::Path;
use std::process::ExitCode;

use clap::Parser;
use connector_host::simulator::{Simulator, tokens};
use connector_host::{CallError, Runtime, RuntimeConfig};

use args::{Cli, Command, UsageError, read_capped};
use output::Printer;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let printer = Printer { json: cli.json };
    let runtime = match executor(&cli.command) {
        Ok(rt) => rt,
        Err(e) => {
            return printer.usage(&UsageError(format!("cannot start the async runtime: {e}")));
        }
    };
    runtime.block_on(run(cli, printer))
}

/// A multi-threaded executor, unless the benchmark asks for one thread.
fn executor(command: &Command) -> std::io::Result<tokio::runtime::Runtime> {
    match command {
        Command::Bench {
            current_thread: true,
            ..
        } => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        _ => tokio::runtime::Runtime::new(),
    }
}

async fn run(cli: Cli, printer: Printer) -> ExitCode {
    if let Command::Simulate { port } = cli.command {
        return simulate(port, printer).await;
    }
    let component = match component(&cli) {
        Ok(c) => c,
        Err(e) => return printer.usage(&e),
    };
    if let Command::Bench { quick, .. } = cli.command {
        return bench::run(&component, quick, printer).await;
    }
    let connector = match runtime_config(&cli).and_then(|config| {
        Runtime::with_config(&component, config).map_err(|e| UsageError(e.to_string()))
    }) {
        Ok(c) => c,
        Err(e) => return printer.usage(&e),
    };
    match &cli.command {
        Command::Describe => match connector.describe().await {
            Ok(info) => printer.describe(&info),
            Err(e) => printer.failure(&CallError::Host(e), &[]),
        },
        Command::Validate(conn) => {
            let (connection, policy) = match conn.resolve() {
                Ok(v) => v,
                Err(e) => return printer.usage(&e),
            };
            let outcome = connector.validate_connection(&connection, &policy).await;
            printer.outcome(&outcome, output::report_json, output::report_text)
        }
        Command::GetHost(args) => {
            let (connection, policy) = match args.connection.resolve() {
                Ok(v) => v,
                Err(e) => return printer.usage(&e),
            };
            let selector = args.selector.selector();
            let outcome = connector.get_host(&connection, &selector, &policy).await;
            printer.outcome(&outcome, output::host_json, output::host_text)
        }
        Command::Isolate(args) | Command::Release(args) => {
            let (connection, policy) = match args.connection.resolve() {
                Ok(v) => v,
                Err(e) => return printer.usage(&e),
            };
            let (selector, options) = (args.selector.selector(), args.options());
            let outcome = if matches!(cli.command, Command::Isolate(_)) {
                connector
                    .isolate_host(&connection, &selector, &options, &policy)
                    .await
            } else {
                connector
                    .release_host(&connection, &selector, &options, &policy)
                    .await
            };
            printer.outcome(&outcome, output::action_json, output::action_text)
        }
        Command::Threats(args) => ingest::run(&connector, args, printer).await,
        Command::Demo => demo::run(&connector, printer).await,
        Command::Simulate { .. } | Command::Bench { .. } => unreachable!("handled above"),
    }
}

/// The runtime's settings: the defaults, trusting `--ca-file` too.
fn runtime_config(cli: &Cli) -> Result<RuntimeConfig, UsageError> {
    let config = RuntimeConfig::default();
    let Some(path) = &cli.ca_file else {
        return Ok(config);
    };
    let pem = read_flag_file("--ca-file", path, MAX_CA_FILE)?;
    config
        .trust_certificates_pem(&pem)
        .map_err(|e| UsageError(format!("--ca-file {}: {e}", path.display())))
}

/// Largest `--ca-file` read: a whole public CA bundle is about 220 KB.
const MAX_CA_FILE: u64 = 4 << 20;
/// Largest `--component` read: the built-in connector is about 400 KB.
const MAX_COMPONENT_FILE: u64 = 64 << 20;

/// The file a command-line `flag` names, refused past `cap` bytes rather
/// than read until memory runs out (`/dev/zero`, a pipe).
fn read_flag_file(flag: &str, path: &Path, cap: u64) -> Result<Vec<u8>, UsageError> {
    match read_capped(path, cap) {
        Ok(Some(bytes)) => Ok(bytes),
        Ok(None) => Err(UsageError(format!(
            "{flag} {} is over {cap} bytes",
            path.display()
        ))),
        Err(e) => Err(UsageError(format!(
            "cannot read {flag} {}: {e}",
            path.display()
        ))),
    }
}

/// The `--component` file's bytes, or the built-in connector's (borrowed,
/// not copied).
fn component(cli: &Cli) -> Result<Cow<'static, [u8]>, UsageError> {
    match &cli.component {
        Some(path) => read_flag_file("--component", path, MAX_COMPONENT_FILE).map(Cow::Owned),
        None => Ok(Cow::Borrowed(connector_host::COMPONENT)),
    }
}

async fn simulate(port: u16, printer: Printer) -> ExitCode {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let sim = match Simulator::start_on(addr).await {
        Ok(s) => s,
        Err(e) => return printer.usage(&UsageError(format!("cannot listen on {addr}: {e}"))),
    };
    let addr = sim.addr();
    outln!("SentinelOne simulator listening on http://{addr} (Ctrl-C to stop)");
    outln!(
        "Tokens: admin {} · viewer {} · expiring {} · expired {}",
        tokens::ADMIN,
        tokens::VIEWER,
        tokens::EXPIRING,
        tokens::EXPIRED
    );
    outln!(
        "Admin, with a token shaped and sized as consoles issue them ({} characters): {}",
        tokens::ADMIN_JWT.len(),
        tokens::ADMIN_JWT
    );
    outln!(
        "Faults: 429 {} · 500 {} · malformed {} · stall {}",
        tokens::RATE_LIMITED,
        tokens::SERVER_ERROR,
        tokens::MALFORMED,
        tokens::STALL
    );
    outln!(
        "Action faults: 429 once {} · 500 {} · 500 after acting {} · stall {} · hang-up after \
         acting {} · answer cut short {}",
        tokens::ACTION_RATE_LIMITED_ONCE,
        tokens::ACTION_SERVER_ERROR,
        tokens::ACTION_ERROR_AFTER_APPLYING,
        tokens::ACTION_STALL,
        tokens::ACTION_HANG_UP_AFTER_APPLYING,
        tokens::ACTION_CUT_SHORT
    );
    outln!(
        "Hosts: FIN-LT-0042 (10.0.0.1), FIN-LT-0043 (10.0.0.12), RECEPTION-PC (two agents, one named Reception-PC), \
         ISOLATED-SRV, HR-LT-0007, WAREHOUSE-WS (offline), DC-01 (10.0.0.2)"
    );
    outln!();
    outln!("Try:");
    outln!(
        "  S1_API_TOKEN={} connector-host validate --console sim --connect-to sim.sentinelone.net={addr}",
        tokens::ADMIN
    );
    outln!(
        "  S1_API_TOKEN={} connector-host isolate --hostname FIN-LT-0042 --console sim --connect-to sim.sentinelone.net={addr}",
        tokens::ADMIN
    );
    let _ = tokio::signal::ctrl_c().await;
    ExitCode::SUCCESS
}
