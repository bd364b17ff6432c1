//! Kafka source against a real broker (KRaft, one node on loopback, started by
//! `scripts/kafka.sh`; `FLEETFLOW_KAFKA_BROKERS` points at another one): the same window outputs as
//! the file source, offsets for a start time, idle partitions that stop holding the watermark, and
//! no offset committed past what a failed sink lost (one process or a cluster).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use fleetflow::config::{Config, SinkConfig, SourceConfig, SourceKind};
use fleetflow::config::{FolderConfig, KafkaSinkConfig};
use fleetflow::job::Summary;
use fleetflow::sources::generator::{FleetConfig, FleetPartition};
use rdkafka::config::ClientConfig;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};

mod common;
use common::lines_of;

fn brokers() -> String {
    static BROKERS: OnceLock<String> = OnceLock::new();
    BROKERS
        .get_or_init(|| {
            if let Ok(b) = std::env::var("FLEETFLOW_KAFKA_BROKERS") {
                return b;
            }
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/kafka.sh");
            let status = std::process::Command::new("bash").arg(script).arg("start").status().expect("running scripts/kafka.sh");
            assert!(status.success(), "scripts/kafka.sh start failed");
            "127.0.0.1:19092".to_string()
        })
        .clone()
}

fn topic(name: &str, partitions: i32) -> String {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let t = format!("{name}-{}-{}", std::process::id(), fleetflow::clock::now_ms());
    fleetflow::kafka_admin::ensure_topic(&brokers(), &t, partitions).unwrap();
    // (A topic just created may lack a leader for a partition for a moment.)
    let c: BaseConsumer = ClientConfig::new().set("bootstrap.servers", brokers()).create().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let ready = c.fetch_metadata(Some(&t), Duration::from_secs(5)).ok().is_some_and(|m| {
            m.topics().iter().any(|topic| {
                topic.error().is_none()
                    && topic.partitions().len() == partitions as usize
                    && topic.partitions().iter().all(|p| p.error().is_none() && p.leader() >= 0)
            })
        });
        if ready {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    t
}

fn producer() -> ThreadedProducer<DefaultProducerContext> {
    ClientConfig::new().set("bootstrap.servers", brokers()).set("linger.ms", "5").create().unwrap()
}

fn config(out: &Path, workers: usize) -> Config {
    let mut c = Config { workers, ..Config::default() };
    c.sinks.insert(
        "local".into(),
        SinkConfig::Folder(FolderConfig {
            path: out.to_path_buf(),
            buffer_mib: 1.0,
            buffer_secs: 0.0,
            sealed: false,
            ..FolderConfig::default()
        }),
    );
    c
}

fn kafka_config(out: &Path, workers: usize, topic: &str, start: &str, stop: &str) -> Config {
    let mut c = config(out, workers);
    c.source.kind = SourceKind::Kafka;
    c.kafka.brokers = brokers();
    c.kafka.topic = topic.to_string();
    c.kafka.group = format!("g-{topic}");
    c.kafka.start = start.parse().unwrap();
    c.kafka.stop = stop.parse().unwrap();
    c
}

fn run(c: Config) -> Summary {
    fleetflow::job::run(c.validated().unwrap(), Arc::new(AtomicBool::new(false))).unwrap()
}

/// Generated readings as text lines with their vin and send time.
fn fleet(vehicles: u64, secs: u64) -> Vec<(String, String, u64)> {
    fleet_of(FleetConfig { vehicles, duration_ms: Some(secs * 1000), max_delay_ms: 2_000, ..FleetConfig::default() })
}

/// The readings a fleet generates, as text lines with their vin and send time.
fn fleet_of(cfg: FleetConfig) -> Vec<(String, String, u64)> {
    let mut p = FleetPartition::new(cfg, 0, 1);
    std::iter::from_fn(|| p.next_reading().ok().map(|r| (fleetflow::encode::reading_line(&r), r.vin.to_string(), p.emitted_at()))).collect()
}

/// Publishes readings keyed by vin, with their send time as the message timestamp.
fn publish(topic: &str, readings: &[(String, String, u64)]) {
    let p = producer();
    for (line, vin, at) in readings {
        p.send(BaseRecord::to(topic).key(vin).payload(line).timestamp(*at as i64)).map_err(|(e, _)| e).unwrap();
    }
    p.flush(Duration::from_secs(30)).unwrap();
}

/// Publishes readings as the vehicles would, one every `spacing`, on a thread of its own.
fn publish_live(topic: &str, readings: &[(String, String, u64)], spacing: Duration) -> std::thread::JoinHandle<()> {
    let (t, readings) = (topic.to_string(), readings.to_vec());
    std::thread::spawn(move || {
        let p = producer();
        let started = Instant::now();
        for (i, (line, vin, at)) in readings.iter().enumerate() {
            // (A record without a vin goes without a key.)
            let record = BaseRecord::to(&t).payload(line).timestamp(*at as i64);
            let record = if vin.is_empty() { record } else { record.key(vin) };
            p.send(record).map_err(|(e, _)| e).unwrap();
            if let Some(wait) = (spacing * i as u32).checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        p.flush(Duration::from_secs(30)).unwrap();
    })
}

/// Writes the readings to `dir/readings.txt` and returns a job reading that file into `out`.
fn file_job(dir: &Path, readings: &[(String, String, u64)], out: &Path, workers: usize) -> Config {
    let file = dir.join("readings.txt");
    std::fs::write(&file, readings.iter().map(|(l, _, _)| format!("{l}\n")).collect::<String>()).unwrap();
    let mut c = config(out, workers);
    c.source = SourceConfig { kind: SourceKind::Files, files: vec![file.display().to_string()], ..SourceConfig::default() };
    c
}

#[test]
fn four_partitions_on_two_workers_equal_the_file_source() {
    let readings = fleet(40, 600);
    let dir = tempfile::tempdir().unwrap();
    let t = topic("equal", 4);
    publish(&t, &readings);

    let file_out = dir.path().join("file");
    let from_file = run(file_job(dir.path(), &readings, &file_out, 1));
    let kafka_out = dir.path().join("kafka");
    let from_kafka = run(kafka_config(&kafka_out, 2, &t, "earliest", "end"));

    assert_eq!(from_kafka.readings, readings.len() as u64);
    assert_eq!((from_file.late, from_kafka.late, from_kafka.malformed), (0, 0, 0));
    for stream in ["speed_windows", "speeders", "daily_speeders", "alerts"] {
        let (a, b) = (lines_of(&file_out, stream), lines_of(&kafka_out, stream));
        assert!(!a.is_empty() || stream == "alerts", "{stream} is empty");
        assert_eq!(a, b, "{stream} differs between the file and Kafka");
    }
}

#[test]
fn start_at_a_time_reads_from_the_offsets_for_that_time() {
    let readings = fleet(20, 300);
    let t = topic("start", 2);
    publish(&t, &readings);
    let from = FleetConfig::default().start_ms + 120_000;
    let expected = readings.iter().filter(|(_, _, at)| *at >= from).count() as u64;
    let dir = tempfile::tempdir().unwrap();
    let summary = run(kafka_config(dir.path(), 1, &t, "2025-11-25T00:02:00Z", "end"));
    assert_eq!(summary.records_read, expected);
    let first: Vec<String> = lines_of(dir.path(), "speed_windows").into_iter().take(1).collect();
    assert!(first.iter().all(|l| !l.contains("\"window_start\":\"2025-11-25T00:00:")), "{first:?}");

    // A stop time bounds the read the same way from the other side.
    let dir = tempfile::tempdir().unwrap();
    let summary = run(kafka_config(dir.path(), 1, &t, "earliest", "2025-11-25T00:02:00Z"));
    assert_eq!(summary.records_read, readings.len() as u64 - expected);
}

#[test]
fn a_message_key_must_be_the_vin() {
    let t = topic("keys", 1);
    let p = producer();
    let line = "1 1764028800000 1HGCM82633A004352 1 1 30";
    p.send(BaseRecord::to(&t).key("1hgcm82633a004352").payload(line)).map_err(|(e, _)| e).unwrap();
    p.send(BaseRecord::to(&t).key("1HGCM82633A000000").payload(line)).map_err(|(e, _)| e).unwrap();
    p.send(BaseRecord::<(), _>::to(&t).payload(line)).map_err(|(e, _)| e).unwrap();
    p.flush(Duration::from_secs(30)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let summary = run(kafka_config(dir.path(), 1, &t, "earliest", "end"));
    assert_eq!((summary.readings, summary.malformed), (2, 1));
    let errors = lines_of(dir.path(), "errors");
    assert!(errors[0].contains("is not the reading's vin") && errors[0].contains(&format!("\"position\":\"{t}/0/1\"")), "{errors:?}");
}

#[test]
fn an_idle_partition_stops_holding_the_watermark_back() {
    let t = topic("idle", 2);
    let dir = tempfile::tempdir().unwrap();
    let mut c = kafka_config(dir.path(), 1, &t, "earliest", "");
    c.kafka.idle_timeout_ms = 500;
    // A draining stop: it closes the open windows (an exact one would keep them for the restart).
    c.drain = true;
    let stop = Arc::new(AtomicBool::new(false));
    let job = {
        let stop = stop.clone();
        std::thread::spawn(move || fleetflow::job::run(c.validated().unwrap(), stop))
    };
    // Five minutes of readings, all in partition 0; partition 1 stays silent.
    let p = producer();
    let vin = "1HGCM82633A004352";
    let start = 1_764_028_800_000u64;
    for i in 0..300u64 {
        let line = format!("{i} {} {vin} 1 1 30", start + i * 1000);
        p.send(BaseRecord::to(&t).key(vin).payload(&line).partition(0)).map_err(|(e, _)| e).unwrap();
    }
    p.flush(Duration::from_secs(30)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while lines_of(dir.path(), "speed_windows").len() < 3 {
        assert!(Instant::now() < deadline, "windows never closed: the idle partition held the watermark");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Data returns to partition 1, older than the job's watermark: late, and says why.
    let old = format!("1000 {} {vin} 1 1 30", start + 10_000);
    p.send(BaseRecord::to(&t).key(vin).payload(&old).partition(1)).map_err(|(e, _)| e).unwrap();
    p.flush(Duration::from_secs(30)).unwrap();
    while lines_of(dir.path(), "late").is_empty() {
        assert!(Instant::now() < deadline, "the returning reading never showed up");
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::SeqCst);
    let summary = job.join().unwrap().unwrap();
    assert_eq!((summary.readings, summary.late), (300, 1));
    let late = lines_of(dir.path(), "late");
    assert!(late[0].contains("idle") && late[0].contains(&format!("{t}/1/0")), "{late:?}");
    assert_eq!(lines_of(dir.path(), "speed_windows").len(), 5, "a draining stop closes the open windows");
}

/// Messages of `topic` (2 partitions) that `group` has committed.
fn committed(topic: &str, group: &str) -> i64 {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", brokers()).set("group.id", group).create().unwrap();
    let mut list = rdkafka::TopicPartitionList::new();
    for p in 0..2 {
        list.add_partition(topic, p);
    }
    let Ok(offsets) = consumer.committed_offsets(list, Duration::from_secs(5)) else { return 0 };
    offsets.elements().iter().filter_map(|e| e.offset().to_raw()).filter(|o| *o > 0).sum()
}

#[cfg(unix)]
#[test]
fn killed_mid_topic_then_restarted_loses_no_reading() {
    use std::process::{Command, Stdio};
    const BIN: &str = env!("CARGO_BIN_EXE_fleetflow");

    let readings = fleet(20, 1200);
    let t = topic("kill", 2);
    let dir = tempfile::tempdir().unwrap();
    // The whole day never closes here, so daily speeders are off: offsets become committable as
    // the sliding windows close.
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[routes]\ndaily_speeders = []\n").unwrap();
    let out = dir.path().join("out");
    let job = |extra: &[&str]| {
        let mut c = Command::new(BIN);
        c.args(["run", "--config", cfg.to_str().unwrap(), "--kafka-brokers", &brokers(), "--topic", &t, "--group", &format!("g-{t}")]);
        c.args(["--buffer-secs", "0", "-w", "2", "--output", out.to_str().unwrap()]).args(extra).stderr(Stdio::piped());
        c
    };

    // The vehicles publish for about four seconds; the job is killed halfway.
    let producer_thread = publish_live(&t, &readings, Duration::from_micros(160));
    let mut first = job(&[]).spawn().unwrap();
    // Killed once it has committed something (by the clock this was flaky on a loaded machine).
    let waiting = Instant::now();
    while committed(&t, &format!("g-{t}")) == 0 && waiting.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(100));
    }
    first.kill().unwrap(); // SIGKILL
    let first = first.wait_with_output().unwrap();
    assert!(!first.status.success(), "the first run was killed, not finished");
    producer_thread.join().unwrap();
    let before_restart = lines_of(&out, "speed_windows").len();
    assert!(before_restart > 0, "the first run delivered some windows before it was killed");

    let second = job(&["--stop", "end"]).output().unwrap();
    let log = String::from_utf8_lossy(&second.stderr).to_string();
    assert!(second.status.success(), "{log}");
    let read: u64 = log.split("done: ").nth(1).and_then(|s| s.split(' ').next()).and_then(|n| n.parse().ok()).expect("the summary line");
    assert!(read > 0 && read < readings.len() as u64, "the restart resumed from committed offsets: read {read} of {}", readings.len());

    // Reference: the same readings from a file, in one uninterrupted run.
    let reference = dir.path().join("reference");
    let mut c = file_job(dir.path(), &readings, &reference, 1);
    c.routes.insert("daily_speeders".into(), vec![]);
    run(c);
    for stream in ["speed_windows", "speeders", "alerts"] {
        let expected: BTreeSet<String> = lines_of(&reference, stream).into_iter().collect();
        let delivered: BTreeSet<String> = lines_of(&out, stream).into_iter().collect();
        assert!(!expected.is_empty() || stream == "alerts");
        let missing: Vec<&String> = expected.difference(&delivered).take(3).collect();
        let extra: Vec<&String> = delivered.difference(&expected).take(3).collect();
        assert!(missing.is_empty() && extra.is_empty(), "{stream}: missing {missing:#?}, not in the reference {extra:#?}");
    }
    assert!(lines_of(&out, "late").is_empty() && lines_of(&out, "errors").is_empty());
}

#[test]
fn output_streams_to_kafka_topics_keyed_by_vin() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

    let readings = fleet(30, 900);
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("out-{}-{}", std::process::id(), fleetflow::clock::now_ms());
    // (The speeders' topic is missing: the job creates it with the broker's defaults.)
    fleetflow::kafka_admin::ensure_topic(&brokers(), &format!("{prefix}.speed_windows"), 2).unwrap();
    let local = dir.path().join("local");
    let mut c = file_job(dir.path(), &readings, &local, 2);
    c.sinks.insert(
        "k".into(),
        SinkConfig::Kafka(KafkaSinkConfig {
            brokers: brokers(),
            topic: format!("{prefix}.{{stream}}"),
            exactly_once: false,
            transactional_id: None,
            progress_topic: None,
            properties: Default::default(),
        }),
    );
    c.routes.insert("speeders".into(), vec!["local".into(), "k".into()]);
    c.routes.insert("speed_windows".into(), vec!["local".into(), "k".into()]);
    run(c);

    for stream in ["speeders", "speed_windows"] {
        let expected = lines_of(&local, stream);
        assert!(!expected.is_empty(), "{stream} is empty");
        let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", brokers()).set("group.id", "reader").create().unwrap();
        let mut tpl = TopicPartitionList::new();
        let topic = format!("{prefix}.{stream}");
        let metadata = consumer.fetch_metadata(Some(&topic), Duration::from_secs(10)).unwrap();
        let partitions = metadata.topics()[0].partitions().len() as i32;
        assert!(partitions > 0, "{topic} exists");
        for p in 0..partitions {
            tpl.add_partition_offset(&topic, p, Offset::Beginning).unwrap();
        }
        consumer.assign(&tpl).unwrap();
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while got.len() < expected.len() && Instant::now() < deadline {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                let payload = String::from_utf8(m.payload().unwrap().to_vec()).unwrap();
                let key = String::from_utf8(m.key().unwrap().to_vec()).unwrap();
                assert!(payload.contains(&format!("\"vin\":\"{key}\"")), "keyed by vin: {key} / {payload}");
                got.push(payload);
            }
        }
        got.sort();
        assert_eq!(got, expected, "{stream}: the topic holds what the folder holds");
    }
}

#[test]
fn two_processes_of_two_workers_read_a_topic_as_one_worker_does() {
    let readings = fleet(40, 600);
    let dir = tempfile::tempdir().unwrap();
    let t = topic("cluster", 4);
    publish(&t, &readings);
    let file_out = dir.path().join("file");
    run(file_job(dir.path(), &readings, &file_out, 1));

    let out = dir.path().join("cluster");
    let port = common::two_free_ports().to_string();
    let (b, group) = (brokers(), format!("g-{t}"));
    let args = ["cluster", "--processes", "2", "--base-port", &port, "--", "-w", "2", "--kafka-brokers", &b, "--topic", &t];
    let rest = ["--group", &group, "--start", "earliest", "--stop", "end", "--output", out.to_str().unwrap(), "--http", ""];
    let run =
        std::process::Command::new(env!("CARGO_BIN_EXE_fleetflow")).args(args).args(rest).args(["--buffer-secs", "0"]).output().unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    for stream in ["speed_windows", "speeders", "daily_speeders", "alerts"] {
        assert_eq!(
            lines_of(&out, stream),
            lines_of(&file_out, stream),
            "{stream}: 2 processes x 2 workers on Kafka = 1 worker on the file"
        );
    }
}

#[test]
fn a_day_replayed_from_kafka_is_byte_for_byte_the_live_output() {
    // Across midnight: the replay reads the topic from the day's start less its margin, by
    // message time, and writes only the day.
    let t = topic("replay", 2);
    let start_ms = 1_764_028_800_000 - 15 * 60_000; // 2025-11-24T23:45:00Z
    let cfg = FleetConfig {
        vehicles: 50,
        start_ms,
        duration_ms: Some(30 * 60_000),
        max_delay_ms: 2_000,
        speeder_fraction: 0.3,
        ..FleetConfig::default()
    };
    let readings = fleet_of(cfg);
    publish(&t, &readings);

    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    let mut c = kafka_config(&live, 2, &t, "earliest", "end");
    c.sinks.insert(
        "local".into(),
        SinkConfig::Folder(FolderConfig { path: live.clone(), buffer_mib: 1.0, buffer_secs: 0.0, sealed: true, ..FolderConfig::default() }),
    );
    c.windows.max_future_secs = 0;
    c.http.bind = String::new();
    run(c);

    let replayed = dir.path().join("replayed");
    let args = fleetflow::commands::replay::ReplayArgs {
        from: "2025-11-25".into(),
        kafka_brokers: Some(brokers()),
        topic: Some(t.clone()),
        workers: Some(2),
        output: replayed.clone(),
        quiet: true,
        ..Default::default()
    };
    let r = fleetflow::commands::replay::replay(&args, Arc::new(AtomicBool::new(false))).unwrap();
    assert!(r.outside_range > 0, "the evening before is read for context, not written");
    let streams = ["speed_windows", "speeders", "daily_speeders", "alerts"];
    let expected = common::files_in(&live, &streams, "2025/11/25");
    for s in streams {
        assert!(expected.iter().any(|(n, _)| n.starts_with(s)), "the live day has {s}");
    }
    assert_eq!(common::files_in(&replayed, &streams, "2025/11/25"), expected);
    assert!(common::files_in(&replayed, &streams, "2025/11/24").is_empty(), "nothing of the day before is written");
}

/// The windows, speeders and alerts of `readings` from one uninterrupted run on a file (daily
/// speeders off), under `dir/reference`, compared as sets with what `out` holds.
fn assert_delivered_as_the_reference(dir: &Path, readings: &[(String, String, u64)], out: &Path) {
    let reference = dir.join("reference");
    let mut c = file_job(dir, readings, &reference, 1);
    c.routes.insert("daily_speeders".into(), vec![]);
    run(c);
    for stream in ["speed_windows", "speeders", "alerts"] {
        let expected: BTreeSet<String> = lines_of(&reference, stream).into_iter().collect();
        let delivered: BTreeSet<String> = lines_of(out, stream).into_iter().collect();
        assert!(!expected.is_empty() || stream == "alerts");
        let missing: Vec<&String> = expected.difference(&delivered).take(3).collect();
        let extra: Vec<&String> = delivered.difference(&expected).take(3).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{stream}: {} of {} missing, e.g. {missing:#?}; not in the reference: {extra:#?}",
            expected.difference(&delivered).count(),
            expected.len()
        );
    }
    assert!(lines_of(out, "late").is_empty() && lines_of(out, "errors").is_empty(), "no reading late or malformed");
}

/// Twenty vehicles over 20 minutes from 00:50 (2025-11-25), and a folder under `out` where their
/// speed windows of 01:00-02:00 cannot be written (the hour's folder is a file): a job writing
/// them fails halfway, once it has delivered (and committed) the first ten minutes.
fn fails_at_one_o_clock(out: &Path) -> Vec<(String, String, u64)> {
    let start_ms = 1_764_028_800_000 + 50 * 60_000;
    let blocked = out.join("speed_windows/2025/11/25/01");
    std::fs::create_dir_all(blocked.parent().unwrap()).unwrap();
    std::fs::write(&blocked, b"").unwrap();
    fleet_of(FleetConfig { vehicles: 20, start_ms, duration_ms: Some(1_200_000), max_delay_ms: 2_000, ..FleetConfig::default() })
}

/// A job on `topic` from its group's committed offsets into `out`, daily speeders off (the day
/// never closes here: offsets become committable as the sliding windows close), committing
/// whenever it can.
fn resuming_job(out: &Path, workers: usize, topic: &str, stop: &str) -> Config {
    let mut c = kafka_config(out, workers, topic, "committed", stop);
    c.routes.insert("daily_speeders".into(), vec![]);
    // Committing whenever it can: a commit while a failed job drains would show.
    c.kafka.commit_interval_ms = 0;
    c.http.bind = String::new();
    c
}

#[test]
fn a_failed_sink_commits_no_offset_past_the_records_it_lost() {
    // The job reads as the vehicles publish (four seconds) and commits as windows close; at 01:00
    // the speed windows' sink fails, the job stops, and while it drains, the other outputs'
    // frontier moves on: offsets committed then would skip the lost windows at the next start.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let readings = fails_at_one_o_clock(&out);
    let t = topic("sinkfail", 2);
    let producer = publish_live(&t, &readings, Duration::from_micros(500));
    // (Stopped after a minute if it does not fail: the error below tells.)
    let stop = Arc::new(AtomicBool::new(false));
    let watchdog = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(60) && !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(100));
            }
            stop.store(true, Ordering::SeqCst);
        })
    };
    let failed = fleetflow::job::run(resuming_job(&out, 2, &t, "").validated().unwrap(), stop);
    let error = failed.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(error.contains("speed_windows/2025/11/25/01"), "the job stops with the sink's error: {error:?}");
    watchdog.join().unwrap();
    producer.join().unwrap();
    assert!(lines_of(&out, "speed_windows").len() >= 150, "the first run delivered the windows before 01:00");

    // Mended, the job starts from what was committed and delivers what the first run lost.
    std::fs::remove_file(out.join("speed_windows/2025/11/25/01")).unwrap();
    let second = run(resuming_job(&out, 2, &t, "end"));
    assert!(second.readings < readings.len() as u64, "the restart resumed from committed offsets");
    assert_delivered_as_the_reference(dir.path(), &readings, &out);
}

