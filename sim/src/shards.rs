//! The seeded simulation of shards: 3 to 5 replicas of
//! [`tenure_core::shards::Shards`] sharing 4 to 12 shards on one in-memory
//! world of locks, each replica on its own clock (rates within the
//! skew-rate tolerance), with crashes, partitions, graceful leaves and a
//! late join drawn from the seed, all healed at [`FAULTY`].
//!
//! The oracle judges on true time:
//! - **at most one owner's work per shard**: the work of two terms of one
//!   shard never runs at once (from the term's start until its work
//!   returned, or its replica crashed), and tokens rise from term to term;
//! - **every shard owned**, disjointly, within [`owned_bound`] of the heal;
//! - **fair**: the live replicas' counts within one of each other within
//!   the same bound, and then no shard moves for two leases.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tenure_core::shards::{ShardLog, Shards};
use tenure_core::testing::{Fault, FaultyStore};
use tenure_core::{CancellationToken, LockStore, MemoryStore};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::{FAULTY, LEASE, RENEW, RETRY, SimClock};

/// How long a shard's work takes to stop once told to.
const DRAIN: Duration = Duration::from_millis(200);
/// Member slots: more than the most replicas (5).
const SLOTS: u32 = 8;

/// Every shard is owned, and the spread is within one, this long after the
/// heal (true time; the slowest clock stretches it): a dead member's slot
/// runs out (a lease), then its shards (a lease from when they were first
/// read), with a round or two on each side.
pub fn owned_bound(slowest_rate: f64) -> Duration {
    (LEASE * 2 + RETRY.mul_f64(1.2) * 6).div_f64(slowest_rate)
}

/// The outcome of one shard seed.
#[derive(Debug)]
pub struct ShardReport {
    /// The seed.
    pub seed: u64,
    /// Every broken rule, in words (empty: the run passed).
    pub violations: Vec<String>,
    /// Shard terms begun.
    pub terms: usize,
    /// Crashes, partitions, leaves and joins, in that order.
    pub events: [u32; 4],
    /// From the heal until every shard was owned, and until the final
    /// balance (within one, then unchanged for two leases) began.
    pub settled: (Option<Duration>, Option<Duration>),
    /// Replicas and shards.
    pub shape: (usize, u32),
}

struct Replica {
    shards: Shards,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
    faults: Arc<Mutex<Vec<Arc<FaultyStore<MemoryStore>>>>>,
}

#[derive(Clone, Default)]
struct World(Arc<Mutex<BTreeMap<String, MemoryStore>>>);

impl World {
    fn store(&self, name: &str) -> MemoryStore {
        let mut locks = self.0.lock().unwrap();
        locks
            .entry(name.to_owned())
            .or_insert_with(|| MemoryStore::new(name).expect("a valid name"))
            .clone()
    }
}

fn start(
    world: &World,
    i: usize,
    count: u32,
    clock: SimClock,
    seed: u64,
    log: &ShardLog,
) -> Replica {
    let faults: Arc<Mutex<Vec<Arc<FaultyStore<MemoryStore>>>>> = Arc::default();
    let make = {
        let (world, faults) = (world.clone(), faults.clone());
        move |name: String| {
            let store = FaultyStore::new(world.store(&name));
            faults.lock().unwrap().push(store.clone());
            std::future::ready(Ok(store as Arc<dyn LockStore>))
        }
    };
    let shards = Shards::builder("sim", format!("replica-{i}"), count, make)
        .member_slots(SLOTS)
        .lease_duration(LEASE)
        .renew_deadline(RENEW)
        .retry_period(RETRY)
        .clock(Arc::new(clock))
        .jitter_seed(seed)
        .build()
        .expect("valid timing");
    let shutdown = CancellationToken::new();
    let work = log.work(format!("replica-{i}"), DRAIN);
    let task = tokio::spawn({
        let (shards, shutdown) = (shards.clone(), shutdown.clone());
        async move {
            let _ = shards.run(shutdown, work).await;
        }
    });
    Replica {
        shards,
        shutdown,
        task,
        faults,
    }
}

impl Replica {
    fn set(&self, fault: Fault) {
        for s in self.faults.lock().unwrap().iter() {
            s.set(fault);
        }
    }
}

/// What happens to replica `i` at a time before the heal.
#[derive(Clone, Copy, Debug)]
enum Event {
    /// Crashes (its tasks stop at once), restarts after the duration.
    Crash(usize, Duration),
    /// Cut off from the store for the duration.
    Partition(usize, Duration),
    /// Shuts down gracefully, restarts after the duration.
    Leave(usize, Duration),
}

/// Runs one shard seed to the end and judges it.
pub fn simulate_shards(seed: u64) -> ShardReport {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime");
    runtime.block_on(run(seed))
}

