//! The job's configuration: one TOML file (see `reference/fleetflow.toml`), every field optional,
//! overridden by command-line flags. Priority, lowest first: built-in defaults < file < flags.

use fleetflow_dataflows::analyses::{self, REGISTRY};
use fleetflow_dataflows::analysis::{Analysis, DefaultValue, Setting, Settings, Spec, TableSpec};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use fleetflow_dataflows::Params;
use serde::{Deserialize, Serialize};

use crate::stream::{Routes, StreamName};

pub use crate::sinks::config::SinkConfig;
pub use crate::sinks::firehose::FirehoseConfig;
pub use crate::sinks::folder::FolderConfig;
pub use crate::sinks::kafka::KafkaSinkConfig;
pub use crate::sinks::sns::SnsConfig;
pub use crate::sources::archive::ReplayConfig;
pub use crate::sources::generator::GeneratorConfig;
pub use crate::sources::kafka::{KafkaConfig, Start, Stop};
pub use crate::time_arg::ConfigTime;

/// A configuration problem, naming the field, the value and what is allowed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema (unknown fields are rejected).
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// What the TOML parser said, with the line and the field.
        message: String,
    },
    /// A value is out of range or inconsistent.
    #[error("{0}")]
    Invalid(String),
}

/// The whole configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Worker threads in this process (`-w`).
    pub workers: usize,
    /// Pin each worker thread of a multi-worker process to its own CPU (`--pin-workers`).
    pub pin_workers: bool,
    /// On SIGTERM or Ctrl-C, close every open window and write it (partial) before exiting
    /// (`--drain`). Without it a Kafka job stops exactly: open windows stay open, the restart
    /// continues them. Files and the generator always drain.
    pub drain: bool,
    /// How long a stop may take before the job gives up and exits non-zero, having committed
    /// nothing it did not deliver (`--shutdown-timeout-secs`; under Kubernetes' 30 s grace).
    pub shutdown_timeout_secs: u64,
    /// Where readings come from.
    pub source: SourceConfig,
    /// The built-in fleet generator (when `source.kind = "generator"`).
    pub generator: GeneratorConfig,
    /// The Kafka source (when `source.kind = "kafka"`).
    pub kafka: KafkaConfig,
    /// Window lengths and lateness.
    pub windows: WindowsConfig,
    /// Speed thresholds.
    pub thresholds: ThresholdsConfig,
    /// Reference data files.
    pub reference: ReferenceConfig,
    /// Named sinks.
    pub sinks: BTreeMap<String, SinkConfig>,
    /// Output stream name -> names of the sinks that receive it. A stream left out goes to
    /// the sink named `local` (the default), except `raw`, which is off unless routed; an empty
    /// list turns the stream off.
    pub routes: BTreeMap<String, Vec<String>>,
    /// Seconds between progress log lines.
    pub progress_interval_secs: u64,
    /// The HTTP API and metrics.
    pub http: HttpConfig,
    /// Multi-process runs.
    pub cluster: ClusterConfig,
    /// Replay of past days (`fleetflow replay`).
    pub replay: ReplayConfig,
    /// Which analyses run, and their settings.
    pub analyses: AnalysesConfig,
    /// Checkpoints of a Kafka job's operator state.
    pub checkpoints: crate::checkpoints::CheckpointConfig,
}

/// `[analyses]`: the analyses to run (`enabled`, by name; when absent, those on by default) and,
/// under `[analyses.<name>]`, each one's settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AnalysesConfig {
    /// The analyses to run, by name; `None`: those on by default.
    pub enabled: Option<Vec<String>>,
    /// Settings by analysis and key.
    #[serde(flatten)]
    pub settings: BTreeMap<String, toml::Value>,
}

