//! The timely dataflow: workers read their units (and, when following, their files) epoch by
//! epoch and pre-aggregate them (`parse_chunks` for stream messages); each group goes to the worker
//! that owns its customer (`own_groups`), which merges it into its table and hands the table over
//! at each cut; everything else of an epoch goes to worker 0, where `commit_epochs` hands each
//! epoch the frontier has passed to the committer's thread, which commits at each cut (once per
//! commit interval, or every epoch when following).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::{Operator, OutputBuilderSession};
use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::operators::{Capability, Concat, Probe};
use timely::dataflow::{ProbeHandle, Stream};
use timely::scheduling::Activator;
use timely::worker::Worker;

use super::aggregate::Aggregator;
use super::committer::{CommitterThread, Finished};
use super::days::days_of;
use super::feeder::Feeder;
use super::identity::Known;
use super::job::{ChunkInput, Job, Outputs, Update, UpdateInput, glob_pattern};
use super::owner::{Handoff, Mark, Owner};
use super::peers::{PeerLost, PeerWatch};
use super::spill::{into_group, write_day_record};
use super::stream::{Chunk, StreamAddress, plan_streams};
use super::{ClusterPart, IngestConfig, IngestReport, cluster, process, source};
use crate::store::{BlockingStore, GroupDelta};

/// Runs an ingestion into `store` to the end (or, following, until SIGINT/SIGTERM) and reports
/// what it did.
pub fn ingest(config: IngestConfig, store: BlockingStore) -> anyhow::Result<IngestReport> {
    let started = Instant::now();
    let job = Arc::new(plan_job(config, store)?);
    let cluster::Allocators {
        builders,
        connections,
        peers,
    } = cluster::allocators(job.config.workers, job.config.cluster.as_ref(), &job.stop)?;
    let progress = process::progress_bar(&job);
    let worker_job = Arc::clone(&job);
    let worker_peers = peers.clone();
    let guards = timely::execute::execute_from(
        builders,
        connections,
        timely::WorkerConfig::default(),
        move |worker| run_worker(worker, &worker_job, worker_peers.as_deref()),
    )
    .map_err(|e| anyhow::anyhow!("starting the workers: {e}"))?;
    let mut failure = None;
    let mut committed = None;
    for result in guards.join() {
        match result {
            Ok(Ok(report)) => committed = committed.or(report),
            Ok(Err(e)) => failure = failure.or(Some(e)),
            Err(panic) => failure = failure.or(Some(anyhow::anyhow!("a worker failed: {panic}"))),
        }
    }
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    if let Some(error) = failure {
        // A lost peer is the cause of whatever else went wrong after it.
        return Err(match peers.and_then(|peers| peers.lost()) {
            Some(lost) => lost.into(),
            None => error,
        });
    }
    // Not the committing process of a cluster: it reports nothing of its own.
    let mut report = committed.unwrap_or_default();
    report.cluster = job.config.cluster.as_ref().map(|cluster| ClusterPart {
        process_id: cluster.process_id,
        processes: cluster.addresses.len(),
    });
    let signal = job.signal.load(Ordering::SeqCst);
    if signal != 0 && !job.config.follow {
        report.interrupted_by = Some(signal as i32);
    }
    report.seconds = started.elapsed().as_secs_f64();
    report.lines_per_second = report.lines as f64 / report.seconds.max(1e-9);
    report.peak_rss_bytes = super::peak_rss_bytes();
    Ok(report)
}

