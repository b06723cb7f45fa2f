//! The leader's side, as named phases:
//!
//! - **Leading**: the work runs; renew every `retry_period`, step down when
//!   no renew succeeded within `renew_deadline` or the store shows another
//!   holder.
//! - **Draining** (after shutdown): the work was asked to stop; keep
//!   renewing until it returns, or until `drain_timeout`.
//! - **Releasing**: the work returned: write a free record, so a follower
//!   need not wait out the lease.
//!
//! Whatever ends the term, validity ends first, before anything else
//! happens to the lock.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinError;
use tokio::time::Instant;
use tracing::{error, info, warn};

use super::term::Term;
use super::{Campaign, Hint, TermEnd, Won, next_event};
use crate::elector::ElectionError;
use crate::leadership::Leadership;
use crate::planted::{self, Bug};
use crate::record::{LeaderRecord, Version, Versioned, now_micros};
use crate::store::ErrorChain;
use crate::store::{StoreError, WatchEvent};

/// Where a term is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Leading,
    /// Shut down; waiting for the work, until the deadline if there is one.
    Draining {
        deadline: Option<Instant>,
    },
}

/// Why the leading and draining phases ended.
enum Stop {
    /// No renew within `renew_deadline`, or another holder has the lock.
    Lost,
    /// The store refuses the lock (retrying cannot help).
    Refused(StoreError),
    /// Shut down, and the work returned: release.
    Drained,
    /// The work panicked: release (a crashed worker must not keep the lock
    /// from healthy candidates), then report it.
    Panicked(String),
    /// Shut down, but the work did not return within `drain_timeout`:
    /// stop renewing and let the lease run out; never release early.
    Abandoned,
    /// The election controller prefers another holder (coordinated
    /// election), and the work returned: release, and campaign again.
    Yielded,
}

/// What woke the leader.
enum Wake {
    Shutdown,
    WorkReturned(Result<(), JoinError>),
    DrainTimedOut,
    RenewDue,
    Event(Option<WatchEvent>),
}

