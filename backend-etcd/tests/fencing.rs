//! Fencing on a real etcd: the token floor and the revision a term was won at.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tenure_conformance::fixtures::etcd::EtcdServer;
use tenure_core::{CancellationToken, LeaderElector, LockStore, Version};
use tenure_etcd::EtcdStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_term_exposes_the_revision_it_was_won_at_and_its_token_stays_below_it() {
    let etcd = EtcdServer::start();
    let store = EtcdStore::builder(etcd.endpoints(), "fencing")
        .request_timeout(Duration::from_secs(2))
        .build()
        .await
        .unwrap();
    let store: Arc<dyn LockStore> = Arc::new(store);
    let elector = LeaderElector::builder(store.clone(), "a")
        .lease_duration(Duration::from_secs(2))
        .renew_deadline(Duration::from_millis(1500))
        .retry_period(Duration::from_millis(200))
        .build()
        .unwrap();
    let won: Arc<Mutex<Option<(u64, Version)>>> = Arc::default();
    let shutdown = CancellationToken::new();
    let run = {
        let won = won.clone();
        let shutdown = shutdown.clone();
        let elector = elector.clone();
        tokio::spawn(async move {
            elector
                .run(shutdown, move |leadership| {
                    *won.lock().unwrap() =
                        Some((leadership.fencing_token(), leadership.version().clone()));
                    async move { leadership.cancelled().await }
                })
                .await
        })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let (token, version) = loop {
        if let Some(w) = won.lock().unwrap().clone() {
            break w;
        }
        assert!(tokio::time::Instant::now() < deadline, "never led");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let revision = EtcdStore::revision_of(&version).expect("an etcd revision") as u64;
    // Created above the floor (the cluster revision before the create), so
    // the token is at most the revision of the write that stored it.
    assert!(
        token <= revision,
        "token {token} above its revision {revision}"
    );
    assert!(token > 0, "a created record starts above the floor");
    assert!(store.token_floor().await.unwrap().unwrap() >= revision);
    shutdown.cancel();
    run.await.unwrap().unwrap();
}
