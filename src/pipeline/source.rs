//! What to read: inputs found from the command line, and the plan that splits them into units of
//! work (newline-aligned byte ranges of files, packed to a target size).
//!
//! The plan is a pure function of the inputs and the committed progress, so every worker (and every
//! process of a cluster) computes the same one and reads only its share.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::aggregate::FileProgress;
pub use super::identity::{HEAD_BYTES, Head, file_id, progress_key};
use super::identity::{Known, Resume};
use crate::errors::{escaped, shown_path};
use crate::store::{FileCheckpoint, FileId, OtherName};

/// One input of an ingestion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A file; `key` (its absolute path, see [`progress_key`]) names its progress row.
    File {
        path: PathBuf,
        key: String,
        gzip: bool,
        file: FileId,
    },
    /// Standard input: read once, its progress is not recorded.
    Stdin,
}

impl Source {
    /// How the input is named in reports (escaped: file names can hold any byte).
    pub fn display(&self) -> String {
        match self {
            Source::File { path, .. } => shown_path(path),
            Source::Stdin => "<stdin>".to_string(),
        }
    }

    pub fn file(path: &Path) -> anyhow::Result<Source> {
        let cannot_read = |error: std::io::Error| {
            anyhow::anyhow!(
                "cannot read {}: {}",
                shown_path(path),
                plain_io_error(&error)
            )
        };
        let absolute = std::fs::canonicalize(path).map_err(cannot_read)?;
        let metadata = std::fs::metadata(&absolute).map_err(cannot_read)?;
        let gzip = absolute.extension().is_some_and(|e| e == "gz");
        Ok(Source::File {
            key: progress_key(&absolute),
            path: absolute,
            gzip,
            file: file_id(&metadata),
        })
    }
}

/// What the command line's paths name: the inputs to read, and the ones that cannot be read
/// (`NAME: cause`), which do not stop the others.
#[derive(Clone, Debug, Default)]
pub struct Found {
    pub sources: Vec<Source>,
    pub problems: Vec<String>,
    /// Files found but left out, and why.
    pub notes: Vec<String>,
    /// Files in directories left out as not text, not noted before in this process (how they
    /// are shown, and what they are).
    pub(super) not_text: Vec<(String, FileId)>,
}

impl Found {
    /// Leaves out the given files (what logstats itself writes: its database, the rejects file),
    /// whatever names they were found under.
    pub fn leave_out(&mut self, files: &[(PathBuf, &str)]) {
        let own: Vec<(FileId, &str)> = files
            .iter()
            .filter_map(|(path, what)| Some((file_id(&std::fs::metadata(path).ok()?), *what)))
            .collect();
        let notes = &mut self.notes;
        self.not_text.retain(
            |(shown, file)| match own.iter().find(|(id, _)| id == file) {
                Some((_, what)) => {
                    notes.push(format!("{shown} is {what}: not read as a log"));
                    false
                }
                None => true,
            },
        );
        self.sources.retain(|source| {
            let Source::File { file, .. } = source else {
                return true;
            };
            match own.iter().find(|(id, _)| id == file) {
                Some((_, what)) => {
                    notes.push(format!("{} is {what}: not read as a log", source.display()));
                    false
                }
                None => true,
            }
        });
    }

    fn add_file(&mut self, path: &Path) {
        match Source::file(path) {
            Ok(source) => self.sources.push(source),
            Err(error) => self.problems.push(crate::errors::one_line(&error)),
        }
    }

    /// The note naming the files in directories left out as not text (each noted once in a
    /// process), if any.
    pub fn not_text_note(&self) -> Option<String> {
        let names: Vec<String> = self
            .not_text
            .iter()
            .map(|(shown, _)| shown.clone())
            .collect();
        super::text::note(&names)
    }

    /// A file found in a directory: read when it is text.
    fn add_file_in_directory(&mut self, path: &Path) {
        let before = self.sources.len();
        self.add_file(path);
        let Some(Source::File {
            path, gzip, file, ..
        }) = self.sources.get(before)
        else {
            return;
        };
        let Ok(metadata) = std::fs::metadata(path) else {
            return;
        };
        if let super::text::Verdict::NotText { first_time } =
            super::text::judge(path, *gzip, &metadata)
        {
            let not_text = (shown_path(path), *file);
            self.sources.pop();
            if first_time {
                self.not_text.push(not_text);
            }
        }
    }

    fn add_problem(&mut self, path: &Path, cause: impl std::fmt::Display) {
        self.problems
            .push(format!("cannot read {}: {cause}", shown_path(path)));
    }
}

