//! Randomised sequences of appends and logrotate schemes (numbered renames, `copytruncate`,
//! `dateext`, `compress`, `delaycompress`, the oldest removed), with batch runs, a follower or
//! `ship` at random points: the store must always hold every complete line ever written, once.
//!
//! A scenario is a list of steps drawn from a seed, so that a failing one can be replayed and
//! cut down: `ROTATION_ATTACK_SEED=N` runs one seed, `ROTATION_ATTACK_MINIMIZE=1` removes steps
//! while the failure stays, and prints what is left.

use std::io::Write;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use crate::common::*;
use crate::oracle;

/// How long a follower may take to catch up before a step counts as failed
/// (`ROTATION_ATTACK_CATCH_UP` seconds, 60 by default: a guard against a hang, not a measure).
fn catch_up() -> Duration {
    let seconds = std::env::var("ROTATION_ATTACK_CATCH_UP").map_or(60.0, |s| s.parse().unwrap());
    Duration::from_secs_f64(seconds)
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scheme {
    /// `app.log.N -> app.log.N+1`, `app.log -> app.log.1`, a new `app.log` created.
    Rename,
    /// The numbered ones shifted, `app.log` copied to `app.log.1` and emptied in place.
    CopyTruncate,
    /// `app.log -> app.log-YYYYMMDD`, a new `app.log` created.
    DateExt,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Compress {
    No,
    /// The file just rotated is compressed.
    Now,
    /// The file rotated the time before is compressed (`delaycompress`).
    Delay,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Step {
    /// Appends whole lines to `app.log` (a partial line pending is completed first, where it is).
    Append(usize),
    /// Writes the first part of the next line to `app.log` (cut at this per cent of it).
    Partial(u8),
    /// A rotation; `slow`: the `.gz` it makes is left written up to this per cent (its plain file
    /// still there, as gzip leaves them) until the next step finishes it.
    Rotate {
        scheme: Scheme,
        compress: Compress,
        keep: usize,
        slow: Option<u8>,
    },
    /// A batch run (or a ship and ingest of the stream; a check only, when following).
    Run,
}

/// What scenarios may contain.
#[derive(Clone, Copy, Debug)]
struct Features {
    partial_lines: bool,
    slow_gzip: bool,
    schemes: &'static [Scheme],
    compress: bool,
    /// A run just before every rotation, so that nothing unread is ever compressed (keeps clear
    /// of [`a_gz_renamed_after_it_read_past_its_plain_original_is_not_read_again`]'s failure).
    run_before_rotation: bool,
    steps: usize,
}

const ALL_SCHEMES: &[Scheme] = &[Scheme::Rename, Scheme::CopyTruncate, Scheme::DateExt];

fn scenario(seed: u64, features: Features) -> Vec<Step> {
    let mut rng = Rng::new(seed);
    let mut steps = Vec::new();
    while steps.len() < features.steps {
        let step = match rng.below(10) {
            0..=3 => Step::Append(match rng.below(4) {
                0 => 1,
                1 => 1 + rng.below(20) as usize,
                _ => 1 + rng.below(250) as usize,
            }),
            4 if features.partial_lines => Step::Partial(rng.below(100) as u8),
            4..=6 => {
                let scheme = features.schemes[rng.below(features.schemes.len() as u64) as usize];
                let compress = match (features.compress, rng.below(3)) {
                    (false, _) | (_, 0) => Compress::No,
                    (_, 1) => Compress::Now,
                    _ => Compress::Delay,
                };
                let slow = (features.slow_gzip && compress != Compress::No && rng.chance(50))
                    .then(|| rng.below(100) as u8);
                if features.run_before_rotation {
                    steps.push(Step::Run);
                }
                Step::Rotate {
                    scheme,
                    compress,
                    keep: 1 + rng.below(4) as usize,
                    slow,
                }
            }
            _ => Step::Run,
        };
        steps.push(step);
    }
    steps.push(Step::Run);
    steps
}

/// The log directory and what was written to it.
struct World {
    dir: PathBuf,
    lines: Vec<String>,
    next: usize,
    /// Every complete line written, in order.
    written: String,
    /// A line begun and not finished: the file it is in, the rest, the whole line.
    partial: Option<(String, String, String)>,
    /// A `.gz` being written: the plain file's name and the `.gz`'s whole bytes.
    slow_gz: Option<(String, Vec<u8>)>,
    dates: u32,
    /// The contents (decompressed) of the files when the store last saw them: only these may be
    /// removed, as a file removed before any run saw its last lines takes them with it.
    seen: std::collections::HashSet<Vec<u8>>,
}

impl World {
    fn new(base: &Path, seed: u64) -> World {
        let dir = base.join("logs");
        std::fs::create_dir_all(&dir).unwrap();
        let source = generated_log(base, "source.log", 20_000, 1000 + seed);
        let text = std::fs::read_to_string(&source).unwrap();
        std::fs::remove_file(source).unwrap();
        World {
            dir,
            lines: text.lines().map(|l| format!("{l}\n")).collect(),
            next: 0,
            written: String::new(),
            partial: None,
            slow_gz: None,
            dates: 0,
            seen: Default::default(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn exists(&self, name: &str) -> bool {
        self.path(name).exists()
    }

    fn take_line(&mut self) -> String {
        let line = self.lines[self.next % self.lines.len()].clone();
        self.next += 1;
        line
    }

    fn complete_partial(&mut self) {
        if let Some((name, rest, whole)) = self.partial.take() {
            append(&self.path(&name), &rest);
            self.written.push_str(&whole);
        }
    }

    fn finish_gz(&mut self) {
        if let Some((plain, bytes)) = self.slow_gz.take() {
            std::fs::write(self.path(&format!("{plain}.gz")), bytes).unwrap();
            std::fs::remove_file(self.path(&plain)).unwrap();
        }
    }

    fn append(&mut self, count: usize) {
        self.complete_partial();
        let text: String = (0..count).map(|_| self.take_line()).collect();
        append(&self.path("app.log"), &text);
        self.written.push_str(&text);
    }

    fn begin_line(&mut self, percent: u8) {
        self.complete_partial();
        let whole = self.take_line();
        let body = whole.len() - 1;
        let cut = (body * percent as usize / 100).clamp(1, body - 1);
        append(&self.path("app.log"), &whole[..cut]);
        self.partial = Some(("app.log".into(), whole[cut..].to_string(), whole));
    }

    fn rename(&mut self, from: &str, to: &str) {
        std::fs::rename(self.path(from), self.path(to)).unwrap();
        if let Some((name, _, _)) = &mut self.partial
            && name == from
        {
            *name = to.to_string();
        }
    }

    /// gzip: `name.gz` written (in full, or up to `slow` per cent for now), `name` removed once
    /// it is whole.
    fn compress(&mut self, name: &str, slow: Option<u8>) {
        self.finish_gz();
        let plain = std::fs::read(self.path(name)).unwrap();
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(&plain).unwrap();
        let packed = encoder.finish().unwrap();
        match slow {
            Some(percent) => {
                let part = packed.len() * percent as usize / 100;
                std::fs::write(self.path(&format!("{name}.gz")), &packed[..part]).unwrap();
                self.slow_gz = Some((name.to_string(), packed));
            }
            None => {
                std::fs::write(self.path(&format!("{name}.gz")), &packed).unwrap();
                std::fs::remove_file(self.path(name)).unwrap();
            }
        }
    }

    fn numbered(&self) -> Vec<(u32, bool)> {
        let mut found: Vec<(u32, bool)> = std::fs::read_dir(&self.dir)
            .unwrap()
            .filter_map(|e| {
                let name = e.ok()?.file_name().into_string().ok()?;
                let rest = name.strip_prefix("app.log.")?;
                let (number, gz) = match rest.strip_suffix(".gz") {
                    Some(n) => (n, true),
                    None => (rest, false),
                };
                Some((number.parse().ok()?, gz))
            })
            .collect();
        found.sort();
        found
    }

    fn dated(&self) -> Vec<String> {
        let mut found: Vec<String> = std::fs::read_dir(&self.dir)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with("app.log-"))
            .collect();
        found.sort();
        found
    }

    fn rotate(&mut self, scheme: Scheme, compress: Compress, keep: usize, slow: Option<u8>) {
        self.finish_gz();
        let keeps_writer = scheme != Scheme::CopyTruncate && compress != Compress::Now;
        if self
            .partial
            .as_ref()
            .is_some_and(|(name, _, _)| !keeps_writer || name != "app.log")
        {
            self.complete_partial();
        }
        if !self.exists("app.log") {
            return;
        }
        let suffix = |gz: bool| if gz { ".gz" } else { "" };
        match scheme {
            Scheme::Rename | Scheme::CopyTruncate => {
                for (n, gz) in self.numbered().into_iter().rev() {
                    let s = suffix(gz);
                    self.rename(&format!("app.log.{n}{s}"), &format!("app.log.{}{s}", n + 1));
                }
                if scheme == Scheme::Rename {
                    self.rename("app.log", "app.log.1");
                    std::fs::File::create(self.path("app.log")).unwrap();
                } else {
                    std::fs::copy(self.path("app.log"), self.path("app.log.1")).unwrap();
                    std::fs::OpenOptions::new()
                        .write(true)
                        .open(self.path("app.log"))
                        .unwrap()
                        .set_len(0)
                        .unwrap();
                }
                match compress {
                    Compress::No => {}
                    Compress::Now => self.compress("app.log.1", slow),
                    Compress::Delay => {
                        if self.exists("app.log.2") {
                            self.complete_partial_in("app.log.2");
                            self.compress("app.log.2", slow);
                        }
                    }
                }
                for (n, gz) in self.numbered() {
                    if n as usize > keep {
                        self.finish_gz();
                        let name = format!("app.log.{n}{}", suffix(gz));
                        if self.exists(&name) {
                            self.remove(&name);
                        }
                    }
                }
            }
            Scheme::DateExt => {
                self.dates += 1;
                let name = format!("app.log-202412{:02}", self.dates);
                let before = self.dated();
                self.rename("app.log", &name);
                std::fs::File::create(self.path("app.log")).unwrap();
                match compress {
                    Compress::No => {}
                    Compress::Now => self.compress(&name, slow),
                    Compress::Delay => {
                        if let Some(last) = before.iter().rev().find(|n| !n.ends_with(".gz")) {
                            let last = last.clone();
                            self.complete_partial_in(&last);
                            self.compress(&last, slow);
                        }
                    }
                }
                let dated = self.dated();
                if dated.len() > keep {
                    for old in &dated[..dated.len() - keep] {
                        if self
                            .slow_gz
                            .as_ref()
                            .is_some_and(|(p, _)| *old == format!("{p}.gz") || old == p)
                        {
                            continue;
                        }
                        self.remove(old);
                    }
                }
            }
        }
    }

    /// The lines `name` holds (decompressed), `None` when it cannot be read whole.
    fn content(&self, name: &str) -> Option<Vec<u8>> {
        let bytes = std::fs::read(self.path(name)).ok()?;
        if !name.ends_with(".gz") {
            return Some(bytes);
        }
        let mut plain = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::MultiGzDecoder::new(&bytes[..]),
            &mut plain,
        )
        .ok()?;
        Some(plain)
    }

    /// The store has seen every file as it is now.
    fn observe(&mut self) {
        let names: Vec<String> = std::fs::read_dir(&self.dir)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        self.seen = names.iter().filter_map(|n| self.content(n)).collect();
    }

    /// Removes `name` (logrotate's `rotate N`) unless it holds lines no run has seen yet.
    fn remove(&mut self, name: &str) {
        if self.partial.as_ref().is_some_and(|(n, _, _)| n == name) {
            return;
        }
        if self.content(name).is_some_and(|c| self.seen.contains(&c)) {
            std::fs::remove_file(self.path(name)).unwrap();
        }
    }

    fn complete_partial_in(&mut self, name: &str) {
        if self.partial.as_ref().is_some_and(|(n, _, _)| n == name) {
            self.complete_partial();
        }
    }

    fn apply(&mut self, step: &Step) {
        if *step != Step::Run {
            self.finish_gz();
        }
        match *step {
            Step::Append(count) => self.append(count),
            Step::Partial(percent) => self.begin_line(percent),
            Step::Rotate {
                scheme,
                compress,
                keep,
                slow,
            } => self.rotate(scheme, compress, keep, slow),
            Step::Run => {}
        }
    }

    fn listing(&self) -> String {
        let mut names: Vec<String> = std::fs::read_dir(&self.dir)
            .unwrap()
            .filter_map(|e| {
                let e = e.ok()?;
                Some(format!(
                    "{} ({} B)",
                    e.file_name().into_string().ok()?,
                    e.metadata().ok()?.len()
                ))
            })
            .collect();
        names.sort();
        names.join(", ")
    }
}

/// The requests stored, over every row.
fn stored_total(url: &str) -> u64 {
    all_rows(url)
        .iter()
        .map(|r| r["total_requests"].as_u64().unwrap())
        .sum()
}

/// Whether the store holds exactly the oracle's rows over `text`.
fn store_matches(url: &str, text: &str) -> Result<(), String> {
    let want = text.lines().count() as u64;
    let got = stored_total(url);
    if got != want {
        return Err(format!("stored {got} requests, want {want}"));
    }
    let rows = all_rows(url);
    std::panic::catch_unwind(AssertUnwindSafe(|| {
        oracle::assert_rows_match_text(&rows, text)
    }))
    .map_err(|e| {
        e.downcast_ref::<String>()
            .cloned()
            .unwrap_or_else(|| "rows differ".into())
    })
}

/// How scenarios are observed.
#[derive(Clone, Copy, Debug)]
enum Mode {
    /// `ingest DIR` at each [`Step::Run`].
    Batch,
    /// `ingest --follow DIR` throughout (with these extra arguments), checked after every step;
    /// a batch run at the end.
    Follow(&'static [&'static str]),
    /// `ship DIR STREAM` and `ingest STREAM` at each [`Step::Run`].
    Ship,
}

/// Plays `steps`; `Err` says at which step the store went wrong, and how.
fn play(steps: &[Step], seed: u64, mode: Mode) -> Result<(), String> {
    let backend = Backend::Sqlite;
    let db = TestDb::new(backend);
    let mut world = World::new(db.dir(), seed);
    let nats = match mode {
        Mode::Ship => Some(crate::stream::NatsServer::start(&[]).expect("nats-server")),
        _ => None,
    };
    let stream = nats.as_ref().map(|n| n.url("ATTACK"));
    let mut follower: Option<Child> = None;
    // What the follower said, kept for the failure message.
    let follower_said = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let follower_tail = || {
        let said = follower_said.lock().unwrap();
        said[said.len().saturating_sub(60)..].join("\n")
    };
    let mut last_said = String::new();
    let fail = |i: usize, what: String, world: &World, said: &str| {
        Err(format!(
            "after step {i} ({:?}): {what}\nfiles: {}\nlast run said:\n{said}",
            steps.get(i),
            world.listing()
        ))
    };
    let result = (|| {
        for (i, step) in steps.iter().enumerate() {
            world.apply(step);
            match mode {
                Mode::Batch if *step == Step::Run => {
                    let output = ingest_command(&db.url).arg(&world.dir).output().unwrap();
                    last_said = String::from_utf8_lossy(&output.stderr).into_owned();
                    if !matches!(output.status.code(), Some(0 | 2)) {
                        return fail(i, format!("exit {:?}", output.status), &world, &last_said);
                    }
                    if world.partial.is_none()
                        && let Err(e) = store_matches(&db.url, &world.written)
                    {
                        return fail(i, e, &world, &last_said);
                    }
                    world.observe();
                }
                Mode::Ship if *step == Step::Run => {
                    let stream = stream.as_ref().unwrap();
                    let output = crate::stream::ship_command(&[&world.dir], stream)
                        .output()
                        .unwrap();
                    last_said = String::from_utf8_lossy(&output.stderr).into_owned();
                    if !matches!(output.status.code(), Some(0 | 2)) {
                        return fail(
                            i,
                            format!("ship exit {:?}", output.status),
                            &world,
                            &last_said,
                        );
                    }
                    let output = ingest_command(&db.url).arg(stream).output().unwrap();
                    if !output.status.success() {
                        let said = String::from_utf8_lossy(&output.stderr);
                        return fail(i, format!("ingest exit {:?}", output.status), &world, &said);
                    }
                    if let Err(e) = store_matches(&db.url, &world.written) {
                        return fail(i, e, &world, &last_said);
                    }
                    world.observe();
                }
                Mode::Follow(extra) => {
                    if follower.is_none() {
                        let (child, watch) = following(&db.url, &world.dir, extra);
                        let said = follower_said.clone();
                        std::thread::spawn(move || {
                            // Polls that found nothing new are left out.
                            for line in watch.lines.iter().filter(|l| !l.contains("groups=0 ")) {
                                said.lock().unwrap().push(line);
                            }
                        });
                        follower = Some(child);
                    }
                    if let Some(status) = follower.as_mut().unwrap().try_wait().unwrap() {
                        let said = follower_tail();
                        return fail(i, format!("the follower ended: {status}"), &world, &said);
                    }
                    let settled = std::panic::catch_unwind(AssertUnwindSafe(|| {
                        eventually_matches(&db.url, &world.written, catch_up())
                    }))
                    .unwrap_or_else(|e| {
                        Err(e
                            .downcast_ref::<String>()
                            .cloned()
                            .unwrap_or_else(|| "rows differ".into()))
                    });
                    if let Err(e) = settled {
                        return fail(i, format!("following: {e}"), &world, &follower_tail());
                    }
                    world.observe();
                }
                _ => {}
            }
        }
        Ok(())
    })();
    if let Some(mut child) = follower.take() {
        signal(child.id(), "TERM");
        let status = child.wait().unwrap();
        result.as_ref().map_err(|e| e.clone())?;
        if !status.success() {
            return Err(format!("the follower exited {status}"));
        }
        world.complete_partial();
        world.finish_gz();
        let output = ingest_command(&db.url).arg(&world.dir).output().unwrap();
        let said = String::from_utf8_lossy(&output.stderr).into_owned();
        if let Err(e) = store_matches(&db.url, &world.written) {
            return fail(
                steps.len(),
                format!("a batch run after following: {e}"),
                &world,
                &said,
            );
        }
    }
    result
}

/// Removes steps while the scenario still fails; returns what is left.
fn minimize(mut steps: Vec<Step>, seed: u64, mode: Mode, failure: &str) -> Vec<Step> {
    let failed_at = failure
        .strip_prefix("after step ")
        .and_then(|rest| rest.split(' ').next()?.parse::<usize>().ok());
    if let Some(at) = failed_at {
        let mut shorter = steps[..(at + 1).min(steps.len())].to_vec();
        shorter.push(Step::Run);
        if play(&shorter, seed, mode).is_err() {
            steps = shorter;
        }
    }
    let mut i = 0;
    while i < steps.len() {
        let mut shorter = steps.clone();
        shorter.remove(i);
        if play(&shorter, seed, mode).is_err() {
            steps = shorter;
        } else {
            i += 1;
        }
    }
    steps
}

/// Plays `rounds` seeds; panics with the first failure (cut down when asked).
fn attack(features: Features, mode: Mode, first_seed: u64, rounds: u64) {
    let seeds: Vec<u64> = match std::env::var("ROTATION_ATTACK_SEED") {
        Ok(seed) => vec![seed.parse().unwrap()],
        Err(_) => (first_seed..first_seed + rounds).collect(),
    };
    for seed in seeds {
        let steps = scenario(seed, features);
        if let Err(failure) = play(&steps, seed, mode) {
            let steps = match std::env::var("ROTATION_ATTACK_MINIMIZE").as_deref() {
                Ok("1") => minimize(steps, seed, mode, &failure),
                _ => steps,
            };
            let again = play(&steps, seed, mode).err().unwrap_or(failure);
            panic!("seed {seed}, {mode:?}: {again}\nsteps:\n{steps:#?}");
        }
    }
}

const WHOLE_LINES: Features = Features {
    partial_lines: false,
    slow_gzip: false,
    schemes: ALL_SCHEMES,
    compress: true,
    run_before_rotation: false,
    steps: 30,
};

const EVERYTHING: Features = Features {
    partial_lines: true,
    slow_gzip: true,
    ..WHOLE_LINES
};

#[test]
fn batch_runs_through_random_rotations_of_whole_lines_store_every_line_once() {
    let features = Features {
        run_before_rotation: true,
        ..WHOLE_LINES
    };
    attack(features, Mode::Batch, 1, rounds(40, 6));
}

#[test]
fn batch_runs_through_random_rotations_with_partial_lines_store_every_line_once() {
    let features = Features {
        partial_lines: true,
        run_before_rotation: true,
        ..WHOLE_LINES
    };
    attack(features, Mode::Batch, 100, rounds(40, 6));
}

#[test]
fn batch_runs_through_random_rotations_with_unread_lines_compressed_store_every_line_once() {
    let features = Features {
        partial_lines: true,
        ..WHOLE_LINES
    };
    attack(features, Mode::Batch, 100, rounds(40, 10));
}

#[test]
fn batch_runs_through_random_rotations_with_gzip_written_slowly_store_every_line_once() {
    let features = Features {
        run_before_rotation: true,
        ..EVERYTHING
    };
    attack(features, Mode::Batch, 200, rounds(40, 10));
}

const UNCOMPRESSED: Features = Features {
    partial_lines: true,
    compress: false,
    ..WHOLE_LINES
};

#[test]
fn following_through_random_rotations_without_compression_stores_every_line_once() {
    attack(UNCOMPRESSED, Mode::Follow(&[]), 300, rounds(10, 2));
}

#[test]
fn following_with_two_open_files_through_random_rotations_without_compression_stores_every_line_once()
 {
    attack(
        UNCOMPRESSED,
        Mode::Follow(&["--max-open-files", "2"]),
        500,
        rounds(10, 2),
    );
}

#[test]
fn following_through_random_rotations_with_compression_stores_every_line_once() {
    attack(
        EVERYTHING,
        Mode::Follow(&["--max-open-files", "2"]),
        500,
        rounds(10, 2),
    );
}

#[test]
fn shipping_through_random_rotations_sends_every_line_once() {
    if crate::stream::NatsServer::start(&[]).is_none() {
        return;
    }
    attack(WHOLE_LINES, Mode::Ship, 600, rounds(20, 3));
}

#[test]
fn shipping_through_random_rotations_with_partial_lines_and_slow_gzip_sends_every_line_once() {
    if crate::stream::NatsServer::start(&[]).is_none() {
        return;
    }
    attack(EVERYTHING, Mode::Ship, 700, rounds(20, 3));
}

/// The first `count` generated lines of seed 3, each with its newline.
fn some_lines(dir: &Path, count: usize) -> Vec<String> {
    let source = generated_log(dir, "source.log", count as u64, 3);
    let text = std::fs::read_to_string(&source).unwrap();
    std::fs::remove_file(source).unwrap();
    text.lines().map(|l| format!("{l}\n")).collect()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// `ingest DIR` (exit 0 or 2), then the requests stored.
fn run_and_count(url: &str, dir: &Path, extra: &[&str]) -> (u64, String) {
    let output = ingest_command(url).args(extra).arg(dir).output().unwrap();
    let said = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(matches!(output.status.code(), Some(0 | 2)), "{said}");
    (stored_total(url), said)
}

/// logrotate `compress` (no `delaycompress`): a line appended since the last run is compressed
/// away, read from `app.log.1.gz`; at the next rotation `app.log.1.gz -> app.log.2.gz` the plain
/// original's row (9,768 decompressed bytes) beats the `.gz`'s own (2,392 compressed bytes)
/// as "the one that read the most", and the line is read again, at every rename after.
#[test]
fn a_gz_renamed_after_it_read_past_its_plain_original_is_not_read_again() {
    let db = TestDb::new(Backend::Sqlite);
    let dir = db.dir().join("logs");
    std::fs::create_dir(&dir).unwrap();
    let lines = some_lines(db.dir(), 176);
    std::fs::write(dir.join("app.log"), lines[..175].concat()).unwrap();
    assert_eq!(run_and_count(&db.url, &dir, &[]).0, 175);
    append(&dir.join("app.log"), &lines[175]);
    // rotate: app.log -> app.log.1, compressed at once; a new app.log
    let plain = std::fs::read(dir.join("app.log")).unwrap();
    std::fs::write(dir.join("app.log.1.gz"), gzip(&plain)).unwrap();
    std::fs::write(dir.join("app.log"), "").unwrap();
    assert_eq!(run_and_count(&db.url, &dir, &[]).0, 176);
    // the next rotation shifts the .gz
    std::fs::rename(dir.join("app.log.1.gz"), dir.join("app.log.2.gz")).unwrap();
    let (stored, said) = run_and_count(&db.url, &dir, &[]);
    assert_eq!(stored, 176, "{said}");
}

/// logrotate `compress` while a batch run happens: `app.log.1.gz` has only its first bytes
/// (less than the 4 KiB fingerprinted of `app.log.1`'s content) and is taken for a new file;
/// once whole, it is read from its start, though `app.log.1` was read.
#[test]
fn a_gz_being_written_from_an_ingested_file_is_not_read_again_once_whole() {
    let mut failures = Vec::new();
    for (lines, written) in [(1000, 20), (1, 20), (1000, 2000), (1000, 6000)] {
        let db = TestDb::new(Backend::Sqlite);
        let dir = db.dir().join("logs");
        std::fs::create_dir(&dir).unwrap();
        let text = some_lines(db.dir(), lines).concat();
        std::fs::write(dir.join("app.log"), &text).unwrap();
        run_and_count(&db.url, &dir, &[]);
        std::fs::rename(dir.join("app.log"), dir.join("app.log.1")).unwrap();
        let packed = gzip(text.as_bytes());
        let written = written.min(packed.len() - 1);
        std::fs::write(dir.join("app.log.1.gz"), &packed[..written]).unwrap();
        std::fs::write(dir.join("app.log"), "").unwrap();
        let (during, _) = run_and_count(&db.url, &dir, &[]);
        std::fs::write(dir.join("app.log.1.gz"), &packed).unwrap();
        std::fs::remove_file(dir.join("app.log.1")).unwrap();
        let (after, said) = run_and_count(&db.url, &dir, &[]);
        if (during, after) != (lines as u64, lines as u64) {
            failures.push(format!(
                "{lines} lines, {written} of {} compressed bytes written during a run: stored \
                 {during} then {after}, want {lines}; the last run said: {said}",
                packed.len()
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// logrotate's `compress` twice while following: at the second rotation (`app.log.1.gz ->
/// app.log.2.gz`, `app.log -> app.log.1 -> app.log.1.gz`), the follower's commit is refused
/// ("app.log.1.gz was ingested by another process meanwhile (expected offset 0, found 205)")
/// and it exits 1; lines appended afterwards are never read. (With `copytruncate` the same.)
#[test]
fn following_through_two_compressing_rotations_goes_on() {
    let db = TestDb::new(Backend::Sqlite);
    let mut world = World::new(db.dir(), 0);
    std::fs::write(world.path("app.log"), "").unwrap();
    let (mut follower, watch) = following(&db.url, &world.dir, &[]);
    let said = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let lines = std::sync::Arc::clone(&said);
    std::thread::spawn(move || {
        for line in watch.lines.iter() {
            lines.lock().unwrap().push(line);
        }
    });
    let steps = [
        Step::Append(8),
        Step::Rotate {
            scheme: Scheme::Rename,
            compress: Compress::Now,
            keep: 5,
            slow: None,
        },
        Step::Append(209),
        Step::Rotate {
            scheme: Scheme::Rename,
            compress: Compress::Now,
            keep: 5,
            slow: None,
        },
        Step::Append(10),
    ];
    for (i, step) in steps.iter().enumerate() {
        world.apply(step);
        let settled = eventually_matches(&db.url, &world.written, PATIENCE);
        if let Err(e) = settled {
            let _ = follower.kill();
            let _ = follower.wait();
            let errors: Vec<String> = said
                .lock()
                .unwrap()
                .iter()
                .filter(|l| l.contains("error") || l.contains("WARN"))
                .cloned()
                .collect();
            panic!("after step {i} ({step:?}): {e}; the follower said {errors:#?}");
        }
    }
    signal(follower.id(), "TERM");
    assert!(follower.wait().unwrap().success());
}

/// A file made by a rotation that so far holds the beginning of a line (a few bytes every line
/// begins with) is not a copy of the file rotated away as far as it was read: once the line is
/// whole, it is counted (the follower used to follow the new file from after those bytes, and the
/// line, read from its middle, was lost).
#[test]
fn following_a_new_file_that_holds_the_beginning_of_a_line_reads_the_whole_line() {
    let (db, mut world, mut follower, mut watch) = following_twenty_lines(303);
    eventually_matches(&db.url, &world.written, PATIENCE).unwrap();
    // Rotated, and the new file appears holding the first bytes of a line (moved into place
    // whole, so that no poll sees it empty).
    world.rename("app.log", "app.log.1");
    let whole = world.take_line();
    let staged = db.dir().join("staged");
    std::fs::write(&staged, &whole[..4]).unwrap();
    std::fs::rename(&staged, world.path("app.log")).unwrap();
    world.partial = Some(("app.log".into(), whole[4..].to_string(), whole));
    until_polled(&mut watch);
    world.apply(&Step::Append(3));
    let settled = eventually_matches(&db.url, &world.written, PATIENCE);
    signal(follower.id(), "TERM");
    assert!(follower.wait().unwrap().success());
    settled.unwrap();
}

/// A followed file whose only line is completed just before it is rotated and compressed away
/// (`dateext`, `compress`) is drained, and its `.gz` is known for it: the line counts once (the
/// drain's progress row lacked the fingerprint of the file's first bytes, so the `.gz` was read
/// as a new file and the line counted twice).
#[test]
fn a_line_completed_just_before_its_file_is_compressed_away_counts_once() {
    let (db, mut world, mut follower, mut watch) = following_twenty_lines(506);
    world.apply(&Step::Rotate {
        scheme: Scheme::DateExt,
        compress: Compress::No,
        keep: 5,
        slow: None,
    });
    world.apply(&Step::Partial(89));
    eventually_matches(&db.url, &world.written, PATIENCE).unwrap();
    until_polled(&mut watch); // the new file with its partial line
    // The rest of the line, the rotation and the compression, all between two polls (the
    // compressed file is made beforehand, outside the directory).
    let (_, rest, whole) = world.partial.take().unwrap();
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let plain = [
        std::fs::read(world.path("app.log")).unwrap(),
        rest.clone().into_bytes(),
    ]
    .concat();
    encoder.write_all(&plain).unwrap();
    let staged = db.dir().join("staged.gz");
    std::fs::write(&staged, encoder.finish().unwrap()).unwrap();
    append(&world.path("app.log"), &rest);
    std::fs::remove_file(world.path("app.log")).unwrap();
    std::fs::rename(&staged, world.path("app.log-20241202.gz")).unwrap();
    std::fs::File::create(world.path("app.log")).unwrap();
    world.written.push_str(&whole);
    let settled = eventually_matches(&db.url, &world.written, PATIENCE);
    signal(follower.id(), "TERM");
    assert!(follower.wait().unwrap().success());
    settled.unwrap();
}

/// A follower of a log directory whose `app.log` holds 20 lines, and its database.
fn following_twenty_lines(seed: u64) -> (TestDb, World, Child, CommitWatch) {
    let db = TestDb::new(Backend::Sqlite);
    let mut world = World::new(db.dir(), seed);
    world.append(20);
    let (follower, watch) = following(&db.url, &world.dir, &[]);
    (db, world, follower, watch)
}

/// Returns once two more commits were reported: a whole poll has seen the files as they are now.
fn until_polled(watch: &mut CommitWatch) {
    watch.drain();
    let seen = watch.commits;
    assert!(watch.until_commits(seen + 2, PATIENCE), "following goes on");
}
