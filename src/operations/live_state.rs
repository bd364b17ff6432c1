//! Live state for queries: what the HTTP API answers from while the job runs. Worker threads
//! own the dataflow's state; a query for an open day goes to every worker as a message, and each
//! answers between two dataflow steps from its open windows (no rescan of readings, no lock held
//! across a step), so queries never stall the dataflow. Small summaries that outputs already
//! carry (each vehicle's latest window, the last closed days' speeders, recent alerts, the
//! reference table) are kept here as they pass the route stage.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Mutex, MutexGuard, RwLock};
use std::time::Duration;

use fleetflow_dataflows::analyses::daily_speeders::DaySoFar;
use fleetflow_dataflows::analyses::SpeedWindow;
use fleetflow_dataflows::reference::{SensorId, SensorRow};
use fleetflow_dataflows::time::{align, DAY_MS};
use fleetflow_dataflows::{Time, Vin};
use serde::Serialize;

/// Rows added and rows removed.
pub type Changes<'a, T> = (&'a [T], &'a [T]);

/// Closed days kept in memory (older ones are read from the stored output).
const CLOSED_DAYS_KEPT: usize = 8;
/// Alerts kept for the status page.
const RECENT_ALERTS: usize = 20;
/// How long a query waits for the workers.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// A question for the workers.
pub enum Query {
    /// Speeders of the UTC day starting at `day`, from open state.
    DailySpeeders {
        /// The day's start, epoch ms.
        day: Time,
        /// Where to answer.
        reply: Sender<Vec<DaySoFar>>,
    },
}

/// One vehicle's speeding on a day, as the API answers it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DaySpeeder {
    /// The vehicle.
    pub vin: String,
    /// Speeding readings that day.
    pub speeding_readings: u64,
    /// Top speed that day, mph.
    pub max_speed: f64,
}

impl From<&DaySoFar> for DaySpeeder {
    fn from(d: &DaySoFar) -> Self {
        DaySpeeder { vin: d.vin.to_string(), speeding_readings: d.speeding, max_speed: d.max }
    }
}

/// A vehicle's latest closed tumbling window.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LatestWindow {
    /// Window start, epoch ms (RFC 3339 in JSON).
    #[serde(rename = "window_start", serialize_with = "as_rfc3339")]
    pub start: Time,
    /// Window end, epoch ms (RFC 3339 in JSON).
    #[serde(rename = "window_end", serialize_with = "as_rfc3339")]
    pub end: Time,
    /// Readings in it.
    pub readings: u64,
    /// Average speed, mph.
    pub avg_speed: f64,
    /// Top speed, mph.
    pub max_speed: f64,
    /// Lowest speed, mph.
    pub min_speed: f64,
}

fn as_rfc3339<S: serde::Serializer>(t: &Time, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::encode::rfc3339(*t))
}

/// Where an answer about a day came from.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DaySource {
    /// The day is open: the workers' live state (closed and open windows so far).
    Live,
    /// The day is closed: its `daily_speeders` output.
    Output,
}

/// A day's speeders.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DayAnswer {
    /// `YYYY-MM-DD`.
    pub date: String,
    /// Live or stored.
    pub source: DaySource,
    /// Whether the day is closed (its answer is final).
    pub complete: bool,
    /// By vin.
    pub speeders: Vec<DaySpeeder>,
}

/// Why a day cannot be answered.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// A closed day this run did not see and no folder sink stores.
    #[error("{0} is closed and its daily_speeders output is not stored here (route daily_speeders to a folder sink)")]
    NotStored(String),
    /// The workers did not answer in time (shutting down).
    #[error("the job did not answer within {QUERY_TIMEOUT:?}")]
    Timeout,
}

/// A `daily_speeders` line's date and row.
fn daily_row(line: &str) -> Option<(String, DaySpeeder)> {
    let v = serde_json::from_str::<serde_json::Value>(line).ok()?;
    let row = DaySpeeder {
        vin: v["vin"].as_str()?.to_string(),
        speeding_readings: v["speeding_readings"].as_u64().unwrap_or(0),
        max_speed: v["max_speed"].as_f64().unwrap_or(0.0),
    };
    Some((v["date"].as_str()?.to_string(), row))
}

