//! The subcommands besides `run` (which is [`crate::job`]): each parses nothing itself (its
//! flags are in [`crate::cli`] or beside it) and does its work here.

pub mod aws_setup;
pub mod bench;
pub mod bench_kafka;
pub mod bench_plot;
pub mod bench_report;
pub mod cluster;
pub mod generate;
pub mod opensearch_setup;
pub mod produce;
pub mod replay;
pub mod schema;
