//! One simulated store with linearizable compare-and-swap, and each
//! candidate's faulty link to it.
//!
//! An operation is applied atomically when its request *arrives*, so every
//! fault of a network is possible: a request delayed, lost, applied with
//! its reply lost, or answered after the client's timeout.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::stream;
use rand::RngExt;
use rand::rngs::StdRng;
use tenure_core::{
    LeaderRecord, LockStore, StoreError, Version, Versioned, WatchEvent, WatchStream,
};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::faults::{Counts, Plan};

/// How the simulated store behaves where it matters to safety.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    /// Redis: the version lives in the value (a foreign rewrite keeps it);
    /// pub/sub watch, lossy and at-most-once, no notice of deletes; a token
    /// floor from the server clock, which survives data loss.
    Redis,
    /// etcd: versions are revisions (any put moves them); the watch is
    /// ordered and reliable, re-synced after a cut; a revision floor.
    Etcd,
    /// Kubernetes: any write to the object moves `resourceVersion`; the
    /// watch sometimes ends with "too old, re-list"; no token floor.
    Kube,
}

/// The client's timeout of one operation (as the real stores' clients).
pub const REQUEST_TIMEOUT: Duration = Duration::from_millis(1000);

struct Watcher {
    candidate: usize,
    tx: mpsc::UnboundedSender<(Instant, WatchEvent)>,
    /// Deliveries stay in order: none before this.
    last_due: Instant,
}

pub(crate) struct State {
    record: Option<(LeaderRecord, u64)>,
    /// A record was deleted or lost since the last write.
    deleted_since_write: bool,
    /// (candidate, token) of each record created over a deleted or lost
    /// one: the oracle checks whether its candidate had seen the old one.
    pub(crate) blind_creates: Vec<(usize, u64)>,
    counter: u64,
    /// The largest count ever stored (survives deletion and data loss,
    /// except on Kubernetes, which has none).
    highest: Option<u64>,
    watchers: Vec<Watcher>,
}

/// The store and everything that decides faults: shared by all links.
pub(crate) struct Store {
    pub(crate) kind: StoreKind,
    pub(crate) state: Mutex<State>,
    pub(crate) rng: Mutex<StdRng>,
    pub(crate) plan: Plan,
    pub(crate) counts: Mutex<Counts>,
}

