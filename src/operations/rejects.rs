//! The latest late and malformed records, kept for the status page.

use super::metrics::Metrics;

/// Rejected records kept for the status page.
const RECENT_REJECTS: usize = 20;

/// A late or malformed record, as the status page shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RecentReject {
    /// `late` or `errors`.
    pub stream: &'static str,
    /// Why it was rejected.
    pub reason: String,
    /// Where it came from (`file:line`, `partition/offset`).
    pub position: String,
    /// The record, cut to 160 bytes.
    pub record: String,
    /// When it arrived, epoch ms.
    pub arrived: u64,
}

impl Metrics {
    /// Keeps the last of `rejected` (sent to `stream`) among the recent rejects.
    pub fn note_reject(&self, stream: &'static str, rejected: Option<&crate::rejected::Rejected>) {
        let Some(r) = rejected else { return };
        let cut = &r.record[..r.record.len().min(160)];
        let reject = RecentReject {
            stream,
            reason: r.reason.clone(),
            position: r.position.clone(),
            record: String::from_utf8_lossy(cut).into_owned(),
            arrived: r.arrived,
        };
        let mut recent = self.recent_rejects.lock().unwrap_or_else(|p| p.into_inner());
        recent.push_back(reject);
        if recent.len() > RECENT_REJECTS {
            recent.pop_front();
        }
    }
}
