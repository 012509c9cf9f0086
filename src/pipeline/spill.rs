//! The groups of finished, uncommitted epochs, merged and held within a memory budget.
//!
//! Past the budget they are sorted by (customer, day) and written to a run file in a private spill
//! directory, and memory starts empty again (external aggregation, as DuckDB and ClickHouse do it:
//! group states merge exactly, so sorted runs merge back in one pass). A commit reads every run and
//! what is still in memory in (customer, day) order, each group once, merged: the database writes
//! each group once per commit, in primary-key order, however many times it spilled.
//!
//! A spill directory belongs to the process that holds the lock file beside it; a directory whose
//! lock nobody holds is left over from a crash and is removed by the next run.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::collections::hash_map::Entry;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use rustc_hash::FxHashMap;

use super::aggregate::NumberedGroups;
use super::chunked::Chunked;
use super::small::GroupState;
use crate::day::Day;
use crate::histogram::{allocated, read_varint, write_varint};
use crate::stats::DayStats;
use crate::store::GroupDelta;

/// Groups by (customer, day, resource), within `budget` bytes of memory, names included. A customer is
/// numbered when its first group comes in and forgotten when its groups go (spilled, or taken by a
/// commit): the table holds the names of the groups in memory only, so a customer base of
/// millions costs memory only while its groups are held.
///
/// A group of a few requests is kept small (a [`GroupState`] of 48 bytes, nothing on the heap).
/// States are stored in chunks, so growing never copies them and never holds twice the memory.
pub struct GroupTable {
    /// The customers of the groups in memory, numbered from 0 in the order they came.
    names: FxHashMap<Box<str>, u32>,
    /// The resources of the groups in memory, numbered from 0 in the order they came.
    resources: FxHashMap<Box<str>, u32>,
    /// Where each group's state is in `states`, by (customer, day, resource).
    index: FxHashMap<(u32, Day, u32), u32>,
    states: Chunked<GroupState>,
    /// Heap bytes of the large states.
    heap_bytes: usize,
    /// Heap bytes of the names.
    names_heap: usize,
    /// How many times the groups in memory went (each time, the customers are numbered anew).
    drains: u64,
    budget: usize,
    spill: Spill,
}

/// One group, as a commit receives it: customer, day, resource, state.
pub type Group = (String, Day, String, DayStats);

/// One group as the table holds it, spills it and merges it back: customer, day, resource, state.
pub type Held = (String, Day, String, GroupState);

impl GroupTable {
    /// An empty table that spills to a directory made under `spill_root` past `budget` bytes.
    pub fn new(budget: usize, spill_root: PathBuf) -> GroupTable {
        GroupTable {
            names: FxHashMap::default(),
            resources: FxHashMap::default(),
            index: FxHashMap::default(),
            states: Chunked::new(),
            heap_bytes: 0,
            names_heap: 0,
            drains: 0,
            budget,
            spill: Spill::new(spill_root),
        }
    }

    /// Merges `stats` into the group of (`customer`, `day`, `resource`).
    #[cfg(test)]
    pub fn add(
        &mut self,
        customer: &str,
        day: Day,
        resource: &str,
        stats: DayStats,
    ) -> anyhow::Result<()> {
        self.add_batch(NumberedGroups {
            names: vec![customer.into()],
            resources: vec![resource.into()],
            groups: vec![(0, day, 0, stats.into())],
        })
    }

    /// Merges a batch of groups, each keyed by its customer's place in `names` and its resource's
    /// in `resources`, spilling whenever the next group would take the table past its budget.
    pub fn add_batch(&mut self, batch: NumberedGroups) -> anyhow::Result<()> {
        // The table's number of each of the batch's customers and resources, once one of their
        // groups came, until the groups in memory go (a spill numbers them anew).
        let mut numbers = vec![None; batch.names.len()];
        let mut resource_numbers = vec![None; batch.resources.len()];
        let mut drains = self.drains;
        for (customer, day, resource, state) in batch.groups {
            if drains != self.drains {
                numbers.fill(None);
                resource_numbers.fill(None);
                drains = self.drains;
            }
            let (customer, resource) = (customer as usize, resource as usize);
            let name = batch
                .names
                .get(customer)
                .context("a group of a customer never named (a bug: please report it)")?;
            let resource_name = batch
                .resources
                .get(resource)
                .context("a group of a resource never named (a bug: please report it)")?;
            let known = (numbers[customer], resource_numbers[resource]);
            let key = (&**name, day, &**resource_name);
            let (number, resource_number) = self.add_named(key, known, state)?;
            numbers[customer] = Some(number);
            resource_numbers[resource] = Some(resource_number);
        }
        Ok(())
    }

