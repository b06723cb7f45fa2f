//! The downstream that checks fencing: it accepts a write only if its token
//! is not below the highest it has accepted, and records every write.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// One write the downstream saw.
#[derive(Clone, Debug)]
pub(crate) struct Write {
    /// The writer's fencing token.
    pub token: u64,
    /// The writer's term: its command's pid (or `PID.N` for a library
    /// candidate's N-th term) and its token.
    pub term: String,
    /// Accepted (token not below the highest accepted)?
    pub accepted: bool,
}

/// The downstream's state.
#[derive(Default)]
pub(crate) struct Ledger {
    highest: Option<u64>,
    /// Every write, in arrival order.
    pub writes: Vec<Write>,
}

/// Serves the downstream on a loopback port; returns its address.
pub(crate) async fn serve(ledger: Arc<Mutex<Ledger>>) -> std::io::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let ledger = ledger.clone();
            tokio::spawn(async move {
                let (r, mut w) = stream.into_split();
                let mut lines = BufReader::new(r).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let f: Vec<&str> = line.split_whitespace().collect();
                    let (Some(token), Some(term)) =
                        (f.first().and_then(|t| t.parse::<u64>().ok()), f.get(2))
                    else {
                        continue;
                    };
                    let accepted = {
                        let mut l = ledger.lock().unwrap();
                        let accepted = l.highest.is_none_or(|h| token >= h);
                        if accepted {
                            l.highest = Some(token);
                        }
                        l.writes.push(Write {
                            token,
                            // Pids are reused; a pid and a token are one term.
                            term: format!("{term}/{token}"),
                            accepted,
                        });
                        accepted
                    };
                    let reply: &[u8] = if accepted { b"ok\n" } else { b"stale\n" };
                    if w.write_all(reply).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    Ok(addr)
}

/// Accepted writes that were stale: an earlier-accepted write of another
/// term had a token at least as large (equal tokens of two terms would let
/// a stale leader through).
pub(crate) fn stale_accepted(writes: &[Write]) -> usize {
    let mut best: Option<(u64, &str)> = None;
    let mut stale = 0;
    for w in writes.iter().filter(|w| w.accepted) {
        match best {
            Some((t, term)) if term != w.term && t >= w.token => stale += 1,
            _ => best = Some((w.token, &w.term)),
        }
    }
    stale
}
