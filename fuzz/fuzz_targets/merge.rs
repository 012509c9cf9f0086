#![no_main]

// The check lives with the regression tests that replay fuzz/regressions/merge/.
#[allow(dead_code)]
#[path = "../../tests/it/fuzz_checks.rs"]
mod fuzz_checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_checks::check_merge(data));