impl<W, Fut> Campaign<W>
where
    W: FnMut(Leadership) -> Fut + Send,
    Fut: Future<Output = ()> + Send + 'static,
{
    /// Leads the term just won until it ends.
    pub(super) async fn lead(&mut self, won: Won) -> Result<TermEnd, ElectionError> {
        let cfg = self.inner.config.clone();
        let clock = self.inner.clock.clone();
        if clock.now() >= won.started + cfg.renew_deadline {
            // The reply came so late (we were paused or starved) that the
            // term has already run out: never start work for it.
            warn!("won a term that had already expired (a late reply); campaigning again");
            self.last_written = Some(won.record);
            return Ok(TermEnd::Lost);
        }
        let valid_until = if planted::is(Bug::ValidityFromReply) {
            clock.now() + cfg.renew_deadline
        } else {
            won.started + cfg.renew_deadline
        };
        // `Term::begin` publishes us as holder together with the term.
        self.observe_as(
            Versioned {
                record: won.record.clone(),
                version: won.version.clone(),
            },
            false,
        );
        self.last_written = Some(won.record.clone());
        self.leading = true;
        let mut term = Term::begin(
            self.inner.clone(),
            won.record,
            won.version,
            valid_until,
            &mut self.work,
            self.shutdown.child_token(),
        );
        let token = term.token();
        info!(fencing_token = token, "became leader");

        let stop = self.hold(&mut term, won.started + cfg.retry_period).await;

        self.leading = false;
        term.end_validity();
        match stop {
            Stop::Lost | Stop::Refused(_) => {
                info!(fencing_token = token, "stopped leading: leadership lost");
                term.close();
                term.join_work().await;
            }
            Stop::Drained | Stop::Panicked(_) => {
                if cfg.release_on_cancel {
                    self.release(term.record(), term.version().clone()).await;
                }
                info!(fencing_token = token, "stopped leading: shut down");
                term.close();
            }
            Stop::Yielded => {
                self.release(term.record(), term.version().clone()).await;
                info!(
                    fencing_token = token,
                    "stopped leading: released to the preferred holder"
                );
                term.close();
            }
            Stop::Abandoned => {
                info!(fencing_token = token, "stopped leading: work abandoned");
                term.close();
            }
        }
        let yielded = std::mem::take(&mut self.yielding);
        match stop {
            Stop::Lost | Stop::Yielded => Ok(TermEnd::Lost),
            // A yield whose work would not return: campaign again once the
            // lease ran out, as after a lost term.
            Stop::Abandoned if yielded => Ok(TermEnd::Lost),
            Stop::Drained | Stop::Abandoned => Ok(TermEnd::Shutdown),
            Stop::Refused(e) => Err(ElectionError::Store(e)),
            Stop::Panicked(panic) => Err(ElectionError::WorkPanicked(panic)),
        }
    }

    /// The leading and draining phases: renew until the term must end.
    async fn hold(&mut self, term: &mut Term, first_renew: Instant) -> Stop {
        let cfg = self.inner.config.clone();
        let clock = self.inner.clock.clone();
        let mut phase = Phase::Leading;
        let mut next_renew = first_renew;
        loop {
            let renew_at = next_renew.min(term.valid_until());
            let drain_deadline = match phase {
                Phase::Draining { deadline } => deadline,
                Phase::Leading => None,
            };
            let work_running = !term.work_returned();
            // `biased`: a fixed order, so a seeded simulation replays exactly.
            let wake = tokio::select! {
                biased;
                _ = self.shutdown.cancelled(), if phase == Phase::Leading => Wake::Shutdown,
                res = term.work_finished(), if work_running => Wake::WorkReturned(res),
                _ = sleep_until_some(&*clock, drain_deadline) => Wake::DrainTimedOut,
                _ = clock.sleep_until(renew_at) => Wake::RenewDue,
                event = next_event(&mut self.events) => Wake::Event(event),
            };
            match wake {
                Wake::Shutdown => {
                    phase = Phase::Draining {
                        deadline: cfg.drain_timeout.map(|t| clock.now() + t),
                    };
                    term.stop_work();
                    info!("shutting down: waiting for the leader's work to return");
                    if term.work_returned() {
                        return Stop::Drained;
                    }
                    continue;
                }
                Wake::WorkReturned(Err(e)) => {
                    error!(error = %e, "the leader's work panicked: stepping down");
                    return Stop::Panicked(e.to_string());
                }
                Wake::WorkReturned(Ok(())) => {
                    if phase != Phase::Leading {
                        return if self.yielding {
                            Stop::Yielded
                        } else {
                            Stop::Drained
                        };
                    }
                    continue;
                }
                Wake::DrainTimedOut => {
                    warn!(
                        "the leader's work did not return within drain_timeout: abandoning the lock to expire"
                    );
                    return Stop::Abandoned;
                }
                Wake::RenewDue => {}
                Wake::Event(event) => {
                    // A leader acts at once only when the record shows
                    // another holder or none, or (coordinated election)
                    // another preferred holder; after a `Resync` its next
                    // renew (a compare-and-swap) is the check.
                    // (Once draining for it, our own renews show it too.)
                    let preferred_elsewhere = phase == Phase::Leading
                        && matches!(&event, Some(WatchEvent::Put(v))
                            if prefers_other(&v.record, &cfg.identity));
                    if matches!(self.on_event(event), Hint::Ours | Hint::Unknown)
                        && !preferred_elsewhere
                    {
                        continue;
                    }
                }
            }
            match self.renew(term).await {
                Ok(next) => next_renew = next,
                Err(stop) => return stop,
            }
            if phase == Phase::Leading && prefers_other(term.record(), &cfg.identity) {
                info!(
                    preferred = %term.record().preferred_holder,
                    "the election controller prefers another holder: draining the work, then releasing"
                );
                self.yielding = true;
                phase = Phase::Draining {
                    deadline: cfg.drain_timeout.map(|t| clock.now() + t),
                };
                term.stop_work();
                if term.work_returned() {
                    return Stop::Yielded;
                }
            }
        }
    }

    /// One renew of the term, bounded by its validity. Returns when the
    /// next renew is due, or why the term ends.
    async fn renew(&mut self, term: &mut Term) -> Result<Instant, Stop> {
        let (renew_deadline, retry) = (
            self.inner.config.renew_deadline,
            self.inner.config.retry_period,
        );
        let clock = self.inner.clock.clone();
        let valid_until = term.valid_until();
        if clock.now() >= valid_until {
            warn!("no renew succeeded within renew_deadline: stepping down");
            return Err(Stop::Lost);
        }
        let start = clock.now();
        let (record, version) = (term.record().clone(), term.version().clone());
        let outcome = tokio::select! {
            biased;
            r = self.try_renew(&record, &version) => r,
            _ = clock.sleep_until(valid_until) => {
                crate::metrics::renewed(&self.inner.config.name, "timeout", clock.now() - start);
                warn!("renew did not return within renew_deadline: stepping down");
                return Err(Stop::Lost);
            }
        };
        let result = match &outcome {
            Ok(Some(_)) => "ok",
            Ok(None) => "lost",
            Err(_) => "error",
        };
        crate::metrics::renewed(&self.inner.config.name, result, clock.now() - start);
        match outcome {
            // A renew that answers only once validity has ended (the thread
            // got to its reply late) cannot revive the term: the work may
            // already have seen `is_valid()` false, and `tenure run`'s
            // supervisor has stopped the command.
            Ok(Some((renewed, _)))
                if clock.now() >= valid_until && !planted::is(Bug::ValidityFromReply) =>
            {
                self.last_written = Some(renewed);
                warn!("renew answered after validity ended: stepping down");
                Err(Stop::Lost)
            }
            Ok(Some((renewed, v))) => {
                self.last_written = Some(renewed.clone());
                let until = if planted::is(Bug::ValidityFromReply) {
                    clock.now() + renew_deadline
                } else {
                    start + renew_deadline
                };
                term.renewed(renewed, v, until);
                Ok(start + retry)
            }
            Ok(None) => {
                // Taken, released or deleted by another writer while our
                // lease held: a successor may lead at once.
                term.mark_taken();
                Err(Stop::Lost)
            }
            Err(e) if e.is_fatal() => {
                error!(error = %ErrorChain(&e), "the store refuses this lock: stepping down");
                Err(Stop::Refused(e))
            }
            Err(e) => {
                warn!(error = %ErrorChain(&e), "failed to renew; will retry");
                if planted::is(Bug::FailedRenewCountsAsDone) {
                    term.renewed(record, version, start + renew_deadline);
                }
                Ok(clock.now() + retry)
            }
        }
    }

    /// One renew: compare-and-swap on the version we wrote last; reads only
    /// after a conflict. `None` means another holder has the lock.
    pub(super) async fn try_renew(
        &mut self,
        record: &LeaderRecord,
        version: &Version,
    ) -> Result<Option<(LeaderRecord, Version)>, StoreError> {
        let mut renewed = record.clone();
        // Every renew must be a *change* (followers compare records): a
        // wall clock that stood still or stepped back must not repeat the
        // last renew time.
        let now = now_micros();
        renewed.renew_time = Some(match record.renew_time {
            Some(last) if now <= last => last + Duration::from_micros(1),
            _ => now,
        });
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
        crate::metrics::slow_renew(&self.inner.config.name);
        // Our last write may have landed although its reply was lost: if the
        // record is still ours, renew on its version, keeping our term.
        let Some(current) = current.filter(|c| !c.record.is_erased()) else {
            warn!("the lock record was deleted (or erased in place) while we led");
            return Ok(None);
        };
        self.observe(current.clone());
        // Ours only if this term wrote it: our identity, our token and our
        // term's acquire time (kept by every renew, so a renew whose reply
        // was lost still matches). Another incarnation with our identity
        // (a duplicate identity, forbidden but possible) that created the
        // record with our token, on a store without a floor, has its own
        // acquire time: adopting its record would make two leaders.
        let adopted_as_incarnation = planted::is(Bug::AdoptOtherIncarnation)
            && current.record.leader_transitions == record.leader_transitions;
        if current.record.holder_identity != self.inner.config.identity
            || current.record.leader_transitions != record.leader_transitions
            || (current.record.acquire_time != record.acquire_time && !adopted_as_incarnation)
        {
            info!(holder = %current.record.holder_identity, "another holder took the lock");
            return Ok(None);
        }
        // Still ours, changed by the election controller (coordinated
        // election): keep what it wrote, the strategy and the holder it
        // prefers, so the renew does not undo it.
        renewed.strategy = current.record.strategy.clone();
        renewed.preferred_holder = current.record.preferred_holder.clone();
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
    pub(super) async fn release(&mut self, ours: &LeaderRecord, version: Version) {
        let clock = self.inner.clock.clone();
        let limit = clock.now() + self.inner.config.renew_deadline;
        tokio::select! {
            biased;
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
            // A coordinated lock stays coordinated: the controller names
            // the next holder.
            strategy: ours.strategy.clone(),
            preferred_holder: String::new(),
        };
        tracing::trace!("releasing: writing the free record");
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
                                warn!(error = %ErrorChain(&e), "failed to release the lock");
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
                    warn!(error = %ErrorChain(&e), "failed to release the lock; it will expire on its own");
                    return;
                }
            }
        }
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until_some(clock: &dyn crate::clock::Clock, deadline: Option<Instant>) {
    match deadline {
        Some(d) => clock.sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// True when `record` is a coordinated lock whose controller prefers a
/// holder other than `identity`.
fn prefers_other(record: &LeaderRecord, identity: &str) -> bool {
    !record.preferred_holder.is_empty() && record.preferred_holder != identity
}
