//! Per-worker pre-aggregation: lines in, one [`DayStats`] per (customer, day) out.
//!
//! Customer ids are interned per worker until its next drain, so the hot path hashes a few bytes
//! and updates one group; no line is kept, and nothing of a customer outlives the batch that read
//! it (a run of a million customers holds no table of them all). A customer is numbered once, among
//! the customers of the worker that owns it ([`owner_of`]): a drain hands each owner its groups. Rejected lines are counted by
//! reason and a bounded number are kept as samples (all of them when the user asked for a
//! rejects file).

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use super::name_key::NameKey;
use super::small::GroupState;
use crate::day::Day;
use crate::record::{Reject, Request, parse_line};
use crate::resources;
use crate::store::{FileCheckpoint, Retraction};

/// How far a reading of one file got: the checkpoint its commit records, and where the reading
/// began (which orders one file's checkpoints within an epoch; not stored).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileProgress {
    pub from: u64,
    pub checkpoint: FileCheckpoint,
}

/// Where a rejected line was found: a byte offset (plain files, turned into a line number when
/// reported) or a line number already (compressed files and standard input).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Position {
    Byte(u64),
    Line(u64),
}

/// One rejected line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejected {
    /// The file it came from.
    pub file: String,
    pub position: Position,
    pub reason: String,
    pub code: String,
    /// The line itself, escaped (no byte reaches a terminal raw) and cut to a readable length.
    pub text: String,
}

/// Counters of what was read.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    /// Non-empty lines read, accepted or rejected.
    pub lines: u64,
    /// Rejected lines by [`Reject::index`].
    pub rejected: [u64; Reject::ALL.len()],
    pub bytes: u64,
}

impl Tally {
    pub fn add(&mut self, other: &Tally) {
        self.lines += other.lines;
        self.bytes += other.bytes;
        for (mine, theirs) in self.rejected.iter_mut().zip(other.rejected) {
            *mine += theirs;
        }
    }

    pub fn rejected_total(&self) -> u64 {
        self.rejected.iter().sum()
    }
}

/// One group of a batch: its customer's place in the batch's names, its day, its resource's place
/// in the batch's resources, and its state.
pub type NumberedGroup = (u32, Day, u32, GroupState);

/// One worker's groups of one batch for one owner, each keyed by its customer's place in `names`
/// and its resource's in `resources`: a name travels once per batch, whatever the number of days
/// its groups span. The numbers mean nothing outside the batch, so no table of names lives longer
/// than a batch.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NumberedGroups {
    pub names: Vec<Box<str>>,
    pub resources: Vec<Box<str>>,
    pub groups: Vec<NumberedGroup>,
}

/// Lines counted by an earlier run before they were complete, taken back now.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retracted {
    pub requests: Vec<Retraction>,
    /// The lines taken back, rejected ones by reason (as they were counted).
    pub tally: Tally,
}

/// How many characters of a rejected line are kept.
const REJECT_TEXT_CHARS: usize = 200;

/// How many requests are recorded in their groups' states at a time, at least.
const UNRECORDED_LEAST: usize = 16 * 1024;

/// Requests a group gets in a batch, on average, while the batch holds at most
/// [`UNRECORDED_MOST`]: a group's state is loaded once for them all.
const UNRECORDED_PER_GROUP: usize = 8;
const UNRECORDED_MOST: usize = 64 * 1024;

/// How many requests are recorded at a time among `groups` groups: about
/// [`UNRECORDED_PER_GROUP`] a group within the bounds, and never fewer than there are groups, so
/// that a batch costs a few operations a request (at a few thousand busy groups, the breakdown's
/// four resources a day, a batch of one or two requests a group cost a cache miss a request).
fn unrecorded_limit(groups: usize) -> usize {
    (groups * UNRECORDED_PER_GROUP)
        .clamp(UNRECORDED_LEAST, UNRECORDED_MOST)
        .max(groups)
}

/// How many distinct raw paths a batch remembers the resources of.
const RAW_PATHS_REMEMBERED: usize = 4096;

/// How many distinct (customer, raw path) pairs a batch remembers the numbers of, at most.
const SPANS_REMEMBERED: usize = 4096;