/// A file-name pattern (`--glob`), matched against names as a shell matches them (`*` never
/// crosses a `/`).
pub type NamePattern = globset::GlobMatcher;

/// Compiles a shell pattern (`*.log`, `logs/**/*.gz`) as the command line means it.
fn shell_pattern(text: &str) -> Result<globset::GlobMatcher, globset::Error> {
    Ok(globset::GlobBuilder::new(text)
        .literal_separator(true)
        .backslash_escape(true)
        .build()?
        .compile_matcher())
}

/// The `--glob` pattern, checked.
pub fn name_pattern(glob: Option<&str>) -> anyhow::Result<Option<NamePattern>> {
    glob.map(|text| {
        shell_pattern(text).with_context(|| format!("invalid --glob {}", escaped(text.as_bytes())))
    })
    .transpose()
}

/// Expands the command line's paths: `-` is standard input, a directory is read recursively
/// (files whose name matches `pattern` when one is given), a glob is expanded. Sorted, no repeats.
/// Fails only on an invalid pattern; what cannot be read is listed in [`Found::problems`].
pub fn discover(paths: &[String], pattern: Option<&NamePattern>) -> anyhow::Result<Found> {
    let mut found = Found::default();
    for arg in paths {
        if arg == "-" {
            found.sources.push(Source::Stdin);
            continue;
        }
        let path = Path::new(arg);
        if std::fs::symlink_metadata(path).is_err() && arg.contains(['*', '?', '[', '{']) {
            expand(arg, &mut found)?;
            continue;
        }
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => walk(path, pattern, &mut found),
            Ok(meta) if meta.is_file() => found.add_file(path),
            Ok(meta) => found.add_problem(path, not_regular(&meta)),
            Err(error) => found.add_problem(path, plain_io_error(&error)),
        }
    }
    found.sources.sort_by(|a, b| a.path().cmp(&b.path()));
    found.sources.dedup();
    found.not_text.sort_by(|a, b| a.0.cmp(&b.0));
    found.not_text.dedup_by(|a, b| a.1 == b.1);
    Ok(found)
}

/// The files a pattern of the command line matches (`logs/*.log`, `/var/log/**/*.gz`), found by
/// walking the directories it names literally (as deep as its components reach, or all the way
/// for `**`) and matching each path whole.
fn expand(arg: &str, found: &mut Found) -> anyhow::Result<()> {
    let shown = escaped(arg.as_bytes());
    let matcher = shell_pattern(arg).with_context(|| format!("invalid pattern {shown}"))?;
    let components: Vec<&str> = arg.split('/').collect();
    let literal = components
        .iter()
        .take_while(|c| !c.contains(['*', '?', '[', '{']))
        .count();
    let base = match components[..literal].join("/") {
        base if base.is_empty() && arg.starts_with('/') => "/".to_string(),
        base if base.is_empty() => ".".to_string(),
        base => base,
    };
    let relative = !arg.starts_with('/') && literal == 0;
    let mut walker = walkdir::WalkDir::new(&base).follow_links(true).min_depth(1);
    if !arg.contains("**") {
        walker = walker.max_depth(components.len() - literal);
    }
    let before = found.sources.len();
    for entry in walker {
        match entry {
            Ok(entry) if entry.file_type().is_file() => {
                // Matched as the user wrote it: `*.log` names `a.log`, not `./a.log`.
                let path = entry.path();
                let written = match relative {
                    true => path.strip_prefix(".").unwrap_or(path),
                    false => path,
                };
                if matcher.is_match(written) {
                    found.add_file(written);
                }
            }
            Ok(_) => {}
            Err(error) => found.add_walk_error(&error, Path::new(&base), |_| false),
        }
    }
    if found.sources.len() == before {
        found.problems.push(format!("no file matches {shown}"));
    }
    Ok(())
}

/// Why a path that is neither a file nor a directory is not read.
fn not_regular(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let kind = meta.file_type();
    if kind.is_fifo() {
        "a named pipe (FIFO), not a regular file: pipe it to standard input (-) instead"
    } else if kind.is_socket() {
        "a socket, not a regular file"
    } else {
        "a device, not a regular file"
    }
}

/// An I/O error in plain words, without Rust's `(os error N)`.
pub fn plain_io_error(error: &std::io::Error) -> String {
    let text = error.to_string();
    match text.rfind(" (os error") {
        Some(at) => text[..at].to_lowercase(),
        None => text,
    }
}

