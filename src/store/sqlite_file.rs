//! What the server must know about a SQLite file it reads but another program writes: which file
//! the path names now (a file replaced by `mv` is a new one), whether it exists, and, when SQLite
//! cannot open it as this user, what to grant.

use std::path::{Path, PathBuf};

/// A file's identity: the device and inode the path named when it was looked at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct FileIdentity {
    device: u64,
    inode: u64,
}

impl FileIdentity {
    /// The identity of the file at `path`, `None` when there is none.
    pub fn of(path: &Path) -> Option<FileIdentity> {
        use std::os::unix::fs::MetadataExt;
        let metadata = std::fs::metadata(path).ok()?;
        Some(FileIdentity {
            device: metadata.dev(),
            inode: metadata.ino(),
        })
    }
}

/// The database file the server was told to serve does not exist (yet).
#[derive(Debug, thiserror::Error)]
#[error(
    "the database file {} does not exist: nothing is created, requests get 503 until it appears",
    crate::errors::shown_path(.0)
)]
pub struct DatabaseFileMissing(pub PathBuf);

/// A WAL-mode database's companions: the write-ahead log and its shared-memory index.
fn companion(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Whether the file's header says it is in WAL mode (its read and write versions are 2).
fn in_wal_mode(path: &Path) -> bool {
    use std::io::Read;
    let mut header = [0u8; 20];
    std::fs::File::open(path)
        .and_then(|mut file| file.read_exact(&mut header))
        .is_ok_and(|()| header[18] == 2 && header[19] == 2)
}

fn may(path: &Path, access: rustix::fs::Access) -> bool {
    rustix::fs::access(path, access).is_ok()
}

/// What this process must be granted to read the database at `path` when SQLite refused to open
/// it, in one sentence naming the files and the directory; `None` when permissions are not the
/// cause.
pub(super) fn what_to_grant(path: &Path) -> Option<String> {
    use rustix::fs::Access;
    let shown = |path: &Path| crate::errors::shown_path(path).to_string();
    if !may(path, Access::READ_OK) {
        return Some(format!("grant this user read access to {}", shown(path)));
    }
    if !in_wal_mode(path) {
        return None;
    }
    let (wal, shm) = (companion(path, "-wal"), companion(path, "-shm"));
    let unreadable: Vec<String> = [&wal, &shm]
        .into_iter()
        .filter(|file| file.exists() && !may(file, Access::READ_OK))
        .map(|file| shown(file))
        .collect();
    if !unreadable.is_empty() {
        return Some(format!(
            "grant this user read access to {}",
            unreadable.join(" and ")
        ));
    }
    let directory = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let missing = !wal.exists() || !shm.exists();
    (missing && !may(directory, Access::WRITE_OK)).then(|| {
        format!(
            "{} is in WAL mode and its {} and {} files, which a reader needs, are missing while \
             this user may not create them: grant it write access to the directory {}, or open \
             the database once as the user who writes it (`logstats migrate`: from then on they \
             stay), or, for an archive that never changes, serve it with `?immutable=1`",
            shown(path),
            shown(&wal),
            shown(&shm),
            shown(directory)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replaced_file_has_another_identity_and_a_missing_one_none() {
        let dir = tempfile::tempdir().unwrap();
        let (path, other) = (dir.path().join("a.db"), dir.path().join("b.db"));
        std::fs::write(&path, b"one").unwrap();
        std::fs::write(&other, b"two").unwrap();
        let before = FileIdentity::of(&path).unwrap();
        assert_eq!(
            FileIdentity::of(&path),
            Some(before),
            "stable while unchanged"
        );
        std::fs::rename(&other, &path).unwrap();
        assert_ne!(FileIdentity::of(&path), Some(before));
        std::fs::remove_file(&path).unwrap();
        assert_eq!(FileIdentity::of(&path), None);
    }

    #[test]
    fn a_file_that_is_not_in_wal_mode_needs_no_companions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        std::fs::write(&path, [0u8; 100]).unwrap();
        assert_eq!(what_to_grant(&path), None);
    }
}
