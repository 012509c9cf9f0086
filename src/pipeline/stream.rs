//! Stream inputs (NATS JetStream): one worker (worker 0 of the cluster) reads the messages in
//! sequence order and hands them out as [`Chunk`]s, one per worker, so that every worker parses
//! and aggregates a share; the last sequence read is a progress row like a file's offset, committed
//! in the same transaction as the groups of its messages.
//!
//! A stream is anything behind [`LogStream`]: messages in sequence order, read on from a position.
//! NATS JetStream is the one kind today ([`StreamAddress::Nats`]); another (Kafka, a partition's
//! offsets as sequences) would be one more variant and one more implementation.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::aggregate::{Aggregator, FileProgress, Position};
use super::reader::MAX_LINE_BYTES;
use crate::nats::{Bounds, Message, StreamUrl};
use crate::store::{FileCheckpoint, FileId, StoredProgress};

/// A log stream, read in sequence order from a position (the last sequence read).
pub trait LogStream {
    /// The last sequence read.
    fn position(&self) -> u64;
    /// The next messages up to sequence `end`, about `max_bytes` of them; empty when there are
    /// none now (it never waits for new ones).
    fn read(&mut self, end: u64, max_bytes: usize) -> anyhow::Result<Vec<Message>>;
    /// The sequences the stream holds now.
    fn bounds(&self) -> anyhow::Result<Bounds>;
    /// Which stream of its name is read (its creation time), recorded with the position.
    fn instance(&self) -> u64;
    /// What the reader found worth telling since the last call.
    fn take_notes(&mut self) -> Vec<String>;
}

impl LogStream for crate::nats::Reader {
    fn position(&self) -> u64 {
        self.position()
    }

    fn read(&mut self, end: u64, max_bytes: usize) -> anyhow::Result<Vec<Message>> {
        self.read(end, max_bytes)
    }

    fn bounds(&self) -> anyhow::Result<Bounds> {
        self.connection().bounds()
    }

    fn instance(&self) -> u64 {
        self.instance()
    }

    fn take_notes(&mut self) -> Vec<String> {
        self.take_notes()
    }
}

/// Where a stream input is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamAddress {
    Nats(StreamUrl),
}

impl StreamAddress {
    /// The stream a command-line input names; `None` when it names a path.
    pub fn parse(input: &str) -> anyhow::Result<Option<StreamAddress>> {
        if StreamUrl::is_stream(input) {
            return Ok(Some(StreamAddress::Nats(StreamUrl::parse(input)?)));
        }
        Ok(None)
    }

    /// How it is named in output and in the progress table (never with credentials).
    pub fn key(&self) -> String {
        match self {
            StreamAddress::Nats(url) => url.key(),
        }
    }

    /// Whether every sequence after the first is one of its messages, so that a gap is messages
    /// dropped (not so when a subject filter picks some of the stream's messages).
    fn dense(&self) -> bool {
        match self {
            StreamAddress::Nats(url) => url.subject.is_none(),
        }
    }

    fn open(&self, position: u64, instance: u64) -> anyhow::Result<Box<dyn LogStream>> {
        match self {
            StreamAddress::Nats(url) => Ok(Box::new(crate::nats::Reader::open(
                url, position, instance,
            )?)),
        }
    }

    fn made_anew(&self, position: u64) -> String {
        match self {
            StreamAddress::Nats(url) => crate::nats::made_anew(url, position),
        }
    }
}

/// A share of a stream's messages for one worker to parse.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Chunk {
    /// Which worker parses it (modulo the number of workers).
    pub worker: usize,
    /// The stream's name in reports.
    pub source: String,
    /// (sequence, bytes) of each message.
    pub messages: Vec<(u64, Vec<u8>)>,
}

impl Chunk {
    /// Feeds every line of every message to `aggregator`; rejected lines are located by message
    /// sequence and line number.
    pub fn feed(&self, aggregator: &mut Aggregator) {
        for (sequence, payload) in &self.messages {
            aggregator.set_source(&format!("{} message {sequence}", self.source));
            feed_message(payload, aggregator);
        }
    }
}

