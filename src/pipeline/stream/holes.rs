//! Holes in a stream: sequences it no longer holds (dropped by its limits, per subject too, or
//! deleted), as sorted ranges, and how they are written in a note (`1-5, 9, 12-40`). Pure: what a
//! stream holds is asked of the stream by its reader, never here.

use std::fmt;

/// A set of stream sequences, as sorted, disjoint, non-adjacent inclusive ranges.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Holes {
    ranges: Vec<(u64, u64)>,
}

/// Ranges a note shows at most; a longer list shows its first and last ones and how many between.
const SHOWN_RANGES: usize = 12;
const SHOWN_LAST: usize = 2;

impl Holes {
    /// The sequences `from..=to` (none when `from > to`).
    pub fn span(from: u64, to: u64) -> Holes {
        Holes {
            ranges: if from <= to { vec![(from, to)] } else { vec![] },
        }
    }

    /// The sequences after `after` that a stream whose messages run from `first` to `last` no
    /// longer holds: those before `first`, and those of `deleted` (the ones between `first` and
    /// `last` it dropped or had deleted, in any order) up to `last`.
    pub fn of_stream(after: u64, first: u64, last: u64, deleted: &[u64]) -> Holes {
        let mut holes = Holes::span(after + 1, first.saturating_sub(1).min(last));
        let mut deleted: Vec<u64> = deleted
            .iter()
            .copied()
            .filter(|&s| s > after && s <= last)
            .collect();
        deleted.sort_unstable();
        for sequence in deleted {
            holes.push(sequence, sequence);
        }
        holes
    }

    /// Adds `from..=to`, which must come after every sequence held.
    fn push(&mut self, from: u64, to: u64) {
        match self.ranges.last_mut() {
            Some((_, end)) if from <= *end + 1 => *end = (*end).max(to),
            _ => self.ranges.push((from, to)),
        }
    }

    /// How many sequences.
    pub fn count(&self) -> u64 {
        self.ranges.iter().map(|(from, to)| to - from + 1).sum()
    }

    /// The highest sequence held.
    pub fn last(&self) -> Option<u64> {
        self.ranges.last().map(|&(_, to)| to)
    }

    /// The sequences of `from..=to` that are not held.
    pub fn missing_from(&self, from: u64, to: u64) -> Holes {
        let mut missing = Holes::default();
        if from > to {
            return missing;
        }
        let mut next = from;
        let start = self.ranges.partition_point(|&(_, end)| end < from);
        for &(a, b) in &self.ranges[start..] {
            if a > to {
                break;
            }
            if a > next {
                missing.push(next, a - 1);
            }
            next = next.max(b.saturating_add(1));
            if next > to {
                return missing;
            }
        }
        missing.push(next, to);
        missing
    }

    /// The sequences held that `other` does not hold.
    pub fn minus(&self, other: &Holes) -> Holes {
        let mut rest = Holes::default();
        for &(from, to) in &self.ranges {
            for &(a, b) in &other.missing_from(from, to).ranges {
                rest.push(a, b);
            }
        }
        rest
    }

    /// Adds every sequence of `other`.
    pub fn add(&mut self, other: &Holes) {
        if let (Some(last), Some(&(first, _))) = (self.last(), other.ranges.first())
            && first > last
        {
            for &(from, to) in &other.ranges {
                self.push(from, to);
            }
            return;
        }
        let mut all: Vec<(u64, u64)> = self.ranges.iter().chain(&other.ranges).copied().collect();
        all.sort_unstable();
        let mut merged = Holes::default();
        for (from, to) in all {
            merged.push(from, to);
        }
        *self = merged;
    }

    /// Forgets the sequences up to `position`.
    pub fn forget_through(&mut self, position: u64) {
        let gone = self.ranges.partition_point(|&(_, end)| end <= position);
        self.ranges.drain(..gone);
        if let Some((from, _)) = self.ranges.first_mut() {
            *from = (*from).max(position.saturating_add(1));
        }
    }
}

