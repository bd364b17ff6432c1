//! A Kafka broker restarted in the middle of a run: the test starts a broker of its own (scripts
//! `kafka.sh` with its own port and folder, so the other Kafka tests keep theirs), a job reads a
//! topic while the vehicles publish, the broker is stopped for a few seconds and started again on
//! its data, and the job carries on: every reading is read once, the windows equal an
//! uninterrupted run's. Then the broker goes down again and the job is sent SIGTERM: the stop
//! gives up within its timeout with one line, having committed nothing it did not deliver, and a
//! restart once the broker is back completes an uninterrupted run's outputs, none twice.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fleetflow::config::FolderConfig;
use fleetflow::config::{Config, SinkConfig, SourceConfig, SourceKind};
use fleetflow::sources::generator::{FleetConfig, FleetPartition};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

mod common;
use common::{http_get, lines_of, metric, two_free_ports};

const BIN: &str = env!("CARGO_BIN_EXE_fleetflow");

/// A broker of this test's own, stopped (and its data deleted) when dropped.
struct Broker {
    port: u16,
    home: PathBuf,
}

impl Broker {
    fn script(&self, command: &str) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/kafka.sh");
        let status = Command::new("bash")
            .arg(script)
            .arg(command)
            .env("FLEETFLOW_KAFKA_PORT", self.port.to_string())
            .env("FLEETFLOW_KAFKA_HOME", &self.home)
            .status()
            .expect("running scripts/kafka.sh");
        assert!(status.success(), "kafka.sh {command} failed");
    }

    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.script("stop");
    }
}

