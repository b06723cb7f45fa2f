//! tenure's own output on stderr, through a writer that never blocks.
//!
//! A paused terminal or a log pipe nobody drains must not stop the election
//! loop (it runs on one thread): every line goes to a bounded queue that a
//! thread of its own writes out, and a full queue loses the line, never the
//! lock's safety. Lost lines are counted and reported once stderr drains.

use std::io::Write;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};

use chrono::{SecondsFormat, Utc};

use crate::logs::{self, LogFormat};

/// Lines waiting for stderr before new ones are dropped.
const QUEUE: usize = 4096;

enum Msg {
    Line(Vec<u8>),
    /// Answered once every line queued before it was written.
    Flush(SyncSender<()>),
}

static QUEUE_TX: OnceLock<SyncSender<Msg>> = OnceLock::new();
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Lines lost to a full queue since start, on `/metrics`.
pub(crate) const DROPPED_METRIC: &str = "tenure_log_lines_dropped_total";

fn sender() -> &'static SyncSender<Msg> {
    QUEUE_TX.get_or_init(|| {
        let (tx, rx) = sync_channel::<Msg>(QUEUE);
        std::thread::Builder::new()
            .name("tenure-stderr".into())
            .spawn(move || {
                let mut stderr = std::io::stderr();
                for msg in rx {
                    let dropped = DROPPED.swap(0, Ordering::Relaxed);
                    if dropped > 0 {
                        let said = "log lines dropped (stderr was blocked)";
                        let line = match logs::format() {
                            LogFormat::Text => format!("tenure: {dropped} {said}\n"),
                            LogFormat::Json => {
                                logs::json_line("WARN", said, &[("dropped", dropped.into())])
                            }
                        };
                        let _ = stderr.write_all(line.as_bytes());
                    }
                    match msg {
                        Msg::Line(line) => {
                            let _ = stderr.write_all(&line);
                        }
                        Msg::Flush(done) => {
                            let _ = done.try_send(());
                        }
                    }
                }
            })
            .expect("start the stderr writer thread");
        tx
    })
}

/// Queues bytes for stderr; drops them when the queue is full.
fn emit(line: Vec<u8>) {
    match sender().try_send(Msg::Line(line)) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
            DROPPED.fetch_add(1, Ordering::Relaxed);
            metrics::counter!(DROPPED_METRIC).increment(1);
        }
    }
}

/// Waits (up to `limit`) until queued lines are written, for a clean exit.
pub(crate) fn flush(limit: std::time::Duration) {
    // A blocked stderr may never drain: give up after `limit`.
    let (done_tx, done_rx) = sync_channel::<()>(1);
    if sender().try_send(Msg::Flush(done_tx)).is_ok() {
        let _ = done_rx.recv_timeout(limit);
    }
}

/// Prints `tenure [time] message` on stderr (stdout belongs to the command).
pub(crate) fn say(message: impl AsRef<str>) {
    let line = match logs::format() {
        LogFormat::Text => format!(
            "tenure [{}] {}\n",
            Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
            message.as_ref()
        ),
        LogFormat::Json => logs::json_line("INFO", message.as_ref(), &[]),
    };
    emit(line.into_bytes());
}

/// A `tracing` writer: one event's bytes, queued as one line when dropped.
#[derive(Default)]
pub(crate) struct LossyLine(Vec<u8>);

impl Write for LossyLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LossyLine {
    fn drop(&mut self) {
        if !self.0.is_empty() {
            emit(std::mem::take(&mut self.0));
        }
    }
}

/// Prints `tenure: error: message`, the one line every failure ends with.
pub(crate) fn say_error(message: &str) {
    let line = match logs::format() {
        LogFormat::Text => format!("tenure: error: {message}\n"),
        LogFormat::Json => logs::json_line("ERROR", message, &[]),
    };
    emit(line.into_bytes());
}
