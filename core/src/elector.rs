//! The public face of the engine: [`LeaderElector`] and its builder.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::campaign::Campaign;
use crate::clock::{Clock, TokioClock};
use crate::config::{ConfigError, ElectionConfig, KeyComparison};
use crate::leadership::{ElectionState, Leadership};
use crate::planted::{self, Bug};
use crate::record::LeaderRecord;
use crate::store::{LockStore, StoreError};

/// Why [`LeaderElector::run`] ended with an error.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ElectionError {
    /// The store answered with an error retrying cannot fix
    /// (unauthorized, invalid lock name, a stored value that is not a record).
    // Transparent: the store error's own text and chain, said once.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// `run` was called while another `run` of the same elector was active.
    #[error("this elector is already running")]
    AlreadyRunning,
    /// The leader's work panicked; the term was ended (and the lock
    /// released with `release_on_cancel`) so healthy candidates can lead.
    #[error("the leader's work panicked: {0}")]
    WorkPanicked(String),
    /// A term was lost and `reacquire(false)` said not to campaign again.
    #[error("leadership was lost")]
    LeadershipLost,
    /// The task of a [`LeaderElector::spawn`] panicked (a callback such as
    /// `on_new_leader` panicked) or was aborted.
    #[error("the election task failed: {0}")]
    TaskFailed(String),
}

/// An election running on its own task ([`LeaderElector::spawn`]).
///
/// Dropping it does not abort the task: it asks the election to shut down
/// (step down, wait for the work, release), which then goes on in the
/// background. Call [`shutdown`](Self::shutdown) to wait for that.
#[derive(Debug)]
pub struct ElectionTask {
    shutdown: CancellationToken,
    handle: tokio::task::JoinHandle<Result<(), ElectionError>>,
}

impl ElectionTask {
    /// Asks the election to shut down and waits until it has: the work
    /// returned and the lock was released (with `release_on_cancel`).
    pub async fn shutdown(mut self) -> Result<(), ElectionError> {
        self.shutdown.cancel();
        Self::joined(&mut self.handle).await
    }

    /// Waits for the election to end by itself (an error retrying cannot
    /// fix, or a lost term with `reacquire(false)`), without asking it to.
    pub async fn join(mut self) -> Result<(), ElectionError> {
        Self::joined(&mut self.handle).await
    }

    /// True once the election has ended.
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }

    /// Stops the election at once, without a release: what a crash does
    /// (the lock runs out by its lease). For owners dropped without a
    /// shutdown.
    pub(crate) fn abort(&self) {
        self.handle.abort();
    }

    /// The token that shuts the election down, for code that stops on one.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    async fn joined(
        handle: &mut tokio::task::JoinHandle<Result<(), ElectionError>>,
    ) -> Result<(), ElectionError> {
        match handle.await {
            Ok(result) => result,
            Err(e) => Err(ElectionError::TaskFailed(e.to_string())),
        }
    }
}

impl Drop for ElectionTask {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Why [`LeaderElector::check`] failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to renew leadership on lock {name}: last renew {since:?} ago")]
#[non_exhaustive]
pub struct HealthError {
    /// The lock's name.
    pub name: String,
    /// Time since the last successful renew.
    pub since: Duration,
}

type StoppedFn = Arc<dyn Fn() + Send + Sync>;
type NewLeaderFn = Arc<dyn Fn(&str) + Send + Sync>;

pub(crate) struct Inner {
    pub(crate) config: ElectionConfig,
    pub(crate) store: Arc<dyn LockStore>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) on_stopped: Option<StoppedFn>,
    pub(crate) on_new_leader: Option<NewLeaderFn>,
    pub(crate) state: watch::Sender<ElectionState>,
    /// The open term's handle, if any: its validity tells the health check
    /// when the last renew started (it is the one place that time is kept).
    term: Mutex<Option<Leadership>>,
    running: AtomicBool,
}

/// What the campaign publishes goes through these, so the state's rules
/// live with the state.
impl Inner {
    pub(crate) fn set_term(&self, term: Option<Leadership>) {
        *self.term.lock().unwrap_or_else(|e| e.into_inner()) = term;
    }

    /// The record the store shows now: its holder (empty: free), term
    /// start and transition count.
    pub(crate) fn publish_holder(&self, record: &LeaderRecord) {
        self.state.send_if_modified(|s| observed(s, record));
    }

    /// Leading under `record` (its token, holder and term start), or not
    /// leading (`None`): one change of the state, so one wake-up for its
    /// subscribers.
    pub(crate) fn publish_term(&self, record: Option<&LeaderRecord>) {
        self.state.send_if_modified(|s| {
            let token = record.map(|r| r.leader_transitions);
            let mut modified = s.is_leader != token.is_some() || s.fencing_token != token;
            s.is_leader = token.is_some();
            s.fencing_token = token;
            if let Some(record) = record {
                modified |= observed(s, record);
            }
            modified
        });
    }
}

