//! The Firehose and SNS sinks against a real AWS emulator (the moto server, started on loopback
//! by `scripts/moto.sh`; `FLEETFLOW_AWS_ENDPOINT` points at another one): `fleetflow aws setup`
//! creates the bucket, delivery streams and topic; a run's objects in S3 hold exactly the lines
//! the folder sink wrote for the same run, and the alerts arrive in an SQS queue subscribed to
//! the topic. Also: a missing delivery stream is a clear start-up error, and records Firehose
//! keeps refusing end up in the dead-letter folder, none lost.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region};

mod common;
use common::{files_in, files_under, lines_of};

const BIN: &str = env!("CARGO_BIN_EXE_fleetflow");
const ROLE: &str = "arn:aws:iam::123456789012:role/fleetflow-firehose";

fn endpoint() -> String {
    common::moto_endpoint()
}

fn sdk() -> aws_config::SdkConfig {
    let loader = aws_config::defaults(BehaviorVersion::latest()).region(Region::new("us-east-1")).endpoint_url(endpoint());
    fleetflow::aws::runtime().block_on(loader.load())
}

fn s3() -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&sdk()).force_path_style(true).build())
}

/// A name unique to this test run (moto keeps state across tests).
fn unique(name: &str) -> String {
    format!("ff-{name}-{}-{}", std::process::id(), fleetflow::clock::now_ms() % 1_000_000)
}

