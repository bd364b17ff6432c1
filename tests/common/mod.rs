//! Helpers shared by the integration tests: reading what a run wrote to a folder sink.

use std::path::{Path, PathBuf};

/// Every file under `root`, sorted (hidden temporary files included, so tests can look for them).
pub fn files_under(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[allow(dead_code)] // not every test binary compares lines
/// The sorted lines of a stream's output files (a killed run's hidden temporary files are not output).
pub fn lines_of(root: &Path, stream: &str) -> Vec<String> {
    let mut lines: Vec<String> = files_under(&root.join(stream))
        .iter()
        .filter(|p| !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
        .flat_map(|p| std::fs::read_to_string(p).unwrap_or_default().lines().map(String::from).collect::<Vec<_>>())
        .collect();
    lines.sort();
    lines
}

/// A loopback port whose successor is free too (both free when asked): a base port for a
/// 2-process cluster.
#[allow(dead_code)] // not every test binary runs a cluster
pub fn two_free_ports() -> u16 {
    loop {
        let first = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
        let port = first.local_addr().expect("a bound address").port();
        if port < 65_000 && std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
}