/// Feeds the lines of one message: separated by newlines, the last one complete without one. A
/// message is not the start of a file: a byte-order mark in it is part of its line (`ship` leaves
/// out the one a file starts with, as the file reader does).
pub fn feed_message(payload: &[u8], aggregator: &mut Aggregator) {
    aggregator.add_bytes(payload.len() as u64);
    let mut line_number = 0;
    let mut start = 0;
    let ends = memchr::memchr_iter(b'\n', payload).chain(std::iter::once(payload.len()));
    for end in ends {
        let line = &payload[start..end];
        start = end + 1;
        line_number += 1;
        if end == payload.len() && line.is_empty() {
            break; // a trailing newline ends the last line, it does not start one
        }
        let position = Position::Line(line_number);
        if line.len() > MAX_LINE_BYTES {
            aggregator.reject_too_long(line, position);
        } else {
            aggregator.feed(line, position);
        }
    }
}

/// A stream this run reads: where it starts, and (batch mode) the last sequence it reads.
#[derive(Clone, Debug)]
pub struct PlannedStream {
    pub address: StreamAddress,
    /// What its progress row holds: the last sequence read by earlier runs (0 for none).
    pub expected: u64,
    /// Where reading starts: `expected`, or 0 when the stream was made anew since.
    pub start: u64,
    /// The creation time of the stream read.
    pub instance: u64,
    /// Batch mode: the stream's last sequence when the run started. Following: unbounded.
    pub end: u64,
    /// Messages up to this sequence that the stream no longer holds were noted already.
    pub noted_through: u64,
    /// About how many bytes there are to read (batch mode).
    pub bytes: u64,
    /// Following: it could not be reached when planned (and that was said).
    pub unreachable: bool,
}

impl PlannedStream {
    /// A stream to follow that could not be reached yet: read on from its progress row.
    fn unseen(
        address: StreamAddress,
        stored: &std::collections::BTreeMap<String, StoredProgress>,
    ) -> PlannedStream {
        let row = stored.get(&address.key());
        let expected = row.map_or(0, |p| p.offset);
        PlannedStream {
            address,
            expected,
            start: expected,
            instance: row.map_or(0, |p| p.head_hash),
            end: u64::MAX,
            noted_through: expected,
            bytes: 0,
            unreachable: true,
        }
    }

    /// Plans reading `address` on from its stored position; notes messages the stream dropped
    /// before they were read.
    pub fn plan(
        address: StreamAddress,
        stored: &std::collections::BTreeMap<String, StoredProgress>,
        follow: bool,
        notes: &mut Vec<String>,
    ) -> anyhow::Result<PlannedStream> {
        let row = stored.get(&address.key());
        let expected = row.map_or(0, |p| p.offset);
        let bounds = address.open(expected, 0)?.bounds()?;
        // Deleted and created again: its sequences started again.
        let recorded = row.map_or(0, |p| p.head_hash);
        let made_anew = (recorded != 0 && recorded != bounds.created) || expected > bounds.last;
        let start = if made_anew {
            notes.push(address.made_anew(expected));
            0
        } else {
            expected
        };
        notes.extend(dropped_note(&address, start, bounds));
        Ok(PlannedStream {
            end: if follow { u64::MAX } else { bounds.last },
            address,
            expected,
            start,
            instance: bounds.created,
            noted_through: start.max(bounds.first.saturating_sub(1)),
            bytes: bounds.bytes_after(start),
            unreachable: false,
        })
    }
}

/// Plans every stream input. One that cannot be read now is a problem of the plan, as a file
/// would be; following, it is read once it can be (said at once).
pub fn plan_streams(
    addresses: Vec<StreamAddress>,
    stored: &std::collections::BTreeMap<String, StoredProgress>,
    follow: bool,
    plan: &mut super::source::Plan,
) -> Vec<PlannedStream> {
    let mut streams = Vec::new();
    for address in addresses {
        match PlannedStream::plan(address.clone(), stored, follow, &mut plan.notes) {
            Ok(planned) => streams.push(planned),
            Err(error) if follow => {
                tracing::warn!("{error:#}; trying it again meanwhile");
                streams.push(PlannedStream::unseen(address, stored));
            }
            Err(error) => plan.problems.push(crate::errors::one_line(&error)),
        }
    }
    streams
}

