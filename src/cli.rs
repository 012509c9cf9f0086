//! The command line (docs/spec.md section 6): one `Args` struct per subcommand, each flag also read
//! from the environment. Converted to plain configuration before use.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::day::Day;
use crate::generate::GenerateConfig;
use crate::pipeline::{Cluster, IngestConfig};
use crate::store::DEFAULT_DATABASE_URL;

/// Per-customer daily service statistics from API request logs, served over HTTP.
#[derive(Debug, Parser)]
#[command(name = "logstats", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The command line as `--help` shows it: each flag's variable is named without its value
    /// (`[env: LOGSTATS_WORKERS]`, not `[env: LOGSTATS_WORKERS=]` or a password), and defaults as
    /// `[default: ...]`.
    pub fn command_shown() -> clap::Command {
        Cli::command().mut_subcommands(|command| command.mut_args(|arg| arg.hide_env_values(true)))
    }

    /// Parses this process's arguments (exits with the usage error, or the help, as clap does).
    pub fn from_args() -> Cli {
        let matches = Cli::command_shown().get_matches();
        Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.exit())
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a sample log in the reference's format (random time order, deterministic per seed).
    Generate(GenerateArgs),
    /// Create or update the database schema.
    Migrate(DbArgs),
    /// Read logs and merge their statistics into the database (re-running adds nothing twice).
    Ingest(IngestArgs),
    /// Publish the lines of log files to a NATS JetStream stream, exactly once (for `ingest nats://...`).
    Ship(ShipArgs),
    /// Serve the HTTP API and the dashboard.
    Serve(ServeArgs),
    /// Generate a sample log if there is none, ingest it into SQLite, and serve it: no set-up.
    Demo(DemoArgs),
    /// Print a completion script for a shell (e.g. `logstats completions bash > /etc/bash_completion.d/logstats`).
    Completions(CompletionsArgs),
}

/// Where the statistics live.
#[derive(Debug, Clone, Args)]
pub struct DbArgs {
    /// `sqlite://PATH` (created on first use, except by `serve`) or
    /// `postgres://USER:PASSWORD@HOST:PORT/DB`.
    #[arg(long = "database", env = "DATABASE_URL", value_name = "URL", default_value = DEFAULT_DATABASE_URL)]
    pub url: String,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Output file, or a stream (nats://HOST:PORT/STREAM, created if missing); standard output when absent.
    #[arg(short, long, env = "LOGSTATS_OUTPUT", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Number of lines.
    #[arg(
        long,
        env = "LOGSTATS_LINES",
        value_name = "N",
        default_value_t = 10_000
    )]
    pub lines: u64,
    /// Number of customers (cust_1..cust_N).
    #[arg(long, env = "LOGSTATS_CUSTOMERS", value_name = "N", default_value_t = 50,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub customers: u32,
    /// Number of days, ending at --end.
    #[arg(long, env = "LOGSTATS_DAYS", value_name = "N", default_value_t = 30,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub days: u32,
    /// Last day of the range (YYYY-MM-DD).
    #[arg(long, env = "LOGSTATS_END", value_name = "YYYY-MM-DD", default_value = "2024-10-02", value_parser = parse_day)]
    pub end: Day,
    /// Random seed: the same seed gives the same file.
    #[arg(long, env = "LOGSTATS_SEED", value_name = "N", default_value_t = 42)]
    pub seed: u64,
}

impl GenerateArgs {
    pub fn config(&self) -> GenerateConfig {
        GenerateConfig {
            lines: self.lines,
            customers: self.customers,
            days: self.days,
            end: self.end,
            seed: self.seed,
        }
    }
}

/// The smallest memory limit accepted. The process itself needs about 20 MB besides its data, so
/// limits below ~32MB are held only in the data's share (which tests use to force spilling).
const MIN_MEMORY_LIMIT: u64 = 1 << 20;

/// A size such as `64MB`, `1.5GB`, `512KiB` or a number of bytes (KB, MB, GB, TB count in
/// powers of 1024, as most tools' memory limits do; KiB, MiB... are accepted too).
fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(format!("expected a size such as 64MB or 1GB, got '{text}'")),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("expected a size such as 64MB or 1GB, got '{text}'"))?;
    let bytes = value * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes < MIN_MEMORY_LIMIT as f64 || bytes > u64::MAX as f64 {
        return Err(format!("'{text}' is not a memory limit of at least 1MB"));
    }
    Ok(bytes as u64)
}