impl Config {
    /// The enabled analyses with their settings, in registry (build) order; the error names the
    /// field and the fix.
    pub fn analyses(&self) -> Result<Vec<(&'static dyn Analysis, Settings)>, ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        let known: Vec<&str> = REGISTRY.iter().map(|a| a.spec().name).collect();
        if let Some(enabled) = &self.analyses.enabled {
            for name in enabled {
                if !known.contains(&name.as_str()) {
                    return bad(format!("analyses.enabled: {name:?} is not an analysis; analyses are {}", known.join(", ")));
                }
            }
        }
        for (name, table) in &self.analyses.settings {
            let Some(analysis) = analyses::named(name) else {
                return bad(format!("analyses.{name}: no such analysis; analyses are {}", known.join(", ")));
            };
            let Some(table) = table.as_table() else {
                return bad(format!("analyses.{name}: not a table; write [analyses.{name}] with its settings"));
            };
            for (key, value) in table {
                if !matches!(value, toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::String(_)) {
                    return bad(format!("analyses.{name}.{key}: {value} is not a number or a string"));
                }
                let Some(spec) = analysis.spec().settings.iter().find(|s| s.name == key) else {
                    let keys: Vec<&str> = analysis.spec().settings.iter().map(|s| s.name).collect();
                    let allowed = if keys.is_empty() { "it has none".to_string() } else { format!("its settings are {}", keys.join(", ")) };
                    return bad(format!("analyses.{name}.{key}: not a setting of {name}; {allowed}"));
                };
                // Typed at load: a number where a number is meant, text where text is.
                match (&spec.default, value) {
                    (DefaultValue::Number(d), toml::Value::String(s)) => {
                        return bad(format!("analyses.{name}.{key}: {s:?} is not a number; give a number ({}; default {d})", spec.about))
                    }
                    (DefaultValue::Text(d), toml::Value::Integer(_) | toml::Value::Float(_)) => {
                        return bad(format!(
                            "analyses.{name}.{key}: {value} is not text; give a quoted string ({}; default {d:?})",
                            spec.about
                        ))
                    }
                    _ => {}
                }
            }
        }
        let mut out = Vec::new();
        for analysis in REGISTRY.iter().copied() {
            let name = analysis.spec().name;
            let on = match &self.analyses.enabled {
                Some(list) => list.iter().any(|n| n == name),
                None => analysis.spec().on_by_default,
            };
            if !on {
                continue;
            }
            let mut settings = Settings::new();
            if let Some(table) = self.analyses.settings.get(name).and_then(|t| t.as_table()) {
                for (key, value) in table {
                    let Some(setting) = setting_of(value) else {
                        return bad(format!("analyses.{name}.{key}: {value} is not a number or a string"));
                    };
                    settings.insert(key.clone(), setting);
                }
            }
            self.apply_aliases(analysis.spec(), &mut settings)?;
            for table in analysis.spec().tables {
                match settings.get(table.setting) {
                    Some(Setting::Text(path)) if !path.trim().is_empty() => {}
                    _ => {
                        return bad(format!(
                            "analyses.{name}.{}: no file given; give the path of its {} table ({})",
                            table.setting, table.name, table.about
                        ))
                    }
                }
            }
            out.push((analysis, settings));
        }
        Ok(out)
    }

    /// Sets what a setting's older spelling in the file
    /// ([`Aliases::key`](fleetflow_dataflows::analysis::Aliases::key)) gives; both spellings
    /// at once is an error naming the one to keep.
    fn apply_aliases(&self, analysis: &Spec, settings: &mut Settings) -> Result<(), ConfigError> {
        for setting in analysis.settings {
            let Some(old) = setting.aliases.key else { continue };
            let Some(value) = self.value_at(old) else { continue };
            let (name, key) = (analysis.name, setting.name);
            if settings.contains_key(key) {
                return Err(ConfigError::Invalid(format!(
                    "{old}: also set as analyses.{name}.{key}; keep only analyses.{name}.{key} ({old} is its old spelling)"
                )));
            }
            let typed = setting_of(&value).ok_or_else(|| ConfigError::Invalid(format!("{old}: {value} is not a number or a string")))?;
            settings.insert(key.to_string(), typed);
        }
        Ok(())
    }

    /// The value the configuration holds at a dotted key (`thresholds.alert_avg_mph`), if set.
    fn value_at(&self, dotted: &str) -> Option<toml::Value> {
        self.without(dotted).map(|(_, value)| value)
    }

    /// The configuration as TOML values without a dotted key, and the value the key held; none if
    /// it is not set.
    fn without(&self, dotted: &str) -> Option<(toml::Value, toml::Value)> {
        let mut whole = toml::Value::try_from(self).ok()?;
        let (path, last) = dotted.rsplit_once('.').unwrap_or(("", dotted));
        let mut at = &mut whole;
        for part in path.split('.').filter(|p| !p.is_empty()) {
            at = at.get_mut(part)?;
        }
        let value = at.as_table_mut()?.remove(last)?;
        Some((whole, value))
    }

    /// Sets analysis setting `analyses.<analysis>.<key>` to `value`, over both its spellings in
    /// the file (a flag wins over the file).
    pub fn set_analysis_setting(&mut self, analysis: &Spec, key: &str, value: toml::Value) -> Result<(), ConfigError> {
        let table = self.analyses.settings.entry(analysis.name.to_string()).or_insert_with(|| toml::Value::Table(Default::default()));
        let Some(table) = table.as_table_mut() else {
            return Err(ConfigError::Invalid(format!("analyses.{}: not a table; give its settings as a table", analysis.name)));
        };
        table.insert(key.to_string(), value);
        let Some(old) = analysis.settings.iter().find(|s| s.name == key).and_then(|s| s.aliases.key) else { return Ok(()) };
        // The old spelling, if the file gave it, is dropped: the configuration without it.
        if let Some((whole, _)) = self.without(old) {
            *self = whole.try_into().map_err(|e: toml::de::Error| ConfigError::Invalid(format!("{old}: {e}")))?;
        }
        Ok(())
    }

    /// The reference tables of the enabled analyses: `(analysis, table, file)`.
    pub fn analysis_tables(&self) -> Result<Vec<(&'static str, &'static TableSpec, PathBuf)>, ConfigError> {
        let mut out = Vec::new();
        for (analysis, settings) in self.analyses()? {
            for table in analysis.spec().tables {
                if let Some(Setting::Text(path)) = settings.get(table.setting) {
                    out.push((analysis.spec().name, table, PathBuf::from(path)));
                }
            }
        }
        Ok(out)
    }
}

