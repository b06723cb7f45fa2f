//! client-go's `MultiLock`: a ConfigMap lock (primary) and a Lease lock
//! (secondary) of the same name, for migrating from ConfigMap to Lease
//! locks without a window where old and new candidates disagree.

mod merge;
mod watch;

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use tenure_core::{LeaderRecord, LockStore, StoreError, Version, Versioned, WatchStream};

use crate::builder::LockBuilder;
use crate::object::{Codec, ObjectLock};

/// How long a MultiLock's second write (the Lease, after the ConfigMap)
/// may take to land after the first one's reply: a read or a watch that
/// sees the two objects disagree waits this long before it calls the
/// leader unknown.
pub(super) const SECOND_WRITE_MS: u64 = 100;

/// `get` looks at the Lease again after these pauses (together
/// [`SECOND_WRITE_MS`]).
const REREAD_AFTER: [Duration; 2] = [
    Duration::from_millis(SECOND_WRITE_MS / 5),
    Duration::from_millis(SECOND_WRITE_MS * 4 / 5),
];

/// A ConfigMap lock (primary) and a Lease lock (secondary) of one name, as
/// client-go's `MultiLock` (`configmapsleases`): one lock over two objects,
/// so that MultiLock candidates can share it with ConfigMap-only candidates
/// (before a migration) and Lease-only ones (after it).
///
/// - The **version** covers both objects: `"<configmap rv>/<lease rv>"`,
///   `-` for an absent object. A write to either moves it.
/// - `get` reads both and writes nothing. Both absent: no record. One
///   absent: the other's record (a Lease-only or ConfigMap-only candidate
///   may be leading on it: the lock is not free). Both present: their
///   record when they agree; when they differ, the holder if they name the
///   same one, else [`UNKNOWN_LEADER`](crate::wire::UNKNOWN_LEADER) (as
///   client-go), the larger `leader_transitions` and `lease_duration` of
///   the two, and times that change when either object is renewed, so
///   candidates wait until *both* have been unchanged for a lease. When
///   the holders differ it looks at the Lease again for up to 0.1 s first,
///   as a MultiLock writes it just after the ConfigMap. An object that is
///   not a record makes the lock [`StoreError::Corrupt`].
/// - `update` is a compare-and-swap on both objects at the versions in
///   `expected`, the ConfigMap first (as client-go); an object absent at
///   that version is created, and one that exists by then is a conflict. If
///   either write fails the update fails: a Lease-only candidate that
///   renewed in between keeps its lock. After a failed second write the
///   ConfigMap holds the new record and the Lease the other one: the lock
///   reads as held by an unknown leader at a new version, and the next
///   round converges from there.
/// - `create` creates both, the ConfigMap first; if either exists, a
///   conflict (a ConfigMap created before the Lease turned out to exist
///   stays, naming a holder that does not lead: the lock reads as held by
///   an unknown leader, as with client-go).
/// - `watch` watches both objects: a MultiLock write (both objects alike)
///   is one `Put`; a change that leaves them different is a `Resync`.
///
/// client-go's `MultiLock` differs where it is unsafe or loses count: it
/// writes the Lease at whatever version it reads just before (not the one
/// its decision was based on), counts `leaderTransitions` from the
/// ConfigMap alone, and reports a missing ConfigMap as "not found" (then
/// fails to create over the existing Lease). Like it, a change of either
/// object counts as a renewal (it compares both objects' raw records).
///
/// Needs the permissions of both [`ConfigMapLock`](crate::ConfigMapLock)
/// and [`LeaseLock`](crate::LeaseLock).
pub struct MultiLock {
    primary: ObjectLock<ConfigMap>,
    secondary: ObjectLock<Lease>,
}

impl fmt::Debug for MultiLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MultiLock")
            .field("namespace", &self.primary.namespace)
            .field("name", &self.primary.name)
            .field("request_timeout", &self.primary.timeout)
            .finish_non_exhaustive()
    }
}

impl MultiLock {
    /// A builder for the lock named `name` (both objects get this name).
    pub fn builder(name: &str) -> LockBuilder<MultiLock> {
        LockBuilder::new(name)
    }

    /// The lock named `name` in `namespace`, through `client`, with the
    /// default request timeout.
    pub async fn new(client: Client, namespace: &str, name: &str) -> Result<Self, StoreError> {
        Self::builder(name)
            .client(client)
            .namespace(namespace)
            .build()
            .await
    }

