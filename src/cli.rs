//! The command line: `fleetflow run`, `generate`, `produce`, `bench`, `aws setup`, `cluster` and
//! `replay`. Flags override the TOML config; every subcommand's help ends with examples.

use std::path::PathBuf;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use fleetflow_dataflows::analyses::REGISTRY;
use fleetflow_dataflows::analysis::{DefaultValue, SettingSpec, Spec};

use crate::config::FolderConfig;
use crate::config::{Config, ConfigError, SinkConfig, SourceKind, ValidConfig};

/// fleetflow: event-time stream processing for vehicle telematics.
#[derive(Debug, Parser)]
#[command(name = "fleetflow", version, about)]
pub struct Cli {
    /// Log filter (tracing's syntax, e.g. `info` or `fleetflow=debug`); also `RUST_LOG`.
    #[arg(long, global = true, default_value = "info", env = "RUST_LOG")]
    pub log: String,
    /// What to do.
    #[command(subcommand)]
    pub command: Option<Command>,
}

impl Cli {
    /// Parses the process's arguments (exiting with clap's message on a bad one), with `run
    /// --help` showing the defaults the config file and flags override.
    pub fn parse_args() -> Cli {
        let matches = Self::command_with_defaults().get_matches();
        let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
        if let (Some(Command::Run(args)), Some(("run", run))) = (&mut cli.command, matches.subcommand()) {
            args.analysis_flags = analysis_flags_of(run);
        }
        cli
    }

    /// The command line, `run`'s flags with their defaults (those of [`Config::default`]).
    pub fn command_with_defaults() -> clap::Command {
        let c = Config::default();
        let (output, buffer) = match c.sinks.get("local") {
            Some(SinkConfig::Folder(FolderConfig { path, buffer_secs, .. })) => (path.display().to_string(), buffer_secs.to_string()),
            _ => (String::new(), String::new()),
        };
        let defaults: [(&str, String); 19] = [
            ("shutdown_timeout_secs", c.shutdown_timeout_secs.to_string()),
            ("state_dir", c.checkpoints.dir.clone()),
            ("checkpoint_interval_secs", c.checkpoints.interval_secs.to_string()),
            ("output", output),
            ("buffer_secs", buffer),
            ("workers", c.workers.to_string()),
            ("pin_workers", c.pin_workers.to_string()),
            ("vehicles", c.generator.vehicles.to_string()),
            ("seed", c.generator.seed.to_string()),
            ("duration_secs", format!("{} (no end)", c.generator.duration_secs)),
            ("lateness_ms", c.windows.allowed_lateness_ms.to_string()),
            ("speed_limit", c.thresholds.speed_limit_mph.to_string()),
            ("http", c.http.bind.clone()),
            ("topic", c.kafka.topic.clone()),
            ("group", c.kafka.group.clone()),
            ("start", c.kafka.start.to_string()),
            ("stop", c.kafka.stop.to_string()),
            ("idle_timeout_ms", c.kafka.idle_timeout_ms.to_string()),
            ("processes", c.cluster.processes.to_string()),
        ];
        Cli::command().mut_subcommand("run", |mut run| {
            for (id, value) in defaults {
                run = run.mut_arg(id, |a| {
                    let help = a.get_help().map(|h| h.to_string()).unwrap_or_default();
                    a.help(format!("{help} [default: {value}]"))
                });
            }
            flagged_settings().fold(run, |run, (analysis, setting, flag)| run.arg(analysis_flag(analysis, setting, flag)))
        })
    }
}

/// The settings of the registry's analyses that declare a `run` flag, with the flag.
fn flagged_settings() -> impl Iterator<Item = (&'static Spec, &'static SettingSpec, &'static str)> {
    REGISTRY.iter().map(|a| a.spec()).flat_map(|spec| spec.settings.iter().filter_map(move |s| Some((spec, s, s.aliases.flag?))))
}