    /// Merges `state` into the group of (`name`, `day`, `resource`), given the customer's and
    /// the resource's numbers when they are known; spills first when a new group would take the
    /// table past its budget, and after, when the merge did. The customer's and the resource's
    /// numbers, until the next spill.
    fn add_named(
        &mut self,
        (name, day, resource): (&str, Day, &str),
        known: (Option<u32>, Option<u32>),
        mut state: GroupState,
    ) -> anyhow::Result<(u32, u32)> {
        let mut customer = known.0.or_else(|| self.names.get(name).copied());
        let mut number = known.1.or_else(|| self.resources.get(resource).copied());
        let new_group = match (customer, number) {
            (Some(customer), Some(number)) => !self.index.contains_key(&(customer, day, number)),
            _ => true,
        };
        let new_names = [
            customer.is_none().then_some(name),
            number.is_none().then_some(resource),
        ];
        if new_group && self.bytes_with_a_new_group(new_names) > self.budget {
            self.spill()?;
            (customer, number) = (None, None);
        }
        let customer = match customer {
            Some(customer) => customer,
            None => number_name(&mut self.names, &mut self.names_heap, name),
        };
        let number = match number {
            Some(number) => number,
            None => number_name(&mut self.resources, &mut self.names_heap, resource),
        };
        match self.index.entry((customer, day, number)) {
            Entry::Vacant(vacant) => {
                // Its durations sorted and folded: a group that stays holds no buffer of them.
                state.compact();
                self.heap_bytes += state.heap_bytes();
                vacant.insert(self.states.push(state) as u32);
            }
            Entry::Occupied(occupied) => {
                let group = self.states.get_mut(*occupied.get() as usize);
                let before = group.heap_bytes();
                group.merge(state);
                self.heap_bytes = self.heap_bytes + group.heap_bytes() - before;
            }
        }
        if self.bytes() > self.budget {
            self.spill()?;
        }
        Ok((customer, number))
    }

    /// Bytes written to run files since this table was made.
    pub fn spilled_bytes(&self) -> u64 {
        self.spill.bytes
    }

    /// Memory held, estimated from capacities (what the allocator gave out, not what is used).
    pub fn bytes(&self) -> usize {
        let names = [&self.names, &self.resources].map(|names| names.capacity());
        self.bytes_with(self.index.capacity(), names) + self.names_heap
    }

    /// The most [`GroupTable::bytes`] can be once one more group is in (of a customer and a
    /// resource not held, `new_names`): a new chunk of states, and while the index or the names
    /// grow, their old and new tables both.
    fn bytes_with_a_new_group(&self, new_names: [Option<&str>; 2]) -> usize {
        let index = growing(self.index.len(), self.index.capacity());
        let mut names_heap = self.names_heap;
        let mut capacities = [0; 2];
        for ((table, new), capacity) in [&self.names, &self.resources]
            .into_iter()
            .zip(new_names)
            .zip(&mut capacities)
        {
            *capacity = match new {
                Some(name) => {
                    names_heap += allocated(name.len());
                    growing(table.len(), table.capacity())
                }
                None => table.capacity(),
            };
        }
        self.bytes_with(index, capacities) + names_heap + self.states.bytes().1
    }

    /// Bytes of the tables at these capacities, of the states, and of the large states' heaps.
    fn bytes_with(&self, index_capacity: usize, names_capacities: [usize; 2]) -> usize {
        hash_table_bytes(index_capacity, size_of::<((u32, Day, u32), u32)>())
            + names_capacities
                .iter()
                .map(|&capacity| hash_table_bytes(capacity, size_of::<(Box<str>, u32)>()))
                .sum::<usize>()
            + self.states.bytes().0
            + self.heap_bytes
    }