impl Store {
    pub(crate) fn new(kind: StoreKind, rng: StdRng, plan: Plan) -> Arc<Self> {
        Arc::new(Store {
            kind,
            state: Mutex::new(State {
                record: None,
                deleted_since_write: false,
                blind_creates: Vec::new(),
                counter: 0,
                highest: None,
                watchers: Vec::new(),
            }),
            rng: Mutex::new(rng),
            plan,
            counts: Mutex::new(Counts::default()),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn count(&self, f: impl FnOnce(&mut Counts)) {
        f(&mut self.counts.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// True until the plan's faults heal.
    fn faulty(&self) -> bool {
        Instant::now() < self.plan.heal
    }

    /// A fault with probability `p`, while faults last.
    fn roll(&self, p: f64) -> bool {
        p > 0.0 && self.faulty() && self.rng.lock().unwrap().random_bool(p.min(1.0))
    }

    /// A network delay of up to `max_ms` (2 ms once faults healed).
    fn delay(&self, max_ms: u64) -> Duration {
        let max_ms = if self.faulty() { max_ms } else { 2 };
        Duration::from_micros(self.rng.lock().unwrap().random_range(200..=max_ms * 1000))
    }

    /// Announces a change to every watch, each after its own delay (in
    /// order per watch; Redis may lose it).
    fn announce(&self, state: &mut State, event: WatchEvent) {
        let now = Instant::now();

        for w in state.watchers.iter_mut() {
            if self.plan.watch_cut(w.candidate, now) {
                self.count(|c| c.watch_events_dropped += 1);
                continue;
            }
            if self.kind == StoreKind::Redis && self.roll(self.plan.p_watch_loss) {
                self.count(|c| c.watch_events_dropped += 1);
                continue;
            }
            let due = (now + self.delay(self.plan.max_delay_ms)).max(w.last_due);
            w.last_due = due;
            let _ = w.tx.send((due, event.clone()));
        }
    }

    fn write(&self, state: &mut State, record: &LeaderRecord, by: usize) -> Version {
        if state.record.is_none() && std::mem::take(&mut state.deleted_since_write) {
            // A create over a record that was deleted or lost.
            state.blind_creates.push((by, record.leader_transitions));
        }
        state.counter += 1;
        state.record = Some((record.clone(), state.counter));
        state.highest = state.highest.max(Some(record.leader_transitions));
        let version = Version::from(state.counter);
        self.announce(
            state,
            WatchEvent::Put(Versioned {
                record: record.clone(),
                version: version.clone(),
            }),
        );
        version
    }

    fn current(state: &State) -> Option<Versioned> {
        state.record.as_ref().map(|(r, v)| Versioned {
            record: r.clone(),
            version: Version::from(*v),
        })
    }

    /// Deletes the record (by hand, by garbage collection, by expiry).
    pub(crate) fn delete(&self) {
        let mut state = self.state();
        if state.record.is_some() {
            state.deleted_since_write = true;
        }
        if state.record.take().is_some() && self.kind != StoreKind::Redis {
            self.announce(&mut state, WatchEvent::Deleted);
        }
    }

    /// The store loses all its data (Redis restarted without persistence):
    /// the record goes, unannounced, and every subscription is dropped.
    pub(crate) fn lose_data(&self) {
        let mut state = self.state();
        if state.record.is_some() {
            state.deleted_since_write = true;
        }
        state.record = None;
        state.watchers.clear();
    }

    /// Another tool writes the object without changing the record.
    pub(crate) fn touch(&self) {
        let mut state = self.state();
        let Some((record, _)) = state.record.clone() else {
            return;
        };
        if self.kind == StoreKind::Redis {
            // The version is inside the value: rewriting it moves nothing.
            return;
        }
        state.counter += 1;
        let version = state.counter;
        state.record = Some((record.clone(), version));
        self.announce(
            &mut state,
            WatchEvent::Put(Versioned {
                record,
                version: Version::from(version),
            }),
        );
    }

    /// Kubernetes: every watch ends with "too old, re-list".
    pub(crate) fn expire_watches(&self) {
        let mut state = self.state();
        for w in state.watchers.drain(..) {
            let _ = w.tx.send((Instant::now(), WatchEvent::Resync));
        }
    }
}

/// One candidate's link to the store.
#[derive(Clone)]
pub(crate) struct Link {
    pub(crate) store: Arc<Store>,
    pub(crate) candidate: usize,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Link({})", self.candidate)
    }
}

/// Why an operation failed in the network.
fn unavailable(what: &str) -> StoreError {
    StoreError::unavailable(what.to_owned())
}

impl Link {
    /// Runs `apply` on the store as the network lets it: delayed, lost,
    /// applied with its reply lost, or answered too late.
    ///
    /// The request is *sent* when the call is made, as a real client sends
    /// it: it travels on its own task, so a caller that stops waiting (its
    /// own timeout, a dropped future) does not stop it from landing.
    async fn op<T, F>(&self, apply: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Store, &mut State) -> T + Send + 'static,
        T: Send + 'static,
    {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let store = self.store.clone();
        let candidate = self.candidate;
        tokio::spawn(async move {
            let _ = reply.send(Self::travel(&store, candidate, apply).await);
        });
        answer
            .await
            .unwrap_or_else(|_| Err(unavailable("the simulated network task ended")))
    }

    /// One request's journey (see [`op`](Self::op)).
    async fn travel<T, F>(s: &Arc<Store>, candidate: usize, apply: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Store, &mut State) -> T + Send + 'static,
        T: Send + 'static,
    {
        let sent = Instant::now();
        let timeout = sent + REQUEST_TIMEOUT;
        let plan = &s.plan;
        if s.roll(plan.p_late) {
            // Delayed past the client's timeout: the client gives up, and
            // the request still lands (and is applied) later.
            s.count(|c| c.late_requests += 1);
            let store = s.clone();
            let arrives = timeout + s.delay(500);
            tokio::spawn(async move {
                tokio::time::sleep_until(arrives).await;
                if !store.plan.request_cut(candidate, Instant::now()) {
                    let mut state = store.state();
                    let _ = apply(&store, &mut state);
                }
            });
            tokio::time::sleep_until(timeout).await;
            return Err(unavailable("no answer within the timeout"));
        }
        tokio::time::sleep(s.delay(plan.max_delay_ms)).await;
        if plan.request_cut(candidate, Instant::now()) || s.roll(plan.p_lost_request) {
            s.count(|c| c.lost_requests += 1);
            tokio::time::sleep_until(timeout).await;
            return Err(unavailable("request lost"));
        }
        let out = {
            let mut state = s.state();
            apply(s, &mut state)
        };
        let reply_delay = s.delay(plan.max_delay_ms);
        let reply_lost = s.roll(plan.p_lost_reply);
        tokio::time::sleep(reply_delay).await;
        if reply_lost || plan.reply_cut(candidate, Instant::now()) {
            s.count(|c| c.lost_replies += 1);
            tokio::time::sleep_until(timeout.max(Instant::now())).await;
            return Err(unavailable("reply lost"));
        }
        Ok(out)
    }
}

#[async_trait]
impl LockStore for Link {
    async fn get(&self) -> Result<Option<Versioned>, StoreError> {
        self.op(|_, state| Store::current(state)).await
    }

    async fn create(&self, record: &LeaderRecord) -> Result<Version, StoreError> {
        let record = record.clone();
        let me = self.candidate;

        self.op(move |store, state| {
            if state.record.is_some() {
                let current = match store.kind {
                    StoreKind::Kube => None,
                    _ => Store::current(state).map(Box::new),
                };
                return Err(StoreError::Conflict { current });
            }
            if store.refuses_after_announcing() {
                return Err(store.announce_refused(state, &record));
            }
            Ok(store.write(state, &record, me))
        })
        .await?
    }

    async fn update(
        &self,
        record: &LeaderRecord,
        expected: &Version,
    ) -> Result<Version, StoreError> {
        let record = record.clone();
        let expected = expected.clone();
        let me = self.candidate;

        self.op(move |store, state| {
            let current = Store::current(state);
            match current {
                Some(c) if c.version == expected => {
                    if store.refuses_after_announcing() {
                        return Err(store.announce_refused(state, &record));
                    }
                    Ok(store.write(state, &record, me))
                }
                current => Err(StoreError::Conflict {
                    current: match store.kind {
                        StoreKind::Kube => None,
                        _ => current.map(Box::new),
                    },
                }),
            }
        })
        .await?
    }

    async fn watch(&self) -> Result<Option<WatchStream>, StoreError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let candidate = self.candidate;
        self.op(move |_, state| {
            state.watchers.push(Watcher {
                candidate,
                tx,
                last_due: Instant::now(),
            })
        })
        .await?;
        // Each event waits for its delivery time.
        let store = self.store.clone();
        let events = stream::unfold((rx, store), move |(mut rx, store)| async move {
            let (due, event) = rx.recv().await?;
            tokio::time::sleep_until(due).await;
            Some((event, (rx, store)))
        });
        Ok(Some(Box::pin(events)))
    }

    async fn token_floor(&self) -> Result<Option<u64>, StoreError> {
        self.op(|store, state| match store.kind {
            StoreKind::Kube => None,
            _ => state.highest,
        })
        .await
    }

    fn describe(&self) -> String {
        format!("sim://{:?}/candidate-{}", self.store.kind, self.candidate)
    }
}

impl Store {
    /// The Redis bug of issue 11, behind the plan's switch: a write that
    /// the server refuses after its announcement went out.
    fn refuses_after_announcing(&self) -> bool {
        self.plan.announce_refused_writes && self.roll(self.plan.p_refused)
    }

    fn announce_refused(&self, state: &mut State, record: &LeaderRecord) -> StoreError {
        self.count(|c| c.refused_writes_announced += 1);
        let version = Version::from(state.counter + 1);
        self.announce(
            state,
            WatchEvent::Put(Versioned {
                record: record.clone(),
                version,
            }),
        );
        StoreError::other("NOREPLICAS (simulated)")
    }
}
