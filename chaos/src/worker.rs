//! The command each leader runs (`tenure-chaos worker`): it heartbeats to
//! the shared log and writes to the fencing downstream with its token, until
//! it is killed.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::mono_ns;

/// Runs until killed: `beat ID PID NS` to `log` and a write to the
/// downstream every 10 ms. It ignores SIGTERM, as the slowest command would
/// (one that uses the whole grace): only SIGKILL ends it.
pub(crate) fn main(downstream: &str, log: &str) -> ! {
    // SAFETY: setting a signal disposition.
    unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
    // `tenure shard`: the shard is part of the writer's name, and picks
    // its downstream from the list (one per shard).
    let shard: Option<usize> = std::env::var("TENURE_SHARD")
        .ok()
        .and_then(|s| s.parse().ok());
    let identity = std::env::var("TENURE_IDENTITY").unwrap_or_default();
    let id = match shard {
        Some(s) => format!("{identity}#{s}"),
        None => identity,
    };
    let downstreams: Vec<&str> = downstream.split(',').collect();
    let downstream = downstreams[shard.unwrap_or(0).min(downstreams.len() - 1)];
    let token: u64 = std::env::var("TENURE_FENCING_TOKEN")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let pid = std::process::id();
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("open the heartbeat log");
    // One write(2), as for the beats: a start line split by another
    // writer's beat would lose its term.
    let _ = log.write_all(format!("start {id} {pid} {} {token}\n", mono_ns()).as_bytes());
    let mut conn: Option<(TcpStream, BufReader<TcpStream>)> = None;
    loop {
        // One write(2) per line: lines of concurrent writers never mix.
        let _ = log.write_all(format!("beat {id} {pid} {}\n", mono_ns()).as_bytes());
        if conn.is_none() {
            conn = TcpStream::connect(downstream).ok().and_then(|s| {
                s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
                let r = BufReader::new(s.try_clone().ok()?);
                Some((s, r))
            });
        }
        if let Some((w, r)) = conn.as_mut() {
            let sent = writeln!(w, "{token} {id} {pid} {}", mono_ns());
            let mut reply = String::new();
            if sent.is_err() || r.read_line(&mut reply).map(|n| n == 0).unwrap_or(true) {
                conn = None;
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
