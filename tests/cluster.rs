//! Multi-process runs: `fleetflow cluster` starts 2 processes x 2 workers on loopback (timely's
//! cluster communication); their outputs equal a 1-worker run's, and every output file name
//! carries its process and worker.

use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use fleetflow::config::FolderConfig;
use fleetflow::config::{Config, SinkConfig, SourceKind};

mod common;
use common::{files_under, lines_of, two_free_ports};

const BIN: &str = env!("CARGO_BIN_EXE_fleetflow");
const STREAMS: [&str; 7] = ["speed_windows", "speeders", "daily_speeders", "alerts", "buggy_devices", "late", "errors"];

#[test]
fn two_processes_of_two_workers_write_what_one_worker_writes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let g = Command::new(BIN)
        .args(["generate", "--output", d, "--vehicles", "200", "--duration-secs", "900", "--files", "4"])
        .args(["--late-fraction", "0.01", "--malformed-fraction", "0.01", "--speeder-fraction", "0.2"])
        .output()
        .unwrap();
    assert!(g.status.success());
    let files: Vec<String> = (0..4).map(|i| format!("{d}/readings-{i:03}.txt")).collect();
    let (vin, buggy) = (format!("{d}/vin_sensor.csv"), format!("{d}/buggy_sensors.csv"));

    let out = dir.path().join("cluster");
    let port = two_free_ports().to_string();
    let mut args = vec!["cluster", "--processes", "2", "--base-port", &port, "--", "-w", "2", "--input"];
    args.extend(files.iter().map(String::as_str));
    args.extend(["--reference", &vin, "--buggy", &buggy, "--output", out.to_str().unwrap(), "--http", "", "--buffer-secs", "0"]);
    let run = Command::new(BIN).args(&args).output().unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));

    let single = dir.path().join("single");
    let mut c = Config::default();
    c.source.kind = SourceKind::Files;
    c.source.files = files.clone();
    c.reference.vin_sensors = Some(vin.into());
    c.reference.buggy_sensors = Some(buggy.into());
    c.http.bind = String::new();
    c.sinks.insert(
        "local".into(),
        SinkConfig::Folder(FolderConfig {
            path: single.clone(),
            buffer_mib: 1.0,
            buffer_secs: 0.0,
            sealed: false,
            ..FolderConfig::default()
        }),
    );
    fleetflow::job::run(c.validated().unwrap(), Arc::new(AtomicBool::new(false))).unwrap();

    for stream in STREAMS {
        let one = lines_of(&single, stream);
        assert!(!one.is_empty(), "the input has {stream}");
        assert_eq!(lines_of(&out, stream), one, "{stream}: 2 processes x 2 workers = 1 worker");
    }
    let names: Vec<String> = files_under(&out).iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    for tag in ["-p000-w000-", "-p000-w001-", "-p001-w002-", "-p001-w003-"] {
        assert!(names.iter().any(|n| n.contains(tag)), "files of {tag}: {names:?}");
    }
}

#[cfg(unix)]
#[test]
fn a_killed_process_stops_the_other_with_one_line_naming_it() {
    use std::io::Write;
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let port = two_free_ports();
    let hosts = dir.path().join("hosts.txt");
    writeln!(std::fs::File::create(&hosts).unwrap(), "127.0.0.1:{port}\n127.0.0.1:{}", port + 1).unwrap();
    let spawn = |process: &str| {
        Command::new(BIN)
            .args(["run", "--vehicles", "50", "-w", "1", "--http", "", "-n", "2", "-p", process, "-h", hosts.to_str().unwrap()])
            .arg("--output")
            .arg(dir.path().join(process))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    // Process 1 first: it tries to connect to process 0 for a while, quietly.
    let mut second = spawn("1");
    std::thread::sleep(Duration::from_millis(2500));
    let first = spawn("0");
    std::thread::sleep(Duration::from_secs(3));
    second.kill().unwrap(); // SIGKILL
    let second = second.wait_with_output().unwrap();
    let quiet = format!("{}{}", String::from_utf8_lossy(&second.stdout), String::from_utf8_lossy(&second.stderr));
    assert!(!quiet.contains("error connecting") && !quiet.contains("retrying"), "a normal start logs no error: {quiet}");
    let killed = Instant::now();
    let o = first.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(killed.elapsed() < Duration::from_secs(20), "the other process stopped within seconds: {log}");
    assert!(!o.status.success(), "and failed: {log}");
    assert!(log.contains("error: lost process 1 of the cluster"), "one line names the lost process: {log}");
    assert!(!log.contains("panicked") && !log.contains("backtrace"), "no panic report: {log}");
}

#[cfg(unix)]
#[test]
fn a_process_whose_peer_never_connects_stops_with_one_line() {
    use std::io::Write;
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let port = two_free_ports();
    let hosts = dir.path().join("hosts.txt");
    writeln!(std::fs::File::create(&hosts).unwrap(), "127.0.0.1:{port}\n127.0.0.1:{}", port + 1).unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[cluster]\nconnect_timeout_secs = 2\n").unwrap();
    let started = Instant::now();
    let o = Command::new(BIN)
        .args(["run", "--config", cfg.to_str().unwrap(), "--http", "", "-n", "2", "-p", "0", "-h", hosts.to_str().unwrap()])
        .arg("--output")
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(started.elapsed() < Duration::from_secs(20), "it did not wait without end: {log}");
    assert!(!o.status.success() && log.contains("error: the cluster did not form within 2 s"), "{log}");
}
