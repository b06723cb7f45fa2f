//! # tenure-sim
//!
//! A deterministic, seeded simulation of whole elections: 3 to 7 real
//! `LeaderElector`s from tenure-core, each on its own clock (rates within
//! the documented skew-rate tolerance, or beyond it for the negative
//! control), one simulated store with linearizable compare-and-swap that
//! behaves like Redis, etcd or Kubernetes where it matters to safety, and
//! faults drawn from the seed. Everything runs on tokio's paused clock in
//! one thread, and the engine's selects are biased and its jitter seeded,
//! so a seed replays exactly.
//!
//! The oracle judges on true time, never on a candidate's clock:
//! - **safety**: no two terms' validity intervals overlap, a term being
//!   valid from the moment it was won until its own `Leadership` stops
//!   saying `is_valid()` (mapped from the candidate's clock to true time),
//!   or until the candidate crashed; fencing tokens strictly rise from term
//!   to term;
//! - **liveness**: once every fault has healed, some candidate leads within
//!   `(lease + 2.2 × retry + lock_delay) / slowest clock rate` plus two
//!   operation timeouts (a record that has to be created is held for
//!   `lock_delay` before its term starts).
#![warn(missing_docs)]

mod clock;
pub mod faults;
pub mod shards;
mod store;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tenure_core::{CancellationToken, LeaderElector, Leadership, LockStore};
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use clock::SimClock;
pub use faults::Counts;
pub use store::{REQUEST_TIMEOUT, StoreKind};
pub use tenure_core::planted::{Bug, plant};

use faults::Event;
use store::{Link, Store};

/// Lease, renew deadline and retry of every candidate: the ratio 1.5 is
/// the skew-rate tolerance.
pub const LEASE: Duration = Duration::from_secs(3);
/// See [`LEASE`].
pub const RENEW: Duration = Duration::from_secs(2);
/// See [`LEASE`].
pub const RETRY: Duration = Duration::from_millis(500);
/// The candidates' `lock_delay` in the seeded runs: a lease, the
/// documented way to close the gap of a candidate that never saw a record.
/// With it set, no overlap and no token order is excused (the exemption of
/// `judge` applies only with no delay, and never to tokens on a store with
/// a floor).
pub const LOCK_DELAY: Duration = LEASE;
/// True time with faults, before they heal.
pub const FAULTY: Duration = Duration::from_secs(30);

/// What a run is asked to do.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// The store's behaviour.
    pub kind: StoreKind,
    /// Give two candidates clocks whose rates differ by more than
    /// lease / renew deadline (the negative control).
    pub skew_beyond_bound: bool,
    /// Every candidate's `lock_delay` ([`LOCK_DELAY`] in the seeded runs;
    /// zero for negative controls that a held create would mask).
    pub lock_delay: Duration,
}

/// The outcome of one seed.
#[derive(Debug)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// Every broken rule, in words (empty: the run passed).
    pub violations: Vec<String>,
    /// The faults this run exercised.
    pub counts: Counts,
}

/// One term as the oracle sees it.
struct Term {
    candidate: usize,
    token: u64,
    start: Instant,
    leadership: Leadership,
    clock: SimClock,
    crashed: Option<Instant>,
}

impl Term {
    /// When the term stopped being valid, in true time.
    fn end(&self) -> Instant {
        let valid = self.clock.to_true(self.leadership.valid_until());
        match self.crashed {
            Some(c) => valid.min(c),
            None => valid,
        }
    }
}

type Terms = Arc<Mutex<Vec<Term>>>;
/// Every (candidate, true time, holder) a candidate reported as new leader.
type Sightings = Arc<Mutex<Vec<(usize, Instant, String)>>>;

/// One candidate process: its elector task, and its pause switch.
struct Process {
    task: JoinHandle<()>,
    pause: Arc<Mutex<Option<Instant>>>,
    elector: LeaderElector,
}

/// Runs one seed to the end and judges it.
pub fn simulate(seed: u64, options: Options) -> Report {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime");
    runtime.block_on(run(seed, options))
}

