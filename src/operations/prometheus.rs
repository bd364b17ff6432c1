//! `/metrics`: the job's counters in the Prometheus text format. The counters live in
//! [`Metrics`] (relaxed atomics the workers bump); this collector reads them at scrape time, so
//! scraping costs the dataflow nothing.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::operations::metrics::Metrics;
use crate::operations::sink_counters::SinkCounters;
use crate::stream::StreamName;

/// Reads [`Metrics`] at each scrape.
#[derive(Debug)]
struct JobCollector(Arc<Metrics>);

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> Result<(), std::fmt::Error> {
    ConstCounter::new(value).encode(e.encode_descriptor(name, help, None, MetricType::Counter)?)
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, value: f64) -> Result<(), std::fmt::Error> {
    ConstGauge::new(value).encode(e.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

impl Collector for JobCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let m = &self.0;
        counter(&mut e, "fleetflow_records_read", "Records (lines or messages) read from sources", Metrics::get(&m.records_read))?;
        counter(&mut e, "fleetflow_readings", "Readings accepted into windows", Metrics::get(&m.readings))?;
        counter(&mut e, "fleetflow_malformed", "Malformed records, sent to the errors stream", Metrics::get(&m.malformed))?;
        counter(&mut e, "fleetflow_late", "Late readings, sent to the late stream", Metrics::get(&m.late))?;
        counter(&mut e, "fleetflow_blank", "Blank lines skipped", Metrics::get(&m.blank))?;
        counter(&mut e, "fleetflow_reference_updates", "Reference file edits applied", Metrics::get(&m.reference_updates))?;
        counter(&mut e, "fleetflow_reference_errors", "Reference file versions rejected", Metrics::get(&m.reference_errors))?;
        counter(&mut e, "fleetflow_checkpoint_parts", "Checkpoint parts this process's workers wrote", Metrics::get(&m.checkpoint_parts))?;
        counter(&mut e, "fleetflow_checkpoint_bytes", "Bytes of the checkpoint parts written", Metrics::get(&m.checkpoint_bytes))?;
        counter(
            &mut e,
            "fleetflow_checkpoint_states_dropped",
            "Boundaries whose saved states were dropped to keep within checkpoints.pending_mib",
            Metrics::get(&m.checkpoint_states_dropped),
        )?;
        {
            let mut family =
                e.encode_descriptor("fleetflow_records_out", "Records handed to sinks, per output stream", None, MetricType::Counter)?;
            for s in StreamName::all() {
                let labels = [("stream", s.as_str())];
                ConstCounter::new(m.out(s)).encode(family.encode_family(&labels)?)?;
            }
        }
        let sinks = m.sinks.lock().unwrap_or_else(|p| p.into_inner()).clone();
        type Field = fn(&SinkCounters) -> &std::sync::atomic::AtomicU64;
        let per_sink: [(&str, &str, Field); 5] = [
            ("fleetflow_sink_delivered", "Records a sink delivered", |c| &c.delivered),
            ("fleetflow_sink_retried", "Records a sink sent again after a failure", |c| &c.retried),
            ("fleetflow_sink_dead_lettered", "Records a sink wrote to its dead-letter folder", |c| &c.dead_lettered),
            ("fleetflow_sink_requests", "Requests a sink made", |c| &c.requests),
            ("fleetflow_sink_failed_requests", "Requests that failed as a whole (throttled, 5xx, timeout)", |c| &c.failed_requests),
        ];
        for (name, help, field) in per_sink {
            let mut family = e.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (sink, c) in &sinks {
                let labels = [("sink", sink.as_str())];
                ConstCounter::new(Metrics::get(field(c))).encode(family.encode_family(&labels)?)?;
            }
        }
        let now = crate::clock::now_ms();
        // (No gauge before the first reading: a watermark of 0 would be a lag of 56 years.)
        if let Some(w) = m.watermark().filter(|w| *w > 0) {
            gauge(&mut e, "fleetflow_watermark_seconds", "The job's watermark, epoch seconds", w as f64 / 1000.0)?;
            gauge(&mut e, "fleetflow_watermark_lag_seconds", "Wall clock minus the watermark", now.saturating_sub(w) as f64 / 1000.0)?;
        }
        let lag = m.kafka_lag.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if !lag.is_empty() {
            let mut family =
                e.encode_descriptor("fleetflow_kafka_lag", "Kafka consumer lag, messages, per partition", None, MetricType::Gauge)?;
            for (partition, l) in &lag {
                let labels = [("partition", partition.as_str())];
                ConstGauge::new(*l).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

/// The registry behind `/metrics`.
pub fn registry(metrics: Arc<Metrics>) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(JobCollector(metrics.clone())));
    registry.register(
        "fleetflow_window_latency_seconds",
        "From a window's end plus the allowed lateness (wall clock) to its hand-off to the sinks",
        MetricsHistogram(metrics),
    );
    registry
}

/// The latency histogram, shared with the workers that observe it.
#[derive(Debug, Clone)]
struct MetricsHistogram(Arc<Metrics>);

impl EncodeMetric for MetricsHistogram {
    fn encode(&self, encoder: prometheus_client::encoding::MetricEncoder) -> Result<(), std::fmt::Error> {
        self.0.window_latency_seconds.encode(encoder)
    }
    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// The OpenMetrics exposition of `registry` (what Prometheus asks for when it scrapes).
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, registry);
    out
}

/// The classic Prometheus text format (0.0.4) of `registry`, for clients that do not ask for
/// OpenMetrics (`curl`, `promtool check metrics`): a counter's `HELP` and `TYPE` name its
/// `_total` samples, and there is no `# EOF`.
pub fn render_classic(registry: &Registry) -> String {
    let open = render(registry);
    let counters: std::collections::HashSet<&str> =
        open.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter")).collect();
    let mut out = String::with_capacity(open.len() + 256);
    for line in open.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = line.strip_prefix("# HELP ").map(|r| ("# HELP ", r)).or_else(|| line.strip_prefix("# TYPE ").map(|r| ("# TYPE ", r)));
        match meta.and_then(|(p, r)| r.split_once(' ').map(|(name, rest)| (p, name, rest))) {
            Some((p, name, rest)) if counters.contains(name) => out.push_str(&format!("{p}{name}_total {rest}")),
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// Whether a scrape's `Accept` header asks for OpenMetrics.
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| a.contains("application/openmetrics-text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_families_are_exposed() {
        let m = Arc::new(Metrics::new(1));
        Metrics::add(&m.readings, 42);
        Metrics::add(&m.out[StreamName::named("alerts").index()], 3);
        Metrics::add(&m.sink("fh").dead_lettered, 2);
        Metrics::add(&m.checkpoint_states_dropped, 4);
        m.windows_handed_off(0, 1);
        let text = render(&registry(m));
        assert!(text.contains("fleetflow_readings_total 42"), "{text}");
        assert!(text.contains("fleetflow_records_out_total{stream=\"alerts\"} 3"), "{text}");
        assert!(text.contains("fleetflow_sink_dead_lettered_total{sink=\"fh\"} 2"), "{text}");
        assert!(text.contains("fleetflow_window_latency_seconds_count 1"), "{text}");
        assert!(text.contains("fleetflow_checkpoint_states_dropped_total 4"), "{text}");
        assert!(text.ends_with("# EOF\n"));
        let classic = render_classic(&registry(Arc::new(Metrics::new(1))));
        assert!(classic.contains("# TYPE fleetflow_readings_total counter\nfleetflow_readings_total 0\n"), "{classic}");
        assert!(classic.contains("# HELP fleetflow_readings_total Readings"), "{classic}");
        assert!(classic.contains("# TYPE fleetflow_window_latency_seconds histogram"), "{classic}");
        assert!(!classic.contains("# EOF"));
        assert!(!classic.contains("fleetflow_watermark_lag_seconds"), "no lag before a watermark: {classic}");
        assert!(wants_openmetrics(Some("application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.4")));
        assert!(!wants_openmetrics(Some("*/*")) && !wants_openmetrics(None));
    }

    #[test]
    fn the_dashboard_and_alert_rules_use_metrics_that_exist() {
        let m = Arc::new(Metrics::new(1));
        m.watermarks[0].store(1_000, std::sync::atomic::Ordering::Relaxed);
        m.kafka_lag.lock().unwrap().insert("vehicles/0".into(), 5);
        let _ = m.sink("fh");
        let text = render(&registry(m));
        for file in ["grafana-dashboard.json", "alerts.yml"] {
            let path = format!("{}/reference/monitoring/{file}", env!("CARGO_MANIFEST_DIR"));
            let content = std::fs::read_to_string(path).unwrap();
            let names = content.split(|c: char| !(c.is_ascii_lowercase() || c == '_')).filter(|w| w.starts_with("fleetflow_"));
            for name in names {
                assert!(text.contains(name), "{file} uses {name}, which /metrics does not have");
            }
        }
    }
}
