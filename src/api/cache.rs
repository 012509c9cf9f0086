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
//! Entries are whole JSON bodies (`Bytes`, shared, never copied). Expired entries are dropped at
//! least once a TTL, so the cache holds about one TTL's distinct requests; it is also bounded by
//! [`MAX_ENTRIES`] and by [`MAX_BYTES`], counting each entry's key and bookkeeping as well as its
//! body: when either is reached, expired entries go, then everything.

use std::collections::HashMap;
use std::future::Future;
use std::sync::RwLock;
use std::time::Duration;

// tokio's clock: the same as std's, except that tests can pause it and move it on.
use tokio::time::Instant;

use axum::body::Bytes;
use chrono::NaiveDate;

use super::query::ByResource;

/// How long an answer is reused by default.
pub const TTL: Duration = Duration::from_millis(500);

/// The longest reuse allowed: the API promises a commit is visible within 1 s.
pub const MAX_TTL: Duration = Duration::from_secs(1);

/// The most bytes kept: answers, keys and bookkeeping.
const MAX_BYTES: usize = 16 << 20;

/// The most entries kept.
const MAX_ENTRIES: usize = 20_000;

/// What an entry costs besides its customer id and its answer: the key, the entry, the map's slot
/// and the channel its answer is published through.
const ENTRY_OVERHEAD: usize = 256;

/// Which answer.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    pub kind: Kind,
    pub customer: String,
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// The request gave no `to` (a summary's answer differs: it echoes none).
    pub open: bool,
    /// The breakdown by resource asked for.
    pub by: ByResource,
}

impl Key {
    pub fn new(kind: Kind, customer: String, range: super::query::DateRange) -> Key {
        Key {
            kind,
            customer,
            from: range.from,
            to: range.to,
            open: range.open,
            by: ByResource::default(),
        }
    }

    /// The same answer broken down as `by` asks.
    pub fn broken_down(self, by: ByResource) -> Key {
        Key { by, ..self }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Days,
    Summary,
    /// A monthly SLA, for one objective (its exact key, [`crate::sla::Objective::key`]).
    Sla {
        objective: u64,
    },
}

/// An answer being computed (`None`) or computed (`Some`), shared by every request that may use it.
type Slot = tokio::sync::watch::Receiver<Option<Bytes>>;

#[derive(Debug)]
struct Entry {
    /// When the query that fills this entry was about to start (the entry's data is at least as
    /// recent as the database at this instant).
    started: Instant,
    answer: Slot,
}

impl Entry {
    fn bytes(&self, key: &Key) -> usize {
        let only = key.by.only.as_ref().map_or(0, String::len);
        ENTRY_OVERHEAD
            + key.customer.len()
            + only
            + self.answer.borrow().as_ref().map_or(0, Bytes::len)
    }
}

#[derive(Debug, Default)]
struct Entries {
    map: HashMap<Key, Entry>,
    bytes: usize,
    /// When expired entries were last dropped.
    swept: Option<Instant>,
}

impl Entries {
    /// Drops the entries older than `ttl`.
    fn sweep(&mut self, ttl: Duration) {
        self.map.retain(|_, entry| entry.started.elapsed() < ttl);
        self.bytes = self.map.iter().map(|(key, entry)| entry.bytes(key)).sum();
        self.swept = Some(Instant::now());
    }

    fn full(&self, limits: Limits) -> bool {
        self.map.len() >= limits.entries || self.bytes > limits.bytes
    }
}

#[derive(Clone, Copy, Debug)]
struct Limits {
    entries: usize,
    bytes: usize,
}

/// The cache (shared by every request of a router).
#[derive(Debug)]
pub struct AnswerCache {
    ttl: Duration,
    limits: Limits,
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
        AnswerCache::with_limits(
            ttl,
            Limits {
                entries: MAX_ENTRIES,
                bytes: MAX_BYTES,
            },
        )
    }

    fn with_limits(ttl: Duration, limits: Limits) -> AnswerCache {
        AnswerCache {
            ttl: ttl.min(MAX_TTL),
            limits,
            entries: RwLock::default(),
        }
    }

