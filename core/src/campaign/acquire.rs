//! The follower's side: campaign until the lock is won.

use std::future::Future;

use futures::{FutureExt, StreamExt};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::{Campaign, Hint, Won, next_event};
use crate::leadership::Leadership;
use crate::planted::{self, Bug};
use crate::record::{LeaderRecord, Version, Versioned};
use crate::store::ErrorChain;
use crate::store::{StoreError, WatchEvent};

impl<W, Fut> Campaign<W>
where
    W: FnMut(Leadership) -> Fut + Send,
    Fut: Future<Output = ()> + Send + 'static,
{
    /// Tries until won (`Some`) or shut down (`None`).
    pub(super) async fn acquire(&mut self) -> Result<Option<Won>, StoreError> {
        let mut act = true;
        // The watch just showed the lock released, record and version: the
        // attempt may compare-and-swap on that version without reading it
        // again (a stale view only makes the swap conflict).
        let mut seen_free = false;
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
                // `biased` everywhere: no random branch order, so a seeded
                // simulation replays exactly.
                let attempt = tokio::select! {
                    biased;
                    r = self.try_acquire(std::mem::take(&mut seen_free)) => r,
                    _ = clock.sleep_until(limit) => {
                        Err(StoreError::unavailable("no answer within renew_deadline"))
                    }
                };
                match attempt {
                    Ok(Some(won)) if self.shutdown.is_cancelled() => {
                        if self.inner.config.release_on_cancel {
                            self.release(&won.record, won.version).await;
                        }
                        return Ok(None);
                    }
                    Ok(Some(won))
                        if won.created
                            && !self.inner.config.lock_delay.is_zero()
                            && !planted::is(Bug::LockDelayBeforeCreate) =>
                    {
                        if let Some(won) = self.hold_created(won).await? {
                            return Ok(Some(won));
                        }
                    }
                    Ok(Some(won)) => return Ok(Some(won)),
                    Ok(None) => {}
                    Err(e) if e.is_fatal() => {
                        // Returned to the caller, who reports it: logged
                        // at error too, the CLI showed it twice.
                        info!(error = %ErrorChain(&e), "giving up: the store refuses this lock");
                        return Err(e);
                    }
                    Err(e) => {
                        warn!(error = %ErrorChain(&e), "failed to acquire the lock; will retry")
                    }
                }
                next_poll = self.inner.clock.now() + self.jittered(self.inner.config.retry_period);
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
                biased;
                _ = self.shutdown.cancelled() => return Ok(None),
                _ = clock.sleep_until(deadline) => act = true,
                // A follower acts when the lock looks free, when its key
                // pre-empts the holder's, or when the stream lost track.
                event = next_event(&mut self.events) => {
                    let released = matches!(&event, Some(WatchEvent::Put(v)) if v.record.is_released());
                    // Coordinated election: the controller just named us.
                    let named = matches!(&event, Some(WatchEvent::Put(v))
                        if named_by_controller(&v.record, &self.inner.config.identity));
                    let hint = self.on_event(event);
                    seen_free = released && hint == Hint::Free;
                    act = named || match hint {
                        Hint::Free | Hint::Unknown => true,
                        Hint::Held => self.preemptible(),
                        Hint::Ours => false,
                    };
                }
            }
        }
    }

    /// When the lease of the record we observed held by someone else runs
    /// out, by our clock; for a record found missing, a lease after that.
    fn expiry(&self) -> Option<Instant> {
        let v = self.observed.as_ref()?;
        if self.record_missing {
            let lease = v
                .record
                .lease_duration
                .max(self.inner.config.lease_duration);
            return Some(self.observed_at + lease);
        }
        if !self.held_by_other(v) {
            return None;
        }
        Some(self.observed_at + v.record.lease_duration)
    }

    /// True when `v` is held by someone who may still be acting on it: any
    /// other identity, or our identity in a record this campaign did not
    /// write (another incarnation of us).
    pub(super) fn held_by_other(&self, v: &Versioned) -> bool {
        !v.record.is_free()
            && (v.record.holder_identity != self.inner.config.identity
                || self.last_written.as_ref() != Some(&v.record))
    }

    /// True when our key pre-empts the holder we observed.
    fn preemptible(&self) -> bool {
        let (Some(cmp), Some(v)) = (&self.inner.config.key_comparison, &self.observed) else {
            return false;
        };
        self.held_by_other(v) && cmp(&v.record.holder_key)
    }

    /// One attempt of client-go's `tryAcquireOrRenew` for a non-leader.
    ///
    /// With `seen_free`, the record the watch just delivered (a released
    /// lock) stands for the read: one round trip instead of two.
    async fn try_acquire(&mut self, seen_free: bool) -> Result<Option<Won>, StoreError> {
        tracing::trace!(seen_free, "attempting to acquire");
        let started = self.inner.clock.now();
        let watched = self
            .observed
            .clone()
            .filter(|v| seen_free && !self.record_missing && v.record.is_released());
        let from_watch = watched.is_some();
        let current = match watched {
            Some(current) => Some(current),
            None => self.inner.store.get().await?,
        };
        // A record erased in place (the object stays: a stripped
        // annotation, a cleared Lease spec) is a missing record, not a free
        // one: only a release written by its holder frees a lock. It is
        // rewritten on the object's version instead of created.
        let (current, erased) = match current {
            Some(v) if v.record.is_erased() && !planted::is(Bug::ErasedRecordIsFree) => {
                (None, Some(v.version))
            }
            other => (other, None),
        };
        let Some(current) = current else {
            // A record that disappeared (deleted, expired, lost with the
            // store's data) is not a free lock: whoever held it may have
            // renewed until just before it went, and may still be inside
            // its renew deadline. We cannot know when it last changed (we
            // may have been blind: paused, cut off, on a lossy watch), so
            // finding it missing is itself a change, and we wait a whole
            // lease from it, whoever we saw holding it, us included.
            //
            // First, watch events delivered but not looked at yet may show
            // a record we never saw (created and deleted since our last look).
            while let Some(Some(event)) = self
                .events
                .as_mut()
                .and_then(|events| events.next().now_or_never())
            {
                self.on_event(Some(event));
            }
            let now = self.inner.clock.now();
            if self.observed.is_none() {
                self.found_missing = true;
            }
            if let Some(seen) = &self.observed {
                if !self.record_missing {
                    self.record_missing = true;
                    self.observed_at = now;
                    // Its holder may still act for a lease from now (we may
                    // have been blind): so for a coordinated record the
                    // controller makes next, as for one we would create.
                    if !seen.record.is_free() {
                        let lease = seen
                            .record
                            .lease_duration
                            .max(self.inner.config.lease_duration);
                        self.foreign_until = Some(now + lease);
                    }
                    debug!(last_holder = %seen.record.holder_identity, "the lock record is gone: waiting a lease before creating it");
                }
                let lease = seen
                    .record
                    .lease_duration
                    .max(self.inner.config.lease_duration);
                if now < self.observed_at + lease && !planted::is(Bug::DeletedRecordIsFree) {
                    return Ok(None);
                }
            }
            if self.observed.is_none() && planted::is(Bug::LockDelayBeforeCreate) {
                // The old rule: `lock_delay` waited before creating, from
                // the first time no record was found, whatever was missed
                // since (a record may come and go between two looks).
                let since = *self.first_found_missing.get_or_insert(now);
                if now < since + self.inner.config.lock_delay {
                    return Ok(None);
                }
            }
            // Start above every token this lock ever had: the ones we saw,
            // and the store's floor, which survives deletion.
            let floor = self.inner.store.token_floor().await?;
            let seen = self.highest_token_seen;
            let mut record = self.new_record();
            record.leader_transitions = [seen, floor]
                .into_iter()
                .flatten()
                .map(next_token)
                .try_fold(0, |acc, t| t.map(|t| acc.max(t)))?;
            let result = match &erased {
                Some(version) => self.inner.store.update(&record, version).await,
                None => self.inner.store.create(&record).await,
            };
            let (result, record) = match result {
                Ok(version) => self.raise_to_floor(record, version).await?,
                Err(e) => (Err(e), record),
            };
            return Ok(self.settle(result, record, started)?.map(|won| Won {
                created: true,
                ..won
            }));
        };
        // A first look that finds a record naming us, which we never saw
        // written (a previous incarnation's, or one the controller named us
        // in while another incarnation may live), is waited out for a lease,
        // as the engine waits out any record with our identity it did not
        // write. A first look that found no record makes no such wait, as
        // a create would not.
        let first_look = self.observed.is_none() && !self.found_missing;
        self.observe(current.clone());
        let held = &current.record;
        if first_look && held.holder_identity == self.inner.config.identity {
            let lease = held.lease_duration.max(self.inner.config.lease_duration);
            self.foreign_until = Some(self.inner.clock.now() + lease);
        }
        // Coordinated leader election (Kubernetes KEP-4355): the cluster's
        // election controller names the holder. Such a record is never
        // taken by expiry or pre-emption; we take it when it names us and
        // prefers nobody else, as client-go's coordinated elector does
        // (with a new term's token, which client-go does not raise). The
        // controller judges the previous holder's expiry by wall clocks;
        // we also wait out, by our own clock, the lease of the last record
        // we saw another hold (none after a release), so a skewed clock
        // cannot make two leaders.
        let coordinated = !held.strategy.is_empty();
        if coordinated {
            if !named_by_controller(held, &self.inner.config.identity) {
                debug!(holder = %held.holder_identity, strategy = %held.strategy, "coordinated lock: waiting to be named");
                return Ok(None);
            }
            if self
                .foreign_until
                .is_some_and(|until| self.inner.clock.now() < until)
            {
                debug!("named by the election controller: waiting out the previous holder's lease");
                return Ok(None);
            }
            info!(strategy = %held.strategy, "named by the election controller");
        }
        // Exactly the record we wrote last, with our identity, is a term of
        // ours that has ended (we stepped down and our work has returned):
        // we may take it at once, as a new term. Any other holder, including
        // our identity written by another incarnation, must expire first.
        let unexpired = !coordinated && self.expiry().is_some_and(|e| self.inner.clock.now() < e);
        if unexpired {
            if !self.preemptible() {
                debug!(holder = %held.holder_identity, "lock is held and has not expired");
                return Ok(None);
            }
            info!(
                holder = %held.holder_identity,
                holder_key = %held.holder_key,
                our_key = %self.inner.config.holder_key,
                "our key pre-empts the holder's"
            );
        }
        let mut record = self.new_record();
        record.strategy = held.strategy.clone();
        // Above the holder's count, and above every token we ever saw: a
        // record created late with a stale token must not lower it.
        let seen = self.highest_token_seen.unwrap_or(0);
        record.leader_transitions = next_token(held.leader_transitions.max(seen))?;
        // And above the store's floor: a record we read may hold a stale
        // low token (a create whose raise never ran, a store restored from
        // an old snapshot) that we, new here, never saw above. Read only now
        // that we write (a follower's polls cost the store no more); on
        // stores with a floor such a takeover costs one more round trip,
        // and its token may jump (Redis: the server clock; etcd: the
        // revision). A release the watch just delivered needs no floor: its
        // holder wrote it at the end of a term it led, whose token was above
        // every earlier one (above the floor, or above such a release), so
        // the watched hand-off stays one round trip.
        if !from_watch
            && !planted::is(Bug::TakeoverIgnoresFloor)
            && let Some(floor) = self.inner.store.token_floor().await?
        {
            record.leader_transitions = record.leader_transitions.max(next_token(floor)?);
        }
        let result = self.inner.store.update(&record, &current.version).await;
        self.settle(result, record, started)
    }

    /// After a create: the floor we read before it may be stale (our
    /// create landed late, after other terms on a record since deleted).
    /// If the store's floor is now above our token, raise the token above
    /// it with a compare-and-swap on what we created, before the term
    /// starts, so fencing tokens never go down.
    async fn raise_to_floor(
        &mut self,
        mut record: LeaderRecord,
        version: Version,
    ) -> Result<(Result<Version, StoreError>, LeaderRecord), StoreError> {
        let floor = match self.inner.store.token_floor().await? {
            Some(floor) if floor > record.leader_transitions => floor,
            _ => return Ok((Ok(version), record)),
        };
        record.leader_transitions = next_token(floor)?;
        let result = self.inner.store.update(&record, &version).await;
        Ok((result, record))
    }

    /// The outcome of a winning write: won, lost to someone else (whose
    /// record we then know), or an error.
    fn settle(
        &mut self,
        result: Result<Version, StoreError>,
        record: LeaderRecord,
        started: Instant,
    ) -> Result<Option<Won>, StoreError> {
        match result {
            Ok(version) => Ok(Some(Won {
                record,
                version,
                started,
                created: false,
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
}

/// The fencing token of the term after one with `token`; a count that would
/// overflow is a record we cannot trust, never one that wraps to 0.
fn next_token(token: u64) -> Result<u64, StoreError> {
    token.checked_add(1).ok_or_else(|| {
        StoreError::corrupt(format!(
            "leaderTransitions {token} cannot be raised without overflowing"
        ))
    })
}

/// True when `record` is a coordinated lock (it has a strategy) whose
/// controller names `identity` holder and prefers nobody else.
fn named_by_controller(record: &LeaderRecord, identity: &str) -> bool {
    !record.strategy.is_empty()
        && record.holder_identity == identity
        && (record.preferred_holder.is_empty() || record.preferred_holder == identity)
}