/// How many pairs a batch remembers before it judges whether they repeat enough to pay.
const SPANS_TRIED: usize = 256;

/// Which of `owners` workers owns `customer`'s groups (merges and commits them).
pub fn owner_of(customer: &str, owners: usize) -> usize {
    if owners <= 1 {
        return 0;
    }
    let mut hasher = rustc_hash::FxHasher::default();
    std::hash::Hasher::write(&mut hasher, customer.as_bytes());
    (std::hash::Hasher::finish(&hasher) % owners as u64) as usize
}

/// Accumulates the groups of the lines fed to it until drained.
pub struct Aggregator {
    /// The batch's customers, by name (cleared by each drain): their index in `places`.
    customer_ids: FxHashMap<NameKey, u32>,
    /// Each of the batch's customers: its owner and its number among the owner's `names`.
    places: Vec<(u32, u32)>,
    /// The batch's customers of each owner, by number (handed over by each drain).
    names: Vec<Vec<Box<str>>>,
    /// The batch's resources, by name: their place in `resources`.
    resource_ids: FxHashMap<NameKey, u32>,
    resources: Vec<Box<str>>,
    /// The batch's first raw paths, by their bytes: the number of their resource (most lines
    /// repeat a path, which is then not normalised again).
    raw_path_ids: FxHashMap<NameKey, u32>,
    /// The batch's first customer and raw path pairs, by the bytes of the line that hold them:
    /// their customer's and their resource's numbers.
    spans: FxHashMap<NameKey, (u32, u32)>,
    /// Whether `spans` is looked up and added to (while days are broken down by resource, until
    /// the batch finds that its pairs do not repeat enough).
    spans_pay: bool,
    /// Whether requests are grouped by resource (otherwise every one is unattributed).
    by_resource: bool,
    /// The resource of the line being counted (kept from line to line).
    resource: String,
    group_index: FxHashMap<(u32, Day, u32), u32>,
    groups: Vec<NumberedGroup>,
    /// Requests counted and not yet recorded in their groups' states: (slot in `groups`,
    /// status, duration). They are recorded a batch at a time, sorted by group, so that a
    /// group's state is loaded once a batch rather than once a line: with a few thousand groups
    /// a unit, the states outgrow a core's cache and every line waited on three loads.
    unrecorded: Vec<(u32, u16, u64)>,
    /// Room kept for sorting `unrecorded`: where each group's requests go, and them sorted.
    group_starts: Vec<u32>,
    by_group: Vec<(u16, u64)>,
    tally: Tally,
    rejects: Vec<Rejected>,
    retracted: Retracted,
    /// The input being read, named in rejects.
    source: String,
    /// How many rejected lines to keep (others are only counted).
    reject_limit: usize,
}

impl Aggregator {
    /// An aggregator that keeps `reject_limit` rejected lines (each batch numbers its own
    /// customers), for one owner.
    pub fn new(reject_limit: usize) -> Aggregator {
        Aggregator::owned_by(1, reject_limit)
    }

    /// An aggregator whose drains split the groups among `owners` workers.
    pub fn owned_by(owners: usize, reject_limit: usize) -> Aggregator {
        Aggregator {
            customer_ids: FxHashMap::default(),
            places: Vec::new(),
            names: vec![Vec::new(); owners.max(1)],
            resource_ids: FxHashMap::default(),
            resources: Vec::new(),
            raw_path_ids: FxHashMap::default(),
            spans: FxHashMap::default(),
            spans_pay: true,
            by_resource: true,
            resource: String::new(),
            group_index: FxHashMap::default(),
            groups: Vec::new(),
            unrecorded: Vec::new(),
            group_starts: Vec::new(),
            by_group: Vec::new(),
            tally: Tally::default(),
            rejects: Vec::new(),
            retracted: Retracted::default(),
            source: String::new(),
            reject_limit,
        }
    }

    /// Groups requests by resource (the default) or not at all (every request unattributed).
    pub fn by_resource(mut self, by_resource: bool) -> Aggregator {
        self.by_resource = by_resource;
        self.spans_pay = by_resource;
        self
    }