#[cfg(unix)]
#[test]
fn a_failed_process_stops_the_cluster_and_no_process_commits_past_its_loss() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    // Two processes of one worker read a topic with no end as the vehicles publish; the second
    // one's speed windows cannot be written from 01:00. Both must stop (the first hears of the
    // failure through the dataflow; it would otherwise read on, and the second wait for it), and
    // neither may commit offsets past the windows the second lost.
    let dir = tempfile::tempdir().unwrap();
    let (good, bad) = (dir.path().join("good"), dir.path().join("bad"));
    let readings = fails_at_one_o_clock(&bad);
    let t = topic("procfail", 2);
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[routes]\ndaily_speeders = []\n[kafka]\ncommit_interval_ms = 0\n").unwrap();
    let port = common::two_free_ports();
    let hosts = dir.path().join("hosts.txt");
    let mut h = std::fs::File::create(&hosts).unwrap();
    writeln!(h, "127.0.0.1:{port}\n127.0.0.1:{}", port + 1).unwrap();
    let group = format!("g-{t}");
    let spawn = |process: usize, out: &Path| {
        Command::new(env!("CARGO_BIN_EXE_fleetflow"))
            .args(["run", "--config", cfg.to_str().unwrap(), "--kafka-brokers", &brokers(), "--topic", &t, "--group", &group])
            .args(["--buffer-secs", "0", "-w", "1", "--http", "", "--output", out.to_str().unwrap()])
            .args(["-n", "2", "-p", &process.to_string(), "-h", hosts.to_str().unwrap()])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut processes = [spawn(0, &good), spawn(1, &bad)];
    let producer = publish_live(&t, &readings, Duration::from_micros(500));
    let deadline = Instant::now() + Duration::from_secs(60);
    while processes.iter_mut().any(|p| p.try_wait().unwrap().is_none()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let running = processes.iter_mut().map(|p| p.try_wait().unwrap().is_none()).filter(|r| *r).count();
    for p in processes.iter_mut() {
        let _ = p.kill();
    }
    let [first, second] = processes.map(|p| p.wait_with_output().unwrap());
    producer.join().unwrap();
    let logs = [&first, &second].map(|o| String::from_utf8_lossy(&o.stderr).to_string());
    assert_eq!(running, 0, "a failed process stops the cluster; the logs:\n{}\n---\n{}", logs[0], logs[1]);
    let cause = "speed_windows/2025/11/25/01";
    assert!(!second.status.success() && logs[1].contains(cause), "process 1 fails with its sink's error:\n{}", logs[1]);
    assert!(!first.status.success(), "process 0 fails too:\n{}", logs[0]);
    assert!(logs[0].contains("stopped: worker 1 failed: ") && logs[0].contains(cause), "and names the failure:\n{}", logs[0]);

    // One process, mended, from what was committed: with the files both processes delivered,
    // every output.
    std::fs::remove_file(bad.join("speed_windows/2025/11/25/01")).unwrap();
    copy_tree(&bad, &good);
    let second = run(resuming_job(&good, 1, &t, "end"));
    assert!(second.readings < readings.len() as u64, "the restart resumed from committed offsets");
    assert_delivered_as_the_reference(dir.path(), &readings, &good);
}

/// Copies a folder tree (or a file); nothing when `from` does not exist.
fn copy_tree(from: &Path, to: &Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            copy_tree(&entry.path(), &to.join(entry.file_name()));
        }
    } else if from.is_file() {
        std::fs::copy(from, to).unwrap();
    }
}