fn fleetflow(args: &[&str]) -> std::process::Output {
    let out = Command::new(BIN).args(args).output().expect("running fleetflow");
    assert!(out.status.success(), "fleetflow {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// Every line of every object under `prefix/` in `bucket`, sorted.
fn s3_lines(bucket: &str, prefix: &str) -> Vec<String> {
    let client = s3();
    let rt = fleetflow::aws::runtime();
    let mut lines = Vec::new();
    let mut token = None;
    loop {
        let page =
            rt.block_on(client.list_objects_v2().bucket(bucket).prefix(format!("{prefix}/")).set_continuation_token(token).send()).unwrap();
        for o in page.contents() {
            let body = rt.block_on(client.get_object().bucket(bucket).key(o.key().unwrap()).send()).unwrap();
            let bytes = rt.block_on(body.body.collect()).unwrap().into_bytes();
            let text = String::from_utf8(bytes.to_vec()).unwrap();
            assert!(text.ends_with('\n'), "every object holds whole lines");
            lines.extend(text.lines().map(String::from));
        }
        match page.next_continuation_token() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    lines.sort();
    lines
}

/// Generated input (with matching reference files) in `dir`.
fn generate(dir: &Path, vehicles: u64, secs: u64) {
    let d = dir.to_str().unwrap();
    fleetflow(&[
        "generate",
        "--output",
        d,
        "--vehicles",
        &vehicles.to_string(),
        "--duration-secs",
        &secs.to_string(),
        "--speeder-fraction",
        "0.2",
        "--buggy-fraction",
        "0.2",
        "--malformed-fraction",
        "0.001",
    ]);
}

#[test]
fn firehose_and_sns_deliver_exactly_what_the_folder_sink_writes() {
    let endpoint = endpoint();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    generate(&data, 60, 900);
    let (bucket, prefix) = (unique("bucket"), unique("s"));
    let topic = format!("arn:aws:sns:us-east-1:123456789012:{}", unique("alerts"));
    let out = dir.path().join("out");
    let dead = dir.path().join("dead");
    let config = dir.path().join("fleetflow.toml");
    std::fs::write(
        &config,
        format!(
            r#"
workers = 2
[source]
kind = "files"
files = ["{data}/readings-000.txt"]
[reference]
vin_sensors = "{data}/vin_sensor.csv"
buggy_sensors = "{data}/buggy_sensors.csv"
[sinks.local]
kind = "folder"
path = "{out}"
buffer_secs = 0
[sinks.fh]
kind = "firehose"
delivery_stream = "{prefix}-{{stream}}"
endpoint_url = "{endpoint}"
region = "us-east-1"
pack_records = true
buffer_secs = 0.2
dead_letter_dir = "{dead}"
[sinks.sns]
kind = "sns"
topic_arn = "{topic}"
endpoint_url = "{endpoint}"
dead_letter_dir = "{dead}"
[routes]
speeders = ["local", "fh"]
buggy_devices = ["local", "fh"]
alerts = ["local", "sns", "fh"]
raw = ["local", "fh"]
"#,
            data = data.display(),
            out = out.display(),
            dead = dead.display(),
        ),
    )
    .unwrap();
    let c = config.to_str().unwrap();
    let setup = fleetflow(&["aws", "setup", "--config", c, "--bucket", &bucket, "--role-arn", ROLE]);
    let said = String::from_utf8_lossy(&setup.stdout);
    assert!(said.contains(&format!("delivery stream {prefix}-speeders: created")), "{said}");
    assert!(said.contains(&format!("topic {topic}: ready")), "{said}");
    let again = fleetflow(&["aws", "setup", "--config", c, "--bucket", &bucket, "--role-arn", ROLE]);
    assert!(String::from_utf8_lossy(&again.stdout).contains(&format!("delivery stream {prefix}-raw: exists")), "setup is idempotent");

    // An SQS queue subscribed to the topic sees what subscribers would.
    let rt = fleetflow::aws::runtime();
    let (sns, sqs) = (aws_sdk_sns::Client::new(&sdk()), aws_sdk_sqs::Client::new(&sdk()));
    let queue = rt.block_on(sqs.create_queue().queue_name(unique("q")).send()).unwrap().queue_url().unwrap().to_string();
    let attrs = rt
        .block_on(sqs.get_queue_attributes().queue_url(&queue).attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn).send())
        .unwrap();
    let queue_arn = attrs.attributes().unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn].clone();
    rt.block_on(sns.subscribe().topic_arn(&topic).protocol("sqs").endpoint(queue_arn).send()).unwrap();

    fleetflow(&["run", "--config", c]);

    for stream in ["speeders", "buggy_devices", "alerts", "raw"] {
        let local = lines_of(&out, stream);
        assert!(!local.is_empty(), "the input has {stream}");
        assert_eq!(s3_lines(&bucket, stream), local, "{stream}: S3 holds exactly the folder sink's lines");
    }
    assert!(lines_of(&out, "raw").len() > 50_000, "raw holds the accepted readings");
    assert!(files_under(&dead).is_empty(), "nothing dead-lettered");

    let alerts = lines_of(&out, "alerts");
    let mut received = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while received.len() < alerts.len() && Instant::now() < deadline {
        let got = rt.block_on(sqs.receive_message().queue_url(&queue).max_number_of_messages(10).send()).unwrap();
        for m in got.messages() {
            let envelope: serde_json::Value = serde_json::from_str(m.body().unwrap()).unwrap();
            let body = envelope["Message"].as_str().unwrap();
            let record = body.lines().last().unwrap().to_string();
            let vin = serde_json::from_str::<serde_json::Value>(&record).unwrap()["vin"].as_str().unwrap().to_string();
            assert!(envelope["Subject"].as_str().unwrap().starts_with(&format!("Speeding alert: {vin} averaged ")), "{envelope}");
            assert!(body.starts_with(&format!("Vehicle {vin} averaged ")), "{body}");
            assert_eq!(envelope["MessageAttributes"]["vin"]["Value"], vin.as_str());
            assert_eq!(envelope["MessageAttributes"]["kind"]["Value"], "alerts");
            received.push(record);
            rt.block_on(sqs.delete_message().queue_url(&queue).receipt_handle(m.receipt_handle().unwrap()).send()).unwrap();
        }
    }
    received.sort();
    assert_eq!(received, alerts, "one SNS message per alert");
}

#[test]
fn a_missing_delivery_stream_is_a_clear_startup_error() {
    let endpoint = endpoint();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "1 1764064800000 1HGCM82633A004352 -73.9 40.7 50\n").unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "[sinks.fh]\nkind = \"firehose\"\ndelivery_stream = \"nope-{{stream}}\"\nendpoint_url = \"{endpoint}\"\n[routes]\nspeeders = [\"fh\"]\n"
        ),
    )
    .unwrap();
    let out = Command::new(BIN).args(["run", "--config", config.to_str().unwrap(), "--input", input.to_str().unwrap()]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("sinks.fh.delivery_stream") && err.contains("\"nope-speeders\"") && err.contains("fleetflow aws setup"), "{err}");
}

