//! An exact histogram of durations in integer microseconds.
//!
//! Its size is bounded by the number of distinct values, never by how many were recorded. Recording
//! appends to a short buffer that is sorted and folded into the sorted `(value, count)` list when it
//! fills: the hot path touches one cache line per group instead of hashing into a large map.

use serde::{Deserialize, Serialize};

/// How many raw values are buffered before they are folded into the sorted counts.
const PENDING_LIMIT: usize = 2048;

/// `(value, count)` pairs, strictly increasing by value, every count > 0, plus unsorted
/// pending values not yet folded in.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Histogram {
    counts: Vec<(u64, u64)>,
    pending: Vec<u64>,
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
        add_sorted(&mut self.counts, &run_counts);
        self.pending.clear();
    }

    /// Adds every value of `other` to this histogram.
    pub fn merge(&mut self, mut other: Histogram) {
        other.compact();
        self.fold_pending();
        add_sorted(&mut self.counts, &other.counts);
    }

    /// The sorted `(value, count)` pairs. Call [`Histogram::compact`] first.
    pub fn counts(&self) -> &[(u64, u64)] {
        debug_assert!(self.pending.is_empty(), "compact() before reading counts");
        &self.counts
    }

    /// The values at the given 1-based ranks, which must be ascending and within the total.
    pub fn values_at_ranks<const N: usize>(&self, ranks: [u64; N]) -> [u64; N] {
        let mut values = [0; N];
        let mut seen = 0;
        let mut entries = self.counts().iter();
        let mut current = (0, 0);
        for (value, rank) in values.iter_mut().zip(ranks) {
            while seen < rank {
                match entries.next() {
                    Some(&entry) => {
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
        let counts = self.counts();
        let mut bytes = Vec::with_capacity(1 + counts.len() * 4);
        bytes.push(FORMAT_VERSION);
        let mut previous = 0;
        for &(value, count) in counts {
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
        while !rest.is_empty() {
            let delta = read_varint(&mut rest)?;
            let count = read_varint(&mut rest)?;
            let value = match previous {
                None => delta,
                Some(p) if delta > 0 => p.checked_add(delta).ok_or(CorruptHistogram)?,
                Some(_) => return Err(CorruptHistogram),
            };
            if count == 0 {
                return Err(CorruptHistogram);
            }
            counts.push((value, count));
            previous = Some(value);
        }
        Ok(Histogram {
            counts,
            pending: Vec::new(),
        })
    }
}

impl PartialEq for Histogram {
    fn eq(&self, other: &Histogram) -> bool {
        let (mut a, mut b) = (self.clone(), other.clone());
        a.compact();
        b.compact();
        a.counts == b.counts
    }
}

impl Eq for Histogram {}

/// A stored histogram that does not decode: the database row was damaged or written by
/// an incompatible version.
#[derive(Debug, thiserror::Error)]
#[error("stored duration histogram is corrupt or of an unknown format")]
pub struct CorruptHistogram;

const FORMAT_VERSION: u8 = 1;

/// Adds the sorted counts `b` into the sorted counts `a`: in place when every value of `b` is
/// already in `a` (the common case once a group has seen its durations), by a merge otherwise.
fn add_sorted(a: &mut Vec<(u64, u64)>, b: &[(u64, u64)]) {
    let mut i = 0;
    let mut all_present = true;
    for &(value, count) in b {
        while i < a.len() && a[i].0 < value {
            i += 1;
        }
        if i < a.len() && a[i].0 == value {
            a[i].1 += count;
        } else {
            all_present = false;
        }
    }
    if !all_present {
        let missing: Vec<(u64, u64)> = b
            .iter()
            .filter(|(v, _)| a.binary_search_by_key(v, |e| e.0).is_err())
            .copied()
            .collect();
        *a = merge_sorted(a, &missing);
    }
}

fn merge_sorted(a: &[(u64, u64)], b: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut merged = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let (x, y) = (a[i], b[j]);
        match x.0.cmp(&y.0) {
            std::cmp::Ordering::Less => {
                merged.push(x);
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                merged.push(y);
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                merged.push((x.0, x.1 + y.1));
                i += 1;
                j += 1;
            }
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
        let total: u64 = histogram.counts().iter().map(|c| c.1).sum();
        assert_eq!(total, 10_000);
        assert_eq!(histogram.counts().len(), 13);
        assert!(histogram.counts().windows(2).all(|w| w[0].0 < w[1].0));
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