/// Twenty vehicles over 20 minutes with 1% of readings 30 s late and a malformed line (no key)
/// every 500 messages, as lines with their vin (empty: no key) and send time.
fn fleet_with_rejects() -> Vec<(String, String, u64)> {
    let cfg = FleetConfig { vehicles: 20, duration_ms: Some(1_200_000), late_fraction: 0.01, ..FleetConfig::default() };
    let mut all = fleet_of(cfg);
    for i in (0..all.len()).step_by(500).rev() {
        let at = all[i].2;
        all.insert(i, (format!("malformed line {i}"), String::new(), at));
    }
    all
}

/// Every stream an exact stop must neither lose nor repeat (buggy devices need reference files).
const EXACT_STREAMS: [&str; 7] = ["speed_windows", "speeders", "daily_speeders", "alerts", "late", "errors", "raw"];

/// The reference for an exact stop: `readings` from a file in one uninterrupted run, every stream
/// of [`EXACT_STREAMS`] to `dir/reference`.
fn exact_reference(dir: &Path, readings: &[(String, String, u64)]) -> std::path::PathBuf {
    let reference = dir.join("reference");
    let mut c = file_job(dir, readings, &reference, 1);
    c.routes.insert("raw".into(), vec!["local".into()]);
    run(c);
    assert!(!lines_of(&reference, "late").is_empty() && !lines_of(&reference, "errors").is_empty());
    reference
}

/// A job whose HTTP API is on a port it chose itself (a port picked free beforehand can be
/// taken by another connection before the job binds it): the process, the API's address (from
/// its log) and its log, collected as it is written.
#[cfg(unix)]
struct Running {
    child: std::process::Child,
    http: String,
    log: std::thread::JoinHandle<String>,
}

#[cfg(unix)]
impl Running {
    /// Starts `cmd` with its HTTP API on a free port.
    fn start(mut cmd: std::process::Command) -> Running {
        let mut child = cmd.args(["--http", "127.0.0.1:0"]).stderr(std::process::Stdio::piped()).spawn().unwrap();
        let (rx, log) = common::read_log(child.stderr.take().unwrap());
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(http) => Running { child, http, log },
            Err(_) => {
                let _ = child.kill();
                panic!("the job did not serve HTTP:\n{}", log.join().unwrap_or_default())
            }
        }
    }

    /// Waits until the job has read `n` records (a minute at most; a job that ended fails at once).
    /// A restarted job counts what it reads again from its checkpoint too.
    fn wait_until_read(&mut self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = None;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = std::mem::replace(&mut self.log, std::thread::spawn(String::new)).join().unwrap_or_default();
                panic!("the job ended ({status}) before reading {n} records:\n{log}");
            }
            let read = common::http_get(&self.http, "/metrics").and_then(|(_, m)| common::metric(&m, "fleetflow_records_read_total"));
            if read.is_some_and(|r| r >= n as u64) {
                return;
            }
            last = read.or(last);
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the job did not read {n} records within a minute (it read {last:?})");
    }

    /// Waits for the job to end: how it ended, and its log.
    fn finish(mut self) -> (std::process::ExitStatus, String) {
        let status = self.child.wait().unwrap();
        (status, self.log.join().unwrap_or_default())
    }
}

#[cfg(unix)]
fn sigterm(child: &std::process::Child) {
    // SAFETY: kill(2) on our own child's pid; no memory is involved.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
}

/// The binary on `topic` from its group's committed offsets into `out`, every stream of
/// [`EXACT_STREAMS`] on (daily speeders hold commits back for the whole day).
#[cfg(unix)]
fn exact_job(dir: &Path, topic: &str, out: &Path, args: &[&str]) -> std::process::Command {
    exact_job_with(dir, topic, out, "", args)
}

