//! Mixed fleets: one lock shared by candidates that reach it through two
//! different factories — on Kubernetes a `MultiLock` beside Lease-only or
//! ConfigMap-only candidates, as during a rolling migration from one lock
//! kind to the other. Whatever each kind reads and writes, at most one
//! candidate may lead at any moment, and each term's fencing token must be
//! above the one before.
//!
//! Same durations as the election scenarios (lease 1 s, renew deadline
//! 0.6 s, retry 0.2 s); the bounds are derived from them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tenure_core::{CancellationToken, ElectionError, LeaderElector, LockStore};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::StoreFactory;

const LEASE: Duration = Duration::from_millis(1000);
const RENEW: Duration = Duration::from_millis(600);
const RETRY: Duration = Duration::from_millis(200);
/// Slack for scheduling and store latency on a loaded two-core CI machine.
const MARGIN: Duration = Duration::from_millis(400);
/// The longest wait between two polls: retry plus client-go's jitter (1.2).
const MAX_POLL: Duration = Duration::from_millis(440);
/// How often the sampler looks at every candidate's `is_leader`: well
/// under the overlap a takeover of a live leader causes (up to a retry
/// period, until the old leader's next renew fails).
const SAMPLE: Duration = Duration::from_millis(2);
/// Terms ended by a crash or a release, alternately.
const ROUNDS: usize = 6;

/// One term as the leader's work saw it.
#[derive(Clone, Debug)]
struct Term {
    identity: String,
    token: u64,
    start: Instant,
    end: Option<Instant>,
}

/// The shared record of the scenario: the terms, the candidates the
/// sampler looks at, and what it saw go wrong.
#[derive(Clone, Default)]
struct Fleet {
    terms: Arc<Mutex<Vec<Term>>>,
    /// Candidates that are neither crashed nor shutting down.
    roster: Arc<Mutex<Vec<(String, LeaderElector)>>>,
    violations: Arc<Mutex<Vec<String>>>,
}

impl Fleet {
    fn close(&self, identity: &str) {
        let now = Instant::now();
        for t in self.terms.lock().unwrap().iter_mut() {
            if t.identity == identity && t.end.is_none() {
                t.end = Some(now);
            }
        }
    }

    fn leaders(&self) -> Vec<String> {
        let roster = self.roster.lock().unwrap();
        roster
            .iter()
            .filter(|(_, e)| e.is_leader())
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Takes `identity` off the roster: a candidate shutting down still
    /// says it leads while it writes the release, after its work (and
    /// validity) ended, so the terms judge it from here on.
    fn retire(&self, identity: &str) {
        self.roster.lock().unwrap().retain(|(id, _)| id != identity);
    }

    /// Samples every [`SAMPLE`] until `stop`; returns how many samples it
    /// took and in how many more than one candidate led (the first few of
    /// those are in `violations`).
    fn sampler(&self, stop: CancellationToken) -> JoinHandle<(u64, u64)> {
        let fleet = self.clone();
        tokio::spawn(async move {
            let (mut samples, mut bad) = (0, 0);
            while !stop.is_cancelled() {
                let leaders = fleet.leaders();
                if leaders.len() > 1 {
                    bad += 1;
                    let mut v = fleet.violations.lock().unwrap();
                    if v.len() < 10 {
                        v.push(format!("sample {samples}: {leaders:?} lead at once"));
                    }
                }
                samples += 1;
                tokio::time::sleep(SAMPLE).await;
            }
            (samples, bad)
        })
    }
}

struct Member {
    identity: String,
    /// 0 for a candidate of factory `a`, 1 for `b`.
    side: usize,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), ElectionError>>,
}

fn spawn(store: Arc<dyn LockStore>, identity: String, side: usize, fleet: &Fleet) -> Member {
    let elector = LeaderElector::builder(store, identity.clone())
        .lease_duration(LEASE)
        .renew_deadline(RENEW)
        .retry_period(RETRY)
        .build()
        .expect("a valid config");
    fleet
        .roster
        .lock()
        .unwrap()
        .push((identity.clone(), elector.clone()));
    let shutdown = CancellationToken::new();
    let task = {
        let fleet = fleet.clone();
        let shutdown = shutdown.clone();
        let id = identity.clone();
        tokio::spawn(async move {
            elector
                .run(shutdown, move |leadership| {
                    let fleet = fleet.clone();
                    let id = id.clone();
                    async move {
                        fleet.terms.lock().unwrap().push(Term {
                            identity: id.clone(),
                            token: leadership.fencing_token(),
                            start: Instant::now(),
                            end: None,
                        });
                        leadership.cancelled().await;
                        fleet.close(&id);
                    }
                })
                .await
        })
    };
    Member {
        identity,
        side,
        shutdown,
        task,
    }
}

/// Waits for a candidate's `run` to return after its shutdown.
async fn finish(m: Member) {
    tokio::time::timeout(Duration::from_secs(10), m.task)
        .await
        .unwrap_or_else(|_| panic!("{} did not shut down within 10 s", m.identity))
        .expect("the candidate's task panicked")
        .expect("a clean shutdown");
}