/// The files below `dir` (hidden ones skipped, symbolic links followed) whose names match
/// `pattern`, when given. What cannot be read is a problem: a directory always, anything else
/// when its name matches. A link back to a directory it is in is not followed (what it leads to
/// is read once, under its own path).
pub fn walk(dir: &Path, pattern: Option<&NamePattern>, found: &mut Found) {
    let wanted = |name: &std::ffi::OsStr| pattern.is_none_or(|p| p.is_match(name));
    let entries = walkdir::WalkDir::new(dir)
        .follow_links(true)
        .into_iter()
        .filter_entry(|entry| {
            entry.depth() == 0 || !entry.file_name().as_encoded_bytes().starts_with(b".")
        });
    for entry in entries {
        match entry {
            Ok(entry) if entry.file_type().is_dir() => {}
            Ok(entry) if !wanted(entry.file_name()) => {}
            Ok(entry) if entry.file_type().is_file() => found.add_file_in_directory(entry.path()),
            Ok(entry) => match entry.metadata() {
                Ok(meta) => found.add_problem(entry.path(), not_regular(&meta)),
                Err(error) => found.add_problem(entry.path(), walk_error(&error)),
            },
            Err(error) => {
                found.add_walk_error(&error, dir, |path| path.file_name().is_none_or(wanted))
            }
        }
    }
}

impl Found {
    /// Records where a walk from `root` could not go on: a directory always, anything else when
    /// `wanted` (its name matches). A link back to a directory it is in is no problem: what it
    /// leads to is read once, under its own path.
    fn add_walk_error(
        &mut self,
        error: &walkdir::Error,
        root: &Path,
        wanted: impl Fn(&Path) -> bool,
    ) {
        if error.loop_ancestor().is_some() {
            return;
        }
        let path = error.path().unwrap_or(root);
        let is_dir = std::fs::metadata(path).is_ok_and(|meta| meta.is_dir());
        if is_dir || wanted(path) {
            self.add_problem(path, walk_error(error));
        }
    }
}

/// Why a walk could not go on at an entry, in plain words.
fn walk_error(error: &walkdir::Error) -> String {
    match error.io_error() {
        Some(io) => plain_io_error(io),
        None => error.to_string(),
    }
}

impl Source {
    /// The file's path (`None` for standard input).
    fn path(&self) -> Option<&Path> {
        match self {
            Source::File { path, .. } => Some(path),
            Source::Stdin => None,
        }
    }
}

/// One input with the range this ingestion reads of it.
#[derive(Clone, Debug)]
pub struct PlannedInput {
    pub source: Source,
    /// Where reading starts (the committed offset, or 0 for a new or replaced file).
    pub start: u64,
    /// Where reading ends (after the last complete line in follow mode; the end of the file otherwise).
    pub end: u64,
    /// The offset its progress row holds now (0 when there is none).
    pub expected_offset: u64,
    /// Compressed inputs: decompressed bytes to skip after `start` (already ingested), and what
    /// the progress row holds now.
    pub skip: u64,
    /// Plain files: the bytes at `start` of a last line counted without its newline by an earlier
    /// run, taken back before the line is read again whole.
    pub retract: u64,
    /// The other progress rows of this file when planned (hard links, names it was renamed from).
    pub other_names: Vec<OtherName>,
    pub expected_decoded: u64,
    pub head: Head,
    /// Why reading restarts from 0, when it does.
    pub note: Option<String>,
    /// The row under its name describes another file: kept under this retired name.
    pub retire: Option<String>,
}

/// How the reading of a piece ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PieceEnd {
    /// Every byte of it was read; its last `tail` bytes are a last line without a newline, and
    /// `end_hash` fingerprints the bytes before its end (0 for compressed files).
    Whole { tail: u64, end_hash: u64 },
    /// A compressed input broke off (truncated while being written, or damaged): `decoded`
    /// bytes of complete lines were read (and are kept); `problem` says what happened.
    Broken { decoded: u64, problem: String },
    /// The file was removed or replaced after it was planned: nothing was read, nothing is
    /// recorded, and the next run reads it (under whatever name it has then).
    Lost { problem: String },
}

/// A byte range of one input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Piece {
    pub input: usize,
    pub start: u64,
    pub end: u64,
}

/// Every input, and the units of work: unit `u` is read by worker `u % workers` in epoch
/// `u / workers`, so when an epoch commits, every byte before its offsets has committed too.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub inputs: Vec<PlannedInput>,
    pub units: Vec<Vec<Piece>>,
    /// Inputs left out, and why (another name of a file already planned).
    pub notes: Vec<String>,
    /// Inputs that cannot be read (`cannot read NAME: cause`).
    pub problems: Vec<String>,
}