/// [`exact_job`] with more configuration (`extra`, TOML).
#[cfg(unix)]
fn exact_job_with(dir: &Path, topic: &str, out: &Path, extra: &str, args: &[&str]) -> std::process::Command {
    let cfg = dir.join("exact.toml");
    std::fs::write(&cfg, format!("[routes]\nraw = [\"local\"]\n{extra}")).unwrap();
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_fleetflow"));
    c.args(["run", "--config", cfg.to_str().unwrap(), "--kafka-brokers", &brokers(), "--topic", topic, "--group", &format!("g-{topic}")]);
    c.args(["--buffer-secs", "0", "--output", out.to_str().unwrap()]).args(args);
    c.stderr(std::process::Stdio::piped());
    c
}

/// Publishes `readings` live to `topic` while a job (configured with `extra`, at the first two
/// worker counts) reads it into `out` and is sent SIGTERM at a third and at two thirds of them,
/// each stop exact; then a third run (at the last worker count) reads to the end. Returns the logs.
#[cfg(unix)]
fn stop_twice_then_read_to_the_end(
    dir: &Path,
    topic: &str,
    out: &Path,
    readings: &[(String, String, u64)],
    (extra, workers): (&str, [&str; 3]),
) -> String {
    let producer = publish_live(topic, readings, Duration::from_micros(250));
    let mut logs = String::new();
    // (Each job reads a third: a restarted one reads again from its checkpoint's boundary, before
    // where the last stopped, so it stops at about two thirds.)
    for (workers, at) in [(workers[0], readings.len() / 3), (workers[1], readings.len() / 3)] {
        let mut job = Running::start(exact_job_with(dir, topic, out, extra, &["-w", workers]));
        job.wait_until_read(at);
        sigterm(&job.child);
        let (status, log) = job.finish();
        assert!(status.success() && log.contains("stopped exactly"), "the stop at {at} records is exact:\n{log}");
        logs.push_str(&log);
    }
    producer.join().unwrap();
    let last = exact_job_with(dir, topic, out, extra, &["-w", workers[2], "--http", "", "--stop", "end"]).output().unwrap();
    logs.push_str(&String::from_utf8_lossy(&last.stderr));
    assert!(last.status.success(), "{logs}");
    logs
}

#[cfg(unix)]
#[test]
fn stopped_twice_mid_topic_and_resumed_at_other_worker_counts_loses_and_repeats_nothing() {
    // SIGTERM while the vehicles publish, at a third and at two thirds of the topic, restarting
    // at 2, 1 and 2 workers; then the rest to the end. The outputs together are the uninterrupted
    // run's: every window, late and malformed record and archived reading once.
    let readings = fleet_with_rejects();
    let t = topic("exactstop", 1);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let logs = stop_twice_then_read_to_the_end(dir.path(), &t, &out, &readings, ("", ["2", "1", "2"]));
    let reference = exact_reference(dir.path(), &readings);
    common::assert_same_lines(&reference, &out, &EXACT_STREAMS, &logs);
}

/// A `buggy_devices` row: vin, sensor, window start, window end, readings.
type BuggyRow = (String, String, u64, u64, u64);

/// The `buggy_devices` rows in `out`, each with its revision (`""` for a window's row when it
/// closed) and when it was revised (ms, 0 if not).
fn buggy_rows(out: &Path) -> Vec<(BuggyRow, String, u64)> {
    let time = |v: &serde_json::Value| fleetflow::time_arg::parse(v.as_str().unwrap_or_default()).unwrap_or(0);
    let rows = lines_of(out, "buggy_devices").into_iter().map(|l| serde_json::from_str::<serde_json::Value>(&l).unwrap());
    rows.map(|r| {
        let text = |k: &str| r[k].as_str().unwrap_or_default().to_string();
        let key = (text("vin"), text("sensor_id"), time(&r["window_start"]), time(&r["window_end"]), r["readings"].as_u64().unwrap_or(0));
        (key, text("revision"), time(&r["revised_at"]))
    })
    .collect()
}

/// Vehicle files for the reference tests: every vehicle of `readings` carries S0 or S1 (a
/// vin-to-sensor file), the buggy list holds S0; and the job's configuration for them, with a
/// 4-minute correction horizon.
fn sensor_files(d: &Path, readings: &[(String, String, u64)]) -> (std::path::PathBuf, std::path::PathBuf, String) {
    let vins: BTreeSet<&str> = readings.iter().map(|(_, v, _)| v.as_str()).collect();
    let rows: String = vins.iter().enumerate().map(|(i, v)| format!("{v},S{},\n", i % 2)).collect();
    let (vin_file, buggy_file) = (d.join("vin.csv"), d.join("buggy.csv"));
    std::fs::write(&vin_file, format!("vin,sensor_id,effective_from\n{rows}")).unwrap();
    std::fs::write(&buggy_file, "sensor_id\nS0\n").unwrap();
    let extra = format!("[reference]\nvin_sensors = {vin_file:?}\nbuggy_sensors = {buggy_file:?}\ncorrection_horizon_secs = 240\n");
    (vin_file, buggy_file, extra)
}

/// The `buggy_devices` rows `readings` give from a file in one run with the buggy list `list`
/// (written as `name`).
fn rows_with_list(d: &Path, readings: &[(String, String, u64)], vin_file: &Path, (name, list): (&str, &str)) -> BTreeSet<BuggyRow> {
    let (file, reference) = (d.join(format!("{name}.csv")), d.join(name));
    std::fs::write(&file, list).unwrap();
    let mut c = file_job(d, readings, &reference, 1);
    (c.reference.vin_sensors, c.reference.buggy_sensors) = (Some(vin_file.to_path_buf()), Some(file));
    c.reference.correction_horizon_secs = 240;
    run(c);
    buggy_rows(&reference).into_iter().map(|(key, _, _)| key).collect()
}

/// Each row's count in `delivered`: its window's row and inserts count one, retracts minus one.
fn net_rows(delivered: &[(BuggyRow, String, u64)]) -> BTreeMap<BuggyRow, i64> {
    let mut net: BTreeMap<BuggyRow, i64> = BTreeMap::new();
    for (key, revision, _) in delivered {
        *net.entry(key.clone()).or_default() += if revision == "retract" { -1 } else { 1 };
    }
    net
}

/// What the reference restart tests find: the `buggy_devices` rows delivered, those of file
/// runs with the old list (S0) and the new (S0 and S1), the time the held windows were corrected
/// at, and the logs.
#[cfg(unix)]
struct EditedWhileDown {
    delivered: Vec<(BuggyRow, String, u64)>,
    before: BTreeSet<BuggyRow>,
    after: BTreeSet<BuggyRow>,
    frontier: u64,
    logs: String,
}

#[cfg(unix)]
impl EditedWhileDown {
    /// Vehicles carry S0 or S1, and S0 is buggy. A job at 2 workers is stopped by `stop` once it
    /// has read half the topic; while it is down, S1 is found buggy too; the restart (at 1
    /// worker) reads to the end, applying the edit once, at one frontier.
    fn run(name: &str, stop: fn(&mut std::process::Child)) -> Self {
        let readings = fleet(20, 1_200);
        let t = topic(name, 1);
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (vin_file, buggy_file, extra) = sensor_files(d, &readings);
        let out = d.join("out");
        let producer = publish_live(&t, &readings, Duration::from_micros(250));
        let mut job = Running::start(exact_job_with(d, &t, &out, &extra, &["-w", "2"]));
        job.wait_until_read(readings.len() / 2);
        stop(&mut job.child);
        let (_, mut logs) = job.finish();
        producer.join().unwrap();
        std::fs::write(&buggy_file, "sensor_id\nS0\nS1\n").unwrap();
        let last = exact_job_with(d, &t, &out, &extra, &["-w", "1", "--http", "", "--stop", "end"]).output().unwrap();
        logs.push_str(&String::from_utf8_lossy(&last.stderr));
        assert!(last.status.success() && logs.contains("changed while the job was down: 1 rows added"), "{logs}");
        let delivered = buggy_rows(&out);
        let inserts: BTreeSet<u64> = delivered.iter().filter(|(_, r, _)| r == "insert").map(|(_, _, at)| *at).collect();
        assert_eq!(inserts.len(), 1, "the held windows are corrected, at one frontier: {inserts:?}\n{logs}");
        assert!(delivered.iter().all(|(_, revision, _)| revision != "retract"), "S0 stays buggy: nothing to retract");
        let before = rows_with_list(d, &readings, &vin_file, ("s0", "sensor_id\nS0\n"));
        let after = rows_with_list(d, &readings, &vin_file, ("s0s1", "sensor_id\nS0\nS1\n"));
        EditedWhileDown { delivered, before, after, frontier: *inserts.first().unwrap(), logs }
    }

    /// Whether a window of `row` could still be corrected at the frontier (4-minute horizon).
    fn correctable(&self, (_, _, _, end, _): &BuggyRow) -> bool {
        end - 1 + 240_000 > self.frontier
    }

    /// The rows standing at the end: S1's windows still correctable at the frontier (and every
    /// later window) as the new list gives them, the older ones as the old list gave them.
    fn expected(&self) -> BTreeSet<BuggyRow> {
        let (after, before) = (self.after.iter().filter(|k| self.correctable(k)), self.before.iter().filter(|k| !self.correctable(k)));
        after.chain(before).cloned().collect()
    }
}

#[cfg(unix)]
#[test]
fn a_reference_edited_while_the_job_is_stopped_corrects_the_windows_it_held() {
    // The job stops exactly mid-topic; the windows that closed before the stop within the
    // correction horizon (4 minutes) are corrected once, at the restart's frontier; older ones
    // stay as they were written; later ones are written with S1 buggy. Before checkpoints held
    // the join's windows and the reference versions, the restart corrected nothing before the stop.
    let e = EditedWhileDown::run("refstop", |child| sigterm(child));
    assert!(e.logs.contains("stopped exactly"), "{}", e.logs);
    let keys: Vec<_> = e.delivered.iter().map(|(key, _, _)| key.clone()).collect();
    let unique: BTreeSet<_> = keys.iter().cloned().collect();
    assert_eq!(keys.len(), unique.len(), "each row once");
    assert_eq!(unique, e.expected(), "stopped with the frontier at {}:\n{}", e.frontier, e.logs);
    assert!(e.after.difference(&e.before).any(|k| !e.correctable(k)), "S1 windows beyond the horizon at the stop stay uncorrected");
}

