//! The locks' own behaviour on the fixture: bad input is `Corrupt` and
//! kept, errors are typed, one request per renew, watch resumes, no secret
//! in any output (MultiLock: `tests/multilock.rs`).

mod common;

use std::time::Duration;

use common::{Env, NAMESPACE, foreign_spec};
use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde_json::json;
use tenure_core::{LeaderRecord, LockStore, StoreError, Version, WatchEvent};
use tenure_k8s::LEADER_ANNOTATION;
use tenure_k8s::{ConfigMapLock, LeaseLock, SharedWatch};
use tenure_kube_fixture::KubeApiServer;

async fn env() -> Env {
    Env::fixture(KubeApiServer::start().await.unwrap())
}

fn held(holder: &str) -> LeaderRecord {
    LeaderRecord::held_by(holder, Duration::from_secs(15))
}

async fn lease(env: &Env, name: &str) -> LeaseLock {
    LeaseLock::builder(name)
        .client(env.client())
        .namespace(NAMESPACE)
        .request_timeout(Duration::from_millis(500))
        .build()
        .await
        .unwrap()
}

async fn configmap(env: &Env, name: &str) -> ConfigMapLock {
    ConfigMapLock::new(env.client(), NAMESPACE, name)
        .await
        .unwrap()
}

fn assert_corrupt<T: std::fmt::Debug>(r: Result<T, StoreError>, what: &str) {
    assert!(
        matches!(r, Err(StoreError::Corrupt { .. })),
        "{what}: expected Corrupt, got {r:?}"
    );
}

#[tokio::test]
async fn bad_leases_are_corrupt_and_never_overwritten() {
    let env = env().await;
    let specs = [
        ("no-duration", foreign_spec()),
        (
            "negative-duration",
            json!({"holderIdentity": "a", "leaseDurationSeconds": -5}),
        ),
        (
            "negative-transitions",
            json!({"holderIdentity": "a", "leaseDurationSeconds": 15, "leaseTransitions": -1}),
        ),
        (
            "bad-time",
            json!({"holderIdentity": "a", "leaseDurationSeconds": 15, "renewTime": "yesterday"}),
        ),
        ("not-an-object", json!("hello")),
    ];
    for (name, spec) in specs {
        env.put_lease(name, spec, json!({})).await;
        let before = env.get_object(&env.lease_path(name)).await.unwrap();
        let version = Version::new(before["metadata"]["resourceVersion"].as_str().unwrap());
        let lock = lease(&env, name).await;
        assert_corrupt(lock.get().await, name);
        assert_corrupt(lock.update(&held("me"), &version).await, name);
        assert_corrupt(lock.create(&held("me")).await, name);
        assert_eq!(
            env.get_object(&env.lease_path(name)).await.unwrap(),
            before,
            "{name} must be kept"
        );
    }
}

#[tokio::test]
async fn bad_configmap_annotations_are_corrupt_and_never_overwritten() {
    let env = env().await;
    for (i, raw) in [
        "not json at all",
        "[1,2]",
        r#"{"name":"x"}"#,
        r#"{"holderIdentity":"a"}"#,
        r#"{"holderIdentity":"a","leaseDurationSeconds":-1}"#,
        r#"{"holderIdentity":"a","leaseDurationSeconds":15,"leaderTransitions":-2}"#,
        r#"{"holderIdentity":"a","leaseDurationSeconds":15,"renewTime":"soon"}"#,
    ]
    .into_iter()
    .enumerate()
    {
        let name = format!("bad-{i}");
        env.put_configmap(&name, json!({ LEADER_ANNOTATION: raw }), json!({"k": "v"}))
            .await;
        let before = env.get_object(&env.configmap_path(&name)).await.unwrap();
        let version = Version::new(before["metadata"]["resourceVersion"].as_str().unwrap());
        let lock = configmap(&env, &name).await;
        assert_corrupt(lock.get().await, raw);
        assert_corrupt(lock.update(&held("me"), &version).await, raw);
        assert_corrupt(lock.create(&held("me")).await, raw);
        assert_eq!(
            env.get_object(&env.configmap_path(&name)).await.unwrap(),
            before
        );
    }
}

#[tokio::test]
async fn a_renew_at_the_last_written_version_is_one_request() {
    let env = env().await;
    let lock = lease(&env, "renew").await;
    let mut version = lock.create(&held("a")).await.unwrap();
    let server = env.server();
    server.reset_request_counts();
    for _ in 0..5 {
        version = lock.update(&held("a"), &version).await.unwrap();
    }
    assert_eq!(server.requests("update"), 5);
    assert_eq!(server.requests("get"), 0, "{:?}", server.request_counts());
    // A stale version costs the PUT and one read, which the conflict carries.
    let other = lease(&env, "renew").await;
    let current = other.get().await.unwrap().unwrap();
    other.update(&held("b"), &current.version).await.unwrap();
    server.reset_request_counts();
    match lock.update(&held("a"), &version).await {
        Err(StoreError::Conflict { current: Some(c) }) => assert_eq!(c.record.holder_identity, "b"),
        other => panic!("expected a conflict with the current record, got {other:?}"),
    }
    assert_eq!((server.requests("update"), server.requests("get")), (1, 1));
}

