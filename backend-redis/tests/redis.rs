//! Redis-only behaviour, on real `redis-server` processes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tenure_conformance::fixtures::process::free_port;
use tenure_conformance::fixtures::redis::{RedisServer, RedisServerOptions, RedisTls};
use tenure_core::{
    CancellationToken, LeaderElector, LeaderRecord, LockStore, StoreError, Version, WatchEvent,
};
use tenure_redis::{RedisClient, RedisStore, lock_key};

async fn raw_conn(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("raw connection")
}

async fn store(server: &RedisServer, lock: &str) -> RedisStore {
    RedisStore::builder(server.url(), lock)
        .build()
        .await
        .expect("store")
}

fn record(holder: &str) -> LeaderRecord {
    LeaderRecord::held_by(holder, Duration::from_secs(15))
}

use tenure_conformance::eventually;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elector_recovers_after_server_restart() {
    tenure_conformance::init_logging();
    let mut server = RedisServer::local(RedisServerOptions::default());
    let store = RedisStore::builder(server.url(), "restart")
        .request_timeout(Duration::from_millis(500))
        .build()
        .await
        .unwrap();
    let elector = LeaderElector::builder(Arc::new(store), "replica-a")
        .lease_duration(Duration::from_secs(2))
        .renew_deadline(Duration::from_millis(1500))
        .retry_period(Duration::from_millis(250))
        .build()
        .unwrap();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn({
        let elector = elector.clone();
        let shutdown = shutdown.clone();
        async move {
            elector
                .run(shutdown, |leadership| async move {
                    leadership.cancelled().await;
                })
                .await
        }
    });

    eventually(Duration::from_secs(5), "first term", || elector.is_leader()).await;
    server.stop();
    let lost = eventually(Duration::from_secs(6), "step down", || !elector.is_leader()).await;
    // The leader may not step down before its renew deadline has passed.
    assert!(
        lost >= Duration::from_millis(1000),
        "stepped down after {lost:?}"
    );

    server.restart();
    eventually(
        Duration::from_secs(10),
        "leader again after restart",
        || elector.is_leader(),
    )
    .await;
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("run ends after shutdown")
        .unwrap()
        .unwrap();
}

fn tls_material() -> RedisTls {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server_cert = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .unwrap()
        .signed_by(&server_key, &ca, &ca_key)
        .unwrap();
    RedisTls {
        cert_pem: server_cert.pem(),
        key_pem: server_key.serialize_pem(),
        ca_pem: ca.pem(),
    }
}

#[tokio::test]
async fn tls_with_a_generated_certificate() {
    let tls = tls_material();
    let ca_pem = tls.ca_pem.clone();
    let server = RedisServer::local(RedisServerOptions {
        password: Some("tls-pass".into()),
        tls: Some(tls),
    });
    assert!(server.url().starts_with("rediss://"));

    let store = RedisStore::builder(server.url(), "tls")
        .password("tls-pass")
        .tls_root_cert_pem(ca_pem.clone())
        .build()
        .await
        .expect("TLS store");
    assert!(store.describe().starts_with("rediss://127.0.0.1:"));
    let v1 = store.create(&record("a")).await.unwrap();
    let got = store.get().await.unwrap().unwrap();
    assert_eq!(got.version, v1);
    let mut watch = store.watch().await.unwrap().unwrap();
    let v2 = store.update(&record("b"), &v1).await.unwrap();
    match tokio::time::timeout(Duration::from_secs(5), watch.next()).await {
        Ok(Some(WatchEvent::Put(v))) => assert_eq!(v.version, v2),
        other => panic!("expected a Put over TLS, got {other:?}"),
    }

    // The system's roots do not trust our CA.
    let untrusted = RedisStore::builder(server.url(), "tls")
        .password("tls-pass")
        .request_timeout(Duration::from_secs(2))
        .build()
        .await;
    assert!(untrusted.is_err(), "{untrusted:?}");
    // Plain text to the TLS port gets no valid answer.
    let plain = RedisStore::builder(server.url().replace("rediss://", "redis://"), "tls")
        .password("tls-pass")
        .request_timeout(Duration::from_secs(1))
        .build()
        .await;
    assert!(plain.is_err(), "{plain:?}");
    // A root certificate for a URL without TLS is a configuration error.
    let mixed = RedisStore::builder("redis://127.0.0.1:1", "tls")
        .tls_root_cert_pem(ca_pem)
        .build()
        .await;
    assert!(
        matches!(mixed, Err(StoreError::InvalidConfig { .. })),
        "{mixed:?}"
    );
}

