//! The election loops: acquire, lead (renew), step down, release.
//!
//! One `Campaign` runs per `LeaderElector::run` and owns everything it
//! observed, so no lock is held across a store call.
//!
//! `acquire.rs` holds the follower's loop, `lead.rs` the leader's (renew,
//! step down, release); this file the state they share and what they
//! observe.

mod acquire;
mod hold;
mod lead;
mod term;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::config::JITTER_FACTOR;
use crate::elector::{ElectionError, Inner};
use crate::leadership::Leadership;
use crate::planted::{self, Bug};
use crate::record::{LeaderRecord, Version, Versioned};
use crate::store::ErrorChain;
use crate::store::{WatchEvent, WatchStream};

/// A term just won.
struct Won {
    record: LeaderRecord,
    version: Version,
    /// When the winning request was sent: validity counts from here.
    started: Instant,
    /// Won by creating the record (none was there, or it was erased).
    created: bool,
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

/// How a term ended, when it did not end `run` with an error.
enum TermEnd {
    /// Shut down (released, or abandoned to expire).
    Shutdown,
    /// Lost: campaign again, unless shut down or `reacquire(false)`.
    Lost,
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
    /// The store's change stream, polled by the election task itself (no
    /// task in between: a release reaches the successor one hop sooner).
    events: Option<Events>,
    /// The watch has delivered a change since it (re)connected.
    watch_live: bool,
    /// The last record this campaign wrote as leader: a record with our
    /// identity is ours to take at once only if it is exactly this one
    /// (another incarnation with our identity may still be live).
    last_written: Option<LeaderRecord>,
    /// The record we observed has since been found missing (`observed`
    /// keeps the last one seen, and `observed_at` the moment it went).
    record_missing: bool,
    /// The largest fencing token this campaign has seen in any record.
    highest_token_seen: Option<u64>,
    /// When we first found no record, having never seen one (only for the
    /// planted `LockDelayBeforeCreate`, the rule `hold` replaced).
    first_found_missing: Option<Instant>,
    /// The jitter's source: seeded when the config says so.
    rng: StdRng,
    /// True while leading: watch events are then only hints.
    leading: bool,
    /// The term is draining to release to the holder the election
    /// controller prefers (coordinated election).
    yielding: bool,
    /// Until when, by our clock, the last record we saw another identity
    /// hold may still be acted on (`None` after a release): a coordinated
    /// lock the controller names us holder of is taken only after it.
    foreign_until: Option<Instant>,
    /// A read found no record before any record was seen.
    found_missing: bool,
}

/// Watch events, re-opened after failures (see [`watch_store`]).
type Events = futures::stream::BoxStream<'static, WatchEvent>;

impl<W, Fut> Campaign<W>
where
    W: FnMut(Leadership) -> Fut + Send,
    Fut: Future<Output = ()> + Send + 'static,
{
    pub(crate) fn new(inner: Arc<Inner>, shutdown: CancellationToken, work: W) -> Self {
        let observed_at = inner.clock.now();
        let rng = match inner.config.jitter_seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => rand::make_rng(),
        };
        Campaign {
            inner,
            shutdown,
            work,
            observed: None,
            observed_at,
            reported: String::new(),
            events: None,
            watch_live: false,
            last_written: None,
            record_missing: false,
            first_found_missing: None,
            highest_token_seen: None,
            rng,
            leading: false,
            yielding: false,
            foreign_until: None,
            found_missing: false,
        }
    }

