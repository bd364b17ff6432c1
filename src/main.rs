//! The `fleetflow` binary: parses the command line and runs a subcommand; errors are reported with
//! their cause chain and a non-zero exit.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use fleetflow::cli::{Cli, Command};
use tracing::info;

fn main() -> anyhow::Result<()> {
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
        Command::Generate(args) => {
            let written = fleetflow::generate::generate(&args)?;
            info!("wrote {} lines to {}", written, args.output.display());
            Ok(())
        }
    }
}
