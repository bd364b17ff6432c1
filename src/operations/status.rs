//! The job's status as one JSON document (`GET /api/status`): what the status page draws, and
//! what a script can read without parsing Prometheus text. Figures are this process's.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fleetflow_dataflows::time::align;
use fleetflow_dataflows::Time;
use serde::Serialize;
use serde_json::{json, Value};

use crate::clock::now_ms;
use crate::encode::rfc3339;
use crate::operations::live_state::LiveState;
use crate::operations::metrics::Metrics;
use crate::stream::StreamName;

/// Samples kept (one a second: ten minutes).
const KEPT: usize = 600;

/// Window latency percentiles are taken over this many seconds of hand-offs.
const LATENCY_SPAN: usize = 10;

/// What the job is, for the page's overview.
#[derive(Debug, Clone, Serialize)]
pub struct JobInfo {
    /// The source, in words (`kafka brokers/topic (group g)`, `files a.txt b.txt`, ...).
    pub source: String,
    /// Workers per process.
    pub workers: usize,
    /// Processes in the cluster.
    pub processes: usize,
    /// This process's index.
    pub process: usize,
    /// When the job started, epoch ms.
    pub started_ms: u64,
    /// A digest of the effective configuration (FNV-1a 64 of its TOML), to tell deployments apart.
    pub config_digest: String,
    /// Tumbling window length, seconds.
    pub window_secs: u64,
    /// Allowed lateness, seconds.
    pub lateness_secs: f64,
}

/// One second of the job.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Sample {
    /// When, epoch ms.
    pub t: u64,
    /// Readings per second.
    pub rate: f64,
    /// Watermark lag behind the wall clock, seconds (none before the first watermark).
    pub lag_s: Option<f64>,
    /// Window latency percentiles over the last ten seconds of hand-offs, ms (none without any).
    pub p50_ms: Option<f64>,
    /// As `p50_ms`, the 99th percentile.
    pub p99_ms: Option<f64>,
}

/// The last ten minutes, one sample a second.
#[derive(Default)]
pub struct Samples {
    points: Mutex<VecDeque<Sample>>,
}

impl Samples {
    /// The samples, oldest first.
    pub fn points(&self) -> Vec<Sample> {
        self.points.lock().unwrap_or_else(|p| p.into_inner()).iter().copied().collect()
    }

    fn push(&self, sample: Sample) {
        let mut p = self.points.lock().unwrap_or_else(|p| p.into_inner());
        p.push_back(sample);
        if p.len() > KEPT {
            p.pop_front();
        }
    }
}

/// Samples `metrics` every second until the job stops.
pub async fn sample(samples: Arc<Samples>, metrics: Arc<Metrics>, live: Arc<LiveState>) {
    let mut sampler = Sampler::new(&metrics);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    while !live.stopping.load(Ordering::Relaxed) {
        tick.tick().await;
        samples.push(sampler.next(&metrics, now_ms()));
    }
}

/// What a sample is taken against: the readings and latency buckets of earlier samples.
pub struct Sampler {
    readings: u64,
    /// The latency histogram's buckets a second ago, ..., `LATENCY_SPAN` seconds ago.
    history: VecDeque<Vec<u64>>,
}

impl Sampler {
    /// A sampler starting from `metrics` as they are (the first sample covers what happens until it).
    pub fn new(metrics: &Metrics) -> Self {
        let history = VecDeque::from([metrics.window_latency_seconds.snapshot().1]);
        Sampler { readings: Metrics::get(&metrics.readings), history }
    }

    /// The sample at wall-clock time `t` (epoch ms), a second after the previous one.
    pub fn next(&mut self, metrics: &Metrics, t: u64) -> Sample {
        let now = Metrics::get(&metrics.readings);
        // No lag before the first watermark (a watermark of 0 would be a lag of 56 years).
        let lag_s = metrics.watermark().filter(|w| *w > 0).map(|w| t.saturating_sub(w) as f64 / 1000.0);
        let (bounds, counts) = metrics.window_latency_seconds.snapshot();
        let span = self.history.front().map(|old| counts.iter().zip(old).map(|(c, o)| c.saturating_sub(*o)).collect::<Vec<u64>>());
        let quantile = |q: f64| span.as_ref().and_then(|s| quantile(&bounds, s, q)).map(|s| s * 1000.0);
        let sample = Sample { t, rate: now.saturating_sub(self.readings) as f64, lag_s, p50_ms: quantile(0.5), p99_ms: quantile(0.99) };
        self.history.push_back(counts);
        if self.history.len() > LATENCY_SPAN {
            self.history.pop_front();
        }
        self.readings = now;
        sample
    }
}

/// The `q` quantile of a histogram with upper `bounds` (then `+Inf`) and bucket `counts`, by
/// linear interpolation within the bucket, as Prometheus' `histogram_quantile` does.
pub fn quantile(bounds: &[f64], counts: &[u64], q: f64) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut below = 0u64;
    for (i, &c) in counts.iter().enumerate() {
        if c > 0 && (below + c) as f64 >= rank {
            let lower = if i == 0 { 0.0 } else { bounds[i - 1] };
            // Above the last bound: the last bound is the best estimate there is.
            let Some(&upper) = bounds.get(i) else { return bounds.last().copied() };
            return Some(lower + (upper - lower) * ((rank - below as f64) / c as f64));
        }
        below += c;
    }
    bounds.last().copied()
}