    /// The groups in memory in (customer, day) order, leaving the table empty (its index and
    /// names keep their room for the groups to come); the customers are numbered anew.
    fn drain_sorted(&mut self) -> InMemory {
        self.drains += 1;
        self.names_heap = 0;
        let customers = Ranked::of(&mut self.names);
        let resources = Ranked::of(&mut self.resources);
        // Sorting by rank compares integers instead of strings.
        let mut order: Vec<(u32, Day, u32, u32)> = self
            .index
            .drain()
            .map(|((customer, day, resource), place)| {
                let resource = resources.rank[resource as usize];
                (customers.rank[customer as usize], day, resource, place)
            })
            .collect();
        order.sort_unstable_by_key(|&(rank, day, resource, _)| (rank, day, resource));
        self.heap_bytes = 0;
        InMemory {
            order: order.into_iter(),
            states: std::mem::replace(&mut self.states, Chunked::new()),
            customers,
            resources,
        }
    }

    /// Spills every group in memory and gives back the room the table kept for more: a table
    /// that waits to be read holds no memory.
    pub fn spill_all(&mut self) -> anyhow::Result<()> {
        self.spill()?;
        self.index = FxHashMap::default();
        self.names = FxHashMap::default();
        self.resources = FxHashMap::default();
        Ok(())
    }

    /// Writes the groups in memory to a new sorted run file and empties the table.
    fn spill(&mut self) -> anyhow::Result<()> {
        if self.index.is_empty() {
            return Ok(());
        }
        let groups = self.drain_sorted();
        self.spill.write_run(groups.map(Ok))
    }

    /// Every group, in memory and spilled, in (customer, day) order, each once; the table is
    /// empty afterwards (its run files are removed once read).
    #[cfg(test)]
    pub fn take_sorted(&mut self) -> anyhow::Result<impl Iterator<Item = anyhow::Result<Group>>> {
        Ok(self
            .take_sorted_states()?
            .map(|group| group.map(into_group)))
    }

    /// [`GroupTable::take_sorted`], the states as the table holds them.
    pub fn take_sorted_states(&mut self) -> anyhow::Result<SortedGroups> {
        let mut sources = vec![Source::Memory(self.drain_sorted())];
        sources.extend(self.spill.take_runs()?);
        SortedGroups::new(sources)
    }

    /// [`GroupTable::take_sorted_states`] of a table given up: it goes with its groups, so that
    /// its spill directory lives until they are read.
    pub fn into_sorted_states(mut self) -> anyhow::Result<Drained> {
        Ok(Drained {
            sorted: self.take_sorted_states()?,
            _table: self,
        })
    }
}

/// The groups of a table given up, in (customer, day, resource) order.
pub struct Drained {
    sorted: SortedGroups,
    _table: GroupTable,
}

impl Iterator for Drained {
    type Item = anyhow::Result<Held>;

    fn next(&mut self) -> Option<anyhow::Result<Held>> {
        self.sorted.next()
    }
}

pub fn into_group((customer, day, resource, state): Held) -> Group {
    (customer, day, resource, state.into_stats())
}

/// Sorted runs of days that come from other processes' owners, a chunk of records at a time:
/// written to files as they come, read back when their commit is written.
pub struct IncomingRuns {
    spill: Spill,
    /// Each run being received, by owner and commit, with the file it goes to.
    open: std::collections::HashMap<(usize, u64), (PathBuf, BufWriter<File>)>,
}

impl IncomingRuns {
    pub fn new(spill_root: PathBuf) -> IncomingRuns {
        IncomingRuns {
            spill: Spill::new(spill_root),
            open: Default::default(),
        }
    }

    /// Appends `records` (as [`write_day_record`] writes them) to `owner`'s run of `commit`.
    pub fn append(&mut self, owner: usize, commit: u64, records: &[u8]) -> anyhow::Result<()> {
        let (path, file) = match self.open.entry((owner, commit)) {
            Entry::Occupied(open) => open.into_mut(),
            Entry::Vacant(vacant) => {
                let path = self.spill.new_run_path()?;
                let file = File::create(&path).with_context(|| {
                    format!("cannot write {}", crate::errors::shown_path(&path))
                })?;
                vacant.insert((path, BufWriter::with_capacity(1 << 16, file)))
            }
        };
        file.write_all(records)
            .with_context(|| format!("cannot write {}", crate::errors::shown_path(path)))?;
        self.spill.bytes += records.len() as u64;
        Ok(())
    }

