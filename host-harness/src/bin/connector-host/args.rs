//! Command-line arguments. The token is never a flag value: it comes from the
//! environment or a file, so it stays out of shell history and `ps`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use connector_host::{ActionOptions, CallPolicy, Connection, EgressPolicy, HostSelector, Proxy};

/// Largest token file read; a token is a few hundred bytes.
const MAX_TOKEN_FILE: u64 = 64 * 1024;

/// Run the SentinelOne SOAR connector (a WebAssembly component) in a
/// sandboxed wasmtime host.
#[derive(Debug, Parser)]
#[command(name = "connector-host", version)]
pub struct Cli {
    /// Run this component file instead of the built-in connector.
    #[arg(long, global = true, value_name = "FILE")]
    pub component: Option<PathBuf>,
    /// Print exactly one JSON object on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// Also trust the certificate authorities in this PEM file for TLS (a
    /// proxy that re-signs TLS, or a console with a private CA).
    #[arg(long, global = true, value_name = "PATH")]
    pub ca_file: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the connector's description: connection form and actions.
    Describe,
    /// Check a connection: token, expiry, user, role and permissions.
    Validate(ConnectionArgs),
    /// Find exactly one endpoint and show it (read-only).
    GetHost(HostArgs),
    /// Network-isolate exactly one endpoint.
    Isolate(ActionArgs),
    /// Reconnect an isolated endpoint.
    Release(ActionArgs),
    /// Pull threats as NDJSON, resumable from a checkpoint file.
    Threats(ThreatsArgs),
    /// Validate, find, isolate and release against the built-in simulator
    /// (no token or network needed).
    Demo,
    /// Measure the runtime against native Rust on the simulator: overhead,
    /// instantiation, throughput, memory and size.
    Bench {
        /// A seconds-long run that checks every figure is produced.
        #[arg(long)]
        quick: bool,
        /// Run everything (both sides and the simulator) on one thread,
        /// with no cross-thread wake-ups: the figures then count CPU work.
        #[arg(long)]
        current_thread: bool,
    },
    /// Serve the SentinelOne simulator on 127.0.0.1 for manual use.
    Simulate {
        /// Port to listen on.
        #[arg(long, default_value_t = 8080)]
        port: u16,
    },
}

/// A connection and the network policy to use it under.
#[derive(Debug, Args)]
pub struct ConnectionArgs {
    /// Management Hostname, e.g. u1234-s123 or u1234-s123.sentinelone.net.
    #[arg(long, env = "S1_CONSOLE", value_name = "VALUE")]
    pub console: String,
    /// Read the API token from this environment variable [default: S1_API_TOKEN].
    #[arg(long, value_name = "NAME", conflicts_with = "token_file")]
    pub token_env: Option<String>,
    /// Read the API token from this file.
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// Send requests for HOST over plain HTTP to a loopback ADDR:PORT (like curl).
    #[arg(long = "connect-to", value_name = "HOST=ADDR:PORT")]
    pub connect_to: Vec<String>,
    /// Also allow this domain and its subdomains (sentinelone.net is always allowed).
    #[arg(long = "allow-domain", value_name = "SUFFIX")]
    pub allow_domain: Vec<String>,
    /// Tunnel HTTPS through this HTTP proxy: http://[user:password@]host:port.
    /// Set S1_PROXY instead when it holds a password, to keep it out of `ps`.
    /// HTTPS_PROXY is not read.
    #[arg(long, env = "S1_PROXY", hide_env_values = true, value_name = "URL")]
    pub proxy: Option<String>,
    /// Per-request HTTP timeout in seconds (connect, first byte, between bytes).
    #[arg(long, value_name = "SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub timeout: u64,
}

/// Which endpoint: exactly one selector.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct SelectorArgs {
    /// SentinelOne agent id (exact).
    #[arg(long, value_name = "ID")]
    pub agent_id: Option<String>,
    /// Agent UUID (exact; with or without dashes).
    #[arg(long, value_name = "UUID")]
    pub uuid: Option<String>,
    /// Computer name (exact, case-insensitive).
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,
    /// An interface IP address (exact).
    #[arg(long, value_name = "ADDR")]
    pub ip: Option<String>,
    /// An interface MAC address (any notation).
    #[arg(long, value_name = "MAC")]
    pub mac: Option<String>,
}

impl SelectorArgs {
    /// The WIT selector.
    pub fn selector(&self) -> HostSelector {
        if let Some(v) = &self.agent_id {
            HostSelector::AgentId(v.clone())
        } else if let Some(v) = &self.uuid {
            HostSelector::Uuid(v.clone())
        } else if let Some(v) = &self.hostname {
            HostSelector::Hostname(v.clone())
        } else if let Some(v) = &self.ip {
            HostSelector::Ip(v.clone())
        } else {
            HostSelector::Mac(self.mac.clone().unwrap_or_default())
        }
    }
}

