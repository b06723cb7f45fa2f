//! Election-level scenarios, in real time with short durations (lease 1 s,
//! renew deadline 0.6 s, retry 0.2 s) and bounds derived from them with
//! margins.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tenure_core::{CancellationToken, ElectionError, LeaderElector, LockStore};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::{Fault, StoreFactory};

pub(super) const LEASE: Duration = Duration::from_millis(1000);
pub(super) const RENEW: Duration = Duration::from_millis(600);
pub(super) const RETRY: Duration = Duration::from_millis(200);
/// Slack for scheduling and store latency on a loaded two-core CI machine.
pub(super) const MARGIN: Duration = Duration::from_millis(400);
/// The longest wait between two polls: retry plus client-go's jitter (1.2).
pub(super) const MAX_POLL: Duration = Duration::from_millis(440);

/// One term as the leader's work saw it.
#[derive(Clone, Debug)]
pub(super) struct Term {
    pub(super) identity: String,
    pub(super) token: u64,
    start: Instant,
    end: Option<Instant>,
}

/// Every term of every candidate of one scenario, in start order, and when
/// each crashed candidate crashed.
#[derive(Clone, Default)]
pub(super) struct Timeline(Arc<Mutex<Vec<Term>>>, Arc<Mutex<Vec<(String, Instant)>>>);

impl Timeline {
    pub(super) fn terms(&self) -> Vec<Term> {
        let mut terms = self.0.lock().unwrap().clone();
        // A crashed candidate's late-begun term is pushed late but starts
        // at its crash: order by start, not by push.
        terms.sort_by_key(|t| t.start);
        terms
    }

    /// A term's work began. Work that first runs after its candidate
    /// crashed (the work is its own task: `is_leader()` can turn true and
    /// the crash come before the work is first polled) belongs to a term
    /// whose validity ended at the crash.
    fn begin(&self, identity: &str, token: u64) {
        let crashed = self
            .1
            .lock()
            .unwrap()
            .iter()
            .find(|(id, _)| id == identity)
            .map(|(_, at)| *at);
        self.0.lock().unwrap().push(Term {
            identity: identity.to_owned(),
            token,
            start: crashed.unwrap_or_else(Instant::now),
            end: crashed,
        });
    }

    fn close(&self, identity: &str, at: Instant) {
        for t in self.0.lock().unwrap().iter_mut() {
            if t.identity == identity && t.end.is_none() {
                t.end = Some(at);
            }
        }
    }

    /// No two terms overlap: each starts after the one before has ended.
    pub(super) fn assert_no_overlap(&self) {
        let terms = self.terms();
        for pair in terms.windows(2) {
            let end = pair[0].end.unwrap_or_else(|| {
                panic!(
                    "{} still leads while {} started: {terms:?}",
                    pair[0].identity, pair[1].identity
                )
            });
            assert!(end <= pair[1].start, "terms overlap: {terms:?}");
        }
    }
}

pub(super) struct Candidate {
    pub(super) identity: String,
    pub(super) elector: LeaderElector,
    shutdown: CancellationToken,
    pub(super) task: JoinHandle<Result<(), ElectionError>>,
    reports: Arc<Mutex<Vec<String>>>,
}

impl Candidate {
    pub(super) fn is_leader(&self) -> bool {
        self.elector.is_leader()
    }

    /// Graceful shutdown (release); returns when `run` has returned.
    pub(super) async fn stop(self) -> Result<(), ElectionError> {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("a candidate did not shut down within 10 s")
            .expect("the candidate's task panicked")
    }

    /// A crash: the run future is dropped without release.
    pub(super) fn crash(self, timeline: &Timeline) {
        self.task.abort();
        let now = Instant::now();
        timeline
            .1
            .lock()
            .unwrap()
            .push((self.identity.clone(), now));
        timeline.close(&self.identity, now);
    }
}

pub(super) struct Options {
    key: &'static str,
    preempt_below: Option<&'static str>,
    use_watch: bool,
}

pub(super) const PLAIN: Options = Options {
    key: "",
    preempt_below: None,
    use_watch: true,
};