impl Plan {
    /// Bytes the plan reads (standard input counts as 0: its size is unknown).
    pub fn total_bytes(&self) -> u64 {
        self.units
            .iter()
            .flatten()
            .filter(|p| p.end != u64::MAX)
            .map(|p| p.end - p.start)
            .sum()
    }

    /// The progress to record once `piece`, read as `end` says, is committed (`None` for
    /// standard input).
    pub fn progress_of(&self, piece: &Piece, end: &PieceEnd) -> Option<FileProgress> {
        let input = &self.inputs[piece.input];
        let Source::File { key, file, .. } = &input.source else {
            return None;
        };
        // Where the row ends up: (offset, decoded bytes past it, tail, fingerprint before it).
        let (offset, decoded, tail, end_hash) = match end {
            PieceEnd::Whole { tail, end_hash } => (piece.end, 0, *tail, *end_hash),
            PieceEnd::Broken { decoded, .. } => (piece.start, input.skip + decoded, 0, 0),
            PieceEnd::Lost { .. } => return None,
        };
        let first_piece = piece.start == input.start;
        Some(FileProgress {
            from: piece.start,
            checkpoint: FileCheckpoint {
                path: key.clone(),
                expected_offset: if first_piece {
                    input.expected_offset
                } else {
                    piece.start
                },
                offset,
                decoded,
                tail,
                expected_decoded: input.expected_decoded,
                // Linked names move with this row: after the first piece they hold where it ended.
                other_names: input
                    .other_names
                    .iter()
                    .map(|name| OtherName {
                        offset: if name.linked && !first_piece {
                            piece.start
                        } else {
                            name.offset
                        },
                        ..name.clone()
                    })
                    .collect(),
                head_hash: input.head.hash,
                head_len: input.head.len,
                end_hash,
                file: *file,
                retire: input.retire.clone().filter(|_| first_piece),
            },
        })
    }
}

/// Plans reading `sources`, resuming from `stored` progress, in units of about `unit_bytes`.
/// `whole_lines_only` (follow mode) leaves a partial last line for later.
///
/// The plan depends only on its inputs, in their order (`stored` is searched in key order):
/// every process of a cluster computes the same plan, and so reads its own share of the
/// same units, as long as each sees the same paths, in the same order, with the same contents
/// (files that do not change between the processes' starts) and reads the same stored progress.
pub fn plan(
    found: Found,
    stored: &Known,
    unit_bytes: u64,
    whole_lines_only: bool,
) -> anyhow::Result<Plan> {
    let not_text = found.not_text_note();
    let mut plan = Plan {
        problems: found.problems,
        notes: found.notes.into_iter().chain(not_text).collect(),
        ..Plan::default()
    };
    let mut pieces = Vec::new();
    // A file reached by two names (a hard link) is read once, under the first.
    let mut names: HashMap<FileId, String> = HashMap::new();
    for source in found.sources {
        if let Source::File { file, .. } = &source {
            if let Some(first) = names.get(file) {
                plan.notes.push(format!(
                    "{} is the same file as {first} (a hard link): read once",
                    source.display()
                ));
                continue;
            }
            names.insert(*file, source.display());
        }
        let input = plan.inputs.len();
        let planned = match source {
            Source::Stdin => {
                pieces.push(Piece {
                    input,
                    start: 0,
                    end: u64::MAX,
                });
                PlannedInput::stdin()
            }
            file => {
                let at = PlanAt {
                    input,
                    stored,
                    unit_bytes,
                    whole_lines_only,
                };
                match plan_file(file, &at, &mut pieces, &mut plan.problems)? {
                    Some(planned) => planned,
                    None => continue,
                }
            }
        };
        plan.inputs.push(planned);
    }
    plan.units = units_of(pieces, unit_bytes);
    Ok(plan)
}

/// What planning one file depends on besides the file.
struct PlanAt<'a> {
    /// Its index among the planned inputs.
    input: usize,
    stored: &'a Known,
    unit_bytes: u64,
    whole_lines_only: bool,
}

