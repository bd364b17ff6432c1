//! The reference tables a job joins against: the vin-to-sensor timelines, the buggy-sensor list
//! and the analyses' own tables. Worker 0 reads them from watched files and applies their edits;
//! every worker advances its sessions with the watermark alike.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use differential_dataflow::input::InputSession;
use fleetflow_dataflows::analysis::TableSpec;
use fleetflow_dataflows::reference::{SensorId, SensorRow};
use fleetflow_dataflows::{Time, Vin};
use tracing::{info, warn};

use super::JobError;
use crate::config::Config;
use crate::operations::live_state::LiveState;
use crate::operations::metrics::Metrics;
use crate::reference_files::{parse_buggy, parse_vin_sensors, table_parser, Watched};

/// The sessions the dataflow reads the reference tables from: vin-to-sensor rows, buggy sensors,
/// and each analysis table's lines.
pub struct Sessions {
    /// Vin-to-sensor rows.
    pub rows: InputSession<Time, (Vin, SensorRow), isize>,
    /// Buggy sensor ids.
    pub buggy: InputSession<Time, SensorId, isize>,
    /// The analyses' tables, in [`Config::analysis_tables`] order.
    pub tables: Vec<InputSession<Time, String, isize>>,
}

/// An analysis's table: the analysis, the table and its file.
pub type TableFile = (&'static str, &'static TableSpec, PathBuf);

impl Sessions {
    /// Empty sessions, one per table of `tables`.
    pub fn new(tables: &[TableFile]) -> Self {
        Sessions { rows: InputSession::new(), buggy: InputSession::new(), tables: tables.iter().map(|_| InputSession::new()).collect() }
    }

    fn advance_to(&mut self, time: Time) {
        if *self.rows.time() < time {
            self.rows.advance_to(time);
            self.buggy.advance_to(time);
            for t in &mut self.tables {
                t.advance_to(time);
            }
        }
    }

    fn flush(&mut self) {
        self.rows.flush();
        self.buggy.flush();
        for t in &mut self.tables {
            t.flush();
        }
    }
}

/// The files behind the sessions (worker 0 only).
#[derive(Default)]
struct Files {
    vin: Option<Watched<(Vin, SensorRow)>>,
    buggy: Option<Watched<SensorId>>,
    tables: Vec<Option<Watched<String>>>,
}

/// One worker's reference tables, followed as the watermark moves.
pub struct References {
    /// `None` once every source is finished: no more reference changes matter.
    sessions: Option<Sessions>,
    files: Files,
    poll_every: Duration,
    last_poll: Instant,
    live: Arc<LiveState>,
    metrics: Arc<Metrics>,
}

impl References {
    /// Loads the files into `sessions` on worker 0 (`index`); other workers keep theirs empty.
    pub fn open(
        index: usize,
        config: &Config,
        tables: &[TableFile],
        mut sessions: Sessions,
        (live, metrics): (&Arc<LiveState>, &Arc<Metrics>),
    ) -> Result<Self, JobError> {
        let mut files = Files::default();
        if index == 0 {
            if let Some(p) = &config.reference.vin_sensors {
                let (w, rows) = Watched::open(p, parse_vin_sensors)?;
                live.note_reference((&rows, &[]), (&[], &[]));
                rows.into_iter().for_each(|r| sessions.rows.insert(r));
                files.vin = Some(w);
            }
            if let Some(p) = &config.reference.buggy_sensors {
                let (w, ids) = Watched::open(p, parse_buggy)?;
                live.note_reference((&[], &[]), (&ids, &[]));
                ids.into_iter().for_each(|s| sessions.buggy.insert(s));
                files.buggy = Some(w);
            }
        }
        for ((analysis, table, path), session) in tables.iter().zip(sessions.tables.iter_mut()) {
            if index != 0 {
                files.tables.push(None);
                continue;
            }
            let (w, lines) = Watched::open(path, table_parser(table.check))?;
            info!("analysis {analysis}: table {} from {}: {} lines", table.name, path.display(), lines.len());
            lines.into_iter().for_each(|l| session.insert(l));
            files.tables.push(Some(w));
        }
        Ok(References {
            sessions: Some(sessions),
            files,
            poll_every: Duration::from_millis(config.reference.poll_interval_ms),
            last_poll: Instant::now(),
            live: live.clone(),
            metrics: metrics.clone(),
        })
    }

    /// Whether every source is finished (the sessions are closed).
    pub fn finished(&self) -> bool {
        self.sessions.is_none()
    }

    /// Follows the job's `watermark`: advances the sessions to it, applies the files' edits when
    /// due, and closes the sessions once every source is finished (`None`).
    pub fn follow(&mut self, watermark: Option<Time>) {
        let Some(w) = watermark else {
            self.sessions = None;
            return;
        };
        let Some(sessions) = self.sessions.as_mut() else { return };
        // Advance first: an edit takes effect at the current watermark, after every window that
        // has already closed (those were emitted at times below it).
        sessions.advance_to(w);
        if self.last_poll.elapsed() >= self.poll_every {
            self.last_poll = Instant::now();
            let (files, metrics, live) = (&mut self.files, &self.metrics, &self.live);
            if let Some(d) = apply_edits(files.vin.as_mut(), &mut sessions.rows, metrics) {
                live.note_reference((&d.added, &d.removed), (&[], &[]));
            }
            if let Some(d) = apply_edits(files.buggy.as_mut(), &mut sessions.buggy, metrics) {
                live.note_reference((&[], &[]), (&d.added, &d.removed));
            }
            for (watched, table) in files.tables.iter_mut().zip(sessions.tables.iter_mut()) {
                apply_edits(watched.as_mut(), table, metrics);
            }
        }
        sessions.flush();
    }
}

/// Applies a reference file's edits, if any, and returns them.
fn apply_edits<T: Ord + Clone + differential_dataflow::Data>(
    watched: Option<&mut Watched<T>>,
    input: &mut InputSession<Time, T, isize>,
    metrics: &Metrics,
) -> Option<crate::reference_files::Diff<T>> {
    let w = watched?;
    match w.reload() {
        Ok(None) => None,
        Ok(Some(diff)) => {
            info!(
                "reference {}: {} rows added, {} removed, at watermark {}",
                w.path().display(),
                diff.added.len(),
                diff.removed.len(),
                crate::encode::rfc3339(*input.time())
            );
            for r in &diff.removed {
                input.remove(r.clone());
            }
            for a in &diff.added {
                input.insert(a.clone());
            }
            Metrics::add(&metrics.reference_updates, 1);
            Some(diff)
        }
        Err(e) => {
            warn!("{e}; keeping the last good version");
            Metrics::add(&metrics.reference_errors, 1);
            None
        }
    }
}
