//! The committer (worker 0 of process 0), on a thread of its own: collects each finished epoch,
//! merges it into the store with the offsets it advanced in one transaction, and returns the
//! run's report when its thread ends.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::IngestReport;
use super::aggregate::{Rejected, Retracted, Tally};
use super::job::{Job, Outputs, Update};
use super::partition::Partitions;
use super::rejects::RejectsOutput;
use crate::store::{BlockingStore, CommitBatch, FileCheckpoint, GroupDelta};

struct Committer {
    job: Arc<Job>,
    store: BlockingStore,
    report: IngestReport,
    rejects: RejectsOutput,
    /// The groups of finished epochs not committed yet, merged, within the memory limit.
    groups: Partitions,
    /// Everything else of those epochs.
    absorbed: Absorbed,
    last_commit: Instant,
    /// Once an epoch came incomplete, nothing later is absorbed; once something failed, nothing
    /// more commits.
    halted: Option<Halt>,
    /// Workers in the whole cluster: an epoch holds one unit of each.
    peers: usize,
}

/// Why the committer takes no more epochs.
enum Halt {
    /// A worker stopped before an epoch was complete: what came before it still commits, and
    /// the run ends without an error (an interrupted run reports what it committed).
    IncompleteEpoch,
    /// A partition, a rejects file or a commit failed: nothing more commits.
    Failed(anyhow::Error),
}

/// Finished epochs and their updates, ascending.
pub(super) type Finished = Vec<(u64, Vec<Update>)>;

/// The committer on a thread of its own, so that worker 0 reads as fast as the others while
/// epochs are merged and written. At most one epoch waits for it; past that, worker 0 waits.
pub(super) struct CommitterThread {
    epochs: std::sync::mpsc::SyncSender<Finished>,
    thread: std::thread::JoinHandle<anyhow::Result<IngestReport>>,
}

impl CommitterThread {
    /// The committer of a dataflow of `peers` workers (in the whole cluster), writing to `outputs`.
    pub fn start(
        job: &Arc<Job>,
        outputs: Outputs,
        peers: usize,
    ) -> anyhow::Result<CommitterThread> {
        let mut committer = Committer::new(Arc::clone(job), outputs, peers)?;
        let (epochs, received) = std::sync::mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("committer".into())
            .spawn(move || {
                for finished in received {
                    committer.absorb(finished);
                    committer.commit_if_due(false);
                }
                committer.commit_if_due(true);
                committer.into_report()
            })?;
        Ok(CommitterThread { epochs, thread })
    }

    /// Hands over finished epochs (ascending).
    pub fn send(&self, finished: Finished) {
        // Fails only when the thread has died, which `finish` reports.
        let _ = self.epochs.send(finished);
    }

    /// Commits what is left, waits for the thread and returns the run's report.
    pub fn finish(self) -> anyhow::Result<IngestReport> {
        drop(self.epochs);
        self.thread.join().unwrap_or_else(|_| {
            Err(anyhow::anyhow!(
                "the committer failed (a bug: please report it)"
            ))
        })
    }
}

/// What finished, uncommitted epochs said besides their groups.
#[derive(Default)]
struct Absorbed {
    progress: BTreeMap<String, FileCheckpoint>,
    tally: Tally,
    rejects: Vec<Rejected>,
    retracted: Retracted,
    epochs: u64,
    last_epoch: Option<u64>,
}

impl Absorbed {
    /// What a commit records besides the groups: the files' checkpoints, the lines counted, and
    /// what is taken back (the tally and rejected lines stay, for the report after the commit).
    fn batch(&mut self) -> CommitBatch {
        let retracted = std::mem::take(&mut self.retracted);
        CommitBatch {
            groups: Vec::new(),
            progress: std::mem::take(&mut self.progress).into_values().collect(),
            lines: self.tally.lines,
            rejected: self.tally.rejected_total(),
            retractions: retracted.requests,
            retracted_lines: retracted.tally.lines,
            retracted_rejected: retracted.tally.rejected_total(),
        }
    }
}

impl Committer {
    fn new(job: Arc<Job>, outputs: Outputs, peers: usize) -> anyhow::Result<Committer> {
        let Outputs {
            store,
            rejects_file,
        } = outputs;
        let rejects = RejectsOutput::new(rejects_file, job.config.reject_samples);
        let mut report = IngestReport {
            files: job.plan.inputs.len() + job.streams.len(),
            read_stdin: job
                .plan
                .inputs
                .iter()
                .any(|i| i.source == super::source::Source::Stdin),
            ..IngestReport::default()
        };
        report.notes.extend(job.plan.notes.iter().cloned());
        report.unreadable.extend(job.plan.problems.iter().cloned());
        report
            .notes
            .extend(job.plan.inputs.iter().filter_map(|i| i.note.clone()));
        // A partition per worker of this process: they merge on as many cores.
        let groups = Partitions::start(
            job.config.workers,
            group_budget(job.config.memory_limit),
            job.config.spill_dir.clone(),
        )?;
        Ok(Committer {
            groups,
            job,
            store,
            report,
            rejects,
            absorbed: Absorbed::default(),
            last_commit: Instant::now(),
            halted: None,
            peers,
        })
    }

