//! A list that grows in chunks: growing never copies what it holds, so it never holds twice its
//! memory, and its first chunks are small, so a list of a few values costs little.

use crate::histogram::allocated;

/// Values pushed into chunks and found by index. Chunk `k` holds `FIRST << k` values up to
/// `LAST`, every chunk after that `LAST`.
pub struct Chunked<T> {
    chunks: Vec<Vec<T>>,
    len: usize,
    /// Bytes of the chunks, as allocated.
    chunk_bytes: usize,
}

const FIRST: usize = 64;
/// The chunk at which sizes stop doubling.
const GROWING: usize = 7;
const LAST: usize = FIRST << (GROWING - 1);
/// Values held by the growing chunks: FIRST + 2 FIRST + ... + LAST.
const IN_GROWING: usize = FIRST * ((1 << GROWING) - 1);

impl<T> Chunked<T> {
    pub fn new() -> Chunked<T> {
        Chunked {
            chunks: Vec::new(),
            len: 0,
            chunk_bytes: 0,
        }
    }

    /// Appends `value`; its index.
    pub fn push(&mut self, value: T) -> usize {
        let (chunk, _) = place(self.len);
        if chunk == self.chunks.len() {
            self.chunks.push(Vec::with_capacity(chunk_len(chunk)));
            self.chunk_bytes += chunk_bytes::<T>(chunk);
        }
        self.chunks[chunk].push(value);
        self.len += 1;
        self.len - 1
    }

    pub fn get_mut(&mut self, index: usize) -> &mut T {
        let (chunk, offset) = place(index);
        &mut self.chunks[chunk][offset]
    }

    /// Asks the processor to load the value at `index` into its cache: values read in an order
    /// of their own (a table's groups in key order) otherwise wait on memory one at a time.
    #[inline]
    pub fn prefetch(&self, index: usize) {
        let (chunk, offset) = place(index);
        #[cfg(target_arch = "x86_64")]
        if let Some(value) = self.chunks.get(chunk).and_then(|c| c.get(offset)) {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            // A hint: it reads nothing and cannot fault, whatever the address.
            unsafe { _mm_prefetch::<_MM_HINT_T0>((value as *const T).cast::<i8>()) };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (chunk, offset);
    }

    /// Bytes held, including the room not used yet, and what the next push adds.
    pub fn bytes(&self) -> (usize, usize) {
        // Called for every value added to a table: no walk over the chunks.
        let held = self.chunk_bytes + allocated(self.chunks.capacity() * size_of::<Vec<T>>());
        let (chunk, _) = place(self.len);
        let next = match chunk == self.chunks.len() {
            true => chunk_bytes::<T>(chunk),
            false => 0,
        };
        (held, next)
    }
}

fn chunk_len(chunk: usize) -> usize {
    FIRST << chunk.min(GROWING - 1)
}

fn chunk_bytes<T>(chunk: usize) -> usize {
    allocated(chunk_len(chunk) * size_of::<T>())
}

/// The chunk of the value at `index`, and its offset in it.
fn place(index: usize) -> (usize, usize) {
    if index < IN_GROWING {
        let chunk = (index / FIRST + 1).ilog2() as usize;
        (chunk, index - FIRST * ((1 << chunk) - 1))
    } else {
        let past = index - IN_GROWING;
        (GROWING + past / LAST, past % LAST)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_index_has_its_own_place_in_order() {
        let mut expected = (0, 0);
        for index in 0..IN_GROWING + 3 * LAST {
            assert_eq!(place(index), expected, "{index}");
            expected.1 += 1;
            if expected.1 == chunk_len(expected.0) {
                expected = (expected.0 + 1, 0);
            }
        }
    }

    #[test]
    fn values_are_found_where_they_were_pushed() {
        let mut list = Chunked::new();
        for value in 0..20_000u32 {
            assert_eq!(list.push(value), value as usize);
        }
        for index in [0, 63, 64, 8127, 8128, 19_999] {
            assert_eq!(*list.get_mut(index), index as u32);
        }
        let (held, next) = list.bytes();
        assert!(held >= 20_000 * 4 && next == 0, "{held} {next}");
    }
}
