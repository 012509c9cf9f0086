//! Helpers shared by unit tests.

use proptest::sample::Index;

/// `items` cut at the given places (in any order, duplicates allowed): consecutive pieces, some
/// possibly empty, that together are `items`.
pub fn pieces<'a, T>(items: &'a [T], cuts: &[Index]) -> Vec<&'a [T]> {
    let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(items.len() + 1)).collect();
    cuts.sort_unstable();
    let mut start = 0;
    cuts.into_iter()
        .chain([items.len()])
        .map(|end| {
            let piece = &items[start..end];
            start = end;
            piece
        })
        .collect()
}
