//! `logstats ship`: publishes the lines of log files to a NATS JetStream stream, exactly once.
//!
//! Each file (by device and inode, so a rotated file keeps its place) has a subject of its own,
//! `PREFIX.HOST.DEVICE_INODE`. Every message carries where its lines are in the file
//! (`Logstats-Start`/`Logstats-End`, decompressed bytes for `.gz`), a fingerprint of the file's
//! first bytes, and a generation that grows when the file is truncated or replaced. The last
//! message of a file's subject is therefore where shipping resumes, after a rerun or a kill -9,
//! with no state kept anywhere else; `Nats-Msg-Id` makes a retried publish a no-op, and a retry
//! first asks the stream whether the message got there.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_nats::HeaderMap;

use crate::errors::shown_path;
use crate::nats::{Connection, StreamUrl};
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
}

impl ShipReport {
    pub fn summary_line(&self, url: &StreamUrl) -> String {
        format!(
            "shipped {} lines ({} bytes) in {} messages from {} file(s) to {}",
            self.lines,
            self.bytes,
            self.messages,
            self.files,
            url.key()
        )
    }
}

/// Where a file's shipping stands: what its subject's last message says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Shipped {
    /// Bytes of the file (decompressed, for `.gz`) already in the stream.
    end: u64,
    head: Head,
    generation: u64,
}

impl Shipped {
    fn from_headers(headers: &HeaderMap) -> Option<Shipped> {
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
        })
    }
}

/// Ships until every file is in the stream (or, following, until SIGINT/SIGTERM).
pub fn ship(config: &ShipConfig) -> anyhow::Result<ShipReport> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(signal, 128 + signal, Arc::clone(&stop))?;
        signal_hook::flag::register(signal, Arc::clone(&stop))?;
    }
    anyhow::ensure!(
        !config.inputs.iter().any(|i| i == "-"),
        "ship reads files, not standard input: its position could not be found again"
    );
    let pattern = config
        .glob
        .as_deref()
        .map(glob::Pattern::new)
        .transpose()
        .map_err(|e| anyhow::anyhow!("invalid --glob: {e}"))?;
    let mut shipper = Shipper {
        connection: connect_patiently(&config.url, &stop)?,
        config,
        stop: &stop,
        files: HashMap::new(),
        gzip_done: HashMap::new(),
        report: ShipReport::default(),
    };
    shipper.connection.create_stream()?;
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
        shipper.report.problems = found.problems;
        shipper.report.waiting.clear();
        for source in &found.sources {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            if let Source::File {
                path, gzip, file, ..
            } = source
            {
                shipper.ship_file(path, *gzip, *file)?;
            }
        }
        shipper.report.files = shipper.files.len();
        if !config.follow || stop.load(Ordering::SeqCst) {
            return Ok(shipper.report);
        }
        while Instant::now() < tick && !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Connects, retrying with backoff (and saying so once) while the server does not answer.
fn connect_patiently(url: &StreamUrl, stop: &AtomicBool) -> anyhow::Result<Connection> {
    patiently(url, stop, || Connection::open(url))
}

/// Runs `attempt` until it succeeds, waiting longer each time (up to [`MAX_BACKOFF`]); says once
/// that the server is not answering, and once that it answers again. Gives up only when stopped.
fn patiently<T>(
    url: &StreamUrl,
    stop: &AtomicBool,
    mut attempt: impl FnMut() -> anyhow::Result<T>,
) -> anyhow::Result<T> {
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
            Err(error) if stop.load(Ordering::SeqCst) => return Err(error),
            Err(error) => {
                if !said {
                    eprintln!(
                        "warning: {error:#}; retrying until it answers (nothing is lost meanwhile)"
                    );
                    said = true;
                }
                std::thread::sleep(wait);
                wait = (wait * 2).min(MAX_BACKOFF);
            }
        }
    }
}

