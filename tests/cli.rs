//! Tests of the `fleetflow` binary: runs to the end of files and stdin, bad flags and config named
//! with their fix, Ctrl-C flushing, and reference edits taking effect while the job runs.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{files_under, lines_of, Logged};

const BIN: &str = env!("CARGO_BIN_EXE_fleetflow");
const VIN: &str = "1HGCM82633A004352";

fn fleetflow(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("running fleetflow")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

#[test]
fn generate_then_run_files_to_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = dir.path().join("out");
    let d = data.to_str().unwrap();
    let g = fleetflow(&[
        "generate",
        "--output",
        d,
        "--vehicles",
        "30",
        "--duration-secs",
        "300",
        "--files",
        "2",
        "--malformed-fraction",
        "0.01",
    ]);
    assert!(g.status.success(), "{}", stderr(&g));
    let r = fleetflow(&[
        "run",
        "--input",
        &format!("{d}/readings-000.txt"),
        &format!("{d}/readings-001.txt"),
        "--reference",
        &format!("{d}/vin_sensor.csv"),
        "--buggy",
        &format!("{d}/buggy_sensors.csv"),
        "--output",
        out.to_str().unwrap(),
        "-w",
        "2",
    ]);
    let log = stderr(&r);
    assert!(r.status.success(), "{log}");
    assert!(log.contains("done: ") && log.contains("speed_windows: "), "counts are logged at the end: {log}");
    let windows = lines_of(&out, "speed_windows");
    assert!(windows.len() >= 30 * 5, "every vehicle has a window per minute: {}", windows.len());
    let w: serde_json::Value = serde_json::from_str(&windows[0]).unwrap();
    for field in ["vin", "window_start", "window_end", "readings", "avg_speed", "max_speed", "min_speed"] {
        assert!(w.get(field).is_some(), "speed_windows has {field}: {w}");
    }
    assert!(w["window_start"].as_str().unwrap().ends_with(":00.000Z"));
    let errors = lines_of(&out, "errors");
    assert!(!errors.is_empty());
    let e: serde_json::Value = serde_json::from_str(&errors[0]).unwrap();
    assert!(e["position"].as_str().unwrap().contains("readings-00"), "{e}");
    assert!(!e["reason"].as_str().unwrap().is_empty());
    // Folder layout: <stream>/YYYY/MM/DD/HH/<file>.jsonl, no temporary files left.
    for p in files_under(&out) {
        let rel = p.strip_prefix(&out).unwrap().to_string_lossy().to_string();
        let parts: Vec<&str> = rel.split('/').collect();
        assert_eq!(parts.len(), 6, "{rel}");
        assert!(parts[5].ends_with(".jsonl") && !parts[5].starts_with('.'), "{rel}");
    }
}

