//! Logs through NATS JetStream, on a real server started for each test: `generate -o nats://`,
//! `ingest nats://...` (batch, follow, reruns, kill -9, two writers, a cluster), and `ship`.

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::common::*;
use crate::oracle;

/// A `nats-server` with JetStream in a directory of its own, stopped on drop.
pub(crate) struct NatsServer {
    child: Child,
    port: u16,
    store: tempfile::TempDir,
}

impl NatsServer {
    /// Starts a server on a free port; `None` when nats-server is not installed (a failure when
    /// `LOGSTATS_REQUIRE_NATS=1`, as in CI).
    pub(crate) fn start(extra: &[&str]) -> Option<NatsServer> {
        let installed = Command::new("nats-server")
            .arg("--version")
            .output()
            .is_ok();
        if !installed {
            assert!(
                std::env::var("LOGSTATS_REQUIRE_NATS").as_deref() != Ok("1"),
                "nats-server is required (LOGSTATS_REQUIRE_NATS=1) but is not installed"
            );
            return None;
        }
        let store = tempfile::tempdir().unwrap();
        Some(NatsServer::on(free_port(), store, extra))
    }

    /// Starts a server on `port` keeping its streams in `store`; returns once it is ready.
    pub(crate) fn on(port: u16, store: tempfile::TempDir, extra: &[&str]) -> NatsServer {
        let mut child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(store.path())
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting nats-server");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut seen = Vec::new();
        loop {
            let line = lines
                .next()
                .unwrap_or_else(|| panic!("nats-server ended before it was ready: {seen:#?}"));
            let line = line.unwrap();
            if line.contains("Server is ready") {
                break;
            }
            seen.push(line);
        }
        std::thread::spawn(move || for _ in lines {});
        NatsServer { child, port, store }
    }

    pub(crate) fn url(&self, stream: &str) -> String {
        format!("nats://127.0.0.1:{}/{stream}", self.port)
    }

    /// Stops the server (as a crash would) and keeps its streams for [`NatsServer::restart`].
    pub(crate) fn stop(mut self) -> (u16, tempfile::TempDir) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let store = std::mem::replace(&mut self.store, tempfile::tempdir().unwrap());
        (self.port, store)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `ingest --follow` of `streams`, once it has committed (it is following); the watch reads its
/// stderr for as long as it lives.
fn follow_streams(db: &TestDb, streams: &[&String]) -> (Child, CommitWatch) {
    let mut follower = watched_ingest(&db.url)
        .args(["--follow", "--flush-interval", "0.05"])
        .args(streams)
        .spawn()
        .unwrap();
    let mut watch = CommitWatch::new(&mut follower);
    assert!(watch.until_commits(1, PATIENCE), "the follower commits");
    (follower, watch)
}

/// Stops a follower with SIGTERM: it exits cleanly, and the database holds `want` exactly.
fn stop_follower(mut follower: Child, db: &TestDb, want: &str) {
    signal(follower.id(), "TERM");
    let status = follower.wait().unwrap();
    assert!(status.success(), "{status:?}");
    eventually_matches(&db.url, want, std::time::Duration::ZERO).expect("all of it, once");
}

/// Runs `logstats ARGS...` to the end; fails the test unless it succeeds. Returns stderr.
fn run(args: &[&str]) -> String {
    let output = Command::new(binary()).args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "logstats {args:?}: {stderr}");
    stderr
}

fn generate_to(target: &str, lines: u64, seed: u64) {
    run(&[
        "generate",
        "-o",
        target,
        "--lines",
        &lines.to_string(),
        "--seed",
        &seed.to_string(),
        "--customers",
        "30",
        "--days",
        "5",
    ]);
}

/// Publishes generated lines to `stream` and writes the same lines to `log`.
fn publish_and_write(stream: &str, log: &Path, lines: u64, seed: u64) {
    generate_to(stream, lines, seed);
    generate_to(log.to_str().unwrap(), lines, seed);
}

pub(crate) fn ingest(db: &TestDb, inputs: &[&str]) -> String {
    let mut args = vec!["ingest", "--database", &db.url];
    args.extend(inputs);
    run(&args)
}

#[test]
fn a_stream_ingests_to_the_numbers_of_its_lines_and_a_rerun_adds_nothing() {
    let Some(nats) = NatsServer::start(&[]) else {
        return;
    };
    for backend in backends() {
        let db = TestDb::new(backend);
        let log = db.dir().join("same.log");
        let stream = nats.url(&format!("S{}", backend as u8));
        publish_and_write(&stream, &log, 60_000, 5);
        let first = ingest(&db, &[&stream]);
        assert!(
            first.contains("ingested 60000 lines (0 rejected) from 1 input(s)"),
            "{first}"
        );
        oracle::assert_rows_match_text(&all_rows(&db.url), &text_of(&[&log]));
        let again = ingest(&db, &[&stream]);
        assert!(again.contains("ingested 0 lines"), "{again}");
        oracle::assert_rows_match_text(&all_rows(&db.url), &text_of(&[&log]));
    }
}

