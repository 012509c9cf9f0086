//! Integration tests: one binary, a module per theme.

mod api;
mod cli;
mod common;
mod oracle;
mod pipeline;
mod store;
