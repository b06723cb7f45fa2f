//! `--scale`: one process holding and following 1 … 10,000 locks on one
//! store. What each lock costs the process (memory, CPU per renew), what
//! it costs the store (requests per second), how many connections the
//! process keeps open to the store, and the hand-off time with all locks
//! held.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tenure_core::{
    ElectionTask, LeaderElector, LeaderRecord, LockStore, StoreError, Version, Versioned,
    WatchStream,
};
use tokio::time::Instant;

use crate::measure::Timing;
use crate::stats::{Ms, Samples};

/// Opens lock `name` for one candidate.
pub(crate) type OpenFn = Box<
    dyn Fn(String) -> Pin<Box<dyn Future<Output = Result<Arc<dyn LockStore>, StoreError>> + Send>>
        + Send
        + Sync,
>;

/// A server-side request counter.
pub(crate) type CountFn = Box<dyn Fn() -> Pin<Box<dyn Future<Output = u64> + Send>> + Send + Sync>;

/// One store as the scale run sees it.
pub(crate) struct Target {
    pub open: OpenFn,
    /// Requests the server has answered so far.
    pub count: Option<CountFn>,
    /// The server's TCP port, to count this process's connections to it.
    pub port: Option<u16>,
}

/// How many hand-offs are timed at each size.
const HANDOFFS: usize = 20;