#[test]
fn streams_and_files_mix_in_one_run_with_every_worker_parsing() {
    let Some(nats) = NatsServer::start(&[]) else {
        return;
    };
    let db = TestDb::new(Backend::Sqlite);
    let streamed = db.dir().join("streamed.log");
    let stream = nats.url("MIX");
    publish_and_write(&stream, &streamed, 50_000, 6);
    let file = generated_log(db.dir(), "file.log", 20_000, 7);
    let output = Command::new(binary())
        .args(["ingest", "--workers", "3", "--database", &db.url])
        .env("LOGSTATS_UNIT_BYTES", "100000")
        .arg(&stream)
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("ingested 70000 lines (0 rejected) from 2 input(s)"),
        "{stderr}"
    );
    oracle::assert_rows_match_text(&all_rows(&db.url), &text_of(&[&streamed, &file]));
}

#[test]
fn a_stream_run_killed_at_commits_then_run_again_counts_every_message_once() {
    let Some(nats) = NatsServer::start(&[]) else {
        return;
    };
    for backend in backends() {
        let db = TestDb::new(backend);
        let log = db.dir().join("same.log");
        let stream = nats.url(&format!("K{}", backend as u8));
        // Hundreds of epochs, each committed: a run is still reading when its first commits are
        // reported, however fast the machine.
        publish_and_write(&stream, &log, 1_000_000, 8);
        let mut kills = 0;
        for attempt in 0..rounds(3, 2) {
            // The first run is killed mid-way for certain: it reads but cannot commit while
            // another program holds the write lock (the database is migrated first). The others
            // are killed after their first or second commit.
            let holder = (attempt == 0).then(|| {
                db.store();
                WriteLockHolder::take(&db)
            });
            let mut child = watched_ingest(&db.url)
                .env("LOGSTATS_UNIT_BYTES", "100000")
                .arg(&stream)
                .spawn()
                .unwrap();
            let mut watch = CommitWatch::new(&mut child);
            let reached = match holder {
                Some(_) => watch.until_line(WAITING_FOR_THE_LOCK, PATIENCE),
                None => watch.until_commits(1 + attempt % 2, PATIENCE),
            };
            if reached {
                child.kill().unwrap();
            }
            let killed = child.wait().unwrap().signal() == Some(9);
            if let Some(holder) = holder {
                holder.release();
            }
            kills += u64::from(killed);
        }
        assert!(kills > 0, "{backend:?}: the first run was killed mid-way");
        ingest(&db, &[&stream]);
        oracle::assert_rows_match_text(&all_rows(&db.url), &text_of(&[&log]));
    }
}

#[test]
fn two_ingestions_of_one_stream_at_once_count_it_once() {
    let Some(nats) = NatsServer::start(&[]) else {
        return;
    };
    for backend in backends() {
        let db = TestDb::new(backend);
        let log = db.dir().join("same.log");
        let stream = nats.url(&format!("W{}", backend as u8));
        publish_and_write(&stream, &log, 100_000, 9);
        let runs: Vec<Child> = (0..2)
            .map(|_| {
                ingest_command(&db.url)
                    .env("LOGSTATS_UNIT_BYTES", "100000")
                    .env("LOGSTATS_COMMIT_INTERVAL", "0.001")
                    .arg(&stream)
                    .spawn()
                    .unwrap()
            })
            .collect();
        for run in runs {
            // One may be refused (the other moved the stream's position first): it commits nothing.
            let output = run.wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(
                output.status.success() || stderr.contains("another"),
                "{backend:?}: {stderr}"
            );
        }
        ingest(&db, &[&stream]);
        oracle::assert_rows_match_text(&all_rows(&db.url), &text_of(&[&log]));
    }
}

#[test]
fn following_a_stream_ingests_what_is_published_while_it_runs() {
    let Some(nats) = NatsServer::start(&[]) else {
        return;
    };
    let db = TestDb::new(Backend::Sqlite);
    let stream = nats.url("F");
    let logs: Vec<PathBuf> = (0..2).map(|i| db.dir().join(format!("{i}.log"))).collect();
    publish_and_write(&stream, &logs[0], 10_000, 10);
    let (follower, _watch) = follow_streams(&db, &[&stream]);
    publish_and_write(&stream, &logs[1], 10_000, 11);
    let want = text_of(&[&logs[0], &logs[1]]);
    eventually_matches(&db.url, &want, PATIENCE).expect("what was published meanwhile is read");
    stop_follower(follower, &db, &want);
}