/// What to say of the messages after `position` the stream no longer holds.
fn dropped_note(address: &StreamAddress, position: u64, bounds: Bounds) -> Option<String> {
    let dropped = bounds.dropped_after(position);
    (dropped > 0).then(|| {
        let whose = if address.dense() {
            "never ingested"
        } else {
            "up to that many of them of its subject"
        };
        format!(
            "{}: {dropped} messages (sequences {}-{}) were removed from the stream (its retention) \
             before they were read: {whose}",
            address.key(),
            position + 1,
            bounds.first - 1
        )
    })
}

/// Worker 0's reading of every stream input.
pub(super) struct StreamFeed {
    streams: Vec<FedStream>,
}

struct FedStream {
    planned: PlannedStream,
    /// Its reader, once it could be opened.
    reader: Option<Box<dyn LogStream>>,
    /// Where its progress row stands once the epochs sent so far commit.
    committed: u64,
    /// While it cannot be read (following): when to try again, and the wait after that.
    retry: Option<(Instant, Duration)>,
    /// It failed in a batch run: read no more.
    given_up: bool,
}

/// The first wait before a stream that failed is tried again, and the longest.
const FIRST_RETRY: Duration = Duration::from_secs(1);
const LAST_RETRY: Duration = Duration::from_secs(30);

/// What one read of the streams gave.
#[derive(Default)]
pub(super) struct StreamRead {
    pub chunks: Vec<Chunk>,
    pub progress: Vec<FileProgress>,
    /// Messages the streams dropped before they were read, streams made anew.
    pub notes: Vec<String>,
    /// Batch: streams that failed (read no more this run).
    pub problems: Vec<String>,
    /// Following: streams that failed, or answer again (each said once).
    pub warnings: Vec<String>,
}