/// `[cluster]`: timely's own cluster communication; every process runs `workers` threads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// Processes in the cluster (`-n`).
    pub processes: usize,
    /// This process's index (`-p`).
    pub process: usize,
    /// One `host:port` per process, in process order (`-h`); needed when `processes > 1`.
    pub hostfile: Option<PathBuf>,
    /// Seconds every process has to connect at start-up; a process that never comes (it died, or
    /// was never started) is then an error rather than a wait without end.
    pub connect_timeout_secs: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig { processes: 1, process: 0, hostfile: None, connect_timeout_secs: 60 }
    }
}

impl ClusterConfig {
    /// The processes' addresses from the hostfile (blank lines and `#` comments skipped).
    pub fn addresses(&self) -> Result<Vec<String>, ConfigError> {
        let Some(path) = &self.hostfile else {
            return Err(ConfigError::Invalid(format!(
                "cluster.hostfile: none while cluster.processes = {}; pass -h FILE with one host:port per process",
                self.processes
            )));
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
        let addresses: Vec<String> =
            text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(String::from).collect();
        if addresses.len() < self.processes {
            return Err(ConfigError::Invalid(format!(
                "cluster.hostfile: {} lists {} addresses for {} processes; list one host:port per process",
                path.display(),
                addresses.len(),
                self.processes
            )));
        }
        Ok(addresses.into_iter().take(self.processes).collect())
    }
}

/// `[http]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address to serve on; `""` turns the server off. Port 0 picks a free port (logged).
    pub bind: String,
    /// Bearer token required on every request (required when not bound to loopback).
    pub token: String,
    /// An address that cannot be bound stops the job (set by `--http ADDR`: an address asked for
    /// explicitly); otherwise the job runs on without the API, with a warning.
    pub required: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig { bind: "127.0.0.1:9898".to_string(), token: String::new(), required: false }
    }
}

impl Default for Config {
    fn default() -> Self {
        let mut sinks = BTreeMap::new();
        sinks.insert("local".to_string(), SinkConfig::default());
        Config {
            workers: 1,
            pin_workers: true,
            drain: false,
            shutdown_timeout_secs: 25,
            checkpoints: crate::checkpoints::CheckpointConfig::default(),
            source: SourceConfig::default(),
            generator: GeneratorConfig::default(),
            kafka: KafkaConfig::default(),
            windows: WindowsConfig::default(),
            thresholds: ThresholdsConfig::default(),
            reference: ReferenceConfig::default(),
            sinks,
            routes: BTreeMap::new(),
            progress_interval_secs: 5,
            http: HttpConfig::default(),
            cluster: ClusterConfig::default(),
            replay: ReplayConfig::default(),
            analyses: AnalysesConfig::default(),
        }
    }
}

/// Which source to read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// The built-in fleet generator.
    #[default]
    Generator,
    /// Files (each one partition), `-` for stdin.
    Files,
    /// A Kafka topic (each partition one source partition).
    Kafka,
    /// The `raw` archive of earlier runs (`[replay]`).
    Archive,
}

/// `[source]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourceConfig {
    /// `generator` or `files`.
    pub kind: SourceKind,
    /// The files, read in order within each; `-` is standard input.
    pub files: Vec<String>,
    /// When a process has more workers than files, every worker of it reads part of each file
    /// (chunks parsed in parallel, lateness judged in the file's order); `false` reads each file
    /// with one worker.
    pub split: bool,
    /// The size of a split file's chunks, KiB.
    pub chunk_kib: u64,
}

impl Default for SourceConfig {
    fn default() -> Self {
        SourceConfig { kind: SourceKind::default(), files: Vec::new(), split: true, chunk_kib: 4096 }
    }
}

impl SourceConfig {
    /// Whether the files are split among the `workers` of a process (see [`SourceConfig::split`]):
    /// a single-process job with more workers than files.
    pub fn splits_files(&self, workers: usize, processes: usize) -> bool {
        self.kind == SourceKind::Files && self.split && processes == 1 && self.files.len() < workers
    }
}

/// `[windows]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WindowsConfig {
    /// Tumbling window length, s.
    pub tumbling_secs: u64,
    /// Sliding window length, s.
    pub sliding_size_secs: u64,
    /// Sliding window slide, s.
    pub sliding_slide_secs: u64,
    /// Allowed lateness: the watermark trails the highest event time by this much, ms.
    pub allowed_lateness_ms: u64,
    /// A reading more than this many seconds ahead of the wall clock is an error (a bad device
    /// clock must not push the watermark ahead); 0 turns the check off (replaying future data).
    pub max_future_secs: u64,
}

impl Default for WindowsConfig {
    fn default() -> Self {
        WindowsConfig {
            tumbling_secs: 60,
            sliding_size_secs: 300,
            sliding_slide_secs: 60,
            allowed_lateness_ms: 5_000,
            max_future_secs: 3_600,
        }
    }
}

/// A configuration whose values were checked ([`Config::validated`]): a job takes only this, so it
/// never checks again and never runs an unchecked one. Read it as a [`Config`].
#[derive(Clone, Debug, PartialEq)]
pub struct ValidConfig(Config);

impl std::ops::Deref for ValidConfig {
    type Target = Config;
    fn deref(&self) -> &Config {
        &self.0
    }
}

