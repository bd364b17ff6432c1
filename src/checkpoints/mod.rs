//! Checkpoints of a Kafka job: its operators' state as of an event-time boundary with every
//! source partition's position, in a state store, so a restart re-reads about one interval plus
//! the allowed lateness instead of everything its open windows need (see
//! `fleetflow_dataflows::checkpoint` for why the snapshot is consistent, and `job::checkpointer`
//! for when it is taken).

pub mod config;
pub mod increments;
pub mod objects;
pub mod part;
pub mod store;

pub use config::CheckpointConfig;
