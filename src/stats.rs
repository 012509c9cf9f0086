//! [`DayStats`]: the exact, mergeable state of one (customer, day) group, and the
//! [`Statistics`] derived from it (docs/spec.md section 3). Pure: no I/O.

use serde::{Deserialize, Serialize};

use crate::histogram::{Histogram, Merger, read_varint, write_varint};
use crate::resources::Breakdown;

/// Counts by status class, integer-microsecond sums and an exact duration histogram.
/// Two `DayStats` merge exactly; merging is associative and commutative.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayStats {
    /// Requests with status 1xx, 2xx, 3xx, 4xx, 5xx.
    pub by_class: [u64; 5],
    /// Sum of all durations, in microseconds (128 bits: no accepted input can overflow it).
    pub duration_sum_us: u128,
    /// Sum of the durations of successful (2xx) requests, in microseconds.
    pub success_duration_sum_us: u128,
    pub histogram: Histogram,
    /// The same requests by resource, or `None` when none was recorded with its resource (the
    /// entries of a day, never of the pipeline's groups: those are keyed by resource).
    pub resources: Option<Box<Breakdown>>,
}

impl DayStats {
    /// Counts one request. `status` must be in 100..=599 (the parser guarantees it).
    #[inline]
    pub fn record(&mut self, status: u16, duration_us: u64) {
        let class = usize::from(status / 100 - 1);
        self.by_class[class] += 1;
        self.duration_sum_us += u128::from(duration_us);
        if class == 1 {
            self.success_duration_sum_us += u128::from(duration_us);
        }
        self.histogram.record(duration_us);
    }

    /// The state of these (status, duration in µs) requests.
    #[cfg(test)]
    pub fn of_requests(requests: &[(u16, u64)]) -> DayStats {
        let mut stats = DayStats::default();
        for &(status, duration) in requests {
            stats.record(status, duration);
        }
        stats
    }

    /// Adds every request of `other`. When only one side is broken down by resource, the other's
    /// requests join the breakdown as unattributed: the entries always add up to the day.
    pub fn merge(&mut self, mut other: DayStats) {
        match (self.resources.is_some(), other.resources.is_some()) {
            (false, false) => {}
            (mine, theirs) => {
                let mut breakdown = match mine {
                    true => self.resources.take().expect("checked"),
                    false => Box::new(Breakdown::unattributed(self.clone())),
                };
                breakdown.merge(match theirs {
                    true => *other.resources.take().expect("checked"),
                    false => Breakdown::unattributed(other.clone()),
                });
                self.resources = Some(breakdown);
            }
        }
        self.add_sums_of(&other);
        self.histogram.merge(other.histogram);
    }

    /// Adds every request of `other`, which must be compacted and have no breakdown, leaving it
    /// as it is (no copy of its histogram).
    pub fn add_requests_of(&mut self, other: &DayStats) {
        debug_assert!(other.resources.is_none());
        self.add_sums_of(other);
        self.histogram.add_counts_of(&other.histogram);
    }

    /// Adds the counts by class and the duration sums of `other`.
    fn add_sums_of(&mut self, other: &DayStats) {
        for (mine, theirs) in self.by_class.iter_mut().zip(other.by_class) {
            *mine += theirs;
        }
        self.duration_sum_us += other.duration_sum_us;
        self.success_duration_sum_us += other.success_duration_sum_us;
    }

    /// Takes back one request counted before (its line was not complete yet); false, and nothing
    /// changed, when this state holds no such request.
    pub fn remove(&mut self, status: u16, duration_us: u64) -> bool {
        let class = usize::from(status / 100 - 1);
        let duration = u128::from(duration_us);
        let success = class == 1;
        if self.by_class[class] == 0
            || self.duration_sum_us < duration
            || (success && self.success_duration_sum_us < duration)
            || !self.histogram.remove(duration_us)
        {
            return false;
        }
        self.by_class[class] -= 1;
        self.duration_sum_us -= duration;
        if success {
            self.success_duration_sum_us -= duration;
        }
        true
    }

