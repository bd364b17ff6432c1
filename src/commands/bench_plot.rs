//! Plots of `fleetflow bench` results as SVG (plotters): the window latency distribution of one
//! run, and for a sweep the latency percentiles against the offered rate, so a user looks rather
//! than reads.

use std::path::Path;

use anyhow::Context;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::bench_report::{Report, Sweep};

const SIZE: (u32, u32) = (900, 520);

/// A plotted series: its name, colour and value of a run.
type Series = (&'static str, RGBColor, fn(&Report) -> f64);

fn failed<E: std::fmt::Debug>(path: &Path) -> impl Fn(E) -> anyhow::Error + '_ {
    move |e| anyhow::anyhow!("drawing {}: {e:?}", path.display())
}

/// The share of windows handed off within each latency (beyond the allowed lateness).
pub fn latency_cdf(path: &Path, r: &Report) -> anyhow::Result<()> {
    let fail = failed(path);
    let points: Vec<(f64, f64)> = r.window_latency_cdf.iter().map(|&(q, ms)| (ms, q)).collect();
    let max_ms = points.iter().map(|p| p.0).fold(1.0f64, f64::max) * 1.05;
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(&fail)?;
    let caption = format!("window latency at {} readings/s offered ({:.0} achieved)", r.rate_offered, r.rate_achieved);
    root.draw(&Text::new(caption, (20, 12), ("sans-serif", 18).into_font())).map_err(&fail)?;
    root.draw(&Text::new(settings(r), (20, 36), ("sans-serif", 13).into_font().color(&BLACK.mix(0.7)))).map_err(&fail)?;
    let mut chart = ChartBuilder::on(&root)
        .margin(15)
        .margin_top(60)
        .margin_right(30)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..max_ms, 0f64..1f64)
        .map_err(&fail)?;
    chart
        .configure_mesh()
        .x_desc(format!("ms after the window's end + {} ms allowed lateness", r.allowed_lateness_ms))
        .y_desc("share of windows handed off")
        .draw()
        .map_err(&fail)?;
    chart.draw_series(LineSeries::new(points, BLUE.stroke_width(2))).map_err(&fail)?;
    let p99 = r.window_latency_ms.p99;
    chart.draw_series(LineSeries::new(vec![(p99, 0.0), (p99, 0.99)], RED.stroke_width(1))).map_err(&fail)?;
    // The label on the side of the line with room for it.
    let style = ("sans-serif", 14).into_font().color(&RED);
    let style = if p99 > max_ms * 0.6 { style.pos(Pos::new(HPos::Right, VPos::Center)) } else { style };
    chart.draw_series(std::iter::once(Text::new(format!("p99 {p99:.1} ms "), (p99, 0.5), style))).map_err(&fail)?;
    root.present().with_context(|| format!("writing {}", path.display()))
}

/// The run's settings, under the title.
fn settings(r: &Report) -> String {
    format!(
        "{} worker(s), {} vehicles, {} s windows, {} ms allowed lateness, {} ms largest delay, {:.0} s run",
        r.workers, r.vehicles, r.window_secs, r.allowed_lateness_ms, r.max_delay_ms, r.wall_secs
    )
}

/// p50, p99 and p99.9 window latency against the offered rate, and the rate achieved.
pub fn latency_by_rate(path: &Path, s: &Sweep) -> anyhow::Result<()> {
    let fail = failed(path);
    let max_rate = s.runs.iter().map(|r| r.rate_offered as f64).fold(1.0, f64::max) * 1.1;
    let max_ms = s.runs.iter().map(|r| r.window_latency_ms.p999).fold(1.0, f64::max).min(s.max_p99_ms * 4.0) * 1.1;
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(&fail)?;
    let caption = match s.highest_sustained_rate {
        Some(rate) => format!("window latency against rate: {rate} readings/s sustained"),
        None => "window latency against rate: no rate sustained".to_string(),
    };
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 18))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..max_rate, 0f64..max_ms)
        .map_err(&fail)?;
    chart.configure_mesh().x_desc("readings/s offered").y_desc("ms after the window's end + the allowed lateness").draw().map_err(&fail)?;
    let series: [Series; 3] = [
        ("p50", BLUE, |r| r.window_latency_ms.p50),
        ("p99", RED, |r| r.window_latency_ms.p99),
        ("p99.9", MAGENTA, |r| r.window_latency_ms.p999),
    ];
    for (name, color, value) in series {
        let points: Vec<(f64, f64)> = s.runs.iter().map(|r| (r.rate_offered as f64, value(r).min(max_ms))).collect();
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(&fail)?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart.configure_series_labels().background_style(WHITE).border_style(BLACK).draw().map_err(&fail)?;
    root.present().with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::bench_report::Percentiles;

    fn report(rate: u64, p99: f64) -> Report {
        let pct = |m: f64| Percentiles { windows: 100, p50: m / 2.0, p90: m * 0.8, p99: m, p999: m * 1.2, max: m * 1.5 };
        Report {
            rate_offered: rate,
            rate_achieved: rate as f64,
            readings: rate * 70,
            wall_secs: 70.0,
            workers: 2,
            vehicles: 10_000,
            allowed_lateness_ms: 5_000,
            window_secs: 60,
            max_delay_ms: 2_000,
            window_latency_ms: pct(p99),
            alert_latency_ms: pct(p99 + 5_000.0),
            window_latency_source_ms: pct(p99 / 2.0),
            window_latency_dataflow_ms: pct(p99 / 2.0),
            window_latency_by_boundary: Vec::new(),
            window_latency_cdf: vec![(0.0, 0.5), (0.5, 2.0), (0.99, p99), (1.0, p99 * 1.5)],
            cpu_user_secs: 1.0,
            cpu_system_secs: 0.1,
            peak_rss_mib: 100.0,
            checkpoints: None,
            kafka: None,
        }
    }

    #[test]
    fn draws_a_distribution_and_a_sweep_as_svg() {
        let dir = tempfile::tempdir().unwrap();
        let one = dir.path().join("one.svg");
        latency_cdf(&one, &report(500_000, 7.5)).unwrap();
        let svg = std::fs::read_to_string(&one).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("polyline") && svg.contains("p99 7.5 ms"), "{svg}");
        assert!(svg.contains("2 worker(s), 10000 vehicles, 60 s windows, 5000 ms allowed lateness"), "the settings: {svg}");
        let sweep = Sweep {
            runs: vec![report(500_000, 5.0), report(750_000, 9.0), report(1_125_000, 4_000.0)],
            highest_sustained_rate: Some(750_000),
            max_p99_ms: 1_000.0,
        };
        let many = dir.path().join("sweep.svg");
        latency_by_rate(&many, &sweep).unwrap();
        let svg = std::fs::read_to_string(&many).unwrap();
        assert!(svg.contains("750000 readings/s sustained") && svg.matches("polyline").count() >= 3, "{svg}");
    }
}
