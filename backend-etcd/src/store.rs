//! [`EtcdStore`]: one lock as one etcd key, compare-and-swap with a `Txn`.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{Client, Compare, CompareOp, KeyValue, Txn, TxnOp, TxnOpResponse, TxnResponse};
use tenure_core::record::{from_json, to_json};
use tenure_core::{LeaderRecord, LockStore, StoreError, Version, Versioned, WatchStream};

use crate::builder::EtcdStoreBuilder;
use crate::error::{is_connect_error, map_error};

/// One tenure lock kept as one etcd key; see the [crate docs](crate).
///
/// Cheap to clone (clones share one client). `Debug` and
/// [`describe`](LockStore::describe) show endpoints, user name and key,
/// never a password or key material.
#[derive(Clone)]
pub struct EtcdStore {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) client: Client,
    pub(crate) name: String,
    pub(crate) key: String,
    pub(crate) describe: String,
    pub(crate) request_timeout: Duration,
    pub(crate) tls: bool,
    /// More than one endpoint: retry calls that could not connect.
    pub(crate) cluster: bool,
    /// The client's cap on calls in flight, shared by its stores, if set.
    pub(crate) slots: Option<Arc<tokio::sync::Semaphore>>,
}

impl fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdStore")
            .field("lock", &self.inner.describe)
            .field("tls", &self.inner.tls)
            .field("request_timeout", &self.inner.request_timeout)
            .finish()
    }
}