pub(super) fn spawn(
    store: Arc<dyn LockStore>,
    identity: &str,
    timeline: &Timeline,
    opts: Options,
) -> Candidate {
    let reports = Arc::new(Mutex::new(Vec::new()));
    let seen = reports.clone();
    let mut builder = LeaderElector::builder(store, identity)
        .lease_duration(LEASE)
        .renew_deadline(RENEW)
        .retry_period(RETRY)
        .holder_key(opts.key)
        .use_watch(opts.use_watch)
        .on_new_leader(move |leader| seen.lock().unwrap().push(leader.to_owned()));
    if let Some(ours) = opts.preempt_below {
        builder = builder.key_comparison(move |holder| holder < ours);
    }
    let elector = builder.build().unwrap();
    let shutdown = CancellationToken::new();
    let timeline = timeline.clone();
    let id = identity.to_owned();
    let task = {
        let elector = elector.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            elector
                .run(shutdown, move |leadership| {
                    let timeline = timeline.clone();
                    let id = id.clone();
                    async move {
                        timeline.begin(&id, leadership.fencing_token());
                        leadership.cancelled().await;
                        timeline.close(&id, Instant::now());
                    }
                })
                .await
        })
    };
    Candidate {
        identity: identity.to_owned(),
        elector,
        shutdown,
        task,
        reports,
    }
}

pub(super) async fn candidate(
    f: &dyn StoreFactory,
    lock: &str,
    identity: &str,
    timeline: &Timeline,
    opts: Options,
) -> Candidate {
    let store = f
        .open(lock)
        .await
        .unwrap_or_else(|e| panic!("open {lock}: {e}"));
    spawn(store, identity, timeline, opts)
}

/// Tokens of successive terms: +1 each, or (on a store whose floor is
/// above the last token, as Redis's and etcd's are) strictly rising.
async fn assert_rise(store: &dyn tenure_core::LockStore, tokens: &[u64]) {
    let loose_floor = store
        .token_floor()
        .await
        .unwrap()
        .is_some_and(|floor| floor > *tokens.last().unwrap());
    for pair in tokens.windows(2) {
        if loose_floor {
            assert!(pair[1] > pair[0], "tokens rise: {tokens:?}");
        } else {
            assert_eq!(
                pair[1],
                pair[0] + 1,
                "tokens rise by one per leader: {tokens:?}"
            );
        }
    }
}