impl ValidConfig {
    /// The configuration, to change and check again.
    pub fn into_inner(self) -> Config {
        self.0
    }
}

/// An analysis setting as the file gives it: a number or text.
fn setting_of(value: &toml::Value) -> Option<Setting> {
    match value {
        toml::Value::Integer(i) => Some(Setting::Number(*i as f64)),
        toml::Value::Float(f) => Some(Setting::Number(*f)),
        toml::Value::String(s) => Some(Setting::Text(s.clone())),
        _ => None,
    }
}

/// `[thresholds]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThresholdsConfig {
    /// A reading above this speed (mph) is speeding.
    pub speed_limit_mph: f64,
    /// The old spelling of `[analyses.alerts] threshold_mph` (and of `--alert-threshold`), kept
    /// as an alias: a sliding window whose average (mph) is above this raises an alert.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alert_avg_mph: Option<f64>,
}

impl Default for ThresholdsConfig {
    fn default() -> Self {
        ThresholdsConfig { speed_limit_mph: 65.0, alert_avg_mph: None }
    }
}

/// `[reference]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReferenceConfig {
    /// `vin,sensor_id,effective_from` CSV.
    pub vin_sensors: Option<PathBuf>,
    /// `sensor_id` CSV of buggy sensors.
    pub buggy_sensors: Option<PathBuf>,
    /// How often the files are checked for edits, ms.
    pub poll_interval_ms: u64,
    /// How long after a window closes a reference edit still corrects its `buggy_devices`, s.
    pub correction_horizon_secs: u64,
}

impl Default for ReferenceConfig {
    fn default() -> Self {
        ReferenceConfig { vin_sensors: None, buggy_sensors: None, poll_interval_ms: 1_000, correction_horizon_secs: 600 }
    }
}

