//! The timely dataflow: workers read their units (and, when following, their files) epoch by
//! epoch and pre-aggregate them; everything of an epoch goes to worker 0, whose committer thread
//! merges it into its group table and, once the frontier has passed the epoch and a commit is due,
//! writes everything absorbed since the last commit in one transaction.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::{Capability, Concat, Probe};
use timely::dataflow::{InputHandle, ProbeHandle};
use timely::worker::Worker;

use super::aggregate::Aggregator;
use super::committer::{CommitterThread, Finished};
use super::feeder::Feeder;
use super::job::{ChunkInput, Job, Update, glob_pattern};
use super::source;
use super::stream::{Chunk, StreamAddress, plan_streams};
use super::{ClusterPart, IngestConfig, IngestReport};
use crate::store::Store;

/// Runs an ingestion to the end (or, following, until SIGINT/SIGTERM) and reports what it did.
pub fn ingest(mut config: IngestConfig) -> anyhow::Result<IngestReport> {
    let started = Instant::now();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let store = runtime.block_on(Store::connect(&config.database_url))?;
    let stored = runtime.block_on(store.progress())?;
    let mut stream_addresses = Vec::new();
    let mut paths = Vec::new();
    for input in &config.inputs {
        match StreamAddress::parse(input)? {
            Some(address) => stream_addresses.push(address),
            None => paths.push(input.clone()),
        }
    }
    // From here on, the inputs are the paths (follow mode rescans them); streams are planned apart.
    config.inputs = paths;
    let mut found = source::discover(&config.inputs, glob_pattern(&config)?.as_ref())?;
    let mut own_files: Vec<(PathBuf, &'static str)> = store
        .own_files()
        .into_iter()
        .map(|path| (path, "this run's database"))
        .collect();
    found.leave_out(&own_files);
    let rejects_file = config
        .rejects_file
        .as_ref()
        .map(|path| create_rejects_file(path, &found))
        .transpose()?;
    own_files.extend(
        config
            .rejects_file
            .clone()
            .map(|p| (p, "the --rejects file")),
    );
    if config.follow && found.sources.contains(&source::Source::Stdin) {
        anyhow::bail!("--follow does not read standard input: pipe it without --follow instead");
    }
    if config.unit_bytes == 0 {
        config.unit_bytes = unit_bytes(&config, &found);
    }
    runtime.block_on(store.close());
    let mut plan = source::plan(found, &stored, config.unit_bytes, config.follow)?;
    // Only worker 0, on the committing process, reads streams.
    let commits = config.cluster.as_ref().is_none_or(|c| c.process_id == 0);
    let streams_given = !stream_addresses.is_empty();
    let streams = match commits {
        true => plan_streams(stream_addresses, &stored, config.follow, &mut plan),
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

    let (stop, signal) = stop_on_signals()?;
    let job = Arc::new(Job {
        config,
        plan,
        streams,
        stored,
        stop,
        signal,
        own_files,
        rejects_file: Mutex::new(rejects_file),
        bytes_read: AtomicU64::new(0),
        lines_read: AtomicU64::new(0),
        started: AtomicBool::new(false),
        report: Mutex::new(None),
    });
    let progress = super::committer::progress_bar(&job);
    let timely_config = super::committer::timely_config(&job.config)?;
    if let Some(cluster) = &job.config.cluster {
        watch_cluster_start(Arc::clone(&job), cluster.connect_timeout);
    }
    let worker_job = Arc::clone(&job);
    // Timely's cluster layer reports connection attempts on stdout: keep stdout for our output.
    let quiet = job
        .config
        .cluster
        .as_ref()
        .map(|_| StdoutToStderr::start())
        .transpose()?;
    let guards = timely::execute(timely_config, move |worker| run_worker(worker, &worker_job))
        .map_err(|e| anyhow::anyhow!("starting the workers: {e}"))?;
    let mut failure = None;
    for result in guards.join() {
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failure = failure.or(Some(e)),
            Err(panic) => failure = failure.or(Some(anyhow::anyhow!("a worker failed: {panic}"))),
        }
    }
    drop(quiet);
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    let report = job.report.lock().expect("report lock").take();
    if let Some(error) = failure {
        return Err(error);
    }
    let mut report = match report {
        Some(report) => report?,
        // Not the committing process of a cluster: it reports nothing of its own.
        None => IngestReport::default(),
    };
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
    Ok(report)
}

/// Creates (empties) the file every rejected line goes to, unless it is one of the inputs.
fn create_rejects_file(path: &Path, found: &source::Found) -> anyhow::Result<std::fs::File> {
    let shown = crate::errors::shown_path(path);
    if let Ok(metadata) = std::fs::metadata(path) {
        let id = source::file_id(&metadata);
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

/// SIGINT and SIGTERM set the returned stop flag (and record which signal came); a second signal
/// ends the process at once, whatever it is waiting for.
fn stop_on_signals() -> anyhow::Result<(Arc<AtomicBool>, Arc<AtomicUsize>)> {
    let stop = Arc::new(AtomicBool::new(false));
    let which = Arc::new(AtomicUsize::new(0));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // Registered first, so it sees the flag as the previous signal left it.
        signal_hook::flag::register_conditional_shutdown(signal, 128 + signal, Arc::clone(&stop))?;
        signal_hook::flag::register_usize(signal, Arc::clone(&which), signal as usize)?;
        signal_hook::flag::register(signal, Arc::clone(&stop))?;
    }
    Ok((stop, which))
}

/// While alive, whatever is written to stdout (file descriptor 1) goes to stderr; dropping it puts
/// stdout back, on every path out of the run (an error or a panic unwinding included).
struct StdoutToStderr {
    /// The process's stdout as it was, duplicated.
    saved: std::os::fd::OwnedFd,
}

impl StdoutToStderr {
    fn start() -> anyhow::Result<StdoutToStderr> {
        use std::io::Write;
        use std::os::fd::AsFd;
        std::io::stdout().flush()?;
        let saved = std::io::stdout()
            .as_fd()
            .try_clone_to_owned()
            .context("redirecting stdout")?;
        rustix::stdio::dup2_stdout(std::io::stderr().as_fd()).context("redirecting stdout")?;
        Ok(StdoutToStderr { saved })
    }
}

impl Drop for StdoutToStderr {
    fn drop(&mut self) {
        use std::io::Write;
        let _ = std::io::stdout().flush();
        let _ = rustix::stdio::dup2_stdout(&self.saved);
    }
}

/// Timely retries a missing peer forever: give up with a clear error after `timeout`.
fn watch_cluster_start(job: Arc<Job>, timeout: Duration) {
    std::thread::spawn(move || {
        std::thread::sleep(timeout);
        if !job.started.load(Ordering::SeqCst) {
            eprintln!(
                "error: the cluster did not form within {} s: a peer in the hostfile never answered",
                timeout.as_secs()
            );
            std::process::exit(3);
        }
    });
}

/// Bytes per unit of work: small enough that the epochs in flight (every worker's groups of a
/// unit, exchanged, merged, handed to the committer: about 1 KiB a group in all) hold an eighth of
/// the memory limit, as large as that allows (up to 16 MiB) so that epochs cost little. How many
/// groups a mebibyte of log makes is measured on a sample of the first file: a few thousand
/// customers repeat within it, a million do not. Commits happen once per commit interval whatever
/// the unit size. Every process of a cluster samples the same file, so all plan alike.
fn unit_bytes(config: &IngestConfig, found: &source::Found) -> u64 {
    const MIB: u64 = 1 << 20;
    const IN_FLIGHT_BYTES_PER_GROUP: u64 = 1024;
    let processes = config.cluster.as_ref().map_or(1, |c| c.addresses.len());
    let peers = (config.workers.max(1) * processes) as u64;
    let groups_per_mib = found
        .sources
        .iter()
        .find_map(|source| match source {
            source::Source::File { path, gzip, .. } if !gzip => groups_in_first_mib(path),
            _ => None,
        })
        .unwrap_or(MIB / 64); // unknown: a line a group, lines of 64 bytes
    let per_unit_mib = peers * groups_per_mib.max(1) * IN_FLIGHT_BYTES_PER_GROUP;
    (config.memory_limit / 8 * MIB / per_unit_mib).clamp(256 << 10, 16 * MIB)
}

/// Distinct (customer, day) groups among the lines of a file's first MiB, scaled to a full MiB
/// when the file is shorter; `None` when it has no line to go by.
fn groups_in_first_mib(path: &Path) -> Option<u64> {
    use std::io::Read;
    let mut sample = Vec::with_capacity(1 << 20);
    std::fs::File::open(path)
        .ok()?
        .take(1 << 20)
        .read_to_end(&mut sample)
        .ok()?;
    let complete = &sample[..memchr::memrchr(b'\n', &sample)? + 1];
    let mut groups = rustc_hash::FxHashSet::default();
    for line in complete.split(|&b| b == b'\n') {
        if let Ok(Some(request)) = crate::record::parse_line(line) {
            groups.insert((request.customer, request.day));
        }
    }
    let groups = groups.len() as u64;
    (groups > 0).then(|| groups * (1 << 20) / complete.len() as u64)
}

/// One worker: builds the dataflow, feeds it, and drives it to the end.
fn run_worker(worker: &mut Worker, job: &Arc<Job>) -> anyhow::Result<()> {
    job.started.store(true, Ordering::SeqCst);
    let index = worker.index();
    let peers = worker.peers();
    let mut input = InputHandle::<u64, _>::new();
    let mut chunk_input = ChunkInput::new();
    let probe = ProbeHandle::<u64>::new();
    // Every worker builds the dataflow and drains it to the end, even after an error: a worker
    // that left early would leave the others waiting for it forever.
    let mut failure = None;
    let committer = match index {
        0 => CommitterThread::start(job, peers)
            .map_err(|error| failure = Some(error))
            .ok(),
        _ => None,
    };
    if failure.is_some() {
        job.stop.store(true, Ordering::SeqCst);
    }
    let committer = Rc::new(RefCell::new(committer));
    let operator_committer = Rc::clone(&committer);
    let parse_job = Arc::clone(job);
    worker.dataflow::<u64, _, _>(|scope| {
        let parsed = chunk_input.to_stream(scope).unary(
            Exchange::new(|chunk: &Chunk| chunk.worker as u64),
            "Parse",
            move |_, _| {
                // Its customer numbers are apart from the feeder's (worker `index`).
                let mut aggregator = Aggregator::new(peers + index, reject_limit(&parse_job));
                move |input, output| {
                    input.for_each(|time, chunks: &mut Vec<Chunk>| {
                        let lines_before = aggregator.lines();
                        chunks.iter().for_each(|chunk| chunk.feed(&mut aggregator));
                        parse_job
                            .lines_read
                            .fetch_add(aggregator.lines() - lines_before, Ordering::Relaxed);
                        output
                            .session(&time)
                            .give_iterator(Update::drained(&mut aggregator));
                    });
                }
            },
        );
        input
            .to_stream(scope)
            .concat(parsed)
            .unary_frontier::<timely::container::CapacityContainerBuilder<Vec<()>>, _, _, _>(
                Exchange::new(|_: &Update| 0),
                "Commit",
                move |initial, _| {
                    drop(initial);
                    let mut pending: std::collections::BTreeMap<
                        u64,
                        (Capability<u64>, Vec<Update>),
                    > = Default::default();
                    move |(input, frontier), _output| {
                        input.for_each(|cap, data: &mut Vec<Update>| {
                            let Some(&time) = cap.least() else { return };
                            pending
                                .entry(time)
                                .or_insert_with(|| {
                                    (cap.retain_least(0).expect("a non-empty stamp"), Vec::new())
                                })
                                .1
                                .append(data);
                        });
                        let ready: Vec<u64> = pending
                            .keys()
                            .copied()
                            .take_while(|t| !frontier.less_equal(t))
                            .collect();
                        if ready.is_empty() {
                            return;
                        }
                        let epochs: Finished = ready
                            .iter()
                            .map(|t| {
                                let (_cap, updates) = pending.remove(t).expect("a pending epoch");
                                (*t, updates)
                            })
                            .collect();
                        if let Some(committer) = operator_committer.borrow().as_ref() {
                            committer.send(epochs);
                        }
                    }
                },
            )
            .container::<Vec<()>>()
            .probe_with(&probe);
    });

    let mut feeder = Feeder::new(index, peers, Aggregator::new(index, reject_limit(job)));
    let result = match failure {
        Some(error) => Err(error),
        // A panic is a bug, but the other workers must still be able to end: it becomes an error.
        None => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            feeder.run(worker, &mut input, &mut chunk_input, &probe, job)
        }))
        .unwrap_or_else(|_| {
            Err(anyhow::anyhow!(
                "worker {index} failed (a bug: please report it)"
            ))
        }),
    };
    if result.is_err() {
        job.stop.store(true, Ordering::SeqCst);
    }
    drop(input);
    drop(chunk_input);
    while worker.step_or_park(Some(Duration::from_millis(100))) {}
    if let Some(committer) = committer.borrow_mut().take() {
        committer.finish();
    }
    result
}

/// Rejected lines kept per worker: all of them when they go to a file.
fn reject_limit(job: &Job) -> usize {
    if job.config.rejects_file.is_some() {
        usize::MAX
    } else {
        job.config.reject_samples
    }
}