fn parse_day(text: &str) -> Result<Day, String> {
    Day::parse(text.as_bytes()).ok_or_else(|| format!("expected a date YYYY-MM-DD, got '{text}'"))
}

#[derive(Debug, Args)]
pub struct IngestArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// Worker threads (default: the number of cores).
    #[arg(long, env = "LOGSTATS_WORKERS", value_name = "N")]
    pub workers: Option<usize>,
    /// Keep running: read appended lines, new, rotated and truncated files; commit every --flush-interval.
    #[arg(long, env = "LOGSTATS_FOLLOW")]
    pub follow: bool,
    /// How often follow mode commits, in seconds.
    #[arg(
        long,
        env = "LOGSTATS_FLUSH_INTERVAL",
        value_name = "S",
        default_value_t = 1.0
    )]
    pub flush_interval: f64,
    /// Following: how many followed files are kept open at most; the least recently appended to
    /// are closed and opened again when they grow.
    #[arg(
        long,
        env = "LOGSTATS_MAX_OPEN_FILES",
        value_name = "N",
        default_value_t = crate::pipeline::DEFAULT_MAX_OPEN_FILES
    )]
    pub max_open_files: usize,
    /// How often progress through a backlog is committed, in seconds (a killed run redoes at most this
    /// much; each commit rewrites every group changed since the last).
    #[arg(
        long,
        env = "LOGSTATS_COMMIT_INTERVAL",
        value_name = "S",
        default_value_t = 60.0
    )]
    pub commit_interval: f64,
    /// Memory the ingestion stays within (e.g. 64MB, 1GB); groups beyond it spill to disk.
    #[arg(long, env = "LOGSTATS_MEMORY_LIMIT", value_name = "SIZE", default_value = "256MB", value_parser = parse_size)]
    pub memory_limit: u64,
    /// Do not break days down by resource (for logs with huge numbers of distinct paths): new
    /// requests are stored without their resource.
    #[arg(long, env = "LOGSTATS_NO_RESOURCES")]
    pub no_resources: bool,
    /// Directory for spill files (default: the system's temporary directory).
    #[arg(long, env = "LOGSTATS_SPILL_DIR", value_name = "DIR")]
    pub spill_dir: Option<PathBuf>,
    /// Only files whose name matches this pattern, in directories (e.g. '*.log*').
    #[arg(long, env = "LOGSTATS_GLOB", value_name = "PATTERN")]
    pub glob: Option<String>,
    /// Write every rejected line here (file:line, reason, text; tab-separated).
    #[arg(long, env = "LOGSTATS_REJECTS", value_name = "FILE")]
    pub rejects: Option<PathBuf>,
    /// Print the summary as JSON on standard output.
    #[arg(long)]
    pub json: bool,
    /// Target bytes per unit of work (default: from --memory-limit and a sample of the first file,
    /// 256 KiB to 32 MiB).
    #[arg(long, env = "LOGSTATS_UNIT_BYTES", hide = true)]
    pub unit_bytes: Option<u64>,
    /// Processes in the cluster (with --process-id and --hostfile).
    #[arg(long, env = "LOGSTATS_PROCESSES", value_name = "N", default_value_t = 1, requires_all = ["process_id", "hostfile"])]
    pub processes: usize,
    /// This process's index in the hostfile, from 0.
    #[arg(long, env = "LOGSTATS_PROCESS_ID", value_name = "I")]
    pub process_id: Option<usize>,
    /// A file with one host:port per line, one per process.
    #[arg(long, env = "LOGSTATS_HOSTFILE", value_name = "FILE")]
    pub hostfile: Option<PathBuf>,
    /// Seconds to wait for every process of the cluster to connect; later, a peer that sends
    /// nothing for this long (at least 1 s; a stopped process, a cut network) is lost.
    #[arg(
        long,
        env = "LOGSTATS_CONNECT_TIMEOUT",
        value_name = "S",
        default_value_t = 30
    )]
    pub connect_timeout: u64,
    /// Files, directories (read recursively), globs, - for standard input, or streams
    /// (nats://[USER:PASS@]HOST:PORT/STREAM[?subject=FILTER]).
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ShipArgs {
    /// Keep running: ship appended lines, new, rotated and truncated files, every --interval.
    #[arg(long, env = "LOGSTATS_FOLLOW")]
    pub follow: bool,
    /// How often follow mode looks for new lines, in seconds.
    #[arg(
        long,
        env = "LOGSTATS_INTERVAL",
        value_name = "S",
        default_value_t = 1.0
    )]
    pub interval: f64,
    /// This machine's name in the subjects (default: its host name).
    #[arg(long, env = "LOGSTATS_HOST", value_name = "NAME")]
    pub host: Option<String>,
    /// Only files whose name matches this pattern, in directories (e.g. '*.log*').
    #[arg(long, env = "LOGSTATS_GLOB", value_name = "PATTERN")]
    pub glob: Option<String>,
    /// Seconds a server that does not answer is waited for before giving up (exit status 1);
    /// with --follow it is waited for as long as it takes.
    #[arg(
        long,
        env = "LOGSTATS_GIVE_UP_AFTER",
        value_name = "S",
        default_value_t = 30.0
    )]
    pub give_up_after: f64,
    /// Files, directories (read recursively) or globs, then the stream:
    /// nats://[USER:PASS@]HOST:PORT/STREAM[?subject=PREFIX].
    #[arg(required = true, num_args = 2.., value_name = "PATH... STREAM")]
    pub args: Vec<String>,
}