    /// The lock objects' name.
    pub fn name(&self) -> &str {
        &self.primary.name
    }

    /// The lock objects' namespace.
    pub fn namespace(&self) -> &str {
        &self.primary.namespace
    }

    /// After a conflict on either object: the conflict with the lock as it
    /// is now (never one object's record or version, which callers would
    /// take for the lock's), or `Corrupt` when an object is not a record.
    async fn conflict(&self) -> StoreError {
        crate::error::conflict_after(self.get().await)
    }

    /// Writes `record` to one object: a compare-and-swap at `expected`, or
    /// a create when it was absent.
    async fn write<K: Codec>(
        &self,
        object: &ObjectLock<K>,
        record: &LeaderRecord,
        expected: Option<&Version>,
    ) -> Result<Version, StoreError> {
        let written = match expected {
            Some(version) => object.update(record, version).await,
            None => object.create(record).await,
        };
        match written {
            Err(StoreError::Conflict { .. }) => Err(self.conflict().await),
            other => other,
        }
    }

    /// Writes both, the ConfigMap first; fails if either write does.
    async fn write_both(
        &self,
        record: &LeaderRecord,
        primary: Option<&Version>,
        secondary: Option<&Version>,
    ) -> Result<Version, StoreError> {
        let p = self.write(&self.primary, record, primary).await?;
        let s = match self.write(&self.secondary, record, secondary).await {
            Ok(s) => s,
            Err(e) => {
                // Not repaired here: the caller re-reads and decides again
                // (both versions moved on, so nothing reads as unchanged).
                tracing::warn!(
                    lock = %self.describe(),
                    error = %tenure_core::ErrorChain(&e),
                    "multilock: the ConfigMap was written but the Lease was not; the write failed"
                );
                return Err(e);
            }
        };
        merge::join(Some(&p), Some(&s))
    }
}

impl LockBuilder<MultiLock> {
    /// Builds the lock: validates the name, and creates the default client
    /// if none was given. Contacts no server.
    pub async fn build(self) -> Result<MultiLock, StoreError> {
        let parts = self.parts().await?;
        Ok(MultiLock {
            primary: ObjectLock::new(parts.clone()),
            secondary: ObjectLock::new(parts),
        })
    }
}

#[async_trait]
impl LockStore for MultiLock {
    async fn get(&self) -> Result<Option<Versioned>, StoreError> {
        let (primary, secondary) = futures::join!(self.primary.get(), self.secondary.get());
        let (primary, mut secondary) = (primary?, secondary?);
        // A MultiLock writes the Lease just after the ConfigMap: holders
        // that differ may be that write in flight. Look at the Lease again
        // before calling the leader unknown (which followers would report
        // as a new leader). Any pair read is safe to act on: an update
        // compares both versions.
        for pause in REREAD_AFTER {
            match (&primary, &secondary) {
                (Some(p), Some(s)) if p.record.holder_identity != s.record.holder_identity => {
                    tokio::time::sleep(pause).await;
                    secondary = self.secondary.get().await?;
                }
                _ => break,
            }
        }
        merge::merge(primary, secondary)
    }

    async fn create(&self, record: &LeaderRecord) -> Result<Version, StoreError> {
        self.write_both(record, None, None).await
    }

    async fn update(
        &self,
        record: &LeaderRecord,
        expected: &Version,
    ) -> Result<Version, StoreError> {
        // A version that is not a MultiLock's was never this lock's.
        let Some((primary, secondary)) = merge::split(expected) else {
            return Err(self.conflict().await);
        };
        self.write_both(record, primary.as_ref(), secondary.as_ref())
            .await
    }

    async fn watch(&self) -> Result<Option<WatchStream>, StoreError> {
        watch::watch(&self.primary, &self.secondary).await.map(Some)
    }

    /// On both objects, as client-go's MultiLock records it.
    fn record_event(&self, identity: &str, event: tenure_core::LeaderEvent) {
        self.primary.record_event(identity, event);
        self.secondary.record_event(identity, event);
    }

    fn describe(&self) -> String {
        format!(
            "{} + {}",
            self.primary.describe(),
            self.secondary.describe()
        )
    }
}
