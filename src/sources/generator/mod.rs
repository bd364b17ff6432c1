//! The fleet generator: simulated vehicles reporting about once per interval, with realistic speeds
//! (city, highway and habitual speeders), small delivery delays (out-of-order within the allowed
//! lateness) and an optional share of late readings. Seeded: the same seed gives the same fleet.

mod config;
mod snapshot;
pub use config::GeneratorConfig;
pub use snapshot::{FleetIdentity, FleetSnapshot};

use std::collections::VecDeque;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
// SmallRng's algorithm on 64-bit machines, with its state serializable (for checkpoints).
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::{Deserialize, Serialize};

use fleetflow_dataflows::{Reading, Time, Vin};

use super::tracker::ReadTracker;
use super::{Delivered, Partition, Poll, Record, Run, SavedPosition, SourceError};

/// The characters a VIN may use.
const VIN_ALPHABET: &[u8] = b"0123456789ABCDEFGHJKLMNPRSTUVWXYZ";

/// What to simulate.
#[derive(Clone, Debug, PartialEq)]
pub struct FleetConfig {
    /// Number of vehicles.
    pub vehicles: u64,
    /// Reporting interval of each vehicle, ms.
    pub interval_ms: Time,
    /// Share of vehicles that habitually speed.
    pub speeder_fraction: f64,
    /// Seed of every random choice.
    pub seed: u64,
    /// Event time of the first report, epoch ms.
    pub start_ms: Time,
    /// Stop after this much event time (`None`: never).
    pub duration_ms: Option<Time>,
    /// Largest delivery delay, ms: event times run up to this much behind the emission order.
    pub max_delay_ms: Time,
    /// Share of readings delivered much later than the allowed lateness (to exercise `late`).
    pub late_fraction: f64,
    /// Extra delay of late readings beyond `max_delay_ms`, ms.
    pub late_delay_ms: Time,
    /// Emit each report only once the wall clock reaches it (a live fleet) rather than at once.
    pub realtime: bool,
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig {
            vehicles: 1_000,
            interval_ms: 1_000,
            speeder_fraction: 0.05,
            seed: 42,
            start_ms: 1_764_028_800_000, // 2025-11-25T00:00:00Z
            duration_ms: None,
            max_delay_ms: 2_000,
            late_fraction: 0.0,
            late_delay_ms: 30_000,
            realtime: false,
        }
    }
}

/// The VIN of vehicle `index` under `seed`: deterministic, valid, distinct for distinct indexes.
pub fn vin_of(seed: u64, index: u64) -> Vin {
    let mut rng = SmallRng::seed_from_u64(seed ^ 0x5f37_59df);
    let mut bytes = [0u8; 17];
    // 10 random characters (a fixed "manufacturer" part per seed) then the index in base 33.
    for b in bytes.iter_mut().take(10) {
        *b = VIN_ALPHABET[rng.random_range(0..VIN_ALPHABET.len())];
    }
    let mut n = index;
    for b in bytes.iter_mut().skip(10).rev() {
        *b = VIN_ALPHABET[(n % 33) as usize];
        n /= 33;
    }
    // Seven base-33 digits hold 42 billion vehicles; every byte is in the alphabet.
    Vin::parse(&bytes).unwrap_or_else(|_| unreachable!("generated VINs use the VIN alphabet"))
}

/// One simulated vehicle and where its random walk is.
#[derive(Clone, Serialize, Deserialize)]
pub struct Vehicle {
    vin: Vin,
    rng: Xoshiro256PlusPlus,
    mean: f64,
    speed: f64,
    lon: f64,
    lat: f64,
    heading: f64,
    phase: Time,
}

impl Vehicle {
    fn new(seed: u64, index: u64, cfg: &FleetConfig) -> Self {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ index);
        let kind: f64 = rng.random();
        let mean = if kind < cfg.speeder_fraction {
            rng.random_range(74.0..90.0)
        } else if kind < cfg.speeder_fraction + 0.25 {
            rng.random_range(50.0..62.0)
        } else {
            rng.random_range(18.0..35.0)
        };
        Vehicle {
            vin: vin_of(seed, index),
            mean,
            speed: mean,
            lon: -122.42 + rng.random_range(-0.1..0.1),
            lat: 37.77 + rng.random_range(-0.1..0.1),
            heading: rng.random_range(0.0..std::f64::consts::TAU),
            phase: rng.random_range(0..cfg.interval_ms.max(1)),
            rng,
        }
    }

    /// The next report, `seconds` after the previous one.
    fn step(&mut self, seconds: f64) -> (f64, f64, f64) {
        let noise: f64 = self.rng.random_range(-4.0..4.0);
        self.speed = (self.speed + (self.mean - self.speed) * 0.2 + noise).clamp(0.0, 140.0);
        self.heading += self.rng.random_range(-0.3..0.3);
        let miles = self.speed * seconds / 3600.0;
        let degrees = miles / 69.0;
        self.lat = (self.lat + degrees * self.heading.cos()).clamp(-89.0, 89.0);
        self.lon += degrees * self.heading.sin();
        if self.lon > 180.0 {
            self.lon -= 360.0;
        } else if self.lon < -180.0 {
            self.lon += 360.0;
        }
        // Three decimals of speed, six of position, like the devices report.
        ((self.lon * 1e6).round() / 1e6, (self.lat * 1e6).round() / 1e6, (self.speed * 1e3).round() / 1e3)
    }
}

