//! `tenure demo`: three candidates on an in-process `MemoryStore` show an
//! election, a crash fail-over and a graceful hand-off, with measured times.

use std::time::Duration;

use tenure::{CancellationToken, ElectionError, LeaderElector, MemoryStore};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::Failure;
use crate::output::say;

const LEASE: Duration = Duration::from_secs(2);
const RENEW: Duration = Duration::from_millis(1500);
const RETRY: Duration = Duration::from_millis(400);

struct Replica {
    name: &'static str,
    elector: LeaderElector,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), ElectionError>>,
}

fn replica(store: &MemoryStore, name: &'static str) -> Replica {
    let elector = LeaderElector::builder(store.clone(), name)
        .lease_duration(LEASE)
        .renew_deadline(RENEW)
        .retry_period(RETRY)
        .build()
        .expect("the demo's timing is valid");
    let shutdown = CancellationToken::new();
    let task = tokio::spawn({
        let elector = elector.clone();
        let shutdown = shutdown.clone();
        async move {
            elector
                .run(shutdown, move |leadership| async move {
                    say(format!(
                        "  {name}: leading, fencing token {}; doing the singleton work",
                        leadership.fencing_token()
                    ));
                    leadership.cancelled().await;
                    say(format!("  {name}: work stopped"));
                })
                .await
        }
    });
    Replica {
        name,
        elector,
        shutdown,
        task,
    }
}

async fn wait_for_leader(replicas: &[Replica]) -> Result<usize, Failure> {
    let deadline = Instant::now() + 4 * LEASE;
    loop {
        if let Some(i) = replicas.iter().position(|r| r.elector.is_leader()) {
            return Ok(i);
        }
        if Instant::now() > deadline {
            return Err(Failure::runtime("no leader was elected (this is a bug)"));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

pub(crate) async fn demo() -> Result<u8, Failure> {
    let store = MemoryStore::new("demo").map_err(|e| Failure::runtime(e.to_string()))?;
    say(format!(
        "three replicas campaign for lock \"demo\" (lease {LEASE:?}, renew deadline {RENEW:?}, retry {RETRY:?})"
    ));
    let start = Instant::now();
    let mut replicas: Vec<Replica> = ["alpha", "bravo", "charlie"]
        .into_iter()
        .map(|n| replica(&store, n))
        .collect();
    let first = wait_for_leader(&replicas).await?;
    say(format!(
        "1. election: {} won in {:.1?}; the others follow",
        replicas[first].name,
        start.elapsed()
    ));
    tokio::time::sleep(Duration::from_secs(2)).await;

    let crashed = replicas.remove(first);
    say(format!(
        "2. crash: {} dies without releasing (its task is aborted)",
        crashed.name
    ));
    crashed.task.abort();
    let t = Instant::now();
    let second = wait_for_leader(&replicas).await?;
    let failover = t.elapsed();
    say(format!(
        "   fail-over: {} leads after {failover:.1?} (it waits until {LEASE:?} passed since the last renew it saw)",
        replicas[second].name
    ));
    tokio::time::sleep(Duration::from_secs(2)).await;

    let leaving = replicas.remove(second);
    say(format!(
        "3. graceful hand-off: {} shuts down; its work stops, then it releases the lock",
        leaving.name
    ));
    let t = Instant::now();
    leaving.shutdown.cancel();
    let third = wait_for_leader(&replicas).await?;
    let handoff = t.elapsed();
    let _ = leaving.task.await;
    say(format!(
        "   hand-off: {} leads {handoff:.1?} after {} was told to stop (woken by the store's watch, not a {RETRY:?} poll)",
        replicas[third].name, leaving.name
    ));
    for r in replicas {
        r.shutdown.cancel();
        let _ = r.task.await;
    }
    say(format!(
        "done in {:.1?}: crash fail-over {failover:.1?}, graceful hand-off {handoff:.1?}",
        start.elapsed()
    ));
    Ok(0)
}
