//! A library candidate (`tenure-chaos candidate URL ID DOWNSTREAM LOG`): a
//! `LeaderElector` embedded in its own process, as a service would embed
//! it. Its work heartbeats to the shared log and writes to the downstream
//! with its fencing token, checking `Leadership::is_valid()` before each
//! beat, as the README tells library users to. SIGTERM steps down and
//! releases.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tenure::{CancellationToken, LeaderElector, Leadership};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::mono_ns;

/// The same timing as the `tenure run` candidates' (`harness::TIMING`).
const LEASE: Duration = Duration::from_secs(2);
const RENEW_DEADLINE: Duration = Duration::from_millis(1500);
const RETRY: Duration = Duration::from_millis(300);

pub(crate) fn main(url: &str, id: &str, downstream: &str, log: &str) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(campaign(url, id, downstream, log)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tenure-chaos candidate {id}: {e}");
            ExitCode::from(1)
        }
    }
}

async fn campaign(url: &str, id: &str, downstream: &str, log: &str) -> Result<(), String> {
    let store = tenure::connect(url).await.map_err(|e| e.to_string())?;
    let elector = LeaderElector::builder(store, id)
        .lease_duration(LEASE)
        .renew_deadline(RENEW_DEADLINE)
        .retry_period(RETRY)
        .build()
        .map_err(|e| e.to_string())?;
    let shutdown = CancellationToken::new();
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;
    {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            sigterm.recv().await;
            shutdown.cancel();
        });
    }
    let terms = Arc::new(AtomicU32::new(0));
    let (id, downstream, log) = (id.to_owned(), downstream.to_owned(), log.to_owned());
    elector
        .run(shutdown, move |leadership| {
            let n = terms.fetch_add(1, Ordering::Relaxed);
            work(leadership, n, id.clone(), downstream.clone(), log.clone())
        })
        .await
        .map_err(|e| e.to_string())
}

/// One term's work: beats and downstream writes every 10 ms while valid.
async fn work(leadership: Leadership, n: u32, id: String, downstream: String, log: String) {
    use std::io::Write;
    let token = leadership.fencing_token();
    let term = format!("{}.{n}", std::process::id());
    let Ok(mut log) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
    else {
        return;
    };
    let mut started = false;
    let mut conn: Option<(tokio::net::tcp::OwnedWriteHalf, BufReader<_>)> = None;
    loop {
        if leadership.is_cancelled() || !leadership.is_valid() {
            return;
        }
        // One write(2) per line: lines of concurrent writers never mix.
        let line = if started {
            format!("beat {id} {term} {}\n", mono_ns())
        } else {
            started = true;
            format!("start {id} {term} {} {token}\n", mono_ns())
        };
        let _ = log.write_all(line.as_bytes());
        if conn.is_none()
            && let Ok(Ok(s)) =
                tokio::time::timeout(Duration::from_millis(500), TcpStream::connect(&downstream))
                    .await
        {
            let (r, w) = s.into_split();
            conn = Some((w, BufReader::new(r)));
        }
        if let Some((w, r)) = conn.as_mut() {
            let write = format!("{token} {id} {term} {}\n", mono_ns());
            let mut reply = String::new();
            let answered = tokio::time::timeout(Duration::from_millis(500), async {
                w.write_all(write.as_bytes()).await?;
                r.read_line(&mut reply).await
            })
            .await;
            if !matches!(answered, Ok(Ok(n)) if n > 0) {
                conn = None;
            }
        }
        tokio::select! {
            _ = leadership.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(10)) => {}
        }
    }
}
