//! Real processes at the same time on one database: two writers, a reader during writes,
//! PostgreSQL going away under a running server (through a relay the test cuts and restores), and
//! commands given a database they cannot use.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::*;

/// Rounds of the two-writer race per backend.
const ROUNDS: u64 = 20;
/// Lines per writer's file: with [`UNIT_BYTES`], about 22 epochs per process, committed in a dozen or
/// more commits (a commit takes every epoch that finished while the last one was written).
const WRITER_LINES: u64 = 12_000;
/// Bytes per unit of work (an epoch reads one unit per worker) and seconds between commits: small,
/// so that every ingestion commits many times.
const UNIT_BYTES: &str = "15000";
const COMMIT_INTERVAL: &str = "0.001";

/// `logstats ingest --json` of one file, with small units so that it commits many times.
fn spawn_ingest(url: &str, log: &Path) -> Child {
    Command::new(binary())
        .args(["ingest", "--json", "--workers", "2", "--database", url])
        .arg(log)
        .env("LOGSTATS_UNIT_BYTES", UNIT_BYTES)
        .env("LOGSTATS_COMMIT_INTERVAL", COMMIT_INTERVAL)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting logstats ingest")
}

/// Waits for an ingestion and returns its JSON report; fails the test with its stderr otherwise.
fn finished(child: Child, what: &str) -> Value {
    let output = child
        .wait_with_output()
        .expect("waiting for logstats ingest");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{what} failed: {stderr}");
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{what}: {e}: {stderr}"))
}

fn assert_same_rows(got: &[Value], want: &[Value], context: &str) {
    for (got, want) in got.iter().zip(want) {
        assert_eq!(got, want, "{context}: first differing row");
    }
    assert_eq!(got.len(), want.len(), "{context}: row count");
}

#[test]
fn two_ingest_processes_started_together_on_files_sharing_days_lose_nothing() {
    let logs = tempfile::tempdir().unwrap();
    // Same 20 customers and 10 days in both: every commit of one merges into the other's days.
    let a = generated_log(logs.path(), "a.log", WRITER_LINES, 1);
    let b = generated_log(logs.path(), "b.log", WRITER_LINES, 2);
    for backend in backends() {
        let reference = TestDb::new(backend);
        ingest_paths(&reference.url, &[&a], 2);
        ingest_paths(&reference.url, &[&b], 2);
        let want = all_rows(&reference.url);
        let total: u64 = want
            .iter()
            .map(|row| row["total_requests"].as_u64().unwrap())
            .sum();
        assert_eq!(total, 2 * WRITER_LINES, "{backend:?}: the reference");
        for round in 0..rounds(ROUNDS, 4) {
            // A fresh, unmigrated database: the two processes also race to create the schema.
            let db = TestDb::new(backend);
            let first = spawn_ingest(&db.url, &a);
            let second = spawn_ingest(&db.url, &b);
            let context = format!("{backend:?}, round {round}");
            for report in [
                finished(first, &format!("{context}, a.log")),
                finished(second, &format!("{context}, b.log")),
            ] {
                assert_eq!(report["lines"], WRITER_LINES, "{context}");
                assert!(report["commits"].as_u64() > Some(5), "{context}: {report}");
            }
            assert_same_rows(&all_rows(&db.url), &want, &context);
        }
    }
}