/// The flag `--<flag>` setting `[analyses.<analysis>] <setting>`, typed as the setting is.
fn analysis_flag(analysis: &Spec, setting: &SettingSpec, flag: &'static str) -> clap::Arg {
    let arg = clap::Arg::new(flag).long(flag);
    let (arg, default) = match setting.default {
        DefaultValue::Number(d) => (arg.value_parser(clap::value_parser!(f64)).value_name("NUMBER"), d.to_string()),
        DefaultValue::Text(d) => (arg.value_name("TEXT"), format!("{d:?}")),
    };
    arg.help(format!("{} (sets [analyses.{}] {}) [default: {default}]", setting.about, analysis.name, setting.name))
}

/// The analysis settings `run`'s flags give, typed as their settings are.
fn analysis_flags_of(run: &clap::ArgMatches) -> Vec<(&'static Spec, &'static SettingSpec, toml::Value)> {
    let value = |setting: &SettingSpec, flag: &str| match setting.default {
        DefaultValue::Number(_) => run.get_one::<f64>(flag).map(|v| toml::Value::Float(*v)),
        DefaultValue::Text(_) => run.get_one::<String>(flag).map(|v| toml::Value::String(v.clone())),
    };
    flagged_settings().filter_map(|(analysis, setting, flag)| Some((analysis, setting, value(setting, flag)?))).collect()
}

const RUN_EXAMPLES: &str = "Examples:
  fleetflow run                                   the fleet generator in real time into ./fleetflow-out;
                                                  status page at http://127.0.0.1:9898
  fleetflow run --input readings.txt --output out a file to its end (`-` reads stdin)
  fleetflow run --kafka-brokers 127.0.0.1:9092 --topic vehicles --group fleetflow --start 2025-11-25
  fleetflow run --config reference/fleetflow.toml --print-config
  fleetflow run -w 2 -n 2 -p 0 -h hosts.txt       process 0 of a 2-process cluster (-h is the hostfile)";

const GENERATE_EXAMPLES: &str = "Examples:
  fleetflow generate --output data --vehicles 100 --duration-secs 600
  fleetflow generate --output data --files 4 --late-fraction 0.01 --malformed-fraction 0.01
  fleetflow generate --output - --vehicles 10 | fleetflow run --input - --output out";

const PRODUCE_EXAMPLES: &str = "Examples:
  fleetflow produce --kafka-brokers 127.0.0.1:9092 --topic vehicles --rate 10000 --duration-secs 0
  fleetflow produce --kafka-brokers 127.0.0.1:9092 --start 2025-11-25 --duration-secs 3600";

const BENCH_EXAMPLES: &str = "Examples:
  fleetflow bench                                  100,000 readings/s for 90 s, 60 s windows
  fleetflow bench --rate 500000 --vehicles 10000 -w 2 --window-secs 5 --duration-secs 30 --max-delay-ms 0
  fleetflow bench --sweep --rate 250000            raise the rate until p99 passes the target";

const AWS_EXAMPLES: &str = "Examples:
  fleetflow aws setup --config reference/fleetflow-aws.toml --bucket fleetflow-data \\
      --role-arn arn:aws:iam::123456789012:role/firehose-delivery";

const CLUSTER_EXAMPLES: &str = "Examples:
  fleetflow cluster --processes 2 -- -w 2 --input data/readings-000.txt data/readings-001.txt --output out";

const REPLAY_EXAMPLES: &str = "Examples:
  fleetflow replay --from 2025-11-25 --archive fleetflow-out        a day from the folder sink's raw/ archive
  fleetflow replay --from 2025-11-24 --to 2025-11-25 --archive s3://bucket/fleetflow --output backfill
  fleetflow replay --from 2025-11-25 --kafka-brokers 127.0.0.1:9092 --topic vehicles";

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the job (default: the fleet generator in real time into ./fleetflow-out).
    #[command(after_help = RUN_EXAMPLES)]
    Run(Box<RunArgs>),
    /// Write generated readings and matching reference files, for tests, demos and benchmarks.
    #[command(after_help = GENERATE_EXAMPLES)]
    Generate(crate::commands::generate::GenerateArgs),
    /// Publish generated readings to a Kafka topic, keyed by vin (the vehicles' side).
    #[command(after_help = PRODUCE_EXAMPLES)]
    Produce(crate::commands::produce::ProduceArgs),
    /// Measure window latency, throughput, CPU and memory under an open-loop, real-time load.
    #[command(after_help = BENCH_EXAMPLES)]
    Bench(crate::commands::bench::BenchArgs),
    /// AWS helpers.
    #[command(subcommand)]
    Aws(AwsCommand),
    /// Print the streams' schemas for query engines: Athena tables, JSON Schemas, Arrow schemas.
    #[command(
        after_help = "Examples:\n  fleetflow schema speed_windows --format athena --files parquet --layout hive --location s3://bucket/fleetflow\n  fleetflow schema --format json-schema"
    )]
    Schema(crate::commands::schema::SchemaArgs),
    /// OpenSearch helpers.
    #[command(subcommand, name = "opensearch")]
    OpenSearch(OpenSearchCommand),
    /// Run the job as N local processes (a cluster on loopback, for trying it out).
    #[command(after_help = CLUSTER_EXAMPLES)]
    Cluster(crate::commands::cluster::ClusterArgs),
    /// Recompute past days from the `raw` archive (folder or S3) or Kafka into a backfill output.
    #[command(after_help = REPLAY_EXAMPLES)]
    Replay(Box<crate::commands::replay::ReplayArgs>),
}