#[cfg(unix)]
#[test]
fn a_reference_edited_while_the_job_is_killed_corrects_the_windows_of_its_checkpoint() {
    // As above, with SIGKILL: the restart restores the latest complete checkpoint (the join's
    // windows, the reference tables as of its durable frontier D), applies the edit at D, and
    // writes again only what the killed run delivered after D (the folder sink is at least once).
    let e = EditedWhileDown::run("refkill", |child| child.kill().unwrap());
    assert!(e.logs.contains("restoring the checkpoint"), "{}", e.logs);
    let mut seen = BTreeSet::new();
    let repeated: Vec<&BuggyRow> = e.delivered.iter().map(|(key, _, _)| key).filter(|k| !seen.insert(*k)).collect();
    assert_eq!(seen.into_iter().cloned().collect::<BTreeSet<_>>(), e.expected(), "killed with the frontier at {}:\n{}", e.frontier, e.logs);
    let early: Vec<_> = repeated.iter().filter(|(_, _, _, end, _)| *end <= e.frontier).collect();
    assert!(early.is_empty(), "rows before the checkpoint written twice: {early:?}\n{}", e.logs);
}

#[cfg(unix)]
#[test]
fn stopped_twice_with_an_edit_each_time_the_held_windows_are_corrected_once_each_time() {
    // S0 is buggy; stopped exactly at a third (2 workers), S1 is found buggy too; restarted (1
    // worker), stopped exactly at two thirds, S0 is found fine after all; restarted (2 workers) to
    // the end. Each window ends as the list in force when its correction horizon ran out says:
    // the first before the first restart, the second before the second, the last after.
    let readings = fleet(20, 1_800);
    let t = topic("refstop2", 1);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (vin_file, buggy_file, extra) = sensor_files(d, &readings);
    let out = d.join("out");
    let producer = publish_live(&t, &readings, Duration::from_micros(250));
    let mut logs = String::new();
    // (A run counts the records it read itself: a third of the topic each.)
    for (workers, list) in [("2", "sensor_id\nS0\nS1\n"), ("1", "sensor_id\nS1\n")] {
        let mut job = Running::start(exact_job_with(d, &t, &out, &extra, &["-w", workers]));
        job.wait_until_read(readings.len() / 3);
        sigterm(&job.child);
        let (status, log) = job.finish();
        logs.push_str(&log);
        assert!(status.success() && log.contains("stopped exactly"), "{logs}");
        std::fs::write(&buggy_file, list).unwrap();
    }
    producer.join().unwrap();
    let last = exact_job_with(d, &t, &out, &extra, &["-w", "2", "--http", "", "--stop", "end"]).output().unwrap();
    logs.push_str(&String::from_utf8_lossy(&last.stderr));
    assert!(last.status.success() && logs.matches("changed while the job was down").count() == 2, "{logs}");

    let delivered = buggy_rows(&out);
    let at = |revision: &str| delivered.iter().filter(|(_, r, _)| r == revision).map(|(_, _, at)| *at).collect::<BTreeSet<_>>();
    let (inserted, retracted) = (at("insert"), at("retract"));
    assert!(inserted.len() == 1 && retracted.len() == 1, "one edit applied at each restart: {inserted:?} {retracted:?}\n{logs}");
    let (first, second) = (*inserted.first().unwrap(), *retracted.first().unwrap());
    assert!(first < second, "{first} {second}");
    let lists = [("s0", "sensor_id\nS0\n"), ("s0s1", "sensor_id\nS0\nS1\n"), ("s1", "sensor_id\nS1\n")];
    let [one, two, three] = lists.map(|list| rows_with_list(d, &readings, &vin_file, list));
    let expires = |(_, _, _, end, _): &BuggyRow| end - 1 + 240_000;
    let expected: BTreeSet<BuggyRow> = one
        .iter()
        .filter(|k| expires(k) <= first)
        .chain(two.iter().filter(|k| expires(k) > first && expires(k) <= second))
        .chain(three.iter().filter(|k| expires(k) > second))
        .cloned()
        .collect();
    let net = net_rows(&delivered);
    assert!(net.values().all(|n| *n == 0 || *n == 1), "no row twice, none retracted that was not there");
    let standing: BTreeSet<BuggyRow> = net.into_iter().filter(|(_, n)| *n == 1).map(|(k, _)| k).collect();
    assert_eq!(standing, expected, "restarted at {first} and {second}:\n{logs}");
    // Each list decides some windows: the stops fell far enough apart.
    assert!(one.iter().any(|k| expires(k) <= first) && two.iter().any(|k| expires(k) > first && expires(k) <= second));
}

#[cfg(unix)]
#[test]
fn sigterm_to_one_process_stops_the_cluster_exactly() {
    use std::io::Write;
    // Two processes of one worker on a one-partition topic: process 1 reads nothing, and it is the
    // one signalled. Process 0 must pause too (else the windows it closes would be lost to
    // process 1's halted sinks), both exit cleanly, and one process resumes where they stopped.
    let readings = fleet_with_rejects();
    let t = topic("clusterstop", 1);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let port = common::two_free_ports();
    let hosts = dir.path().join("hosts.txt");
    writeln!(std::fs::File::create(&hosts).unwrap(), "127.0.0.1:{port}\n127.0.0.1:{}", port + 1).unwrap();
    let job = |process: &str| exact_job(dir.path(), &t, &out, &["-w", "1", "-n", "2", "-p", process, "-h", hosts.to_str().unwrap()]);
    let mut first = Running::start(job("0"));
    let second = job("1").args(["--http", ""]).spawn().unwrap();
    let producer = publish_live(&t, &readings, Duration::from_micros(250));
    first.wait_until_read(readings.len() / 2);
    sigterm(&second);
    let second = second.wait_with_output().unwrap();
    let logs = [first.finish(), (second.status, String::from_utf8_lossy(&second.stderr).to_string())];
    let logs: Vec<(bool, String)> = logs.into_iter().map(|(status, log)| (status.success(), log)).collect();
    let all = format!("{}\n---\n{}", logs[0].1, logs[1].1);
    assert!(logs.iter().all(|(ok, log)| *ok && log.contains("stopped exactly")), "both processes stop exactly:\n{all}");
    producer.join().unwrap();
    let last = exact_job(dir.path(), &t, &out, &["-w", "2", "--http", "", "--stop", "end"]).output().unwrap();
    let all = format!("{all}\n---\n{}", String::from_utf8_lossy(&last.stderr));
    assert!(last.status.success(), "{all}");
    let reference = exact_reference(dir.path(), &readings);
    common::assert_same_lines(&reference, &out, &EXACT_STREAMS, &all);
}

#[cfg(unix)]
#[test]
fn a_checkpoint_of_two_workers_restores_into_two_processes_of_two_and_theirs_into_one_worker() {
    use std::io::Write;
    // A 4-partition topic: 2 workers stop exactly at a third (a checkpoint of 2 workers); 2
    // processes of 2 workers restore it and stop at about two thirds (a checkpoint of 4 workers
    // in 2 processes); 1 worker restores that and reads to the end. Every stream, `late`,
    // `errors` and `raw` included, is the uninterrupted run's, each line once.
    let readings = fleet_with_rejects();
    let t = topic("rescale", 4);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let producer = publish_live(&t, &readings, Duration::from_micros(250));
    let mut first = Running::start(exact_job(dir.path(), &t, &out, &["-w", "2"]));
    first.wait_until_read(readings.len() / 3);
    sigterm(&first.child);
    let (status, mut logs) = first.finish();
    assert!(status.success() && logs.contains("stopped exactly"), "{logs}");

    let port = common::two_free_ports();
    let hosts = dir.path().join("hosts.txt");
    writeln!(std::fs::File::create(&hosts).unwrap(), "127.0.0.1:{port}\n127.0.0.1:{}", port + 1).unwrap();
    let cluster = |process: &str| exact_job(dir.path(), &t, &out, &["-w", "2", "-n", "2", "-p", process, "-h", hosts.to_str().unwrap()]);
    let mut first = Running::start(cluster("0"));
    let second = cluster("1").args(["--http", ""]).spawn().unwrap();
    // (Process 0 reads two of the four partitions.)
    first.wait_until_read(readings.len() / 6);
    sigterm(&first.child);
    let second = second.wait_with_output().unwrap();
    for (status, log) in [first.finish(), (second.status, String::from_utf8_lossy(&second.stderr).to_string())] {
        assert!(status.success() && log.contains("stopped exactly") && log.contains("restoring the checkpoint"), "{log}");
        logs.push_str(&log);
    }
    producer.join().unwrap();
    let last = exact_job(dir.path(), &t, &out, &["-w", "1", "--http", "", "--stop", "end"]).output().unwrap();
    let log = String::from_utf8_lossy(&last.stderr).to_string();
    assert!(last.status.success() && log.contains("restoring the checkpoint"), "{log}");
    logs.push_str(&log);
    // The reference reads the same topic in one run (lateness is judged per partition).
    let reference = dir.path().join("reference");
    let mut c = kafka_config(&reference, 1, &t, "earliest", "end");
    c.kafka.group = format!("reference-{t}");
    c.routes.insert("raw".into(), vec!["local".into()]);
    run(c);
    assert!(!lines_of(&reference, "late").is_empty() && !lines_of(&reference, "errors").is_empty());
    common::assert_same_lines(&reference, &out, &EXACT_STREAMS, &logs);
}

#[test]
fn a_run_to_the_end_then_more_data_then_another_run_writes_the_new_windows() {
    // Twenty minutes published, read to the end (the end closes the open windows), then twenty
    // more, read from the committed offsets: the second run writes the windows of the new data
    // (a first run's final commit once said "every output delivered", and the second wrote none).
    let readings = fleet(20, 2400);
    let half = readings.len() / 2;
    let t = topic("again", 2);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    publish(&t, &readings[..half]);
    let c = resuming_job(&out, 2, &t, "end");
    run(c.clone());
    let first = lines_of(&out, "speed_windows").len();
    publish(&t, &readings[half..]);
    let second = run(c);
    assert!(second.readings > 0 && second.readings < readings.len() as u64, "the second run read the new data only");
    let reference = dir.path().join("reference");
    let mut r = file_job(dir.path(), &readings, &reference, 1);
    r.routes.insert("daily_speeders".into(), vec![]);
    run(r);
    let expected = lines_of(&reference, "speed_windows");
    let delivered = lines_of(&out, "speed_windows");
    assert!(delivered.len() > first + 300, "windows of the new data written: {} then {}", first, delivered.len());
    // Windows away from where the first run ended are each delivered once, as in one run.
    let boundary = readings[half].2;
    let away = |l: &&String| {
        let start = l.split("\"window_start\":\"").nth(1).and_then(|s| s.get(..24)).unwrap_or_default();
        let ms = chrono::DateTime::parse_from_rfc3339(start).map(|t| t.timestamp_millis() as u64).unwrap_or(0);
        ms + 120_000 < boundary || ms > boundary + 60_000
    };
    let e: Vec<&String> = expected.iter().filter(away).collect();
    let d: Vec<&String> = delivered.iter().filter(away).collect();
    assert_eq!(d, e, "away from the end of the first run, the windows of one uninterrupted run, once each");
}

