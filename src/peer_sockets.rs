//! A cluster's processes: connecting them before timely starts its workers, and reporting the
//! loss of one.
//!
//! Timely's own connect loop prints every retry to stdout (`worker 1: error connecting to worker
//! 0: Connection refused; retrying`, once a second while a peer starts) and waits without end for
//! a peer that never comes. This makes timely's handshake itself (each process connects to the
//! processes before it and sends its index as a big-endian `u64`; it accepts the processes after
//! it on its own address), logs the retries at debug, and gives up after a timeout with one line.
//! The sockets then go to `initialize_networking_from_sockets`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use tracing::debug;

/// The cluster did not form.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// Not every peer connected in time.
    #[error(
        "the cluster did not form within {secs} s (cluster.connect_timeout_secs): not every process of {hosts} connected (waiting for {missing}); start each with the same hostfile (-n N -p 0..N-1 -h FILE), or give them more time"
    )]
    Timeout {
        /// The timeout, seconds.
        secs: u64,
        /// Every process's address.
        hosts: String,
        /// The processes that did not connect.
        missing: String,
    },
    /// This process's own address cannot be listened on.
    #[error("cluster: listening on {addr} (this process's line of the hostfile): {source}")]
    Listen {
        /// The address.
        addr: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// One socket per process of `addresses`, in order, `None` at `me`; within `timeout`.
pub fn connect(addresses: &[String], me: usize, timeout: Duration) -> Result<Vec<Option<TcpStream>>, PeerError> {
    let deadline = Instant::now() + timeout;
    let listeners = addresses[me]
        .split_whitespace()
        .map(|a| TcpListener::bind(a).and_then(|l| l.set_nonblocking(true).map(|_| l)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| PeerError::Listen { addr: addresses[me].clone(), source })?;
    let (before, after) = std::thread::scope(|s| {
        let before = s.spawn(|| connect_before(addresses, me, deadline));
        let after = accept_after(&listeners, addresses.len(), me, deadline);
        (before.join().unwrap_or_default(), after)
    });
    let missing: Vec<String> = before
        .iter()
        .enumerate()
        .filter(|(_, s)| s.is_none())
        .map(|(i, _)| i)
        .chain(after.iter().enumerate().filter(|(_, s)| s.is_none()).map(|(i, _)| me + 1 + i))
        .map(|i| format!("process {i} at {}", addresses[i]))
        .collect();
    if !missing.is_empty() {
        return Err(PeerError::Timeout { secs: timeout.as_secs(), hosts: addresses.join(", "), missing: missing.join(", ") });
    }
    Ok(before.into_iter().chain(std::iter::once(None)).chain(after).collect())
}

/// Connects to each process before `me`, sending `me`, retrying until `deadline`.
fn connect_before(addresses: &[String], me: usize, deadline: Instant) -> Vec<Option<TcpStream>> {
    let mut sockets = Vec::with_capacity(me);
    for (peer, address) in addresses.iter().enumerate().take(me) {
        let mut socket = None;
        while socket.is_none() && Instant::now() < deadline {
            match TcpStream::connect(address).and_then(|mut s| {
                s.set_nodelay(true)?;
                s.write_all(&(me as u64).to_be_bytes())?;
                Ok(s)
            }) {
                Ok(s) => socket = Some(s),
                Err(e) => {
                    debug!("process {me}: connecting to process {peer} at {address}: {e}; retrying");
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
        sockets.push(socket);
    }
    sockets
}

/// Accepts each process after `me` (of `processes`), which says its index, until `deadline`.
fn accept_after(listeners: &[TcpListener], processes: usize, me: usize, deadline: Instant) -> Vec<Option<TcpStream>> {
    let mut sockets: Vec<Option<TcpStream>> = (me + 1..processes).map(|_| None).collect();
    while sockets.iter().any(Option::is_none) && Instant::now() < deadline {
        let mut accepted = false;
        for listener in listeners {
            let Ok((mut stream, from)) = listener.accept() else { continue };
            accepted = true;
            let mut index = [0u8; 8];
            let said = stream
                .set_nonblocking(false)
                .and_then(|_| stream.set_read_timeout(Some(Duration::from_secs(5))))
                .and_then(|_| stream.read_exact(&mut index))
                .and_then(|_| stream.set_read_timeout(None))
                .and_then(|_| stream.set_nodelay(true));
            let peer = u64::from_be_bytes(index) as usize;
            match said {
                Ok(()) if peer > me && peer < processes => sockets[peer - me - 1] = Some(stream),
                Ok(()) => debug!("process {me}: a connection from {from} said it is process {peer}; ignored"),
                Err(e) => debug!("process {me}: a connection from {from} did not say its process: {e}"),
            }
        }
        if !accepted {
            debug!("process {me}: awaiting connections ({} of {})", sockets.iter().filter(|s| s.is_some()).count(), sockets.len());
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    sockets
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

#[cfg(test)]
mod tests {
    use super::*;

    fn addresses(n: usize) -> Vec<String> {
        // Free loopback ports (taken and let go).
        (0..n).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string()).collect()
    }

    #[test]
    fn three_processes_connect_each_to_each_and_know_who_is_who() {
        let hosts = addresses(3);
        let handles: Vec<_> = (0..3)
            .map(|me| {
                let hosts = hosts.clone();
                std::thread::spawn(move || connect(&hosts, me, Duration::from_secs(10)).unwrap())
            })
            .collect();
        let sockets: Vec<Vec<Option<TcpStream>>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        for (me, row) in sockets.iter().enumerate() {
            assert_eq!(row.len(), 3);
            assert!(row[me].is_none());
            for (peer, s) in row.iter().enumerate().filter(|(p, _)| *p != me) {
                let s = s.as_ref().unwrap();
                // Each socket joins me and peer: my local port is the peer's remote one there.
                let theirs = sockets[peer][me].as_ref().unwrap();
                assert_eq!(s.local_addr().unwrap(), theirs.peer_addr().unwrap());
            }
        }
    }

    #[test]
    fn a_peer_that_never_comes_is_named_after_the_timeout() {
        let hosts = addresses(2);
        let e = connect(&hosts, 1, Duration::from_millis(600)).unwrap_err().to_string();
        assert!(e.contains("did not form within 0 s") && e.contains(&format!("process 0 at {}", hosts[0])), "{e}");
    }
}
