//! Test helpers: a store wrapper that counts calls and injects faults, and
//! candidates that record their terms on a timeline.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tenure_core::{
    CancellationToken, Clock, ElectionError, LeaderElector, LeaderRecord, LockStore, MemoryStore,
    StoreError, Version, Versioned, WatchStream,
};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// What [`TestStore`] does to calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Pass,
    /// Every call fails with `Unavailable`.
    Fail,
    /// Every call hangs forever.
    Hang,
    /// The next update is applied but its reply is lost (`Unavailable`).
    LoseNextReply,
    /// Every call takes this long before it reaches the store.
    Slow(Duration),
    /// Every call is answered at once, but the caller's thread gets to the
    /// answer only this much later (it was busy): the paused clock moves on
    /// inside the call.
    Starved(Duration),
}

/// Wraps a [`MemoryStore`]: counts calls, injects faults.
#[derive(Debug)]
pub struct TestStore {
    pub inner: MemoryStore,
    mode: Mutex<Mode>,
    pub gets: AtomicUsize,
    pub updates: AtomicUsize,
    pub creates: AtomicUsize,
    /// Every call, also the failed ones.
    pub attempts: AtomicUsize,
    watch: bool,
}

impl TestStore {
    pub fn new(inner: &MemoryStore) -> Arc<Self> {
        Self::with_watch(inner, true)
    }

    pub fn with_watch(inner: &MemoryStore, watch: bool) -> Arc<Self> {
        Arc::new(TestStore {
            inner: inner.clone(),
            mode: Mutex::new(Mode::Pass),
            gets: AtomicUsize::new(0),
            updates: AtomicUsize::new(0),
            creates: AtomicUsize::new(0),
            attempts: AtomicUsize::new(0),
            watch,
        })
    }

    pub fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    pub fn calls(&self) -> (usize, usize, usize) {
        (
            self.gets.load(Ordering::SeqCst),
            self.creates.load(Ordering::SeqCst),
            self.updates.load(Ordering::SeqCst),
        )
    }

    async fn gate(&self) -> Result<(), StoreError> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        let mode = *self.mode.lock().unwrap();
        match mode {
            Mode::Fail => Err(StoreError::unavailable("injected failure")),
            Mode::Hang => std::future::pending().await,
            Mode::Slow(d) => {
                tokio::time::sleep(d).await;
                // The store may have become unreachable meanwhile.
                if *self.mode.lock().unwrap() == Mode::Hang {
                    std::future::pending::<()>().await;
                }
                Ok(())
            }
            Mode::Starved(d) => {
                tokio::time::advance(d).await;
                Ok(())
            }
            Mode::Pass | Mode::LoseNextReply => Ok(()),
        }
    }
}

#[async_trait]
impl LockStore for TestStore {
    async fn get(&self) -> Result<Option<Versioned>, StoreError> {
        self.gate().await?;
        self.gets.fetch_add(1, Ordering::SeqCst);
        self.inner.get().await
    }

    async fn create(&self, record: &LeaderRecord) -> Result<Version, StoreError> {
        self.gate().await?;
        self.creates.fetch_add(1, Ordering::SeqCst);
        self.inner.create(record).await
    }

    async fn update(
        &self,
        record: &LeaderRecord,
        expected: &Version,
    ) -> Result<Version, StoreError> {
        self.gate().await?;
        self.updates.fetch_add(1, Ordering::SeqCst);
        let result = self.inner.update(record, expected).await;
        let mut mode = self.mode.lock().unwrap();
        if *mode == Mode::LoseNextReply && result.is_ok() {
            *mode = Mode::Pass;
            return Err(StoreError::unavailable("reply lost (injected)"));
        }
        result
    }

    async fn token_floor(&self) -> Result<Option<u64>, StoreError> {
        self.gate().await?;
        self.inner.token_floor().await
    }

    async fn watch(&self) -> Result<Option<WatchStream>, StoreError> {
        if !self.watch {
            return Ok(None);
        }
        self.gate().await?;
        self.inner.watch().await
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}

/// One term as the work saw it.
#[derive(Clone, Debug)]
pub struct Term {
    pub identity: String,
    pub token: u64,
    pub start: Instant,
    pub end: Option<Instant>,
}

/// Every term of a test, with the callbacks' events in order.
#[derive(Clone, Default)]
pub struct Timeline {
    pub terms: Arc<Mutex<Vec<Term>>>,
    pub events: Arc<Mutex<Vec<String>>>,
}

impl Timeline {
    pub fn terms(&self) -> Vec<Term> {
        self.terms.lock().unwrap().clone()
    }

    pub fn events(&self) -> Vec<String> {
        self.events.lock().unwrap().clone()
    }

    pub fn event(&self, e: String) {
        self.events.lock().unwrap().push(e);
    }

    pub fn assert_no_overlap(&self) {
        let terms = self.terms();
        for pair in terms.windows(2) {
            let end = pair[0].end.expect("an earlier term is still open");
            assert!(end <= pair[1].start, "terms overlap: {terms:?}");
        }
    }
}

/// Timing of a candidate (seconds).
#[derive(Clone, Copy)]
pub struct Timing {
    pub lease: u64,
    pub renew: u64,
    pub retry: u64,
}

pub const DEFAULT: Timing = Timing {
    lease: 15,
    renew: 10,
    retry: 2,
};

pub struct Candidate {
    pub elector: LeaderElector,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<Result<(), ElectionError>>,
}

pub struct Spec {
    pub identity: &'static str,
    pub timing: Timing,
    pub key: &'static str,
    pub preempt_below: Option<&'static str>,
    pub release: bool,
    pub clock: Option<Arc<dyn Clock>>,
    /// How long the work keeps running after it was told to stop.
    pub drain: Duration,
}

pub fn spec(identity: &'static str) -> Spec {
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

pub fn start(store: Arc<dyn LockStore>, spec: Spec, timeline: &Timeline) -> Candidate {
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
pub async fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> Duration {
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

pub fn held(identity: &str, lease: u64, transitions: u64) -> LeaderRecord {
    let mut r = LeaderRecord::held_by(identity, Duration::from_secs(lease));
    r.leader_transitions = transitions;
    r
}

pub async fn record(store: &MemoryStore) -> LeaderRecord {
    store.get().await.unwrap().unwrap().record
}
