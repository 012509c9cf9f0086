//! The committer (worker 0 of process 0), on a thread of its own: collects each finished epoch;
//! at each cut, takes every owner's groups (the tables of this process's owners, the runs other
//! processes' owners sent) and writes them, in (customer, day) order, with the offsets the epochs
//! advanced, in one transaction; and returns the run's report when its thread ends.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::time::Instant;

use super::IngestReport;
use super::aggregate::{Rejected, Retracted, Tally};
use super::days::{DayGroup, days_of};
use super::drain::SortedStreams;
use super::job::{Job, Outputs, Update};
use super::owner::{END_OF_RUN, Handoff, epoch_is_complete};
use super::rejects::RejectsOutput;
use super::spill::{GroupTable, IncomingRuns, into_group};
use crate::store::{BlockingStore, CommitBatch, FileCheckpoint, GroupDelta};

struct Committer {
    job: Arc<Job>,
    store: BlockingStore,
    report: IngestReport,
    rejects: RejectsOutput,
    /// The tables this process's owners handed over, by the commit they end.
    handoffs: Receiver<Handoff>,
    handed: BTreeMap<u64, Vec<anyhow::Result<GroupTable>>>,
    /// The runs other processes' owners sent, and which of them sent their last.
    incoming: IncomingRuns,
    remote_ends: std::collections::BTreeSet<usize>,
    /// Owners in this process and in the others.
    local_owners: usize,
    remote_owners: usize,
    /// Everything else of the epochs since the last commit.
    absorbed: Absorbed,
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
    /// An owner, a rejects file or a commit failed: nothing more commits.
    Failed(anyhow::Error),
}

/// Finished epochs and their updates, ascending.
pub(super) type Finished = Vec<(u64, Vec<Update>)>;

/// What worker 0 hands the committer.
enum Received {
    Epochs(Finished),
    /// A chunk of a run another process's owner sent ([`Update::Run`]), as soon as it came: it
    /// goes to a file at once, not into memory with the rest of its epoch.
    Run {
        owner: usize,
        commit: u64,
        records: Vec<u8>,
    },
}

