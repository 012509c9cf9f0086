//! The state of a group of a few requests in 40 bytes, where a [`DayStats`] takes 160 and more on
//! the heap: at a customer base of hundreds of thousands most (customer, day) groups hold a handful
//! of requests, each unit of work makes hundreds of thousands of them, and the committer's tables
//! hold millions before they spill. [`GroupState`] is what workers make and tables hold: small
//! while it can be, a boxed [`DayStats`] past that.

use serde::{Deserialize, Serialize};

use crate::histogram::{Histogram, read_varint, write_varint};
use crate::stats::DayStats;

/// A group's exact state: small (inline, 40 bytes) while it holds a few requests of durations
/// under 2^32 µs, a [`DayStats`] on the heap otherwise.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GroupState {
    Small(SmallStats),
    Large(Box<DayStats>),
}

impl Default for GroupState {
    fn default() -> GroupState {
        GroupState::Small(SmallStats::default())
    }
}

/// The state of a group given as a [`DayStats`] (tests build theirs so).
#[cfg(test)]
impl From<DayStats> for GroupState {
    fn from(mut stats: DayStats) -> GroupState {
        match SmallStats::of(&mut stats) {
            Some(small) => GroupState::Small(small),
            None => GroupState::Large(Box::new(stats)),
        }
    }
}

impl GroupState {
    /// Counts one request. `status` must be in 100..=599 (the parser guarantees it).
    #[inline]
    pub fn record(&mut self, status: u16, duration_us: u64) {
        if let GroupState::Small(small) = self {
            if small.record(status, duration_us) {
                return;
            }
            *self = GroupState::Large(Box::new(small.to_stats()));
        }
        if let GroupState::Large(stats) = self {
            stats.record(status, duration_us);
        }
    }

    /// Adds every request of `other`.
    pub fn merge(&mut self, other: GroupState) {
        match (&mut *self, other) {
            (GroupState::Small(mine), GroupState::Small(theirs)) => {
                if !mine.merge(&theirs) {
                    let mut stats = mine.to_stats();
                    theirs.add_to(&mut stats);
                    *self = GroupState::Large(Box::new(stats));
                }
            }
            (GroupState::Large(mine), GroupState::Small(theirs)) => theirs.add_to(mine),
            (GroupState::Large(mine), GroupState::Large(theirs)) => mine.merge(*theirs),
            (GroupState::Small(mine), GroupState::Large(mut theirs)) => {
                mine.add_to(&mut theirs);
                *self = GroupState::Large(theirs);
            }
        }
    }

    /// Requests counted.
    pub fn total(&self) -> u64 {
        match self {
            GroupState::Small(small) => u64::from(small.len),
            GroupState::Large(stats) => stats.total(),
        }
    }

    /// Folds buffered durations into a large state's histogram.
    pub fn compact(&mut self) {
        if let GroupState::Large(stats) = self {
            stats.compact();
        }
    }

    /// Bytes on the heap: a large state's box and its histogram's buffers.
    pub fn heap_bytes(&self) -> usize {
        match self {
            GroupState::Small(_) => 0,
            GroupState::Large(stats) => {
                crate::histogram::allocated(size_of::<DayStats>()) + stats.heap_bytes()
            }
        }
    }

    /// Appends a compact form of this state (read back by [`GroupState::decode`]): a small one
    /// in a dozen bytes or so, a large one as [`DayStats::encode`] writes it.
    pub fn encode(&mut self, bytes: &mut Vec<u8>) {
        match self {
            GroupState::Small(small) => {
                bytes.push(SMALL_TAG);
                bytes.push(small.len);
                bytes.extend_from_slice(&small.by_class);
                write_varint(bytes, small.success_duration_sum_us);
                let mut previous = 0;
                for &duration in &small.durations[..usize::from(small.len)] {
                    write_varint(bytes, u64::from(duration - previous));
                    previous = duration;
                }
            }
            GroupState::Large(stats) => {
                bytes.push(LARGE_TAG);
                stats.encode(bytes);
            }
        }
    }

    /// Reads one state written by [`GroupState::encode`] from the front of `bytes`; `None` when
    /// they do not hold one.
    pub fn decode(bytes: &mut &[u8]) -> Option<GroupState> {
        let (&tag, rest) = bytes.split_first()?;
        *bytes = rest;
        if tag == LARGE_TAG {
            return DayStats::decode(bytes)
                .ok()
                .map(|s| GroupState::Large(Box::new(s)));
        }
        let (&len, rest) = bytes.split_first().filter(|_| tag == SMALL_TAG)?;
        let by_class: [u8; 5] = rest.get(..5)?.try_into().ok()?;
        *bytes = &rest[5..];
        let by_class_total: usize = by_class.iter().map(|&c| usize::from(c)).sum();
        if usize::from(len) > SMALL_REQUESTS || by_class_total != usize::from(len) {
            return None;
        }
        let mut small = SmallStats {
            success_duration_sum_us: read_varint(bytes).ok()?,
            by_class,
            len,
            ..SmallStats::default()
        };
        let mut previous = 0u32;
        for slot in &mut small.durations[..usize::from(len)] {
            let step = u32::try_from(read_varint(bytes).ok()?).ok()?;
            previous = previous.checked_add(step)?;
            *slot = previous;
        }
        Some(GroupState::Small(small))
    }

