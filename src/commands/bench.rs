//! `fleetflow bench`: drives the whole job with an open-loop generator whose event time follows
//! the wall clock, and measures window latency (from the moment a tumbling window can close, its
//! end plus the allowed lateness by the wall clock, to its hand-off to the sinks), throughput, CPU
//! and peak memory. Latency is measured against that scheduled moment, not against when the job got
//! round to a reading, so a job that falls behind shows it (no coordinated omission). Alert latency
//! runs from the end of the alert's window (when its latest reading is ingested) to its hand-off.
//! A sweep raises the rate run by run until the job stops keeping up, and reports the highest rate
//! it sustained. The report is JSON, the plot SVG (`bench_plot`). With `--kafka-brokers` the load
//! goes through a real topic (`bench_kafka`).

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;

pub use super::bench_report::{Outcome, Percentiles, Report, Sweep};
use crate::commands::bench_kafka::KafkaLoad;
use crate::commands::bench_report::CheckpointCost;
use crate::config::FolderConfig;
use crate::config::{Config, SinkConfig};
use crate::operations::metrics::Metrics;

/// `fleetflow bench` flags.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Readings per second to offer (open loop).
    #[arg(long, default_value_t = 100_000)]
    pub rate: u64,
    /// Seconds to run: at least the window length plus 10 s, so that windows close on the
    /// watermark rather than at the end of the input.
    #[arg(long = "duration-secs", value_name = "SECS", alias = "duration", default_value_t = 90)]
    pub duration: u64,
    /// Vehicles (each reports every vehicles/rate seconds).
    #[arg(long, default_value_t = 10_000)]
    pub vehicles: u64,
    /// Worker threads.
    #[arg(short = 'w', long, default_value_t = 1)]
    pub workers: usize,
    /// Largest delivery delay of a reading (out of order), ms. The watermark passes a window's
    /// end plus the lateness only once a reading that recent arrives, so delays add to latency.
    #[arg(long, default_value_t = 2_000)]
    pub max_delay_ms: u64,
    /// Tumbling window length, s (sliding windows: five of them, sliding by one). The default is
    /// the job's; a shorter window closes more boundaries (10,000 windows each) in one run, so a
    /// change's effect on the burst can be told from run-to-run variance.
    #[arg(long, default_value_t = 60)]
    pub window_secs: u64,
    /// Folder for the job's outputs (default: a temporary folder, removed afterwards).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Where to write the JSON report.
    #[arg(long, default_value = "bench-report.json")]
    pub report: PathBuf,
    /// Where to draw the plot (SVG): the latency distribution, or for a sweep latency against rate.
    #[arg(long, default_value = "bench-report.svg")]
    pub plot: PathBuf,
    /// Sweep: start at `--rate` and raise it by `--sweep-factor` each run until a run does not
    /// sustain it (see `--max-p99-ms`), at most `--sweep-steps` runs; report the highest sustained.
    #[arg(long)]
    pub sweep: bool,
    /// Sweep: the factor between runs' rates.
    #[arg(long, default_value_t = 1.5)]
    pub sweep_factor: f64,
    /// Sweep: the most runs.
    #[arg(long, default_value_t = 8)]
    pub sweep_steps: usize,
    /// Take checkpoints of the operators' state at every window boundary (as a Kafka job does,
    /// into a temporary state folder) to measure what they cost.
    #[arg(long)]
    pub checkpoints: bool,
    /// With `--checkpoints`: the memory the saved states may take while they wait for the sinks,
    /// MiB (`[checkpoints] pending_mib`; its default unless given).
    #[arg(long, value_name = "MIB", requires = "checkpoints")]
    pub checkpoint_pending_mib: Option<u64>,
    /// A rate is sustained when the job keeps up (achieves 97% of it) and the p99 window latency
    /// stays below this, ms.
    #[arg(long, default_value_t = 1_000.0)]
    pub max_p99_ms: f64,
    /// Run the load through this Kafka cluster (HOST:PORT): a `fleetflow produce` process
    /// publishes the fleet into `--topic` at its pace, and the job consumes it.
    #[arg(long, value_name = "HOST:PORT")]
    pub kafka_brokers: Option<String>,
    /// With `--kafka-brokers`: the topic (created with `--partitions` if missing; each run
    /// reads it from its own start).
    #[arg(long, default_value = "fleetflow-bench")]
    pub topic: String,
    /// With `--kafka-brokers`: partitions of the topic when the bench creates it.
    #[arg(long, default_value_t = 4)]
    pub partitions: i32,
    /// With `--kafka-brokers`: a librdkafka property of the job's consumers, `KEY=VALUE`
    /// (repeatable), as `[kafka.properties]` sets it: e.g. `fetch.wait.max.ms=5` trades the
    /// default large fetches' throughput for latency.
    #[arg(long = "kafka-property", value_name = "KEY=VALUE")]
    pub kafka_properties: Vec<String>,
    /// With `--kafka-brokers`: how long the producer waits to fill a batch, ms.
    #[arg(long, default_value_t = 5)]
    pub producer_linger_ms: u64,
}

