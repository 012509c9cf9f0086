//! `logstats ship`: publishes the lines of log files to a NATS JetStream stream, exactly once.
//!
//! Each file has a subject of its own named by its content, `PREFIX.HOST.FIRSTLINE` (the
//! fingerprint of its first line, decompressed for `.gz`), so that a file keeps its place whatever
//! logrotate does to it: renamed, copied (`copytruncate`) or compressed, it is the same content
//! and goes on where it was. Every message carries where its lines are in the file
//! (`Logstats-Start`/`Logstats-End`, decompressed bytes for `.gz`), a fingerprint of the file's
//! first bytes, and a generation that grows when the file is rewritten behind the same first line. The last
//! message of a file's subject is therefore where shipping resumes, after a rerun or a kill -9,
//! with no state kept anywhere else; `Nats-Msg-Id` makes a retried publish a no-op, and a retry
//! first asks the stream whether the message got there.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::errors::shown_path;
use crate::nats::{Conflict, Connection, LastMessage, Permanent, StreamUrl};
use crate::pipeline::BOM;
use crate::pipeline::identity::{HEAD_BYTES, content_head, first_line_of, whole_content_head};
use crate::pipeline::source::{self, Head, Source};
use crate::store::FileId;

/// Bytes of lines per message (a line longer than that goes alone).
const MESSAGE_BYTES: usize = crate::nats::MESSAGE_BYTES;

/// Longest line shipped whole: longer ones are cut just past the longest line ingestion accepts,
/// so that the ingester still counts (and rejects) them.
const LINE_CUT: usize = crate::pipeline::MAX_LINE_BYTES + 1;

/// Longest wait between two tries of an unreachable server.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What `ship` is asked to do.
#[derive(Clone, Debug)]
pub struct ShipConfig {
    pub inputs: Vec<String>,
    pub url: StreamUrl,
    /// Tells this machine's lines apart (a subject token).
    pub host: String,
    pub follow: bool,
    pub interval: Duration,
    pub glob: Option<String>,
    /// How long a server that does not answer is waited for before giving up; `None`: for ever
    /// (following).
    pub give_up_after: Option<Duration>,
}

/// The stream's server did not answer within `--give-up-after`.
#[derive(Debug, thiserror::Error)]
#[error("{server} did not answer for {seconds} s ({cause}); gave up (--give-up-after)")]
pub struct GaveUp {
    server: String,
    seconds: f64,
    cause: String,
}

/// What a run shipped.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ShipReport {
    pub files: usize,
    pub lines: u64,
    pub bytes: u64,
    pub messages: u64,
    /// Files that could not be read, and why.
    pub problems: Vec<String>,
    /// Files whose last line has no newline yet: it is shipped once complete.
    pub waiting: Vec<String>,
    /// Why the run stopped before it was done: the server did not answer in time.
    pub gave_up: Option<String>,
}

impl ShipReport {
    pub fn summary_line(&self, url: &StreamUrl) -> String {
        let mut line = format!(
            "shipped {} lines ({} bytes) in {} messages from {} file(s) to {}",
            self.lines,
            self.bytes,
            self.messages,
            self.files,
            url.key()
        );
        if self.gave_up.is_some() {
            line.push_str(
                " before giving up: run it again to ship the rest (nothing is shipped twice)",
            );
        } else if !self.problems.is_empty() {
            line.push_str(&format!(
                "; {} input(s) could not be read completely (listed above)",
                self.problems.len()
            ));
        }
        line
    }

    /// The exit status this run deserves: 1 when it gave up on the server, 2 when some input could
    /// not be read completely (as `ingest`), 0 when it shipped everything there was.
    pub fn exit_code(&self) -> u8 {
        match (&self.gave_up, self.problems.is_empty()) {
            (Some(_), _) => 1,
            (None, false) => 2,
            (None, true) => 0,
        }
    }
}

/// Where a file's shipping stands: what its subject's last message says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Shipped {
    /// Bytes of the file (decompressed, for `.gz`) already in the stream.
    end: u64,
    head: Head,
    generation: u64,
    /// The stream sequence of the subject's last message (0 for none): the next publish expects
    /// it, so that two shippers of one file cannot both write.
    sequence: u64,
}