#[tokio::test]
async fn wrong_or_missing_password_is_unauthorized() {
    let server = RedisServer::local(RedisServerOptions {
        password: Some("right-pass".into()),
        tls: None,
    });
    let port = server.addr().port();
    let wrong = RedisStore::builder(server.url(), "auth")
        .password("wrong-pass")
        .build()
        .await;
    assert!(
        matches!(wrong, Err(StoreError::Unauthorized { .. })),
        "{wrong:?}"
    );
    let missing = RedisStore::builder(server.url(), "auth").build().await;
    assert!(
        matches!(missing, Err(StoreError::Unauthorized { .. })),
        "{missing:?}"
    );
    let wrong_user = RedisStore::builder(server.url(), "auth")
        .username("nobody")
        .password("right-pass")
        .build()
        .await;
    assert!(
        matches!(wrong_user, Err(StoreError::Unauthorized { .. })),
        "{wrong_user:?}"
    );

    // Right: from the builder, from the URL, with the ACL user `default`.
    for builder in [
        RedisStore::builder(server.url(), "auth").password("right-pass"),
        RedisStore::builder(format!("redis://:right-pass@127.0.0.1:{port}"), "auth"),
        RedisStore::builder(
            format!("redis://default:right-pass@127.0.0.1:{port}/0"),
            "auth",
        ),
    ] {
        let store = builder.build().await.expect("right password");
        store.get().await.unwrap();
    }
}

