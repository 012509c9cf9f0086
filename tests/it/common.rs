//! Helpers shared by the integration tests: fresh databases on both backends, generated logs, the
//! built binary as a server, and a minimal HTTP client.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{Datelike, NaiveDate};
use logstats::day::Day;
use logstats::generate::{GenerateConfig, generate};
use logstats::pipeline::{IngestConfig, IngestReport};

use crate::oracle;

/// The longest any wait for the system under test may last before the test gives up.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// The built `logstats` binary.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_logstats")
}

/// Where PostgreSQL is for tests: `LOGSTATS_TEST_POSTGRES` or the local server.
fn postgres_admin_url() -> String {
    std::env::var("LOGSTATS_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// The backends a storage test runs on: SQLite always; PostgreSQL when it answers (and always when
/// `LOGSTATS_REQUIRE_POSTGRES=1`, as in CI, where its absence is a failure).
pub fn backends() -> Vec<Backend> {
    let mut backends = vec![Backend::Sqlite];
    if postgres_available() {
        backends.push(Backend::Postgres);
    } else if std::env::var("LOGSTATS_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
        panic!(
            "PostgreSQL is required (LOGSTATS_REQUIRE_POSTGRES=1) but {} does not answer",
            postgres_admin_url()
        );
    } else {
        eprintln!("PostgreSQL not reachable: running the SQLite half only");
    }
    backends
}

fn postgres_available() -> bool {
    let url = postgres_admin_url();
    let host = url
        .split('@')
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or("127.0.0.1:5432")
        .to_string();
    host.parse()
        .ok()
        .is_some_and(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A fresh, empty database; a PostgreSQL one is dropped afterwards.
pub struct TestDb {
    pub url: String,
    pub backend: Backend,
    _dir: tempfile::TempDir,
    pg_name: Option<String>,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

impl TestDb {
    pub fn new(backend: Backend) -> TestDb {
        let dir = tempfile::tempdir().expect("a temp dir");
        match backend {
            Backend::Sqlite => TestDb {
                url: format!("sqlite://{}", dir.path().join("stats.db").display()),
                backend,
                _dir: dir,
                pg_name: None,
            },
            Backend::Postgres => {
                let name = format!(
                    "logstats_test_{}_{}_{}",
                    std::process::id(),
                    COUNTER.fetch_add(1, Ordering::SeqCst),
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .subsec_nanos()
                );
                admin(&format!("CREATE DATABASE {name}"));
                let admin_url = postgres_admin_url();
                let base = admin_url
                    .rsplit_once('/')
                    .map_or(admin_url.as_str(), |(base, _)| base);
                TestDb {
                    url: format!("{base}/{name}"),
                    backend,
                    _dir: dir,
                    pg_name: Some(name),
                }
            }
        }
    }

    /// The store, connected and migrated.
    pub fn store(&self) -> logstats::store::Store {
        block_on(logstats::store::Store::connect(&self.url))
            .expect("connecting to the test database")
    }

    /// Runs `sql` (statements separated by `;`) on the database, outside the store: a change by
    /// hand, or one an older version made.
    pub fn execute(&self, sql: &str) {
        match self.backend {
            Backend::Sqlite => {
                let connection = rusqlite::Connection::open(self.dir().join("stats.db")).unwrap();
                connection.execute_batch(sql).unwrap();
            }
            Backend::Postgres => block_on(async {
                use sqlx::Connection;
                let mut connection = sqlx::PgConnection::connect(&self.url).await.unwrap();
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
                    .execute(&mut connection)
                    .await
                    .unwrap();
                connection.close().await.unwrap();
            }),
        }
    }

    /// The number the query `sql` answers (one row, one integer column).
    pub fn query_number(&self, sql: &str) -> i64 {
        match self.backend {
            Backend::Sqlite => {
                let connection = rusqlite::Connection::open(self.dir().join("stats.db")).unwrap();
                connection.query_row(sql, [], |row| row.get(0)).unwrap()
            }
            Backend::Postgres => block_on(async {
                use sqlx::Connection;
                let mut connection = sqlx::PgConnection::connect(&self.url).await.unwrap();
                let number = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
                    .fetch_one(&mut connection)
                    .await
                    .unwrap();
                connection.close().await.unwrap();
                number
            }),
        }
    }

    /// A directory that lives as long as the database (for logs and other files).
    pub fn dir(&self) -> &Path {
        self._dir.path()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(name) = &self.pg_name {
            admin(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        }
    }
}

pub fn admin(sql: &str) {
    let sql = sql.to_string();
    block_on(async move {
        use sqlx::Connection;
        let mut connection = sqlx::PgConnection::connect(&postgres_admin_url()).await?;
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut connection)
            .await?;
        connection.close().await
    })
    .expect("administering the test PostgreSQL server");
}

/// Runs a future to completion on the tests' one runtime. One runtime for every call, as in the
/// product: a store's pooled connections belong to the runtime that opened them, and a runtime
/// dropped between two calls would leave the next call a connection whose driver is shutting down.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    static RUNTIME: std::sync::LazyLock<tokio::runtime::Runtime> = std::sync::LazyLock::new(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime")
    });
    RUNTIME.block_on(future)
}

/// Writes a generated log and returns its path.
pub fn generated_log(dir: &Path, name: &str, lines: u64, seed: u64) -> PathBuf {
    generated_log_of(dir, name, lines, seed, 20)
}

/// [`generated_log`] with `customers` customers (over the same 10 days).
pub fn generated_log_of(dir: &Path, name: &str, lines: u64, seed: u64, customers: u32) -> PathBuf {
    let path = dir.join(name);
    let config = GenerateConfig {
        lines,
        seed,
        customers,
        days: 10,
        ..GenerateConfig::default()
    };
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    generate(&config, &mut file).unwrap();
    file.flush().unwrap();
    path
}

/// The first day the generator writes with [`generated_log`]'s settings.
pub fn first_generated_day() -> Day {
    GenerateConfig::default().end.plus(-9)
}

/// Runs an ingestion in process into the database at `url`.
pub fn ingest_into(url: &str, config: IngestConfig) -> anyhow::Result<IngestReport> {
    logstats::pipeline::ingest(config, logstats::store::BlockingStore::connect(url)?)
}

/// Ingests `paths` with `workers` threads, in process.
pub fn ingest_paths(url: &str, paths: &[&Path], workers: usize) -> IngestReport {
    let mut config = IngestConfig::new(paths.iter().map(|p| p.display().to_string()).collect());
    config.workers = workers;
    ingest_into(url, config).expect("ingestion succeeds")
}

/// Every stored day of every customer as JSON values (the API's rows), for comparing databases.
pub fn all_rows(url: &str) -> Vec<serde_json::Value> {
    let mut rows = Vec::new();
    for_each_row(url, |row| rows.push(row));
    rows
}

/// Calls `each` with every stored day, customer by customer, as a JSON value (the API's row),
/// with its breakdown as `resources`: each resource's statistics by name (`null`: none).
pub fn for_each_row(url: &str, mut each: impl FnMut(serde_json::Value)) {
    block_on(async {
        let store = logstats::store::Store::connect(url).await.unwrap();
        for customer in store.customers("", None, usize::MAX).await.unwrap() {
            // Whole months: a day committed since the list was read falls in the range of both the
            // days and the months read, or of neither.
            let id = &customer.customer_id;
            let first = customer.first_day.with_day(1).unwrap();
            let last = (customer.last_day.with_day(1).unwrap() + chrono::Months::new(1))
                .pred_opt()
                .unwrap();
            // Three reads: a commit may come between them (a follower goes on), then all again.
            let mut tries = 0;
            let (days, states) = loop {
                let days = store.days(id, first, last).await.unwrap();
                let states = store.day_states(id, first, last).await.unwrap();
                let months = stored_months(&store, id, first, last).await;
                let same = days.len() == states.len()
                    && days.iter().zip(&states).all(|(day, (date, state))| {
                        day.date == *date && day.statistics.total_requests == state.total()
                    });
                let want = months_of(&states);
                if same && months == want {
                    break (days, states);
                }
                tries += 1;
                assert!(
                    tries < 20,
                    "{id}: the stored months are not the merge of their days:\n{months:?}\n\
                     want {want:?}"
                );
            };
            for (day, (_, state)) in days.into_iter().zip(states) {
                let mut row = serde_json::to_value(day).unwrap();
                row["resources"] = breakdown_of(state);
                each(row);
            }
        }
        store.close().await;
    })
}

/// Each month of `customer` from `first` to `last`, as a summary of the month reads it (from the
/// stored months), by its first day.
async fn stored_months(
    store: &logstats::store::Store,
    customer: &str,
    first: NaiveDate,
    last: NaiveDate,
) -> Vec<(NaiveDate, logstats::stats::DayStats)> {
    let mut months = Vec::new();
    let mut month = first.with_day(1).unwrap();
    while month <= last {
        let next = month.checked_add_months(chrono::Months::new(1)).unwrap();
        let state = store
            .range_state(customer, month, next.pred_opt().unwrap())
            .await
            .unwrap();
        if state.total() > 0 {
            months.push((month, state));
        }
        month = next;
    }
    months
}

/// The months of these days (ascending), each the merge of its days without breakdown.
fn months_of(
    days: &[(NaiveDate, logstats::stats::DayStats)],
) -> Vec<(NaiveDate, logstats::stats::DayStats)> {
    let mut months: Vec<(NaiveDate, logstats::stats::RangeMerger)> = Vec::new();
    for (date, state) in days {
        let month = date.with_day(1).unwrap();
        if months.last().is_none_or(|(m, _)| *m != month) {
            months.push((month, Default::default()));
        }
        months.last_mut().unwrap().1.push(state.clone());
    }
    months
        .into_iter()
        .map(|(month, merger)| (month, merger.finish()))
        .collect()
}

/// A day's breakdown by resource as JSON: each resource's statistics by name.
fn breakdown_of(state: logstats::stats::DayStats) -> serde_json::Value {
    let Some(breakdown) = state.resources else {
        return serde_json::Value::Null;
    };
    let entries = breakdown
        .into_entries()
        .into_iter()
        .map(|(name, mut stats)| {
            (
                name.to_string(),
                serde_json::to_value(stats.statistics()).unwrap(),
            )
        });
    serde_json::Value::Object(entries.collect())
}

/// `logstats serve` on a free port, stopped on drop.
pub struct Server {
    child: Child,
    pub address: String,
    /// The lines the server wrote on stderr, but the one saying where it listens.
    pub stderr: std::sync::mpsc::Receiver<String>,
}

impl Server {
    pub fn start(database_url: &str, extra_args: &[&str]) -> Server {
        Server::launch(Command::new(binary()), database_url, extra_args)
    }

    /// `logstats serve` run by `command` (the binary, or a program that runs it as another
    /// user, given the binary as its last argument).
    pub fn launch(mut command: Command, database_url: &str, extra_args: &[&str]) -> Server {
        let mut child = command
            .args(["serve", "--database", database_url])
            .args(extra_args)
            .env("LOGSTATS_BIND", "127.0.0.1:0")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("starting logstats serve");
        let lines = stderr_lines(&mut child);
        let mut before = Vec::new();
        let address = loop {
            let line = lines
                .recv_timeout(PATIENCE)
                .expect("the server says where it listens");
            if let Some(rest) = line.strip_prefix("serving on http://") {
                break rest.split_whitespace().next().unwrap().to_string();
            }
            before.push(line);
        };
        // What it said before (a warning of a read started with the server) comes first.
        let (sender, stderr) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in before.into_iter().chain(lines) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Server {
            child,
            address,
            stderr,
        }
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(&self.address, path)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET path` on the server at `address`: the status and the body, whatever the status.
pub fn http_get(address: &str, path: &str) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let mut response = agent
        .get(format!("http://{address}{path}"))
        .call()
        .unwrap_or_else(|e| panic!("GET {path} on {address}: {e}"));
    let body = response
        .body_mut()
        .with_config()
        .limit(u64::MAX)
        .read_to_string()
        .unwrap_or_else(|e| panic!("the body of GET {path}: {e}"));
    (response.status().as_u16(), body)
}

/// The lines of `text` in a pseudo-random order (deterministic per seed).
pub fn shuffled_lines(text: &str, seed: u64) -> Vec<&str> {
    let mut lines: Vec<&str> = text.lines().collect();
    let mut state = seed;
    for i in (1..lines.len()).rev() {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        lines.swap(i, (state >> 33) as usize % (i + 1));
    }
    lines
}

pub fn write_lines(path: &std::path::Path, lines: &[&str]) {
    let mut file = std::fs::File::create(path).unwrap();
    for line in lines {
        writeln!(file, "{line}").unwrap();
    }
}

/// Equal row for row, showing only the first difference.
pub fn assert_rows_equal(got: &[serde_json::Value], want: &[serde_json::Value], context: &str) {
    assert_eq!(got.len(), want.len(), "{context}: number of rows");
    if let Some((g, w)) = got.iter().zip(want).find(|(g, w)| g != w) {
        panic!("{context}: first different row:\n got {g}\nwant {w}");
    }
}

/// `logstats ingest --database URL` with stdout and stderr piped.
pub fn ingest_command(url: &str) -> Command {
    let mut command = Command::new(binary());
    command
        .args(["ingest", "--database", url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// A child's stderr, read on a thread of its own, with the commits it reported counted (the
/// committer logs `committed` at debug level after every transaction).
pub struct CommitWatch {
    pub lines: std::sync::mpsc::Receiver<String>,
    pub commits: u64,
    ended: bool,
}

/// The lines of a child's stderr, read on a thread of their own.
pub fn stderr_lines(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<String> {
    let stderr = child.stderr.take().expect("stderr is piped");
    let (sender, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    lines
}

/// `ingest --follow` of `input` with `extra` flags, reading every 0.2 s, once it has committed
/// twice (it is following).
pub fn following(url: &str, input: &Path, extra: &[&str]) -> (std::process::Child, CommitWatch) {
    let mut follower = watched_ingest(url)
        .args(["--follow", "--flush-interval", "0.2"])
        .args(extra)
        .arg(input)
        .spawn()
        .unwrap();
    let mut watch = CommitWatch::new(&mut follower);
    assert!(watch.until_commits(2, PATIENCE), "following goes on");
    (follower, watch)
}

impl CommitWatch {
    pub fn new(child: &mut std::process::Child) -> CommitWatch {
        CommitWatch {
            lines: stderr_lines(child),
            commits: 0,
            ended: false,
        }
    }

    /// Counts what was reported so far.
    pub fn drain(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            self.commits += u64::from(line.contains("committed"));
        }
    }

    /// Waits until `count` commits were reported in all; false when stderr ended first.
    pub fn until_commits(&mut self, count: u64, patience: Duration) -> bool {
        let deadline = Instant::now() + patience;
        while self.commits < count {
            if self.next_line(deadline, patience).is_none() {
                return false;
            }
        }
        true
    }

    /// Waits for a line containing `text`; false when stderr ended first.
    pub fn until_line(&mut self, text: &str, patience: Duration) -> bool {
        let deadline = Instant::now() + patience;
        while let Some(line) = self.next_line(deadline, patience) {
            if line.contains(text) {
                return true;
            }
        }
        false
    }

    /// The next line (commits counted), or `None` once stderr has ended.
    fn next_line(&mut self, deadline: Instant, patience: Duration) -> Option<String> {
        if self.ended {
            return None;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(left) {
            Ok(line) => {
                self.commits += u64::from(line.contains("committed"));
                Some(line)
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                self.ended = true;
                None
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                panic!("nothing awaited was reported within {patience:?}")
            }
        }
    }
}

/// How many rounds a randomised test runs: `thorough` with `LOGSTATS_THOROUGH=1` (`.ci/run` sets
/// it), `quick` otherwise, so that a plain `cargo test` stays within a few minutes.
pub fn rounds(thorough: u64, quick: u64) -> u64 {
    match std::env::var("LOGSTATS_THOROUGH").as_deref() {
        Ok("1") => thorough,
        _ => quick,
    }
}

/// What an ingestion says while another program holds the database's write lock.
pub const WAITING_FOR_THE_LOCK: &str = "waiting for the database's write lock";

/// Another program's write lock on a test database (a SQLite write transaction, PostgreSQL's
/// writer advisory lock): while it is held, an ingestion reads and merges but cannot commit, and
/// says [`WAITING_FOR_THE_LOCK`]. The database must be migrated first ([`TestDb::store`]).
pub enum WriteLockHolder {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl WriteLockHolder {
    pub fn take(db: &TestDb) -> WriteLockHolder {
        use sqlx::Connection;
        block_on(async {
            match db.backend {
                Backend::Sqlite => {
                    let mut connection = sqlx::SqliteConnection::connect(&db.url).await?;
                    sqlx::query("BEGIN IMMEDIATE")
                        .execute(&mut connection)
                        .await?;
                    Ok::<_, sqlx::Error>(WriteLockHolder::Sqlite(connection))
                }
                Backend::Postgres => {
                    let mut connection = sqlx::PgConnection::connect(&db.url).await?;
                    sqlx::query("SELECT pg_advisory_lock($1)")
                        .bind(logstats::store::WRITER_LOCK_KEY)
                        .execute(&mut connection)
                        .await?;
                    Ok(WriteLockHolder::Postgres(connection))
                }
            }
        })
        .expect("taking the database's write lock")
    }

    pub fn release(self) {
        use sqlx::Connection;
        block_on(async {
            match self {
                WriteLockHolder::Sqlite(mut connection) => {
                    sqlx::query("COMMIT").execute(&mut connection).await?;
                    connection.close().await
                }
                WriteLockHolder::Postgres(connection) => connection.close().await,
            }
        })
        .expect("releasing the database's write lock");
    }
}

/// An ingestion that logs each commit on stderr and commits after every epoch it can.
pub fn watched_ingest(url: &str) -> Command {
    let mut command = ingest_command(url);
    command
        .env("LOGSTATS_LOG", "logstats=debug")
        .env("LOGSTATS_COMMIT_INTERVAL", "0.001");
    command
}

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls the stored rows until they equal the oracle over `text` (or gives up after `patience`).
pub fn eventually_matches(url: &str, text: &str, patience: Duration) -> Result<(), String> {
    let deadline = Instant::now() + patience;
    let expected = oracle::groups(text);
    loop {
        let rows = all_rows(url);
        let total: u64 = rows
            .iter()
            .map(|r| r["total_requests"].as_u64().unwrap())
            .sum();
        let want: u64 = expected.values().map(|v| v.len() as u64).sum();
        if rows.len() == expected.len() && total == want {
            oracle::assert_rows_match_text(&rows, text);
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "stored {total} requests in {} rows, want {want} in {}",
                rows.len(),
                expected.len()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn append(path: &Path, text: &str) {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
}

/// Sends `signal` (`TERM`, `INT`) to the process `pid`.
pub fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// A hostfile for a cluster of two processes on loopback, in `dir`.
pub fn two_process_hostfile(dir: &Path) -> PathBuf {
    let hostfile = dir.join("hosts");
    let addresses = format!("127.0.0.1:{}\n127.0.0.1:{}\n", free_port(), free_port());
    std::fs::write(&hostfile, addresses).unwrap();
    hostfile
}

/// Every line of the files in `paths`, as one text.
pub fn text_of(paths: &[&Path]) -> String {
    paths
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}

/// Asserts that every stored day equals the oracle over `text`, and that no day is missing or
/// extra, one customer at a time (a million rows as JSON values would not fit in memory).
pub fn assert_store_matches_text(url: &str, text: &str) {
    let groups = oracle::groups(text);
    let mut rows = 0;
    for_each_row(url, |row| {
        oracle::assert_row_is_its_group(&row, &groups);
        rows += 1;
    });
    assert_eq!(rows, groups.len(), "one row per (customer, day)");
}
