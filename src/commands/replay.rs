//! `fleetflow replay`: recompute the outputs of past days (backfill) from the `raw` archive, in a
//! folder or S3, or from Kafka, as fast as the machine allows, into an output of their own.
//!
//! The job is the live one with a different source: the archive source reads the days plus a
//! margin for context in event-time order, the wall-clock check on event times is off, and only
//! records filed under the replayed days are written. By default the output is a sealed folder
//! (complete, sorted, deterministically named files), so a replay writes byte for byte what a
//! live run with a sealed folder sink wrote for those days, at any worker count, and a second
//! replay of the same days overwrites the first.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;

use crate::config::FolderConfig;
use crate::config::{Config, ConfigError, SinkConfig, SourceKind, ValidConfig};
use crate::job::{JobError, Summary};
use crate::operations::metrics::Metrics;

/// `fleetflow replay` flags.
#[derive(Debug, Args, Default)]
pub struct ReplayArgs {
    /// First day replayed (`YYYY-MM-DD`, UTC) or an RFC 3339 time.
    #[arg(long)]
    pub from: String,
    /// Last day replayed, included (default: the first), or the RFC 3339 time it ends before.
    #[arg(long)]
    pub to: Option<String>,
    /// The `raw` archive: a folder or `s3://bucket/prefix` holding `raw/YYYY/MM/DD/HH/`.
    #[arg(long, conflicts_with = "kafka_brokers")]
    pub archive: Option<String>,
    /// Replay from Kafka instead: bootstrap brokers (with `--topic`, `--start`, `--stop`).
    #[arg(long)]
    pub kafka_brokers: Option<String>,
    /// Kafka: the topic of readings.
    #[arg(long)]
    pub topic: Option<String>,
    /// Kafka: first message time read (RFC 3339; default: the days' start less the margin and an hour).
    #[arg(long)]
    pub start: Option<crate::config::Start>,
    /// Kafka: message time to stop at (RFC 3339; default: the days' end plus the margin and an hour).
    #[arg(long)]
    pub stop: Option<crate::config::Stop>,
    /// Output folder (sealed: one complete, sorted file per stream and hour).
    #[arg(long, default_value = "backfill")]
    pub output: PathBuf,
    /// Write to the config file's sinks and routes instead of `--output`.
    #[arg(long)]
    pub config_sinks: bool,
    /// TOML config file: windows, thresholds, reference files (and sinks with `--config-sinks`).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Worker threads.
    #[arg(short = 'w', long)]
    pub workers: Option<usize>,
    /// How long after its event hour a reading may be filed in the archive, s (0 for the folder
    /// sink's event-time layout; Firehose's S3 layout is by arrival).
    #[arg(long)]
    pub slack_secs: Option<u64>,
    /// Region of an S3 archive.
    #[arg(long)]
    pub region: Option<String>,
    /// Endpoint of an S3 archive instead of AWS's (an emulator).
    #[arg(long)]
    pub endpoint_url: Option<String>,
    /// `vin,sensor_id,effective_from` reference CSV.
    #[arg(long)]
    pub reference: Option<PathBuf>,
    /// Buggy sensor list.
    #[arg(long)]
    pub buggy: Option<PathBuf>,
    /// No progress bar (it is drawn only on a terminal anyway).
    #[arg(long)]
    pub quiet: bool,
}

/// What a replay did.
#[derive(Debug, Clone)]
pub struct ReplayReport {
    /// The job's counts.
    pub summary: Summary,
    /// Bytes read from the archive (0 from Kafka).
    pub bytes: u64,
    /// Wall time.
    pub secs: f64,
    /// Output records outside the replayed days (computed for context, not written).
    pub outside_range: u64,
    /// Archived readings outside the days and their margin (not read into windows).
    pub skipped: u64,
}

