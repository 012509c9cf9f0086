#![no_main]

// The check lives with the regression tests that replay fuzz/regressions/histogram_decode/.
#[allow(dead_code)]
#[path = "../../tests/it/fuzz_checks.rs"]
mod fuzz_checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_checks::check_histogram_decode(data));