#[test]
fn messages_the_stream_dropped_before_they_were_read_are_reported_with_their_count() {
    let Some(nats) = NatsServer::start(&[]) else {
        return;
    };
    let db = TestDb::new(Backend::Sqlite);
    let url = nats.url("R");
    block_on(async {
        let client = async_nats::connect(format!("127.0.0.1:{}", nats.port))
            .await
            .unwrap();
        let jetstream = async_nats::jetstream::new(client);
        jetstream
            .create_stream(async_nats::jetstream::stream::Config {
                name: "R".to_string(),
                subjects: vec!["R.>".to_string()],
                max_messages: 3,
                ..Default::default()
            })
            .await
            .unwrap();
        for i in 0..5 {
            let line = format!("2024-09-0{} 10:00:00 cust_1 /x 200 0.100", i + 1);
            jetstream
                .publish("R.a", line.into())
                .await
                .unwrap()
                .await
                .unwrap();
        }
    });
    let stderr = ingest(&db, &[&url]);
    assert!(
        stderr.contains(&format!(
            "note: {url}: 2 messages (sequences 1-2) were removed from the stream"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("ingested 3 lines"), "{stderr}");
}

/// A log line of its own for message `i`: one group (customer and day) per message, so that the
/// database tells exactly which messages were ingested.
fn line_of(i: u64) -> String {
    format!("2024-09-{:02} 10:00:00 cust_{i} /x 200 0.100", 1 + i % 28)
}

/// The text of the lines of messages `sequences`.
fn lines_of(sequences: impl IntoIterator<Item = u64>) -> String {
    sequences.into_iter().map(|i| line_of(i) + "\n").collect()
}

/// Makes the stream `config.name`, taking `NAME.>`, and publishes message i (from 1) to subject
/// `NAME.{subjects[i - 1]}` with [`line_of`]`(i)` as its payload; each is stored at sequence i.
fn publish_lines(
    nats: &NatsServer,
    config: async_nats::jetstream::stream::Config,
    subjects: &[&str],
) {
    let jetstream = jetstream_of(nats);
    block_on(async {
        let name = config.name.clone();
        jetstream
            .get_or_create_stream(async_nats::jetstream::stream::Config {
                subjects: vec![format!("{name}.>")],
                ..config
            })
            .await
            .unwrap();
        let mut stream = jetstream.get_stream(&name).await.unwrap();
        let first = stream.info().await.unwrap().state.last_sequence + 1;
        for (i, subject) in (first..).zip(subjects) {
            let ack = jetstream
                .publish(format!("{name}.{subject}"), line_of(i).into())
                .await
                .unwrap()
                .await
                .unwrap();
            assert_eq!(ack.sequence, i);
        }
    });
}

/// Deletes messages `sequences` of `stream`.
fn delete_messages(nats: &NatsServer, stream: &str, sequences: &[u64]) {
    let jetstream = jetstream_of(nats);
    block_on(async {
        let stream = jetstream.get_stream(stream).await.unwrap();
        for &sequence in sequences {
            assert!(stream.delete_message(sequence).await.unwrap());
        }
    });
}

fn jetstream_of(nats: &NatsServer) -> async_nats::jetstream::Context {
    block_on(async {
        let client = async_nats::connect(format!("127.0.0.1:{}", nats.port))
            .await
            .unwrap();
        async_nats::jetstream::new(client)
    })
}

/// What `ingest` said of messages the stream lost: the notes that say so.
fn lost_notes(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.contains("removed from the stream"))
        .collect()
}

#[test]
fn a_limit_per_subject_reports_every_message_it_dropped_with_its_sequences() {
    let Some(nats) = NatsServer::start(&[]) else {
        return;
    };
    for backend in backends() {
        let db = TestDb::new(backend);
        let name = format!("PER{}", backend as u8);
        let url = nats.url(&name);
        // One message kept per subject, of 9 subjects: 1-83 go round them all; from 84 on, each
        // subject but the first gets two messages in a row, the first of which its second drops.
        // 91 are dropped: 1-83 at the stream's head, and 85, 87, ..., 99 between the 9 kept.
        let subjects: Vec<String> = (1..=100u64)
            .map(|i| match i {
                ..=83 => format!("s{}", i % 9),
                _ => format!("s{}", (i - 83) / 2),
            })
            .collect();
        let subjects: Vec<&str> = subjects.iter().map(String::as_str).collect();
        publish_lines(
            &nats,
            async_nats::jetstream::stream::Config {
                name: name.clone(),
                max_messages_per_subject: 1,
                ..Default::default()
            },
            &subjects,
        );
        let stderr = ingest(&db, &[&url]);
        assert_eq!(
            lost_notes(&stderr),
            [format!(
                "note: {url}: 91 messages (sequences 1-83, 85, 87, 89, 91, 93, 95, 97, 99) were \
                 removed from the stream (by its limits or deleted) before they were read: never \
                 ingested"
            )],
            "{stderr}"
        );
        assert!(stderr.contains("ingested 9 lines (0 rejected)"), "{stderr}");
        let kept = [84, 86, 88, 90, 92, 94, 96, 98, 100];
        oracle::assert_rows_match_text(&all_rows(&db.url), &lines_of(kept));
        let again = ingest(&db, &[&url]);
        assert!(lost_notes(&again).is_empty(), "{again}");
        assert!(again.contains("ingested 0 lines"), "{again}");
    }
}

#[test]
fn messages_deleted_inside_a_stream_before_it_was_read_are_reported_and_the_rest_stored() {
    let Some(nats) = NatsServer::start(&[]) else {
        return;
    };
    use async_nats::jetstream::stream::StorageType;
    for backend in backends() {
        for storage in [StorageType::File, StorageType::Memory] {
            let db = TestDb::new(backend);
            let name = format!("DEL{}{}", backend as u8, storage as u8);
            let url = nats.url(&name);
            let config = async_nats::jetstream::stream::Config {
                name: name.clone(),
                storage,
                ..Default::default()
            };
            publish_lines(&nats, config, &["a"; 20]);
            // The last one too: the stream's last sequence stays 20 without its message.
            delete_messages(&nats, &name, &[5, 11, 20]);
            let stderr = ingest(&db, &[&url]);
            assert_eq!(
                lost_notes(&stderr),
                [format!(
                    "note: {url}: 3 messages (sequences 5, 11, 20) were removed from the stream \
                     (by its limits or deleted) before they were read: never ingested"
                )],
                "{backend:?} {storage:?}: {stderr}"
            );
            assert!(stderr.contains("ingested 17 lines"), "{stderr}");
            let stored = (1..=20).filter(|i| ![5, 11, 20].contains(i));
            oracle::assert_rows_match_text(&all_rows(&db.url), &lines_of(stored));
            // The position moved past the last hole: nothing is said twice.
            let again = ingest(&db, &[&url]);
            assert!(
                lost_notes(&again).is_empty(),
                "{backend:?} {storage:?}: {again}"
            );
        }
    }
}

#[test]
fn only_messages_lost_after_the_stored_position_are_reported_run_after_run() {
    let Some(nats) = NatsServer::start(&[]) else {
        return;
    };
    for backend in backends() {
        let db = TestDb::new(backend);
        let name = format!("RUNS{}", backend as u8);
        let url = nats.url(&name);
        let config = || async_nats::jetstream::stream::Config {
            name: name.clone(),
            ..Default::default()
        };
        publish_lines(&nats, config(), &["a"; 10]);
        let first = ingest(&db, &[&url]);
        assert!(first.contains("ingested 10 lines"), "{first}");
        assert!(lost_notes(&first).is_empty(), "{first}");
        // 3 was read already; 12, 20, 25 and the last one, 30, were not.
        publish_lines(&nats, config(), &["a"; 20]);
        delete_messages(&nats, &name, &[3, 12, 20, 25, 30]);
        let second = ingest(&db, &[&url]);
        assert_eq!(
            lost_notes(&second),
            [format!(
                "note: {url}: 4 messages (sequences 12, 20, 25, 30) were removed from the stream \
                 (by its limits or deleted) before they were read: never ingested"
            )],
            "{second}"
        );
        assert!(second.contains("ingested 16 lines"), "{second}");
        let third = ingest(&db, &[&url]);
        assert!(lost_notes(&third).is_empty(), "{third}");
        // The next ones: one of them deleted.
        publish_lines(&nats, config(), &["a"; 3]);
        delete_messages(&nats, &name, &[32]);
        let fourth = ingest(&db, &[&url]);
        assert_eq!(
            lost_notes(&fourth),
            [format!(
                "note: {url}: 1 message (sequence 32) was removed from the stream (by its limits \
                 or deleted) before it was read: never ingested"
            )],
            "{fourth}"
        );
        let stored = (1..=33).filter(|i| ![12, 20, 25, 30, 32].contains(i));
        oracle::assert_rows_match_text(&all_rows(&db.url), &lines_of(stored));
    }
}

#[test]
fn with_a_subject_filter_lost_messages_are_an_upper_bound_said_once() {
    let Some(nats) = NatsServer::start(&[]) else {
        return;
    };
    let db = TestDb::new(Backend::Sqlite);
    let name = "FILTERED";
    let url = format!("{}?subject={name}.a", nats.url(name));
    let config = async_nats::jetstream::stream::Config {
        name: name.to_string(),
        ..Default::default()
    };
    // a and b in turn: a has the odd sequences. 3 and 7 of a, 4 and 10 of b are deleted; the
    // stream cannot say which subject a deleted message had.
    publish_lines(&nats, config, &["a", "b"].repeat(5));
    delete_messages(&nats, name, &[3, 4, 7, 10]);
    let stderr = ingest(&db, &[&url]);
    assert_eq!(
        lost_notes(&stderr),
        [format!(
            "note: {url}: 4 messages (sequences 3-4, 7, 10) were removed from the stream (by its \
             limits or deleted) before they were read: up to that many of them of its subject"
        )],
        "{stderr}"
    );
    assert!(stderr.contains("ingested 3 lines"), "{stderr}");
    oracle::assert_rows_match_text(&all_rows(&db.url), &lines_of([1, 5, 9]));
    // Past the last message of its subject, the holes were said already.
    let again = ingest(&db, &[&url]);
    assert!(lost_notes(&again).is_empty(), "{again}");
}

#[test]
fn credentials_in_a_stream_url_never_appear_in_output() {
    let Some(nats) = NatsServer::start(&["--user", "ann", "--pass", "s3cret"]) else {
        return;
    };
    let db = TestDb::new(Backend::Sqlite);
    let with_password = format!("nats://ann:s3cret@127.0.0.1:{}/C", nats.port);
    generate_to(&with_password, 1_000, 12);
    let output = Command::new(binary())
        .args(["ingest", "--json", "--database", &db.url, &with_password])
        .output()
        .unwrap();
    let everything = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{everything}");
    assert!(everything.contains("ingested 1000 lines"), "{everything}");
    assert!(!everything.contains("s3cret"), "{everything}");
    let wrong = format!("nats://ann:wrong-s3cret@127.0.0.1:{}/C", nats.port);
    let refused = Command::new(binary())
        .args(["ingest", "--database", &db.url, &wrong])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(!stderr.contains("s3cret"), "{stderr}");
    assert!(
        stderr.contains(&format!("127.0.0.1:{}", nats.port)),
        "{stderr}"
    );
}

#[test]
fn a_two_process_cluster_reading_a_stream_gives_the_numbers_of_one_process() {
    let Some(nats) = NatsServer::start(&[]) else {
        return;
    };
    let db = TestDb::new(Backend::Sqlite);
    let log = db.dir().join("same.log");
    let stream = nats.url("CL");
    publish_and_write(&stream, &log, 80_000, 13);
    let hostfile = two_process_hostfile(db.dir());
    let processes: Vec<Child> = (0..2)
        .map(|id| {
            ingest_command(&db.url)
                .env("LOGSTATS_UNIT_BYTES", "100000")
                .args(["--workers", "2", "--processes", "2", "--process-id"])
                .arg(id.to_string())
                .arg("--hostfile")
                .arg(&hostfile)
                .arg(&stream)
                .spawn()
                .unwrap()
        })
        .collect();
    for process in processes {
        let output = process.wait_with_output().unwrap();
        assert!(output.status.success(), "{output:?}");
    }
    oracle::assert_rows_match_text(&all_rows(&db.url), &text_of(&[&log]));
}

/// `logstats ship ARGS... STREAM` with a fixed host name.
pub(crate) fn ship_command(paths: &[&Path], stream: &str) -> Command {
    let mut command = Command::new(binary());
    command
        .args(["ship", "--host", "web1"])
        .args(paths)
        .arg(stream)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

#[test]
fn shipped_files_arrive_exactly_once_through_reruns_appends_rotation_and_a_kill() {
    let Some(nats) = NatsServer::start(&[]) else {
        return;
    };
    let db = TestDb::new(Backend::Sqlite);
    let dir = db.dir().join("logs");
    std::fs::create_dir(&dir).unwrap();
    let stream = nats.url("SHIP");
    let all = generated_log(db.dir(), "all.log", 120_000, 14);
    let text = std::fs::read_to_string(&all).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let live = dir.join("access.log");
    // A first part, with a last line still being written.
    let cut = 40_000;
    let mut first = lines[..cut].join("\n");
    first.push('\n');
    first.push_str(&lines[cut][..10]);
    std::fs::write(&live, &first).unwrap();
    // An older, compressed log beside it.
    let old_text = std::fs::read_to_string(generated_log(db.dir(), "old.log", 5_000, 19)).unwrap();
    let mut gzip = flate2::write::GzEncoder::new(
        std::fs::File::create(dir.join("access.log.2.gz")).unwrap(),
        flate2::Compression::fast(),
    );
    std::io::Write::write_all(&mut gzip, old_text.as_bytes()).unwrap();
    gzip.finish().unwrap();
    let shipped = ship_command(&[&dir], &stream).output().unwrap();
    let stderr = String::from_utf8_lossy(&shipped.stderr);
    assert!(shipped.status.success(), "{stderr}");
    assert!(stderr.contains("shipped 45000 lines"), "{stderr}");
    assert!(stderr.contains("without a newline"), "{stderr}");
    // The rest of that line and more; then the file is rotated and a new one started.
    let mut rest = lines[cut][10..].to_string();
    rest.push('\n');
    rest.push_str(&lines[cut + 1..80_000].join("\n"));
    rest.push('\n');
    append(&live, &rest);
    // A kill -9 once part of it is in the stream, then a rerun.
    let mut child = ship_command(&[&dir], &stream).spawn().unwrap();
    let stream_before = message_count(&nats, "SHIP");
    while message_count(&nats, "SHIP") == stream_before && child.try_wait().unwrap().is_none() {
        std::thread::yield_now();
    }
    let _ = child.kill();
    child.wait().unwrap();
    std::fs::rename(&live, dir.join("access.log.1")).unwrap();
    let mut newer = lines[80_000..].join("\n");
    newer.push('\n');
    std::fs::write(&live, newer).unwrap();
    let rerun = ship_command(&[&dir], &stream).output().unwrap();
    assert!(rerun.status.success(), "{rerun:?}");
    // Nothing left to ship: a rerun publishes nothing.
    let idle = ship_command(&[&dir], &stream).output().unwrap();
    let idle = String::from_utf8_lossy(&idle.stderr);
    assert!(idle.contains("shipped 0 lines"), "{idle}");
    ingest(&db, &[&stream]);
    oracle::assert_rows_match_text(&all_rows(&db.url), &format!("{text}{old_text}"));
}

#[test]
fn ship_waits_for_a_server_that_is_down_and_loses_nothing() {
    let Some(nats) = NatsServer::start(&[]) else {
        return;
    };
    let db = TestDb::new(Backend::Sqlite);
    let log = generated_log(db.dir(), "a.log", 30_000, 15);
    let stream = nats.url("DOWN");
    let (port, store) = nats.stop();
    let mut child = ship_command(&[&log], &stream).spawn().unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let warning = stderr.next().unwrap().unwrap();
    assert!(
        warning.contains("retrying for up to 30 s") && warning.contains(&port.to_string()),
        "{warning}"
    );
    let nats = NatsServer::on(port, store, &[]);
    let rest: Vec<String> = stderr.map_while(Result::ok).collect();
    assert!(child.wait().unwrap().success(), "{rest:?}");
    assert!(
        rest.iter().any(|l| l.contains("shipped 30000 lines")),
        "{rest:?}"
    );
    ingest(&db, &[&nats.url("DOWN")]);
    oracle::assert_rows_match_text(&all_rows(&db.url), &std::fs::read_to_string(&log).unwrap());
}

/// Messages the stream holds now.
fn message_count(nats: &NatsServer, stream: &str) -> u64 {
    block_on(async {
        let client = async_nats::connect(format!("127.0.0.1:{}", nats.port))
            .await
            .unwrap();
        let jetstream = async_nats::jetstream::new(client);
        match jetstream.get_stream(stream).await {
            Ok(mut stream) => stream.info().await.unwrap().state.messages,
            Err(_) => 0,
        }
    })
}

#[test]
fn shipping_in_follow_mode_sends_appends_rotations_and_new_files_as_they_come() {
    let Some(nats) = NatsServer::start(&[]) else {
        return;
    };
    let db = TestDb::new(Backend::Sqlite);
    let dir = db.dir().join("logs");
    std::fs::create_dir(&dir).unwrap();
    let stream = nats.url("FOLLOW");
    let text = std::fs::read_to_string(generated_log(db.dir(), "all.log", 4_000, 16)).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let chunk = |range: std::ops::Range<usize>| -> String {
        lines[range].iter().map(|l| format!("{l}\n")).collect()
    };
    let live = dir.join("access.log");
    append(&live, &chunk(0..1000));
    let shipper = ship_command(&[&dir], &stream)
        .args(["--follow", "--interval", "0.05"])
        .spawn()
        .unwrap();
    let mut seen = chunk(0..1000);
    let shipped_up_to = |seen: &str| {
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            ingest(&db, &[&stream]);
            if eventually_matches(&db.url, seen, std::time::Duration::ZERO).is_ok() {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "shipped in time");
        }
    };
    shipped_up_to(&seen);
    // An append with a partial last line, then its rest.
    let next = chunk(1000..2000);
    append(&live, &next[..next.len() - 5]);
    append(&live, &next[next.len() - 5..]);
    seen.push_str(&next);
    shipped_up_to(&seen);
    // Rotation: the old file gets more lines after its rename, a new one starts.
    std::fs::rename(&live, dir.join("access.log.1")).unwrap();
    append(&dir.join("access.log.1"), &chunk(2000..2500));
    append(&live, &chunk(2500..3000));
    seen.push_str(&chunk(2000..3000));
    shipped_up_to(&seen);
    // Truncation (copytruncate): the file is shipped again from its start.
    std::fs::write(dir.join("access.log.1"), chunk(3000..4000)).unwrap();
    seen.push_str(&chunk(3000..4000));
    shipped_up_to(&seen);
    signal(shipper.id(), "TERM");
    let output = shipper.wait_with_output().unwrap();
    assert!(output.status.success(), "{output:?}");
}

#[test]
fn following_a_stream_rides_out_a_server_restart() {
    let Some(nats) = NatsServer::start(&[]) else {
        return;
    };
    let db = TestDb::new(Backend::Sqlite);
    let stream = nats.url("RESTART");
    let logs: Vec<PathBuf> = (0..2).map(|i| db.dir().join(format!("{i}.log"))).collect();
    publish_and_write(&stream, &logs[0], 5_000, 17);
    let (follower, _watch) = follow_streams(&db, &[&stream]);
    eventually_matches(&db.url, &text_of(&[&logs[0]]), PATIENCE).expect("the backlog");
    let (port, store) = nats.stop();
    let nats = NatsServer::on(port, store, &[]);
    publish_and_write(&nats.url("RESTART"), &logs[1], 5_000, 18);
    let want = text_of(&[&logs[0], &logs[1]]);
    eventually_matches(&db.url, &want, PATIENCE).expect("what came after the restart");
    stop_follower(follower, &db, &want);
}

#[test]
fn two_shippers_of_one_growing_file_ship_every_line_once() {
    let Some(nats) = NatsServer::start(&[]) else {
        return;
    };
    let db = TestDb::new(Backend::Sqlite);
    let text = std::fs::read_to_string(generated_log(db.dir(), "all.log", 60_000, 20)).unwrap();
    let live = db.dir().join("app.log");
    std::fs::write(&live, "").unwrap();
    let stream = nats.url("TWO");
    // Both ship as the file grows in uneven cuts (partial lines included), so their messages
    // start and end at different places.
    let shippers: Vec<Child> = (0..2)
        .map(|_| {
            ship_command(&[&live], &stream)
                .args(["--follow", "--interval", "0.01"])
                .spawn()
                .unwrap()
        })
        .collect();
    let bytes = text.as_bytes();
    let mut written = 0;
    for cut in 1..=40 {
        let until = (bytes.len() * cut / 40 + cut * 7).min(bytes.len());
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&live)
            .unwrap();
        std::io::Write::write_all(&mut file, &bytes[written..until]).unwrap();
        written = until;
        std::thread::yield_now();
    }
    wait_until_ingested(&db, &stream, &text);
    for shipper in shippers {
        signal(shipper.id(), "TERM");
        let output = shipper.wait_with_output().unwrap();
        assert!(output.status.success(), "{output:?}");
    }
    // Nothing more came after the database held every line once.
    ingest(&db, &[&stream]);
    oracle::assert_rows_match_text(&all_rows(&db.url), &text);
}

