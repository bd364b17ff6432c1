//! `fleetflow cluster`: starts N local processes of `fleetflow run`, connected by timely's cluster
//! communication on loopback, for trying a multi-process run on one machine. It writes the
//! hostfile, passes `-n N -p I -h HOSTFILE` to each, and fails if any process fails.

use clap::Args;
use std::io::Write;
use std::process::{Child, Command};

use anyhow::{bail, Context};

/// `fleetflow cluster` flags.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// Processes to start.
    #[arg(long, default_value_t = 2)]
    pub processes: usize,
    /// First loopback port of the processes' connections (one per process).
    #[arg(long, default_value_t = 2101)]
    pub base_port: u16,
    /// `fleetflow run` flags for every process (after `--`), e.g. `-- -w 2 --input a.txt b.txt`.
    #[arg(last = true)]
    pub run: Vec<String>,
}

/// Runs the cluster to completion.
pub fn cluster(args: &ClusterArgs) -> anyhow::Result<()> {
    if args.processes == 0 {
        bail!("--processes: 0; start at least 1 process");
    }
    let exe = std::env::current_exe().context("finding the fleetflow executable")?;
    let mut hostfile = tempfile_in_temp()?;
    for i in 0..args.processes {
        let port = u32::from(args.base_port) + i as u32;
        if port > u32::from(u16::MAX) {
            bail!("--base-port: {} + {} processes passes port 65535; pick a lower base port", args.base_port, args.processes);
        }
        writeln!(hostfile.1, "127.0.0.1:{port}").context("writing the hostfile")?;
    }
    hostfile.1.flush().context("writing the hostfile")?;
    let mut children: Vec<(usize, Child)> = Vec::new();
    for i in 0..args.processes {
        let child = Command::new(&exe)
            .arg("run")
            .args(&args.run)
            .args(["-n", &args.processes.to_string(), "-p", &i.to_string(), "-h"])
            .arg(&hostfile.0)
            .spawn()
            .with_context(|| format!("starting process {i}"))?;
        children.push((i, child));
    }
    let mut failed = Vec::new();
    for (i, mut child) in children {
        let status = child.wait().with_context(|| format!("waiting for process {i}"))?;
        if !status.success() {
            failed.push(format!("process {i}: {status}"));
        }
    }
    let _ = std::fs::remove_file(&hostfile.0);
    if !failed.is_empty() {
        bail!("{}", failed.join("; "));
    }
    Ok(())
}

fn tempfile_in_temp() -> anyhow::Result<(std::path::PathBuf, std::fs::File)> {
    let path = std::env::temp_dir().join(format!("fleetflow-hosts-{}.txt", std::process::id()));
    let file = std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    Ok((path, file))
}
