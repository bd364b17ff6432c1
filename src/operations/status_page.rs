//! `GET /`: the operator's page, one HTML file embedded in the binary (no build step). It draws
//! `GET /api/status` (see [`crate::operations::status`]) every two seconds without reloading: the job's
//! overview, throughput, watermark lag and window latency over time, records out per stream,
//! sink health, Kafka lag, the latest late and malformed records, alerts with where their
//! vehicles were last seen, and speeders by date.

/// The page.
pub const PAGE: &str = include_str!("status_page.html");
