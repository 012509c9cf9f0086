//! A customer name as a hash map key, held inline when short: a lookup then compares bytes that
//! sit in the table itself instead of following a pointer to the heap, which at a customer base
//! of hundreds of thousands is a cache miss for every line read.

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};

/// The longest name kept inline (the key is 24 bytes either way).
const INLINE: usize = 22;

#[derive(Clone, Debug)]
pub enum NameKey {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<[u8]>),
}

impl NameKey {
    pub fn new(name: &str) -> NameKey {
        NameKey::of_bytes(name.as_bytes())
    }

    /// The key of bytes that need not be text (a raw request path).
    pub fn of_bytes(name: &[u8]) -> NameKey {
        if name.len() > INLINE {
            return NameKey::Heap(name.into());
        }
        let mut bytes = [0; INLINE];
        bytes[..name.len()].copy_from_slice(name);
        NameKey::Inline {
            len: name.len() as u8,
            bytes,
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            NameKey::Inline { len, bytes } => &bytes[..usize::from(*len)],
            NameKey::Heap(bytes) => bytes,
        }
    }
}

/// Hashes as the bytes do, so that a map of keys is searched with a name's bytes.
impl Hash for NameKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl PartialEq for NameKey {
    fn eq(&self, other: &NameKey) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for NameKey {}

impl Borrow<[u8]> for NameKey {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_names_are_found_by_their_bytes() {
        let names = [
            "",
            "a",
            "cust_12345",
            &"x".repeat(INLINE),
            &"y".repeat(INLINE + 1),
        ];
        let map: rustc_hash::FxHashMap<NameKey, usize> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (NameKey::new(n), i))
            .collect();
        for (i, name) in names.iter().enumerate() {
            assert_eq!(map.get(name.as_bytes()), Some(&i), "{name}");
        }
        assert_eq!(map.get("cust_1234".as_bytes()), None);
        assert_eq!(size_of::<NameKey>(), 24);
    }
}