/// CPU seconds in user mode and in the kernel, and the peak resident memory (MiB), of `who`
/// (`libc::RUSAGE_SELF`, or `RUSAGE_CHILDREN`: the children waited for).
pub(super) fn rusage(who: libc::c_int) -> (f64, f64, f64) {
    // SAFETY: getrusage fills the zeroed struct passed to it; nothing else is touched.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(who, &mut usage);
        usage
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(usage.ru_utime), secs(usage.ru_stime), usage.ru_maxrss as f64 / 1024.0)
}

/// Runs the benchmark (or the sweep), writes the JSON report and the plot.
pub fn bench(args: &BenchArgs) -> anyhow::Result<Outcome> {
    anyhow::ensure!(args.sweep_factor > 1.0, "--sweep-factor: {} does not raise the rate; use more than 1", args.sweep_factor);
    let outcome = if args.sweep {
        let mut runs: Vec<Report> = Vec::new();
        let mut rate = args.rate;
        let mut highest = None;
        for _ in 0..args.sweep_steps.max(1) {
            let r = run_once(args, rate)?;
            // The rate offered: the rate asked for, rounded to whole-ms report intervals.
            let offered = r.rate_offered;
            tracing::info!(
                "sweep: {offered} readings/s offered, {:.0} achieved, p99 window latency {:.1} ms",
                r.rate_achieved,
                r.window_latency_ms.p99
            );
            let sustained = r.sustained(args.max_p99_ms);
            runs.push(r);
            if !sustained {
                break;
            }
            highest = Some(offered);
            rate = (rate as f64 * args.sweep_factor) as u64;
        }
        Outcome::Sweep(Sweep { runs, highest_sustained_rate: highest, max_p99_ms: args.max_p99_ms })
    } else {
        Outcome::Run(Box::new(run_once(args, args.rate)?))
    };
    let json = serde_json::to_string_pretty(&outcome).context("encoding the report")?;
    std::fs::write(&args.report, json + "\n").with_context(|| format!("writing {}", args.report.display()))?;
    match &outcome {
        Outcome::Run(r) => crate::commands::bench_plot::latency_cdf(&args.plot, r)?,
        Outcome::Sweep(s) => crate::commands::bench_plot::latency_by_rate(&args.plot, s)?,
    }
    Ok(outcome)
}

fn percentiles(hist: Option<&hdrhistogram::Histogram<u64>>) -> Percentiles {
    let pct = |q: f64| hist.map(|h| h.value_at_quantile(q) as f64 / 1000.0).unwrap_or(0.0);
    Percentiles {
        windows: hist.map(|h| h.len()).unwrap_or(0),
        p50: pct(0.5),
        p90: pct(0.9),
        p99: pct(0.99),
        p999: pct(0.999),
        max: hist.map(|h| h.max() as f64 / 1000.0).unwrap_or(0.0),
    }
}

