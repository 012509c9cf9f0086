//! An exact histogram of durations in integer microseconds.
//!
//! Its size is bounded by the number of distinct values, never by how many were recorded. Recording
//! appends to a short buffer that is sorted and folded into the sorted `(value, count)` list when it
//! fills: the hot path touches one cache line per group instead of hashing into a large map.
//! While every value and the total count fit in 32 bits (durations under 71 minutes, fewer than
//! 4 billion requests) an entry takes 8 bytes instead of 16; past that the histogram widens.
//! Once a histogram has seen a quarter of the values of its range on a common step (durations
//! logged to the millisecond, say), it turns dense: one count per step, at most twice the room of
//! the sorted pairs, and recording or merging a value is one indexed add. A dense count takes
//! 2 bytes while the histogram's total fits in 16 bits (most busy days of a customer or of one
//! of its resources) and 4 bytes past that, so a day's cache footprint follows its volume. So a group's
//! size follows the values it can take, not the number of requests. A histogram of a few distinct
//! values (most groups of a customer base of hundreds of thousands hold a handful of requests a
//! day) keeps them inline, with no heap allocation at all.

use serde::{Deserialize, Serialize};

/// How many raw values are buffered before they are folded into the sorted counts.
const PENDING_LIMIT: usize = 2048;

/// Pending values folded at once from which they are first counted into the slots of a dense
/// form, when the histogram would take one (fewer are sorted: they rarely make it dense).
const COUNTED_FOLD_LEAST: usize = 128;

/// How many distinct values of a histogram merged into another are gathered on the stack.
const MERGED_ON_STACK: usize = 64;

/// Room for the first pending values (one allocation where growing from nothing took four).
const FIRST_PENDING: usize = 32;

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
    /// Up to [`FEW`] narrow entries, inline.
    Few(Few),
    Narrow(Vec<(u32, u32)>),
    Wide(Vec<(u64, u64)>),
    Dense(Dense),
}

/// The count of every value `first + i * step` for `i` in `0..slots.len()`, zeros included.
/// Only while the total and every value fit in 32 bits (so every count does); the bounds are
/// kept in 32 bits so that a histogram is no larger for the width of its slots.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Dense {
    first: u32,
    step: u32,
    slots: Slots,
}

/// A dense histogram's counts, as narrow as its total allows: each count is at most the total.
#[derive(Clone, Debug, Serialize, Deserialize)]
enum Slots {
    /// While the total fits in 16 bits.
    Two(Vec<u16>),
    Four(Vec<u32>),
}

/// The largest total whose counts are kept in 2 bytes.
const TWO_BYTES_MAX: u64 = u16::MAX as u64;

/// How many distinct values a histogram keeps inline (as many as fit in the room of the other
/// forms: the histogram is no larger for it).
const FEW: usize = 5;

/// Sorted narrow entries, inline.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
struct Few {
    len: u8,
    entries: [(u32, u32); FEW],
}

impl Few {
    fn as_slice(&self) -> &[(u32, u32)] {
        &self.entries[..usize::from(self.len)]
    }

    /// Counts `value` once, if it is here or there is room for it.
    #[inline]
    fn record(&mut self, value: u32) -> bool {
        let len = usize::from(self.len);
        let at = self.entries[..len].partition_point(|e| e.0 < value);
        if at < len && self.entries[at].0 == value {
            self.entries[at].1 += 1;
            return true;
        }
        if len == FEW {
            return false;
        }
        self.entries.copy_within(at..len, at + 1);
        self.entries[at] = (value, 1);
        self.len += 1;
        true
    }

    /// Adds sorted narrow counts, if the distinct values still fit; nothing changes otherwise.
    fn add(&mut self, counts: &[(u64, u64)]) -> bool {
        let mut merged = Few::default();
        let (mut i, mut j) = (0, 0);
        let mine = self.as_slice();
        while i < mine.len() || j < counts.len() {
            if usize::from(merged.len) == FEW {
                return false;
            }
            let entry = match (mine.get(i), counts.get(j)) {
                (Some(&(v, c)), Some(&(w, d))) if u64::from(v) == w => {
                    (i, j) = (i + 1, j + 1);
                    (v, c + d as u32)
                }
                (Some(&e), Some(&(w, _))) if u64::from(e.0) < w => {
                    i += 1;
                    e
                }
                (Some(&e), None) => {
                    i += 1;
                    e
                }
                (_, Some(&(w, d))) => {
                    j += 1;
                    (w as u32, d as u32)
                }
                (None, None) => unreachable!("the loop ends when both are done"),
            };
            merged.entries[usize::from(merged.len)] = entry;
            merged.len += 1;
        }
        *self = merged;
        true
    }
}

/// A histogram with fewer distinct values stays sorted pairs (the dense test is not worth it).
const DENSE_MIN_ENTRIES: usize = 32;

/// Sorted pairs are tested for the dense form each time their number passes a multiple of this.
const DENSIFY_EVERY: usize = 16;

/// How many slots a distinct value a dense histogram of `total` counts may take: as many as fill
/// twice the room of an 8-byte pair (4-byte slots, or 2-byte ones while the total fits in
/// 16 bits), for merges that are one indexed add a value instead of a merge of sorted lists. A
/// histogram that turned dense on 2-byte slots and widens past that takes at most four times the
/// room of its pairs.
fn slots_per_value(total: u64) -> u64 {
    if total <= TWO_BYTES_MAX { 8 } else { 4 }
}

/// The smallest step on which `distinct` values (at least two) spanning `span` take a dense form:
/// at most [`slots_per_value`] slots each.
fn smallest_step(span: u64, distinct: u64, total: u64) -> u64 {
    span.div_ceil(slots_per_value(total) * distinct - 1)
}

impl Dense {
    /// The dense form of sorted narrow entries whose counts sum to `total`, when it takes at most
    /// twice their room.
    fn of(entries: &[(u32, u32)], total: u64) -> Option<Dense> {
        let (first, last) = match entries {
            [first, .., last] if entries.len() >= DENSE_MIN_ENTRIES => {
                (u64::from(first.0), u64::from(last.0))
            }
            _ => return None,
        };
        let smallest_step = smallest_step(last - first, entries.len() as u64, total);
        let mut step = 0;
        for &(value, _) in &entries[1..] {
            step = gcd(step, u64::from(value) - first);
            if step < smallest_step {
                return None;
            }
        }
        // The first of narrow entries, and a step at most the last of them.
        let len = ((last - first) / step + 1) as usize;
        Some(Dense::with_entries(
            first as u32,
            step as u32,
            len,
            entries,
            total,
        ))
    }

    /// `len` slots from `first` on `step`, counting `entries` (each on a slot); `total` as for
    /// [`Slots::add`].
    fn with_entries(
        first: u32,
        step: u32,
        len: usize,
        entries: &[(u32, u32)],
        total: u64,
    ) -> Dense {
        let mut slots = Slots::zeros(len, total);
        for &(value, count) in entries {
            slots.add(((value - first) / step) as usize, count.into(), total);
        }
        Dense { first, step, slots }
    }

