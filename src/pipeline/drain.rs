//! A commit's groups, drained from their owners' tables: each table (and each run that came from
//! another process) is sorted and read on a thread of its own, so that a customer base of hundreds
//! of thousands is sorted on every core; the commit interleaves the sorted streams into one, in
//! (customer, day) order. A customer has one owner, so no two streams hold the same group.

use std::sync::mpsc::{Receiver, sync_channel};

use crate::day::Day;
use crate::store::GroupDelta;

/// Groups per chunk a drain hands to the commit, at most: each hand-over may wake the commit.
const CHUNK: usize = 1024;

/// Groups of the first chunk, the size of the next ones doubling up to [`CHUNK`]: the writer
/// starts on a busy customer base's days (kilobytes each with their breakdown) while the drains
/// make the next.
const FIRST_CHUNK: usize = 64;

/// Chunks a drain may have ready before it waits for the commit (bounds memory).
const CHUNKS_AHEAD: usize = 4;

/// Every stream's groups, in (customer, day) order.
pub struct SortedStreams {
    streams: Vec<Stream>,
}

impl SortedStreams {
    /// Makes and reads each of `sources` (each sorted) on a thread of its own, and merges them.
    pub fn new<F, I>(sources: Vec<F>) -> SortedStreams
    where
        F: FnOnce() -> anyhow::Result<I> + Send + 'static,
        I: Iterator<Item = anyhow::Result<GroupDelta>>,
    {
        let streams = sources.into_iter().map(Stream::spawn).collect();
        SortedStreams { streams }
    }
}

struct Stream {
    chunks: Receiver<Vec<anyhow::Result<GroupDelta>>>,
    current: std::vec::IntoIter<anyhow::Result<GroupDelta>>,
    head: Option<anyhow::Result<GroupDelta>>,
    ended: bool,
}

impl Stream {
    /// Makes `source`'s groups and reads them on a thread of its own, a chunk at a time, until
    /// the commit stops taking them.
    fn spawn<F, I>(source: F) -> Stream
    where
        F: FnOnce() -> anyhow::Result<I> + Send + 'static,
        I: Iterator<Item = anyhow::Result<GroupDelta>>,
    {
        let (chunks, received) = sync_channel(CHUNKS_AHEAD);
        let spawned = std::thread::Builder::new()
            .name("drain".into())
            .spawn(move || {
                let mut groups = match source() {
                    Ok(groups) => groups,
                    Err(error) => {
                        let _ = chunks.send(vec![Err(error)]);
                        return;
                    }
                };
                let mut size = FIRST_CHUNK;
                loop {
                    let chunk: Vec<_> = groups.by_ref().take(size).collect();
                    size = (2 * size).min(CHUNK);
                    let end = chunk.is_empty();
                    // A commit that gave up (dropped its end) takes no more.
                    if chunks.send(chunk).is_err() || end {
                        break;
                    }
                }
            });
        let head = spawned.err().map(|e| {
            Err(anyhow::anyhow!(
                "cannot start a thread to sort a commit: {e}"
            ))
        });
        Stream {
            ended: head.is_some(),
            chunks: received,
            current: Vec::new().into_iter(),
            head,
        }
    }

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
                        "sorting a commit's groups failed before their end (a bug)"
                    )));
                }
            }
        }
    }

    /// The key of a head that is a group.
    fn key(&self) -> Option<(&str, Day)> {
        match &self.head {
            Some(Ok(group)) => Some((&group.customer, group.day)),
            _ => None,
        }
    }
}

impl Iterator for SortedStreams {
    type Item = anyhow::Result<GroupDelta>;

    fn next(&mut self) -> Option<anyhow::Result<GroupDelta>> {
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
    use super::*;
    use crate::stats::DayStats;

    proptest::proptest! {
        #[test]
        fn sorted_streams_interleave_into_one_sorted_stream(
            keys in proptest::collection::btree_set((0u8..40, 0i32..5), 0..200),
            streams in 1usize..5,
        ) {
            let mut sources: Vec<Vec<anyhow::Result<GroupDelta>>> =
                (0..streams).map(|_| Vec::new()).collect();
            for &(customer, day) in &keys {
                let name = format!("c{customer:02}");
                let owner = super::super::aggregate::owner_of(&name, streams);
                sources[owner].push(Ok(GroupDelta::new(name, Day(day), DayStats::default())));
            }
            let sources = sources
                .into_iter()
                .map(|groups| move || anyhow::Ok(groups.into_iter()))
                .collect();
            let merged: Vec<(String, Day)> = SortedStreams::new(sources)
            .map(|group| group.map(|group| (group.customer, group.day)).unwrap())
            .collect();
            let expected: Vec<(String, Day)> =
                keys.iter().map(|&(c, d)| (format!("c{c:02}"), Day(d))).collect();
            proptest::prop_assert_eq!(merged, expected);
        }
    }
}