    /// The runs of `commit`, one per owner, each read in (customer, day) order; their files are
    /// removed once read.
    pub fn take(&mut self, commit: u64) -> anyhow::Result<Vec<DayRun>> {
        let keys: Vec<(usize, u64)> = self
            .open
            .keys()
            .filter(|k| k.1 == commit)
            .copied()
            .collect();
        let mut runs = Vec::with_capacity(keys.len());
        for key in keys {
            let (path, mut file) = self.open.remove(&key).expect("listed above");
            file.flush()?;
            runs.push(DayRun(RunReader::open(path)?));
        }
        Ok(runs)
    }

    /// Bytes received so far.
    pub fn bytes(&self) -> u64 {
        self.spill.bytes
    }
}

/// The days of a run another process's owner sent, each with its row (see
/// [`GroupDelta::encode`]), in (customer, day) order.
pub struct DayRun(RunReader);

impl Iterator for DayRun {
    type Item = anyhow::Result<GroupDelta>;

    fn next(&mut self) -> Option<anyhow::Result<GroupDelta>> {
        self.0.next_decoded(GroupDelta::decode).transpose()
    }
}

/// Appends one day with its row to `out` as a [`DayRun`] holds it: its length, then the record
/// (encoded in `scratch` first, which the caller keeps from record to record).
pub fn write_day_record(out: &mut Vec<u8>, scratch: &mut Vec<u8>, day: GroupDelta) {
    write_framed(out, scratch, |record| day.encode(record));
}

/// Appends one group to `out` as a run holds it: its length, then the record (encoded in
/// `scratch` first, which the caller keeps from record to record).
pub fn write_record(
    out: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
    (customer, day, resource): (&str, Day, &str),
    state: &mut GroupState,
) {
    write_framed(out, scratch, |record| {
        encode(record, (customer, day, resource), state)
    });
}

/// Appends a record `encode` writes (in `scratch` first) to `out`: its length, then its bytes.
fn write_framed(out: &mut Vec<u8>, scratch: &mut Vec<u8>, encode: impl FnOnce(&mut Vec<u8>)) {
    scratch.clear();
    encode(scratch);
    write_varint(out, scratch.len() as u64);
    out.extend_from_slice(scratch);
}

/// The spill directory and the runs written to it.
struct Spill {
    root: PathBuf,
    dir: Option<SpillDir>,
    runs: Vec<PathBuf>,
    bytes: u64,
}

/// Run files past which they are merged into one: a commit reads every run at once, and each
/// reader holds a buffer and a file descriptor.
const MOST_RUNS: usize = 32;

impl Spill {
    fn new(root: PathBuf) -> Spill {
        Spill {
            root,
            dir: None,
            runs: Vec::new(),
            bytes: 0,
        }
    }

    /// A new run file's path, in this process's spill directory (made when first needed).
    fn new_run_path(&mut self) -> anyhow::Result<PathBuf> {
        if self.dir.is_none() {
            self.dir = Some(SpillDir::create(&self.root)?);
        }
        let dir = self.dir.as_ref().expect("created above");
        Ok(dir.path.join(format!("run-{}", dir.next_run())))
    }

    fn write_run(
        &mut self,
        groups: impl Iterator<Item = anyhow::Result<Held>>,
    ) -> anyhow::Result<()> {
        let path = self.new_run_path()?;
        let shown = path.display().to_string();
        let write = || -> anyhow::Result<u64> {
            let mut file = BufWriter::with_capacity(1 << 16, File::create(&path)?);
            let (mut record, mut scratch) = (Vec::new(), Vec::new());
            let mut written = 0;
            for group in groups {
                let (customer, day, resource, mut state) = group?;
                record.clear();
                let key = (customer.as_str(), day, resource.as_str());
                write_record(&mut record, &mut scratch, key, &mut state);
                file.write_all(&record)?;
                written += record.len() as u64;
            }
            // Not synced: a run is read back by this process or not at all.
            file.flush()?;
            Ok(written)
        };
        let written = write().with_context(|| {
            format!("spilling groups to {shown} (see --memory-limit and --spill-dir)")
        })?;
        self.bytes += written;
        self.runs.push(path);
        if self.runs.len() >= MOST_RUNS {
            self.merge_runs()?;
        }
        Ok(())
    }