    pub fn into_stats(self) -> DayStats {
        match self {
            GroupState::Small(small) => small.to_stats(),
            GroupState::Large(stats) => *stats,
        }
    }
}

/// The first byte of an encoded state: which form follows.
const SMALL_TAG: u8 = 0;
const LARGE_TAG: u8 = 1;

/// The most requests a small state holds.
pub const SMALL_REQUESTS: usize = 6;

/// The exact state of a group of at most [`SMALL_REQUESTS`] requests, each under 2^32 µs: their
/// durations, ascending, the counts by status class and the successful requests' duration sum
/// (which the durations alone do not give). The total duration is the durations' sum.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmallStats {
    success_duration_sum_us: u64,
    durations: [u32; SMALL_REQUESTS],
    by_class: [u8; 5],
    len: u8,
}

impl SmallStats {
    /// The small form of `stats`, when it fits.
    #[cfg(test)]
    pub fn of(stats: &mut DayStats) -> Option<SmallStats> {
        let mut small = SmallStats::default();
        small.add(stats).then_some(small)
    }

    /// Adds every request of `stats`; false, and nothing changed, when the sum would not fit.
    #[cfg(test)]
    pub fn add(&mut self, stats: &mut DayStats) -> bool {
        let len = usize::from(self.len);
        let total = stats.total();
        if total > (SMALL_REQUESTS - len) as u64 {
            return false;
        }
        let Ok(success) = u64::try_from(stats.success_duration_sum_us) else {
            return false;
        };
        stats.compact();
        let mut durations = self.durations;
        let mut end = len;
        for (value, count) in stats.histogram.counts() {
            let Ok(value) = u32::try_from(value) else {
                return false;
            };
            for _ in 0..count {
                // Insertion into the sorted prefix: a handful of values.
                let at = durations[..end].partition_point(|&d| d <= value);
                durations.copy_within(at..end, at + 1);
                durations[at] = value;
                end += 1;
            }
        }
        let Some(success) = self.success_duration_sum_us.checked_add(success) else {
            return false;
        };
        for (mine, &theirs) in self.by_class.iter_mut().zip(&stats.by_class) {
            // At most SMALL_REQUESTS in all: checked above.
            *mine += theirs as u8;
        }
        self.durations = durations;
        self.len = end as u8;
        self.success_duration_sum_us = success;
        true
    }

    /// Counts one request; false, and nothing changed, when it does not fit.
    #[inline]
    pub fn record(&mut self, status: u16, duration_us: u64) -> bool {
        let len = usize::from(self.len);
        let Ok(duration) = u32::try_from(duration_us) else {
            return false;
        };
        let success = u64::from(duration) * u64::from(status / 100 == 2);
        let Some(success) = self.success_duration_sum_us.checked_add(success) else {
            return false;
        };
        if len == SMALL_REQUESTS {
            return false;
        }
        let at = self.durations[..len].partition_point(|&d| d <= duration);
        self.durations.copy_within(at..len, at + 1);
        self.durations[at] = duration;
        self.len += 1;
        self.by_class[usize::from(status / 100 - 1)] += 1;
        self.success_duration_sum_us = success;
        true
    }

    /// Adds every request of `other`; false, and nothing changed, when they do not fit.
    pub fn merge(&mut self, other: &SmallStats) -> bool {
        let (len, theirs) = (usize::from(self.len), usize::from(other.len));
        if len + theirs > SMALL_REQUESTS {
            return false;
        }
        let Some(success) = self
            .success_duration_sum_us
            .checked_add(other.success_duration_sum_us)
        else {
            return false;
        };
        let mut durations = [0u32; SMALL_REQUESTS];
        let (mut i, mut j) = (0, 0);
        for slot in &mut durations[..len + theirs] {
            if j == theirs || (i < len && self.durations[i] <= other.durations[j]) {
                *slot = self.durations[i];
                i += 1;
            } else {
                *slot = other.durations[j];
                j += 1;
            }
        }
        for (mine, theirs) in self.by_class.iter_mut().zip(other.by_class) {
            *mine += theirs;
        }
        self.durations = durations;
        self.len = (len + theirs) as u8;
        self.success_duration_sum_us = success;
        true
    }

