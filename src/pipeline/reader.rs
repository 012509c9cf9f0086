//! Reads a [`Piece`] of an input and feeds its lines to an [`Aggregator`].

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};

use anyhow::Context;
use flate2::read::MultiGzDecoder;

use super::aggregate::{Aggregator, Position};
use super::source::{Piece, Plan, Source};

/// Bytes read at a time.
const BLOCK_BYTES: usize = 1 << 20;

/// Feeds every line of `piece` to `aggregator`; `on_bytes` hears how many input bytes were read.
pub fn read_piece(
    plan: &Plan,
    piece: &Piece,
    aggregator: &mut Aggregator,
    on_bytes: &mut dyn FnMut(u64),
) -> anyhow::Result<()> {
    let input = &plan.inputs[piece.input];
    let name = input.source.display();
    aggregator.set_source(&name);
    match &input.source {
        Source::Stdin => feed_lines(io::stdin().lock(), Numbering::Lines, aggregator, on_bytes),
        Source::File { path, gzip, .. } => {
            let file = File::open(path).with_context(|| format!("cannot read {name}"))?;
            if *gzip {
                let range = range_of(file, piece.start, piece.end)?;
                let decoder = MultiGzDecoder::new(io::BufReader::new(range));
                feed_lines(decoder, Numbering::Lines, aggregator, &mut |_| {})?;
                on_bytes(piece.end - piece.start);
                Ok(())
            } else {
                read_range(file, piece.start, piece.end, aggregator, on_bytes)
            }
        }
    }
    .with_context(|| format!("reading {name}"))
}

/// Feeds the lines of bytes `start..end` of a plain file (the source must be set already).
pub fn read_range(
    file: File,
    start: u64,
    end: u64,
    aggregator: &mut Aggregator,
    on_bytes: &mut dyn FnMut(u64),
) -> anyhow::Result<()> {
    feed_lines(
        range_of(file, start, end)?,
        Numbering::Bytes(start),
        aggregator,
        on_bytes,
    )
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

/// Splits `reader` into lines (a final line without newline counts too) and feeds them.
fn feed_lines(
    mut reader: impl Read,
    numbering: Numbering,
    aggregator: &mut Aggregator,
    on_bytes: &mut dyn FnMut(u64),
) -> anyhow::Result<()> {
    let mut buffer = vec![0u8; BLOCK_BYTES];
    let mut filled = 0;
    let mut consumed_total = match numbering {
        Numbering::Bytes(start) => start,
        Numbering::Lines => 0,
    };
    let mut line_number = 0u64;
    loop {
        if filled == buffer.len() {
            // A line longer than the buffer: grow it rather than split the line.
            buffer.resize(buffer.len() * 2, 0);
        }
        let read = match reader.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        aggregator.add_bytes(read as u64);
        on_bytes(read as u64);
        filled += read;
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', &buffer[..filled]) {
            line_number += 1;
            let position = match numbering {
                Numbering::Bytes(_) => Position::Byte(consumed_total + start as u64),
                Numbering::Lines => Position::Line(line_number),
            };
            aggregator.feed(&buffer[start..end], position);
            start = end + 1;
        }
        buffer.copy_within(start..filled, 0);
        filled -= start;
        consumed_total += start as u64;
    }
    if filled > 0 {
        let position = match numbering {
            Numbering::Bytes(_) => Position::Byte(consumed_total),
            Numbering::Lines => Position::Line(line_number + 1),
        };
        aggregator.feed(&buffer[..filled], position);
    }
    Ok(())
}
