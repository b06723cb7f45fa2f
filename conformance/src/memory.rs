//! The suite's factory for [`MemoryStore`], and a fault-injecting wrapper
//! for in-process stores (network stores use the [`FaultProxy`](crate::FaultProxy)).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tenure_core::{
    LeaderRecord, LockStore, MemoryStore, StoreError, Version, Versioned, WatchStream,
};
use tokio::sync::watch;

use crate::harness::{Fault, FaultSwitch, StoreFactory};

/// Opens [`MemoryStore`]s: every `open` of one name shares one lock.
#[derive(Default)]
pub struct MemoryFactory {
    locks: Mutex<HashMap<String, MemoryStore>>,
}

impl MemoryFactory {
    /// A factory with no locks yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self, name: &str) -> Result<MemoryStore, StoreError> {
        let mut locks = self.locks.lock().unwrap();
        if let Some(store) = locks.get(name) {
            return Ok(store.clone());
        }
        let store = MemoryStore::new(name)?;
        locks.insert(name.to_owned(), store.clone());
        Ok(store)
    }
}

#[async_trait]
impl StoreFactory for MemoryFactory {
    async fn open(&self, lock: &str) -> Result<Arc<dyn LockStore>, StoreError> {
        Ok(Arc::new(self.lock(lock)?))
    }

    async fn open_faulty(
        &self,
        lock: &str,
    ) -> Result<(Arc<dyn LockStore>, Arc<dyn FaultSwitch>), StoreError> {
        let store = FaultyStore::new(Arc::new(self.lock(lock)?));
        let switch = store.switch();
        Ok((Arc::new(store), switch))
    }

    async fn put_raw(&self, lock: &str, raw: &str) {
        self.lock(lock).expect("valid lock name").put_raw(raw);
    }

    async fn get_raw(&self, lock: &str) -> Option<String> {
        self.lock(lock).expect("valid lock name").raw()
    }

    async fn delete(&self, lock: &str) {
        self.lock(lock).expect("valid lock name").delete()
    }

    async fn touch(&self, lock: &str) {
        self.lock(lock).expect("valid lock name").touch()
    }

    fn supports_watch(&self) -> bool {
        true
    }
}

/// Wraps a store and applies a [`Fault`] to every call: `BlackHole` never
/// answers, `Reset` fails with `Unavailable`, `Latency` delays.
#[derive(Debug)]
pub struct FaultyStore {
    inner: Arc<dyn LockStore>,
    fault: Arc<watch::Sender<Fault>>,
}

struct Switch(Arc<watch::Sender<Fault>>);

impl FaultSwitch for Switch {
    fn set(&self, fault: Fault) {
        self.0.send_replace(fault);
    }
}

impl FaultyStore {
    /// Wraps `inner`, passing calls through until told otherwise.
    pub fn new(inner: Arc<dyn LockStore>) -> Self {
        FaultyStore {
            inner,
            fault: Arc::new(watch::Sender::new(Fault::Pass)),
        }
    }

    /// The switch that sets this store's fault.
    pub fn switch(&self) -> Arc<dyn FaultSwitch> {
        Arc::new(Switch(self.fault.clone()))
    }

    async fn gate(&self) -> Result<(), StoreError> {
        let fault = *self.fault.borrow();
        match fault {
            Fault::Pass => Ok(()),
            Fault::Latency(d) => {
                tokio::time::sleep(d).await;
                Ok(())
            }
            Fault::Reset => Err(StoreError::unavailable("connection reset (injected)")),
            Fault::BlackHole => std::future::pending().await,
        }
    }
}

#[async_trait]
impl LockStore for FaultyStore {
    async fn get(&self) -> Result<Option<Versioned>, StoreError> {
        self.gate().await?;
        self.inner.get().await
    }

    async fn create(&self, record: &LeaderRecord) -> Result<Version, StoreError> {
        self.gate().await?;
        self.inner.create(record).await
    }

    async fn update(
        &self,
        record: &LeaderRecord,
        expected: &Version,
    ) -> Result<Version, StoreError> {
        self.gate().await?;
        self.inner.update(record, expected).await
    }

    async fn watch(&self) -> Result<Option<WatchStream>, StoreError> {
        self.gate().await?;
        self.inner.watch().await
    }

    async fn token_floor(&self) -> Result<Option<u64>, StoreError> {
        self.gate().await?;
        self.inner.token_floor().await
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}