/// One partition of the fleet: the vehicles whose index is `partition` modulo `partitions`.
pub struct FleetPartition {
    name: String,
    cfg: FleetConfig,
    vehicles: Vec<Vehicle>,
    /// Start of the current reporting round.
    round: Time,
    /// Next vehicle (in phase order) to report in this round.
    next: usize,
    rng: Xoshiro256PlusPlus,
    record_id: u64,
    partition: u64,
    partitions: u64,
    clock: Box<dyn Fn() -> Time>,
    emitted_at: Time,
    /// What a checkpointed job keeps to generate again from a checkpoint's position.
    checkpoints: Option<Checkpointing>,
}

/// A checkpointed partition's reads, and its snapshots at round starts: from the latest one at
/// or before the last checkpoint's position on.
struct Checkpointing {
    tracker: ReadTracker,
    /// Event time between snapshots (at least one round).
    every: Time,
    snapshots: VecDeque<FleetSnapshot>,
}

impl FleetPartition {
    /// Partition `partition` of `partitions` of the fleet `cfg`.
    pub fn new(cfg: FleetConfig, partition: u64, partitions: u64) -> Self {
        let mut vehicles: Vec<Vehicle> =
            (partition..cfg.vehicles).step_by(partitions.max(1) as usize).map(|i| Vehicle::new(cfg.seed, i, &cfg)).collect();
        vehicles.sort_by_key(|v| (v.phase, v.vin));
        Self::of_vehicles(cfg, (partition, partitions), vehicles)
    }

    /// The partition with its vehicles as they are at its first round.
    fn of_vehicles(cfg: FleetConfig, (partition, partitions): (u64, u64), vehicles: Vec<Vehicle>) -> Self {
        FleetPartition {
            name: format!("generator/{partition}"),
            round: cfg.start_ms,
            rng: Xoshiro256PlusPlus::seed_from_u64(cfg.seed ^ (partition << 32) ^ 0xdead_beef),
            cfg,
            vehicles,
            next: 0,
            record_id: 0,
            partition,
            partitions,
            clock: Box::new(crate::clock::now_ms),
            emitted_at: 0,
            checkpoints: None,
        }
    }

    /// Keeps what checkpoints need: a snapshot of the fleet at a round start every `every` ms of
    /// event time, and what was read and delivered (see [`ReadTracker`]).
    pub fn checkpointed(mut self, every: Time) -> Self {
        let tracker = ReadTracker::new(self.record_id as i64, None, Delivered::default());
        self.checkpoints = Some(Checkpointing { tracker, every: every.max(1), snapshots: VecDeque::new() });
        self
    }

    /// Partition `partition` of `partitions` of the fleet `cfg`, generating again from a
    /// checkpoint's position `saved` (its snapshot, then the reports up to its offset skipped).
    pub fn restore(cfg: FleetConfig, (partition, partitions): (u64, u64), saved: &SavedPosition, every: Time) -> Result<Self, SourceError> {
        let name = format!("generator/{partition}");
        let snapshot = FleetSnapshot::decode(&name, &saved.source_state, &FleetIdentity::of(&cfg, partitions))?;
        let cfg = FleetConfig { start_ms: snapshot.start_ms, ..cfg };
        // (The snapshot's vehicles, not the fleet's first ones: a million are not built twice.)
        let mut p = FleetPartition::of_vehicles(cfg, (partition, partitions), snapshot.vehicles.clone()).checkpointed(every);
        p.round = snapshot.round;
        p.record_id = snapshot.record_id;
        p.rng = snapshot.rng.clone();
        if let Some(c) = p.checkpoints.as_mut() {
            c.snapshots.push_back(snapshot);
        }
        while p.record_id < saved.offset.max(0) as u64 && p.generate().is_ok() {}
        if p.record_id != saved.offset.max(0) as u64 {
            return Err(SourceError::Setup(format!("{name}: the checkpoint's position {} lies beyond the fleet's end", saved.offset)));
        }
        if let Some(c) = p.checkpoints.as_mut() {
            c.tracker = ReadTracker::resuming(saved);
        }
        Ok(p)
    }

