//! client-go's `MultiLock`: a ConfigMap lock (primary) and a Lease lock
//! (secondary) of the same name, for migrating from ConfigMap to Lease
//! locks without a window where old and new candidates disagree.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use tenure_core::{LeaderRecord, LockStore, StoreError, Version, Versioned, WatchStream};

use crate::builder::{LockBuilder, Parts};
use crate::object::ObjectLock;
use crate::watch;
use crate::wire::UNKNOWN_LEADER;

/// How long `get` waits for the secondary to catch up with the primary
/// before it reports an unknown leader.
const SETTLE: [Duration; 2] = [Duration::from_millis(20), Duration::from_millis(80)];

/// A ConfigMap lock (primary) and a Lease lock (secondary) of one name,
/// with client-go's `MultiLock` semantics (`configmapsleases`):
///
/// - `get` reads both; the record and version are the primary's. When the
///   two name different holders (a migration in progress) the holder is
///   reported as [`UNKNOWN_LEADER`](crate::wire::UNKNOWN_LEADER), so
///   candidates wait the lease out (after looking at the secondary again
///   for up to 0.1 s, since a MultiLock writes it just after the primary). A missing secondary is created from the
///   primary. An error reading either object is the error (a Lease that
///   is not a record makes the lock [`StoreError::Corrupt`], as in
///   client-go).
/// - `create` creates the primary (a conflict there is the conflict), then
///   writes the secondary whether or not it exists.
/// - `update` is a compare-and-swap on the primary; only when it succeeded
///   is the secondary written (created if missing). The primary is the
///   truth: a failed secondary write is logged and repaired by the next
///   update, not reported (client-go reports it).
/// - `watch` watches the primary.
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

    /// Writes the secondary after the primary took `record`; never fails.
    async fn write_secondary(&self, record: &LeaderRecord) {
        if let Err(e) = self.secondary.force_write(record).await {
            tracing::warn!(
                lock = %self.secondary.describe(),
                error = %e,
                "multilock: the secondary Lease was not written; the next update retries"
            );
        }
    }
}

impl LockBuilder<MultiLock> {
    /// Builds the lock: validates the name, and creates the default client
    /// if none was given. Contacts no server.
    pub async fn build(self) -> Result<MultiLock, StoreError> {
        let Parts {
            client,
            namespace,
            name,
            timeout,
            owners,
        } = self.parts().await?;
        Ok(MultiLock {
            primary: ObjectLock::new(
                client.clone(),
                namespace.clone(),
                name.clone(),
                timeout,
                owners.clone(),
            ),
            secondary: ObjectLock::new(client, namespace, name, timeout, owners),
        })
    }
}

#[async_trait]
impl LockStore for MultiLock {
    async fn get(&self) -> Result<Option<Versioned>, StoreError> {
        let (primary, secondary) = futures::join!(self.primary.get(), self.secondary.get());
        let Some(mut primary) = primary? else {
            return Ok(None);
        };
        let mut secondary = secondary?;
        // A MultiLock writes the secondary just after the primary: a
        // disagreement may be that write in flight. Look again before
        // calling the leader unknown.
        for pause in SETTLE {
            match &secondary {
                Some(s) if s.record.holder_identity != primary.record.holder_identity => {
                    tokio::time::sleep(pause).await;
                    secondary = self.secondary.get().await?;
                }
                _ => break,
            }
        }
        match secondary {
            None => self.write_secondary(&primary.record).await,
            Some(secondary) => {
                if secondary.record.holder_identity != primary.record.holder_identity {
                    primary.record.holder_identity = UNKNOWN_LEADER.to_owned();
                }
            }
        }
        Ok(Some(primary))
    }

    async fn create(&self, record: &LeaderRecord) -> Result<Version, StoreError> {
        let version = self.primary.create(record).await?;
        self.write_secondary(record).await;
        Ok(version)
    }

    async fn update(
        &self,
        record: &LeaderRecord,
        expected: &Version,
    ) -> Result<Version, StoreError> {
        let version = self.primary.update(record, expected).await?;
        self.write_secondary(record).await;
        Ok(version)
    }

    async fn watch(&self) -> Result<Option<WatchStream>, StoreError> {
        // The primary only: a reader woken by it while the secondary's
        // write is in flight waits for it in `get` (see `SETTLE`).
        watch::watch(&self.primary).await.map(Some)
    }

    fn describe(&self) -> String {
        format!(
            "{} + {}",
            self.primary.describe(),
            self.secondary.describe()
        )
    }
}
