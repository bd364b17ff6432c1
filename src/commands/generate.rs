//! `fleetflow generate`: writes generated readings (one file per fleet partition) and matching
//! reference files, optionally with late and malformed records, for tests, demos and benchmarks.

use clap::Args;
use std::fs::File;
use std::io::{BufWriter, Write};

use anyhow::Context;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::encode::reading_line;
use crate::sources::generator::{vin_of, FleetConfig, FleetPartition};

/// `fleetflow generate` flags.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Folder to write into (created): readings-NNN.txt, vin_sensor.csv, buggy_sensors.csv; `-`
    /// writes the readings alone to stdout.
    #[arg(long)]
    pub output: std::path::PathBuf,
    /// Vehicles.
    #[arg(long, default_value_t = 1_000)]
    pub vehicles: u64,
    /// Seconds of event time.
    #[arg(long, default_value_t = 600)]
    pub duration_secs: u64,
    /// Each vehicle reports every this many ms.
    #[arg(long, default_value_t = 1_000)]
    pub interval_ms: u64,
    /// Files (partitions) to split the fleet into.
    #[arg(long, default_value_t = 1)]
    pub files: u64,
    /// Event time of the first reading: a date (its midnight UTC) or an RFC 3339 time.
    #[arg(long, default_value = "2025-11-25T00:00:00Z")]
    pub start: String,
    /// Seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Share of habitual speeders.
    #[arg(long, default_value_t = 0.05)]
    pub speeder_fraction: f64,
    /// Largest out-of-order delay, ms.
    #[arg(long, default_value_t = 2_000)]
    pub max_delay_ms: u64,
    /// Share of readings delivered late (beyond a 5 s lateness).
    #[arg(long, default_value_t = 0.0)]
    pub late_fraction: f64,
    /// Share of lines replaced by malformed ones.
    #[arg(long, default_value_t = 0.0)]
    pub malformed_fraction: f64,
    /// Write JSON lines instead of text.
    #[arg(long)]
    pub json: bool,
    /// Share of sensors on the buggy list.
    #[arg(long, default_value_t = 0.02)]
    pub buggy_fraction: f64,
}

/// Malformed lines of several kinds, so every reason of the parser shows up.
const MALFORMED: [&str; 8] = [
    "not a reading",
    "1 2 3",
    "x 1764028800000 1HGCM82633A004352 -122.4 37.7 50",
    "1 1764028800000 1HGCM82633A00435O -122.4 37.7 50",
    "1 1764028800000 1HGCM82633A004352 -222.4 37.7 50",
    "1 1764028800000 1HGCM82633A004352 -122.4 37.7 301",
    "{\"record_id\": 1, \"vin\": \"1HGCM82633A004352\"}",
    "1 1764028800000 1HGCM82633A004352 -122.4 37.7 NaN",
];

/// Writes the files (or, with `--output -`, the readings to stdout); returns the number of
/// reading lines written.
pub fn generate(args: &GenerateArgs) -> anyhow::Result<u64> {
    anyhow::ensure!(args.files >= 1, "--files: 0; write at least one file");
    anyhow::ensure!((0.0..=1.0).contains(&args.malformed_fraction), "--malformed-fraction: use a share in [0, 1]");
    anyhow::ensure!((0.0..=1.0).contains(&args.late_fraction), "--late-fraction: use a share in [0, 1]");
    let start = crate::time_arg::parse_for("--start", &args.start).map_err(anyhow::Error::msg)?;
    let cfg = FleetConfig {
        vehicles: args.vehicles,
        interval_ms: args.interval_ms,
        speeder_fraction: args.speeder_fraction,
        seed: args.seed,
        start_ms: start,
        duration_ms: Some(args.duration_secs * 1000),
        max_delay_ms: args.max_delay_ms,
        late_fraction: args.late_fraction,
        late_delay_ms: 35_000,
        realtime: false,
    };
    let mut rng = SmallRng::seed_from_u64(args.seed ^ 0x6d61_6c66);
    if args.output.as_os_str() == "-" {
        // Every partition in turn on stdout; a reader that goes away ends the output quietly.
        let mut out = BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
        let mut written = 0;
        for p in 0..args.files {
            written += write_partition(&mut out, args, &cfg, p, &mut rng)?;
        }
        return match out.flush() {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
            _ => Ok(written),
        };
    }
    std::fs::create_dir_all(&args.output).with_context(|| format!("creating {}", args.output.display()))?;
    let mut written = 0;
    for p in 0..args.files {
        let path = args.output.join(format!("readings-{p:03}.txt"));
        let mut out = BufWriter::with_capacity(1 << 20, File::create(&path).with_context(|| format!("creating {}", path.display()))?);
        written += write_partition(&mut out, args, &cfg, p, &mut rng)?;
        out.flush()?;
    }
    write_reference(args, start, &mut rng)?;
    Ok(written)
}

/// Writes partition `p` of the fleet to `out`, with malformed lines mixed in; returns the
/// readings written (a reader that went away ends it early).
fn write_partition(out: &mut impl Write, args: &GenerateArgs, cfg: &FleetConfig, p: u64, rng: &mut SmallRng) -> anyhow::Result<u64> {
    let mut part = FleetPartition::new(cfg.clone(), p, args.files);
    let mut written = 0;
    while let Ok(r) = part.next_reading() {
        let line = if args.json {
            format!(
                "{{\"record_id\":{},\"timestamp\":{},\"vin\":\"{}\",\"lon\":{},\"lat\":{},\"speed\":{}}}",
                r.record_id, r.timestamp, r.vin, r.lon, r.lat, r.speed
            )
        } else {
            reading_line(&r)
        };
        let mut result = Ok(());
        if args.malformed_fraction > 0.0 && rng.random::<f64>() < args.malformed_fraction {
            let bad = MALFORMED[rng.random_range(0..MALFORMED.len())];
            result = writeln!(out, "{bad}");
            if rng.random::<f64>() < 0.2 {
                result = result.and_then(|_| writeln!(out));
            }
        }
        match result.and_then(|_| writeln!(out, "{line}")) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(written),
            r => r?,
        }
        written += 1;
    }
    Ok(written)
}

/// The reference files: one sensor per vehicle, and one vehicle in ten gets a new sensor
/// halfway through; a share of the sensors on the buggy list.
fn write_reference(args: &GenerateArgs, start: u64, rng: &mut SmallRng) -> anyhow::Result<()> {
    let half = start + args.duration_secs * 500;
    let mut reference = BufWriter::new(File::create(args.output.join("vin_sensor.csv"))?);
    let mut buggy = BufWriter::new(File::create(args.output.join("buggy_sensors.csv"))?);
    writeln!(reference, "vin,sensor_id,effective_from")?;
    writeln!(buggy, "sensor_id")?;
    let mut sensors = Vec::new();
    for v in 0..args.vehicles {
        let vin = vin_of(args.seed, v);
        let sensor = format!("S{v:07}");
        writeln!(reference, "{vin},{sensor},")?;
        sensors.push(sensor);
        if v % 10 == 3 {
            let replacement = format!("R{v:07}");
            writeln!(reference, "{vin},{replacement},{half}")?;
            sensors.push(replacement);
        }
    }
    for s in sensors {
        if rng.random::<f64>() < args.buggy_fraction {
            writeln!(buggy, "{s}")?;
        }
    }
    reference.flush()?;
    buggy.flush()?;
    Ok(())
}