#[test]
fn shipping_in_follow_mode_drains_a_file_moved_out_of_its_directory() {
    let Some(nats) = NatsServer::start(&[]) else {
        return;
    };
    let db = TestDb::new(Backend::Sqlite);
    let dir = db.dir().join("logs");
    let archive = db.dir().join("archive");
    std::fs::create_dir(&dir).unwrap();
    std::fs::create_dir(&archive).unwrap();
    let stream = nats.url("MOVED");
    let text = std::fs::read_to_string(generated_log(db.dir(), "all.log", 3_000, 21)).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let chunk = |range: std::ops::Range<usize>| -> String {
        lines[range].iter().map(|l| format!("{l}\n")).collect()
    };
    let live = dir.join("app.log");
    append(&live, &chunk(0..1000));
    let mut shipper = ship_command(&[&live], &stream)
        .args(["--follow", "--interval", "0.05"])
        .spawn()
        .unwrap();
    let mut watch = BufReader::new(shipper.stderr.take().unwrap()).lines();
    wait_until_ingested(&db, &stream, &chunk(0..1000));
    // Lines written just before the file is moved away, then a new file at the name.
    append(&live, &chunk(1000..2000));
    std::fs::rename(&live, archive.join("app.log")).unwrap();
    append(&live, &chunk(2000..3000));
    wait_until_ingested(&db, &stream, &text);
    signal(shipper.id(), "TERM");
    assert!(shipper.wait().unwrap().success());
    let said: Vec<String> = watch.by_ref().map_while(Result::ok).collect();
    assert!(said.iter().any(|l| l.starts_with("shipped")), "{said:?}");
}