/// The job's live state, shared by its workers and the HTTP server.
#[derive(Default)]
pub struct LiveState {
    queries: Mutex<Vec<Sender<Query>>>,
    latest: Mutex<Latest>,
    closed_days: Mutex<BTreeMap<Time, Vec<DaySpeeder>>>,
    alerts: Mutex<VecDeque<String>>,
    sensors: RwLock<HashMap<Vin, Vec<SensorRow>>>,
    buggy: RwLock<HashSet<SensorId>>,
    /// Days ending at or before this have all their `daily_speeders` rows noted here.
    days_closed_to: AtomicU64,
    /// The dataflow is built and reading.
    pub ready: AtomicBool,
    /// The job is shutting down (or failed).
    pub stopping: AtomicBool,
    /// The HTTP API is up: only then are the vehicles' latest windows kept.
    pub serving: AtomicBool,
    /// The HTTP server's address, once bound.
    pub http_addr: Mutex<Option<SocketAddr>>,
    /// Folder sinks that store `daily_speeders`.
    pub daily_folders: Vec<PathBuf>,
    /// Where the vehicles of the latest alerts were last seen.
    pub alert_positions: std::sync::Arc<crate::operations::alert_positions::AlertPositions>,
}

/// How long a vehicle without a new window stays in [`LiveState`]'s latest windows (event time):
/// the live state stays proportional to the vehicles of the last hour, not to every vehicle seen.
pub const VEHICLE_HORIZON_MS: Time = 3_600_000;

