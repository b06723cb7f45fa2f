//! Test support (feature `test-hooks`): the one store wrapper that injects
//! faults and counts calls, for the engine's tests, the conformance suite
//! and the simulation alike. Never needed in production.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

pub use crate::clock::ScaledClock;
use crate::record::{LeaderRecord, Version, Versioned};
use crate::store::{LeaderEvent, LockStore, StoreError, WatchStream};

/// What a [`FaultyStore`] does to each call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Pass every call through.
    Pass,
    /// Fail every call with `Unavailable` (a store that resets connections).
    Fail,
    /// Never answer (a hung store, a black-holed network).
    Hang,
    /// Apply the next update but lose its reply (`Unavailable`).
    LoseNextReply,
    /// Delay every call this long before it reaches the store. A store set
    /// to [`Hang`](Fault::Hang) meanwhile hangs the delayed call too.
    Slow(Duration),
    /// Answer at once, but the caller's thread gets to the answer this much
    /// later (it was busy): the paused test clock moves on inside the call.
    /// Only with `tokio::time::pause()`.
    Starved(Duration),
}

/// Wraps a store: counts calls and applies a [`Fault`] to each.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use tenure_core::testing::{Fault, FaultyStore};
/// use tenure_core::{LockStore, MemoryStore, StoreError};
///
/// let store = FaultyStore::new(MemoryStore::new("jobs")?);
/// store.set(Fault::Fail);
/// assert!(matches!(store.get().await, Err(StoreError::Unavailable { .. })));
/// store.set(Fault::Pass);
/// assert!(store.get().await?.is_none());
/// assert_eq!(store.calls(), (1, 0, 0));
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct FaultyStore<S = Arc<dyn LockStore>> {
    inner: S,
    fault: Mutex<Fault>,
    watch: bool,
    gets: AtomicUsize,
    creates: AtomicUsize,
    updates: AtomicUsize,
    attempts: AtomicUsize,
    events: Mutex<Vec<(String, LeaderEvent)>>,
}

impl<S: LockStore> FaultyStore<S> {
    /// Wraps `inner`, passing calls through until told otherwise.
    pub fn new(inner: S) -> Arc<Self> {
        Self::build(inner, true)
    }

    /// Wraps `inner` as a store that cannot watch.
    pub fn without_watch(inner: S) -> Arc<Self> {
        Self::build(inner, false)
    }

    fn build(inner: S, watch: bool) -> Arc<Self> {
        Arc::new(FaultyStore {
            inner,
            fault: Mutex::new(Fault::Pass),
            watch,
            gets: AtomicUsize::new(0),
            creates: AtomicUsize::new(0),
            updates: AtomicUsize::new(0),
            attempts: AtomicUsize::new(0),
            events: Mutex::new(Vec::new()),
        })
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Applies `fault` to calls from now on.
    pub fn set(&self, fault: Fault) {
        *self.fault.lock().unwrap_or_else(|e| e.into_inner()) = fault;
    }

    fn fault(&self) -> Fault {
        *self.fault.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Gets, creates and updates that reached the store.
    pub fn calls(&self) -> (usize, usize, usize) {
        (
            self.gets.load(Ordering::SeqCst),
            self.creates.load(Ordering::SeqCst),
            self.updates.load(Ordering::SeqCst),
        )
    }

    /// What [`LockStore::record_event`] was told, in order (a fault does
    /// not stop it: recording never fails the election).
    pub fn events(&self) -> Vec<(String, LeaderEvent)> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Every call, the failed ones too.
    pub fn attempts(&self) -> usize {
        self.attempts.load(Ordering::SeqCst)
    }

    async fn gate(&self) -> Result<(), StoreError> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        match self.fault() {
            Fault::Fail => Err(StoreError::unavailable("connection reset (injected)")),
            Fault::Hang => std::future::pending().await,
            Fault::Slow(d) => {
                tokio::time::sleep(d).await;
                if self.fault() == Fault::Hang {
                    std::future::pending::<()>().await;
                }
                Ok(())
            }
            Fault::Starved(d) => {
                tokio::time::advance(d).await;
                Ok(())
            }
            Fault::Pass | Fault::LoseNextReply => Ok(()),
        }
    }
}

#[async_trait]
impl<S: LockStore> LockStore for FaultyStore<S> {
    async fn get(&self) -> Result<Option<Versioned>, StoreError> {
        self.gate().await?;
        self.gets.fetch_add(1, Ordering::SeqCst);
        self.inner.get().await
    }

    async fn create(&self, record: &LeaderRecord) -> Result<Version, StoreError> {
        self.gate().await?;
        self.creates.fetch_add(1, Ordering::SeqCst);
        self.inner.create(record).await
    }

    async fn update(
        &self,
        record: &LeaderRecord,
        expected: &Version,
    ) -> Result<Version, StoreError> {
        self.gate().await?;
        self.updates.fetch_add(1, Ordering::SeqCst);
        let result = self.inner.update(record, expected).await;
        let mut fault = self.fault.lock().unwrap_or_else(|e| e.into_inner());
        if *fault == Fault::LoseNextReply && result.is_ok() {
            *fault = Fault::Pass;
            return Err(StoreError::unavailable("reply lost (injected)"));
        }
        result
    }

    async fn watch(&self) -> Result<Option<WatchStream>, StoreError> {
        if !self.watch {
            return Ok(None);
        }
        self.gate().await?;
        self.inner.watch().await
    }

    async fn token_floor(&self) -> Result<Option<u64>, StoreError> {
        self.gate().await?;
        self.inner.token_floor().await
    }

    fn record_event(&self, identity: &str, event: LeaderEvent) {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((identity.to_owned(), event));
        self.inner.record_event(identity, event);
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}

/// Panics if `e`'s message repeats the text of its source: a tenure
/// error says its own words and leaves the cause to `source()`, so
/// [`ErrorChain`](crate::ErrorChain) prints each cause once (it also skips
/// the repeats client libraries make further down the chain). Store
/// crates' tests call it on their errors.
///
/// ```
/// use tenure_core::StoreError;
/// use tenure_core::testing::assert_causes_said_once;
///
/// let io = std::io::Error::other("connection refused");
/// assert_causes_said_once(&StoreError::unavailable("redis GET").with_source(io));
/// ```
pub fn assert_causes_said_once(e: &(dyn std::error::Error + 'static)) {
    if let Some(source) = e.source() {
        let (said, cause) = (e.to_string(), source.to_string());
        assert!(
            cause.is_empty() || !said.contains(&cause),
            "{said:?} repeats its source {cause:?}"
        );
    }
    let chain = crate::ErrorChain(e).to_string();
    let parts: Vec<&str> = chain.split(": ").collect();
    for (i, part) in parts.iter().enumerate().skip(1) {
        assert!(
            parts[i - 1] != *part,
            "{part:?} is said twice in a row: {chain}"
        );
    }
}