struct Shipper<'a> {
    connection: Connection,
    config: &'a ShipConfig,
    stop: &'a AtomicBool,
    /// By file: where its shipping stands (read from the stream when first seen).
    files: HashMap<FileId, Shipped>,
    /// Compressed files shipped to their end, with their size then: not decompressed again.
    gzip_done: HashMap<FileId, u64>,
    report: ShipReport,
}

impl Shipper<'_> {
    /// Refuses a stream that would not take this shipper's subjects (its publishes would go
    /// nowhere).
    fn check_subjects(&self) -> anyhow::Result<()> {
        let sample = self.subject(FileId {
            device: 1,
            inode: 1,
        });
        let subjects = self.connection.subjects()?;
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

    fn subject(&self, file: FileId) -> String {
        self.config.url.subject_for(&format!(
            "{}.{}_{}",
            self.config.host, file.device, file.inode
        ))
    }

    /// Ships what `path` has that the stream does not.
    fn ship_file(&mut self, path: &Path, gzip: bool, id: FileId) -> anyhow::Result<()> {
        let subject = self.subject(id);
        let shipped = match self.files.get(&id) {
            Some(shipped) => *shipped,
            None => {
                let headers = patiently(&self.config.url, self.stop, || {
                    self.connection.last_headers(&subject)
                })?;
                headers
                    .as_ref()
                    .and_then(Shipped::from_headers)
                    .unwrap_or_default()
            }
        };
        let mut file = match File::open(path) {
            Ok(file) => file,
            Err(error) => {
                let cause = source::plain_io_error(&error);
                self.report
                    .problems
                    .push(format!("cannot read {}: {cause}", shown_path(path)));
                return Ok(());
            }
        };
        let size = file.metadata()?.len();
        if gzip && self.gzip_done.get(&id) == Some(&size) {
            return Ok(());
        }
        let mut position = shipped;
        // The same file as shipped (same first bytes, not shorter): go on; else start again.
        let same =
            Head::of(&mut file, shipped.head.len)? == shipped.head && (gzip || size >= shipped.end);
        if !same && shipped != Shipped::default() {
            position = Shipped {
                end: 0,
                head: Head::default(),
                generation: shipped.generation + 1,
            };
        }
        if !gzip && size == position.end {
            self.files.insert(id, position);
            return Ok(());
        }
        position.head = Head::of(&mut file, size)?;
        file.seek(SeekFrom::Start(0))?;
        let lines: Box<dyn BufRead> = if gzip {
            Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(file)))
        } else {
            Box::new(BufReader::new(file))
        };
        let result = self.ship_lines(lines, &subject, path, gzip, &mut position);
        self.files.insert(id, position);
        if gzip && result.as_ref().is_ok_and(|&whole| whole) {
            self.gzip_done.insert(id, size);
        }
        result.map(drop)
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
        std::io::copy(&mut (&mut lines).take(position.end), &mut std::io::sink())?;
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
            offset += read as u64;
            count += 1;
            payload.extend_from_slice(&line[..read.min(LINE_CUT)]);
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
        let id = format!("{subject}:{}:{}", position.generation, position.end);
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
        patiently(&self.config.url, self.stop, || {
            // After a failed try, the message may be stored all the same (only its ack was lost).
            if let Some(last) = self
                .connection
                .last_headers(subject)?
                .as_ref()
                .and_then(Shipped::from_headers)
                && last == target
            {
                return Ok(());
            }
            self.connection
                .publish(subject, Some(&id), &headers, payload.to_vec())
                .map(drop)
        })?;
        *position = target;
        self.report.lines += lines;
        self.report.bytes += payload.len() as u64;
        self.report.messages += 1;
        Ok(())
    }
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
        let mut headers = HeaderMap::new();
        headers.insert("Logstats-End", "120");
        headers.insert("Logstats-Head", "77:20");
        headers.insert("Logstats-Generation", "2");
        assert_eq!(
            Shipped::from_headers(&headers),
            Some(Shipped {
                end: 120,
                head: Head { hash: 77, len: 20 },
                generation: 2
            })
        );
        headers.insert("Logstats-End", "x");
        assert_eq!(Shipped::from_headers(&headers), None);
    }
}
