//! An in-process store with real compare-and-swap and watch.

use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::stream;
use tokio::sync::broadcast;

use crate::record::{self, LeaderRecord, Version, Versioned};
use crate::store::{LockStore, StoreError, WatchEvent, WatchStream, validate_lock_name};

/// One lock held in this process: for single-process use, tests and demos.
///
/// Clones share the lock. The record is kept in its JSON form, like the
/// network stores keep it, so a foreign value can be planted with
/// `MemoryStore::put_raw` (feature `test-hooks`) and is reported as [`StoreError::Corrupt`].
///
/// ```
/// use tenure_core::{LeaderRecord, LockStore, MemoryStore};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tenure_core::StoreError> {
/// let store = MemoryStore::new("demo")?;
/// let v1 = store.create(&LeaderRecord::default()).await?;
/// let v2 = store.update(&LeaderRecord::default(), &v1).await?;
/// assert!(store.update(&LeaderRecord::default(), &v1).await.is_err()); // stale version
/// # let _ = v2; Ok(()) }
/// ```
#[derive(Clone)]
pub struct MemoryStore {
    name: Arc<str>,
    shared: Arc<Shared>,
}

struct Shared {
    slot: Mutex<Slot>,
    events: broadcast::Sender<WatchEvent>,
}

#[derive(Default)]
struct Slot {
    /// The stored bytes and their version.
    value: Option<(String, u64)>,
    /// Versions are never reused, also across deletes.
    counter: u64,
    /// The largest `leader_transitions` ever stored, kept across deletes:
    /// this store's token floor.
    highest_transitions: Option<u64>,
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("name", &self.name)
            .finish()
    }
}

/// Watch events kept for a slow watcher before it is told to resync.
const WATCH_BUFFER: usize = 16;

impl MemoryStore {
    /// A new, empty lock named `name` (see [`validate_lock_name`]).
    pub fn new(name: &str) -> Result<Self, StoreError> {
        validate_lock_name(name)?;
        // Slots are allocated up front (256 cost 40 KiB per lock); a
        // watcher that falls further behind gets a Resync and re-reads.
        let (events, _) = broadcast::channel(WATCH_BUFFER);
        Ok(MemoryStore {
            name: name.into(),
            shared: Arc::new(Shared {
                slot: Mutex::new(Slot::default()),
                events,
            }),
        })
    }

    #[cfg(feature = "test-hooks")]
    /// Stores arbitrary bytes under the lock (as a foreign writer would).
    pub fn put_raw(&self, raw: &str) {
        let mut slot = self.slot();
        slot.counter += 1;
        slot.value = Some((raw.to_owned(), slot.counter));
        let _ = self.shared.events.send(WatchEvent::Resync);
    }

    #[cfg(feature = "test-hooks")]
    /// The stored bytes, if any.
    pub fn raw(&self) -> Option<String> {
        self.slot().value.as_ref().map(|(raw, _)| raw.clone())
    }

    #[cfg(feature = "test-hooks")]
    /// Writes the stored bytes again under a new version, as a foreign tool
    /// touching the lock object would (on Kubernetes, any annotation moves
    /// `resourceVersion`): the version changes, the record does not.
    pub fn touch(&self) {
        let mut slot = self.slot();
        let Some((raw, _)) = slot.value.clone() else {
            return;
        };
        slot.counter += 1;
        let version = slot.counter;
        slot.value = Some((raw.clone(), version));
        if let Ok(record) = record::from_json(&raw) {
            let _ = self.shared.events.send(WatchEvent::Put(Versioned {
                record,
                version: Version::from(version),
            }));
        }
    }

    #[cfg(feature = "test-hooks")]
    /// Deletes the lock record.
    pub fn delete(&self) {
        self.slot().value = None;
        let _ = self.shared.events.send(WatchEvent::Deleted);
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Slot> {
        self.shared.slot.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn current(slot: &Slot) -> Result<Option<Versioned>, StoreError> {
        match &slot.value {
            None => Ok(None),
            Some((raw, version)) => Ok(Some(Versioned {
                record: record::from_json(raw)?,
                version: Version::from(*version),
            })),
        }
    }

    fn write(&self, slot: &mut Slot, record: &LeaderRecord) -> Version {
        slot.counter += 1;
        slot.value = Some((record::to_json(record), slot.counter));
        slot.highest_transitions = slot
            .highest_transitions
            .max(Some(record.leader_transitions));
        let version = Version::from(slot.counter);
        let _ = self.shared.events.send(WatchEvent::Put(Versioned {
            record: record.clone(),
            version: version.clone(),
        }));
        version
    }
}

#[async_trait]
impl LockStore for MemoryStore {
    async fn get(&self) -> Result<Option<Versioned>, StoreError> {
        Self::current(&self.slot())
    }

    async fn create(&self, record: &LeaderRecord) -> Result<Version, StoreError> {
        let mut slot = self.slot();
        if slot.value.is_some() {
            let current = Self::current(&slot).ok().flatten().map(Box::new);
            return Err(StoreError::Conflict { current });
        }
        Ok(self.write(&mut slot, record))
    }

    async fn update(
        &self,
        record: &LeaderRecord,
        expected: &Version,
    ) -> Result<Version, StoreError> {
        let mut slot = self.slot();
        // Never overwrite what we cannot read.
        let current = Self::current(&slot)?;
        match current {
            Some(c) if &c.version == expected => Ok(self.write(&mut slot, record)),
            current => Err(StoreError::Conflict {
                current: current.map(Box::new),
            }),
        }
    }

    async fn token_floor(&self) -> Result<Option<u64>, StoreError> {
        Ok(self.slot().highest_transitions)
    }

    async fn watch(&self) -> Result<Option<WatchStream>, StoreError> {
        let rx = self.shared.events.subscribe();
        let events = stream::unfold(rx, |mut rx| async move {
            match rx.recv().await {
                Ok(event) => Some((event, rx)),
                Err(broadcast::error::RecvError::Lagged(_)) => Some((WatchEvent::Resync, rx)),
                Err(broadcast::error::RecvError::Closed) => None,
            }
        });
        Ok(Some(Box::pin(events)))
    }

    fn describe(&self) -> String {
        format!("memory://{}", self.name)
    }
}
