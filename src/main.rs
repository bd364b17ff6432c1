//! The `fleetflow` binary: parses the command line and runs a subcommand; errors are reported with
//! their cause chain and a non-zero exit.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use fleetflow::cli::{Cli, Command};
use tracing::info;

fn main() -> anyhow::Result<()> {
    // Before any thread starts: window bursts reuse freed memory instead of faulting it in again.
    fleetflow::allocator::keep_freed_memory();
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&cli.log).context("--log: not a valid log filter (e.g. info)")?)
        .with_writer(std::io::stderr)
        .init();
    match cli.command.unwrap_or_else(|| Command::Run(Box::default())) {
        Command::Run(args) => {
            let config = args.config()?;
            if args.print_config {
                print!("{}", toml::to_string(&config).context("printing the config")?);
                return Ok(());
            }
            let stop = Arc::new(AtomicBool::new(false));
            let flag = stop.clone();
            ctrlc::set_handler(move || {
                if flag.swap(true, Ordering::SeqCst) {
                    eprintln!("second interrupt: exiting without flushing");
                    std::process::exit(130);
                }
                eprintln!("interrupt: closing windows, flushing sinks (Ctrl-C again to abort)");
            })
            .context("installing the Ctrl-C handler")?;
            let summary = fleetflow::job::run(config, stop)?;
            info!(
                "done: {} records read, {} readings, {} blank, {} malformed, {} late",
                summary.records_read, summary.readings, summary.blank, summary.malformed, summary.late
            );
            for (stream, n) in &summary.out {
                info!("  {}: {} records", stream.as_str(), n);
            }
            Ok(())
        }
        Command::Produce(args) => {
            let stop = Arc::new(AtomicBool::new(false));
            let flag = stop.clone();
            ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst)).context("installing the Ctrl-C handler")?;
            fleetflow::produce::produce(&args, stop)?;
            Ok(())
        }
        Command::Bench(args) => {
            let print = |r: &fleetflow::bench::Report| {
                let (l, a) = (&r.window_latency_ms, &r.alert_latency_ms);
                println!(
                    "offered {} readings/s, achieved {:.0}/s over {:.1}s ({} readings, {} workers)",
                    r.rate_offered, r.rate_achieved, r.wall_secs, r.readings, r.workers
                );
                println!(
                    "  window latency beyond the {} ms allowed lateness, {} windows: p50 {:.1} ms, p90 {:.1}, p99 {:.1}, p99.9 {:.1}, max {:.1}",
                    r.allowed_lateness_ms, l.windows, l.p50, l.p90, l.p99, l.p999, l.max
                );
                let (s, d) = (&r.window_latency_source_ms, &r.window_latency_dataflow_ms);
                println!(
                    "  of which until the sources' watermark passed the window's end: p50 {:.1} ms, p99 {:.1}; then the dataflow: p50 {:.1} ms, p99 {:.1}",
                    s.p50, s.p99, d.p50, d.p99
                );
                let last: Vec<f64> = r.window_latency_by_boundary.iter().map(|b| b.last_ms).collect();
                if let (Some(best), Some(worst)) = (last.iter().copied().reduce(f64::min), last.iter().copied().reduce(f64::max)) {
                    println!("  {} window boundaries, each one's last hand-off: best {best:.1} ms, worst {worst:.1}", last.len());
                }
                println!(
                    "  alert latency from the window's end, {} alerts: p50 {:.1} ms, p90 {:.1}, p99 {:.1}, p99.9 {:.1}, max {:.1}",
                    a.windows, a.p50, a.p90, a.p99, a.p999, a.max
                );
                println!("  CPU {:.1}s user + {:.1}s system, peak RSS {:.0} MiB", r.cpu_user_secs, r.cpu_system_secs, r.peak_rss_mib);
            };
            match fleetflow::bench::bench(&args)? {
                fleetflow::bench::Outcome::Run(r) => print(&r),
                fleetflow::bench::Outcome::Sweep(s) => {
                    s.runs.iter().for_each(print);
                    match s.highest_sustained_rate {
                        Some(rate) => println!("highest sustained rate: {rate} readings/s (p99 window latency under {} ms)", s.max_p99_ms),
                        None => println!("no rate sustained (p99 window latency under {} ms)", s.max_p99_ms),
                    }
                }
            }
            println!("report in {}, plot in {}", args.report.display(), args.plot.display());
            Ok(())
        }
        Command::Aws(fleetflow::cli::AwsCommand::Setup(args)) => {
            let r = fleetflow::aws_setup::setup(&args)?;
            println!("bucket {}: {}", args.bucket, if r.created_bucket { "created" } else { "exists" });
            for s in &r.created_streams {
                println!("delivery stream {s}: created");
            }
            for s in &r.existing_streams {
                println!("delivery stream {s}: exists");
            }
            for t in &r.topics {
                println!("topic {t}: ready");
            }
            Ok(())
        }
        Command::Cluster(args) => fleetflow::cluster::cluster(&args),
        Command::Replay(args) => {
            let stop = Arc::new(AtomicBool::new(false));
            let flag = stop.clone();
            ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst)).context("installing the Ctrl-C handler")?;
            let r = fleetflow::replay::replay(&args, stop)?;
            let s = &r.summary;
            println!(
                "replayed {} readings ({} MB) in {:.2}s: {:.0} readings/s, {:.1} MB/s; {} late, {} malformed, {} outside the days and margin",
                s.readings,
                r.bytes / 1_000_000,
                r.secs,
                s.readings as f64 / r.secs.max(1e-9),
                r.bytes as f64 / 1e6 / r.secs.max(1e-9),
                s.late,
                s.malformed,
                r.skipped
            );
            for (stream, n) in &s.out {
                if *n > 0 {
                    println!("  {}: {} records", stream.as_str(), n);
                }
            }
            println!("  ({} records outside the replayed days computed for context, not written)", r.outside_range);
            Ok(())
        }
        Command::Generate(args) => {
            let written = fleetflow::generate::generate(&args)?;
            info!("wrote {} lines to {}", written, args.output.display());
            Ok(())
        }
    }
}
