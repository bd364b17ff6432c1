//! The OpenSearch sink against a real OpenSearch 2.19 node (started on loopback by
//! `scripts/opensearch.sh`; `FLEETFLOW_OPENSEARCH_URL` points at another one): every stream's
//! index holds exactly the records the folder sink wrote for the same run, one document each,
//! with the mappings `fleetflow opensearch setup` derived from the declared fields; a second run
//! over the same input leaves each document once (deterministic ids). With a node of the test's
//! own: documents a template makes unmappable are dead-lettered with the reason and the rest are
//! indexed, and the node stopped in the middle of a run and started again loses nothing.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use fleetflow::sinks::opensearch::client::Client;
use fleetflow::sinks::opensearch::OpenSearchConfig;
use hyper::Method;
use serde_json::Value;

mod common;
use common::{files_under, lines_of, two_free_ports};

const BIN: &str = env!("CARGO_BIN_EXE_fleetflow");

/// The streams the tests index (every JSON stream the default analyses write, with rejects).
const STREAMS: [&str; 7] = ["speed_windows", "speeders", "daily_speeders", "alerts", "buggy_devices", "late", "errors"];

/// The shared node's URL: the suite's, or one this test binary starts.
fn shared_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("FLEETFLOW_OPENSEARCH_URL") {
            return url;
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/opensearch.sh");
        let status = Command::new("bash").arg(script).arg("start").status().expect("running scripts/opensearch.sh");
        assert!(status.success(), "scripts/opensearch.sh start failed");
        "http://127.0.0.1:19200".to_string()
    })
    .clone()
}

/// A node of this test's own, stopped (and its data deleted) when dropped.
struct Node {
    port: u16,
    home: PathBuf,
}

impl Node {
    fn script(&self, command: &str) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/opensearch.sh");
        let status = Command::new("bash")
            .arg(script)
            .arg(command)
            .env("FLEETFLOW_OPENSEARCH_PORT", self.port.to_string())
            .env("FLEETFLOW_OPENSEARCH_HOME", &self.home)
            .status()
            .expect("running scripts/opensearch.sh");
        assert!(status.success(), "opensearch.sh {command} failed");
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.script("stop");
    }
}

/// A request to the node at `url`; the answer's status and JSON.
fn call(url: &str, method: Method, path: &str, body: &str) -> (u16, Value) {
    let client = Client::new("test", &OpenSearchConfig::new(url)).unwrap();
    let answer = fleetflow::aws::runtime()
        .block_on(client.request(method, path, body.as_bytes().to_vec(), "application/json"))
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    (answer.status, serde_json::from_str(&answer.body).unwrap_or(Value::Null))
}

