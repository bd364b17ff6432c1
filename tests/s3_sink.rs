//! The S3 sink against a real S3 emulator (the moto server, started on loopback by
//! `scripts/moto.sh`; `FLEETFLOW_AWS_ENDPOINT` points at another one), read back by pyarrow's S3
//! filesystem (PyPI, `scripts/readers.sh`): a run's objects, as Parquet in the Hive layout and as
//! zstd JSON lines, hold exactly the rows of the folder sink's JSON lines for every stream (DuckDB
//! compares them). A run stopped in the middle of an hour leaves no object of that hour, and every
//! object there is is whole.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;

const BIN: &str = env!("CARGO_BIN_EXE_fleetflow");
const STREAMS: [&str; 8] = ["speed_windows", "speeders", "daily_speeders", "alerts", "buggy_devices", "late", "errors", "raw"];

fn endpoint() -> String {
    common::moto_endpoint()
}

/// A bucket of its own on the emulator.
fn bucket(endpoint: &str, name: &str) -> String {
    let bucket = format!("ff-{name}-{}-{}", std::process::id(), fleetflow::clock::now_ms() % 1_000_000);
    let loader =
        aws_config::defaults(aws_config::BehaviorVersion::latest()).region(aws_config::Region::new("us-east-1")).endpoint_url(endpoint);
    let sdk = fleetflow::aws::runtime().block_on(loader.load());
    let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&sdk).force_path_style(true).build());
    fleetflow::aws::runtime().block_on(s3.create_bucket().bucket(&bucket).send()).unwrap();
    bucket
}

/// pyarrow's copy of `prefix` in `bucket` into `dest`: the keys, and the Parquet rows it read.
fn download(python: &str, endpoint: &str, bucket: &str, prefix: &str, dest: &Path) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lake/s3_download.py");
    let out = Command::new(python).arg(script).args([endpoint, bucket, prefix]).arg(dest).output().unwrap();
    assert!(out.status.success(), "pyarrow: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn s3_sink(name: &str, endpoint: &str, bucket: &str, prefix: &str, extra: &str, dir: &Path) -> String {
    format!(
        "[sinks.{name}]\nkind = \"s3\"\nbucket = \"{bucket}\"\nprefix = \"{prefix}\"\nendpoint_url = \"{endpoint}\"\nregion = \"us-east-1\"\nretry_secs = 30\ndead_letter_dir = \"{}\"\n{extra}\n",
        dir.join("dead").display()
    )
}

#[test]
fn s3_objects_hold_the_folder_sinks_records_as_parquet_and_zstd_json_lines() {
    let (endpoint, python) = (endpoint(), common::lake::python());
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    common::generate_with_rejects(BIN, &data, 50, 5400);
    let bucket = bucket(&endpoint, "lake");
    let d = data.display();
    let mut routes: String = STREAMS.iter().filter(|s| **s != "raw").map(|s| format!("{s} = [\"plain\", \"pq\", \"zst\"]\n")).collect();
    // raw also as plain JSON lines in 5 MiB parts: its hours (10 MB) go up in multipart uploads.
    routes.push_str("raw = [\"plain\", \"pq\", \"zst\", \"big\"]\n");
    let config = format!(
        "workers = 2\n[source]\nkind = \"files\"\nfiles = [\"{d}/readings-000.txt\"]\n[reference]\nvin_sensors = \"{d}/vin_sensor.csv\"\nbuggy_sensors = \"{d}/buggy_sensors.csv\"\n[sinks.plain]\nkind = \"folder\"\npath = \"{}\"\nbuffer_secs = 0\n{}{}{}[routes]\n{routes}",
        dir.path().join("plain").display(),
        s3_sink("pq", &endpoint, &bucket, "pq/", "format = \"parquet\"\ncompression = \"zstd\"\nlayout = \"hive\"", dir.path()),
        s3_sink("zst", &endpoint, &bucket, "zst", "compression = \"zstd\"", dir.path()),
        s3_sink("big", &endpoint, &bucket, "big", "part_mib = 5", dir.path()),
    );
    let cfg = dir.path().join("fleetflow.toml");
    std::fs::write(&cfg, config).unwrap();
    let run = Command::new(BIN).args(["run", "--config", cfg.to_str().unwrap()]).output().unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));

    let pq = download(&python, &endpoint, &bucket, "pq/", &dir.path().join("pq"));
    let zst = download(&python, &endpoint, &bucket, "zst/", &dir.path().join("zst"));
    let keys = |v: &Value| v["keys"].as_array().unwrap().iter().map(|k| k.as_str().unwrap().to_string()).collect::<Vec<_>>();
    assert!(keys(&pq).iter().all(|k| k.contains("/dt=") && k.ends_with(".parquet")), "{pq}");
    assert!(keys(&zst).iter().all(|k| k.ends_with(".jsonl.zst")), "{zst}");
    assert!(keys(&pq).contains(&"speed_windows/dt=2025-11-25/hr=00/speed_windows-20251125T00.parquet".to_string()), "{pq}");
    let plain_lines: usize = STREAMS.iter().map(|s| common::lines_of(&dir.path().join("plain"), s).len()).sum();
    assert_eq!(pq["parquet_rows"].as_u64(), Some(plain_lines as u64), "pyarrow reads every record from S3");
    for stream in STREAMS {
        for other in ["pq", "zst"] {
            let c = common::lake::compare(&python, &dir.path().join("plain"), &dir.path().join(other), stream, None);
            assert!(
                c["plain"].as_u64().unwrap() > 0 && c["only_plain"] == 0 && c["only_other"] == 0 && c["plain"] == c["other"],
                "{stream} in {other}: {c}"
            );
        }
    }
    download(&python, &endpoint, &bucket, "big/", &dir.path().join("big"));
    let largest = common::files_under(&dir.path().join("big")).iter().map(|f| f.metadata().unwrap().len()).max().unwrap();
    assert!(largest > 5 << 20, "an object above the part size: {largest} bytes");
    let big = common::lines_of(&dir.path().join("big"), "raw");
    assert!(big == common::lines_of(&dir.path().join("plain"), "raw"), "multipart objects are whole: {} lines", big.len());
    assert!(common::files_under(&dir.path().join("dead")).is_empty(), "nothing dead-lettered");
}

