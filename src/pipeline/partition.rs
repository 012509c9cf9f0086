//! The committer's groups, split by customer over threads of their own: each partition is a
//! [`GroupTable`] (merging, spilling past its share of the memory limit) on its thread, so that a
//! customer base of hundreds of thousands, whose lines barely pre-aggregate in the workers, is
//! merged on every core instead of one. A commit takes every partition's groups in (customer, day)
//! order, merged by each partition on its own thread, and interleaves them (a customer lives in one
//! partition, so no two partitions hold the same group).
//!
//! Messages reach a partition in the order the committer sends them: a commit sees exactly the
//! epochs absorbed before it.

use std::hash::Hasher;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

use anyhow::Context;

use super::aggregate::NumberedGroups;
use super::small::GroupState;
use super::spill::{Group, GroupTable};
use crate::day::Day;

/// Batches of groups that may wait for a partition before the committer waits (bounds memory).
const QUEUED_BATCHES: usize = 1;

/// Groups per chunk a partition hands to a commit.
const CHUNK: usize = 1024;

/// The partitions and how the committer routes to them.
pub struct Partitions {
    senders: Vec<SyncSender<Message>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    shared: Vec<Arc<Shared>>,
}

/// What a partition thread tells the committer without being asked.
#[derive(Default)]
struct Shared {
    /// The first thing that went wrong (a spill that failed): the partition takes no more groups.
    error: Mutex<Option<anyhow::Error>>,
    runs: AtomicUsize,
    spilled_bytes: AtomicU64,
}

enum Message {
    /// A batch's groups of this partition's customers, each keyed by its customer's place in
    /// `names`.
    Groups {
        names: Vec<Box<str>>,
        groups: Vec<(u32, Day, GroupState)>,
    },
    /// Every group so far, in order, in chunks; an empty chunk ends them.
    TakeSorted(SyncSender<Vec<anyhow::Result<Group>>>),
}

impl Partitions {
    /// `count` partitions sharing `budget` bytes, spilling under `spill_root`.
    pub fn start(count: usize, budget: usize, spill_root: PathBuf) -> anyhow::Result<Partitions> {
        let count = count.clamp(1, usize::from(u16::MAX));
        let mut partitions = Partitions {
            senders: Vec::new(),
            threads: Vec::new(),
            shared: Vec::new(),
        };
        for index in 0..count {
            let (sender, received) = sync_channel(QUEUED_BATCHES);
            let shared = Arc::new(Shared::default());
            let table = GroupTable::new(budget / count, spill_root.clone());
            let thread = std::thread::Builder::new()
                .name(format!("partition-{index}"))
                .spawn({
                    let shared = Arc::clone(&shared);
                    move || run_partition(table, received, &shared)
                })?;
            partitions.senders.push(sender);
            partitions.threads.push(thread);
            partitions.shared.push(shared);
        }
        Ok(partitions)
    }

    /// Sends a batch's groups to their partitions, each with the names of its customers (numbered
    /// anew for it). Nothing of the batch is kept.
    pub fn absorb(&mut self, numbered: NumberedGroups) -> anyhow::Result<()> {
        self.check()?;
        let count = self.senders.len();
        let mut names = vec![Vec::new(); count];
        // Each of the batch's customer numbers: its partition and its number there.
        let places: Vec<(u16, u32)> = numbered
            .names
            .into_iter()
            .map(|name| {
                let partition = partition_of_name(&name, count);
                let names = &mut names[partition];
                names.push(name);
                (partition as u16, names.len() as u32 - 1)
            })
            .collect();
        let mut groups: Vec<Vec<_>> = (0..count)
            .map(|_| Vec::with_capacity(numbered.groups.len() / count + 1))
            .collect();
        for (customer, day, state) in numbered.groups {
            let &(partition, number) = places
                .get(customer as usize)
                .context("a group of a customer never named (a bug: please report it)")?;
            groups[usize::from(partition)].push((number, day, state));
        }
        for ((sender, names), groups) in self.senders.iter().zip(names).zip(groups) {
            if groups.is_empty() {
                continue;
            }
            sender
                .send(Message::Groups { names, groups })
                .map_err(|_| anyhow::anyhow!("a partition of the groups failed (a bug)"))?;
        }
        Ok(())
    }