impl Config {
    /// Reads a TOML file.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
        Self::from_toml(&text).map_err(|message| ConfigError::Parse { path: path.display().to_string(), message })
    }

    /// Parses TOML text; the error is one line: where, the field, and what is wrong with it.
    pub fn from_toml(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e: toml::de::Error| {
            let message = e.message().trim().replace('\n', "; ");
            let Some(span) = e.span() else { return message };
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            // The table the line is in, and the line's key: `replay.from`.
            let table = text.lines().take(line).filter_map(|l| l.trim().strip_prefix('[')?.split(']').next()).last();
            let key = text.lines().nth(line - 1).and_then(|l| l.split_once('=')).map(|(k, _)| k.trim()).filter(|k| !k.is_empty());
            let field = match (table, key) {
                (Some(t), Some(k)) => format!("{t}.{k}"),
                (None, Some(k)) => k.to_string(),
                (Some(t), None) => t.to_string(),
                (None, None) => return format!("line {line}: {message}"),
            };
            if message.starts_with(&format!("{field}:")) {
                format!("line {line}: {message}")
            } else {
                format!("line {line}: {field}: {message}")
            }
        })
    }

    /// The analyses' parameters.
    pub fn params(&self) -> Params {
        Params {
            tumbling_ms: self.windows.tumbling_secs.saturating_mul(1000),
            sliding_size_ms: self.windows.sliding_size_secs.saturating_mul(1000),
            sliding_slide_ms: self.windows.sliding_slide_secs.saturating_mul(1000),
            speed_limit_mph: self.thresholds.speed_limit_mph,
            correction_horizon_ms: self.reference.correction_horizon_secs.saturating_mul(1000),
        }
    }

    /// For each stream, the names of the sinks that receive it. Streams of analyses that are not
    /// enabled go nowhere; a stream not listed goes to `local` (but `raw`, off unless routed).
    pub fn routes(&self) -> Result<Routes, ConfigError> {
        let enabled: Vec<&str> = self.analyses()?.iter().flat_map(|(a, _)| a.spec().outputs.iter().map(|o| o.name)).collect();
        let of_analysis = |s: &str| REGISTRY.iter().any(|a| a.spec().outputs.iter().any(|o| o.name == s));
        Ok(StreamName::all()
            .map(|stream| {
                let to: Vec<String> = match self.routes.get(stream.as_str()) {
                    _ if of_analysis(stream.as_str()) && !enabled.contains(&stream.as_str()) => Vec::new(),
                    Some(list) => list.iter().filter(|name| self.sinks.contains_key(*name)).cloned().collect(),
                    None if stream == StreamName::RAW => Vec::new(),
                    None if self.sinks.contains_key("local") => vec!["local".to_string()],
                    None => Vec::new(),
                };
                (stream, to)
            })
            .collect())
    }

    /// The configuration, checked once: what a job runs (see [`ValidConfig`]).
    pub fn validated(self) -> Result<ValidConfig, ConfigError> {
        self.validate()?;
        Ok(ValidConfig(self))
    }

    /// Checks every value; the error names the field, the value and what is allowed.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_workers()?;
        self.validate_source()?;
        self.validate_generator()?;
        self.validate_replay()?;
        self.validate_reference()?;
        self.checkpoints.validate(self.windows.tumbling_secs).map_err(ConfigError::Invalid)?;
        self.params().validate().map_err(|e| {
            use fleetflow_dataflows::params::Param;
            let key = match e.param {
                Param::TumblingMs => "windows.tumbling_secs",
                Param::SlidingSizeMs => "windows.sliding_size_secs",
                Param::SlidingSlideMs => "windows.sliding_slide_secs",
                Param::SpeedLimitMph => "thresholds.speed_limit_mph",
            };
            ConfigError::Invalid(format!("{key}: {}", e.problem))
        })?;
        if self.sinks.is_empty() {
            return Err(ConfigError::Invalid("sinks: none configured; add [sinks.local] with kind = \"folder\"".into()));
        }
        for (name, sink) in &self.sinks {
            sink.validate(name).map_err(ConfigError::Invalid)?;
        }
        self.validate_exactly_once()?;
        self.validate_http()?;
        self.validate_routes()
    }

    /// Whether the job checkpoints its state (checkpoints on, and a Kafka source or a generator
    /// told to resume).
    pub fn checkpointing(&self) -> bool {
        self.checkpoints.enabled && (self.source.kind == SourceKind::Kafka || self.resumes_generator())
    }

    /// Whether the source is a generated fleet that checkpoints and resumes (`--resume`).
    pub fn resumes_generator(&self) -> bool {
        self.source.kind == SourceKind::Generator && self.generator.resume
    }

    /// Whether SIGTERM stops exactly, keeping the open windows open for the restart (a source
    /// that can be read again from a checkpoint or a commit, unless `drain`).
    pub fn stops_exactly(&self) -> bool {
        (self.source.kind == SourceKind::Kafka || self.resumes_generator() && self.checkpoints.enabled) && !self.drain
    }

    /// The state store's folder of this job: the Kafka group's, or `generator` for a fleet.
    pub fn state_name(&self) -> &str {
        if self.source.kind == SourceKind::Kafka {
            &self.kafka.group
        } else {
            "generator"
        }
    }

    /// An exactly-once Kafka sink commits with checkpoints: the job must take them, and one such
    /// sink is all a job may have (two transactions cannot commit as one).
    fn validate_exactly_once(&self) -> Result<(), ConfigError> {
        let exact: Vec<&String> =
            self.sinks.iter().filter(|(_, s)| matches!(s, SinkConfig::Kafka(k) if k.exactly_once)).map(|(n, _)| n).collect();
        let Some(first) = exact.first() else { return Ok(()) };
        if exact.len() > 1 {
            return Err(ConfigError::Invalid(format!(
                "sinks.{}.exactly_once: only one exactly-once kafka sink per job (also sinks.{first}); route the streams to one of them",
                exact[1]
            )));
        }
        if !self.checkpointing() || self.source.kind != SourceKind::Kafka {
            return Err(ConfigError::Invalid(format!(
                "sinks.{first}.exactly_once: commits with the job's checkpoints, which only a kafka source takes, with checkpoints on; remove exactly_once, or read kafka without --no-checkpoints"
            )));
        }
        Ok(())
    }

    /// Worker threads and the cluster's shape.
    fn validate_workers(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.workers == 0 || self.workers > 1024 {
            return bad(format!("workers: {} is not allowed; use 1 to 1024 worker threads (-w)", self.workers));
        }
        let c = &self.cluster;
        if c.processes == 0 || c.process >= c.processes {
            return bad(format!(
                "cluster.process: {} of {} processes is not allowed; use -n N (at least 1) and -p 0 to N-1",
                c.process, c.processes
            ));
        }
        if c.processes > 1 {
            c.addresses()?;
        }
        Ok(())
    }

    /// The files or Kafka source, when chosen.
    fn validate_source(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.source.kind == SourceKind::Files && self.source.files.is_empty() {
            return bad("source.files: empty while source.kind = \"files\"; list input files (or pass --input FILE)".into());
        }
        if !(1..=1_048_576).contains(&self.source.chunk_kib) {
            return bad(format!("source.chunk_kib: {}; use 1 to 1048576 KiB (default 4096)", self.source.chunk_kib));
        }
        if self.source.kind == SourceKind::Kafka {
            let k = &self.kafka;
            if k.brokers.trim().is_empty() || k.topic.trim().is_empty() {
                return bad(
                    "kafka.brokers / kafka.topic: empty; name the brokers (--kafka-brokers HOST:PORT) and the topic (--topic)".into()
                );
            }
            if k.idle_timeout_ms == 0 {
                return bad("kafka.idle_timeout_ms: 0; use at least 1 ms (default 10000)".into());
            }
        }
        Ok(())
    }

    /// The generated fleet.
    fn validate_generator(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        let g = &self.generator;
        if g.vehicles == 0 {
            return bad("generator.vehicles: 0; simulate at least 1 vehicle".into());
        }
        if g.interval_ms == 0 {
            return bad("generator.interval_ms: 0; use a reporting interval of at least 1 ms".into());
        }
        for (name, v) in [("generator.speeder_fraction", g.speeder_fraction), ("generator.late_fraction", g.late_fraction)] {
            if !(0.0..=1.0).contains(&v) {
                return bad(format!("{name}: {v} is not a share; use a number in [0, 1]"));
            }
        }
        if !g.realtime && g.start.ms().is_none() {
            return bad("generator.start: empty while generator.realtime = false; give the first reading's time, e.g. 2025-11-25".into());
        }
        if g.resume && self.source.kind == SourceKind::Generator && !self.checkpoints.enabled {
            return bad("generator.resume: true needs checkpoints, which are off (--no-checkpoints, checkpoints.enabled = false); turn them on or drop --resume".into());
        }
        Ok(())
    }

    /// The replayed days, and the archive when it is the source.
    fn validate_replay(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        let span = self.replay_days();
        if span.is_some_and(|(start, end)| end <= start) {
            return bad(format!(
                "replay.to: {:?} is not after replay.from {:?}; give a last day on or after the first",
                self.replay.to.as_str(),
                self.replay.from.as_str()
            ));
        }
        if self.source.kind == SourceKind::Archive {
            if self.replay.archive.trim().is_empty() {
                return bad("replay.archive: empty while source.kind = \"archive\"; give the folder or s3://bucket/prefix holding raw/YYYY/MM/DD/HH".into());
            }
            if span.is_none() {
                return bad("replay.from: empty while source.kind = \"archive\"; give the first day to replay, e.g. 2025-11-24".into());
            }
        }
        Ok(())
    }

    /// How reference files are followed.
    fn validate_reference(&self) -> Result<(), ConfigError> {
        if self.reference.correction_horizon_secs == 0 {
            return Err(ConfigError::Invalid(
                "reference.correction_horizon_secs: 0; use at least 1 (seconds a closed window stays correctable)".into(),
            ));
        }
        if self.reference.poll_interval_ms == 0 {
            return Err(ConfigError::Invalid("reference.poll_interval_ms: 0; use at least 1 ms".into()));
        }
        Ok(())
    }

    /// The HTTP API's address, and its token when others can reach it.
    fn validate_http(&self) -> Result<(), ConfigError> {
        if self.http.bind.is_empty() {
            return Ok(());
        }
        let addr: std::net::SocketAddr = self.http.bind.parse().map_err(|e| {
            ConfigError::Invalid(format!(
                "http.bind: {:?} is not an address ({e}); write e.g. 127.0.0.1:9898, or \"\" for no server",
                self.http.bind
            ))
        })?;
        if !addr.ip().is_loopback() && self.http.token.is_empty() {
            return Err(ConfigError::Invalid(format!(
                "http.token: empty while http.bind = {:?} is reachable from other hosts; set a token (sent as Authorization: Bearer TOKEN) or bind 127.0.0.1",
                self.http.bind
            )));
        }
        Ok(())
    }

    /// Each route: a known stream of an enabled analysis, to defined sinks.
    fn validate_routes(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        let enabled = self.analyses()?;
        for (stream, sinks) in &self.routes {
            if StreamName::parse(stream).is_none() {
                let all: Vec<&str> = StreamName::all().map(|s| s.as_str()).collect();
                return bad(format!("routes.{stream}: no such output stream; streams are {}", all.join(", ")));
            }
            let producer = REGISTRY.iter().find(|a| a.spec().outputs.iter().any(|o| o.name == stream));
            if let Some(analysis) = producer {
                let name = analysis.spec().name;
                if !sinks.is_empty() && !enabled.iter().any(|(a, _)| a.spec().name == name) {
                    return bad(format!(
                        "routes.{stream}: the stream of analysis {name}, which is not enabled; add {name:?} to analyses.enabled"
                    ));
                }
            }
            for sink in sinks {
                let Some(config) = self.sinks.get(sink) else {
                    return bad(format!(
                        "routes.{stream}: sink {sink:?} is not defined; add [sinks.{sink}] or use one of {:?}",
                        self.sinks.keys().collect::<Vec<_>>()
                    ));
                };
                if let Some(parsed) = StreamName::parse(stream) {
                    config.takes(sink, parsed).map_err(ConfigError::Invalid)?;
                }
            }
        }
        Ok(())
    }

    /// The replayed span `[start, end)` in epoch ms, if `replay.from` is set: from the start of
    /// `from` to the end of `to` (a whole day included), one day when `to` is not set.
    pub fn replay_days(&self) -> Option<(u64, u64)> {
        let start = self.replay.from.ms()?;
        Some((start, self.replay.to.end_ms().unwrap_or(start + 86_400_000)))
    }

    /// The generator's start time, epoch ms (checked when the config is read).
    pub fn generator_start(&self) -> u64 {
        self.generator.start.ms().unwrap_or(0)
    }
}