/// `fleetflow aws ...`
#[derive(Debug, Subcommand)]
pub enum AwsCommand {
    /// Create the S3 bucket, Firehose delivery streams and SNS topics the config's sinks use.
    #[command(after_help = AWS_EXAMPLES)]
    Setup(crate::commands::aws_setup::SetupArgs),
}

/// `fleetflow opensearch ...`
#[derive(Debug, Subcommand)]
pub enum OpenSearchCommand {
    /// Put the index templates (mappings from each stream's declared fields) of the config's OpenSearch sinks.
    #[command(after_help = "Example:\n  fleetflow opensearch setup --config reference/fleetflow-opensearch.toml")]
    Setup(crate::commands::opensearch_setup::SetupArgs),
}

/// `fleetflow run` flags; each overrides the config file.
#[derive(Debug, Args, Default)]
#[command(disable_help_flag = true)]
pub struct RunArgs {
    /// Print help (`-h` is the hostfile, as in timely).
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
    /// Cluster: processes in the cluster (timely's `-n`).
    #[arg(short = 'n', long)]
    pub processes: Option<usize>,
    /// Cluster: this process's index, from 0 (timely's `-p`).
    #[arg(short = 'p', long)]
    pub process: Option<usize>,
    /// Cluster: a file with one `host:port` per process, in process order (timely's `-h`).
    #[arg(short = 'h', long)]
    pub hostfile: Option<PathBuf>,
    /// TOML config file (see reference/fleetflow.toml).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Input files (each one partition, read in order); `-` is stdin. Switches the source to files.
    #[arg(long, num_args = 1..)]
    pub input: Vec<String>,
    /// `vin,sensor_id,effective_from` reference CSV (watched for edits).
    #[arg(long)]
    pub reference: Option<PathBuf>,
    /// Buggy sensor list (`sensor_id` CSV, watched for edits).
    #[arg(long)]
    pub buggy: Option<PathBuf>,
    /// Output folder of the `local` folder sink.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Worker threads.
    #[arg(short = 'w', long)]
    pub workers: Option<usize>,
    /// Pin each worker thread to its own CPU when there are several (true, the default, or false).
    #[arg(long, value_name = "BOOL")]
    pub pin_workers: Option<bool>,
    /// On SIGTERM/Ctrl-C, close and write every open window (partial) instead of stopping exactly
    /// (Kafka, and the generator with --resume; files always drain).
    #[arg(long)]
    pub drain: bool,
    /// Seconds a stop may take before the job exits non-zero, committing nothing undelivered.
    #[arg(long, value_name = "SECS")]
    pub shutdown_timeout_secs: Option<u64>,
    /// Kafka and --resume: the state store, a folder or s3://bucket/prefix, with a subfolder per group (checkpoints of the operators' state).
    #[arg(long, value_name = "LOCATION")]
    pub state_dir: Option<String>,
    /// Kafka and --resume: event time between checkpoints, seconds (a multiple of the tumbling window).
    #[arg(long, value_name = "SECS")]
    pub checkpoint_interval_secs: Option<u64>,
    /// Kafka and --resume: take no checkpoints (a Kafka restart re-reads what its open windows need, up to a day).
    #[arg(long)]
    pub no_checkpoints: bool,
    /// Generator: vehicles.
    #[arg(long)]
    pub vehicles: Option<u64>,
    /// Generator: seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Generator: produce as fast as possible from `generator.start` instead of following the clock.
    #[arg(long)]
    pub fast: bool,
    /// Generator: stop after this many seconds of event time.
    #[arg(long)]
    pub duration_secs: Option<u64>,
    /// Generator: checkpoint the fleet with the operators' state, stop exactly on SIGTERM, and
    /// go on from the latest checkpoint (in the state store's `generator` folder) at start.
    #[arg(long)]
    pub resume: bool,
    /// Allowed lateness, ms.
    #[arg(long)]
    pub lateness_ms: Option<u64>,
    /// Speed limit, mph.
    #[arg(long)]
    pub speed_limit: Option<f64>,
    /// The analyses' settings given by the flags they declare ([`Aliases::flag`](fleetflow_dataflows::analysis::Aliases::flag)), with the
    /// analysis and setting each sets; filled by [`Cli::parse_args`].
    #[arg(skip)]
    pub analysis_flags: Vec<(&'static Spec, &'static SettingSpec, toml::Value)>,
    /// Sink buffering: flush a stream after this many seconds.
    #[arg(long)]
    pub buffer_secs: Option<f64>,
    /// HTTP API address (`""` for none; port 0 picks a free one).
    #[arg(long)]
    pub http: Option<String>,
    /// Kafka: bootstrap brokers (HOST:PORT); switches the source to Kafka.
    #[arg(long)]
    pub kafka_brokers: Option<String>,
    /// Kafka: topic of readings.
    #[arg(long)]
    pub topic: Option<String>,
    /// Kafka: consumer group (for committed offsets).
    #[arg(long)]
    pub group: Option<String>,
    /// Kafka: where to start: committed, earliest, latest, a date (2025-11-25, its midnight UTC) or an RFC 3339 time.
    #[arg(long, value_name = "POSITION")]
    pub start: Option<crate::config::Start>,
    /// Kafka: where to stop: never, end (of each partition at start-up), a date or an RFC 3339 time.
    #[arg(long, value_name = "POSITION")]
    pub stop: Option<crate::config::Stop>,
    /// Kafka: a partition silent this long stops holding the watermark back, ms.
    #[arg(long)]
    pub idle_timeout_ms: Option<u64>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    pub print_config: bool,
}

