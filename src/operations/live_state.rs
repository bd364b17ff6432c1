//! Live state for queries: what the HTTP API answers from while the job runs. Worker threads
//! own the dataflow's state; a query for an open day goes to every worker as a message, and each
//! answers between two dataflow steps from the state its analyses published (no rescan of
//! readings, no lock held across a step), so queries never stall the dataflow. Small summaries
//! that outputs already carry (each vehicle's latest window, the records of the last closed days
//! of each query, recent alerts, the reference table) are kept here as they pass the route stage.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Mutex, MutexGuard, RwLock};

use fleetflow_dataflows::analyses::SpeedWindow;
use fleetflow_dataflows::query::LiveQuery;
use fleetflow_dataflows::reference::{SensorId, SensorRow};
use fleetflow_dataflows::{Time, Vin};
use serde::Serialize;
use serde_json::Value;

use crate::encode::Encoded;
use crate::operations::date_queries::{DateQuery, QueryError, QUERY_TIMEOUT};

/// Rows added and rows removed.
pub type Changes<'a, T> = (&'a [T], &'a [T]);

/// Alerts kept for the status page.
const RECENT_ALERTS: usize = 20;

/// A question for the workers: a query's rows of an open day from their live state.
pub struct Query {
    /// The query (its [`QuerySpec`](fleetflow_dataflows::query::QuerySpec) name).
    pub name: &'static str,
    /// The UTC day's start, epoch ms.
    pub day: Time,
    /// Where to answer.
    pub reply: Sender<Vec<Value>>,
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

/// The job's live state, shared by its workers and the HTTP server.
#[derive(Default)]
pub struct LiveState {
    workers: Mutex<Vec<Sender<Query>>>,
    /// Each vehicle's latest window, in shards by vin: the workers note a boundary's windows
    /// (a million at once in a large fleet) side by side rather than in turn.
    latest: [Mutex<Latest>; SHARDS],
    /// The newest window end noted, and when vehicles past the horizon were last dropped.
    newest_end: std::sync::atomic::AtomicU64,
    swept_at: std::sync::atomic::AtomicU64,
    alerts: Mutex<VecDeque<(String, Option<Vin>)>>,
    sensors: RwLock<HashMap<Vin, Vec<SensorRow>>>,
    buggy: RwLock<HashSet<SensorId>>,
    /// The enabled analyses' queries by date.
    pub date_queries: Vec<DateQuery>,
    /// The dataflow is built and reading.
    pub ready: AtomicBool,
    /// The job is shutting down (or failed).
    pub stopping: AtomicBool,
    /// The HTTP API is up: only then are the vehicles' latest windows kept.
    pub serving: AtomicBool,
    /// The HTTP server's address, once bound.
    pub http_addr: Mutex<Option<SocketAddr>>,
    /// Where the vehicles of the latest alerts were last seen.
    pub alert_positions: std::sync::Arc<crate::operations::alert_positions::AlertPositions>,
}

/// How long a vehicle without a new window stays in [`LiveState`]'s latest windows (event time):
/// the live state stays proportional to the vehicles of the last hour, not to every vehicle seen.
pub const VEHICLE_HORIZON_MS: Time = 3_600_000;

/// Shards of the latest windows.
const SHARDS: usize = 16;

/// Each vehicle's latest window (of a shard of the vehicles).
#[derive(Default)]
struct Latest {
    by_vin: HashMap<Vin, LatestWindow>,
}

impl Latest {
    /// Keeps each window that is its vehicle's newest.
    fn note<'a>(&mut self, windows: impl Iterator<Item = &'a SpeedWindow>) {
        for w in windows {
            let newer = self.by_vin.get(&w.key).is_none_or(|l| l.end <= w.end);
            if newer {
                let latest = LatestWindow {
                    start: w.start,
                    end: w.end,
                    readings: w.agg.readings,
                    avg_speed: (w.agg.avg() * 1000.0).round() / 1000.0,
                    max_speed: w.agg.max,
                    min_speed: w.agg.min,
                };
                self.by_vin.insert(w.key, latest);
            }
        }
    }
}

