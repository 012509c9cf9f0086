//! Every line once under logrotate's schemes: rename, copytruncate, compress, delaycompress and
//! dateext, between batch runs and while following, and with thousands of files followed.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::common::*;
use crate::oracle;

/// `count` generated lines (seed `seed`), each with its newline.
fn lines_of(dir: &Path, seed: u64, count: u64) -> Vec<String> {
    let source = generated_log(dir, &format!("source-{seed}.log"), count, seed);
    let text = std::fs::read_to_string(&source).unwrap();
    std::fs::remove_file(source).unwrap();
    text.lines().map(|line| format!("{line}\n")).collect()
}

/// A directory of logs, and every line ever written to it.
struct Logs {
    dir: PathBuf,
    written: String,
    lines: Vec<String>,
    next: usize,
}

impl Logs {
    fn new(db: &TestDb, lines: u64) -> Logs {
        let dir = db.dir().join("logs");
        std::fs::create_dir_all(&dir).unwrap();
        Logs {
            lines: lines_of(db.dir(), 70, lines),
            dir,
            written: String::new(),
            next: 0,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Appends the next `count` lines to `name`.
    fn write(&mut self, name: &str, count: usize) {
        let text: String = self.lines[self.next..self.next + count].concat();
        self.next += count;
        append(&self.path(name), &text);
        self.written.push_str(&text);
    }

    fn rename(&self, from: &str, to: &str) {
        std::fs::rename(self.path(from), self.path(to)).unwrap();
    }

    /// `gzip NAME`: `NAME.gz` holds its bytes compressed, and `NAME` is gone.
    fn compress(&self, name: &str) {
        let plain = std::fs::read(self.path(name)).unwrap();
        let packed = std::fs::File::create(self.path(&format!("{name}.gz"))).unwrap();
        let mut encoder = flate2::write::GzEncoder::new(packed, flate2::Compression::default());
        encoder.write_all(&plain).unwrap();
        encoder.finish().unwrap().sync_all().unwrap();
        std::fs::remove_file(self.path(name)).unwrap();
    }

    /// logrotate's `copytruncate`: `to` is a copy of `name`, which is then emptied in place.
    fn copytruncate(&self, name: &str, to: &str) {
        std::fs::copy(self.path(name), self.path(to)).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(self.path(name))
            .unwrap()
            .set_len(0)
            .unwrap();
    }
}

/// `ingest DIR`, which must succeed.
fn ingest_dir(url: &str, dir: &Path) -> String {
    let output = ingest_command(url).arg(dir).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert!(output.status.success(), "{stderr}");
    stderr
}

#[test]
fn logrotate_compress_between_two_runs_stores_every_line_once() {
    for backend in backends() {
        let db = TestDb::new(backend);
        let mut logs = Logs::new(&db, 30_000);
        logs.write("app.log", 20_000);
        ingest_dir(&db.url, &logs.dir);
        logs.rename("app.log", "app.log.1");
        logs.compress("app.log.1");
        logs.write("app.log", 10_000);
        let said = ingest_dir(&db.url, &logs.dir);
        assert!(
            said.contains("compressed"),
            "the .gz is said to be known: {said}"
        );
        oracle::assert_rows_match_text(&all_rows(&db.url), &logs.written);
        ingest_dir(&db.url, &logs.dir);
        oracle::assert_rows_match_text(&all_rows(&db.url), &logs.written);
    }
}

#[test]
fn logrotate_copytruncate_between_two_runs_stores_every_line_once() {
    for backend in backends() {
        let db = TestDb::new(backend);
        let mut logs = Logs::new(&db, 30_000);
        logs.write("app.log", 20_000);
        ingest_dir(&db.url, &logs.dir);
        logs.copytruncate("app.log", "app.log.1");
        logs.write("app.log", 10_000);
        ingest_dir(&db.url, &logs.dir);
        oracle::assert_rows_match_text(&all_rows(&db.url), &logs.written);
    }
}

/// Takes `steps` over `logs` with a batch run after each: the store always holds every line
/// written, once (a rotated file removed stays counted).
fn rotations_with_runs_between(url: &str, logs: &mut Logs, steps: &[&dyn Fn(&mut Logs)]) {
    for (i, step) in steps.iter().enumerate() {
        step(logs);
        ingest_dir(url, &logs.dir);
        let context = format!("after step {i}");
        let rows = all_rows(url);
        assert_eq!(
            rows.iter()
                .map(|r| r["total_requests"].as_u64().unwrap())
                .sum::<u64>(),
            logs.written.lines().count() as u64,
            "{context}"
        );
        oracle::assert_rows_match_text(&rows, &logs.written);
    }
}

#[test]
fn every_scheme_of_logrotate_in_turn_stores_every_line_once() {
    let db = TestDb::new(Backend::Sqlite);
    let mut logs = Logs::new(&db, 12_000);
    let steps: &[&dyn Fn(&mut Logs)] = &[
        &|logs| logs.write("app.log", 1_500),
        // rename
        &|logs| {
            logs.write("app.log", 300);
            logs.rename("app.log", "app.log.1");
            logs.write("app.log", 1_000);
        },
        // delaycompress: the older one compressed one rotation later
        &|logs| {
            logs.write("app.log", 200);
            logs.rename("app.log.1", "app.log.2");
            logs.compress("app.log.2");
            logs.rename("app.log", "app.log.1");
            logs.write("app.log", 1_000);
        },
        // copytruncate with dateext
        &|logs| {
            logs.write("app.log", 400);
            logs.copytruncate("app.log", "app.log-20241203");
            logs.write("app.log", 800);
        },
        // compress at once, the numbered ones shifted
        &|logs| {
            logs.write("app.log", 100);
            logs.rename("app.log.2.gz", "app.log.3.gz");
            logs.rename("app.log.1", "app.log.2");
            logs.compress("app.log.2");
            logs.rename("app.log", "app.log.1");
            logs.compress("app.log.1");
            logs.write("app.log", 900);
        },
        // copytruncate, then compressed (the copy was never read under its name)
        &|logs| {
            logs.write("app.log", 250);
            logs.copytruncate("app.log", "app.log-20241204");
            logs.compress("app.log-20241204");
            logs.write("app.log", 600);
        },
        // a rotated file removed: nothing is read again
        &|logs| {
            std::fs::remove_file(logs.path("app.log.3.gz")).unwrap();
            logs.write("app.log", 100);
        },
    ];
    rotations_with_runs_between(&db.url, &mut logs, steps);
}

fn stop(mut follower: std::process::Child) {
    signal(follower.id(), "TERM");
    assert!(follower.wait().unwrap().success());
}

#[test]
fn following_through_logrotate_compress_and_copytruncate_then_a_batch_run_stores_every_line_once() {
    for backend in backends() {
        let db = TestDb::new(backend);
        let mut logs = Logs::new(&db, 60_000);
        logs.write("app.log", 20_000);
        let (follower, _watch) = following(&db.url, &logs.dir, &[]);
        eventually_matches(&db.url, &logs.written, PATIENCE).expect("the backlog");
        // compress: renamed and compressed at once, before the follower drains it
        logs.write("app.log", 100);
        logs.rename("app.log", "app.log.1");
        logs.compress("app.log.1");
        logs.write("app.log", 10_000);
        eventually_matches(&db.url, &logs.written, PATIENCE).expect("after compress");
        // copytruncate
        logs.write("app.log", 100);
        logs.copytruncate("app.log", "app.log.2");
        logs.write("app.log", 10_000);
        let settled = eventually_matches(&db.url, &logs.written, PATIENCE);
        stop(follower);
        settled.expect("after copytruncate");
        ingest_dir(&db.url, &logs.dir);
        oracle::assert_rows_match_text(&all_rows(&db.url), &logs.written);
    }
}

/// The descriptors a process holds open on files below `dir`.
fn open_below(pid: u32, dir: &Path) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|fds| {
            fds.filter_map(Result::ok)
                .filter_map(|fd| std::fs::read_link(fd.path()).ok())
                .filter(|target| target.starts_with(dir))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn following_many_files_keeps_few_open_and_still_reads_every_append_and_rotation() {
    let db = TestDb::new(Backend::Sqlite);
    let mut logs = Logs::new(&db, 5_000);
    let files = 300;
    for i in 0..files {
        logs.write(&format!("f{i:03}.log"), 10);
    }
    let (follower, _watch) = following(&db.url, &logs.dir, &["--max-open-files", "16"]);
    eventually_matches(&db.url, &logs.written, PATIENCE).expect("the backlog");
    // The limit, and a few opened for a moment while a poll looks at or reads a file.
    let most = 16 + 4;
    assert!(open_below(follower.id(), &logs.dir) <= most);
    // Appends to files long closed, one of them renamed while closed.
    for i in (0..files).step_by(37) {
        logs.write(&format!("f{i:03}.log"), 5);
    }
    logs.rename("f111.log", "f111.log.1");
    logs.write("f111.log", 7);
    logs.write("f111.log.1", 3);
    eventually_matches(&db.url, &logs.written, PATIENCE).expect("appends to closed files");
    let open = open_below(follower.id(), &logs.dir);
    stop(follower);
    assert!(open <= most, "{open} files open");
    ingest_dir(&db.url, &logs.dir);
    oracle::assert_rows_match_text(&all_rows(&db.url), &logs.written);
}

#[test]
fn shipping_through_logrotate_compress_and_copytruncate_sends_every_line_once() {
    use crate::stream::{NatsServer, ingest, ship_command};
    let Some(nats) = NatsServer::start(&[]) else {
        return;
    };
    let db = TestDb::new(Backend::Sqlite);
    let mut logs = Logs::new(&db, 5_000);
    let stream = nats.url("ROTATED");
    let ship = |logs: &Logs| {
        let output = ship_command(&[&logs.dir], &stream).output().unwrap();
        assert!(output.status.success(), "{output:?}");
    };
    logs.write("app.log", 2_000);
    ship(&logs);
    logs.write("app.log", 100);
    logs.rename("app.log", "app.log.1");
    logs.compress("app.log.1");
    logs.write("app.log", 1_000);
    ship(&logs);
    logs.write("app.log", 100);
    logs.copytruncate("app.log", "app.log.2");
    logs.write("app.log", 1_000);
    ship(&logs);
    ship(&logs);
    ingest(&db, &[&stream]);
    oracle::assert_rows_match_text(&all_rows(&db.url), &logs.written);
}
