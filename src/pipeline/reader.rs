//! Reads a [`Piece`] of an input and feeds its lines to an [`Aggregator`].

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};

use flate2::read::MultiGzDecoder;

use super::aggregate::{Aggregator, Position};
use super::source::{Head, Piece, PieceEnd, Plan, Source, file_id, plain_io_error};
use crate::store::FileId;

/// Bytes read at a time.
const BLOCK_BYTES: usize = 1 << 20;

/// Feeds every line of `piece` to `aggregator`; `on_bytes` hears how many input bytes were read.
/// A compressed input that breaks off is not an error: its lines before the break are kept and
/// the returned [`PieceEnd`] says where it broke.
pub fn read_piece(
    plan: &Plan,
    piece: &Piece,
    aggregator: &mut Aggregator,
    on_bytes: &mut dyn FnMut(u64),
) -> anyhow::Result<PieceEnd> {
    let input = &plan.inputs[piece.input];
    let name = input.source.display();
    aggregator.set_source(&name);
    match &input.source {
        Source::Stdin => feed_lines(io::stdin().lock(), Numbering::Lines, aggregator, on_bytes)
            .result
            .map(|()| PieceEnd::Whole {
                tail: 0,
                end_hash: 0,
            }),
        Source::File {
            path,
            gzip,
            file: planned,
            ..
        } => {
            let file = match open_planned(path, *planned) {
                Ok(file) => file,
                Err(why) => {
                    return Ok(PieceEnd::Lost {
                        problem: format!("cannot read {name}: {why}; the next run reads it"),
                    });
                }
            };
            if *gzip {
                let end = read_compressed(file, piece, (input.skip, input.retract), aggregator);
                on_bytes(piece.end - piece.start);
                end.map(|end| match end {
                    PieceEnd::Broken { decoded, problem } => PieceEnd::Broken {
                        decoded,
                        problem: format!("cannot read {name} completely: {problem}"),
                    },
                    whole => whole,
                })
            } else {
                if piece.start == input.start && input.retract > 0 {
                    retract_tail(&file, input.start, input.retract, aggregator)?;
                }
                let tail = read_range(
                    file.try_clone()?,
                    piece.start,
                    piece.end,
                    aggregator,
                    on_bytes,
                )?;
                // Not recorded (0) when the file was cut short meanwhile.
                let end_hash = Head::before(&file, piece.end).unwrap_or(0);
                Ok(PieceEnd::Whole { tail, end_hash })
            }
        }
    }
    .map_err(|error| anyhow::anyhow!("cannot read {name}: {}", plain_io_error(&error)))
}

/// Opens the file the plan found at `path`, unless it was removed or replaced since.
fn open_planned(path: &std::path::Path, planned: FileId) -> Result<File, String> {
    let file = File::open(path).map_err(|error| plain_io_error(&error))?;
    let metadata = file.metadata().map_err(|error| plain_io_error(&error))?;
    if file_id(&metadata) != planned {
        return Err("it was replaced while this run went on (log rotation?)".to_string());
    }
    Ok(file)
}

/// Feeds the lines of a compressed piece, after the decompressed bytes already ingested
/// (`already.0`); the `already.1` bytes after those are a last line counted without its newline,
/// taken back before it is read again whole (as a plain file's `retract`).
pub fn read_compressed(
    file: File,
    piece: &Piece,
    already: (u64, u64),
    aggregator: &mut Aggregator,
) -> io::Result<PieceEnd> {
    let (skip, retract) = already;
    let range = range_of(file, piece.start, piece.end)?;
    let mut decoder = MultiGzDecoder::new(io::BufReader::new(range));
    let broken = |decoded: u64, error: io::Error| PieceEnd::Broken {
        decoded,
        problem: format!(
            "{} (a file still being written, or damaged): the complete lines before that are kept",
            plain_io_error(&error)
        ),
    };
    match io::copy(&mut (&mut decoder).take(skip), &mut io::sink()) {
        Err(error) => return Ok(broken(0, error)),
        Ok(skipped) if skipped < skip => {
            let error = io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "it ends before the part already ingested",
            );
            return Ok(broken(0, error));
        }
        Ok(_) => {}
    }
    let mut line = Vec::new();
    if retract > 0 {
        match (&mut decoder).take(retract).read_to_end(&mut line) {
            Ok(read) if read as u64 == retract => retract_line(&line, aggregator),
            Ok(_) => {}
            Err(error) => return Ok(broken(0, error)),
        }
    }
    // The line taken back is fed again, whole, with what follows it.
    let fed = feed_lines(
        io::Cursor::new(line).chain(decoder),
        Numbering::Lines,
        aggregator,
        &mut |_| {},
    );
    let decoded = fed.bytes;
    Ok(match fed.result {
        Ok(()) => PieceEnd::Whole {
            tail: 0,
            end_hash: 0,
        },
        Err(error) => broken(decoded, error),
    })
}