    /// Adds these requests to `stats` as recording each would (no [`DayStats`] is made of them
    /// to be merged: a table's large state takes a unit's few requests of its group so).
    pub fn add_to(&self, stats: &mut DayStats) {
        let durations = &self.durations[..usize::from(self.len)];
        for (total, &count) in stats.by_class.iter_mut().zip(&self.by_class) {
            *total += u64::from(count);
        }
        stats.duration_sum_us += durations.iter().map(|&d| u128::from(d)).sum::<u128>();
        stats.success_duration_sum_us += u128::from(self.success_duration_sum_us);
        for &duration in durations {
            stats.histogram.record(u64::from(duration));
        }
    }

    /// The same state as a [`DayStats`].
    pub fn to_stats(self) -> DayStats {
        let durations = &self.durations[..usize::from(self.len)];
        let mut counts = [(0u64, 0u64); SMALL_REQUESTS];
        let mut distinct = 0;
        for run in durations.chunk_by(|a, b| a == b) {
            counts[distinct] = (u64::from(run[0]), run.len() as u64);
            distinct += 1;
        }
        DayStats {
            by_class: self.by_class.map(u64::from),
            duration_sum_us: durations.iter().map(|&d| u128::from(d)).sum(),
            success_duration_sum_us: u128::from(self.success_duration_sum_us),
            histogram: Histogram::from_counts(&counts[..distinct]),
            resources: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(requests: &[(u16, u64)]) -> DayStats {
        DayStats::of_requests(requests)
    }

    #[test]
    fn a_small_state_is_forty_bytes() {
        assert_eq!(size_of::<SmallStats>(), 40);
    }

    #[test]
    fn what_does_not_fit_is_refused_and_changes_nothing() {
        let mut small = SmallStats::of(&mut stats(&[(200, 5), (500, 7)])).unwrap();
        let before = small;
        assert!(!small.add(&mut stats(&[(200, 1); SMALL_REQUESTS - 1])));
        assert!(!small.add(&mut stats(&[(200, 1 << 32)])));
        assert_eq!(small, before);
        assert!(SmallStats::of(&mut stats(&[(404, u64::from(u32::MAX) + 1)])).is_none());
    }

    proptest::proptest! {
        /// However requests are recorded and states merged, in any order and whatever their
        /// sizes and durations, the state is theirs exactly.
        #[test]
        fn group_states_recorded_and_merged_in_any_order_equal_the_state_of_their_requests(
            parts in proptest::collection::vec(
                proptest::collection::vec(
                    (1u16..6, proptest::prop_oneof![0u64..100, 0u64..(1 << 33)]), 0..10),
                1..5),
        ) {
            let mut merged = GroupState::default();
            let mut expected = DayStats::default();
            for part in &parts {
                let mut state = GroupState::default();
                for &(class, duration) in part {
                    state.record(class * 100 + 7, duration);
                    expected.record(class * 100 + 7, duration);
                }
                proptest::prop_assert_eq!(state.total(), part.len() as u64);
                merged.merge(state);
            }
            let mut got = merged.into_stats();
            got.compact();
            expected.compact();
            proptest::prop_assert_eq!(got, expected);
        }

        /// Every state reads back as it was written, and bytes that are not one are refused
        /// without a panic.
        #[test]
        fn group_states_read_back_as_written(
            requests in proptest::collection::vec(
                (1u16..6, proptest::prop_oneof![0u64..100, 0u64..(1 << 33)]), 0..10),
            cut in 0usize..64,
        ) {
            let mut state = GroupState::default();
            for &(class, duration) in &requests {
                state.record(class * 100, duration);
            }
            state.compact();
            let mut bytes = vec![7];
            state.encode(&mut bytes);
            bytes.push(9);
            let mut rest = &bytes[1..];
            proptest::prop_assert_eq!(GroupState::decode(&mut rest), Some(state));
            proptest::prop_assert_eq!(rest, &[9][..]);
            let _ = GroupState::decode(&mut &bytes[1..(1 + cut).min(bytes.len())]);
        }

        /// Any way of splitting a few requests into small states gives their exact state.
        #[test]
        fn small_states_add_up_to_the_state_of_their_requests(
            requests in proptest::collection::vec((1u16..6, 0u64..5_000_000), 0..=SMALL_REQUESTS),
            split in 0usize..=SMALL_REQUESTS,
        ) {
            let requests: Vec<(u16, u64)> =
                requests.iter().map(|&(class, d)| (class * 100 + 1, d)).collect();
            let split = split.min(requests.len());
            let mut small = SmallStats::of(&mut stats(&requests[..split])).unwrap();
            proptest::prop_assert!(small.add(&mut stats(&requests[split..])));
            let mut expected = stats(&requests);
            expected.compact();
            proptest::prop_assert_eq!(small.to_stats(), expected);
        }
    }
}