/// Each vehicle's latest window, and when vehicles past the horizon were last dropped.
#[derive(Default)]
struct Latest {
    by_vin: HashMap<Vin, LatestWindow>,
    newest_end: Time,
    swept_at: Time,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl LiveState {
    /// Live state answering closed days from `daily_folders` when they are not in memory.
    pub fn new(daily_folders: Vec<PathBuf>) -> Self {
        LiveState { daily_folders, ..LiveState::default() }
    }

    /// A worker's query channel; the worker answers with [`LiveState::answer`].
    pub fn register(&self) -> Receiver<Query> {
        let (tx, rx) = std::sync::mpsc::channel();
        lock(&self.queries).push(tx);
        rx
    }

    /// Notes closed tumbling windows (each vehicle's latest).
    pub fn note_windows(&self, windows: &[SpeedWindow]) {
        if !self.serving.load(Ordering::Relaxed) {
            return;
        }
        let mut guard = lock(&self.latest);
        let state = &mut *guard;
        for w in windows {
            state.newest_end = state.newest_end.max(w.end);
            let newer = state.by_vin.get(&w.key).is_none_or(|l| l.end <= w.end);
            if newer {
                state.by_vin.insert(
                    w.key,
                    LatestWindow {
                        start: w.start,
                        end: w.end,
                        readings: w.agg.readings,
                        avg_speed: (w.agg.avg() * 1000.0).round() / 1000.0,
                        max_speed: w.agg.max,
                        min_speed: w.agg.min,
                    },
                );
            }
        }
        // Every twelfth of the horizon (event time), drop the vehicles not seen for the horizon.
        if state.newest_end >= state.swept_at + VEHICLE_HORIZON_MS / 12 {
            let oldest = state.newest_end.saturating_sub(VEHICLE_HORIZON_MS);
            state.by_vin.retain(|_, l| l.end >= oldest);
            state.swept_at = state.newest_end;
        }
    }

    /// Vehicles with a latest window held.
    pub fn vehicles_held(&self) -> usize {
        lock(&self.latest).by_vin.len()
    }

    /// Notes closed days' `daily_speeders` rows (as written to the sinks).
    pub fn note_days(&self, days: &[crate::encode::Encoded]) {
        let mut closed = lock(&self.closed_days);
        for d in days {
            if let Some((_, row)) = std::str::from_utf8(&d.line).ok().and_then(daily_row) {
                closed.entry(align(d.time, DAY_MS)).or_default().push(row);
            }
        }
        while closed.len() > CLOSED_DAYS_KEPT {
            closed.pop_first();
        }
    }

    /// Every `daily_speeders` row of days ending at or before `t` has been noted.
    pub fn days_closed_to(&self, t: Time) {
        self.days_closed_to.fetch_max(t, Ordering::Relaxed);
    }

    /// Notes alerts (JSON lines) for the status page.
    pub fn note_alerts(&self, lines: impl IntoIterator<Item = String>) {
        let mut alerts = lock(&self.alerts);
        for l in lines {
            alerts.push_back(l);
            if alerts.len() > RECENT_ALERTS {
                alerts.pop_front();
            }
        }
        let vin =
            |l: &String| serde_json::from_str::<serde_json::Value>(l).ok()?["vin"].as_str().and_then(|v| Vin::parse(v.as_bytes()).ok());
        self.alert_positions.watch(alerts.iter().filter_map(vin).collect());
    }

    /// The latest alerts, newest first.
    pub fn recent_alerts(&self) -> Vec<String> {
        lock(&self.alerts).iter().rev().cloned().collect()
    }

    /// Applies reference changes: `(added, removed)` rows and buggy sensors.
    pub fn note_reference(&self, rows: Changes<'_, (Vin, SensorRow)>, buggy: Changes<'_, SensorId>) {
        let mut sensors = self.sensors.write().unwrap_or_else(|p| p.into_inner());
        for (vin, row) in rows.1 {
            if let Some(v) = sensors.get_mut(vin) {
                v.retain(|r| r != row);
            }
        }
        for (vin, row) in rows.0 {
            sensors.entry(*vin).or_default().push(row.clone());
        }
        let mut set = self.buggy.write().unwrap_or_else(|p| p.into_inner());
        for s in buggy.1 {
            set.remove(s);
        }
        set.extend(buggy.0.iter().cloned());
    }

    /// The vehicle's latest window and its sensor at the window's end (or now): `(sensor, buggy)`.
    pub fn vehicle(&self, vin: &Vin) -> (Option<LatestWindow>, Option<(SensorId, bool)>) {
        let latest = lock(&self.latest).by_vin.get(vin).cloned();
        let at = latest.as_ref().map(|l| l.end.saturating_sub(1)).unwrap_or_else(crate::clock::now_ms);
        let sensors = self.sensors.read().unwrap_or_else(|p| p.into_inner());
        let sensor =
            sensors.get(vin).and_then(|rows| rows.iter().filter(|r| r.effective_from <= at).max_by_key(|r| r.effective_from)).map(|r| {
                let buggy = self.buggy.read().unwrap_or_else(|p| p.into_inner()).contains(&r.sensor);
                (r.sensor.clone(), buggy)
            });
        (latest, sensor)
    }

    /// A worker answers a query from its live daily state.
    /// (`live` is `None` when the `daily_speeders` analysis is not enabled: no open state.)
    pub fn answer(query: Query, live: Option<&fleetflow_dataflows::analyses::daily_speeders::LiveDailySpeeders>) {
        match query {
            Query::DailySpeeders { day, reply } => {
                let _ = reply.send(live.map(|l| l.on_day(day)).unwrap_or_default());
            }
        }
    }

    /// The speeders of the UTC day starting at `day` (epoch ms): from the workers' live state if
    /// the day is open, else from its output. Blocks for at most a few seconds.
    pub fn daily_speeders(&self, day: Time) -> Result<DayAnswer, QueryError> {
        let date = crate::encode::date(day);
        let closed = day + DAY_MS <= self.days_closed_to.load(Ordering::Relaxed);
        let noted = lock(&self.closed_days).get(&day).cloned();
        if closed {
            let rows = match noted {
                Some(rows) => rows,
                None => self.stored_day(&date).ok_or_else(|| QueryError::NotStored(date.clone()))?,
            };
            return Ok(DayAnswer { date, source: DaySource::Output, complete: true, speeders: sorted(rows) });
        }
        // Open: every worker's open state, plus rows of workers that have already closed the day.
        let (tx, rx) = std::sync::mpsc::channel();
        let workers: Vec<Sender<Query>> = lock(&self.queries).clone();
        let mut asked = 0;
        for w in &workers {
            if w.send(Query::DailySpeeders { day, reply: tx.clone() }).is_ok() {
                asked += 1;
            }
        }
        let mut rows = noted.unwrap_or_default();
        for _ in 0..asked {
            let part = rx.recv_timeout(QUERY_TIMEOUT).map_err(|_| QueryError::Timeout)?;
            rows.extend(part.iter().map(DaySpeeder::from));
        }
        Ok(DayAnswer { date, source: DaySource::Live, complete: false, speeders: sorted(rows) })
    }

    /// A closed day's rows from the folder sinks' `daily_speeders/YYYY/MM/DD/`.
    fn stored_day(&self, date: &str) -> Option<Vec<DaySpeeder>> {
        let mut found = None;
        for root in &self.daily_folders {
            let dir = root.join("daily_speeders").join(date.replace('-', "/"));
            let mut stack = vec![dir];
            while let Some(d) = stack.pop() {
                let Ok(entries) = std::fs::read_dir(&d) else { continue };
                for e in entries.flatten() {
                    let p = e.path();
                    if p.is_dir() {
                        stack.push(p);
                        continue;
                    }
                    if p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')) {
                        continue;
                    }
                    let rows: &mut Vec<DaySpeeder> = found.get_or_insert_with(Vec::new);
                    for line in std::fs::read_to_string(&p).unwrap_or_default().lines() {
                        match daily_row(line) {
                            Some((day, row)) if day == date => rows.push(row),
                            _ => {}
                        }
                    }
                }
            }
            if found.is_some() {
                break;
            }
        }
        found
    }

