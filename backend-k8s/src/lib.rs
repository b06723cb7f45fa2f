//! # tenure-k8s
//!
//! Kubernetes locks for [tenure](https://docs.rs/tenure) leader election,
//! on [`kube`] and [`k8s_openapi`], written exactly as client-go's (and
//! Istio's) `tools/leaderelection/resourcelock` write them, so Go and Rust
//! candidates can share a lock:
//!
//! - [`LeaseLock`]: a `coordination.k8s.io/v1` Lease (the default choice);
//! - [`ConfigMapLock`]: the annotation `control-plane.alpha.kubernetes.io/leader`
//!   of a ConfigMap;
//! - [`MultiLock`]: both, for migrating from ConfigMap to Lease locks.
//!
//! Each is a [`LockStore`](tenure_core::LockStore): the version is the
//! object's `resourceVersion` (a MultiLock's covers both of its objects),
//! an update is a replace (PUT) carrying it, and HTTP 409 is a
//! [`Conflict`](tenure_core::StoreError::Conflict). `watch` watches the
//! object (a field selector on its name; both for a MultiLock) to wake
//! candidates early. Errors map as: 404 → none, 401/403 → `Unauthorized`, 422 on the
//! name → `InvalidName`, transport errors and timeouts → `Unavailable`, an
//! object that is not a record → `Corrupt` (never overwritten).
//!
//! ```no_run
//! use tenure_core::{CancellationToken, LeaderElector};
//! use tenure_k8s::LeaseLock;
//!
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! let lock = LeaseLock::builder("my-controller").namespace("default").build().await?;
//! let elector = LeaderElector::builder(lock, "pod-a").build()?;
//! elector
//!     .run(CancellationToken::new(), |leadership| async move {
//!         // Lead until the leadership ends; pass `leadership.fencing_token()`
//!         // along with writes so a stale leader's are refused.
//!         leadership.cancelled().await;
//!     })
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! The permissions each lock needs are in `deploy/rbac.yaml`.
//!
//! ## Beside the lock
//!
//! - [Events](events), as client-go's electors record them:
//!   [`LockBuilder::events`].
//! - [Coordinated leader election](coordination) (KEP-4355): a
//!   `LeaseCandidate`, the holder named by kube-apiserver's controller, and
//!   a drained hand-off to the preferred holder: [`LockBuilder::coordinated`].
//! - The [leader's Pod labelled](pod_label) while it leads, for a
//!   leader-only Service: [`PodLabel`]. Labels on the lock object:
//!   [`LockBuilder::label`].
//!
//! ## Kubernetes version
//!
//! No Kubernetes version is on by default: as with every kube library, the
//! application picks one in its own `k8s-openapi` dependency, e.g.
//! `k8s-openapi = { version = "0.29", features = ["v1_35"] }` (k8s-openapi
//! refuses to build without one). The optional feature `latest` turns on
//! k8s-openapi's `latest` (Kubernetes 1.37) for applications that would
//! rather not name k8s-openapi. The Lease and ConfigMap fields used here
//! are the same in every supported version.
#![warn(missing_docs)]

mod builder;
mod client;
pub mod coordination;
mod error;
pub mod events;
mod locks;
mod multilock;
mod object;
pub mod pod_label;
mod shared_watch;
mod watch;
mod wire;

pub use builder::{DEFAULT_REQUEST_TIMEOUT, LockBuilder};
pub use client::client_for;
pub use events::{EventCounts, EventReporter};
pub use locks::{ConfigMapLock, LeaseLock};
pub use multilock::MultiLock;
pub use pod_label::PodLabel;
pub use shared_watch::{DEFAULT_MAX_REQUESTS_IN_FLIGHT, SharedWatch};
/// How the objects are written, as client-go and Istio write them: the
/// annotation names, and readers that turn an object written by any of
/// them into a [`LeaderRecord`](tenure_core::LeaderRecord) (for tools that
/// inspect a lock).
pub use wire::{
    HOLDER_KEY_ANNOTATION, LEADER_ANNOTATION, TRANSITIONS_ANNOTATION, UNKNOWN_LEADER,
    annotation_to_record, lease_to_record,
};

/// Re-exported so users need not name these crates' versions themselves.
pub use k8s_openapi;
pub use kube;