/// Ingests `stream` again and again until the database holds `text`'s numbers.
fn wait_until_ingested(db: &TestDb, stream: &str, text: &str) {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        ingest(db, &[stream]);
        if eventually_matches(&db.url, text, std::time::Duration::ZERO).is_ok() {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "shipped in time");
    }
}

#[test]
fn a_stream_made_anew_under_its_name_is_read_from_its_start() {
    let Some(nats) = NatsServer::start(&[]) else {
        return;
    };
    let db = TestDb::new(Backend::Sqlite);
    let stream = nats.url("ANEW");
    let logs: Vec<PathBuf> = (0..2).map(|i| db.dir().join(format!("{i}.log"))).collect();
    publish_and_write(&stream, &logs[0], 20_000, 22);
    ingest(&db, &[&stream]);
    block_on(async {
        let client = async_nats::connect(format!("127.0.0.1:{}", nats.port))
            .await
            .unwrap();
        let jetstream = async_nats::jetstream::new(client);
        jetstream.delete_stream("ANEW").await.unwrap();
    });
    // More messages than before, so that only the stream's creation time tells it apart.
    publish_and_write(&stream, &logs[1], 30_000, 23);
    let stderr = ingest(&db, &[&stream]);
    assert!(
        stderr.contains(&format!("note: {stream}: the stream was made anew")),
        "{stderr}"
    );
    assert!(stderr.contains("ingested 30000 lines"), "{stderr}");
    oracle::assert_rows_match_text(&all_rows(&db.url), &text_of(&[&logs[0], &logs[1]]));
}

