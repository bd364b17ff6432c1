//! Kafka throughput benchmark.
//!
//! What it measures: readings per second that `fleetflow run` consumes from a local broker and
//! processes through the whole job (all outputs, folder sink), at 1 and 2 workers, beside Kafka's
//! own consumer (`kafka-consumer-perf-test`'s class, from the same jars as the broker) reading the
//! same topic: the ceiling a Kafka consumer reaches on this machine.
//!
//! Run: `cargo bench --bench kafka` (starts the broker with `scripts/kafka.sh` unless
//! `FLEETFLOW_KAFKA_BROKERS` names one; `FLEETFLOW_BENCH_READINGS` sets the topic's size, default
//! 5 million readings of 10,000 vehicles over 4 partitions).

use std::path::Path;
use std::process::Command;
use std::time::Instant;

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bin = env!("CARGO_BIN_EXE_fleetflow");
    let brokers = std::env::var("FLEETFLOW_KAFKA_BROKERS").unwrap_or_else(|_| {
        let ok = Command::new("bash").arg(root.join("scripts/kafka.sh")).arg("start").status().map(|s| s.success()).unwrap_or(false);
        assert!(ok, "scripts/kafka.sh start failed");
        "127.0.0.1:19092".to_string()
    });
    let readings: u64 =
        std::env::var("FLEETFLOW_BENCH_READINGS").ok().and_then(|v| v.parse().ok()).unwrap_or(if benching { 5_000_000 } else { 20_000 });
    let vehicles = 10_000.min(readings / 2).max(1);
    let secs = readings / vehicles;
    let topic = format!("bench-{}-{}", std::process::id(), readings);
    let started = Instant::now();
    let produced = Command::new(bin)
        .args(["--log", "warn", "produce", "--kafka-brokers", &brokers, "--topic", &topic, "--partitions", "4"])
        .args(["--vehicles", &vehicles.to_string(), "--duration-secs", &secs.to_string(), "--start", "2025-11-25T00:00:00Z"])
        .status()
        .expect("running fleetflow produce");
    assert!(produced.success(), "fleetflow produce failed");
    let total = vehicles * secs;
    println!("fleetflow Kafka benchmark: {total} readings on {topic} (4 partitions), produced in {:.1}s", started.elapsed().as_secs_f64());

    for workers in [1, 2] {
        let out = tempfile::tempdir().expect("temp dir");
        let started = Instant::now();
        let status = Command::new(bin)
            .args(["--log", "warn", "run", "--kafka-brokers", &brokers, "--topic", &topic, "--start", "earliest", "--stop", "end"])
            .args(["--group", &format!("{topic}-w{workers}"), "-w", &workers.to_string()])
            .arg("--output")
            .arg(out.path())
            .status()
            .expect("running fleetflow run");
        assert!(status.success(), "fleetflow run failed");
        let secs = started.elapsed().as_secs_f64();
        println!("fleetflow run, {workers} worker(s): {secs:.2} s, {:.0} readings/s (whole job)", total as f64 / secs);
    }

    let classpath = Command::new("bash").arg(root.join("scripts/kafka.sh")).arg("classpath").output().expect("classpath");
    let classpath = String::from_utf8_lossy(&classpath.stdout).trim().to_string();
    let started = Instant::now();
    let perf = Command::new("java")
        .args(["-cp", &classpath, "org.apache.kafka.tools.ConsumerPerformance", "--bootstrap-server", &brokers, "--topic", &topic])
        .args(["--messages", &total.to_string(), "--group", &format!("{topic}-perf"), "--timeout", "60000"])
        .output()
        .expect("running Kafka's consumer performance tool");
    let secs = started.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&perf.stdout);
    // Header then one CSV line: ..., data.consumed.in.nMsg, nMsg.sec, ...
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let (header, values) = (lines.next().unwrap_or(""), lines.next().unwrap_or(""));
    let field = |name: &str| {
        header.split(',').map(str::trim).position(|h| h == name).and_then(|i| values.split(',').nth(i)).map(|v| v.trim().to_string())
    };
    println!(
        "kafka-consumer-perf-test (consume only, no processing): {} msg/s by its own clock ({secs:.2} s with JVM start-up), {} messages",
        field("nMsg.sec").unwrap_or_else(|| "?".into()),
        field("data.consumed.in.nMsg").unwrap_or_else(|| "?".into()),
    );
}