/// Every document of `prefix`'s indices for `stream`, as canonical JSON, sorted.
fn indexed(url: &str, prefix: &str, stream: &str) -> Vec<String> {
    let pattern = format!("{prefix}-{stream}-*");
    call(url, Method::POST, &format!("/{pattern}/_refresh?allow_no_indices=true"), "");
    let (status, found) =
        call(url, Method::POST, &format!("/{pattern}/_search?size=10000&allow_no_indices=true"), r#"{"query":{"match_all":{}}}"#);
    assert_eq!(status, 200, "{found}");
    assert!(found["hits"]["total"]["value"].as_u64().unwrap() < 10_000, "the test reads every document in one page");
    let mut docs: Vec<String> = found["hits"]["hits"].as_array().unwrap().iter().map(|h| h["_source"].to_string()).collect();
    docs.sort();
    docs
}

/// `_count` of `stream`'s indices.
fn count(url: &str, prefix: &str, stream: &str) -> u64 {
    call(url, Method::POST, &format!("/{prefix}-{stream}-*/_refresh?allow_no_indices=true"), "");
    let (_, answer) = call(url, Method::GET, &format!("/{prefix}-{stream}-*/_count?allow_no_indices=true"), "");
    answer["count"].as_u64().unwrap_or_else(|| panic!("{answer}"))
}

/// A folder sink's lines as canonical JSON, sorted.
fn canonical(lines: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = lines.iter().map(|l| serde_json::from_str::<Value>(l).unwrap().to_string()).collect();
    out.sort();
    out
}

fn fleetflow(args: &[&str]) -> std::process::Output {
    let out = Command::new(BIN).args(args).output().expect("running fleetflow");
    assert!(out.status.success(), "fleetflow {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// Generated input with late and malformed lines, and matching reference files, in `dir`.
fn generate(dir: &Path) {
    common::generate_with_rejects(BIN, dir, 60, 1200);
}

/// A config: the input's readings from `input`, into a folder and sink `search` at `url`.
fn config(dir: &Path, data: &Path, input: &str, url: &str, prefix: &str) -> PathBuf {
    let routes: String = STREAMS.iter().map(|s| format!("{s} = [\"local\", \"search\"]\n")).collect();
    let text = format!(
        r#"
workers = 2
[source]
kind = "files"
files = ["{input}"]
[reference]
vin_sensors = "{data}/vin_sensor.csv"
buggy_sensors = "{data}/buggy_sensors.csv"
[sinks.local]
kind = "folder"
path = "{out}"
buffer_secs = 0
[sinks.search]
kind = "opensearch"
url = "{url}"
index = "{prefix}-{{stream}}-{{yyyy.MM.dd}}"
batch_docs = 200
buffer_secs = 0.2
retry_secs = 90
request_timeout_secs = 5
dead_letter_dir = "{dead}"
[routes]
{routes}"#,
        data = data.display(),
        out = dir.join("out").display(),
        dead = dir.join("dead").display(),
    );
    let path = dir.join("fleetflow.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A prefix of index names unique to this run (the shared node keeps its indices).
fn unique(name: &str) -> String {
    format!("ff-{name}-{}-{}", std::process::id(), fleetflow::clock::now_ms() % 1_000_000)
}

#[test]
fn every_stream_is_indexed_once_as_the_folder_sink_wrote_it() {
    let url = shared_url();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    generate(&data);
    let prefix = unique("all");
    let input = format!("{}/readings-000.txt", data.display());
    let cfg = config(dir.path(), &data, &input, &url, &prefix);
    let c = cfg.to_str().unwrap();
    let setup = String::from_utf8(fleetflow(&["opensearch", "setup", "--config", c]).stdout).unwrap();
    assert!(setup.contains(&format!("index template fleetflow-search-speed_windows: {prefix}-speed_windows-* (7 fields)")), "{setup}");
    let again = String::from_utf8(fleetflow(&["opensearch", "setup", "--config", c]).stdout).unwrap();
    assert_eq!(setup, again, "setup is idempotent");

    fleetflow(&["run", "--config", c]);
    let out = dir.path().join("out");
    for stream in STREAMS {
        let local = canonical(lines_of(&out, stream));
        assert!(!local.is_empty(), "the input has {stream}");
        assert_eq!(count(&url, &prefix, stream), local.len() as u64, "{stream}: one document per line");
        assert_eq!(indexed(&url, &prefix, stream), local, "{stream}: the index holds the folder sink's records");
    }
    assert!(files_under(&dir.path().join("dead")).is_empty(), "nothing dead-lettered");
    let (_, mapping) = call(&url, Method::GET, &format!("/{prefix}-speed_windows-*/_mapping"), "");
    let fields = &mapping.as_object().unwrap().values().next().unwrap()["mappings"]["properties"];
    assert_eq!((fields["window_start"]["type"].as_str(), fields["avg_speed"]["type"].as_str()), (Some("date"), Some("double")));
    assert_eq!((fields["vin"]["type"].as_str(), fields["readings"]["type"].as_str()), (Some("keyword"), Some("long")));

    // The same run again (as a restart that repeats its outputs would): each record stays once.
    std::fs::remove_dir_all(&out).unwrap();
    fleetflow(&["run", "--config", c]);
    for stream in STREAMS {
        assert_eq!(count(&url, &prefix, stream), lines_of(&out, stream).len() as u64, "{stream}: a repeat overwrites");
    }
}

#[test]
fn refused_documents_are_dead_lettered_and_a_node_stopped_mid_run_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node { port: two_free_ports(), home: dir.path().join("node") };
    node.script("start");
    let url = node.url();
    let data = dir.path().join("data");
    generate(&data);
    let prefix = "faults";
    let cfg = config(dir.path(), &data, "-", &url, prefix);
    fleetflow(&["opensearch", "setup", "--config", cfg.to_str().unwrap()]);
    // An operator's template above fleetflow's: an alert's average speed must be a whole number.
    let conflict = r#"{"index_patterns":["faults-alerts-*"],"priority":100,
        "template":{"mappings":{"properties":{"avg_speed":{"type":"long","coerce":false}}}}}"#;
    assert_eq!(call(&url, Method::PUT, "/_index_template/conflict", conflict).0, 200);

    let lines = std::fs::read_to_string(data.join("readings-000.txt")).unwrap();
    let lines: Vec<&str> = lines.lines().collect();
    let mut job = Command::new(BIN)
        .args(["run", "--config", cfg.to_str().unwrap(), "--http", ""])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = job.stdin.take().unwrap();
    let half = lines.len() / 2;
    for line in &lines[..half] {
        writeln!(stdin, "{line}").unwrap();
    }
    stdin.flush().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while count(&url, prefix, "speed_windows") == 0 {
        assert!(Instant::now() < deadline, "documents arrive while the input is read");
        std::thread::sleep(Duration::from_millis(200));
    }
    node.script("kill");
    for line in &lines[half..] {
        writeln!(stdin, "{line}").unwrap();
    }
    drop(stdin);
    std::thread::sleep(Duration::from_secs(4));
    node.script("restart");
    let done = job.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&done.stderr);
    assert!(done.status.success(), "{log}");

    let out = dir.path().join("out");
    for stream in STREAMS.into_iter().filter(|s| *s != "alerts") {
        let local = canonical(lines_of(&out, stream));
        assert_eq!(indexed(&url, prefix, stream), local, "{stream}: every record indexed once across the outage");
    }
    let dead: Vec<Value> = files_under(&dir.path().join("dead"))
        .iter()
        .flat_map(|f| std::fs::read_to_string(f).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect::<Vec<Value>>())
        .collect();
    assert!(!dead.is_empty(), "alerts with fractional averages are refused");
    assert!(dead.iter().all(|d| d["error"].as_str().unwrap().contains("mapper_parsing_exception")), "{dead:?}");
    let mut alerts: Vec<String> = indexed(&url, prefix, "alerts");
    alerts.extend(dead.iter().map(|d| serde_json::from_str::<Value>(d["data"].as_str().unwrap()).unwrap().to_string()));
    alerts.sort();
    assert_eq!(alerts, canonical(lines_of(&out, "alerts")), "each alert is indexed or dead-lettered, none lost");
    let retried: Vec<&str> = log.lines().filter(|l| l.contains("records failed") && l.contains("; attempt ")).collect();
    println!("{}", retried.join("\n"));
    assert!(!retried.is_empty(), "requests failed during the outage and were retried: {log}");
}