/// Everything the workers share, decided before they start: what to read (the inputs found,
/// planned against the stored progress), and where the committer writes.
fn plan_job(mut config: IngestConfig, store: BlockingStore) -> anyhow::Result<Job> {
    let stored = Known::new(store.progress()?);
    // From here on, the inputs are the paths (follow mode rescans them); streams are planned apart.
    let stream_addresses;
    (stream_addresses, config.inputs) = split_streams(&config.inputs)?;
    let mut found = source::discover(&config.inputs, glob_pattern(&config)?.as_ref())?;
    let database = store.own_files();
    // Refused before anything is left out: a rejects file that is one of the inputs, or the
    // database, is an error.
    let rejects_file = config
        .rejects_file
        .as_ref()
        .map(|path| create_rejects_file(path, &found, &database))
        .transpose()?;
    let own_files = own_files(database, &config);
    found.leave_out(&own_files);
    if config.follow && found.sources.contains(&source::Source::Stdin) {
        anyhow::bail!("--follow does not read standard input: pipe it without --follow instead");
    }
    if config.unit_bytes == 0 {
        config.unit_bytes = unit_bytes(&config, &found);
    }
    let mut plan = source::plan(found, &stored, config.unit_bytes, config.follow)?;
    // Only worker 0, on the committing process, reads streams and commits.
    let commits = config.cluster.as_ref().is_none_or(|c| c.process_id == 0);
    let streams_given = !stream_addresses.is_empty();
    let streams = match commits {
        true => plan_streams(stream_addresses, stored.rows(), config.follow, &mut plan),
        false => Vec::new(),
    };
    // Nothing can be read at all (a stream given to another process of a cluster is read there).
    let nothing = plan.inputs.is_empty() && streams.is_empty() && (commits || !streams_given);
    if nothing
        && !config.follow
        && let Some(problem) = plan.problems.first()
    {
        anyhow::bail!("{problem}");
    }
    let (handoffs, handed) = std::sync::mpsc::channel();
    let outputs = commits.then_some(Outputs {
        store,
        rejects_file,
        handoffs: handed,
    });
    let (stop, signal) = process::stop_on_signals()?;
    Ok(Job {
        config,
        plan,
        streams,
        stored,
        stop,
        signal,
        own_files,
        outputs: Mutex::new(outputs),
        handoffs: commits.then_some(handoffs),
        bytes_read: AtomicU64::new(0),
        lines_read: AtomicU64::new(0),
    })
}

/// The inputs that name streams, and the others (paths).
fn split_streams(inputs: &[String]) -> anyhow::Result<(Vec<StreamAddress>, Vec<String>)> {
    let mut streams = Vec::new();
    let mut paths = Vec::new();
    for input in inputs {
        match StreamAddress::parse(input)? {
            Some(address) => streams.push(address),
            None => paths.push(input.clone()),
        }
    }
    Ok((streams, paths))
}

/// What this run writes (never read as one of its logs), each with what it is: the `database`'s
/// files and the rejects file.
fn own_files(database: Vec<PathBuf>, config: &IngestConfig) -> Vec<(PathBuf, &'static str)> {
    let database = database
        .into_iter()
        .map(|path| (path, "this run's database"));
    let rejects = config
        .rejects_file
        .clone()
        .map(|path| (path, "the --rejects file"));
    database.chain(rejects).collect()
}

/// Creates (empties) the file every rejected line goes to, unless it is one of the inputs or of
/// the database's files.
fn create_rejects_file(
    path: &Path,
    found: &source::Found,
    database: &[PathBuf],
) -> anyhow::Result<std::fs::File> {
    let shown = crate::errors::shown_path(path);
    if let Ok(metadata) = std::fs::metadata(path) {
        let id = source::file_id(&metadata);
        let is_database = database
            .iter()
            .any(|file| std::fs::metadata(file).is_ok_and(|meta| source::file_id(&meta) == id));
        anyhow::ensure!(
            !is_database,
            "--rejects {shown} is the database: it would be overwritten; write rejected lines \
             elsewhere"
        );
        let is_input = found
            .sources
            .iter()
            .any(|s| matches!(s, source::Source::File { file, .. } if *file == id));
        anyhow::ensure!(
            !is_input,
            "--rejects {shown} is one of the inputs: it would be overwritten; write rejected lines \
             outside the inputs"
        );
    }
    std::fs::File::create(path).with_context(|| format!("cannot write the rejects file {shown}"))
}