/// Per configured sink: its delivery figures and latest error.
fn sinks(metrics: &Metrics) -> Vec<Value> {
    let sinks = metrics.sinks.lock().unwrap_or_else(|p| p.into_inner()).clone();
    sinks
        .iter()
        .map(|(name, c)| {
            let last_error = c.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone();
            json!({
                "name": name,
                "handed": c.handed(),
                "pending": c.pending(),
                "delivered": Metrics::get(&c.delivered),
                "retried": Metrics::get(&c.retried),
                "dead_lettered": Metrics::get(&c.dead_lettered),
                "failed_requests": Metrics::get(&c.failed_requests),
                "last_error": last_error.map(|(at, e)| json!({"at": rfc3339(at), "error": e})),
            })
        })
        .collect()
}

/// The latest alerts, newest first, each with where its vehicle was last seen (if watched).
fn alerts(live: &LiveState) -> Vec<Value> {
    let positions = live.alert_positions.positions();
    live.recent_alerts()
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .map(|mut alert| {
            let vin = alert["vin"].as_str().and_then(|v| fleetflow_dataflows::Vin::parse(v.as_bytes()).ok());
            if let Some(p) = vin.and_then(|v| positions.get(&v)) {
                alert["last_seen"] = json!({"lon": p.lon, "lat": p.lat, "at": rfc3339(p.at)});
            }
            alert
        })
        .collect()
}

/// When the next tumbling windows close, for a job that has not closed any yet: the end of the
/// window the watermark is in (the watermark already trails the readings by the lateness).
fn next_close(info: &JobInfo, metrics: &Metrics) -> Option<String> {
    let window = info.window_secs.max(1) * 1000;
    let w = metrics.watermark().filter(|w| *w > 0)?;
    let end = align(w, window) + window;
    Some(format!("{} (in about {} s)", rfc3339(end), (end - w).div_ceil(1000)))
}

/// The analyses' queries by date, for the page's tables: name, what it answers, its columns.
fn queries(live: &LiveState) -> Value {
    live.date_queries
        .iter()
        .map(|q| json!({ "name": q.spec.name, "about": q.spec.about, "columns": q.spec.columns, "rank": q.spec.rank_field }))
        .collect()
}

/// The whole status document; `tops` holds each query's top rows of `day` (as `top_<name>`).
pub fn snapshot(info: &JobInfo, metrics: &Metrics, live: &LiveState, samples: &Samples, day: Time, tops: &[(&str, Vec<Value>)]) -> Value {
    let points = samples.points();
    let last = points.last();
    let streams: serde_json::Map<String, Value> = StreamName::all().map(|s| (s.as_str().to_string(), json!(metrics.out(s)))).collect();
    let windows_out = metrics.out_of(crate::stream::Timing::WindowClose);
    let mut status = json!({
        "job": info,
        "uptime_secs": now_ms().saturating_sub(info.started_ms) / 1000,
        "ready": live.ready.load(Ordering::Relaxed),
        "stopping": live.stopping.load(Ordering::Relaxed),
        "records_read": Metrics::get(&metrics.records_read),
        "readings": Metrics::get(&metrics.readings),
        "rate": last.map(|s| s.rate).unwrap_or(0.0),
        "watermark": metrics.watermark().filter(|w| *w > 0).map(rfc3339),
        "watermark_lag_s": last.and_then(|s| s.lag_s),
        "first_windows": (windows_out == 0).then(|| next_close(info, metrics)).flatten(),
        "late": Metrics::get(&metrics.late),
        "malformed": Metrics::get(&metrics.malformed),
        "streams": streams,
        "sinks": sinks(metrics),
        "kafka_lag": metrics.kafka_lag.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        "rejects": metrics.recent_rejects.lock().unwrap_or_else(|p| p.into_inner()).iter().rev().collect::<Vec<_>>(),
        "alerts": alerts(live),
        "day": crate::encode::date(day),
        "queries": queries(live),
        "samples": points,
    });
    for (name, rows) in tops {
        status[format!("top_{name}")] = json!(rows);
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_have_no_lag_before_a_watermark_and_latency_over_recent_hand_offs() {
        let m = Metrics::new(1);
        let mut sampler = Sampler::new(&m);
        let t = 1_764_028_800_000;
        let first = sampler.next(&m, t);
        assert_eq!((first.lag_s, first.p99_ms, first.rate), (None, None, 0.0), "nothing yet: {first:?}");
        // Hand-offs before the first sample count in it.
        let mut late_start = Sampler::new(&m);
        m.window_latency_seconds.observe_n(0.001, 1);
        assert!(late_start.next(&m, t).p50_ms.is_some());
        m.watermarks[0].store(t - 2_500, Ordering::Relaxed);
        Metrics::add(&m.readings, 700);
        m.window_latency_seconds.observe_n(0.003, 10);
        let second = sampler.next(&m, t + 1_000);
        assert_eq!((second.lag_s, second.rate), (Some(3.5), 700.0));
        let p50 = second.p50_ms.unwrap();
        assert!((2.0..=4.0).contains(&p50), "in the (2, 4] ms bucket: {p50}");
    }

    #[test]
    fn quantiles_interpolate_within_the_bucket_as_prometheus_does() {
        let bounds = [0.001, 0.002, 0.004];
        assert_eq!(quantile(&bounds, &[0, 0, 0, 0], 0.5), None);
        // 10 observations in (0.002, 0.004]: the median is halfway through that bucket.
        assert_eq!(quantile(&bounds, &[0, 0, 10, 0], 0.5), Some(0.003));
        // 99 in the first bucket, 1 above every bound.
        assert_eq!(quantile(&bounds, &[99, 0, 0, 1], 0.5), Some(0.001 * 50.0 / 99.0));
        assert_eq!(quantile(&bounds, &[99, 0, 0, 1], 1.0), Some(0.004));
    }
}
