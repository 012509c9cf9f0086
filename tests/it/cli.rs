//! The built binary, as a user runs it: generate -> ingest -> serve -> query.

use std::process::Command;

use crate::common::*;
use crate::oracle;

#[test]
fn generate_ingest_serve_and_query_give_the_oracles_numbers() {
    for backend in backends() {
        let db = TestDb::new(backend);
        let log = db.dir().join("logs/api.log");
        let generated = Command::new(binary())
            .args(["generate", "--lines", "5000", "--seed", "7", "-o"])
            .arg(&log)
            .output()
            .unwrap();
        assert!(generated.status.success(), "{generated:?}");
        let ingested = Command::new(binary())
            .args(["ingest", "--database", &db.url])
            .arg(&log)
            .output()
            .unwrap();
        assert!(ingested.status.success(), "{ingested:?}");
        let summary = String::from_utf8_lossy(&ingested.stderr);
        assert!(
            summary.contains("ingested 5000 lines (0 rejected)"),
            "{summary}"
        );
        assert!(summary.contains("lines/s"), "{summary}");

        let server = Server::start(&db.url, &[]);
        let (status, body) = server.get("/customers/cust_1/stats?from=2024-09-03");
        assert_eq!(status, 200, "{body}");
        let rows: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
        let groups = oracle::groups(&std::fs::read_to_string(&log).unwrap());
        assert_eq!(
            rows.len(),
            groups
                .keys()
                .filter(|(c, d)| c == "cust_1" && d.as_str() >= "2024-09-03")
                .count()
        );
        assert!(rows.len() > 20);
        for row in &rows {
            let key = (
                "cust_1".to_string(),
                row["date"].as_str().unwrap().to_string(),
            );
            oracle::assert_row_matches(row, &oracle::statistics(&groups[&key]));
        }
        let (status, body) = server.get("/customers/cust_1/stats?from=aaaa");
        assert_eq!(status, 422, "{body}");
    }
}

#[test]
fn generate_is_deterministic_for_a_seed() {
    let run = |seed: &str| {
        Command::new(binary())
            .args(["generate", "--lines", "1000", "--seed", seed])
            .output()
            .unwrap()
            .stdout
    };
    assert_eq!(run("5"), run("5"));
    assert_ne!(run("5"), run("6"));
    assert_eq!(run("5").iter().filter(|&&b| b == b'\n').count(), 1000);
}

#[test]
fn unreadable_inputs_and_unreachable_databases_fail_with_one_clear_line() {
    let db = TestDb::new(Backend::Sqlite);
    let missing = Command::new(binary())
        .args(["ingest", "--database", &db.url, "/no/such/file.log"])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    let message = String::from_utf8_lossy(&missing.stderr);
    assert!(message.contains("/no/such/file.log"), "{message}");

    let log = generated_log(db.dir(), "a.log", 10, 1);
    let unreachable = Command::new(binary())
        .args([
            "ingest",
            "--database",
            "postgres://alice:s3cret@127.0.0.1:1/none",
        ])
        .arg(&log)
        .output()
        .unwrap();
    assert!(!unreachable.status.success());
    let message = String::from_utf8_lossy(&unreachable.stderr);
    // One `error:` line, after the line saying what it waited for when that took over a second.
    let mut lines = message.lines().rev();
    assert!(lines.next().unwrap().starts_with("error:"), "{message}");
    assert!(
        lines.all(|l| l.starts_with("waiting for PostgreSQL at")),
        "{message}"
    );
    assert!(
        !message.contains("s3cret"),
        "the password is never shown: {message}"
    );
}

#[test]
fn rejected_lines_do_not_fail_the_run_and_are_reported_with_file_and_line() {
    let db = TestDb::new(Backend::Sqlite);
    let log = db.dir().join("bad.log");
    std::fs::write(
        &log,
        "2024-09-15 20:51:37 cust_27 /api/v1/resource1 500 0.488\nnot a log line\n",
    )
    .unwrap();
    let output = Command::new(binary())
        .args(["ingest", "--json", "--database", &db.url])
        .arg(&log)
        .output()
        .unwrap();
    assert!(output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("{}:2", log.display())), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        (report["lines"].as_u64(), report["rejected"].as_u64()),
        (Some(2), Some(1))
    );
}

#[test]
fn a_database_that_does_not_exist_yet_is_created_with_its_directories() {
    for backend in backends() {
        let db = TestDb::new(backend);
        let url = match backend {
            Backend::Sqlite => format!("sqlite://{}", db.dir().join("a/b/new.db").display()),
            Backend::Postgres => {
                let name = db.url.rsplit('/').next().unwrap();
                admin(&format!("DROP DATABASE {name} WITH (FORCE)"));
                db.url.clone()
            }
        };
        let migrated = Command::new(binary())
            .args(["migrate", "--database", &url])
            .output()
            .unwrap();
        assert!(migrated.status.success(), "{backend:?}: {migrated:?}");
        assert!(
            all_rows(&url).is_empty(),
            "{backend:?}: a usable, empty database"
        );
    }
}

#[test]
fn generate_refuses_zero_customers_or_days() {
    for flag in ["--customers", "--days"] {
        let output = Command::new(binary())
            .args(["generate", flag, "0", "-o", "/dev/null"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{flag} 0: {stderr}");
        assert!(stderr.contains(flag), "{stderr}");
    }
}

#[test]
fn serve_accepts_a_host_name_to_bind() {
    let db = TestDb::new(Backend::Sqlite);
    let server = Server::start(&db.url, &["--bind", "localhost:0"]);
    assert_eq!(server.get("/healthz").0, 200);
}

#[test]
fn demo_on_a_port_that_is_taken_fails_before_printing_its_hints() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(binary())
        .args(["demo", "--bind", &address, "--log"])
        .arg(dir.path().join("sample.log"))
        .arg("--database")
        .arg(format!("sqlite://{}", dir.path().join("demo.db").display()))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("binding {address}")), "{stderr}");
    assert!(!stderr.contains("try: curl"), "{stderr}");
}

#[test]
fn an_ingestion_into_an_in_memory_sqlite_database_commits() {
    let dir = tempfile::tempdir().unwrap();
    let log = generated_log(dir.path(), "a.log", 1_000, 5);
    for url in ["sqlite::memory:", "sqlite://:memory:"] {
        let output = ingest_command(url).arg(&log).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{url}: {stderr}");
        assert!(stderr.starts_with("ingested 1000 lines"), "{url}: {stderr}");
    }
}
