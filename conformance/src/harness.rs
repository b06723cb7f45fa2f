//! What a backend provides to run the suite: a factory of stores.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tenure_core::{LockStore, StoreError};

/// How a [`FaultSwitch`] treats traffic between a client and its store.
///
/// The faults a network can show, named as their in-process twins in
/// [`tenure_core::testing::Fault`] (which adds those only a wrapper can
/// make: a lost reply, a starved caller). One vocabulary, two layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Forward everything.
    Pass,
    /// Reset every connection (a store that refuses).
    Fail,
    /// Accept connections and bytes but never answer (a hung store, a
    /// black-holed network).
    Hang,
    /// Forward with this extra delay on each direction.
    Slow(Duration),
}

/// Turns faults on and off for one store handle.
pub trait FaultSwitch: Send + Sync {
    /// Applies `fault` to traffic from now on.
    fn set(&self, fault: Fault);
}

/// Opens stores for the scenarios. Each `open` gives a store with its own
/// client or connection, as separate processes would have.
#[async_trait]
pub trait StoreFactory: Send + Sync + 'static {
    /// Opens the lock named `lock` with a fresh client.
    async fn open(&self, lock: &str) -> Result<Arc<dyn LockStore>, StoreError>;

    /// Opens `lock` with a fresh client whose traffic passes a fault switch
    /// (for network stores: through a [`FaultProxy`](crate::FaultProxy)).
    async fn open_faulty(
        &self,
        lock: &str,
    ) -> Result<(Arc<dyn LockStore>, Arc<dyn FaultSwitch>), StoreError>;

    /// Writes `raw` under the lock's key, bypassing the store's format, as a
    /// foreign writer would.
    async fn put_raw(&self, lock: &str, raw: &str);

    /// The raw value under the lock's key, if any.
    async fn get_raw(&self, lock: &str) -> Option<String>;

    /// Deletes the lock's record (or its object) from outside tenure, as an
    /// operator, a garbage collector, an expiry or a data loss would.
    async fn delete(&self, lock: &str);

    /// Erases the lock's record in place, from outside tenure, leaving its
    /// object: on Kubernetes a Lease's spec cleared (a common "force
    /// failover" patch) or a ConfigMap's leader annotation stripped
    /// (`kubectl replace`, `helm --force`). The default writes a blank
    /// record (no holder, no lease) with [`put_raw`](Self::put_raw), as a
    /// tool blanking the value of a key-value store would.
    async fn erase(&self, lock: &str) {
        let mut blank = tenure_core::LeaderRecord::default();
        blank.lease_duration = Duration::ZERO;
        self.put_raw(lock, &tenure_core::record::to_json(&blank))
            .await;
    }

    /// Writes to the lock's object from outside tenure without changing the
    /// record: another tool's annotation or label on Kubernetes, the same
    /// bytes written again elsewhere. Where the store versions the object,
    /// the version moves; the record must not.
    async fn touch(&self, lock: &str);

    /// True when the store's `watch` must return a stream.
    fn supports_watch(&self) -> bool;

    /// True when the store's watch tells a follower that the record was
    /// deleted or rewritten by another tool (a delete or modify event).
    /// Redis publishes only the writes of tenure's own script, so a
    /// follower there finds such a change only when the lease it saw runs
    /// out, and the safety scenarios then expect the whole lease it must
    /// wait after that.
    fn announces_foreign_writes(&self) -> bool {
        true
    }

    /// The timeout that bounds each call of the stores this factory opens,
    /// for stores that bound their own calls (network stores). `None`
    /// (the default) for stores that answer in-process.
    fn request_timeout(&self) -> Option<Duration> {
        None
    }
}