/// Waits until `cond` holds, checking every 5 ms; panics after `limit`.
pub(super) async fn wait_for(
    limit: Duration,
    what: &str,
    mut cond: impl FnMut() -> bool,
) -> Duration {
    let start = Instant::now();
    loop {
        if cond() {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub(super) fn leaders(cands: &[Candidate]) -> Vec<usize> {
    (0..cands.len()).filter(|&i| cands[i].is_leader()).collect()
}

pub(super) async fn wait_for_leader(cands: &[Candidate], limit: Duration) -> usize {
    wait_for(limit, "a leader", || leaders(cands).len() == 1).await;
    leaders(cands)[0]
}

/// Of three candidates exactly one leads, and it keeps leading.
pub async fn exactly_one_of_three_leads(f: &dyn StoreFactory) {
    let t = Timeline::default();
    let mut cands = Vec::new();
    for id in ["a", "b", "c"] {
        cands.push(candidate(f, "one-of-three", id, &t, PLAIN).await);
    }
    let leader = wait_for_leader(&cands, LEASE + MAX_POLL + MARGIN).await;
    let until = Instant::now() + 3 * LEASE;
    while Instant::now() < until {
        assert_eq!(
            leaders(&cands),
            vec![leader],
            "exactly one, the same, must lead"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(t.terms().len(), 1, "one term only: {:?}", t.terms());
    for c in cands {
        c.stop().await.unwrap();
    }
    t.assert_no_overlap();
}

/// When the leader dies without releasing, another leads after the lease
/// ran out: not before `lease − retry` (it saw a renew at most one retry
/// before the crash) and within `lease + 2 × retry`.
pub async fn crashed_leader_is_replaced_within_lease(f: &dyn StoreFactory) {
    let t = Timeline::default();
    let mut cands = Vec::new();
    for id in ["a", "b", "c"] {
        cands.push(candidate(f, "crash", id, &t, PLAIN).await);
    }
    let leader = wait_for_leader(&cands, LEASE + MAX_POLL + MARGIN).await;
    let old = cands.remove(leader);
    let old_id = old.identity.clone();
    let crashed = Instant::now();
    old.crash(&t);
    wait_for(
        LEASE + 2 * RETRY + MARGIN,
        "a new leader after the crash",
        || leaders(&cands).len() == 1,
    )
    .await;
    let took = crashed.elapsed();
    assert!(
        took + RETRY + Duration::from_millis(50) >= LEASE,
        "took over after {took:?}: before the crashed leader's lease could have run out"
    );
    assert_ne!(cands[leaders(&cands)[0]].identity, old_id);
    for c in cands {
        c.stop().await.unwrap();
    }
    t.assert_no_overlap();
}

async fn release_hand_off(f: &dyn StoreFactory, lock: &str, use_watch: bool, bound: Duration) {
    let t = Timeline::default();
    let opts = || Options { use_watch, ..PLAIN };
    let mut cands = Vec::new();
    for id in ["a", "b", "c"] {
        cands.push(candidate(f, lock, id, &t, opts()).await);
    }
    let leader = wait_for_leader(&cands, LEASE + MAX_POLL + MARGIN).await;
    // Let the followers settle into waiting.
    tokio::time::sleep(3 * RETRY).await;
    let old = cands.remove(leader);
    old.stop().await.unwrap();
    let released = Instant::now();
    wait_for(bound, "a new leader after the release", || {
        leaders(&cands).len() == 1
    })
    .await;
    let took = released.elapsed();
    tracing::info!(?took, use_watch, "release hand-off");
    for c in cands {
        c.stop().await.unwrap();
    }
    t.assert_no_overlap();
    let terms = t.terms();
    assert!(
        terms.len() >= 2 && terms[0].identity != terms[1].identity,
        "{terms:?}"
    );
}

/// A graceful release is taken over at once on stores that can watch
/// (well under one retry period); by the next poll on the others.
pub async fn graceful_release_hands_off_quickly(f: &dyn StoreFactory) {
    let bound = if f.supports_watch() {
        RETRY
    } else {
        MAX_POLL + MARGIN
    };
    release_hand_off(f, "release-watch", true, bound).await;
}

/// Without watch, a release is taken at the next poll: within
/// `retry × (1 + 1.2)` plus a margin.
pub async fn graceful_release_hands_off_by_polling(f: &dyn StoreFactory) {
    release_hand_off(f, "release-poll", false, MAX_POLL + MARGIN).await;
}

/// Each change of leader raises the stored transitions and the fencing
/// token: by exactly one on a store without a token floor (Kubernetes, as
/// client-go counts `leaderTransitions`) or with a tight one (memory); on a
/// store whose floor is looser (Redis: the server clock; etcd: the
/// revision) a takeover starts above the floor, so it rises by one or more.
pub async fn transitions_and_fencing_token_rise_by_one(f: &dyn StoreFactory) {
    let t = Timeline::default();
    let mut cands = Vec::new();
    for id in ["a", "b", "c"] {
        cands.push(candidate(f, "transitions", id, &t, PLAIN).await);
    }
    let reader = f.open("transitions").await.unwrap();
    let mut tokens = Vec::new();
    for _ in 0..3 {
        let leader = wait_for_leader(&cands, LEASE + MAX_POLL + MARGIN).await;
        let token = cands[leader]
            .elector
            .state()
            .fencing_token
            .expect("a leader has a token");
        let stored = reader.get().await.unwrap().unwrap().record;
        assert_eq!(stored.holder_identity, cands[leader].identity);
        assert_eq!(
            stored.leader_transitions, token,
            "the token is the stored transitions"
        );
        tokens.push(token);
        cands.remove(leader).stop().await.unwrap();
    }
    assert_rise(&*reader, &tokens).await;
    let terms = t.terms();
    let term_tokens: Vec<u64> = terms.iter().map(|t| t.token).collect();
    assert_eq!(term_tokens, tokens, "each term's work got its token");
    t.assert_no_overlap();
}

/// A candidate whose key pre-empts the holder's takes the lock before the
/// lease expires, the old leader steps down, and the token rises.
pub async fn higher_key_preempts_the_holder(f: &dyn StoreFactory) {
    let t = Timeline::default();
    let low = candidate(f, "preempt", "low", &t, Options { key: "1", ..PLAIN }).await;
    wait_for(
        LEASE + MAX_POLL + MARGIN,
        "the first candidate leads",
        || low.is_leader(),
    )
    .await;
    let low_token = low.elector.state().fencing_token.unwrap();
    let high = candidate(
        f,
        "preempt",
        "high",
        &t,
        Options {
            key: "2",
            preempt_below: Some("2"),
            use_watch: true,
        },
    )
    .await;
    // It must not wait for the lease: it pre-empts on its first attempt.
    wait_for(LEASE - RETRY, "the higher key leads", || high.is_leader()).await;
    wait_for(
        MAX_POLL + MARGIN,
        "the pre-empted leader steps down",
        || !low.is_leader(),
    )
    .await;
    let high_token = high.elector.state().fencing_token.unwrap();
    let reader = f.open("preempt").await.unwrap();
    assert_rise(&*reader, &[low_token, high_token]).await;
    // The lower key cannot take it back while the holder renews.
    tokio::time::sleep(2 * LEASE).await;
    assert!(high.is_leader() && !low.is_leader());
    low.stop().await.unwrap();
    high.stop().await.unwrap();
    let reader = f.open("preempt").await.unwrap();
    assert!(reader.get().await.unwrap().unwrap().record.is_free());
}

/// Every candidate reports each new leader once, in the order they led.
pub async fn follower_reports_each_new_leader_once(f: &dyn StoreFactory) {
    let t = Timeline::default();
    let mut cands = Vec::new();
    for id in ["a", "b", "c", "d"] {
        cands.push(candidate(f, "reports", id, &t, PLAIN).await);
    }
    let mut order = Vec::new();
    for _ in 0..2 {
        let leader = wait_for_leader(&cands, LEASE + MAX_POLL + MARGIN).await;
        order.push(cands[leader].identity.clone());
        // Long enough for every follower to see this leader.
        tokio::time::sleep(LEASE).await;
        cands.remove(leader).stop().await.unwrap();
    }
    let leader = wait_for_leader(&cands, LEASE + MAX_POLL + MARGIN).await;
    order.push(cands[leader].identity.clone());
    tokio::time::sleep(LEASE).await;
    for c in &cands {
        let reports = c.reports.lock().unwrap().clone();
        assert_eq!(
            reports, order,
            "{} must report each leader once, in order",
            c.identity
        );
    }
    for c in cands {
        c.stop().await.unwrap();
    }
}

/// A leader that can no longer reach its store stops leading within
/// `renew_deadline` (plus a margin), before anyone else can take over, and a
/// candidate that can reach the store takes the lock after the lease.
pub async fn unreachable_leader_steps_down_and_is_replaced(f: &dyn StoreFactory) {
    let t = Timeline::default();
    let (store, switch) = f.open_faulty("unreachable").await.unwrap();
    let cut = spawn(store, "cut-off", &t, PLAIN);
    wait_for(
        LEASE + MAX_POLL + MARGIN,
        "the first candidate leads",
        || cut.is_leader(),
    )
    .await;
    let others = vec![
        candidate(f, "unreachable", "b", &t, PLAIN).await,
        candidate(f, "unreachable", "c", &t, PLAIN).await,
    ];
    tokio::time::sleep(2 * RETRY).await;
    assert!(cut.is_leader() && leaders(&others).is_empty());
    switch.set(Fault::Hang);
    let partitioned = Instant::now();
    wait_for(RENEW + MARGIN, "the cut-off leader steps down", || {
        !cut.is_leader()
    })
    .await;
    let stepped_down = partitioned.elapsed();
    wait_for(
        LEASE + 2 * RETRY + MARGIN,
        "a reachable candidate leads",
        || leaders(&others).len() == 1,
    )
    .await;
    let replaced = partitioned.elapsed();
    assert!(
        stepped_down < replaced,
        "stepped down after {stepped_down:?}, replaced after {replaced:?}"
    );
    t.assert_no_overlap();
    // The cut-off candidate campaigns again once the network is back, but
    // cannot take the renewed lock.
    switch.set(Fault::Pass);
    tokio::time::sleep(2 * LEASE).await;
    assert!(!cut.is_leader());
    assert_eq!(leaders(&others).len(), 1);
    cut.task.abort();
    for c in others {
        c.stop().await.unwrap();
    }
    t.assert_no_overlap();
}