/// The first error of a config, read and checked (empty if none): for the config tests of
/// each kind of sink.
#[cfg(test)]
pub fn first_error(toml: &str) -> String {
    match Config::from_toml(toml) {
        Err(e) => e,
        Ok(cfg) => cfg.validate().map(|_| String::new()).unwrap_or_else(|e| e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_parses_and_validates() {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/reference/fleetflow.toml")).unwrap();
        let cfg = Config::from_toml(&text).unwrap();
        cfg.validate().unwrap();
    }

    #[test]
    fn analyses_are_enabled_by_name_with_their_settings_and_mistakes_name_the_field() {
        let names = |cfg: &Config| cfg.analyses().unwrap().iter().map(|(a, _)| a.spec().name).collect::<Vec<_>>();
        assert_eq!(names(&Config::default()), ["speed_windows", "speeders", "daily_speeders", "alerts", "buggy_devices"]);
        let routed = |cfg: &Config, s: StreamName| !cfg.routes().unwrap().iter().find(|(t, _)| *t == s).unwrap().1.is_empty();
        let harsh = StreamName::named("harsh_braking");
        assert!(routed(&Config::default(), StreamName::named("speeders")) && !routed(&Config::default(), harsh), "off analyses go nowhere");
        let cfg = Config::from_toml(
            "[analyses]\nenabled = [\"harsh_braking\", \"speeders\"]\n[analyses.harsh_braking]\ndrop_mph = 25\nwithin_secs = 2.5\n",
        )
        .unwrap();
        cfg.validate().unwrap();
        assert_eq!(names(&cfg), ["speeders", "harsh_braking"], "registry order");
        assert!(routed(&cfg, harsh) && !routed(&cfg, StreamName::named("alerts")));
        let enabled = cfg.analyses().unwrap();
        assert_eq!(enabled[1].1.get("drop_mph"), Some(&Setting::Number(25.0)));
        assert_eq!(enabled[1].1.get("within_secs"), Some(&Setting::Number(2.5)));

        let error = |text: &str| Config::from_toml(text).unwrap().validate().unwrap_err().to_string();
        assert!(error("[analyses]\nenabled = [\"geo\"]\n")
            .starts_with("analyses.enabled: \"geo\" is not an analysis; analyses are speed_windows"));
        assert!(error("[analyses.harsh_braking]\ndrop = 3\n")
            .starts_with("analyses.harsh_braking.drop: not a setting of harsh_braking; its settings are drop_mph, within_secs"));
        assert!(error("[analyses.nope]\nx = 1\n").starts_with("analyses.nope: no such analysis"));
        assert!(error("[analyses]\nenabled = [\"geofence\"]\n")
            .starts_with("analyses.geofence.zones: no file given; give the path of its zones table"));
        assert!(error("[analyses.harsh_braking]\ndrop_mph = [1]\n")
            .starts_with("analyses.harsh_braking.drop_mph: [1] is not a number or a string"));
        // Typed at load, before the job starts (it failed only after start, printed twice).
        let e = error("[analyses.harsh_braking]\ndrop_mph = \"lots\"\n");
        assert!(e.starts_with("analyses.harsh_braking.drop_mph: \"lots\" is not a number; give a number ("), "{e}");
        let e = error("[analyses.geofence]\nzones = 5\n");
        assert!(e.starts_with("analyses.geofence.zones: 5 is not text; give a quoted string ("), "{e}");
        assert_eq!(
            error("[routes]\nharsh_braking = [\"local\"]\n"),
            "routes.harsh_braking: the stream of analysis harsh_braking, which is not enabled; add \"harsh_braking\" to analyses.enabled"
        );
    }

    #[test]
    fn an_exactly_once_kafka_sink_needs_checkpoints_and_is_alone() {
        let sink = |name: &str, extra: &str| format!("[sinks.{name}]\nkind = \"kafka\"\nbrokers = \"b:9092\"\n{extra}\n");
        let kafka = "[source]\nkind = \"kafka\"\n[kafka]\nbrokers = \"b:9092\"\ntopic = \"t\"\n";
        let error = |text: &str| Config::from_toml(text).unwrap().validate().err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(error(&format!("{kafka}{}", sink("k", "exactly_once = true"))), "");
        let files = error(&sink("k", "exactly_once = true"));
        assert!(files.starts_with("sinks.k.exactly_once: commits with the job's checkpoints"), "{files}");
        let off = error(&format!("{kafka}[checkpoints]\nenabled = false\n{}", sink("k", "exactly_once = true")));
        assert!(off.starts_with("sinks.k.exactly_once:"), "{off}");
        let two = error(&format!("{kafka}{}{}", sink("a", "exactly_once = true"), sink("b", "exactly_once = true")));
        assert!(two.starts_with("sinks.b.exactly_once: only one exactly-once kafka sink per job"), "{two}");
        let id = error(&format!("{kafka}{}", sink("k", "transactional_id = \"x\"")));
        assert!(id.starts_with("sinks.k: transactional_id and progress_topic belong to an exactly-once sink"), "{id}");
        let prop = error(&format!("{kafka}{}[sinks.k.properties]\n\"transactional.id\" = \"x\"\n", sink("k", "")));
        assert!(prop.starts_with("sinks.k.properties: transactional.id is set by fleetflow"), "{prop}");
        let c = Config::from_toml(&format!("{kafka}{}", sink("k", "exactly_once = true"))).unwrap();
        let SinkConfig::Kafka(k) = &c.sinks["k"] else { panic!() };
        let t = k.transactional("k", &c.kafka.group).unwrap();
        assert_eq!((t.id.as_str(), t.progress_topic.as_str()), ("fleetflow-fleetflow-k", "fleetflow-fleetflow-k.progress"));
    }

    #[test]
    fn the_aws_example_config_parses_and_validates() {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/reference/fleetflow-aws.toml")).unwrap();
        let cfg = Config::from_toml(&text).unwrap();
        cfg.validate().unwrap();
        let routes = cfg.routes().unwrap();
        let raw = routes.iter().find(|(s, _)| *s == StreamName::RAW).unwrap();
        assert_eq!(raw.1.len(), 1, "raw goes to the firehose sink only");
        let sns = &cfg.sinks["sns"];
        assert_eq!(sns.aws_settings().unwrap().region.as_deref(), Some("eu-west-1"), "the region comes from the topic ARN");
    }

    #[test]
    fn aws_sink_values_are_checked() {
        let mut cfg = Config::default();
        cfg.sinks.insert(
            "fh".into(),
            Config::from_toml("[sinks.fh]\nkind = \"firehose\"\ndelivery_stream = \"bad name\"\n").unwrap().sinks["fh"].clone(),
        );
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.starts_with("sinks.fh.delivery_stream: \"bad name\""), "{e}");
        let cfg = Config::from_toml("[sinks.sns]\nkind = \"sns\"\ntopic_arn = \"alerts\"\n").unwrap();
        assert!(cfg.validate().unwrap_err().to_string().contains("sinks.sns.topic_arn"));
        let cfg = Config::from_toml("[sinks.fh]\nkind = \"firehose\"\ndelivery_stream = \"x\"\nmax_in_flight_mib = 1\n").unwrap();
        assert!(cfg.validate().unwrap_err().to_string().contains("sinks.fh.max_in_flight_mib: 1"));
        assert!(Config::from_toml("[sinks.fh]\nkind = \"firehose\"\n").unwrap_err().contains("delivery_stream"));
    }

    #[test]
    fn unknown_fields_are_rejected_by_name() {
        let err = Config::from_toml("[windows]\ntumbling_sec = 60\n").unwrap_err();
        assert!(err.contains("tumbling_sec"), "{err}");
    }

    #[test]
    fn invalid_values_name_field_and_fix() {
        let mut cfg = Config::default();
        cfg.windows.sliding_slide_secs = 45;
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.starts_with("windows.sliding_slide_secs") && e.contains("multiple"), "{e}");
        let mut cfg = Config::default();
        cfg.routes.insert("speedsters".into(), vec![]);
        assert!(cfg.validate().unwrap_err().to_string().contains("routes.speedsters"));
        let mut cfg = Config::default();
        cfg.cluster.processes = 2;
        cfg.cluster.process = 2;
        assert!(cfg.validate().unwrap_err().to_string().starts_with("cluster.process: 2 of 2"));
        cfg.cluster.process = 1;
        assert!(cfg.validate().unwrap_err().to_string().starts_with("cluster.hostfile: none"));
        let mut cfg = Config::default();
        cfg.routes.insert("alerts".into(), vec!["sns".into()]);
        assert!(cfg.validate().unwrap_err().to_string().contains("sink \"sns\" is not defined"));
    }

    #[test]
    fn the_alert_threshold_is_a_setting_of_alerts_and_its_old_spelling_still_works() {
        let threshold = |cfg: &Config| {
            let analyses = cfg.analyses().unwrap();
            let (_, settings) = analyses.iter().find(|(a, _)| a.spec().name == "alerts").unwrap();
            settings.get("threshold_mph").cloned()
        };
        assert_eq!(threshold(&Config::default()), None, "the analysis's default (80) applies");
        let old = Config::from_toml("[thresholds]\nalert_avg_mph = 70\n").unwrap();
        assert_eq!(threshold(&old), Some(Setting::Number(70.0)));
        let new = Config::from_toml("[analyses.alerts]\nthreshold_mph = 75\n").unwrap();
        assert_eq!(threshold(&new), Some(Setting::Number(75.0)));
        let both = Config::from_toml("[thresholds]\nalert_avg_mph = 70\n[analyses.alerts]\nthreshold_mph = 75\n").unwrap();
        assert!(both.validate().unwrap_err().to_string().contains("keep only analyses.alerts.threshold_mph"));
    }

    #[test]
    fn replay_days_are_whole_utc_days_or_times() {
        let mut cfg = Config::default();
        assert_eq!(cfg.replay_days(), None);
        cfg.replay.from = "2025-11-24".parse().unwrap();
        assert_eq!(cfg.replay_days(), Some((1_763_942_400_000, 1_764_028_800_000)), "one day when `to` is empty");
        cfg.replay.to = "2025-11-26".parse().unwrap();
        assert_eq!(cfg.replay_days(), Some((1_763_942_400_000, 1_764_201_600_000)), "`to` is included");
        cfg.replay.to = "2025-11-24T06:00:00Z".parse().unwrap();
        assert_eq!(cfg.replay_days(), Some((1_763_942_400_000, 1_763_964_000_000)), "a time ends the span");
        cfg.replay.to = "2025-11-23".parse().unwrap();
        assert!(cfg.validate().unwrap_err().to_string().starts_with("replay.to"));
        cfg.replay.to = ConfigTime::default();
        cfg.source.kind = SourceKind::Archive;
        assert!(cfg.validate().unwrap_err().to_string().starts_with("replay.archive: empty"));
    }
}
