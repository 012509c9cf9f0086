//! The inputs the fuzz targets saved (`fuzz/regressions/<target>/`: findings and small inputs that
//! reach distinct paths), run through the same checks as the fuzz targets (`fuzz_checks.rs`).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use crate::fuzz_checks::{check_histogram_decode, check_merge, check_parse_line};

/// Runs `check` on every file saved for `target`; fails naming every input that fails.
fn every_saved_input_passes(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(target);
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no saved inputs in {}", dir.display());
    let mut failures = Vec::new();
    for path in &paths {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| check(&data))) {
            let message = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("(no message)");
            failures.push(format!("{}:\n{message}", path.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} saved {target} inputs fail:\n\n{}",
        failures.len(),
        paths.len(),
        failures.join("\n\n"),
    );
}

#[test]
fn every_saved_parse_line_input_agrees_with_the_reference_parser() {
    every_saved_input_passes("parse_line", check_parse_line);
}

#[test]
fn every_saved_histogram_input_decodes_to_what_it_spells_or_is_refused() {
    every_saved_input_passes("histogram_decode", check_histogram_decode);
}

#[test]
fn every_saved_merge_input_gives_the_statistics_of_the_sorting_oracle() {
    every_saved_input_passes("merge", check_merge);
}