#[tokio::test]
async fn names_are_validated_locally_and_by_the_server() {
    let env = env().await;
    for bad in ["", "Upper", "a/b", "a_b", "-x", "a..b", "a.-b"] {
        let built = LeaseLock::new(env.client(), NAMESPACE, bad).await;
        assert!(
            matches!(built, Err(StoreError::InvalidName { .. })),
            "{bad:?}"
        );
    }
    let bad_ns = LeaseLock::new(env.client(), "Bad NS", "ok").await;
    assert!(matches!(bad_ns, Err(StoreError::InvalidName { .. })));
}

#[tokio::test]
async fn refused_credentials_are_unauthorized_and_never_shown() {
    let server = KubeApiServer::start_with_token("s3cr3t-t0ken")
        .await
        .unwrap();
    let url = server.url();
    let env = Env::fixture(server);
    // No token.
    let lock = lease(&env, "auth").await;
    assert!(matches!(
        lock.get().await,
        Err(StoreError::Unauthorized { .. })
    ));
    // With the token.
    let mut config = kube::Config::new(url.parse().unwrap());
    config.auth_info.token = Some(secrecy::SecretString::from("s3cr3t-t0ken"));
    let client = kube::Client::try_from(config).unwrap();
    let lock = LeaseLock::builder("auth")
        .client(client)
        .namespace(NAMESPACE)
        .build()
        .await
        .unwrap();
    lock.create(&held("a")).await.unwrap();
    let mut stream = lock.watch().await.unwrap().unwrap();
    let v = lock.get().await.unwrap().unwrap().version;
    lock.update(&held("b"), &v).await.unwrap();
    assert!(matches!(stream.next().await, Some(WatchEvent::Put(_))));
    for shown in [format!("{lock:?}"), lock.describe()] {
        assert!(!shown.contains("s3cr3t"), "{shown}");
    }
    // Errors (a conflict, an absent lock, refused credentials) neither.
    let stale = lock.update(&held("c"), &v).await.unwrap_err();
    let unauthorized = lease(&env, "auth").await.get().await.unwrap_err();
    for e in [stale, unauthorized] {
        assert!(!format!("{e} {e:?}").contains("s3cr3t"), "{e:?}");
    }
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable() {
    // A hung server: the conformance scenario hung_store_fails_within_the_request_timeout.
    // Nothing listens: connection refused.
    let port = tenure_conformance::fixtures::process::free_port();
    let config = kube::Config::new(format!("http://127.0.0.1:{port}").parse().unwrap());
    let lock = LeaseLock::new(kube::Client::try_from(config).unwrap(), NAMESPACE, "x")
        .await
        .unwrap();
    let e = lock.get().await.unwrap_err();
    assert!(matches!(e, StoreError::Unavailable { .. }), "{e:?}");
    // The chain says why, each cause once.
    tenure_core::testing::assert_causes_said_once(&e);
    assert!(std::error::Error::source(&e).is_some(), "{e:?}");
}

#[tokio::test]
async fn the_request_timeout_is_the_stores_own_setting() {
    let env = env().await;
    let build = |b: tenure_k8s::LockBuilder<LeaseLock>| b.client(env.client()).namespace(NAMESPACE);
    let default = build(LeaseLock::builder("t")).build().await.unwrap();
    assert_eq!(
        default.request_timeout(),
        tenure_k8s::DEFAULT_REQUEST_TIMEOUT
    );
    let given = build(LeaseLock::builder("t").request_timeout(Duration::from_millis(250)));
    assert_eq!(
        given.build().await.unwrap().request_timeout(),
        Duration::from_millis(250)
    );
    #[allow(deprecated)] // the old way still works: half the deadline, at least 1 s
    let (short, long) = (
        build(LeaseLock::builder("t").renew_deadline(Duration::from_millis(600))),
        build(LeaseLock::builder("t").renew_deadline(Duration::from_secs(30))),
    );
    assert_eq!(
        short.build().await.unwrap().request_timeout(),
        Duration::from_secs(1)
    );
    assert_eq!(
        long.build().await.unwrap().request_timeout(),
        Duration::from_secs(15)
    );
    let zero = build(LeaseLock::builder("t").request_timeout(Duration::ZERO))
        .build()
        .await;
    assert!(
        matches!(zero, Err(StoreError::InvalidConfig { .. })),
        "{zero:?}"
    );
}

#[tokio::test]
async fn owner_references_are_set_on_create() {
    let env = env().await;
    let owner = OwnerReference {
        api_version: "apps/v1".into(),
        kind: "Deployment".into(),
        name: "controller".into(),
        uid: "0b0c0d0e-0000-4000-8000-000000000001".into(),
        ..OwnerReference::default()
    };
    let lock = LeaseLock::builder("owned")
        .client(env.client())
        .namespace(NAMESPACE)
        .owner_reference(owner)
        .build()
        .await
        .unwrap();
    let v = lock.create(&held("a")).await.unwrap();
    lock.update(&held("b"), &v).await.unwrap();
    let raw = env.get_object(&env.lease_path("owned")).await.unwrap();
    assert_eq!(raw["metadata"]["ownerReferences"][0]["name"], "controller");
    assert_eq!(raw["metadata"]["ownerReferences"][0]["kind"], "Deployment");
}

/// client-go's `NewWithLabels`: labels on the object the lock creates,
/// kept (with others') by every later write.
#[tokio::test]
async fn labels_are_set_on_create_and_kept() {
    let env = env().await;
    for kind in ["lease", "configmap"] {
        let name = format!("labelled-{kind}");
        macro_rules! labelled {
            ($lock:ty) => {
                <$lock>::builder(&name)
                    .client(env.client())
                    .namespace(NAMESPACE)
                    .label("app", "billing")
                    .label("tier", "cron")
                    .build()
                    .await
                    .unwrap()
            };
        }
        let (lock, path): (Box<dyn LockStore>, String) = match kind {
            "lease" => (Box::new(labelled!(LeaseLock)), env.lease_path(&name)),
            _ => (
                Box::new(labelled!(ConfigMapLock)),
                env.configmap_path(&name),
            ),
        };
        let v = lock.create(&held("a")).await.unwrap();
        lock.update(&held("b"), &v).await.unwrap();
        let raw = env.get_object(&path).await.unwrap();
        assert_eq!(raw["metadata"]["labels"]["app"], "billing", "{kind}: {raw}");
        assert_eq!(raw["metadata"]["labels"]["tier"], "cron", "{kind}: {raw}");
    }
}

async fn next_put(stream: &mut tenure_core::WatchStream) -> (Vec<WatchEvent>, LeaderRecord) {
    let mut skipped = Vec::new();
    loop {
        let event = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("a watch event within 5 s")
            .expect("the stream goes on");
        match event {
            WatchEvent::Put(v) => return (skipped, v.record),
            other => skipped.push(other),
        }
    }
}

#[tokio::test]
async fn watch_resumes_after_a_dropped_stream_and_relists_after_410() {
    let env = env().await;
    let lock = lease(&env, "w").await;
    let writer = lease(&env, "w").await;
    let mut v = writer.create(&held("a")).await.unwrap();
    let mut stream = lock.watch().await.unwrap().unwrap();
    v = writer.update(&held("b"), &v).await.unwrap();
    assert_eq!(next_put(&mut stream).await.1.holder_identity, "b");

    // The server drops the stream: we resume from where we were.
    env.server().close_watches();
    v = writer.update(&held("c"), &v).await.unwrap();
    assert_eq!(next_put(&mut stream).await.1.holder_identity, "c");

    // Changes while no watch is open, and the history compacted: the resume
    // gets 410 Expired, the stream says Resync (read again), re-lists and
    // goes on with the changes after that.
    env.server().close_watches();
    env.server().set_history_limit(0);
    v = writer.update(&held("d"), &v).await.unwrap();
    env.server().compact_history();
    let event = tokio::time::timeout(Duration::from_secs(5), stream.next()).await;
    assert_eq!(event.unwrap(), Some(WatchEvent::Resync));
    tokio::time::sleep(Duration::from_millis(200)).await; // re-listed by now
    writer.update(&held("e"), &v).await.unwrap();
    let (skipped, record) = next_put(&mut stream).await;
    assert_eq!(record.holder_identity, "e", "skipped {skipped:?}");
}

#[tokio::test]
async fn a_shared_watch_serves_many_locks_with_one_watch_request() {
    const LOCKS: usize = 30;
    let env = env().await;
    let watches = SharedWatch::new();
    let client = env.client();
    let mut locks = Vec::new();
    for i in 0..LOCKS {
        let lock = LeaseLock::builder(&format!("many-{i}"))
            .client(client.clone())
            .namespace(NAMESPACE)
            .request_timeout(Duration::from_millis(500))
            .shared_watch(&watches)
            .build()
            .await
            .unwrap();
        locks.push(lock);
    }
    let mut streams = Vec::new();
    for lock in &locks {
        streams.push(lock.watch().await.unwrap().unwrap());
    }
    let mut versions = Vec::new();
    for (i, lock) in locks.iter().enumerate() {
        versions.push(lock.create(&held(&format!("holder-{i}"))).await.unwrap());
    }
    assert_eq!(
        env.server().requests("watch"),
        1,
        "one watch request for {LOCKS} locks"
    );
    // Each stream sees its own lock's change, and only that.
    for (i, stream) in streams.iter_mut().enumerate() {
        let (skipped, record) = next_put(stream).await;
        assert_eq!(
            record.holder_identity,
            format!("holder-{i}"),
            "skipped {skipped:?}"
        );
    }
    for (i, stream) in streams.iter_mut().enumerate() {
        let quiet = tokio::time::timeout(Duration::from_millis(20), stream.next()).await;
        assert!(
            quiet.is_err(),
            "lock {i} saw another lock's change: {quiet:?}"
        );
    }

    // The server ends the watch: it resumes where it was, nothing lost.
    env.server().close_watches();
    for (i, lock) in locks.iter().enumerate() {
        versions[i] = lock.update(&held("again"), &versions[i]).await.unwrap();
    }
    for stream in streams.iter_mut() {
        assert_eq!(next_put(stream).await.1.holder_identity, "again");
    }

    // Changes while no watch is open, and the history compacted: every
    // stream says Resync, then goes on with the changes after it.
    env.server().close_watches();
    env.server().set_history_limit(0);
    versions[0] = locks[0].update(&held("gap"), &versions[0]).await.unwrap();
    env.server().compact_history();
    for (i, stream) in streams.iter_mut().enumerate() {
        let event = tokio::time::timeout(Duration::from_secs(5), stream.next()).await;
        assert_eq!(event.unwrap(), Some(WatchEvent::Resync), "lock {i}");
    }
    tokio::time::sleep(Duration::from_millis(200)).await; // re-listed by now
    for (i, lock) in locks.iter().enumerate() {
        versions[i] = lock.update(&held("after"), &versions[i]).await.unwrap();
    }
    for stream in streams.iter_mut() {
        let (skipped, record) = next_put(stream).await;
        assert_eq!(record.holder_identity, "after", "skipped {skipped:?}");
    }
}

/// kube's client is HTTP/1.1: a request in flight holds a connection. A
/// shared watch caps its locks' requests in flight, so many locks writing
/// at once open no more connections than the cap (plus the watch's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_watch_caps_the_connections_of_many_locks_writing_at_once() {
    const LOCKS: usize = 200;
    const CAP: usize = 4;
    let env = env().await;
    let port = env.server().addr().port();
    let watches = SharedWatch::new().max_requests_in_flight(CAP);
    let client = env.client();
    let mut locks = Vec::new();
    for i in 0..LOCKS {
        let lock = LeaseLock::builder(&format!("capped-{i}"))
            .client(client.clone())
            .namespace(NAMESPACE)
            .request_timeout(Duration::from_secs(5))
            .shared_watch(&watches)
            .build()
            .await
            .unwrap();
        locks.push(lock);
    }
    let mut streams = Vec::new();
    for lock in &locks[..10] {
        streams.push(lock.watch().await.unwrap().unwrap());
    }
    let record = held("burst");
    let creates = locks.iter().map(|l| l.create(&record));
    for (i, created) in futures::future::join_all(creates)
        .await
        .into_iter()
        .enumerate()
    {
        created.unwrap_or_else(|e| panic!("lock {i}: {e}"));
    }
    // hyper's pool takes a connection back a moment after its response
    // (which frees the slot), so the next request may open one more: a few
    // over the cap, never one per lock.
    let open = tenure_conformance::sockets::connections_to(port);
    assert!(
        open <= 2 * CAP + 1,
        "{open} connections for {LOCKS} locks writing at once (cap {CAP}, plus the watch)"
    );
    assert!(
        open >= 2,
        "the watch and at least one request connection: {open}"
    );
    for stream in streams.iter_mut() {
        assert_eq!(next_put(stream).await.1.holder_identity, "burst");
    }
}

#[tokio::test]
async fn watch_reports_a_foreign_write_as_resync_and_deletes() {
    let env = env().await;
    let lock = configmap(&env, "fw").await;
    lock.create(&held("a")).await.unwrap();
    let mut stream = lock.watch().await.unwrap().unwrap();
    env.put_configmap("fw", json!({ LEADER_ANNOTATION: "junk" }), json!({}))
        .await;
    let event = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .unwrap();
    assert_eq!(event, Some(WatchEvent::Resync));
    env.raw(http::Method::DELETE, &env.configmap_path("fw"), None)
        .await;
    let event = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .unwrap();
    assert_eq!(event, Some(WatchEvent::Deleted));
}
