//! What the engine reports through the [`metrics`] facade, for any
//! recorder the application installs (`tenure run --http` installs a
//! Prometheus exporter). Every series carries the lock's `name`.
//!
//! | name | type | labels | what |
//! |---|---|---|---|
//! | [`LEADER_GAUGE`] | gauge | `name` | 1 while this process leads the lock, else 0 (client-go's) |
//! | [`TERMS`] | counter | `name` | terms this process began |
//! | [`LEADER_CHANGES`] | counter | `name` | changes of the holder this process observed (itself included) |
//! | [`RENEW_SECONDS`] | histogram | `name`, `result` | time of each renew: `ok`, `lost` (another holder has it), `error`, `timeout` (cut off when the term's validity ended) |
//! | [`SLOW_RENEWS`] | counter | `name` | renews whose compare-and-swap missed and had to read the record |
//! | [`STORE_ERRORS`] | counter | `name`, `op`, `kind` | store calls that failed, by call and [`StoreError::kind`] |
//!
//! Without a recorder every call is a no-op.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

use crate::record::{LeaderRecord, Version, Versioned};
use crate::store::{LeaderEvent, LockStore, StoreError, WatchStream};

/// The leader gauge's name, as client-go exports it.
pub const LEADER_GAUGE: &str = "leader_election_master_status";
/// Terms this process began.
pub const TERMS: &str = "tenure_terms_total";
/// Changes of the holder this process observed.
pub const LEADER_CHANGES: &str = "tenure_leader_changes_total";
/// Time of each renew, by result.
pub const RENEW_SECONDS: &str = "tenure_renew_duration_seconds";
/// Renews that had to read the record after a missed compare-and-swap.
pub const SLOW_RENEWS: &str = "tenure_renew_slow_path_total";
/// Failed store calls, by call and kind.
pub const STORE_ERRORS: &str = "tenure_store_errors_total";

pub(crate) fn leader_on(name: &str) {
    metrics::gauge!(LEADER_GAUGE, "name" => name.to_owned()).set(1.0);
    metrics::counter!(TERMS, "name" => name.to_owned()).increment(1);
}

pub(crate) fn leader_off(name: &str) {
    metrics::gauge!(LEADER_GAUGE, "name" => name.to_owned()).set(0.0);
}

pub(crate) fn leader_changed(name: &str) {
    metrics::counter!(LEADER_CHANGES, "name" => name.to_owned()).increment(1);
}

pub(crate) fn renewed(name: &str, result: &'static str, took: Duration) {
    metrics::histogram!(RENEW_SECONDS, "name" => name.to_owned(), "result" => result)
        .record(took.as_secs_f64());
}

pub(crate) fn slow_renew(name: &str) {
    metrics::counter!(SLOW_RENEWS, "name" => name.to_owned()).increment(1);
}

/// The elector's store: counts every failed call in [`STORE_ERRORS`], and
/// otherwise is the store it wraps.
pub(crate) struct Measured<S: ?Sized> {
    pub(crate) name: String,
    pub(crate) store: std::sync::Arc<S>,
}

impl<S: ?Sized> Measured<S> {
    fn count<T>(&self, op: &'static str, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if let Err(e) = &result {
            metrics::counter!(
                STORE_ERRORS,
                "name" => self.name.clone(),
                "op" => op,
                "kind" => e.kind(),
            )
            .increment(1);
        }
        result
    }
}

impl<S: LockStore + ?Sized> fmt::Debug for Measured<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.store.fmt(f)
    }
}

#[async_trait]
impl<S: LockStore + ?Sized> LockStore for Measured<S> {
    async fn get(&self) -> Result<Option<Versioned>, StoreError> {
        self.count("get", self.store.get().await)
    }

    async fn create(&self, record: &LeaderRecord) -> Result<Version, StoreError> {
        self.count("create", self.store.create(record).await)
    }

    async fn update(
        &self,
        record: &LeaderRecord,
        expected: &Version,
    ) -> Result<Version, StoreError> {
        self.count("update", self.store.update(record, expected).await)
    }

    async fn watch(&self) -> Result<Option<WatchStream>, StoreError> {
        self.count("watch", self.store.watch().await)
    }

    async fn token_floor(&self) -> Result<Option<u64>, StoreError> {
        self.count("token_floor", self.store.token_floor().await)
    }

    fn record_event(&self, identity: &str, event: LeaderEvent) {
        self.store.record_event(identity, event);
    }

    fn describe(&self) -> String {
        self.store.describe()
    }
}
