//! `fleetflow bench --kafka-brokers`: the open-loop load goes through a real topic. A child
//! `fleetflow produce` publishes the generated fleet at its pace (each message's time is its
//! send time), the job consumes the topic from the run's start, and the report adds what the
//! broker path costs: the delay from a message's send to its read, and the producer's and the
//! broker's CPU (the broker found by the port it listens on, when it runs on this machine).

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use super::bench::BenchArgs;
use super::bench_report::{KafkaCost, Percentiles};
use crate::config::{Config, SourceKind};
use crate::sources::kafka::{Start, Stop};

/// The topic a bench run produces into and consumes.
pub struct KafkaLoad {
    brokers: String,
    topic: String,
    partitions: i32,
    /// The job's consumers' librdkafka properties.
    properties: BTreeMap<String, String>,
}

/// A load being produced, and what is measured around it.
pub struct Producing {
    load: KafkaLoad,
    /// Waits for the producer to end, then stops the job; its answer is the producer's exit.
    watcher: std::thread::JoinHandle<std::io::Result<std::process::ExitStatus>>,
    producer_pid: u32,
    broker: Option<(u32, f64)>,
    children_cpu_before: f64,
}

impl KafkaLoad {
    /// The load `args` asks for, through `brokers`; the topic is created if missing.
    pub fn new(args: &BenchArgs, brokers: &str) -> anyhow::Result<Self> {
        let mut properties = BTreeMap::new();
        for p in &args.kafka_properties {
            let (key, value) = p.split_once('=').filter(|(k, _)| !k.trim().is_empty()).ok_or_else(|| {
                anyhow::anyhow!("--kafka-property: {p:?} is not KEY=VALUE; write e.g. --kafka-property fetch.wait.max.ms=5")
            })?;
            properties.insert(key.trim().to_string(), value.trim().to_string());
        }
        crate::kafka_admin::check_reachable(brokers, "--kafka-brokers")?;
        crate::kafka_admin::ensure_topic(brokers, &args.topic, args.partitions)?;
        Ok(KafkaLoad { brokers: brokers.to_string(), topic: args.topic.clone(), partitions: args.partitions, properties })
    }

    /// Makes `config` read the topic from `start_ms` (a group of the run's own), and close its
    /// windows when the bench stops it.
    pub fn configure(&self, config: &mut Config, start_ms: u64) {
        config.source.kind = SourceKind::Kafka;
        config.kafka.brokers = self.brokers.clone();
        config.kafka.topic = self.topic.clone();
        config.kafka.group = format!("fleetflow-bench-{}-{start_ms}", std::process::id());
        config.kafka.start = Start::Time(start_ms);
        config.kafka.stop = Stop::Never;
        config.kafka.properties.extend(self.properties.clone());
        config.drain = true;
        if !config.checkpoints.measure_only {
            config.checkpoints.enabled = false;
        }
    }

    /// Starts producing `args.vehicles` reporting every `interval_ms` for `args.duration`
    /// seconds; `grace` after the producer ends, `stop` is set.
    pub fn produce(self, args: &BenchArgs, interval_ms: u64, stop: Arc<AtomicBool>, grace: Duration) -> anyhow::Result<Producing> {
        let broker = broker_port(&self.brokers).and_then(listener_pid).and_then(|pid| Some((pid, process_cpu_secs(pid)?)));
        let children_cpu_before = children_cpu_secs();
        let exe = std::env::current_exe().context("finding the fleetflow binary to run the producer")?;
        let (vehicles, interval, secs, delay) =
            (args.vehicles.to_string(), interval_ms.to_string(), args.duration.to_string(), args.max_delay_ms.to_string());
        let mut child: Child = Command::new(exe)
            .args(["--log", "warn", "produce", "--kafka-brokers", &self.brokers, "--topic", &self.topic, "--start", "now"])
            .args(["--partitions", &self.partitions.to_string(), "--vehicles", &vehicles, "--interval-ms", &interval])
            .args(["--duration-secs", &secs, "--max-delay-ms", &delay, "--linger-ms", &args.producer_linger_ms.to_string()])
            .stdin(Stdio::null())
            .spawn()
            .context("starting the producer (fleetflow produce)")?;
        let producer_pid = child.id();
        let watcher = std::thread::spawn(move || {
            let status = child.wait();
            std::thread::sleep(grace);
            stop.store(true, Ordering::SeqCst);
            status
        });
        Ok(Producing { load: self, watcher, producer_pid, broker, children_cpu_before })
    }
}

impl Producing {
    /// Waits for the producer, and measures what the broker path cost.
    pub fn finish(self, read_delay: Percentiles) -> anyhow::Result<KafkaCost> {
        let status = self.watcher.join().map_err(|_| anyhow::anyhow!("the producer's watcher panicked"))?;
        let status = status.context("waiting for the producer")?;
        anyhow::ensure!(status.success(), "the producer (fleetflow produce) failed: {status}");
        Ok(KafkaCost {
            topic: self.load.topic,
            partitions: self.load.partitions,
            read_delay_ms: read_delay,
            producer_cpu_secs: children_cpu_secs() - self.children_cpu_before,
            broker_cpu_secs: self.broker.and_then(|(pid, before)| Some(process_cpu_secs(pid)? - before)),
        })
    }

    /// Stops the producer (the job failed).
    pub fn abandon(self) {
        // SAFETY: a signal to the child this bench started; at worst it has exited already.
        unsafe { libc::kill(self.producer_pid as libc::pid_t, libc::SIGTERM) };
        let _ = self.watcher.join();
    }
}

/// The port of the first broker, if it names one.
fn broker_port(brokers: &str) -> Option<u16> {
    brokers.split(',').next()?.trim().rsplit(':').next()?.parse().ok()
}

/// The process listening on TCP `port` on this machine, from `/proc`.
fn listener_pid(port: u16) -> Option<u32> {
    let inode = ["/proc/net/tcp", "/proc/net/tcp6"].iter().find_map(|table| {
        let text = std::fs::read_to_string(table).ok()?;
        text.lines().skip(1).find_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let local = u16::from_str_radix(cols.get(1)?.rsplit(':').next()?, 16).ok()?;
            // State 0A: listening.
            (local == port && *cols.get(3)? == "0A").then(|| cols.get(9).map(|s| s.to_string()))?
        })
    })?;
    let socket = format!("socket:[{inode}]");
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let pid = entry.file_name().to_str()?.parse::<u32>().ok()?;
        let mut fds = std::fs::read_dir(entry.path().join("fd")).ok()?.flatten();
        fds.any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == socket.as_str())).then_some(pid)
    })
}

/// CPU seconds (user and system) process `pid` has used, from `/proc/PID/stat`.
fn process_cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command's closing parenthesis start at the third (the state).
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf reads a constant of the system.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then(|| ticks / hz as f64)
}

/// CPU seconds the children this process has waited for have used.
fn children_cpu_secs() -> f64 {
    let (user, system, _) = super::bench::rusage(libc::RUSAGE_CHILDREN);
    user + system
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_process_listening_on_a_port_is_found_with_its_cpu() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert_eq!(listener_pid(port), Some(std::process::id()));
        assert!(process_cpu_secs(std::process::id()).is_some());
        drop(listener);
        assert_eq!(listener_pid(port), None);
        assert_eq!(broker_port("127.0.0.1:19092,other:9092"), Some(19092));
    }
}
