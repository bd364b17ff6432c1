//! The reference tables a job joins against: the vin-to-sensor timelines, the buggy-sensor list
//! and the analyses' own tables. Worker 0 reads them from watched files and applies their edits;
//! every worker advances its sessions with the watermark alike.
//!
//! Restored from a checkpoint, worker 0 starts from the tables as the checkpoint saved them (as
//! of its durable frontier `D`: what the delivered outputs were computed with) and applies the
//! difference to the files as they are now at `D`, as an edit: the windows still within the
//! correction horizon are corrected after the restart, once.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use differential_dataflow::input::InputSession;
use fleetflow_dataflows::analysis::TableSpec;
use fleetflow_dataflows::reference::{SensorId, SensorRow};
use fleetflow_dataflows::{Time, Vin};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tracing::{info, warn};

use super::reference_versions::{decode_rows, ReferenceVersions, SharedVersions};
use super::JobError;
use crate::checkpoints::store::Loaded;
use crate::config::Config;
use crate::operations::live_state::LiveState;
use crate::operations::metrics::Metrics;
use crate::reference_files::{parse_buggy, parse_vin_sensors, table_parser, Diff, ReferenceError, Watched};

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

/// The files behind the sessions (worker 0 only), each with the name its versions are saved under.
#[derive(Default)]
struct Files {
    vin: Option<Watched<(Vin, SensorRow)>>,
    buggy: Option<Watched<SensorId>>,
    tables: Vec<(Option<Watched<String>>, String)>,
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
    versions: SharedVersions,
}

/// The names the tables' versions are saved under (an analysis's table: `analysis.table`).
const VIN_SENSORS: &str = "vin_sensors";
const BUGGY_SENSORS: &str = "buggy_sensors";

impl References {
    /// Loads the files into `sessions` on worker 0 (`index`), or the tables `restore` saved and
    /// then what changed in the files since (see the module's comment); other workers keep
    /// theirs empty.
    pub fn open(
        index: usize,
        config: &Config,
        (tables, restore): (&[TableFile], Option<&Loaded>),
        mut sessions: Sessions,
        (live, metrics): (&Arc<LiveState>, &Arc<Metrics>),
    ) -> Result<Self, JobError> {
        let versions = SharedVersions::default();
        let mut files = Files::default();
        if index == 0 {
            let saved = |name: &str| restore.and_then(|r| r.references.get(name));
            let vin = config.reference.vin_sensors.as_ref().map(|p| Opened::open(p, parse_vin_sensors, saved(VIN_SENSORS))).transpose()?;
            let buggy = config.reference.buggy_sensors.as_ref().map(|p| Opened::open(p, parse_buggy, saved(BUGGY_SENSORS))).transpose()?;
            let mut opened = Vec::new();
            for (analysis, table, path) in tables {
                let name = format!("{analysis}.{}", table.name);
                opened.push((Opened::open(path, table_parser(table.check), saved(&name))?, name));
                info!("analysis {analysis}: table {} from {}", table.name, path.display());
            }
            // Every table as it starts (the saved version, else the file), then the edits since
            // the checkpoint at its durable frontier.
            let mut v = versions.borrow_mut();
            if let Some(o) = &vin {
                live.note_reference((&o.start, &[]), (&[], &[]));
                o.load(VIN_SENSORS, &mut sessions.rows, &mut v);
            }
            if let Some(o) = &buggy {
                live.note_reference((&[], &[]), (&o.start, &[]));
                o.load(BUGGY_SENSORS, &mut sessions.buggy, &mut v);
            }
            for ((o, name), session) in opened.iter().zip(sessions.tables.iter_mut()) {
                o.load(name, session, &mut v);
            }
            let at = restore.map_or(0, |r| r.durable);
            sessions.advance_to(at);
            files.vin = vin.map(|o| {
                o.edit(VIN_SENSORS, (at, &mut sessions.rows, &mut v), |d| live.note_reference((&d.added, &d.removed), (&[], &[])))
            });
            files.buggy = buggy.map(|o| {
                o.edit(BUGGY_SENSORS, (at, &mut sessions.buggy, &mut v), |d| live.note_reference((&[], &[]), (&d.added, &d.removed)))
            });
            for ((o, name), session) in opened.into_iter().zip(sessions.tables.iter_mut()) {
                let watched = o.edit(&name, (at, session, &mut v), |_| {});
                files.tables.push((Some(watched), name));
            }
        } else {
            files.tables = tables.iter().map(|(analysis, table, _)| (None, format!("{analysis}.{}", table.name))).collect();
        }
        Ok(References {
            sessions: Some(sessions),
            files,
            poll_every: Duration::from_millis(config.reference.poll_interval_ms),
            last_poll: Instant::now(),
            live: live.clone(),
            metrics: metrics.clone(),
            versions,
        })
    }