#[test]
fn stdin_is_a_source() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut child = Command::new(BIN)
        .args(["run", "--input", "-", "--output", out.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "1 1764064860000 {VIN} -122.4 37.7 70.5\n2 1764064870000 {VIN} -122.4 37.7 60.5\nbroken line\n").unwrap();
    drop(stdin);
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        lines_of(&out, "speeders"),
        vec![format!(
            r#"{{"vin":"{VIN}","window_start":"2025-11-25T10:01:00.000Z","window_end":"2025-11-25T10:02:00.000Z","readings":2,"speeding_readings":1,"avg_speed":65.5,"max_speed":70.5}}"#
        )]
    );
    let errors = lines_of(&out, "errors");
    assert_eq!(errors.len(), 1);
    assert!(errors[0].contains(r#""position":"stdin:3""#) && errors[0].contains("expected 6 fields"), "{}", errors[0]);
}

#[test]
fn bad_flags_and_config_name_the_field_and_the_fix() {
    let o = fleetflow(&["run", "-w", "0"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("workers: 0") && stderr(&o).contains("use 1 to 1024"), "{}", stderr(&o));

    let o = fleetflow(&["run", "--speed-limit", "fast"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--speed-limit"), "{}", stderr(&o));

    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[windows]\ntumbling_sec = 60\n").unwrap();
    let o = fleetflow(&["run", "--config", cfg.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("tumbling_sec") && stderr(&o).contains("c.toml"), "{}", stderr(&o));
    assert_eq!(stderr(&o).lines().count(), 1, "one line: {}", stderr(&o));
    std::fs::write(&cfg, "[replay]\nfrom = \"yesterday\"\n").unwrap();
    let o = fleetflow(&["run", "--config", cfg.to_str().unwrap()]);
    let e = stderr(&o);
    assert!(e.contains("c.toml: line 2: replay.from: \"yesterday\" is not a time") && e.lines().count() == 1, "{e}");

    std::fs::write(&cfg, "[windows]\nsliding_slide_secs = 45\n").unwrap();
    let o = fleetflow(&["run", "--config", cfg.to_str().unwrap()]);
    assert!(stderr(&o).contains("windows.sliding_slide_secs") && stderr(&o).contains("multiple"), "{}", stderr(&o));

    // An output folder that cannot be created: the job drains, reports the path and fails.
    let input = dir.path().join("in.txt");
    std::fs::write(&input, format!("1 1764064860000 {VIN} 1 1 30\n")).unwrap();
    let o = fleetflow(&["run", "--input", input.to_str().unwrap(), "--output", "/dev/null/out"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("/dev/null/out"), "{}", stderr(&o));

    let o = fleetflow(&["run", "--input", "-", "--reference", "/nonexistent/ref.csv"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("/nonexistent/ref.csv"), "{}", stderr(&o));
}

#[test]
fn print_config_shows_the_effective_configuration() {
    let o = fleetflow(&["run", "--print-config", "--vehicles", "7", "-w", "3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(text.contains("workers = 3") && text.contains("vehicles = 7"), "{text}");
}

#[cfg(unix)]
#[test]
fn ctrl_c_or_sigterm_closes_windows_flushes_and_exits_cleanly() {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        // The bare default job (real-time generator), with a long buffer so only the final flush writes.
        let child = Command::new(BIN)
            .args(["run", "--vehicles", "20", "--buffer-secs", "600", "--output", out.to_str().unwrap(), "--http", ""])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(2500));
        assert!(files_under(&out).is_empty(), "nothing flushed before the signal");
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(child.id() as i32, signal) };
        let start = Instant::now();
        let o = child.wait_with_output().unwrap();
        assert!(start.elapsed() < Duration::from_secs(30));
        assert!(o.status.success(), "signal {signal}: {}", stderr(&o));
        let windows = lines_of(&out, "speed_windows");
        assert!(windows.len() >= 20, "signal {signal}: every vehicle's open window was closed and flushed: {}", windows.len());
        let log = stderr(&o);
        assert!(log.contains("the first windows close when the watermark") && log.contains(": in about "), "when output comes: {log}");
    }
}

#[cfg(unix)]
#[test]
fn a_closed_log_pipe_does_not_stop_the_job() {
    // `fleetflow run ... 2>&1 | head -1`: the log reader goes away after its first line. The job
    // must go on (logging is best effort) and write its outputs; so must `--print-config | head`.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut child = Command::new(BIN)
        .args(["run", "--fast", "--vehicles", "50", "--duration-secs", "600"])
        .args(["--http", "", "--output", out.to_str().unwrap(), "--log", "debug"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::BufRead;
        let mut first = String::new();
        std::io::BufReader::new(child.stderr.take().unwrap()).read_line(&mut first).unwrap();
        assert!(!first.is_empty(), "the job logs");
    } // the pipe's reading end is closed here: every later log line fails to write
    let status = child.wait().unwrap();
    assert!(status.success(), "the job ran to its end with its log pipe closed: {status}");
    assert!(lines_of(&out, "speed_windows").len() >= 50 * 9, "and wrote its windows");

    let mut child = Command::new(BIN).args(["run", "--print-config"]).stdout(Stdio::piped()).spawn().unwrap();
    drop(child.stdout.take());
    assert!(child.wait().unwrap().success(), "printing to a closed stdout is no failure");
}

#[test]
fn replaying_an_archive_without_raw_hours_says_how_to_archive_them() {
    // The natural first try: replay the default output folder, where `raw` (off by default) is not.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("fleetflow-out");
    std::fs::create_dir_all(out.join("speed_windows/2025/11/25/00")).unwrap();
    let o = fleetflow(&["replay", "--from", "2025-11-25", "--archive", out.to_str().unwrap()]);
    let e = stderr(&o);
    assert!(!o.status.success(), "replaying nothing is an error: {e}");
    assert!(e.contains("holds no raw/YYYY/MM/DD/HH files") && e.contains("raw = [\"local\"]"), "{e}");
    assert_eq!(e.matches("holds no raw").count(), 1, "said once: {e}");
    // A missing archive is named as the archive, not as Kafka.
    let o = fleetflow(&["replay", "--from", "2025-11-25", "--archive", "/nonexistent/fleetflow-out"]);
    let e = stderr(&o);
    assert!(!o.status.success() && e.contains("replay.archive (--archive)") && !e.contains("kafka"), "{e}");
}

#[test]
fn an_http_address_asked_for_that_is_taken_stops_the_job() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, format!("1 1764064860000 {VIN} 1 1 30\n")).unwrap();
    let out = dir.path().join("out");
    let o = fleetflow(&["run", "--input", input.to_str().unwrap(), "--output", out.to_str().unwrap(), "--http", &addr]);
    let e = stderr(&o);
    assert!(!o.status.success(), "it ran without the API it was asked for: {e}");
    assert!(e.contains(&format!("http.bind: {addr:?}")) && e.contains("pick a free address"), "{e}");
    assert_eq!(e.matches("http.bind").count(), 1, "said once: {e}");
}

#[test]
fn reference_edits_take_effect_while_running() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let reference = dir.path().join("ref.csv");
    let buggy = dir.path().join("buggy.csv");
    let cfg = dir.path().join("c.toml");
    std::fs::write(&reference, format!("vin,sensor_id,effective_from\n{VIN},S1,\n")).unwrap();
    std::fs::write(&buggy, "sensor_id\n").unwrap();
    std::fs::write(
        &cfg,
        format!(
            "[reference]\nvin_sensors = {:?}\nbuggy_sensors = {:?}\npoll_interval_ms = 20\n[sinks.local]\nkind = \"folder\"\npath = {:?}\nbuffer_secs = 0.0\n",
            reference, buggy, out
        ),
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .args(["run", "--config", cfg.to_str().unwrap(), "--input", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // The job's log, line by line, so the test can wait for the edit to be applied.
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = {
        let log = log.clone();
        let mut err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = std::io::Read::read(&mut err, &mut buf) {
                if n == 0 {
                    break;
                }
                log.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
    };
    // Minute 10:01 gets two readings; one at 10:03 closes it (watermark 10:02:55).
    writeln!(stdin, "1 1764064860000 {VIN} 1 1 30\n2 1764064870000 {VIN} 1 1 30\n3 1764065000000 {VIN} 1 1 30").unwrap();
    stdin.flush().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while lines_of(&out, "speed_windows").is_empty() {
        assert!(Instant::now() < deadline, "the first window never closed");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(lines_of(&out, "buggy_devices").is_empty());
    // The table edited into an invalid state: rejected with the reason, the last good version
    // (the vin on S1) stays in force, the job runs on.
    std::fs::write(&reference, format!("vin,sensor_id,effective_from\n{VIN},S1,\nNOT-A-VIN,S2,\n")).unwrap();
    while !log.lock().unwrap().contains("keeping the last good version") {
        assert!(Instant::now() < deadline, "the invalid edit was never reported");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(log.lock().unwrap().contains("NOT-A-VIN"), "the error names the bad value: {}", log.lock().unwrap());
    // S1 turns out to be buggy: the closed window is corrected, without a restart. The edit takes
    // effect at the watermark (10:03); the correction is complete once the watermark moves on.
    std::fs::write(&buggy, "sensor_id\nS1\n").unwrap();
    while !log.lock().unwrap().contains("1 rows added") {
        assert!(Instant::now() < deadline, "the edit was never read");
        std::thread::sleep(Duration::from_millis(20));
    }
    writeln!(stdin, "4 1764065110000 {VIN} 1 1 30").unwrap();
    stdin.flush().unwrap();
    while lines_of(&out, "buggy_devices").len() < 2 {
        assert!(Instant::now() < deadline, "the reference edit never took effect");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(stdin);
    let status = child.wait().unwrap();
    reader.join().unwrap();
    assert!(status.success(), "{}", log.lock().unwrap());
    let logged = log.lock().unwrap().clone();
    assert!(logged.contains("removed, at watermark 2025-11-25T"), "the reload's watermark as a time: {logged}");
    let rows = lines_of(&out, "buggy_devices");
    assert_eq!(rows.len(), 3, "{rows:?}");
    let row = |start: &str| rows.iter().find(|r| r.contains(&format!(r#""window_start":"2025-11-25T{start}:00.000Z""#))).unwrap();
    assert!(row("10:01").contains(r#""readings":2"#) && row("10:01").contains(r#""revision":"insert""#), "{rows:?}");
    assert!(row("10:03").contains(r#""readings":1"#) && !row("10:03").contains("revision"), "{rows:?}");
    assert!(row("10:05").contains(r#""readings":1"#) && !row("10:05").contains("revision"), "{rows:?}");
}

#[test]
fn a_reading_from_a_clock_far_ahead_is_an_error_and_does_not_make_others_late() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    let vin = "1HGCM82633A004352";
    // 2025-11-25T10:00:00Z, then one from 2100, then readings that would be late behind it.
    let lines = [
        format!("1 1764064800000 {vin} -73.9 40.7 50"),
        format!("2 4102444800000 {vin} -73.9 40.7 50"),
        format!("3 1764064801000 {vin} -73.9 40.7 60"),
        format!("4 1764064870000 {vin} -73.9 40.7 70"),
    ];
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    // (At 2 workers the file is split between them: the chunk's parse judges the clock.)
    for workers in ["1", "2"] {
        let out = dir.path().join(format!("out-w{workers}"));
        let r = fleetflow(&["run", "-w", workers, "--input", input.to_str().unwrap(), "--output", out.to_str().unwrap(), "--http", ""]);
        assert!(r.status.success(), "{}", stderr(&r));
        let errors = lines_of(&out, "errors");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("4102444800000") && errors[0].contains("ahead of the wall clock"), "{}", errors[0]);
        assert!(lines_of(&out, "late").is_empty(), "the bad clock did not push the watermark");
        let windows = lines_of(&out, "speed_windows");
        assert_eq!(windows.len(), 2, "{windows:?}");
        assert!(windows[0].contains("\"readings\":2"), "{}", windows[0]);
    }

    // With the check off (replaying data from the future), the reading is accepted.
    let config = dir.path().join("c.toml");
    std::fs::write(&config, "[windows]\nmax_future_secs = 0\n").unwrap();
    let out2 = dir.path().join("out2");
    let r = fleetflow(&[
        "run",
        "--config",
        config.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--output",
        out2.to_str().unwrap(),
        "--http",
        "",
    ]);
    assert!(r.status.success(), "{}", stderr(&r));
    assert!(lines_of(&out2, "errors").is_empty());
    assert_eq!(lines_of(&out2, "late").len(), 2, "behind the year-2100 reading, the others are late");
}

#[test]
fn a_record_above_1000_kib_is_an_error_and_the_readings_around_it_count() {
    // From a file and from stdin: an 8 MB line between two readings.
    let dir = tempfile::tempdir().unwrap();
    let huge = "7".repeat(8 << 20);
    let text = format!("1 1764064860000 {VIN} -122.4 37.7 70.5\n{huge}\n2 1764064870000 {VIN} -122.4 37.7 60.5\n");
    let file = dir.path().join("in.txt");
    std::fs::write(&file, &text).unwrap();
    for input in [file.to_str().unwrap(), "-"] {
        let out = dir.path().join(if input == "-" { "stdin" } else { "file" });
        let mut child = Command::new(BIN)
            .args(["run", "--http", "", "--input", input, "--output", out.to_str().unwrap()])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        if input == "-" {
            stdin.write_all(text.as_bytes()).unwrap();
        }
        drop(stdin);
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(stderr(&o).contains("2 readings, 0 blank, 1 malformed"), "{}", stderr(&o));
        let errors = lines_of(&out, "errors");
        assert_eq!(errors.len(), 1);
        assert!(errors[0].contains(&format!("record of {} bytes is longer than the limit", 8 << 20)), "{input}");
        assert!(errors[0].contains(":2\"") && errors[0].len() < 2_000, "the position, and the first KiB only: {} bytes", errors[0].len());
        assert_eq!(lines_of(&out, "speed_windows").len(), 1, "{input}: the readings on either side are in their window");
    }
}

#[test]
fn bench_measures_window_and_alert_latency_and_draws_them() {
    // A short run with 5 s windows (several boundaries), at a low rate: it checks what is
    // measured and written, not the figures (those come from release builds, docs/performance.md).
    let dir = tempfile::tempdir().unwrap();
    let (report, plot) = (dir.path().join("r.json"), dir.path().join("r.svg"));
    let too_short = fleetflow(&["bench", "--window-secs", "5", "--duration", "14"]);
    assert!(!too_short.status.success() && stderr(&too_short).contains("--duration-secs: at least 15 s"), "{}", stderr(&too_short));
    let odd = fleetflow(&["bench", "--window-secs", "7"]);
    assert!(!odd.status.success() && stderr(&odd).contains("--window-secs: 7 does not divide a day"), "{}", stderr(&odd));
    let o = fleetflow(&[
        "bench",
        "--rate",
        "2000",
        "--vehicles",
        "400",
        "--window-secs",
        "5",
        "--duration-secs",
        "30",
        "--report",
        report.to_str().unwrap(),
        "--plot",
        plot.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert!(r["readings"].as_u64().unwrap() > 50_000, "{r}");
    let windows = &r["window_latency_ms"];
    assert!(windows["windows"].as_u64().unwrap() >= 400, "a window per vehicle closed during the run: {windows}");
    assert!(windows["p50"].as_f64().unwrap() <= windows["p99"].as_f64().unwrap());
    let boundaries = r["window_latency_by_boundary"].as_array().unwrap();
    assert!(boundaries.len() >= 3, "5 s windows close several times in 30 s: {boundaries:?}");
    for (i, b) in boundaries.iter().enumerate() {
        // The run may start late in the first window: vehicles yet to report have none in it.
        if i > 0 {
            assert_eq!(b["windows"], 400, "every vehicle's window closes at each boundary: {b}");
        }
        assert_eq!(b["end_ms"].as_u64().unwrap() % 5_000, 0, "{b}");
        assert!(b["first_ms"].as_f64().unwrap() <= b["last_ms"].as_f64().unwrap(), "{b}");
    }
    let per_boundary: u64 = boundaries.iter().map(|b| b["windows"].as_u64().unwrap()).sum();
    assert_eq!(windows["windows"].as_u64().unwrap(), per_boundary);
    let alerts = &r["alert_latency_ms"];
    assert!(alerts["windows"].as_u64().unwrap() > 0, "alerts measured: {alerts}");
    // An alert can only be decided once the watermark has passed its window's end, which is
    // the allowed lateness after its latest reading.
    assert!(alerts["p50"].as_f64().unwrap() >= 5_000.0, "{alerts}");
    assert!(r["window_latency_cdf"].as_array().unwrap().len() > 3);
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("polyline"));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("alert latency") && out.contains("window latency") && out.contains("window boundaries"), "{out}");
}

#[test]
fn bench_sweep_raises_the_rate_and_reports_the_highest_offered_rate_sustained() {
    // Two short runs at low rates (both sustained): 1,000/s, then 3,000/s asked, which 100
    // vehicles reporting every whole 33 ms offer as 3,030/s: the report names the rate run.
    let dir = tempfile::tempdir().unwrap();
    let (report, plot) = (dir.path().join("s.json"), dir.path().join("s.svg"));
    let sweep = "bench --rate 1000 --vehicles 100 --window-secs 1 --duration 11 --sweep --sweep-factor 3 --sweep-steps 2";
    let files = [report.to_str().unwrap(), plot.to_str().unwrap()];
    let args: Vec<&str> = sweep.split(' ').chain(["--report", files[0], "--plot", files[1]]).collect();
    let o = fleetflow(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let runs = r["runs"].as_array().unwrap();
    let offered: Vec<u64> = runs.iter().map(|run| run["rate_offered"].as_u64().unwrap()).collect();
    assert_eq!(offered, vec![1000, 3030], "{r}");
    for run in runs {
        assert!(run["rate_achieved"].as_f64().unwrap() >= 0.97 * run["rate_offered"].as_f64().unwrap(), "{run}");
    }
    assert_eq!(r["highest_sustained_rate"], 3030, "{r}");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("highest sustained rate: 3030 readings/s"), "{out}");
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("3030"), "the plot captions the highest rate sustained");
}

/// A temporary folder with one generated readings file of `vehicles` over `secs`: (folder, file).
/// The streams a run over files writes, every one compared in full (positions included).
const FILE_STREAMS: [&str; 8] = ["speed_windows", "speeders", "daily_speeders", "alerts", "buggy_devices", "late", "errors", "raw"];

#[test]
fn one_file_read_by_several_workers_gives_one_workers_outputs() {
    // Late and malformed lines, blank lines and a line above 1,000 KiB (in a chunk of its own
    // and across chunk boundaries): the lateness rule follows the file's order whoever reads it.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    common::generate_with_rejects(BIN, &data, 60, 900);
    let mut text = std::fs::read_to_string(data.join("readings-000.txt")).unwrap();
    let third = text[..text.len() / 3].rfind('\n').unwrap() + 1;
    text.insert_str(third, &format!("\n   \n{}\n", "7".repeat(1_100_000)));
    let input = dir.path().join("one.txt");
    std::fs::write(&input, &text).unwrap();
    let config = dir.path().join("chunks.toml");
    std::fs::write(&config, "[source]\nchunk_kib = 16\n\n[routes]\nraw = [\"local\"]\n").unwrap();
    let (reference, buggy) = (data.join("vin_sensor.csv"), data.join("buggy_sensors.csv"));
    let run = |name: &str, workers: &str, from: &str| {
        let out = dir.path().join(name);
        let mut child = Command::new(BIN)
            .args(["run", "--http", "", "-w", workers, "--config", config.to_str().unwrap(), "--input", from])
            .args(["--reference", reference.to_str().unwrap(), "--buggy", buggy.to_str().unwrap()])
            .args(["--output", out.to_str().unwrap()])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        if from == "-" {
            stdin.write_all(text.as_bytes()).unwrap();
        }
        drop(stdin);
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        FILE_STREAMS.map(|s| (s, lines_of(&out, s)))
    };
    let file = input.to_str().unwrap();
    let sequential = run("w1", "1", file);
    let late = &sequential[5].1;
    assert!(late.len() > 50 && sequential[6].1.len() > 50, "late and malformed lines: {} and {}", late.len(), sequential[6].1.len());
    assert!(sequential[6].1.iter().any(|e| e.contains("longer than the limit")));
    for (name, workers, from) in [("w2", "2", file), ("w4", "4", file), ("stdin2", "2", "-")] {
        let parallel = run(name, workers, from);
        for ((stream, expected), (_, got)) in sequential.iter().zip(&parallel) {
            let expected: Vec<String> =
                if from == "-" { expected.iter().map(|l| l.replace(file, "stdin")).collect() } else { expected.clone() };
            let differ = expected.iter().zip(got).find(|(e, g)| e != g);
            assert!(
                expected == *got,
                "{stream} from {from} at {workers} workers: {} lines, {} expected; first difference {differ:?}",
                got.len(),
                expected.len()
            );
        }
    }
}

fn generated(vehicles: &str, secs: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let g = fleetflow(&["generate", "--output", data.to_str().unwrap(), "--vehicles", vehicles, "--duration-secs", secs, "--files", "1"]);
    assert!(g.status.success(), "{}", stderr(&g));
    let input = data.join("readings-000.txt").to_str().unwrap().to_string();
    (dir, input)
}

#[test]
fn analyses_are_chosen_and_set_in_the_config_and_their_streams_reach_the_sinks() {
    let (dir, input) = generated("20", "180");
    let out = dir.path().join("out");
    let config = dir.path().join("fleetflow.toml");
    std::fs::write(
        &config,
        "[analyses]\nenabled = [\"speed_windows\", \"harsh_braking\", \"unit_transform\"]\n\
         [analyses.harsh_braking]\ndrop_mph = 8\nwithin_secs = 30\n\
         [analyses.unit_transform]\nunit = \"m/s\"\n",
    )
    .unwrap();
    let r = fleetflow(&["run", "--config", config.to_str().unwrap(), "--input", &input, "--output", out.to_str().unwrap(), "-w", "2"]);
    assert!(r.status.success(), "{}", stderr(&r));
    let accepted = std::fs::read_to_string(&input).unwrap().lines().count();
    let converted = lines_of(&out, "readings_converted");
    assert_eq!(converted.len(), accepted, "every reading converted once");
    let c: serde_json::Value = serde_json::from_str(&converted[0]).unwrap();
    assert_eq!(c["unit"], "m/s");
    assert!(c["processed_at"].as_str().unwrap().ends_with('Z'));
    let braking = lines_of(&out, "harsh_braking");
    assert!(!braking.is_empty(), "a random fleet brakes by 8 mph within 30 s");
    for line in &braking {
        let b: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(b["drop_mph"].as_f64().unwrap() > 8.0, "{b}");
    }
    assert!(!lines_of(&out, "speed_windows").is_empty());
    assert!(lines_of(&out, "speeders").is_empty() && lines_of(&out, "alerts").is_empty(), "analyses not enabled do not run");

    // A setting out of range stops the job at start with the field named.
    std::fs::write(&config, "[analyses]\nenabled = [\"harsh_braking\"]\n[analyses.harsh_braking]\nwithin_secs = 0\n").unwrap();
    let r = fleetflow(&["run", "--config", config.to_str().unwrap(), "--input", &input, "--output", out.to_str().unwrap()]);
    assert!(!r.status.success());
    assert!(stderr(&r).contains("analyses.harsh_braking.within_secs: 0 is not allowed"), "{}", stderr(&r));
}

#[test]
fn geofence_reads_its_zones_file_and_a_bad_file_names_the_line() {
    let (dir, input) = generated("30", "600");
    let out = dir.path().join("out");
    let zones = dir.path().join("zones.txt");
    std::fs::write(
        &zones,
        "# the generator's city, split at -122.42\nwest -122.6 37.6 -122.42 37.6 -122.42 37.9 -122.6 37.9\neast -122.42 37.6 -122.2 37.6 -122.2 37.9 -122.42 37.9\n",
    )
    .unwrap();
    let config = dir.path().join("fleetflow.toml");
    std::fs::write(&config, format!("[analyses]\nenabled = [\"geofence\"]\n[analyses.geofence]\nzones = {:?}\n", zones.to_str().unwrap()))
        .unwrap();
    let r = fleetflow(&["run", "--config", config.to_str().unwrap(), "--input", &input, "--output", out.to_str().unwrap(), "-w", "2"]);
    assert!(r.status.success(), "{}", stderr(&r));
    let mut events: Vec<serde_json::Value> = lines_of(&out, "geofence").iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    events.sort_by_key(|e| (e["vin"].as_str().unwrap().to_string(), e["time"].as_str().unwrap().to_string()));
    let vins: std::collections::BTreeSet<&str> = events.iter().map(|e| e["vin"].as_str().unwrap()).collect();
    assert_eq!(vins.len(), 30, "every vehicle starts inside a zone: it enters it");
    assert!(events.iter().any(|e| e["event"] == "leave"), "some vehicles cross the line");
    for e in &events {
        assert!(e["zone"] == "west" || e["zone"] == "east", "{e}");
    }

    std::fs::write(&zones, "west -122.6 37.6 -122.42 37.6 -122.42 37.9\neast -122.42 north\n").unwrap();
    let r = fleetflow(&["run", "--config", config.to_str().unwrap(), "--input", &input, "--output", out.to_str().unwrap()]);
    assert!(!r.status.success());
    let log = stderr(&r);
    assert!(log.contains("zones.txt, line 2: \"north\" is not a coordinate"), "{log}");
}

#[test]
fn an_unreachable_broker_is_named_within_ten_seconds_once() {
    // A loopback port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let brokers = format!("127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let runs: [Vec<&str>; 2] = [
        vec!["run", "--kafka-brokers", &brokers, "--topic", "t", "--output", out.to_str().unwrap(), "--http", ""],
        vec!["produce", "--kafka-brokers", &brokers, "--topic", "t"],
    ];
    for args in runs {
        let started = Instant::now();
        let o = fleetflow(&args);
        let e = stderr(&o);
        assert!(started.elapsed() < Duration::from_secs(10), "{args:?} took {:?}: {e}", started.elapsed());
        assert!(!o.status.success(), "{args:?}: {e}");
        assert!(e.contains(&format!("no broker of {brokers} answered")) && e.contains("Connection refused"), "{args:?}: {e}");
        assert_eq!(e.lines().count(), 1, "one line: {e}");
    }
}

#[test]
fn a_missing_input_file_is_said_once() {
    let o = fleetflow(&["run", "--input", "/nonexistent/readings.txt", "--http", ""]);
    let e = stderr(&o);
    assert!(!o.status.success());
    assert_eq!(e.matches("/nonexistent/readings.txt").count(), 1, "said once: {e}");
    assert!(e.starts_with("error: ") && !e.contains("Caused by"), "{e}");
}

#[test]
fn every_subcommand_has_examples_and_run_shows_its_defaults() {
    for sub in [&["run"][..], &["generate"], &["produce"], &["bench"], &["aws", "setup"], &["cluster"], &["replay"]] {
        let mut args = sub.to_vec();
        args.push("--help");
        let o = fleetflow(&args);
        let help = String::from_utf8_lossy(&o.stdout).to_string();
        assert!(o.status.success() && help.contains("Examples:\n  fleetflow "), "{sub:?}:\n{help}");
    }
    let help = String::from_utf8_lossy(&fleetflow(&["run", "--help"]).stdout).to_string();
    for default in ["[default: 1]", "[default: 127.0.0.1:9898]", "[default: 5000]", "[default: committed]", "[default: ./fleetflow-out]"] {
        assert!(help.contains(default), "run --help shows {default}:\n{help}");
    }
    // One spelling across subcommands: durations in seconds are `--duration-secs`.
    let bench = String::from_utf8_lossy(&fleetflow(&["bench", "--help"]).stdout).to_string();
    assert!(bench.contains("--duration-secs") && !bench.contains("--duration <"), "{bench}");
}

#[test]
fn generate_writes_to_stdout_and_takes_a_plain_date() {
    let o = fleetflow(&["generate", "--output", "-", "--vehicles", "3", "--duration-secs", "10", "--start", "2025-11-26"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8(o.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 30, "3 vehicles x 10 s: {text}");
    let ts: u64 = lines[0].split(' ').nth(1).unwrap().parse().unwrap();
    assert!((1_764_115_200_000 - 3_000..1_764_115_200_000 + 10_000).contains(&ts), "the day's midnight: {ts}");
    assert!(!std::path::Path::new("-").exists(), "no folder named -");
    let o = fleetflow(&["generate", "--output", "-", "--start", "tomorrow"]);
    assert!(!o.status.success() && stderr(&o).contains("write a date (2025-11-25)"), "{}", stderr(&o));
}

#[test]
fn a_user_error_is_one_line_without_colour_or_backtrace() {
    let o = Command::new(BIN).args(["run", "-w", "0"]).env("RUST_BACKTRACE", "1").output().unwrap();
    let e = stderr(&o);
    assert!(!o.status.success());
    assert_eq!(e.lines().count(), 1, "one line: {e}");
    assert!(e.starts_with("error: ") && !e.contains("backtrace") && !e.contains('\u{1b}'), "{e}");
    // Logs into a pipe (a file, a shipper) carry no colour codes.
    let dir = tempfile::tempdir().unwrap();
    let o = fleetflow(&["generate", "--output", dir.path().to_str().unwrap(), "--vehicles", "2", "--duration-secs", "5"]);
    assert!(o.status.success() && stderr(&o).contains("INFO") && !stderr(&o).contains('\u{1b}'), "{}", stderr(&o));
}

/// A `fleetflow run` whose log is collected line by line as it comes.
#[cfg(unix)]
#[test]
fn a_resumed_generator_stopped_and_killed_at_other_sizes_writes_an_uninterrupted_runs_outputs() {
    // `--resume`: the fleet is checkpointed with the operators' state, SIGTERM stops exactly, and
    // a restart generates on from the checkpoint. Stopped, killed, stopped again (1, 2, 2
    // workers), then run to the end at 1: the outputs of one uninterrupted run.
    let dir = tempfile::tempdir().unwrap();
    let (reference, out, state) = (dir.path().join("reference"), dir.path().join("out"), dir.path().join("state"));
    let (o, s) = (out.to_str().unwrap().to_string(), state.to_str().unwrap().to_string());
    let fleet = ["run", "--fast", "--vehicles", "2000", "--duration-secs", "1800", "--resume", "--http", "", "--buffer-secs", "0.2"];
    let base: Vec<&str> = [&fleet[..], &["--output", &o, "--state-dir", &s]].concat();
    let job = |extra: &[&'static str]| [&base[..], extra].concat();
    let whole = fleetflow(
        &[&fleet[..], &["--output", reference.to_str().unwrap(), "--state-dir", dir.path().join("st0").to_str().unwrap()]].concat(),
    );
    assert!(whole.status.success(), "{}", stderr(&whole));

    let mut first = Logged::spawn(BIN, &job(&[]));
    first.wait_for("checkpoint complete");
    let (status, log) = first.signal(libc::SIGTERM);
    assert!(status.success() && log.contains("stopped exactly"), "{log}");
    let other = fleetflow(&[&fleet[..], &["--output", &o, "--state-dir", &s, "--seed", "7"]].concat());
    let refused = stderr(&other);
    assert!(!other.status.success() && refused.contains("another fleet") && refused.contains("seed 42"), "{refused}");
    let off = fleetflow(&[&fleet[..], &["--no-checkpoints"]].concat());
    assert!(!off.status.success() && stderr(&off).contains("generator.resume"), "{}", stderr(&off));

    let mut second = Logged::spawn(BIN, &job(&["-w", "2"]));
    second.wait_for("restoring the checkpoint of");
    second.wait_for("checkpoint complete");
    let (status, log) = second.signal(libc::SIGKILL);
    assert!(!status.success(), "{log}");
    let mut third = Logged::spawn(BIN, &job(&["-w", "2"]));
    third.wait_for("restoring the checkpoint of");
    third.wait_for("checkpoint complete");
    let (status, mut logs) = third.signal(libc::SIGTERM);
    assert!(status.success() && logs.contains("stopped exactly"), "{logs}");
    let last = fleetflow(&job(&[]));
    logs.push_str(&stderr(&last));
    assert!(last.status.success() && logs.contains("restoring the checkpoint of"), "{logs}");

    // The kill repeats what the killed run wrote after its last checkpoint (the folder sink is at
    // least once); nothing is lost, and only the kill repeats.
    for stream in ["speed_windows", "speeders", "daily_speeders", "alerts", "late"] {
        let (expected, written) = (lines_of(&reference, stream), lines_of(&out, stream));
        let mut unique = written.clone();
        unique.dedup();
        assert!(!expected.is_empty() || stream == "daily_speeders", "{stream}: the reference wrote some");
        assert_eq!(unique, expected, "{stream}: every record of the uninterrupted run, none other\n{logs}");
        let repeats = written.len() - unique.len();
        assert!(repeats * 4 <= expected.len().max(4), "{stream}: {repeats} repeats of {}", expected.len());
    }
}

#[cfg(unix)]
#[test]
fn with_saved_states_over_their_memory_budget_stops_stay_exact() {
    // `checkpoints.pending_mib = 1`: the states saved at each boundary exceed the budget, so the
    // oldest are dropped as new ones are saved. Two exact stops (at 2 workers, then 1), then the
    // rest: one uninterrupted run's outputs, each once.
    let dir = tempfile::tempdir().unwrap();
    let (reference, out, state) = (dir.path().join("reference"), dir.path().join("out"), dir.path().join("state"));
    let cfg = dir.path().join("budget.toml");
    std::fs::write(&cfg, "[checkpoints]\npending_mib = 1\n").unwrap();
    let (o, s, c) = (out.to_str().unwrap(), state.to_str().unwrap(), cfg.to_str().unwrap());
    let fleet = ["run", "--fast", "--vehicles", "6000", "--duration-secs", "1800", "--resume", "--http", "", "--buffer-secs", "0.2"];
    let job = |extra: &[&'static str]| [&fleet[..], &["--config", c, "--output", o, "--state-dir", s], extra].concat();
    let st0 = dir.path().join("st0");
    // (A fleet started at 2 workers has 2 partitions, whatever it is restored into.)
    let whole =
        fleetflow(&[&fleet[..], &["-w", "2", "--output", reference.to_str().unwrap(), "--state-dir", st0.to_str().unwrap()]].concat());
    assert!(whole.status.success(), "{}", stderr(&whole));

    let mut logs = String::new();
    for workers in ["2", "1"] {
        let mut run = Logged::spawn(BIN, &job(&["-w", workers]));
        // (Two checkpoints in: the budget has dropped states by then.)
        run.wait_for("checkpoint complete");
        run.wait_for("checkpoint complete");
        let (status, log) = run.signal(libc::SIGTERM);
        logs.push_str(&log);
        assert!(status.success() && log.contains("stopped exactly"), "{logs}");
    }
    let last = fleetflow(&job(&["-w", "2"]));
    logs.push_str(&stderr(&last));
    assert!(last.status.success() && logs.matches("restoring the checkpoint of").count() >= 2, "{logs}");
    assert!(logs.contains("reached checkpoints.pending_mib"), "the budget dropped saved states:\n{logs}");
    assert!(!lines_of(&reference, "speed_windows").is_empty() && !lines_of(&reference, "alerts").is_empty());
    common::assert_same_lines(&reference, &out, &["speed_windows", "speeders", "daily_speeders", "alerts", "late"], &logs);
}

#[cfg(unix)]
#[test]
fn a_resumed_generator_restores_into_two_processes_and_theirs_into_one() {
    // A fleet checkpointed by one process of 2 workers, restored by a cluster of 2 processes of
    // one worker (sharing the state folder), stopped exactly by SIGTERM to one of them, then
    // restored by one process of one worker that runs to the end: one uninterrupted run's
    // outputs, each once (every stop is exact).
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let (reference, out, state) = (dir.path().join("reference"), dir.path().join("out"), dir.path().join("state"));
    let (o, s) = (out.to_str().unwrap().to_string(), state.to_str().unwrap().to_string());
    let fleet = ["run", "--fast", "--vehicles", "2000", "--duration-secs", "1800", "--resume", "--http", "", "--buffer-secs", "0.2"];
    let base: Vec<&str> = [&fleet[..], &["--output", &o, "--state-dir", &s]].concat();
    let job = |extra: &[&str]| [&base[..], extra].concat().iter().map(|a| a.to_string()).collect::<Vec<String>>();
    let spawn = |args: Vec<String>| Logged::spawn(BIN, &args.iter().map(String::as_str).collect::<Vec<_>>());
    // (A fleet started at 2 workers has 2 partitions, whatever it is restored into.)
    let st0 = dir.path().join("st0");
    let whole =
        fleetflow(&[&fleet[..], &["-w", "2", "--output", reference.to_str().unwrap(), "--state-dir", st0.to_str().unwrap()]].concat());
    assert!(whole.status.success(), "{}", stderr(&whole));

    let mut first = spawn(job(&["-w", "2"]));
    first.wait_for("checkpoint complete");
    let (status, mut logs) = first.signal(libc::SIGTERM);
    assert!(status.success() && logs.contains("stopped exactly"), "{logs}");

    let port = common::two_free_ports();
    let hosts = dir.path().join("hosts.txt");
    writeln!(std::fs::File::create(&hosts).unwrap(), "127.0.0.1:{port}\n127.0.0.1:{}", port + 1).unwrap();
    let h = hosts.to_str().unwrap();
    let mut zero = spawn(job(&["-w", "1", "-n", "2", "-p", "0", "-h", h]));
    let one = spawn(job(&["-w", "1", "-n", "2", "-p", "1", "-h", h]));
    zero.wait_for("restoring the checkpoint of");
    zero.wait_for("checkpoint complete");
    let (status, log) = zero.signal(libc::SIGTERM);
    let (status_one, log_one) = one.finish();
    logs.push_str(&format!("---\n{log}---\n{log_one}"));
    assert!(status.success() && status_one.success() && log_one.contains("stopped exactly"), "both processes stop exactly:\n{logs}");

    let last = fleetflow(&job(&[]).iter().map(String::as_str).collect::<Vec<_>>());
    logs.push_str(&stderr(&last));
    assert!(last.status.success() && logs.matches("restoring the checkpoint of").count() >= 3, "{logs}");
    for stream in ["speed_windows", "speeders", "daily_speeders", "alerts", "late"] {
        let (expected, written) = (lines_of(&reference, stream), lines_of(&out, stream));
        assert!(!expected.is_empty() || stream == "daily_speeders", "{stream}: the reference wrote some");
        assert_eq!(written, expected, "{stream}: every record of the uninterrupted run, once\n{logs}");
    }
}