/// `1-5, 9, 12-40`; a long list shows its first ranges, how many more, and its last ones.
impl fmt::Display for Holes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let range = |f: &mut fmt::Formatter<'_>, &(from, to): &(u64, u64)| match from == to {
            true => write!(f, "{from}"),
            false => write!(f, "{from}-{to}"),
        };
        let n = self.ranges.len();
        let (head, tail) = match n > SHOWN_RANGES {
            true => (SHOWN_RANGES - SHOWN_LAST, n - SHOWN_LAST),
            false => (n, n),
        };
        for (i, r) in self.ranges[..head].iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            range(f, r)?;
        }
        if tail > head {
            write!(f, ", … {} more ranges …", tail - head)?;
        }
        for r in &self.ranges[tail..] {
            f.write_str(", ")?;
            range(f, r)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(ranges: &[(u64, u64)]) -> Holes {
        Holes {
            ranges: ranges.to_vec(),
        }
    }

    #[test]
    fn a_stream_s_holes_are_its_dropped_head_and_its_deleted_sequences_after_the_position() {
        // Per-subject limits: 1-83 dropped at the head, every other one of 85-99 inside.
        let deleted: Vec<u64> = (85..100).step_by(2).collect();
        let holes = Holes::of_stream(0, 84, 100, &deleted);
        assert_eq!(holes.count(), 91);
        assert_eq!(holes.to_string(), "1-83, 85, 87, 89, 91, 93, 95, 97, 99");
        assert_eq!(
            Holes::of_stream(90, 84, 100, &deleted).to_string(),
            "91, 93, 95, 97, 99"
        );
        assert_eq!(Holes::of_stream(100, 84, 100, &deleted), Holes::default());
        // Unsorted, adjacent, and past the last sequence (not the stream's to say).
        assert_eq!(
            Holes::of_stream(2, 1, 20, &[9, 3, 4, 5, 30]).to_string(),
            "3-5, 9"
        );
        // Emptied: its first sequence is past its last.
        assert_eq!(Holes::of_stream(4, 21, 20, &[]).to_string(), "5-20");
        assert_eq!(Holes::of_stream(20, 21, 20, &[]), Holes::default());
    }

    #[test]
    fn missing_from_is_what_a_range_has_that_the_set_does_not() {
        let noted = of(&[(3, 5), (9, 9), (12, 40)]);
        assert_eq!(
            noted.missing_from(1, 50).to_string(),
            "1-2, 6-8, 10-11, 41-50"
        );
        assert_eq!(noted.missing_from(4, 5), Holes::default());
        assert_eq!(noted.missing_from(6, 8).to_string(), "6-8");
        assert_eq!(noted.missing_from(5, 12).to_string(), "6-8, 10-11");
        assert_eq!(noted.missing_from(41, 40), Holes::default());
        assert_eq!(Holes::default().missing_from(7, 7).to_string(), "7");
        assert_eq!(of(&[(1, u64::MAX)]).missing_from(5, 9), Holes::default());
    }

    #[test]
    fn sets_merge_and_forget_what_was_read() {
        let mut holes = of(&[(3, 5), (12, 40)]);
        holes.add(&of(&[(1, 2), (9, 9), (41, 41)]));
        assert_eq!(holes, of(&[(1, 5), (9, 9), (12, 41)]));
        assert_eq!((holes.count(), holes.last()), (36, Some(41)));
        holes.forget_through(4);
        assert_eq!(holes, of(&[(5, 5), (9, 9), (12, 41)]));
        holes.forget_through(30);
        assert_eq!(holes, of(&[(31, 41)]));
        holes.forget_through(41);
        assert_eq!(holes, Holes::default());
        holes.add(&of(&[(7, 8)]));
        holes.add(&of(&[(9, 9), (20, 22)]));
        assert_eq!(holes, of(&[(7, 9), (20, 22)]));
        let rest = of(&[(1, 10), (15, 30)]).minus(&of(&[(3, 4), (10, 16), (30, 40)]));
        assert_eq!(rest, of(&[(1, 2), (5, 9), (17, 29)]));
    }

    #[test]
    fn a_long_list_shows_its_first_and_last_ranges_and_how_many_between() {
        let deleted: Vec<u64> = (1..=399).step_by(2).collect();
        let holes = Holes::of_stream(0, 1, 400, &deleted);
        assert_eq!(holes.count(), 200);
        assert_eq!(
            holes.to_string(),
            "1, 3, 5, 7, 9, 11, 13, 15, 17, 19, … 188 more ranges …, 397, 399"
        );
        let twelve: Vec<u64> = (1..=23).step_by(2).collect();
        assert!(
            !Holes::of_stream(0, 1, 30, &twelve)
                .to_string()
                .contains('…')
        );
    }
}