impl Shipped {
    fn from_message(message: &LastMessage) -> Option<Shipped> {
        let headers = &message.headers;
        let get = |name: &str| headers.get(name).map(|v| v.as_str().to_string());
        let (hash, len) = get("Logstats-Head")?
            .split_once(':')
            .map(|(h, l)| (h.parse().ok(), l.parse().ok()))?;
        Some(Shipped {
            end: get("Logstats-End")?.parse().ok()?,
            head: Head {
                hash: hash?,
                len: len?,
            },
            generation: get("Logstats-Generation")?.parse().ok()?,
            sequence: message.sequence,
        })
    }

    /// Whether the two say the same bytes of the same file are shipped (whatever the sequence).
    fn same_place(&self, other: &Shipped) -> bool {
        (self.end, self.head, self.generation) == (other.end, other.head, other.generation)
    }
}

/// A file being shipped.
struct Tracked {
    /// Open while following, so that a file renamed or removed is still drained.
    file: File,
    /// Where its lines go (named by its first line).
    subject: String,
    path: PathBuf,
    gzip: bool,
    position: Shipped,
    /// Compressed files shipped to their end, with their size then: not decompressed again.
    gzip_done: Option<u64>,
}

/// Ships until every file is in the stream (or, following, until SIGINT/SIGTERM). A server that
/// does not answer within [`ShipConfig::give_up_after`] ends the run with what it shipped so far
/// and [`ShipReport::gave_up`].
pub fn ship(config: &ShipConfig) -> anyhow::Result<ShipReport> {
    let mut report = ShipReport::default();
    match ship_into(config, &mut report) {
        Err(error) if error.is::<GaveUp>() => {
            report.gave_up = Some(crate::errors::one_line(&error));
            Ok(report)
        }
        Err(error) => Err(error),
        Ok(()) => Ok(report),
    }
}

