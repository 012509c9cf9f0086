//! Where rejected lines go once their epoch is committed: a few samples for the summary, and every
//! one to the `--rejects` file, each located by file and line number (byte offsets, as workers
//! report them in plain files, are turned into line numbers by counting newlines).

use std::collections::HashMap;
use std::io::Write;

use super::aggregate::{Position, Rejected};

/// The committer's output of rejected lines.
pub(super) struct RejectsOutput {
    file: Option<std::io::BufWriter<std::fs::File>>,
    samples: usize,
}

impl RejectsOutput {
    /// Writes every rejected line to `file` (when given) and keeps `samples` of them.
    pub fn new(file: Option<std::fs::File>, samples: usize) -> RejectsOutput {
        RejectsOutput {
            file: file.map(std::io::BufWriter::new),
            samples,
        }
    }

    /// Records the rejected lines of a commit: the first few as `file:line: reason: text` into
    /// `samples` (up to the number wanted), every one as `file:line<TAB>code<TAB>text` to the
    /// file, in file and position order.
    pub fn record(
        &mut self,
        mut rejects: Vec<Rejected>,
        samples: &mut Vec<String>,
    ) -> anyhow::Result<()> {
        rejects.sort_by(|a, b| (&a.file, a.position).cmp(&(&b.file, b.position)));
        // Counted afresh each commit: a file followed may have been replaced since the last.
        let mut lines = LineNumbers::default();
        for rejected in rejects {
            let location = match lines.of(&rejected.file, rejected.position) {
                Some(n) => format!("{}:{n}", rejected.file),
                None => format!("{}:byte {}", rejected.file, byte_of(rejected.position)),
            };
            if samples.len() < self.samples {
                samples.push(format!(
                    "{location}: {}: {}",
                    rejected.reason, rejected.text
                ));
            }
            if let Some(file) = self.file.as_mut() {
                writeln!(file, "{location}\t{}\t{}", rejected.code, rejected.text)?;
            }
        }
        if let Some(file) = self.file.as_mut() {
            file.flush()?;
        }
        Ok(())
    }
}

fn byte_of(position: Position) -> u64 {
    match position {
        Position::Byte(b) | Position::Line(b) => b,
    }
}

/// Turns byte offsets into line numbers by counting newlines, resuming where the last count ended.
#[derive(Default)]
struct LineNumbers {
    counted: HashMap<String, (u64, u64)>,
}

impl LineNumbers {
    fn of(&mut self, file: &str, position: Position) -> Option<u64> {
        let offset = match position {
            Position::Line(n) => return Some(n),
            Position::Byte(offset) => offset,
        };
        let (mut at, mut newlines) = self.counted.get(file).copied().unwrap_or((0, 0));
        if offset < at {
            (at, newlines) = (0, 0);
        }
        let handle = std::fs::File::open(file).ok()?;
        let mut buffer = vec![0u8; 1 << 20];
        while at < offset {
            let want = buffer.len().min((offset - at) as usize);
            let read =
                std::os::unix::fs::FileExt::read_at(&handle, &mut buffer[..want], at).ok()?;
            if read == 0 {
                return None;
            }
            newlines += memchr::memchr_iter(b'\n', &buffer[..read]).count() as u64;
            at += read as u64;
        }
        self.counted.insert(file.to_string(), (at, newlines));
        Some(newlines + 1)
    }
}