/// Plans a file: where to resume it, and its pieces (appended to `pieces`); `None` when it cannot
/// be opened (said in `problems`: the run goes on without it).
fn plan_file(
    source: Source,
    at: &PlanAt<'_>,
    pieces: &mut Vec<Piece>,
    problems: &mut Vec<String>,
) -> anyhow::Result<Option<PlannedInput>> {
    let Source::File {
        path,
        key,
        gzip,
        file: id,
    } = &source
    else {
        unreachable!("standard input is planned apart");
    };
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) => {
            let cause = plain_io_error(&error);
            problems.push(format!("cannot read {}: {cause}", shown_path(path)));
            return Ok(None);
        }
    };
    let size = file.metadata()?.len();
    let mut resume = Resume::decide(&file, *gzip, size, key, *id, at.stored)?;
    if !at.whole_lines_only && !gzip && resume.start + resume.retract == size {
        // The last line counted without a newline has not gone on: nothing to do.
        (resume.start, resume.retract) = (size, 0);
    }
    let end = if at.whole_lines_only && !gzip {
        end_of_last_line(&file, resume.start, size)?
    } else {
        size
    };
    if !gzip && end == resume.start && resume.retire.is_some() {
        // Nothing to read yet (recreated empty), but its name's row is another file's: an empty
        // piece records that this file starts there, and keeps the other one's row retired.
        pieces.push(Piece {
            input: at.input,
            start: resume.start,
            end,
        });
    } else if !gzip {
        split(&file, at.input, resume.start, end, at.unit_bytes, pieces)?;
    } else if end > resume.start {
        pieces.push(Piece {
            input: at.input,
            start: resume.start,
            end,
        });
    }
    let note = resume.note.map(|n| format!("{}: {n}", shown_path(path)));
    Ok(Some(PlannedInput {
        head: Head::of(&file, end)?,
        start: resume.start,
        end,
        expected_offset: resume.expected_offset,
        skip: resume.skip,
        retract: resume.retract,
        other_names: resume.other_names,
        expected_decoded: resume.expected_decoded,
        note,
        retire: resume.retire,
        source,
    }))
}

/// Pieces gathered into units of about `unit_bytes` (a piece is never split across two).
fn units_of(pieces: Vec<Piece>, unit_bytes: u64) -> Vec<Vec<Piece>> {
    let mut units = Vec::new();
    let mut unit = Vec::new();
    let mut unit_size = 0;
    for piece in pieces {
        let size = piece.end.saturating_sub(piece.start);
        if !unit.is_empty() && unit_size + size > unit_bytes {
            units.push(std::mem::take(&mut unit));
            unit_size = 0;
        }
        unit.push(piece);
        unit_size += size;
    }
    if !unit.is_empty() {
        units.push(unit);
    }
    units
}

impl PlannedInput {
    /// Standard input: read from its start to its end, nothing recorded.
    fn stdin() -> PlannedInput {
        PlannedInput {
            source: Source::Stdin,
            start: 0,
            end: u64::MAX,
            expected_offset: 0,
            skip: 0,
            retract: 0,
            other_names: Vec::new(),
            expected_decoded: 0,
            head: Head::default(),
            note: None,
            retire: None,
        }
    }
}

/// Cuts `start..end` of a plain file into newline-aligned pieces of about `piece_bytes`.
fn split(
    file: &File,
    input: usize,
    start: u64,
    end: u64,
    piece_bytes: u64,
    out: &mut Vec<Piece>,
) -> anyhow::Result<()> {
    let mut at = start;
    while at < end {
        let cut = match at.checked_add(piece_bytes) {
            Some(target) if target < end => next_line_start(file, target, end)?,
            _ => end,
        };
        out.push(Piece {
            input,
            start: at,
            end: cut,
        });
        at = cut;
    }
    Ok(())
}

/// The offset just after the first newline at or after `from` (or `end` if there is none).
fn next_line_start(file: &File, from: u64, end: u64) -> anyhow::Result<u64> {
    let mut buffer = vec![0; 64 * 1024];
    let mut at = from;
    while at < end {
        let want = buffer.len().min((end - at) as usize);
        let read = file.read_at(&mut buffer[..want], at)?;
        if read == 0 {
            break;
        }
        if let Some(i) = memchr::memchr(b'\n', &buffer[..read]) {
            return Ok(at + i as u64 + 1);
        }
        at += read as u64;
    }
    Ok(end)
}