/// Bytes per unit of work: small enough that the epochs in flight (every worker's groups of a
/// unit, exchanged, merged, handed to the committer: about 1 KiB a group in all) hold an eighth of
/// the memory limit, as large as that allows (up to 32 MiB) so that epochs cost little: every
/// group of a unit is merged into its owner's once per unit, and a group of a few requests a unit
/// costs that merge for little. How many groups a unit holds is estimated from a sample of the
/// first file ([`GroupsSample`]). Commits happen once per commit interval whatever the unit size.
/// Every process of a cluster samples the same file, so all plan alike.
fn unit_bytes(config: &IngestConfig, found: &source::Found) -> u64 {
    const MIB: u64 = 1 << 20;
    const IN_FLIGHT_BYTES_PER_GROUP: u64 = 1024;
    const LARGEST: u64 = 32 * MIB;
    let processes = config.cluster.as_ref().map_or(1, |c| c.addresses.len());
    let peers = (config.workers.max(1) * processes) as u64;
    let budget = config.memory_limit / 8;
    let per_group = peers * IN_FLIGHT_BYTES_PER_GROUP;
    let sample = found.sources.iter().find_map(|source| match source {
        source::Source::File { path, gzip, .. } if !gzip => {
            GroupsSample::of(path, config.by_resource)
        }
        _ => None,
    });
    // Unknown: a line a group, lines of 64 bytes.
    let per_mib = sample.as_ref().map_or(MIB / 64, |s| s.per_mib.max(1));
    let bytes = match sample {
        // However large the unit, it holds about the groups the sample found.
        Some(sample) if sample.repeating && 2 * sample.groups * per_group <= budget => LARGEST,
        _ => budget * MIB / (per_mib * per_group),
    };
    bytes.clamp(256 << 10, LARGEST)
}

/// The distinct groups among the lines of a file's first MiB (by resource too when days are
/// broken down by resource).
struct GroupsSample {
    groups: u64,
    /// Scaled to a full MiB when the file is shorter.
    per_mib: u64,
    /// Whether the second half of the sample added few groups (under a quarter more): the same
    /// groups repeat (a few thousand customers' days), where a million customers' do not.
    repeating: bool,
}

impl GroupsSample {
    /// `None` when the file has no line to go by.
    fn of(path: &Path, by_resource: bool) -> Option<GroupsSample> {
        use std::io::Read;
        let mut sample = Vec::with_capacity(1 << 20);
        std::fs::File::open(path)
            .ok()?
            .take(1 << 20)
            .read_to_end(&mut sample)
            .ok()?;
        let complete = &sample[..memchr::memrchr(b'\n', &sample)? + 1];
        let mut groups = rustc_hash::FxHashSet::default();
        let mut in_first_half = None;
        let mut resource = String::new();
        for line in complete.split(|&b| b == b'\n') {
            let offset = line.as_ptr() as usize - complete.as_ptr() as usize;
            if in_first_half.is_none() && offset >= complete.len() / 2 {
                in_first_half = Some(groups.len() as u64);
            }
            if let Ok(Some(request)) = crate::record::parse_line(line) {
                resource.clear();
                if by_resource {
                    crate::resources::resource_of(request.path, &mut resource);
                }
                groups.insert((request.customer, request.day, resource.clone()));
            }
        }
        let total = groups.len() as u64;
        let first_half = in_first_half.unwrap_or(total);
        (total > 0).then(|| GroupsSample {
            groups: total,
            per_mib: total * (1 << 20) / complete.len() as u64,
            repeating: 4 * total < 5 * first_half,
        })
    }
}

/// One worker: builds the dataflow, feeds it, and drains it to the end (or, when a peer of the
/// cluster is lost, until then). Worker 0 of the committing process returns the run's report.
fn run_worker(
    worker: &mut Worker,
    job: &Arc<Job>,
    cluster: Option<&PeerWatch>,
) -> anyhow::Result<Option<IngestReport>> {
    let index = worker.index();
    let peers = worker.peers();
    // Every worker builds the dataflow and drains it to the end, even after an error: a worker
    // that left early would leave the others waiting for it forever.
    let (committer, failure) = match index {
        0 => match start_committer(job, peers) {
            Ok(committer) => (committer, None),
            Err(error) => (None, Some(error)),
        },
        _ => (None, None),
    };
    let committer = Rc::new(RefCell::new(committer));
    let (mut input, mut chunks, probe) = build_dataflow(worker, job, Rc::clone(&committer));

    let fed = match failure {
        Some(error) => Err(error),
        // A panic is a bug, but the other workers must still be able to end: it becomes an error.
        None => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let aggregator = aggregator_of(job, peers);
            Feeder::new(worker, &mut input, &mut chunks, &probe, job, aggregator).run()
        }))
        .unwrap_or_else(|_| {
            Err(anyhow::anyhow!(
                "worker {index} failed (a bug: please report it)"
            ))
        }),
    };
    if fed.is_err() {
        job.stop.store(true, Ordering::SeqCst);
    }

    drop(input);
    drop(chunks);
    let lost = drain(worker, cluster);
    // The committer commits the whole epochs it was handed, even when a peer was lost.
    let report = committer.borrow_mut().take().map(CommitterThread::finish);
    if let Some(lost) = lost {
        return Err(lost.into());
    }
    fed?;
    report.transpose()
}