/// Copies what `record` shows into `s`; true if that changed it.
fn observed(s: &mut ElectionState, record: &LeaderRecord) -> bool {
    let holder = &record.holder_identity;
    let leader = (!holder.is_empty()).then(|| holder.to_owned());
    let acquire_time = record.acquire_time.filter(|_| leader.is_some());
    let transitions = Some(record.leader_transitions);
    let modified =
        s.leader != leader || s.acquire_time != acquire_time || s.leader_transitions != transitions;
    s.leader = leader;
    s.acquire_time = acquire_time;
    s.leader_transitions = transitions;
    modified
}

/// A candidate for one lock: campaigns, leads, renews, steps down, releases.
///
/// Cheap to clone; clones share the same candidate.
///
/// ```
/// use std::time::Duration;
/// use tenure_core::{LeaderElector, MemoryStore};
/// use tenure_core::CancellationToken;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = MemoryStore::new("my-controller")?;
/// let elector = LeaderElector::builder(store, "pod-a")
///     .lease_duration(Duration::from_secs(15))
///     .build()?;
/// let shutdown = CancellationToken::new();
/// let stop = shutdown.clone();
/// elector
///     .run(shutdown, move |leadership| {
///         let stop = stop.clone();
///         async move {
///             println!("leading with fencing token {}", leadership.fencing_token());
///             stop.cancel(); // a real service works until leadership.cancelled()
///         }
///     })
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct LeaderElector {
    inner: Arc<Inner>,
}

impl fmt::Debug for LeaderElector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeaderElector")
            .field("config", &self.inner.config)
            .field("store", &self.inner.store.describe())
            .field("state", &*self.inner.state.borrow())
            .finish()
    }
}

impl LeaderElector {
    /// Starts a builder for a candidate named `identity` on `store`.
    ///
    /// `store` is any [`LockStore`]: a store itself, or an `Arc` of one
    /// shared with other electors.
    pub fn builder(
        store: impl LockStore + 'static,
        identity: impl Into<String>,
    ) -> LeaderElectorBuilder {
        LeaderElectorBuilder {
            config: ElectionConfig::new(identity),
            store: Arc::new(store),
            clock: Arc::new(TokioClock),
            on_stopped: None,
            on_new_leader: None,
        }
    }

    /// The validated configuration.
    pub fn config(&self) -> &ElectionConfig {
        &self.inner.config
    }

    /// Campaigns until `shutdown` is cancelled. Each time this candidate
    /// wins, `work` is called with the [`Leadership`] and its future is
    /// spawned; it must return soon after `leadership.cancelled()` fires.
    ///
    /// After a lost term the candidate waits for the work to return, then
    /// campaigns again (unless `reacquire(false)`). On shutdown while leading
    /// it cancels the work, keeps renewing until the work has returned, then
    /// releases the lock (with `release_on_cancel`, the default).
    ///
    /// Returns `Ok(())` after shutdown, or the first error that retrying
    /// cannot fix (after stepping down).
    pub async fn run<W, Fut>(
        &self,
        shutdown: CancellationToken,
        work: W,
    ) -> Result<(), ElectionError>
    where
        W: FnMut(Leadership) -> Fut + Send,
        Fut: Future<Output = ()> + Send + 'static,
    {
        if self.inner.running.swap(true, Ordering::SeqCst) {
            return Err(ElectionError::AlreadyRunning);
        }
        let _running = RunningGuard(&self.inner.running);
        let span = tracing::info_span!(
            "election",
            lock = %self.inner.config.name,
            identity = %self.inner.config.identity
        );
        Campaign::new(self.inner.clone(), shutdown, work)
            .run()
            .instrument(span)
            .await
    }

