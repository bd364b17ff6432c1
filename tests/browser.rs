//! The status page in a real browser: Debian's `chromium`, driven through `chromedriver` over
//! WebDriver (installed by `scripts/tools.sh`, which the test script runs). A job reads generated
//! readings from stdin; the page must render the figures of that job (readings, alerts with where
//! their vehicles were seen, top speeders, sinks, charts with labelled axes), follow the job as
//! more input arrives without being reloaded, answer the date picker, and log no console error.

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::wd::{Capabilities, WebDriverCompatibleCommand};
use fantoccini::{Client, ClientBuilder};
use serde_json::{json, Value};

mod common;

/// A process killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    common::two_free_ports()
}

/// chromedriver on a free loopback port, once it listens.
fn chromedriver() -> (Killed, String) {
    let path = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"].into_iter().find(|p| std::path::Path::new(p).exists());
    let path = path.expect("chromedriver is not installed: run `bash scripts/tools.sh` (Debian's chromium and chromium-driver)");
    let port = free_port();
    let child = Command::new(path).arg(format!("--port={port}")).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let addr = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    // (It keeps connections open: a successful connect is the sign it listens.)
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not answer on {addr}");
        std::thread::sleep(Duration::from_millis(100));
    }
    (Killed(child), format!("http://{addr}"))
}

/// The browser's console log (chromedriver's `se/log` endpoint).
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(&self, base: &url::Url, session: Option<&str>) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }
    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(json!({"type": "browser"}).to_string()))
    }
}

async fn browser(driver: &str, profile: &std::path::Path) -> Client {
    let args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,2200",
    ];
    let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    args.push(format!("--user-data-dir={}", profile.display()));
    let caps: Capabilities = serde_json::from_value(json!({
        "browserName": "chrome",
        "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args},
        "goog:loggingPrefs": {"browser": "ALL"},
    }))
    .unwrap();
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector).capabilities(caps).connect(driver).await.expect("a chromium session")
}

