//! The state of a group of a few requests in 40 bytes, where a [`DayStats`] takes 160 and more on
//! the heap: at a customer base of hundreds of thousands most (customer, day) groups hold a handful
//! of requests, and the committer's tables hold millions of them before they spill.

use crate::histogram::Histogram;
use crate::stats::DayStats;

/// The most requests a small state holds.
pub const SMALL_REQUESTS: usize = 6;

/// The exact state of a group of at most [`SMALL_REQUESTS`] requests, each under 2^32 µs: their
/// durations, ascending, the counts by status class and the successful requests' duration sum
/// (which the durations alone do not give). The total duration is the durations' sum.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SmallStats {
    success_duration_sum_us: u64,
    durations: [u32; SMALL_REQUESTS],
    by_class: [u8; 5],
    len: u8,
}

impl SmallStats {
    /// The small form of `stats`, when it fits.
    pub fn of(stats: &mut DayStats) -> Option<SmallStats> {
        let mut small = SmallStats::default();
        small.add(stats).then_some(small)
    }

    /// Adds every request of `stats`; false, and nothing changed, when the sum would not fit.
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(requests: &[(u16, u64)]) -> DayStats {
        let mut stats = DayStats::default();
        for &(status, duration) in requests {
            stats.record(status, duration);
        }
        stats
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
