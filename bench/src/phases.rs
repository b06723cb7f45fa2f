//! Where a release hand-off's time goes: the instants of its steps, taken
//! by a store wrapper on tenure's side and inline in the raw hand-offs, so
//! both are cut at the same points.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::StreamExt;
use tenure_core::{
    LeaderRecord, LockStore, StoreError, Version, Versioned, WatchEvent, WatchStream,
};
use tokio::time::Instant;

use crate::stats::Samples;

/// The steps of one hand-off, each the first time it happened.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Marks {
    /// The leader's write of the free record was sent.
    pub release: Option<Instant>,
    /// The successor's watch handed the free record to its elector.
    pub event: Option<Instant>,
    /// The successor's compare-and-swap was sent.
    pub swap_sent: Option<Instant>,
    /// It answered.
    pub swap_done: Option<Instant>,
}

/// Marks shared by every candidate of one measure.
#[derive(Debug, Default)]
pub(crate) struct Stamps(Mutex<Marks>);

impl Stamps {
    /// Forgets the last hand-off's marks.
    pub(crate) fn reset(&self) {
        *self.0.lock().unwrap() = Marks::default();
    }

    pub(crate) fn marks(&self) -> Marks {
        *self.0.lock().unwrap()
    }

    /// Starts one timed hand-off after `settle` of idleness: forgets the
    /// last hand-off's marks and marks the release as sent now; its start.
    pub(crate) async fn start_after(&self, settle: std::time::Duration) -> Instant {
        tokio::time::sleep(settle).await;
        self.reset();
        let start = Instant::now();
        self.mark(|m| &mut m.release, false);
        start
    }

    /// Sets one mark now, if not set yet; with `after_release`, only once
    /// the release was sent (earlier writes and events are not this
    /// hand-off's).
    pub(crate) fn mark(&self, pick: fn(&mut Marks) -> &mut Option<Instant>, after_release: bool) {
        let now = Instant::now();
        let mut m = self.0.lock().unwrap();
        if after_release && m.release.is_none() {
            return;
        }
        pick(&mut m).get_or_insert(now);
    }
}

/// Each step's duration over many hand-offs.
#[derive(Debug, Default)]
pub(crate) struct Phases {
    /// Shutdown called → free record sent (tenure only).
    pub to_release: Samples,
    /// Free record sent → successor's elector has the event.
    pub to_event: Samples,
    /// Event → successor's swap sent.
    pub to_swap: Samples,
    /// The swap's round trip.
    pub swap: Samples,
    /// Swap answered → the successor leads, as its subscriber sees it.
    pub to_seen: Samples,
    /// Free record sent → the successor leads (the sum of the four above).
    pub from_release: Samples,
}

impl Phases {
    /// Adds one hand-off: started at `start` (shutdown or the release),
    /// seen leading at `seen`. A hand-off with a step missing is skipped.
    pub(crate) fn push(&mut self, start: Instant, m: Marks, seen: Instant) {
        let (Some(release), Some(event), Some(sent), Some(done)) =
            (m.release, m.event, m.swap_sent, m.swap_done)
        else {
            return;
        };
        self.to_release.push(release - start);
        self.to_event.push(event - release);
        self.to_swap.push(sent - event);
        self.swap.push(done - sent);
        self.to_seen.push(seen - done);
        self.from_release.push(seen - release);
    }

    pub(crate) fn extend(&mut self, other: Phases) {
        self.to_release.extend(other.to_release);
        self.to_event.extend(other.to_event);
        self.to_swap.extend(other.to_swap);
        self.swap.extend(other.swap);
        self.to_seen.extend(other.to_seen);
        self.from_release.extend(other.from_release);
    }
}

/// The timed hand-offs of one measure: each one's time and its steps.
#[derive(Debug, Default)]
pub(crate) struct Timed {
    pub samples: Samples,
    pub phases: Phases,
}

impl Timed {
    /// Waits (at most 5 s) for the waiter's swap, which it reports on
    /// `done`, and records the hand-off begun at `start`; what the waiter
    /// reported (the version the leader releases next).
    pub(crate) async fn finish<V>(
        &mut self,
        start: Instant,
        stamps: &Stamps,
        done: &mut tokio::sync::mpsc::Receiver<V>,
    ) -> V {
        let swapped = tokio::time::timeout(std::time::Duration::from_secs(5), done.recv())
            .await
            .expect("the waiter swapped within 5 s")
            .expect("the waiter swapped");
        let seen = Instant::now();
        self.samples.push(seen - start);
        self.phases.push(start, stamps.marks(), seen);
        swapped
    }
}

/// A store that marks a hand-off's steps as tenure's electors take them:
/// a free record written is the release; the first free record its watch
/// yields after that is the event; the next write of a held record is the
/// successor's swap.
#[derive(Debug)]
pub(crate) struct StampedStore {
    pub inner: Arc<dyn LockStore>,
    pub stamps: Arc<Stamps>,
}

#[async_trait]
impl LockStore for StampedStore {
    async fn get(&self) -> Result<Option<Versioned>, StoreError> {
        self.inner.get().await
    }

    async fn create(&self, record: &LeaderRecord) -> Result<Version, StoreError> {
        self.inner.create(record).await
    }

    async fn update(
        &self,
        record: &LeaderRecord,
        expected: &Version,
    ) -> Result<Version, StoreError> {
        if record.is_free() {
            self.stamps.mark(|m| &mut m.release, false);
            return self.inner.update(record, expected).await;
        }
        let swap = self.stamps.marks().event.is_some() && self.stamps.marks().swap_sent.is_none();
        if swap {
            self.stamps.mark(|m| &mut m.swap_sent, true);
        }
        let result = self.inner.update(record, expected).await;
        if swap {
            self.stamps.mark(|m| &mut m.swap_done, true);
        }
        result
    }

    async fn watch(&self) -> Result<Option<WatchStream>, StoreError> {
        let Some(stream) = self.inner.watch().await? else {
            return Ok(None);
        };
        let stamps = self.stamps.clone();
        Ok(Some(Box::pin(stream.inspect(move |event| {
            if matches!(event, WatchEvent::Put(v) if v.record.is_free()) {
                stamps.mark(|m| &mut m.event, true);
            }
        }))))
    }

    async fn token_floor(&self) -> Result<Option<u64>, StoreError> {
        self.inner.token_floor().await
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}

/// The p50 of every phase, as one markdown row.
pub(crate) fn row(who: &str, p: &Phases, tenure: bool) -> String {
    let ms = |s: &Samples| format!("{:.3}", s.p50().as_secs_f64() * 1e3);
    let first = if tenure {
        ms(&p.to_release)
    } else {
        "–".into()
    };
    format!(
        "| {who} | {first} | {} | {} | {} | {} | {} | {} |",
        ms(&p.to_event),
        ms(&p.to_swap),
        ms(&p.swap),
        ms(&p.to_seen),
        ms(&p.from_release),
        p.from_release.len()
    )
}