#[test]
fn a_stream_that_cannot_be_read_is_reported_and_the_other_inputs_are_committed() {
    let Some(nats) = NatsServer::start(&[]) else {
        return;
    };
    let db = TestDb::new(Backend::Sqlite);
    let log = generated_log(db.dir(), "a.log", 1_000, 24);
    let missing = nats.url("NO_SUCH_STREAM");
    let down = format!("nats://127.0.0.1:{}/X", free_port());
    let output = Command::new(binary())
        .args(["ingest", "--database", &db.url])
        .arg(&log)
        .args([&missing, &down])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&format!("warning: {missing}")), "{stderr}");
    assert!(
        stderr.contains(&format!("warning: {down}: cannot reach NATS at")),
        "{stderr}"
    );
    oracle::assert_rows_match_text(&all_rows(&db.url), &std::fs::read_to_string(&log).unwrap());
}

#[test]
fn a_password_is_never_echoed_even_when_the_url_around_it_is_malformed() {
    for url in [
        "nats://alice:1234/5678@127.0.0.1:4222/AUTH",
        "nats://alice:1234?5678@127.0.0.1:4222/AUTH",
        "nats://alice:12#34@127.0.0.1:4222/AUTH",
        "nats://alice:pw1234@127.0.0.1:4222/A.B",
    ] {
        for args in [
            vec!["ingest", "--database", "sqlite::memory:", url],
            vec!["ship", "/dev/null", url],
            vec!["generate", "-o", url],
        ] {
            let output = Command::new(binary()).args(&args).output().unwrap();
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(!output.status.success(), "{args:?}");
            assert!(
                !stderr.contains("1234") && !stderr.contains("34@"),
                "{args:?}: {stderr}"
            );
        }
    }
}

