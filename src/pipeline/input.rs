//! The run's inputs as a worker reads them: each kind is one [`EpochSource`], read an epoch's share
//! at a time into an [`EpochOutput`]: the planned units of files and standard input
//! ([`PlannedUnits`]), streams ([`StreamFeed`]) and followed files ([`Follower`]). The feeder
//! decides which is read when.

use std::sync::atomic::Ordering;

use super::aggregate::{Aggregator, FileProgress};
use super::follow::Follower;
use super::job::{ChunkInput, Job, Update, UpdateInput};
use super::reader::read_piece;
use super::source::PieceEnd;
use super::stream::{StreamFeed, StreamRead};

/// One kind of input, read an epoch at a time.
pub(super) trait EpochSource {
    /// Reads this worker's share of the next epoch into `out`. True when there may be more to
    /// read at once (the next epoch need not wait for a flush interval); false when there is
    /// nothing more now, which for the planned units and a batch run's streams means ever.
    fn read_epoch(&mut self, out: &mut EpochOutput<'_>) -> anyhow::Result<bool>;
}

/// Where a source puts what it read in an epoch: updates for the committer, stream messages to be
/// parsed, and the worker's aggregator for the lines it reads itself.
pub(super) struct EpochOutput<'a> {
    pub updates: &'a mut UpdateInput,
    pub chunks: &'a mut ChunkInput,
    pub aggregator: &'a mut Aggregator,
    pub job: &'a Job,
    /// Workers in the whole cluster.
    pub peers: usize,
}

impl EpochOutput<'_> {
    /// Sends what the aggregator counted since it was last drained, and then `progress`: the
    /// offsets those lines reached.
    pub fn send_counted(&mut self, progress: Vec<FileProgress>) {
        for update in Update::drained(self.aggregator) {
            self.updates.send(update);
        }
        for record in progress {
            self.updates.send(Update::Progress(record));
        }
        let retracted = self.aggregator.take_retracted();
        if retracted != Default::default() {
            self.updates.send(Update::Retracted(retracted));
        }
    }

    /// Counts `n` more bytes read (for the progress bar).
    pub fn bytes_read(&self, n: u64) {
        self.job.bytes_read.fetch_add(n, Ordering::Relaxed);
    }
}

/// This worker's units of the plan: in epoch `e`, worker `i` of `p` reads unit `e * p + i`.
pub(super) struct PlannedUnits {
    index: usize,
    epoch: usize,
}

impl PlannedUnits {
    pub fn new(index: usize) -> PlannedUnits {
        PlannedUnits { index, epoch: 0 }
    }
}

impl EpochSource for PlannedUnits {
    fn read_epoch(&mut self, out: &mut EpochOutput<'_>) -> anyhow::Result<bool> {
        let plan = &out.job.plan;
        if self.epoch >= plan.units.len().div_ceil(out.peers) {
            return Ok(false);
        }
        let unit = self.epoch * out.peers + self.index;
        self.epoch += 1;
        let Some(pieces) = plan.units.get(unit) else {
            return Ok(true); // the last epoch has fewer units than workers
        };
        let mut progress = Vec::new();
        for piece in pieces {
            let lines_before = out.aggregator.lines();
            let job = out.job;
            let end = read_piece(plan, piece, out.aggregator, &mut |n| {
                job.bytes_read.fetch_add(n, Ordering::Relaxed);
            })?;
            job.lines_read
                .fetch_add(out.aggregator.lines() - lines_before, Ordering::Relaxed);
            progress.extend(plan.progress_of(piece, &end));
            if let PieceEnd::Broken { problem, .. } | PieceEnd::Lost { problem } = end {
                out.updates.send(Update::Unreadable(problem));
            }
        }
        out.send_counted(progress);
        out.updates.send(Update::UnitDone(unit));
        Ok(true)
    }
}

impl EpochSource for StreamFeed {
    /// Reads an epoch's worth of the streams' messages (a unit per worker) and sends them out to
    /// be parsed, with the progress they make; true when it read any.
    fn read_epoch(&mut self, out: &mut EpochOutput<'_>) -> anyhow::Result<bool> {
        let epoch_bytes = out.job.config.unit_bytes as usize * out.peers;
        let StreamRead {
            chunks,
            progress,
            notes,
            problems,
            warnings,
        } = self.read(epoch_bytes, out.peers);
        let bytes: usize = chunks
            .iter()
            .flat_map(|c| &c.messages)
            .map(|m| m.1.len())
            .sum();
        out.bytes_read(bytes as u64);
        for warning in warnings {
            tracing::warn!("{warning}");
        }
        for note in notes {
            // Following, the summary comes at the end of the run: say it now too.
            if out.job.config.follow {
                tracing::warn!("{note}");
            }
            out.updates.send(Update::Note(note));
        }
        for problem in problems {
            out.updates.send(Update::Unreadable(problem));
        }
        for record in progress {
            out.updates.send(Update::Progress(record));
        }
        let any = !chunks.is_empty();
        for chunk in chunks {
            out.chunks.send(chunk);
        }
        Ok(any)
    }
}

impl EpochSource for Follower<'_> {
    /// Reads everything appended since the last epoch: nothing more is waiting after it.
    fn read_epoch(&mut self, out: &mut EpochOutput<'_>) -> anyhow::Result<bool> {
        let progress = self.poll(out.aggregator, &out.job.bytes_read)?;
        out.send_counted(progress);
        Ok(false)
    }
}