    /// Replaces the wall clock (for tests of the real-time mode).
    pub fn with_clock(mut self, clock: impl Fn() -> Time + 'static) -> Self {
        self.clock = Box::new(clock);
        self
    }

    /// When the last reading was sent (its event time is up to the delivery delay earlier), epoch ms.
    pub fn emitted_at(&self) -> Time {
        self.emitted_at
    }

    /// The next reading in emission order, or why there is none.
    pub fn next_reading(&mut self) -> Result<Reading, Poll> {
        self.start_round()?;
        let emit_at = self.round + self.vehicles[self.next].phase;
        if self.cfg.realtime && emit_at > (self.clock)() {
            return Err(Poll::Pending);
        }
        self.generate()
    }

    /// Moves to the next round when this one is over (taking a snapshot at its start when one is
    /// due); `Finished` when the fleet is empty or its duration is over.
    fn start_round(&mut self) -> Result<(), Poll> {
        if self.vehicles.is_empty() {
            return Err(Poll::Finished);
        }
        if self.next == self.vehicles.len() {
            self.next = 0;
            self.round += self.cfg.interval_ms;
        }
        if let Some(d) = self.cfg.duration_ms {
            if self.round >= self.cfg.start_ms + d {
                return Err(Poll::Finished);
            }
        }
        if self.next == 0 {
            self.snapshot_if_due();
        }
        Ok(())
    }

    /// At a round's start: keeps a snapshot when the last one is at least `every` ms of event
    /// time old.
    fn snapshot_if_due(&mut self) {
        let Some(c) = self.checkpoints.as_ref() else { return };
        if c.snapshots.back().is_some_and(|s| s.round + c.every > self.round) {
            return;
        }
        let snapshot = FleetSnapshot {
            identity: FleetIdentity::of(&self.cfg, self.partitions),
            start_ms: self.cfg.start_ms,
            round: self.round,
            record_id: self.record_id,
            rng: self.rng.clone(),
            vehicles: self.vehicles.clone(),
        };
        if let Some(c) = self.checkpoints.as_mut() {
            c.snapshots.push_back(snapshot);
        }
    }

    /// The next reading, whatever the clock.
    fn generate(&mut self) -> Result<Reading, Poll> {
        self.start_round()?;
        let emit_at = self.round + self.vehicles[self.next].phase;
        self.emitted_at = emit_at;
        let interval = self.cfg.interval_ms as f64 / 1000.0;
        let vehicle = &mut self.vehicles[self.next];
        let (lon, lat, speed) = vehicle.step(interval);
        let mut delay = self.rng.random_range(0..=self.cfg.max_delay_ms);
        if self.cfg.late_fraction > 0.0 && self.rng.random::<f64>() < self.cfg.late_fraction {
            delay += self.cfg.late_delay_ms;
        }
        let reading = Reading {
            // Distinct across partitions: partition + k * partitions.
            record_id: self.partition + self.record_id * self.partitions.max(1),
            timestamp: emit_at.saturating_sub(delay),
            vin: vehicle.vin,
            lon,
            lat,
            speed,
        };
        self.record_id += 1;
        self.next += 1;
        Ok(reading)
    }
}

impl Partition for FleetPartition {
    fn name(&self) -> &str {
        &self.name
    }

