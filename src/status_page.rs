//! `GET /`: a status page rendered on the server (no build step, no script): throughput and
//! watermark lag over the last ten minutes as inline SVG charts, the latest alerts and the
//! day's top speeders. It refreshes itself every five seconds.

use std::collections::VecDeque;
use std::fmt::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::live::{LiveState, SpeederRow};
use crate::metrics::Metrics;

/// Samples kept (one a second).
const KEPT: usize = 600;

/// Throughput and watermark lag, sampled every second.
#[derive(Default)]
pub struct Samples {
    points: Mutex<VecDeque<(f64, f64)>>,
}

impl Samples {
    /// Readings per second and watermark lag (s), oldest first.
    pub fn points(&self) -> Vec<(f64, f64)> {
        self.points.lock().unwrap_or_else(|p| p.into_inner()).iter().copied().collect()
    }

    fn push(&self, point: (f64, f64)) {
        let mut p = self.points.lock().unwrap_or_else(|p| p.into_inner());
        p.push_back(point);
        if p.len() > KEPT {
            p.pop_front();
        }
    }
}

/// Samples `metrics` every second until the job stops.
pub async fn sample(samples: Arc<Samples>, metrics: Arc<Metrics>, live: Arc<LiveState>) {
    let mut last = Metrics::get(&metrics.readings);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    while !live.stopping.load(std::sync::atomic::Ordering::Relaxed) {
        tick.tick().await;
        let now = Metrics::get(&metrics.readings);
        let lag = metrics.watermark().map(|w| crate::sources::driver::now_ms().saturating_sub(w) as f64 / 1000.0).unwrap_or(0.0);
        samples.push(((now - last) as f64, lag));
        last = now;
    }
}

/// An SVG line chart of `values`.
fn chart(values: &[f64], label: &str) -> String {
    let (w, h) = (600.0, 80.0);
    let max = values.iter().copied().fold(0.0f64, f64::max).max(1e-9);
    let n = values.len().max(2) as f64 - 1.0;
    let points: Vec<String> =
        values.iter().enumerate().map(|(i, v)| format!("{:.1},{:.1}", i as f64 / n * w, h - v / max * (h - 4.0))).collect();
    format!(
        "<figure><figcaption>{label} (max {max:.1})</figcaption><svg width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\">\
         <rect width=\"{w}\" height=\"{h}\" fill=\"#f6f8fa\"/><polyline fill=\"none\" stroke=\"#0969da\" stroke-width=\"2\" points=\"{}\"/></svg></figure>",
        points.join(" ")
    )
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The page.
pub fn render(metrics: &Metrics, live: &LiveState, samples: &Samples, day: u64, top: &[SpeederRow]) -> String {
    let points = samples.points();
    let rate: Vec<f64> = points.iter().map(|p| p.0).collect();
    let lag: Vec<f64> = points.iter().map(|p| p.1).collect();
    let mut html = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"5\"><title>fleetflow</title>\
         <style>body{font-family:system-ui,sans-serif;margin:2em;color:#1f2328}table{border-collapse:collapse}\
         td,th{padding:2px 10px;border-bottom:1px solid #d0d7de;text-align:left}code{font-size:90%}</style></head><body><h1>fleetflow</h1>",
    );
    let watermark = metrics.watermark().map(crate::encode::rfc3339).unwrap_or_else(|| "none yet".into());
    let _ = write!(
        html,
        "<table id=\"figures\"><tr><th>readings</th><td id=\"readings\">{}</td></tr><tr><th>readings/s (last)</th><td>{:.0}</td></tr>\
         <tr><th>watermark</th><td>{watermark}</td></tr><tr><th>watermark lag</th><td>{:.1} s</td></tr>\
         <tr><th>late</th><td>{}</td></tr><tr><th>malformed</th><td>{}</td></tr><tr><th>alerts</th><td>{}</td></tr></table>",
        Metrics::get(&metrics.readings),
        rate.last().copied().unwrap_or(0.0),
        lag.last().copied().unwrap_or(0.0),
        Metrics::get(&metrics.late),
        Metrics::get(&metrics.malformed),
        metrics.out(crate::route::StreamName::ALERTS),
    );
    html.push_str(&chart(&rate, "readings per second"));
    html.push_str(&chart(&lag, "watermark lag, seconds"));
    let _ = write!(
        html,
        "<h2>Top speeders on {}</h2><table id=\"top\"><tr><th>vin</th><th>speeding readings</th><th>max mph</th></tr>",
        crate::encode::date(day)
    );
    for r in top {
        let _ = write!(html, "<tr><td>{}</td><td>{}</td><td>{:.1}</td></tr>", escape(&r.vin), r.speeding_readings, r.max_speed);
    }
    html.push_str("</table><h2>Latest alerts</h2><ul id=\"alerts\">");
    for a in live.recent_alerts() {
        let _ = write!(html, "<li><code>{}</code></li>", escape(&a));
    }
    html.push_str("</ul></body></html>\n");
    html
}
