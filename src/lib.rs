//! # tenure
//!
//! Leader election for Rust services, on the store they already run: a
//! Kubernetes API server, an etcd cluster or Redis. Kubernetes client-go's
//! semantics (with Istio's holder key and pre-emption), one round trip per
//! renew, watch wake-ups, fencing tokens.
//!
//! This crate re-exports [`tenure_core`] and, behind features, one crate
//! per store (none on by default):
//!
//! | feature | store | crate |
//! |---|---|---|
//! | — | `MemoryStore` (in-process) | `tenure-core` |
//! | `redis` | `RedisStore` (Lua compare-and-swap) | `tenure-redis` |
//! | `etcd` | `EtcdStore` (`Txn` on `mod_revision`) | `tenure-etcd` |
//! | `k8s` | `LeaseLock`, `ConfigMapLock`, `MultiLock` | `tenure-k8s` |
//!
//! ```
//! use std::sync::Arc;
//! use tenure::{CancellationToken, LeaderElector, MemoryStore};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = Arc::new(MemoryStore::new("my-controller")?);
//! let elector = LeaderElector::builder(store, "replica-1").build()?;
//! let shutdown = CancellationToken::new();
//! let stop = shutdown.clone();
//! elector
//!     .run(shutdown, move |leadership| {
//!         let stop = stop.clone();
//!         async move {
//!             println!("leading with fencing token {}", leadership.fencing_token());
//!             stop.cancel(); // a service would work until leadership.cancelled()
//!         }
//!     })
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! ## Redis (feature `redis`)
//!
//! ```no_run
//! # #[cfg(feature = "redis")]
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use tenure::{CancellationToken, LeaderElector, RedisStore};
//!
//! let store = RedisStore::builder("redis://127.0.0.1:6379", "nightly-report")
//!     .build()
//!     .await?;
//! let elector = LeaderElector::builder(store, "replica-1").build()?;
//! elector
//!     .run(CancellationToken::new(), |leadership| async move {
//!         leadership.cancelled().await;
//!     })
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! ## etcd (feature `etcd`; its build needs `protoc`)
//!
//! ```no_run
//! # #[cfg(feature = "etcd")]
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use tenure::{CancellationToken, EtcdStore, LeaderElector};
//!
//! let store = EtcdStore::builder(["http://10.0.0.1:2379", "http://10.0.0.2:2379"], "scheduler")
//!     .build()
//!     .await?;
//! let elector = LeaderElector::builder(store, "replica-1").build()?;
//! elector
//!     .run(CancellationToken::new(), |leadership| async move {
//!         // The etcd revision of the winning write is a second fencing token.
//!         println!("token {}", leadership.fencing_token());
//!         leadership.cancelled().await;
//!     })
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! ## Kubernetes (feature `k8s`)
//!
//! ```no_run
//! # #[cfg(feature = "k8s")]
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use tenure::{CancellationToken, LeaderElector, LeaseLock};
//!
//! // A coordination.k8s.io/v1 Lease, as client-go writes it.
//! let lock = LeaseLock::builder("my-controller")
//!     .namespace("default")
//!     .request_timeout(Duration::from_secs(5))
//!     .build()
//!     .await?;
//! let identity = std::env::var("HOSTNAME")?;
//! let elector = LeaderElector::builder(lock, identity).build()?;
//! elector
//!     .run(CancellationToken::new(), |leadership| async move {
//!         leadership.cancelled().await;
//!     })
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! ## From a URL
//!
//! Any store can also be opened from a URL with [`connect`]:
//! `memory://name`, `redis://host:6379/name`, `etcd://h1:2379,h2:2379/name`,
//! `k8s://namespace/name?kind=lease`.
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod connect;

pub use connect::{ConnectError, LockUrl, connect, redact};
// Hand-picked: what an application uses. Store authors depend on
// `tenure-core` itself (its `backend` support module, the record's JSON form).
/// The names of what the engine reports through the `metrics` facade
/// (the leader gauge `leader_election_master_status`, terms, holder
/// changes, renew times, slow renews, store errors).
pub use tenure_core::metrics;
/// The leader gauge's name (`leader_election_master_status`).
pub use tenure_core::metrics::LEADER_GAUGE;
/// `N` locks shared fairly among the live replicas ([`shards::Shards`]).
pub use tenure_core::shards;
/// Re-exported so users need not depend on these crates for the types in our API.
pub use tenure_core::{CancellationToken, async_trait};
pub use tenure_core::{
    Clock, ConfigError, ElectionConfig, ElectionError, ElectionState, ElectionTask, ErrorChain,
    ErrorSource, HealthError, JITTER_FACTOR, KeyComparison, LeaderElector, LeaderElectorBuilder,
    LeaderEvent, LeaderRecord, Leadership, LockStore, MAX_DURATION, MemoryStore, StoreError,
    TokioClock, UNKNOWN_HOLDER, Version, Versioned, WatchEvent, WatchStream, validate_lock_name,
};

/// The Redis store (feature `redis`).
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use tenure_redis as redis;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use tenure_redis::{RedisClient, RedisStore};

/// The etcd store (feature `etcd`).
#[cfg(feature = "etcd")]
#[cfg_attr(docsrs, doc(cfg(feature = "etcd")))]
pub use tenure_etcd as etcd;
#[cfg(feature = "etcd")]
#[cfg_attr(docsrs, doc(cfg(feature = "etcd")))]
pub use tenure_etcd::{EtcdClient, EtcdStore};

/// The Kubernetes locks (feature `k8s`).
#[cfg(feature = "k8s")]
#[cfg_attr(docsrs, doc(cfg(feature = "k8s")))]
pub use tenure_k8s as k8s;
#[cfg(feature = "k8s")]
#[cfg_attr(docsrs, doc(cfg(feature = "k8s")))]
pub use tenure_k8s::{ConfigMapLock, LeaseLock, MultiLock, SharedWatch};