    /// Names the input the next lines come from.
    pub fn set_source(&mut self, name: &str) {
        name.clone_into(&mut self.source);
    }

    /// Counts one line (without its newline).
    #[inline]
    pub fn feed(&mut self, line: &[u8], position: Position) {
        match parse_line(line) {
            Ok(Some(request)) => {
                self.tally.lines += 1;
                let (customer, resource) = self.intern_customer_and_resource(&request);
                let next = self.groups.len() as u32;
                let slot = *self
                    .group_index
                    .entry((customer, request.day, resource))
                    .or_insert(next);
                if slot == next {
                    self.groups
                        .push((customer, request.day, resource, GroupState::default()));
                }
                self.unrecorded
                    .push((slot, request.status, request.duration_us));
                if self.unrecorded.len() >= unrecorded_limit(self.groups.len()) {
                    self.record_unrecorded();
                }
            }
            Ok(None) => {}
            Err(reason) => self.reject(reason, line, position),
        }
    }

    /// Takes back a line an earlier run counted before it was complete.
    pub fn retract(&mut self, line: &[u8]) {
        let tally = &mut self.retracted.tally;
        match parse_line(line) {
            Ok(Some(request)) => {
                tally.lines += 1;
                let mut resource = String::new();
                if self.by_resource {
                    resources::resource_of(request.path, &mut resource);
                }
                self.retracted.requests.push(Retraction {
                    customer: request.customer.to_string(),
                    day: request.day,
                    resource,
                    status: request.status,
                    duration_us: request.duration_us,
                });
            }
            Ok(None) => {}
            Err(reason) => {
                tally.lines += 1;
                tally.rejected[reason.index()] += 1;
            }
        }
    }

    /// Takes back a line too long to keep that an earlier run counted before it was complete.
    pub fn retract_too_long(&mut self) {
        self.retracted.tally.lines += 1;
        self.retracted.tally.rejected[Reject::LineTooLong.index()] += 1;
    }

    /// Takes the lines taken back since the last call.
    pub fn take_retracted(&mut self) -> Retracted {
        std::mem::take(&mut self.retracted)
    }

    /// Counts a line longer than the reader keeps (only its start is given).
    pub fn reject_too_long(&mut self, start: &[u8], position: Position) {
        self.reject(Reject::LineTooLong, start, position);
    }

    #[cold]
    #[inline(never)]
    fn reject(&mut self, reason: Reject, line: &[u8], position: Position) {
        self.tally.lines += 1;
        self.tally.rejected[reason.index()] += 1;
        if self.rejects.len() < self.reject_limit {
            // Four bytes a character at most: enough for the characters shown.
            let start = &line[..line.len().min(4 * REJECT_TEXT_CHARS)];
            let text: String = crate::errors::escaped(start)
                .chars()
                .take(REJECT_TEXT_CHARS)
                .collect();
            self.rejects.push(Rejected {
                file: self.source.clone(),
                position,
                reason: reason.to_string(),
                code: reason.code().to_string(),
                text,
            });
        }
    }

    /// Lines fed since the last drain.
    pub fn lines(&self) -> u64 {
        self.tally.lines
    }

    /// Counts bytes read (for the summary and the progress bar).
    pub fn add_bytes(&mut self, bytes: u64) {
        self.tally.bytes += bytes;
    }

    #[inline]
    fn intern(&mut self, customer: &str) -> u32 {
        if let Some(&id) = self.customer_ids.get(customer.as_bytes()) {
            return id;
        }
        let id = self.places.len() as u32;
        let owner = owner_of(customer, self.names.len());
        let names = &mut self.names[owner];
        self.places.push((owner as u32, names.len() as u32));
        names.push(customer.into());
        self.customer_ids.insert(NameKey::new(customer), id);
        id
    }

