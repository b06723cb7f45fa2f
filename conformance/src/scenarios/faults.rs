//! Fault handling: the store's own, for stores that bound each call
//! ([`StoreFactory::request_timeout`]), and the engine's, for in-process
//! stores that do not: one scenario instead of a copy per store.

use std::time::Duration;

use tenure_core::{LeaderRecord, StoreError};
use tokio::time::Instant;

use crate::{Fault, StoreFactory};

use super::election::{LEASE, MARGIN, PLAIN, RENEW, Timeline, spawn};

/// A hung store (connections and bytes accepted, nothing answered) fails
/// each call with `Unavailable` within the store's request timeout, so a
/// hung server cannot hang the elector; a refused connection is
/// `Unavailable` too; once the server answers again the same store works,
/// on a fresh connection, and no late reply is taken for another request's.
///
/// A store that bounds no call of its own (no
/// [`request_timeout`](StoreFactory::request_timeout): an in-process store)
/// relies on the elector's bounds instead: with every call hung, a
/// candidate never leads, and its shutdown is not held up by the calls in
/// flight.
pub async fn hung_store_fails_within_the_request_timeout(f: &dyn StoreFactory) {
    let Some(timeout) = f.request_timeout() else {
        return a_hung_store_cannot_hang_the_elector(f).await;
    };
    let (store, switch) = f.open_faulty("hung").await.expect("open through a proxy");
    let record = LeaderRecord::held_by("a", Duration::from_secs(15));
    let v1 = store.create(&record).await.expect("create");

    switch.set(Fault::Hang);
    let slowest = timeout + Duration::from_secs(2);
    for _ in 0..2 {
        let start = Instant::now();
        let err = store
            .update(&record, &v1)
            .await
            .expect_err("a hung store answered");
        let took = start.elapsed();
        assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}");
        assert!(
            took >= timeout.mul_f64(0.8) && took < slowest,
            "a hung update failed after {took:?}; the request timeout is {timeout:?}"
        );
    }
    if f.supports_watch() {
        let start = Instant::now();
        let watch = store.watch().await;
        assert!(
            matches!(watch, Err(StoreError::Unavailable { .. })),
            "watch on a hung store: {:?}",
            watch.map(|_| "a stream")
        );
        assert!(start.elapsed() < slowest, "{:?}", start.elapsed());
    }

    switch.set(Fault::Fail);
    let start = Instant::now();
    let refused = store.get().await;
    assert!(
        matches!(refused, Err(StoreError::Unavailable { .. })),
        "{refused:?}"
    );
    assert!(start.elapsed() < slowest, "{:?}", start.elapsed());

    switch.set(Fault::Pass);
    let start = Instant::now();
    let current = loop {
        match store.get().await {
            Ok(current) => break current.expect("the record survived"),
            Err(StoreError::Unavailable { .. }) if start.elapsed() < Duration::from_secs(15) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("after the fault was lifted: {e}"),
        }
    };
    assert_eq!(current.version, v1, "no write landed while the store hung");
    let v2 = store
        .update(&record, &v1)
        .await
        .expect("update after recovery");
    assert_eq!(store.get().await.unwrap().unwrap().version, v2);
}

/// [`hung_store_fails_within_the_request_timeout`] for stores that bound no
/// call: the elector's own bounds (each attempt within the renew deadline).
async fn a_hung_store_cannot_hang_the_elector(f: &dyn StoreFactory) {
    let (store, switch) = f.open_faulty("hung").await.expect("open faulty");
    switch.set(Fault::Hang);
    let t = Timeline::default();
    let c = spawn(store, "a", &t, PLAIN);
    tokio::time::sleep(2 * LEASE).await;
    assert!(!c.is_leader(), "led on a store that answers nothing");
    let start = Instant::now();
    let stopped = tokio::time::timeout(RENEW + MARGIN, c.stop()).await;
    assert!(
        stopped.is_ok(),
        "shutdown was held up by hung calls for {:?}",
        start.elapsed()
    );
    switch.set(Fault::Pass);
    assert!(t.terms().is_empty(), "{:?}", t.terms());
}