fn ship_into(config: &ShipConfig, report: &mut ShipReport) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(signal, 128 + signal, Arc::clone(&stop))?;
        signal_hook::flag::register(signal, Arc::clone(&stop))?;
    }
    anyhow::ensure!(
        !config.inputs.iter().any(|i| i == "-"),
        "ship reads files, not standard input: its position could not be found again"
    );
    let pattern = source::name_pattern(config.glob.as_deref())?;
    let mut shipper = Shipper {
        connection: patiently(config, &stop, || Connection::open(&config.url))?,
        config,
        stop: &stop,
        files: HashMap::new(),
        report,
    };
    patiently(config, &stop, || shipper.connection.create_stream())?;
    shipper.check_subjects()?;
    loop {
        let tick = Instant::now() + config.interval;
        let found = source::discover(&config.inputs, pattern.as_ref())?;
        if found.sources.is_empty()
            && !config.follow
            && let Some(problem) = found.problems.first()
        {
            anyhow::bail!("{problem}");
        }
        if let Some(note) = found.not_text_note() {
            eprintln!("note: {note}");
        }
        shipper.report.problems = found.problems;
        shipper.report.waiting.clear();
        let mut seen = HashSet::new();
        for source in &found.sources {
            if let Source::File {
                path, gzip, file, ..
            } = source
                && !stop.load(Ordering::SeqCst)
            {
                seen.insert(*file);
                shipper.ship_found(path, *gzip, *file)?;
            }
        }
        // Files no longer found under any input name (renamed or moved away, removed) are
        // drained from their open handles, then let go once they stop growing.
        let gone: Vec<FileId> = shipper
            .files
            .keys()
            .filter(|id| !seen.contains(id))
            .copied()
            .collect();
        for id in gone {
            if stop.load(Ordering::SeqCst) || !shipper.ship_tracked(id)? {
                shipper.files.remove(&id);
            }
        }
        shipper.report.files = shipper.report.files.max(seen.len());
        if !config.follow || stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        while Instant::now() < tick && !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Runs `attempt` until it succeeds, waiting longer each time (up to [`MAX_BACKOFF`]); says once
/// that the server is not answering, and once that it answers again. Gives up when stopped, at
/// once on an error that trying again cannot cure ([`Permanent`], [`Conflict`]), and with
/// [`GaveUp`] when the server has not answered for [`ShipConfig::give_up_after`].
fn patiently<T>(
    config: &ShipConfig,
    stop: &AtomicBool,
    mut attempt: impl FnMut() -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let url = &config.url;
    let first_try = Instant::now();
    let mut wait = Duration::from_millis(100);
    let mut said = false;
    loop {
        match attempt() {
            Ok(value) => {
                if said {
                    eprintln!("{} answers again", url.key());
                }
                return Ok(value);
            }
            Err(error)
                if stop.load(Ordering::SeqCst)
                    || error.is::<Permanent>()
                    || error.is::<Conflict>() =>
            {
                return Err(error);
            }
            Err(error) => {
                let waited = first_try.elapsed();
                if let Some(limit) = config.give_up_after
                    && waited >= limit
                {
                    return Err(GaveUp {
                        server: url.key(),
                        seconds: (waited.as_secs_f64() * 10.0).round() / 10.0,
                        cause: crate::errors::one_line(&error),
                    }
                    .into());
                }
                if !said {
                    let how_long = match config.give_up_after {
                        Some(limit) => format!("for up to {} s", limit.as_secs_f64()),
                        None => "until it answers".to_string(),
                    };
                    eprintln!(
                        "warning: {error:#}; retrying {how_long} (nothing is lost meanwhile)"
                    );
                    said = true;
                }
                if let Some(limit) = config.give_up_after {
                    wait = wait.min(limit.saturating_sub(waited));
                }
                let until = Instant::now() + wait;
                while Instant::now() < until && !stop.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                wait = (wait * 2).min(MAX_BACKOFF);
            }
        }
    }
}

struct Shipper<'a> {
    connection: Connection,
    config: &'a ShipConfig,
    stop: &'a AtomicBool,
    /// The files being shipped, by identity.
    files: HashMap<FileId, Tracked>,
    report: &'a mut ShipReport,
}