impl RunArgs {
    /// The effective configuration: defaults < config file < these flags.
    pub fn config(&self) -> Result<ValidConfig, ConfigError> {
        let mut c = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        self.apply_source(&mut c);
        self.apply_job(&mut c);
        self.apply_generator(&mut c);
        self.apply_output(&mut c)?;
        self.apply_analysis_flags(&mut c)?;
        c.validated()
    }

    /// The source flags: files, Kafka and its positions.
    fn apply_source(&self, c: &mut Config) {
        if !self.input.is_empty() {
            c.source.kind = SourceKind::Files;
            c.source.files = self.input.clone();
        }
        if let Some(b) = &self.kafka_brokers {
            c.source.kind = SourceKind::Kafka;
            c.kafka.brokers = b.clone();
        }
        if let Some(t) = &self.topic {
            c.kafka.topic = t.clone();
        }
        if let Some(g) = &self.group {
            c.kafka.group = g.clone();
        }
        if let Some(s) = &self.start {
            c.kafka.start = *s;
        }
        if let Some(s) = &self.stop {
            c.kafka.stop = *s;
        }
        if let Some(t) = self.idle_timeout_ms {
            c.kafka.idle_timeout_ms = t;
        }
    }

    /// The job's flags: reference files, the API, the cluster, workers, stopping, thresholds.
    fn apply_job(&self, c: &mut Config) {
        if let Some(p) = &self.reference {
            c.reference.vin_sensors = Some(p.clone());
        }
        if let Some(h) = &self.http {
            c.http.bind = h.clone();
            c.http.required = true;
        }
        if let Some(p) = &self.buggy {
            c.reference.buggy_sensors = Some(p.clone());
        }
        if let Some(n) = self.processes {
            c.cluster.processes = n;
        }
        if let Some(p) = self.process {
            c.cluster.process = p;
        }
        if let Some(h) = &self.hostfile {
            c.cluster.hostfile = Some(h.clone());
        }
        if let Some(w) = self.workers {
            c.workers = w;
        }
        if let Some(p) = self.pin_workers {
            c.pin_workers = p;
        }
        if self.drain {
            c.drain = true;
        }
        if let Some(t) = self.shutdown_timeout_secs {
            c.shutdown_timeout_secs = t;
        }
        if let Some(d) = &self.state_dir {
            c.checkpoints.dir = d.clone();
        }
        if let Some(i) = self.checkpoint_interval_secs {
            c.checkpoints.interval_secs = i;
        }
        if self.no_checkpoints {
            c.checkpoints.enabled = false;
        }
        if let Some(l) = self.lateness_ms {
            c.windows.allowed_lateness_ms = l;
        }
        if let Some(s) = self.speed_limit {
            c.thresholds.speed_limit_mph = s;
        }
    }