#[tokio::test]
async fn foreign_values_are_corrupt_and_left_untouched() {
    let server = RedisServer::start();
    let store = store(&server, "foreign").await;
    let key = store.key().to_owned();
    let mut raw = raw_conn(&server.url()).await;
    let any_version = Version::new("1");

    let plants: Vec<(&str, redis::Cmd)> = vec![
        (
            "plain string",
            redis::cmd("SET").arg(&key).arg("hello").clone(),
        ),
        (
            "list",
            redis::cmd("RPUSH").arg(&key).arg("a").arg("b").clone(),
        ),
        (
            "hash",
            redis::cmd("HSET").arg(&key).arg("f").arg("v").clone(),
        ),
        ("set", redis::cmd("SADD").arg(&key).arg("m").clone()),
        (
            "foreign JSON",
            redis::cmd("SET")
                .arg(&key)
                .arg(r#"{"name":"x","version":3}"#)
                .clone(),
        ),
        (
            "bare record without envelope",
            redis::cmd("SET")
                .arg(&key)
                .arg(r#"{"holderIdentity":"a","leaseDurationSeconds":15}"#)
                .clone(),
        ),
        (
            "envelope around a bad record",
            redis::cmd("SET")
                .arg(&key)
                .arg(r#"{"version":3,"record":{"leaseDurationSeconds":"soon"}}"#)
                .clone(),
        ),
        (
            "binary",
            redis::cmd("SET")
                .arg(&key)
                .arg(&[0xffu8, 0xfe, 0x00][..])
                .clone(),
        ),
    ];
    for (what, plant) in plants {
        let _: () = redis::cmd("DEL")
            .arg(&key)
            .query_async(&mut raw)
            .await
            .unwrap();
        let _: redis::Value = plant.query_async(&mut raw).await.unwrap();
        let dump = |raw: &mut redis::aio::MultiplexedConnection| {
            let mut raw = raw.clone();
            let key = key.clone();
            async move {
                redis::cmd("DUMP")
                    .arg(&key)
                    .query_async::<Vec<u8>>(&mut raw)
                    .await
                    .unwrap()
            }
        };
        let before = dump(&mut raw).await;

        let got = store.get().await;
        assert!(
            matches!(got, Err(StoreError::Corrupt { .. })),
            "{what}: get {got:?}"
        );
        let created = store.create(&record("a")).await;
        assert!(
            matches!(created, Err(StoreError::Corrupt { .. })),
            "{what}: create {created:?}"
        );
        let updated = store.update(&record("a"), &any_version).await;
        assert!(
            matches!(updated, Err(StoreError::Corrupt { .. })),
            "{what}: update {updated:?}"
        );
        assert_eq!(dump(&mut raw).await, before, "{what}: value changed");
    }
}

#[tokio::test]
async fn conflict_returns_the_current_record_in_the_same_reply() {
    let server = RedisServer::start();
    let a = store(&server, "conflict").await;
    let b = store(&server, "conflict").await;
    let v1 = a.create(&record("a")).await.unwrap();
    match b.create(&record("b")).await {
        Err(StoreError::Conflict { current: Some(c) }) => {
            assert_eq!(c.version, v1);
            assert_eq!(c.record.holder_identity, "a");
        }
        other => panic!("{other:?}"),
    }
    let v2 = a.update(&record("a2"), &v1).await.unwrap();
    match b.update(&record("b"), &v1).await {
        Err(StoreError::Conflict { current: Some(c) }) => {
            assert_eq!(c.version, v2);
            assert_eq!(c.record.holder_identity, "a2");
        }
        other => panic!("{other:?}"),
    }
    let mut raw = raw_conn(&server.url()).await;
    let _: () = redis::cmd("DEL")
        .arg(a.key())
        .query_async(&mut raw)
        .await
        .unwrap();
    let missing = b.update(&record("b"), &v2).await;
    assert!(
        matches!(missing, Err(StoreError::Conflict { current: None })),
        "{missing:?}"
    );
}

#[tokio::test]
async fn stored_value_is_the_documented_envelope() {
    let server = RedisServer::start();
    let store = store(&server, "format").await;
    let mut rec = record("pod-a");
    rec.leader_transitions = 3;
    let version = store.create(&rec).await.unwrap();
    let mut raw = raw_conn(&server.url()).await;
    let value: String = redis::cmd("GET")
        .arg("tenure:{format}")
        .query_async(&mut raw)
        .await
        .unwrap();
    let expected = format!(
        r#"{{"version":{version},"record":{}}}"#,
        tenure_core::record::to_json(&rec)
    );
    assert_eq!(value, expected);
    println!("redis-cli GET 'tenure:{{format}}' prints:\n{value}");
}

#[tokio::test]
async fn key_expiry_is_off_by_default_and_cleans_up_when_on() {
    let server = RedisServer::start();
    let mut raw = raw_conn(&server.url()).await;
    let lease = Duration::from_millis(300);
    let rec = LeaderRecord::held_by("a", lease);

    let forever = store(&server, "no-expiry").await;
    forever.create(&rec).await.unwrap();
    let ttl: i64 = redis::cmd("PTTL")
        .arg(forever.key())
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(ttl, -1, "no expiry by default");

    let expiring = RedisStore::builder(server.url(), "expiry")
        .expire_after_leases(3)
        .build()
        .await
        .unwrap();
    let v1 = expiring.create(&rec).await.unwrap();
    let ttl: i64 = redis::cmd("PTTL")
        .arg(expiring.key())
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(ttl > 0 && ttl <= 900, "pttl {ttl}");

    // Each write sets the expiry again.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let v2 = expiring.update(&rec, &v1).await.unwrap();
    let ttl: i64 = redis::cmd("PTTL")
        .arg(expiring.key())
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(ttl > 500 && ttl <= 900, "pttl after renew {ttl}");

    // Abandoned: gone after 3 leases (900 ms), with margin.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(expiring.get().await.unwrap(), None);
    // Created again, the version never repeats an old one.
    let v3 = expiring.create(&rec).await.unwrap();
    let n = |v: &Version| v.as_str().parse::<u64>().unwrap();
    assert!(n(&v3) > n(&v2), "{v3} after {v2}");
    assert!(expiring.update(&rec, &v2).await.is_err());
}

#[tokio::test]
async fn script_survives_script_flush() {
    let server = RedisServer::start();
    let store = store(&server, "flush").await;
    let mut raw = raw_conn(&server.url()).await;
    let v1 = store.create(&record("a")).await.unwrap();
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut raw)
        .await
        .unwrap();
    let v2 = store
        .update(&record("a"), &v1)
        .await
        .expect("NOSCRIPT fallback");
    assert_eq!(store.get().await.unwrap().unwrap().version, v2);
}

#[tokio::test]
async fn watch_reports_puts_and_resyncs_after_a_dropped_connection() {
    tenure_conformance::init_logging();
    let server = RedisServer::local(RedisServerOptions::default());
    let store = RedisStore::builder(server.url(), "watch")
        .request_timeout(Duration::from_millis(300))
        .build()
        .await
        .unwrap();
    let mut raw = raw_conn(&server.url()).await;
    let mut events = store.watch().await.unwrap().unwrap();
    async fn next(events: &mut tenure_core::WatchStream) -> WatchEvent {
        tokio::time::timeout(Duration::from_secs(5), events.next())
            .await
            .expect("a watch event within 5 s")
            .expect("the stream goes on")
    }

    let v1 = store.create(&record("a")).await.unwrap();
    match next(&mut events).await {
        WatchEvent::Put(v) => {
            assert_eq!(v.version, v1);
            assert_eq!(v.record.holder_identity, "a");
        }
        other => panic!("{other:?}"),
    }
    let _: redis::Value = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(next(&mut events).await, WatchEvent::Resync);
    let v2 = store.update(&record("b"), &v1).await.unwrap();
    match next(&mut events).await {
        WatchEvent::Put(v) => assert_eq!(v.version, v2),
        other => panic!("{other:?}"),
    }

    // Idle past the keep-alive interval (1 s here): the ping that is due
    // is answered, the subscription stays up and reports the next change,
    // with no Resync.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let v3 = store.update(&record("c"), &v2).await.unwrap();
    match next(&mut events).await {
        WatchEvent::Put(v) => assert_eq!(v.version, v3),
        other => panic!("{other:?}"),
    }
}

/// The connections the server has open, of every kind (CLIENT LIST).
async fn server_connections(raw: &mut redis::aio::MultiplexedConnection) -> usize {
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(raw)
        .await
        .unwrap();
    list.lines().count()
}

#[tokio::test]
async fn one_client_serves_many_locks_on_two_connections() {
    tenure_conformance::init_logging();
    const LOCKS: usize = 50;
    let server = RedisServer::local(RedisServerOptions::default());
    let mut raw = raw_conn(&server.url()).await;
    let before = server_connections(&mut raw).await;
    let client = RedisClient::builder(server.url())
        .request_timeout(Duration::from_millis(500))
        .build()
        .await
        .unwrap();
    let stores: Vec<RedisStore> = (0..LOCKS)
        .map(|i| client.store(&format!("many-{i}")).unwrap())
        .collect();
    let mut streams = Vec::new();
    for store in &stores {
        streams.push(store.watch().await.unwrap().unwrap());
    }
    let mut versions = Vec::new();
    for (i, store) in stores.iter().enumerate() {
        versions.push(store.create(&record(&format!("holder-{i}"))).await.unwrap());
    }
    assert_eq!(
        server_connections(&mut raw).await,
        before + 2,
        "one command and one pub/sub connection for {LOCKS} watched locks"
    );
    async fn next(events: &mut tenure_core::WatchStream) -> WatchEvent {
        tokio::time::timeout(Duration::from_secs(5), events.next())
            .await
            .expect("a watch event within 5 s")
            .expect("the stream goes on")
    }
    // Each stream sees its own lock's change, and only that.
    for (i, events) in streams.iter_mut().enumerate() {
        match next(events).await {
            WatchEvent::Put(v) => {
                assert_eq!(v.record.holder_identity, format!("holder-{i}"));
                assert_eq!(v.version, versions[i]);
            }
            other => panic!("lock {i}: {other:?}"),
        }
    }
    for (i, events) in streams.iter_mut().enumerate() {
        let quiet = tokio::time::timeout(Duration::from_millis(20), events.next()).await;
        assert!(
            quiet.is_err(),
            "lock {i} saw another lock's change: {quiet:?}"
        );
    }

    // The pub/sub connection drops: every stream resyncs, once, then
    // reports its lock's next change.
    let _: redis::Value = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut raw)
        .await
        .unwrap();
    for (i, events) in streams.iter_mut().enumerate() {
        assert_eq!(next(events).await, WatchEvent::Resync, "lock {i}");
    }
    for (i, store) in stores.iter().enumerate() {
        versions[i] = store.update(&record("again"), &versions[i]).await.unwrap();
    }
    for (i, events) in streams.iter_mut().enumerate() {
        match next(events).await {
            WatchEvent::Put(v) => assert_eq!(v.version, versions[i], "lock {i}"),
            other => panic!("lock {i}: {other:?}"),
        }
    }
    assert_eq!(server_connections(&mut raw).await, before + 2);

    // A dropped stream stops its channel; the others go on.
    let dropped = streams.remove(0);
    drop(dropped);
    stores[0]
        .update(&record("late"), &versions[0])
        .await
        .unwrap();
    versions[1] = stores[1]
        .update(&record("late"), &versions[1])
        .await
        .unwrap();
    match next(&mut streams[0]).await {
        WatchEvent::Put(v) => assert_eq!(v.version, versions[1]),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn refused_connection_is_unavailable() {
    let start = Instant::now();
    let result = RedisStore::builder(format!("redis://127.0.0.1:{}", free_port()), "refused")
        .request_timeout(Duration::from_secs(2))
        .build()
        .await;
    assert!(
        matches!(result, Err(StoreError::Unavailable { .. })),
        "{result:?}"
    );
    assert!(start.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn invalid_lock_names_are_rejected() {
    for bad in ["", "UPPER", "a b", "with{brace}", "-x"] {
        let result = RedisStore::builder("redis://127.0.0.1:1", bad)
            .build()
            .await;
        assert!(
            matches!(result, Err(StoreError::InvalidName { .. })),
            "{bad:?}: {result:?}"
        );
    }
    assert_eq!(lock_key("app:", "x.y"), "app:{x.y}");
}

/// Prints the compare-and-swap round trip's percentiles against the server:
/// `cargo test -p tenure-redis --release --test redis -- --ignored --nocapture cas_latency`
#[tokio::test]
#[ignore = "a measurement, not a check"]
async fn cas_latency() {
    let server = RedisServer::start();
    let store = store(&server, "latency").await;
    let rec = record("a");
    let mut version = store.create(&rec).await.unwrap();
    for _ in 0..200 {
        version = store.update(&rec, &version).await.unwrap();
    }
    let mut samples = Vec::with_capacity(5000);
    for _ in 0..5000 {
        let start = Instant::now();
        version = store.update(&rec, &version).await.unwrap();
        samples.push(start.elapsed());
    }
    samples.sort();
    let p = |q: f64| samples[((samples.len() as f64 - 1.0) * q) as usize];
    println!(
        "CAS update round trip over {} samples: p50 {:?}, p90 {:?}, p99 {:?}",
        samples.len(),
        p(0.5),
        p(0.9),
        p(0.99)
    );
}
