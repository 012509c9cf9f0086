//! The store for synchronous callers (the ingestion's threads): a [`Store`] together with the
//! single-threaded runtime that drives it, so that each call blocks until the database answers.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::{CommitBatch, GroupDelta, Store, StoredProgress, Written};

/// A [`Store`] whose methods block. It may move to another thread (the committer's) and be used
/// there: its runtime goes with it.
pub struct BlockingStore {
    runtime: tokio::runtime::Runtime,
    store: Store,
}

impl BlockingStore {
    /// Connects to `url` (and applies pending migrations), as [`Store::connect`].
    pub fn connect(url: &str) -> anyhow::Result<BlockingStore> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let store = runtime.block_on(Store::connect(url))?;
        Ok(BlockingStore { runtime, store })
    }

    /// How far every file has been ingested.
    pub fn progress(&self) -> anyhow::Result<BTreeMap<String, StoredProgress>> {
        self.runtime.block_on(self.store.progress())
    }

    /// The files this store writes (never to be read as logs).
    pub fn own_files(&self) -> Vec<PathBuf> {
        self.store.own_files()
    }

    /// See [`Store::holds_any_day`].
    pub fn holds_any_day(&self) -> anyhow::Result<bool> {
        self.runtime.block_on(self.store.holds_any_day())
    }

    /// Commits a batch and its groups (in key order) in one transaction, as
    /// [`Store::commit_sorted`].
    pub fn commit_sorted(
        &self,
        batch: CommitBatch,
        groups: impl Iterator<Item = anyhow::Result<GroupDelta>> + Send,
    ) -> anyhow::Result<Written> {
        self.runtime
            .block_on(self.store.commit_sorted(batch, groups))
    }
}

impl Drop for BlockingStore {
    fn drop(&mut self) {
        self.runtime.block_on(self.store.close());
    }
}