/// The offset just after the last newline in `start..size` (`start` when there is none).
pub fn end_of_last_line(file: &File, start: u64, size: u64) -> anyhow::Result<u64> {
    let mut buffer = vec![0; 64 * 1024];
    let mut end = size;
    while end > start {
        let len = buffer.len().min((end - start) as usize);
        let from = end - len as u64;
        file.read_exact_at(&mut buffer[..len], from)?;
        if let Some(i) = memchr::memrchr(b'\n', &buffer[..len]) {
            return Ok(from + i as u64 + 1);
        }
        end = from;
    }
    Ok(start)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_with(content: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        std::fs::File::create(&path)
            .unwrap()
            .write_all(content.as_bytes())
            .unwrap();
        (dir, path)
    }

    #[test]
    fn pieces_cover_the_file_exactly_and_end_on_line_boundaries() {
        let content: String = (0..1000).map(|i| format!("line {i}\n")).collect();
        let (_dir, path) = file_with(&content);
        let sources = vec![Source::file(&path).unwrap()];
        let plan = plan(found(sources), &Known::default(), 100, false).unwrap();
        let pieces: Vec<Piece> = plan.units.iter().flatten().copied().collect();
        assert!(pieces.len() > 10);
        assert_eq!(pieces[0].start, 0);
        assert_eq!(pieces.last().unwrap().end, content.len() as u64);
        for pair in pieces.windows(2) {
            assert_eq!(pair[0].end, pair[1].start);
            assert_eq!(content.as_bytes()[pair[0].end as usize - 1], b'\n');
        }
    }

    #[test]
    fn follow_mode_leaves_a_partial_last_line() {
        let (_dir, path) = file_with("a\nb\npartial");
        let plan = plan(
            found(vec![Source::file(&path).unwrap()]),
            &Known::default(),
            1 << 20,
            true,
        )
        .unwrap();
        assert_eq!(plan.inputs[0].end, 4);
        let batch = super::plan(
            found(vec![Source::file(&path).unwrap()]),
            &Known::default(),
            1 << 20,
            false,
        )
        .unwrap();
        assert_eq!(batch.inputs[0].end, 11);
    }

    fn found(sources: Vec<Source>) -> Found {
        Found {
            sources,
            ..Found::default()
        }
    }

    /// The files found, by their paths below `root`.
    fn names_below(root: &Path, found: &Found) -> Vec<String> {
        found
            .sources
            .iter()
            .map(|source| source.path().unwrap().strip_prefix(root).unwrap())
            .map(|path| path.display().to_string())
            .collect()
    }

    #[test]
    fn a_walk_reads_each_file_once_skips_hidden_ones_and_does_not_follow_a_link_back_up() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
        std::fs::create_dir_all(root.join(".hidden")).unwrap();
        for name in [
            "a.log",
            "sub/b.log",
            "sub/deeper/c.log",
            ".hidden/d.log",
            "sub/.e.log",
        ] {
            std::fs::write(root.join(name), "x\n").unwrap();
        }
        std::fs::write(root.join("sub/notes.txt"), "x\n").unwrap();
        // A link to a directory above it: followed naively, the walk would never end.
        std::os::unix::fs::symlink(root, root.join("sub/deeper/up")).unwrap();
        let pattern = name_pattern(Some("*.log")).unwrap();
        let mut found = Found::default();
        walk(root, pattern.as_ref(), &mut found);
        let mut names = names_below(root, &found);
        names.sort();
        assert_eq!(names, ["a.log", "sub/b.log", "sub/deeper/c.log"]);
        assert!(found.problems.is_empty(), "{:?}", found.problems);
    }

    #[test]
    fn a_pattern_matches_as_a_shell_would() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
        for name in [
            "a.log",
            "b.txt",
            "sub/c.log",
            "sub/d.log.gz",
            "sub/deeper/e.log.gz",
        ] {
            std::fs::write(root.join(name), "x\n").unwrap();
        }
        let matched = |pattern: &str| {
            let found = discover(&[format!("{}/{pattern}", root.display())], None).unwrap();
            (names_below(root, &found), found.problems)
        };
        assert_eq!(matched("*.log").0, ["a.log"], "`*` does not cross a `/`");
        assert_eq!(matched("sub/*.log*").0, ["sub/c.log", "sub/d.log.gz"]);
        assert_eq!(
            matched("**/*.gz").0,
            ["sub/d.log.gz", "sub/deeper/e.log.gz"]
        );
        assert_eq!(matched("{a,b}.*").0, ["a.log", "b.txt"]);
        let (names, problems) = matched("*.csv");
        assert!(names.is_empty());
        assert_eq!(problems.len(), 1);
        assert!(problems[0].starts_with("no file matches"), "{problems:?}");
        let invalid = discover(&[format!("{}/[a.log", root.display())], None);
        assert!(invalid.unwrap_err().to_string().contains("invalid pattern"));
    }
}
