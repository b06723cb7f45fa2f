//! The measures, written once over a [`StoreFactory`].

use std::sync::Arc;
use std::time::Duration;

use tenure_conformance::StoreFactory;
use tenure_core::{
    CancellationToken, ElectionError, LeaderElector, LeaderRecord, LockStore, Version,
};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::phases::{Phases, StampedStore, Stamps, Timed};
use crate::stats::Samples;

/// Election timing.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timing {
    pub lease: Duration,
    pub renew: Duration,
    pub retry: Duration,
}

/// client-go's defaults.
pub(crate) const DEFAULT: Timing = Timing {
    lease: Duration::from_secs(15),
    renew: Duration::from_secs(10),
    retry: Duration::from_secs(2),
};

/// The short timing for fail-over.
pub(crate) const SHORT: Timing = Timing {
    lease: Duration::from_secs(2),
    renew: Duration::from_millis(1500),
    retry: Duration::from_millis(400),
};

/// How a candidate talks to its store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Style {
    /// tenure as shipped: watch wake-ups, one round trip per renew.
    Tenure,
    /// tenure without the watch (polling only).
    NoWatch,
    /// client-go's pattern: no watch, and a read before every write.
    ClientGo,
}

pub(crate) struct Candidate {
    pub elector: LeaderElector,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), ElectionError>>,
}

impl Candidate {
    pub(crate) async fn start(
        f: &dyn StoreFactory,
        lock: &str,
        id: String,
        timing: Timing,
        style: Style,
    ) -> Candidate {
        Self::start_stamped(f, lock, id, timing, style, None).await
    }

    /// A candidate whose store marks the hand-off's steps in `stamps`.
    pub(crate) async fn start_stamped(
        f: &dyn StoreFactory,
        lock: &str,
        id: String,
        timing: Timing,
        style: Style,
        stamps: Option<&Arc<Stamps>>,
    ) -> Candidate {
        let mut store = f.open(lock).await.expect("open the lock");
        if style == Style::ClientGo {
            store = Arc::new(ReadBeforeWrite(store));
        }
        if let Some(stamps) = stamps {
            let stamps = stamps.clone();
            store = Arc::new(StampedStore {
                inner: store,
                stamps,
            });
        }
        let elector = LeaderElector::builder(store, id)
            .lease_duration(timing.lease)
            .renew_deadline(timing.renew)
            .retry_period(timing.retry)
            .use_watch(style == Style::Tenure)
            .build()
            .expect("valid timing");
        let shutdown = CancellationToken::new();
        let task = tokio::spawn({
            let elector = elector.clone();
            let shutdown = shutdown.clone();
            async move {
                elector
                    .run(shutdown, |l| async move { l.cancelled().await })
                    .await
            }
        });
        Candidate {
            elector,
            shutdown,
            task,
        }
    }

    pub(crate) async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }
}

/// Waits until one of `cands` leads; its index. Woken by the electors'
/// state channels, so the figure is not rounded to a timer tick.
async fn next_leader(cands: &[Candidate], limit: Duration) -> Option<usize> {
    if let Some(i) = cands.iter().position(|c| c.elector.is_leader()) {
        return Some(i);
    }
    let waits = cands.iter().map(|c| {
        let mut rx = c.elector.subscribe();
        Box::pin(async move {
            let _ = rx.wait_for(|s| s.is_leader).await;
        })
    });
    let any = futures::future::select_all(waits);
    tokio::time::timeout(limit, any).await.ok()?;
    cands.iter().position(|c| c.elector.is_leader())
}

/// How the leader leaves in [`hand_offs`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Exit {
    /// Graceful shutdown after the followers waited this long (1 s: their
    /// watches are settled; 20 ms: the newest is fresh): its work returns
    /// at once, it releases.
    Release(Duration),
    /// Its task is aborted without release, at a random point of the
    /// renew cycle, as a real crash would be.
    Crash,
}

/// `candidates` candidates; `runs` times the leader leaves (and is replaced
/// by a new candidate): time from its exit until another leads.
pub(crate) async fn hand_offs(
    f: &dyn StoreFactory,
    lock: &str,
    runs: usize,
    timing: Timing,
    style: Style,
    exit: Exit,
    candidates: usize,
) -> Samples {
    hand_offs_with(f, lock, runs, timing, style, exit, candidates, None)
        .await
        .0
}