impl ShipArgs {
    pub fn config(&self) -> anyhow::Result<crate::ship::ShipConfig> {
        let (stream, paths) = self.args.split_last().expect("clap requires two arguments");
        anyhow::ensure!(
            crate::nats::StreamUrl::is_stream(stream),
            "the last argument is the stream to ship to (nats://HOST:PORT/STREAM)"
        );
        anyhow::ensure!(
            self.interval.is_finite() && self.interval > 0.0,
            "--interval must be a positive number of seconds"
        );
        anyhow::ensure!(
            self.give_up_after.is_finite() && self.give_up_after >= 0.0,
            "--give-up-after must be a number of seconds"
        );
        let host = match &self.host {
            Some(host) => {
                // Not made to fit: two names made alike would share subjects.
                anyhow::ensure!(
                    !host.is_empty() && *host == crate::ship::subject_token(host),
                    "--host is one word of ASCII letters, digits, - and _"
                );
                host.clone()
            }
            None => crate::ship::default_host(),
        };
        Ok(crate::ship::ShipConfig {
            inputs: paths.to_vec(),
            url: crate::nats::StreamUrl::parse(stream)?.for_publishing()?,
            host,
            follow: self.follow,
            interval: Duration::from_secs_f64(self.interval),
            glob: self.glob.clone(),
            give_up_after: (!self.follow).then(|| Duration::from_secs_f64(self.give_up_after)),
        })
    }
}

impl IngestArgs {
    pub fn config(&self) -> anyhow::Result<IngestConfig> {
        let mut config = IngestConfig::new(self.paths.clone());
        if let Some(workers) = self.workers {
            anyhow::ensure!(workers > 0, "--workers must be at least 1");
            config.workers = workers;
        }
        anyhow::ensure!(
            self.flush_interval.is_finite() && self.flush_interval > 0.0,
            "--flush-interval must be a positive number of seconds"
        );
        anyhow::ensure!(
            self.commit_interval.is_finite() && self.commit_interval > 0.0,
            "--commit-interval must be a positive number of seconds"
        );
        config.commit_interval = Duration::from_secs_f64(self.commit_interval);
        config.follow = self.follow;
        config.flush_interval = Duration::from_secs_f64(self.flush_interval);
        anyhow::ensure!(
            self.max_open_files > 0,
            "--max-open-files must be at least 1"
        );
        config.max_open_files = self.max_open_files;
        config.glob = self.glob.clone();
        config.rejects_file = self.rejects.clone();
        config.unit_bytes = self.unit_bytes.unwrap_or(0);
        config.memory_limit = self.memory_limit;
        config.by_resource = !self.no_resources;
        if let Some(dir) = &self.spill_dir {
            config.spill_dir = dir.clone();
        }
        config.cluster = self.cluster()?;
        Ok(config)
    }

    fn cluster(&self) -> anyhow::Result<Option<Cluster>> {
        let (Some(process_id), Some(hostfile)) = (self.process_id, &self.hostfile) else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(hostfile)
            .with_context(|| format!("reading {}", hostfile.display()))?;
        let addresses: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(String::from)
            .collect();
        anyhow::ensure!(
            addresses.len() >= self.processes,
            "{} lists {} addresses for --processes {}",
            hostfile.display(),
            addresses.len(),
            self.processes
        );
        anyhow::ensure!(
            process_id < self.processes,
            "--process-id must be below --processes"
        );
        Ok(Some(Cluster {
            process_id,
            addresses: addresses[..self.processes].to_vec(),
            connect_timeout: Duration::from_secs(self.connect_timeout),
        }))
    }
}

