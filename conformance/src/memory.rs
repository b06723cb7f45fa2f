//! The suite's factory for [`MemoryStore`], and a fault-injecting wrapper
//! for in-process stores (network stores use the [`FaultProxy`](crate::FaultProxy)).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tenure_core::{LockStore, MemoryStore, StoreError};

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
        let inner: Arc<dyn LockStore> = Arc::new(self.lock(lock)?);
        let store = FaultyStore::new(inner);
        let switch = switch_of(&store);
        Ok((store, switch))
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

/// The shared fault-injecting store, as the scenarios' [`FaultSwitch`].
pub use tenure_core::testing::FaultyStore;

struct Switch(Arc<FaultyStore>);

impl FaultSwitch for Switch {
    fn set(&self, fault: Fault) {
        use tenure_core::testing::Fault as Injected;
        self.0.set(match fault {
            Fault::Pass => Injected::Pass,
            Fault::Fail => Injected::Fail,
            Fault::Hang => Injected::Hang,
            Fault::Slow(d) => Injected::Slow(d),
        });
    }
}

/// The switch that sets `store`'s fault.
pub fn switch_of(store: &Arc<FaultyStore>) -> Arc<dyn FaultSwitch> {
    Arc::new(Switch(store.clone()))
}
