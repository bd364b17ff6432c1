//! Helpers shared by the integration tests: reading what a run wrote to a folder sink.

use std::path::{Path, PathBuf};

#[allow(dead_code)] // not every test binary sends to Firehose
pub mod firehose;
#[allow(dead_code)] // not every test binary reads the data-lake outputs
pub mod lake;

/// Every file under `root`, sorted (hidden temporary files included, so tests can look for them).
pub fn files_under(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[allow(dead_code)] // not every test binary compares lines
/// The sorted lines of a stream's output files (a killed run's hidden temporary files are not output).
pub fn lines_of(root: &Path, stream: &str) -> Vec<String> {
    let mut lines: Vec<String> = files_under(&root.join(stream))
        .iter()
        .filter(|p| !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
        .flat_map(|p| std::fs::read_to_string(p).unwrap_or_default().lines().map(String::from).collect::<Vec<_>>())
        .collect();
    lines.sort();
    lines
}

/// Each file of each of `streams` under `root/<stream>/<folder>` (a `YYYY/MM/DD[/HH]` prefix, or
/// `""` for all), by its path from `root`, with its bytes: what byte-for-byte comparisons compare.
#[allow(dead_code)] // not every test binary compares files
pub fn files_in(root: &Path, streams: &[&str], folder: &str) -> Vec<(String, Vec<u8>)> {
    streams
        .iter()
        .flat_map(|s| files_under(&root.join(s).join(folder)))
        .map(|p| (p.strip_prefix(root).unwrap().display().to_string(), std::fs::read(&p).unwrap()))
        .collect()
}

/// `GET path` from the job's HTTP API at `addr`: the status and the body (none if it does not answer).
#[allow(dead_code)] // not every test binary asks the API
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(30))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((status, body))
}

/// The value of Prometheus metric `name` (a sample without labels) in an exposition text.
#[allow(dead_code)] // not every test binary reads metrics
pub fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse::<f64>().ok())).map(|v| v as u64)
}

/// A loopback port whose successor is free too (both free when asked): a base port for a
/// 2-process cluster.
#[allow(dead_code)] // not every test binary runs a cluster
pub fn two_free_ports() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    // Below Linux's ephemeral range (32768 and up): a port the OS handed out at random could be
    // given again to any outgoing connection (the broker's clients, the other tests') between
    // this check and the job's own bind. Each test binary starts at its own offset and steps on.
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let start = 20_000 + (std::process::id() % 400) as u16 * 30;
    loop {
        let port = start.wrapping_add(NEXT.fetch_add(2, Ordering::SeqCst)) % 12_000 + 20_000;
        let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
        if free(port) && free(port + 1) {
            return port;
        }
    }
}

/// The lines of a stream as two runs are compared: sorted, repeats kept; `late` and `errors`
/// without their `position` (a line number in a file, an offset in a topic).
#[allow(dead_code)] // not every test binary compares runs
pub fn comparable_lines(root: &Path, stream: &str) -> Vec<String> {
    let mut lines: Vec<String> = lines_of(root, stream)
        .into_iter()
        .map(|l| match serde_json::from_str::<serde_json::Value>(&l) {
            Ok(serde_json::Value::Object(mut o)) if o.contains_key("position") => {
                o.remove("position");
                serde_json::Value::Object(o).to_string()
            }
            _ => l,
        })
        .collect();
    lines.sort();
    lines
}

/// Asserts that `out` holds the lines `reference` holds, stream by stream: none missing, none
/// that the reference lacks, none twice. `job_logs` is shown on failure.
#[allow(dead_code)] // not every test binary compares runs
pub fn assert_same_lines(reference: &Path, out: &Path, streams: &[&str], job_logs: &str) {
    for stream in streams {
        let (expected, delivered) = (comparable_lines(reference, stream), comparable_lines(out, stream));
        if expected == delivered {
            continue;
        }
        let (e, d) = (counts(&expected), counts(&delivered));
        let missing: Vec<&&String> = e.iter().filter(|(l, n)| d.get(*l).copied().unwrap_or(0) < **n).map(|(l, _)| l).collect();
        let extra: Vec<&&String> = d.iter().filter(|(l, n)| e.get(*l).copied().unwrap_or(0) < **n).map(|(l, _)| l).collect();
        panic!(
            "{stream}: {} lines expected, {} delivered; {} missing, e.g. {:#?}; {} extra or repeated, e.g. {:#?}\n{job_logs}",
            expected.len(),
            delivered.len(),
            missing.len(),
            missing.iter().take(3).collect::<Vec<_>>(),
            extra.len(),
            extra.iter().take(3).collect::<Vec<_>>()
        );
    }
}

/// How often each line occurs.
fn counts(lines: &[String]) -> std::collections::BTreeMap<&String, i64> {
    let mut m = std::collections::BTreeMap::new();
    for l in lines {
        *m.entry(l).or_default() += 1;
    }
    m
}

/// A `fleetflow run` reading stdin with its HTTP API on a free port: the process (stdin piped),
/// the API's address (from its log) and the whole log once the process ends.
#[allow(dead_code)] // not every test binary serves HTTP
pub fn run_with_http(args: &[&str]) -> (std::process::Child, String, std::thread::JoinHandle<String>) {
    use std::process::{Command, Stdio};
    let mut job = Command::new(env!("CARGO_BIN_EXE_fleetflow"))
        .args(["run", "--input", "-", "--http", "127.0.0.1:0"])
        .args(args)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running fleetflow");
    let (rx, log) = read_log(job.stderr.take().expect("piped stderr"));
    let addr = rx.recv_timeout(std::time::Duration::from_secs(30)).expect("the job logs its HTTP address");
    (job, addr, log)
}