/// `get-host` arguments.
#[derive(Debug, Args)]
pub struct HostArgs {
    #[command(flatten)]
    pub connection: ConnectionArgs,
    #[command(flatten)]
    pub selector: SelectorArgs,
}

/// `isolate` / `release` arguments.
#[derive(Debug, Args)]
pub struct ActionArgs {
    #[command(flatten)]
    pub connection: ConnectionArgs,
    #[command(flatten)]
    pub selector: SelectorArgs,
    /// A host that must never be isolated: hostname, agent id, UUID, IP, CIDR range or MAC
    /// (repeatable; one value may hold several, separated by commas).
    #[arg(long = "protect", value_name = "VALUE")]
    pub protect: Vec<String>,
    /// Wait up to SECS for the agent to confirm the new state.
    #[arg(long, value_name = "SECS", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=300))]
    pub wait: u32,
}

impl ActionArgs {
    /// The WIT action options.
    pub fn options(&self) -> ActionOptions {
        ActionOptions {
            protected_hosts: self.protect.clone(),
            wait_seconds: self.wait,
        }
    }
}

/// `threats` arguments.
#[derive(Debug, Args)]
pub struct ThreatsArgs {
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// Read and save the checkpoint here (replaced atomically after each page).
    #[arg(long, value_name = "PATH")]
    pub checkpoint_file: Option<PathBuf>,
    /// Append threats to FILE instead of stdout; exactly once across kills.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// How far back the first pull starts, e.g. 24h, 90m, 7d.
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = humantime::parse_duration)]
    pub lookback: Duration,
    /// Threats per page (1 to 1000).
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub page_size: u32,
    /// Keep polling after catching up, until Ctrl-C; outages and rate limits are retried.
    #[arg(long)]
    pub follow: bool,
    /// Time between polls with --follow.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
}

/// A mistake in how the command was invoked.
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl ConnectionArgs {
    /// The connection and policy these arguments describe.
    pub fn resolve(&self) -> Result<(Connection, CallPolicy), UsageError> {
        let connection = Connection::new(&self.console, &self.token()?);
        Ok((connection, self.policy()?))
    }

    fn token(&self) -> Result<String, UsageError> {
        if let Some(path) = &self.token_file {
            return read_token_file(path);
        }
        let var = self.token_env.as_deref().unwrap_or("S1_API_TOKEN");
        match std::env::var(var) {
            Ok(token) => Ok(token),
            Err(std::env::VarError::NotPresent) => Err(UsageError(format!(
                "no API token: set {var}, or pass --token-env NAME or --token-file PATH"
            ))),
            Err(std::env::VarError::NotUnicode(_)) => Err(UsageError(format!(
                "the environment variable {var} is not valid UTF-8"
            ))),
        }
    }

    /// The call policy: default egress plus `--allow-domain`, `--connect-to`
    /// and `--proxy`.
    pub fn policy(&self) -> Result<CallPolicy, UsageError> {
        let mut egress = EgressPolicy::default();
        for suffix in &self.allow_domain {
            egress = egress
                .allow_domain(suffix)
                .map_err(|e| UsageError(e.to_string()))?;
        }
        for route in &self.connect_to {
            egress = egress
                .connect_to_arg(route)
                .map_err(|e| UsageError(e.to_string()))?;
        }
        if let Some(url) = &self.proxy {
            let proxy = Proxy::parse(url).map_err(|e| UsageError(e.to_string()))?;
            egress = egress.via_proxy(proxy);
        }
        let timeout = Duration::from_secs(self.timeout);
        // Room for the retries of several requests and a --wait of 300 s.
        Ok(CallPolicy::with_egress(egress)
            .http_timeout(timeout)
            .deadline((timeout * 4).max(Duration::from_secs(420))))
    }
}

fn read_token_file(path: &Path) -> Result<String, UsageError> {
    let bytes = read_capped(path, MAX_TOKEN_FILE)
        .map_err(|e| UsageError(format!("cannot read --token-file {}: {e}", path.display())))?
        .ok_or_else(|| {
            UsageError(format!(
                "--token-file {} is over {MAX_TOKEN_FILE} bytes; a token file holds only the token",
                path.display()
            ))
        })?;
    String::from_utf8(bytes)
        .map_err(|_| UsageError(format!("--token-file {} is not UTF-8 text", path.display())))
}

/// The file at `path`, or `None` when it holds more than `cap` bytes. Reads
/// at most one byte past the cap, whatever length the file reports:
/// `/dev/zero` or a pipe reports 0 and never ends.
pub(crate) fn read_capped(path: &Path, cap: u64) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(cap + 1)
        .read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= cap).then_some(bytes))
}