    pub(crate) async fn run(mut self) -> Result<(), ElectionError> {
        info!(lock = %self.inner.store.describe(), "campaigning for the lock");
        self.inner.store.record_event(
            &self.inner.config.identity,
            crate::store::LeaderEvent::Campaigning,
        );
        if self.inner.config.use_watch {
            // Opened before the first read, so no change after that read
            // is missed (a hung store delays this by a retry period at most).
            let clock = self.inner.clock.clone();
            let limit = clock.now() + self.inner.config.retry_period;
            let first = tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => return Ok(()),
                r = self.inner.store.watch() => r,
                _ = clock.sleep_until(limit) => {
                    Err(crate::store::StoreError::unavailable("the watch did not open within retry_period"))
                }
            };
            self.events = watch_store(self.inner.clone(), first);
        }
        loop {
            let Some(won) = self.acquire().await? else {
                return Ok(());
            };
            match self.lead(won).await? {
                TermEnd::Shutdown => return Ok(()),
                TermEnd::Lost if self.shutdown.is_cancelled() => return Ok(()),
                TermEnd::Lost if !self.inner.config.reacquire => {
                    return Err(ElectionError::LeadershipLost);
                }
                TermEnd::Lost => info!("campaigning again after a lost term"),
            }
        }
    }

    // ---- observation ---------------------------------------------------

    /// Records what the store holds; resets the observed time on a change.
    ///
    /// A change is a different *record*: a new version of the same record
    /// (another tool annotating the Kubernetes object) is not a renewal,
    /// or a dead leader's lease would never run out. Its version is kept
    /// for the next compare-and-swap all the same.
    fn observe(&mut self, current: Versioned) {
        self.observe_as(current, true);
    }

    /// [`observe`](Self::observe); with `publish` false the holder is left
    /// for the caller to publish: a term beginning publishes its holder and
    /// its token in one change, so subscribers are woken once and never see
    /// themselves named holder before they lead.
    fn observe_as(&mut self, current: Versioned, publish: bool) {
        self.highest_token_seen = self
            .highest_token_seen
            .max(Some(current.record.leader_transitions));
        let changed = self.record_missing
            || if planted::is(Bug::ChangeByVersion) {
                self.observed.as_ref().map(|o| &o.version) != Some(&current.version)
            } else {
                self.observed.as_ref().map(|o| &o.record) != Some(&current.record)
            };
        self.record_missing = false;
        if !changed {
            self.observed = Some(current);
            return;
        }
        self.observed_at = self.inner.clock.now();
        if current.record.holder_identity != self.inner.config.identity {
            let lease = current
                .record
                .lease_duration
                .max(self.inner.config.lease_duration);
            self.foreign_until =
                (!current.record.is_released()).then_some(self.observed_at + lease);
        }
        // A holder the store cannot name (a MultiLock mid-write) is nobody
        // to report: followers report the next leader they can name.
        let known = current.record.known_holder().map(str::to_owned);
        if publish {
            self.inner.publish_holder(&current.record);
        }
        self.observed = Some(current);
        if let Some(holder) = known.filter(|h| *h != self.reported) {
            self.reported = holder.clone();
            info!(leader = %holder, "new leader observed");
            crate::metrics::leader_changed(&self.inner.config.name);
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
        tracing::trace!(?event, "watch event");
        match event {
            // An erased record is a missing one: a reason to read, as a
            // deletion is, never a record to remember.
            Some(WatchEvent::Put(v)) if v.record.is_erased() => {
                self.watch_live = true;
                Hint::Free
            }
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

    /// `retry_period` plus up to `1.2 × retry_period`, as client-go's
    /// `wait.JitterUntil(retry, 1.2)`.
    fn jittered(&mut self, retry: Duration) -> Duration {
        let factor: f64 = self.rng.random_range(0.0..JITTER_FACTOR);
        retry + retry.mul_f64(factor)
    }
}

/// The next watch event, or pending forever without a watch. Cancel-safe:
/// the stream keeps its place when a `select!` drops this future.
async fn next_event(events: &mut Option<Events>) -> Option<WatchEvent> {
    match events {
        Some(stream) => stream.next().await,
        None => std::future::pending().await,
    }
}

/// The store's change stream from its first opening (`first`), re-opened a
/// retry period after each end or failure, with a `Resync` after each end;
/// `None` when the store cannot watch (the stream of a store that cannot
/// watch ends at once, closing the feed: polling alone from then on).
fn watch_store(
    inner: Arc<Inner>,
    first: Result<Option<WatchStream>, crate::store::StoreError>,
) -> Option<Events> {
    enum Feed {
        Open(WatchStream),
        Wait,
        Connect,
    }
    let feed = match first {
        Ok(None) => return None,
        Ok(Some(stream)) => Feed::Open(stream),
        Err(e) => {
            debug!(error = %ErrorChain(&e), "watch failed; retrying");
            Feed::Wait
        }
    };
    let events = futures::stream::unfold((inner, feed), |(inner, mut feed)| async move {
        loop {
            feed = match feed {
                Feed::Open(mut stream) => {
                    return match stream.next().await {
                        Some(event) => {
                            tracing::trace!("watch event from the store");
                            Some((event, (inner, Feed::Open(stream))))
                        }
                        None => Some((WatchEvent::Resync, (inner, Feed::Wait))),
                    };
                }
                Feed::Wait => {
                    let wait = inner.config.retry_period;
                    inner.clock.sleep_until(inner.clock.now() + wait).await;
                    Feed::Connect
                }
                Feed::Connect => match inner.store.watch().await {
                    Ok(None) => return None,
                    Ok(Some(stream)) => Feed::Open(stream),
                    Err(e) => {
                        debug!(error = %ErrorChain(&e), "watch failed; retrying");
                        Feed::Wait
                    }
                },
            };
        }
    });
    Some(events.fuse().boxed())
}
