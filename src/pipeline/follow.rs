//! Follow mode: after the backlog, each worker tails the files it owns (by a hash of the path), once
//! per flush interval. Appended complete lines are read; a partial last line waits for its newline;
//! a rotated file (renamed, then recreated) is drained before the new one is read from its start;
//! a truncated file is read again from its start; new files in followed directories are picked up.

use std::collections::BTreeMap;
use std::fs::File;
use std::hash::{Hash, Hasher};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use rustc_hash::FxHasher;

use super::aggregate::Aggregator;
use super::dataflow::Job;
use super::reader::read_range;
use super::source::{self, HEAD_BYTES, Head, Resume, Source, end_of_last_line};
use crate::store::FileProgress;

/// The files one worker tails.
pub(super) struct Follower<'a> {
    job: &'a Job,
    index: usize,
    peers: usize,
    pattern: Option<glob::Pattern>,
    files: BTreeMap<String, Followed>,
}

struct Followed {
    path: PathBuf,
    file: File,
    inode: u64,
    offset: u64,
    /// What the stored progress row holds (once the last epoch commits).
    committed: u64,
    head: Head,
}

impl<'a> Follower<'a> {
    /// Starts where the backlog plan ended for every file this worker owns.
    pub fn new(
        job: &'a Job,
        index: usize,
        peers: usize,
        pattern: Option<glob::Pattern>,
    ) -> Follower<'a> {
        let mut follower = Follower {
            job,
            index,
            peers,
            pattern,
            files: BTreeMap::new(),
        };
        for input in &job.plan.inputs {
            let Source::File {
                path,
                key,
                gzip: false,
            } = &input.source
            else {
                continue;
            };
            if !follower.owns(key) {
                continue;
            }
            let Ok(file) = File::open(path) else { continue };
            let Ok(meta) = file.metadata() else { continue };
            let committed = if input.end > input.start {
                input.end
            } else {
                input.expected_offset
            };
            follower.files.insert(
                key.clone(),
                Followed {
                    path: path.clone(),
                    file,
                    inode: meta.ino(),
                    offset: input.end,
                    committed,
                    head: input.head,
                },
            );
        }
        follower
    }

    fn owns(&self, key: &str) -> bool {
        let mut hasher = FxHasher::default();
        key.hash(&mut hasher);
        hasher.finish() % self.peers as u64 == self.index as u64
    }

    /// Reads what was appended since the last poll; returns the progress to commit with it.
    pub fn poll(
        &mut self,
        aggregator: &mut Aggregator,
        bytes_read: &AtomicU64,
    ) -> anyhow::Result<Vec<FileProgress>> {
        self.discover_new_files()?;
        let mut progress = Vec::new();
        let mut on_bytes = |n| {
            bytes_read.fetch_add(n, Ordering::Relaxed);
        };
        for (key, followed) in &mut self.files {
            let name = followed.path.display().to_string();
            aggregator.set_source(&name);
            let from = followed.offset;
            let mut restarted = false;
            match std::fs::metadata(&followed.path) {
                Ok(meta) if meta.ino() != followed.inode => {
                    // Rotated: finish the old file (all of it: nobody appends to it any more), then
                    // start the new one.
                    let old_end = followed.file.metadata()?.len();
                    read_range(
                        followed.file.try_clone()?,
                        followed.offset,
                        old_end,
                        aggregator,
                        &mut on_bytes,
                    )?;
                    tracing::info!("{name} was rotated: reading the new file from its start");
                    followed.file = File::open(&followed.path)?;
                    followed.inode = meta.ino();
                    followed.offset = 0;
                    followed.head = Head::default();
                    restarted = true;
                }
                Ok(meta) if meta.len() < followed.offset => {
                    tracing::warn!("{name} was truncated: reading it again from its start");
                    followed.offset = 0;
                    followed.head = Head::default();
                    restarted = true;
                }
                Ok(_) => {}
                Err(_) => continue, // renamed away and not recreated yet
            }
            let size = followed.file.metadata()?.len();
            let end = end_of_last_line(&followed.file, followed.offset, size)?;
            if end > followed.offset {
                read_range(
                    followed.file.try_clone()?,
                    followed.offset,
                    end,
                    aggregator,
                    &mut on_bytes,
                )?;
                followed.offset = end;
            }
            if followed.head.len < HEAD_BYTES.min(followed.offset) {
                followed.head = Head::of(&mut followed.file, followed.offset)?;
            }
            if followed.offset != followed.committed || restarted {
                progress.push(FileProgress {
                    path: key.clone(),
                    expected_offset: followed.committed,
                    from: if restarted { 0 } else { from },
                    offset: followed.offset,
                    head_hash: followed.head.hash,
                    head_len: followed.head.len,
                });
                followed.committed = followed.offset;
            }
        }
        Ok(progress)
    }

    /// Starts following files that appeared in the followed paths.
    fn discover_new_files(&mut self) -> anyhow::Result<()> {
        let sources = match source::discover(&self.job.config.inputs, self.pattern.as_ref()) {
            Ok(sources) => sources,
            Err(error) => {
                tracing::debug!("rescanning inputs: {error:#}");
                return Ok(());
            }
        };
        for source in sources {
            let Source::File {
                path,
                key,
                gzip: false,
            } = source
            else {
                continue;
            };
            if self.files.contains_key(&key) || !self.owns(&key) {
                continue;
            }
            let Ok(mut file) = File::open(&path) else {
                continue;
            };
            let meta = file.metadata()?;
            let resume = Resume::decide(&mut file, meta.len(), self.job.stored.get(&key))?;
            if let Some(note) = &resume.note {
                tracing::warn!("{}: {note}", path.display());
            }
            tracing::info!("following new file {}", path.display());
            self.files.insert(
                key,
                Followed {
                    path,
                    file,
                    inode: meta.ino(),
                    offset: resume.start,
                    committed: resume.expected_offset,
                    head: Head::default(),
                },
            );
        }
        Ok(())
    }
}
