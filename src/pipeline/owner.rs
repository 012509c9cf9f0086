//! Every worker of the cluster owns the customers that hash to it ([`super::aggregate::owner_of`]):
//! the groups every worker counts of them are exchanged to it inside the dataflow, and it merges
//! them into a table of its own (spilling past its share of the memory limit). When worker 0 cuts
//! a commit, each owner hands its table over: a worker of the committing process passes it to the
//! committer, which sorts it on a thread of its own; a worker of another process sorts it and sends
//! it to the committer as a run.
//!
//! An owner takes an epoch in only once the frontier has passed it (every worker's groups of it
//! are in), in epoch order, and only when every unit planned for it was read: the committer makes
//! the same decisions from the same marks, so a commit holds exactly the groups of its epochs.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::aggregate::NumberedGroups;
use super::spill::GroupTable;

/// What every owner must know of every worker's epochs, broadcast to all of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum Mark {
    /// A unit of the epoch was read completely.
    UnitDone,
    /// The epoch ends a commit.
    Cut,
}

/// The commit that runs of the end of a run (no cut) belong to.
pub(super) const END_OF_RUN: u64 = u64::MAX;

/// Whether every unit planned for `epoch` was read: of `planned` units, epoch `e` of a dataflow of
/// `peers` workers holds units `e * peers ..`; an epoch past them (following) is always complete.
pub(super) fn epoch_is_complete(
    epoch: u64,
    peers: usize,
    planned: usize,
    units_done: usize,
) -> bool {
    let first = epoch as usize * peers;
    first >= planned || units_done == planned.min(first + peers) - first
}

/// An owner's groups as of a commit (the epoch that ended it, or [`END_OF_RUN`]).
pub(super) struct Handoff {
    pub commit: u64,
    pub table: anyhow::Result<GroupTable>,
}

/// One worker's customers.
pub(super) struct Owner {
    table: GroupTable,
    /// The table's budget, and where it spills (for the table that follows each handoff).
    budget: usize,
    spill_root: PathBuf,
    /// What came for epochs the frontier has not passed yet.
    pending: BTreeMap<u64, Pending>,
    /// Workers in the cluster, and units in the plan: which units an epoch must have read.
    peers: usize,
    planned_units: usize,
    /// An epoch came incomplete (a worker stopped early): nothing from it on is taken in.
    halted: bool,
    /// A spill failed: the table is lost, and so is every commit from here on.
    failed: Option<String>,
}

#[derive(Default)]
struct Pending {
    groups: Vec<NumberedGroups>,
    units_done: usize,
    cut: bool,
}

impl Owner {
    /// An owner whose table holds `budget` bytes before it spills under `spill_root`.
    pub fn new(budget: usize, spill_root: PathBuf, peers: usize, planned_units: usize) -> Owner {
        Owner {
            table: GroupTable::new(budget, spill_root.clone()),
            budget,
            spill_root,
            pending: BTreeMap::new(),
            peers,
            planned_units,
            halted: false,
            failed: None,
        }
    }

    /// Groups of this owner's customers counted in `epoch`.
    pub fn groups(&mut self, epoch: u64, groups: NumberedGroups) {
        self.pending.entry(epoch).or_default().groups.push(groups);
    }

    pub fn mark(&mut self, epoch: u64, mark: Mark) {
        let pending = self.pending.entry(epoch).or_default();
        match mark {
            Mark::UnitDone => pending.units_done += 1,
            Mark::Cut => pending.cut = true,
        }
    }

    /// Takes in every epoch before `frontier` (`None`: the run has ended), in order, and returns
    /// the tables to hand over: one at each cut, and the rest at the end.
    pub fn pass(&mut self, frontier: Option<u64>) -> Vec<Handoff> {
        let mut handoffs = Vec::new();
        while let Some(entry) = self.pending.first_entry() {
            if frontier.is_some_and(|frontier| *entry.key() >= frontier) {
                break;
            }
            let (epoch, pending) = entry.remove_entry();
            if !epoch_is_complete(epoch, self.peers, self.planned_units, pending.units_done) {
                self.halted = true;
            }
            if self.halted {
                continue;
            }
            self.take_in(pending.groups);
            if pending.cut {
                handoffs.push(self.hand_over(epoch));
            }
        }
        if frontier.is_none() {
            handoffs.push(self.hand_over(END_OF_RUN));
        }
        handoffs
    }