async fn run(seed: u64) -> ShardReport {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5348_4152_4453);
    let origin = Instant::now();
    let n: usize = rng.random_range(3..=5);
    let count: u32 = rng.random_range(4..=12);
    let rates: Vec<f64> = (0..n).map(|_| rng.random_range(0.9..1.1)).collect();
    let clocks: Vec<SimClock> = rates.iter().map(|r| SimClock::new(origin, *r)).collect();
    let world = World::default();
    let log = ShardLog::default();
    // The last replica joins late, at a random time before the heal.
    let join_at = origin + FAULTY.mul_f64(rng.random_range(0.1..0.8));
    let mut events: Vec<(Instant, Event)> = (0..rng.random_range(1..=4))
        .map(|_| {
            let at = origin + FAULTY.mul_f64(rng.random_range(0.05..0.9));
            let i = rng.random_range(0..n - 1);
            let d = LEASE.mul_f64(rng.random_range(0.2..3.0));
            let e = match rng.random_range(0..3) {
                0 => Event::Crash(i, d),
                1 => Event::Partition(i, d),
                _ => Event::Leave(i, d),
            };
            (at, e)
        })
        .collect();
    events.sort_by_key(|(t, _)| *t);
    let heal = origin + FAULTY;
    let mut tally = [0u32; 4];
    let mut incarnation = vec![0u64; n];
    let spawn = |i: usize, inc: u64| {
        start(
            &world,
            i,
            count,
            clocks[i],
            seed ^ ((i as u64) << 40) ^ inc,
            &log,
        )
    };
    let mut replicas: Vec<Option<Replica>> = (0..n - 1).map(|i| Some(spawn(i, 0))).collect();
    replicas.push(None);
    // (when, replica, what): restarts and heals of partitions.
    let mut later: Vec<(Instant, usize, bool)> = vec![(join_at, n - 1, true)];
    tally[3] += 1;
    let mut queue = events.clone();
    queue.reverse();
    loop {
        let next_event = queue.last().map(|(t, _)| *t);
        let next_later = later.iter().map(|(t, _, _)| *t).min();
        let Some(next) = [next_event, next_later].into_iter().flatten().min() else {
            break;
        };
        tokio::time::sleep_until(next).await;
        let now = Instant::now();
        let due: Vec<(Instant, usize, bool)> = later
            .iter()
            .copied()
            .filter(|(t, _, _)| *t <= now)
            .collect();
        later.retain(|(t, _, _)| *t > now);
        for (_, i, restart) in due {
            if restart {
                incarnation[i] += 1;
                replicas[i] = Some(spawn(i, incarnation[i]));
            } else if let Some(r) = &replicas[i] {
                r.set(Fault::Pass);
            }
        }
        while queue.last().is_some_and(|(t, _)| *t <= now) {
            let (_, event) = queue.pop().unwrap();
            match event {
                Event::Crash(i, d) => {
                    let Some(r) = replicas[i].take() else {
                        continue;
                    };
                    tally[0] += 1;
                    r.task.abort();
                    let _ = r.task.await;
                    log.crashed(&format!("replica-{i}"), now);
                    later.push(((now + d).min(heal), i, true));
                }
                Event::Partition(i, d) => {
                    let Some(r) = &replicas[i] else { continue };
                    tally[1] += 1;
                    r.set(Fault::Fail);
                    later.push(((now + d).min(heal), i, false));
                }
                Event::Leave(i, d) => {
                    let Some(r) = replicas[i].take() else {
                        continue;
                    };
                    tally[2] += 1;
                    r.shutdown.cancel();
                    let stopping = r.task;
                    // It drains and releases in the background; it is
                    // back (a new incarnation) after `d`.
                    tokio::spawn(async move {
                        let _ = stopping.await;
                    });
                    later.push(((now + d).min(heal), i, true));
                }
            }
        }
    }
    for r in replicas.iter().flatten() {
        r.set(Fault::Pass);
    }

    let mut violations = Vec::new();
    let slowest = rates.iter().cloned().fold(f64::INFINITY, f64::min);
    let bound = owned_bound(slowest);
    tokio::time::sleep_until(heal.max(Instant::now())).await;
    let healed = Instant::now();
    let live: Vec<&Replica> = replicas.iter().flatten().collect();
    let snapshot = |live: &[&Replica]| -> Vec<BTreeSet<u32>> {
        live.iter()
            .map(|r| r.shards.owned().borrow().clone())
            .collect()
    };
    let settled = |sets: &[BTreeSet<u32>]| {
        let union: BTreeSet<u32> = sets.iter().flatten().copied().collect();
        let total: usize = sets.iter().map(BTreeSet::len).sum();
        let lo = sets.iter().map(BTreeSet::len).min().unwrap_or(0);
        let hi = sets.iter().map(BTreeSet::len).max().unwrap_or(0);
        union.len() == count as usize && total == count as usize && hi - lo <= 1
    };
    // Owned: every shard, disjointly, within the bound.
    let mut owned_after = None;
    // Balanced: within one, and then unchanged for two leases (no shard
    // moves once the membership holds); `since` is when that state began.
    let mut last = (snapshot(&live), Instant::now());
    let balanced_after = loop {
        let sets = snapshot(&live);
        let now = Instant::now();
        if sets != last.0 {
            last = (sets.clone(), now);
        }
        let union: BTreeSet<u32> = sets.iter().flatten().copied().collect();
        let total: usize = sets.iter().map(BTreeSet::len).sum();
        if owned_after.is_none() && union.len() == count as usize && total == count as usize {
            owned_after = Some(now - healed);
        }
        if settled(&sets) && now - last.1 >= LEASE * 2 {
            break Some(last.1.saturating_duration_since(healed));
        }
        if now - healed > bound + LEASE * 2 {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    match owned_after {
        Some(d) if d <= bound => {}
        _ => violations.push(format!(
            "not every shard owned within {bound:?} of the heal (owned after {owned_after:?}): {:?}",
            snapshot(&live)
        )),
    }
    match balanced_after {
        Some(d) if d <= bound => {}
        _ => violations.push(format!(
            "not within one of fair, then still for two leases, within {bound:?} of the heal (from {balanced_after:?}): {:?}",
            snapshot(&live)
        )),
    }
    for r in replicas.iter().flatten() {
        r.task.abort();
    }
    violations.extend(log.violations(Instant::now()));
    ShardReport {
        seed,
        violations,
        terms: log.terms().len(),
        events: tally,
        shape: (n, count),
        settled: (owned_after, balanced_after),
    }
}