/// Where the server listens.
#[derive(Debug, Clone, Args)]
pub struct ListenArgs {
    /// Address to listen on: host:port (127.0.0.1:8888, localhost:8888, [::1]:8888, 0.0.0.0:8888).
    #[arg(
        long,
        env = "LOGSTATS_BIND",
        value_name = "ADDR",
        default_value = "127.0.0.1:8888"
    )]
    pub bind: String,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub listen: ListenArgs,
    /// A TOML file of `"KEY" = "CUSTOMER_ID"` pairs (`"*"`: every customer). With it, every
    /// /customers request needs `Authorization: Bearer KEY`; without it the API is open.
    #[arg(long, env = "LOGSTATS_API_KEYS", value_name = "FILE")]
    pub api_keys: Option<PathBuf>,
    /// Seconds a request may take before it is answered 503.
    #[arg(
        long,
        env = "LOGSTATS_REQUEST_TIMEOUT",
        value_name = "S",
        default_value_t = 10
    )]
    pub request_timeout: u64,
    /// Requests handled at once; more are answered 503 at once.
    #[arg(
        long,
        env = "LOGSTATS_MAX_CONCURRENT",
        value_name = "N",
        default_value_t = 1024
    )]
    pub max_concurrent: usize,
    /// Seconds a client may take to send a request head, or stay idle between requests, before
    /// its connection is closed.
    #[arg(
        long,
        env = "LOGSTATS_HEADER_TIMEOUT",
        value_name = "S",
        default_value_t = 10
    )]
    pub header_timeout: u64,
    /// Connections open at once; more wait to be accepted until one closes.
    #[arg(
        long,
        env = "LOGSTATS_MAX_CONNECTIONS",
        value_name = "N",
        default_value_t = 4096
    )]
    pub max_connections: usize,
    /// Milliseconds a stats answer is reused (0 to 1000; 0 turns the cache off).
    #[arg(
        long,
        env = "LOGSTATS_CACHE_TTL_MS",
        default_value_t = 500,
        hide = true
    )]
    pub cache_ttl_ms: u64,
}

impl ServeArgs {
    /// Limits on the connections themselves.
    pub fn connection_limits(&self) -> anyhow::Result<crate::api::ConnectionLimits> {
        anyhow::ensure!(
            self.header_timeout > 0,
            "--header-timeout must be at least 1"
        );
        anyhow::ensure!(
            self.max_connections > 0,
            "--max-connections must be at least 1"
        );
        Ok(crate::api::ConnectionLimits {
            header_timeout: Duration::from_secs(self.header_timeout),
            max_connections: self.max_connections,
        })
    }

    /// The API's options, with the key file read and checked.
    pub fn options(&self) -> anyhow::Result<crate::api::ApiOptions> {
        anyhow::ensure!(
            self.request_timeout > 0,
            "--request-timeout must be at least 1"
        );
        anyhow::ensure!(
            self.max_concurrent > 0,
            "--max-concurrent must be at least 1"
        );
        let api_keys = match &self.api_keys {
            Some(path) => Some(crate::api::ApiKeys::load(path)?),
            None => None,
        };
        Ok(crate::api::ApiOptions {
            api_keys,
            request_timeout: Duration::from_secs(self.request_timeout),
            max_concurrent_requests: self.max_concurrent,
            cache_ttl: Duration::from_millis(self.cache_ttl_ms),
            ..crate::api::ApiOptions::default()
        })
    }
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The sample log (generated when missing).
    #[arg(
        long,
        env = "LOGSTATS_DEMO_LOG",
        value_name = "FILE",
        default_value = "logs/api_requests.log"
    )]
    pub log: PathBuf,
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub listen: ListenArgs,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_the_usual_units() {
        assert_eq!(parse_size("64MB"), Ok(64 << 20));
        assert_eq!(parse_size("1GB"), Ok(1 << 30));
        assert_eq!(parse_size("1.5gib"), Ok(3 << 29));
        assert_eq!(parse_size("2048k"), Ok(2 << 20));
        assert_eq!(parse_size("16777216"), Ok(16 << 20));
        for bad in ["", "MB", "12XB", "-5MB", "0.5KB", "1e400"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