/// Asserts that a stored day (or a range summary) is internally consistent: one whole row.
fn assert_whole(row: &Value, context: &str) {
    let n = |field: &str| {
        row[field]
            .as_u64()
            .unwrap_or_else(|| panic!("{context}: {field} in {row}"))
    };
    let f = |field: &str| {
        row[field]
            .as_f64()
            .unwrap_or_else(|| panic!("{context}: {field} in {row}"))
    };
    let total = n("total_requests");
    assert!(total > 0, "{context}: {row}");
    assert_eq!(
        n("success_requests") + n("failed_requests"),
        total,
        "{context}: {row}"
    );
    let classes: u64 = (1..=5).map(|c| n(&format!("status_{c}xx"))).sum();
    assert_eq!(classes, total, "{context}: {row}");
    assert_eq!(n("status_2xx"), n("success_requests"), "{context}: {row}");
    let availability = 100.0 * (total - n("status_5xx")) as f64 / total as f64;
    assert!(
        (f("availability_percentage") - availability).abs() <= 1e-9 * availability.max(1.0),
        "{context}: {row}"
    );
    let percentiles = [
        "duration_p50",
        "duration_p90",
        "duration_p95",
        "duration_p99",
        "duration_max",
    ]
    .map(f);
    assert!(
        percentiles.windows(2).all(|w| w[0] <= w[1]),
        "{context}: {row}"
    );
    assert!(f("duration_mean") <= f("duration_max"), "{context}: {row}");
    assert!(
        (0.0..=100.0).contains(&f("uptime_percentage")),
        "{context}: {row}"
    );
}

/// GETs `path` and parses the JSON answer, which must be 200.
fn get_json(server: &Server, path: &str, context: &str) -> Value {
    let (status, body) = server.get(path);
    assert_eq!(status, 200, "{context}: GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{context}: GET {path}: {e}: {body}"))
}

#[test]
fn the_api_keeps_answering_while_an_ingestion_commits() {
    const LINES: u64 = 40_000;
    for backend in backends() {
        let db = TestDb::new(backend);
        let log = generated_log(db.dir(), "api.log", LINES, 3);
        // The database exists before the server starts (`serve` creates none).
        block_on(db.store().close());
        let server = Server::start(&db.url, &[]);
        let from = first_generated_day();
        let ingestion = spawn_ingest(&db.url, &log);
        let pid = ingestion.id();
        let ingestion = std::thread::spawn(move || finished(ingestion, "the ingestion"));
        // Request counts seen so far only grow: each answer is a committed state, never a torn one.
        let mut seen: BTreeMap<String, u64> = BTreeMap::new();
        let mut intermediate_totals = Vec::new();
        let mut rounds = 0;
        loop {
            let done = ingestion.is_finished();
            let context = format!("{backend:?}, ingest {pid}, round {rounds}");
            let customers = get_json(&server, "/customers", &context);
            let mut total = 0;
            for customer in customers.as_array().unwrap() {
                let id = customer["customer_id"].as_str().unwrap().to_string();
                let requests = customer["total_requests"].as_u64().unwrap();
                let before = seen.insert(id.clone(), requests).unwrap_or(0);
                assert!(
                    before <= requests,
                    "{context}: {id} went from {before} to {requests}"
                );
                total += requests;
            }
            if 0 < total && total < LINES {
                intermediate_totals.push(total);
            }
            // Days and summaries may come from the API's answer cache (up to its TTL old), so
            // they are compared with their own earlier answers only.
            let days = get_json(
                &server,
                &format!("/customers/cust_1/stats?from={from}"),
                &context,
            );
            for day in days.as_array().unwrap() {
                assert_whole(day, &context);
                let key = format!("cust_1 {}", day["date"]);
                let requests = day["total_requests"].as_u64().unwrap();
                let before = seen.insert(key.clone(), requests).unwrap_or(0);
                assert!(
                    before <= requests,
                    "{context}: {key} went from {before} to {requests}"
                );
            }
            let summary = get_json(
                &server,
                &format!("/customers/cust_1/stats/summary?from={from}"),
                &context,
            );
            if let Some(requests) = summary["total_requests"].as_u64().filter(|&n| n > 0) {
                assert_whole(&summary, &context);
                let before = seen
                    .insert("cust_1 summary".to_string(), requests)
                    .unwrap_or(0);
                assert!(
                    before <= requests,
                    "{context}: the summary went from {before} to {requests}"
                );
            }
            rounds += 1;
            if done {
                assert_eq!(total, LINES, "{context}: everything, once it finished");
                break;
            }
        }
        let report = ingestion.join().expect("the ingestion thread");
        assert!(report["commits"].as_u64() > Some(10), "{report}");
        assert!(
            !intermediate_totals.is_empty(),
            "{backend:?}: no answer came while the ingestion was committing ({rounds} rounds)"
        );
        eprintln!(
            "{backend:?}: {rounds} rounds of queries, {} during the ingestion's {} commits",
            intermediate_totals.len(),
            report["commits"]
        );
    }
}