#[cfg(unix)]
#[test]
fn killed_with_daily_speeders_on_rereads_one_checkpoint_interval_and_repeats_little() {
    // Daily speeders keep a vehicle's day open until midnight: without checkpoints a restart
    // re-read the topic from the start of the day. With them (every 60 s of event time) the
    // restart restores the operators' state and re-reads from the latest checkpoint: every
    // reading at or after its boundary, few before it. The day's speeders count each reading
    // once (none restored and read again), every window is delivered, and the repeats are the
    // windows delivered after the checkpoint.
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state").display().to_string();
    let log = killed_then_restored(dir.path(), "killdaily", (&state, 4), "");
    assert!(log.contains(&format!("from {state}")), "{log}");
}

#[cfg(unix)]
#[test]
fn checkpoints_in_s3_restore_a_killed_job() {
    // The same, with the state store in an S3 bucket (the moto server): what a cluster whose
    // machines share no disk uses.
    let endpoint = std::env::var("FLEETFLOW_AWS_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:15000".into());
    // (The emulator takes any credentials; the job reads them from the standard chain.)
    for (k, v) in [("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"), ("AWS_REGION", "us-east-1")] {
        if std::env::var_os(k).is_none() {
            std::env::set_var(k, v);
        }
    }
    let bucket = format!("ff-state-{}-{}", std::process::id(), fleetflow::clock::now_ms() % 1_000_000);
    let sdk =
        aws_config::defaults(aws_config::BehaviorVersion::latest()).region(aws_config::Region::new("us-east-1")).endpoint_url(&endpoint);
    let sdk = fleetflow::aws::runtime().block_on(sdk.load());
    let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&sdk).force_path_style(true).build());
    fleetflow::aws::runtime().block_on(s3.create_bucket().bucket(&bucket).send()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = format!("s3://{bucket}/checkpoints");
    // (Each look at the store is a few requests to the emulator: under load its checkpoints
    // complete later than a folder's, and a crash repeats more.)
    let log = killed_then_restored(dir.path(), "kills3", (&state, 2), &format!("[checkpoints]\nendpoint_url = {endpoint:?}\n"));
    assert!(log.contains(&format!("from {state}/")), "restored from S3\n{log}");
    let listed = fleetflow::aws::runtime().block_on(s3.list_objects_v2().bucket(&bucket).send()).unwrap();
    assert!(listed.contents().is_empty(), "a run to the end drained its windows and removed the checkpoints: {:?}", listed.contents());
}

/// Publishes 20 vehicles over 20 minutes of event time live, SIGKILLs a 2-worker job keeping its
/// checkpoints in `state` once it delivered 200 windows, runs it again to the end, and checks the
/// restart against a run of the file: every record, the day's speeders once, at most one in
/// `share` of the windows delivered before the kill written again. The restart's log.
#[cfg(unix)]
fn killed_then_restored(dir: &Path, name: &str, (state, share): (&str, usize), config: &str) -> String {
    use std::process::{Command, Stdio};
    let readings = fleet(20, 1200);
    let t = topic(name, 2);
    let cfg = dir.join("c.toml");
    std::fs::write(&cfg, format!("[kafka]\ncommit_interval_ms = 0\n{config}")).unwrap();
    let out = dir.join("out");
    let job = |extra: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_fleetflow"));
        c.args(["run", "--config", cfg.to_str().unwrap(), "--kafka-brokers", &brokers(), "--topic", &t, "--group", &format!("g-{t}")]);
        c.args(["--buffer-secs", "0", "-w", "2", "--http", "", "--output", out.to_str().unwrap(), "--state-dir", state]);
        c.args(extra).stderr(Stdio::piped());
        c
    };
    let producer = publish_live(&t, &readings, Duration::from_micros(160));
    let mut first = job(&[]).spawn().unwrap();
    let waiting = Instant::now();
    while lines_of(&out, "speed_windows").len() < 200 && waiting.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(20));
    }
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    producer.join().unwrap();
    let before = lines_of(&out, "speed_windows").len();
    assert!(before >= 200, "the first run delivered windows before it was killed: {before}");

    let second = job(&["--stop", "end"]).output().unwrap();
    let log = String::from_utf8_lossy(&second.stderr).to_string();
    assert!(second.status.success(), "{log}");
    // Re-read: everything at or after the checkpoint's boundary, and little before it.
    let at = log.split("restoring the checkpoint of ").nth(1).and_then(|r| r.split(' ').next()).expect("a checkpoint restored");
    let at = fleetflow::time_arg::parse(at).unwrap();
    let read: usize = log.split("done: ").nth(1).and_then(|r| r.split(' ').next()).and_then(|n| n.parse().ok()).unwrap();
    let ts = |line: &String| line.split(' ').nth(1).and_then(|t| t.parse::<u64>().ok()).unwrap();
    let (at_or_after, slack) =
        (readings.iter().filter(|(l, _, _)| ts(l) >= at).count(), readings.iter().filter(|(l, _, _)| ts(l) >= at - 10_000).count());
    println!("restored as of {at}: re-read {read} of {} records ({at_or_after} at or after it)", readings.len());
    assert!(read >= at_or_after && read <= slack, "re-read {read}: between {at_or_after} and {slack}\n{log}");
    assert!(read * 10 < readings.len() * 7, "the restart re-read a good part of the topic: {read} of {}\n{log}", readings.len());

    let reference = dir.join("reference");
    run(file_job(dir, &readings, &reference, 1));
    for stream in ["speed_windows", "daily_speeders", "alerts"] {
        let expected: std::collections::BTreeSet<String> = lines_of(&reference, stream).into_iter().collect();
        let delivered = lines_of(&out, stream);
        let unique: std::collections::BTreeSet<String> = delivered.iter().cloned().collect();
        assert_eq!(unique, expected, "{stream}: every record delivered, none foreign\n{log}");
        if stream == "daily_speeders" {
            assert_eq!(delivered.len(), unique.len(), "the day is written once, by the restart");
        }
    }
    let repeated = lines_of(&out, "speed_windows").len() - lines_of(&reference, "speed_windows").len();
    println!("{repeated} of the {before} windows the killed run delivered were written again");
    assert!(repeated * share <= before, "{repeated} of the {before} windows the killed run delivered were written again\n{log}");
    log
}

#[cfg(unix)]
#[test]
fn stopped_mid_hour_into_a_sealed_folder_the_files_are_an_uninterrupted_runs() {
    // A sealed folder writes each hour's file once the hour is complete. Stopped exactly in the
    // middle of the hour, it writes the part it holds; each restart merges into it; the files at
    // the end are byte for byte those of one uninterrupted run.
    let readings = fleet_with_rejects();
    let t = topic("sealedstop", 1);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let sealed = format!("[sinks.local]\nkind = \"folder\"\npath = {:?}\nsealed = true\n", out.display().to_string());
    let logs = stop_twice_then_read_to_the_end(dir.path(), &t, &out, &readings, (&sealed, ["2", "2", "1"]));

    let reference = dir.path().join("reference");
    let mut c = file_job(dir.path(), &readings, &reference, 1);
    c.routes.insert("raw".into(), vec!["local".into()]);
    c.sinks.insert(
        "local".into(),
        SinkConfig::Folder(FolderConfig {
            path: reference.clone(),
            buffer_mib: 1.0,
            buffer_secs: 0.0,
            sealed: true,
            ..FolderConfig::default()
        }),
    );
    run(c);
    let streams = ["speed_windows", "speeders", "daily_speeders", "alerts", "raw"];
    let (expected, delivered) = (common::files_in(&reference, &streams, ""), common::files_in(&out, &streams, ""));
    assert!(!expected.is_empty());
    let names = |f: &[(String, Vec<u8>)]| f.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(&delivered), names(&expected), "the same files\n{logs}");
    for ((name, want), (_, got)) in expected.iter().zip(&delivered) {
        assert!(want == got, "{name}: {} bytes expected, {} written\n{logs}", want.len(), got.len());
    }
}

/// The streams the chaos test also sends to Firehose.
const CHAOS_FIREHOSE: [&str; 3] = ["speed_windows", "speeders", "alerts"];

/// One job of the chaos test: `workers` x `processes` on `topic` into `out`, from the group's
/// committed offsets (`end`: read to the end), every stream to a sealed folder and
/// [`CHAOS_FIREHOSE`] to the Firehose endpoint `firehose` too (its outages retried for 60 s).
#[cfg(unix)]
fn chaos_job(
    dir: &Path,
    topic: &str,
    (out, firehose): (&Path, &str),
    (workers, processes): (usize, usize),
    end: bool,
) -> Vec<std::process::Child> {
    use std::io::Write;
    let cfg = dir.join("chaos.toml");
    let sealed = format!("[sinks.local]\nkind = \"folder\"\npath = {:?}\nsealed = true\n", out.display().to_string());
    let dead = dir.join("dead").display().to_string();
    let fh = format!(
        "[sinks.fh]\nkind = \"firehose\"\ndelivery_stream = \"chaos-{{stream}}\"\nregion = \"us-east-1\"\nendpoint_url = {firehose:?}\nbuffer_secs = 0.2\nretry_secs = 60\ndead_letter_dir = {dead:?}\n"
    );
    let routes: String = CHAOS_FIREHOSE.iter().map(|s| format!("{s} = [\"local\", \"fh\"]\n")).collect();
    // (A process stopped before the cluster formed leaves the other waiting: 5 s, then an error.)
    let cluster = "[cluster]\nconnect_timeout_secs = 5\n";
    std::fs::write(&cfg, format!("[routes]\nraw = [\"local\"]\n{routes}{cluster}{sealed}{fh}")).unwrap();
    let port = common::two_free_ports();
    let hosts = dir.join("hosts.txt");
    writeln!(std::fs::File::create(&hosts).unwrap(), "127.0.0.1:{port}\n127.0.0.1:{}", port + 1).unwrap();
    (0..processes)
        .map(|p| {
            let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_fleetflow"));
            c.args([
                "run",
                "--config",
                cfg.to_str().unwrap(),
                "--kafka-brokers",
                &brokers(),
                "--topic",
                topic,
                "--group",
                &format!("g-{topic}"),
            ]);
            c.args(["--http", "", "-w", &workers.to_string(), "--shutdown-timeout-secs", "5"]);
            c.envs([("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")]);
            if processes > 1 {
                c.args(["-n", &processes.to_string(), "-p", &p.to_string(), "-h", hosts.to_str().unwrap()]);
            }
            if end {
                c.args(["--stop", "end"]);
            }
            c.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().unwrap()
        })
        .collect()
}