#[cfg(unix)]
#[test]
fn a_broker_restarted_mid_run_loses_and_repeats_no_reading() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker { port: two_free_ports(), home: dir.path().join("broker") };
    broker.script("start");
    let brokers = broker.address();
    let topic = "restart";
    fleetflow::kafka_admin::ensure_topic(&brokers, topic, 2).unwrap();

    let cfg = FleetConfig { vehicles: 20, duration_ms: Some(1_200_000), max_delay_ms: 2_000, ..FleetConfig::default() };
    let mut p = FleetPartition::new(cfg, 0, 1);
    let readings: Vec<(String, String, u64)> =
        std::iter::from_fn(|| p.next_reading().ok().map(|r| (fleetflow::encode::reading_line(&r), r.vin.to_string(), p.emitted_at())))
            .collect();

    // The job: daily speeders off (the day never closes here); SIGTERM ends it.
    let config = dir.path().join("c.toml");
    std::fs::write(&config, "[routes]\ndaily_speeders = []\n").unwrap();
    let out = dir.path().join("out");
    let mut job = Command::new(BIN)
        .args(["run", "--config", config.to_str().unwrap(), "--kafka-brokers", &brokers, "--topic", topic, "--group", "g"])
        .args(["--buffer-secs", "0", "-w", "2", "--http", "127.0.0.1:0", "--output", out.to_str().unwrap(), "--shutdown-timeout-secs", "5"])
        // (Its own state folder: the group and topic names are the same in every run of the test.)
        .args(["--state-dir", dir.path().join("state").to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The job's log, read as it is written (a full pipe would stall the job), shown on failure.
    let job_log = Arc::new(std::sync::Mutex::new(String::new()));
    let reader = {
        let (stderr, log) = (job.stderr.take().unwrap(), job_log.clone());
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        })
    };

    // The API's address, from the log (the job chose a free port itself).
    let started = Instant::now();
    let http = loop {
        let log = job_log.lock().unwrap().clone();
        if let Some(rest) = log.split("HTTP API on http://").nth(1) {
            break rest.split_whitespace().next().unwrap_or_default().to_string();
        }
        assert!(started.elapsed() < Duration::from_secs(60) && job.try_wait().unwrap().is_none(), "the job did not serve HTTP:\n{log}");
        std::thread::sleep(Duration::from_millis(20));
    };

    // The vehicles publish for about six seconds; the producer holds what it cannot send.
    let producer = {
        let (brokers, readings) = (brokers.clone(), readings.clone());
        std::thread::spawn(move || {
            let p: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
                .set("bootstrap.servers", &brokers)
                .set("linger.ms", "5")
                .set("message.timeout.ms", "120000")
                // Retries across the restart must not write a message twice.
                .set("enable.idempotence", "true")
                .create()
                .unwrap();
            let started = Instant::now();
            for (i, (line, vin, at)) in readings.iter().enumerate() {
                p.send(BaseRecord::to(topic).key(vin).payload(line).timestamp(*at as i64)).map_err(|(e, _)| e).unwrap();
                if let Some(wait) = Duration::from_micros(i as u64 * 250).checked_sub(started.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
            p.flush(Duration::from_secs(120)).unwrap();
        })
    };
    std::thread::sleep(Duration::from_secs(2));
    broker.script("kill");
    std::thread::sleep(Duration::from_secs(3));
    broker.script("restart");
    producer.join().unwrap();

    // (What the topic holds: a broker killed mid-write can store a message twice, even from an
    // idempotent producer; the job must read what is there, each message once.)
    let in_topic: i64 = {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let c: BaseConsumer = ClientConfig::new().set("bootstrap.servers", &brokers).create().unwrap();
        (0..2).map(|p| c.fetch_watermarks(topic, p, Duration::from_secs(10)).map(|(lo, hi)| hi - lo).unwrap()).sum()
    };
    // Every message read (once: records read never passes the count).
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut read = 0;
    while Instant::now() < deadline {
        read = http_get(&http, "/metrics").and_then(|(_, m)| metric(&m, "fleetflow_records_read_total")).unwrap_or(read);
        if read >= in_topic as u64 {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(500));
    read = http_get(&http, "/metrics").and_then(|(_, m)| metric(&m, "fleetflow_records_read_total")).unwrap_or(read);
    let so_far = job_log.lock().unwrap().clone();
    // (CI saw the broker store 27 of 24,000 twice across its kill: the job must read them too.)
    assert!(in_topic >= readings.len() as i64, "the topic holds every reading: {in_topic}");
    assert_eq!(read, in_topic as u64, "every message in the topic read once; the job's log:\n{so_far}");
    // The broker goes down again, and the job is told to stop: it cannot commit, and must not
    // hang until an orchestrator's SIGKILL: it gives up within its shutdown timeout, with one line.
    broker.script("kill");
    let signalled = Instant::now();
    // SAFETY: kill(2) on the child's pid; no memory is involved.
    unsafe {
        libc::kill(job.id() as i32, libc::SIGTERM);
    }
    let ended = job.wait().unwrap();
    let took = signalled.elapsed();
    reader.join().unwrap();
    let log = job_log.lock().unwrap().clone();
    assert!(!ended.success() && took < Duration::from_secs(15), "the stop gave up within its timeout ({took:?}), non-zero: {log}");
    let last = log.lines().last().unwrap_or_default();
    assert!(last.starts_with("error: ") && (last.contains("did not finish within 5 s") || last.contains("kafka")), "one clear line: {log}");
    assert!(log.contains("AllBrokersDown") || log.contains("BrokerTransportFailure"), "the job saw the broker go: {log}");

    // The broker back, the job resumes from what it committed and reads to the end: with what the
    // first run delivered, the outputs are an uninterrupted run's, none twice.
    broker.script("restart");
    let resumed = Command::new(BIN)
        .args(["run", "--config", config.to_str().unwrap(), "--kafka-brokers", &brokers, "--topic", topic, "--group", "g"])
        .args(["--stop", "end", "--buffer-secs", "0", "--http", "", "--output", out.to_str().unwrap()])
        .args(["--state-dir", dir.path().join("state").to_str().unwrap()])
        .output()
        .unwrap();
    let log = format!("{log}\n---\n{}", String::from_utf8_lossy(&resumed.stderr));
    assert!(resumed.status.success(), "{log}");

    // Reference: what the topic holds, a file per partition in the partition's order, in one
    // uninterrupted run. (A broker killed mid-write may store retried batches out of their sent
    // order, beyond the lateness: those readings are late for the job, and for the reference.)
    let files = partitions_as_files(&brokers, topic, 2, dir.path());
    let reference = dir.path().join("reference");
    let mut c = Config { source: SourceConfig { kind: SourceKind::Files, files, ..SourceConfig::default() }, ..Config::default() };
    c.http.bind = String::new();
    c.routes.insert("daily_speeders".into(), vec![]);
    c.sinks.insert(
        "local".into(),
        SinkConfig::Folder(FolderConfig {
            path: reference.clone(),
            buffer_mib: 1.0,
            buffer_secs: 0.0,
            sealed: false,
            ..FolderConfig::default()
        }),
    );
    fleetflow::job::run(c.validated().unwrap(), Arc::new(AtomicBool::new(false))).unwrap();
    // The stop could not commit, so what was delivered after the last commit that reached the
    // broker is delivered again (at least once): compared as sets, none missing and none foreign.
    for stream in ["speed_windows", "speeders", "alerts", "late", "errors"] {
        let expected: std::collections::BTreeSet<String> = lines_of(&reference, stream).into_iter().collect();
        let delivered: std::collections::BTreeSet<String> = lines_of(&out, stream).into_iter().collect();
        let missing: Vec<&String> = expected.difference(&delivered).take(3).collect();
        let extra: Vec<&String> = delivered.difference(&expected).take(3).collect();
        assert!(missing.is_empty() && extra.is_empty(), "{stream}: missing {missing:#?}, not in the reference {extra:#?}\n{log}");
    }
    assert!(!lines_of(&reference, "speed_windows").is_empty());

    // The final offsets were committed: another run from the committed offsets reads nothing new.
    let again = Command::new(BIN)
        .args(["run", "--config", config.to_str().unwrap(), "--kafka-brokers", &brokers, "--topic", topic, "--group", "g"])
        .args(["--stop", "end", "--http", "", "--output", dir.path().join("again").to_str().unwrap()])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&again.stderr).to_string();
    assert!(again.status.success() && log.contains("done: 0 records read"), "{log}");
}

/// Writes each partition of `topic` as a file of its messages in offset order; returns the paths.
fn partitions_as_files(brokers: &str, topic: &str, partitions: i32, dir: &Path) -> Vec<String> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Message, Offset, TopicPartitionList};
    (0..partitions)
        .map(|p| {
            let c: BaseConsumer = ClientConfig::new().set("bootstrap.servers", brokers).set("group.id", "reference").create().unwrap();
            let (low, high) = c.fetch_watermarks(topic, p, Duration::from_secs(10)).unwrap();
            let mut assignment = TopicPartitionList::new();
            assignment.add_partition_offset(topic, p, Offset::Beginning).unwrap();
            c.assign(&assignment).unwrap();
            let mut text = String::new();
            let deadline = Instant::now() + Duration::from_secs(60);
            while let Some(next) = c.position().unwrap().find_partition(topic, p).and_then(|t| t.offset().to_raw()) {
                if low >= high || next >= high {
                    break;
                }
                assert!(Instant::now() < deadline, "reading back {topic}/{p}: at {next} of {high}");
                if let Some(m) = c.poll(Duration::from_millis(200)) {
                    let m = m.unwrap();
                    text.push_str(std::str::from_utf8(m.payload().unwrap_or_default()).unwrap().trim_end());
                    text.push('\n');
                }
            }
            let path = dir.join(format!("partition-{p}.txt"));
            std::fs::write(&path, text).unwrap();
            path.display().to_string()
        })
        .collect()
}
