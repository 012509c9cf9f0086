//! The schema's migrations, compiled into the binary: a single file runs anywhere. This is what
//! `sqlx::migrate!` does, without its procedural macro, which builds sqlx and its drivers a second
//! time for the compiler (a third of a clean build). Versions, descriptions and checksums are the
//! macro's, so databases it migrated carry on.

use std::borrow::Cow;

use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};

/// Every migration file, oldest first: `VERSION_DESCRIPTION.sql` in `migrations/sqlite` and
/// `migrations/postgres` alike (a test checks that the directories hold just these).
macro_rules! migration_files {
    ($($file:literal),* $(,)?) => {
        const SQLITE: &[(&str, &str)] =
            &[$(($file, include_str!(concat!("../../migrations/sqlite/", $file)))),*];
        const POSTGRES: &[(&str, &str)] =
            &[$(($file, include_str!(concat!("../../migrations/postgres/", $file)))),*];
    };
}

migration_files!(
    "20241001000000_init.sql",
    "20241002000000_ingest_totals.sql",
    "20241003000000_wide_sums.sql",
    "20241004000000_file_identity.sql",
    "20241005000000_resources.sql",
    "20241006000000_months.sql",
    "20241007000000_lz4_blobs.sql",
);

pub fn sqlite() -> Migrator {
    migrator(SQLITE)
}

pub fn postgres() -> Migrator {
    migrator(POSTGRES)
}

fn migrator(files: &'static [(&'static str, &'static str)]) -> Migrator {
    Migrator::with_migrations(
        files
            .iter()
            .map(|&(file, sql)| {
                let (version, description) = version_and_description(file);
                Migration::new(
                    version,
                    Cow::Owned(description),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

/// `20241002000000_ingest_totals.sql` is version 20241002000000, "ingest totals".
fn version_and_description(file: &str) -> (i64, String) {
    let stem = file.strip_suffix(".sql").expect("a .sql file");
    let (version, name) = stem.split_once('_').expect("VERSION_NAME.sql");
    let version = version.parse().expect("a numeric version");
    (version, name.replace('_', " "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_in_the_migration_directories_is_embedded() {
        for (dir, embedded) in [("sqlite", SQLITE), ("postgres", POSTGRES)] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("migrations")
                .join(dir);
            let mut on_disk: Vec<String> = std::fs::read_dir(&path)
                .unwrap()
                .map(|entry| entry.unwrap().file_name().into_string().unwrap())
                .collect();
            on_disk.sort();
            let listed: Vec<&str> = embedded.iter().map(|&(file, _)| file).collect();
            assert_eq!(on_disk, listed, "{}", path.display());
        }
    }

    #[test]
    fn versions_and_descriptions_are_read_from_file_names() {
        assert_eq!(
            version_and_description("20241002000000_ingest_totals.sql"),
            (20241002000000, "ingest totals".to_string())
        );
        let versions: Vec<i64> = sqlite().iter().map(|m| m.version).collect();
        assert!(versions.is_sorted() && versions.len() == SQLITE.len());
    }

    /// What sqlx reads from the directories (as its macro did for earlier binaries): the same
    /// versions, descriptions and checksums, so databases they migrated are accepted.
    #[test]
    fn embedded_migrations_are_those_sqlx_reads_from_the_directories() {
        for (dir, embedded) in [("sqlite", sqlite()), ("postgres", postgres())] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("migrations")
                .join(dir);
            let resolved = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(Migrator::new(path))
                .unwrap();
            let fields = |m: &Migration| {
                (
                    m.version,
                    m.description.to_string(),
                    m.checksum.to_vec(),
                    m.no_tx,
                )
            };
            let want: Vec<_> = resolved.iter().map(fields).collect();
            let got: Vec<_> = embedded.iter().map(fields).collect();
            assert_eq!(got, want, "{dir}");
        }
    }
}