    /// The dense form of sorted narrow `entries` and unsorted `values` (their counts sum to
    /// `total`), when [`Dense::of`] would make one of them all sorted: the values are counted in
    /// their slots, where sorting them takes a dozen passes (a busy group's thousands of durations
    /// in a unit of a log in time order, each folded once).
    fn counting(entries: &[(u32, u32)], values: &[u64], total: u64) -> Option<Dense> {
        if total > u64::from(u32::MAX) {
            return None;
        }
        let (mut low, mut high) = match entries {
            [first, .., last] => (first.0, last.0),
            [only] => (only.0, only.0),
            [] => (u32::MAX, 0),
        };
        for &value in values {
            let value = u32::try_from(value).ok()?;
            (low, high) = (low.min(value), high.max(value));
        }
        // No more distinct values than values: a range wider than they can fill is not dense.
        let most_distinct = (entries.len() + values.len()) as u64;
        if most_distinct < DENSE_MIN_ENTRIES as u64 || high == low {
            return None;
        }
        let span = u64::from(high - low);
        let smallest = smallest_step(span, most_distinct, total);
        let mut step = 0;
        let offsets = entries
            .iter()
            .map(|e| e.0)
            .chain(values.iter().map(|&v| v as u32));
        for offset in offsets.map(|value| value - low) {
            // One division a value while the step holds it, Euclid's only when it does not.
            if offset != 0 && (step == 0 || offset % step != 0) {
                step = gcd(u64::from(step), u64::from(offset)) as u32;
                if u64::from(step) < smallest {
                    return None;
                }
            }
        }
        let len = (high - low) / step + 1;
        let mut dense = Dense::with_entries(low, step, len as usize, entries, total);
        let slot = |value| slot_of(low, step, len as usize, value);
        match &mut dense.slots {
            Slots::Two(counts) => values.iter().for_each(|&v| _ = count_in(counts, slot(v))),
            Slots::Four(counts) => values.iter().for_each(|&v| _ = count_in(counts, slot(v))),
        }
        // The test of [`Dense::of`], now that the distinct values are known.
        let distinct = dense.slots.values().filter(|&count| count > 0).count() as u64;
        let dense_enough = distinct >= DENSE_MIN_ENTRIES as u64
            && u64::from(step) >= smallest_step(span, distinct, total);
        dense_enough.then_some(dense)
    }

    /// Adds sorted `outside` pairs, none of which has a slot, by growing the slots to cover them:
    /// when each is on the step and the slots stay within [`slots_per_value`] a distinct value (as
    /// [`Dense::of`] makes them). A few values past either end of the range (a group's first
    /// merges find new extremes often) then cost neither a return to pairs nor a new test.
    /// `total` is the histogram's, these counts included.
    fn cover(&mut self, outside: &[(u64, u64)], total: u64) -> bool {
        let last = self.last();
        let step = self.step();
        let on_step = |value: u64| value.abs_diff(self.first()).is_multiple_of(step);
        let (Some(lowest), Some(highest)) = (outside.first(), outside.last()) else {
            return true;
        };
        if !outside.iter().all(|&(value, _)| on_step(value)) {
            return false;
        }
        let first = self.first().min(lowest.0);
        let slots = (last.max(highest.0) - first) / step + 1;
        let distinct = self.slots.values().filter(|&count| count > 0).count() + outside.len();
        if slots > slots_per_value(total) * distinct as u64 {
            return false;
        }
        self.slots
            .regrow(((self.first() - first) / step) as usize, slots as usize);
        self.first = first as u32; // at most a value of the narrow histogram
        for &(value, count) in outside {
            self.slots
                .add(((value - first) / step) as usize, count, total);
        }
        true
    }

    fn last(&self) -> u64 {
        self.first() + (self.slots.len() as u64 - 1) * self.step()
    }

    fn first(&self) -> u64 {
        self.first.into()
    }

    fn step(&self) -> u64 {
        self.step.into()
    }

    /// Whether every slot of `other` (on the same step and grid) is one of this one's.
    fn holds(&self, other: &Dense) -> bool {
        self.first <= other.first && other.last() <= self.last()
    }

    /// Counts each of `values` in its slot, leaving in `values` those that have none. `total` is
    /// the histogram's once every one of them is counted, these included (at most 32 bits): the
    /// slots are as wide as that needs from the start.
    fn count_each(&mut self, values: &mut Vec<u64>, total: u64) {
        if total > TWO_BYTES_MAX {
            self.slots.widen();
        }
        let (first, step, len) = (self.first, self.step, self.slots.len());
        let slot = |value| slot_of(first, step, len, value);
        match &mut self.slots {
            Slots::Two(counts) => values.retain(|&value| !count_in(counts, slot(value))),
            Slots::Four(counts) => values.retain(|&value| !count_in(counts, slot(value))),
        }
    }

    /// The slot counting `value`, if there is one.
    #[inline]
    fn slot(&self, value: u64) -> Option<usize> {
        slot_of(self.first, self.step, self.slots.len(), value)
    }

    fn counts(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.slots
            .values()
            .enumerate()
            .filter(|&(_, count)| count > 0)
            .map(|(slot, count)| (self.first() + slot as u64 * self.step(), count))
    }

    fn narrow(&self) -> Vec<(u32, u32)> {
        self.counts().map(|(v, c)| (v as u32, c as u32)).collect()
    }

    /// The smaller of its [`SLOTS_FORMAT`] and [`NIBBLES_FORMAT`] forms (the slots on a tie).
    fn to_bytes(&self) -> Vec<u8> {
        match &self.slots {
            Slots::Two(counts) => self.counts_to_bytes(counts),
            Slots::Four(counts) => self.counts_to_bytes(counts),
        }
    }

    /// [`Dense::to_bytes`] of these counts: each pass one loop over counts of their width, with
    /// no branch where most counts take one byte (a day's thousands of slots, five a day with
    /// its resources, are written by every commit).
    fn counts_to_bytes<C: Copy + Into<u32>>(&self, counts: &[C]) -> Vec<u8> {
        const ESCAPE: u32 = NIBBLE_ESCAPE as u32;
        let as_slots: usize = counts.iter().map(|&count| varint_len(count.into())).sum();
        let escapes: usize = counts
            .iter()
            .map(|&count| {
                let count: u32 = count.into();
                usize::from(count >= ESCAPE) * varint_len(count.saturating_sub(ESCAPE))
            })
            .sum();
        let as_nibbles = counts.len().div_ceil(2) + escapes;
        let format = match as_nibbles < as_slots {
            true => NIBBLES_FORMAT,
            false => SLOTS_FORMAT,
        };
        let mut bytes = Vec::with_capacity(16 + as_slots.min(as_nibbles));
        bytes.push(format);
        write_varint(&mut bytes, self.first());
        write_varint(&mut bytes, self.step());
        write_varint(&mut bytes, counts.len() as u64);
        if format == SLOTS_FORMAT {
            for &count in counts {
                write_varint(&mut bytes, u64::from(count.into()));
            }
            return bytes;
        }
        let nibble = |count: C| count.into().min(ESCAPE) as u8;
        let pairs = counts.chunks_exact(2);
        let last = pairs.remainder().first().map(|&count| nibble(count));
        bytes.extend(pairs.map(|pair| nibble(pair[0]) | nibble(pair[1]) << 4));
        bytes.extend(last);
        for &count in counts {
            let count: u32 = count.into();
            if count >= ESCAPE {
                write_varint(&mut bytes, u64::from(count - ESCAPE));
            }
        }
        bytes
    }

