//! Stream inputs (NATS JetStream): one worker (worker 0 of the cluster) reads the messages in
//! sequence order and hands them out as [`Chunk`]s, one per worker, so that every worker parses
//! and aggregates a share; the last sequence read is a progress row like a file's offset, committed
//! in the same transaction as the groups of its messages.
//!
//! A stream is anything behind [`LogStream`]: messages in sequence order, read on from a position.
//! NATS JetStream is the one kind today ([`StreamAddress::Nats`]); another (Kafka, a partition's
//! offsets as sequences) would be one more variant and one more implementation.
//!
//! Messages a stream lost before they were read (its limits dropped them, at its head, per subject
//! in between, or they were deleted) are noted with their sequences ([`holes`]): what the stream
//! says it no longer holds when the run is planned, and, without a subject filter, the gaps in
//! what is read (the stream's list may leave some out, or more may go while the run reads). A
//! batch run says them once, when it is done with the stream; following, as they are found.

mod holes;

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::aggregate::{Aggregator, FileProgress, Position};
use super::reader::MAX_LINE_BYTES;
use crate::nats::{Bounds, Message, StreamUrl};
use crate::store::{FileCheckpoint, FileId, StoredProgress};
use holes::Holes;

/// A log stream, read in sequence order from a position (the last sequence read).
pub trait LogStream {
    /// The last sequence read.
    fn position(&self) -> u64;
    /// The next messages up to sequence `end`, about `max_bytes` of them; empty when there are
    /// none now (it never waits for new ones).
    fn read(&mut self, end: u64, max_bytes: usize) -> anyhow::Result<Vec<Message>>;
    /// The sequences the stream holds now, and those between its first and last it no longer
    /// holds (in any order).
    fn deleted(&self) -> anyhow::Result<(Bounds, Vec<u64>)>;
    /// The sequence of the first message at or after `sequence` that reading would give; `None`
    /// when there is none now.
    fn first_from(&self, sequence: u64) -> anyhow::Result<Option<u64>>;
    /// Moves the position on to `position`, past sequences known to hold nothing to read.
    fn skip_to(&mut self, position: u64);
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

    fn deleted(&self) -> anyhow::Result<(Bounds, Vec<u64>)> {
        self.connection().deleted()
    }

    fn first_from(&self, sequence: u64) -> anyhow::Result<Option<u64>> {
        self.connection().first_from(sequence)
    }