#[test]
fn records_firehose_keeps_refusing_are_dead_lettered_not_lost() {
    // moto answers 500 for a delivery stream whose bucket does not exist.
    let endpoint = endpoint();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    generate(&data, 10, 300);
    let stream = unique("nobucket");
    let config = dir.path().join("setup.toml");
    std::fs::write(
        &config,
        format!(
            "[sinks.fh]\nkind = \"firehose\"\ndelivery_stream = \"{stream}\"\nendpoint_url = \"{endpoint}\"\n[routes]\nspeed_windows = [\"fh\"]\n"
        ),
    )
    .unwrap();
    let missing = unique("missing-bucket");
    fleetflow(&["aws", "setup", "--config", config.to_str().unwrap(), "--bucket", &missing, "--role-arn", ROLE]);
    rt_delete_bucket(&missing);

    let (out, dead) = (dir.path().join("out"), dir.path().join("dead"));
    std::fs::write(
        &config,
        format!(
            r#"[sinks.fh]
kind = "firehose"
delivery_stream = "{stream}"
endpoint_url = "{endpoint}"
retry_secs = 1
dead_letter_dir = "{dead}"
[sinks.local]
kind = "folder"
path = "{out}"
[routes]
speed_windows = ["fh", "local"]
"#,
            dead = dead.display(),
            out = out.display()
        ),
    )
    .unwrap();
    let run = fleetflow(&["run", "--config", config.to_str().unwrap(), "--input", &format!("{}/readings-000.txt", data.display())]);
    let log = String::from_utf8_lossy(&run.stderr);
    assert!(log.contains("dead-lettered"), "{log}");
    let mut dead_lines: Vec<String> = Vec::new();
    for f in files_under(&dead.join("fh").join(&stream)) {
        for l in std::fs::read_to_string(f).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert!(v["error"].as_str().unwrap().contains("HTTP 500"), "{v}");
            assert!(v["attempts"].as_u64().unwrap() >= 2, "retried before giving up: {v}");
            dead_lines.extend(v["data"].as_str().unwrap().lines().map(String::from));
        }
    }
    dead_lines.sort();
    assert_eq!(dead_lines, lines_of(&out, "speed_windows"), "every window is in the dead-letter folder, once");
}

fn rt_delete_bucket(bucket: &str) {
    let rt = fleetflow::aws::runtime();
    rt.block_on(s3().delete_bucket().bucket(bucket).send()).unwrap();
}

#[test]
fn replay_from_an_s3_archive_writes_what_the_live_run_wrote() {
    let endpoint = endpoint();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    fleetflow(
        &["generate", "--output", d, "--vehicles", "30", "--duration-secs", "10800", "--interval-ms", "5000", "--files", "2"]
            .into_iter()
            .chain(["--speeder-fraction", "0.3", "--buggy-fraction", "0.2"])
            .collect::<Vec<_>>(),
    );
    let (live, archive, replayed) = (dir.path().join("live"), dir.path().join("archive"), dir.path().join("replayed"));
    let config = dir.path().join("live.toml");
    std::fs::write(
        &config,
        format!(
            r#"
workers = 2
[source]
kind = "files"
files = ["{d}/readings-000.txt", "{d}/readings-001.txt"]
[reference]
vin_sensors = "{d}/vin_sensor.csv"
buggy_sensors = "{d}/buggy_sensors.csv"
[windows]
max_future_secs = 0
[sinks.local]
kind = "folder"
path = "{live}"
sealed = true
[sinks.archive]
kind = "folder"
path = "{archive}"
buffer_mib = 0.05
buffer_secs = 0
[routes]
raw = ["archive"]
[http]
bind = ""
"#,
            live = live.display(),
            archive = archive.display()
        ),
    )
    .unwrap();
    fleetflow(&["run", "--config", config.to_str().unwrap()]);

    // The archive in S3, as Firehose with an event-time prefix would lay it out.
    let bucket = unique("archive");
    let client = s3();
    let rt = fleetflow::aws::runtime();
    rt.block_on(client.create_bucket().bucket(&bucket).send()).unwrap();
    let objects = files_under(&archive);
    assert!(objects.len() > 4);
    for f in &objects {
        let key = format!("backup/{}", f.strip_prefix(&archive).unwrap().display());
        let body = aws_sdk_s3::primitives::ByteStream::from(std::fs::read(f).unwrap());
        rt.block_on(client.put_object().bucket(&bucket).key(key).body(body).send()).unwrap();
    }

    let out = fleetflow(&[
        "replay",
        "--from",
        "2025-11-25T01:00:00Z",
        "--to",
        "2025-11-25T02:00:00Z",
        "--archive",
        &format!("s3://{bucket}/backup"),
        "--endpoint-url",
        &endpoint,
        "--region",
        "us-east-1",
        "--reference",
        &format!("{d}/vin_sensor.csv"),
        "--buggy",
        &format!("{d}/buggy_sensors.csv"),
        "--output",
        replayed.to_str().unwrap(),
    ]);
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains(" 0 late"), "{report}");
    let streams = ["speed_windows", "speeders", "alerts", "buggy_devices"];
    let expected = files_in(&live, &streams, "2025/11/25/01");
    for s in streams {
        assert!(expected.iter().any(|(n, _)| n.starts_with(s)), "the live hour has {s}");
    }
    assert_eq!(files_in(&replayed, &streams, "2025/11/25/01"), expected, "the replayed hour equals the live one");
    for other in ["2025/11/25/00", "2025/11/25/02"] {
        assert!(files_in(&replayed, &streams, other).is_empty(), "only the replayed hour is written, not {other}");
    }
}

