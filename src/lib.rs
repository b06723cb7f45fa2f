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
//! Any store can also be opened from a URL with [`connect`].
#![warn(missing_docs)]

mod connect;

pub use connect::{connect, redact, ConnectError, LockUrl};
pub use tenure_core::*;

/// The Redis store (feature `redis`).
#[cfg(feature = "redis")]
pub use tenure_redis as redis;
#[cfg(feature = "redis")]
pub use tenure_redis::RedisStore;

/// The etcd store (feature `etcd`).
#[cfg(feature = "etcd")]
pub use tenure_etcd as etcd;
#[cfg(feature = "etcd")]
pub use tenure_etcd::EtcdStore;

/// The Kubernetes locks (feature `k8s`).
#[cfg(feature = "k8s")]
pub use tenure_k8s as k8s;
#[cfg(feature = "k8s")]
pub use tenure_k8s::{ConfigMapLock, LeaseLock, MultiLock};