impl Shipper<'_> {
    /// Refuses a stream that would not take this shipper's subjects (its publishes would go
    /// nowhere).
    fn check_subjects(&self) -> anyhow::Result<()> {
        let sample = self.subject(1);
        let subjects = patiently(self.config, self.stop, || self.connection.subjects())?;
        anyhow::ensure!(
            subjects.iter().any(|s| subject_matches(s, &sample)),
            "{} takes the subjects {} but ship publishes to {}: add that subject to the stream, \
             or name a prefix it takes with ?subject=PREFIX",
            self.config.url.key(),
            subjects.join(", "),
            self.subject_pattern()
        );
        Ok(())
    }

    fn subject_pattern(&self) -> String {
        self.config
            .url
            .subject_for(&format!("{}.*", self.config.host))
    }

    /// The subject of the content whose first line has the fingerprint `first_line`.
    fn subject(&self, first_line: u64) -> String {
        self.config
            .url
            .subject_for(&format!("{}.{first_line:016x}", self.config.host))
    }

    /// The subject earlier versions shipped a file to (by device and inode).
    fn subject_before(&self, file: FileId) -> String {
        self.config.url.subject_for(&format!(
            "{}.{}_{}",
            self.config.host, file.device, file.inode
        ))
    }

    /// Where shipping of `file` stands: in the subject of its content, or, when that has nothing
    /// yet, in the subject an earlier version shipped it to (whose position then carries over).
    fn position_of(
        &self,
        file: &File,
        gzip: bool,
        id: FileId,
        subject: &str,
    ) -> anyhow::Result<Shipped> {
        let position = self.position_in_stream(subject)?;
        if position.sequence != 0 {
            return Ok(position);
        }
        let before = self.position_in_stream(&self.subject_before(id))?;
        let len = before.head.len;
        let same = before.end > 0
            && (content_head(file, gzip, len)? == before.head
                || Head::of(file, len)? == before.head);
        Ok(match same {
            true => Shipped {
                sequence: 0,
                ..before
            },
            false => position,
        })
    }

    /// Where the stream says `subject`'s shipping stands.
    fn position_in_stream(&self, subject: &str) -> anyhow::Result<Shipped> {
        let last = patiently(self.config, self.stop, || {
            self.connection.last_message(subject)
        })?;
        Ok(match last {
            Some(message) => Shipped::from_message(&message).unwrap_or(Shipped {
                sequence: message.sequence,
                ..Shipped::default()
            }),
            None => Shipped::default(),
        })
    }

    /// Ships what the file found at `path` has that the stream does not.
    fn ship_found(&mut self, path: &Path, gzip: bool, id: FileId) -> anyhow::Result<()> {
        if !self.files.contains_key(&id) {
            let file = match File::open(path) {
                Ok(file) if source::file_id(&file.metadata()?) == id => file,
                Ok(_) => return Ok(()), // replaced since it was found: the next look finds it
                Err(error) => {
                    let cause = source::plain_io_error(&error);
                    self.report
                        .problems
                        .push(format!("cannot read {}: {cause}", shown_path(path)));
                    return Ok(());
                }
            };
            let Some(first_line) = first_line_of(&file, gzip) else {
                self.report.waiting.push(shown_path(path));
                return Ok(()); // no complete first line yet: nothing tells what it is
            };
            let subject = self.subject(first_line);
            let position = self.position_of(&file, gzip, id, &subject)?;
            let tracked = Tracked {
                file,
                subject,
                path: path.to_path_buf(),
                gzip,
                position,
                gzip_done: None,
            };
            self.files.insert(id, tracked);
        }
        if let Some(tracked) = self.files.get_mut(&id) {
            tracked.path = path.to_path_buf();
        }
        self.ship_tracked(id)?;
        if !self.config.follow {
            self.files.remove(&id);
        }
        Ok(())
    }

    /// Ships what a tracked file has that the stream does not; true when it had something new.
    /// When another shipper wrote to its subject meanwhile, goes on from where that one got.
    fn ship_tracked(&mut self, id: FileId) -> anyhow::Result<bool> {
        loop {
            match self.ship_new_lines(id) {
                Err(error) if error.is::<Conflict>() => {
                    let Some(subject) = self.files.get(&id).map(|t| t.subject.clone()) else {
                        return Ok(false);
                    };
                    let position = self.position_in_stream(&subject)?;
                    if let Some(tracked) = self.files.get_mut(&id) {
                        tracked.position = position;
                    }
                }
                other => return other,
            }
        }
    }

    /// Moves a tracked file whose content no longer begins as shipped to the subject of its first
    /// line now; false while it has none (truncated, being refilled).
    fn follow_content(&mut self, id: FileId) -> anyhow::Result<bool> {
        let Some(tracked) = self.files.get(&id) else {
            return Ok(false);
        };
        let Some(first_line) = first_line_of(&tracked.file, tracked.gzip) else {
            self.report.waiting.push(shown_path(&tracked.path));
            return Ok(false);
        };
        let subject = self.subject(first_line);
        if subject != tracked.subject {
            let position = self.position_in_stream(&subject)?;
            let tracked = self.files.get_mut(&id).expect("tracked above");
            tracked.subject = subject;
            tracked.position = position;
        }
        Ok(true)
    }

    fn ship_new_lines(&mut self, id: FileId) -> anyhow::Result<bool> {
        let Some(tracked) = self.files.get_mut(&id) else {
            return Ok(false);
        };
        let shipped = tracked.position;
        // A compressed file that breaks off within its first bytes is still being written: what it
        // is can be told once it is whole.
        let limit = shipped.head.len.max(HEAD_BYTES);
        let Some(head) = whole_content_head(&tracked.file, tracked.gzip, limit)? else {
            let path = tracked.path.clone();
            self.report.problems.push(still_compressing(&path));
            return Ok(false);
        };
        let begins_as_shipped = head.len >= shipped.head.len
            && content_head(&tracked.file, tracked.gzip, shipped.head.len)? == shipped.head;
        if !begins_as_shipped && !self.follow_content(id)? {
            return Ok(false);
        }
        let Some(tracked) = self.files.get_mut(&id) else {
            return Ok(false);
        };
        let size = tracked.file.metadata()?.len();
        if tracked.gzip && tracked.gzip_done == Some(size) {
            return Ok(false);
        }
        let shipped = tracked.position;
        let mut position = shipped;
        let gzip = tracked.gzip;
        // The same content as shipped: go on; rewritten behind the same first line: start again.
        if content_head(&tracked.file, gzip, shipped.head.len)? != shipped.head && shipped.end > 0 {
            position = Shipped {
                end: 0,
                head: Head::default(),
                generation: shipped.generation + 1,
                sequence: shipped.sequence,
            };
        }
        // Not past what was shipped (a copy of fewer bytes): nothing new.
        if !gzip && size <= position.end {
            return Ok(false);
        }
        position.head = content_head(&tracked.file, gzip, size)?;
        let subject = tracked.subject.clone();
        let mut file = tracked.file.try_clone()?;
        file.seek(SeekFrom::Start(0))?;
        let path = tracked.path.clone();
        let lines: Box<dyn BufRead> = if gzip {
            Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(file)))
        } else {
            Box::new(BufReader::new(file))
        };
        let before = position.end;
        let result = self.ship_lines(lines, &subject, &path, gzip, &mut position);
        if let Some(tracked) = self.files.get_mut(&id) {
            tracked.position = position;
            if gzip && result.as_ref().is_ok_and(|&whole| whole) {
                tracked.gzip_done = Some(size);
            }
        }
        result.map(|_| position.end != before)
    }

    /// Publishes the lines after `position.end`, a message at a time, moving `position` on as the
    /// stream stores each; true when it reached the end of the file's lines.
    fn ship_lines(
        &mut self,
        mut lines: Box<dyn BufRead>,
        subject: &str,
        path: &Path,
        gzip: bool,
        position: &mut Shipped,
    ) -> anyhow::Result<bool> {
        if let Err(error) =
            std::io::copy(&mut (&mut lines).take(position.end), &mut std::io::sink())
        {
            // A compressed file that breaks off before what was shipped: still being written.
            anyhow::ensure!(gzip, error);
            self.report.problems.push(still_compressing(path));
            return Ok(false);
        }
        let mut offset = position.end;
        let mut payload = Vec::with_capacity(MESSAGE_BYTES);
        let mut count = 0;
        let mut line = Vec::new();
        let mut whole = true;
        loop {
            line.clear();
            let read = match lines.read_until(b'\n', &mut line) {
                Ok(read) => read,
                // A compressed file still being written, or damaged: what came before is kept.
                Err(error) if gzip => {
                    self.report.problems.push(format!(
                        "cannot read {} completely: {}",
                        shown_path(path),
                        source::plain_io_error(&error)
                    ));
                    whole = false;
                    break;
                }
                Err(error) => return Err(error.into()),
            };
            if read == 0 {
                break;
            }
            if !line.ends_with(b"\n") && !gzip {
                self.report.waiting.push(shown_path(path));
                break; // a partial last line: shipped once its newline comes
            }
            if !payload.is_empty() && payload.len() + read > MESSAGE_BYTES {
                self.publish(subject, path, position, offset, &payload, count)?;
                payload.clear();
                count = 0;
            }
            // A file's own byte-order mark is not part of its first line (as the reader has it).
            let skip = if offset == 0 && line.starts_with(BOM) {
                BOM.len()
            } else {
                0
            };
            offset += read as u64;
            count += 1;
            payload.extend_from_slice(&line[skip..read.min(LINE_CUT)]);
            if read > LINE_CUT {
                payload.push(b'\n');
            }
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
        }
        if !payload.is_empty() {
            self.publish(subject, path, position, offset, &payload, count)?;
        }
        Ok(whole && !self.stop.load(Ordering::SeqCst))
    }

    /// Publishes the lines of `payload` (file bytes `position.end..end`) and moves the position on.
    fn publish(
        &mut self,
        subject: &str,
        path: &Path,
        position: &mut Shipped,
        end: u64,
        payload: &[u8],
        lines: u64,
    ) -> anyhow::Result<()> {
        let id = format!("{subject}:{}:{}:{end}", position.generation, position.end);
        let headers = [
            ("Logstats-Path", shown_path(path)),
            ("Logstats-Start", position.end.to_string()),
            ("Logstats-End", end.to_string()),
            (
                "Logstats-Head",
                format!("{}:{}", position.head.hash, position.head.len),
            ),
            ("Logstats-Generation", position.generation.to_string()),
        ];
        let target = Shipped { end, ..*position };
        let mut tried = false;
        let (sequence, stored_before) = patiently(self.config, self.stop, || {
            // After a failed try, the message may be stored all the same (only its ack was lost).
            if std::mem::replace(&mut tried, true)
                && let Some(last) = self.connection.last_message(subject)?
                && Shipped::from_message(&last).is_some_and(|l| l.same_place(&target))
            {
                return Ok((last.sequence, false));
            }
            self.connection.publish(
                subject,
                Some(&id),
                Some(position.sequence),
                &headers,
                payload.to_vec(),
            )
        })?;
        *position = Shipped { sequence, ..target };
        if stored_before {
            return Ok(()); // another shipper of the file published the same message
        }
        self.report.lines += lines;
        self.report.bytes += payload.len() as u64;
        self.report.messages += 1;
        Ok(())
    }
}

