//! `AlertPositions`: where the vehicles of the latest alerts were last seen, for the status
//! page's map-free plot. Alert records carry no position, so each worker watches the readings of
//! just those vehicles (a small set, replaced as alerts come) and notes their latest position.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use fleetflow_dataflows::{Reading, Time, Vin};

/// A vehicle's latest position among the readings watched.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Position {
    /// Longitude, degrees.
    pub lon: f64,
    /// Latitude, degrees.
    pub lat: f64,
    /// The reading's event time, epoch ms.
    pub at: Time,
}

/// The vehicles watched and their latest positions, shared by the workers and the HTTP server.
#[derive(Debug, Default)]
pub struct AlertPositions {
    watched: RwLock<Arc<HashSet<Vin>>>,
    /// Bumped each time `watched` is replaced, so that workers refresh their copy.
    version: AtomicU64,
    seen: Mutex<HashMap<Vin, Position>>,
}

impl AlertPositions {
    /// Watches exactly `vins` from now on (the vehicles of the latest alerts).
    pub fn watch(&self, vins: HashSet<Vin>) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.retain(|vin, _| vins.contains(vin));
        *self.watched.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(vins);
        self.version.fetch_add(1, Ordering::Release);
    }

    /// The latest position seen of each watched vehicle.
    pub fn positions(&self) -> HashMap<Vin, Position> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn note(&self, found: &[(Vin, Position)]) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        for (vin, p) in found {
            let newer = seen.get(vin).is_none_or(|old| old.at <= p.at);
            if newer {
                seen.insert(*vin, *p);
            }
        }
    }
}

/// One worker's view of the watched set (refreshed when it changes).
pub struct Watcher {
    shared: Arc<AlertPositions>,
    version: u64,
    watched: Arc<HashSet<Vin>>,
    found: Vec<(Vin, Position)>,
}

impl Watcher {
    /// A watcher of `shared`'s set.
    pub fn new(shared: Arc<AlertPositions>) -> Self {
        Watcher { shared, version: u64::MAX, watched: Arc::default(), found: Vec::new() }
    }

    /// Notes the positions of watched vehicles among `readings`.
    pub fn observe(&mut self, readings: &[Reading]) {
        let version = self.shared.version.load(Ordering::Acquire);
        if version != self.version {
            self.watched = self.shared.watched.read().unwrap_or_else(|p| p.into_inner()).clone();
            self.version = version;
        }
        if self.watched.is_empty() {
            return;
        }
        self.found.clear();
        for r in readings.iter().filter(|r| self.watched.contains(&r.vin)) {
            self.found.push((r.vin, Position { lon: r.lon, lat: r.lat, at: r.timestamp }));
        }
        if !self.found.is_empty() {
            self.shared.note(&self.found);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(vin: &str, ts: Time, lon: f64) -> Reading {
        let vin = Vin::parse(vin.as_bytes()).unwrap();
        Reading { record_id: 0, timestamp: ts, vin, lon, lat: 40.0, speed: 50.0 }
    }

    #[test]
    fn keeps_the_latest_position_of_watched_vehicles_only() {
        let shared = Arc::new(AlertPositions::default());
        let mut w = Watcher::new(shared.clone());
        let (a, b) = ("1HGCM82633A000001", "1HGCM82633A000002");
        w.observe(&[reading(a, 1, -73.0)]);
        assert!(shared.positions().is_empty(), "nothing watched yet");
        shared.watch([Vin::parse(a.as_bytes()).unwrap()].into_iter().collect());
        w.observe(&[reading(a, 5, -73.5), reading(b, 6, -74.0), reading(a, 3, -73.2)]);
        let p = shared.positions();
        assert_eq!(p.len(), 1);
        assert_eq!(p[&Vin::parse(a.as_bytes()).unwrap()].lon, -73.5, "the latest by event time");
        shared.watch([Vin::parse(b.as_bytes()).unwrap()].into_iter().collect());
        assert!(shared.positions().is_empty(), "a vehicle no longer watched is dropped");
    }
}
