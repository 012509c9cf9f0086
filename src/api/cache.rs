//! A per-process cache of serialized answers, with a freshness guarantee.
//!
//! The guarantee: **an ingestion commit is visible in every answer to a request that starts more
//! than the TTL after the commit finished** (0.5 s by default, never over [`MAX_TTL`] = 1 s). An
//! entry records the instant its database query *started* (not when it ended) and is reused only
//! while that instant is less than the TTL old. A commit that finished before the query started is
//! in the entry; a commit that finished at time `t` while an older entry exists is seen by the
//! first query after that entry expires, at the latest `t + TTL`. An entry never replaces a newer
//! one (a slow query cannot bring old data back). So a new commit shows within 0.5 s, inside the
//! 1 s the API promises, and a hot key costs the database one query per TTL whatever the request
//! rate. The cache is per process: each server instance keeps its own, with the same guarantee.
//!
//! Entries are whole JSON bodies (`Bytes`, shared, never copied); memory is bounded by
//! [`MAX_BYTES`]: when full, expired entries are dropped, then everything.

use std::collections::HashMap;
use std::future::Future;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use chrono::NaiveDate;

/// How long an answer is reused by default.
pub const TTL: Duration = Duration::from_millis(500);

/// The longest reuse allowed: the API promises a commit is visible within 1 s.
pub const MAX_TTL: Duration = Duration::from_secs(1);

/// The most bytes of answers kept.
const MAX_BYTES: usize = 64 << 20;

/// Which answer.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    pub kind: Kind,
    pub customer: String,
    pub from: NaiveDate,
    pub to: NaiveDate,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Days,
    Summary,
}

#[derive(Debug)]
struct Entry {
    started: Instant,
    body: Bytes,
}

#[derive(Debug, Default)]
struct Entries {
    map: HashMap<Key, Entry>,
    bytes: usize,
}

/// The cache (shared by every request of a router).
#[derive(Debug)]
pub struct AnswerCache {
    ttl: Duration,
    entries: RwLock<Entries>,
}

impl Default for AnswerCache {
    fn default() -> AnswerCache {
        AnswerCache::new(TTL)
    }
}

impl AnswerCache {
    /// A cache whose answers live `ttl` (at most [`MAX_TTL`]; zero turns caching off).
    pub fn new(ttl: Duration) -> AnswerCache {
        AnswerCache {
            ttl: ttl.min(MAX_TTL),
            entries: RwLock::default(),
        }
    }

    /// The fresh answer for `key`, or the one `compute` makes now (then kept).
    pub async fn get_or_compute<F, E>(&self, key: Key, compute: F) -> Result<Bytes, E>
    where
        F: Future<Output = Result<Bytes, E>>,
    {
        if self.ttl.is_zero() {
            return compute.await;
        }
        if let Some(body) = self.fresh(&key) {
            return Ok(body);
        }
        let started = Instant::now();
        let body = compute.await?;
        self.insert(key, started, body.clone());
        Ok(body)
    }

    fn fresh(&self, key: &Key) -> Option<Bytes> {
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        entries
            .map
            .get(key)
            .filter(|entry| entry.started.elapsed() < self.ttl)
            .map(|entry| entry.body.clone())
    }

    fn insert(&self, key: Key, started: Instant, body: Bytes) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        if entries
            .map
            .get(&key)
            .is_some_and(|old| old.started >= started)
        {
            return;
        }
        if entries.bytes + body.len() > MAX_BYTES {
            let ttl = self.ttl;
            entries.map.retain(|_, entry| entry.started.elapsed() < ttl);
            entries.bytes = entries.map.values().map(|e| e.body.len()).sum();
            if entries.bytes + body.len() > MAX_BYTES {
                entries.map.clear();
                entries.bytes = 0;
            }
        }
        entries.bytes += body.len();
        if let Some(old) = entries.map.insert(key, Entry { started, body }) {
            entries.bytes -= old.body.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Key {
        Key {
            kind: Kind::Days,
            customer: "c".into(),
            from: NaiveDate::MIN,
            to: NaiveDate::MAX,
        }
    }

    fn answer(text: &'static str) -> std::future::Ready<Result<Bytes, ()>> {
        std::future::ready(Ok(Bytes::from_static(text.as_bytes())))
    }

    #[tokio::test]
    async fn an_answer_is_reused_within_the_ttl_and_recomputed_after() {
        let cache = AnswerCache::default();
        assert_eq!(
            cache.get_or_compute(key(), answer("1")).await,
            Ok("1".into())
        );
        assert_eq!(
            cache.get_or_compute(key(), answer("2")).await,
            Ok("1".into())
        );
        tokio::time::sleep(TTL).await;
        assert_eq!(
            cache.get_or_compute(key(), answer("3")).await,
            Ok("3".into())
        );
    }

    #[test]
    fn an_older_answer_never_replaces_a_newer_one() {
        let cache = AnswerCache::default();
        let older = Instant::now();
        let newer = Instant::now() + Duration::from_millis(1);
        cache.insert(key(), newer, "new".into());
        cache.insert(key(), older, "old".into());
        assert_eq!(cache.fresh(&key()), Some("new".into()));
    }
}
