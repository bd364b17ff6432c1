//! The fleet generator: simulated vehicles reporting about once per interval, with realistic speeds
//! (city, highway and habitual speeders), small delivery delays (out-of-order within the allowed
//! lateness) and an optional share of late readings. Seeded: the same seed gives the same fleet.

mod config;
pub use config::GeneratorConfig;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use fleetflow_dataflows::{Reading, Time, Vin};

use super::{Partition, Poll, Record, SourceError};

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

struct Vehicle {
    vin: Vin,
    rng: SmallRng,
    mean: f64,
    speed: f64,
    lon: f64,
    lat: f64,
    heading: f64,
    phase: Time,
}

impl Vehicle {
    fn new(seed: u64, index: u64, cfg: &FleetConfig) -> Self {
        let mut rng = SmallRng::seed_from_u64(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ index);
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
    rng: SmallRng,
    record_id: u64,
    partition: u64,
    partitions: u64,
    clock: Box<dyn Fn() -> Time>,
    emitted_at: Time,
}

impl FleetPartition {
    /// Partition `partition` of `partitions` of the fleet `cfg`.
    pub fn new(cfg: FleetConfig, partition: u64, partitions: u64) -> Self {
        let mut vehicles: Vec<Vehicle> =
            (partition..cfg.vehicles).step_by(partitions.max(1) as usize).map(|i| Vehicle::new(cfg.seed, i, &cfg)).collect();
        vehicles.sort_by_key(|v| (v.phase, v.vin));
        FleetPartition {
            name: format!("generator/{partition}"),
            round: cfg.start_ms,
            rng: SmallRng::seed_from_u64(cfg.seed ^ (partition << 32) ^ 0xdead_beef),
            cfg,
            vehicles,
            next: 0,
            record_id: 0,
            partition,
            partitions,
            clock: Box::new(crate::clock::now_ms),
            emitted_at: 0,
        }
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
        let emit_at = self.round + self.vehicles[self.next].phase;
        if self.cfg.realtime && emit_at > (self.clock)() {
            return Err(Poll::Pending);
        }
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
}