    /// Merges every run into one.
    fn merge_runs(&mut self) -> anyhow::Result<()> {
        let runs = self.take_runs()?;
        self.write_run(SortedGroups::new(runs)?)
    }

    /// Readers of every run, which is forgotten (and removed once read).
    fn take_runs(&mut self) -> anyhow::Result<Vec<Source>> {
        let paths = std::mem::take(&mut self.runs);
        paths
            .into_iter()
            .map(|path| Ok(Source::Run(RunReader::open(path)?)))
            .collect()
    }
}

fn encode(
    record: &mut Vec<u8>,
    (customer, day, resource): (&str, Day, &str),
    state: &mut GroupState,
) {
    write_varint(record, customer.len() as u64);
    record.extend_from_slice(customer.as_bytes());
    write_varint(record, u64::from(day.0 as u32));
    write_varint(record, resource.len() as u64);
    record.extend_from_slice(resource.as_bytes());
    state.encode(record);
}

fn decode(mut record: &[u8]) -> Option<Held> {
    let bytes = &mut record;
    let customer = decode_name(bytes)?;
    let day = Day(u32::try_from(read_varint(bytes).ok()?).ok()? as i32);
    let resource = decode_name(bytes)?;
    let state = GroupState::decode(bytes)?;
    bytes.is_empty().then_some((customer, day, resource, state))
}

/// A name as [`encode`] writes it: its length, then its bytes.
fn decode_name(bytes: &mut &[u8]) -> Option<String> {
    let len = usize::try_from(read_varint(bytes).ok()?).ok()?;
    let name = std::str::from_utf8(bytes.get(..len)?).ok()?.to_string();
    *bytes = &bytes[len..];
    Some(name)
}

/// A directory of this process's run files, removed when dropped.
struct SpillDir {
    path: PathBuf,
    lock_path: PathBuf,
    /// Held (locked) while the directory is in use.
    _lock: File,
    runs: std::cell::Cell<u64>,
}

const SPILL_PREFIX: &str = "logstats-spill-";

impl SpillDir {
    /// Removes what crashed runs left under `root`, then makes a directory of this process's own.
    fn create(root: &Path) -> anyhow::Result<SpillDir> {
        let shown = crate::errors::shown_path(root);
        std::fs::create_dir_all(root)
            .with_context(|| format!("cannot create the spill directory {shown}"))?;
        remove_abandoned(root);
        // Unique among this process's directories (its partitions spill at once) and, with the
        // time, among the directories a reused process id left behind.
        static MADE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let made = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!("{SPILL_PREFIX}{}-{nanos}-{made}", std::process::id());
        let lock_path = root.join(format!("{name}.lock"));
        // Locked before it is given its name: another run's cleaning never sees it unlocked.
        let unnamed = root.join(format!("{name}.locking"));
        let lock = File::create(&unnamed)
            .with_context(|| format!("cannot write in the spill directory {shown}"))?;
        anyhow::ensure!(
            try_lock(&lock),
            "cannot lock {}",
            crate::errors::shown_path(&unnamed)
        );
        std::fs::rename(&unnamed, &lock_path)
            .with_context(|| format!("cannot write in the spill directory {shown}"))?;
        let path = root.join(name);
        std::fs::create_dir(&path)
            .with_context(|| format!("cannot create {}", crate::errors::shown_path(&path)))?;
        Ok(SpillDir {
            path,
            lock_path,
            _lock: lock,
            runs: std::cell::Cell::new(0),
        })
    }

    fn next_run(&self) -> u64 {
        let run = self.runs.get();
        self.runs.set(run + 1);
        run
    }
}

impl Drop for SpillDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
        let _ = std::fs::remove_file(&self.lock_path);
    }
}