/// One run at `rate` readings/s.
/// The generator's reporting interval for `rate`, once the flags are checked.
fn checked_interval(args: &BenchArgs, rate: u64) -> anyhow::Result<u64> {
    anyhow::ensure!(rate > 0 && args.vehicles > 0, "--rate and --vehicles: use positive numbers");
    let interval_ms = args.vehicles * 1000 / rate;
    anyhow::ensure!(
        interval_ms >= 1,
        "--rate {} with --vehicles {}: a vehicle would report more than once per millisecond; use at least {} vehicles",
        rate,
        args.vehicles,
        rate.div_ceil(1000)
    );
    anyhow::ensure!(
        args.window_secs > 0 && 86_400 % args.window_secs == 0,
        "--window-secs: {} does not divide a day; use e.g. 5, 10, 15, 30 or 60",
        args.window_secs
    );
    let min_duration = args.window_secs + 10;
    anyhow::ensure!(
        args.duration >= min_duration,
        "--duration-secs: at least {min_duration} s (a window and then some), so that some windows close on the watermark, not at the end of input"
    );
    Ok(interval_ms)
}

/// The job a bench run measures: the real-time generator at `interval_ms`, into `output`.
fn bench_config(args: &BenchArgs, interval_ms: u64, output: PathBuf) -> Config {
    let mut config = Config { workers: args.workers, progress_interval_secs: 10, ..Config::default() };
    config.generator.vehicles = args.vehicles;
    config.generator.interval_ms = interval_ms;
    config.generator.realtime = true;
    config.generator.duration_secs = args.duration;
    config.generator.late_fraction = 0.0;
    config.generator.max_delay_ms = args.max_delay_ms;
    config.windows.tumbling_secs = args.window_secs;
    config.windows.sliding_slide_secs = args.window_secs;
    config.windows.sliding_size_secs = args.window_secs * 5;
    if args.checkpoints {
        config.checkpoints.measure_only = true;
        config.checkpoints.interval_secs = args.window_secs;
        config.checkpoints.dir = output.join("state").display().to_string();
        if let Some(mib) = args.checkpoint_pending_mib {
            config.checkpoints.pending_mib = mib;
        }
    }
    config.sinks.insert(
        "local".into(),
        SinkConfig::Folder(FolderConfig { path: output, buffer_mib: 5.0, buffer_secs: 60.0, ..FolderConfig::default() }),
    );
    config
}

/// The rate the sources read `readings` at: from the first read to the last, `readings - 1`
/// gaps (none: too little was read to tell). A job that keeps up reads each reading when it is
/// due, and the generator spreads a round's readings over its interval (each vehicle at a phase of
/// its own), so the span is the readings' own: adding a whole reporting interval, as this once
/// did, understated the rate by an interval over the run (2.6% at a million vehicles reporting
/// every 2 s in a 75 s run, which read as falling behind).
fn read_rate(metrics: &Metrics, readings: u64) -> Option<f64> {
    use std::sync::atomic::Ordering::Relaxed;
    let (first, last) = (metrics.first_read_ms.load(Relaxed), metrics.last_read_ms.load(Relaxed));
    (first > 0 && last > first && readings > 1).then(|| (readings - 1) as f64 * 1000.0 / (last - first) as f64)
}

