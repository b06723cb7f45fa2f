//! Twelve shards shared by replicas in one process, on `MemoryStore`s:
//! two replicas split them, a third joins and gets its share from the
//! others (handed back, drained, then released), one leaves and the other
//! two take its shards at once.
//!
//! ```text
//! cargo run --example shards
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use tenure::shards::Shards;
use tenure::{CancellationToken, ElectionError, LockStore, MemoryStore};
use tokio::task::JoinHandle;

const SHARDS: u32 = 12;
const SLOTS: u32 = 4;

struct Replica {
    shards: Shards,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), ElectionError>>,
}

fn start(name: &'static str, locks: &Arc<BTreeMap<String, MemoryStore>>) -> Replica {
    let locks = locks.clone();
    // In a real deployment: a Redis, etcd or Kubernetes lock of that name.
    let open = move |lock: String| {
        let store = locks[&lock].clone();
        async move { Ok(Arc::new(store) as Arc<dyn LockStore>) }
    };
    let shards = Shards::builder("jobs", name, SHARDS, open)
        .member_slots(SLOTS)
        .lease_duration(Duration::from_secs(3))
        .renew_deadline(Duration::from_secs(2))
        .retry_period(Duration::from_millis(500))
        .build()
        .expect("valid timing");
    let shutdown = CancellationToken::new();
    let task = tokio::spawn({
        let (shards, shutdown) = (shards.clone(), shutdown.clone());
        async move {
            shards
                .run(shutdown, move |shard| async move {
                    let token = shard.leadership().fencing_token();
                    println!("  {name} starts shard {} (token {token})", shard.index());
                    shard.leadership().cancelled().await;
                    println!("  {name} stops shard {}", shard.index());
                })
                .await
        }
    });
    Replica {
        shards,
        shutdown,
        task,
    }
}

/// Waits until the replicas own every shard between them, `sizes` each.
async fn balanced(replicas: &[(&str, &Replica)], sizes: &[usize]) {
    loop {
        let sets: Vec<BTreeSet<u32>> = replicas
            .iter()
            .map(|(_, r)| r.shards.owned().borrow().clone())
            .collect();
        let mut got: Vec<usize> = sets.iter().map(BTreeSet::len).collect();
        got.sort();
        if got == sizes && sets.iter().flatten().count() == SHARDS as usize {
            for ((name, _), set) in replicas.iter().zip(&sets) {
                println!("{name} owns {set:?}");
            }
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Every lock the replicas use, by name, in this process.
    let names = (0..SLOTS)
        .map(|k| format!("jobs-member-{k}"))
        .chain((0..SHARDS).map(|j| format!("jobs-shard-{j}")));
    let mut locks = BTreeMap::new();
    for name in names {
        locks.insert(name.clone(), MemoryStore::new(&name)?);
    }
    let locks = Arc::new(locks);

    println!("a and b start:");
    let (a, b) = (start("a", &locks), start("b", &locks));
    balanced(&[("a", &a), ("b", &b)], &[6, 6]).await;

    println!("c joins:");
    let c = start("c", &locks);
    balanced(&[("a", &a), ("b", &b), ("c", &c)], &[4, 4, 4]).await;

    println!("a leaves (its shards drained, then released):");
    a.shutdown.cancel();
    a.task.await??;
    balanced(&[("b", &b), ("c", &c)], &[6, 6]).await;

    for r in [b, c] {
        r.shutdown.cancel();
        r.task.await??;
    }
    Ok(())
}
