//! `/metrics` and the shipped alert rules checked by Prometheus' own tool, `promtool` (Debian's
//! `prometheus` package, installed by `scripts/tools.sh`): the exposition of a running job passes
//! `promtool check metrics`; `reference/monitoring/alerts.yml` passes `promtool check rules`, and
//! its unit tests (`alerts.test.yml`: the latency alert fires on a synthetic series) pass
//! `promtool test rules`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

const BIN: &str = env!("CARGO_BIN_EXE_fleetflow");

fn promtool() -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|p| std::env::split_paths(&p).map(|d| d.join("promtool")).find(|p| p.exists()));
    found.expect("promtool is not installed: run `bash scripts/tools.sh` (Debian's prometheus package)")
}

fn monitoring() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("reference/monitoring")
}

/// Runs promtool with `args` (and `stdin`), returning its exit success and its output.
fn run(args: &[&str], stdin: &str) -> (bool, String) {
    let mut child = Command::new(promtool())
        .args(args)
        .current_dir(monitoring())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn the_alert_rules_load_and_their_unit_tests_pass() {
    let (ok, out) = run(&["check", "rules", "alerts.yml"], "");
    assert!(ok && out.contains("SUCCESS"), "{out}");
    let (ok, out) = run(&["test", "rules", "alerts.test.yml"], "");
    assert!(ok && out.contains("SUCCESS"), "{out}");
}

#[test]
fn a_running_jobs_metrics_pass_promtool() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let g = Command::new(BIN).args(["generate", "--output", data.to_str().unwrap(), "--vehicles", "20", "--duration-secs", "600"]).output();
    assert!(g.unwrap().status.success());
    let mut input = std::fs::read_to_string(data.join("readings-000.txt")).unwrap();
    input.push_str("not a reading\n");
    let out = dir.path().join("out");
    let (mut job, addr, _log) = common::run_with_http(&["--output", out.to_str().unwrap()]);
    let mut stdin = job.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).unwrap();
    stdin.flush().unwrap();
    // Once windows are out and the malformed line counted, every family has samples.
    let deadline = Instant::now() + Duration::from_secs(60);
    let text = loop {
        let (_, text) = common::http_get(&addr, "/metrics").unwrap();
        let out = common::metric(&text, "fleetflow_records_out_total{stream=\"speed_windows\"}").unwrap_or(0);
        if out > 0 && common::metric(&text, "fleetflow_malformed_total") == Some(1) {
            break text;
        }
        assert!(Instant::now() < deadline, "{text}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let (ok, out) = run(&["check", "metrics"], &text);
    assert!(ok, "promtool check metrics:\n{out}\n{text}");
    assert!(text.contains("fleetflow_window_latency_seconds_bucket{le=\"+Inf\"}"), "{text}");
    drop(stdin);
    assert!(job.wait().unwrap().success());
}
