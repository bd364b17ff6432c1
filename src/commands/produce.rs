//! `fleetflow produce`: publishes generated readings to a Kafka topic, keyed by vin, with the
//! message timestamp set to the reading's send time (what offsets-for-times looks up).

use clap::Args;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use tracing::info;

use crate::encode::reading_line;
use crate::sources::generator::{FleetConfig, FleetPartition};

/// `fleetflow produce` flags.
#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// Bootstrap brokers, HOST:PORT.
    #[arg(long)]
    pub kafka_brokers: String,
    /// Topic to publish to (created with `--partitions` if missing).
    #[arg(long, default_value = "vehicles")]
    pub topic: String,
    /// Partitions of the topic when it is created.
    #[arg(long, default_value_t = 4)]
    pub partitions: i32,
    /// Readings per second (0: as fast as the broker takes them).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Vehicles.
    #[arg(long, default_value_t = 1_000)]
    pub vehicles: u64,
    /// Each vehicle reports about once per this many ms (with `--start now`, at that pace).
    #[arg(long, default_value_t = 1_000)]
    pub interval_ms: u64,
    /// Seconds of event time (0: until Ctrl-C).
    #[arg(long, default_value_t = 60)]
    pub duration_secs: u64,
    /// Event time of the first reading: `now`, a date (its midnight UTC) or an RFC 3339 time.
    #[arg(long, default_value = "now")]
    pub start: String,
    /// Seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Largest out-of-order delay, ms.
    #[arg(long, default_value_t = 2_000)]
    pub max_delay_ms: u64,
    /// How long the producer waits to fill a batch, ms (librdkafka's `linger.ms`).
    #[arg(long, default_value_t = 5)]
    pub linger_ms: u64,
    /// Publish JSON values instead of text lines.
    #[arg(long)]
    pub json: bool,
}

/// Counts deliveries the broker refused.
#[derive(Default)]
struct Deliveries {
    failed: AtomicU64,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            if self.failed.fetch_add(1, Ordering::Relaxed) == 0 {
                tracing::warn!("delivery failed: {e}");
            }
        }
    }
}

/// Publishes readings until the duration is over (or `stop`); returns how many were sent.
pub fn produce(args: &ProduceArgs, stop: Arc<AtomicBool>) -> anyhow::Result<u64> {
    crate::kafka_admin::check_reachable(&args.kafka_brokers, "--kafka-brokers")?;
    let created = crate::kafka_admin::ensure_topic(&args.kafka_brokers, &args.topic, args.partitions)?;
    if created {
        info!("created topic {} with {} partitions", args.topic, args.partitions);
    }
    let realtime = args.start == "now";
    let start_ms = if realtime {
        crate::clock::now_ms()
    } else {
        crate::time_arg::parse_for("--start", &args.start).map_err(|e| anyhow::anyhow!("{e}, or `now`"))?
    };
    let fleet = FleetConfig {
        vehicles: args.vehicles,
        interval_ms: args.interval_ms.max(1),
        seed: args.seed,
        start_ms,
        duration_ms: (args.duration_secs > 0).then(|| args.duration_secs * 1000),
        max_delay_ms: args.max_delay_ms,
        realtime,
        ..FleetConfig::default()
    };
    let producer: ThreadedProducer<Deliveries> = ClientConfig::new()
        .set("bootstrap.servers", &args.kafka_brokers)
        .set("linger.ms", args.linger_ms.to_string())
        .set("queue.buffering.max.messages", "1000000")
        .create_with_context(Deliveries::default())
        .context("creating the Kafka producer")?;
    let mut fleet = FleetPartition::new(fleet, 0, 1);
    let started = Instant::now();
    let mut sent = 0u64;
    let mut payload = String::new();
    while !stop.load(Ordering::Relaxed) {
        let reading = match fleet.next_reading() {
            Ok(r) => r,
            Err(crate::sources::Poll::Pending) => {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            Err(_) => break,
        };
        payload.clear();
        if args.json {
            payload.push_str(&format!(
                "{{\"record_id\":{},\"timestamp\":{},\"vin\":\"{}\",\"lon\":{},\"lat\":{},\"speed\":{}}}",
                reading.record_id, reading.timestamp, reading.vin, reading.lon, reading.lat, reading.speed
            ));
        } else {
            payload.push_str(&reading_line(&reading));
        }
        let key = reading.vin.as_str().to_string();
        let mut record = BaseRecord::to(&args.topic).key(&key).payload(&payload).timestamp(fleet.emitted_at() as i64);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err((e, _)) => return Err(e).context("publishing a reading"),
            }
        }
        sent += 1;
        if args.rate > 0 {
            let due = Duration::from_secs_f64(sent as f64 / args.rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
    producer.flush(Duration::from_secs(60)).context("flushing the producer")?;
    let failed = producer.context().failed.load(Ordering::Relaxed);
    anyhow::ensure!(failed == 0, "{failed} of {sent} readings were not delivered");
    info!("published {sent} readings to {} in {:.2}s", args.topic, started.elapsed().as_secs_f64());
    Ok(sent)
}