    /// The batch's numbers of the request's customer and resource: while days are broken down by
    /// resource, looked up together by the bytes that hold both in the line (a customer calls a
    /// few paths: one lookup a line instead of two).
    #[inline]
    fn intern_customer_and_resource(&mut self, request: &Request) -> (u32, u32) {
        if self.spans_pay
            && let Some(&numbers) = self.spans.get(request.customer_and_path)
        {
            return numbers;
        }
        let numbers = (
            self.intern(request.customer),
            self.intern_resource(request.path),
        );
        if self.spans_pay {
            let spans = self.spans.len() + 1;
            self.spans
                .insert(NameKey::of_bytes(request.customer_and_path), numbers);
            // Full, or new pairs in more than a line in four (paths that never repeat, or a great
            // many customers): the batch stops looking there, where most lines would miss.
            let rare = spans >= SPANS_TRIED && spans * 4 > self.tally.lines as usize;
            self.spans_pay = spans < SPANS_REMEMBERED && !rare;
        }
        numbers
    }

    /// The batch's number of the resource of `path`.
    #[inline]
    fn intern_resource(&mut self, path: &[u8]) -> u32 {
        if !self.by_resource {
            // Every request is unattributed: one resource, the empty name, number 0 (and no
            // lookup of an empty name, whose bytes some memcmp reads slowly from no memory).
            if self.resources.is_empty() {
                self.resources.push(resources::UNATTRIBUTED.into());
            }
            return 0;
        }
        if let Some(&id) = self.raw_path_ids.get(path) {
            return id;
        }
        resources::resource_of(path, &mut self.resource);
        let id = match self.resource_ids.get(self.resource.as_bytes()) {
            Some(&id) => id,
            None => {
                let id = self.resources.len() as u32;
                self.resources.push(self.resource.as_str().into());
                self.resource_ids.insert(NameKey::new(&self.resource), id);
                id
            }
        };
        // Bounded: paths that never repeat (identifiers, query strings) stop adding to it.
        if self.raw_path_ids.len() < RAW_PATHS_REMEMBERED {
            self.raw_path_ids.insert(NameKey::of_bytes(path), id);
        }
        id
    }

    /// Records the requests not yet recorded in their groups' states, sorted by group (a
    /// counting sort: the slots are dense).
    fn record_unrecorded(&mut self) {
        if self.unrecorded.is_empty() {
            return;
        }
        let starts = &mut self.group_starts;
        starts.clear();
        starts.resize(self.groups.len() + 1, 0);
        for &(slot, _, _) in &self.unrecorded {
            starts[slot as usize + 1] += 1;
        }
        for slot in 1..starts.len() {
            starts[slot] += starts[slot - 1];
        }
        self.by_group.clear();
        self.by_group.resize(self.unrecorded.len(), (0, 0));
        for &(slot, status, duration) in &self.unrecorded {
            let at = &mut starts[slot as usize];
            self.by_group[*at as usize] = (status, duration);
            *at += 1;
        }
        // Each group's start has moved on to its end: the next group's start.
        let mut start = 0;
        for (group, &end) in self.groups.iter_mut().zip(starts.iter()) {
            for &(status, duration) in &self.by_group[start..end as usize] {
                group.3.record(status, duration);
            }
            start = end as usize;
        }
        self.unrecorded.clear();
    }

