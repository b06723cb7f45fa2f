//! Shards on a real store: three replicas share six shards two each, a
//! replica that leaves hands its shards back at once, and a crashed one's
//! are taken after their leases; no shard ever has two owners at once.
//! Real time with the election scenarios' short timing (lease 1 s, renew
//! deadline 0.6 s, retry 0.2 s) and bounds derived from it with margins.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use tenure_core::shards::{ShardLog, Shards};
use tenure_core::{CancellationToken, ElectionError, LockStore};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::election::{LEASE, MARGIN, RENEW, RETRY};
use crate::StoreFactory;

const SHARDS: u32 = 6;
const SLOTS: u32 = 4;

struct Replica {
    shards: Shards,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), ElectionError>>,
}

/// Opens every lock a replica uses, each with a fresh client as a separate
/// process would, and starts it.
async fn replica(f: &dyn StoreFactory, id: &'static str, log: &ShardLog) -> Replica {
    let mut stores: BTreeMap<String, Arc<dyn LockStore>> = BTreeMap::new();
    let names = (0..SLOTS)
        .map(|k| format!("shards-member-{k}"))
        .chain((0..SHARDS).map(|j| format!("shards-shard-{j}")));
    for name in names {
        let store = f.open(&name).await.expect("open a shard's lock");
        stores.insert(name, store);
    }
    let shards = Shards::builder("shards", id, SHARDS, move |name: String| {
        std::future::ready(Ok(stores.get(&name).expect("opened before").clone()))
    })
    .member_slots(SLOTS)
    .lease_duration(LEASE)
    .renew_deadline(RENEW)
    .retry_period(RETRY)
    .build()
    .expect("valid timing");
    let shutdown = CancellationToken::new();
    let work = log.work(id, Duration::ZERO);
    let task = tokio::spawn({
        let (shards, shutdown) = (shards.clone(), shutdown.clone());
        async move { shards.run(shutdown, work).await }
    });
    Replica {
        shards,
        shutdown,
        task,
    }
}

impl Replica {
    fn owned(&self) -> BTreeSet<u32> {
        self.shards.owned().borrow().clone()
    }
}

/// Waits until the replicas own every shard between them, disjointly, in
/// shares of `sizes` (any order).
async fn balanced(replicas: &[&Replica], sizes: &[usize], limit: Duration, what: &str) {
    let start = Instant::now();
    let mut want = sizes.to_vec();
    want.sort();
    loop {
        let sets: Vec<BTreeSet<u32>> = replicas.iter().map(|r| r.owned()).collect();
        let mut got: Vec<usize> = sets.iter().map(BTreeSet::len).collect();
        got.sort();
        let union: BTreeSet<u32> = sets.iter().flatten().copied().collect();
        if got == want && union.len() == SHARDS as usize {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "{what}: not {sizes:?} within {limit:?}: {sets:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Three replicas, six shards: two each; one leaves (its shards handed back
/// at once), one crashes (its shards taken after their leases); never two
/// terms of one shard at once, and tokens rise.
pub async fn shards_are_shared_fairly_and_taken_over(f: &dyn StoreFactory) {
    let log = ShardLog::default();
    let a = replica(f, "a", &log).await;
    let b = replica(f, "b", &log).await;
    let c = replica(f, "c", &log).await;
    // A slot, then the shards: a few rounds.
    balanced(
        &[&a, &b, &c],
        &[2, 2, 2],
        LEASE + RETRY * 6 + MARGIN,
        "three replicas",
    )
    .await;

    // c leaves: its slot and shards are released, taken at once.
    c.shutdown.cancel();
    c.task.await.expect("no panic").expect("a clean leave");
    balanced(&[&a, &b], &[3, 3], RETRY * 6 + MARGIN, "after a leave").await;

    // b crashes: a takes its shards once b's slot and then each shard ran
    // out: 2 × lease + 3 × retry (with jitter) and a margin.
    b.task.abort();
    let crashed = Instant::now();
    balanced(
        &[&a],
        &[6],
        LEASE * 2 + RETRY.mul_f64(1.2) * 3 + MARGIN * 2,
        "after a crash",
    )
    .await;
    assert!(
        crashed.elapsed() >= LEASE - RETRY,
        "a crashed replica's shards taken before their lease"
    );
    a.shutdown.cancel();
    a.task.await.expect("no panic").expect("a clean leave");

    // The crashed replica's terms ended when it crashed (its tasks were
    // aborted with it); the rest ran until their work returned.
    log.crashed("b", crashed);
    assert!(
        log.terms().iter().all(|t| t.end.is_some()),
        "every term ended"
    );
    let found = log.violations(Instant::now());
    assert!(found.is_empty(), "{found:#?}");
}
