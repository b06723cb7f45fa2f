//! The election loops: acquire, lead (renew), step down, release.
//!
//! One `Campaign` runs per `LeaderElector::run` and owns everything it
//! observed, so no lock is held across a store call.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use rand::Rng;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::config::JITTER_FACTOR;
use crate::elector::{ElectionError, Inner};
use crate::leadership::Leadership;
use crate::metrics;
use crate::record::{now_micros, LeaderRecord, Version, Versioned};
use crate::store::{StoreError, WatchEvent};

/// A term just won.
struct Won {
    record: LeaderRecord,
    version: Version,
    /// When the winning request was sent: validity counts from here.
    started: Instant,
}

/// What a watch event shows about the lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hint {
    /// Free or deleted.
    Free,
    /// Held by us (or nothing to act on).
    Ours,
    /// Held by someone else.
    Held,
    /// The stream may have missed changes.
    Unknown,
}

/// How a term ended.
enum Ended {
    Shutdown,
    Lost,
    /// The store refused the lock (retrying cannot help).
    Fatal(StoreError),
    /// Shutdown, but the work did not return within `drain_timeout`.
    Abandoned,
}

/// Aborts a spawned task when dropped, so work and watchers never outlive
/// the `run` future (an aborted elector must not leave its work running).
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub(crate) struct Campaign<W> {
    inner: Arc<Inner>,
    shutdown: CancellationToken,
    work: W,
    /// The last record seen (read, written, or from the watch).
    observed: Option<Versioned>,
    /// When we saw it change, by our clock.
    observed_at: Instant,
    /// The last holder reported to `on_new_leader`.
    reported: String,
    events: Option<mpsc::Receiver<WatchEvent>>,
    /// The watch has delivered a change since it (re)connected.
    watch_live: bool,
    /// The version of the last record this campaign wrote as leader: a
    /// record with our identity is ours to take at once only at this
    /// version (another incarnation with our identity may still be live).
    last_written: Option<Version>,
    /// True while leading: watch events are then only hints.
    leading: bool,
    _watcher: Option<AbortOnDrop<()>>,
}