impl EtcdStore {
    /// Starts configuring the store for the lock `name` on the etcd cluster at
    /// `endpoints` (`http://host:port`, `https://host:port` or `host:port`).
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), tenure_core::StoreError> {
    /// use tenure_etcd::EtcdStore;
    /// let store = EtcdStore::builder(["http://10.0.0.1:2379", "http://10.0.0.2:2379"], "my-lock")
    ///     .prefix("/my-app/locks/")
    ///     .auth("app", "secret")
    ///     .build()
    ///     .await?;
    /// # let _ = store; Ok(()) }
    /// ```
    pub fn builder(
        endpoints: impl IntoIterator<Item = impl Into<String>>,
        name: impl Into<String>,
    ) -> EtcdStoreBuilder {
        EtcdStoreBuilder::new_store(endpoints.into_iter().map(Into::into).collect(), name.into())
    }

    /// The lock's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The etcd key holding the lock record (prefix + lock name).
    pub fn key(&self) -> &str {
        &self.inner.key
    }

    /// The etcd revision at which the record of `version` was written (its
    /// `mod_revision`), or `None` for a version that is not one of ours.
    ///
    /// Revisions rise across every key of an etcd cluster, so this is a
    /// fencing token also between different locks: a write made later has a
    /// larger revision. (An `EtcdStore`'s [`Version`] is the decimal
    /// `mod_revision`.)
    ///
    /// ```
    /// use tenure_core::Version;
    /// use tenure_etcd::EtcdStore;
    /// assert_eq!(EtcdStore::revision_of(&Version::from(42_i64)), Some(42));
    /// assert_eq!(EtcdStore::revision_of(&Version::new("x")), None);
    /// ```
    pub fn revision_of(version: &Version) -> Option<i64> {
        version.as_str().parse::<i64>().ok().filter(|r| *r > 0)
    }

    /// Runs one etcd call with the per-operation timeout.
    ///
    /// With several endpoints, a call that could not even connect (a
    /// member is down: the request was never sent, so a retry cannot apply
    /// a write twice) is retried on the balanced channel until the timeout.
    async fn timed<T, F, Fut>(&self, what: &str, mut call: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let deadline = tokio::time::Instant::now() + self.inner.request_timeout;
        let attempts = async {
            // Waiting for a slot counts against the timeout.
            let _slot = match &self.inner.slots {
                Some(slots) => slots.acquire().await.ok(),
                None => None,
            };
            loop {
                match call().await {
                    Err(e) if self.inner.cluster && is_connect_error(&e) => {
                        tracing::trace!(lock = %self.inner.describe, "etcd member unreachable; trying another");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    result => return result,
                }
            }
        };
        match tokio::time::timeout_at(deadline, attempts).await {
            Ok(result) => result.map_err(|e| {
                let e = map_error(e);
                tracing::debug!(lock = %self.inner.describe, error = %tenure_core::ErrorChain(&e), "etcd {what} failed");
                e
            }),
            Err(_) => {
                tracing::debug!(lock = %self.inner.describe, "etcd {what} timed out");
                Err(tenure_core::backend::timed_out(
                    format_args!("etcd {what}"),
                    self.inner.request_timeout,
                ))
            }
        }
    }

    /// Runs a compare-and-put `Txn` whose else-branch reads the key.
    async fn cas(
        &self,
        compare: impl Into<Vec<Compare>>,
        record: &LeaderRecord,
    ) -> Result<CasOutcome, StoreError> {
        let key = self.inner.key.as_bytes();
        let txn = Txn::new()
            .when(compare)
            .and_then([TxnOp::put(key, to_json(record), None)])
            .or_else([TxnOp::get(key, None)]);
        let kv = self.inner.client.kv_client();
        let resp = self
            .timed("txn", || {
                let mut kv = kv.clone();
                let txn = txn.clone();
                async move { kv.txn(txn).await }
            })
            .await?;
        if resp.succeeded() {
            let revision = header_revision(&resp)?;
            return Ok(CasOutcome::Written(Version::from(revision)));
        }
        let current = resp.op_responses().into_iter().find_map(|op| match op {
            TxnOpResponse::Get(mut get) => get.take_kvs().into_iter().next(),
            _ => None,
        });
        Ok(CasOutcome::Failed(current))
    }
}

/// Every record [`to_json`] writes starts with this (its first field).
const RECORD_PREFIX: &str = "{\"holderIdentity\":";
/// The smallest string above every string that starts with [`RECORD_PREFIX`]:
/// `value > PREFIX && value < PREFIX_END` means "starts with the prefix".
const RECORD_PREFIX_END: &str = "{\"holderIdentity\";";

enum CasOutcome {
    Written(Version),
    Failed(Option<KeyValue>),
}

/// The revision a successful write `Txn` was committed at: the new
/// `mod_revision` of the key.
fn header_revision(resp: &TxnResponse) -> Result<i64, StoreError> {
    resp.header()
        .map(|h| h.revision())
        .filter(|r| *r > 0)
        .ok_or_else(|| StoreError::other("etcd txn response without a revision"))
}

/// Decodes a stored key-value into a record at its `mod_revision`.
pub(crate) fn decode(kv: &KeyValue) -> Result<Versioned, StoreError> {
    let raw = std::str::from_utf8(kv.value())
        .map_err(|_| StoreError::corrupt("the etcd value is not UTF-8"))?;
    Ok(Versioned {
        record: from_json(raw)?,
        version: Version::from(kv.mod_revision()),
    })
}

#[async_trait]
impl LockStore for EtcdStore {
    async fn get(&self) -> Result<Option<Versioned>, StoreError> {
        let kv = self.inner.client.kv_client();
        let key = self.inner.key.as_bytes();
        let mut resp = self
            .timed("get", || {
                let mut kv = kv.clone();
                async move { kv.get(key, None).await }
            })
            .await?;
        match resp.take_kvs().first() {
            None => Ok(None),
            Some(kv) => decode(kv).map(Some).inspect_err(|e| {
                tracing::warn!(lock = %self.inner.describe, error = %tenure_core::ErrorChain(e), "foreign value under the lock key; leaving it untouched");
            }),
        }
    }

    async fn create(&self, record: &LeaderRecord) -> Result<Version, StoreError> {
        let compare = Compare::create_revision(self.inner.key.as_bytes(), CompareOp::Equal, 0);
        match self.cas([compare], record).await? {
            CasOutcome::Written(v) => Ok(v),
            CasOutcome::Failed(current) => Err(StoreError::Conflict {
                // A foreign value exists: a conflict without a record (the
                // caller's next read reports it as corrupt).
                current: current.and_then(|kv| decode(&kv).ok()).map(Box::new),
            }),
        }
    }

    async fn update(
        &self,
        record: &LeaderRecord,
        expected: &Version,
    ) -> Result<Version, StoreError> {
        let key = self.inner.key.as_bytes();
        // A version we never handed out (or 0, which a missing key would
        // match) can only conflict: compare against an impossible revision,
        // so the same round trip still returns the current record.
        let expected_rev = EtcdStore::revision_of(expected).unwrap_or(-1);
        let at_expected = Compare::mod_revision(key, CompareOp::Equal, expected_rev);
        // Never overwrite what we cannot read, even if a foreign writer's
        // revision happens to equal `expected`: the stored value must also
        // start like every record we write.
        let ours = [
            Compare::value(key, CompareOp::Greater, RECORD_PREFIX),
            Compare::value(key, CompareOp::Less, RECORD_PREFIX_END),
        ];
        let outcome = self
            .cas(
                [at_expected.clone(), ours[0].clone(), ours[1].clone()],
                record,
            )
            .await?;
        let current = match outcome {
            CasOutcome::Written(v) => return Ok(v),
            CasOutcome::Failed(None) => return Err(StoreError::conflict()),
            CasOutcome::Failed(Some(kv)) => kv,
        };
        // A foreign value is reported, never overwritten.
        let decoded = decode(&current)?;
        if current.mod_revision() != expected_rev {
            return Err(StoreError::Conflict {
                current: Some(Box::new(decoded)),
            });
        }
        // A valid record at the expected revision that another writer
        // serialised differently: swap on its exact bytes (a second round
        // trip, only for such records).
        let exact = Compare::value(key, CompareOp::Equal, current.value());
        match self.cas([at_expected, exact], record).await? {
            CasOutcome::Written(v) => Ok(v),
            CasOutcome::Failed(None) => Err(StoreError::conflict()),
            CasOutcome::Failed(Some(kv)) => Err(StoreError::Conflict {
                current: Some(Box::new(decode(&kv)?)),
            }),
        }
    }

    /// The cluster's current revision. A created record's token starts
    /// above the revision read here, so it is at most the revision of its
    /// own create; each later term adds one to the token and at least one to
    /// the revision. So every token is at most the revision of the write
    /// that stored it, and this floor (which only rises, across every key
    /// and every deletion) is above all of them. It fails only for records
    /// written by something else with a larger count than their revision,
    /// or if the cluster is restored from a backup older than the record.
    async fn token_floor(&self) -> Result<Option<u64>, StoreError> {
        let kv = self.inner.client.kv_client();
        let key = self.inner.key.as_bytes();
        let resp = self
            .timed("get", || {
                let mut kv = kv.clone();
                let options = etcd_client::GetOptions::new().with_count_only();
                async move { kv.get(key, Some(options)).await }
            })
            .await?;
        let revision = resp
            .header()
            .map(|h| h.revision())
            .filter(|r| *r > 0)
            .ok_or_else(|| StoreError::other("etcd get response without a revision"))?;
        Ok(Some(revision as u64))
    }

    async fn watch(&self) -> Result<Option<WatchStream>, StoreError> {
        crate::watch::watch(
            self.inner.client.clone(),
            self.inner.key.clone(),
            self.inner.describe.clone(),
            self.inner.request_timeout,
        )
        .await
        .map(Some)
    }

    fn describe(&self) -> String {
        self.inner.describe.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_start_with_the_guarded_prefix() {
        for record in [
            LeaderRecord::default(),
            LeaderRecord::held_by("pod-a", Duration::from_secs(15)),
        ] {
            let json = to_json(&record);
            assert!(json.starts_with(RECORD_PREFIX), "{json}");
            assert!(json.as_str() > RECORD_PREFIX && json.as_str() < RECORD_PREFIX_END);
        }
        assert!("{\"holderIdentityX".to_owned().as_str() > RECORD_PREFIX_END);
    }
}