/// Runs the dataflow to its end. A lost peer means it has none: then this worker drops it (it
/// leaves the cluster) and returns the loss.
fn drain(worker: &mut Worker, cluster: Option<&PeerWatch>) -> Option<PeerLost> {
    while worker.step_or_park(Some(Duration::from_millis(100))) {
        if let Some(cluster) = cluster
            && let Some(lost) = cluster.lost()
        {
            cluster.leave();
            for dataflow in worker.installed_dataflows() {
                worker.drop_dataflow(dataflow);
            }
            return Some(lost);
        }
    }
    None
}

/// The committer, on the process that commits (the one holding the outputs).
fn start_committer(job: &Arc<Job>, peers: usize) -> anyhow::Result<Option<CommitterThread>> {
    let outputs = job.outputs.lock().expect("outputs lock").take();
    let started = outputs.map(|outputs| CommitterThread::start(job, outputs, peers));
    if matches!(started, Some(Err(_))) {
        job.stop.store(true, Ordering::SeqCst);
    }
    started.transpose()
}

/// Every worker's part of the dataflow: its two inputs (its own updates, and stream messages that
/// worker 0 reads) and a probe that says which epochs the committer has been handed.
fn build_dataflow(
    worker: &mut Worker,
    job: &Arc<Job>,
    committer: Rc<RefCell<Option<CommitterThread>>>,
) -> (UpdateInput, ChunkInput, ProbeHandle<u64>) {
    let mut input = UpdateInput::new();
    let mut chunks = ChunkInput::new();
    let probe = ProbeHandle::<u64>::new();
    let peers = worker.peers();
    let parser = aggregator_of(job, peers);
    let parse_job = Arc::clone(job);
    let owner = Owner::new(
        super::committer::owner_budget(job.config.memory_limit, job.config.workers),
        job.config.spill_dir.clone(),
        peers,
        job.plan.units.len(),
    );
    let own = OwnGroups {
        owner,
        index: worker.index(),
        handoffs: job.handoffs.clone(),
        stop: Arc::clone(&job.stop),
        sending: std::collections::VecDeque::new(),
    };
    worker.dataflow::<u64, _, _>(|scope| {
        let parsed = parse_chunks(chunks.to_stream(scope), parser, parse_job);
        let updates = input.to_stream(scope).concat(parsed);
        let marks = marks_of(updates.clone()).broadcast();
        let owned = own_groups(updates, marks, own);
        commit_epochs(owned, committer).probe_with(&probe);
    });
    (input, chunks, probe)
}

/// The marks every owner needs of every worker's updates.
fn marks_of<'scope>(updates: Stream<'scope, u64, Vec<Update>>) -> Stream<'scope, u64, Vec<Mark>> {
    updates.unary(Pipeline, "Marks", |_, _| {
        |input, output| {
            input.for_each(|time, updates: &mut Vec<Update>| {
                let marks = updates.iter().filter_map(Update::mark);
                output.session(&time).give_iterator(marks);
            });
        }
    })
}

/// What a worker's owner operator holds.
struct OwnGroups {
    owner: Owner,
    /// The worker's index: the owner's number in the cluster.
    index: usize,
    /// Where tables go on the committing process (`None` on the others: there they are sent on
    /// as runs).
    handoffs: Option<std::sync::mpsc::Sender<Handoff>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    /// Runs being sent, each under the capability of its cut.
    sending: std::collections::VecDeque<(Capability<u64>, Run)>,
}

/// A run's updates, made as they are sent.
type Run = Box<dyn Iterator<Item = Update>>;

/// Updates of runs sent per activation of the owner: timely sends what an operator gave only
/// once it returns, so a run given whole would be held in memory whole.
const RUN_CHUNKS_PER_STEP: usize = 16;

/// The output of the owner operator.
type UpdateOutput<'a> =
    OutputBuilderSession<'a, u64, timely::container::CapacityContainerBuilder<Vec<Update>>>;

