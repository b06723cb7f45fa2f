//! [`EtcdClient`]: one cluster's connection, shared by every lock opened
//! through it.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::Client;
use tenure_core::{StoreError, validate_lock_name};

use crate::builder::{EtcdClientBuilder, describe};
use crate::store::{EtcdStore, Inner};

/// A client of one etcd cluster, shared by many locks: every [`EtcdStore`]
/// opened with [`store`](Self::store) uses the client's one HTTP/2
/// connection per endpoint, its requests and watches multiplexed on it, so
/// a process holding 10,000 locks keeps one connection, not 10,000.
///
/// Clones share the connection. [`EtcdStore::builder`] builds a client of
/// its own for one lock.
///
/// ```no_run
/// use tenure_core::LeaderElector;
/// use tenure_etcd::EtcdClient;
///
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// let etcd = EtcdClient::builder(["http://127.0.0.1:2379"]).build().await?;
/// let mut tasks = Vec::new();
/// for shard in 0..64 {
///     let store = etcd.store(&format!("shard-{shard}"))?;
///     let elector = LeaderElector::builder(store, "replica-1").build()?;
///     tasks.push(elector.spawn(|leadership| async move { leadership.cancelled().await }));
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct EtcdClient {
    pub(crate) client: Client,
    pub(crate) endpoints: Arc<[String]>,
    pub(crate) username: Option<String>,
    pub(crate) prefix: String,
    pub(crate) request_timeout: Duration,
    pub(crate) tls: bool,
    /// The calls in flight its stores may have at once, shared by them
    /// (none: no cap).
    pub(crate) slots: Option<Arc<tokio::sync::Semaphore>>,
    pub(crate) max_requests_in_flight: Option<usize>,
}

impl fmt::Debug for EtcdClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdClient")
            .field("endpoints", &self.endpoints)
            .field("username", &self.username)
            .field("prefix", &self.prefix)
            .field("tls", &self.tls)
            .field("request_timeout", &self.request_timeout)
            .field("max_requests_in_flight", &self.max_requests_in_flight)
            .finish()
    }
}

impl EtcdClient {
    /// Starts configuring a client of the etcd cluster at `endpoints`
    /// (`http://host:port`, `https://host:port` or `host:port`).
    pub fn builder(endpoints: impl IntoIterator<Item = impl Into<String>>) -> EtcdClientBuilder {
        EtcdClientBuilder::new(endpoints.into_iter().map(Into::into).collect())
    }

    /// The lock `name` on this client's cluster and connection, under the
    /// client's prefix. Makes no round trip.
    ///
    /// Errors: [`StoreError::InvalidName`] for a bad lock name.
    pub fn store(&self, name: &str) -> Result<EtcdStore, StoreError> {
        validate_lock_name(name)?;
        let key = format!("{}{}", self.prefix, name);
        let describe = describe(&self.endpoints, self.username.as_ref(), &key);
        Ok(EtcdStore {
            inner: Arc::new(Inner {
                client: self.client.clone(),
                name: name.to_owned(),
                key,
                describe,
                request_timeout: self.request_timeout,
                tls: self.tls,
                cluster: self.endpoints.len() > 1,
                slots: self.slots.clone(),
            }),
        })
    }

    /// How long one etcd call may take before it fails with
    /// [`StoreError::Unavailable`].
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }
}