    /// Runs [`run`](Self::run) on a task of its own, with a shutdown token
    /// of its own: the returned [`ElectionTask`] stops it and waits for it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tenure_core::{LeaderElector, MemoryStore};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let elector = LeaderElector::builder(MemoryStore::new("reports")?, "pod-a").build()?;
    /// let task = elector.spawn(|leadership| async move { leadership.cancelled().await });
    /// let mut state = elector.subscribe();
    /// state.wait_for(|s| s.is_leader).await?;
    /// task.shutdown().await?; // steps down, waits for the work, releases
    /// assert!(!elector.is_leader());
    /// # Ok(()) }
    /// ```
    pub fn spawn<W, Fut>(&self, work: W) -> ElectionTask
    where
        W: FnMut(Leadership) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let shutdown = CancellationToken::new();
        let elector = self.clone();
        let token = shutdown.clone();
        let handle = tokio::spawn(async move { elector.run(token, work).await });
        ElectionTask { shutdown, handle }
    }

    /// [`spawn`](Self::spawn) with the shutdown token given, so the work
    /// can end its own election.
    pub(crate) fn spawn_with<W, Fut>(&self, shutdown: CancellationToken, work: W) -> ElectionTask
    where
        W: FnMut(Leadership) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let elector = self.clone();
        let token = shutdown.clone();
        let handle = tokio::spawn(async move { elector.run(token, work).await });
        ElectionTask { shutdown, handle }
    }

    /// A receiver of the current [`ElectionState`], updated on every change.
    pub fn subscribe(&self) -> watch::Receiver<ElectionState> {
        self.inner.state.subscribe()
    }

    /// The state now.
    ///
    /// `is_leader` and `fencing_token` are checked against the term's
    /// validity by the clock when read, so they turn off when validity
    /// ends even if the election task has not run since (a starved
    /// runtime); a subscriber is woken when the task gets to it.
    pub fn state(&self) -> ElectionState {
        let mut state = self.inner.state.borrow().clone();
        if state.is_leader && !self.term_is_valid() {
            state.is_leader = false;
            state.fencing_token = None;
        }
        state
    }

    /// True while this candidate leads: its term has begun and its validity
    /// has not ended by the clock now (whether or not the election task
    /// has run since).
    pub fn is_leader(&self) -> bool {
        self.inner.state.borrow().is_leader && self.term_is_valid()
    }

    /// The current term's validity, by the clock now.
    fn term_is_valid(&self) -> bool {
        if planted::is(Bug::StateLagsValidity) {
            return true;
        }
        let term = self.inner.term.lock().unwrap_or_else(|e| e.into_inner());
        term.as_ref().is_some_and(Leadership::is_valid)
    }

    /// The holder this candidate last observed.
    pub fn leader(&self) -> Option<String> {
        self.inner.state.borrow().leader.clone()
    }

    /// client-go's health check: fails when we believe we lead but have not
    /// renewed for `lease_duration + max_tolerable_expired`. A candidate
    /// whose term's validity has ended (stepping down, its release still
    /// being written) does not believe it leads, and is healthy.
    pub fn check(&self, max_tolerable_expired: Duration) -> Result<(), HealthError> {
        let term = self.inner.term.lock().unwrap_or_else(|e| e.into_inner());
        let Some(term) = term.as_ref() else {
            return Ok(());
        };
        // Validity is the start of the last renew plus `renew_deadline`.
        let Some(last) = term
            .valid_until()
            .checked_sub(self.inner.config.renew_deadline)
        else {
            return Ok(());
        };
        let since = self.inner.clock.now().saturating_duration_since(last);
        if since > self.inner.config.lease_duration + max_tolerable_expired {
            return Err(HealthError {
                name: self.inner.config.name.clone(),
                since,
            });
        }
        Ok(())
    }
}

struct RunningGuard<'a>(&'a AtomicBool);

impl Drop for RunningGuard<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// Builds a [`LeaderElector`]; see [`LeaderElector::builder`].
#[must_use = "a builder does nothing until built"]
pub struct LeaderElectorBuilder {
    config: ElectionConfig,
    store: Arc<dyn LockStore>,
    clock: Arc<dyn Clock>,
    on_stopped: Option<StoppedFn>,
    on_new_leader: Option<NewLeaderFn>,
}

