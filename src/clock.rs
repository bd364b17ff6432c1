//! The wall clock, as the job reads it: for the lateness of live sources, latencies, logs and the
//! HTTP API.

use fleetflow_dataflows::Time;

/// Wall-clock now, epoch ms.
pub fn now_ms() -> Time {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as Time).unwrap_or(0)
}
