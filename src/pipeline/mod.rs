//! Ingestion on timely dataflow: inputs are planned into units, read and pre-aggregated by every
//! worker; each group goes to the worker that owns its customer, which merges it; at each cut the
//! owners hand their groups to one committer (docs/architecture.md).
//!
//! ```text
//! plan -> [read + aggregate, per worker, unit by unit] --------------------> exchange by customer
//! streams -> [worker 0 reads messages] -> [parse + aggregate, per worker] ---^
//!      -> [owner, per worker of the cluster: merge as epochs pass, spill past its share of the limit]
//!      -> at a cut (worker 0: once per commit interval), every owner's table -> [committer]
//!      -> [commit: every table sorted on a thread of its own, interleaved; every group once, in
//!          key order, + file offsets, one transaction]
//! ```

mod aggregate;
mod chunked;
mod cluster;
mod committer;
mod dataflow;
mod days;
mod drain;
mod feeder;
mod follow;
pub mod identity;
mod input;
mod job;
mod name_key;
mod owner;
mod peers;
mod process;
mod reader;
mod rejects;
mod small;
pub mod source;
mod spill;
mod stream;
mod text;

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

pub use aggregate::{Aggregator, Position, Rejected, Tally};
pub use cluster::ClusterDidNotForm;
pub use dataflow::ingest;
pub use peers::{PEER_LOST_EXIT_STATUS, PeerLost};
pub use reader::{BOM, MAX_LINE_BYTES};

use crate::record::Reject;

/// How an ingestion runs (the CLI's flags, as plain values).
#[derive(Clone, Debug)]
pub struct IngestConfig {
    pub inputs: Vec<String>,
    /// File-name pattern for files found in directories.
    pub glob: Option<String>,
    /// Worker threads in this process.
    pub workers: usize,
    pub follow: bool,
    /// How often follow mode reads and commits.
    pub flush_interval: Duration,
    /// Follow mode: how many followed files are kept open at most (the least recently active
    /// ones are closed, and opened again when they grow).
    pub max_open_files: usize,
    /// How often a backlog's progress is committed (a killed run redoes at most this much).
    pub commit_interval: Duration,
    /// Target bytes per unit of work (an epoch reads one unit per worker).
    pub unit_bytes: u64,
    /// Write every rejected line here.
    pub rejects_file: Option<PathBuf>,
    /// How many rejected lines the summary shows.
    pub reject_samples: usize,
    pub cluster: Option<Cluster>,
    pub progress_bar: bool,
    /// Bytes of memory the whole process should stay within; groups past it spill to disk.
    pub memory_limit: u64,
    /// Where spill files are written (in a directory of their own, removed at the end).
    pub spill_dir: PathBuf,
    /// Whether each day is broken down by resource (docs/spec.md section 3).
    pub by_resource: bool,
}

/// How many followed files are kept open when `--max-open-files` is not given.
pub const DEFAULT_MAX_OPEN_FILES: usize = 1024;

/// The memory limit when none is given.
pub const DEFAULT_MEMORY_LIMIT: u64 = 256 << 20;

/// A cluster of processes running the same ingestion over TCP.
#[derive(Clone, Debug)]
pub struct Cluster {
    pub process_id: usize,
    /// `host:port` of every process, in process-id order.
    pub addresses: Vec<String>,
    pub connect_timeout: Duration,
}

impl IngestConfig {
    /// Defaults for everything but the inputs.
    pub fn new(inputs: Vec<String>) -> IngestConfig {
        IngestConfig {
            inputs,
            glob: None,
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            follow: false,
            flush_interval: Duration::from_secs(1),
            max_open_files: DEFAULT_MAX_OPEN_FILES,
            commit_interval: Duration::from_secs(5),
            unit_bytes: 0,
            rejects_file: None,
            reject_samples: 10,
            cluster: None,
            progress_bar: false,
            memory_limit: DEFAULT_MEMORY_LIMIT,
            spill_dir: std::env::temp_dir(),
            by_resource: true,
        }
    }
}

