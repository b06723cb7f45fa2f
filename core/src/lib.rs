//! # tenure-core
//!
//! The election engine of [tenure](https://docs.rs/tenure): Kubernetes
//! client-go's leader election semantics (with Istio's holder key and
//! pre-emption), over any store that can compare-and-swap one record.
//!
//! - [`LockStore`]: the backend contract (get / create / compare-and-swap
//!   update / optional watch).
//! - [`LeaderElector`]: campaigns, leads, renews, steps down and releases.
//! - [`Leadership`]: one term, with a fencing token and local validity.
//! - [`MemoryStore`]: an in-process store for single-process use and tests.
//!
//! ```
//! use std::sync::Arc;
//! use tenure_core::{LeaderElector, MemoryStore};
//! use tenure_core::CancellationToken;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = Arc::new(MemoryStore::new("scheduler")?);
//! let elector = LeaderElector::builder(store, "replica-1").build()?;
//! let shutdown = CancellationToken::new();
//! let done = shutdown.clone();
//! elector
//!     .run(shutdown, move |leadership| {
//!         let done = done.clone();
//!         async move {
//!             assert!(leadership.is_valid());
//!             done.cancel();
//!         }
//!     })
//!     .await?;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod backend;
mod campaign;
pub mod clock;
pub mod config;
mod elector;
mod leadership;
mod memory;
pub mod metrics;
#[cfg(feature = "planted-bugs")]
pub mod planted;
#[cfg(not(feature = "planted-bugs"))]
mod planted {
    //! Without the feature no bug can be switched on.
    #[derive(Clone, Copy)]
    pub(crate) enum Bug {
        ValidityFromReply,
        DeletedRecordIsFree,
        ChangeByVersion,
        TakeoverIgnoresFloor,
        ErasedRecordIsFree,
        AdoptOtherIncarnation,
        StateLagsValidity,
        LockDelayBeforeCreate,
        FailedRenewCountsAsDone,
        ShardIgnoresShare,
        ShardReleaseBeforeDrain,
    }

    #[inline(always)]
    pub(crate) fn is(_: Bug) -> bool {
        false
    }
}
pub mod record;
pub mod shards;
pub mod store;
#[cfg(feature = "test-hooks")]
pub mod testing;

pub use clock::{Clock, TokioClock};
pub use config::{ConfigError, ElectionConfig, JITTER_FACTOR, KeyComparison, MAX_DURATION};
pub use elector::{ElectionError, ElectionTask, HealthError, LeaderElector, LeaderElectorBuilder};
pub use leadership::{ElectionState, Leadership};
pub use memory::MemoryStore;
pub use record::{LeaderRecord, UNKNOWN_HOLDER, Version, Versioned};
pub use store::{
    ErrorChain, ErrorSource, LeaderEvent, LockStore, StoreError, WatchEvent, WatchStream,
    validate_lock_name,
};

/// Re-exported so users need not depend on these crates for the types in our API.
pub use async_trait::async_trait;
pub use tokio_util::sync::CancellationToken;