    fn take_in(&mut self, batches: Vec<NumberedGroups>) {
        for batch in batches {
            if self.failed.is_some() {
                return;
            }
            if let Err(error) = self.table.add_batch(batch) {
                self.failed = Some(format!("{error:#}"));
            }
        }
    }

    /// The table as of `commit`; the owner goes on with an empty one. While the run goes on, a
    /// table past a quarter of its budget is spilled first: the table that fills meanwhile has
    /// the budget, and the one being committed holds little memory.
    fn hand_over(&mut self, commit: u64) -> Handoff {
        if commit != END_OF_RUN
            && self.failed.is_none()
            && self.table.bytes() > self.budget / 4
            && let Err(error) = self.table.spill_all()
        {
            self.failed = Some(format!("{error:#}"));
        }
        let fresh = GroupTable::new(self.budget, self.spill_root.clone());
        let table = std::mem::replace(&mut self.table, fresh);
        let table = match &self.failed {
            Some(error) => Err(anyhow::anyhow!("{error}")),
            None => Ok(table),
        };
        Handoff { commit, table }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::day::Day;
    use crate::pipeline::small::GroupState;

    fn batch(customer: &str, requests: u16) -> NumberedGroups {
        let mut state = GroupState::default();
        for _ in 0..requests {
            state.record(200, 1);
        }
        NumberedGroups {
            names: vec![customer.into()],
            resources: vec!["/".into()],
            groups: vec![(0, Day(1), 0, state)],
        }
    }

    fn totals(handoff: Handoff) -> Vec<(String, u64)> {
        let mut table = handoff.table.unwrap();
        table
            .take_sorted()
            .unwrap()
            .map(|g| {
                g.map(|(customer, _, _, stats)| (customer, stats.total()))
                    .unwrap()
            })
            .collect()
    }

    #[test]
    fn a_cut_hands_over_exactly_the_epochs_up_to_it() {
        let root = tempfile::tempdir().unwrap();
        // Two workers, two units an epoch for epochs 0 and 1.
        let mut owner = Owner::new(1 << 20, root.path().to_path_buf(), 2, 4);
        owner.groups(0, batch("a", 1));
        owner.groups(1, batch("a", 2));
        owner.groups(2, batch("a", 4));
        for epoch in 0..2 {
            owner.mark(epoch, Mark::UnitDone);
            owner.mark(epoch, Mark::UnitDone);
        }
        owner.mark(0, Mark::Cut);
        // Epoch 1 is not passed yet: only epoch 0 is handed over.
        let handoffs = owner.pass(Some(1));
        assert_eq!(handoffs.len(), 1);
        assert_eq!(handoffs[0].commit, 0);
        assert_eq!(
            totals(handoffs.into_iter().next().unwrap()),
            [("a".into(), 1)]
        );
        let mut rest = owner.pass(None);
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].commit, END_OF_RUN);
        assert_eq!(totals(rest.remove(0)), [("a".into(), 6)]);
    }

    #[test]
    fn a_table_handed_over_while_the_run_goes_on_holds_little_memory() {
        let root = tempfile::tempdir().unwrap();
        let budget = 64 << 10;
        let mut owner = Owner::new(budget, root.path().to_path_buf(), 1, 0);
        for i in 0..2_000 {
            owner.groups(0, batch(&format!("c{i}"), 1));
        }
        owner.mark(0, Mark::Cut);
        let handoff = owner.pass(Some(1)).remove(0);
        let table = handoff.table.as_ref().unwrap();
        assert!(table.bytes() <= budget / 4, "{} bytes held", table.bytes());
        assert_eq!(totals(handoff).len(), 2_000, "every group is still there");
    }

    #[test]
    fn nothing_from_an_incomplete_epoch_on_is_taken_in() {
        let root = tempfile::tempdir().unwrap();
        let mut owner = Owner::new(1 << 20, root.path().to_path_buf(), 2, 4);
        owner.groups(0, batch("a", 1));
        owner.mark(0, Mark::UnitDone);
        owner.mark(0, Mark::UnitDone);
        // Epoch 1: one of its two units was read; epoch 2 (following) would be complete.
        owner.groups(1, batch("a", 2));
        owner.mark(1, Mark::UnitDone);
        owner.groups(2, batch("a", 4));
        let mut handoffs = owner.pass(None);
        assert_eq!(handoffs.len(), 1);
        assert_eq!(totals(handoffs.remove(0)), [("a".into(), 1)]);
    }
}
