//! Follow mode: after the backlog, one worker (worker 0) tails every followed file, once per
//! flush interval; live appends are small, and one reader keeps rotations simple to get right.
//!
//! Appended complete lines are read; a partial last line waits for its newline. Whatever
//! logrotate does, every line is read once: a file renamed away is drained and keeps its progress
//! under its new name; a file copied away (`copytruncate`) or compressed away (`compress`) is
//! known by its content ([`identity`](super::identity)) and read on from where its original was;
//! the file recreated or truncated under the old name is read from its start; new files in
//! followed directories are picked up, compressed ones read once.
//!
//! Thousands of files can be followed: only the most recently active ones are kept open (at most
//! `--max-open-files`); a file that was not appended to since the last look is not opened at all,
//! and one closed is opened again when it grows (by its name, or found by its identity when it
//! was renamed meanwhile).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use super::aggregate::{Aggregator, FileProgress};
use super::identity::{HEAD_BYTES, Head, Known, Resume, file_id, progress_key, retired_key};
use super::job::Job;
use super::reader::{read_compressed, read_range, retract_tail};
use super::source::{self, Piece, PieceEnd, Source, end_of_last_line};
use crate::errors::shown_path;
use crate::store::{FileCheckpoint, FileId, OtherName, StoredProgress};

/// Every followed file, by the path its progress is recorded under.
pub(super) struct Follower<'a> {
    job: &'a Job,
    pattern: Option<source::NamePattern>,
    files: BTreeMap<String, Followed>,
    /// Compressed files already read, with what they were then (read again only if they change:
    /// one still being written).
    compressed: HashMap<String, Look>,
    /// What every progress row will hold once the epochs sent so far commit: what tells which
    /// file is which.
    known: Known,
    /// What they hold once the epochs before this poll's commit: what this poll's records expect
    /// to find (a commit checks rows as they were before it).
    committed: Known,
    /// What this poll changed of `known`, to be made of `committed` when it ends.
    changes: Vec<Change>,
    /// Polls so far (a file's last activity is the poll it last had new lines in).
    polls: u64,
    /// Followed files open now, and how many may be.
    open: usize,
    max_open: usize,
}

/// A change of a progress row.
enum Change {
    /// The row under the first name, kept under the second (see [`Known::retire_as`]).
    Retire(String, String),
    Record(String, StoredProgress),
}

/// What a look at a file's metadata found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Look {
    identity: FileId,
    size: u64,
    modified: Option<SystemTime>,
}

impl Look {
    fn of(metadata: &std::fs::Metadata) -> Look {
        Look {
            identity: file_id(metadata),
            size: metadata.len(),
            modified: metadata.modified().ok(),
        }
    }
}

/// A file found by the last rescan of the inputs.
struct Present {
    path: PathBuf,
    gzip: bool,
    look: Look,
}

struct Followed {
    path: PathBuf,
    /// Open while the file is among the most recently active ones.
    file: Option<File>,
    identity: FileId,
    offset: u64,
    head: Head,
    /// Read from a new start since the last progress record (rotation, truncation); the row
    /// under its name then held another file's progress, kept under the retired name.
    restarted: Option<Option<String>>,
    /// A last line an earlier batch run counted without its newline, at `offset`: taken back
    /// when the rest of it comes (until then, no progress is recorded).
    retract: u64,
    /// The other progress rows of this file, with the offsets they hold once the epochs sent so
    /// far commit.
    other_names: Vec<OtherName>,
    /// The fingerprint of the bytes before `offset` when it was last read (0: not taken).
    end_hash: u64,
    /// The metadata when it was last read (nothing to do while it stays so).
    seen: Option<Look>,
    /// The poll it last had new lines in (or was found in).
    active: u64,
}

impl Followed {
    /// Opens the file again by its path (nothing when its path no longer names it); true when
    /// it did.
    fn reopen(&mut self) -> bool {
        let file = File::open(&self.path).ok();
        let same = |file: &File| file.metadata().is_ok_and(|m| file_id(&m) == self.identity);
        self.file = file.filter(same);
        self.file.is_some()
    }