/// The table's head.
pub(crate) fn header(name: &str) {
    println!("\n### {name}\n");
    println!(
        "| locks | all held after | memory per held lock | memory per followed lock | connections to the store | store calls/s per lock | server requests/s per lock | renews/s | CPU per renew | hand-off p50 | hand-off p99 |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
}

/// Runs `n` locks on `target` and prints its table row. Run each size in
/// a process of its own: memory freed by a larger run stays with the
/// process and would hide a smaller run's.
pub(crate) async fn row(target: &Target, n: usize, window: Duration, timing: Timing) {
    match one_size(target, n, window, timing).await {
        Ok(row) => println!("{row}"),
        Err(e) => println!("| {n} | failed: {e} | | | | | | | | | |"),
    }
}

/// Counts the candidates' calls to their stores, and their updates (renews).
#[derive(Debug, Default)]
pub(crate) struct Calls {
    pub(crate) all: AtomicU64,
    updates: AtomicU64,
    /// Terms that ended (`on_stopped_leading`): none should, until the
    /// hand-offs, once every lock is held.
    stopped: AtomicU64,
}

#[derive(Debug)]
pub(crate) struct Counted(pub(crate) Arc<dyn LockStore>, pub(crate) Arc<Calls>);

impl Counted {
    fn call(&self) {
        self.1.all.fetch_add(1, Ordering::Relaxed);
    }
}

#[async_trait]
impl LockStore for Counted {
    async fn get(&self) -> Result<Option<Versioned>, StoreError> {
        self.call();
        self.0.get().await
    }
    async fn create(&self, r: &LeaderRecord) -> Result<Version, StoreError> {
        self.call();
        self.0.create(r).await
    }
    async fn update(&self, r: &LeaderRecord, v: &Version) -> Result<Version, StoreError> {
        self.call();
        self.1.updates.fetch_add(1, Ordering::Relaxed);
        self.0.update(r, v).await
    }
    async fn watch(&self) -> Result<Option<WatchStream>, StoreError> {
        self.call();
        self.0.watch().await
    }
    async fn token_floor(&self) -> Result<Option<u64>, StoreError> {
        self.call();
        self.0.token_floor().await
    }
    fn describe(&self) -> String {
        self.0.describe()
    }
}

struct Side {
    electors: Vec<LeaderElector>,
    tasks: Vec<ElectionTask>,
}

async fn start(
    target: &Target,
    prefix: &str,
    n: usize,
    id: &str,
    calls: &Arc<Calls>,
    timing: Timing,
) -> Result<Side, String> {
    let mut side = Side {
        electors: Vec::with_capacity(n),
        tasks: Vec::with_capacity(n),
    };
    for i in 0..n {
        let store = (target.open)(format!("{prefix}-{i}"))
            .await
            .map_err(|e| format!("opening lock {i}: {e}"))?;
        let stopped = calls.clone();
        let elector = LeaderElector::builder(Counted(store, calls.clone()), id)
            .on_stopped_leading(move || {
                stopped.stopped.fetch_add(1, Ordering::Relaxed);
            })
            .lease_duration(timing.lease)
            .renew_deadline(timing.renew)
            .retry_period(timing.retry)
            .build()
            .expect("valid timing");
        side.tasks
            .push(elector.spawn(|l| async move { l.cancelled().await }));
        side.electors.push(elector);
    }
    Ok(side)
}

async fn wait_all(
    electors: &[LeaderElector],
    limit: Duration,
    f: impl Fn(&LeaderElector) -> bool,
) -> bool {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if electors.iter().all(&f) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

async fn one_size(
    target: &Target,
    n: usize,
    window: Duration,
    timing: Timing,
) -> Result<String, String> {
    let prefix = format!("scale{n}");
    let port = target.port;
    let calls = Arc::new(Calls::default());
    let rss0 = rss();

    let t = Instant::now();
    let leaders = start(target, &prefix, n, "leader", &calls, timing).await?;
    let limit = Duration::from_secs(60) + timing.lease;
    if !wait_all(&leaders.electors, limit, |e| e.is_leader()).await {
        let held = leaders.electors.iter().filter(|e| e.is_leader()).count();
        return Err(format!("only {held} of {n} led after {limit:?}"));
    }
    let all_held = t.elapsed();
    let stopped0 = calls.stopped.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss1 = rss();

    let followers = start(target, &prefix, n, "follower", &calls, timing).await?;
    let knows = |e: &LeaderElector| e.leader().as_deref() == Some("leader");
    if !wait_all(&followers.electors, limit, knows).await {
        let knowing = followers.electors.iter().filter(|e| knows(e)).count();
        let lost = calls.stopped.load(Ordering::Relaxed) - stopped0;
        return Err(format!(
            "{knowing} of {n} followers saw the leader after {limit:?} ({lost} terms ended meanwhile)"
        ));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (rss2, conns) = (rss(), port.map(tenure_conformance::sockets::connections_to));

    // Steady state: every lock held and followed.
    let ops0 = match &target.count {
        Some(count) => Some(count().await),
        None => None,
    };
    let count = |c: &Calls| {
        (
            c.all.load(Ordering::Relaxed),
            c.updates.load(Ordering::Relaxed),
        )
    };
    let (cpu0, (calls0, renews0), t0) = (cpu_time(), count(&calls), Instant::now());
    tokio::time::sleep(window).await;
    let (cpu1, (calls1, renews1), elapsed) = (cpu_time(), count(&calls), t0.elapsed());
    let ops1 = match &target.count {
        Some(count) => Some(count().await),
        None => None,
    };
    let renew_count = renews1 - renews0;
    let calls_per_lock = (calls1 - calls0) as f64 / elapsed.as_secs_f64() / n as f64;
    let per_lock = ops0
        .zip(ops1)
        .map(|(a, b)| format!("{:.3}", (b - a) as f64 / elapsed.as_secs_f64() / n as f64))
        .unwrap_or_else(|| "–".into());
    let cpu_per_renew = if renew_count > 0 {
        format!(
            "{:.0} µs",
            (cpu1 - cpu0).as_secs_f64() * 1e6 / renew_count as f64
        )
    } else {
        "–".into()
    };

    // A term lost in the steady state (a renew that missed its deadline)
    // is shown in the row; the count goes to stderr either way.
    let lost = calls.stopped.load(Ordering::Relaxed) - stopped0;
    eprintln!("{n} locks: {lost} terms ended between all held and the end of the window");
    let held_cell = if lost == 0 {
        Ms(all_held).to_string()
    } else {
        format!("{} ({lost} terms lost after)", Ms(all_held))
    };

    // Hand-offs with everything else held.
    let mut samples = Samples::default();
    let mut leader_tasks: Vec<Option<ElectionTask>> = leaders.tasks.into_iter().map(Some).collect();
    for k in 0..HANDOFFS.min(n) {
        let i = k * n / HANDOFFS.min(n);
        let follower = &followers.electors[i];
        if follower.is_leader() {
            // Its leader lost the term already: no hand-off to time.
            eprintln!("lock {i}: the follower already leads; hand-off not timed");
            continue;
        }
        let mut state = follower.subscribe();
        let task = leader_tasks[i].take().expect("a leader");
        let t = Instant::now();
        let shutdown = tokio::spawn(task.shutdown());
        let took = tokio::time::timeout(timing.lease * 2, state.wait_for(|s| s.is_leader)).await;
        let elapsed = t.elapsed();
        let _ = shutdown.await;
        if took.is_err() {
            return Err(format!("lock {i}: the follower did not take over"));
        }
        samples.push(elapsed);
    }

    let connections = conns.map_or_else(|| "–".into(), |c| c.to_string());
    let row = format!(
        "| {n} | {held_cell} | {} | {} | {connections} | {calls_per_lock:.3} | {per_lock} | {:.1} | {cpu_per_renew} | {} | {} |",
        bytes((rss1.saturating_sub(rss0)) / n as u64),
        bytes((rss2.saturating_sub(rss1)) / n as u64),
        renew_count as f64 / elapsed.as_secs_f64(),
        Ms(samples.p50()),
        Ms(samples.p99()),
    );

    // Everything down before the next size.
    let downs = leader_tasks
        .into_iter()
        .flatten()
        .chain(followers.tasks)
        .map(|t| tokio::spawn(t.shutdown()));
    futures::future::join_all(downs).await;
    Ok(row)
}

fn bytes(b: u64) -> String {
    if b >= 10 * 1024 {
        format!("{:.0} KiB", b as f64 / 1024.0)
    } else {
        format!("{:.1} KiB", b as f64 / 1024.0)
    }
}

/// This process's resident memory, in bytes.
pub(crate) fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// This process's CPU time (user + system).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command's closing parenthesis; utime and stime are
    // the 14th and 15th fields of the line.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields
        .get(11..13)
        .map(|f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum())
        .unwrap_or(0);
    // USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}