impl StreamFeed {
    /// Opens every stream; following, one that cannot be reached yet is opened by a later read.
    pub fn open(streams: &[PlannedStream]) -> anyhow::Result<StreamFeed> {
        let streams = streams
            .iter()
            .map(|planned| {
                let reader = match planned.address.open(planned.start, planned.instance) {
                    Ok(reader) => Some(reader),
                    Err(_) if planned.end == u64::MAX => None,
                    Err(error) => return Err(error),
                };
                // One that could not be reached when planned was said to be down already.
                let retry = planned
                    .unreachable
                    .then(|| (Instant::now() + FIRST_RETRY, FIRST_RETRY));
                Ok(FedStream {
                    planned: planned.clone(),
                    reader,
                    committed: planned.expected,
                    retry,
                    given_up: false,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(StreamFeed { streams })
    }

    /// Reads about `max_bytes` of the streams' next messages, split into one chunk per worker;
    /// no chunk when every stream is read to its end (or, following, to what it holds now). A
    /// stream that fails does not hold the others back: in a batch run it is a problem and is
    /// read no more; following, it is tried again after a while, longer each time.
    pub fn read(&mut self, max_bytes: usize, workers: usize) -> StreamRead {
        let mut read = StreamRead::default();
        let mut budget = max_bytes;
        for stream in &mut self.streams {
            let due = stream.retry.is_none_or(|(at, _)| Instant::now() >= at);
            if budget == 0 || stream.given_up || !due {
                continue;
            }
            let key = stream.planned.address.key();
            match stream.read_into(&mut read, budget, workers) {
                Ok(bytes) => {
                    budget = budget.saturating_sub(bytes);
                    if stream.retry.take().is_some() {
                        read.warnings.push(format!("{key} answers again"));
                    }
                }
                Err(error) if stream.planned.end == u64::MAX => {
                    let wait = match stream.retry {
                        None => {
                            read.warnings
                                .push(format!("{key}: {error:#}; trying it again meanwhile"));
                            FIRST_RETRY
                        }
                        Some((_, wait)) => (wait * 2).min(LAST_RETRY),
                    };
                    stream.retry = Some((Instant::now() + wait, wait));
                }
                Err(error) => {
                    read.problems
                        .push(format!("cannot read {key} completely: {error:#}"));
                    stream.given_up = true;
                }
            }
        }
        read
    }
}

impl FedStream {
    /// Reads this stream's next messages into `read`; returns their bytes. Nothing of the feed's
    /// state moves unless it succeeds.
    fn read_into(
        &mut self,
        read: &mut StreamRead,
        budget: usize,
        workers: usize,
    ) -> anyhow::Result<usize> {
        let planned = &mut self.planned;
        let reader = match &mut self.reader {
            Some(reader) => reader,
            None => self
                .reader
                .insert(planned.address.open(planned.start, planned.instance)?),
        };
        let messages = reader.read(planned.end, budget)?;
        let renewed = reader.take_notes();
        if !renewed.is_empty() {
            planned.noted_through = 0;
        }
        read.notes.extend(renewed);
        let Some(&(first, _)) = messages.first() else {
            return Ok(0);
        };
        // Without a subject filter, a gap in the sequences is messages the stream dropped.
        if first > planned.noted_through + 1
            && planned.address.dense()
            && let Ok(bounds) = reader.bounds()
        {
            read.notes.extend(dropped_note(
                &planned.address,
                planned.noted_through,
                bounds,
            ));
        }
        planned.noted_through = reader.position();
        read.progress.push(FileProgress {
            from: self.committed,
            checkpoint: FileCheckpoint {
                path: planned.address.key(),
                expected_offset: self.committed,
                offset: reader.position(),
                decoded: 0,
                expected_decoded: 0,
                tail: 0,
                head_hash: reader.instance(),
                head_len: 0,
                end_hash: 0,
                file: FileId::default(),
                other_names: Vec::new(),
                retire: None,
            },
        });
        self.committed = reader.position();
        let bytes = messages.iter().map(|(_, m)| m.len()).sum();
        read.chunks
            .extend(share(&planned.address.key(), messages, workers));
        Ok(bytes)
    }
}

/// Deals `messages` out to `workers` chunks of about equal bytes, in sequence order.
fn share(source: &str, messages: Vec<Message>, workers: usize) -> Vec<Chunk> {
    let total: usize = messages.iter().map(|(_, m)| m.len()).sum();
    let per_worker = total.div_ceil(workers.max(1)).max(1);
    let mut chunks: Vec<Chunk> = Vec::new();
    let mut size = 0;
    for message in messages {
        if chunks.is_empty() || (size >= per_worker && chunks.len() < workers) {
            chunks.push(Chunk {
                worker: chunks.len(),
                source: source.to_string(),
                messages: Vec::new(),
            });
            size = 0;
        }
        size += message.1.len();
        chunks.last_mut().expect("a chunk").messages.push(message);
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_fed(payload: &[u8]) -> (u64, Vec<Position>) {
        let mut aggregator = Aggregator::new(0, 100);
        feed_message(payload, &mut aggregator);
        let (_, tally, rejects) = aggregator.drain();
        (
            tally.lines,
            rejects.into_iter().map(|r| r.position).collect(),
        )
    }

    const GOOD: &str = "2024-09-15 20:51:37 cust_1 /x 200 0.488";

    #[test]
    fn a_message_holds_lines_the_last_one_complete_with_or_without_a_newline() {
        assert_eq!(lines_fed(GOOD.as_bytes()).0, 1);
        assert_eq!(lines_fed(format!("{GOOD}\n").as_bytes()).0, 1);
        assert_eq!(lines_fed(format!("{GOOD}\n{GOOD}").as_bytes()).0, 2);
        assert_eq!(lines_fed(format!("{GOOD}\r\n{GOOD}\n").as_bytes()).0, 2);
        // As inside a file, a byte-order mark opening a line is not taken for the file's own.
        let (lines, rejects) = lines_fed(format!("\u{feff}{GOOD}\n{GOOD}").as_bytes());
        assert_eq!((lines, rejects), (2, vec![Position::Line(1)]));
        let (lines, rejects) = lines_fed(format!("{GOOD}\nnot a line\n{GOOD}").as_bytes());
        assert_eq!((lines, rejects), (3, vec![Position::Line(2)]));
    }

    #[test]
    fn messages_are_shared_by_bytes_in_sequence_order() {
        let messages: Vec<_> = (1..=10).map(|s| (s, vec![b'x'; 10])).collect();
        let chunks = share("s", messages, 3);
        assert_eq!(chunks.len(), 3);
        let sequences: Vec<u64> = chunks
            .iter()
            .flat_map(|c| c.messages.iter().map(|m| m.0))
            .collect();
        assert_eq!(sequences, (1..=10).collect::<Vec<_>>());
        assert_eq!(
            chunks.iter().map(|c| c.worker).collect::<Vec<_>>(),
            [0, 1, 2]
        );
        assert_eq!(share("s", vec![(1, vec![1])], 4).len(), 1);
    }
}
