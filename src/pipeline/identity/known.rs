//! The progress rows known, and the keys they are stored under.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::fingerprint::{FNV_START, Head, fnv_step};
use crate::errors::shown_path;
use crate::store::{FileId, OtherName, StoredProgress};

/// The identity of the file `metadata` describes.
pub fn file_id(metadata: &std::fs::Metadata) -> FileId {
    FileId {
        device: metadata.dev(),
        inode: metadata.ino(),
    }
}

/// The prefix of the names progress rows are kept under once their path names another file.
const RETIRED: &str = "retired:";

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
pub(super) fn is_compressed_key(key: &str) -> bool {
    key_path(key).extension().is_some_and(|e| e == "gz")
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
    pub(super) fn beginning(
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