    /// Takes in finished epochs (ascending). An incomplete one (a worker stopped early) ends
    /// absorption: what follows it would leave a gap in some file.
    fn absorb(&mut self, epochs: Finished) {
        for (epoch, updates) in epochs {
            if self.halted.is_some() {
                return;
            }
            if !self.epoch_is_complete(epoch, &updates) {
                self.job.stop.store(true, Ordering::SeqCst);
                self.halted = Some(Halt::IncompleteEpoch);
                return;
            }
            let absorbed = &mut self.absorbed;
            let mut records = Vec::new();
            for update in updates {
                match update {
                    Update::Groups(groups) => {
                        if let Err(error) = self.groups.absorb(groups) {
                            return self.fail(error);
                        }
                    }
                    Update::Progress(p) => records.push(p),
                    Update::Tally(t) => absorbed.tally.add(&t),
                    Update::Rejected(r) => absorbed.rejects.push(r),
                    Update::Unreadable(problem) => self.report.unreadable.push(problem),
                    Update::Note(note) => self.report.notes.push(note),
                    Update::Retracted(r) => {
                        absorbed.retracted.requests.extend(r.requests);
                        absorbed.retracted.tally.add(&r.tally);
                    }
                    Update::UnitDone(_) => {}
                }
            }
            records.sort_by_key(|p| p.from);
            for record in records {
                merge_progress(&mut absorbed.progress, record.checkpoint);
            }
            absorbed.epochs += 1;
            absorbed.last_epoch = Some(epoch);
        }
    }

    /// Commits what was absorbed, in one transaction, when `force`d, once per commit interval
    /// while reading a backlog, and every epoch when following (an epoch is a flush interval there).
    fn commit_if_due(&mut self, force: bool) {
        let following = self.job.config.follow && self.absorbed_follow_epoch();
        let due =
            force || following || self.last_commit.elapsed() >= self.job.config.commit_interval;
        if !due || self.absorbed.epochs == 0 {
            return;
        }
        if matches!(self.halted, Some(Halt::Failed(_))) {
            return;
        }
        let mut absorbed = std::mem::take(&mut self.absorbed);
        let spilled = (self.groups.runs(), self.groups.spilled_bytes());
        let groups = match self.groups.take_sorted() {
            Ok(groups) => groups.map(|group| {
                group.map(|(customer, day, stats)| GroupDelta {
                    customer,
                    day,
                    stats,
                })
            }),
            Err(error) => return self.fail(error),
        };
        let batch = absorbed.batch();
        let started = Instant::now();
        match self.store.commit_sorted(batch, groups) {
            Ok(groups) => {
                let groups = groups as u64;
                self.report.groups_changed += groups;
                self.report.spilled_bytes = self.groups.spilled_bytes();
                self.report.commits += 1;
                self.report.add_tally(&absorbed.tally);
                let samples = &mut self.report.reject_samples;
                if let Err(e) = self.rejects.record(absorbed.rejects, samples) {
                    tracing::warn!("could not write rejected lines: {e:#}");
                }
                tracing::debug!(
                    groups,
                    spilled_runs = spilled.0,
                    spilled_bytes = spilled.1,
                    ms = started.elapsed().as_millis() as u64,
                    "committed"
                );
            }
            Err(error) => self.fail(error.context("committing to the database")),
        }
        self.last_commit = Instant::now();
    }

    /// Stops the run and commits nothing more.
    fn fail(&mut self, error: anyhow::Error) {
        self.job.stop.store(true, Ordering::SeqCst);
        self.halted = Some(Halt::Failed(error));
    }

    /// Whether the last absorbed epoch came after the backlog (a follow-mode tick).
    fn absorbed_follow_epoch(&self) -> bool {
        self.absorbed
            .last_epoch
            .is_some_and(|e| e as usize * self.peers >= self.job.plan.units.len())
    }

    /// A batch epoch is complete when every unit planned for it was read.
    fn epoch_is_complete(&self, epoch: u64, updates: &[Update]) -> bool {
        let peers = self.peers;
        let planned = self.job.plan.units.len();
        let first = epoch as usize * peers;
        if first >= planned {
            return true; // a follow-mode epoch: files are owned whole, nothing can be missing
        }
        let expected = planned.min(first + peers) - first;
        updates
            .iter()
            .filter(|u| matches!(u, Update::UnitDone(_)))
            .count()
            == expected
    }

    /// The run's report, or why the committer stopped committing.
    fn into_report(self) -> anyhow::Result<IngestReport> {
        match self.halted {
            Some(Halt::Failed(error)) => Err(error),
            _ => Ok(self.report),
        }
    }
}

/// The share of the memory limit the committer's groups may hold before they spill: the rest is
/// for the epochs in flight (an eighth, see the unit size), reading, the allocator's slack and the
/// process itself.
fn group_budget(memory_limit: u64) -> usize {
    (memory_limit / 2) as usize
}

/// Several records for one file in one transaction, in reading order: the first says what the
/// stored row must hold, the last how far the file now is.
fn merge_progress(all: &mut BTreeMap<String, FileCheckpoint>, record: FileCheckpoint) {
    match all.get_mut(&record.path) {
        None => {
            all.insert(record.path.clone(), record);
        }
        Some(existing) => {
            *existing = FileCheckpoint {
                expected_offset: existing.expected_offset,
                expected_decoded: existing.expected_decoded,
                other_names: std::mem::take(&mut existing.other_names),
                ..record
            }
        }
    }
}