impl ReplayArgs {
    /// The replay's configuration: the config file (or defaults) with these flags.
    pub fn config(&self) -> Result<ValidConfig, ConfigError> {
        let mut c = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        let time = |field: &str, s: &str| s.parse().map_err(|e| ConfigError::Invalid(format!("{field}: {e}")));
        c.replay.from = time("replay.from (--from)", &self.from)?;
        c.replay.to = time("replay.to (--to)", self.to.as_deref().unwrap_or(&self.from))?;
        if let Some(s) = self.slack_secs {
            c.replay.slack_secs = s;
        }
        if self.region.is_some() {
            c.replay.region = self.region.clone();
        }
        if self.endpoint_url.is_some() {
            c.replay.endpoint_url = self.endpoint_url.clone();
        }
        if let Some(w) = self.workers {
            c.workers = w;
        }
        if let Some(p) = &self.reference {
            c.reference.vin_sensors = Some(p.clone());
        }
        if let Some(p) = &self.buggy {
            c.reference.buggy_sensors = Some(p.clone());
        }
        // Historical data: the wall clock says nothing about it. No API for a batch run.
        c.windows.max_future_secs = 0;
        c.http.bind = String::new();
        match (&self.archive, &self.kafka_brokers) {
            (Some(a), _) => {
                c.source.kind = SourceKind::Archive;
                c.replay.archive = a.clone();
            }
            (None, Some(b)) => {
                c.source.kind = SourceKind::Kafka;
                c.kafka.brokers = b.clone();
            }
            (None, None) if c.source.kind == SourceKind::Archive || c.source.kind == SourceKind::Kafka => {}
            (None, None) => {
                return Err(ConfigError::Invalid(
                    "replay: no input; give --archive DIR|s3://bucket/prefix or --kafka-brokers HOST:PORT --topic T".into(),
                ))
            }
        }
        if c.source.kind == SourceKind::Kafka {
            if let Some(t) = &self.topic {
                c.kafka.topic = t.clone();
            }
            // Positions by time, and commits under a group of its own: a replay never moves the
            // live job's committed offsets.
            c.kafka.group = format!("{}-replay", c.kafka.group);
            let days = c.replay_days().ok_or_else(|| ConfigError::Invalid("replay.from: empty".into()))?;
            let around = crate::job::replay_margin(&c.params()) + 3_600_000;
            c.kafka.start = self.start.unwrap_or(crate::config::Start::Time(days.0.saturating_sub(around)));
            c.kafka.stop = self.stop.unwrap_or(crate::config::Stop::Time(days.1.saturating_add(around)));
        }
        if !self.config_sinks {
            let sink = SinkConfig::Folder(FolderConfig {
                path: self.output.clone(),
                buffer_mib: 1.0,
                buffer_secs: 1.0,
                sealed: true,
                ..FolderConfig::default()
            });
            c.sinks = [("local".to_string(), sink)].into_iter().collect();
            c.routes.clear();
        }
        c.validated()
    }
}