/// What `script` returns, once `ok` holds of it (the page updates every two seconds).
async fn until(c: &Client, script: &str, ok: impl Fn(&Value) -> bool, what: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = c.execute(script, vec![]).await.unwrap();
        if ok(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: the page shows {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn status(addr: &str) -> Value {
    let (code, body) = common::http_get(addr, "/api/status").expect("/api/status answers");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// Waits until the job has read `n` readings (and, if asked, written alerts).
fn wait_read(addr: &str, n: usize, alerts: bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = status(addr);
        if s["readings"].as_u64() == Some(n as u64) && (!alerts || !s["alerts"].as_array().unwrap().is_empty()) {
            return s;
        }
        assert!(Instant::now() < deadline, "the job did not read {n} readings: {s}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

const CARD: &str = "return document.querySelector('[data-figure=\"readings\"]')?.textContent.replace(/,/g, '')";
const ROWS: &str = "return Array.from(document.querySelectorAll('#ID tr')).slice(1).map(r => Array.from(r.cells).map(c => c.textContent))";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_renders_the_running_job_updates_and_logs_no_error() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let lines = common::readings_across_midnight(&data);
    let cuts = [lines.len() * 3 / 5, lines.len() * 4 / 5, lines.len()];
    let out = dir.path().join("out");
    let (reference, buggy) = (format!("{d}/vin_sensor.csv"), format!("{d}/buggy_sensors.csv"));
    let args = ["--output", out.to_str().unwrap(), "--buffer-secs", "0", "--reference", &reference, "--buggy", &buggy];
    let (mut job, addr, _log) = common::run_with_http(&args);
    let mut stdin = job.stdin.take().unwrap();
    let mut feed = |from: usize, to: usize| {
        for l in &lines[from..to] {
            writeln!(stdin, "{l}").unwrap();
        }
        stdin.flush().unwrap();
    };
    // Alerts first, then more readings of their vehicles: where they were seen.
    feed(0, cuts[0]);
    wait_read(&addr, cuts[0], true);
    feed(cuts[0], cuts[1]);
    let s = wait_read(&addr, cuts[1], false);

    let (_driver, url) = chromedriver();
    let profile = tempfile::tempdir().unwrap();
    let c = browser(&url, profile.path()).await;
    c.goto(&format!("http://{addr}/")).await.unwrap();
    until(&c, "return document.getElementById('state').textContent", |v| v == "running", "the job's state").await;
    until(&c, CARD, |v| v.as_str() == Some(&cuts[1].to_string()), "the readings read").await;

    // Alerts, with where their vehicles were seen, as a table and as dots on the plot.
    let alerts = until(&c, &ROWS.replace("ID", "alerts"), |v| v.as_array().is_some_and(|a| a.len() > 1), "alert rows").await;
    let first_alert = s["alerts"][0]["vin"].as_str().unwrap();
    assert!(alerts.as_array().unwrap().iter().any(|r| r[0] == first_alert), "{alerts}");
    let dots = "return document.querySelectorAll('#chart-where circle').length";
    until(&c, dots, |v| v.as_u64().is_some_and(|n| n > 0), "dots where alerting vehicles were seen").await;

    // Top speeders as the API has them; sinks; charts with labelled axes.
    let top = until(&c, &ROWS.replace("ID", "top"), |v| v.as_array().is_some_and(|a| !a.is_empty()), "top speeders").await;
    assert_eq!(top[0][0], status(&addr)["top_speeders"][0]["vin"], "{top}");
    let sinks = until(&c, &ROWS.replace("ID", "sinks"), |v| v.as_array().is_some_and(|a| !a.is_empty()), "sink rows").await;
    assert_eq!(sinks[0][0], "local", "{sinks}");
    let labels =
        c.execute("return Array.from(document.querySelectorAll('#chart-rate svg text')).map(t => t.textContent)", vec![]).await.unwrap();
    let labels: Vec<&str> = labels.as_array().unwrap().iter().filter_map(|l| l.as_str()).collect();
    assert!(labels.contains(&"readings per second") && labels.contains(&"time (UTC)"), "{labels:?}");

    // The page follows the job without a reload.
    c.execute("window.notReloaded = true", vec![]).await.unwrap();
    feed(cuts[1], cuts[2]);
    wait_read(&addr, cuts[2], false);
    until(&c, CARD, |v| v.as_str() == Some(&cuts[2].to_string()), "the readings after more input").await;
    assert_eq!(c.execute("return window.notReloaded === true", vec![]).await.unwrap(), true);
    // The windows this input closed are on the latency chart (percentiles of the last ten seconds).
    let lines = "return document.querySelectorAll('#chart-latency polyline').length";
    until(&c, lines, |v| v.as_u64().is_some_and(|n| n > 0), "window latency drawn").await;

    // The date picker asks /speeders for another day.
    let (_, body) = common::http_get(&addr, "/speeders?date=2025-11-25").unwrap();
    let day: Value = serde_json::from_str(&body).unwrap();
    let pick = "const d = document.getElementById('date'); d.value = '2025-11-25'; d.dispatchEvent(new Event('change'));";
    c.execute(pick, vec![]).await.unwrap();
    until(
        &c,
        "return document.getElementById('day-note').textContent",
        |v| v.as_str().is_some_and(|t| t.contains("2025-11-25")),
        "the day",
    )
    .await;
    let rows = c.execute(&ROWS.replace("ID", "day"), vec![]).await.unwrap();
    let vins: Vec<&Value> = rows.as_array().unwrap().iter().map(|r| &r[0]).collect();
    let expected: Vec<&Value> = day["speeders"].as_array().unwrap().iter().map(|r| &r["vin"]).collect();
    assert!(!expected.is_empty());
    assert_eq!(vins, expected);

    if let Ok(png) = c.screenshot().await {
        let _ = std::fs::write(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png"), png);
    }
    let log = c.issue_cmd(BrowserLog).await.unwrap();
    let severe: Vec<&Value> = log.as_array().unwrap().iter().filter(|e| e["level"] == "SEVERE").collect();
    assert!(severe.is_empty(), "console errors: {severe:?}");
    c.close().await.unwrap();
    drop(stdin);
    assert!(job.wait().unwrap().success());
}