    /// The tables' versions, for the checkpoints.
    pub fn versions(&self) -> SharedVersions {
        self.versions.clone()
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
            let mut versions = self.versions.borrow_mut();
            if let Some(d) = apply_edits(files.vin.as_mut(), (VIN_SENSORS, &mut sessions.rows), (metrics, &mut versions)) {
                live.note_reference((&d.added, &d.removed), (&[], &[]));
            }
            if let Some(d) = apply_edits(files.buggy.as_mut(), (BUGGY_SENSORS, &mut sessions.buggy), (metrics, &mut versions)) {
                live.note_reference((&[], &[]), (&d.added, &d.removed));
            }
            for ((watched, name), table) in files.tables.iter_mut().zip(sessions.tables.iter_mut()) {
                apply_edits(watched.as_mut(), (name, table), (metrics, &mut versions));
            }
        }
        sessions.flush();
    }
}

/// A table's file opened: what the table starts as, and (restored) the edit to apply at the
/// restored frontier: what changed in the file since the checkpoint saved the table.
struct Opened<T> {
    watched: Watched<T>,
    start: Vec<T>,
    edit: Option<Diff<T>>,
}

impl<T: Ord + Clone + Serialize + DeserializeOwned + differential_dataflow::Data> Opened<T> {
    /// Opens `path`; `saved`: the table as a checkpoint saved it (rows of another type, saved by
    /// another version, count as none: the table starts as the file is).
    fn open(
        path: &Path,
        parse: impl Fn(&str, &str) -> Result<BTreeSet<T>, ReferenceError> + 'static,
        saved: Option<&Vec<Vec<u8>>>,
    ) -> Result<Self, JobError> {
        match saved.and_then(|rows| decode_rows::<T>(rows)) {
            Some(previous) => {
                let start: Vec<T> = previous.iter().cloned().collect();
                let (watched, edit) = Watched::open_after(path, parse, previous)?;
                Ok(Opened { watched, start, edit: Some(edit) })
            }
            None => {
                let (watched, start) = Watched::open(path, parse)?;
                Ok(Opened { watched, start, edit: None })
            }
        }
    }

    /// Inserts the table as it starts.
    fn load(&self, name: &str, session: &mut InputSession<Time, T, isize>, versions: &mut ReferenceVersions) {
        self.start.iter().for_each(|r| session.insert(r.clone()));
        versions.loaded(name, &self.start);
    }

    /// Applies the edit since the checkpoint, if any, at `at` (the session's time); `note` sees it.
    fn edit(
        self,
        name: &str,
        (at, session, versions): (Time, &mut InputSession<Time, T, isize>, &mut ReferenceVersions),
        note: impl FnOnce(&Diff<T>),
    ) -> Watched<T> {
        if let Some(d) = self.edit.filter(|d| !d.added.is_empty() || !d.removed.is_empty()) {
            info!(
                "reference {}: changed while the job was down: {} rows added, {} removed, at {}",
                self.watched.path().display(),
                d.added.len(),
                d.removed.len(),
                crate::encode::rfc3339(at)
            );
            apply(&d, session);
            versions.edited(name, at, &d);
            note(&d);
        }
        self.watched
    }
}

/// Applies a reference file's edits, if any, at the session's time, records them among the
/// versions as `name`, and returns them.
fn apply_edits<T: Ord + Clone + Serialize + differential_dataflow::Data>(
    watched: Option<&mut Watched<T>>,
    (name, input): (&str, &mut InputSession<Time, T, isize>),
    (metrics, versions): (&Metrics, &mut ReferenceVersions),
) -> Option<Diff<T>> {
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
            apply(&diff, input);
            versions.edited(name, *input.time(), &diff);
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

fn apply<T: Clone + differential_dataflow::Data>(diff: &Diff<T>, input: &mut InputSession<Time, T, isize>) {
    for r in &diff.removed {
        input.remove(r.clone());
    }
    for a in &diff.added {
        input.insert(a.clone());
    }
}