impl<W, Fut> Campaign<W>
where
    W: FnMut(Leadership) -> Fut + Send,
    Fut: Future<Output = ()> + Send + 'static,
{
    pub(crate) fn new(inner: Arc<Inner>, shutdown: CancellationToken, work: W) -> Self {
        let (events, watcher) = if inner.config.use_watch {
            let (tx, rx) = mpsc::channel(64);
            let task = tokio::spawn(watch_store(inner.clone(), tx));
            (Some(rx), Some(AbortOnDrop(task)))
        } else {
            (None, None)
        };
        let observed_at = inner.clock.now();
        Campaign {
            inner,
            shutdown,
            work,
            observed: None,
            observed_at,
            reported: String::new(),
            events,
            watch_live: false,
            last_written: None,
            leading: false,
            _watcher: watcher,
        }
    }

    pub(crate) async fn run(mut self) -> Result<(), ElectionError> {
        info!(lock = %self.inner.store.describe(), "campaigning for the lock");
        loop {
            let Some(won) = self.acquire().await? else {
                return Ok(());
            };
            // `lead` reports a fatal error or an abandoned lock as `Err` or
            // `Shutdown`: only a lost term leads to another campaign.
            match self.lead(won).await? {
                Ended::Shutdown | Ended::Abandoned | Ended::Fatal(_) => return Ok(()),
                Ended::Lost if self.shutdown.is_cancelled() => return Ok(()),
                Ended::Lost if !self.inner.config.reacquire => {
                    return Err(ElectionError::LeadershipLost)
                }
                Ended::Lost => info!("campaigning again after a lost term"),
            }
        }
    }

    // ---- acquire -------------------------------------------------------

    /// Tries until won (`Some`) or shut down (`None`).
    async fn acquire(&mut self) -> Result<Option<Won>, StoreError> {
        let mut act = true;
        let mut next_poll = self.inner.clock.now();
        loop {
            if self.shutdown.is_cancelled() {
                return Ok(None);
            }
            if act {
                // A hung store must not hold up shutdown or the next attempt;
                // an attempt is not abandoned on shutdown, though: its write
                // may land, and then we release it at once.
                let clock = self.inner.clock.clone();
                let limit = clock.now() + self.inner.config.renew_deadline;
                let attempt = tokio::select! {
                    r = self.try_acquire() => r,
                    _ = clock.sleep_until(limit) => {
                        Err(StoreError::Unavailable("no answer within renew_deadline".into()))
                    }
                };
                match attempt {
                    Ok(Some(won)) if self.shutdown.is_cancelled() => {
                        if self.inner.config.release_on_cancel {
                            self.release(&won.record, won.version).await;
                        }
                        return Ok(None);
                    }
                    Ok(Some(won)) => return Ok(Some(won)),
                    Ok(None) => {}
                    Err(e) if e.is_fatal() => {
                        error!(error = %e, "giving up: the store refuses this lock");
                        return Err(e);
                    }
                    Err(e) => warn!(error = %e, "failed to acquire the lock; will retry"),
                }
                next_poll = self.inner.clock.now() + jittered(self.inner.config.retry_period);
            }
            // Wake at the next poll, or as soon as the observed lease expires,
            // or when the store says the record changed. While a working
            // watch reports each change of a held lock, each change pushes
            // the expiry back and the expiry is the next read: followers
            // then cost the store nothing. A watch that silently stops
            // costs at most one lease of speed, never safety.
            // An expiry already past means the last attempt failed: wait for
            // the next poll rather than spin. A holder our key pre-empts is
            // polled for, as its renews never expire.
            let clock = self.inner.clock.clone();
            let now = clock.now();
            let deadline = match self.expiry().filter(|e| *e > now) {
                Some(expiry) if self.watch_live && !self.preemptible() => expiry,
                Some(expiry) => next_poll.min(expiry),
                None => next_poll,
            };
            tokio::select! {
                _ = self.shutdown.cancelled() => return Ok(None),
                _ = clock.sleep_until(deadline) => act = true,
                // A follower acts when the lock looks free, when its key
                // pre-empts the holder's, or when the stream lost track.
                event = next_event(&mut self.events) => {
                    act = match self.on_event(event) {
                        Hint::Free | Hint::Unknown => true,
                        Hint::Held => self.preemptible(),
                        Hint::Ours => false,
                    };
                }
            }
        }
    }

    /// When the lease of the record we observed held by someone else runs
    /// out, by our clock.
    fn expiry(&self) -> Option<Instant> {
        let v = self.observed.as_ref()?;
        if !self.held_by_other(v) {
            return None;
        }
        Some(self.observed_at + v.record.lease_duration)
    }

    /// True when `v` is held by someone who may still be acting on it: any
    /// other identity, or our identity at a version this campaign did not
    /// write (another incarnation of us).
    fn held_by_other(&self, v: &Versioned) -> bool {
        !v.record.is_free()
            && (v.record.holder_identity != self.inner.config.identity
                || self.last_written.as_ref() != Some(&v.version))
    }

    /// True when our key pre-empts the holder we observed.
    fn preemptible(&self) -> bool {
        let (Some(cmp), Some(v)) = (&self.inner.config.key_comparison, &self.observed) else {
            return false;
        };
        self.held_by_other(v) && cmp(&v.record.holder_key)
    }

    /// One attempt of client-go's `tryAcquireOrRenew` for a non-leader.
    async fn try_acquire(&mut self) -> Result<Option<Won>, StoreError> {
        let inner = self.inner.clone();
        let cfg = &inner.config;
        let started = self.inner.clock.now();
        let current = self.inner.store.get().await?;
        let Some(current) = current else {
            let mut record = self.new_record();
            // A deleted record must not reset the fencing token below one we saw.
            record.leader_transitions = self
                .observed
                .as_ref()
                .map_or(0, |v| v.record.leader_transitions + 1);
            return match self.inner.store.create(&record).await {
                Ok(version) => Ok(Some(Won {
                    record,
                    version,
                    started,
                })),
                Err(StoreError::Conflict { current }) => {
                    self.observe_conflict(current);
                    Ok(None)
                }
                Err(e) => Err(e),
            };
        };
        self.observe(current.clone());
        let held = &current.record;
        // Our own identity at the version we wrote last is a term of ours
        // that has ended (we stepped down and our work has returned): we may
        // take it at once, as a new term. Any other holder, including our
        // identity written by another incarnation, must expire first.
        if self.held_by_other(&current) {
            let expired = self.inner.clock.now() >= self.observed_at + held.lease_duration;
            if !expired {
                let preempts = cfg
                    .key_comparison
                    .as_ref()
                    .is_some_and(|cmp| cmp(&held.holder_key));
                if !preempts {
                    debug!(holder = %held.holder_identity, "lock is held and has not expired");
                    return Ok(None);
                }
                info!(
                    holder = %held.holder_identity,
                    holder_key = %held.holder_key,
                    our_key = %cfg.holder_key,
                    "our key pre-empts the holder's"
                );
            }
        }
        let mut record = self.new_record();
        record.leader_transitions = held.leader_transitions + 1;
        match self.inner.store.update(&record, &current.version).await {
            Ok(version) => Ok(Some(Won {
                record,
                version,
                started,
            })),
            Err(StoreError::Conflict { current }) => {
                self.observe_conflict(current);
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn new_record(&self) -> LeaderRecord {
        let cfg = &self.inner.config;
        let mut record = LeaderRecord::held_by(cfg.identity.clone(), cfg.lease_duration);
        record.holder_key = cfg.holder_key.clone();
        record
    }

    // ---- lead ----------------------------------------------------------

    async fn lead(&mut self, won: Won) -> Result<Ended, ElectionError> {
        let cfg = self.inner.config.clone();
        let clock = self.inner.clock.clone();
        let token = won.record.leader_transitions;
        let mut record = won.record;
        let mut version = won.version;
        let mut valid_until = won.started + cfg.renew_deadline;
        self.observe(Versioned {
            record: record.clone(),
            version: version.clone(),
        });
        let leadership = Leadership::new(
            token,
            cfg.identity.clone(),
            self.inner.store.describe(),
            valid_until,
            clock.clone(),
        );
        self.last_written = Some(version.clone());
        self.leading = true;
        self.set_leading(Some(token), Some(won.started));
        info!(fencing_token = token, "became leader");
        let mut task = AbortOnDrop(tokio::spawn((self.work)(leadership.clone())));
        let mut task_done = false;
        let mut draining = false;
        let mut drain_deadline: Option<Instant> = None;
        let mut panicked = None;
        let mut next_renew = won.started + cfg.retry_period;

        let ended = loop {
            let drain_wait = async {
                match drain_deadline {
                    Some(d) => clock.sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled(), if !draining => {
                    draining = true;
                    drain_deadline = cfg.drain_timeout.map(|t| clock.now() + t);
                    leadership.stop_work();
                    info!("shutting down: waiting for the leader's work to return");
                    if task_done { break Ended::Shutdown }
                    continue;
                }
                res = &mut task.0, if !task_done => {
                    task_done = true;
                    if let Err(e) = res {
                        // A crashed worker must not keep the lock from
                        // healthy candidates: end the term and report it.
                        error!(error = %e, "the leader's work panicked: stepping down");
                        panicked = Some(e.to_string());
                        break Ended::Shutdown;
                    }
                    if draining { break Ended::Shutdown }
                    continue;
                }
                _ = drain_wait, if draining => {
                    // Never release early: stop renewing, let the lease run out.
                    warn!("the leader's work did not return within drain_timeout: abandoning the lock to expire");
                    break Ended::Abandoned;
                }
                _ = clock.sleep_until(next_renew.min(valid_until)) => {}
                event = next_event(&mut self.events) => {
                    // A leader acts at once only when the record shows
                    // another holder or none; after a `Resync` its next
                    // renew (a compare-and-swap) is the check.
                    if matches!(self.on_event(event), Hint::Ours | Hint::Unknown) { continue }
                }
            }
            if clock.now() >= valid_until {
                warn!("no renew succeeded within renew_deadline: stepping down");
                break Ended::Lost;
            }
            let start = clock.now();
            let attempt = self.try_renew(&record, &version);
            let outcome = tokio::select! {
                r = attempt => r,
                _ = clock.sleep_until(valid_until) => {
                    warn!("renew did not return within renew_deadline: stepping down");
                    break Ended::Lost;
                }
            };
            match outcome {
                Ok(Some((renewed, v))) => {
                    record = renewed;
                    self.last_written = Some(v.clone());
                    version = v;
                    valid_until = start + cfg.renew_deadline;
                    leadership.extend(valid_until);
                    self.set_last_renew(start);
                    next_renew = start + cfg.retry_period;
                }
                Ok(None) => break Ended::Lost,
                Err(e) if e.is_fatal() => {
                    error!(error = %e, "the store refuses this lock: stepping down");
                    break Ended::Fatal(e);
                }
                Err(e) => {
                    warn!(error = %e, "failed to renew; will retry");
                    next_renew = clock.now() + cfg.retry_period;
                }
            }
        };

        self.leading = false;
        // Validity ends before anything else: before the lock is released,
        // and for every clone of the handle the work may have kept.
        leadership.end();
        match ended {
            Ended::Lost | Ended::Fatal(_) => {
                info!(fencing_token = token, "stopped leading: leadership lost");
                self.stopped_leading();
                if !task_done {
                    // Never start a new term while the old term's work runs.
                    let _ = (&mut task.0).await;
                }
            }
            Ended::Shutdown => {
                if cfg.release_on_cancel {
                    self.release(&record, version).await;
                }
                info!(fencing_token = token, "stopped leading: shut down");
                self.stopped_leading();
            }
            Ended::Abandoned => {
                info!(fencing_token = token, "stopped leading: work abandoned");
                self.stopped_leading();
            }
        }
        match (ended, panicked) {
            (_, Some(panic)) => Err(ElectionError::WorkPanicked(panic)),
            (Ended::Fatal(e), _) => Err(ElectionError::Store(e)),
            (Ended::Abandoned, _) => Ok(Ended::Shutdown),
            (ended, _) => Ok(ended),
        }
    }

    /// One renew: compare-and-swap on the version we wrote last; reads only
    /// after a conflict. `None` means another holder has the lock.
    async fn try_renew(
        &mut self,
        record: &LeaderRecord,
        version: &Version,
    ) -> Result<Option<(LeaderRecord, Version)>, StoreError> {
        let mut renewed = record.clone();
        renewed.renew_time = Some(now_micros());
        renewed.lease_duration = self.inner.config.lease_duration;
        renewed.holder_key = self.inner.config.holder_key.clone();
        let current = match self.inner.store.update(&renewed, version).await {
            Ok(v) => {
                self.observe(Versioned {
                    record: renewed.clone(),
                    version: v.clone(),
                });
                return Ok(Some((renewed, v)));
            }
            Err(StoreError::Conflict { current: Some(c) }) => Some(*c),
            Err(StoreError::Conflict { current: None }) => self.inner.store.get().await?,
            Err(e) => return Err(e),
        };
        // Our last write may have landed although its reply was lost: if the
        // record is still ours, renew on its version, keeping our term.
        let Some(current) = current else {
            warn!("the lock record was deleted while we led");
            return Ok(None);
        };
        self.observe(current.clone());
        if current.record.holder_identity != self.inner.config.identity
            || current.record.leader_transitions != record.leader_transitions
        {
            info!(holder = %current.record.holder_identity, "another holder took the lock");
            return Ok(None);
        }
        match self.inner.store.update(&renewed, &current.version).await {
            Ok(v) => {
                self.observe(Versioned {
                    record: renewed.clone(),
                    version: v.clone(),
                });
                Ok(Some((renewed, v)))
            }
            Err(StoreError::Conflict { current }) => {
                self.observe_conflict(current);
                Err(StoreError::conflict())
            }
            Err(e) => Err(e),
        }
    }

    /// Writes a free record (holder empty, lease 1 s, transitions kept),
    /// giving up after `renew_deadline` (the lease then runs out instead).
    async fn release(&mut self, ours: &LeaderRecord, version: Version) {
        let clock = self.inner.clock.clone();
        let limit = clock.now() + self.inner.config.renew_deadline;
        tokio::select! {
            _ = self.write_free(ours, version) => {}
            _ = clock.sleep_until(limit) => {
                warn!("release did not complete within renew_deadline; the lock will expire on its own");
            }
        }
    }

    async fn write_free(&mut self, ours: &LeaderRecord, mut version: Version) {
        let now = now_micros();
        let free = LeaderRecord {
            holder_identity: String::new(),
            holder_key: String::new(),
            lease_duration: Duration::from_secs(1),
            acquire_time: Some(now),
            renew_time: Some(now),
            leader_transitions: ours.leader_transitions,
        };
        for _ in 0..3 {
            match self.inner.store.update(&free, &version).await {
                Ok(v) => {
                    info!("released the lock");
                    self.observe(Versioned {
                        record: free,
                        version: v,
                    });
                    return;
                }
                Err(StoreError::Conflict { current }) => {
                    let current = match current {
                        Some(c) => Some(*c),
                        None => match self.inner.store.get().await {
                            Ok(c) => c,
                            Err(e) => {
                                warn!(error = %e, "failed to release the lock");
                                return;
                            }
                        },
                    };
                    match current {
                        Some(c)
                            if c.record.holder_identity == ours.holder_identity
                                && c.record.leader_transitions == ours.leader_transitions =>
                        {
                            version = c.version;
                        }
                        _ => return, // not ours any more: nothing to release
                    }
                }
                Err(e) => {
                    warn!(error = %e, "failed to release the lock; it will expire on its own");
                    return;
                }
            }
        }
    }

    // ---- observation ---------------------------------------------------

    /// Records what the store holds; resets the observed time on a change.
    fn observe(&mut self, current: Versioned) {
        let changed = self.observed.as_ref().map(|o| &o.version) != Some(&current.version);
        if !changed {
            return;
        }
        self.observed_at = self.inner.clock.now();
        let holder = current.record.holder_identity.clone();
        self.observed = Some(current);
        self.inner.state.send_if_modified(|s| {
            let leader = (!holder.is_empty()).then(|| holder.clone());
            let modified = s.leader != leader;
            s.leader = leader;
            modified
        });
        if !holder.is_empty() && holder != self.reported {
            self.reported = holder.clone();
            info!(leader = %holder, "new leader observed");
            if let Some(cb) = &self.inner.on_new_leader {
                cb(&holder);
            }
        }
    }

    fn observe_conflict(&mut self, current: Option<Box<Versioned>>) {
        if let Some(c) = current {
            self.observe(*c);
        }
    }

    /// Applies a watch event and says what it shows.
    fn on_event(&mut self, event: Option<WatchEvent>) -> Hint {
        match event {
            Some(WatchEvent::Put(v)) => {
                self.watch_live = true;
                let hint = if v.record.is_free() {
                    Hint::Free
                } else if v.record.holder_identity == self.inner.config.identity
                    && (self.leading || !self.held_by_other(&v))
                {
                    Hint::Ours
                } else {
                    Hint::Held
                };
                // A leader learns the truth from its own compare-and-swap;
                // an event older than what we saw (fewer transitions: a late
                // or replayed one) is only a reason to re-read.
                let stale = self
                    .observed
                    .as_ref()
                    .is_some_and(|o| v.record.leader_transitions < o.record.leader_transitions);
                if self.leading {
                    return hint;
                }
                if stale {
                    return Hint::Unknown;
                }
                self.observe(v);
                hint
            }
            Some(WatchEvent::Deleted) => {
                self.watch_live = true;
                Hint::Free
            }
            Some(WatchEvent::Resync) => {
                self.watch_live = false;
                Hint::Unknown
            }
            None => {
                // The store cannot watch: polling alone from now on.
                self.watch_live = false;
                self.events = None;
                Hint::Ours
            }
        }
    }

    fn set_leading(&self, token: Option<u64>, renewed: Option<Instant>) {
        *self
            .inner
            .last_renew
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = renewed;
        let leading = token.is_some();
        self.inner.state.send_modify(|s| {
            s.is_leader = leading;
            s.fencing_token = token;
        });
        if leading {
            metrics::leader_on(&self.inner.config.name);
        } else {
            metrics::leader_off(&self.inner.config.name);
        }
    }

    fn set_last_renew(&self, at: Instant) {
        *self
            .inner
            .last_renew
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(at);
    }

    fn stopped_leading(&self) {
        self.set_leading(None, None);
        if let Some(cb) = &self.inner.on_stopped {
            cb();
        }
    }
}

/// `retry_period` plus up to `1.2 × retry_period`, as client-go's
/// `wait.JitterUntil(retry, 1.2)`.
fn jittered(retry: Duration) -> Duration {
    let factor: f64 = rand::thread_rng().gen_range(0.0..JITTER_FACTOR);
    retry + retry.mul_f64(factor)
}

/// The next watch event, or pending forever without a watch.
async fn next_event(events: &mut Option<mpsc::Receiver<WatchEvent>>) -> Option<WatchEvent> {
    match events {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Follows the store's change stream, reconnecting after it ends or fails;
/// ends (closing the channel) when the store cannot watch.
async fn watch_store(inner: Arc<Inner>, tx: mpsc::Sender<WatchEvent>) {
    loop {
        match inner.store.watch().await {
            Ok(None) => return,
            Ok(Some(mut stream)) => {
                while let Some(event) = stream.next().await {
                    // A full channel means the campaign is busy and will
                    // re-read anyway: dropping a hint costs nothing.
                    if tx.is_closed() {
                        return;
                    }
                    let _ = tx.try_send(event);
                }
                let _ = tx.try_send(WatchEvent::Resync);
            }
            Err(e) => debug!(error = %e, "watch failed; retrying"),
        }
        let wait = inner.config.retry_period;
        inner.clock.sleep_until(inner.clock.now() + wait).await;
    }
}