    /// Takes everything accumulated since the last drain: each owner's groups (owners that got
    /// none are left out), the tally and the rejected lines; the customers are numbered anew from
    /// then on.
    pub fn drain(&mut self) -> (Vec<(usize, NumberedGroups)>, Tally, Vec<Rejected>) {
        self.record_unrecorded();
        self.group_index.clear();
        self.customer_ids.clear();
        self.resource_ids.clear();
        self.raw_path_ids.clear();
        self.spans.clear();
        self.spans_pay = self.by_resource;
        let resources = std::mem::take(&mut self.resources);
        let owners = self.names.len();
        let mut groups: Vec<Vec<NumberedGroup>> = self
            .names
            .iter()
            .map(|names| Vec::with_capacity(names.len()))
            .collect();
        // Not compacted: an owner's merge takes the durations unsorted.
        for (customer, day, resource, state) in self.groups.drain(..) {
            let (owner, number) = self.places[customer as usize];
            groups[owner as usize].push((number, day, resource, state));
        }
        self.places.clear();
        let numbered = groups
            .into_iter()
            .enumerate()
            .filter(|(_, groups)| !groups.is_empty())
            .map(|(owner, groups)| {
                // The next batch likely names about as many of the owner's customers.
                let room = self.names[owner].len();
                let names = std::mem::replace(&mut self.names[owner], Vec::with_capacity(room));
                let resources = resources.clone();
                (
                    owner,
                    NumberedGroups {
                        names,
                        resources,
                        groups,
                    },
                )
            })
            .collect();
        debug_assert_eq!(self.names.len(), owners);
        (
            numbered,
            std::mem::take(&mut self.tally),
            std::mem::take(&mut self.rejects),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_grouped_by_customer_and_day_and_rejects_are_counted() {
        let mut aggregator = Aggregator::new(1);
        let lines = [
            "2024-09-15 20:51:37 a /x 200 1.0",
            "2024-09-15 10:00:00 a /x 500 2.0",
            "2024-09-16 10:00:00 a /x 200 1.0",
            "2024-09-15 10:00:00 b /x 200 1.0",
            "bad line",
            "",
            "2024-09-15 10:00:00 b /x 999 1.0",
        ];
        for (i, line) in lines.iter().enumerate() {
            aggregator.feed(line.as_bytes(), Position::Line(i as u64 + 1));
        }
        let (owned, tally, rejects) = aggregator.drain();
        let [(0, numbered)] = &owned[..] else {
            panic!("one owner: {owned:?}")
        };
        assert_eq!(numbered.names, ["a".into(), "b".into()]);
        let numbered = numbered.clone();
        let mut groups = numbered.groups;
        groups.sort_by_key(|g| (g.0, g.1));
        let totals: Vec<(&str, u64)> = groups
            .iter()
            .map(|g| (&*numbered.names[g.0 as usize], g.3.total()))
            .collect();
        assert_eq!(totals, [("a", 2), ("a", 1), ("b", 1)]);
        assert_eq!(tally.lines, 6);
        assert_eq!(tally.rejected_total(), 2);
        assert_eq!(tally.rejected[Reject::Status.index()], 1);
        assert_eq!(rejects.len(), 1, "only the sample limit is kept");
        assert_eq!(rejects[0].position, Position::Line(5));
        let (next, _, _) = aggregator.drain();
        assert!(next.is_empty());
        aggregator.feed(b"2024-09-15 10:00:00 c /x 200 1.0", Position::Line(8));
        aggregator.feed(b"2024-09-15 10:00:00 a /x 200 1.0", Position::Line(9));
        let (last, _, _) = aggregator.drain();
        let last = &last[0].1;
        // Each batch names the customers it holds, numbered from 0: none is remembered.
        assert_eq!(last.names, ["c".into(), "a".into()]);
        assert_eq!(last.groups.iter().map(|g| g.0).collect::<Vec<_>>(), [0, 1]);
    }

    #[test]
    fn each_owner_gets_the_groups_of_its_own_customers_numbered_among_them() {
        let mut aggregator = Aggregator::owned_by(3, 0);
        let customers: Vec<String> = (0..40).map(|i| format!("c{i}")).collect();
        for (i, customer) in customers.iter().enumerate() {
            for day in 15..17 {
                let line = format!("2024-09-{day} 10:00:00 {customer} /x 200 1.0");
                aggregator.feed(line.as_bytes(), Position::Line(i as u64));
            }
        }
        let (owned, _, _) = aggregator.drain();
        let mut seen = Vec::new();
        for (owner, numbered) in owned {
            for (number, _, _, state) in &numbered.groups {
                let name = &numbered.names[*number as usize];
                assert_eq!(owner_of(name, 3), owner);
                assert_eq!(state.total(), 1);
                seen.push(name.to_string());
            }
        }
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), customers.len());
    }