    /// The day's top `n` speeders, most speeding readings first.
    pub fn top_speeders(&self, day: Time, n: usize) -> Vec<DaySpeeder> {
        let mut rows = self.daily_speeders(day).map(|a| a.speeders).unwrap_or_default();
        rows.sort_by(|a, b| b.speeding_readings.cmp(&a.speeding_readings).then(a.vin.cmp(&b.vin)));
        rows.truncate(n);
        rows
    }
}

fn sorted(mut rows: Vec<DaySpeeder>) -> Vec<DaySpeeder> {
    rows.sort_by(|a, b| a.vin.cmp(&b.vin));
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vehicles_not_seen_for_an_hour_are_dropped_as_new_ones_come() {
        use fleetflow_dataflows::stats::SpeedStats;
        let live = LiveState::new(Vec::new());
        live.serving.store(true, Ordering::Relaxed);
        let window = |n: u64, hour: u64| SpeedWindow {
            key: Vin::parse(format!("1HGCM8263{n:08}").as_bytes()).unwrap(),
            start: hour * 3_600_000,
            end: hour * 3_600_000 + 60_000,
            agg: SpeedStats::default(),
        };
        // Every hour for three days, 100 vehicles never seen before.
        for hour in 0..72 {
            let windows: Vec<SpeedWindow> = (0..100).map(|i| window(hour * 100 + i, hour)).collect();
            live.note_windows(&windows);
            assert!(live.vehicles_held() <= 100 * 2, "hour {hour}: {} vehicles held", live.vehicles_held());
        }
        assert!(live.vehicle(&window(7_100, 71).key).0.is_some(), "a vehicle of the last hour is served");
        assert!(live.vehicle(&window(5, 0).key).0.is_none(), "one not seen for three days is not");
        let quiet = LiveState::new(Vec::new());
        quiet.note_windows(&[window(1, 0)]);
        assert_eq!(quiet.vehicles_held(), 0, "without the API nothing is kept");
    }

    #[test]
    fn a_closed_day_not_seen_in_this_run_comes_from_the_stored_output() {
        let dir = tempfile::tempdir().unwrap();
        let hour = dir.path().join("daily_speeders/2025/11/25/00");
        std::fs::create_dir_all(&hour).unwrap();
        std::fs::write(
            hour.join("daily_speeders-w000-x-000000.jsonl"),
            "{\"vin\":\"B\",\"date\":\"2025-11-25\",\"speeding_readings\":2,\"max_speed\":70.5}\n{\"vin\":\"A\",\"date\":\"2025-11-25\",\"speeding_readings\":9,\"max_speed\":99.0}\n",
        )
        .unwrap();
        std::fs::write(hour.join(".daily_speeders-w001-x-000000.jsonl.tmp"), "{\"vin\":\"C\",\"date\":\"2025-11-25\"}\n").unwrap();
        let live = LiveState::new(vec![dir.path().to_path_buf()]);
        let day = 1_764_028_800_000; // 2025-11-25
        live.days_closed_to(day + 2 * DAY_MS);
        let answer = live.daily_speeders(day).unwrap();
        assert_eq!(answer.source, DaySource::Output);
        let vins: Vec<&str> = answer.speeders.iter().map(|r| r.vin.as_str()).collect();
        assert_eq!(vins, vec!["A", "B"], "sorted, temporary files ignored");
        assert!(matches!(live.daily_speeders(day + DAY_MS), Err(QueryError::NotStored(_))));
        // An open day with no workers registered is empty, not an error.
        let open = live.daily_speeders(day + 5 * DAY_MS).unwrap();
        assert_eq!((open.source, open.speeders.len()), (DaySource::Live, 0));
    }
}
