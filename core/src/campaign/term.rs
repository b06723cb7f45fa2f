//! One term, from the engine's side: the one place that says "now leading"
//! and "no longer leading" to everything that listens.
//!
//! A [`Term`] owns the term's [`Leadership`] handle (fencing token and
//! validity), the record and version to renew on, and the leader's work.
//! Beginning one publishes the term to the elector's state, the leader
//! gauge and the health check; ending its validity withdraws all of them
//! at once, and closing it (or dropping it, when the `run` future is
//! dropped mid-term) also calls `on_stopped_leading`, once.

use std::future::Future;
use std::sync::Arc;

use tokio::task::JoinError;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::AbortOnDrop;
use crate::elector::Inner;
use crate::leadership::Leadership;
use crate::metrics;
use crate::record::{LeaderRecord, Version};
use crate::store::LeaderEvent;

/// The term being led: what to renew, and the work it runs.
pub(super) struct Term {
    inner: Arc<Inner>,
    leadership: Leadership,
    /// The record and version of our last successful write.
    record: LeaderRecord,
    version: Version,
    work: AbortOnDrop<()>,
    work_returned: bool,
    /// Validity ended and withdrawn from state, gauge and health check.
    ended: bool,
    open: bool,
}

impl Term {
    /// Starts the term: publishes it, then spawns the work with its handle.
    pub(super) fn begin<Fut>(
        inner: Arc<Inner>,
        record: LeaderRecord,
        version: Version,
        valid_until: Instant,
        work: impl FnOnce(Leadership) -> Fut,
        stop: CancellationToken,
    ) -> Term
    where
        Fut: Future<Output = ()> + Send + 'static,
    {
        let token = record.leader_transitions;
        let leadership = Leadership::new(
            token,
            version.clone(),
            inner.config.identity.clone(),
            inner.store.describe(),
            valid_until,
            inner.clock.clone(),
            stop,
        );
        inner.set_term(Some(leadership.clone()));
        inner.publish_term(Some(&record));
        metrics::leader_on(&inner.config.name);
        inner
            .store
            .record_event(&inner.config.identity, LeaderEvent::BecameLeader);
        let work = AbortOnDrop(tokio::spawn(work(leadership.clone())));
        Term {
            inner,
            leadership,
            record,
            version,
            work,
            work_returned: false,
            ended: false,
            open: true,
        }
    }

    pub(super) fn token(&self) -> u64 {
        self.leadership.fencing_token()
    }

    pub(super) fn record(&self) -> &LeaderRecord {
        &self.record
    }

    pub(super) fn version(&self) -> &Version {
        &self.version
    }

    pub(super) fn valid_until(&self) -> Instant {
        self.leadership.valid_until()
    }

    /// A renew wrote `record` at `version`: the term is valid until `until`.
    pub(super) fn renewed(&mut self, record: LeaderRecord, version: Version, until: Instant) {
        self.record = record;
        self.version = version;
        self.leadership.extend(until);
    }

    /// Another writer ended the term (see `Leadership::was_taken`).
    pub(super) fn mark_taken(&self) {
        self.leadership.mark_taken();
    }

    /// Asks the work to stop (shutdown); the term stays valid while it returns.
    pub(super) fn stop_work(&self) {
        self.leadership.stop_work();
    }

    pub(super) fn work_returned(&self) -> bool {
        self.work_returned
    }

    /// Resolves when the work returns (`Err` if it panicked). Call only
    /// while [`work_returned`](Self::work_returned) is false.
    pub(super) async fn work_finished(&mut self) -> Result<(), JoinError> {
        let result = (&mut self.work.0).await;
        self.work_returned = true;
        result
    }

    /// Ends validity at once, for every clone of the handle the work kept,
    /// and withdraws the term from state, gauge and health check: before
    /// anything else happens to the lock (a release may take up to
    /// `renew_deadline`; nobody leads meanwhile, and nothing may say so).
    /// Once only: the gauge is keyed by the lock's name, so a second
    /// "off" after the release could reset another elector's "on".
    pub(super) fn end_validity(&mut self) {
        if std::mem::replace(&mut self.ended, true) {
            return;
        }
        self.leadership.end();
        self.inner.set_term(None);
        self.inner.publish_term(None);
        metrics::leader_off(&self.inner.config.name);
        self.inner
            .store
            .record_event(&self.inner.config.identity, LeaderEvent::StoppedLeading);
    }

    /// Ends validity (if not yet) and calls `on_stopped_leading`, once:
    /// after the release, as client-go does.
    pub(super) fn close(&mut self) {
        if !std::mem::replace(&mut self.open, false) {
            return;
        }
        self.end_validity();
        if let Some(cb) = &self.inner.on_stopped {
            cb();
        }
    }

    /// Waits for the work to return (never start a new term while the old
    /// term's work runs).
    pub(super) async fn join_work(&mut self) {
        if !self.work_returned {
            let _ = self.work_finished().await;
        }
    }
}

impl Drop for Term {
    /// The `run` future was dropped mid-term: nobody leads here any more.
    fn drop(&mut self) {
        self.close();
    }
}