    /// Takes back one request of `resource` counted before, from the day and from its breakdown.
    pub fn remove_request(&mut self, resource: &str, status: u16, duration_us: u64) -> bool {
        let Some(mut breakdown) = self.resources.take() else {
            return self.remove(status, duration_us);
        };
        let mut trial = (*breakdown).clone();
        let removed =
            trial.remove(resource, status, duration_us) && self.remove(status, duration_us);
        if removed {
            *breakdown = trial;
        }
        self.resources = Some(breakdown);
        removed
    }

    /// Folds buffered durations into the histogram; call before serializing for storage.
    pub fn compact(&mut self) {
        self.histogram.compact();
    }

    /// Appends a compact form of this state (read back by [`DayStats::decode`]). Compacts first.
    /// The breakdown is not part of it (it is stored apart: [`Breakdown::encode`]).
    pub fn encode(&mut self, bytes: &mut Vec<u8>) {
        self.compact();
        for count in self.by_class {
            write_varint(bytes, count);
        }
        write_wide(bytes, self.duration_sum_us);
        write_wide(bytes, self.success_duration_sum_us);
        write_histogram(bytes, &self.histogram);
    }

    /// Reads one state written by [`DayStats::encode`] from the front of `bytes`.
    pub fn decode(bytes: &mut &[u8]) -> Result<DayStats, CorruptState> {
        let mut stats = DayStats::default();
        for count in &mut stats.by_class {
            *count = read_varint(bytes)?;
        }
        stats.duration_sum_us = read_wide(bytes)?;
        stats.success_duration_sum_us = read_wide(bytes)?;
        stats.histogram = read_histogram(bytes)?;
        stats.check_total()?;
        Ok(stats)
    }

    /// Appends the shorter form of a breakdown's entry (read back by
    /// [`DayStats::decode_entry`]): [`DayStats::encode`]'s without what follows from the rest,
    /// the sum of the durations (the histogram's) and of the successful ones' when all or none
    /// succeeded (most entries: a resource of a day often holds a request or two).
    pub fn encode_entry(&mut self, bytes: &mut Vec<u8>) {
        self.compact();
        for count in self.by_class {
            write_varint(bytes, count);
        }
        write_histogram(bytes, &self.histogram);
        if self.some_succeeded_not_all() {
            write_wide(bytes, self.success_duration_sum_us);
        }
    }

    /// Reads one state written by [`DayStats::encode_entry`] from the front of `bytes`.
    pub fn decode_entry(bytes: &mut &[u8]) -> Result<DayStats, CorruptState> {
        let mut stats = DayStats::default();
        for count in &mut stats.by_class {
            *count = read_varint(bytes)?;
        }
        stats.histogram = read_histogram(bytes)?;
        stats.check_total()?;
        stats.duration_sum_us = stats
            .histogram
            .counts()
            .map(|(value, count)| u128::from(value) * u128::from(count))
            .sum();
        stats.success_duration_sum_us = match stats.by_class[1] {
            0 => 0,
            _ if !stats.some_succeeded_not_all() => stats.duration_sum_us,
            _ => read_wide(bytes)?,
        };
        Ok(stats)
    }

    fn some_succeeded_not_all(&self) -> bool {
        self.by_class[1] > 0 && self.by_class[1] < self.total()
    }

    /// Whether the counts by class add up to the histogram's.
    fn check_total(&self) -> Result<(), CorruptState> {
        let total = self
            .by_class
            .iter()
            .try_fold(0u64, |sum, &c| sum.checked_add(c))
            .ok_or(CorruptState)?;
        match total == self.histogram.total() {
            true => Ok(()),
            false => Err(CorruptState),
        }
    }

    /// Bytes held on the heap besides the value itself.
    pub fn heap_bytes(&self) -> usize {
        self.histogram.heap_bytes() + self.resources.as_ref().map_or(0, |b| b.heap_bytes())
    }

