//! Integration tests: one binary, a module per theme.

mod api;
mod auth;
mod cli;
mod common;
mod oracle;
mod pipeline;
mod serving;
mod store;