impl OwnGroups {
    /// Hands a table over: to the committer, on its process; sorted and encoded as a run, to
    /// worker 0, from another process (see [`OwnGroups::send_runs`]).
    fn hand_over(&mut self, handoff: Handoff, held: &Capability<u64>) {
        if handoff.table.is_err() {
            self.stop.store(true, Ordering::SeqCst);
        }
        match &self.handoffs {
            // Fails only when the committer has stopped, which it reports itself.
            Some(handoffs) => drop(handoffs.send(handoff)),
            None => self
                .sending
                .push_back((held.clone(), run_of(handoff, self.index))),
        }
    }

    /// Sends the next chunks of the runs being sent, in order; while some are left, asks to be
    /// scheduled again.
    fn send_runs(&mut self, output: &mut UpdateOutput<'_>, activator: &Activator) {
        let mut budget = RUN_CHUNKS_PER_STEP;
        while budget > 0
            && let Some((capability, run)) = self.sending.front_mut()
        {
            let chunks: Vec<Update> = run.by_ref().take(budget).collect();
            let ended = chunks.len() < budget;
            budget -= chunks.len();
            output.session(capability).give_iterator(chunks.into_iter());
            if ended {
                // Its capability goes with it.
                self.sending.pop_front();
            }
        }
        if !self.sending.is_empty() {
            activator.activate();
        }
    }
}

/// Bytes of records an [`Update::Run`] carries.
const RUN_CHUNK_BYTES: usize = 64 << 10;

/// The updates that take `owner`'s table to the committer of another process: its days in
/// (customer, day) order, each folded from its resources with its row computed here (the
/// committer writes them into an empty table as they are), encoded as a run file holds them, a
/// chunk at a time; at least one, so that the committer knows the owner's end of the run came.
fn run_of(handoff: Handoff, owner: usize) -> Box<dyn Iterator<Item = Update>> {
    let failed = |error: anyhow::Error| Update::OwnerFailed(format!("{error:#}"));
    let Handoff { commit, table } = handoff;
    let sorted = match table.and_then(super::spill::GroupTable::into_sorted_states) {
        Ok(sorted) => sorted,
        Err(error) => return Box::new(std::iter::once(failed(error))),
    };
    let mut days = days_of(sorted.map(|group| group.map(into_group)));
    let (mut first, mut done) = (true, false);
    Box::new(std::iter::from_fn(move || {
        if done {
            return None;
        }
        let (mut records, mut scratch) = (Vec::new(), Vec::new());
        while records.len() < RUN_CHUNK_BYTES {
            match days.next() {
                Some(Ok((customer, day, stats))) => write_day_record(
                    &mut records,
                    &mut scratch,
                    GroupDelta::new(customer, day, stats),
                ),
                Some(Err(error)) => {
                    done = true;
                    return Some(failed(error));
                }
                None => {
                    done = true;
                    break;
                }
            }
        }
        if records.is_empty() && !first {
            return None;
        }
        first = false;
        Some(Update::Run {
            owner,
            commit,
            records,
        })
    }))
}

/// Takes every group to the worker that owns its customer, which merges it into its table as the
/// frontier passes its epoch and hands the table over at each cut (see `owner.rs`). Everything
/// else goes on to worker 0, as it came.
fn own_groups<'scope>(
    updates: Stream<'scope, u64, Vec<Update>>,
    marks: Stream<'scope, u64, Vec<Mark>>,
    mut own: OwnGroups,
) -> Stream<'scope, u64, Vec<Update>> {
    let scope = updates.scope();
    updates
        .binary_frontier::<_, timely::container::CapacityContainerBuilder<Vec<Update>>, _, _, _, _>(
            marks,
            Exchange::new(Update::destination),
            Pipeline,
            "Own",
            move |initial, info| {
                let activator = scope.activator_for(info.address);
                // Held at the inputs' frontier: the runs of a cut go out under it.
                let mut held = Some(initial);
                move |(updates, updates_frontier), (marks, marks_frontier), output| {
                    updates.for_each(|time, data: &mut Vec<Update>| {
                        let Some(&epoch) = time.least() else {
                            return;
                        };
                        let mut others = Vec::new();
                        for update in data.drain(..) {
                            match update {
                                Update::Groups { groups, .. } => own.owner.groups(epoch, groups),
                                other => others.push(other),
                            }
                        }
                        if !others.is_empty() {
                            output.session(&time).give_iterator(others.into_iter());
                        }
                    });
                    marks.for_each(|time, data: &mut Vec<Mark>| {
                        if let Some(&epoch) = time.least() {
                            data.drain(..).for_each(|mark| own.owner.mark(epoch, mark));
                        }
                    });
                    let least = |frontier: &timely::progress::frontier::MutableAntichain<u64>| {
                        frontier.frontier().first().copied()
                    };
                    let frontier = match (least(updates_frontier), least(marks_frontier)) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                    let handoffs = own.owner.pass(frontier);
                    if let Some(capability) = &held {
                        for handoff in handoffs {
                            own.hand_over(handoff, capability);
                        }
                    }
                    own.send_runs(output, &activator);
                    match frontier {
                        Some(frontier) => {
                            if let Some(capability) = held.as_mut() {
                                capability.downgrade(&frontier);
                            }
                        }
                        None => held = None,
                    }
                }
            },
        )
}

