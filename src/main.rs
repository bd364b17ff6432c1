//! The `fleetflow` binary: parses the command line and runs a subcommand; errors are reported with
//! their cause chain and a non-zero exit.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use fleetflow::cli::{Cli, Command};
use tracing::info;

/// Prints a line on stdout, best effort: a closed stdout (`| head`) is no reason to fail.
macro_rules! out {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// Prints a line on stderr, best effort.
macro_rules! err {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            err!("error: {}", one_line(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line, each cause once (an error that already quotes its
/// cause is not followed by it again). No backtrace: these are the user's errors to fix.
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain().map(|c| c.to_string()) {
        if !line.contains(&cause) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&cause);
        }
    }
    line
}

fn run() -> anyhow::Result<()> {
    // Before any thread starts: window bursts reuse freed memory instead of faulting it in again.
    fleetflow::malloc_tuning::keep_freed_memory();
    let cli = Cli::parse_args();
    // Logging is best effort: a closed stderr (a log shipper restarting) must not stop the job,
    // so a failed write is dropped rather than reported on the same closed stderr (which panics).
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&cli.log).context("--log: not a valid log filter (e.g. info)")?)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .log_internal_errors(false)
        .init();
    match cli.command.unwrap_or_else(|| Command::Run(Box::default())) {
        Command::Run(args) => run_job(args),
        Command::Produce(args) => produce(args),
        Command::Bench(args) => bench(args),
        Command::Aws(fleetflow::cli::AwsCommand::Setup(args)) => aws_setup(args),
        Command::OpenSearch(fleetflow::cli::OpenSearchCommand::Setup(args)) => opensearch_setup(args),
        Command::Schema(args) => fleetflow::commands::schema::schema(&args).map(|text| out!("{text}")),
        Command::Cluster(args) => fleetflow::commands::cluster::cluster(&args),
        Command::Replay(args) => replay(args),
        Command::Generate(args) => generate(args),
    }
}

/// `fleetflow run`: the job, stopped by a signal as the config says.
fn run_job(args: Box<fleetflow::cli::RunArgs>) -> anyhow::Result<()> {
    let config = args.config()?;
    if config.cluster.processes > 1 {
        fleetflow::peer_sockets::exit_when_a_peer_is_lost();
    }
    if args.print_config {
        out!("{}", toml::to_string(&*config).context("printing the config")?.trim_end());
        return Ok(());
    }
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let exact = config.stops_exactly();
    let timeout = Duration::from_secs(config.shutdown_timeout_secs);
    // (A signal of its own: the job also sets `stop` when it fails, which is not a first signal.)
    let signalled = AtomicBool::new(false);
    ctrlc::set_handler(move || {
            flag.store(true, Ordering::SeqCst);
            if signalled.swap(true, Ordering::SeqCst) {
                err!("second interrupt: exiting at once (nothing more is committed; a restart resumes from the last commit)");
                std::process::exit(130);
            }
            if exact {
                err!("stopping: reading paused, delivering and committing what closed windows produced; open windows stay open for the restart (signal again to abort)");
            } else {
                err!("stopping: closing every window, flushing sinks (signal again to abort)");
            }
            // A stop is bounded in time: a sink or broker that does not answer must not hold
            // the job until an orchestrator's SIGKILL. Commits follow deliveries, so leaving
            // now commits nothing undelivered.
            std::thread::spawn(move || {
                std::thread::sleep(timeout);
                err!(
                    "error: the stop did not finish within {} s (shutdown_timeout_secs): a sink or the Kafka broker is not answering; exiting without committing more, a restart resumes from the last commit",
                    timeout.as_secs()
                );
                std::process::exit(1);
            });
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

/// `fleetflow produce`: generated readings into a Kafka topic.
fn produce(args: fleetflow::commands::produce::ProduceArgs) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst)).context("installing the Ctrl-C handler")?;
    fleetflow::commands::produce::produce(&args, stop)?;
    Ok(())
}