#[test]
fn a_run_stopped_mid_hour_leaves_no_object_of_that_hour() {
    let (endpoint, python) = (endpoint(), common::lake::python());
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    common::generate_with_rejects(BIN, &data, 20, 5400);
    let bucket = bucket(&endpoint, "stop");
    let config = format!(
        "[source]\nkind = \"files\"\nfiles = [\"-\"]\n{}[routes]\nspeed_windows = [\"s3\"]\nraw = [\"s3\"]\n",
        s3_sink("s3", &endpoint, &bucket, "", "", dir.path())
    );
    let cfg = dir.path().join("fleetflow.toml");
    std::fs::write(&cfg, config).unwrap();
    let mut job = Command::new(BIN)
        .args(["run", "--config", cfg.to_str().unwrap(), "--http", ""])
        .stdin(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = job.stdin.take().unwrap();
    // Readings up to 01:30 of the first day: hour 00 is complete, hour 01 is not.
    let text = std::fs::read_to_string(data.join("readings-000.txt")).unwrap();
    let cut = 1_764_032_400_000 + 1_800_000; // 2025-11-25T01:30Z
    for line in text.lines().filter(|l| l.split(' ').nth(1).and_then(|t| t.parse::<u64>().ok()).is_some_and(|t| t < cut)) {
        writeln!(stdin, "{line}").unwrap();
    }
    stdin.flush().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let listed = loop {
        let now = download(&python, &endpoint, &bucket, "", &dir.path().join(format!("copy-{}", fleetflow::clock::now_ms())));
        if now["keys"].as_array().unwrap().iter().any(|k| k.as_str().unwrap().starts_with("speed_windows/")) {
            break now;
        }
        assert!(Instant::now() < deadline, "hour 00's objects appear once the watermark passes 01:00");
        std::thread::sleep(Duration::from_millis(300));
    };
    job.kill().unwrap();
    let _ = job.wait();
    let after = download(&python, &endpoint, &bucket, "", &dir.path().join("after"));
    for v in [&listed, &after] {
        for key in v["keys"].as_array().unwrap().iter().map(|k| k.as_str().unwrap()) {
            assert!(key.contains("/2025/11/25/00/") || key.contains("/2025/11/24/"), "no object of the unfinished hour 01: {key}");
        }
    }
    // Every object is whole: its lines are complete readings or windows of hour 00.
    let copy = dir.path().join("after");
    let windows = common::lines_of(&copy, "speed_windows");
    assert!(windows.len() >= 20 * 50 && windows.iter().all(|l| l.starts_with('{') && l.ends_with('}')), "{} windows", windows.len());
    let raw = common::lines_of(&copy, "raw");
    assert!(raw.iter().all(|l| l.split(' ').count() == 6), "whole raw lines");
}

#[cfg(unix)]
#[test]
fn a_resumed_fleet_stopped_and_killed_leaves_each_object_record_once() {
    // `--resume` checkpoints the fleet with the operators' state; the S3 sink stages records
    // until a checkpoint covers them. Stopped (SIGTERM), killed (SIGKILL), stopped again, run to
    // the end: the objects hold one uninterrupted run's records, each once, the kill included.
    let (endpoint, python) = (endpoint(), common::lake::python());
    let dir = tempfile::tempdir().unwrap();
    let bucket = bucket(&endpoint, "resume");
    let config = |prefix: &str| {
        let routes = "speed_windows = [\"s3\"]\nspeeders = [\"s3\"]\nalerts = [\"s3\"]\nlate = [\"s3\"]\nerrors = []\ndaily_speeders = []\nbuggy_devices = []\n";
        let staging = format!("staging_dir = \"{}\"", dir.path().join(format!("staging-{prefix}")).display());
        let path = dir.path().join(format!("{prefix}.toml"));
        std::fs::write(&path, format!("{}[routes]\n{routes}", s3_sink("s3", &endpoint, &bucket, prefix, &staging, dir.path()))).unwrap();
        path.to_str().unwrap().to_string()
    };
    let (reference, resumed) = (config("ref"), config("run"));
    let fleet = ["run", "--fast", "--vehicles", "2000", "--duration-secs", "1800", "--resume", "--http", "", "--log", "info"];
    let state = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let whole = Command::new(BIN).args(fleet).args(["--config", &reference, "--state-dir", &state("st0")]).output().unwrap();
    assert!(whole.status.success(), "{}", String::from_utf8_lossy(&whole.stderr));

    let st = state("st1");
    let args = |workers: &'static str| -> Vec<String> {
        [&fleet[..], &["--config", &resumed, "--state-dir", &st, "-w", workers]].concat().iter().map(|a| a.to_string()).collect()
    };
    let spawn = |a: Vec<String>| common::Logged::spawn(BIN, &a.iter().map(String::as_str).collect::<Vec<_>>());
    let mut logs = String::new();
    for (workers, signal) in [("1", libc::SIGTERM), ("2", libc::SIGKILL), ("2", libc::SIGTERM)] {
        let mut job = spawn(args(workers));
        job.wait_for("checkpoint complete");
        let (status, log) = job.signal(signal);
        assert_eq!(status.success(), signal == libc::SIGTERM, "{log}");
        logs.push_str(&log);
    }
    let (status, log) = spawn(args("1")).finish();
    logs.push_str(&log);
    assert!(status.success() && logs.matches("restoring the checkpoint of").count() >= 3, "{logs}");

    let (ref_copy, run_copy) = (dir.path().join("ref-copy"), dir.path().join("run-copy"));
    download(&python, &endpoint, &bucket, "ref/", &ref_copy);
    download(&python, &endpoint, &bucket, "run/", &run_copy);
    for stream in ["speed_windows", "speeders", "alerts", "late"] {
        let (expected, written) = (common::lines_of(&ref_copy, stream), common::lines_of(&run_copy, stream));
        assert!(!expected.is_empty(), "{stream}: the reference wrote some");
        assert!(
            written == expected,
            "{stream}: {} records of the uninterrupted run's {}, each once\n{logs}",
            written.len(),
            expected.len()
        );
    }
}

