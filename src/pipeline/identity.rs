//! What a file is and where it stands: the one place that decides, for ingestion, following and
//! shipping alike, whether a file found now is one already ingested and from where to go on.
//!
//! A file is known by its content, as log rotation demands. Every scheme of logrotate keeps a
//! file's bytes, whatever happens to its name and inode: a renamed file (`app.log` -> `app.log.1`,
//! `dateext`) keeps them; a copy (`copytruncate`) has them; a compressed file (`compress`,
//! `delaycompress`) has them once decompressed. So a file whose first bytes and whose bytes before
//! an ingested offset are those of a progress row continues from that row, under any name. A row
//! whose path comes to name another file is not forgotten: it is kept under a retired name
//! ([`retired_key`]), so that the file it described is still known when it turns up later
//! (compressed, or copied elsewhere).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use crate::errors::shown_path;
use crate::store::{FileId, OtherName, StoredProgress};

/// How many leading bytes are fingerprinted.
pub const HEAD_BYTES: u64 = 4096;

/// The prefix of the names progress rows are kept under once their path names another file.
const RETIRED: &str = "retired:";

/// The identity of the file `metadata` describes.
pub fn file_id(metadata: &std::fs::Metadata) -> FileId {
    FileId {
        device: metadata.dev(),
        inode: metadata.ino(),
    }
}

/// The text a path's progress row is stored under, byte for byte: the path itself when it is
/// UTF-8 (as every row before held); otherwise `bytes:` and the hex of its bytes (an absolute
/// path starts with `/`, so the two never meet).
pub fn progress_key(path: &Path) -> String {
    let bytes = path.as_os_str().as_bytes();
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_string(),
        Err(_) => {
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            format!("bytes:{hex}")
        }
    }
}

/// The name `row`, stored under `key`, is kept under once `key`'s path names another file: it
/// says which content it was (first bytes and offset), and where it was read.
pub fn retired_key(key: &str, row: &StoredProgress) -> String {
    format!(
        "{RETIRED}{:016x}:{}:{}",
        row.head_hash,
        row.offset,
        original_key(key)
    )
}

/// The key a row had before it was retired (the key itself when it was not).
fn original_key(key: &str) -> &str {
    match key.strip_prefix(RETIRED) {
        Some(rest) => rest.splitn(3, ':').nth(2).unwrap_or(rest),
        None => key,
    }
}

/// Whether `key` names a retired row (see [`retired_key`]).
pub fn is_retired(key: &str) -> bool {
    key.starts_with(RETIRED)
}

/// The path a progress key stands for (see [`progress_key`]; a retired key stands for the path
/// it was read under).
pub fn key_path(key: &str) -> PathBuf {
    let key = original_key(key);
    let bytes = key
        .strip_prefix("bytes:")
        .and_then(|hex| {
            (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
                .collect::<Option<Vec<u8>>>()
        })
        .unwrap_or_else(|| key.as_bytes().to_vec());
    PathBuf::from(std::ffi::OsStr::from_bytes(&bytes))
}

/// A progress key as people see it.
pub fn shown_key(key: &str) -> String {
    shown_path(&key_path(key))
}

/// Whether `key` is a file's (an absolute path, its bytes in hex, or a retired file's), not a
/// stream's.
fn is_file_key(key: &str) -> bool {
    key.starts_with('/') || key.starts_with("bytes:") || is_retired(key)
}

/// Whether the row under `key` is a compressed file's (its offsets count compressed bytes).
fn is_compressed_key(key: &str) -> bool {
    key_path(key).extension().is_some_and(|e| e == "gz")
}

/// FNV-1a: stable across versions and platforms.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_START, |hash, &b| fnv_step(hash, b))
}

const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

fn fnv_step(hash: u64, byte: u8) -> u64 {
    (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
}

/// A fingerprint of a file's first bytes (FNV-1a, stable across versions and platforms).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Head {
    pub hash: u64,
    pub len: u64,
}