    #[test]
    fn paths_past_those_remembered_are_grouped_by_their_resource_all_the_same() {
        let mut aggregator = Aggregator::new(0);
        let paths = RAW_PATHS_REMEMBERED as u64 * 2;
        for id in 0..paths {
            let kind = ["users", "orders"][(id % 2) as usize];
            let line = format!("2024-09-15 10:00:00 a /{kind}/{id}?page={id} 200 1.0");
            aggregator.feed(line.as_bytes(), Position::Line(id));
        }
        aggregator.feed(
            b"2024-09-15 10:00:00 a /users/7/ 200 1.0",
            Position::Line(paths),
        );
        let (owned, _, _) = aggregator.drain();
        let numbered = &owned[0].1;
        let mut totals: Vec<(&str, u64)> = numbered
            .groups
            .iter()
            .map(|(_, _, resource, state)| {
                (&*numbered.resources[*resource as usize], state.total())
            })
            .collect();
        totals.sort();
        let half = RAW_PATHS_REMEMBERED as u64;
        assert_eq!(totals, [("/orders/{id}", half), ("/users/{id}", half + 1)]);
    }

    /// Pairs of a customer and a path that repeat (looked up together), then more than are
    /// remembered; then, in the next batch, pairs that do not repeat (no longer looked up
    /// together): every line counts for its customer and resource all the same.
    #[test]
    fn lines_are_grouped_by_customer_and_resource_whether_their_pairs_repeat_or_not() {
        let mut aggregator = Aggregator::new(0);
        let repeating = (0..20_000).map(|i| i % 100);
        let many = 100..SPANS_REMEMBERED as u64 + 1000;
        for pairs in [
            repeating.chain(many).collect::<Vec<u64>>(),
            (0..5000).collect(),
        ] {
            let mut expected = std::collections::BTreeMap::<(String, String), u64>::new();
            for (i, &pair) in (0..).zip(&pairs) {
                let customer = format!("c{}", pair % 97);
                let kind = ["users", "orders"][(pair % 2) as usize];
                let separator = [" ", "  ", "\t"][(pair % 3) as usize];
                let line =
                    format!("2024-09-15 10:00:00 {customer}{separator}/{kind}/{pair} 200 1.0");
                aggregator.feed(line.as_bytes(), Position::Line(i));
                let resource = format!("/{kind}/{{id}}");
                *expected.entry((customer, resource)).or_default() += 1;
            }
            let (owned, _, _) = aggregator.drain();
            let numbered = &owned[0].1;
            let mut found = std::collections::BTreeMap::new();
            for (customer, _, resource, state) in &numbered.groups {
                let key = (
                    numbered.names[*customer as usize].to_string(),
                    numbered.resources[*resource as usize].to_string(),
                );
                *found.entry(key).or_default() += state.total();
            }
            assert_eq!(found, expected);
        }
    }

    /// A few groups (batches of the least size), and thousands (batches of several requests a
    /// group): every request is recorded once, in its group.
    #[test]
    fn requests_recorded_in_batches_by_group_add_up_to_every_line() {
        for customers in [7, 1000] {
            let mut aggregator = Aggregator::new(0);
            let lines = unrecorded_limit(customers * 3) as u64 * 5 / 2;
            assert!(lines >= UNRECORDED_LEAST as u64 * 2);
            let mut expected = std::collections::BTreeMap::<(String, u32), (u64, u64)>::new();
            for i in 0..lines {
                let customer = format!("c{}", i % customers as u64);
                let day = 10 + (i % 3) as u32;
                let (status, millis) = ([200, 503][(i % 5 == 0) as usize], 100 + i % 900);
                let line = format!("2024-09-{day} 10:00:00 {customer} /x {status} 0.{millis:03}");
                aggregator.feed(line.as_bytes(), Position::Line(i));
                let group = expected.entry((customer, day)).or_default();
                group.0 += 1;
                group.1 += u64::from(status == 503);
            }
            let (owned, _, _) = aggregator.drain();
            let numbered = &owned[0].1;
            let mut found = std::collections::BTreeMap::new();
            for (number, day, _, state) in numbered.groups.clone() {
                let stats = state.into_stats();
                let name = numbered.names[number as usize].to_string();
                found.insert(
                    (name, day.to_string()[8..].parse().unwrap()),
                    (stats.total(), stats.by_class[4]),
                );
            }
            assert_eq!(found.len(), customers * 3);
            assert_eq!(found, expected);
        }
    }
}