/// Removes the sealed files of `stream` in `dir`; returns how many.
fn clear_sealed(dir: &Path, stream: crate::stream::StreamName) -> std::io::Result<usize> {
    let mut removed = 0;
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(0) };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let stem = crate::stored_files::format::stem(&name);
        let sealed_name = stem != name
            && stem
                .strip_prefix(stream.as_str())
                .and_then(|r| r.strip_prefix('-'))
                .is_some_and(|r| r.len() == "YYYYMMDDTHH".len() && r.as_bytes()[8] == b'T');
        if sealed_name {
            std::fs::remove_file(e.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Removes the sealed files of the replayed days from a sealed output folder, so a replay that
/// now finds fewer records (a reference change) leaves no file of an earlier one behind.
pub fn clear_days(root: &Path, (start, end): (u64, u64)) -> std::io::Result<usize> {
    let mut removed = 0;
    for stream in crate::stream::StreamName::all() {
        let mut hour = start / 3_600_000;
        while hour * 3_600_000 < end {
            for layout in crate::stored_files::layout::Layout::ALL {
                let dir = root.join(stream.as_str()).join(layout.hour(hour * 3_600_000));
                removed += clear_sealed(&dir, stream)?;
            }
            hour += 1;
        }
    }
    Ok(removed)
}

/// Runs a replay to the end, drawing a progress bar on a terminal.
pub fn replay(args: &ReplayArgs, stop: Arc<AtomicBool>) -> Result<ReplayReport, JobError> {
    let config = args.config()?;
    let days = config.replay_days().unwrap_or_default();
    if let (false, Some(SinkConfig::Folder(FolderConfig { path, sealed: true, .. }))) = (args.config_sinks, config.sinks.get("local")) {
        clear_days(path, days).map_err(|source| crate::sinks::SinkError::Io { path: path.display().to_string(), source })?;
    }
    let mut metrics = Metrics::new(config.workers);
    metrics.lateness_ms = config.windows.allowed_lateness_ms;
    let metrics = Arc::new(metrics);
    let started = Instant::now();
    let done = Arc::new(AtomicBool::new(false));
    let bar = (!args.quiet).then(|| progress(metrics.clone(), done.clone()));
    let result = crate::job::run_with(config, stop, metrics.clone());
    done.store(true, Ordering::SeqCst);
    if let Some(handle) = bar {
        let _ = handle.join();
    }
    Ok(ReplayReport {
        summary: result?,
        bytes: Metrics::get(&metrics.archive_bytes),
        secs: started.elapsed().as_secs_f64(),
        outside_range: Metrics::get(&metrics.outside_range),
        skipped: Metrics::get(&metrics.archive_skipped),
    })
}

/// A thread drawing the progress bar: bytes of the archive read (and the ETA, once the job has
/// listed the archive), readings, and the event time the replay has reached. From Kafka, a spinner.
fn progress(metrics: Arc<Metrics>, done: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let bar = indicatif::ProgressBar::new_spinner();
        let mut sized = false;
        while !done.load(Ordering::SeqCst) {
            let total = Metrics::get(&metrics.archive_total_bytes);
            if !sized && total > 0 {
                bar.set_length(total);
                bar.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{elapsed_precise} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                    .progress_chars("=> "),
                );
                sized = true;
            }
            bar.set_position(Metrics::get(&metrics.archive_bytes));
            let reached = metrics.watermark().map(crate::encode::rfc3339).unwrap_or_else(|| "-".into());
            bar.set_message(format!("{} readings, event time {reached}", Metrics::get(&metrics.readings)));
            std::thread::sleep(Duration::from_millis(200));
        }
        bar.finish_and_clear();
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needs_an_input_and_keeps_kafka_replays_off_the_live_group() {
        let args = ReplayArgs { from: "2025-11-24".into(), output: "out".into(), ..Default::default() };
        let e = args.config().err().unwrap().to_string();
        assert!(e.contains("--archive"), "{e}");
        let args = ReplayArgs {
            from: "2025-11-24".into(),
            to: Some("2025-11-25".into()),
            kafka_brokers: Some("127.0.0.1:9092".into()),
            output: "out".into(),
            ..Default::default()
        };
        let c = args.config().unwrap();
        assert_eq!(c.kafka.group, "fleetflow-replay");
        assert_eq!(c.replay_days(), Some((1_763_942_400_000, 1_764_115_200_000)));
        assert!(c.kafka.start.to_string().starts_with("2025-11-23T22:"), "{}", c.kafka.start);
        assert!(c.kafka.stop.to_string().starts_with("2025-11-26T01:"), "{}", c.kafka.stop);
        assert_eq!(c.windows.max_future_secs, 0);
        assert!(matches!(c.sinks.get("local"), Some(SinkConfig::Folder(FolderConfig { sealed: true, .. }))));
    }

    #[test]
    fn clearing_days_removes_only_sealed_files_of_those_days() {
        let dir = tempfile::tempdir().unwrap();
        let files = [
            "speeders/2025/11/24/10/speeders-20251124T10.jsonl",
            "speeders/2025/11/24/10/speeders-p000-w000-x-000000.jsonl",
            "speeders/2025/11/25/00/speeders-20251125T00.jsonl",
            "alerts/2025/11/24/23/alerts-20251125T00.jsonl",
        ];
        for f in files {
            let p = dir.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "x\n").unwrap();
        }
        let removed = clear_days(dir.path(), (1_763_942_400_000, 1_764_028_800_000)).unwrap();
        assert_eq!(removed, 2);
        assert!(dir.path().join(files[1]).exists() && dir.path().join(files[2]).exists());
    }
}
