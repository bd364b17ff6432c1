//! fleetflow's runtime: command line, configuration, sources, parsing, sinks, routing and the job
//! loop around the pure dataflows of the `fleetflow-dataflows` crate.
//!
//! Data flows one way: `source -> parse -> dataflows -> route -> sinks`.
#![forbid(missing_docs)]

pub mod affinity;
pub mod alert_positions;
pub mod allocator;
pub mod aws;
pub mod aws_setup;
pub mod bench;
pub mod bench_plot;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod encode;
pub mod failure;
pub mod generate;
pub mod histogram;
pub mod http;
pub mod job;
pub mod kafka_admin;
pub mod live;
pub mod metrics;
pub mod parse;
pub mod peer_sockets;
pub mod produce;
pub mod prometheus;
pub mod reference;
pub mod rejected;
pub mod replay;
pub mod route;
pub mod sinks;
pub mod sources;
pub mod status;
pub mod status_page;
pub mod time_arg;