impl Head {
    /// The fingerprint of the first `min(limit, HEAD_BYTES)` bytes of `file` (as stored: for a
    /// compressed file, its compressed bytes).
    pub fn of(file: &File, limit: u64) -> io::Result<Head> {
        let mut bytes = vec![0; limit.min(HEAD_BYTES) as usize];
        let len = read_fully_at(file, &mut bytes, 0)?;
        Ok(Head::of_bytes(&bytes[..len]))
    }

    pub fn of_bytes(bytes: &[u8]) -> Head {
        Head {
            hash: fnv1a(bytes),
            len: bytes.len() as u64,
        }
    }

    /// The fingerprint of the (up to) [`HEAD_BYTES`] bytes before `offset` of a plain file.
    pub fn before(file: &File, offset: u64) -> io::Result<u64> {
        let len = offset.min(HEAD_BYTES);
        let mut bytes = vec![0; len as usize];
        file.read_exact_at(&mut bytes, offset - len)?;
        Ok(fnv1a(&bytes))
    }

    /// Whether this is the fingerprint `stored` holds.
    pub fn is(&self, stored: &StoredProgress) -> bool {
        self.hash == stored.head_hash && self.len == stored.head_len
    }
}

/// Reads from `offset` until `buffer` is full or the file ends; returns the bytes read.
fn read_fully_at(file: &File, buffer: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read_at(&mut buffer[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}

/// A file read from its start without moving its shared offset.
struct FromStart<'a> {
    file: &'a File,
    at: u64,
}

impl Read for FromStart<'_> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let read = self.file.read_at(buffer, self.at)?;
        self.at += read as u64;
        Ok(read)
    }
}

/// A compressed file's decompressed bytes, from its start.
fn decompressed(file: &File) -> impl Read + '_ {
    MultiGzDecoder::new(io::BufReader::with_capacity(
        64 * 1024,
        FromStart { file, at: 0 },
    ))
}

/// Up to `limit` bytes of `reader`: as many as it gives before its end or an error (a compressed
/// file still being written breaks off; what came before counts).
fn first_of(reader: impl Read, limit: u64) -> Vec<u8> {
    first_of_checked(reader, limit).0
}

/// [`first_of`], and whether `reader` broke off (an error) before `limit` bytes.
fn first_of_checked(reader: impl Read, limit: u64) -> (Vec<u8>, bool) {
    let mut bytes = Vec::new();
    let mut reader = reader.take(limit);
    let mut block = [0; 8192];
    loop {
        match reader.read(&mut block) {
            Ok(0) => return (bytes, false),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return (bytes, true),
            Ok(n) => bytes.extend_from_slice(&block[..n]),
        }
    }
}

/// The fingerprint of the first `min(limit, HEAD_BYTES)` bytes of what a file's lines are read
/// from: its bytes, or, when it is compressed, its decompressed bytes (as far as they go).
pub fn content_head(file: &File, gzip: bool, limit: u64) -> io::Result<Head> {
    match gzip {
        false => Head::of(file, limit),
        true => Ok(Head::of_bytes(&first_of(
            decompressed(file),
            limit.min(HEAD_BYTES),
        ))),
    }
}

/// [`content_head`], or `None` for a compressed file that breaks off before `limit` bytes (or
/// [`HEAD_BYTES`]): still being written, it cannot be told yet.
pub fn whole_content_head(file: &File, gzip: bool, limit: u64) -> io::Result<Option<Head>> {
    if !gzip {
        return Head::of(file, limit).map(Some);
    }
    let (first, broke) = first_of_checked(decompressed(file), limit.min(HEAD_BYTES));
    Ok((!broke).then(|| Head::of_bytes(&first)))
}

/// A name of a file's content that stays as the file grows, is renamed, copied or compressed:
/// the fingerprint of its first line (of its first [`HEAD_BYTES`] when that line is longer).
/// `None` while the file has no complete first line.
pub fn first_line_of(file: &File, gzip: bool) -> Option<u64> {
    let first = match gzip {
        false => first_of(FromStart { file, at: 0 }, HEAD_BYTES),
        true => first_of(decompressed(file), HEAD_BYTES),
    };
    match memchr::memchr(b'\n', &first) {
        Some(end) => Some(fnv1a(&first[..end])),
        None if first.len() as u64 == HEAD_BYTES => Some(fnv1a(&first)),
        None => None,
    }
}