#[cfg(unix)]
#[test]
fn thirty_stops_at_random_moments_and_sizes_lose_and_repeat_nothing() {
    // A 4-partition topic published over about a minute; 30 times a job of 1, 2 or 4 workers in 1
    // or 2 processes is started and, at a random moment, sent SIGTERM (exact stop) or SIGKILL
    // (one process of a cluster: the other stops on its own); before a third of the stops the
    // Firehose endpoint goes down, and comes back only once the job has ended (a SIGTERM then
    // gives up after the shutdown timeout). Then one run reads to the end. The sealed files equal
    // those of one uninterrupted run byte for byte, `late` and `errors` hold each record once,
    // and Firehose received every record, repeats only within a checkpoint interval of a stop.
    // FLEETFLOW_CHAOS_SEED repeats a run.
    use rand::{Rng, SeedableRng};
    let seed = std::env::var("FLEETFLOW_CHAOS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(fleetflow::clock::now_ms);
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let cfg = FleetConfig { vehicles: 20, duration_ms: Some(3_900_000), late_fraction: 0.01, ..FleetConfig::default() };
    let mut readings = fleet_of(cfg);
    for i in (0..readings.len()).step_by(997).rev() {
        let at = readings[i].2;
        readings.insert(i, (format!("malformed line {i}"), String::new(), at));
    }
    let t = topic("chaos", 4);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let (firehose, url) = common::firehose::Endpoint::start();
    let producer = publish_live(&t, &readings, Duration::from_micros(700));
    let (mut history, mut marks, mut resumed) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..30 {
        let size = ([1, 2, 4][rng.random_range(0..3)], rng.random_range(1..=2));
        marks.push(firehose.records("chaos-speed_windows").len());
        let mut job = chaos_job(dir.path(), &t, (&out, &url), size, false);
        std::thread::sleep(Duration::from_millis(rng.random_range(300..2500)));
        let outage = rng.random_bool(0.33);
        if outage {
            firehose.set_down(true);
            std::thread::sleep(Duration::from_millis(rng.random_range(100..1500)));
        }
        let kill = rng.random_bool(0.5);
        if kill {
            let last = job.len() - 1;
            job[last].kill().unwrap();
        } else {
            sigterm(&job[rng.random_range(0..job.len())]);
        }
        let ended: Vec<(String, String)> = job.into_iter().map(|p| ended_within(p, Duration::from_secs(40))).collect();
        resumed.push(resumed_from(&ended.iter().map(|(_, log)| log.as_str()).collect::<String>()));
        let key = |log: &String| -> String {
            log.lines()
                .filter(|l| ["resuming", "stopped", "error", "done:"].iter().any(|k| l.contains(k)))
                .collect::<Vec<_>>()
                .join("\n    ")
        };
        firehose.set_down(false);
        let ended: Vec<String> = ended.iter().map(|(status, log)| format!("{status}\n    {}", key(log))).collect();
        let how = format!("{}{}", if kill { "SIGKILL" } else { "SIGTERM" }, if outage { " during a Firehose outage" } else { "" });
        history.push(format!("{size:?} {how}: {}", ended.join("\n  ")));
        assert!(!ended.iter().any(|e| e.starts_with("still running")), "seed {seed}: a stopped job did not end:\n{}", history.join("\n"));
    }
    producer.join().unwrap();
    marks.push(firehose.records("chaos-speed_windows").len());
    let last = chaos_job(dir.path(), &t, (&out, &url), (2, 1), true).remove(0).wait_with_output().unwrap();
    let log = format!("seed {seed}; stops:\n{}\n{}", history.join("\n"), String::from_utf8_lossy(&last.stderr));
    resumed.push(resumed_from(&String::from_utf8_lossy(&last.stderr)));
    assert!(last.status.success(), "{log}");

    // The reference: the same topic read once, by a group of its own.
    let reference = dir.path().join("reference");
    let mut c = kafka_config(&reference, 1, &t, "earliest", "end");
    c.kafka.group = format!("reference-{t}");
    c.routes.insert("raw".into(), vec!["local".into()]);
    c.sinks.insert(
        "local".into(),
        SinkConfig::Folder(FolderConfig {
            path: reference.clone(),
            buffer_mib: 1.0,
            buffer_secs: 0.0,
            sealed: true,
            ..FolderConfig::default()
        }),
    );
    run(c);
    let streams = ["speed_windows", "speeders", "daily_speeders", "alerts", "raw"];
    let (expected, delivered) = (common::files_in(&reference, &streams, ""), common::files_in(&out, &streams, ""));
    let names = |f: &[(String, Vec<u8>)]| f.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert!(expected.len() > 5, "{:?}", names(&expected));
    let staged = common::files_under(&out.join(".staged"));
    assert_eq!(names(&delivered), names(&expected), "the same files\n{log}\nstaged: {staged:#?}");
    for ((name, want), (_, got)) in expected.iter().zip(&delivered) {
        assert!(want == got, "{name}: {} bytes expected, {} written ({})\n{log}", want.len(), got.len(), line_difference(want, got));
    }
    assert!(staged.is_empty(), "left staged: {staged:#?}");
    // `late` and `errors` are written as they are read, into files named by the hour they were
    // read at (a re-read in another hour lands in another file): each record once, none missing.
    for stream in ["late", "errors"] {
        let (expected, delivered) = (common::comparable_lines(&reference, stream), common::comparable_lines(&out, stream));
        let (e, d): (BTreeSet<&String>, BTreeSet<&String>) = (expected.iter().collect(), delivered.iter().collect());
        assert!(e == d, "{stream}: {} missing, {} foreign\n{log}", e.difference(&d).count(), d.difference(&e).count());
        let repeats = delivered.len() - d.len();
        assert_eq!(repeats, 0, "{stream}: {repeats} repeated of {}\n{log}", expected.len());
    }
    for stream in CHAOS_FIREHOSE {
        let expected = common::comparable_lines(&reference, stream);
        let received: Vec<String> = firehose.records(&format!("chaos-{stream}")).iter().map(|r| r.trim_end().to_string()).collect();
        assert_firehose_received(stream, &expected, &received, &log);
    }
    assert!(firehose.refused.load(std::sync::atomic::Ordering::SeqCst) > 0, "no call met an outage\n{log}");
    assert_repeats_follow_a_checkpoint(&firehose.records("chaos-speed_windows"), (&marks, &resumed), &log);
}

/// The speed windows a run sent to Firehose again (sent by an earlier run) all end after the
/// frontier of the checkpoint the run restored: what runs before it delivered after that
/// checkpoint (at least once), never a window before it. (Several runs in a row can restore one
/// checkpoint: each stopped before another completed, and each sends those windows again.)
/// `marks`: how many records were received before each run; `resumed`: each run's restored
/// frontier.
#[cfg(unix)]
fn assert_repeats_follow_a_checkpoint(received: &[String], (marks, resumed): (&[usize], &[i64]), log: &str) {
    let end = |line: &String| -> i64 {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        chrono::DateTime::parse_from_rfc3339(v["window_end"].as_str().unwrap()).unwrap().timestamp_millis()
    };
    let mut seen = BTreeSet::new();
    let ends: Vec<usize> = marks.iter().skip(1).copied().chain([received.len()]).collect();
    for (run, ((&from, &to), &frontier)) in marks.iter().zip(&ends).zip(resumed).enumerate() {
        let repeated: Vec<i64> = received[from..to].iter().filter(|l| seen.contains(*l)).map(end).collect();
        seen.extend(received[from..to].iter().cloned());
        let early = repeated.iter().filter(|e| **e < frontier).count();
        assert_eq!(early, 0, "run {run} sent {early} windows again that end before the frontier it restored ({frontier})\n{log}");
    }
}

/// The frontier a run's log says it restored (`resuming: outputs before ...`), 0 if none.
#[cfg(unix)]
fn resumed_from(log: &str) -> i64 {
    let at = log.split("outputs before ").nth(1).and_then(|rest| rest.split_whitespace().next());
    at.and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()).map_or(0, |t| t.timestamp_millis())
}

/// Firehose received every line of `expected` and nothing else (at least once: repeats are
/// bounded in [`assert_repeats_follow_a_checkpoint`]).
#[cfg(unix)]
fn assert_firehose_received(stream: &str, expected: &[String], received: &[String], log: &str) {
    let (e, r): (BTreeSet<&String>, BTreeSet<&String>) = (expected.iter().collect(), received.iter().collect());
    let missing: Vec<_> = e.difference(&r).take(3).collect();
    let foreign: Vec<_> = r.difference(&e).take(3).collect();
    assert!(missing.is_empty() && foreign.is_empty(), "{stream} at Firehose: missing {missing:?}, foreign {foreign:?}\n{log}");
}

/// How two files' lines differ: how many are missing, foreign and repeated, with an example.
#[cfg(unix)]
fn line_difference(want: &[u8], got: &[u8]) -> String {
    let lines = |b: &[u8]| -> Vec<String> { String::from_utf8_lossy(b).lines().map(String::from).collect() };
    let (want, got) = (lines(want), lines(got));
    let (w, g): (BTreeSet<&String>, BTreeSet<&String>) = (want.iter().collect(), got.iter().collect());
    let missing: Vec<_> = w.difference(&g).collect();
    let foreign: Vec<_> = g.difference(&w).collect();
    let repeated = got.len() - g.len();
    format!(
        "{} lines missing, {} foreign, {repeated} repeated; e.g. missing {:?}, foreign {:?}",
        missing.len(),
        foreign.len(),
        missing.first(),
        foreign.first()
    )
}

