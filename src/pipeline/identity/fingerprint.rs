//! Fingerprints of a file's content: of its first bytes, of the bytes before an offset, of its
//! first line; a compressed file's of its decompressed bytes.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;

use flate2::read::MultiGzDecoder;

use crate::store::StoredProgress;

/// How many leading bytes are fingerprinted.
pub const HEAD_BYTES: u64 = 4096;

/// FNV-1a: stable across versions and platforms.
pub(super) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_START, |hash, &b| fnv_step(hash, b))
}

pub(super) const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

pub(super) fn fnv_step(hash: u64, byte: u8) -> u64 {
    (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
}

/// A fingerprint of a file's first bytes (FNV-1a, stable across versions and platforms).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Head {
    pub hash: u64,
    pub len: u64,
}

impl Head {
    /// The fingerprint of the first `min(limit, HEAD_BYTES)` bytes of `file` (as stored: for a
    /// compressed file, its compressed bytes).
    pub fn of(file: &File, limit: u64) -> io::Result<Head> {
        let mut bytes = vec![0; limit.min(HEAD_BYTES) as usize];
        let len = read_fully_at(file, &mut bytes, 0)?;
        Ok(Head::of_bytes(&bytes[..len]))
    }

    pub fn of_bytes(bytes: &[u8]) -> Head {
        Head {
            hash: fnv1a(bytes),
            len: bytes.len() as u64,
        }
    }

    /// The fingerprint of the (up to) [`HEAD_BYTES`] bytes before `offset` of a plain file.
    pub fn before(file: &File, offset: u64) -> io::Result<u64> {
        let len = offset.min(HEAD_BYTES);
        let mut bytes = vec![0; len as usize];
        file.read_exact_at(&mut bytes, offset - len)?;
        Ok(fnv1a(&bytes))
    }

    /// Whether this is the fingerprint `stored` holds.
    pub fn is(&self, stored: &StoredProgress) -> bool {
        self.hash == stored.head_hash && self.len == stored.head_len
    }
}

/// Reads from `offset` until `buffer` is full or the file ends; returns the bytes read.
fn read_fully_at(file: &File, buffer: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read_at(&mut buffer[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}

/// A file read from its start without moving its shared offset.
pub(super) struct FromStart<'a> {
    pub file: &'a File,
    pub at: u64,
}

impl Read for FromStart<'_> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let read = self.file.read_at(buffer, self.at)?;
        self.at += read as u64;
        Ok(read)
    }
}

/// A compressed file's decompressed bytes, from its start.
pub(super) fn decompressed(file: &File) -> impl Read + '_ {
    MultiGzDecoder::new(io::BufReader::with_capacity(
        64 * 1024,
        FromStart { file, at: 0 },
    ))
}

/// Up to `limit` bytes of `reader`: as many as it gives before its end or an error (a compressed
/// file still being written breaks off; what came before counts).
pub(super) fn first_of(reader: impl Read, limit: u64) -> Vec<u8> {
    first_of_checked(reader, limit).0
}

/// [`first_of`], and whether `reader` broke off (an error) before `limit` bytes.
pub(super) fn first_of_checked(reader: impl Read, limit: u64) -> (Vec<u8>, bool) {
    let mut bytes = Vec::new();
    let mut reader = reader.take(limit);
    let mut block = [0; 8192];
    loop {
        match reader.read(&mut block) {
            Ok(0) => return (bytes, false),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return (bytes, true),
            Ok(n) => bytes.extend_from_slice(&block[..n]),
        }
    }
}

/// Up to `limit` bytes from the start of what a file's lines are read from: its bytes, or its
/// decompressed bytes (as far as they go) when it is compressed.
pub fn first_content_bytes(file: &File, gzip: bool, limit: u64) -> Vec<u8> {
    match gzip {
        false => first_of(FromStart { file, at: 0 }, limit),
        true => first_of(decompressed(file), limit),
    }
}

/// The fingerprint of the first `min(limit, HEAD_BYTES)` bytes of what a file's lines are read
/// from: its bytes, or, when it is compressed, its decompressed bytes (as far as they go).
pub fn content_head(file: &File, gzip: bool, limit: u64) -> io::Result<Head> {
    match gzip {
        false => Head::of(file, limit),
        true => Ok(Head::of_bytes(&first_of(
            decompressed(file),
            limit.min(HEAD_BYTES),
        ))),
    }
}

/// [`content_head`], or `None` for a compressed file that breaks off before `limit` bytes (or
/// [`HEAD_BYTES`]): still being written, it cannot be told yet.
pub fn whole_content_head(file: &File, gzip: bool, limit: u64) -> io::Result<Option<Head>> {
    if !gzip {
        return Head::of(file, limit).map(Some);
    }
    let (first, broke) = first_of_checked(decompressed(file), limit.min(HEAD_BYTES));
    Ok((!broke).then(|| Head::of_bytes(&first)))
}

/// A name of a file's content that stays as the file grows, is renamed, copied or compressed:
/// the fingerprint of its first line (of its first [`HEAD_BYTES`] when that line is longer).
/// `None` while the file has no complete first line.
pub fn first_line_of(file: &File, gzip: bool) -> Option<u64> {
    let first = match gzip {
        false => first_of(FromStart { file, at: 0 }, HEAD_BYTES),
        true => first_of(decompressed(file), HEAD_BYTES),
    };
    match memchr::memchr(b'\n', &first) {
        Some(end) => Some(fnv1a(&first[..end])),
        None if first.len() as u64 == HEAD_BYTES => Some(fnv1a(&first)),
        None => None,
    }
}

/// What a compressed file holds before an offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Before {
    /// The fingerprint of the (up to) [`HEAD_BYTES`] decompressed bytes before it.
    Hash(u64),
    /// Its stream ends whole before the offset.
    Shorter,
    /// Its stream breaks off before the offset: still being written, or damaged.
    Broken,
}

/// What the decompressed bytes of a compressed file hold before `offset`.
pub(super) fn decompressed_before(file: &File, offset: u64) -> Before {
    let skip = offset.saturating_sub(HEAD_BYTES);
    let mut reader = decompressed(file);
    let mut last = Vec::new();
    let read = io::copy(&mut (&mut reader).take(skip), &mut io::sink())
        .and_then(|_| (&mut reader).take(offset - skip).read_to_end(&mut last));
    match read {
        Err(_) => Before::Broken,
        Ok(_) if skip + (last.len() as u64) < offset => Before::Shorter,
        Ok(_) => Before::Hash(fnv1a(&last)),
    }
}