/// Waits until exactly one member of the roster leads; panics after `limit`.
async fn wait_for_leader(fleet: &Fleet, limit: Duration) -> String {
    let start = Instant::now();
    loop {
        if let [one] = fleet.leaders().as_slice() {
            return one.clone();
        }
        assert!(
            start.elapsed() < limit,
            "no single leader within {limit:?}; terms so far: {:?}",
            fleet.terms.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Two candidates opened through `a` and two through `b` share one lock,
/// as during a rolling migration from `b` (the old kind) to `a`: the first
/// leader is one of `b`'s. For `ROUNDS` terms, the leader leads for over
/// a lease while the other three try to take the lock; then it crashes
/// (even rounds) or releases (odd rounds), and the rest of its kind restart
/// with it, so that the next leader is of the other kind and each hand-off
/// crosses kinds; once it leads, its kind's replacements join. Throughout,
/// a sampler checks every few milliseconds that at most one candidate
/// leads; each leader must still lead at the end of its lease; at the end,
/// no two terms' work overlapped and the fencing tokens of successive terms
/// strictly rose.
pub async fn mixed_fleet_never_has_two_leaders(a: &dyn StoreFactory, b: &dyn StoreFactory) {
    const LOCK: &str = "mixed-fleet";
    let factories = [a, b];
    let fleet = Fleet::default();
    let mut joined = [0usize; 2];
    let join = |side: usize, joined: &mut [usize; 2], fleet: &Fleet| {
        let identity = format!("{}-{}", ["a", "b"][side], joined[side]);
        joined[side] += 1;
        let f = factories[side];
        let fleet = fleet.clone();
        async move {
            let store = f
                .open(LOCK)
                .await
                .unwrap_or_else(|e| panic!("open {LOCK}: {e}"));
            spawn(store, identity, side, &fleet)
        }
    };
    let stop_sampling = CancellationToken::new();
    let sampler = fleet.sampler(stop_sampling.clone());

    // An old candidate leads first; then the rest join.
    let mut members = vec![join(1, &mut joined, &fleet).await];
    let mut leader = wait_for_leader(&fleet, LEASE + MAX_POLL + MARGIN).await;
    members.push(join(1, &mut joined, &fleet).await);
    members.push(join(0, &mut joined, &fleet).await);
    members.push(join(0, &mut joined, &fleet).await);

    // A crashed leader's lease runs out a lease after its last renew; a
    // candidate that saw a release waits a lease from it if the other
    // object still names another holder.
    let takeover = 2 * LEASE + 2 * MAX_POLL + MARGIN;
    let mut led = vec![leader.clone()];
    for round in 0..ROUNDS {
        // Long enough for every follower to see the leader's record stay
        // the same for a lease, if it misreads its renews.
        tokio::time::sleep(LEASE + 2 * MAX_POLL).await;
        assert_eq!(
            fleet.leaders(),
            vec![leader.clone()],
            "round {round}: the leader must keep its lock while it renews (leaders in turn: {led:?})"
        );
        let i = members
            .iter()
            .position(|m| m.identity == leader)
            .expect("the leader is a member");
        let old = members.remove(i);
        let side = old.side;
        fleet.retire(&old.identity);
        if round % 2 == 0 {
            old.task.abort();
            fleet.close(&old.identity);
        } else {
            old.shutdown.cancel();
            finish(old).await;
        }
        // The rest of the leader's kind restart: the next leader is of the
        // other kind.
        let (restarting, staying) = members.into_iter().partition(|m| m.side == side);
        members = staying;
        for m in restarting {
            fleet.retire(&m.identity);
            m.shutdown.cancel();
            finish(m).await;
        }
        leader = wait_for_leader(&fleet, takeover).await;
        led.push(leader.clone());
        for _ in 0..2 {
            members.push(join(side, &mut joined, &fleet).await);
        }
    }
    tokio::time::sleep(LEASE).await;

    stop_sampling.cancel();
    let (samples, bad) = sampler.await.expect("the sampler panicked");
    for m in &members {
        fleet.retire(&m.identity);
        m.shutdown.cancel();
    }
    for m in members {
        let _ = tokio::time::timeout(Duration::from_secs(10), m.task).await;
    }
    let terms = fleet.terms.lock().unwrap().clone();
    tracing::info!(
        ?led,
        samples,
        terms = terms.len(),
        "mixed fleet: leaders in turn"
    );
    let violations = fleet.violations.lock().unwrap().clone();
    assert!(
        bad == 0,
        "two leaders at once in {bad} of {samples} samples (leaders in turn: {led:?}): \
         {violations:#?}\nterms: {terms:#?}"
    );
    for pair in terms.windows(2) {
        let end = pair[0].end.unwrap_or_else(|| {
            panic!(
                "{} still worked while {} started: {terms:#?}",
                pair[0].identity, pair[1].identity
            )
        });
        assert!(end <= pair[1].start, "terms overlap: {terms:#?}");
        assert!(
            pair[1].token > pair[0].token,
            "fencing tokens must strictly rise from term to term: {terms:#?}"
        );
    }
    assert!(terms.len() > ROUNDS, "{terms:#?}");
}
