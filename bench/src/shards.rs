//! `--shards`: `tenure_core::shards` on one store, R replicas (tasks of this
//! process sharing one client) × N shards. What is measured, each phase
//! from its start until every shard is owned and the replicas' counts are
//! within one of each other:
//! - the first balance, R − 1 replicas;
//! - a join (the R-th replica starts): the balance after it, and the
//!   longest time any one shard was owned by nobody meanwhile;
//! - a kill -9 (one replica's tasks aborted: its locks stay until their
//!   leases run out): the same two figures;
//! - `LockStore` calls per second in the steady state (10 s), and memory
//!   per shard (this process's resident memory after the first balance,
//!   less before, over N).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tenure_core::shards::Shards;
use tenure_core::{CancellationToken, LockStore};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::scale::{Calls, Counted, Target, rss};

/// Lease 6 s, renew deadline 4 s, retry 1 s: 1,024 shards renew 1,024
/// times a second, which every store here serves.
pub(crate) const LEASE: Duration = Duration::from_secs(6);
const RENEW: Duration = Duration::from_secs(4);
const RETRY: Duration = Duration::from_secs(1);

struct Replica {
    shards: Shards,
    task: JoinHandle<()>,
    shutdown: CancellationToken,
}

fn start(target: &Arc<Target>, id: usize, n: u32, r: usize, calls: &Arc<Calls>) -> Replica {
    let (target, calls) = (target.clone(), calls.clone());
    let shards = Shards::builder("bench", format!("replica-{id}"), n, move |name: String| {
        let (target, calls) = (target.clone(), calls.clone());
        async move {
            let store = (target.open)(name).await?;
            Ok(Arc::new(Counted(store, calls)) as Arc<dyn LockStore>)
        }
    })
    .member_slots((2 * r) as u32)
    .lease_duration(LEASE)
    .renew_deadline(RENEW)
    .retry_period(RETRY)
    .build()
    .expect("valid timing");
    let shutdown = CancellationToken::new();
    let task = tokio::spawn({
        let (shards, shutdown) = (shards.clone(), shutdown.clone());
        async move {
            if let Err(e) = shards
                .run(shutdown, |shard| async move {
                    shard.leadership().cancelled().await;
                })
                .await
            {
                eprintln!("a replica failed: {e}");
            }
        }
    });
    Replica {
        shards,
        task,
        shutdown,
    }
}

/// Waits until the replicas own every shard, disjointly, within one of each
/// other; returns how long that took and the longest any shard was owned
/// by nobody meanwhile (sampled every 10 ms).
async fn balance(
    replicas: &[&Replica],
    n: u32,
    limit: Duration,
) -> Result<(Duration, Duration), String> {
    let start = Instant::now();
    let mut unowned_since: Vec<Option<Instant>> = vec![None; n as usize];
    let mut longest = Duration::ZERO;
    loop {
        let now = Instant::now();
        let sets: Vec<BTreeSet<u32>> = replicas
            .iter()
            .map(|r| r.shards.owned().borrow().clone())
            .collect();
        let union: BTreeSet<u32> = sets.iter().flatten().copied().collect();
        for (j, since) in unowned_since.iter_mut().enumerate() {
            if union.contains(&(j as u32)) {
                if let Some(s) = since.take() {
                    longest = longest.max(now - s);
                }
            } else if since.is_none() {
                *since = Some(now);
            }
        }
        let total: usize = sets.iter().map(BTreeSet::len).sum();
        let lo = sets.iter().map(BTreeSet::len).min().unwrap_or(0);
        let hi = sets.iter().map(BTreeSet::len).max().unwrap_or(0);
        if union.len() == n as usize && total == n as usize && hi - lo <= 1 {
            return Ok((now - start, longest));
        }
        if now - start > limit {
            let counts: Vec<usize> = sets.iter().map(BTreeSet::len).collect();
            return Err(format!(
                "not balanced within {limit:?}: {} of {n} owned, counts {counts:?}",
                union.len()
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One row: R replicas, N shards on `target`.
pub(crate) async fn row(store: &str, target: Target, r: usize, n: u32) -> String {
    match measure(target, r, n).await {
        Ok(cells) => format!("| {store} | {r} | {n} | {cells} |"),
        Err(e) => format!("| {store} | {r} | {n} | failed: {e} | | | | | | |"),
    }
}

async fn measure(target: Target, r: usize, n: u32) -> Result<String, String> {
    let target = Arc::new(target);
    let calls = Arc::new(Calls::default());
    let before = rss();
    let limit = LEASE * 4 + Duration::from_secs(60);
    let mut replicas: Vec<Replica> = (0..r - 1)
        .map(|i| start(&target, i, n, r, &calls))
        .collect();
    let (first, _) = balance(&replicas.iter().collect::<Vec<_>>(), n, limit).await?;
    let memory = rss().saturating_sub(before) as f64 / f64::from(n);

    replicas.push(start(&target, r - 1, n, r, &calls));
    let (join, join_gap) = balance(&replicas.iter().collect::<Vec<_>>(), n, limit).await?;

    // The steady state: nothing moves; what the store is asked.
    tokio::time::sleep(RETRY * 2).await;
    let c0 = calls.all.load(Ordering::Relaxed);
    let window = Duration::from_secs(10);
    tokio::time::sleep(window).await;
    let per_s = (calls.all.load(Ordering::Relaxed) - c0) as f64 / window.as_secs_f64();

    let dead = replicas.remove(0);
    dead.task.abort();
    let _ = dead.task.await;
    let (kill, kill_gap) = balance(&replicas.iter().collect::<Vec<_>>(), n, limit).await?;

    for replica in &replicas {
        replica.shutdown.cancel();
    }
    for replica in replicas {
        let _ = replica.task.await;
    }
    let s = |d: Duration| format!("{:.2} s", d.as_secs_f64());
    Ok(format!(
        "{} | {} | {} | {} | {} | {:.0} | {:.1} KiB",
        s(first),
        s(join),
        s(join_gap),
        s(kill),
        s(kill_gap),
        per_s,
        memory / 1024.0
    ))
}

/// The table's head.
pub(crate) fn header() {
    println!(
        "\n## Shards (lease {LEASE:?}, renew {RENEW:?}, retry {RETRY:?}; replicas are tasks of one process sharing one client)\n"
    );
    println!(
        "| store | replicas | shards | first balance (R − 1) | balanced after a join | longest unowned, join | balanced after a kill -9 | longest unowned, kill -9 | LockStore calls/s | memory per shard |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
}