/// `fleetflow bench`: windowed latency, printed and reported.
fn bench(args: fleetflow::commands::bench::BenchArgs) -> anyhow::Result<()> {
    let print = |r: &fleetflow::commands::bench::Report| {
        let (l, a) = (&r.window_latency_ms, &r.alert_latency_ms);
        out!(
            "offered {} readings/s, achieved {:.0}/s over {:.1}s ({} readings, {} workers)",
            r.rate_offered,
            r.rate_achieved,
            r.wall_secs,
            r.readings,
            r.workers
        );
        out!(
            "  window latency beyond the {} ms allowed lateness, {} windows: p50 {:.1} ms, p90 {:.1}, p99 {:.1}, p99.9 {:.1}, max {:.1}",
            r.allowed_lateness_ms,
            l.windows,
            l.p50,
            l.p90,
            l.p99,
            l.p999,
            l.max
        );
        let (s, d) = (&r.window_latency_source_ms, &r.window_latency_dataflow_ms);
        out!(
                "  of which until the sources' watermark passed the window's end: p50 {:.1} ms, p99 {:.1}; then the dataflow: p50 {:.1} ms, p99 {:.1}",
                s.p50, s.p99, d.p50, d.p99
            );
        let last: Vec<f64> = r.window_latency_by_boundary.iter().map(|b| b.last_ms).collect();
        if let (Some(best), Some(worst)) = (last.iter().copied().reduce(f64::min), last.iter().copied().reduce(f64::max)) {
            out!("  {} window boundaries, each one's last hand-off: best {best:.1} ms, worst {worst:.1}", last.len());
        }
        out!(
            "  alert latency from the window's end, {} alerts: p50 {:.1} ms, p90 {:.1}, p99 {:.1}, p99.9 {:.1}, max {:.1}",
            a.windows,
            a.p50,
            a.p90,
            a.p99,
            a.p999,
            a.max
        );
        out!("  CPU {:.1}s user + {:.1}s system, peak RSS {:.0} MiB", r.cpu_user_secs, r.cpu_system_secs, r.peak_rss_mib);
        if let Some(k) = &r.kafka {
            let broker = k.broker_cpu_secs.map_or("not on this machine".to_string(), |s| format!("{s:.1}s"));
            out!(
                "  through Kafka topic {}: send to read p50 {:.1} ms, p99 {:.1}, max {:.1}; CPU producer {:.1}s, broker {broker}",
                k.topic,
                k.read_delay_ms.p50,
                k.read_delay_ms.p99,
                k.read_delay_ms.max,
                k.producer_cpu_secs
            );
        }
    };
    match fleetflow::commands::bench::bench(&args)? {
        fleetflow::commands::bench::Outcome::Run(r) => print(&r),
        fleetflow::commands::bench::Outcome::Sweep(s) => {
            s.runs.iter().for_each(print);
            match s.highest_sustained_rate {
                Some(rate) => out!("highest sustained rate: {rate} readings/s (p99 window latency under {} ms)", s.max_p99_ms),
                None => out!("no rate sustained (p99 window latency under {} ms)", s.max_p99_ms),
            }
        }
    }
    out!("report in {}, plot in {}", args.report.display(), args.plot.display());
    Ok(())
}

/// `fleetflow aws setup`: the bucket, delivery streams and topics.
fn aws_setup(args: fleetflow::commands::aws_setup::SetupArgs) -> anyhow::Result<()> {
    let r = fleetflow::commands::aws_setup::setup(&args)?;
    for (bucket, created) in &r.buckets {
        out!("bucket {bucket}: {}", if *created { "created" } else { "exists" });
    }
    for s in &r.created_streams {
        out!("delivery stream {s}: created");
    }
    for s in &r.existing_streams {
        out!("delivery stream {s}: exists");
    }
    for t in &r.topics {
        out!("topic {t}: ready");
    }
    Ok(())
}

/// `fleetflow opensearch setup`: the index templates.
fn opensearch_setup(args: fleetflow::commands::opensearch_setup::SetupArgs) -> anyhow::Result<()> {
    for line in fleetflow::commands::opensearch_setup::setup(&args)? {
        out!("{line}");
    }
    Ok(())
}

/// `fleetflow replay`: past days from the archive.
fn replay(args: Box<fleetflow::commands::replay::ReplayArgs>) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst)).context("installing the Ctrl-C handler")?;
    let r = fleetflow::commands::replay::replay(&args, stop)?;
    let s = &r.summary;
    out!(
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
            out!("  {}: {} records", stream.as_str(), n);
        }
    }
    out!("  ({} records outside the replayed days computed for context, not written)", r.outside_range);
    Ok(())
}

/// `fleetflow generate`: readings and reference files.
fn generate(args: fleetflow::commands::generate::GenerateArgs) -> anyhow::Result<()> {
    let written = fleetflow::commands::generate::generate(&args)?;
    let to = if args.output.as_os_str() == "-" { "stdout".to_string() } else { args.output.display().to_string() };
    info!("wrote {written} readings to {to}");
    Ok(())
}
