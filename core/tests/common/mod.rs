//! Test helpers: a store wrapper that counts calls and injects faults, and
//! candidates that record their terms on a timeline.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tenure_core::testing::FaultyStore;
use tenure_core::{
    CancellationToken, Clock, ElectionError, LeaderElector, LeaderRecord, LockStore, MemoryStore,
};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The engine's tests wrap a [`MemoryStore`] in the one fault-injecting
/// store every suite shares.
#[allow(unused_imports)] // not every test file injects faults
pub(crate) use tenure_core::testing::Fault;
pub(crate) type TestStore = FaultyStore<MemoryStore>;

/// Wraps a clone of `memory` (which keeps the same record).
pub(crate) fn test_store(memory: &MemoryStore) -> Arc<TestStore> {
    FaultyStore::new(memory.clone())
}

/// As [`test_store`], for a store that cannot watch.
pub(crate) fn test_store_without_watch(memory: &MemoryStore) -> Arc<TestStore> {
    FaultyStore::without_watch(memory.clone())
}

/// One term as the work saw it.
#[derive(Clone, Debug)]
pub(crate) struct Term {
    pub identity: String,
    pub token: u64,
    pub start: Instant,
    pub end: Option<Instant>,
}

/// Every term of a test, with the callbacks' events in order.
#[derive(Clone, Default)]
pub(crate) struct Timeline {
    pub terms: Arc<Mutex<Vec<Term>>>,
    pub events: Arc<Mutex<Vec<String>>>,
}

impl Timeline {
    pub(crate) fn terms(&self) -> Vec<Term> {
        self.terms.lock().unwrap().clone()
    }

    pub(crate) fn events(&self) -> Vec<String> {
        self.events.lock().unwrap().clone()
    }

    pub(crate) fn event(&self, e: String) {
        self.events.lock().unwrap().push(e);
    }

    pub(crate) fn assert_no_overlap(&self) {
        let terms = self.terms();
        for pair in terms.windows(2) {
            let end = pair[0].end.expect("an earlier term is still open");
            assert!(end <= pair[1].start, "terms overlap: {terms:?}");
        }
    }
}

/// Timing of a candidate (seconds).
#[derive(Clone, Copy)]
pub(crate) struct Timing {
    pub lease: u64,
    pub renew: u64,
    pub retry: u64,
}

pub(crate) const DEFAULT: Timing = Timing {
    lease: 15,
    renew: 10,
    retry: 2,
};

pub(crate) struct Candidate {
    pub elector: LeaderElector,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<Result<(), ElectionError>>,
}

pub(crate) struct Spec {
    pub identity: &'static str,
    pub timing: Timing,
    pub key: &'static str,
    pub preempt_below: Option<&'static str>,
    pub release: bool,
    pub clock: Option<Arc<dyn Clock>>,
    /// How long the work keeps running after it was told to stop.
    pub drain: Duration,
}

pub(crate) fn spec(identity: &'static str) -> Spec {
    Spec {
        identity,
        timing: DEFAULT,
        key: "",
        preempt_below: None,
        release: true,
        clock: None,
        drain: Duration::ZERO,
    }
}

pub(crate) fn start(store: Arc<dyn LockStore>, spec: Spec, timeline: &Timeline) -> Candidate {
    let t = timeline.clone();
    let id = spec.identity;
    let mut builder = LeaderElector::builder(store, id)
        .lease_duration(Duration::from_secs(spec.timing.lease))
        .renew_deadline(Duration::from_secs(spec.timing.renew))
        .retry_period(Duration::from_secs(spec.timing.retry))
        .holder_key(spec.key)
        .release_on_cancel(spec.release)
        .on_new_leader({
            let t = t.clone();
            move |leader| t.event(format!("{id} saw {leader}"))
        })
        .on_stopped_leading({
            let t = t.clone();
            move || t.event(format!("{id} stopped"))
        });
    if let Some(ours) = spec.preempt_below {
        builder = builder.key_comparison(move |holder| holder < ours);
    }
    if let Some(clock) = spec.clock.clone() {
        builder = builder.clock(clock);
    }
    let elector = builder.build().unwrap();
    let shutdown = CancellationToken::new();
    let drain = spec.drain;
    let task = {
        let elector = elector.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            elector
                .run(shutdown, move |leadership| {
                    let t = t.clone();
                    async move {
                        t.event(format!("{id} started {}", leadership.fencing_token()));
                        t.terms.lock().unwrap().push(Term {
                            identity: id.to_owned(),
                            token: leadership.fencing_token(),
                            start: Instant::now(),
                            end: None,
                        });
                        leadership.cancelled().await;
                        tokio::time::sleep(drain).await;
                        let now = Instant::now();
                        for term in t.terms.lock().unwrap().iter_mut() {
                            if term.identity == id && term.end.is_none() {
                                term.end = Some(now);
                            }
                        }
                        t.event(format!("{id} work done"));
                    }
                })
                .await
        })
    };
    Candidate {
        elector,
        shutdown,
        task,
    }
}

/// Advances paused time in small steps until `cond` holds; returns how long it took.
pub(crate) async fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() <= limit,
            "condition not met within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    start.elapsed()
}

pub(crate) fn held(identity: &str, lease: u64, transitions: u64) -> LeaderRecord {
    let mut r = LeaderRecord::held_by(identity, Duration::from_secs(lease));
    r.leader_transitions = transitions;
    r
}

pub(crate) async fn record(store: &MemoryStore) -> LeaderRecord {
    store.get().await.unwrap().unwrap().record
}