    /// Reads the [`SLOTS_FORMAT`] or [`NIBBLES_FORMAT`] form (after its format byte): a range
    /// within 32 bits, every slot's count, a total of 1 to `u32::MAX`, and nothing after.
    fn from_bytes(format: u8, mut bytes: &[u8]) -> Result<Histogram, CorruptHistogram> {
        let bytes = &mut bytes;
        let first = u32::try_from(read_varint(bytes)?).map_err(|_| CorruptHistogram)?;
        let step = u32::try_from(read_varint(bytes)?).map_err(|_| CorruptHistogram)?;
        let len = read_varint(bytes)?;
        // A slot takes a byte at least (half a byte in nibbles): no room is taken for slots the
        // bytes cannot hold.
        let room = match format {
            NIBBLES_FORMAT => 2 * bytes.len() as u64,
            _ => bytes.len() as u64,
        };
        if step == 0 || len == 0 || len > room {
            return Err(CorruptHistogram);
        }
        let last = (len - 1)
            .checked_mul(u64::from(step))
            .and_then(|span| span.checked_add(u64::from(first)));
        if last.is_none_or(|last| last > u64::from(u32::MAX)) {
            return Err(CorruptHistogram);
        }
        let mut counts = Vec::with_capacity(len as usize);
        let mut total = 0u64;
        let mut push = |count: u64| {
            total = total.saturating_add(count);
            counts.push(count as u32); // fits when the total does (checked below)
            match total > u64::from(u32::MAX) {
                true => Err(CorruptHistogram),
                false => Ok(()),
            }
        };
        if format == NIBBLES_FORMAT {
            let (packed, escapes) = bytes.split_at(len.div_ceil(2) as usize);
            // An odd number of slots leaves the last byte's high nibble empty.
            if len % 2 == 1 && packed[packed.len() - 1] >> 4 != 0 {
                return Err(CorruptHistogram);
            }
            *bytes = escapes;
            for slot in 0..len as usize {
                let count = u64::from(packed[slot / 2] >> (4 * (slot % 2)) & 0xf);
                match count {
                    NIBBLE_ESCAPE => push(NIBBLE_ESCAPE.saturating_add(read_varint(bytes)?))?,
                    _ => push(count)?,
                }
            }
        } else {
            for _ in 0..len {
                push(read_varint(bytes)?)?;
            }
        }
        if total == 0 || !bytes.is_empty() {
            return Err(CorruptHistogram);
        }
        let slots = match total {
            0..=TWO_BYTES_MAX => Slots::Two(counts.into_iter().map(|c| c as u16).collect()),
            _ => Slots::Four(counts),
        };
        Ok(Histogram {
            entries: Entries::Dense(Dense { first, step, slots }),
            total,
            pending: Vec::new(),
        })
    }
}

impl Slots {
    /// `len` zero counts for a histogram of `total` values.
    fn zeros(len: usize, total: u64) -> Slots {
        if total <= TWO_BYTES_MAX {
            Slots::Two(vec![0; len])
        } else {
            Slots::Four(vec![0; len])
        }
    }

    fn len(&self) -> usize {
        match self {
            Slots::Two(counts) => counts.len(),
            Slots::Four(counts) => counts.len(),
        }
    }

    fn heap_bytes(&self) -> usize {
        match self {
            Slots::Two(counts) => counts.capacity() * size_of::<u16>(),
            Slots::Four(counts) => counts.capacity() * size_of::<u32>(),
        }
    }

    /// Adds `count` at `slot`; `total` is the histogram's, this count included (at most 32 bits).
    #[inline]
    fn add(&mut self, slot: usize, count: u64, total: u64) {
        if let Slots::Two(counts) = self {
            if total <= TWO_BYTES_MAX {
                counts[slot] += count as u16; // fits: the total does
                return;
            }
            self.widen();
        }
        if let Slots::Four(counts) = self {
            counts[slot] += count as u32; // fits: the total does
        }
    }

    /// Adds `other`'s counts from `offset` on (it must fit); `total` as for [`Slots::add`].
    fn add_slots(&mut self, offset: usize, other: &Slots, total: u64) {
        if total > TWO_BYTES_MAX || matches!(other, Slots::Four(_)) {
            self.widen();
        }
        match (self, other) {
            (Slots::Two(mine), Slots::Two(theirs)) => add_each(&mut mine[offset..], theirs),
            (Slots::Four(mine), Slots::Two(theirs)) => add_each(&mut mine[offset..], theirs),
            (Slots::Four(mine), Slots::Four(theirs)) => add_each(&mut mine[offset..], theirs),
            (Slots::Two(_), Slots::Four(_)) => unreachable!("widened above"),
        }
    }

    fn widen(&mut self) {
        if let Slots::Two(counts) = self {
            *self = Slots::Four(counts.iter().map(|&count| u32::from(count)).collect());
        }
    }

    /// `before` zero counts, then these, then zeros up to `len` in all: exactly the room needed
    /// (growing in place could double it).
    fn regrow(&mut self, before: usize, len: usize) {
        fn regrown<C: Copy + Default>(counts: &[C], before: usize, len: usize) -> Vec<C> {
            let mut grown = Vec::with_capacity(len);
            grown.resize(before, C::default());
            grown.extend_from_slice(counts);
            grown.resize(len, C::default());
            grown
        }
        *self = match self {
            Slots::Two(counts) => Slots::Two(regrown(counts, before, len)),
            Slots::Four(counts) => Slots::Four(regrown(counts, before, len)),
        };
    }

    /// Every count in slot order, zeros included.
    fn values(&self) -> impl Iterator<Item = u64> + '_ {
        let (two, four) = match self {
            Slots::Two(counts) => (counts.as_slice(), &[][..]),
            Slots::Four(counts) => (&[][..], counts.as_slice()),
        };
        two.iter()
            .map(|&count| u64::from(count))
            .chain(four.iter().map(|&count| u64::from(count)))
    }
}

/// The slot counting `value` among `len` slots from `first` on `step`, if there is one: in 32
/// bits, which every slot's value fits (a division a value at half the cost of 64 bits).
#[inline]
fn slot_of(first: u32, step: u32, len: usize, value: u64) -> Option<usize> {
    let offset = u32::try_from(value).ok()?.checked_sub(first)?;
    let slot = (offset / step) as usize;
    (offset % step == 0 && slot < len).then_some(slot)
}

/// Adds one to the count at `slot`, if there is one; whether there was.
#[inline]
fn count_in<C: std::ops::AddAssign + From<u8>>(counts: &mut [C], slot: Option<usize>) -> bool {
    let Some(slot) = slot else {
        return false;
    };
    counts[slot] += C::from(1); // fits: the histogram's total does
    true
}

