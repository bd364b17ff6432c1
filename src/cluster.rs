//! `fleetflow cluster`: starts N local processes of `fleetflow run`, connected by timely's cluster
//! communication on loopback, for trying a multi-process run on one machine. It writes the
//! hostfile, passes `-n N -p I -h HOSTFILE` to each, and fails if any process fails.

use std::io::Write;
use std::process::{Child, Command};

use anyhow::{bail, Context};

use crate::cli::ClusterArgs;

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

/// Makes the loss of another process of a cluster one line and a clean exit, not a cascade of
/// panics with backtraces.
///
/// Timely's network threads panic with `timely communication error: ...` when a peer's connection
/// breaks (the peer was killed or crashed), and the workers then panic on poisoned queues. This
/// hook says once which process was lost and exits 1 at once: nothing more is written or
/// committed, and a Kafka source resumes from its last commit when the cluster restarts. Other
/// panics keep the default report.
pub fn exit_when_a_peer_is_lost() {
    static REPORTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        let thread = std::thread::current().name().unwrap_or_default().to_string();
        let network = message.starts_with("timely communication error:")
            || message.contains("MergeQueue poisoned")
            || message.starts_with("Send thread panic")
            || message.starts_with("Recv thread panic");
        if !network {
            return default(info);
        }
        if !REPORTED.swap(true, std::sync::atomic::Ordering::SeqCst) {
            // Timely names a connection's threads `timely:recv-N` / `timely:send-N` after the peer.
            let peer = match thread.strip_prefix("timely:recv-").or_else(|| thread.strip_prefix("timely:send-")) {
                Some(n) => format!("process {n}"),
                None => "a process".to_string(),
            };
            let line = format!(
                "error: lost {peer} of the cluster ({message}): it stopped or crashed; stopping this process too (nothing more is committed; restart the cluster, a Kafka source resumes from its last commit)\n"
            );
            let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
        }
        std::process::exit(1);
    }));
}
