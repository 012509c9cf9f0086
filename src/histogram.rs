//! An exact histogram of durations in integer microseconds.
//!
//! Its size is bounded by the number of distinct values, never by how many were recorded. Recording
//! appends to a short buffer that is sorted and folded into the sorted `(value, count)` list when it
//! fills: the hot path touches one cache line per group instead of hashing into a large map.
//! While every value and the total count fit in 32 bits (durations under 71 minutes, fewer than
//! 4 billion requests) an entry takes 8 bytes instead of 16; past that the histogram widens.

use serde::{Deserialize, Serialize};

/// How many raw values are buffered before they are folded into the sorted counts.
const PENDING_LIMIT: usize = 2048;

/// `(value, count)` pairs, strictly increasing by value, every count > 0, plus unsorted
/// pending values not yet folded in.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Histogram {
    entries: Entries,
    /// The sum of the counts in `entries`.
    total: u64,
    pending: Vec<u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
enum Entries {
    Narrow(Vec<(u32, u32)>),
    Wide(Vec<(u64, u64)>),
}

impl Default for Entries {
    fn default() -> Entries {
        Entries::Narrow(Vec::new())
    }
}

/// One `(value, count)` entry, narrow or wide.
trait Entry: Copy {
    fn value(self) -> u64;
    fn add(&mut self, count: u64);
    fn new(value: u64, count: u64) -> Self;
}

impl Entry for (u32, u32) {
    fn value(self) -> u64 {
        u64::from(self.0)
    }
    fn add(&mut self, count: u64) {
        self.1 += count as u32; // callers check that the total fits (see `Histogram::add`)
    }
    fn new(value: u64, count: u64) -> Self {
        (value as u32, count as u32)
    }
}

impl Entry for (u64, u64) {
    fn value(self) -> u64 {
        self.0
    }
    fn add(&mut self, count: u64) {
        self.1 += count;
    }
    fn new(value: u64, count: u64) -> Self {
        (value, count)
    }
}

impl Histogram {
    /// Counts one value.
    #[inline]
    pub fn record(&mut self, value: u64) {
        self.pending.push(value);
        if self.pending.len() >= PENDING_LIMIT {
            self.fold_pending();
        }
    }

    /// Folds the pending values into the sorted counts and frees their buffer.
    pub fn compact(&mut self) {
        self.fold_pending();
        self.pending = Vec::new();
    }

    fn fold_pending(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let pending = &mut self.pending;
        pending.sort_unstable();
        let run_counts: Vec<(u64, u64)> = pending
            .chunk_by(|a, b| a == b)
            .map(|run| (run[0], run.len() as u64))
            .collect();
        self.add(&run_counts);
        self.pending.clear();
    }

    /// Adds sorted `(value, count)` pairs, widening first when they would not fit in 32 bits.
    fn add(&mut self, counts: &[(u64, u64)]) {
        let added = counts.iter().fold(0u64, |sum, c| sum.saturating_add(c.1));
        self.total = self.total.saturating_add(added);
        let fits = self.total <= u64::from(u32::MAX)
            && counts.last().is_none_or(|c| c.0 <= u64::from(u32::MAX));
        if let (Entries::Narrow(narrow), false) = (&self.entries, fits) {
            self.entries = Entries::Wide(
                narrow
                    .iter()
                    .map(|&(v, c)| (u64::from(v), u64::from(c)))
                    .collect(),
            );
        }
        match &mut self.entries {
            Entries::Narrow(entries) => add_sorted(entries, counts),
            Entries::Wide(entries) => add_sorted(entries, counts),
        }
    }

    /// Adds every value of `other` to this histogram.
    pub fn merge(&mut self, mut other: Histogram) {
        other.compact();
        self.fold_pending();
        self.add(&other.counts().collect::<Vec<_>>());
    }

    /// The sorted `(value, count)` pairs. Call [`Histogram::compact`] first.
    pub fn counts(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        debug_assert!(self.pending.is_empty(), "compact() before reading counts");
        let (narrow, wide) = match &self.entries {
            Entries::Narrow(entries) => (entries.as_slice(), &[][..]),
            Entries::Wide(entries) => (&[][..], entries.as_slice()),
        };
        narrow
            .iter()
            .map(|&(v, c)| (u64::from(v), u64::from(c)))
            .chain(wide.iter().copied())
    }

    /// The values at the given 1-based ranks, which must be ascending and within the total.
    pub fn values_at_ranks<const N: usize>(&self, ranks: [u64; N]) -> [u64; N] {
        let mut values = [0; N];
        let mut seen = 0;
        let mut entries = self.counts();
        let mut current = (0, 0);
        for (value, rank) in values.iter_mut().zip(ranks) {
            while seen < rank {
                match entries.next() {
                    Some(entry) => {
                        current = entry;
                        seen += entry.1;
                    }
                    None => break,
                }
            }
            *value = current.0;
        }
        values
    }

    /// A compact binary form: a version byte, then LEB128 (value delta, count) pairs.
    pub fn to_bytes(&self) -> Vec<u8> {
        let len = match &self.entries {
            Entries::Narrow(entries) => entries.len(),
            Entries::Wide(entries) => entries.len(),
        };
        let mut bytes = Vec::with_capacity(1 + 4 * len);
        bytes.push(FORMAT_VERSION);
        let mut previous = 0;
        for (value, count) in self.counts() {
            write_varint(&mut bytes, value - previous);
            write_varint(&mut bytes, count);
            previous = value;
        }
        bytes
    }

