//! A `tenure run --http` child the tests talk to.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A `tenure run --http 127.0.0.1:0` whose stderr the test reads line by
/// line; stopped with SIGTERM when dropped.
pub(crate) struct Served {
    pub(crate) child: Child,
    lines: Receiver<String>,
    addr: String,
}

impl Served {
    /// Starts `tenure run ARGS` serving on a free port, and waits until it
    /// has said where.
    pub(crate) fn start(args: &[&str]) -> Served {
        Served::start_with(args, &[])
    }

    /// [`start`](Self::start) with more environment variables.
    pub(crate) fn start_with(args: &[&str], env: &[(&str, &str)]) -> Served {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tenure"))
            .args(args)
            .envs(env.iter().copied())
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("start tenure run");
        let (tx, lines) = channel();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        // Keeps reading to the end: a closed pipe would fail the child's
        // next line.
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut served = Served {
            child,
            lines,
            addr: String::new(),
        };
        let line = served.wait_for("on http://", Duration::from_secs(20));
        // Text or JSON lines: the address ends where its characters do.
        let at = line.split("on http://").nth(1).unwrap();
        served.addr = at
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || ".:[]".contains(*c))
            .collect();
        served
    }

    /// The next line containing `text`, within `limit`.
    pub(crate) fn wait_for(&mut self, text: &str, limit: Duration) -> String {
        let until = Instant::now() + limit;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(text) => return line,
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => panic!("no line with {text:?} in {limit:?}"),
                Err(RecvTimeoutError::Disconnected) => panic!("stderr closed before {text:?}"),
            }
        }
    }

    pub(crate) fn get(&self, path: &str) -> (u16, String) {
        super::http_get(&self.addr, path)
    }

    pub(crate) fn leader(&self) -> Value {
        let (status, body) = self.get("/leader");
        assert_eq!(status, 200);
        serde_json::from_str(&body).unwrap()
    }

    /// The sum of the samples of `metric` whose labels include every one
    /// of `labels` (`key="value"`); there must be one at least.
    pub(crate) fn metric(&self, metric: &str, labels: &[&str]) -> f64 {
        self.samples(metric, labels)
            .unwrap_or_else(|text| panic!("no {metric} with {labels:?} in:\n{text}"))
    }

    /// [`metric`](Self::metric), or the whole text when there is none.
    pub(crate) fn samples(&self, metric: &str, labels: &[&str]) -> Result<f64, String> {
        let (status, text) = self.get("/metrics");
        assert_eq!(status, 200);
        text.lines()
            .filter(|l| l.starts_with(&format!("{metric}{{")))
            .filter(|l| labels.iter().all(|label| l.contains(label)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .reduce(|a, b| a + b)
            .ok_or(text)
    }

    pub(crate) fn terminate(&mut self) {
        // SAFETY: kill with a pid and a signal number only.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.terminate();
        let _ = self.child.wait();
    }
}
