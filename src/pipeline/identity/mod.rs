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

mod fingerprint;
mod known;

use std::fs::File;
use std::io;

use crate::store::{FileId, OtherName};
use fingerprint::{
    Before, FromStart, decompressed, decompressed_before, first_of, first_of_checked,
};
pub use fingerprint::{
    HEAD_BYTES, Head, content_head, first_content_bytes, first_line_of, whole_content_head,
};
use known::is_compressed_key;
pub use known::{Known, file_id, is_retired, key_path, progress_key, retired_key, shown_key};

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
            // A row of nothing ingested (the file was empty) says nothing of what it holds now: a
            // copy of another file ingested, under an inode freed and taken again, is known by
            // its content below, as a file without a row is.
            Some(p) if p.offset == 0 && p.decoded == 0 => None,
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
    use crate::store::StoredProgress;
    use std::collections::BTreeMap;
    use std::io::Write;
    use std::os::unix::ffi::OsStrExt;
    use std::path::{Path, PathBuf};

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
    fn a_copy_under_a_name_whose_row_read_nothing_continues_its_original() {
        // copytruncate's copy, made under the name of a file that was empty when last seen and
        // whose inode it happens to take again: its row read nothing, the original's read it all.
        let text = log_text(20);
        let len = text.len() as u64;
        let (dir, path) = file_with(&text);
        let original = ingested(&path, len, len);
        let copy = dir.path().join("app.log.1");
        std::fs::copy(&path, &copy).unwrap();
        let empty = StoredProgress {
            offset: 0,
            head_hash: Head::of(&File::open(&copy).unwrap(), 0).unwrap().hash,
            head_len: 0,
            decoded: 0,
            tail: 0,
            end_hash: 0,
            file: id_of(&copy),
        };
        let rows = [("/app.log", original), ("/app.log.1", empty)];
        let resume = decide(&copy, false, "/app.log.1", &rows);
        assert_eq!(resume.start, len, "{resume:?}");
        assert!(resume.note.unwrap().contains("renamed or copied"));
        assert_eq!(
            resume.retire, None,
            "nothing of the empty file's row to keep"
        );
        // Not a copy of anything ingested: read from its start.
        std::fs::write(&copy, log_text(3)).unwrap();
        assert_eq!(
            decide(&copy, false, "/app.log.1", &[("/app.log.1", empty)]).start,
            0
        );
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
