//! Integration tests: one binary, a module per theme.

mod api;
mod auth;
mod browser;
mod cli;
mod cluster;
mod common;
mod concurrency;
mod docs;
mod fuzz_checks;
mod fuzz_regressions;
mod hostile;
mod layout;
mod oracle;
mod ownership;
mod pipeline;
mod reads;
mod reports;
mod resources;
mod robustness;
mod rotation;
mod rotation_attack;
mod serving;
mod spilling;
mod store;
mod stream;
mod surprises;