    /// Reads what [`Histogram::to_bytes`] wrote, checking every invariant.
    pub fn from_bytes(bytes: &[u8]) -> Result<Histogram, CorruptHistogram> {
        let (&version, mut rest) = bytes.split_first().ok_or(CorruptHistogram)?;
        if version != FORMAT_VERSION {
            return Err(CorruptHistogram);
        }
        let mut counts = Vec::new();
        let mut previous: Option<u64> = None;
        let mut total = 0u64;
        while !rest.is_empty() {
            let delta = read_varint(&mut rest)?;
            let count = read_varint(&mut rest)?;
            let value = match previous {
                None => delta,
                Some(p) if delta > 0 => p.checked_add(delta).ok_or(CorruptHistogram)?,
                Some(_) => return Err(CorruptHistogram),
            };
            total = total.checked_add(count).ok_or(CorruptHistogram)?;
            if count == 0 {
                return Err(CorruptHistogram);
            }
            counts.push((value, count));
            previous = Some(value);
        }
        let mut histogram = Histogram::default();
        histogram.add(&counts);
        Ok(histogram)
    }
}

impl PartialEq for Histogram {
    fn eq(&self, other: &Histogram) -> bool {
        let (mut a, mut b) = (self.clone(), other.clone());
        a.compact();
        b.compact();
        a.counts().eq(b.counts())
    }
}

impl Eq for Histogram {}

/// A stored histogram that does not decode: the database row was damaged or written by
/// an incompatible version.
#[derive(Debug, thiserror::Error)]
#[error("stored duration histogram is corrupt or of an unknown format")]
pub struct CorruptHistogram;

const FORMAT_VERSION: u8 = 1;

/// Adds the sorted counts `b` into the sorted entries `a`: in place when every value of `b` is
/// already in `a` (the common case once a group has seen its durations), by a merge otherwise.
fn add_sorted<E: Entry>(a: &mut Vec<E>, b: &[(u64, u64)]) {
    let mut i = 0;
    let mut all_present = true;
    for &(value, count) in b {
        while i < a.len() && a[i].value() < value {
            i += 1;
        }
        if i < a.len() && a[i].value() == value {
            a[i].add(count);
        } else {
            all_present = false;
        }
    }
    if !all_present {
        let missing: Vec<E> = b
            .iter()
            .filter(|(v, _)| a.binary_search_by_key(v, |e| e.value()).is_err())
            .map(|&(v, c)| E::new(v, c))
            .collect();
        *a = merge_sorted(a, &missing);
    }
}

/// Merges two sorted lists with no value in common.
fn merge_sorted<E: Entry>(a: &[E], b: &[E]) -> Vec<E> {
    let mut merged = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i].value() < b[j].value() {
            merged.push(a[i]);
            i += 1;
        } else {
            merged.push(b[j]);
            j += 1;
        }
    }
    merged.extend_from_slice(&a[i..]);
    merged.extend_from_slice(&b[j..]);
    merged
}

fn write_varint(bytes: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        bytes.push((value as u8) | 0x80);
        value >>= 7;
    }
    bytes.push(value as u8);
}

fn read_varint(bytes: &mut &[u8]) -> Result<u64, CorruptHistogram> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first().ok_or(CorruptHistogram)?;
        *bytes = rest;
        value |= u64::from(byte & 0x7f)
            .checked_shl(shift)
            .ok_or(CorruptHistogram)?;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(CorruptHistogram)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn histogram_of(values: &[u64]) -> Histogram {
        let mut histogram = Histogram::default();
        values.iter().for_each(|&v| histogram.record(v));
        histogram.compact();
        histogram
    }

    proptest! {
        #[test]
        fn bytes_round_trip(values in proptest::collection::vec(any::<u64>(), 0..3000)) {
            let histogram = histogram_of(&values);
            prop_assert_eq!(Histogram::from_bytes(&histogram.to_bytes()).unwrap(), histogram);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Histogram::from_bytes(&bytes);
        }
    }

    #[test]
    fn counts_are_sorted_and_merged_across_compactions() {
        let values: Vec<u64> = (0..10_000).map(|i| (i * 7919) % 13).collect();
        let histogram = histogram_of(&values);
        let counts: Vec<(u64, u64)> = histogram.counts().collect();
        assert_eq!(counts.iter().map(|c| c.1).sum::<u64>(), 10_000);
        assert_eq!(counts.len(), 13);
        assert!(counts.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn a_value_beyond_32_bits_widens_the_histogram_exactly() {
        let big = u64::from(u32::MAX) + 5;
        let mut histogram = histogram_of(&[3, 3, 7]);
        assert!(matches!(histogram.entries, Entries::Narrow(_)));
        histogram.merge(histogram_of(&[big, 7]));
        assert!(matches!(histogram.entries, Entries::Wide(_)));
        assert_eq!(
            histogram.counts().collect::<Vec<_>>(),
            [(3, 2), (7, 2), (big, 1)]
        );
        assert_eq!(histogram, histogram_of(&[7, big, 3, 7, 3]));
    }

    #[test]
    fn counts_beyond_32_bits_widen_the_histogram_exactly() {
        let many = u64::from(u32::MAX) - 1;
        let mut histogram = Histogram::default();
        histogram.add(&[(5, many)]);
        histogram.add(&[(5, 3), (9, 1)]);
        assert!(matches!(histogram.entries, Entries::Wide(_)));
        assert_eq!(
            histogram.counts().collect::<Vec<_>>(),
            [(5, many + 3), (9, 1)]
        );
    }

    #[test]
    fn corrupt_bytes_are_an_error() {
        assert!(Histogram::from_bytes(&[]).is_err());
        assert!(Histogram::from_bytes(&[9]).is_err());
        assert!(Histogram::from_bytes(&[1, 5]).is_err());
        assert!(Histogram::from_bytes(&[1, 5, 0]).is_err());
        assert!(Histogram::from_bytes(&[1, 5, 1, 0, 1]).is_err());
    }
}
