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
    /// Without either, https_proxy or HTTPS_PROXY is used, as curl does.
    #[arg(long, env = "S1_PROXY", hide_env_values = true, value_name = "URL")]
    pub proxy: Option<String>,
    /// Reach these domains without the proxy: a comma-separated list, as
    /// NO_PROXY is written ("*" for none at all). Without it, no_proxy or
    /// NO_PROXY is used. Entries for IP addresses never match a console.
    #[arg(long = "no-proxy", value_name = "LIST")]
    pub no_proxy: Option<String>,
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
        egress = self.with_proxy(egress)?;
        let timeout = Duration::from_secs(self.timeout);
        // Room for the retries of several requests and a --wait of 300 s.
        Ok(CallPolicy::with_egress(egress)
            .http_timeout(timeout)
            .deadline((timeout * 4).max(Duration::from_secs(420))))
    }

    /// `egress` through the proxy that `--proxy`, `S1_PROXY` or
    /// `HTTPS_PROXY` names, except for the domains `--no-proxy` or
    /// `NO_PROXY` lists.
    fn with_proxy(&self, mut egress: EgressPolicy) -> Result<EgressPolicy, UsageError> {
        let proxy = match &self.proxy {
            Some(url) => Some(("--proxy (or S1_PROXY)", url.clone())),
            None => env_setting(&["https_proxy", "HTTPS_PROXY"])?,
        };
        let Some((source, url)) = proxy else {
            return Ok(egress);
        };
        let no_proxy = match &self.no_proxy {
            Some(list) => Some(("--no-proxy", list.clone())),
            None => env_setting(&["no_proxy", "NO_PROXY"])?,
        };
        if let Some((list_source, list)) = no_proxy {
            let domains = no_proxy_domains(&list);
            if domains.contains(&"*") {
                return Ok(egress);
            }
            for domain in domains {
                egress = match egress.clone().bypass_proxy(domain) {
                    Ok(bypassed) => bypassed,
                    Err(e) if self.no_proxy.is_some() => {
                        return Err(UsageError(format!("{list_source}: {e}")));
                    }
                    // The variable is shared with other tools, whose
                    // entries may not be names a console could have.
                    Err(_) => egress,
                };
            }
        }
        let proxy = Proxy::parse(&url).map_err(|e| UsageError(format!("{source}: {e}")))?;
        Ok(egress.via_proxy(proxy))
    }
}

/// The first of `names` set to a non-empty value, with its name.
fn env_setting(names: &[&'static str]) -> Result<Option<(&'static str, String)>, UsageError> {
    for &name in names {
        match std::env::var(name) {
            Ok(value) if !value.trim().is_empty() => return Ok(Some((name, value))),
            Ok(_) | Err(std::env::VarError::NotPresent) => {}
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(UsageError(format!(
                    "the environment variable {name} is not valid UTF-8"
                )));
            }
        }
    }
    Ok(None)
}

/// The domains of a `NO_PROXY`-style list, with `*.` and `:443` taken off.
/// Entries for IP addresses or ranges, or for other ports, are left out:
/// a console is always a name on port 443.
fn no_proxy_domains(list: &str) -> Vec<&str> {
    list.split(',')
        .map(str::trim)
        .map(|e| e.strip_prefix("*.").unwrap_or(e))
        .map(|e| e.strip_suffix(":443").unwrap_or(e))
        .filter(|e| !e.is_empty())
        .filter(|e| !is_address_entry(e))
        .filter(|e| !e.contains(':'))
        .collect()
}

/// An IP address, a bracketed IPv6 address, or a CIDR range.
fn is_address_entry(entry: &str) -> bool {
    let address = entry.split('/').next().unwrap_or(entry);
    let address = address.trim_start_matches('[').trim_end_matches(']');
    address.parse::<std::net::IpAddr>().is_ok()
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
