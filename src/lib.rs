//! fleetflow's runtime: command line, configuration, sources, parsing, sinks, routing and the job
//! loop around the pure dataflows of the `fleetflow-dataflows` crate.
//!
//! Data flows one way: `source -> parse -> dataflows -> route -> sinks`.
#![forbid(missing_docs)]

pub mod affinity;
pub mod aws;
pub mod checkpoints;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod counting_allocator;
pub mod encode;
pub mod failure;
pub mod job;
pub mod kafka_admin;
pub mod malloc_tuning;
pub mod operations;
pub mod parse;
pub mod peer_sockets;
pub mod reference_files;
pub mod rejected;
pub mod route;
pub mod sinks;
pub mod sources;
pub mod stored_files;
pub mod stream;
pub mod time_arg;