    fn skip_to(&mut self, position: u64) {
        self.skip_to(position)
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

    /// Whether every sequence is one of its messages, so that a gap is messages lost (not so when
    /// a subject filter picks some of the stream's messages).
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
    /// Sequences after `start` the stream no longer held when planned (and after the sequence
    /// read, as reading goes on).
    pub lost: Holes,
    /// With a subject filter: how many more the stream no longer held than it listed (without
    /// one, reading finds them as gaps).
    pub unlisted: u64,
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
            lost: Holes::default(),
            unlisted: 0,
            bytes: 0,
            unreachable: true,
        }
    }

    /// Plans reading `address` on from its stored position, with the messages after it that the
    /// stream no longer holds (dropped at its head or in between, or deleted).
    pub fn plan(
        address: StreamAddress,
        stored: &std::collections::BTreeMap<String, StoredProgress>,
        follow: bool,
        notes: &mut Vec<String>,
    ) -> anyhow::Result<PlannedStream> {
        let row = stored.get(&address.key());
        let expected = row.map_or(0, |p| p.offset);
        let (bounds, deleted) = address.open(expected, 0)?.deleted()?;
        // Deleted and created again: its sequences started again.
        let recorded = row.map_or(0, |p| p.head_hash);
        let made_anew = (recorded != 0 && recorded != bounds.created) || expected > bounds.last;
        let start = if made_anew {
            notes.push(address.made_anew(expected));
            0
        } else {
            expected
        };
        let lost = Holes::of_stream(start, bounds.first, bounds.last, &deleted);
        let unlisted = unlisted(&address, bounds, &deleted);
        Ok(PlannedStream {
            end: if follow { u64::MAX } else { bounds.last },
            address,
            expected,
            start,
            instance: bounds.created,
            lost,
            unlisted,
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

/// How many of the sequences between a stream's first and last that it no longer holds are not in
/// its list `deleted` (NATS 2.9 leaves out a few); 0 without a subject filter, where reading finds
/// them as gaps.
fn unlisted(address: &StreamAddress, bounds: Bounds, deleted: &[u64]) -> u64 {
    if address.dense() {
        return 0;
    }
    let listed = deleted
        .iter()
        .filter(|&&s| s >= bounds.first && s <= bounds.last);
    bounds.inner_holes().saturating_sub(listed.count() as u64)
}

/// What to say of messages a stream lost before they were read: `lost`, and `unlisted` more the
/// stream did not say the sequences of.
fn lost_note(address: &StreamAddress, lost: &Holes, unlisted: u64) -> Option<String> {
    let count = lost.count() + unlisted;
    (count > 0).then(|| {
        let whose = if address.dense() {
            "never ingested"
        } else {
            "up to that many of them of its subject"
        };
        let (messages, sequences, were, they) = match count {
            1 => ("message", "sequence", "was", "it"),
            _ => ("messages", "sequences", "were", "they"),
        };
        let which = match (lost.count(), unlisted) {
            (_, 0) => format!("{sequences} {lost}"),
            (0, _) => format!("{sequences} the stream does not list"),
            _ => format!("{sequences} {lost} and {unlisted} the stream does not list"),
        };
        format!(
            "{}: {count} {messages} ({which}) {were} removed from the stream (by its limits or \
             deleted) before {they} {were} read: {whose}",
            address.key(),
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
    /// What it no longer holds was asked (when planned, or once it could be read).
    surveyed: bool,
    /// Messages it lost that were not said yet: their sequences, and how many more the stream
    /// did not list.
    unsaid: Holes,
    unsaid_unlisted: u64,
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
    /// Messages the streams lost before they were read, streams made anew.
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
                    surveyed: !planned.unreachable,
                    unsaid: planned.lost.clone(),
                    unsaid_unlisted: planned.unlisted,
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
                    stream.say_lost(&mut read.notes);
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
    /// state moves unless it succeeds. Without a subject filter, a gap in the sequences delivered
    /// is messages lost (less those known when planned); once caught up, the position moves past
    /// what holds nothing more to read. What was lost is said when a batch run is done with the
    /// stream, and at each read when following.
    fn read_into(
        &mut self,
        read: &mut StreamRead,
        budget: usize,
        workers: usize,
    ) -> anyhow::Result<usize> {
        let reader = match &mut self.reader {
            Some(reader) => reader,
            None => self.reader.insert(
                self.planned
                    .address
                    .open(self.planned.start, self.planned.instance)?,
            ),
        };
        let planned = &mut self.planned;
        let mut before = reader.position();
        let messages = reader.read(planned.end, budget)?;
        let renewed = reader.take_notes();
        if !renewed.is_empty() {
            // Made anew: its sequences start again, and what it holds is to be asked again.
            read.notes.extend(lost_note(
                &planned.address,
                &std::mem::take(&mut self.unsaid),
                std::mem::take(&mut self.unsaid_unlisted),
            ));
            planned.lost = Holes::default();
            before = 0;
            self.surveyed = false;
        }
        read.notes.extend(renewed);
        let mut lost = Holes::default();
        if planned.address.dense() {
            let mut at = before;
            for &(sequence, _) in &messages {
                if sequence > at + 1 {
                    lost.add(&planned.lost.missing_from(at + 1, sequence - 1));
                }
                at = sequence;
            }
        }
        if !self.surveyed {
            // The first read of a stream that could not be reached when planned (or made anew):
            // what it no longer holds after where the reading started, less the gaps just seen.
            match reader.deleted() {
                Ok((bounds, deleted)) => {
                    let holes =
                        Holes::of_stream(before, bounds.first, bounds.last, &deleted).minus(&lost);
                    planned.lost.add(&holes);
                    lost.add(&holes);
                    self.unsaid_unlisted += unlisted(&planned.address, bounds, &deleted);
                    self.surveyed = true;
                }
                Err(error) => tracing::debug!("{error:#}"),
            }
        }
        let done = messages.is_empty();
        let settled = done && settle(reader.as_mut(), planned, &mut lost);
        planned.lost.forget_through(reader.position());
        self.unsaid.add(&lost);
        let position = reader.position();
        let instance = reader.instance();
        if done || planned.end == u64::MAX {
            self.say_lost(&mut read.notes);
        }
        if done && !settled {
            return Ok(0);
        }
        let planned = &self.planned;
        read.progress.push(FileProgress {
            from: self.committed,
            checkpoint: FileCheckpoint {
                path: planned.address.key(),
                expected_offset: self.committed,
                offset: position,
                decoded: 0,
                expected_decoded: 0,
                tail: 0,
                head_hash: instance,
                head_len: 0,
                end_hash: 0,
                file: FileId::default(),
                other_names: Vec::new(),
                retire: None,
            },
        });
        self.committed = position;
        let bytes = messages.iter().map(|(_, m)| m.len()).sum();
        read.chunks
            .extend(share(&planned.address.key(), messages, workers));
        Ok(bytes)
    }

    /// Says what the stream lost that was not said yet.
    fn say_lost(&mut self, notes: &mut Vec<String>) {
        let unsaid = std::mem::take(&mut self.unsaid);
        let unlisted = std::mem::take(&mut self.unsaid_unlisted);
        notes.extend(lost_note(&self.planned.address, &unsaid, unlisted));
    }
}

/// A reader that has caught up moves past the sequences that hold nothing more for it to read:
/// up to the planned end (batch) or the last one known lost (following), when no message it would
/// read comes before. Without a subject filter, those sequences not known lost yet (deleted while
/// the run went on) go into `lost`. True when the position moved.
fn settle(reader: &mut dyn LogStream, planned: &PlannedStream, lost: &mut Holes) -> bool {
    let position = reader.position();
    let bound = match planned.end {
        u64::MAX => planned.lost.last().unwrap_or(0),
        end => end,
    };
    if position >= bound {
        return false;
    }
    let target = match reader.first_from(position + 1) {
        Ok(Some(next)) => bound.min(next - 1),
        Ok(None) => bound,
        Err(error) => {
            tracing::debug!("{error:#}");
            return false;
        }
    };
    if target <= position {
        return false;
    }
    if planned.address.dense() {
        lost.add(&planned.lost.missing_from(position + 1, target));
    }
    reader.skip_to(target);
    true
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
        let mut aggregator = Aggregator::new(100);
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

    /// A stream in memory: the messages it holds, by sequence, shared with the test.
    type Held = std::rc::Rc<std::cell::RefCell<std::collections::BTreeMap<u64, Vec<u8>>>>;

    struct FakeStream {
        held: Held,
        last: u64,
        position: u64,
    }

    impl LogStream for FakeStream {
        fn position(&self) -> u64 {
            self.position
        }

        fn read(&mut self, end: u64, _max_bytes: usize) -> anyhow::Result<Vec<Message>> {
            if self.position >= end {
                return Ok(Vec::new());
            }
            let held = self.held.borrow();
            let messages: Vec<Message> = held
                .range(self.position + 1..=end)
                .map(|(&s, m)| (s, m.clone()))
                .collect();
            if let Some(&(last, _)) = messages.last() {
                self.position = last;
            }
            Ok(messages)
        }

        fn deleted(&self) -> anyhow::Result<(Bounds, Vec<u64>)> {
            let held = self.held.borrow();
            let first = held.keys().next().copied().unwrap_or(self.last + 1);
            let deleted = (first..=self.last).filter(|s| !held.contains_key(s));
            let bounds = Bounds {
                first,
                last: self.last,
                created: 1,
                messages: held.len() as u64,
                bytes: 0,
            };
            Ok((bounds, deleted.collect()))
        }

        fn first_from(&self, sequence: u64) -> anyhow::Result<Option<u64>> {
            Ok(self.held.borrow().range(sequence..).next().map(|(&s, _)| s))
        }

        fn skip_to(&mut self, position: u64) {
            self.position = self.position.max(position);
        }

        fn instance(&self) -> u64 {
            1
        }

        fn take_notes(&mut self) -> Vec<String> {
            Vec::new()
        }
    }

    /// A feed of a stream holding messages 1..=`last` but `deleted`, planned with `end` as its
    /// end; the test deletes more, or adds, through the returned handle.
    fn fed(last: u64, deleted: &[u64], end: u64) -> (FedStream, Held) {
        let held: Held = Default::default();
        held.borrow_mut().extend(
            (1..=last)
                .filter(|s| !deleted.contains(s))
                .map(|s| (s, GOOD.as_bytes().to_vec())),
        );
        let reader = FakeStream {
            held: held.clone(),
            last,
            position: 0,
        };
        let (bounds, gone) = reader.deleted().unwrap();
        let lost = Holes::of_stream(0, bounds.first, bounds.last, &gone);
        let planned = PlannedStream {
            address: StreamAddress::Nats(StreamUrl::parse("nats://nats/S").unwrap()),
            expected: 0,
            start: 0,
            instance: 1,
            end,
            lost: lost.clone(),
            unlisted: 0,
            bytes: 0,
            unreachable: false,
        };
        let stream = FedStream {
            planned,
            reader: Some(Box::new(reader)),
            committed: 0,
            retry: None,
            surveyed: true,
            unsaid: lost,
            unsaid_unlisted: 0,
            given_up: false,
        };
        (stream, held)
    }

    /// Reads the stream once: what was said of lost messages (`N messages (sequences ...)`), and
    /// the position a commit would record.
    fn read_once(stream: &mut FedStream) -> (Vec<String>, Option<u64>) {
        let mut read = StreamRead::default();
        stream.read_into(&mut read, usize::MAX, 2).unwrap();
        let offset = read.progress.last().map(|p| p.checkpoint.offset);
        let said = read.notes.iter().map(|n| {
            n[n.find(": ").expect("a key") + 2..n.find(')').expect("sequences") + 1].to_string()
        });
        (said.collect(), offset)
    }

    #[test]
    fn following_says_what_was_lost_as_it_is_found_each_message_once() {
        // Planned with 3 gone; then 6 and 7 go, and 12, after the last message read.
        let (mut stream, held) = fed(12, &[3], u64::MAX);
        for gone in [6, 7, 12] {
            held.borrow_mut().remove(&gone);
        }
        let (said, offset) = read_once(&mut stream);
        assert_eq!(said, ["3 messages (sequences 3, 6-7)"]);
        assert_eq!(offset, Some(11));
        // 12 is not known to be gone until a later message comes.
        assert_eq!(read_once(&mut stream), (vec![], None));
        held.borrow_mut().insert(13, GOOD.as_bytes().to_vec());
        let (said, offset) = read_once(&mut stream);
        assert_eq!(said, ["1 message (sequence 12)"]);
        assert_eq!(offset, Some(13));
    }

    #[test]
    fn a_batch_run_says_once_what_was_lost_up_to_its_end_and_moves_past_it() {
        // Planned with 4 and 9 gone (ending at 10); 6 and 10 go while it runs.
        let (mut stream, held) = fed(10, &[4, 9], 10);
        for gone in [6, 10] {
            held.borrow_mut().remove(&gone);
        }
        assert_eq!(read_once(&mut stream), (vec![], Some(8)));
        // Caught up: nothing is left up to the end, so the position is the end.
        let (said, offset) = read_once(&mut stream);
        assert_eq!(said, ["4 messages (sequences 4, 6, 9-10)"]);
        assert_eq!(offset, Some(10));
        assert_eq!(read_once(&mut stream), (vec![], None));
    }

    #[test]
    fn following_moves_past_the_holes_known_when_planned_once_caught_up() {
        let (mut stream, _held) = fed(10, &[2, 9, 10], u64::MAX);
        let (said, offset) = read_once(&mut stream);
        assert_eq!(said, ["3 messages (sequences 2, 9-10)"]);
        assert_eq!(offset, Some(8));
        // Past the holes after the last message: a later run starts after them, and says nothing.
        assert_eq!(read_once(&mut stream), (vec![], Some(10)));
        assert_eq!(read_once(&mut stream), (vec![], None));
    }

    #[test]
    fn a_note_says_how_many_messages_were_lost_and_which() {
        let dense = StreamAddress::Nats(StreamUrl::parse("nats://n/S").unwrap());
        let filtered = StreamAddress::Nats(StreamUrl::parse("nats://n/S?subject=S.a").unwrap());
        assert_eq!(lost_note(&dense, &Holes::default(), 0), None);
        assert_eq!(
            lost_note(&dense, &Holes::span(7, 7), 0).unwrap(),
            "nats://n:4222/S: 1 message (sequence 7) was removed from the stream (by its limits \
             or deleted) before it was read: never ingested"
        );
        assert_eq!(
            lost_note(&filtered, &Holes::span(3, 4), 2).unwrap(),
            "nats://n:4222/S?subject=S.a: 4 messages (sequences 3-4 and 2 the stream does not \
             list) were removed from the stream (by its limits or deleted) before they were read: \
             up to that many of them of its subject"
        );
        let none_listed = lost_note(&filtered, &Holes::default(), 2).unwrap();
        assert!(
            none_listed.contains(": 2 messages (sequences the stream does not list) were"),
            "{none_listed}"
        );
        // Without a filter, sequences the stream does not list are found as gaps when reading.
        let bounds = Bounds {
            first: 10,
            last: 20,
            created: 1,
            messages: 7,
            bytes: 0,
        };
        assert_eq!(unlisted(&filtered, bounds, &[12, 3]), 3);
        assert_eq!(unlisted(&filtered, bounds, &[12, 13, 14, 15]), 0);
        assert_eq!(unlisted(&dense, bounds, &[12]), 0);
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
