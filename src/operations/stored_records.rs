//! Records a sink keeps where the job can read them back: what answers a closed day of a query
//! by date (see [`fleetflow_dataflows::query`]) when this run did not write it itself.

use fleetflow_dataflows::Time;

/// A sink's stored records, by stream and event-time day.
pub trait StoredRecords: Send + Sync {
    /// The JSON lines of `stream`'s records filed on the UTC day starting at `day` (epoch ms), or
    /// none if this sink holds nothing for that day (never written here, or removed).
    fn day(&self, stream: &str, day: Time) -> Option<Vec<Vec<u8>>>;
}