/// What is said of a compressed file that breaks off before what tells it apart or what was
/// shipped of it.
fn still_compressing(path: &Path) -> String {
    format!(
        "cannot read {} completely yet: it breaks off early (being compressed?); shipped once whole",
        shown_path(path)
    )
}

/// Whether a stream's subject (with `*` and `>` wildcards) takes `subject`.
fn subject_matches(pattern: &str, subject: &str) -> bool {
    let mut tokens = subject.split('.');
    for wanted in pattern.split('.') {
        match (wanted, tokens.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (w, Some(t)) if w == t => {}
            _ => return false,
        }
    }
    tokens.next().is_none()
}

/// This machine's name as a subject token.
pub fn default_host() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|n| n.trim().to_string())
        .unwrap_or_default();
    subject_token(if name.is_empty() { "localhost" } else { &name })
}

/// `text` with the characters a subject token cannot hold replaced by `_`.
pub fn subject_token(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_subjects_match_with_nats_wildcards() {
        assert!(subject_matches("LOGS.>", "LOGS.web1.3_4"));
        assert!(subject_matches("LOGS.*.*", "LOGS.web1.3_4"));
        assert!(subject_matches(">", "LOGS.web1.3_4"));
        assert!(!subject_matches("LOGS.*", "LOGS.web1.3_4"));
        assert!(!subject_matches("OTHER.>", "LOGS.web1.3_4"));
        assert!(!subject_matches("LOGS.web1.3_4.x", "LOGS.web1.3_4"));
    }

    #[test]
    fn host_names_become_one_subject_token() {
        assert_eq!(subject_token("web-1.example.com"), "web-1_example_com");
        assert_eq!(subject_token("a b>*"), "a_b__");
    }

    #[test]
    fn a_position_is_read_back_from_a_messages_headers() {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Logstats-End", "120");
        headers.insert("Logstats-Head", "77:20");
        headers.insert("Logstats-Generation", "2");
        let message = |headers: &async_nats::HeaderMap| LastMessage {
            sequence: 9,
            headers: headers.clone(),
        };
        assert_eq!(
            Shipped::from_message(&message(&headers)),
            Some(Shipped {
                end: 120,
                head: Head { hash: 77, len: 20 },
                generation: 2,
                sequence: 9,
            })
        );
        headers.insert("Logstats-End", "x");
        assert_eq!(Shipped::from_message(&message(&headers)), None);
    }
}