    /// The number of requests.
    pub fn total(&self) -> u64 {
        self.by_class.iter().sum()
    }

    /// Every derived field of docs/spec.md section 3. Compacts the histogram first.
    pub fn statistics(&mut self) -> Statistics {
        self.compact();
        let n = self.total();
        let success = self.by_class[1];
        let [p50, p90, p95, p99, max] = self.histogram.values_at_ranks([
            nearest_rank(n, 50),
            nearest_rank(n, 90),
            nearest_rank(n, 95),
            nearest_rank(n, 99),
            n,
        ]);
        Statistics {
            success_requests: success,
            failed_requests: n - success,
            uptime_percentage: percentage(self.success_duration_sum_us, self.duration_sum_us),
            duration_mean: if n == 0 {
                0.0
            } else {
                self.duration_sum_us as f64 / n as f64 / 1e6
            },
            duration_p50: seconds(p50),
            duration_p99: seconds(p99),
            total_requests: n,
            status_1xx: self.by_class[0],
            status_2xx: self.by_class[1],
            status_3xx: self.by_class[2],
            status_4xx: self.by_class[3],
            status_5xx: self.by_class[4],
            availability_percentage: percentage((n - self.by_class[4]).into(), n.into()),
            duration_p90: seconds(p90),
            duration_p95: seconds(p95),
            duration_max: seconds(max),
        }
    }
}

/// The states of a range (days, months) merged into one, without their breakdowns: the
/// histograms through a [`Merger`], in time linear in their values.
#[derive(Debug, Default)]
pub struct RangeMerger {
    totals: DayStats,
    histograms: Merger,
}

impl RangeMerger {
    pub fn push(&mut self, state: DayStats) {
        self.totals.add_sums_of(&state);
        self.histograms.push(state.histogram);
    }

    /// Adds the requests of `state` (compacted), leaving it as it is.
    pub fn push_ref(&mut self, state: &DayStats) {
        self.totals.add_sums_of(state);
        self.histograms.push_counts_of(&state.histogram);
    }

    pub fn finish(self) -> DayStats {
        DayStats {
            histogram: self.histograms.finish(),
            ..self.totals
        }
    }
}

/// Appends a 128-bit sum: its low and high 64 bits.
fn write_wide(bytes: &mut Vec<u8>, sum: u128) {
    write_varint(bytes, sum as u64);
    write_varint(bytes, (sum >> 64) as u64);
}

/// Appends a histogram: its length, then its bytes.
fn write_histogram(bytes: &mut Vec<u8>, histogram: &Histogram) {
    let histogram = histogram.to_bytes();
    write_varint(bytes, histogram.len() as u64);
    bytes.extend_from_slice(&histogram);
}

/// A 128-bit sum as [`write_wide`] writes it.
fn read_wide(bytes: &mut &[u8]) -> Result<u128, CorruptState> {
    let low = read_varint(bytes)?;
    let high = read_varint(bytes)?;
    Ok(u128::from(low) | u128::from(high) << 64)
}

/// A histogram as [`write_histogram`] writes it.
fn read_histogram(bytes: &mut &[u8]) -> Result<Histogram, CorruptState> {
    let len = usize::try_from(read_varint(bytes)?).map_err(|_| CorruptState)?;
    let histogram = bytes.get(..len).ok_or(CorruptState)?;
    let histogram = Histogram::from_bytes(histogram)?;
    *bytes = &bytes[len..];
    Ok(histogram)
}

/// Encoded group state that does not decode (a damaged spill file).
#[derive(Debug, thiserror::Error)]
#[error("group state is corrupt")]
pub struct CorruptState;

impl From<crate::histogram::CorruptHistogram> for CorruptState {
    fn from(_: crate::histogram::CorruptHistogram) -> CorruptState {
        CorruptState
    }
}