#[test]
fn a_publish_expecting_another_last_message_of_its_subject_is_refused() {
    let Some(nats) = NatsServer::start(&[]) else {
        return;
    };
    use logstats::nats::{Conflict, Connection, StreamUrl};
    let url = StreamUrl::parse(&nats.url("EXPECT")).unwrap();
    let connection = Connection::open(&url).unwrap();
    connection.create_stream().unwrap();
    let subject = url.subject_for("host.1_2");
    let publish = |id: &str, after: u64| {
        connection
            .publish(&subject, Some(id), Some(after), &[], b"line".to_vec())
            .map(|(sequence, _)| sequence)
    };
    // Two shippers that both saw the subject empty: only the first one writes.
    let first = publish("a", 0).expect("the subject was empty");
    let second = publish("b", 0).unwrap_err();
    assert!(second.is::<Conflict>(), "{second:#}");
    // The loser reads where the subject stands and goes on from there.
    let last = connection.last_message(&subject).unwrap().unwrap();
    assert_eq!(last.sequence, first);
    assert!(publish("b", last.sequence).unwrap() > first);
}

#[test]
fn following_streams_one_of_which_cannot_be_read_yet_reads_the_others_meanwhile() {
    let Some(nats) = NatsServer::start(&[]) else {
        return;
    };
    let db = TestDb::new(Backend::Sqlite);
    let (good, late) = (nats.url("GOOD"), nats.url("LATE"));
    let logs: Vec<PathBuf> = (0..3).map(|i| db.dir().join(format!("{i}.log"))).collect();
    publish_and_write(&good, &logs[0], 2_000, 25);
    let (follower, _watch) = follow_streams(&db, &[&good, &late]);
    eventually_matches(&db.url, &text_of(&[&logs[0]]), PATIENCE)
        .expect("the stream that exists is read while the other is missing");
    publish_and_write(&late, &logs[1], 1_000, 26);
    publish_and_write(&good, &logs[2], 500, 27);
    let all = text_of(&[&logs[0], &logs[1], &logs[2]]);
    eventually_matches(&db.url, &all, PATIENCE).expect("the late stream, once it exists");
    stop_follower(follower, &db, &all);
}