/// A TCP relay to PostgreSQL that can be cut (live connections dropped, new ones refused: the
/// port is closed) and restored (the same port accepts and relays again), like a server that stops
/// and starts.
struct Relay {
    address: SocketAddr,
    state: Arc<RelayState>,
    accepter: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct RelayState {
    /// What the test wants: relaying (true) or cut.
    up: AtomicBool,
    /// What the relay does: whether its port is open.
    listening: AtomicBool,
    stop: AtomicBool,
    /// Both sockets of every relayed connection, to drop them when cut.
    live: Mutex<Vec<TcpStream>>,
}

impl Relay {
    fn start(upstream: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the relay");
        listener.set_nonblocking(true).unwrap();
        let address = listener.local_addr().unwrap();
        let state = Arc::new(RelayState::default());
        state.up.store(true, Ordering::SeqCst);
        state.listening.store(true, Ordering::SeqCst);
        let shared = Arc::clone(&state);
        let accepter = std::thread::spawn(move || {
            let mut listener = Some(listener);
            while !shared.stop.load(Ordering::SeqCst) {
                if !shared.up.load(Ordering::SeqCst) {
                    listener = None;
                    shared.listening.store(false, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
                let open = listener.get_or_insert_with(|| {
                    // std sets SO_REUSEADDR: the port can be bound again at once.
                    let open = TcpListener::bind(address).expect("binding the relay's port again");
                    open.set_nonblocking(true).unwrap();
                    open
                });
                shared.listening.store(true, Ordering::SeqCst);
                match open.accept() {
                    Ok((client, _)) => relay(client, upstream, &shared),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(e) => panic!("the relay's accept failed: {e}"),
                }
            }
        });
        Relay {
            address,
            state,
            accepter: Some(accepter),
        }
    }

    /// Closes the port (new connections are refused), then drops every relayed connection.
    fn cut(&self) {
        self.state.up.store(false, Ordering::SeqCst);
        self.wait_until_listening(false);
        for socket in self.state.live.lock().unwrap().drain(..) {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }

    /// Opens the port again.
    fn restore(&self) {
        self.state.up.store(true, Ordering::SeqCst);
        self.wait_until_listening(true);
    }

    fn wait_until_listening(&self, listening: bool) {
        let started = Instant::now();
        while self.state.listening.load(Ordering::SeqCst) != listening {
            assert!(started.elapsed() < PATIENCE, "the relay did not follow");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Relays one accepted connection in both directions until either side or a cut ends it.
fn relay(client: TcpStream, upstream: SocketAddr, state: &RelayState) {
    let Ok(server) = TcpStream::connect(upstream) else {
        return; // dropping `client` closes it, as a dead server would
    };
    client.set_nonblocking(false).unwrap();
    let mut live = state.live.lock().unwrap();
    live.push(client.try_clone().unwrap());
    live.push(server.try_clone().unwrap());
    for (mut from, mut to) in [
        (client.try_clone().unwrap(), server.try_clone().unwrap()),
        (server, client),
    ] {
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from, &mut to);
            let _ = to.shutdown(Shutdown::Both);
            let _ = from.shutdown(Shutdown::Both);
        });
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        if let Some(accepter) = self.accepter.take() {
            let _ = accepter.join();
        }
        for socket in self.state.live.lock().unwrap().drain(..) {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }
}

/// `logstats serve` whose stderr (logs at debug level) is kept for the test to read.
struct WatchedServer {
    child: Child,
    address: String,
    stderr: Arc<Mutex<String>>,
    /// Reads stderr until the server closes it.
    reader: std::thread::JoinHandle<()>,
}

impl WatchedServer {
    fn start(database_url: &str) -> WatchedServer {
        let mut child = Command::new(binary())
            .args(["serve", "--bind", "127.0.0.1:0"])
            .env("DATABASE_URL", database_url)
            .env("LOGSTATS_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting logstats serve");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let stderr = Arc::new(Mutex::new(String::new()));
        let address = loop {
            let line = lines
                .next()
                .expect("the server says where it listens")
                .unwrap();
            stderr.lock().unwrap().push_str(&format!("{line}\n"));
            if let Some(rest) = line.strip_prefix("serving on http://") {
                break rest.split_whitespace().next().unwrap().to_string();
            }
        };
        let kept = Arc::clone(&stderr);
        let reader = std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                kept.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        WatchedServer {
            child,
            address,
            stderr,
            reader,
        }
    }

    fn get(&self, path: &str) -> (u16, String) {
        http_get(&self.address, path)
    }

    /// Asks until the answer is 200, accepting only 503 (as JSON) meanwhile; returns the body.
    fn await_200(&self, path: &str, context: &str) -> (String, Duration) {
        let started = Instant::now();
        loop {
            let (status, body) = self.get(path);
            match status {
                200 => return (body, started.elapsed()),
                503 => assert_unavailable(&body, context),
                _ => panic!("{context}: GET {path} answered {status}: {body}"),
            }
            assert!(
                started.elapsed() < PATIENCE,
                "{context}: GET {path} still 503"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the server and returns everything it wrote on stderr.
    fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Everything it wrote is read once the pipe closes.
        self.reader.join().expect("the stderr reader");
        self.stderr.lock().unwrap().clone()
    }
}

fn assert_unavailable(body: &str, context: &str) {
    let body: Value = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("{context}: a 503 body is JSON ({e}): {body}"));
    assert_eq!(body["error"], "database_unavailable", "{context}: {body}");
}

/// Expects 503 with the JSON error body for each path, asked all at once (each waits for the
/// server's connection timeout).
fn assert_503(server: &WatchedServer, paths: &[&str], context: &str) {
    std::thread::scope(|scope| {
        for path in paths {
            scope.spawn(move || {
                let (status, body) = server.get(path);
                assert_eq!(status, 503, "{context}: GET {path}: {body}");
                assert_unavailable(&body, context);
            });
        }
    });
}

#[test]
fn serve_answers_503_while_postgres_is_down_and_recovers_by_itself() {
    if !backends().contains(&Backend::Postgres) {
        return;
    }
    let db = TestDb::new(Backend::Postgres);
    let direct = url::Url::parse(&db.url).unwrap();
    let upstream = (direct.host_str().unwrap(), direct.port().unwrap_or(5432))
        .to_socket_addrs()
        .unwrap()
        .next()
        .unwrap();
    let relay = Relay::start(upstream);
    let mut relayed = direct.clone();
    relayed.set_port(Some(relay.address.port())).unwrap();
    // Trust authentication ignores a password; it is there to be looked for in the logs.
    let secret = match direct.password() {
        Some(password) => password.to_string(),
        None => {
            relayed.set_password(Some("s3cret")).unwrap();
            "s3cret".to_string()
        }
    };

    // The API caches day answers briefly: every request below asks for a range of its own (the
    // same days: `to` lies far past the data), so each one reaches the database.
    let first = first_generated_day();
    let mut asked = 0;
    let mut stats = || {
        asked += 1;
        format!(
            "/customers/cust_1/stats?from={first}&to={}",
            first.plus(1000 + asked)
        )
    };

    // Down from the start: serve starts anyway and says 503.
    relay.cut();
    let server = WatchedServer::start(relayed.as_str());
    assert_503(
        &server,
        &[&stats(), "/customers", "/readyz"],
        "down at start",
    );

    // Up: it migrates the new database by itself and answers.
    relay.restore();
    let (body, took) = server.await_200(&stats(), "first start");
    assert_eq!(body, "[]");
    eprintln!("first answer {took:?} after PostgreSQL came up");
    let log = generated_log(db.dir(), "a.log", 2_000, 5);
    ingest_paths(&db.url, &[&log], 1);
    let (before, _) = server.await_200(&stats(), "after ingesting");
    assert!(before.len() > 100, "{before}");

    // Down while serving: live connections are dropped, new ones refused.
    for outage in 0..2 {
        let context = format!("outage {outage}");
        relay.cut();
        assert_503(&server, &[&stats(), "/customers", "/readyz"], &context);
        relay.restore();
        let (after, took) = server.await_200(&stats(), &context);
        assert_eq!(after, before, "{context}");
        eprintln!("{context}: answering again {took:?} after PostgreSQL came back");
    }
    let (status, _) = server.get("/readyz");
    assert_eq!(status, 200);

    let logs = server.stop();
    assert_eq!(
        logs.matches("database unavailable, answering 503").count(),
        3,
        "each of the three outages is reported once: {logs}"
    );
    assert_eq!(
        logs.matches("database available again").count(),
        3,
        "each recovery is reported once: {logs}"
    );
    assert!(
        !logs.contains(&secret),
        "the password never appears in the logs: {logs}"
    );
}

#[test]
fn ingest_and_migrate_with_an_unreachable_or_wrong_database_url_fail_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let log = generated_log(dir.path(), "a.log", 10, 1);
    // Nothing listens on port 1; the second server exists but has no such user (a missing
    // database is created: see the cli tests).
    let mut urls = vec!["postgres://alice:s3cret@127.0.0.1:1/none".to_string()];
    if backends().contains(&Backend::Postgres) {
        let mut wrong = url::Url::parse(&TestDb::new(Backend::Postgres).url).unwrap();
        wrong.set_username("no_such_role_here").unwrap();
        if wrong.password().is_none() {
            wrong.set_password(Some("s3cret")).unwrap();
        }
        urls.push(wrong.to_string());
    }
    let mut runs = Vec::new();
    for url in &urls {
        for args in [vec!["migrate"], vec!["ingest", log.to_str().unwrap()]] {
            let child = Command::new(binary())
                .args(&args)
                .env("DATABASE_URL", url)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            runs.push((format!("{} with {url}", args[0]), child));
        }
    }
    for (what, child) in runs {
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{what}: {stderr}");
        // A PostgreSQL that does not answer within a second is said to be waited for, once.
        let lines: Vec<&str> = stderr
            .trim_end()
            .lines()
            .filter(|line| !line.starts_with("waiting for PostgreSQL at "))
            .collect();
        assert!(
            lines.len() == 1 && lines[0].starts_with("error:"),
            "{what}: one error line: {stderr}"
        );
        assert!(!stderr.contains("s3cret"), "{what}: {stderr}");
        eprintln!("{what}: {}", stderr.trim_end());
    }
}

#[test]
fn an_ingestion_waiting_for_a_locked_sqlite_database_says_so_once_then_finishes() {
    let db = TestDb::new(Backend::Sqlite);
    let log = generated_log(db.dir(), "a.log", 1_000, 80);
    block_on(db.store().close());
    // Another program holds a write transaction.
    let holder = WriteLockHolder::take(&db);
    let mut child = Command::new(binary())
        .args(["ingest", "--database", &db.url])
        .arg(&log)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines, received) = std::sync::mpsc::channel();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let mut seen = Vec::new();
    while !seen
        .iter()
        .any(|l: &String| l.contains(WAITING_FOR_THE_LOCK))
    {
        seen.push(
            received
                .recv_timeout(PATIENCE)
                .expect("a line saying why it waits"),
        );
    }
    holder.release();
    assert!(child.wait().unwrap().success());
    seen.extend(received.iter());
    let said = seen.iter().filter(|l| l.contains("write lock")).count();
    assert_eq!(said, 1, "{seen:?}");
    assert!(
        seen.last().unwrap().starts_with("ingested 1000 lines"),
        "{seen:?}"
    );
}