/// How `child` ended, waiting at most `limit` (then it is killed: `still running`), and its log.
#[cfg(unix)]
fn ended_within(mut child: std::process::Child, limit: Duration) -> (String, String) {
    // (The log is read as it is written: a full pipe would stall the job.)
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut log = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut log);
        log
    });
    let deadline = Instant::now() + limit;
    let mut status = None;
    while status.is_none() && Instant::now() < deadline {
        status = child.try_wait().ok().flatten();
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = status.map(|s| s.to_string()).unwrap_or_else(|| {
        let _ = child.kill();
        let _ = child.wait();
        format!("still running after {limit:?}")
    });
    (status, reader.join().unwrap_or_default())
}

/// Every message of the one-partition topics `<prefix>.<stream>` into `into/<stream>/all.jsonl`,
/// as a consumer with `isolation` (`read_committed` or `read_uncommitted`) reads them; how many.
fn read_topics(prefix: &str, streams: &[&str], isolation: &str, into: &Path) -> usize {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
    let mut total = 0;
    for stream in streams {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers())
            .set("group.id", "reader")
            .set("isolation.level", isolation)
            .set("enable.partition.eof", "true")
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&format!("{prefix}.{stream}"), 0, Offset::Beginning).unwrap();
        consumer.assign(&tpl).unwrap();
        let mut lines = String::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match consumer.poll(Duration::from_millis(500)) {
                Some(Ok(m)) => {
                    lines.push_str(std::str::from_utf8(m.payload().unwrap_or_default()).unwrap());
                    lines.push('\n');
                    total += 1;
                }
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => break,
                // (A topic no record went to is created by the first read.)
                Some(Err(_)) | None => assert!(Instant::now() < deadline, "{prefix}.{stream}: no end within a minute"),
            }
        }
        std::fs::create_dir_all(into.join(stream)).unwrap();
        std::fs::write(into.join(stream).join("all.jsonl"), lines).unwrap();
    }
    total
}

#[cfg(unix)]
#[test]
fn exactly_once_into_kafka_through_kills_and_stops_each_record_once() {
    // Every stream to an exactly-once Kafka sink while the vehicles publish: killed (SIGKILL) at
    // 2 workers, stopped (SIGTERM) at 1, killed again at 2, then read to the end. A consumer
    // reading `read_committed` sees each record of an uninterrupted run once: every window,
    // late and malformed record and archived reading, none lost, none twice.
    use std::process::{Command, Stdio};
    let readings = fleet_with_rejects();
    let t = topic("eos", 1);
    let prefix = format!("eos-{}-{}", std::process::id(), fleetflow::clock::now_ms());
    for stream in EXACT_STREAMS {
        fleetflow::kafka_admin::ensure_topic(&brokers(), &format!("{prefix}.{stream}"), 1).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("eos.toml");
    let routes: String = EXACT_STREAMS.iter().map(|s| format!("{s} = [\"k\"]\n")).collect();
    let sink = format!("[sinks.k]\nkind = \"kafka\"\nbrokers = {:?}\ntopic = \"{prefix}.{{stream}}\"\nexactly_once = true\n", brokers());
    std::fs::write(&cfg, format!("{sink}[routes]\n{routes}")).unwrap();
    let state = dir.path().join("state");
    let job = |workers: &str, extra: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_fleetflow"));
        c.args(["run", "--config", cfg.to_str().unwrap(), "--kafka-brokers", &brokers(), "--topic", &t, "--group", &format!("g-{t}")]);
        c.args(["-w", workers, "--state-dir", state.to_str().unwrap()]).args(extra);
        c.stderr(Stdio::piped());
        c
    };
    let producer = publish_live(&t, &readings, Duration::from_micros(250));
    let mut logs = String::new();
    for (workers, kill) in [("2", true), ("1", false), ("2", true)] {
        let mut run = Running::start(job(workers, &[]));
        run.wait_until_read(readings.len() / 4);
        if kill {
            run.child.kill().unwrap();
        } else {
            sigterm(&run.child);
        }
        let (status, log) = run.finish();
        assert!(kill || (status.success() && log.contains("stopped exactly")), "the stop is exact:\n{log}");
        logs.push_str(&log);
    }
    producer.join().unwrap();
    let last = job("2", &["--http", "", "--stop", "end"]).output().unwrap();
    logs.push_str(&String::from_utf8_lossy(&last.stderr));
    assert!(last.status.success(), "{logs}");

    let committed = dir.path().join("committed");
    let read = read_topics(&prefix, &EXACT_STREAMS, "read_committed", &committed);
    let all = read_topics(&prefix, &EXACT_STREAMS, "read_uncommitted", &dir.path().join("uncommitted"));
    // (How many depends on where the kills fall: between a commit and the next record, none.)
    println!("{read} records committed; {} more in aborted transactions", all - read);
    let reference = exact_reference(dir.path(), &readings);
    common::assert_same_lines(&reference, &committed, &EXACT_STREAMS, &logs);
}

#[cfg(unix)]
#[test]
fn exactly_once_outputs_become_visible_when_the_topic_falls_silent() {
    // Checkpoints every 300 s of event time, windows of 60 s: the topic holds 20 minutes of
    // readings, then nothing. The windows closed after the last boundary (900 s) must not wait in
    // an open transaction until data returns: once the job's frontier holds still, it
    // checkpoints there and commits, and a `read_committed` consumer reads every window the
    // watermark closed, once, while the job runs on.
    use std::process::{Command, Stdio};
    let readings = fleet_with_rejects();
    let t = topic("eosidle", 1);
    publish(&t, &readings);
    let prefix = format!("eosidle-{}-{}", std::process::id(), fleetflow::clock::now_ms());
    let streams = ["speed_windows", "late"];
    for stream in streams {
        fleetflow::kafka_admin::ensure_topic(&brokers(), &format!("{prefix}.{stream}"), 1).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("eos.toml");
    let sink = format!("[sinks.k]\nkind = \"kafka\"\nbrokers = {:?}\ntopic = \"{prefix}.{{stream}}\"\nexactly_once = true\n", brokers());
    std::fs::write(&cfg, format!("{sink}[routes]\nspeed_windows = [\"k\"]\nlate = [\"k\"]\n")).unwrap();
    let job = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_fleetflow"));
        c.args(["run", "--config", cfg.to_str().unwrap(), "--kafka-brokers", &brokers(), "--topic", &t, "--group", &format!("g-{t}")]);
        c.args(["--state-dir", dir.path().join("state").to_str().unwrap(), "--checkpoint-interval-secs", "300"]).stderr(Stdio::piped());
        // (Two workers agree on the boundary of the checkpoint taken at the still frontier.)
        c.args(["-w", "2"]);
        c
    };
    let mut run = Running::start(job());
    run.wait_until_read(readings.len());

    // The windows the watermark closes: those ending at or before the readings' highest event
    // time less the lateness (5 s), aligned down to the window.
    let max_ts = readings.iter().filter_map(|(l, _, _)| l.split(' ').nth(1)?.parse::<u64>().ok()).max().unwrap();
    let closed_to = fleetflow_dataflows::time::align(max_ts - 5_000, 60_000);
    let last_boundary = fleetflow_dataflows::time::align(closed_to, 300_000);
    let end_of = |line: &String| {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        fleetflow::time_arg::parse(v["window_end"].as_str().unwrap()).unwrap()
    };
    let reference = exact_reference(dir.path(), &readings);
    let expected: Vec<String> = lines_of(&reference, "speed_windows").into_iter().filter(|l| end_of(l) <= closed_to).collect();
    assert!(expected.iter().any(|l| end_of(l) > last_boundary), "windows after the last boundary are expected");
    let committed = dir.path().join("committed");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        read_topics(&prefix, &streams, "read_committed", &committed);
        seen = lines_of(&committed, "speed_windows");
        if seen.len() >= expected.len() {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    run.child.kill().unwrap();
    let (_, mut log) = run.finish();
    assert_eq!(seen, expected, "every window the watermark closed, committed once while the job ran:\n{log}");
    // Killed after that checkpoint, restored from it and run to the end: each record once.
    let last = job().args(["--http", "", "--stop", "end"]).output().unwrap();
    log.push_str(&String::from_utf8_lossy(&last.stderr));
    assert!(last.status.success() && log.contains("restoring the checkpoint"), "{log}");
    read_topics(&prefix, &streams, "read_committed", &committed);
    common::assert_same_lines(&reference, &committed, &streams, &log);
}

#[test]
fn bench_through_kafka_measures_window_latency_read_delay_and_the_brokers_cpu() {
    let brokers = brokers();
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let t = format!("bench-{}-{}", std::process::id(), fleetflow::clock::now_ms());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fleetflow"))
        .args(["bench", "--kafka-brokers", &brokers, "--topic", &t, "--partitions", "2", "-w", "2"])
        .args(["--rate", "2000", "--vehicles", "500", "--window-secs", "5", "--duration-secs", "16", "--max-delay-ms", "0"])
        .arg("--report")
        .arg(&report)
        .arg("--plot")
        .arg(dir.path().join("plot.svg"))
        .output()
        .expect("running fleetflow bench");
    let log = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains(&format!("through Kafka topic {t}: send to read p50")), "{log}");
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let readings = r["readings"].as_u64().unwrap();
    // 500 vehicles every 250 ms for 16 s, read from the topic from the run's start.
    assert!((30_000..=33_000).contains(&readings), "{readings} readings\n{log}");
    assert!(r["window_latency_ms"]["windows"].as_u64().unwrap() >= 500, "at least one boundary of every vehicle measured: {r}");
    let k = &r["kafka"];
    assert_eq!(k["topic"], t.as_str());
    let delays = k["read_delay_ms"]["windows"].as_u64().unwrap();
    assert!(delays * 16 >= readings * 9 / 10 && delays * 16 <= readings * 11 / 10, "one message in 16 measured: {delays} of {readings}");
    assert!(k["read_delay_ms"]["p50"].as_f64().unwrap() < 1_000.0, "{k}");
    assert!(k["producer_cpu_secs"].as_f64().unwrap() > 0.0, "{k}");
    if brokers.starts_with("127.0.0.1:") {
        assert!(k["broker_cpu_secs"].as_f64().is_some_and(|s| s > 0.0), "the broker runs here: its CPU is measured: {k}");
    }
}