fn run_once(args: &BenchArgs, rate: u64) -> anyhow::Result<Report> {
    let interval_ms = checked_interval(args, rate)?;
    let temp = tempfile_dir()?;
    let mut config = bench_config(args, interval_ms, args.output.clone().unwrap_or_else(|| temp.clone()));
    let lateness = config.windows.allowed_lateness_ms;
    let start = crate::clock::now_ms();
    let stop = Arc::new(AtomicBool::new(false));
    let load = match &args.kafka_brokers {
        Some(brokers) => {
            let load = KafkaLoad::new(args, brokers)?;
            load.configure(&mut config, start);
            let grace = std::time::Duration::from_millis(lateness + 2_000);
            Some(load.produce(args, interval_ms, stop.clone(), grace)?)
        }
        None => None,
    };
    // Windows the end of the input closes (before the watermark would) are not measured.
    let until = (start + args.duration * 1000).saturating_sub(lateness + config.generator.max_delay_ms);
    let window_ms = config.windows.tumbling_secs * 1000;
    let mut metrics = Metrics::new(args.workers).measuring_latency(lateness, until, window_ms);
    if load.is_some() {
        metrics = metrics.measuring_read_delay();
    }
    let metrics = Arc::new(metrics);
    let (user_before, system_before, _) = rusage(libc::RUSAGE_SELF);
    let started = Instant::now();
    let summary = match crate::job::run_with(config.validated()?, stop, metrics.clone()) {
        Ok(summary) => summary,
        Err(e) => {
            if let Some(producing) = load {
                producing.abandon();
            }
            return Err(e.into());
        }
    };
    let lock = |h: &std::sync::Mutex<hdrhistogram::Histogram<u64>>| h.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let read_delay = metrics.read_delay.as_ref().map(lock);
    let kafka = load.map(|l| l.finish(percentiles(read_delay.as_ref()))).transpose()?;
    let wall = started.elapsed().as_secs_f64();
    let (user, system, rss) = rusage(libc::RUSAGE_SELF);
    let windows = metrics.window_latency.as_ref().map(lock);
    let alerts = metrics.alert_latency.as_ref().map(lock);
    let split = metrics.latency_split.as_ref().map(|s| {
        let s = s.lock().unwrap_or_else(|p| p.into_inner());
        (s.source.clone(), s.dataflow.clone())
    });
    let cdf = windows
        .as_ref()
        .map(|h| h.iter_quantiles(2).map(|v| (v.quantile_iterated_to(), v.value_iterated_to() as f64 / 1000.0)).collect())
        .unwrap_or_default();
    let report = Report {
        // What the generator offers: its reporting interval is whole milliseconds.
        rate_offered: args.vehicles * 1000 / interval_ms,
        // From the first reading read to the last: a job that keeps up reads the last one when it
        // is due (start-up and the last flush are not the rate).
        rate_achieved: read_rate(&metrics, summary.readings).unwrap_or(summary.readings as f64 / wall),
        readings: summary.readings,
        wall_secs: wall,
        workers: args.workers,
        vehicles: args.vehicles,
        allowed_lateness_ms: lateness,
        window_secs: args.window_secs,
        max_delay_ms: args.max_delay_ms,
        window_latency_ms: percentiles(windows.as_ref()),
        alert_latency_ms: percentiles(alerts.as_ref()),
        window_latency_source_ms: percentiles(split.as_ref().map(|s| &s.0)),
        window_latency_dataflow_ms: percentiles(split.as_ref().map(|s| &s.1)),
        window_latency_by_boundary: metrics.latency_by_boundary(),
        window_latency_cdf: cdf,
        cpu_user_secs: user - user_before,
        cpu_system_secs: system - system_before,
        peak_rss_mib: rss,
        checkpoints: args.checkpoints.then(|| CheckpointCost::of(&metrics)),
        kafka,
    };
    if args.output.is_none() {
        let _ = std::fs::remove_dir_all(&temp);
    }
    Ok(report)
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("fleetflow-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Command};

    #[test]
    fn the_read_rate_is_the_readings_over_their_own_span() {
        use std::sync::atomic::Ordering::Relaxed;
        // A million vehicles every 2 s for 76 s, each at its own phase: the first read at 0 s,
        // the last just before 76 s. (Adding the 2 s interval made this 487,000/s.)
        let m = crate::operations::metrics::Metrics::new(1);
        m.first_read_ms.store(1_000, Relaxed);
        m.last_read_ms.store(1_000 + 75_999, Relaxed);
        let rate = super::read_rate(&m, 38_000_000).unwrap();
        assert!((rate - 500_000.0).abs() < 100.0, "{rate}");
        assert_eq!(super::read_rate(&m, 1), None, "one reading has no rate");
    }

    #[test]
    fn the_defaults_run() {
        // `fleetflow bench` alone once failed its own check (60 s, below a window plus 10 s).
        let Some(Command::Bench(args)) = Cli::try_parse_from(["fleetflow", "bench"]).unwrap().command else { panic!("a bench command") };
        assert!(args.duration >= args.window_secs + 10, "{args:?}");
        assert_eq!(super::checked_interval(&args, args.rate).unwrap(), 100, "10,000 vehicles at 100,000/s: every 100 ms");
    }
}