/// The statistics of one group or range, in the order the API prints them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Statistics {
    /// Requests with a 2xx status.
    pub success_requests: u64,
    /// All other requests (1xx, 3xx, 4xx, 5xx).
    pub failed_requests: u64,
    /// 100 x (duration of successful requests) / (duration of all requests); 0 when that is 0.
    pub uptime_percentage: f64,
    /// Mean duration, seconds.
    pub duration_mean: f64,
    /// Median duration (nearest rank), seconds.
    pub duration_p50: f64,
    /// 99th percentile duration (nearest rank), seconds.
    pub duration_p99: f64,
    /// All requests.
    pub total_requests: u64,
    pub status_1xx: u64,
    pub status_2xx: u64,
    pub status_3xx: u64,
    pub status_4xx: u64,
    pub status_5xx: u64,
    /// 100 x (requests with status < 500) / all requests.
    pub availability_percentage: f64,
    /// 90th percentile duration (nearest rank), seconds.
    pub duration_p90: f64,
    /// 95th percentile duration (nearest rank), seconds.
    pub duration_p95: f64,
    /// Longest duration, seconds.
    pub duration_max: f64,
}

/// The 1-based nearest rank of percentile `p` among `n` values: ceil(n * p / 100), at least 1.
pub fn nearest_rank(n: u64, p: u64) -> u64 {
    (n * p).div_ceil(100).max(1)
}

/// `100 * part / whole` in doubles; 0 when `whole` is 0 (section 3's percentages).
pub fn percentage(part: u128, whole: u128) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

