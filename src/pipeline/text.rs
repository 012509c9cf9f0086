//! Whether a file found in a directory is text: a NUL byte in its first 4 KiB (decompressed, for
//! `.gz`) says it is not (an image, a database, an archive), and it is not read as a log.
//!
//! Each file is judged once per process while it stays as it was judged: a rescan of thousands of
//! followed files opens none of them again, and a file left out is noted once.

use std::collections::HashMap;
use std::fs::{File, Metadata};
use std::path::Path;
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use super::identity::{HEAD_BYTES, file_id, first_content_bytes};
use crate::store::FileId;

/// What a file was judged, and what it looked like then.
#[derive(Clone, Copy, Debug)]
struct Judged {
    text: bool,
    len: u64,
    modified: Option<SystemTime>,
}

/// How a file found in a directory is taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Text,
    /// Not text; `first_time` when this process had not judged it so before (so it is noted once).
    NotText {
        first_time: bool,
    },
}

static JUDGED: Mutex<Option<HashMap<FileId, Judged>>> = Mutex::new(None);

/// Judges the file at `path`, whose metadata is `metadata`. A file that cannot be opened is
/// taken as text: reading it says what is wrong with it.
pub fn judge(path: &Path, gzip: bool, metadata: &Metadata) -> Verdict {
    let id = file_id(metadata);
    let (len, modified) = (metadata.len(), metadata.modified().ok());
    let mut judged = JUDGED.lock().unwrap_or_else(PoisonError::into_inner);
    let judged = judged.get_or_insert_with(HashMap::new);
    let before = judged.get(&id).copied();
    if let Some(before) = before {
        // Unchanged, or a text file whose first 4 KiB were whole and that only grew since.
        let unchanged = before.len == len && before.modified == modified;
        let grown_text = before.text && before.len >= HEAD_BYTES && len >= before.len;
        if unchanged || grown_text {
            return match before.text {
                true => Verdict::Text,
                false => Verdict::NotText { first_time: false },
            };
        }
    }
    let text = match File::open(path) {
        Ok(file) => !first_content_bytes(&file, gzip, HEAD_BYTES).contains(&0),
        Err(_) => true,
    };
    judged.insert(
        id,
        Judged {
            text,
            len,
            modified,
        },
    );
    match text {
        true => Verdict::Text,
        false => Verdict::NotText {
            first_time: before.is_none_or(|before| before.text),
        },
    }
}

/// The note that names the files left out as not text (at most `SHOWN` of them by name).
pub fn note(names: &[String]) -> Option<String> {
    const SHOWN: usize = 10;
    if names.is_empty() {
        return None;
    }
    let mut listed = names[..names.len().min(SHOWN)].join(", ");
    if names.len() > SHOWN {
        listed.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    Some(format!(
        "{} file(s) in the directories given are not text (a NUL byte in the first 4 KiB) and \
         are not read as logs: {listed}",
        names.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judged(path: &Path) -> Verdict {
        judge(path, false, &std::fs::metadata(path).unwrap())
    }

    #[test]
    fn a_nul_in_the_first_4_kib_makes_a_file_not_text_once() {
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("a.log");
        std::fs::write(&text, "2024-09-15 20:51:37 cust_1 /a 200 0.1\n").unwrap();
        assert_eq!(judged(&text), Verdict::Text);
        let binary = dir.path().join("b.png");
        std::fs::write(&binary, b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR").unwrap();
        assert_eq!(judged(&binary), Verdict::NotText { first_time: true });
        assert_eq!(judged(&binary), Verdict::NotText { first_time: false });
        // A NUL past the first 4 KiB is a line's business (rejected as it is read).
        let late = dir.path().join("c.log");
        let mut bytes = vec![b'x'; HEAD_BYTES as usize];
        bytes.extend_from_slice(b"\0\n");
        std::fs::write(&late, bytes).unwrap();
        assert_eq!(judged(&late), Verdict::Text);
    }

    #[test]
    fn a_file_judged_again_once_it_changed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("grows.log");
        std::fs::write(&path, "short\n").unwrap();
        assert_eq!(judged(&path), Verdict::Text);
        std::fs::write(&path, b"short\n\0binary now").unwrap();
        assert_eq!(judged(&path), Verdict::NotText { first_time: true });
    }

    #[test]
    fn compressed_files_are_judged_by_their_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.log.gz");
        let mut gzip = flate2::write::GzEncoder::new(
            File::create(&path).unwrap(),
            flate2::Compression::fast(),
        );
        std::io::Write::write_all(&mut gzip, b"2024-09-15 20:51:37 cust_1 /a 200 0.1\n").unwrap();
        gzip.finish().unwrap();
        assert_eq!(
            judge(&path, true, &std::fs::metadata(&path).unwrap()),
            Verdict::Text
        );
    }

    #[test]
    fn the_note_names_a_few_and_counts_the_rest() {
        assert_eq!(note(&[]), None);
        let names: Vec<String> = (0..12).map(|i| format!("f{i}")).collect();
        let note = note(&names).unwrap();
        assert!(note.starts_with("12 file(s)"), "{note}");
        assert!(note.ends_with("f9 and 2 more"), "{note}");
    }
}
