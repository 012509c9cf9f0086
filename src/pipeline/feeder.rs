//! Feeding the dataflow: each worker reads its units of the plan, epoch by epoch, then worker 0
//! the streams; when following, worker 0 tails the files and streams once per flush interval
//! while the others keep the epochs moving. Each of those inputs is an [`EpochSource`]; this
//! decides which is read when. Backpressure: a worker waits while more than one epoch has not
//! reached the committer.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use timely::dataflow::ProbeHandle;
use timely::worker::Worker;

use super::aggregate::Aggregator;
use super::follow::Follower;
use super::input::{EpochOutput, EpochSource, PlannedUnits};
use super::job::{ChunkInput, Job, Update, UpdateInput, glob_pattern};
use super::stream::StreamFeed;

/// Epochs a worker may run ahead of the last absorbed one (bounds memory).
const EPOCHS_IN_FLIGHT: u64 = 1;

/// Reads this worker's share, epoch by epoch, into the dataflow's input.
pub(super) struct Feeder<'a> {
    index: usize,
    peers: usize,
    aggregator: Aggregator,
    epoch: u64,
    worker: &'a mut Worker,
    updates: &'a mut UpdateInput,
    chunks: &'a mut ChunkInput,
    probe: &'a ProbeHandle<u64>,
    job: &'a Job,
    /// When worker 0 last cut a commit (the run's start, before the first).
    last_cut: Instant,
}

impl<'a> Feeder<'a> {
    pub fn new(
        worker: &'a mut Worker,
        updates: &'a mut UpdateInput,
        chunks: &'a mut ChunkInput,
        probe: &'a ProbeHandle<u64>,
        job: &'a Job,
        aggregator: Aggregator,
    ) -> Feeder<'a> {
        Feeder {
            index: worker.index(),
            peers: worker.peers(),
            aggregator,
            epoch: 0,
            worker,
            updates,
            chunks,
            probe,
            job,
            last_cut: Instant::now(),
        }
    }

    /// The planned units, then (worker 0) the streams: to their planned end in a batch run,
    /// together with the followed files, once per flush interval, when following.
    pub fn run(&mut self) -> anyhow::Result<()> {
        let job = self.job;
        let mut streams = match self.index == 0 && !job.streams.is_empty() {
            true => Some(StreamFeed::open(&job.streams)?),
            false => None,
        };
        self.read_to_end(&mut PlannedUnits::new(self.index))?;
        if job.stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        if !job.config.follow {
            if let Some(streams) = streams.as_mut() {
                self.read_to_end(streams)?;
            }
            return Ok(());
        }
        // Worker 0 tails every file; the others keep the epochs moving.
        let follower = match self.index {
            0 => Some(Follower::new(job, glob_pattern(&job.config)?)),
            _ => None,
        };
        self.follow(follower, streams)
    }

    /// Reads `source` an epoch at a time until it has nothing more (or the run stops).
    fn read_to_end(&mut self, source: &mut dyn EpochSource) -> anyhow::Result<()> {
        loop {
            self.wait_for_commits();
            if self.job.stop.load(Ordering::SeqCst) || !self.read(source)? {
                return Ok(());
            }
            self.advance();
        }
    }

    /// Follows the files and streams, one epoch per flush interval, until told to stop; the files
    /// are read once more when stopping.
    fn follow(
        &mut self,
        mut follower: Option<Follower<'_>>,
        mut streams: Option<StreamFeed>,
    ) -> anyhow::Result<()> {
        loop {
            let tick = Instant::now() + self.job.config.flush_interval;
            let stopping = self.job.stop.load(Ordering::SeqCst);
            if let Some(follower) = follower.as_mut() {
                self.read(follower)?;
            }
            // A stream that had more than an epoch's worth waiting is read on without a pause.
            let more = match streams.as_mut() {
                Some(streams) if !stopping => self.read(streams)?,
                _ => false,
            };
            self.advance();
            if stopping {
                return Ok(());
            }
            while !more && Instant::now() < tick && !self.job.stop.load(Ordering::SeqCst) {
                self.worker.step_or_park(Some(
                    tick.saturating_duration_since(Instant::now())
                        .min(Duration::from_millis(100)),
                ));
            }
            self.wait_for_commits();
        }
    }

    /// Reads `source`'s share of this epoch into the inputs.
    fn read(&mut self, source: &mut dyn EpochSource) -> anyhow::Result<bool> {
        source.read_epoch(&mut EpochOutput {
            updates: self.updates,
            chunks: self.chunks,
            aggregator: &mut self.aggregator,
            job: self.job,
            peers: self.peers,
        })
    }

    fn advance(&mut self) {
        if self.index == 0 && self.cut_is_due() {
            self.updates.send(Update::Cut);
            self.last_cut = Instant::now();
        }
        self.epoch += 1;
        self.updates.advance_to(self.epoch);
        self.chunks.advance_to(self.epoch);
        self.worker.step();
    }

    /// Whether worker 0 ends a commit with this epoch: once per commit interval while reading a
    /// backlog, every epoch when following past it (an epoch is a flush interval there). The end
    /// of the run commits whatever is left.
    fn cut_is_due(&self) -> bool {
        let past_backlog = self.epoch as usize * self.peers >= self.job.plan.units.len();
        (self.job.config.follow && past_backlog)
            || self.last_cut.elapsed() >= self.job.config.commit_interval
    }

    /// Waits until at most [`EPOCHS_IN_FLIGHT`] epochs are uncommitted.
    fn wait_for_commits(&mut self) {
        let Some(oldest) = self.epoch.checked_sub(EPOCHS_IN_FLIGHT) else {
            return;
        };
        while self.probe.less_equal(&oldest) && !self.job.stop.load(Ordering::SeqCst) {
            self.worker.step_or_park(Some(Duration::from_millis(100)));
        }
    }
}
