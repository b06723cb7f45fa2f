//! One `EtcdClient` shared by many locks, on a real etcd process: its cap
//! on calls in flight.

use std::time::{Duration, Instant};

use tenure_conformance::fixtures::etcd::EtcdServer;
use tenure_conformance::{Fault, FaultProxy};
use tenure_core::{LeaderRecord, LockStore, StoreError, Version};
use tenure_etcd::{EtcdClient, EtcdStore};

/// The delay the proxy adds to each direction of every chunk.
const LATENCY: Duration = Duration::from_millis(100);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_has_at_most_its_cap_of_calls_in_flight() {
    // Eight locks renewed at once through a proxy that delays each
    // direction by 100 ms: every renewal takes at least 200 ms. With a cap
    // of 2 they go in four turns, so the last answers no sooner than
    // 4 × 200 ms after the start. (Without the cap all eight are on the
    // wire together.)
    const LOCKS: u32 = 8;
    const CAP: usize = 2;
    let etcd = EtcdServer::start();
    let proxy = FaultProxy::start(etcd.addr()).await.unwrap();
    let client = EtcdClient::builder([format!("http://{}", proxy.addr())])
        .request_timeout(Duration::from_secs(10))
        .max_requests_in_flight(CAP)
        .build()
        .await
        .unwrap();
    let record = LeaderRecord::held_by("leader", Duration::from_secs(15));
    let mut held = Vec::new();
    for i in 0..LOCKS {
        let store = client.store(&format!("capped-{i}")).unwrap();
        let version = write(&store, &record).await;
        held.push((store, version));
    }
    proxy.set(Fault::Slow(LATENCY));
    let start = Instant::now();
    let renewals = held.iter().map(|(s, v)| s.update(&record, v));
    for renewal in futures::future::join_all(renewals).await {
        renewal.unwrap();
    }
    let took = start.elapsed();
    let turns = LOCKS / CAP as u32;
    assert!(
        took >= turns * 2 * LATENCY,
        "{LOCKS} renewals with a cap of {CAP} took {took:?}: more than {CAP} were in flight at once"
    );
}

/// Writes `record` over whatever the lock holds; its version.
async fn write(store: &EtcdStore, record: &LeaderRecord) -> Version {
    match store.get().await.unwrap() {
        None => store.create(record).await.unwrap(),
        Some(v) => store.update(record, &v.version).await.unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cap_of_zero_calls_in_flight_is_refused() {
    let err = EtcdClient::builder(["http://127.0.0.1:2379"])
        .max_requests_in_flight(0)
        .build()
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidConfig { .. }), "{err:?}");
    assert!(err.to_string().contains("max_requests_in_flight"), "{err}");
}
