//! Feeding the dataflow: each worker reads its units of the plan, epoch by epoch, then (when
//! following) worker 0 tails the files once per flush interval while the others keep the epochs
//! moving. Backpressure: a worker waits while more than one epoch has not reached the committer.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use timely::dataflow::ProbeHandle;
use timely::worker::Worker;

use super::aggregate::Aggregator;
use super::aggregate::FileProgress;
use super::follow::Follower;
use super::job::{ChunkInput, Job, Update, UpdateInput, glob_pattern};
use super::reader::read_piece;
use super::source::PieceEnd;
use super::stream::{StreamFeed, StreamRead};

/// Epochs a worker may run ahead of the last absorbed one (bounds memory).
const EPOCHS_IN_FLIGHT: u64 = 1;

/// Reads this worker's share, epoch by epoch, into the dataflow's input.
pub(super) struct Feeder {
    index: usize,
    peers: usize,
    aggregator: Aggregator,
    epoch: u64,
    /// Worker 0's reading of the stream inputs.
    streams: Option<StreamFeed>,
}

impl Feeder {
    pub fn new(index: usize, peers: usize, aggregator: Aggregator) -> Feeder {
        Feeder {
            index,
            peers,
            aggregator,
            epoch: 0,
            streams: None,
        }
    }

    pub fn run(
        &mut self,
        worker: &mut Worker,
        input: &mut UpdateInput,
        chunks: &mut ChunkInput,
        probe: &ProbeHandle<u64>,
        job: &Job,
    ) -> anyhow::Result<()> {
        if self.index == 0 && !job.streams.is_empty() {
            self.streams = Some(StreamFeed::open(&job.streams)?);
        }
        let plan = &job.plan;
        let epochs = plan.units.len().div_ceil(self.peers);
        for epoch in 0..epochs {
            self.wait_for_commits(worker, probe, job);
            if job.stop.load(Ordering::SeqCst) {
                return Ok(());
            }
            let unit = epoch * self.peers + self.index;
            if let Some(pieces) = plan.units.get(unit) {
                let mut progress = Vec::new();
                for piece in pieces {
                    let lines_before = self.aggregator.lines();
                    let end = read_piece(plan, piece, &mut self.aggregator, &mut |n| {
                        job.bytes_read.fetch_add(n, Ordering::Relaxed);
                    })?;
                    job.lines_read
                        .fetch_add(self.aggregator.lines() - lines_before, Ordering::Relaxed);
                    progress.extend(plan.progress_of(piece, &end));
                    if let PieceEnd::Broken { problem, .. } | PieceEnd::Lost { problem } = end {
                        input.send(Update::Unreadable(problem));
                    }
                }
                self.send(input, progress);
                input.send(Update::UnitDone(unit));
            }
            self.advance(worker, input, chunks);
        }
        if !job.config.follow {
            // The streams' messages up to their planned end, an epoch at a time.
            while self.streams.is_some() {
                self.wait_for_commits(worker, probe, job);
                if job.stop.load(Ordering::SeqCst) || !self.read_streams(input, chunks, job) {
                    break;
                }
                self.advance(worker, input, chunks);
            }
            return Ok(());
        }
        self.follow(worker, input, chunks, probe, job)
    }

    /// Reads an epoch's worth of the streams' messages and sends them out to be parsed, with the
    /// progress they make; false when there was nothing to read.
    fn read_streams(
        &mut self,
        input: &mut UpdateInput,
        chunks: &mut ChunkInput,
        job: &Job,
    ) -> bool {
        let Some(streams) = self.streams.as_mut() else {
            return false;
        };
        let epoch_bytes = job.config.unit_bytes as usize * self.peers;
        let StreamRead {
            chunks: read,
            progress,
            notes,
            problems,
            warnings,
        } = streams.read(epoch_bytes, self.peers);
        let bytes: usize = read
            .iter()
            .flat_map(|c| &c.messages)
            .map(|m| m.1.len())
            .sum();
        job.bytes_read.fetch_add(bytes as u64, Ordering::Relaxed);
        for warning in warnings {
            tracing::warn!("{warning}");
        }
        for note in notes {
            tracing::warn!("{note}");
            input.send(Update::Note(note));
        }
        for problem in problems {
            input.send(Update::Unreadable(problem));
        }
        for record in progress {
            input.send(Update::Progress(record));
        }
        let any = !read.is_empty();
        for chunk in read {
            chunks.send(chunk);
        }
        any
    }

    /// Follows the inputs, one epoch per flush interval, until told to stop.
    fn follow(
        &mut self,
        worker: &mut Worker,
        input: &mut UpdateInput,
        chunks: &mut ChunkInput,
        probe: &ProbeHandle<u64>,
        job: &Job,
    ) -> anyhow::Result<()> {
        // Worker 0 tails every file; the others keep the epochs moving.
        let mut follower = if self.index == 0 {
            Some(Follower::new(job, glob_pattern(&job.config)?))
        } else {
            None
        };
        loop {
            let tick = Instant::now() + job.config.flush_interval;
            let stopping = job.stop.load(Ordering::SeqCst);
            let progress = match follower.as_mut() {
                Some(follower) => follower.poll(&mut self.aggregator, &job.bytes_read)?,
                None => Vec::new(),
            };
            self.send(input, progress);
            // A stream that had more than an epoch's worth waiting is read on without a pause.
            let mut more = false;
            if !stopping {
                more = self.read_streams(input, chunks, job);
            }
            self.advance(worker, input, chunks);
            if stopping {
                return Ok(());
            }
            while !more && Instant::now() < tick && !job.stop.load(Ordering::SeqCst) {
                worker.step_or_park(Some(
                    tick.saturating_duration_since(Instant::now())
                        .min(Duration::from_millis(100)),
                ));
            }
            self.wait_for_commits(worker, probe, job);
        }
    }

    fn send(&mut self, input: &mut UpdateInput, progress: Vec<FileProgress>) {
        for update in Update::drained(&mut self.aggregator) {
            input.send(update);
        }
        for record in progress {
            input.send(Update::Progress(record));
        }
        let retracted = self.aggregator.take_retracted();
        if retracted != Default::default() {
            input.send(Update::Retracted(retracted));
        }
    }

    fn advance(&mut self, worker: &mut Worker, input: &mut UpdateInput, chunks: &mut ChunkInput) {
        self.epoch += 1;
        input.advance_to(self.epoch);
        chunks.advance_to(self.epoch);
        worker.step();
    }

    /// Waits until at most [`EPOCHS_IN_FLIGHT`] epochs are uncommitted.
    fn wait_for_commits(&self, worker: &mut Worker, probe: &ProbeHandle<u64>, job: &Job) {
        let Some(oldest) = self.epoch.checked_sub(EPOCHS_IN_FLIGHT) else {
            return;
        };
        while probe.less_equal(&oldest) && !job.stop.load(Ordering::SeqCst) {
            worker.step_or_park(Some(Duration::from_millis(100)));
        }
    }
}
