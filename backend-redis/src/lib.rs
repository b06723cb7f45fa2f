//! # tenure-redis
//!
//! [tenure](https://docs.rs/tenure)'s store on Redis: one key per lock,
//! written only by one Lua script that compares and swaps a version
//! counter in a single round trip, with a pub/sub channel per lock for
//! watch wake-ups.
//!
//! ```no_run
//! use tenure_core::{CancellationToken, LeaderElector};
//! use tenure_redis::RedisStore;
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = RedisStore::builder("redis://127.0.0.1:6379", "scheduler")
//!     .build()
//!     .await?;
//! let elector = LeaderElector::builder(store, "replica-1").build()?;
//! elector
//!     .run(CancellationToken::new(), |leadership| async move {
//!         leadership.cancelled().await; // lead until told to stop
//!     })
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! ## Many locks, two connections
//!
//! [`RedisStore::builder`] opens a client of its own for one lock. A
//! process with many locks (one per shard, per tenant) builds one
//! [`RedisClient`] and opens every lock with [`RedisClient::store`]: all
//! of them then send their commands on the client's one connection and
//! receive their watch events on its one pub/sub connection, so the
//! connections do not grow with the number of locks.
//!
//! ```no_run
//! use tenure_redis::RedisClient;
//!
//! # async fn f() -> Result<(), tenure_core::StoreError> {
//! let redis = RedisClient::builder("redis://127.0.0.1:6379").build().await?;
//! let stores = (0..1000)
//!     .map(|shard| redis.store(&format!("shard-{shard}")))
//!     .collect::<Result<Vec<_>, _>>()?;
//! # Ok(()) }
//! ```
//!
//! ## What is stored
//!
//! The key is `{prefix}{{lock}}` (prefix `tenure:` by default, see
//! [`lock_key`]); its value is a JSON envelope holding a version counter
//! and the record in [`tenure_core::record::to_json`]'s form. This is what
//! `redis-cli GET 'tenure:{scheduler}'` prints:
//!
//! ```json
//! {"version":1795625773816095,"record":{"holderIdentity":"replica-1","leaseDurationSeconds":15.0,"acquireTime":"2026-11-25T16:56:13.815447Z","renewTime":"2026-11-25T16:56:17.815612Z","leaderTransitions":3}}
//! ```
//!
//! - `version` starts at the server's clock in microseconds when the key is
//!   created and rises by one with every update, so a key that was deleted
//!   (or expired) and created again never repeats a version a stale
//!   candidate could still hold.
//! - `record` is written byte for byte as the client serialised it.
//!
//! ## Compare-and-swap
//!
//! One Lua script (loaded once, run with `EVALSHA`, loaded again after
//! `NOSCRIPT`) creates the key only when it is absent, or updates it only
//! when the stored version equals the expected one; on a conflict it
//! returns the current value in the same reply, so
//! [`StoreError::Conflict`](tenure_core::StoreError::Conflict) carries the
//! current record without a second read. A key of another type (a list, a
//! hash...) or a string that is not the envelope is never overwritten: it
//! is reported as [`StoreError::Corrupt`](tenure_core::StoreError::Corrupt).
//! Every write `PUBLISH`es the new value on [`change_channel`]
//! (`{key}:changes`), which [`watch`](tenure_core::LockStore::watch)
//! subscribes to; the subscription reconnects after the connection drops
//! and then emits [`WatchEvent::Resync`](tenure_core::WatchEvent::Resync).
//! Deletions by other tools are not published.
//!
//! ## Expiry
//!
//! Off by default. With
//! [`expire_after_leases(n)`](RedisStoreBuilder::expire_after_leases)
//! every write sets `PEXPIRE` to `n` × the record's lease duration, so an
//! abandoned lock cleans itself up. Expiry starts the record again:
//! `leader_transitions` (the fencing token) restarts from zero.
//!
//! ## Security
//!
//! `rediss://` URLs use TLS (rustls, the system's roots or
//! [`tls_root_cert_pem`](RedisStoreBuilder::tls_root_cert_pem)); the ACL
//! user and password come from the URL or the builder. The password never
//! appears in `Debug`, [`describe`](tenure_core::LockStore::describe), logs
//! or errors. Refused credentials are
//! [`StoreError::Unauthorized`](tenure_core::StoreError::Unauthorized);
//! a server that cannot be reached or does not answer within the
//! [operation timeout](RedisClientBuilder::request_timeout) (5 s by default) is
//! [`StoreError::Unavailable`](tenure_core::StoreError::Unavailable).
//! A request abandoned on a connection (timed out, or dropped by its
//! caller) retires that connection for every lock of the client: a late
//! reply is never taken for another request's.
//!
//! ## Redis Cluster
//!
//! Keys carry the lock name as a hash tag, so the script touches one slot,
//! but this crate connects to one server: Redis Cluster is not supported
//! yet (nor is Sentinel).
#![warn(missing_docs)]

mod client;
mod envelope;
mod error;
mod store;
mod watch;

pub use client::{
    DEFAULT_PREFIX, DEFAULT_REQUEST_TIMEOUT, RedisBuilder, RedisClient, RedisClientBuilder,
    RedisStoreBuilder,
};
pub use store::{CAS_SCRIPT, RedisStore, change_channel, lock_key};