/// Removes the spill directories under `root` whose lock nobody holds (their process died).
pub fn remove_abandoned(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(stem) = name
            .to_str()
            .and_then(|n| n.strip_prefix(SPILL_PREFIX))
            .and_then(|n| n.strip_suffix(".lock"))
        else {
            continue;
        };
        let Ok(lock) = File::open(entry.path()) else {
            continue;
        };
        if try_lock(&lock) {
            let _ = std::fs::remove_dir_all(root.join(format!("{SPILL_PREFIX}{stem}")));
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Takes an exclusive lock on `file` if nobody holds one (released when the file is closed).
fn try_lock(file: &File) -> bool {
    file.try_lock().is_ok()
}

/// How many groups ahead of the one read a table's drain asks for states.
const PREFETCH_AHEAD: usize = 16;

/// The names of a table's customers or resources, with the rank of each in name order.
struct Ranked {
    /// The names, by number.
    names: Vec<Box<str>>,
    /// Numbers by rank.
    by_name: Vec<u32>,
    /// Ranks by number.
    rank: Vec<u32>,
}

impl Ranked {
    /// Takes the names of `numbers`, which is left empty.
    fn of(numbers: &mut FxHashMap<Box<str>, u32>) -> Ranked {
        let mut names: Vec<Box<str>> = Vec::new();
        names.resize_with(numbers.len(), Box::default);
        for (name, number) in numbers.drain() {
            names[number as usize] = name;
        }
        let mut by_name: Vec<u32> = (0..names.len() as u32).collect();
        by_name.sort_unstable_by(|&a, &b| names[a as usize].cmp(&names[b as usize]));
        let mut rank = vec![0u32; names.len()];
        for (position, &number) in by_name.iter().enumerate() {
            rank[number as usize] = position as u32;
        }
        Ranked {
            names,
            by_name,
            rank,
        }
    }

    /// The name of rank `rank`.
    fn name(&self, rank: u32) -> &str {
        &self.names[self.by_name[rank as usize] as usize]
    }
}

/// Groups of the table in (customer, day, resource) order.
struct InMemory {
    /// (rank of the customer's name, day, rank of the resource, where the state is), in that
    /// order.
    order: std::vec::IntoIter<(u32, Day, u32, u32)>,
    states: Chunked<GroupState>,
    customers: Ranked,
    resources: Ranked,
}

impl Iterator for InMemory {
    type Item = Held;

    fn next(&mut self) -> Option<Held> {
        // Groups come in key order, their states lie in the order they came: ask for the states
        // of the groups a few places ahead (a miss each, otherwise).
        if let Some(&(_, _, _, ahead)) = self.order.as_slice().get(PREFETCH_AHEAD) {
            self.states.prefetch(ahead as usize);
        }
        let (customer, day, resource, place) = self.order.next()?;
        let state = std::mem::take(self.states.get_mut(place as usize));
        let customer = self.customers.name(customer).to_string();
        Some((
            customer,
            day,
            self.resources.name(resource).to_string(),
            state,
        ))
    }
}

/// Reads back a run file, which it removes when done.
struct RunReader {
    path: PathBuf,
    file: BufReader<File>,
    record: Vec<u8>,
}

impl RunReader {
    fn open(path: PathBuf) -> anyhow::Result<RunReader> {
        let file = File::open(&path)
            .with_context(|| format!("reading back {}", crate::errors::shown_path(&path)))?;
        Ok(RunReader {
            path,
            file: BufReader::with_capacity(1 << 16, file),
            record: Vec::new(),
        })
    }

    fn next(&mut self) -> anyhow::Result<Option<Held>> {
        self.next_decoded(decode)
    }

    /// The next record, decoded by `decode` (`None` from it: the file is damaged), or `None` at
    /// the end of the file.
    fn next_decoded<T>(
        &mut self,
        decode: impl Fn(&[u8]) -> Option<T>,
    ) -> anyhow::Result<Option<T>> {
        let Some(len) = self.read_length()? else {
            return Ok(None);
        };
        self.record.resize(len, 0);
        self.file.read_exact(&mut self.record)?;
        let decoded = decode(&self.record);
        decoded.map(Some).with_context(|| {
            format!(
                "the spill file {} is damaged",
                crate::errors::shown_path(&self.path)
            )
        })
    }

    /// A record's length, or `None` at the end of the file.
    fn read_length(&mut self) -> anyhow::Result<Option<usize>> {
        let mut value = 0u64;
        for shift in (0..35).step_by(7) {
            let mut byte = [0u8];
            if self.file.read(&mut byte)? == 0 {
                anyhow::ensure!(shift == 0, "a spill file ends inside a record");
                return Ok(None);
            }
            value |= u64::from(byte[0] & 0x7f) << shift;
            if byte[0] & 0x80 == 0 {
                return Ok(Some(value as usize));
            }
        }
        anyhow::bail!("a spill file holds a record too long to be one")
    }
}

impl Drop for RunReader {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

enum Source {
    Memory(InMemory),
    Run(RunReader),
}

impl Source {
    fn next(&mut self) -> anyhow::Result<Option<Held>> {
        match self {
            Source::Memory(groups) => Ok(groups.next()),
            Source::Run(run) => run.next(),
        }
    }
}

/// The k-way merge of sorted sources, equal keys merged into one group.
pub struct SortedGroups {
    sources: Vec<Source>,
    /// The next group of every source that has one, least first.
    heads: BinaryHeap<Reverse<Head>>,
}

/// A source's next group, ordered by (customer, day, resource, source): the group moves through
/// the heap, its names are never copied.
struct Head {
    group: Held,
    source: usize,
}

impl Head {
    fn key(&self) -> (&str, Day, &str, usize) {
        (&self.group.0, self.group.1, &self.group.2, self.source)
    }
}

impl PartialEq for Head {
    fn eq(&self, other: &Head) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Head {}

impl PartialOrd for Head {
    fn partial_cmp(&self, other: &Head) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Head {
    fn cmp(&self, other: &Head) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

impl SortedGroups {
    fn new(sources: Vec<Source>) -> anyhow::Result<SortedGroups> {
        let mut merge = SortedGroups {
            heads: BinaryHeap::with_capacity(sources.len()),
            sources,
        };
        for source in 0..merge.sources.len() {
            merge.advance(source)?;
        }
        Ok(merge)
    }

    /// Puts the next group of `source`, if it has one, among the heads.
    fn advance(&mut self, source: usize) -> anyhow::Result<()> {
        if let Some(group) = self.sources[source].next()? {
            self.heads.push(Reverse(Head { group, source }));
        }
        Ok(())
    }

    fn next_group(&mut self) -> anyhow::Result<Option<Held>> {
        let Some(Reverse(Head { mut group, source })) = self.heads.pop() else {
            return Ok(None);
        };
        self.advance(source)?;
        while let Some(Reverse(next)) = self.heads.peek()
            && (&next.group.0, next.group.1, &next.group.2) == (&group.0, group.1, &group.2)
        {
            let Reverse(Head {
                group: same,
                source,
            }) = self.heads.pop().expect("peeked");
            group.3.merge(same.3);
            self.advance(source)?;
        }
        Ok(Some(group))
    }
}

impl Iterator for SortedGroups {
    type Item = anyhow::Result<Held>;

    fn next(&mut self) -> Option<anyhow::Result<Held>> {
        self.next_group().transpose()
    }
}

/// The capacity a hash table of `len` entries in `capacity` holds room for once one more entry is
/// in: when it is full, its old and new tables both (for a moment).
fn growing(len: usize, capacity: usize) -> usize {
    match len == capacity {
        true => (capacity * 2).max(4) * 3 / 2,
        false => capacity,
    }
}

/// Numbers a name `numbers` does not hold, counting its bytes in `heap`.
fn number_name(numbers: &mut FxHashMap<Box<str>, u32>, heap: &mut usize, name: &str) -> u32 {
    let number = numbers.len() as u32;
    *heap += allocated(name.len());
    numbers.insert(name.into(), number);
    number
}

/// Bytes of a hash table of `capacity` entries of `entry` bytes: a control byte per bucket and an
/// eighth of the buckets free.
fn hash_table_bytes(capacity: usize, entry: usize) -> usize {
    capacity * 8 / 7 * (entry + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(requests: &[(u16, u64)]) -> DayStats {
        DayStats::of_requests(requests)
    }

    #[test]
    fn groups_come_back_sorted_and_merged_however_often_they_spilled() {
        let root = tempfile::tempdir().unwrap();
        let mut expected: std::collections::BTreeMap<(String, Day, String), DayStats> =
            Default::default();
        // A budget this small spills every few groups.
        let mut table = GroupTable::new(4096, root.path().to_path_buf());
        for i in 0..2000u64 {
            let customer = format!("c{}", (i * 7919) % 37);
            let day = Day((i % 5) as i32);
            let resource = format!("/r{}", i % 3);
            let delta = stats(&[(200 + (i % 4) as u16 * 100, i % 13)]);
            expected
                .entry((customer.clone(), day, resource.clone()))
                .or_default()
                .merge(delta.clone());
            table.add(&customer, day, &resource, delta).unwrap();
        }
        // More spills than runs are kept: they were merged on the way.
        assert!(
            table.spilled_bytes() > 2 * 2000 * 10,
            "the budget forces spills"
        );
        assert!((1..MOST_RUNS).contains(&table.spill.runs.len()));
        let got: Vec<Group> = table.take_sorted().unwrap().map(Result::unwrap).collect();
        let want: Vec<Group> = expected
            .into_iter()
            .map(|((c, d, r), mut s)| {
                s.compact();
                (c, d, r, s)
            })
            .collect();
        assert_eq!(got, want);
        drop(table);
        let left: Vec<_> = std::fs::read_dir(root.path()).unwrap().collect();
        assert!(left.is_empty(), "spill files are removed: {left:?}");
    }

    proptest::proptest! {
        #[test]
        fn any_budget_gives_the_same_groups(
            deltas in proptest::collection::vec(
                (0u8..40, 0i32..4, 0u8..3, 1u16..6, 0u64..50), 1..400),
            budget in 0usize..20_000,
        ) {
            let root = tempfile::tempdir().unwrap();
            let mut table = GroupTable::new(budget, root.path().to_path_buf());
            let mut expected: std::collections::BTreeMap<(String, Day, String), DayStats> =
                Default::default();
            for &(customer, day, resource, class, duration) in &deltas {
                let customer = format!("c{customer}");
                let resource = format!("/r{resource}");
                let delta = stats(&[(class * 100, duration)]);
                expected
                    .entry((customer.clone(), Day(day), resource.clone()))
                    .or_default()
                    .merge(delta.clone());
                table.add(&customer, Day(day), &resource, delta).unwrap();
            }
            let got: Vec<Group> = table.take_sorted().unwrap().map(Result::unwrap).collect();
            let want: Vec<Group> =
                expected.into_iter().map(|((c, d, r), s)| (c, d, r, s)).collect();
            proptest::prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn spill_directories_made_at_once_by_one_process_are_all_its_own() {
        let root = tempfile::tempdir().unwrap();
        let dirs: Vec<SpillDir> = std::thread::scope(|scope| {
            let makers: Vec<_> = (0..8)
                .map(|_| {
                    scope.spawn(|| {
                        (0..20)
                            .map(|_| SpillDir::create(root.path()).unwrap())
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            makers.into_iter().flat_map(|m| m.join().unwrap()).collect()
        });
        let paths: std::collections::BTreeSet<_> = dirs.iter().map(|d| d.path.clone()).collect();
        assert_eq!(paths.len(), 160);
        assert!(
            dirs.iter()
                .all(|d| d.path.is_dir() && d.lock_path.is_file())
        );
        drop(dirs);
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_spill_directory_left_by_a_dead_process_is_removed() {
        let root = tempfile::tempdir().unwrap();
        let abandoned = root.path().join(format!("{SPILL_PREFIX}1-2"));
        std::fs::create_dir(&abandoned).unwrap();
        std::fs::write(abandoned.join("run-0"), b"x").unwrap();
        std::fs::write(root.path().join(format!("{SPILL_PREFIX}1-2.lock")), b"").unwrap();
        let live = SpillDir::create(root.path()).unwrap();
        assert!(!abandoned.exists());
        remove_abandoned(root.path());
        assert!(live.path.exists(), "a directory in use is kept");
        drop(live);
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
    }
}