/// What a compressed file holds before an offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Before {
    /// The fingerprint of the (up to) [`HEAD_BYTES`] decompressed bytes before it.
    Hash(u64),
    /// Its stream ends whole before the offset.
    Shorter,
    /// Its stream breaks off before the offset: still being written, or damaged.
    Broken,
}

/// What the decompressed bytes of a compressed file hold before `offset`.
fn decompressed_before(file: &File, offset: u64) -> Before {
    let skip = offset.saturating_sub(HEAD_BYTES);
    let mut reader = decompressed(file);
    let mut last = Vec::new();
    let read = io::copy(&mut (&mut reader).take(skip), &mut io::sink())
        .and_then(|_| (&mut reader).take(offset - skip).read_to_end(&mut last));
    match read {
        Err(_) => Before::Broken,
        Ok(_) if skip + (last.len() as u64) < offset => Before::Shorter,
        Ok(_) => Before::Hash(fnv1a(&last)),
    }
}

/// The progress rows known: those stored, and those this run has recorded since. Indexed by
/// first bytes and by file, so that a run over many files stays linear in their number.
#[derive(Clone, Debug, Default)]
pub struct Known {
    rows: BTreeMap<String, StoredProgress>,
    by_head: HashMap<Head, Vec<String>>,
    head_lens: BTreeSet<u64>,
    by_file: HashMap<FileId, Vec<String>>,
}

impl Known {
    pub fn new(rows: BTreeMap<String, StoredProgress>) -> Known {
        let mut known = Known::default();
        for (key, row) in rows {
            known.record(key, row);
        }
        known
    }

    pub fn rows(&self) -> &BTreeMap<String, StoredProgress> {
        &self.rows
    }

    pub fn get(&self, key: &str) -> Option<&StoredProgress> {
        self.rows.get(key)
    }

    /// What the row under `key` holds from now on.
    pub fn record(&mut self, key: String, row: StoredProgress) {
        self.forget(&key);
        if !is_file_key(&key) {
            self.rows.insert(key, row);
            return;
        }
        if row.head_len > 0 && (row.offset > 0 || row.decoded > 0) {
            let head = Head {
                hash: row.head_hash,
                len: row.head_len,
            };
            self.by_head.entry(head).or_default().push(key.clone());
            self.head_lens.insert(row.head_len);
        }
        if row.file.is_known() {
            self.by_file.entry(row.file).or_default().push(key.clone());
        }
        self.rows.insert(key, row);
    }

    /// Keeps the row under `key` (another file's, now that its path names a new one) under the
    /// name `retired`, as the store does ([`crate::store::FileCheckpoint::retire`]).
    pub fn retire_as(&mut self, key: &str, retired: &str) {
        let Some(row) = self.rows.get(key).copied() else {
            return;
        };
        self.forget(key);
        if !self.rows.contains_key(retired) {
            let row = StoredProgress {
                file: FileId::default(),
                ..row
            };
            self.record(retired.to_string(), row);
        }
    }

    fn forget(&mut self, key: &str) {
        let Some(old) = self.rows.remove(key) else {
            return;
        };
        let unlist = |keys: Option<&mut Vec<String>>| {
            if let Some(keys) = keys {
                keys.retain(|k| k != key);
            }
        };
        unlist(self.by_head.get_mut(&Head {
            hash: old.head_hash,
            len: old.head_len,
        }));
        unlist(self.by_file.get_mut(&old.file));
    }

    /// The rows other than `key`'s that belong to the file `id`: linked when their path still
    /// names that file (a hard link).
    pub fn other_names(&self, key: &str, id: FileId) -> Vec<OtherName> {
        if !id.is_known() {
            return Vec::new();
        }
        let keys = self.by_file.get(&id).map_or(&[][..], Vec::as_slice);
        let mut names: Vec<OtherName> = keys
            .iter()
            .filter(|path| *path != key)
            .map(|path| OtherName {
                path: path.clone(),
                offset: self.rows[path].offset,
                linked: !is_retired(path)
                    && std::fs::metadata(key_path(path)).is_ok_and(|m| file_id(&m) == id),
            })
            .collect();
        names.sort_by(|a, b| a.path.cmp(&b.path));
        names
    }