    fn poll(&mut self, max: usize, emit: &mut dyn FnMut(Record<'_>, u64)) -> Result<Poll, SourceError> {
        for _ in 0..max {
            let offset = self.record_id;
            match self.next_reading() {
                Ok(r) => emit(Record::Reading(r), offset),
                Err(status) => return Ok(status),
            }
        }
        Ok(Poll::Ready)
    }

    fn commits(&self) -> bool {
        self.checkpoints.is_some()
    }

    fn track(&mut self, runs: &[Run], emitted: &[Run]) {
        if let Some(c) = self.checkpoints.as_mut() {
            c.tracker.track(runs, emitted);
        }
    }

    /// The tracker's position, with the latest snapshot at or before it (older ones are
    /// dropped: a later checkpoint's position is never earlier).
    fn position_at(&mut self, at: Time, durable: Time, read_all: bool) -> Option<SavedPosition> {
        let record_id = self.record_id;
        let c = self.checkpoints.as_mut()?;
        c.tracker.settle_apart(at, durable);
        if read_all {
            c.tracker.read_all_below(record_id);
        }
        let mut position = c.tracker.position(&self.name);
        let offset = position.offset.max(0) as u64;
        while c.snapshots.get(1).is_some_and(|s| s.record_id <= offset) {
            c.snapshots.pop_front();
        }
        position.source_state = c.snapshots.front().filter(|s| s.record_id <= offset)?.encode();
        Some(position)
    }

    fn resumed_max_ts(&self) -> Option<Time> {
        self.checkpoints.as_ref().and_then(|c| c.tracker.resumed_max_ts())
    }

    fn delivered_earlier(&self) -> Delivered {
        self.checkpoints.as_ref().map(|c| c.tracker.delivered().clone()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vins_are_valid_and_distinct() {
        let vins: std::collections::BTreeSet<Vin> = (0..10_000).map(|i| vin_of(7, i)).collect();
        assert_eq!(vins.len(), 10_000);
    }

    #[test]
    fn deterministic_and_bounded_disorder() {
        let cfg = FleetConfig { vehicles: 50, duration_ms: Some(60_000), ..FleetConfig::default() };
        let run = |cfg: &FleetConfig| {
            let mut p = FleetPartition::new(cfg.clone(), 0, 1);
            std::iter::from_fn(|| p.next_reading().ok()).collect::<Vec<_>>()
        };
        let a = run(&cfg);
        assert_eq!(a.len(), 50 * 60);
        assert_eq!(a, run(&cfg));
        let mut max_seen = 0;
        for r in &a {
            assert!(r.timestamp + cfg.max_delay_ms + cfg.interval_ms >= max_seen);
            max_seen = max_seen.max(r.timestamp);
            assert!((0.0..=140.0).contains(&r.speed));
        }
        assert!(a.iter().any(|r| r.speed > 65.0), "some vehicles speed");
    }

    #[test]
    fn realtime_waits_for_the_clock() {
        let cfg = FleetConfig { vehicles: 3, realtime: true, start_ms: 1_000_000, ..FleetConfig::default() };
        let mut p = FleetPartition::new(cfg, 0, 1).with_clock(|| 1_000_999);
        let mut n = 0;
        while p.next_reading().is_ok() {
            n += 1;
        }
        assert_eq!(n, 3, "one round is due by the clock");
        assert_eq!(p.next_reading(), Err(Poll::Pending));
    }

    #[test]
    fn the_serializable_rng_is_small_rngs_algorithm() {
        // The generated streams stay what they were before checkpoints needed the rng's state.
        for seed in [0, 42, u64::MAX] {
            let mut a = SmallRng::seed_from_u64(seed);
            let mut b = Xoshiro256PlusPlus::seed_from_u64(seed);
            for _ in 0..100 {
                assert_eq!(a.random::<u64>(), b.random::<u64>());
            }
        }
    }

    #[test]
    fn a_restored_partition_generates_what_the_stopped_one_would_have() {
        let cfg = FleetConfig { vehicles: 50, late_fraction: 0.05, duration_ms: Some(600_000), ..FleetConfig::default() };
        let mut p = FleetPartition::new(cfg.clone(), 1, 3).checkpointed(10_000);
        let (mut all, mut runs, mut emitted) = (Vec::new(), Vec::new(), Vec::new());
        for offset in 0..2_000u64 {
            let r = p.next_reading().unwrap();
            Run::push(&mut runs, offset, fleetflow_dataflows::time::align(r.timestamp, 10_000) + 10_000, Some(r.timestamp));
            Run::push_exact(&mut emitted, offset, r.timestamp);
            all.push(r);
        }
        p.track(&runs, &emitted);
        let at = cfg.start_ms + 40_000;
        let position = p.position_at(at, at, false).unwrap();
        let offset = position.offset as usize;
        assert!(offset > 0 && offset < all.len() && !position.source_state.is_empty());
        assert!(all[..offset].iter().all(|r| r.timestamp < at), "what lies before the position completed before the boundary");
        let snapshots = &p.checkpoints.as_ref().unwrap().snapshots;
        assert!(snapshots[0].record_id <= offset as u64 && snapshots[1].record_id > offset as u64, "older snapshots are dropped");
        let mut q = FleetPartition::restore(cfg.clone(), (1, 3), &position, 10_000).unwrap();
        let again: Vec<Reading> = (offset..all.len()).map(|_| q.next_reading().unwrap()).collect();
        assert_eq!(again, all[offset..]);
        assert_eq!(q.resumed_max_ts(), position.max_ts);
        let other = FleetConfig { seed: 7, ..cfg };
        let refused = FleetPartition::restore(other, (1, 3), &position, 10_000).err().unwrap().to_string();
        assert!(refused.contains("another fleet") && refused.contains("seed 42"), "{refused}");
    }
}