fn seconds(micros: u64) -> f64 {
    micros as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The reference's definitions, computed directly from every raw request.
    fn oracle(requests: &[(u16, u64)]) -> Statistics {
        let n = requests.len() as u64;
        let mut durations: Vec<u64> = requests.iter().map(|r| r.1).collect();
        durations.sort_unstable();
        let at = |p: u64| durations[(nearest_rank(n, p) - 1) as usize] as f64 / 1e6;
        let class = |c: u16| requests.iter().filter(|r| r.0 / 100 == c).count() as u64;
        let sum: u128 = durations.iter().map(|&d| u128::from(d)).sum();
        let success_sum: u128 = requests
            .iter()
            .filter(|r| r.0 / 100 == 2)
            .map(|r| u128::from(r.1))
            .sum();
        Statistics {
            success_requests: class(2),
            failed_requests: n - class(2),
            uptime_percentage: if sum == 0 {
                0.0
            } else {
                100.0 * success_sum as f64 / sum as f64
            },
            duration_mean: sum as f64 / n as f64 / 1e6,
            duration_p50: at(50),
            duration_p99: at(99),
            total_requests: n,
            status_1xx: class(1),
            status_2xx: class(2),
            status_3xx: class(3),
            status_4xx: class(4),
            status_5xx: class(5),
            availability_percentage: 100.0 * (n - class(5)) as f64 / n as f64,
            duration_p90: at(90),
            duration_p95: at(95),
            duration_max: *durations.last().unwrap() as f64 / 1e6,
        }
    }

    fn stats_of(requests: &[(u16, u64)]) -> DayStats {
        let mut stats = DayStats::default();
        requests.iter().for_each(|&(s, d)| stats.record(s, d));
        stats
    }

    fn request() -> impl Strategy<Value = (u16, u64)> {
        // Few distinct durations exercise ties; the wide range exercises large values.
        (
            100u16..600,
            prop_oneof![
                0u64..50,
                0u64..5_000_000,
                Just(u64::from(u32::MAX)),
                Just(u64::from(u32::MAX) + 1),
                Just(crate::record::MAX_DURATION_US),
            ],
        )
    }

    fn requests(max: usize) -> impl Strategy<Value = Vec<(u16, u64)>> {
        proptest::collection::vec(request(), 1..max)
    }

    proptest! {
        #[test]
        fn statistics_equal_the_sorting_oracle(requests in requests(5000)) {
            prop_assert_eq!(stats_of(&requests).statistics(), oracle(&requests));
        }

        #[test]
        fn merge_is_commutative(a in requests(300), b in requests(300)) {
            let mut ab = stats_of(&a);
            ab.merge(stats_of(&b));
            let mut ba = stats_of(&b);
            ba.merge(stats_of(&a));
            prop_assert_eq!(ab, ba);
        }

        #[test]
        fn merge_is_associative(a in requests(300), b in requests(300), c in requests(300)) {
            let mut left = stats_of(&a);
            left.merge(stats_of(&b));
            left.merge(stats_of(&c));
            let mut right = stats_of(&b);
            right.merge(stats_of(&c));
            let mut a_then_right = stats_of(&a);
            a_then_right.merge(right);
            prop_assert_eq!(left, a_then_right);
        }

        #[test]
        fn merging_any_split_equals_recording_everything(
            requests in requests(3000),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..5),
        ) {
            let mut merged = DayStats::default();
            for piece in crate::testing::pieces(&requests, &cuts) {
                merged.merge(stats_of(piece));
            }
            prop_assert_eq!(merged.statistics(), oracle(&requests));
        }
    }

    #[test]
    fn the_worked_example_of_the_issue() {
        let requests = [
            (200, 1_000_000),
            (500, 2_000_000),
            (201, 3_000_000),
            (404, 4_000_000),
        ];
        let statistics = stats_of(&requests).statistics();
        assert_eq!(statistics.success_requests, 2);
        assert_eq!(statistics.failed_requests, 2);
        assert_eq!(statistics.duration_mean, 2.5);
        assert_eq!(statistics.duration_p50, 2.0);
        assert_eq!(statistics.duration_p99, 4.0);
        assert_eq!(statistics.uptime_percentage, 40.0);
        assert_eq!(statistics.availability_percentage, 75.0);
    }

    #[test]
    fn sums_of_the_longest_durations_stay_exact() {
        // 10 lines of 999999999999.999999 s, and 11,000 epoch times logged as durations: both
        // overflow 64-bit sums.
        let longest = crate::record::MAX_DURATION_US;
        let statistics = stats_of(&[(200, longest); 10]).statistics();
        assert_eq!(statistics.duration_mean, longest as f64 / 1e6);
        assert_eq!(statistics.uptime_percentage, 100.0);
        let epoch = 1_727_000_000_123_000;
        let mut requests = vec![(200, epoch); 5_500];
        requests.extend([(500, epoch); 5_500]);
        let statistics = stats_of(&requests).statistics();
        assert_eq!(statistics.uptime_percentage, 50.0);
        assert_eq!(statistics.duration_mean, epoch as f64 / 1e6);
    }

    proptest! {
        #[test]
        fn removing_a_request_equals_never_recording_it(
            requests in requests(500),
            index in any::<prop::sample::Index>(),
        ) {
            let removed = requests[index.index(requests.len())];
            let mut stats = stats_of(&requests);
            prop_assert!(stats.remove(removed.0, removed.1));
            let mut rest = requests.clone();
            rest.remove(index.index(requests.len()));
            let mut expected = stats_of(&rest);
            prop_assert_eq!(stats.statistics(), expected.statistics());
            prop_assert_eq!(&stats.histogram, &expected.histogram);
        }
    }

    #[test]
    fn a_request_never_recorded_cannot_be_removed() {
        let mut stats = stats_of(&[(200, 5), (500, 7)]);
        let before = stats.clone();
        assert!(!stats.remove(200, 7), "no 2xx of 7 us");
        assert!(!stats.remove(404, 5));
        assert!(!stats.remove(200, 6));
        assert_eq!(stats.statistics(), before.clone().statistics());
    }

    #[test]
    fn zero_durations_give_zero_uptime() {
        let statistics = stats_of(&[(200, 0), (500, 0)]).statistics();
        assert_eq!(statistics.uptime_percentage, 0.0);
        assert_eq!(statistics.duration_p99, 0.0);
    }
}