    /// The first failure of any partition, if one failed.
    pub fn check(&self) -> anyhow::Result<()> {
        for shared in &self.shared {
            if let Some(error) = shared.error.lock().expect("partition error lock").take() {
                return Err(error);
            }
        }
        Ok(())
    }

    /// Every group absorbed so far, in (customer, day) order, each once; the partitions are
    /// empty afterwards.
    pub fn take_sorted(&self) -> anyhow::Result<SortedPartitions> {
        self.check()?;
        let mut streams = Vec::with_capacity(self.senders.len());
        for sender in &self.senders {
            let (chunks, received) = sync_channel(4);
            sender
                .send(Message::TakeSorted(chunks))
                .map_err(|_| anyhow::anyhow!("a partition of the groups failed (a bug)"))?;
            streams.push(Stream {
                chunks: received,
                current: Vec::new().into_iter(),
                head: None,
                ended: false,
            });
        }
        Ok(SortedPartitions { streams })
    }

    /// Run files written since the last [`Partitions::take_sorted`].
    pub fn runs(&self) -> usize {
        self.shared
            .iter()
            .map(|s| s.runs.load(Ordering::Relaxed))
            .sum()
    }

    /// Bytes written to run files since the partitions were made.
    pub fn spilled_bytes(&self) -> u64 {
        self.shared
            .iter()
            .map(|s| s.spilled_bytes.load(Ordering::Relaxed))
            .sum()
    }
}

