//! Helpers of the CLI tests: the commands' shared log, and processes.
#![allow(dead_code)]

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

pub(crate) mod served;

/// What /proc says about processes: the supervisor's own module.
#[path = "../../src/procfs.rs"]
pub(crate) mod procfs;

/// Lease 3 s, renew deadline 2 s, retry 0.5 s: the default grace is then 0.7 s.
pub(crate) const TIMING: [&str; 6] = [
    "--lease-duration",
    "3s",
    "--renew-deadline",
    "2s",
    "--retry-period",
    "500ms",
];

/// One line of the log the test commands write.
#[derive(Debug, Clone)]
pub(crate) struct Line {
    /// `start`, `beat`, `stop`.
    pub kind: String,
    /// The candidate's identity.
    pub id: String,
    /// The command's pid.
    pub pid: u32,
    /// Wall-clock nanoseconds.
    pub at: u128,
    /// The fencing token, on `start` lines.
    pub token: Option<u64>,
}

/// The log's lines `KIND ID PID NS [TOKEN]`; a line still being written is skipped.
pub(crate) fn lines(log: &Path) -> Vec<Line> {
    fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some(Line {
                kind: f.first()?.to_string(),
                id: f.get(1)?.to_string(),
                pid: f.get(2)?.parse().ok()?,
                at: f.get(3)?.parse().ok()?,
                token: f.get(4).and_then(|t| t.parse().ok()),
            })
        })
        .collect()
}

/// Waits for a line matching `pred`; panics after `limit`.
pub(crate) fn wait_for_line(log: &Path, limit: Duration, pred: impl Fn(&Line) -> bool) -> Line {
    let start = Instant::now();
    loop {
        if let Some(l) = lines(log).into_iter().find(|l| pred(l)) {
            return l;
        }
        assert!(start.elapsed() < limit, "no such line within {limit:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Sends `sig` to `pid`.
pub(crate) fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) on a process this test started.
    unsafe { libc::kill(pid as libc::pid_t, sig) };
}

/// True once the process is gone (or a zombie nobody reaped yet).
pub(crate) fn is_gone(pid: u32) -> bool {
    matches!(procfs::state_of(pid), None | Some('Z'))
}

#[allow(dead_code)] // not every test file serves HTTP
/// One HTTP/1.0 GET on `addr`: the status code and the body.
pub(crate) fn http_get(addr: &str, path: &str) -> (u16, String) {
    try_http_get(addr, path).unwrap_or_else(|e| panic!("GET {path} on {addr}: {e}"))
}

#[allow(dead_code)] // not every test file serves HTTP
/// [`http_get`], or the error (a server not listening yet: a container's
/// published port accepts, then resets, until its process listens).
pub(crate) fn try_http_get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: tenure\r\n\r\n")?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply)?;
    let status = reply
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = reply
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    Ok((status, body))
}