impl fmt::Debug for LeaderElectorBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeaderElectorBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl LeaderElectorBuilder {
    /// Name for logs and metrics (default: the store's `describe()`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = name.into();
        self
    }

    /// Istio's holder key, written with the record (default: empty).
    pub fn holder_key(mut self, key: impl Into<String>) -> Self {
        self.config.holder_key = key.into();
        self
    }

    /// How long followers wait after the last change they saw (default 15 s).
    pub fn lease_duration(mut self, d: Duration) -> Self {
        self.config.lease_duration = d;
        self
    }

    /// How long the leader keeps trying to renew before it steps down (default 10 s).
    pub fn renew_deadline(mut self, d: Duration) -> Self {
        self.config.renew_deadline = d;
        self
    }

    /// Time between attempts (default 2 s).
    pub fn retry_period(mut self, d: Duration) -> Self {
        self.config.retry_period = d;
        self
    }

    /// Release the lock on shutdown, after the work returned (default true).
    pub fn release_on_cancel(mut self, on: bool) -> Self {
        self.config.release_on_cancel = on;
        self
    }

    /// Wake on the store's change stream when it has one (default true).
    pub fn use_watch(mut self, on: bool) -> Self {
        self.config.use_watch = on;
        self
    }

    /// On shutdown, how long to wait for the leader's work to return while
    /// renewing; after it the elector stops renewing *without* releasing,
    /// so the lease runs out on its own (default: wait as long as it takes).
    pub fn drain_timeout(mut self, d: Duration) -> Self {
        self.config.drain_timeout = Some(d);
        self
    }

    /// How long a candidate holds a record it *created* before its term
    /// starts, renewing it (Chubby's lock-delay). Zero by default, as in
    /// client-go: a candidate that creates the record (first use, or after
    /// it was deleted or lost) then leads at once, and may overlap a holder
    /// it never saw (it started after the record was lost, was blind, or
    /// the record came and went between two of its looks) for up to that
    /// holder's renew deadline. Set it to the fleet's `lease_duration` to
    /// close that gap whatever the candidate missed, at the cost of one
    /// lease more whenever the record has to be created. Takeovers of an
    /// existing record are not delayed.
    ///
    /// ```
    /// # use std::{sync::Arc, time::Duration};
    /// # use tenure_core::{LeaderElector, MemoryStore};
    /// let elector = LeaderElector::builder(MemoryStore::new("jobs")?, "pod-a")
    ///     .lock_delay(Duration::from_secs(15))
    ///     .build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn lock_delay(mut self, d: Duration) -> Self {
        self.config.lock_delay = d;
        self
    }

    /// Seeds the jitter of the acquire loop, so that a seeded simulation or
    /// test replays exactly. By default the jitter comes from the OS.
    pub fn jitter_seed(mut self, seed: u64) -> Self {
        self.config.jitter_seed = Some(seed);
        self
    }

    /// Campaign again after a lost term (default true). With `false`, `run`
    /// returns [`ElectionError::LeadershipLost`] after a lost term.
    pub fn reacquire(mut self, on: bool) -> Self {
        self.config.reacquire = on;
        self
    }

    /// Istio's pre-emption: given the holder's key, return true when our key
    /// may take the lock before the holder's lease expires.
    pub fn key_comparison(mut self, f: impl Fn(&str) -> bool + Send + Sync + 'static) -> Self {
        self.config.key_comparison = Some(Arc::new(f) as KeyComparison);
        self
    }

    /// Called when a term ends: at once when it is lost (the work may still
    /// be returning), after the release on shutdown.
    pub fn on_stopped_leading(mut self, f: impl Fn() + Send + Sync + 'static) -> Self {
        self.on_stopped = Some(Arc::new(f));
        self
    }

    /// Called once per change of holder with the new holder's identity.
    /// Runs on the election loop, in order with the other callbacks: keep it
    /// quick (a slow callback delays renewing).
    pub fn on_new_leader(mut self, f: impl Fn(&str) + Send + Sync + 'static) -> Self {
        self.on_new_leader = Some(Arc::new(f));
        self
    }

    /// Measure time on this clock (tests of clock skew rate, the
    /// simulation). Test support: feature `test-hooks`.
    #[cfg(feature = "test-hooks")]
    #[cfg_attr(docsrs, doc(cfg(feature = "test-hooks")))]
    pub fn clock(self, clock: Arc<dyn Clock>) -> Self {
        self.with_clock(clock)
    }

    /// Sets the clock (crate-internal: shards pass theirs on).
    pub(crate) fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Validates the configuration and builds the elector.
    pub fn build(mut self) -> Result<LeaderElector, ConfigError> {
        self.config.validate()?;
        if self.config.name.is_empty() {
            self.config.name = self.store.describe();
        }
        crate::metrics::leader_off(&self.config.name);
        Ok(LeaderElector {
            inner: Arc::new(Inner {
                store: Arc::new(crate::metrics::Measured {
                    name: self.config.name.clone(),
                    store: self.store,
                }),
                config: self.config,
                clock: self.clock,
                on_stopped: self.on_stopped,
                on_new_leader: self.on_new_leader,
                state: watch::Sender::new(ElectionState::default()),
                term: Mutex::new(None),
                running: AtomicBool::new(false),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn a_store_error_is_said_once_in_the_chain() {
        let cause = std::io::Error::other("connection refused");
        let e = ElectionError::from(StoreError::unavailable("redis GET").with_source(cause));
        let mut chain = vec![e.to_string()];
        let mut next = e.source();
        while let Some(s) = next {
            chain.push(s.to_string());
            next = s.source();
        }
        // Each level says something the one above did not.
        assert_eq!(
            chain,
            ["store unavailable: redis GET", "connection refused"],
            "{chain:?}"
        );
    }
}