#[test]
fn the_state_store_in_s3_keeps_reads_and_prunes_checkpoints_as_the_folder_does() {
    use fleetflow::checkpoints::increments::Increments;
    use fleetflow::checkpoints::objects::Objects;
    use fleetflow::checkpoints::part::{Part, SavedPosition};
    use fleetflow::checkpoints::store::StateStore;
    let endpoint = endpoint();
    let bucket = unique("state");
    fleetflow::aws::runtime().block_on(s3().create_bucket().bucket(&bucket).send()).unwrap();
    let settings = fleetflow::aws::AwsSettings {
        region: Some("us-east-1".into()),
        endpoint_url: Some(endpoint.clone()),
        request_timeout: Duration::from_secs(10),
    };
    let missing = Objects::open("s3://no-such-bucket-here/x", &settings).err().expect("a missing bucket is refused").to_string();
    assert!(
        missing.starts_with("checkpoints.dir (--state-dir): bucket \"no-such-bucket-here\"") && missing.contains("create it"),
        "{missing}"
    );

    let store = StateStore::new(Objects::open(&format!("s3://{bucket}/jobs/"), &settings).unwrap(), "group/1");
    let part = |at: u64, worker: usize, peers: usize| Part {
        at,
        durable: at,
        worker,
        peers,
        shape: "s".into(),
        states: vec![("daily_speeders.days".into(), vec![worker as u8; 2000])],
        positions: vec![SavedPosition {
            partition: format!("t/{worker}"),
            offset: 10,
            max_ts: Some(at),
            read_to: None,
            delivered: Vec::new(),
            source_state: vec![7; 100],
        }],
        // (The first worker reads the reference files.)
        references: if worker == 0 { vec![("buggy_sensors".into(), vec![vec![1], vec![2]])] } else { Vec::new() },
    };
    let increments = |at: u64, worker: u8| Increments { at, shape: "s".into(), increments: vec![("held".into(), vec![worker; 3])] };
    assert!(store.latest("s", 0).unwrap().is_none(), "an empty prefix holds no checkpoint");
    for at in [60_000, 120_000, 180_000] {
        store.write_increments(at, (0, 2), &increments(at, 0)).unwrap();
        store.write_increments(at, (1, 2), &increments(at, 1)).unwrap();
        store.write_part(at, &part(at, 0, 2)).unwrap();
        assert_eq!(store.parts_written(at, 2).unwrap().count, 1);
        store.write_part(at, &part(at, 1, 2)).unwrap();
        store.complete(at, 2).unwrap();
    }
    store.write_part(240_000, &part(240_000, 0, 2)).unwrap(); // not complete
    store.write_part(180_000, &part(180_000, 3, 4)).unwrap(); // left by a job of another size
    let loaded = store.latest("s", 0).unwrap().unwrap();
    assert_eq!((loaded.restored.at, loaded.durable), (180_000, 180_000));
    assert_eq!(loaded.restored.states["daily_speeders.days"].len(), 2, "the parts of the 2 workers, not the stray one");
    assert_eq!(loaded.positions.keys().collect::<Vec<_>>(), ["t/0", "t/1"]);
    assert_eq!(loaded.references["buggy_sensors"], [[1], [2]], "the first worker's tables");
    // Pruned with the increments of everything after 0 s kept: the oldest loses its parts only.
    store.prune(2, 0).unwrap();
    assert_eq!(store.completed().unwrap(), [60_000, 120_000, 180_000], "markers kept");
    assert_eq!(store.parts_written(60_000, 2).unwrap().count, 0, "parts removed");
    assert_eq!(store.parts_written(240_000, 2).unwrap().count, 1, "a newer half-written checkpoint stays");
    let loaded = store.latest("s", 150_000).unwrap().unwrap();
    assert_eq!(loaded.restored.increments["held"].len(), 6, "the increments of 60, 120 and 180 s, both workers");
    store.prune(2, 100_000).unwrap();
    assert_eq!(store.completed().unwrap(), [120_000, 180_000], "out of the history: removed");
    assert!(store.location().starts_with(&format!("s3://{bucket}/jobs/group_1")), "{}", store.location());
    let e = store.latest("other", 0).unwrap_err().to_string();
    assert!(e.contains("s3://") && e.contains("start afresh"), "{e}");
    assert_eq!(store.clear().unwrap(), 3);
    let left = fleetflow::aws::runtime().block_on(s3().list_objects_v2().bucket(&bucket).send()).unwrap();
    assert!(left.contents().is_empty(), "cleared: {:?}", left.contents());
    rt_delete_bucket(&bucket);
}
