//! The leader's side: renew, step down, release.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{error, info, warn};

use super::{next_event, AbortOnDrop, Campaign, Ended, Hint, Won};
use crate::elector::ElectionError;
use crate::leadership::Leadership;
use crate::planted::{self, Bug};
use crate::record::{now_micros, LeaderRecord, Version, Versioned};
use crate::store::StoreError;

impl<W, Fut> Campaign<W>
where
    W: FnMut(Leadership) -> Fut + Send,
    Fut: Future<Output = ()> + Send + 'static,
{
    pub(super) async fn lead(&mut self, won: Won) -> Result<Ended, ElectionError> {
        let cfg = self.inner.config.clone();
        let clock = self.inner.clock.clone();
        let token = won.record.leader_transitions;
        if clock.now() >= won.started + cfg.renew_deadline {
            // The reply came so late (we were paused or starved) that the
            // term has already run out: never start work for it.
            warn!("won a term that had already expired (a late reply); campaigning again");
            self.last_written = Some(won.record);
            return Ok(Ended::Lost);
        }
        let mut record = won.record;
        let mut version = won.version;
        let mut valid_until = won.started + cfg.renew_deadline;
        if planted::is(Bug::ValidityFromReply) {
            valid_until = clock.now() + cfg.renew_deadline;
        }
        self.observe(Versioned {
            record: record.clone(),
            version: version.clone(),
        });
        let leadership = Leadership::new(
            token,
            version.clone(),
            cfg.identity.clone(),
            self.inner.store.describe(),
            valid_until,
            clock.clone(),
        );
        self.last_written = Some(record.clone());
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
                biased;
                r = attempt => r,
                _ = clock.sleep_until(valid_until) => {
                    warn!("renew did not return within renew_deadline: stepping down");
                    break Ended::Lost;
                }
            };
            match outcome {
                // A renew that answers only once validity has ended (the
                // thread got to its reply late) cannot revive the term: the
                // work may already have seen `is_valid()` false, and
                // `tenure run`'s supervisor has stopped the command.
                Ok(Some((renewed, _)))
                    if clock.now() >= valid_until && !planted::is(Bug::ValidityFromReply) =>
                {
                    self.last_written = Some(renewed);
                    warn!("renew answered after validity ended: stepping down");
                    break Ended::Lost;
                }
                Ok(Some((renewed, v))) => {
                    self.last_written = Some(renewed.clone());
                    record = renewed;
                    version = v;
                    valid_until = if planted::is(Bug::ValidityFromReply) {
                        clock.now() + cfg.renew_deadline
                    } else {
                        start + cfg.renew_deadline
                    };
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
}
