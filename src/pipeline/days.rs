//! A commit's groups, which owners keep by (customer, day, resource), folded into days: each day
//! the merge of its resources' states, with its [`Breakdown`] by resource (capped; docs/spec.md
//! section 3). Every resource of a day comes from the same owner, so one sorted stream holds them
//! all, one after the other.

use std::iter::Peekable;

use super::spill::Group;
use crate::day::Day;
use crate::resources::{Breakdown, UNATTRIBUTED};
use crate::stats::DayStats;

/// One day of a commit: customer, day and its state, broken down by resource unless every request
/// is unattributed.
pub type DayGroup = (String, Day, DayStats);

/// The days of `groups` (ascending by customer, day, resource), in (customer, day) order.
pub fn days_of<I>(groups: I) -> impl Iterator<Item = anyhow::Result<DayGroup>>
where
    I: Iterator<Item = anyhow::Result<Group>>,
{
    let mut groups: Peekable<I> = groups.peekable();
    std::iter::from_fn(move || {
        let (customer, day, resource, state) = match groups.next()? {
            Ok(group) => group,
            Err(error) => return Some(Err(error)),
        };
        let mut entries = vec![(resource, state)];
        while let Some(Ok((next_customer, next_day, ..))) = groups.peek()
            && (next_customer, *next_day) == (&customer, day)
        {
            let Some(Ok((.., resource, state))) = groups.next() else {
                unreachable!("peeked")
            };
            entries.push((resource, state));
        }
        Some(Ok((customer, day, day_of(entries))))
    })
}

/// The state of a day of these resources.
fn day_of(mut entries: Vec<(String, DayStats)>) -> DayStats {
    if let [(resource, _)] = &entries[..]
        && resource == UNATTRIBUTED
    {
        return entries.pop().expect("one").1;
    }
    // The first resource's state copied (its histogram whole), the others' requests added.
    entries.iter_mut().for_each(|(_, state)| state.compact());
    let mut day = entries[0].1.clone();
    for (_, state) in &entries[1..] {
        day.add_requests_of(state);
    }
    let breakdown = Breakdown::of(
        entries
            .into_iter()
            .map(|(resource, state)| (resource.into_boxed_str(), state)),
    );
    day.compact();
    day.resources = Some(Box::new(breakdown));
    day
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(customer: &str, day: i32, resource: &str, durations: &[u64]) -> Group {
        let requests: Vec<(u16, u64)> = durations.iter().map(|&d| (200, d)).collect();
        let mut state = DayStats::of_requests(&requests);
        state.compact();
        (customer.into(), Day(day), resource.into(), state)
    }

    #[test]
    fn resources_of_a_day_fold_into_it_and_an_unattributed_day_has_no_breakdown() {
        let groups = vec![
            group("a", 1, "/x", &[1, 2]),
            group("a", 1, "/y", &[3]),
            group("a", 2, "", &[4]),
            group("b", 1, "/x", &[5]),
        ];
        let days: Vec<DayGroup> = days_of(groups.into_iter().map(Ok))
            .map(Result::unwrap)
            .collect();
        let keys: Vec<(&str, i32, u64)> = days
            .iter()
            .map(|(c, d, s)| (c.as_str(), d.0, s.total()))
            .collect();
        assert_eq!(keys, [("a", 1, 3), ("a", 2, 1), ("b", 1, 1)]);
        let breakdown = days[0].2.resources.as_ref().unwrap();
        let names: Vec<&str> = breakdown.entries().iter().map(|(n, _)| &**n).collect();
        assert_eq!(names, ["/x", "/y"]);
        assert_eq!(days[0].2.histogram.total(), 3);
        assert!(days[1].2.resources.is_none());
    }
}