/// Takes back the last line of an earlier run that had no newline then (`len` bytes at `start`):
/// it is about to be read again, whole.
pub fn retract_tail(
    file: &File,
    start: u64,
    len: u64,
    aggregator: &mut Aggregator,
) -> io::Result<()> {
    if len > MAX_LINE_BYTES as u64 {
        aggregator.retract_too_long();
        return Ok(());
    }
    let mut line = vec![0; len as usize];
    std::os::unix::fs::FileExt::read_exact_at(file, &mut line, start)?;
    retract_line(&line, aggregator);
    Ok(())
}

/// Takes back a line counted without its newline (a longer one was counted as too long).
fn retract_line(line: &[u8], aggregator: &mut Aggregator) {
    match line.len() > MAX_LINE_BYTES {
        true => aggregator.retract_too_long(),
        false => aggregator.retract(line),
    }
}

/// Feeds the lines of bytes `start..end` of a plain file (the source must be set already);
/// returns the length of a last line without a newline (0 when there is none).
pub fn read_range(
    file: File,
    start: u64,
    end: u64,
    aggregator: &mut Aggregator,
    on_bytes: &mut dyn FnMut(u64),
) -> io::Result<u64> {
    let fed = feed_lines(
        range_of(file, start, end)?,
        Numbering::Bytes(start),
        aggregator,
        on_bytes,
    );
    fed.result.map(|()| fed.tail)
}

fn range_of(mut file: File, start: u64, end: u64) -> io::Result<io::Take<File>> {
    file.seek(SeekFrom::Start(start))?;
    Ok(file.take(end.saturating_sub(start)))
}

/// How rejected lines are located.
#[derive(Clone, Copy)]
enum Numbering {
    /// By byte offset, starting at the given one.
    Bytes(u64),
    /// By line number, from 1.
    Lines,
}

/// The longest line kept (docs/spec.md section 1): longer ones are rejected as they stream past.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// The UTF-8 byte-order mark, skipped at the start of an input.
pub const BOM: &[u8] = b"\xEF\xBB\xBF";

/// What [`feed_lines`] fed.
struct Fed {
    /// Bytes of the lines fed.
    bytes: u64,
    /// Of those, the bytes of a last line that had no newline (0 when there was none).
    tail: u64,
    /// The error that stopped reading early, if one did (the unfinished line before it was not
    /// fed).
    result: io::Result<()>,
}