    /// The rows (other than `key`'s) whose fingerprinted first bytes begin `first`, of
    /// compressed files or of plain ones.
    fn beginning(
        &self,
        first: &[u8],
        key: &str,
        compressed: bool,
    ) -> Vec<(&String, &StoredProgress)> {
        let mut found = Vec::new();
        let Some(&longest) = self.head_lens.last() else {
            return found;
        };
        let mut hash = FNV_START;
        let mut lens = self.head_lens.iter().copied().peekable();
        for len in 0..=(first.len() as u64).min(longest) {
            if len > 0 {
                hash = fnv_step(hash, first[len as usize - 1]);
            }
            while lens.next_if(|&l| l < len).is_some() {}
            if lens.peek() != Some(&len) {
                continue;
            }
            for path in self.by_head.get(&Head { hash, len }).into_iter().flatten() {
                if path != key && is_compressed_key(path) == compressed {
                    found.push((path, &self.rows[path]));
                }
            }
        }
        found
    }
}

/// Where to resume a file, given the progress known.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resume {
    pub start: u64,
    /// A last line counted without its newline, at `start` (in a compressed file: the bytes
    /// after the `skip` ones): taken back, then read again whole.
    pub retract: u64,
    /// Decompressed bytes already ingested after `start` (compressed files).
    pub skip: u64,
    pub expected_offset: u64,
    pub expected_decoded: u64,
    pub note: Option<String>,
    /// The other rows of this file (same device and inode).
    pub other_names: Vec<OtherName>,
    /// The row under this file's own name describes another file: kept under this retired name.
    pub retire: Option<String>,
}

impl Resume {
    /// Continues where the stored progress of `key` left off when it is the same file: not
    /// shorter than the offset, with the same first bytes and the same bytes before the offset,
    /// and the same device and inode where the row has them (a file of 4 KiB or more whose
    /// fingerprint matches may have moved: a restored copy, a renumbered device). Otherwise,
    /// continues where another row left off whose file this is by its content (renamed, copied,
    /// compressed: [`continued_by_content`]); otherwise the file is new, read from 0.
    pub fn decide(
        file: &File,
        gzip: bool,
        size: u64,
        key: &str,
        id: FileId,
        known: &Known,
    ) -> io::Result<Resume> {
        let own = known.get(key);
        let mut resume = Resume {
            other_names: known.other_names(key, id),
            expected_offset: own.map_or(0, |p| p.offset),
            expected_decoded: own.map_or(0, |p| p.decoded),
            ..Resume::default()
        };
        let note = match own {
            None => None,
            Some(p) if size < p.offset => {
                Some("shrank below the bytes already ingested; read again as a new file")
            }
            Some(p) if !Head::of(file, p.head_len)?.is(p) => {
                Some("its first bytes changed since the last ingestion; read again as a new file")
            }
            Some(p) if p.end_hash != 0 && Head::before(file, p.offset)? != p.end_hash => Some(
                "its bytes before the part already ingested changed (rewritten in place); read \
                 again as a new file",
            ),
            // Same first bytes, another inode: with a full fingerprint, the same file moved to
            // another device or restored from a copy; with a shorter one, a short file replaced
            // by another that begins alike.
            Some(p) if p.file.is_known() && p.file != id && p.head_len < HEAD_BYTES => {
                Some("is another file than the one ingested under this name; read as a new file")
            }
            Some(p) => {
                return Ok(Resume {
                    start: p.offset - p.tail,
                    retract: p.tail,
                    skip: p.decoded,
                    ..resume
                });
            }
        };
        if let Some(p) = own.filter(|p| p.offset > 0 || p.decoded > 0) {
            resume.retire = Some(retired_key(key, p));
        }
        if let Some((from, found)) = continued_by_content(file, gzip, size, key, id, known)? {
            let note = match from {
                None => "breaks off within its first 4 KiB (being compressed?): too short yet to \
                         tell which file it is; read once it is whole"
                    .to_string(),
                Some(from) if gzip && found.start >= size && !is_compressed_key(from) => format!(
                    "begins as the file ingested as {} but breaks off before its ingested \
                     bytes (being compressed?): read once it is whole",
                    shown_key(from)
                ),
                Some(from) => format!(
                    "is the file ingested as {} ({}): continues after its {} ingested bytes",
                    shown_key(from),
                    match gzip && !is_compressed_key(from) {
                        true => "compressed",
                        false => "renamed or copied",
                    },
                    found.start + found.skip
                ),
            };
            return Ok(Resume {
                note: Some(note),
                ..found.with_expectations(&resume)
            });
        }
        resume.note = note.map(str::to_string);
        Ok(resume)
    }

