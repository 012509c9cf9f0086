//! What the parts of a run share: the job every worker of this process holds, and the updates
//! that flow through the dataflow from the workers to the committer. Imports none of the
//! operators, so that each of them (the feeder, the follower, the committer) imports it alone.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use timely::dataflow::InputHandle;

use super::IngestConfig;
use super::aggregate::{Aggregator, FileProgress, NumberedGroups, Rejected, Retracted, Tally};
use super::owner::{Handoff, Mark};
use super::source::{NamePattern, Plan};
use super::stream::{Chunk, PlannedStream};
use crate::store::BlockingStore;

/// What flows through the dataflow.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Update {
    /// A batch's groups of the customers `owner` (a worker of the cluster) owns.
    Groups {
        owner: usize,
        groups: NumberedGroups,
    },
    /// Worker 0 ends a commit with this epoch: every owner hands its groups so far to the
    /// committer.
    Cut,
    /// Sorted groups of an owner of another process, for the commit that ends with epoch
    /// `commit` ([`super::owner::END_OF_RUN`] for the last), as a run file holds them: on their way to the
    /// committer. Every such owner sends at least one (maybe empty) for the end of the run.
    Run {
        owner: usize,
        commit: u64,
        records: Vec<u8>,
    },
    Progress(FileProgress),
    Tally(Tally),
    Rejected(Rejected),
    /// An owner of another process lost its groups (a spill failed): nothing more commits.
    OwnerFailed(String),
    /// A unit of the plan was read completely.
    UnitDone(usize),
    /// An input that could not be read completely, and why.
    Unreadable(String),
    /// Something the summary notes (messages a stream dropped before they were read).
    Note(String),
    /// Lines counted before they were complete, taken back.
    Retracted(Retracted),
}

impl Update {
    /// What `aggregator` counted since it was last drained: its groups, rejected lines and tally.
    pub(super) fn drained(aggregator: &mut Aggregator) -> impl Iterator<Item = Update> {
        let (groups, tally, rejects) = aggregator.drain();
        groups
            .into_iter()
            .map(|(owner, groups)| Update::Groups { owner, groups })
            .chain(rejects.into_iter().map(Update::Rejected))
            .chain(std::iter::once(Update::Tally(tally)))
    }

    /// The mark this update makes for every owner, if it makes one.
    pub(super) fn mark(&self) -> Option<Mark> {
        match self {
            Update::UnitDone(_) => Some(Mark::UnitDone),
            Update::Cut => Some(Mark::Cut),
            _ => None,
        }
    }

    /// The worker this update goes to: a group's owner; worker 0 (the committer's) for the rest.
    pub(super) fn destination(&self) -> u64 {
        match self {
            Update::Groups { owner, .. } => *owner as u64,
            _ => 0,
        }
    }
}

/// The dataflow's input, as each worker holds it.
pub(super) type UpdateInput =
    InputHandle<u64, timely::container::CapacityContainerBuilder<Vec<Update>>>;

/// The input of stream messages, read by worker 0 and parsed by the worker each chunk names.
pub(super) type ChunkInput =
    InputHandle<u64, timely::container::CapacityContainerBuilder<Vec<Chunk>>>;

/// Everything the workers of this process share.
pub(super) struct Job {
    pub config: IngestConfig,
    pub plan: Plan,
    /// The streams this run reads (planned by the committing process only: worker 0 reads them).
    pub streams: Vec<PlannedStream>,
    pub stored: super::identity::Known,
    /// Set by SIGINT/SIGTERM, a failed commit or any worker's error: read no more, commit what
    /// was read, stop.
    pub stop: Arc<AtomicBool>,
    /// The signal that stopped the run (0 for none).
    pub signal: Arc<AtomicUsize>,
    /// What this run writes (its database, the rejects file): never read as logs when following.
    pub own_files: Vec<(PathBuf, &'static str)>,
    /// What the committer writes to, handed to it when it starts (worker 0 of the committing
    /// process takes it; the others find `None`).
    pub outputs: Mutex<Option<Outputs>>,
    /// Where this process's owners hand their tables to the committer (the committing process
    /// only).
    pub handoffs: Option<std::sync::mpsc::Sender<Handoff>>,
    pub bytes_read: AtomicU64,
    /// Lines read so far (for the progress bar).
    pub lines_read: AtomicU64,
}

/// Where the committer writes: the store, and the file every rejected line goes to (created
/// before the workers start).
pub(super) struct Outputs {
    pub store: BlockingStore,
    pub rejects_file: Option<std::fs::File>,
    pub handoffs: std::sync::mpsc::Receiver<Handoff>,
}

/// The `--glob` pattern, checked.
pub(super) fn glob_pattern(config: &IngestConfig) -> anyhow::Result<Option<NamePattern>> {
    super::source::name_pattern(config.glob.as_deref())
}