async fn run(seed: u64, options: Options) -> Report {
    let mut rng = StdRng::seed_from_u64(seed);
    let start = Instant::now();
    let n = rng.random_range(3..=7);
    let mut rates: Vec<f64> = (0..n).map(|_| rng.random_range(0.85..1.15)).collect();
    if options.skew_beyond_bound {
        // One clock fast, one slow: their ratio is beyond lease / renew.
        rates[0] = 0.6;
        rates[1] = 1.6;
    }
    let plan = faults::draw(&mut rng, start, n, FAULTY, LEASE, options.kind);
    if std::env::var_os("TENURE_SIM_TRACE").is_some() {
        trace_to_stderr(start);
        eprintln!("seed {seed}: {n} candidates, clock rates {rates:?}\n{plan:#?}");
    }
    let store = Store::new(
        options.kind,
        StdRng::seed_from_u64(rng.random()),
        plan.clone(),
    );
    store.count(|c| {
        c.seeds = 1;
        c.candidates = n as u64;
        for p in &plan.partitions {
            if p.cut == faults::Cut::Watch {
                c.watch_partitions += 1;
            } else {
                c.partitions += 1;
            }
        }
    });
    let terms: Terms = Arc::default();
    let sightings: Sightings = Arc::default();
    let clocks: Vec<SimClock> = rates.iter().map(|r| SimClock::new(start, *r)).collect();
    let spawn_candidate = |i: usize, incarnation: u64| {
        spawn(
            i,
            Link {
                store: store.clone(),
                candidate: i,
            },
            clocks[i],
            seed ^ (i as u64) << 32 ^ incarnation,
            terms.clone(),
            sightings.clone(),
            options.lock_delay,
        )
    };
    let mut procs: Vec<Process> = (0..n).map(|i| spawn_candidate(i, 0)).collect();
    // Another tool that writes the lock object all along (not a fault: it
    // goes on after the heal), on Kubernetes and etcd.
    let background = plan.background_touch.map(|period| {
        let store = store.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                store.count(|c| c.foreign_writes += 1);
                store.touch();
            }
        })
    });

    // The schedule of faults, then healing.
    let mut restarts: Vec<(Instant, usize)> = Vec::new();
    let mut incarnations = vec![0u64; n];
    let mut schedule = plan.schedule.clone();
    schedule.reverse();
    loop {
        let next_fault = schedule.last().map(|(t, _)| *t);
        let next_restart = restarts.iter().map(|(t, _)| *t).min();
        let Some(next) = [next_fault, next_restart].into_iter().flatten().min() else {
            break;
        };
        tokio::time::sleep_until(next).await;
        let now = Instant::now();
        for (_, i) in restarts.iter().filter(|(t, _)| *t <= now) {
            incarnations[*i] += 1;
            procs[*i].task.abort();
            procs[*i] = spawn_candidate(*i, incarnations[*i]);
        }
        restarts.retain(|(t, _)| *t > now);
        while schedule.last().is_some_and(|(t, _)| *t <= now) {
            let (_, event) = schedule.pop().unwrap();
            match event {
                Event::Pause(i, d) => {
                    store.count(|c| {
                        c.pauses += 1;
                        if d > LEASE {
                            c.pauses_beyond_lease += 1;
                        }
                    });
                    // Resumes no later than the heal.
                    *procs[i].pause.lock().unwrap() = Some((now + d).min(plan.heal));
                }
                Event::Crash(i, _) if restarts.iter().any(|(_, j)| *j == i) => {
                    // Already down: it restarts once.
                }
                Event::Crash(i, d) => {
                    store.count(|c| c.crashes += 1);
                    procs[i].task.abort();
                    for t in terms.lock().unwrap().iter_mut() {
                        if t.candidate == i && t.crashed.is_none() {
                            if std::env::var_os("TENURE_SIM_TRACE").is_some() {
                                eprintln!("{:?}: candidate {i} crashed", now - start);
                            }
                            t.crashed = Some(now);
                        }
                    }
                    // Restarted with the same identity, before the heal.
                    restarts.push(((now + d).min(plan.heal), i));
                }
                Event::Delete => {
                    store.count(|c| c.deletions += 1);
                    store.delete();
                }
                Event::ForeignWrites(k) => {
                    store.count(|c| c.foreign_writes += k as u64);
                    let store = store.clone();
                    tokio::spawn(async move {
                        for _ in 0..k {
                            store.touch();
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    });
                }
                Event::DataLoss => {
                    store.count(|c| c.data_losses += 1);
                    store.lose_data();
                }
                Event::WatchTooOld => {
                    store.count(|c| c.watch_too_old += 1);
                    store.expire_watches();
                }
            }
        }
    }

    // Liveness: once healed, someone leads within the bound.
    let slowest = rates.iter().cloned().fold(f64::INFINITY, f64::min);
    let bound =
        (LEASE + RETRY.mul_f64(2.2) + options.lock_delay).div_f64(slowest) + 2 * REQUEST_TIMEOUT;
    tokio::time::sleep_until(plan.heal.max(Instant::now())).await;
    let healed = Instant::now();
    let mut violations = Vec::new();
    let led = loop {
        if procs.iter().any(|p| p.elector.is_leader()) {
            break true;
        }
        if healed.elapsed() > bound {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    if !led && !options.skew_beyond_bound {
        violations.push(format!(
            "liveness: nobody led within {bound:?} after the faults healed"
        ));
    }
    // Let the last terms play out a little, then judge.
    tokio::time::sleep(LEASE).await;
    for p in &procs {
        p.task.abort();
    }
    if let Some(task) = background {
        task.abort();
    }
    let terms = std::mem::take(&mut *terms.lock().unwrap());
    let blind = store.state.lock().unwrap().blind_creates.clone();
    if std::env::var_os("TENURE_SIM_TRACE").is_some() {
        eprintln!("blind creates (candidate, token): {blind:?}");
        for t in &terms {
            eprintln!(
                "term: candidate {} token {} from {:?} to {:?}",
                t.candidate,
                t.token,
                t.start - start,
                t.end().saturating_duration_since(start)
            );
        }
    }
    let mut gaps = 0;
    let sightings = sightings.lock().unwrap().clone();
    judge(
        &terms,
        &blind,
        &sightings,
        Exemption::for_run(options.kind, options.lock_delay),
        &mut violations,
        &mut gaps,
    );
    let mut counts = store.counts.lock().unwrap().clone();
    counts.terms = terms.len() as u64;
    counts.blind_create_overlaps = gaps;
    Report {
        seed,
        violations,
        counts,
    }
}

/// What the oracle excuses: the documented gap of a candidate that never
/// saw a record, which `lock_delay` closes. Only with no delay is an
/// overlap (or, on a store without a token floor, a token order) of such a
/// create excused and counted apart.
#[derive(Clone, Copy)]
struct Exemption {
    overlap: bool,
    tokens: bool,
}

impl Exemption {
    fn for_run(kind: StoreKind, lock_delay: Duration) -> Self {
        let no_delay = lock_delay.is_zero();
        Exemption {
            overlap: no_delay,
            tokens: no_delay && kind == StoreKind::Kube,
        }
    }
}

/// The oracle on true time: no overlap, rising tokens. A term that was
/// never valid (won so late that its validity had already run out) is no
/// term. With no `lock_delay`, an overlap whose later term created the
/// record over a deleted or lost one, by a candidate that never saw the
/// earlier term's holder lead, is the documented gap (see README: a
/// candidate that never saw a record), counted apart.
fn judge(
    terms: &[Term],
    creates_over_deleted: &[(usize, u64)],
    sightings: &[(usize, Instant, String)],
    exempt: Exemption,
    violations: &mut Vec<String>,
    gaps: &mut u64,
) {
    let mut by_start: Vec<&Term> = terms.iter().filter(|t| t.end() > t.start).collect();
    by_start.sort_by_key(|t| t.start);
    // `b` created the record over a deleted one without ever seeing `a`'s
    // candidate lead (in either order of their replies).
    let blind_to = |a: &Term, b: &Term| {
        let (from, to) = (a.start.min(b.start), a.start.max(b.start));
        let blind = |x: &Term, y: &Term| {
            creates_over_deleted.contains(&(x.candidate, x.token))
                && !sightings.iter().any(|(who, at, holder)| {
                    *who == x.candidate
                        && *holder == format!("candidate-{}", y.candidate)
                        && from <= *at
                        && *at < to
                })
        };
        blind(b, a) || blind(a, b)
    };
    for (i, a) in by_start.iter().enumerate() {
        for b in &by_start[i + 1..] {
            if b.start < a.end() && exempt.overlap && blind_to(a, b) {
                *gaps += 1;
            } else if b.start < a.end() {
                violations.push(format!(
                    "safety: candidate {} (token {}) won at {:?} while candidate {}'s term (token {}) was valid until {:?}",
                    b.candidate,
                    b.token,
                    b.start - by_start[0].start,
                    a.candidate,
                    a.token,
                    a.end() - by_start[0].start
                ));
            }
        }
    }
    for pair in by_start.windows(2) {
        if pair[1].token <= pair[0].token && !(exempt.tokens && blind_to(pair[0], pair[1])) {
            violations.push(format!(
                "fencing: token {} of candidate {} after token {} of candidate {}",
                pair[1].token, pair[1].candidate, pair[0].token, pair[0].candidate
            ));
        }
    }
}

fn spawn(
    i: usize,
    link: Link,
    clock: SimClock,
    jitter: u64,
    terms: Terms,
    sightings: Sightings,
    lock_delay: Duration,
) -> Process {
    let store: Arc<dyn LockStore> = Arc::new(link);
    let elector = LeaderElector::builder(store, format!("candidate-{i}"))
        .lease_duration(LEASE)
        .renew_deadline(RENEW)
        .retry_period(RETRY)
        // A restarted candidate may not create a record it never saw before
        // a lease has passed (the documented way to close that gap).
        .lock_delay(lock_delay)
        .clock(Arc::new(clock))
        .jitter_seed(jitter)
        .on_new_leader(move |holder| {
            sightings
                .lock()
                .unwrap()
                .push((i, Instant::now(), holder.to_owned()))
        })
        .build()
        .expect("a valid configuration");
    let pause = Arc::new(Mutex::new(None));
    let task = {
        let elector = elector.clone();
        let pause = pause.clone();
        tokio::spawn(Pausable {
            inner: Box::pin(async move {
                let _ = elector
                    .run(CancellationToken::new(), move |leadership: Leadership| {
                        terms.lock().unwrap().push(Term {
                            candidate: i,
                            token: leadership.fencing_token(),
                            start: Instant::now(),
                            leadership: leadership.clone(),
                            clock,
                            crashed: None,
                        });
                        async move { leadership.cancelled().await }
                    })
                    .await;
            }),
            pause,
            sleep: None,
        })
    };
    Process {
        task,
        pause,
        elector,
    }
}

/// A candidate's election loop that can be frozen (a GC pause): while
/// paused it is not polled at all; its timers fire late, on resume.
struct Pausable {
    inner: Pin<Box<dyn Future<Output = ()> + Send>>,
    pause: Arc<Mutex<Option<Instant>>>,
    sleep: Option<(Instant, Pin<Box<tokio::time::Sleep>>)>,
}

impl Future for Pausable {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let until = *self.pause.lock().unwrap();
        if let Some(until) = until {
            if Instant::now() < until {
                if self.sleep.as_ref().map(|(u, _)| *u) != Some(until) {
                    self.sleep = Some((until, Box::pin(tokio::time::sleep_until(until))));
                }
                let (_, sleep) = self.sleep.as_mut().expect("set above");
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
            }
            self.sleep = None;
            *self.pause.lock().unwrap() = None;
        }
        self.inner.as_mut().poll(cx)
    }
}

/// Engine logs on stderr with the simulation's true time (for replays).
fn trace_to_stderr(start: Instant) {
    struct SimTime(Instant);
    impl tracing_subscriber::fmt::time::FormatTime for SimTime {
        fn format_time(
            &self,
            w: &mut tracing_subscriber::fmt::format::Writer<'_>,
        ) -> std::fmt::Result {
            write!(
                w,
                "{:>12.6}",
                Instant::now().duration_since(self.0).as_secs_f64()
            )
        }
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "tenure_core=debug".into()),
        )
        .with_timer(SimTime(start))
        .with_writer(std::io::stderr)
        .try_init();
}
