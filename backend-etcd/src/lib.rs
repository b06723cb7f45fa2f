//! # tenure-etcd
//!
//! The etcd backend of [tenure](https://docs.rs/tenure): [`EtcdStore`] keeps
//! one lock as one key (`/tenure/locks/<name>` by default) whose value is the
//! record in tenure's JSON form ([`tenure_core::record::to_json`]).
//!
//! - **Version** = the key's `mod_revision`.
//! - **Compare-and-swap in one round trip**: a `Txn` that compares
//!   `create_revision == 0` (create) or `mod_revision == expected` (update),
//!   puts on success and reads the key on failure, so a
//!   [`StoreError::Conflict`](tenure_core::StoreError::Conflict) carries the
//!   current record without a second read.
//! - **Never overwrites a foreign value**: a value that is not a tenure record
//!   is reported as [`StoreError::Corrupt`](tenure_core::StoreError::Corrupt).
//!   The update `Txn` also requires the stored value to start like every
//!   record tenure writes (`{"holderIdentity":`), so even a caller holding a
//!   foreign write's `mod_revision` cannot overwrite it. (A valid record
//!   written with another field order is swapped on its exact bytes, in a
//!   second round trip.)
//! - **Watch**: an etcd watch on the key, resumed from the last revision seen
//!   after a disconnect (or from now after a compaction), followed by a
//!   [`WatchEvent::Resync`](tenure_core::WatchEvent::Resync).
//! - **Fencing**: [`EtcdStore::revision_of`] gives the etcd revision a record
//!   was written at; revisions rise across all keys of a cluster.
//! - **Many locks, one connection**: [`EtcdClient`] opens one connection
//!   (per endpoint) that every lock opened with [`EtcdClient::store`]
//!   shares, requests and watches alike; [`EtcdStore::builder`] is a
//!   client of its own for one lock.
//! - **Security**: TLS and mTLS through rustls ([`EtcdTls`]), user/password
//!   auth; no secret appears in `Debug`, [`describe`](tenure_core::LockStore::describe),
//!   logs or errors.
//!
//! ```no_run
//! use tenure_core::LeaderElector;
//! use tenure_etcd::EtcdStore;
//!
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! let store = EtcdStore::builder(["http://127.0.0.1:2379"], "scheduler")
//!     .request_timeout(std::time::Duration::from_secs(3))
//!     .build()
//!     .await?;
//! let elector = LeaderElector::builder(store, "replica-1").build()?;
//! # let _ = elector; Ok(()) }
//! ```
#![warn(missing_docs)]

mod builder;
mod client;
mod error;
mod store;
mod watch;

pub use builder::{
    DEFAULT_PREFIX, DEFAULT_REQUEST_TIMEOUT, EtcdBuilder, EtcdClientBuilder, EtcdStoreBuilder,
    EtcdTls,
};
pub use client::EtcdClient;
pub use store::EtcdStore;