/// Release hand-offs between two candidates with watches, each cut into
/// its steps ([`Phases`]).
pub(crate) async fn release_phases(
    f: &dyn StoreFactory,
    lock: &str,
    runs: usize,
    settle: Duration,
) -> (Samples, Phases) {
    let stamps = Arc::new(Stamps::default());
    let exit = Exit::Release(settle);
    hand_offs_with(
        f,
        lock,
        runs,
        DEFAULT,
        Style::Tenure,
        exit,
        2,
        Some(&stamps),
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn hand_offs_with(
    f: &dyn StoreFactory,
    lock: &str,
    runs: usize,
    timing: Timing,
    style: Style,
    exit: Exit,
    candidates: usize,
    stamps: Option<&Arc<Stamps>>,
) -> (Samples, Phases) {
    let start = |id: String| Candidate::start_stamped(f, lock, id, timing, style, stamps);
    let mut phases = Phases::default();
    let mut cands = Vec::new();
    for id in 0..candidates {
        cands.push(start(format!("c{id}")).await);
    }
    let limit = timing.lease * 3;
    let mut samples = Samples::default();
    let mut leader = next_leader(&cands, limit).await.expect("a first leader");
    for run in 0..runs {
        let settle = match exit {
            Exit::Release(settle) => settle,
            Exit::Crash => timing.retry + rand_duration(timing.retry),
        };
        tokio::time::sleep(settle).await;
        let old = cands.remove(leader);
        if let Some(s) = stamps {
            s.reset();
        }
        let t = Instant::now();
        match exit {
            Exit::Release(_) => old.shutdown.cancel(),
            Exit::Crash => old.task.abort(),
        }
        leader = next_leader(&cands, limit).await.expect("a successor");
        let seen = Instant::now();
        samples.push(seen - t);
        if let Some(s) = stamps {
            phases.push(t, s.marks(), seen);
        }
        let _ = old.task.await;
        cands.push(start(format!("c{}", run + candidates)).await);
    }
    for c in cands {
        c.stop().await;
    }
    (samples, phases)
}

fn rand_duration(max: Duration) -> Duration {
    use rand::RngExt;
    max.mul_f64(rand::rng().random_range(0.0..1.0))
}

/// Renew cost: the leader's renew is one compare-and-swap on the version it
/// wrote last; `runs` of them back to back.
pub(crate) async fn renew_latency(f: &dyn StoreFactory, lock: &str, runs: usize) -> Samples {
    let store = f.open(lock).await.expect("open the lock");
    let mut record = LeaderRecord::held_by("bench-leader", DEFAULT.lease);
    let mut version = store.create(&record).await.expect("create");
    let mut samples = Samples::default();
    for _ in 0..runs {
        record.renew_time = Some(tenure_core::record::now_micros());
        let t = Instant::now();
        version = store.update(&record, &version).await.expect("renew");
        samples.push(t.elapsed());
    }
    samples
}

/// Operations per second the store receives from `n` candidates on one
/// lock at default timing, counted by `count` (a server-side counter).
pub(crate) async fn store_load<C, Fut>(
    f: &dyn StoreFactory,
    lock: &str,
    n: usize,
    window: Duration,
    count: C,
) -> f64
where
    C: Fn() -> Fut,
    Fut: std::future::Future<Output = u64>,
{
    let mut cands = Vec::new();
    for i in 0..n {
        cands.push(Candidate::start(f, lock, format!("c{i}"), DEFAULT, Style::Tenure).await);
    }
    next_leader(&cands, DEFAULT.lease * 2)
        .await
        .expect("a leader");
    // Past start-up: every candidate has read once and settled.
    tokio::time::sleep(DEFAULT.retry * 3).await;
    let before = count().await;
    tokio::time::sleep(window).await;
    let after = count().await;
    for c in cands {
        c.stop().await;
    }
    (after - before) as f64 / window.as_secs_f64()
}

/// client-go's pattern over any store: every write is preceded by a read
/// (client-go's `tryAcquireOrRenew` always Gets before it Updates).
#[derive(Debug)]
struct ReadBeforeWrite(Arc<dyn LockStore>);

#[async_trait::async_trait]
impl LockStore for ReadBeforeWrite {
    async fn get(&self) -> Result<Option<tenure_core::Versioned>, tenure_core::StoreError> {
        self.0.get().await
    }

    async fn create(&self, record: &LeaderRecord) -> Result<Version, tenure_core::StoreError> {
        self.0.create(record).await
    }

    async fn update(
        &self,
        record: &LeaderRecord,
        expected: &Version,
    ) -> Result<Version, tenure_core::StoreError> {
        let _ = self.0.get().await?;
        self.0.update(record, expected).await
    }

    async fn token_floor(&self) -> Result<Option<u64>, tenure_core::StoreError> {
        self.0.token_floor().await
    }

    fn describe(&self) -> String {
        self.0.describe()
    }
}

/// The release hand-off through tenure's stores alone, without its engine:
/// two stores on the lock, each with its own client; the leader writes the
/// free record, a waiter task swaps on the version its watch shows as soon
/// as the event comes. Timed like [`release_phases`] from the release
/// write, so set beside it the difference is the engine's.
pub(crate) async fn store_handoff(
    f: &dyn StoreFactory,
    lock: &str,
    runs: usize,
    settle: Duration,
) -> (Samples, Phases) {
    use futures::StreamExt;
    use tenure_core::WatchEvent;
    let stamps = Arc::new(Stamps::default());
    let leader = f.open(lock).await.expect("open the lock");
    let waiter = f.open(lock).await.expect("open the lock");
    let held = LeaderRecord::held_by("bench-waiter", DEFAULT.lease);
    let free = LeaderRecord::default();
    let mut version = match leader.get().await.expect("read the lock") {
        None => leader.create(&held).await.expect("create the lock"),
        Some(v) => leader
            .update(&held, &v.version)
            .await
            .expect("take the lock"),
    };
    let mut events = waiter.watch().await.expect("watch").expect("a watch");
    let (done_tx, mut done) = tokio::sync::mpsc::channel::<Version>(1);
    let waiter_task = {
        let stamps = stamps.clone();
        tokio::spawn(async move {
            while let Some(event) = events.next().await {
                let WatchEvent::Put(v) = event else { continue };
                if !v.record.is_free() {
                    continue; // our own swap
                }
                stamps.mark(|m| &mut m.event, true);
                stamps.mark(|m| &mut m.swap_sent, true);
                let written = waiter.update(&held, &v.version).await.expect("swap");
                stamps.mark(|m| &mut m.swap_done, true);
                if done_tx.send(written).await.is_err() {
                    return;
                }
            }
        })
    };
    let mut timed = Timed::default();
    for _ in 0..runs {
        let t = stamps.start_after(settle).await;
        leader.update(&free, &version).await.expect("release");
        version = timed.finish(t, &stamps, &mut done).await;
    }
    waiter_task.abort();
    (timed.samples, timed.phases)
}
