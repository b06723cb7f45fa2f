//! # tenure-conformance
//!
//! The one behaviour suite every tenure store must pass, written once as
//! public async functions over a [`StoreFactory`] (the pattern of arrow-rs
//! `object_store::integration` and OpenDAL's behaviour tests), the fixtures
//! that start real servers for it, and a TCP [`FaultProxy`].
//!
//! A backend's `tests/conformance.rs` is a few lines:
//!
//! ```ignore
//! async fn factory() -> MyFactory { MyFactory::start().await }
//! tenure_conformance::conformance_tests!(factory);
//! ```
//!
//! which expands to one named `#[tokio::test]` per scenario.
#![warn(missing_docs)]

#[cfg(feature = "fixtures")]
#[cfg_attr(docsrs, doc(cfg(feature = "fixtures")))]
pub mod fixtures;
mod harness;
mod memory;
mod proxy;
pub mod scenarios;
#[cfg(feature = "fixtures")]
#[cfg_attr(docsrs, doc(cfg(feature = "fixtures")))]
pub mod sockets;

pub use harness::{Fault, FaultSwitch, StoreFactory};
pub use memory::{FaultyStore, MemoryFactory, switch_of};
pub use proxy::FaultProxy;

/// Polls `cond` every 20 ms until it holds, failing the test after
/// `within`; returns how long it took. For tests on real servers (the
/// engine's own tests use the paused clock instead).
pub async fn eventually(
    within: std::time::Duration,
    what: &str,
    mut cond: impl FnMut() -> bool,
) -> std::time::Duration {
    let start = tokio::time::Instant::now();
    while !cond() {
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    start.elapsed()
}

/// A lock held by "leader" through `leader`, then released, with the
/// release delivered to `follower`'s watch: the released record, with the
/// version the watch showed. The start of every test of a swap on a
/// watched release (one round trip, no read first).
pub async fn watched_release(
    leader: &dyn tenure_core::LockStore,
    follower: &dyn tenure_core::LockStore,
) -> tenure_core::Versioned {
    use futures::StreamExt;
    use tenure_core::{LeaderRecord, WatchEvent};
    let held = LeaderRecord::held_by("leader", std::time::Duration::from_secs(15));
    let version = leader.create(&held).await.expect("create the lock");
    let mut events = follower.watch().await.unwrap().expect("the store watches");
    leader
        .update(&LeaderRecord::default(), &version)
        .await
        .expect("release the lock");
    let seen = async {
        loop {
            match events.next().await {
                Some(WatchEvent::Put(v)) if v.record.is_free() => return v,
                Some(_) => continue,
                None => panic!("the watch ended"),
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(5), seen)
        .await
        .expect("the release reached the watch within 5 s")
}

/// Installs a `tracing` subscriber honouring `RUST_LOG` (once per process),
/// so a failing scenario shows the elector's logs.
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// Expands to one `#[tokio::test]` per scenario of the suite, each calling
/// `$factory().await` for a fresh [`StoreFactory`] and then the scenario.
///
/// `conformance_tests!(factory)` runs every scenario. What a store can do
/// is the factory's to say (`supports_watch`, `request_timeout`,
/// `announces_foreign_writes`) or the store's own (`token_floor`), and each
/// scenario asks: no list of scenarios to keep per store.
/// `conformance_tests!(shared factory)` runs the ones where candidates
/// share one client's connections (for a factory whose `open` shares a
/// client); `conformance_tests!(factory; scenario_a, scenario_b)` runs the
/// ones named. The one list, with which scenarios share a client, is in
/// `__scenarios!`.
#[macro_export]
macro_rules! conformance_tests {
    (shared $factory:path) => {
        $crate::__scenarios!(__shared_only, $factory);
    };
    ($factory:path) => {
        $crate::__scenarios!(__every, $factory);
    };
    ($factory:path; $($scenario:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $scenario() {
                $crate::init_logging();
                let factory = $factory().await;
                $crate::scenarios::$scenario(&factory).await;
            }
        )+
    };
}

/// The suite's one list: each scenario, and whether it runs again with
/// every candidate on one shared client (many candidates, watches,
/// hand-offs, races, a hung store; the record scenarios run once).
#[doc(hidden)]
#[macro_export]
macro_rules! __scenarios {
    ($then:ident, $factory:path) => {
        $crate::$then!($factory;
            [get_missing_is_none, no],
            [create_then_get_round_trips, no],
            [create_twice_conflicts, shared],
            [update_with_current_version_succeeds, no],
            [update_with_stale_version_conflicts, shared],
            [concurrent_updates_exactly_one_wins, shared],
            [watch_reports_each_change_in_order, shared],
            [corrupt_record_is_reported_and_kept, no],
            [invalid_lock_names_are_rejected, no],
            [exactly_one_of_three_leads, shared],
            [crashed_leader_is_replaced_within_lease, shared],
            [graceful_release_hands_off_quickly, shared],
            [graceful_release_hands_off_by_polling, no],
            [transitions_and_fencing_token_rise_by_one, shared],
            [higher_key_preempts_the_holder, shared],
            [follower_reports_each_new_leader_once, shared],
            [unreachable_leader_steps_down_and_is_replaced, no],
            [deleted_record_is_not_a_free_lock, no],
            [erased_record_is_not_a_free_lock, no],
            [foreign_write_is_not_a_renewal, no],
            [fencing_token_rises_across_deletion, no],
            [hung_store_fails_within_the_request_timeout, shared],
            [shards_are_shared_fairly_and_taken_over, no],
        );
    };
}

/// Every scenario of `__scenarios!`.
#[doc(hidden)]
#[macro_export]
macro_rules! __every {
    ($factory:path; $([$scenario:ident, $shared:ident]),+ $(,)?) => {
        $crate::conformance_tests!($factory; $($scenario),+);
    };
}

/// The scenarios of `__scenarios!` marked `shared`.
#[doc(hidden)]
#[macro_export]
macro_rules! __shared_only {
    ($factory:path; $(,)?) => {};
    ($factory:path; [$scenario:ident, shared] $(, $rest:tt)* $(,)?) => {
        $crate::conformance_tests!($factory; $scenario);
        $crate::__shared_only!($factory; $($rest),*);
    };
    ($factory:path; [$scenario:ident, no] $(, $rest:tt)* $(,)?) => {
        $crate::__shared_only!($factory; $($rest),*);
    };
}