#[test]
fn aws_setup_creates_an_s3_sinks_bucket_once() {
    let endpoint = endpoint();
    let dir = tempfile::tempdir().unwrap();
    let bucket = format!("ff-setup-{}-{}", std::process::id(), fleetflow::clock::now_ms() % 1_000_000);
    let cfg = dir.path().join("s3.toml");
    std::fs::write(&cfg, format!("{}[routes]\nalerts = [\"s3\"]\n", s3_sink("s3", &endpoint, &bucket, "", "", dir.path()))).unwrap();
    let setup = || Command::new(BIN).args(["aws", "setup", "--config", cfg.to_str().unwrap()]).output().unwrap();
    let first = setup();
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    assert_eq!(String::from_utf8_lossy(&first.stdout), format!("bucket {bucket}: created\n"));
    assert_eq!(String::from_utf8_lossy(&setup().stdout), format!("bucket {bucket}: exists\n"), "setup is idempotent");
    // A Firehose sink without --bucket and --role-arn is one line naming both.
    let fh = dir.path().join("fh.toml");
    std::fs::write(&fh, format!("[sinks.fh]\nkind = \"firehose\"\ndelivery_stream = \"x-{{stream}}\"\nendpoint_url = \"{endpoint}\"\n[routes]\nalerts = [\"fh\"]\n")).unwrap();
    let refused = Command::new(BIN).args(["aws", "setup", "--config", fh.to_str().unwrap()]).output().unwrap();
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && said.contains("--bucket") && said.contains("--role-arn"), "{said}");
}