/// Splits `reader` into lines (a final line without newline counts too) and feeds them. A line
/// longer than [`MAX_LINE_BYTES`] is rejected without being held whole: memory stays flat.
fn feed_lines(
    mut reader: impl Read,
    numbering: Numbering,
    aggregator: &mut Aggregator,
    on_bytes: &mut dyn FnMut(u64),
) -> Fed {
    let mut buffer = vec![0u8; BLOCK_BYTES];
    let mut filled = 0;
    let first_byte = match numbering {
        Numbering::Bytes(start) => start,
        Numbering::Lines => 0,
    };
    let mut consumed_total = first_byte;
    let mut at_input_start = consumed_total == 0;
    let mut line_number = 0u64;
    // Inside a line that is too long (already rejected): its bytes are dropped up to its newline.
    let mut skipping = false;
    let mut skipped_line_start = 0;
    let position_of = |line_number: u64, offset: u64| match numbering {
        Numbering::Bytes(_) => Position::Byte(offset),
        Numbering::Lines => Position::Line(line_number),
    };
    loop {
        let read = match reader.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let bytes = if skipping {
                    skipped_line_start
                } else {
                    consumed_total
                } - first_byte;
                return Fed {
                    bytes,
                    tail: 0,
                    result: Err(e),
                };
            }
        };
        aggregator.add_bytes(read as u64);
        on_bytes(read as u64);
        filled += read;
        let mut start = 0;
        if at_input_start {
            if filled < BOM.len() && BOM.starts_with(&buffer[..filled]) {
                continue; // too few bytes yet to tell
            }
            at_input_start = false;
            if buffer[..filled].starts_with(BOM) {
                start = BOM.len();
            }
        }
        let first = start;
        for end in memchr::memchr_iter(b'\n', &buffer[first..filled]).map(|i| first + i) {
            if std::mem::take(&mut skipping) {
                start = end + 1;
                continue;
            }
            line_number += 1;
            let position = position_of(line_number, consumed_total + start as u64);
            if end - start > MAX_LINE_BYTES {
                aggregator.reject_too_long(&buffer[start..end], position);
            } else {
                aggregator.feed(&buffer[start..end], position);
            }
            start = end + 1;
        }
        if !skipping && filled - start > MAX_LINE_BYTES {
            line_number += 1;
            let position = position_of(line_number, consumed_total + start as u64);
            aggregator.reject_too_long(&buffer[start..filled], position);
            skipping = true;
            skipped_line_start = consumed_total + start as u64;
        }
        if skipping {
            start = filled;
        }
        buffer.copy_within(start..filled, 0);
        filled -= start;
        consumed_total += start as u64;
    }
    let mut tail = 0;
    if skipping {
        tail = consumed_total - skipped_line_start;
    } else if filled > 0 {
        // At most MAX_LINE_BYTES: a longer rest would be skipping.
        let position = position_of(line_number + 1, consumed_total);
        aggregator.feed(&buffer[..filled], position);
        consumed_total += filled as u64;
        tail = filled as u64;
    }
    Fed {
        bytes: consumed_total - first_byte,
        tail,
        result: Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Reject;

    const GOOD: &[u8] = b"2024-09-15 20:51:37 cust_1 /x 200 0.488";

    /// `size` bytes of `x`, produced as they are read (never held whole).
    struct LongLine {
        left: usize,
    }

    impl Read for LongLine {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = out.len().min(self.left).min(4096);
            out[..n].fill(b'x');
            self.left -= n;
            Ok(n)
        }
    }

    fn feed(reader: impl Read, numbering: Numbering) -> (u64, Vec<(Reject, Position)>) {
        let mut aggregator = Aggregator::new(100);
        feed_lines(reader, numbering, &mut aggregator, &mut |_| {})
            .result
            .unwrap();
        let (groups, _, rejects) = aggregator.drain();
        let accepted = groups
            .iter()
            .flat_map(|(_, numbered)| &numbered.groups)
            .map(|g| g.3.total())
            .sum();
        let reasons = rejects
            .iter()
            .map(|r| {
                let reason = Reject::ALL.into_iter().find(|x| x.code() == r.code);
                (reason.expect("a known code"), r.position)
            })
            .collect();
        (accepted, reasons)
    }

    #[test]
    fn a_file_removed_or_replaced_after_planning_is_lost_not_misread() {
        use crate::pipeline::source::{Found, Source, plan};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("z.log");
        std::fs::write(&path, [GOOD, b"\n"].concat()).unwrap();
        let found = Found {
            sources: vec![Source::file(&path).unwrap()],
            ..Found::default()
        };
        let plan = plan(found, &Default::default(), 1 << 20, false).unwrap();
        let piece = plan.units[0][0];
        // Rotated: the planned file has another name, a new one took its place.
        std::fs::rename(&path, dir.path().join("z.log.1")).unwrap();
        std::fs::write(&path, b"new\n").unwrap();
        let mut aggregator = Aggregator::new(10);
        let end = read_piece(&plan, &piece, &mut aggregator, &mut |_| {}).unwrap();
        assert!(matches!(&end, PieceEnd::Lost { problem } if problem.contains("replaced")));
        assert_eq!(plan.progress_of(&piece, &end), None, "nothing is recorded");
        assert_eq!(aggregator.lines(), 0, "nothing of the new file is read");
        std::fs::remove_file(&path).unwrap();
        let end = read_piece(&plan, &piece, &mut aggregator, &mut |_| {}).unwrap();
        assert!(matches!(&end, PieceEnd::Lost { problem } if problem.contains("no such file")));
    }

    #[test]
    fn a_byte_order_mark_at_the_start_of_an_input_is_skipped() {
        let text = [b"\xEF\xBB\xBF", GOOD, b"\n", GOOD].concat();
        assert_eq!(feed(&text[..], Numbering::Bytes(0)), (2, vec![]));
        assert_eq!(feed(&text[..], Numbering::Lines), (2, vec![]));
        // Only at the start of the input: a piece that starts later has no mark to skip.
        let (accepted, rejects) = feed(&text[..], Numbering::Bytes(100));
        assert_eq!((accepted, rejects.len()), (1, 1));
        // One byte at a time, the mark is still recognised.
        let slow = io::BufReader::with_capacity(1, &text[..]);
        assert_eq!(feed(slow, Numbering::Lines), (2, vec![]));
    }

    #[test]
    fn a_line_over_64_kib_is_rejected_as_it_streams_and_the_next_line_counts() {
        let long = LongLine { left: 10 << 20 }
            .chain(&b"\n"[..])
            .chain(GOOD)
            .chain(&b"\n"[..]);
        let (accepted, rejects) = feed(long, Numbering::Lines);
        assert_eq!(accepted, 1);
        assert_eq!(rejects, [(Reject::LineTooLong, Position::Line(1))]);
        // At the end of the input, without a newline, after a good line.
        let long = GOOD.chain(&b"\n"[..]).chain(LongLine {
            left: MAX_LINE_BYTES + 1,
        });
        let (accepted, rejects) = feed(long, Numbering::Bytes(0));
        assert_eq!(accepted, 1);
        assert_eq!(
            rejects,
            [(Reject::LineTooLong, Position::Byte(GOOD.len() as u64 + 1))]
        );
        // Exactly the limit is still a line (a bad one here, but not too long).
        let (_, rejects) = feed(
            LongLine {
                left: MAX_LINE_BYTES,
            },
            Numbering::Lines,
        );
        assert_eq!(rejects, [(Reject::FieldCount, Position::Line(1))]);
    }
}
