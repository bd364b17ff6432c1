//! `Rejected`: a record that entered no window (malformed or late), kept with its position and
//! reason for the `errors` and `late` outputs.

use fleetflow_dataflows::Time;
use serde::{Deserialize, Serialize};

/// A record the job did not use, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejected {
    /// The record's bytes as read (without the line terminator).
    pub record: Vec<u8>,
    /// Where it came from: `file:line`, or `partition/offset`.
    pub position: String,
    /// Why it was rejected.
    pub reason: String,
    /// The record's event time, when it parsed (late records).
    pub timestamp: Option<Time>,
    /// The partition's watermark when the record arrived (late records).
    pub watermark: Option<Time>,
    /// Wall-clock arrival, epoch ms (malformed records are filed under it).
    pub arrived: Time,
}
