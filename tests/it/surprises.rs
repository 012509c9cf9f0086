//! No silent surprises: what a user is told, and the exit status, when an input, a database or a
//! stream is not what the command hoped for.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use crate::oracle;
use crate::stream::{NatsServer, ship_command};

/// A file that is not text: a NUL byte early on, as in an image's header.
fn write_binary(path: &Path) {
    std::fs::write(path, b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\x01\0 tail\n").unwrap();
}

fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn ingest_of_nothing_readable_creates_no_database() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("logstats.db");
    let url = format!("sqlite://{}", database.display());
    for inputs in [vec!["nope.log"], vec!["nope.log", "missing/*.log"]] {
        let output = Command::new(binary())
            .current_dir(dir.path())
            .args(["ingest", "--database", &url])
            .args(&inputs)
            .output()
            .unwrap();
        let stderr = stderr_of(&output);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.starts_with("error: cannot read nope.log"),
            "{stderr}"
        );
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "{inputs:?} left {left:?}");
    }
    // The default database too, in the working directory.
    let output = Command::new(binary())
        .current_dir(dir.path())
        .env_remove("DATABASE_URL")
        .args(["ingest", "nope.log"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    // An empty directory is something to read (it holds nothing yet): the database is made.
    std::fs::create_dir(dir.path().join("logs")).unwrap();
    let output = Command::new(binary())
        .args(["ingest", "--database", &url])
        .arg(dir.path().join("logs"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(database.exists());
}

#[test]
fn directories_leave_out_files_that_are_not_text_with_one_note() {
    for backend in backends() {
        let db = TestDb::new(backend);
        let dir = db.dir().join("logs");
        std::fs::create_dir_all(dir.join("img")).unwrap();
        let log = generated_log(&dir, "a.log", 2_000, 31);
        write_binary(&dir.join("img/logo.png"));
        write_binary(&dir.join("core"));
        // Named on the command line, a file is read whatever it holds (its lines are rejected).
        let named = db.dir().join("named.bin");
        write_binary(&named);
        let output = ingest_command(&db.url)
            .arg(&dir)
            .arg(&named)
            .output()
            .unwrap();
        let stderr = stderr_of(&output);
        assert!(output.status.success(), "{stderr}");
        let notes: Vec<&str> = stderr.lines().filter(|l| l.contains("not text")).collect();
        assert_eq!(notes.len(), 1, "{stderr}");
        assert!(
            notes[0].starts_with("note: 2 file(s)")
                && notes[0].contains("core")
                && notes[0].contains("logo.png")
                && !notes[0].contains("named.bin"),
            "{stderr}"
        );
        assert!(stderr.contains("from 2 input(s)"), "{stderr}");
        oracle::assert_rows_match_text(&all_rows(&db.url), &std::fs::read_to_string(&log).unwrap());
    }
}

#[test]
fn following_says_what_it_follows_notes_new_binary_files_once_and_sums_up_without_a_rate() {
    let db = TestDb::new(Backend::Sqlite);
    let dir = db.dir().join("logs");
    std::fs::create_dir(&dir).unwrap();
    let log = generated_log(&dir, "a.log", 1_000, 32);
    write_binary(&dir.join("old.bin"));
    let mut follower = watched_ingest(&db.url)
        .args(["--follow", "--flush-interval", "0.05"])
        .arg(&dir)
        .spawn()
        .unwrap();
    let mut watch = CommitWatch::new(&mut follower);
    let first = watch.lines.recv_timeout(PATIENCE).unwrap();
    assert!(
        first.contains("not text") && first.contains("old.bin"),
        "{first}"
    );
    let second = watch.lines.recv_timeout(PATIENCE).unwrap();
    assert!(
        second.starts_with(&format!("following {}", dir.display()))
            && second.contains("1 file(s) now")
            && second.contains(&db.url),
        "{second}"
    );
    assert!(watch.until_commits(2, PATIENCE), "following goes on");
    write_binary(&dir.join("new.bin"));
    assert!(
        watch.until_line("new.bin", PATIENCE),
        "the new file is noted"
    );
    // Noted once: a later line added to the log commits with no second note.
    append(
        &log,
        "2024-09-15 20:51:37 cust_1 /api/v1/resource1 200 0.100\n",
    );
    let mut after = Vec::new();
    let mut text = std::fs::read_to_string(&log).unwrap();
    while eventually_matches(&db.url, &text, Duration::ZERO).is_err() {
        while let Ok(line) = watch.lines.try_recv() {
            after.push(line);
        }
        std::thread::yield_now();
        text = std::fs::read_to_string(&log).unwrap();
    }
    signal(follower.id(), "TERM");
    assert!(follower.wait().unwrap().success());
    after.extend(watch.lines.iter());
    assert!(!after.iter().any(|l| l.contains("not text")), "{after:#?}");
    let summary = after.last().unwrap();
    assert!(
        summary.starts_with("followed ")
            && summary.contains(" input(s) for ")
            && summary.contains("ingested 1001 lines (0 rejected)")
            && !summary.contains("lines/s"),
        "{summary}"
    );
}

#[test]
fn a_postgres_server_that_does_not_answer_at_once_is_said_to_be_waited_for() {
    let dir = tempfile::tempdir().unwrap();
    let log = generated_log(dir.path(), "a.log", 10, 33);
    let url = format!("postgres://ann:s3cret@127.0.0.1:{}/stats", free_port());
    let output = Command::new(binary())
        .args(["ingest", "--database", &url])
        .arg(&log)
        .output()
        .unwrap();
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let waiting: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("waiting for PostgreSQL at postgres://ann:***@127.0.0.1"))
        .collect();
    assert_eq!(waiting.len(), 1, "{stderr}");
    assert!(!stderr.contains("s3cret"), "{stderr}");
    assert!(
        stderr
            .lines()
            .last()
            .unwrap()
            .starts_with("error: connecting"),
        "{stderr}"
    );
}

#[test]
fn help_names_each_variable_and_default_plainly() {
    let output = Command::new(binary())
        .args(["ingest", "--help"])
        .env("DATABASE_URL", "postgres://ann:s3cret@db/stats")
        .env("LOGSTATS_WORKERS", "")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{help}");
    for shown in [
        "[env: LOGSTATS_WORKERS]",
        "[env: DATABASE_URL]",
        "[env: LOGSTATS_MEMORY_LIMIT]",
        "[default: 256MB]",
        "[default: sqlite://logstats.db]",
        "postgres://USER:PASSWORD@HOST:PORT/DB",
    ] {
        assert!(help.contains(shown), "{shown} in:\n{help}");
    }
    assert!(!help.contains("=]") && !help.contains("s3cret"), "{help}");
    let output = Command::new(binary())
        .args(["ship", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(
        help.contains("--give-up-after") && help.contains("[default: 30]"),
        "{help}"
    );
}

#[test]
fn a_one_shot_ship_to_a_closed_port_gives_up_saying_how_far_it_got() {
    let dir = tempfile::tempdir().unwrap();
    let log = generated_log(dir.path(), "a.log", 100, 34);
    let stream = format!("nats://127.0.0.1:{}/LOGS", free_port());
    let output = ship_command(&[&log], &stream)
        .args(["--give-up-after", "0.5"])
        .output()
        .unwrap();
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(lines[0].contains("retrying for up to 0.5 s"), "{stderr}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("shipped 0 lines")
                && l.contains("before giving up: run it again")),
        "{stderr}"
    );
    let last = lines.last().unwrap();
    assert!(
        last.starts_with("error: nats://127.0.0.1") && last.contains("gave up (--give-up-after)"),
        "{stderr}"
    );
}

#[test]
fn a_one_shot_ship_gives_up_by_default_within_a_minute() {
    let dir = tempfile::tempdir().unwrap();
    let log = generated_log(dir.path(), "a.log", 10, 35);
    let stream = format!("nats://127.0.0.1:{}/LOGS", free_port());
    let mut child = ship_command(&[&log], &stream).spawn().unwrap();
    // Not a timing assertion: only a run that never ends fails (the default is 30 s).
    let deadline = Instant::now() + Duration::from_secs(600);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("ship to a closed port still ran after 600 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status.code(), Some(1));
}

#[test]
fn ship_follow_keeps_retrying_past_the_give_up_time() {
    let Some(nats) = NatsServer::start(&[]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let log = generated_log(dir.path(), "a.log", 500, 36);
    let stream = nats.url("KEEP");
    let (port, store) = nats.stop();
    let mut child = ship_command(&[&log], &stream)
        .args(["--follow", "--interval", "0.05", "--give-up-after", "0.1"])
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let warning = stderr.next().unwrap().unwrap();
    assert!(warning.contains("retrying until it answers"), "{warning}");
    // Long past --give-up-after, it still waits (a one-shot run would have ended).
    let waiting_since = Instant::now();
    while waiting_since.elapsed() < Duration::from_secs(2) {
        assert!(child.try_wait().unwrap().is_none(), "ship --follow gave up");
        std::thread::sleep(Duration::from_millis(50));
    }
    let nats = NatsServer::on(port, store, &[]);
    let answers = stderr.next().unwrap().unwrap();
    assert!(answers.contains("answers again"), "{answers}");
    let db = TestDb::new(Backend::Sqlite);
    let text = std::fs::read_to_string(&log).unwrap();
    let deadline = Instant::now() + PATIENCE;
    loop {
        crate::stream::ingest(&db, &[&nats.url("KEEP")]);
        if eventually_matches(&db.url, &text, Duration::ZERO).is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "shipped in time");
    }
    signal(child.id(), "TERM");
    assert!(child.wait().unwrap().success());
}

#[test]
fn ship_exits_2_when_an_input_cannot_be_read_and_notes_files_that_are_not_text() {
    let Some(nats) = NatsServer::start(&[]) else {
        return;
    };
    let db = TestDb::new(Backend::Sqlite);
    let dir = db.dir().join("logs");
    std::fs::create_dir(&dir).unwrap();
    let log = generated_log(&dir, "a.log", 300, 37);
    write_binary(&dir.join("dump.bin"));
    let stream = nats.url("PART");
    let output = ship_command(&[&dir, &db.dir().join("nope.log")], &stream)
        .output()
        .unwrap();
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("warning: cannot read") && stderr.contains("nope.log"),
        "{stderr}"
    );
    let notes: Vec<&str> = stderr.lines().filter(|l| l.contains("not text")).collect();
    assert!(
        notes.len() == 1 && notes[0].contains("dump.bin"),
        "{stderr}"
    );
    assert!(
        stderr.contains("shipped 300 lines") && stderr.contains("1 input(s) could not be read"),
        "{stderr}"
    );
    crate::stream::ingest(&db, &[&stream]);
    oracle::assert_rows_match_text(&all_rows(&db.url), &std::fs::read_to_string(&log).unwrap());
    // Every input missing: nothing to do, as for ingest.
    let output = ship_command(&[&db.dir().join("nope.log")], &stream)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
}
