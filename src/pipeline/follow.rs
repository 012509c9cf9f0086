//! Follow mode: after the backlog, one worker (worker 0) tails every followed file, once per
//! flush interval; live appends are small, and one reader keeps rotations simple to get right.
//! Appended complete lines are read; a partial last line waits for its newline; a file renamed by
//! rotation is drained and keeps its progress under its new name (it is never read twice); the file
//! recreated under the old name is read from its start; a truncated file is read again from its
//! start; new files in followed directories are picked up.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use super::aggregate::{Aggregator, FileProgress};
use super::job::Job;
use super::reader::{read_range, retract_tail};
use super::source::{self, HEAD_BYTES, Head, Resume, Source, end_of_last_line, progress_key};
use crate::errors::shown_path;
use crate::store::{FileCheckpoint, FileId, OtherName};

/// Every followed file, by the path its progress is recorded under.
pub(super) struct Follower<'a> {
    job: &'a Job,
    pattern: Option<source::NamePattern>,
    files: BTreeMap<String, Followed>,
    /// What each path's progress row will hold once the epochs sent so far commit.
    committed: HashMap<String, u64>,
}

struct Followed {
    path: PathBuf,
    file: File,
    identity: FileId,
    offset: u64,
    head: Head,
    /// Read from a new start since the last progress record (rotation, truncation).
    restarted: bool,
    /// A last line an earlier batch run counted without its newline, at `offset`: taken back
    /// when the rest of it comes (until then, no progress is recorded).
    retract: u64,
    /// The other progress rows of this file, with the offsets they hold once the epochs sent so
    /// far commit.
    other_names: Vec<OtherName>,
}

impl Followed {
    /// Reads from the current offset up to `end` (nothing when it is not past the offset).
    fn read_to(
        &mut self,
        end: u64,
        aggregator: &mut Aggregator,
        on_bytes: &mut dyn FnMut(u64),
    ) -> anyhow::Result<()> {
        if end > self.offset {
            if self.retract > 0 {
                retract_tail(&self.file, self.offset, self.retract, aggregator)?;
                self.retract = 0;
            }
            read_range(
                self.file.try_clone()?,
                self.offset,
                end,
                aggregator,
                on_bytes,
            )?;
            self.offset = end;
        }
        Ok(())
    }
}

impl Followed {
    /// The progress record of this file under `key`, whose row holds `committed` now.
    fn progress(&self, key: String, committed: u64, from: u64) -> FileProgress {
        FileProgress {
            from,
            checkpoint: FileCheckpoint {
                path: key,
                expected_offset: committed,
                offset: self.offset,
                decoded: 0,
                expected_decoded: 0,
                tail: 0,
                other_names: self.other_names.clone(),
                head_hash: self.head.hash,
                head_len: self.head.len,
                end_hash: Head::before(&self.file, self.offset).unwrap_or(0),
                file: self.identity,
            },
        }
    }
}

/// The name a followed file has now, when it was renamed within its directory.
fn renamed_beside(followed: &Followed) -> Option<PathBuf> {
    let entries = std::fs::read_dir(followed.path.parent()?).ok()?;
    entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|path| {
            std::fs::metadata(path).is_ok_and(|m| source::file_id(&m) == followed.identity)
        })
}