/// `mine[i] += theirs[i]` for every count of `theirs` (sums that fit).
fn add_each<A: Copy + std::ops::AddAssign + From<B>, B: Copy>(mine: &mut [A], theirs: &[B]) {
    for (count, &added) in mine.iter_mut().zip(theirs) {
        *count += A::from(added);
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl Default for Entries {
    fn default() -> Entries {
        Entries::Few(Few::default())
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
        if self.total < u64::from(u32::MAX) {
            let total = self.total + 1;
            let counted = match &mut self.entries {
                Entries::Dense(dense) => dense
                    .slot(value)
                    .map(|slot| dense.slots.add(slot, 1, total)),
                Entries::Few(few) if self.pending.is_empty() => u32::try_from(value)
                    .ok()
                    .filter(|&value| few.record(value))
                    .map(|_| ()),
                _ => None,
            };
            if counted.is_some() {
                self.total += 1;
                return;
            }
        }
        if self.pending.capacity() == 0 {
            self.pending.reserve_exact(FIRST_PENDING);
        }
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
        if self.pending.len() >= COUNTED_FOLD_LEAST {
            let entries = match &self.entries {
                Entries::Few(few) => Some(few.as_slice()),
                Entries::Narrow(entries) => Some(&entries[..]),
                Entries::Wide(_) | Entries::Dense(_) => None,
            };
            let total = self.total + self.pending.len() as u64;
            if let Some(dense) = entries.and_then(|e| Dense::counting(e, &self.pending, total)) {
                self.entries = Entries::Dense(dense);
                self.total = total;
                self.pending.clear();
                return;
            }
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
        if !fits && !matches!(self.entries, Entries::Wide(_)) {
            self.entries = Entries::Wide(self.folded_counts().collect());
        }
        match &mut self.entries {
            Entries::Few(few) => {
                if !few.add(counts) {
                    let mut entries = few.as_slice().to_vec();
                    add_sorted(&mut entries, counts);
                    self.entries = Entries::Narrow(entries);
                    self.densify();
                }
            }
            Entries::Narrow(entries) => {
                let before = entries.len();
                // Tried again once some values were gained, not at every one: the test reads every
                // entry, and a list sparse over its range stays so for many merges.
                if add_sorted(entries, counts)
                    && before / DENSIFY_EVERY != entries.len() / DENSIFY_EVERY
                {
                    self.densify();
                }
            }
            Entries::Wide(entries) => {
                add_sorted(entries, counts);
            }
            Entries::Dense(dense) => {
                let total = self.total; // fits in 32 bits: checked above
                let mut outside = Vec::new();
                for &(value, count) in counts {
                    match dense.slot(value) {
                        Some(slot) => dense.slots.add(slot, count, total),
                        None => outside.push((value, count)),
                    }
                }
                if !outside.is_empty() && !dense.cover(&outside, total) {
                    let mut entries = dense.narrow();
                    add_sorted(&mut entries, &outside);
                    self.entries = Entries::Narrow(entries);
                    self.densify();
                }
            }
        }
    }

    /// Turns narrow entries dense when that is at most twice as large.
    fn densify(&mut self) {
        if let Entries::Narrow(entries) = &self.entries
            && let Some(dense) = Dense::of(entries, self.total)
        {
            self.entries = Entries::Dense(dense);
        }
    }

    /// Adds every value of `other` to this histogram. Into a dense one, the values `other` has
    /// not sorted yet go to their slots as they are (a unit's few requests of a busy group are
    /// neither sorted nor folded on their way into its owner's state).
    pub fn merge(&mut self, mut other: Histogram) {
        if let Entries::Dense(dense) = &mut self.entries {
            let mut values = std::mem::take(&mut other.pending);
            let total = self.total + values.len() as u64;
            if total <= u64::from(u32::MAX) {
                let before = values.len();
                dense.count_each(&mut values, total);
                self.total += (before - values.len()) as u64;
            }
            // Values outside the slots join this one's buffer, are folded in, and its room freed.
            self.pending.append(&mut values);
            self.compact();
        }
        other.compact();
        if self.total == 0 && self.pending.is_empty() {
            *self = other;
            return;
        }
        self.add_counts_of(&other);
    }

    /// Adds every value of `other`, which must be compacted, leaving it as it is.
    pub fn add_counts_of(&mut self, other: &Histogram) {
        self.fold_pending();
        if self.add_dense(other) {
            return;
        }
        // The common case (a unit's few values of a group into the owner's): no allocation.
        let mut on_stack = [(0, 0); MERGED_ON_STACK];
        let mut counts = other.counts();
        let mut len = 0;
        for (slot, count) in on_stack.iter_mut().zip(counts.by_ref()) {
            *slot = count;
            len += 1;
        }
        match counts.next() {
            None => self.add(&on_stack[..len]),
            Some(next) => {
                let all: Vec<_> = on_stack.into_iter().chain([next]).chain(counts).collect();
                self.add(&all);
            }
        }
    }

    /// Adds a dense histogram to a dense one slot by slot (a day's resources folded into the day,
    /// a summary's months): when they share a step, one's range holds the other's, and the total
    /// still fits in 32 bits. False, and nothing changed, otherwise.
    fn add_dense(&mut self, other: &Histogram) -> bool {
        let (Entries::Dense(mine), Entries::Dense(theirs)) = (&mut self.entries, &other.entries)
        else {
            return false;
        };
        let total = self.total + other.total;
        let fits = total <= u64::from(u32::MAX) && other.pending.is_empty();
        let step = mine.step();
        if !fits || mine.step != theirs.step || mine.first.abs_diff(theirs.first) % mine.step != 0 {
            return false;
        }
        if !mine.holds(theirs) {
            if !theirs.holds(mine) {
                return false;
            }
            // Their range, with this one's counts where they fall.
            let before = ((mine.first() - theirs.first()) / step) as usize;
            mine.slots.regrow(before, theirs.slots.len());
            mine.first = theirs.first;
        }
        let offset = ((theirs.first() - mine.first()) / step) as usize;
        mine.slots.add_slots(offset, &theirs.slots, total);
        self.total = total;
        true
    }

    /// Takes back one count of `value` (a request counted before its line was complete); false,
    /// and nothing changed, when the histogram holds no such value. Rare: it rebuilds the entries.
    pub fn remove(&mut self, value: u64) -> bool {
        self.compact();
        let mut counts: Vec<(u64, u64)> = self.counts().collect();
        let Some(at) = counts.iter().position(|&(v, _)| v == value) else {
            return false;
        };
        counts[at].1 -= 1;
        if counts[at].1 == 0 {
            counts.remove(at);
        }
        let mut rebuilt = Histogram::default();
        rebuilt.add(&counts);
        *self = rebuilt;
        true
    }

    /// The sorted `(value, count)` pairs. Call [`Histogram::compact`] first.
    pub fn counts(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        debug_assert!(self.pending.is_empty(), "compact() before reading counts");
        self.folded_counts()
    }

    /// The sorted `(value, count)` pairs folded in so far (pending values left out).
    fn folded_counts(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        let (narrow, wide, dense) = match &self.entries {
            Entries::Few(few) => (few.as_slice(), &[][..], None),
            Entries::Narrow(entries) => (entries.as_slice(), &[][..], None),
            Entries::Wide(entries) => (&[][..], entries.as_slice(), None),
            Entries::Dense(dense) => (&[][..], &[][..], Some(dense)),
        };
        narrow
            .iter()
            .map(|&(v, c)| (u64::from(v), u64::from(c)))
            .chain(wide.iter().copied())
            .chain(dense.into_iter().flat_map(Dense::counts))
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

    /// How many values were counted.
    pub fn total(&self) -> u64 {
        self.total + self.pending.len() as u64
    }

    /// Bytes held on the heap (an estimate of what the allocator gives out for them).
    pub fn heap_bytes(&self) -> usize {
        let entries = match &self.entries {
            Entries::Few(_) => 0,
            Entries::Narrow(entries) => entries.capacity() * size_of::<(u32, u32)>(),
            Entries::Wide(entries) => entries.capacity() * size_of::<(u64, u64)>(),
            Entries::Dense(dense) => dense.slots.heap_bytes(),
        };
        let pending = self.pending.capacity() * size_of::<u64>();
        allocated(entries) + allocated(pending)
    }

    /// Entries held: distinct values, or slots of the dense form.
    fn entry_count(&self) -> usize {
        match &self.entries {
            Entries::Few(few) => few.as_slice().len(),
            Entries::Narrow(entries) => entries.len(),
            Entries::Wide(entries) => entries.len(),
            Entries::Dense(dense) => dense.slots.len(),
        }
    }

    /// A compact binary form, in one of three formats (LEB128 varints after a format byte):
    /// - [`PAIRS_FORMAT`]: each `(value, count)` pair as the value's difference from the one
    ///   before and the count;
    /// - [`SLOTS_FORMAT`], for a dense histogram: its first value, its step, its number of
    ///   slots, then every slot's count, zeros included. A count under 128 takes one byte and
    ///   no value is written, so a busy day takes about a third of the room of its pairs, and
    ///   it is written and read in one pass over the slots;
    /// - [`NIBBLES_FORMAT`], for a dense histogram whose counts are mostly under 15 (a busy
    ///   day's, or one resource's of it): the same range, then every slot's count in 4 bits, two
    ///   a byte (the first slot in the low bits; an odd number of slots leaves the last high 4
    ///   bits 0), where 15 stands for 15 plus a varint that follows the packed counts, in the
    ///   order of the slots. It is written when shorter than the slots: about half their room.
    ///
    /// The format follows the histogram's form in memory; equal histograms may be written in
    /// either, and read back equal.
    pub fn to_bytes(&self) -> Vec<u8> {
        match &self.entries {
            Entries::Dense(dense) if self.pending.is_empty() => dense.to_bytes(),
            _ => {
                let mut bytes = Vec::with_capacity(1 + 4 * self.entry_count());
                bytes.push(PAIRS_FORMAT);
                let mut previous = 0;
                for (value, count) in self.counts() {
                    write_varint(&mut bytes, value - previous);
                    write_varint(&mut bytes, count);
                    previous = value;
                }
                bytes
            }
        }
    }

    /// Reads what [`Histogram::to_bytes`] wrote, checking every invariant.
    pub fn from_bytes(bytes: &[u8]) -> Result<Histogram, CorruptHistogram> {
        match bytes.split_first() {
            Some((&PAIRS_FORMAT, pairs)) => Histogram::from_pairs_bytes(pairs),
            Some((&format @ (SLOTS_FORMAT | NIBBLES_FORMAT), slots)) => {
                Dense::from_bytes(format, slots)
            }
            _ => Err(CorruptHistogram),
        }
    }

    fn from_pairs_bytes(mut rest: &[u8]) -> Result<Histogram, CorruptHistogram> {
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
        Ok(Histogram::from_counts(&counts))
    }

    /// The histogram of sorted `(value, count)` pairs: strictly ascending values, counts above 0.
    pub fn from_counts(counts: &[(u64, u64)]) -> Histogram {
        debug_assert!(counts.windows(2).all(|w| w[0].0 < w[1].0));
        let mut histogram = Histogram::default();
        histogram.add(counts);
        histogram
    }
}

/// Histograms of a range merged into one in time linear in their values, times a logarithm.
/// Merging thousands of days one after the other copies the growing list at every day (a
/// decade of days with distinct durations: seconds); here their pairs are gathered and merged in
/// at once whenever they outnumber the merged ones, so each pair is copied a bounded number of
/// times. A merged histogram that turned dense takes the next ones directly, one add a value.
#[derive(Debug, Default)]
pub struct Merger {
    merged: Histogram,
    gathered: Vec<(u64, u64)>,
}

/// Pairs gathered before a merge, at least (a few merges for a range of small histograms).
const GATHERED_MIN: usize = 4096;

impl Merger {
    pub fn push(&mut self, mut histogram: Histogram) {
        histogram.compact();
        if self.merged.total == 0 && self.gathered.is_empty() {
            self.merged = histogram;
            return;
        }
        self.push_counts_of(&histogram);
    }

    /// Adds the values of `histogram` (compacted), leaving it as it is.
    pub fn push_counts_of(&mut self, histogram: &Histogram) {
        let dense = |histogram: &Histogram| matches!(histogram.entries, Entries::Dense(_));
        if self.merged.total == 0 && self.gathered.is_empty() && dense(histogram) {
            // A copy of its slots, which the next dense ones are added to slot by slot.
            self.merged = histogram.clone();
            return;
        }
        if dense(&self.merged) {
            self.merged.add_counts_of(histogram);
            return;
        }
        self.gathered.extend(histogram.counts());
        if self.gathered.len() >= self.merged.entry_count().max(GATHERED_MIN) {
            self.merge_gathered();
        }
    }

    pub fn finish(mut self) -> Histogram {
        self.merge_gathered();
        self.merged
    }

    fn merge_gathered(&mut self) {
        if self.gathered.is_empty() {
            return;
        }
        self.gathered.sort_unstable_by_key(|&(value, _)| value);
        let mut folded: Vec<(u64, u64)> = Vec::with_capacity(self.gathered.len());
        for &(value, count) in &self.gathered {
            match folded.last_mut() {
                Some(last) if last.0 == value => last.1 += count,
                _ => folded.push((value, count)),
            }
        }
        self.gathered.clear();
        self.merged.add(&folded);
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

/// The first byte of a histogram written as `(value, count)` pairs (see [`Histogram::to_bytes`]).
const PAIRS_FORMAT: u8 = 1;

/// The first byte of a dense histogram written slot by slot (see [`Histogram::to_bytes`]).
const SLOTS_FORMAT: u8 = 2;

/// The first byte of a dense histogram written a nibble a slot (see [`Histogram::to_bytes`]).
const NIBBLES_FORMAT: u8 = 3;

/// The nibble of a count of at least this many, the rest of which follows the nibbles.
const NIBBLE_ESCAPE: u64 = 0xf;

/// Adds the sorted counts `b` into the sorted entries `a`: in place while every value of `b` is
/// already in `a` (the common case once a group has seen its durations), by a merge from the
/// first new value on. Says whether `a` gained values.
fn add_sorted<E: Entry>(a: &mut Vec<E>, b: &[(u64, u64)]) -> bool {
    let mut i = 0;
    for (k, &(value, count)) in b.iter().enumerate() {
        i += run_below(&a[i..], value);
        if i < a.len() && a[i].value() == value {
            a[i].add(count);
        } else {
            *a = merge_from(a, i, &b[k..]);
            return true;
        }
    }
    false
}

/// `a[..start]`, then `a[start..]` and `b` merged, counts of equal values added.
fn merge_from<E: Entry>(a: &[E], start: usize, b: &[(u64, u64)]) -> Vec<E> {
    let mut merged = Vec::with_capacity(a.len() + b.len());
    merged.extend_from_slice(&a[..start]);
    let mut i = start;
    for &(value, count) in b {
        // The entries below `value` are copied as one run.
        let run = run_below(&a[i..], value);
        merged.extend_from_slice(&a[i..i + run]);
        i += run;
        match a.get(i) {
            Some(&entry) if entry.value() == value => {
                let mut entry = entry;
                entry.add(count);
                merged.push(entry);
                i += 1;
            }
            _ => merged.push(E::new(value, count)),
        }
    }
    merged.extend_from_slice(&a[i..]);
    merged
}

/// How many of the sorted entries `a` are below `value`, found by galloping: a few comparisons
/// when that is a few entries (a merge of lists of alike size), a binary search's when many (a
/// few counts merged into a long list).
#[inline]
fn run_below<E: Entry>(a: &[E], value: u64) -> usize {
    let mut end = 1;
    while end <= a.len() && a[end - 1].value() < value {
        end *= 2;
    }
    let start = end / 2;
    let end = end.min(a.len());
    start + a[start..end].partition_point(|e| e.value() < value)
}

/// What the allocator takes for `bytes` asked (a header and rounding; nothing for nothing).
pub(crate) fn allocated(bytes: usize) -> usize {
    if bytes == 0 {
        0
    } else {
        (bytes + 16).next_multiple_of(16)
    }
}

/// The bytes [`write_varint`] writes for `value`: comparisons, that a loop over many counts
/// makes at once.
fn varint_len(value: u32) -> usize {
    1 + usize::from(value >= 1 << 7)
        + usize::from(value >= 1 << 14)
        + usize::from(value >= 1 << 21)
        + usize::from(value >= 1 << 28)
}

pub(crate) fn write_varint(bytes: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        bytes.push((value as u8) | 0x80);
        value >>= 7;
    }
    bytes.push(value as u8);
}

pub(crate) fn read_varint(bytes: &mut &[u8]) -> Result<u64, CorruptHistogram> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first().ok_or(CorruptHistogram)?;
        *bytes = rest;
        let bits = u64::from(byte & 0x7f);
        // The tenth byte may carry one bit only: more would not fit in 64 bits.
        if (bits << shift) >> shift != bits {
            return Err(CorruptHistogram);
        }
        value |= bits << shift;
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

    /// Mostly milliseconds from a range, sometimes off that step or beyond the range.
    /// Durations of which histograms turn dense (on a millisecond step) or not, some past the
    /// 32 bits of a dense histogram's slots.
    fn durations_dense_or_not() -> impl Strategy<Value = Vec<u64>> {
        let milliseconds = || (100u64..400).prop_map(|ms| ms * 1000);
        prop_oneof![
            durations(),
            proptest::collection::vec(milliseconds(), 0..3000),
            proptest::collection::vec(
                prop_oneof![50 => milliseconds(), 1 => (1u64 << 32)..(1u64 << 40)],
                0..3000
            ),
        ]
    }

    fn durations() -> impl Strategy<Value = Vec<u64>> {
        proptest::collection::vec(
            prop_oneof![
                20 => (100u64..400).prop_map(|ms| ms * 1000),
                1 => 0u64..1_000_000,
                1 => 0u64..10_000_000,
            ],
            0..6000,
        )
    }

    /// The [`PAIRS_FORMAT`] bytes of sorted counts.
    fn pairs_bytes(counts: &[(u64, u64)]) -> Vec<u8> {
        let mut bytes = vec![PAIRS_FORMAT];
        let mut previous = 0;
        for &(value, count) in counts {
            write_varint(&mut bytes, value - previous);
            write_varint(&mut bytes, count);
            previous = value;
        }
        bytes
    }

    proptest! {
        /// Unsorted values counted in slots make the dense form that sorting them makes, and only
        /// when sorting makes one: [`Dense::of`] of every value's counts.
        #[test]
        fn counted_values_turn_dense_exactly_when_sorted_ones_would(
            sorted in prop_oneof![durations_dense_or_not(), few_distinct()],
            unsorted in prop_oneof![durations_dense_or_not(), few_distinct()],
        ) {
            let entries: Vec<(u32, u32)> = oracle_counts(&sorted)
                .into_iter()
                .filter_map(|(value, count)| Some((u32::try_from(value).ok()?, count as u32)))
                .collect();
            let mut all: Vec<u64> = entries
                .iter()
                .flat_map(|&(value, count)| std::iter::repeat_n(u64::from(value), count as usize))
                .collect();
            all.extend(&unsorted);
            let total = all.len() as u64;
            let narrow: Option<Vec<(u32, u32)>> = oracle_counts(&all)
                .into_iter()
                .map(|(value, count)| Some((u32::try_from(value).ok()?, count as u32)))
                .collect();
            let expected = narrow.and_then(|narrow| Dense::of(&narrow, total));
            let form = |dense: Option<Dense>| {
                dense.map(|d| (d.first, d.step, d.slots.values().collect::<Vec<_>>()))
            };
            prop_assert_eq!(form(Dense::counting(&entries, &unsorted, total)), form(expected));
        }
    }

    /// Many values, of fewer distinct ones than a dense form needs, close together.
    fn few_distinct() -> impl Strategy<Value = Vec<u64>> {
        let below = 100 + DENSE_MIN_ENTRIES as u64 / 2;
        proptest::collection::vec(100u64..below, 0..600)
    }

    fn oracle_counts(values: &[u64]) -> Vec<(u64, u64)> {
        let mut counts = std::collections::BTreeMap::new();
        values
            .iter()
            .for_each(|&v| *counts.entry(v).or_insert(0) += 1);
        counts.into_iter().collect()
    }

    proptest! {
        #[test]
        fn dense_or_not_the_counts_are_exact(
            values in durations_dense_or_not(),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 1..6),
        ) {
            let mut merged = Histogram::default();
            // As a unit's states come to their owner: values recorded and not yet sorted.
            let mut merged_unsorted = Histogram::default();
            for piece in crate::testing::pieces(&values, &cuts) {
                merged.merge(histogram_of(piece));
                let mut unsorted = Histogram::default();
                piece.iter().for_each(|&v| unsorted.record(v));
                merged_unsorted.merge(unsorted);
            }
            merged_unsorted.compact();
            prop_assert_eq!(merged_unsorted.counts().collect::<Vec<_>>(), oracle_counts(&values));
            let mut recorded = Histogram::default();
            values.iter().for_each(|&v| recorded.record(v));
            recorded.compact();
            prop_assert_eq!(merged.counts().collect::<Vec<_>>(), oracle_counts(&values));
            prop_assert_eq!(recorded.counts().collect::<Vec<_>>(), oracle_counts(&values));
            prop_assert_eq!(Histogram::from_bytes(&merged.to_bytes()).unwrap(), recorded);
        }

        /// A dense histogram is written as its range and the counts of its slots, each a varint
        /// or each a nibble (counts of 15 and more escaped after them), whichever is shorter;
        /// any other as the (delta, count) pairs of its counts. All read back equal, and so do
        /// the pairs of a dense one (how versions before the slots wrote it).
        #[test]
        fn the_bytes_are_the_pairs_or_the_slots_of_the_counts(
            values in durations_dense_or_not(),
        ) {
            let histogram = histogram_of(&values);
            let counts = oracle_counts(&values);
            let expected = match &histogram.entries {
                Entries::Dense(dense) => {
                    let (first, step) = (dense.first(), dense.step());
                    let last = first + (dense.slots.len() as u64 - 1) * step;
                    let in_slots = counts.iter().all(|&(value, _)| {
                        (first..=last).contains(&value) && (value - first) % step == 0
                    });
                    prop_assert!(in_slots);
                    let slots: Vec<u64> = (first..=last)
                        .step_by(step as usize)
                        .map(|value| counts.iter().find(|c| c.0 == value).map_or(0, |c| c.1))
                        .collect();
                    let mut varints = Vec::new();
                    slots.iter().for_each(|&count| write_varint(&mut varints, count));
                    let mut nibbles: Vec<u8> = slots
                        .chunks(2)
                        .map(|pair| {
                            let nibble = |count: u64| count.min(15) as u8;
                            nibble(pair[0]) | pair.get(1).map_or(0, |&c| nibble(c) << 4)
                        })
                        .collect();
                    for &count in slots.iter().filter(|&&count| count >= 15) {
                        write_varint(&mut nibbles, count - 15);
                    }
                    let (format, body) = match nibbles.len() < varints.len() {
                        true => (NIBBLES_FORMAT, nibbles),
                        false => (SLOTS_FORMAT, varints),
                    };
                    let mut expected = vec![format];
                    for varint in [first, step, dense.slots.len() as u64] {
                        write_varint(&mut expected, varint);
                    }
                    expected.extend(body);
                    expected
                }
                _ => pairs_bytes(&counts),
            };
            prop_assert_eq!(histogram.to_bytes(), expected);
            prop_assert_eq!(Histogram::from_bytes(&histogram.to_bytes()).unwrap(), histogram.clone());
            prop_assert_eq!(Histogram::from_bytes(&pairs_bytes(&counts)).unwrap(), histogram);
        }

        #[test]
        fn arbitrary_slots_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..64),
            nibbles in any::<bool>(),
        ) {
            let format = if nibbles { NIBBLES_FORMAT } else { SLOTS_FORMAT };
            let slots: Vec<u8> = [format].into_iter().chain(bytes).collect();
            if let Ok(histogram) = Histogram::from_bytes(&slots) {
                prop_assert_eq!(Histogram::from_bytes(&histogram.to_bytes()).unwrap(), histogram);
            }
        }
    }

    proptest! {
        #[test]
        fn dense_histograms_added_slot_by_slot_are_exact(
            step in prop_oneof![Just(1u64), Just(10), Just(1000), 1u64..5000],
            ranges in proptest::collection::vec((0u64..400, 1u64..400, 1usize..3_000), 2..5),
            big in any::<bool>(),
        ) {
            // Histograms of values on one step over ranges that hold one another or not (each
            // dense where it covers most of its range), added in turn as a day's resources are.
            let base = if big { u64::from(u32::MAX) - 1_000 } else { 5_000 };
            let mut all = Vec::new();
            let mut merged = Histogram::default();
            for (i, &(start, len, count)) in ranges.iter().enumerate() {
                let values: Vec<u64> = (0..count as u64)
                    .map(|k| base + (start + (k * 7 + i as u64) % len) * step)
                    .collect();
                let mut part = histogram_of(&values);
                part.compact();
                merged.add_counts_of(&part);
                all.extend(values);
            }
            merged.compact();
            prop_assert_eq!(merged.total(), all.len() as u64);
            prop_assert_eq!(merged.counts().collect::<Vec<_>>(), oracle_counts(&all));
            prop_assert_eq!(Histogram::from_bytes(&merged.to_bytes()).unwrap(), merged);
        }
    }

    proptest! {
        /// Counts past 16 bits, reached by recording, adding pairs, growing the range or adding
        /// slot by slot, widen a dense histogram's counts without losing one; below that they
        /// stay 2 bytes.
        #[test]
        fn dense_counts_past_16_bits_widen_exactly(
            recorded in 0u64..70_000,
            parts in proptest::collection::vec((0u64..300, 1u64..300, 1u64..30_000), 0..5),
            unsorted in 0u64..70_000,
        ) {
            let step = 1000;
            let mut all = std::collections::BTreeMap::new();
            let mut merged = Histogram::default();
            for i in 0..recorded {
                let value = (i * 7 % 200) * step;
                merged.record(value);
                *all.entry(value).or_insert(0) += 1;
            }
            for &(start, len, count) in &parts {
                let pairs: Vec<(u64, u64)> = (start..start + len)
                    .map(|slot| (slot * step, count * (slot % 3 + 1)))
                    .collect();
                pairs.iter().for_each(|&(value, count)| *all.entry(value).or_insert(0) += count);
                merged.add_counts_of(&Histogram::from_counts(&pairs));
            }
            // As a unit's values come to their owner: some past the slots, none sorted.
            let mut other = Histogram::default();
            for i in 0..unsorted {
                let value = (i * 13 % 230) * step;
                other.record(value);
                *all.entry(value).or_insert(0) += 1;
            }
            merged.merge(other);
            merged.compact();
            prop_assert_eq!(merged.counts().collect::<Vec<_>>(), all.into_iter().collect::<Vec<_>>());
            if let Entries::Dense(dense) = &merged.entries {
                prop_assert_eq!(matches!(dense.slots, Slots::Two(_)), merged.total() <= TWO_BYTES_MAX);
            }
            prop_assert_eq!(Histogram::from_bytes(&merged.to_bytes()).unwrap(), merged);
        }
    }

    #[test]
    fn unsorted_values_merged_into_a_dense_histogram_leave_no_buffer_behind() {
        let mut owner = histogram_of(&(100..200u64).map(|ms| ms * 1000).collect::<Vec<_>>());
        assert!(matches!(owner.entries, Entries::Dense(_)));
        let mut unit = Histogram::default();
        // Six values in its slots, one past them.
        for value in [
            150_000, 151_000, 152_000, 153_000, 154_000, 155_000, 200_000,
        ] {
            unit.record(value);
        }
        assert!(!unit.pending.is_empty());
        owner.merge(unit);
        assert!(matches!(owner.entries, Entries::Dense(_)));
        assert_eq!(owner.pending.capacity(), 0);
        assert_eq!(owner.total(), 107);
        assert_eq!(owner.counts().last(), Some((200_000, 1)));
    }

    #[test]
    fn a_busy_days_counts_take_a_nibble_a_slot_and_larger_ones_follow_them() {
        // Slots of 0 to 10 ms, counting 3, 0, 16, 1, 200, 2, 0, 0, 0, 1, 5.
        let counts = [3, 0, 16, 1, 200, 2, 0, 0, 0, 1, 5];
        let histogram = Histogram {
            entries: Entries::Dense(Dense {
                first: 0,
                step: 1000,
                slots: Slots::Two(counts.to_vec()),
            }),
            total: counts.iter().map(|&count| u64::from(count)).sum(),
            pending: Vec::new(),
        };
        let bytes = histogram.to_bytes();
        #[rustfmt::skip]
        let expected = [
            NIBBLES_FORMAT, 0, 0xe8, 0x07, 11, // first 0, step 1000, 11 slots
            0x03, 0x1f, 0x2f, 0x00, 0x10, 0x05, // nibbles, low first, the last high one empty
            1, 185, 1, // 16 = 15 + 1, 200 = 15 + 185
        ];
        assert_eq!(bytes, expected);
        assert_eq!(Histogram::from_bytes(&bytes).unwrap(), histogram);
        let mut padded = bytes.clone();
        padded[10] |= 0x10;
        assert!(
            Histogram::from_bytes(&padded).is_err(),
            "a count in the padding"
        );
        let mut short = bytes.clone();
        short.pop();
        assert!(Histogram::from_bytes(&short).is_err(), "an escape missing");
        let mut long = bytes;
        long.push(0);
        assert!(
            Histogram::from_bytes(&long).is_err(),
            "bytes after the escapes"
        );
    }

    #[test]
    fn pairs_turn_dense_within_eight_slots_a_value_of_two_byte_counts_and_four_past_them() {
        // 40 values on a step of 10 over 305 slots.
        let pairs = |count| {
            let values = [0, 10].into_iter().chain((1..39).map(|k| k * 80));
            values.map(|value| (value, count)).collect::<Vec<_>>()
        };
        let dense = |histogram: Histogram| matches!(histogram.entries, Entries::Dense(_));
        assert!(dense(Histogram::from_counts(&pairs(1))), "2-byte counts");
        assert!(
            !dense(Histogram::from_counts(&pairs(2_000))),
            "4-byte counts"
        );
    }

    #[test]
    fn a_dense_histogram_takes_one_whose_range_holds_its_own_and_stays_dense() {
        let of = |values: std::ops::Range<u64>| {
            let mut histogram = histogram_of(&values.map(|v| v * 10).collect::<Vec<_>>());
            histogram.compact();
            assert!(matches!(histogram.entries, Entries::Dense(_)));
            histogram
        };
        let mut narrow = of(100..200);
        narrow.add_counts_of(&of(50..300));
        narrow.add_counts_of(&of(120..180));
        let Entries::Dense(dense) = &narrow.entries else {
            panic!("dense: {:?}", narrow.entries)
        };
        assert_eq!((dense.first, dense.step, dense.slots.len()), (500, 10, 250));
        assert_eq!(narrow.total(), 100 + 250 + 60);
        assert_eq!(
            dense.slots.heap_bytes(),
            250 * 2,
            "exactly the room needed, 2 bytes a count"
        );
    }

    proptest! {
        #[test]
        fn a_few_values_merged_in_any_pieces_are_exact(
            values in proptest::collection::vec(
                prop_oneof![8 => 0u64..8, 1 => any::<u64>()], 0..14),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
        ) {
            let mut merged = Histogram::default();
            for piece in crate::testing::pieces(&values, &cuts) {
                let mut recorded = Histogram::default();
                piece.iter().for_each(|&v| recorded.record(v));
                merged.merge(recorded);
            }
            merged.compact();
            prop_assert_eq!(merged.total(), values.len() as u64);
            prop_assert_eq!(merged.counts().collect::<Vec<_>>(), oracle_counts(&values));
            prop_assert_eq!(Histogram::from_bytes(&merged.to_bytes()).unwrap(), merged);
        }
    }

    proptest! {
        #[test]
        fn a_merger_of_many_histograms_is_exact(
            values in durations_dense_or_not(),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..40),
            wide in any::<bool>(),
            by_reference in any::<bool>(),
        ) {
            // Values past 32 bits make the merged histogram wide.
            let values: Vec<u64> =
                values.iter().map(|&v| if wide { v << 20 } else { v }).collect();
            let mut merger = Merger::default();
            for piece in crate::testing::pieces(&values, &cuts) {
                let mut histogram = histogram_of(piece);
                histogram.compact();
                match by_reference {
                    true => merger.push_counts_of(&histogram),
                    false => merger.push(histogram),
                }
            }
            let merged = merger.finish();
            prop_assert_eq!(merged.total(), values.len() as u64);
            prop_assert_eq!(merged.counts().collect::<Vec<_>>(), oracle_counts(&values));
        }
    }

    #[test]
    fn a_merger_of_thousands_of_distinct_histograms_is_exact() {
        // Many more pairs than are gathered before a merge, each piece's values distinct.
        let values: Vec<u64> = (0..60_000u64).map(|i| (i * 7_919) % 1_000_003).collect();
        let mut merger = Merger::default();
        for piece in values.chunks(300) {
            merger.push(histogram_of(piece));
        }
        let merged = merger.finish();
        assert_eq!(merged.counts().collect::<Vec<_>>(), oracle_counts(&values));
    }

    #[test]
    fn a_handful_of_values_stays_inline_with_nothing_on_the_heap() {
        let mut histogram = Histogram::default();
        for value in [300_000, 100_000, 300_000, 200_000, 5, 1_999_999] {
            histogram.record(value);
        }
        assert!(matches!(histogram.entries, Entries::Few(_)));
        assert_eq!(histogram.heap_bytes(), 0);
        histogram.merge(histogram_of(&[5, 100_000]));
        assert_eq!(histogram.heap_bytes(), 0, "merging what fits stays inline");
        histogram.merge(histogram_of(&[7]));
        assert!(
            matches!(histogram.entries, Entries::Narrow(_)),
            "six values spill out"
        );
        assert_eq!(
            histogram.counts().collect::<Vec<_>>(),
            [
                (5, 2),
                (7, 1),
                (100_000, 2),
                (200_000, 1),
                (300_000, 2),
                (1_999_999, 1)
            ]
        );
        assert!(size_of::<Histogram>() <= 80, "{}", size_of::<Histogram>());
    }

    #[test]
    fn a_full_range_turns_dense_and_stays_exact_off_its_step() {
        let milliseconds: Vec<u64> = (100..300).map(|ms| ms * 1000).collect();
        let mut histogram = histogram_of(&milliseconds);
        assert!(matches!(histogram.entries, Entries::Dense(_)));
        histogram.merge(histogram_of(&[150_500, 7_000_000, 200_000]));
        let mut expected = milliseconds.clone();
        expected.extend([150_500, 7_000_000, 200_000]);
        assert_eq!(
            histogram.counts().collect::<Vec<_>>(),
            oracle_counts(&expected)
        );
        assert!(
            !matches!(histogram.entries, Entries::Dense(_)),
            "off step: pairs again"
        );
        assert!(matches!(
            histogram_of(&milliseconds[..40]).entries,
            Entries::Dense(_)
        ));
        let sparse: Vec<u64> = milliseconds.iter().step_by(3).copied().collect();
        assert!(matches!(
            histogram_of(&sparse[..40]).entries,
            Entries::Dense(_)
        ));
        let scattered: Vec<u64> = (0..100).map(|i| i * i * 1000).collect();
        assert!(matches!(
            histogram_of(&scattered).entries,
            Entries::Narrow(_)
        ));
    }

    #[test]
    fn values_on_the_step_past_either_end_grow_a_dense_histogram() {
        let milliseconds: Vec<u64> = (100..300).map(|ms| ms * 1000).collect();
        let mut histogram = histogram_of(&milliseconds);
        let beyond = [40_000, 99_000, 300_000, 301_000, 320_000];
        histogram.merge(histogram_of(&beyond));
        assert!(matches!(histogram.entries, Entries::Dense(_)));
        let mut expected = milliseconds.clone();
        expected.extend(beyond);
        assert_eq!(
            histogram.counts().collect::<Vec<_>>(),
            oracle_counts(&expected)
        );
        // On the step but so far that most slots would be empty: pairs again, still exact.
        histogram.merge(histogram_of(&[5_000_000]));
        assert!(matches!(histogram.entries, Entries::Narrow(_)));
        expected.push(5_000_000);
        assert_eq!(
            histogram.counts().collect::<Vec<_>>(),
            oracle_counts(&expected)
        );
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
        assert!(matches!(histogram.entries, Entries::Few(_)));
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
        // Varints past 64 bits: a tenth byte with more than one bit (2^64 would read as 0).
        let too_wide = [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x02];
        assert!(Histogram::from_bytes(&[&[1][..], &too_wide, &[1]].concat()).is_err());
        assert!(Histogram::from_bytes(&[&[1, 5][..], &too_wide].concat()).is_err());
        let largest = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        let decoded = Histogram::from_bytes(&[&[1][..], &largest, &[1]].concat()).unwrap();
        assert_eq!(decoded.counts().collect::<Vec<_>>(), [(u64::MAX, 1)]);
    }
}