    /// Whether the file at `path` begins as this one and holds the same bytes before its offset:
    /// this file, closed since, found again (not a new file that took its inode).
    fn still_in(&self, path: &PathBuf) -> bool {
        let Ok(file) = File::open(path) else {
            return false;
        };
        let same_head = Head::of(&file, self.head.len).is_ok_and(|head| head == self.head);
        let same_end = self.offset == 0
            || self.end_hash == 0
            || Head::before(&file, self.offset).is_ok_and(|hash| hash == self.end_hash);
        same_head && same_end
    }

    /// The open file.
    fn opened(&self) -> &File {
        self.file.as_ref().expect("opened before")
    }

    /// Reads from the current offset up to `end` (nothing when it is not past the offset), and
    /// takes the fingerprint of its first bytes when more of them were read: its row must carry
    /// it, or a compressed copy made of it after this read is not known for it.
    fn read_to(
        &mut self,
        end: u64,
        aggregator: &mut Aggregator,
        on_bytes: &mut dyn FnMut(u64),
    ) -> anyhow::Result<()> {
        let Some(file) = self.file.as_ref() else {
            return Ok(());
        };
        if end > self.offset {
            if self.retract > 0 {
                retract_tail(file, self.offset, self.retract, aggregator)?;
                self.retract = 0;
            }
            read_range(file.try_clone()?, self.offset, end, aggregator, on_bytes)?;
            self.offset = end;
            self.end_hash = Head::before(file, end).unwrap_or(0);
        }
        if self.head.len < HEAD_BYTES.min(self.offset) {
            self.head = Head::of(file, self.offset)?;
        }
        Ok(())
    }

    /// What its progress row holds once its progress so far commits.
    fn row(&self) -> StoredProgress {
        let end_hash = match &self.file {
            Some(file) => Head::before(file, self.offset).unwrap_or(0),
            None => self.end_hash,
        };
        StoredProgress {
            offset: self.offset,
            decoded: 0,
            tail: 0,
            end_hash,
            head_hash: self.head.hash,
            head_len: self.head.len,
            file: self.identity,
        }
    }
}

