//! logstats: API request logs in, exact per-customer daily statistics out, served over HTTP.
//!
//! The data flow, module by module:
//!
//! - [`record`] parses a log line (bytes) into a request, or a reason to reject it;
//! - [`resources`] turns its path into a resource and keeps a day's breakdown by resource;
//! - [`stats`] keeps a (customer, day) group as exact, mergeable state ([`stats::DayStats`]:
//!   counts, integer sums, a [`histogram`] of durations) and derives docs/spec.md's statistics;
//! - [`pipeline`] runs ingestion on timely dataflow: plan inputs into units, read and pre-aggregate
//!   per worker, merge by customer, commit each epoch with its file offsets in one transaction;
//! - [`store`] holds the only SQL (SQLite or PostgreSQL): merge-commits, progress, queries;
//! - [`api`] serves it over HTTP (axum), with OpenAPI docs and the dashboard; [`sla`] computes
//!   its monthly SLA report from stored days;
//! - [`nats`] reads and writes log streams (NATS JetStream), for ingestion and `ship`;
//! - [`cli`] and [`app`] are the command line; [`generate`] writes sample logs.

pub mod api;
pub mod app;
pub mod cli;
pub mod day;
pub mod errors;
pub mod generate;
pub mod histogram;
pub mod nats;
pub mod pipeline;
pub mod record;
pub mod resources;
pub mod ship;
pub mod sla;
pub mod stats;
pub mod store;
#[cfg(test)]
mod testing;