/// What an ingestion did: the summary line's numbers, and more for `--json`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct IngestReport {
    pub files: usize,
    pub bytes: u64,
    pub lines: u64,
    pub rejected: u64,
    /// Rejected lines by reason code.
    pub rejected_by_reason: Vec<(String, u64)>,
    pub groups_changed: u64,
    /// Requests newly counted as `(other)`: past the most resources a day keeps by name.
    pub other_requests: u64,
    pub commits: u64,
    /// Bytes of group state written to spill files (0 when everything fit in memory).
    pub spilled_bytes: u64,
    /// The process's peak resident memory so far (0 where the system does not tell).
    pub peak_rss_bytes: u64,
    pub seconds: f64,
    pub lines_per_second: f64,
    /// A sample of rejected lines: `file:line: reason: text`.
    pub reject_samples: Vec<String>,
    /// Files read again from the start (shrank or replaced), and other things worth saying.
    pub notes: Vec<String>,
    /// Standard input was read: its progress is not resumable.
    pub read_stdin: bool,
    /// The signal (SIGINT 2, SIGTERM 15) that stopped a batch run before the end of its input.
    pub interrupted_by: Option<i32>,
    /// Inputs that could not be read, or not completely (`cannot read NAME: cause`): the others
    /// were ingested.
    pub unreadable: Vec<String>,
    /// In a cluster, which process this is: process 0 commits, and its report counts the whole
    /// cluster; the others' reports count nothing of their own.
    pub cluster: Option<ClusterPart>,
}

/// One process's place in a cluster.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct ClusterPart {
    pub process_id: usize,
    pub processes: usize,
}

/// The peak resident memory of this process so far (`VmHWM` of /proc/self/status).
fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().strip_suffix("kB"))
        .and_then(|kib| kib.trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

impl IngestReport {
    /// The one-line summary printed on stderr (docs/spec.md section 6).
    pub fn summary_line(&self) -> String {
        let cluster = match self.cluster {
            Some(part) if part.process_id > 0 => {
                return format!(
                    "process {} of the cluster's {} is done: process 0 prints the cluster's summary",
                    part.process_id, part.processes
                );
            }
            Some(part) => format!(" by a cluster of {} processes", part.processes),
            None => String::new(),
        };
        let mut line = format!(
            "ingested {} lines ({} rejected) from {} input(s){cluster}, {} groups changed, in {:.2} s ({:.0} lines/s)",
            self.lines,
            self.rejected,
            self.files,
            self.groups_changed,
            self.seconds,
            self.lines_per_second
        );
        if self.read_stdin {
            line.push_str("; standard input is not resumable: its progress was not recorded");
        }
        self.push_shared_remarks(&mut line);
        if let Some(signal) = self.interrupted_by {
            let name = if signal == 2 { "SIGINT" } else { "SIGTERM" };
            line.push_str(&format!(
                "; interrupted by {name} before the end of the input: what was read is committed, \
                 run the same command again to continue"
            ));
        }
        line
    }

    /// The summary of a run that followed its inputs until it was stopped: what it read over how
    /// long (a rate over a life spent mostly waiting would mean nothing).
    pub fn followed_summary_line(&self) -> String {
        if self.cluster.is_some_and(|part| part.process_id > 0) {
            return self.summary_line();
        }
        let seconds = self.seconds.max(0.0).round() as u64;
        let (hours, minutes, seconds) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
        let time = match (hours, minutes) {
            (0, 0) => format!("{seconds} s"),
            (0, _) => format!("{minutes} min {seconds} s"),
            _ => format!("{hours} h {minutes} min {seconds} s"),
        };
        let mut line = format!(
            "followed {} input(s) for {time}: ingested {} lines ({} rejected), {} groups changed",
            self.files, self.lines, self.rejected, self.groups_changed
        );
        self.push_shared_remarks(&mut line);
        line
    }

    /// What both summaries say when it happened: requests past a day's resources, unreadable
    /// inputs.
    fn push_shared_remarks(&self, line: &mut String) {
        if self.other_requests > 0 {
            line.push_str(&format!(
                "; {} requests counted as {} (past the {} resources a day keeps by name)",
                self.other_requests,
                crate::resources::OTHER,
                crate::resources::MOST_RESOURCES
            ));
        }
        if !self.unreadable.is_empty() {
            line.push_str(&format!(
                "; {} input(s) could not be read completely (listed above)",
                self.unreadable.len()
            ));
        }
    }

    /// The exit status this run deserves: 0 when it read everything, 2 when some input could
    /// not be read completely, 128 + the signal that interrupted it.
    pub fn exit_code(&self) -> u8 {
        match self.interrupted_by {
            Some(signal) => 128 + signal as u8,
            None if !self.unreadable.is_empty() => 2,
            None => 0,
        }
    }

    fn add_tally(&mut self, tally: &Tally) {
        self.lines += tally.lines;
        self.bytes += tally.bytes;
        self.rejected += tally.rejected_total();
        for reason in Reject::ALL {
            let count = tally.rejected[reason.index()];
            if count == 0 {
                continue;
            }
            match self
                .rejected_by_reason
                .iter_mut()
                .find(|(code, _)| code == reason.code())
            {
                Some((_, total)) => *total += count,
                None => self
                    .rejected_by_reason
                    .push((reason.code().to_string(), count)),
            }
        }
    }
}