impl Drop for Partitions {
    fn drop(&mut self) {
        self.senders.clear();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Which of `count` partitions holds `name`'s groups.
fn partition_of_name(name: &str, count: usize) -> usize {
    if count == 1 {
        return 0;
    }
    let mut hasher = rustc_hash::FxHasher::default();
    hasher.write(name.as_bytes());
    (hasher.finish() % count as u64) as usize
}

/// One partition's thread: merges what comes, hands out its groups when asked.
fn run_partition(mut table: GroupTable, messages: Receiver<Message>, shared: &Shared) {
    let mut failed = false;
    for message in messages {
        match message {
            Message::Groups { names, groups } => {
                if failed {
                    continue;
                }
                if let Err(error) = table.add_batch(&names, groups) {
                    *shared.error.lock().expect("partition error lock") = Some(error);
                    failed = true;
                }
                shared.runs.store(table.runs(), Ordering::Relaxed);
                shared
                    .spilled_bytes
                    .store(table.spilled_bytes(), Ordering::Relaxed);
            }
            Message::TakeSorted(chunks) => {
                match table.take_sorted() {
                    Ok(mut sorted) => loop {
                        let chunk: Vec<_> = sorted.by_ref().take(CHUNK).collect();
                        let end = chunk.is_empty();
                        // A commit that gave up (dropped its end) takes no more.
                        if chunks.send(chunk).is_err() || end {
                            break;
                        }
                    },
                    Err(error) => {
                        let _ = chunks.send(vec![Err(error)]);
                    }
                }
                shared.runs.store(table.runs(), Ordering::Relaxed);
            }
        }
    }
}

/// Every partition's groups, in (customer, day) order.
pub struct SortedPartitions {
    streams: Vec<Stream>,
}

struct Stream {
    chunks: Receiver<Vec<anyhow::Result<Group>>>,
    current: std::vec::IntoIter<anyhow::Result<Group>>,
    head: Option<anyhow::Result<Group>>,
    ended: bool,
}

impl Stream {
    /// Fills `head` with the next group, unless the stream has ended.
    fn fill(&mut self) {
        while self.head.is_none() && !self.ended {
            if let Some(group) = self.current.next() {
                self.head = Some(group);
                continue;
            }
            match self.chunks.recv() {
                Ok(chunk) if chunk.is_empty() => self.ended = true,
                Ok(chunk) => self.current = chunk.into_iter(),
                Err(_) => {
                    self.ended = true;
                    self.head = Some(Err(anyhow::anyhow!(
                        "a partition of the groups failed before its end (a bug)"
                    )));
                }
            }
        }
    }
}

impl Stream {
    /// The key of a head that is a group.
    fn key(&self) -> Option<(&str, Day)> {
        match &self.head {
            Some(Ok((customer, day, _))) => Some((customer, *day)),
            _ => None,
        }
    }
}

impl Iterator for SortedPartitions {
    type Item = anyhow::Result<Group>;

    fn next(&mut self) -> Option<anyhow::Result<Group>> {
        for stream in &mut self.streams {
            stream.fill();
            if matches!(stream.head, Some(Err(_))) {
                return stream.head.take();
            }
        }
        let least = (0..self.streams.len())
            .filter(|&i| self.streams[i].head.is_some())
            .min_by(|&a, &b| self.streams[a].key().cmp(&self.streams[b].key()))?;
        self.streams[least].head.take()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::stats::DayStats;

    /// Numbers the names of one batch as an aggregator does: each name once, in first-use order.
    fn batch(groups: &[(String, Day, DayStats)]) -> NumberedGroups {
        let mut numbers: BTreeMap<String, u32> = BTreeMap::new();
        let mut names = Vec::new();
        let groups = groups
            .iter()
            .map(|(customer, day, stats)| {
                let next = numbers.len() as u32;
                let number = *numbers.entry(customer.clone()).or_insert_with(|| {
                    names.push(customer.as_str().into());
                    next
                });
                (number, *day, stats.clone().into())
            })
            .collect();
        NumberedGroups { names, groups }
    }

    proptest::proptest! {
        #[test]
        fn partitions_give_every_group_once_in_order_whatever_their_count_and_budget(
            deltas in proptest::collection::vec(
                (0u8..60, 0i32..4, 1u16..6, 0u64..50, proptest::bool::weighted(0.3)), 1..300),
            partitions in 1usize..4,
            budget in 0usize..40_000,
            commit_after in 0usize..300,
        ) {
            let root = tempfile::tempdir().unwrap();
            let mut table = Partitions::start(partitions, budget, root.path().to_path_buf()).unwrap();
            let mut expected: BTreeMap<(String, Day), DayStats> = BTreeMap::new();
            let mut commits = Vec::new();
            let mut pending = Vec::new();
            for (i, &(customer, day, class, duration, ends_batch)) in deltas.iter().enumerate() {
                let mut delta = DayStats::default();
                delta.record(class * 100, duration);
                let group = (format!("c{customer}"), Day(day), delta.clone());
                expected.entry((group.0.clone(), group.1)).or_default().merge(delta);
                pending.push(group);
                let commits_now = i + 1 == commit_after.min(deltas.len());
                if ends_batch || commits_now || i + 1 == deltas.len() {
                    table.absorb(batch(&std::mem::take(&mut pending))).unwrap();
                }
                if commits_now {
                    commits.push(table.take_sorted().unwrap().map(Result::unwrap).collect::<Vec<_>>());
                }
            }
            commits.push(table.take_sorted().unwrap().map(Result::unwrap).collect());
            // Each commit is sorted and holds each group once; together they merge to the oracle.
            let mut merged: BTreeMap<(String, Day), DayStats> = BTreeMap::new();
            for commit in commits {
                let keys: Vec<_> = commit.iter().map(|(c, d, _)| (c.clone(), *d)).collect();
                proptest::prop_assert!(keys.windows(2).all(|w| w[0] < w[1]), "{keys:?}");
                for (customer, day, stats) in commit {
                    merged.entry((customer, day)).or_default().merge(stats);
                }
            }
            for stats in merged.values_mut().chain(expected.values_mut()) {
                stats.compact();
            }
            proptest::prop_assert_eq!(merged, expected);
        }
    }
}