impl<'a> Follower<'a> {
    /// Starts where the backlog plan ended.
    pub fn new(job: &'a Job, pattern: Option<source::NamePattern>) -> Follower<'a> {
        let mut follower = Follower {
            job,
            pattern,
            files: BTreeMap::new(),
            compressed: HashMap::new(),
            known: job.stored.clone(),
            committed: job.stored.clone(),
            changes: Vec::new(),
            polls: 0,
            open: 0,
            max_open: open_files_allowed(job.config.max_open_files),
        };
        for input in &job.plan.inputs {
            let Source::File {
                path,
                key,
                gzip,
                file: identity,
            } = &input.source
            else {
                continue;
            };
            let Ok(metadata) = std::fs::metadata(path) else {
                continue;
            };
            if *gzip {
                follower.compressed.insert(key.clone(), Look::of(&metadata));
                continue;
            }
            let read = input.end > input.start;
            let mut followed = Followed {
                path: path.clone(),
                file: None,
                identity: *identity,
                offset: input.end,
                head: input.head,
                restarted: None,
                // Taken back by the backlog's reading when it read anything.
                retract: if read { 0 } else { input.retract },
                other_names: moved_along(&input.other_names, read, input.end),
                end_hash: 0,
                seen: None,
                active: 0,
            };
            if read {
                // Its row's fingerprint of the bytes before the offset needs the file open.
                follower.open(&mut followed);
                followed.end_hash = followed.row().end_hash;
                if let Some(retired) = &input.retire {
                    follower.change(Change::Retire(key.clone(), retired.clone()));
                }
                follower.change(Change::Record(key.clone(), followed.row()));
            }
            follower.files.insert(key.clone(), followed);
        }
        follower.end_poll();
        follower
    }

    /// Makes `change` of the rows known now (and of the committed ones when the poll ends).
    fn change(&mut self, change: Change) {
        match &change {
            Change::Retire(key, retired) => self.known.retire_as(key, retired),
            Change::Record(key, row) => self.known.record(key.clone(), *row),
        }
        self.changes.push(change);
    }

    /// What this poll recorded is what the next poll's records find.
    fn end_poll(&mut self) {
        for change in self.changes.drain(..) {
            match change {
                Change::Retire(key, retired) => self.committed.retire_as(&key, &retired),
                Change::Record(key, row) => self.committed.record(key, row),
            }
        }
    }

    /// What a decision against the rows known now expects of the rows as committed.
    fn expecting_committed(&self, resume: Resume, key: &str, id: FileId) -> Resume {
        let own = self.committed.get(key);
        Resume {
            expected_offset: own.map_or(0, |row| row.offset),
            expected_decoded: own.map_or(0, |row| row.decoded),
            other_names: self.committed.other_names(key, id),
            retire: resume.retire.as_ref().and_then(|_| {
                own.filter(|row| row.offset > 0 || row.decoded > 0)
                    .map(|row| retired_key(key, row))
            }),
            ..resume
        }
    }

    /// Whether `followed` is open, opened again when it was closed (closing the least recently
    /// active files first when as many as allowed are open).
    fn open(&mut self, followed: &mut Followed) -> bool {
        if followed.file.is_none() {
            if self.open >= self.max_open {
                self.close_least_active(self.max_open / 2);
            }
            self.open += usize::from(followed.reopen());
        }
        followed.file.is_some()
    }

    /// Reads what was appended since the last poll; returns the progress to commit with it.
    pub fn poll(
        &mut self,
        aggregator: &mut Aggregator,
        bytes_read: &AtomicU64,
    ) -> anyhow::Result<Vec<FileProgress>> {
        self.polls += 1;
        let mut on_bytes = |n| {
            bytes_read.fetch_add(n, Ordering::Relaxed);
        };
        let present = self.discover();
        let mut progress = Vec::new();
        self.drain_moved(&present, aggregator, &mut on_bytes, &mut progress)?;
        self.read_appended(&present, aggregator, &mut on_bytes, &mut progress)?;
        // New files are judged once the followed ones are read: a copy of one (copytruncate) is
        // then known by what was read of it.
        for (key, found) in &present {
            match found.gzip {
                true if self.compressed.get(key) != Some(&found.look) => {
                    self.read_compressed(key, found, aggregator, &mut progress)?;
                }
                false if !self.files.contains_key(key) => {
                    self.start_following(key, found)?;
                }
                _ => {}
            }
        }
        self.read_appended(&present, aggregator, &mut on_bytes, &mut progress)?;
        self.end_poll();
        Ok(progress)
    }

    /// Drains the followed files whose path now names another file (or nothing), and follows
    /// each under its new name when it has one among `present`.
    fn drain_moved(
        &mut self,
        present: &BTreeMap<String, Present>,
        aggregator: &mut Aggregator,
        on_bytes: &mut dyn FnMut(u64),
        progress: &mut Vec<FileProgress>,
    ) -> anyhow::Result<()> {
        // All of them leave their names first: in a numbered rotation (app.log.1 -> app.log.2,
        // app.log -> app.log.1) a new name may be the old name of another.
        let moved: Vec<String> = self
            .files
            .iter()
            .filter(|(key, f)| present.get(*key).map(|p| p.look.identity) != Some(f.identity))
            .map(|(key, _)| key.clone())
            .collect();
        let mut moved: Vec<(String, Followed)> = moved
            .into_iter()
            .map(|key| {
                let followed = self.files.remove(&key).expect("a followed file");
                (key, followed)
            })
            .collect();
        for (key, followed) in &mut moved {
            followed.restarted = None;
            // A closed file is found again by its identity only when its content is still what
            // was read of it: its inode may have been freed and taken by a new file.
            let is_it = |path: &PathBuf| followed.file.is_some() || followed.still_in(path);
            let renamed = present
                .iter()
                .find(|(k, p)| {
                    p.look.identity == followed.identity
                        && !self.files.contains_key(*k)
                        && is_it(&p.path)
                })
                .map(|(k, p)| (k.clone(), p.path.clone()));
            let new_name = renamed.clone().or_else(|| {
                let path = renamed_beside(followed).filter(is_it)?;
                Some((progress_key(&path), path))
            });
            let old_path = followed.path.clone();
            if followed.file.is_none()
                && let Some((_, path)) = &new_name
            {
                followed.path = path.clone();
            }
            aggregator.set_source(&shown_path(&followed.path));
            // Whole lines only: a writer that still holds the file may finish its last line.
            if self.open(followed) {
                let file = followed.opened();
                let size = file.metadata()?.len();
                let end = end_of_last_line(file, followed.offset, size)?;
                followed.read_to(end, aggregator, on_bytes)?;
            }
            // The name it had keeps its row (until a new file there takes it over).
            followed.other_names.push(OtherName {
                path: key.clone(),
                offset: self.committed.get(key).map_or(0, |row| row.offset),
                linked: false,
            });
            match (renamed, new_name) {
                (Some((new_key, new_path)), _) => {
                    tracing::info!(
                        "{} was renamed to {}: following it there",
                        shown_path(&old_path),
                        shown_path(&new_path)
                    );
                    followed.path = new_path;
                    followed.restarted = Some(None);
                    followed.seen = None;
                    let followed = std::mem::replace(followed, Followed::gone());
                    self.files.insert(new_key, followed);
                }
                // Renamed out of the followed names: how far it was read is recorded under the
                // name it has now, so that a later run over that name does not read it again.
                (None, Some((new_key, _))) => {
                    self.record(new_key, followed, 0, progress);
                    self.close(followed);
                }
                // Gone (removed, or compressed away): how far it was read is kept under a
                // retired name, so that its compressed form or a copy is known for it.
                // (Closed and not found again, it read nothing more: its row says how far it is.)
                (None, None) if followed.file.is_none() => {}
                (None, None) => {
                    let row = followed.row();
                    let retired = retired_key(key, &row);
                    followed.identity = FileId::default();
                    followed.other_names.clear();
                    self.record(retired, followed, 0, progress);
                    self.close(followed);
                }
            }
        }
        Ok(())
    }

    /// Reads what was appended to every followed file that changed since it was last read (from
    /// its start again when it was truncated or rewritten), and records how far each now is.
    fn read_appended(
        &mut self,
        present: &BTreeMap<String, Present>,
        aggregator: &mut Aggregator,
        on_bytes: &mut dyn FnMut(u64),
        progress: &mut Vec<FileProgress>,
    ) -> anyhow::Result<()> {
        let keys: Vec<String> = self.files.keys().cloned().collect();
        for key in keys {
            let Some(mut followed) = self.files.remove(&key) else {
                continue;
            };
            let look = present.get(&key).map(|p| p.look);
            let unchanged = look.is_some() && followed.seen == look;
            if !unchanged || followed.restarted.is_some() {
                self.read_followed(&key, &mut followed, aggregator, on_bytes, progress)?;
                followed.seen = look;
            }
            self.files.insert(key, followed);
        }
        Ok(())
    }

    fn read_followed(
        &mut self,
        key: &str,
        followed: &mut Followed,
        aggregator: &mut Aggregator,
        on_bytes: &mut dyn FnMut(u64),
        progress: &mut Vec<FileProgress>,
    ) -> anyhow::Result<()> {
        aggregator.set_source(&shown_path(&followed.path));
        if !self.open(followed) {
            return Ok(()); // replaced since the rescan: the next poll drains it
        }
        let file = followed.opened();
        let from = followed.offset;
        let size = file.metadata()?.len();
        // Truncated (and perhaps refilled past the old offset): its first bytes changed.
        let rewritten = followed.head.len > 0
            && (size < followed.head.len || Head::of(file, followed.head.len)? != followed.head);
        if size < followed.offset || rewritten {
            tracing::warn!(
                "{} was truncated: reading it again from its start",
                shown_path(&followed.path)
            );
            followed.offset = 0;
            followed.retract = 0;
            followed.head = Head::default();
            // What was read before is kept under a retired name: a copy of it (copytruncate)
            // is known by it.
            let row = self.committed.get(key).filter(|row| row.offset > 0);
            followed.restarted = Some(row.map(|row| retired_key(key, row)));
        }
        let end = end_of_last_line(followed.opened(), followed.offset, size)?;
        if end > followed.offset {
            followed.active = self.polls;
        }
        followed.read_to(end, aggregator, on_bytes)?;
        let committed = self.known.get(key).map_or(0, |row| row.offset);
        if (followed.offset != committed || followed.restarted.is_some()) && followed.retract == 0 {
            let from = if followed.restarted.is_some() {
                0
            } else {
                from
            };
            self.record(key.to_string(), followed, from, progress);
            followed.other_names = moved_along(&followed.other_names, true, followed.offset);
        }
        Ok(())
    }

    /// Records how far `followed` is under `key` (keeping the row there under its retired name
    /// first, when `followed` restarted over another file's progress).
    fn record(
        &mut self,
        key: String,
        followed: &mut Followed,
        from: u64,
        progress: &mut Vec<FileProgress>,
    ) {
        let row = followed.row();
        let retire = followed.restarted.take().flatten();
        let committed = self.committed.get(&key).map_or(0, |row| row.offset);
        progress.push(FileProgress {
            from,
            checkpoint: FileCheckpoint {
                path: key.clone(),
                expected_offset: committed,
                offset: row.offset,
                decoded: 0,
                expected_decoded: 0,
                tail: 0,
                other_names: followed.other_names.clone(),
                head_hash: row.head_hash,
                head_len: row.head_len,
                end_hash: row.end_hash,
                file: row.file,
                retire: retire.clone(),
            },
        });
        if let Some(retired) = retire {
            self.change(Change::Retire(key.clone(), retired));
        }
        self.change(Change::Record(key, row));
    }

    /// The files the followed paths name now, by key. A file reached by two names (a hard
    /// link) is followed under the first.
    fn discover(&self) -> BTreeMap<String, Present> {
        let mut found = source::discover(&self.job.config.inputs, self.pattern.as_ref())
            .unwrap_or_else(|error| {
                tracing::debug!("rescanning inputs: {error:#}");
                source::Found::default()
            });
        found.leave_out(&self.job.own_files);
        if let Some(note) = found.not_text_note() {
            eprintln!("note: {note}");
        }
        for problem in &found.problems {
            tracing::debug!("rescanning inputs: {problem}");
        }
        let mut seen = std::collections::HashSet::new();
        found
            .sources
            .into_iter()
            .filter_map(|source| match source {
                Source::File {
                    path, key, gzip, ..
                } => {
                    let look = Look::of(&std::fs::metadata(&path).ok()?);
                    seen.insert(look.identity)
                        .then_some((key, Present { path, gzip, look }))
                }
                Source::Stdin => None,
            })
            .collect()
    }

    /// Follows a file new to this run: from where its own row, or the row of the file it is by
    /// its content, left off.
    fn start_following(&mut self, key: &str, found: &Present) -> anyhow::Result<()> {
        let Ok(file) = File::open(&found.path) else {
            return Ok(());
        };
        let metadata = file.metadata()?;
        let identity = file_id(&metadata);
        let size = metadata.len();
        let resume = match self.copy_of_followed(&file, size) {
            Some(from) => {
                tracing::info!(
                    "{} is a copy of {} as read so far: following it from its end",
                    shown_path(&found.path),
                    shown_path(&self.files[&from].path)
                );
                Resume {
                    start: size,
                    ..Resume::default()
                }
            }
            None => {
                let resume = Resume::decide(&file, false, size, key, identity, &self.known)?;
                self.expecting_committed(resume, key, identity)
            }
        };
        if let Some(note) = &resume.note {
            tracing::warn!("{}: {note}", shown_path(&found.path));
        }
        tracing::info!("following {}", shown_path(&found.path));
        let restarts = resume.retire.is_some()
            || (resume.start == 0 && self.committed.get(key).is_some_and(|row| row.offset > 0));
        if self.open >= self.max_open {
            self.close_least_active(self.max_open / 2);
        }
        self.open += 1;
        let end_hash = Head::before(&file, resume.start).unwrap_or(0);
        let followed = Followed {
            path: found.path.clone(),
            file: Some(file),
            identity,
            offset: resume.start,
            retract: resume.retract,
            other_names: resume.other_names,
            head: Head::default(),
            restarted: (restarts || resume.start > 0).then_some(resume.retire),
            end_hash,
            seen: None,
            active: self.polls,
        };
        self.files.insert(key.to_string(), followed);
        Ok(())
    }

    /// The followed file that `file` (of `size` bytes) is a copy of, as far as it was read: the
    /// same first bytes, and the same bytes before `size`, which it has read past. A copy made
    /// while its original is still written to (`copytruncate` before the truncation) is then
    /// nothing new. Only whole lines are read, so only whole lines are a copy: a new file that
    /// holds the beginning of a line so far (which begins like every line) is not.
    fn copy_of_followed(&self, file: &File, size: u64) -> Option<String> {
        if size == 0 || end_of_last_line(file, size - 1, size).ok() != Some(size) {
            return None;
        }
        let head = Head::of(file, size).ok()?;
        let before = Head::before(file, size).ok()?;
        self.files
            .iter()
            .filter(|(_, f)| f.restarted.is_none() && f.offset >= size)
            .find(|(_, f)| {
                let Some(original) = f.file.as_ref() else {
                    return false;
                };
                Head::of(original, head.len).ok() == Some(head)
                    && Head::before(original, size).ok() == Some(before)
            })
            .map(|(key, _)| key.clone())
    }

    /// Reads a compressed file found while following, after what was ingested of it (or of the
    /// file it was compressed from) by its content.
    fn read_compressed(
        &mut self,
        key: &str,
        found: &Present,
        aggregator: &mut Aggregator,
        progress: &mut Vec<FileProgress>,
    ) -> anyhow::Result<()> {
        let Ok(file) = File::open(&found.path) else {
            return Ok(());
        };
        let metadata = file.metadata()?;
        let look = Look::of(&metadata);
        self.compressed.insert(key.to_string(), look);
        let resume = Resume::decide(&file, true, look.size, key, look.identity, &self.known)?;
        let resume = self.expecting_committed(resume, key, look.identity);
        if let Some(note) = &resume.note {
            tracing::info!("{}: {note}", shown_path(&found.path));
        }
        if resume.start >= look.size {
            return Ok(());
        }
        aggregator.set_source(&shown_path(&found.path));
        let piece = Piece {
            input: 0,
            start: resume.start,
            end: look.size,
        };
        let head = Head::of(&file, look.size)?;
        let end = read_compressed(file, &piece, (resume.skip, resume.retract), aggregator)?;
        let (offset, decoded) = match &end {
            PieceEnd::Broken { decoded, problem } => {
                tracing::warn!("{}: {problem}", shown_path(&found.path));
                (resume.start, resume.skip + decoded)
            }
            _ => (look.size, 0),
        };
        progress.push(FileProgress {
            from: resume.start,
            checkpoint: FileCheckpoint {
                path: key.to_string(),
                expected_offset: resume.expected_offset,
                offset,
                decoded,
                expected_decoded: resume.expected_decoded,
                tail: 0,
                other_names: resume.other_names.clone(),
                head_hash: head.hash,
                head_len: head.len,
                end_hash: 0,
                file: look.identity,
                retire: resume.retire.clone(),
            },
        });
        if let Some(retired) = &resume.retire {
            self.change(Change::Retire(key.to_string(), retired.clone()));
        }
        let row = StoredProgress {
            offset,
            decoded,
            tail: 0,
            end_hash: 0,
            head_hash: head.hash,
            head_len: head.len,
            file: look.identity,
        };
        self.change(Change::Record(key.to_string(), row));
        Ok(())
    }

    /// Closes `followed`'s file.
    fn close(&mut self, followed: &mut Followed) {
        if followed.file.take().is_some() {
            self.open -= 1;
        }
    }

    /// Closes the least recently active followed files until `keep` are open.
    fn close_least_active(&mut self, keep: usize) {
        let mut open: Vec<&mut Followed> = self
            .files
            .values_mut()
            .filter(|f| f.file.is_some())
            .collect();
        if open.len() <= keep {
            return;
        }
        open.sort_by_key(|f| f.active);
        let excess = open.len() - keep;
        for followed in open.into_iter().take(excess) {
            followed.file = None;
            self.open -= 1;
        }
    }
}

/// How many followed files may be open: `wanted`, within what the process may open (its soft
/// limit raised to the hard one first), less a margin for the database, sockets and spill files.
fn open_files_allowed(wanted: usize) -> usize {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        if setrlimit(Resource::Nofile, limit).is_err() {
            limit = getrlimit(Resource::Nofile);
        }
    }
    let available = limit.current.map_or(usize::MAX, |n| n as usize);
    wanted.min(available.saturating_sub(128)).max(1)
}

impl Followed {
    /// A placeholder for a followed file moved elsewhere.
    fn gone() -> Followed {
        Followed {
            path: PathBuf::new(),
            file: None,
            identity: FileId::default(),
            offset: 0,
            head: Head::default(),
            restarted: None,
            retract: 0,
            other_names: Vec::new(),
            end_hash: 0,
            seen: None,
            active: 0,
        }
    }
}

/// The name a followed file has now, when it was renamed within its directory.
fn renamed_beside(followed: &Followed) -> Option<PathBuf> {
    let entries = std::fs::read_dir(followed.path.parent()?).ok()?;
    entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|path| std::fs::metadata(path).is_ok_and(|m| file_id(&m) == followed.identity))
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