/// Parses the stream messages each chunk holds, on the worker it names, into updates.
fn parse_chunks<'scope>(
    chunks: Stream<'scope, u64, Vec<Chunk>>,
    mut aggregator: Aggregator,
    job: Arc<Job>,
) -> Stream<'scope, u64, Vec<Update>> {
    chunks.unary(
        Exchange::new(|chunk: &Chunk| chunk.worker as u64),
        "Parse",
        move |_, _| {
            move |input, output| {
                input.for_each(|time, chunks: &mut Vec<Chunk>| {
                    let lines_before = aggregator.lines();
                    chunks.iter().for_each(|chunk| chunk.feed(&mut aggregator));
                    job.lines_read
                        .fetch_add(aggregator.lines() - lines_before, Ordering::Relaxed);
                    output
                        .session(&time)
                        .give_iterator(Update::drained(&mut aggregator));
                });
            }
        },
    )
}

/// Gathers every update on worker 0 and, as the frontier passes each epoch, hands the finished
/// epochs (ascending) to the committer. Its output carries nothing, but it holds each pending
/// epoch's capability until the committer has taken the epoch: a probe on it tells the feeders
/// which epochs the committer has (their backpressure).
fn commit_epochs<'scope>(
    updates: Stream<'scope, u64, Vec<Update>>,
    committer: Rc<RefCell<Option<CommitterThread>>>,
) -> Stream<'scope, u64, Vec<()>> {
    updates.unary_frontier::<timely::container::CapacityContainerBuilder<Vec<()>>, _, _, _>(
        Exchange::new(|_: &Update| 0),
        "Commit",
        move |initial, _| {
            drop(initial);
            let mut pending = BTreeMap::<u64, (Capability<u64>, Vec<Update>)>::new();
            move |(input, frontier), _output| {
                input.for_each(|time, data: &mut Vec<Update>| {
                    let (Some(&epoch), Some(held)) = (time.least(), time.retain_least(0)) else {
                        return;
                    };
                    // Runs go to the committer's files as they come, ahead of their epoch.
                    if let Some(committer) = committer.borrow().as_ref() {
                        data.retain_mut(|update| match update {
                            Update::Run {
                                owner,
                                commit,
                                records,
                            } => {
                                committer.send_run(*owner, *commit, std::mem::take(records));
                                false
                            }
                            _ => true,
                        });
                    }
                    pending
                        .entry(epoch)
                        .or_insert_with(|| (held, Vec::new()))
                        .1
                        .append(data);
                });
                let mut finished: Finished = Vec::new();
                let mut held = Vec::new();
                while let Some(entry) = pending.first_entry() {
                    if frontier.less_equal(entry.key()) {
                        break;
                    }
                    let (epoch, (capability, updates)) = entry.remove_entry();
                    finished.push((epoch, updates));
                    held.push(capability);
                }
                if !finished.is_empty()
                    && let Some(committer) = committer.borrow().as_ref()
                {
                    committer.send(finished);
                }
                // Released once the committer has the epochs (`send` waits while it is busy).
                drop(held);
            }
        },
    )
}

/// Rejected lines kept per worker: all of them when they go to a file.
/// An aggregator of a worker of `peers`, as the job is configured.
fn aggregator_of(job: &Job, peers: usize) -> Aggregator {
    Aggregator::owned_by(peers, reject_limit(job)).by_resource(job.config.by_resource)
}

fn reject_limit(job: &Job) -> usize {
    if job.config.rejects_file.is_some() {
        usize::MAX
    } else {
        job.config.reject_samples
    }
}
