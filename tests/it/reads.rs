//! The server's reads under real conditions: a SQLite file it may only read while another user
//! ingests, a file that does not exist yet, a file replaced under it, reads slower than the
//! request timeout, and the summary's echo of `to`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::common::*;

/// The unprivileged user the read-only tests run the server as.
const READER: &str = "logstats-reader";

/// A command that runs the built binary as [`READER`] (made when missing); `None` when this
/// process may not switch users (not root): the test is then skipped, saying so.
fn as_reader() -> Option<Command> {
    if !rustix::process::geteuid().is_root() {
        eprintln!("not root: cannot run the server as another user, skipping");
        return None;
    }
    let exists = Command::new("id")
        .arg(READER)
        .output()
        .unwrap()
        .status
        .success();
    if !exists {
        let made = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                READER,
            ])
            .status()
            .unwrap();
        // 9: made meanwhile by a test running in parallel.
        assert!(made.success() || made.code() == Some(9), "useradd {READER}");
    }
    let mut command = Command::new("setpriv");
    command
        .args(["--reuid", READER, "--regid", READER, "--clear-groups", "--"])
        .arg(binary());
    Some(command)
}

/// Lets every user into `dir` (read and traverse, not write).
fn open_to_everyone(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// What the table holds, computed from its rows (not by the query the server runs): each
/// customer's first and last day and total requests, and all requests.
fn table_oracle(url: &str) -> (Vec<serde_json::Value>, u64) {
    let mut customers: BTreeMap<String, (String, String, u64)> = BTreeMap::new();
    let mut all = 0;
    for_each_row(url, |row| {
        let (id, date) = (
            row["customer_id"].as_str().unwrap(),
            row["date"].as_str().unwrap(),
        );
        let requests = row["total_requests"].as_u64().unwrap();
        all += requests;
        let entry = customers
            .entry(id.to_string())
            .or_insert_with(|| (date.to_string(), date.to_string(), 0));
        entry.0 = entry.0.clone().min(date.to_string());
        entry.1 = entry.1.clone().max(date.to_string());
        entry.2 += requests;
    });
    let list = customers
        .into_iter()
        .map(|(id, (first, last, total))| {
            serde_json::json!({"customer_id": id, "first_day": first, "last_day": last,
                "total_requests": total})
        })
        .collect();
    (list, all)
}

/// The value of a metric without labels in a Prometheus text.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// Asks `path` until `accept` takes the 200 answer's body; panics after [`PATIENCE`].
fn poll_until(server: &Server, path: &str, what: &str, accept: impl Fn(&str) -> bool) {
    let started = Instant::now();
    loop {
        let (status, body) = server.get(path);
        if status == 200 && accept(&body) {
            return;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "{what}: GET {path} never matched; last {status}: {body}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Once ingestion is over, the server's `/customers`, every customer's days and `/metrics` equal
/// what the table holds.
fn assert_serves_the_table(server: &Server, url: &str) {
    let (customers, requests) = table_oracle(url);
    let want: serde_json::Value = customers.clone().into();
    poll_until(server, "/customers", "/customers", |body| {
        serde_json::from_str::<serde_json::Value>(body).unwrap() == want
    });
    poll_until(server, "/metrics", "/metrics", |body| {
        metric(body, "logstats_stored_requests_total") == Some(requests as f64)
    });
    let mut rows: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    for_each_row(url, |mut row| {
        // The stats route answers without the breakdown.
        row.as_object_mut().unwrap().remove("resources");
        let id = row["customer_id"].as_str().unwrap().to_string();
        rows.entry(id).or_default().push(row);
    });
    for (id, days) in rows {
        // As the server writes it, read back (serde_json parses floats within a unit in the last
        // place: both sides parse the same text).
        let want: serde_json::Value =
            serde_json::from_str(&serde_json::to_string(&days).unwrap()).unwrap();
        let path = format!("/customers/{id}/stats?from=0001-01-01");
        poll_until(server, &path, "stats", |body| {
            serde_json::from_str::<serde_json::Value>(body).unwrap() == want
        });
    }
}

/// Asks the data routes and `/metrics` over and over until stopped; returns every answer that
/// was not 200.
fn keep_asking(
    server_address: String,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<String>> {
    std::thread::spawn(move || {
        let from = first_generated_day();
        let paths = [
            "/customers".to_string(),
            format!("/customers/cust_1/stats?from={from}"),
            format!("/customers/cust_2/stats/summary?from={from}"),
            "/metrics".to_string(),
            "/readyz".to_string(),
        ];
        let mut failures = Vec::new();
        while !stop.load(Ordering::SeqCst) {
            for path in &paths {
                let (status, body) = http_get(&server_address, path);
                if status != 200 {
                    failures.push(format!("{path}: {status} {body}"));
                }
            }
        }
        failures
    })
}

#[test]
fn a_server_that_may_only_read_the_file_answers_every_request_and_sees_every_commit() {
    let Some(reader) = as_reader() else { return };
    let db = TestDb::new(Backend::Sqlite);
    open_to_everyone(db.dir());
    let first = generated_log(db.dir(), "0.log", 2_000, 100);
    ingest_paths(&db.url, &[&first], 1);
    let server = Server::launch(reader, &db.url, &[]);
    assert_eq!(server.get("/customers").0, 200, "served as {READER}");
    let stop = Arc::new(AtomicBool::new(false));
    let asking = keep_asking(server.address.clone(), Arc::clone(&stop));
    for commit in 1..=10 {
        let log = generated_log(db.dir(), &format!("{commit}.log"), 2_000, 100 + commit);
        ingest_paths(&db.url, &[&log], 1);
    }
    stop.store(true, Ordering::SeqCst);
    let failures = asking.join().unwrap();
    assert!(failures.is_empty(), "answers not 200: {failures:#?}");
    assert_serves_the_table(&server, &db.url);
}

#[test]
fn a_reader_without_the_wal_files_is_told_what_to_grant_and_an_archive_is_served_immutable() {
    let Some(reader) = as_reader() else { return };
    let db = TestDb::new(Backend::Sqlite);
    open_to_everyone(db.dir());
    let log = generated_log(db.dir(), "a.log", 2_000, 7);
    ingest_paths(&db.url, &[&log], 1);
    // A database closed by a program that deletes the WAL files when it closes (nothing is
    // lost: the last connection folds the log into the file first).
    for companion in ["stats.db-wal", "stats.db-shm"] {
        std::fs::remove_file(db.dir().join(companion)).unwrap();
    }
    let server = Server::launch(reader, &db.url, &[]);
    let (status, body) = server.get("/customers");
    assert_eq!(status, 503, "{body}");
    let shown = db.dir().display().to_string();
    let said = std::iter::from_fn(|| server.stderr.recv_timeout(PATIENCE).ok())
        .find(|line| line.contains("grant it write access to the directory"))
        .expect("the server says what to grant");
    assert!(said.contains(&shown), "names the directory: {said}");
    assert!(said.contains("immutable=1"), "{said}");

    let archive = Server::launch(
        as_reader().unwrap(),
        &format!("{}?immutable=1", db.url),
        &[],
    );
    assert_serves_the_table(&archive, &db.url);
    // Once the user who writes opens it again, the files are there and stay: served.
    ingest_paths(&db.url, &[&log], 1);
    assert!(db.dir().join("stats.db-shm").exists(), "the files stay");
    assert_serves_the_table(&server, &db.url);
}

#[test]
fn serving_a_missing_sqlite_file_creates_nothing_answers_503_then_serves_it_once_ingested() {
    let dir = tempfile::tempdir().unwrap();
    let missing_dir = dir.path().join("not-yet");
    let path = missing_dir.join("stats.db");
    let url = format!("sqlite://{}", path.display());
    let server = Server::start(&url, &[]);
    let (status, body) = server.get("/customers");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("database_unavailable"), "{body}");
    let said = server
        .stderr
        .iter()
        .find(|line| line.contains("does not exist"))
        .expect("the server says the file does not exist");
    assert!(
        said.contains(&path.display().to_string()),
        "names the path: {said}"
    );
    assert_eq!(server.get("/readyz").0, 503);
    assert!(!missing_dir.exists(), "nothing is created");

    let log = generated_log(dir.path(), "a.log", 2_000, 3);
    ingest_paths(&url, &[&log], 1);
    assert_serves_the_table(&server, &url);
    let again: Vec<String> = server.stderr.try_iter().collect();
    assert!(
        !again.iter().any(|line| line.contains("does not exist")),
        "said once: {again:?}"
    );
}

#[test]
fn a_database_file_replaced_by_mv_is_served_from_the_new_file() {
    let db = TestDb::new(Backend::Sqlite);
    let log = generated_log(db.dir(), "a.log", 2_000, 11);
    ingest_paths(&db.url, &[&log], 1);
    let server = Server::start(&db.url, &[]);
    assert_serves_the_table(&server, &db.url);
    let other_dir = tempfile::tempdir_in(db.dir()).unwrap();
    let other_url = format!("sqlite://{}", other_dir.path().join("new.db").display());
    let more = generated_log(db.dir(), "b.log", 3_000, 12);
    ingest_paths(&other_url, &[&log, &more], 1);
    for suffix in ["", "-wal", "-shm"] {
        let from = other_dir.path().join(format!("new.db{suffix}"));
        let to = db.dir().join(format!("stats.db{suffix}"));
        std::fs::rename(from, to).unwrap();
    }
    assert_serves_the_table(&server, &db.url);
}

#[test]
fn a_summary_echoes_a_given_to_even_the_last_date() {
    for backend in backends() {
        let db = TestDb::new(backend);
        let log = generated_log(db.dir(), "a.log", 500, 5);
        ingest_paths(&db.url, &[&log], 1);
        let server = Server::start(&db.url, &[]);
        let from = first_generated_day();
        let summary = |query: &str| -> serde_json::Value {
            let (status, body) = server.get(&format!("/customers/cust_1/stats/summary?{query}"));
            assert_eq!(status, 200, "{body}");
            serde_json::from_str(&body).unwrap()
        };
        let given = summary(&format!("from={from}&to=9999-12-31"));
        assert_eq!(given["to"], "9999-12-31", "{backend:?}: {given}");
        let open = summary(&format!("from={from}"));
        assert!(open.get("to").is_none(), "{backend:?}: {open}");
        assert_eq!(given["total_requests"], open["total_requests"]);
    }
}

/// A lock on the statistics table, held by another program until dropped: every read of the
/// table waits for it.
enum TableLock {
    /// An exclusive transaction on a database in rollback-journal mode (where readers take a
    /// shared lock per transaction, and wait while a writer holds the exclusive one).
    Sqlite(rusqlite::Connection),
    Postgres(sqlx::PgConnection),
}

impl TableLock {
    fn take(db: &TestDb) -> TableLock {
        match db.backend {
            Backend::Sqlite => {
                let connection = rusqlite::Connection::open(db.dir().join("stats.db")).unwrap();
                connection.execute_batch("BEGIN EXCLUSIVE").unwrap();
                TableLock::Sqlite(connection)
            }
            Backend::Postgres => block_on(async {
                use sqlx::Connection;
                let mut connection = sqlx::PgConnection::connect(&db.url).await.unwrap();
                sqlx::raw_sql(
                    "BEGIN; LOCK TABLE resource_statistics_by_day IN ACCESS EXCLUSIVE MODE",
                )
                .execute(&mut connection)
                .await
                .unwrap();
                TableLock::Postgres(connection)
            }),
        }
    }

    fn release(self) {
        match self {
            TableLock::Sqlite(connection) => connection.execute_batch("ROLLBACK").unwrap(),
            TableLock::Postgres(mut connection) => block_on(async {
                use sqlx::Connection;
                sqlx::raw_sql("ROLLBACK")
                    .execute(&mut connection)
                    .await
                    .unwrap();
                connection.close().await.unwrap();
            }),
        }
    }
}

/// A SQLite database in rollback-journal mode (what `PRAGMA journal_mode=DELETE` makes of one).
fn to_rollback_journal(db: &TestDb) {
    let connection = rusqlite::Connection::open(db.dir().join("stats.db")).unwrap();
    let mode: String = connection
        .query_row("PRAGMA journal_mode=DELETE", [], |row| row.get(0))
        .unwrap();
    assert_eq!(mode, "delete");
}

#[test]
fn reads_slower_than_the_request_timeout_answer_503_timeout_while_healthz_answers() {
    for backend in backends() {
        let db = TestDb::new(backend);
        let log = generated_log(db.dir(), "a.log", 2_000, 9);
        ingest_paths(&db.url, &[&log], 1);
        if backend == Backend::Sqlite {
            to_rollback_journal(&db);
        }
        let server = Server::start(&db.url, &["--request-timeout", "1"]);
        let from = first_generated_day();
        let summary =
            |customer: u32| format!("/customers/cust_{customer}/stats/summary?from={from}");
        assert_eq!(server.get(&summary(1)).0, 200, "{backend:?}");
        let lock = TableLock::take(&db);
        let slow: Vec<_> = (2..5)
            .map(|customer| {
                let (address, path) = (server.address.clone(), summary(customer));
                std::thread::spawn(move || http_get(&address, &path))
            })
            .collect();
        let (status, body) = server.get("/healthz");
        assert_eq!(
            (status, body.as_str()),
            (200, r#"{"status":"ok"}"#),
            "{backend:?}"
        );
        for answer in slow {
            let (status, body) = answer.join().unwrap();
            assert_eq!(status, 503, "{backend:?}: {body}");
            assert!(body.contains(r#""error":"timeout""#), "{backend:?}: {body}");
        }
        lock.release();
        // The abandoned reads were stopped: the same requests are answered again, each with its
        // own answer (no connection left mid-answer by a cancelled read serves the next one).
        poll_until(&server, &summary(2), "after the lock", |_| true);
        assert_eq!(
            server.get("/readyz").0,
            200,
            "{backend:?}: the breaker never opened"
        );
        let fresh = Server::start(&db.url, &[]);
        for customer in 1..5 {
            assert_eq!(
                server.get(&summary(customer)),
                fresh.get(&summary(customer)),
                "{backend:?}: cust_{customer}"
            );
        }
    }
}

/// Whether PostgreSQL's days table has been analysed by a command (not by autovacuum).
fn analysed_by_command(url: &str) -> bool {
    block_on(async {
        use sqlx::Connection;
        let mut connection = sqlx::PgConnection::connect(url).await.unwrap();
        let analysed: bool = sqlx::query_scalar(
            "SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables \
             WHERE relname = 'resource_statistics_by_day'",
        )
        .fetch_one(&mut connection)
        .await
        .unwrap();
        connection.close().await.unwrap();
        analysed
    })
}

#[test]
fn a_commit_that_grew_the_postgresql_table_much_analyses_it_and_a_small_one_does_not() {
    let Some(backend) = backends().into_iter().find(|b| *b == Backend::Postgres) else {
        return;
    };
    let db = TestDb::new(backend);
    let small = generated_log(db.dir(), "small.log", 200, 1);
    ingest_paths(&db.url, &[&small], 1);
    assert!(
        !analysed_by_command(&db.url),
        "a small commit leaves it to autovacuum"
    );
    let large = generated_log_of(db.dir(), "large.log", 60_000, 2, 3_000);
    let report = ingest_paths(&db.url, &[&large], 1);
    assert!(report.groups_changed >= 10_000, "{}", report.groups_changed);
    let started = Instant::now();
    while !analysed_by_command(&db.url) {
        assert!(started.elapsed() < PATIENCE, "the table was never analysed");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// On PostgreSQL, reads that wait for a connection are read together, in one statement per kind:
/// days and summaries over ranges of every length (whole months among them), of customers with
/// and without days; each answer equals a server's answer to it alone.
#[test]
fn reads_waiting_for_a_connection_are_read_together_and_answered_as_alone() {
    if !backends().contains(&Backend::Postgres) {
        return;
    }
    let db = TestDb::new(Backend::Postgres);
    let log = generated_log_of(db.dir(), "a.log", 3_000, 11, 12);
    ingest_paths(&db.url, &[&log], 1);
    let mut command = Command::new(binary());
    command.env("LOGSTATS_LOG", "warn,logstats::store::postgres_reads=debug");
    let server = Server::launch(command, &db.url, &[]);
    let day = first_generated_day();
    let ranges = [
        format!("from={day}&to={}", day.plus(9)),
        format!("from={}&to={}", day.plus(3), day.plus(5)),
        "from=2024-08-01&to=2024-10-31".to_string(),
    ];
    // Distinct (the answer cache would read equal ones once); customers 13 and 14 have no days.
    let paths: Vec<String> = (0..36)
        .map(|i| {
            let route = if i % 2 == 0 { "stats" } else { "stats/summary" };
            format!("/customers/cust_{}/{route}?{}", i % 14 + 1, ranges[i / 14])
        })
        .collect();
    // The first read also checks the schema: before the lock.
    assert_eq!(server.get(&paths[0]).0, 200);

    let lock = TableLock::take(&db);
    let answers: Vec<_> = paths
        .iter()
        .map(|path| {
            let (address, path) = (server.address.clone(), path.clone());
            std::thread::spawn(move || http_get(&address, &path))
        })
        .collect();
    // At most 16 reads hold a connection (blocked by the lock); of the 20 or more that wait, 8
    // are more than enough for a batch.
    let mut waiting = 0;
    while waiting < 8 {
        let line = server.stderr.recv_timeout(PATIENCE).expect("reads queue");
        waiting += usize::from(line.contains("a range read waits for a connection"));
    }
    lock.release();
    let answers: Vec<(u16, String)> = answers.into_iter().map(|a| a.join().unwrap()).collect();
    loop {
        let line = server
            .stderr
            .recv_timeout(PATIENCE)
            .expect("a statement read several ranges");
        let reads = line
            .contains("ranges read in one statement")
            .then(|| line.split("reads=").nth(1))
            .flatten()
            .and_then(|rest| {
                rest.split(|c: char| !c.is_ascii_digit())
                    .next()?
                    .parse()
                    .ok()
            });
        if reads.is_some_and(|reads: usize| reads > 1) {
            break;
        }
    }

    let alone = Server::start(&db.url, &[]);
    for (path, answer) in paths.iter().zip(answers) {
        assert_eq!(answer.0, 200, "{path}: {}", answer.1);
        assert_eq!(answer, alone.get(path), "{path}");
    }
}
