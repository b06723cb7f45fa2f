//! Regression tests of issue 11 on a real redis-server: each failed before
//! its fix.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tenure_conformance::fixtures::redis::RedisServer;
use tenure_core::{CancellationToken, LeaderElector, LeaderRecord, LockStore, StoreError};
use tenure_redis::RedisStore;

async fn raw(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("connect to redis")
}

async fn config_set(conn: &mut redis::aio::MultiplexedConnection, name: &str, value: &str) {
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg(name)
        .arg(value)
        .query_async(conn)
        .await
        .expect("CONFIG SET");
}

#[tokio::test]
async fn a_write_the_server_refuses_is_never_announced() {
    // With min-replicas-to-write and no replica, Redis refuses writes
    // (NOREPLICAS). The script used to PUBLISH the new value before its SET
    // failed: followers took a version that never existed for a change.
    let server = RedisServer::start();
    let mut conn = raw(&server).await;
    let store = RedisStore::builder(server.url(), "refused")
        .build()
        .await
        .unwrap();
    let (mut sink, mut messages) = redis::Client::open(server.url())
        .unwrap()
        .get_async_pubsub()
        .await
        .unwrap()
        .split();
    sink.subscribe(store.channel()).await.unwrap();

    config_set(&mut conn, "min-replicas-to-write", "1").await;
    let refused = store
        .create(&LeaderRecord::held_by("a", Duration::from_secs(15)))
        .await;
    config_set(&mut conn, "min-replicas-to-write", "0").await;
    assert!(
        refused.is_err(),
        "the server accepted the write: {refused:?}"
    );
    assert_eq!(store.get().await.unwrap(), None);

    // The first message on the channel must be our marker, published after
    // the refused write: nothing was announced for it.
    let _: () = redis::cmd("PUBLISH")
        .arg(store.channel())
        .arg("marker")
        .query_async(&mut conn)
        .await
        .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), messages.next())
        .await
        .expect("a message")
        .expect("the subscription is open");
    let payload: String = first.get_payload().unwrap();
    assert_eq!(payload, "marker", "a refused write was announced");
}

#[tokio::test]
async fn a_value_the_parser_rejects_is_never_overwritten_at_its_version() {
    // A foreign writer puts a value at the version we hold, with a record
    // tenure's parser rejects (an unknown field, a negative lease). The
    // script's guard used to accept anything with a numeric lease.
    let server = RedisServer::start();
    let mut conn = raw(&server).await;
    let store = RedisStore::builder(server.url(), "guarded")
        .build()
        .await
        .unwrap();
    let record = LeaderRecord::held_by("a", Duration::from_secs(15));
    let version = store.create(&record).await.unwrap();
    for foreign in [
        format!(
            r#"{{"version":{version},"record":{{"holderIdentity":"x","leaseDurationSeconds":15,"owner":"other-tool"}}}}"#
        ),
        format!(
            r#"{{"version":{version},"record":{{"holderIdentity":"x","leaseDurationSeconds":-5}}}}"#
        ),
        format!(
            r#"{{"version":{version},"record":{{"holderIdentity":"x","leaseDurationSeconds":1,"renewTime":"yesterday"}}}}"#
        ),
    ] {
        let _: () = redis::cmd("SET")
            .arg(store.key())
            .arg(&foreign)
            .query_async(&mut conn)
            .await
            .unwrap();
        let result = store.update(&record, &version).await;
        assert!(
            matches!(result, Err(StoreError::Corrupt { .. })),
            "{foreign}: {result:?}"
        );
        let kept: String = redis::cmd("GET")
            .arg(store.key())
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(kept, foreign, "the foreign value was overwritten");
    }
}

async fn lead_once(store: Arc<dyn LockStore>, identity: &str) -> u64 {
    let elector = LeaderElector::builder(store, identity)
        .lease_duration(Duration::from_secs(2))
        .renew_deadline(Duration::from_millis(1500))
        .retry_period(Duration::from_millis(200))
        .build()
        .unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let tx = std::sync::Mutex::new(Some(tx));
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let run = tokio::spawn(async move {
        elector
            .run(shutdown, move |leadership| {
                if let Some(tx) = tx.lock().unwrap().take() {
                    let _ = tx.send(leadership.fencing_token());
                }
                async move { leadership.cancelled().await }
            })
            .await
    });
    let token = tokio::time::timeout(Duration::from_secs(10), rx)
        .await
        .expect("led within 10 s")
        .unwrap();
    stop.cancel();
    run.await.unwrap().unwrap();
    token
}

#[tokio::test]
async fn fencing_tokens_rise_across_a_restart_without_persistence() {
    // The server loses all its data; a candidate that never saw the old
    // record used to start again at token 0, below the stale leader's.
    let mut server = RedisServer::start();
    let open = |url: String| async move {
        Arc::new(RedisStore::builder(url, "restarted").build().await.unwrap()) as Arc<dyn LockStore>
    };
    let first = lead_once(open(server.url()).await, "a").await;
    let second = lead_once(open(server.url()).await, "b").await;
    assert!(second > first, "{second} after {first}");
    server.restart();
    let third = lead_once(open(server.url()).await, "c").await;
    assert!(
        third > second,
        "token {third} after the restart, {second} before it"
    );
}

#[tokio::test]
async fn a_request_abandoned_by_its_caller_never_hangs_the_next_one() {
    // Found by the chaos harness: the elector gives up on a request at its
    // own deadline, which is often shorter than the store's request_timeout, so
    // the store's timeout never fired and never dropped the connection. A
    // request lost on it (a black-holed path) then hung every later one:
    // the candidate never led again.
    let server = RedisServer::start();
    let proxy = tenure_conformance::FaultProxy::start(server.addr())
        .await
        .unwrap();
    let store = RedisStore::builder(format!("redis://{}", proxy.addr()), "abandoned")
        .request_timeout(Duration::from_secs(5))
        .build()
        .await
        .unwrap();
    store.get().await.unwrap();
    proxy.set(tenure_conformance::Fault::Hang);
    // The caller gives up long before request_timeout.
    let gave_up = tokio::time::timeout(Duration::from_millis(200), store.get()).await;
    assert!(gave_up.is_err());
    proxy.set(tenure_conformance::Fault::Pass);
    let next = tokio::time::timeout(Duration::from_secs(2), store.get()).await;
    assert!(
        matches!(next, Ok(Ok(None))),
        "the next request after an abandoned one: {next:?}"
    );
}
