//! Operating a running job: its counters ([`metrics`]) and their Prometheus exposition, the live
//! state behind queries, the HTTP server, the status page and its JSON document.

pub mod alert_positions;
pub mod date_queries;
pub mod histogram;
pub mod http;
pub mod latency;
pub mod live_state;
pub mod metrics;
pub mod operator_profile;
pub mod prometheus;
pub mod rejects;
pub mod sink_counters;
pub mod status;
pub mod status_page;
pub mod stored_records;