    /// The flags analyses declare for their settings; each wins over the file's spellings.
    fn apply_analysis_flags(&self, c: &mut Config) -> Result<(), ConfigError> {
        for (analysis, setting, value) in &self.analysis_flags {
            c.set_analysis_setting(analysis, setting.name, value.clone())?;
        }
        Ok(())
    }

    /// The generator's flags.
    fn apply_generator(&self, c: &mut Config) {
        if let Some(v) = self.vehicles {
            c.generator.vehicles = v;
        }
        if let Some(s) = self.seed {
            c.generator.seed = s;
        }
        if self.fast {
            c.generator.realtime = false;
        }
        if let Some(d) = self.duration_secs {
            c.generator.duration_secs = d;
        }
        if self.resume {
            c.generator.resume = true;
        }
    }

    /// `--output` and `--buffer-secs`: the `local` folder sink.
    fn apply_output(&self, c: &mut Config) -> Result<(), ConfigError> {
        if self.output.is_none() && self.buffer_secs.is_none() {
            return Ok(());
        }
        let local = c.sinks.entry("local".to_string()).or_default();
        let SinkConfig::Folder(FolderConfig { path, buffer_secs, .. }) = local else {
            return Err(ConfigError::Invalid(
                "--output / --buffer-secs: sink \"local\" is not a folder sink; set its path in the config".into(),
            ));
        };
        if let Some(o) = &self.output {
            *path = o.clone();
        }
        if let Some(b) = self.buffer_secs {
            *buffer_secs = b;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use fleetflow_dataflows::analysis::Setting;

    use super::*;

    #[test]
    fn a_flag_an_analysis_declares_sets_its_setting_over_both_spellings_in_the_file() {
        let matches = Cli::command_with_defaults().try_get_matches_from(["fleetflow", "run", "--alert-threshold", "71"]).unwrap();
        let Some(("run", run)) = matches.subcommand() else { panic!("run") };
        let flags = analysis_flags_of(run);
        assert_eq!(
            flags.iter().map(|(a, s, v)| (a.name, s.name, v.clone())).collect::<Vec<_>>(),
            [("alerts", "threshold_mph", toml::Value::Float(71.0))]
        );
        for file in ["[thresholds]\nalert_avg_mph = 75\n", "[analyses.alerts]\nthreshold_mph = 75\n", ""] {
            let mut config = Config::from_toml(file).unwrap();
            config.set_analysis_setting(flags[0].0, "threshold_mph", flags[0].2.clone()).unwrap();
            config.validate().unwrap();
            let analyses = config.analyses().unwrap();
            let (_, settings) = analyses.iter().find(|(a, _)| a.spec().name == "alerts").unwrap();
            assert_eq!(settings.get("threshold_mph"), Some(&Setting::Number(71.0)), "{file}");
            assert_eq!(config.thresholds.alert_avg_mph, None, "the old spelling is dropped");
        }
        let bad = Cli::command_with_defaults().try_get_matches_from(["fleetflow", "run", "--alert-threshold", "lots"]);
        assert!(bad.unwrap_err().to_string().contains("invalid value 'lots' for '--alert-threshold <NUMBER>'"));
    }
}