    /// Entries held (fresh or not yet swept).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .map
            .len()
    }

    /// The fresh answer for `key`, or the one `compute` makes now (then kept).
    ///
    /// One query per key at a time: requests that find a fresh entry still being filled wait for
    /// it (it started less than the TTL ago, so it is as fresh as a finished entry would be) rather
    /// than all asking the database when an entry expires under load. Should that query fail or
    /// be cancelled, each waiter runs its own.
    ///
    /// `compute` makes the query's future only when it must run, boxed: a query's future is
    /// kilobytes, and a request's future, moved as a whole, would carry it even on a hit.
    pub async fn get_or_compute<F, Q, E>(&self, key: Key, compute: F) -> Result<Bytes, E>
    where
        F: FnOnce() -> Q,
        Q: Future<Output = Result<Bytes, E>>,
    {
        if self.ttl.is_zero() {
            return Box::pin(compute()).await;
        }
        let sender = match self.fresh(&key) {
            Ok(Some(body)) => return Ok(body),
            Ok(None) => None,
            Err(mut pending) => {
                if let Ok(answer) = pending.wait_for(Option::is_some).await
                    && let Some(body) = answer.as_ref()
                {
                    return Ok(body.clone());
                }
                None
            }
        };
        let sender = sender.or_else(|| self.claim(&key));
        let body = Box::pin(compute()).await?;
        if let Some(sender) = sender {
            self.fill(&key, &sender, body.clone());
        }
        Ok(body)
    }

    /// A fresh finished answer, `Ok(None)` when there is no fresh entry, or the entry being filled.
    fn fresh(&self, key: &Key) -> Result<Option<Bytes>, Slot> {
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        let Some(entry) = entries
            .map
            .get(key)
            .filter(|entry| entry.started.elapsed() < self.ttl)
        else {
            return Ok(None);
        };
        match entry.answer.borrow().as_ref() {
            Some(body) => Ok(Some(body.clone())),
            None => Err(entry.answer.clone()),
        }
    }

    /// Puts an empty entry started now for `key` (unless a fresh one appeared meanwhile); the
    /// caller fills it through the returned sender.
    fn claim(&self, key: &Key) -> Option<tokio::sync::watch::Sender<Option<Bytes>>> {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        let live = |entry: &Entry| {
            // A fresh entry, unless its query failed or was cancelled (empty, sender gone).
            entry.started.elapsed() < self.ttl
                && (entry.answer.borrow().is_some() || entry.answer.has_changed().is_ok())
        };
        if entries.map.get(key).is_some_and(live) {
            return None;
        }
        let sweep_due = entries
            .swept
            .is_none_or(|swept| swept.elapsed() >= self.ttl);
        if sweep_due || entries.full(self.limits) {
            entries.sweep(self.ttl);
            if entries.full(self.limits) {
                entries.map.clear();
                entries.bytes = 0;
            }
        }
        let (sender, answer) = tokio::sync::watch::channel(None);
        let entry = Entry {
            started: Instant::now(),
            answer,
        };
        entries.bytes += entry.bytes(key);
        if let Some(old) = entries.map.insert(key.clone(), entry) {
            entries.bytes = entries.bytes.saturating_sub(old.bytes(key));
        }
        Some(sender)
    }

    /// Publishes the answer of the entry `sender` belongs to (to its waiters and later requests).
    fn fill(&self, key: &Key, sender: &tokio::sync::watch::Sender<Option<Bytes>>, body: Bytes) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        let len = body.len();
        sender.send_replace(Some(body));
        if entries
            .map
            .get(key)
            .is_some_and(|entry| entry.answer.same_channel(&sender.subscribe()))
        {
            entries.bytes += len;
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
            open: false,
            by: ByResource::default(),
        }
    }

    fn answer(text: &'static str) -> std::future::Ready<Result<Bytes, ()>> {
        std::future::ready(Ok(Bytes::from_static(text.as_bytes())))
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_is_reused_within_the_ttl_and_recomputed_after() {
        let cache = AnswerCache::default();
        assert_eq!(
            cache.get_or_compute(key(), || answer("1")).await,
            Ok("1".into())
        );
        tokio::time::advance(TTL - Duration::from_millis(1)).await;
        assert_eq!(
            cache.get_or_compute(key(), || answer("2")).await,
            Ok("1".into())
        );
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(
            cache.get_or_compute(key(), || answer("3")).await,
            Ok("3".into())
        );
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_misses_make_one_query() {
        let cache = std::sync::Arc::new(AnswerCache::default());
        let queries = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (cache, queries) = (cache.clone(), queries.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_compute(key(), || async {
                        queries.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok::<_, ()>(Bytes::from_static(b"answer"))
                    })
                    .await
            }));
        }
        for task in tasks {
            assert_eq!(task.await.unwrap(), Ok("answer".into()));
        }
        assert_eq!(queries.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_failed_query_is_not_kept() {
        let cache = AnswerCache::default();
        let failed = cache
            .get_or_compute(key(), || std::future::ready(Err::<Bytes, _>("down")))
            .await;
        assert_eq!(failed, Err("down"));
        assert_eq!(
            cache.get_or_compute(key(), || answer("ok")).await,
            Ok("ok".into())
        );
    }

    fn key_of(customer: usize) -> Key {
        Key {
            customer: format!("customer-{customer}"),
            ..key()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn expired_entries_are_dropped_within_a_ttl() {
        let ttl = Duration::from_millis(50);
        let cache = AnswerCache::new(ttl);
        for customer in 0..100 {
            cache
                .get_or_compute(key_of(customer), || answer("[]"))
                .await
                .unwrap();
        }
        assert_eq!(cache.len(), 100, "the clock stood still");
        tokio::time::advance(ttl).await;
        cache
            .get_or_compute(key_of(100), || answer("[]"))
            .await
            .unwrap();
        assert_eq!(cache.len(), 1, "only the fresh entry is left");
    }

    #[tokio::test]
    async fn the_cache_never_holds_more_than_its_entry_limit() {
        let limits = Limits {
            entries: 10,
            bytes: usize::MAX,
        };
        let cache = AnswerCache::with_limits(MAX_TTL, limits);
        for customer in 0..1_000 {
            cache
                .get_or_compute(key_of(customer), || answer("[]"))
                .await
                .unwrap();
            assert!(cache.len() <= 10);
        }
    }

    #[tokio::test]
    async fn keys_and_bookkeeping_count_against_the_byte_limit() {
        let limits = Limits {
            entries: usize::MAX,
            bytes: 100 * ENTRY_OVERHEAD,
        };
        let cache = AnswerCache::with_limits(MAX_TTL, limits);
        // Empty answers: only the keys and the bookkeeping weigh anything.
        for customer in 0..1_000 {
            cache
                .get_or_compute(key_of(customer), || answer(""))
                .await
                .unwrap();
            assert!(cache.len() <= 101, "{}", cache.len());
        }
    }

    #[tokio::test]
    async fn a_zero_ttl_never_reuses() {
        let cache = AnswerCache::new(Duration::ZERO);
        assert_eq!(
            cache.get_or_compute(key(), || answer("1")).await,
            Ok("1".into())
        );
        assert_eq!(
            cache.get_or_compute(key(), || answer("2")).await,
            Ok("2".into())
        );
    }
}