/// Reads a job's log as it is written (a full pipe would stall the job): the address of its HTTP
/// API once it logs it, and the whole log once it ends.
#[allow(dead_code)] // not every test binary serves HTTP
pub fn read_log(stderr: std::process::ChildStderr) -> (std::sync::mpsc::Receiver<String>, std::thread::JoinHandle<String>) {
    use std::io::BufRead;
    let (tx, rx) = std::sync::mpsc::channel();
    let log = std::thread::spawn(move || {
        let mut all = String::new();
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("HTTP API on http://").nth(1) {
                let _ = tx.send(rest.split_whitespace().next().unwrap_or_default().to_string());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    (rx, log)
}

/// Generated readings of 40 vehicles over 20 minutes across midnight (2025-11-25 23:50 to
/// 2025-11-26 00:10), 30% speeders, with their reference files in `dir`: the lines.
#[allow(dead_code)] // not every test binary needs them
pub fn readings_across_midnight(dir: &Path) -> Vec<String> {
    let d = dir.to_str().expect("a UTF-8 path");
    let g = std::process::Command::new(env!("CARGO_BIN_EXE_fleetflow"))
        .args(["generate", "--output", d, "--vehicles", "40", "--duration-secs", "1200", "--start", "2025-11-25T23:50:00Z"])
        .args(["--speeder-fraction", "0.3"])
        .output()
        .expect("running fleetflow generate");
    assert!(g.status.success());
    std::fs::read_to_string(dir.join("readings-000.txt")).expect("generated readings").lines().map(String::from).collect()
}

/// Generated input (`vehicles` for `secs` of event time) with speeders, buggy sensors, late and
/// malformed lines, and matching reference files, in `dir`, by `fleetflow generate` (`bin`).
#[allow(dead_code)] // not every test binary generates input
pub fn generate_with_rejects(bin: &str, dir: &Path, vehicles: u64, secs: u64) {
    let (vehicles, secs) = (vehicles.to_string(), secs.to_string());
    let args = ["generate", "--output", dir.to_str().unwrap(), "--vehicles", &vehicles, "--duration-secs", &secs];
    let rates = ["--speeder-fraction", "0.3", "--buggy-fraction", "0.2", "--late-fraction", "0.002", "--malformed-fraction", "0.002"];
    let out = std::process::Command::new(bin).args(args).args(rates).output().expect("running fleetflow generate");
    assert!(out.status.success(), "fleetflow generate failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// A job whose log (stderr) is read line by line as it runs.
#[allow(dead_code)] // not every test binary follows a job's log
pub struct Logged {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    log: String,
}

#[allow(dead_code)]
impl Logged {
    /// Starts `bin` with `args`.
    pub fn spawn(bin: &str, args: &[&str]) -> Logged {
        use std::io::BufRead;
        let mut child = std::process::Command::new(bin).args(args).stderr(std::process::Stdio::piped()).spawn().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Logged { child, lines, log: String::new() }
    }

    /// Waits for a log line holding `text`; fails the test if the job ends first.
    pub fn wait_for(&mut self, text: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while std::time::Instant::now() < deadline {
            match self.lines.recv_timeout(std::time::Duration::from_millis(100)) {
                Ok(line) => {
                    self.log.push_str(&line);
                    self.log.push('\n');
                    if line.contains(text) {
                        return;
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(_) => break,
            }
        }
        panic!("the job ended or took 120 s before logging {text:?}:\n{}", self.log);
    }

    /// Sends `signal` and waits for the job to end; its log.
    #[cfg(unix)]
    pub fn signal(self, signal: i32) -> (std::process::ExitStatus, String) {
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(self.child.id() as i32, signal) };
        self.finish()
    }

    /// Waits for the job to end; its log.
    pub fn finish(mut self) -> (std::process::ExitStatus, String) {
        let status = self.child.wait().unwrap();
        while let Ok(line) = self.lines.recv_timeout(std::time::Duration::from_secs(1)) {
            self.log.push_str(&line);
            self.log.push('\n');
        }
        (status, self.log)
    }
}

/// The AWS emulator's endpoint: `FLEETFLOW_AWS_ENDPOINT`, or the moto server this test binary
/// starts (`scripts/moto.sh`) once. Sets test credentials where none are set (moto takes any; the
/// job reads them from the standard chain).
#[allow(dead_code)] // not every test binary calls AWS
pub fn moto_endpoint() -> String {
    static ENDPOINT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ENDPOINT
        .get_or_init(|| {
            for (k, v) in [("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"), ("AWS_REGION", "us-east-1")] {
                if std::env::var_os(k).is_none() {
                    std::env::set_var(k, v);
                }
            }
            if let Ok(e) = std::env::var("FLEETFLOW_AWS_ENDPOINT") {
                return e;
            }
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/moto.sh");
            let status = std::process::Command::new("bash").arg(script).arg("start").status().expect("running scripts/moto.sh");
            assert!(status.success(), "scripts/moto.sh start failed");
            "http://127.0.0.1:15000".to_string()
        })
        .clone()
}
