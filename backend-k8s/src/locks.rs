//! The Lease lock and the ConfigMap lock.

use std::fmt;

use async_trait::async_trait;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use tenure_core::{LeaderRecord, LockStore, StoreError, Version, Versioned, WatchStream};

use crate::builder::{LockBuilder, Parts};
use crate::object::ObjectLock;
use crate::watch;

macro_rules! object_lock {
    ($(#[$doc:meta])* $lock:ident, $kind:ty) => {
        $(#[$doc])*
        pub struct $lock {
            inner: ObjectLock<$kind>,
        }

        impl $lock {
            /// A builder for the lock named `name` (a DNS-1123 subdomain,
            /// see [`validate_lock_name`](tenure_core::validate_lock_name)).
            pub fn builder(name: &str) -> LockBuilder<$lock> {
                LockBuilder::new(name)
            }

            /// The lock named `name` in `namespace`, through `client`, with
            /// the default request timeout.
            pub async fn new(client: Client, namespace: &str, name: &str) -> Result<Self, StoreError> {
                Self::builder(name).client(client).namespace(namespace).build().await
            }

            pub(crate) fn from_parts(parts: Parts) -> Self {
                $lock {
                    inner: ObjectLock::new(parts),
                }
            }

            /// The lock object's name.
            pub fn name(&self) -> &str {
                &self.inner.name
            }

            /// The lock object's namespace.
            pub fn namespace(&self) -> &str {
                &self.inner.namespace
            }

            /// The timeout of each request.
            pub fn request_timeout(&self) -> std::time::Duration {
                self.inner.timeout
            }

            /// How the lock's Events fared, when it records them
            /// ([`LockBuilder::events`]).
            pub fn event_counts(&self) -> Option<crate::EventCounts> {
                self.inner.events.as_ref().map(|e| e.counts())
            }
        }

        impl LockBuilder<$lock> {
            /// Builds the lock: validates the name, and creates the default
            /// client if none was given. Contacts no server.
            pub async fn build(self) -> Result<$lock, StoreError> {
                Ok($lock::from_parts(self.parts().await?))
            }
        }

        impl fmt::Debug for $lock {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($lock))
                    .field("namespace", &self.inner.namespace)
                    .field("name", &self.inner.name)
                    .field("request_timeout", &self.inner.timeout)
                    .finish_non_exhaustive()
            }
        }

        #[async_trait]
        impl LockStore for $lock {
            async fn get(&self) -> Result<Option<Versioned>, StoreError> {
                self.inner.get().await
            }

            async fn create(&self, record: &LeaderRecord) -> Result<Version, StoreError> {
                self.inner.create(record).await
            }

            async fn update(
                &self,
                record: &LeaderRecord,
                expected: &Version,
            ) -> Result<Version, StoreError> {
                self.inner.update(record, expected).await
            }

            async fn watch(&self) -> Result<Option<WatchStream>, StoreError> {
                watch::watch(&self.inner).await.map(Some)
            }

            fn record_event(&self, identity: &str, event: tenure_core::LeaderEvent) {
                self.inner.record_event(identity, event);
            }

            fn describe(&self) -> String {
                self.inner.describe()
            }
        }
    };
}

object_lock! {
    /// A lock in a `coordination.k8s.io/v1` Lease, written exactly as
    /// client-go's `LeaseLock` writes it: `spec.holderIdentity`,
    /// `leaseDurationSeconds` (whole seconds, rounded up), `acquireTime` and
    /// `renewTime` (`MicroTime`), `leaseTransitions`; Istio's holder key in
    /// the annotation `leader.istio.io/holder-key`.
    ///
    /// The version is the Lease's `resourceVersion`; an update is a replace
    /// (PUT) carrying it, so a concurrent change is HTTP 409, reported as
    /// [`StoreError::Conflict`]. Needs `get`, `create`, `update` on
    /// `leases` (and `list`, `watch` for [`LockStore::watch`]): see
    /// `deploy/rbac.yaml`.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), tenure_core::StoreError> {
    /// use std::time::Duration;
    /// use tenure_k8s::LeaseLock;
    ///
    /// let lock = LeaseLock::builder("my-controller")
    ///     .namespace("default")
    ///     .request_timeout(Duration::from_secs(5)) // at most half the renew deadline
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    LeaseLock, Lease
}

object_lock! {
    /// A lock in the annotation `control-plane.alpha.kubernetes.io/leader`
    /// of a core `v1` ConfigMap, as client-go's (and Istio's)
    /// `ConfigMapLock` writes it: the record as JSON with client-go's field
    /// names and RFC 3339 times, plus Istio's `holderKey`. The ConfigMap's
    /// other annotations, labels and data are kept on update; a ConfigMap
    /// without the annotation holds a free record.
    ///
    /// The version is the ConfigMap's `resourceVersion`, as for
    /// [`LeaseLock`]. Needs `get`, `create`, `update` on `configmaps` (and
    /// `list`, `watch` for [`LockStore::watch`]).
    ConfigMapLock, ConfigMap
}