    /// This resume point with what `decided` expects of the rows (own offset, other names,
    /// the row to retire).
    fn with_expectations(self, decided: &Resume) -> Resume {
        Resume {
            expected_offset: decided.expected_offset,
            expected_decoded: decided.expected_decoded,
            other_names: decided.other_names.clone(),
            retire: decided.retire.clone(),
            ..self
        }
    }
}

/// The row this file continues by its content, and where it resumes: a row of a plain file
/// whose first bytes and bytes before its offset this file's (decompressed) bytes repeat, or a
/// row of a compressed file whose compressed bytes this one's begin with. Of several, the one
/// that has read the most. A row recorded without the bytes before its offset (by an older
/// version) counts only for the very file it was recorded for (same device and inode).
///
/// A compressed file that breaks off before it can be told apart (within its first 4 KiB, or
/// before the bytes a row it begins like ingested) is being written: it resumes at its end (read
/// nothing now), with the row it begins like, if any.
fn continued_by_content<'a>(
    file: &File,
    gzip: bool,
    size: u64,
    key: &str,
    id: FileId,
    known: &'a Known,
) -> io::Result<Option<(Option<&'a String>, Resume)>> {
    let wait = || Resume {
        start: size,
        ..Resume::default()
    };
    let raw = first_of(FromStart { file, at: 0 }, HEAD_BYTES);
    // Of the rows found, the one that read the most (in decompressed bytes for a compressed file;
    // a compressed file's row read whole read it all).
    let mut best: Option<(u64, &String, Resume)> = None;
    fn consider<'a>(
        best: &mut Option<(u64, &'a String, Resume)>,
        found: (u64, &'a String, Resume),
    ) {
        if best.as_ref().is_none_or(|(most, ..)| *most < found.0) {
            *best = Some(found);
        }
    }
    // The same bytes as stored: a renamed or copied plain file, a renamed compressed one.
    for (from, row) in known.beginning(&raw, key, gzip) {
        let verified = if row.end_hash != 0 && !gzip {
            row.offset <= size && Head::before(file, row.offset)? == row.end_hash
        } else {
            row.offset <= size
                && (row.file == id
                    || row.head_len >= row.offset
                    || (gzip && row.head_len == HEAD_BYTES))
        };
        if verified {
            let read = match gzip {
                true if row.offset > 0 => u64::MAX,
                true => row.decoded,
                false => row.offset,
            };
            let resume = Resume {
                start: row.offset - row.tail,
                retract: row.tail,
                skip: row.decoded,
                ..Resume::default()
            };
            consider(&mut best, (read, from, resume));
        }
    }
    // A compressed file whose decompressed bytes are those of a plain file ingested.
    if gzip {
        let (first, broke) = first_of_checked(decompressed(file), HEAD_BYTES);
        if broke && best.is_none() {
            return Ok(Some((None, wait())));
        }
        for (from, row) in known.beginning(&first, key, false) {
            let verified = match (row.end_hash, decompressed_before(file, row.offset)) {
                (_, Before::Broken) if best.is_none() => return Ok(Some((Some(from), wait()))),
                (_, Before::Broken) => false,
                (0, before) => row.head_len >= row.offset && before != Before::Shorter,
                (hash, before) => before == Before::Hash(hash),
            };
            if verified {
                let resume = Resume {
                    start: 0,
                    skip: row.offset - row.tail,
                    retract: row.tail,
                    ..Resume::default()
                };
                consider(&mut best, (row.offset - row.tail, from, resume));
            }
        }
    }
    Ok(best.map(|(_, from, resume)| (Some(from), resume)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_with(content: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        std::fs::write(&path, content).unwrap();
        (dir, path)
    }

    fn id_of(path: &Path) -> FileId {
        file_id(&std::fs::metadata(path).unwrap())
    }

    /// The progress row of `path` ingested up to `offset`, fingerprinted over `head_len` bytes.
    fn ingested(path: &Path, offset: u64, head_len: u64) -> StoredProgress {
        let file = File::open(path).unwrap();
        let head = Head::of(&file, head_len).unwrap();
        StoredProgress {
            offset,
            head_hash: head.hash,
            head_len: head.len,
            decoded: 0,
            tail: 0,
            end_hash: Head::before(&file, offset).unwrap(),
            file: id_of(path),
        }
    }

    fn decide(path: &Path, gzip: bool, key: &str, rows: &[(&str, StoredProgress)]) -> Resume {
        let file = File::open(path).unwrap();
        let size = file.metadata().unwrap().len();
        let known = Known::new(rows.iter().map(|(k, r)| (k.to_string(), *r)).collect());
        Resume::decide(&file, gzip, size, key, id_of(path), &known).unwrap()
    }

    fn log_text(lines: usize) -> String {
        (0..lines)
            .map(|i| {
                format!(
                    "2024-09-03T10:{:02}:{:02} cust_{i} GET /x 200 {i}\n",
                    i / 60 % 60,
                    i % 60
                )
            })
            .collect()
    }

    #[test]
    fn stored_progress_resumes_unless_the_file_shrank_or_was_replaced() {
        let (_dir, path) = file_with("first line\nsecond line\n");
        let stored = ingested(&path, 11, 11);
        let own = |row: StoredProgress| decide(&path, false, "/a.log", &[("/a.log", row)]);
        assert_eq!(own(stored).start, 11);
        let old_row = StoredProgress {
            file: FileId::default(),
            end_hash: 0,
            ..stored
        };
        assert_eq!(own(old_row).start, 11, "rows without an inode");
        let resume = own(StoredProgress {
            offset: 100,
            ..stored
        });
        assert_eq!((resume.start, resume.expected_offset), (0, 100));
        assert!(resume.note.unwrap().contains("shrank"));
        assert!(resume.retire.unwrap().starts_with("retired:"));
        let resume = own(StoredProgress {
            head_hash: stored.head_hash ^ 1,
            ..stored
        });
        assert_eq!(resume.start, 0);
        assert!(resume.note.unwrap().contains("changed"));
    }

    #[test]
    fn a_file_with_a_full_fingerprint_that_moved_to_another_inode_continues() {
        let (_dir, path) = file_with(&log_text(200));
        let moved = StoredProgress {
            file: FileId {
                device: 1,
                inode: 2,
            },
            ..ingested(&path, 3000, HEAD_BYTES)
        };
        assert_eq!(
            decide(&path, false, "/a.log", &[("/a.log", moved)]).start,
            3000
        );
    }

    #[test]
    fn a_renamed_or_copied_file_continues_where_its_original_left_off() {
        let (dir, path) = file_with(&log_text(300));
        let row = ingested(&path, 5000, HEAD_BYTES);
        let resume = decide(&path, false, "/app.log.1", &[("/app.log", row)]);
        assert_eq!((resume.start, resume.expected_offset), (5000, 0));
        assert!(resume.note.unwrap().contains("renamed or copied"));
        let copy = dir.path().join("copy.log");
        std::fs::copy(&path, &copy).unwrap();
        assert_eq!(
            decide(&copy, false, "/copy.log", &[("/app.log", row)]).start,
            5000
        );
        // The same first bytes, other bytes before the offset: another file.
        let mut other = log_text(300).into_bytes();
        other[4990] = b'#';
        std::fs::write(&copy, other).unwrap();
        assert_eq!(
            decide(&copy, false, "/copy.log", &[("/app.log", row)]).start,
            0
        );
    }

    #[test]
    fn a_compressed_file_continues_after_the_bytes_ingested_of_its_plain_original() {
        let text = log_text(300);
        let (dir, path) = file_with(&text);
        // The last line was counted without its newline: taken back, then read whole.
        let row = StoredProgress {
            tail: 20,
            ..ingested(&path, 5020, HEAD_BYTES)
        };
        let packed = dir.path().join("app.log.1.gz");
        let mut encoder = flate2::write::GzEncoder::new(
            File::create(&packed).unwrap(),
            flate2::Compression::default(),
        );
        encoder.write_all(text.as_bytes()).unwrap();
        encoder.finish().unwrap();
        let resume = decide(&packed, true, "/app.log.1.gz", &[("/app.log", row)]);
        assert_eq!((resume.start, resume.skip, resume.retract), (0, 5000, 20));
        assert!(resume.note.unwrap().contains("compressed"));
        // Renamed again (app.log.1.gz -> app.log.2.gz) once read whole: nothing more to read.
        let size = std::fs::metadata(&packed).unwrap().len();
        let whole = StoredProgress {
            end_hash: 0,
            ..ingested(&packed, size, HEAD_BYTES)
        };
        let resume = decide(&packed, true, "/app.log.2.gz", &[("/app.log.1.gz", whole)]);
        assert_eq!((resume.start, resume.skip), (size, 0));
    }

    #[test]
    fn the_row_that_read_most_of_a_file_is_the_one_it_continues() {
        let (_dir, path) = file_with(&log_text(300));
        let rows = [
            ("/app.log", ingested(&path, 2000, HEAD_BYTES)),
            ("/b.log", ingested(&path, 6000, HEAD_BYTES)),
            ("/c.log", ingested(&path, 4000, HEAD_BYTES)),
        ];
        assert_eq!(decide(&path, false, "/new.log", &rows).start, 6000);
    }

    #[test]
    fn a_retired_row_is_known_by_content_and_keeps_its_original_name() {
        let (_dir, path) = file_with(&log_text(300));
        let row = ingested(&path, 5000, HEAD_BYTES);
        let mut known = Known::new(BTreeMap::from([("/app.log".to_string(), row)]));
        let retired = retired_key("/app.log", &row);
        known.retire_as("/app.log", &retired);
        assert!(known.get("/app.log").is_none());
        assert!(is_retired(&retired));
        assert_eq!(shown_key(&retired), "/app.log");
        let file = File::open(&path).unwrap();
        let size = file.metadata().unwrap().len();
        let resume = Resume::decide(&file, false, size, "/app.log.1", id_of(&path), &known);
        assert_eq!(resume.unwrap().start, 5000);
    }

    #[test]
    fn many_rows_of_short_fingerprints_are_searched_by_their_lengths() {
        let (_dir, path) = file_with(&log_text(300));
        let mut rows: Vec<(String, StoredProgress)> = (1..200)
            .map(|n| (format!("/short{n}.log"), ingested(&path, n * 7, n * 7)))
            .collect();
        rows.push(("/full.log".into(), ingested(&path, 4500, HEAD_BYTES)));
        let known = Known::new(rows.into_iter().collect());
        let file = File::open(&path).unwrap();
        let size = file.metadata().unwrap().len();
        let resume = Resume::decide(&file, false, size, "/x.log", id_of(&path), &known).unwrap();
        assert_eq!(resume.start, 4500);
    }

    #[test]
    fn non_utf8_names_keep_distinct_keys_and_are_shown_escaped() {
        use std::ffi::OsStr;
        let a = Path::new(OsStr::from_bytes(b"/logs/x\xff.log"));
        let b = Path::new(OsStr::from_bytes(b"/logs/x\xfe.log"));
        assert_ne!(progress_key(a), progress_key(b));
        assert_eq!(progress_key(Path::new("/logs/café.log")), "/logs/café.log");
        assert_eq!(shown_key(&progress_key(a)), "/logs/x\\xff.log");
    }
}