#[test]
fn a_stream_whose_server_dies_mid_read_is_reported_and_the_rest_committed() {
    let Some(nats) = NatsServer::start(&[]) else {
        return;
    };
    let db = TestDb::new(Backend::Sqlite);
    let big = nats.url("BIG");
    let big_log = db.dir().join("big.log");
    // Hundreds of epochs, each committed: the run is still reading when its server dies.
    publish_and_write(&big, &big_log, 1_000_000, 28);
    let file = generated_log(db.dir(), "file.log", 5_000, 29);
    let mut child = watched_ingest(&db.url)
        .env("LOGSTATS_UNIT_BYTES", "100000")
        .arg(&big)
        .arg(&file)
        .spawn()
        .unwrap();
    let mut watch = CommitWatch::new(&mut child);
    assert!(watch.until_commits(1, PATIENCE));
    let (port, store) = nats.stop();
    // Its stderr ends when it does (it must, and not hang on the lost server).
    let mut said = Vec::new();
    loop {
        match watch.lines.recv_timeout(PATIENCE) {
            Ok(line) => said.push(line),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("the run hangs: {said:#?}"),
        }
    }
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(2), "not everything could be read");
    assert!(
        said.iter()
            .any(|l| l.starts_with(&format!("warning: cannot read {big} completely"))),
        "{said:#?}"
    );
    // Once the server is back, a rerun reads the rest: every line once.
    let nats = NatsServer::on(port, store, &[]);
    ingest(&db, &[&nats.url("BIG"), file.to_str().unwrap()]);
    oracle::assert_rows_match_text(&all_rows(&db.url), &text_of(&[&big_log, &file]));
}

#[test]
fn ship_fails_when_the_server_refuses_its_publishes() {
    let config = tempfile::tempdir().unwrap();
    let conf = config.path().join("nats.conf");
    std::fs::write(
        &conf,
        r#"authorization { users = [ { user: "u3", password: "p3", permissions: {
             publish: { allow: ["$JS.API.>"] }, subscribe: { allow: ["_INBOX.>"] } } } ] }"#,
    )
    .unwrap();
    let Some(nats) = NatsServer::start(&["-c", conf.to_str().unwrap()]) else {
        return;
    };
    let db = TestDb::new(Backend::Sqlite);
    let log = generated_log(db.dir(), "a.log", 100, 30);
    let url = format!("nats://u3:p3@127.0.0.1:{}/PV", nats.port);
    let shipper = ship_command(&[&log], &url).spawn().unwrap();
    let (done, ended) = std::sync::mpsc::channel();
    std::thread::spawn(move || done.send(shipper.wait_with_output().unwrap()));
    let output = ended
        .recv_timeout(PATIENCE)
        .expect("ship gives up instead of retrying forever");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("Permissions Violation"), "{stderr}");
    assert!(!stderr.contains("p3@"), "{stderr}");
}