impl<'a> Follower<'a> {
    /// Starts where the backlog plan ended.
    pub fn new(job: &'a Job, pattern: Option<source::NamePattern>) -> Follower<'a> {
        let mut committed: HashMap<String, u64> = job
            .stored
            .iter()
            .map(|(k, p)| (k.clone(), p.offset))
            .collect();
        let mut files = BTreeMap::new();
        for input in &job.plan.inputs {
            let Source::File {
                path,
                key,
                gzip: false,
                file: identity,
            } = &input.source
            else {
                continue;
            };
            if input.end > input.start {
                committed.insert(key.clone(), input.end);
            }
            let Ok(file) = File::open(path) else { continue };
            let followed = Followed {
                path: path.clone(),
                file,
                identity: *identity,
                offset: input.end,
                head: input.head,
                restarted: false,
                // Taken back by the backlog's reading when it read anything.
                retract: if input.end > input.start {
                    0
                } else {
                    input.retract
                },
                other_names: moved_along(&input.other_names, input.end > input.start, input.end),
            };
            files.insert(key.clone(), followed);
        }
        Follower {
            job,
            pattern,
            files,
            committed,
        }
    }

    /// Reads what was appended since the last poll; returns the progress to commit with it.
    pub fn poll(
        &mut self,
        aggregator: &mut Aggregator,
        bytes_read: &AtomicU64,
    ) -> anyhow::Result<Vec<FileProgress>> {
        let mut on_bytes = |n| {
            bytes_read.fetch_add(n, Ordering::Relaxed);
        };
        let present = self.discover();
        let mut progress = Vec::new();
        self.drain_moved(&present, aggregator, &mut on_bytes, &mut progress)?;
        for (key, (path, identity)) in &present {
            if !self.files.contains_key(key) {
                self.start_following(key, path, *identity)?;
            }
        }
        self.read_appended(aggregator, &mut on_bytes, &mut progress)?;
        Ok(progress)
    }

    /// Drains the followed files whose path now names another file (or nothing), and follows
    /// each under its new name when it has one among `present`.
    fn drain_moved(
        &mut self,
        present: &BTreeMap<String, (PathBuf, FileId)>,
        aggregator: &mut Aggregator,
        on_bytes: &mut dyn FnMut(u64),
        progress: &mut Vec<FileProgress>,
    ) -> anyhow::Result<()> {
        // Files whose path now names another file (or nothing): rotated or removed. Drain them
        // (nobody appends to a rotated file any more), then follow them under their new name.
        // All of them leave their names first: in a numbered rotation (app.log.1 -> app.log.2,
        // app.log -> app.log.1) a new name may be the old name of another.
        let moved: Vec<(String, Followed)> = self
            .files
            .iter()
            .filter(|(key, f)| present.get(*key).map(|(_, identity)| *identity) != Some(f.identity))
            .map(|(key, _)| key.clone())
            .collect::<Vec<_>>()
            .into_iter()
            .map(|key| {
                let followed = self.files.remove(&key).expect("a followed file");
                (key, followed)
            })
            .collect();
        for (key, mut followed) in moved {
            aggregator.set_source(&shown_path(&followed.path));
            // Whole lines only: a writer that still holds the file may finish its last line.
            let size = followed.file.metadata()?.len();
            let end = end_of_last_line(&followed.file, followed.offset, size)?;
            followed.read_to(end, aggregator, on_bytes)?;
            // The name it had keeps its row (until a new file there takes it over).
            followed.other_names.push(OtherName {
                path: key.clone(),
                offset: self.committed.get(&key).copied().unwrap_or(0),
                linked: false,
            });
            let renamed = present.iter().find(|(k, (_, identity))| {
                *identity == followed.identity && !self.files.contains_key(*k)
            });
            if let Some((new_key, (new_path, _))) = renamed {
                tracing::info!(
                    "{} was renamed to {}: following it there",
                    shown_path(&followed.path),
                    shown_path(new_path)
                );
                followed.path = new_path.clone();
                followed.restarted = true;
                self.files.insert(new_key.clone(), followed);
            } else if let Some(new_path) = renamed_beside(&followed) {
                // Renamed out of the followed names: how far it was read is recorded under the
                // name it has now, so that a later run over that name does not read it again.
                let new_key = progress_key(&new_path);
                let committed = self.committed.get(&new_key).copied().unwrap_or(0);
                progress.push(followed.progress(new_key.clone(), committed, 0));
                self.committed.insert(new_key, followed.offset);
            }
        }
        Ok(())
    }

    /// Reads what was appended to every followed file (from its start again when it was
    /// truncated or rewritten), and records how far each now is.
    fn read_appended(
        &mut self,
        aggregator: &mut Aggregator,
        on_bytes: &mut dyn FnMut(u64),
        progress: &mut Vec<FileProgress>,
    ) -> anyhow::Result<()> {
        for (key, followed) in &mut self.files {
            aggregator.set_source(&shown_path(&followed.path));
            let from = followed.offset;
            let size = followed.file.metadata()?.len();
            // Truncated (and perhaps refilled past the old offset): its first bytes changed.
            let rewritten = followed.head.len > 0
                && (size < followed.head.len
                    || Head::of(&mut followed.file, followed.head.len)? != followed.head);
            if size < followed.offset || rewritten {
                tracing::warn!(
                    "{} was truncated: reading it again from its start",
                    shown_path(&followed.path)
                );
                followed.offset = 0;
                followed.retract = 0;
                followed.head = Head::default();
                followed.restarted = true;
            }
            let end = end_of_last_line(&followed.file, followed.offset, size)?;
            followed.read_to(end, aggregator, on_bytes)?;
            if followed.head.len < HEAD_BYTES.min(followed.offset) {
                followed.head = Head::of(&mut followed.file, followed.offset)?;
            }
            let committed = self.committed.get(key).copied().unwrap_or(0);
            if (followed.offset != committed || followed.restarted) && followed.retract == 0 {
                let from = if followed.restarted { 0 } else { from };
                progress.push(followed.progress(key.clone(), committed, from));
                self.committed.insert(key.clone(), followed.offset);
                followed.restarted = false;
                followed.other_names = moved_along(&followed.other_names, true, followed.offset);
            }
        }
        Ok(())
    }

    /// The plain files the followed paths name now: key -> (path, identity). A file reached by
    /// two names (a hard link) is followed under the first.
    fn discover(&self) -> BTreeMap<String, (PathBuf, FileId)> {
        let mut found = source::discover(&self.job.config.inputs, self.pattern.as_ref())
            .unwrap_or_else(|error| {
                tracing::debug!("rescanning inputs: {error:#}");
                source::Found::default()
            });
        found.leave_out(&self.job.own_files);
        for problem in &found.problems {
            tracing::debug!("rescanning inputs: {problem}");
        }
        let sources = found.sources;
        let mut seen = HashSet::new();
        sources
            .into_iter()
            .filter_map(|source| match source {
                Source::File {
                    path,
                    key,
                    gzip: false,
                    file,
                } if seen.insert(file) => Some((key, (path, file))),
                _ => None,
            })
            .collect()
    }

    fn start_following(
        &mut self,
        key: &str,
        path: &PathBuf,
        identity: FileId,
    ) -> anyhow::Result<()> {
        let Ok(mut file) = File::open(path) else {
            return Ok(());
        };
        let size = file.metadata()?.len();
        let resume = Resume::decide(&mut file, size, key, identity, &self.job.stored)?;
        if let Some(note) = &resume.note {
            tracing::warn!("{}: {note}", shown_path(path));
        }
        tracing::info!("following {}", shown_path(path));
        let followed = Followed {
            path: path.clone(),
            file,
            identity,
            offset: resume.start,
            retract: resume.retract,
            other_names: resume.other_names,
            head: Head::default(),
            restarted: resume.start == 0 && self.committed.get(key).is_some_and(|&c| c > 0),
        };
        self.files.insert(key.to_string(), followed);
        Ok(())
    }
}

/// `names` once a record of the file at `offset` commits, when one does (`moved`): linked names
/// move with it, the others stay.
fn moved_along(names: &[OtherName], moved: bool, offset: u64) -> Vec<OtherName> {
    names
        .iter()
        .map(|name| OtherName {
            offset: if moved && name.linked {
                offset
            } else {
                name.offset
            },
            ..name.clone()
        })
        .collect()
}