/// The shard of a vehicle's latest window.
fn shard_of(vin: &Vin) -> usize {
    // (The high bits: the low ones route the vin to its worker, so a worker's vins would share few shards.)
    (vin.worker_hash() >> 32) as usize % SHARDS
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl LiveState {
    /// Live state answering the enabled analyses' `date_queries`.
    pub fn new(date_queries: Vec<DateQuery>) -> Self {
        LiveState { date_queries, ..LiveState::default() }
    }

    /// A worker's query channel; the worker answers with [`LiveState::answer`].
    pub fn register(&self) -> Receiver<Query> {
        let (tx, rx) = std::sync::mpsc::channel();
        lock(&self.workers).push(tx);
        rx
    }

    /// Notes closed tumbling windows (each vehicle's latest).
    pub fn note_windows(&self, windows: &[SpeedWindow]) {
        if !self.serving.load(Ordering::Relaxed) || windows.is_empty() {
            return;
        }
        let mut by_shard: [Vec<&SpeedWindow>; SHARDS] = Default::default();
        for w in windows {
            by_shard[shard_of(&w.key)].push(w);
        }
        for (latest, mine) in self.latest.iter().zip(by_shard).filter(|(_, mine)| !mine.is_empty()) {
            lock(latest).note(mine.into_iter());
        }
        // Every twelfth of the horizon (event time), drop the vehicles not seen for the horizon.
        let newest = windows.iter().map(|w| w.end).max().unwrap_or(0);
        let newest = self.newest_end.fetch_max(newest, Ordering::Relaxed).max(newest);
        let swept = self.swept_at.load(Ordering::Relaxed);
        let due = newest >= swept + VEHICLE_HORIZON_MS / 12;
        if due && self.swept_at.compare_exchange(swept, newest, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            let oldest = newest.saturating_sub(VEHICLE_HORIZON_MS);
            for latest in &self.latest {
                lock(latest).by_vin.retain(|_, l| l.end >= oldest);
            }
        }
    }

    /// Vehicles with a latest window held.
    pub fn vehicles_held(&self) -> usize {
        self.latest.iter().map(|l| lock(l).by_vin.len()).sum()
    }

    /// Notes alerts for the status page, and watches where their vehicles are.
    pub fn note_alerts(&self, records: &[Encoded]) {
        let mut alerts = lock(&self.alerts);
        for r in records {
            alerts.push_back((String::from_utf8_lossy(&r.line).trim_end().to_string(), r.key));
            if alerts.len() > RECENT_ALERTS {
                alerts.pop_front();
            }
        }
        self.alert_positions.watch(alerts.iter().filter_map(|(_, vin)| *vin).collect());
    }

    /// The latest alerts, newest first.
    pub fn recent_alerts(&self) -> Vec<String> {
        lock(&self.alerts).iter().rev().map(|(line, _)| line.clone()).collect()
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
        let latest = lock(&self.latest[shard_of(vin)]).by_vin.get(vin).cloned();
        let at = latest.as_ref().map(|l| l.end.saturating_sub(1)).unwrap_or_else(crate::clock::now_ms);
        let sensors = self.sensors.read().unwrap_or_else(|p| p.into_inner());
        let sensor =
            sensors.get(vin).and_then(|rows| rows.iter().filter(|r| r.effective_from <= at).max_by_key(|r| r.effective_from)).map(|r| {
                let buggy = self.buggy.read().unwrap_or_else(|p| p.into_inner()).contains(&r.sensor);
                (r.sensor.clone(), buggy)
            });
        (latest, sensor)
    }

    /// A worker answers a query from the live state its analyses published.
    pub fn answer(query: Query, live: &[Box<dyn LiveQuery>]) {
        let rows = live.iter().find(|q| q.spec().name == query.name).map(|q| q.open_rows(query.day)).unwrap_or_default();
        let _ = query.reply.send(rows);
    }

    /// The query named `name` for the UTC day starting at `day` (epoch ms): from the workers' live
    /// state if the day is open, else from its output. Blocks for at most a few seconds.
    pub fn by_date(&self, name: &str, day: Time) -> Result<Value, QueryError> {
        let q = self.date_queries.iter().find(|q| q.spec.name == name).ok_or_else(|| QueryError::Unknown(name.to_string()))?;
        q.answer(day, || self.ask_workers(q.spec.name, day))
    }

    /// Each query's `n` top rows of the UTC day starting at `day`, by query name.
    pub fn tops(&self, day: Time, n: usize) -> Vec<(&'static str, Vec<Value>)> {
        self.date_queries.iter().map(|q| (q.spec.name, q.top(day, n, || self.ask_workers(q.spec.name, day)))).collect()
    }

    /// Every worker's rows of `name` for an open day.
    fn ask_workers(&self, name: &'static str, day: Time) -> Result<Vec<Value>, QueryError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let workers: Vec<Sender<Query>> = lock(&self.workers).clone();
        let asked = workers.iter().filter(|w| w.send(Query { name, day, reply: tx.clone() }).is_ok()).count();
        let mut rows = Vec::new();
        for _ in 0..asked {
            rows.extend(rx.recv_timeout(QUERY_TIMEOUT).map_err(|_| QueryError::Timeout)?);
        }
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vehicles_not_seen_for_an_hour_are_dropped_as_new_ones_come() {
        use fleetflow_dataflows::stats::SpeedStats;
        let live = LiveState::default();
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
        let quiet = LiveState::default();
        quiet.note_windows(&[window(1, 0)]);
        assert_eq!(quiet.vehicles_held(), 0, "without the API nothing is kept");
    }
}
