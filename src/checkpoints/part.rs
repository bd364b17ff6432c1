//! What one worker writes for a checkpoint: its operators' states as of the boundary and where
//! each of its source partitions must be read again from.

use fleetflow_dataflows::Time;
use serde::{Deserialize, Serialize};

pub use crate::sources::SavedPosition;

/// One worker's part of a checkpoint.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Part {
    /// The boundary: the state is what the readings before it made.
    pub at: Time,
    /// Outputs before this were delivered (the boundary, or the frontier of an exact stop).
    pub durable: Time,
    /// The worker that wrote it, of how many.
    pub worker: usize,
    /// Workers of the job that wrote it.
    pub peers: usize,
    /// What the job computes (windows, analyses): a restore into another refuses.
    pub shape: String,
    /// Each stateful operator's state.
    pub states: Vec<(String, Vec<u8>)>,
    /// This worker's partitions.
    pub positions: Vec<SavedPosition>,
}