/// The committer on a thread of its own, so that worker 0 reads as fast as the others while
/// epochs are merged and written. At most one message waits for it; past that, worker 0 waits.
pub(super) struct CommitterThread {
    received: std::sync::mpsc::SyncSender<Received>,
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
        let (sender, received) = std::sync::mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("committer".into())
            .spawn(move || {
                for message in received {
                    match message {
                        Received::Epochs(finished) => committer.absorb(finished),
                        Received::Run {
                            owner,
                            commit,
                            records,
                        } => committer.receive_run(owner, commit, &records),
                    }
                }
                committer.commit_at_end();
                committer.into_report()
            })?;
        Ok(CommitterThread {
            received: sender,
            thread,
        })
    }

    /// Hands over finished epochs (ascending).
    pub fn send(&self, finished: Finished) {
        // Fails only when the thread has died, which `finish` reports.
        let _ = self.received.send(Received::Epochs(finished));
    }

    /// Hands over a chunk of another process's run as soon as it came (before its epoch is
    /// finished, which it precedes).
    pub fn send_run(&self, owner: usize, commit: u64, records: Vec<u8>) {
        let run = Received::Run {
            owner,
            commit,
            records,
        };
        let _ = self.received.send(run);
    }

    /// Commits what is left, waits for the thread and returns the run's report.
    pub fn finish(self) -> anyhow::Result<IngestReport> {
        drop(self.received);
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
            handoffs,
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
        let local_owners = job.config.workers.max(1);
        Ok(Committer {
            handoffs,
            handed: BTreeMap::new(),
            incoming: IncomingRuns::new(job.config.spill_dir.clone()),
            remote_ends: Default::default(),
            local_owners,
            remote_owners: peers.saturating_sub(local_owners),
            job,
            store,
            report,
            rejects,
            absorbed: Absorbed::default(),
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
            let mut cut = false;
            for update in updates {
                match update {
                    Update::Groups { .. } => {
                        return self.fail(anyhow::anyhow!(
                            "groups reached the committer instead of their owner (a bug)"
                        ));
                    }
                    Update::Cut => cut = true,
                    Update::Run { .. } => {
                        return self.fail(anyhow::anyhow!(
                            "a run reached the committer with its epoch (a bug)"
                        ));
                    }
                    Update::OwnerFailed(error) => return self.fail(anyhow::anyhow!("{error}")),
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
            if cut {
                self.commit(epoch);
            }
        }
    }

    /// Writes a chunk of `owner`'s run of `commit` to its file.
    fn receive_run(&mut self, owner: usize, commit: u64, records: &[u8]) {
        if self.halted.is_some() {
            return;
        }
        if commit == END_OF_RUN {
            self.remote_ends.insert(owner);
        }
        if let Err(error) = self.incoming.append(owner, commit, records) {
            self.fail(error.context("receiving another process's days"));
        }
    }

    /// Commits what is left, once every owner has handed over its last groups: a run that ended
    /// without them (a peer of the cluster was lost, which the run reports) commits nothing more.
    fn commit_at_end(&mut self) {
        self.take_handoffs();
        let local_ends = self.handed.get(&END_OF_RUN).map_or(0, Vec::len);
        if local_ends == self.local_owners && self.remote_ends.len() == self.remote_owners {
            self.commit(END_OF_RUN);
        } else {
            self.fail(anyhow::anyhow!(
                "the run ended before {} of {} owners handed their last groups over",
                self.local_owners + self.remote_owners - local_ends - self.remote_ends.len(),
                self.local_owners + self.remote_owners
            ));
        }
    }

    /// The tables handed over so far, by commit.
    fn take_handoffs(&mut self) {
        for handoff in self.handoffs.try_iter() {
            self.handed
                .entry(handoff.commit)
                .or_default()
                .push(handoff.table);
        }
    }

    /// Every owner's groups as of `commit`, sorted and read each on a thread of its own, which
    /// also computes their rows when they go into an empty table (nothing to merge them with).
    fn groups_of(&mut self, commit: u64) -> anyhow::Result<SortedStreams> {
        self.take_handoffs();
        let tables = self.handed.remove(&commit).unwrap_or_default();
        anyhow::ensure!(
            tables.len() == self.local_owners,
            "{} of {} owners handed their groups over (a bug: please report it)",
            tables.len(),
            self.local_owners
        );
        let fresh = !self.store.holds_any_day()?;
        let delta = move |(customer, day, stats)| {
            let group = GroupDelta::new(customer, day, stats);
            if fresh { group.with_values() } else { group }
        };
        let deltas = move |days: anyhow::Result<DayGroup>| days.map(delta);
        let mut sources: Vec<Box<dyn FnOnce() -> anyhow::Result<Groups> + Send>> = Vec::new();
        for table in tables {
            let table = table?;
            self.report.spilled_bytes += table.spilled_bytes();
            sources.push(Box::new(move || {
                let sorted = table.into_sorted_states()?;
                let groups = sorted.map(|group| group.map(into_group));
                Ok(Box::new(days_of(groups).map(deltas)) as Groups)
            }));
        }
        // Another process's owner sent its days with their rows (see `run_of`).
        for run in self.incoming.take(commit)? {
            sources.push(Box::new(move || Ok(Box::new(run) as Groups)));
        }
        Ok(SortedStreams::new(sources))
    }

    /// Writes every owner's groups as of `commit` and what was absorbed since the last commit, in
    /// one transaction.
    fn commit(&mut self, commit: u64) {
        if matches!(self.halted, Some(Halt::Failed(_))) {
            return;
        }
        let groups = match self.groups_of(commit) {
            Ok(groups) => groups,
            Err(error) => return self.fail(error),
        };
        if self.absorbed.epochs == 0 {
            return;
        }
        let mut absorbed = std::mem::take(&mut self.absorbed);
        let batch = absorbed.batch();
        let started = Instant::now();
        match self.store.commit_sorted(batch, groups) {
            Ok(written) => {
                let groups = written.days as u64;
                self.report.groups_changed += groups;
                self.report.other_requests += written.other_requests;
                self.report.commits += 1;
                self.report.add_tally(&absorbed.tally);
                let samples = &mut self.report.reject_samples;
                if let Err(e) = self.rejects.record(absorbed.rejects, samples) {
                    tracing::warn!("could not write rejected lines: {e:#}");
                }
                tracing::debug!(
                    groups,
                    received_bytes = self.incoming.bytes(),
                    ms = started.elapsed().as_millis() as u64,
                    "committed"
                );
            }
            Err(error) => self.fail(error.context("committing to the database")),
        }
    }

    /// Stops the run and commits nothing more.
    fn fail(&mut self, error: anyhow::Error) {
        self.job.stop.store(true, Ordering::SeqCst);
        self.halted = Some(Halt::Failed(error));
    }

    /// A batch epoch is complete when every unit planned for it was read (the owners decide
    /// alike).
    fn epoch_is_complete(&self, epoch: u64, updates: &[Update]) -> bool {
        let units_done = updates
            .iter()
            .filter(|u| matches!(u, Update::UnitDone(_)))
            .count();
        epoch_is_complete(epoch, self.peers, self.job.plan.units.len(), units_done)
    }

    /// The run's report, or why the committer stopped committing.
    fn into_report(self) -> anyhow::Result<IngestReport> {
        match self.halted {
            Some(Halt::Failed(error)) => Err(error),
            _ => Ok(self.report),
        }
    }
}

/// A sorted stream of one owner's groups.
type Groups = Box<dyn Iterator<Item = anyhow::Result<GroupDelta>>>;

/// The share of the memory limit each of this process's `owners` may hold in its table before it
/// spills: together half the limit, the rest being for the epochs in flight (an eighth, see the
/// unit size), reading, the allocator's slack and the process itself. A table handed over while
/// the run goes on keeps at most a quarter of it in memory (see `owner.rs`).
pub(super) fn owner_budget(memory_limit: u64, owners: usize) -> usize {
    (memory_limit / 2) as usize / owners.max(1)
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
