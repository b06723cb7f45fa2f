//! etcd-only behaviour, on real etcd processes: restarts, a three-member
//! cluster with a member down, auth, secrets, foreign values, watch resume,
//! timeouts and TLS.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{Client, Permission};
use futures::StreamExt;
use tenure_conformance::fixtures::etcd::{EtcdCluster, EtcdServer};
use tenure_core::{
    CancellationToken, LeaderElector, LeaderRecord, LockStore, StoreError, Version, WatchEvent,
};
use tenure_etcd::EtcdStore;
use tokio::task::JoinHandle;

const SECRET: &str = "Zq9-s3cret-PASSWORD-x7";

async fn store(endpoints: &[String], lock: &str) -> EtcdStore {
    EtcdStore::builder(endpoints.to_vec(), lock)
        .request_timeout(Duration::from_secs(2))
        .build()
        .await
        .expect("build store")
}

async fn raw_client(endpoints: &[String]) -> Client {
    Client::connect(endpoints, None).await.expect("etcd client")
}

use tenure_conformance::eventually;

/// A candidate running in the background until stopped.
struct Candidate {
    elector: Arc<LeaderElector>,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl Candidate {
    /// A candidate with a 3 s lease, 2 s renew deadline, 300 ms retry.
    fn start(store: EtcdStore, identity: &str) -> Candidate {
        Candidate::with_lease(store, identity, Duration::from_secs(3))
    }

    /// A candidate with this lease, renew deadline 2/3 of it and retry 1/10.
    fn with_lease(store: EtcdStore, identity: &str, lease: Duration) -> Candidate {
        tenure_conformance::init_logging();
        let elector = Arc::new(
            LeaderElector::builder(Arc::new(store), identity)
                .lease_duration(lease)
                .renew_deadline(lease * 2 / 3)
                .retry_period(lease / 10)
                .build()
                .expect("valid config"),
        );
        let shutdown = CancellationToken::new();
        let (e, s) = (elector.clone(), shutdown.clone());
        let task = tokio::spawn(async move {
            let _ = e
                .run(s, |leadership| async move { leadership.cancelled().await })
                .await;
        });
        Candidate {
            elector,
            shutdown,
            task,
        }
    }

    fn is_leader(&self) -> bool {
        self.elector.is_leader()
    }

    async fn stop(self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }
}

async fn next(events: &mut tenure_core::WatchStream) -> WatchEvent {
    tokio::time::timeout(Duration::from_secs(20), events.next())
        .await
        .expect("a watch event in time")
        .expect("the stream goes on")
}

/// The current record, retrying transient errors (a restart, a raft
/// election) for a few seconds.
async fn read(store: &EtcdStore) -> LeaderRecord {
    let start = Instant::now();
    loop {
        match store.get().await {
            Ok(found) => return found.expect("a record").record,
            Err(StoreError::Unavailable { message: e, .. })
                if start.elapsed() < Duration::from_secs(10) =>
            {
                eprintln!("retrying a read: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("read: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cas_round_trip_and_conflict_carries_current() {
    let etcd = EtcdServer::start();
    let a = store(&etcd.endpoints(), "cas-basic").await;
    let b = store(&etcd.endpoints(), "cas-basic").await;
    // Other tests may share an etcd from the environment: start clean.
    raw_client(&etcd.endpoints())
        .await
        .delete(a.key(), None)
        .await
        .unwrap();
    assert!(a.get().await.unwrap().is_none());
    let rec = LeaderRecord::held_by("a", Duration::from_secs(5));
    let v1 = a.create(&rec).await.unwrap();
    match b.create(&rec).await {
        Err(StoreError::Conflict { current: Some(c) }) => assert_eq!(c.version, v1),
        other => panic!("create over a record: {other:?}"),
    }
    let v2 = b.update(&rec, &v1).await.unwrap();
    match a.update(&rec, &v1).await {
        Err(StoreError::Conflict { current: Some(c) }) => {
            assert_eq!(c.version, v2);
            assert_eq!(c.record, rec);
        }
        other => panic!("stale update: {other:?}"),
    }
    // Versions that are not ours never match, not even "0" on a missing key.
    for bogus in ["0", "-3", "abc", ""] {
        assert!(matches!(
            a.update(&rec, &Version::new(bogus)).await,
            Err(StoreError::Conflict { .. })
        ));
    }
    let fresh = store(&etcd.endpoints(), "cas-never-created").await;
    assert!(matches!(
        fresh.update(&rec, &Version::new("0")).await,
        Err(StoreError::Conflict { current: None })
    ));
    assert!(fresh.get().await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revisions_are_fencing_tokens_across_locks() {
    let etcd = EtcdServer::start();
    let x = store(&etcd.endpoints(), "fence-x").await;
    let y = store(&etcd.endpoints(), "fence-y").await;
    let rec = LeaderRecord::held_by("a", Duration::from_secs(5));
    let vx = match x.create(&rec).await {
        Ok(v) => v,
        Err(StoreError::Conflict { current: Some(c) }) => x.update(&rec, &c.version).await.unwrap(),
        Err(e) => panic!("{e}"),
    };
    let vy = match y.create(&rec).await {
        Ok(v) => v,
        Err(StoreError::Conflict { current: Some(c) }) => y.update(&rec, &c.version).await.unwrap(),
        Err(e) => panic!("{e}"),
    };
    let vx2 = x.update(&rec, &vx).await.unwrap();
    let (rx, ry, rx2) = (
        EtcdStore::revision_of(&vx).unwrap(),
        EtcdStore::revision_of(&vy).unwrap(),
        EtcdStore::revision_of(&vx2).unwrap(),
    );
    assert!(rx < ry && ry < rx2, "{rx} < {ry} < {rx2}");
    // The version is the key's mod_revision.
    let mut c = raw_client(&etcd.endpoints()).await;
    let kv = c.get(x.key(), None).await.unwrap().kvs()[0].clone();
    assert_eq!(kv.mod_revision(), rx2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_values_are_corrupt_and_never_overwritten() {
    let etcd = EtcdServer::start();
    let s = store(&etcd.endpoints(), "foreign-value").await;
    let mut raw = raw_client(&etcd.endpoints()).await;
    let rec = LeaderRecord::held_by("a", Duration::from_secs(5));
    let foreign: [&[u8]; 4] = [b"hello", br#"{"name":"x"}"#, b"[]", &[0xff, 0xfe, 0x00]];
    for value in foreign {
        let put = raw.put(s.key(), value, None).await.unwrap();
        let rev = put.header().unwrap().revision();
        assert!(
            matches!(s.get().await, Err(StoreError::Corrupt { .. })),
            "{value:?}"
        );
        assert!(matches!(
            s.create(&rec).await,
            Err(StoreError::Conflict { current: None })
        ));
        // No version overwrites it, not even its own mod_revision.
        for v in [
            Version::from(rev - 1),
            Version::from(rev),
            Version::new("1"),
        ] {
            match s.update(&rec, &v).await {
                Err(StoreError::Corrupt { .. }) => {}
                other => panic!("update over {value:?} at {v}: {other:?}"),
            }
        }
        let kv = raw.get(s.key(), None).await.unwrap().kvs()[0].clone();
        assert_eq!(kv.value(), value, "the foreign value must stay untouched");
        assert_eq!(kv.mod_revision(), rev);
    }
    raw.delete(s.key(), None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_written_in_another_field_order_are_updated() {
    let etcd = EtcdServer::start();
    let s = store(&etcd.endpoints(), "field-order").await;
    let mut raw = raw_client(&etcd.endpoints()).await;
    // Valid, but not as `to_json` writes it (client-go field order differs).
    let other_order =
        r#"{"leaseDurationSeconds":15,"holderIdentity":"go-pod","leaderTransitions":4}"#;
    raw.put(s.key(), other_order, None).await.unwrap();
    let found = s.get().await.unwrap().unwrap();
    assert_eq!(found.record.holder_identity, "go-pod");
    let mut next = found.record.clone();
    next.holder_identity = "rust-pod".into();
    next.leader_transitions = 5;
    // A stale version still conflicts, with the current record.
    match s.update(&next, &Version::from(1_i64)).await {
        Err(StoreError::Conflict { current: Some(c) }) => assert_eq!(c.version, found.version),
        other => panic!("{other:?}"),
    }
    let v = s.update(&next, &found.version).await.unwrap();
    let read = s.get().await.unwrap().unwrap();
    assert_eq!((read.record, read.version), (next, v));
    raw.delete(s.key(), None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_recovers_after_server_restart() {
    let mut etcd = EtcdServer::start_local();
    let eps = etcd.endpoints();
    let a = Candidate::start(store(&eps, "restart").await, "a");
    let b = Candidate::start(store(&eps, "restart").await, "b");
    let probe = store(&eps, "restart").await;
    eventually(Duration::from_secs(10), "a first leader", || {
        a.is_leader() || b.is_leader()
    })
    .await;
    let before = read(&probe).await;

    // Down for longer than renew_deadline: the leader must step down.
    etcd.stop();
    eventually(
        Duration::from_secs(6),
        "the leader steps down while etcd is down",
        || !a.is_leader() && !b.is_leader(),
    )
    .await;
    etcd.restart();

    // Leadership recovers within a lease and margins (re-connects, then
    // waits out the old holder's lease by its own clock).
    let took = eventually(Duration::from_secs(20), "a leader after restart", || {
        a.is_leader() ^ b.is_leader()
    })
    .await;
    let after = read(&probe).await;
    assert!(
        after.leader_transitions >= before.leader_transitions,
        "the record survived the restart: {before:?} -> {after:?}"
    );
    assert!(!after.holder_identity.is_empty());

    // Transitions continue: the hand-off to the other candidate raises the
    // count (+1 when the watch delivered the release; above the revision
    // floor when the follower read the record itself).
    let (leader, follower) = if a.is_leader() { (a, b) } else { (b, a) };
    let t = read(&probe).await.leader_transitions;
    leader.stop().await;
    eventually(Duration::from_secs(10), "hand-off after restart", || {
        follower.is_leader()
    })
    .await;
    assert!(read(&probe).await.leader_transitions > t);
    follower.stop().await;
    eprintln!("leader again {took:?} after restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_keeps_electing_with_one_member_down() {
    let mut cluster = EtcdCluster::start();
    let eps = cluster.endpoints();
    // Stopping the raft leader costs the cluster about a second to elect a
    // new one (election timeout 500 ms): a lease of 6 s (renew deadline 4 s)
    // rides through it, as the defaults (15 s / 10 s) do in production.
    let lease = Duration::from_secs(6);
    let a = Candidate::with_lease(store(&eps, "cluster").await, "a", lease);
    let b = Candidate::with_lease(store(&eps, "cluster").await, "b", lease);
    let probe = store(&eps, "cluster").await;
    eventually(Duration::from_secs(10), "a leader", || {
        a.is_leader() || b.is_leader()
    })
    .await;

    // Stop the raft leader: the hardest member to lose.
    let raft_leader = raft_leader(&eps).await;
    cluster.stop(raft_leader);
    assert!(!cluster.is_running(raft_leader));
    // The leader keeps renewing through the other members: leadership holds
    // over several renew deadlines.
    let (leader, follower) = if a.is_leader() { (a, b) } else { (b, a) };
    let renewed = read(&probe).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        leader.is_leader(),
        "the leader lost its term with 2 of 3 members up"
    );
    let later = read(&probe).await;
    assert_ne!(later.renew_time, renewed.renew_time, "renews continue");
    assert_eq!(later.leader_transitions, renewed.leader_transitions);

    // A hand-off works on the degraded cluster.
    leader.stop().await;
    eventually(
        Duration::from_secs(10),
        "hand-off with a member down",
        || follower.is_leader(),
    )
    .await;
    assert_eq!(
        read(&probe).await.leader_transitions,
        later.leader_transitions + 1
    );
    follower.stop().await;
}

/// The index of the member that is the raft leader.
async fn raft_leader(endpoints: &[String]) -> usize {
    for (i, ep) in endpoints.iter().enumerate() {
        let mut c = raw_client(std::slice::from_ref(ep)).await;
        let status = c.status().await.unwrap();
        if status.header().map(|h| h.member_id()) == Some(status.leader()) {
            return i;
        }
    }
    panic!("no raft leader among {endpoints:?}");
}

/// Enables auth on a dedicated server: user `root` (role root) with
/// [`SECRET`], and user `nobody` with a role that grants nothing.
async fn enable_auth(etcd: &EtcdServer) {
    let mut c = raw_client(&etcd.endpoints()).await;
    c.role_add("root").await.unwrap();
    c.user_add("root", SECRET, None).await.unwrap();
    c.user_grant_role("root", "root").await.unwrap();
    c.role_add("empty").await.unwrap();
    c.role_grant_permission("empty", Permission::read("/elsewhere/"))
        .await
        .unwrap();
    c.user_add("nobody", "nobody-pw", None).await.unwrap();
    c.user_grant_role("nobody", "empty").await.unwrap();
    c.auth_enable().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_wrong_password_is_unauthorized() {
    let etcd = EtcdServer::start_local();
    enable_auth(&etcd).await;
    let eps = etcd.endpoints();

    let wrong = EtcdStore::builder(eps.clone(), "auth")
        .auth("root", "not-the-password")
        .build()
        .await;
    match wrong {
        Err(StoreError::Unauthorized { message: msg, .. }) => {
            assert!(!msg.contains("not-the-password"))
        }
        other => panic!("wrong password: {other:?}"),
    }

    // Without credentials, or without permission on the key: Unauthorized too.
    let anonymous = store(&eps, "auth").await;
    assert!(matches!(
        anonymous.get().await,
        Err(StoreError::Unauthorized { .. })
    ));
    let nobody = EtcdStore::builder(eps.clone(), "auth")
        .auth("nobody", "nobody-pw")
        .build()
        .await
        .unwrap();
    assert!(matches!(
        nobody.get().await,
        Err(StoreError::Unauthorized { .. })
    ));
    assert!(StoreError::unauthorized(String::new()).is_fatal());

    // The right password works.
    let root = EtcdStore::builder(eps, "auth")
        .auth("root", SECRET)
        .build()
        .await
        .unwrap();
    let v = root
        .create(&LeaderRecord::held_by("a", Duration::from_secs(5)))
        .await
        .unwrap();
    assert_eq!(root.get().await.unwrap().unwrap().version, v);
}

/// Collects everything written to the log.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// Single-threaded so the thread-local subscriber sees every task's logs.
#[tokio::test(flavor = "current_thread")]
async fn no_secret_in_debug_describe_errors_or_logs() {
    let etcd = EtcdServer::start_local();
    enable_auth(&etcd).await;
    let eps = etcd.endpoints();
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let builder = EtcdStore::builder(eps.clone(), "secrets").auth("root", SECRET);
    let mut seen = vec![format!("{builder:?}")];
    let s = builder.build().await.unwrap();
    seen.push(format!("{s:?}"));
    seen.push(s.describe());
    let v = s
        .create(&LeaderRecord::held_by("a", Duration::from_secs(5)))
        .await
        .unwrap();
    let _ = s.update(&LeaderRecord::default(), &v).await.unwrap();
    seen.push(format!("{:?}", s.get().await));
    // Errors: a wrong password, a stale version, an unreachable server.
    let wrong = EtcdStore::builder(eps.clone(), "secrets")
        .auth("root", format!("{SECRET}-wrong"))
        .build()
        .await
        .unwrap_err();
    seen.push(format!("{wrong} {wrong:?}"));
    seen.push(format!(
        "{:?}",
        s.update(&LeaderRecord::default(), &v).await
    ));
    let dead = EtcdStore::builder(
        [format!(
            "http://127.0.0.1:{}",
            tenure_conformance::fixtures::process::free_port()
        )],
        "secrets",
    )
    .auth("root", SECRET)
    .request_timeout(Duration::from_millis(500))
    .build()
    .await
    .unwrap_err();
    assert!(matches!(dead, StoreError::Unavailable { .. }), "{dead:?}");
    seen.push(format!("{dead} {dead:?}"));

    assert!(seen[2].contains("root@") && seen[2].contains("/tenure/locks/secrets"));
    for text in &seen {
        assert!(!text.contains(SECRET), "secret leaked: {text}");
    }
    drop(_guard);
    let logs = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    assert!(!logs.is_empty(), "trace logs were captured");
    assert!(!logs.contains(SECRET), "secret in the logs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_resumes_after_server_restart() {
    let mut etcd = EtcdServer::start_local();
    let eps = etcd.endpoints();
    let watcher = store(&eps, "watch-restart").await;
    let writer = store(&eps, "watch-restart").await;
    let mut events = watcher.watch().await.unwrap().expect("etcd can watch");

    let v1 = writer
        .create(&LeaderRecord::held_by("a", Duration::from_secs(5)))
        .await
        .unwrap();
    match next(&mut events).await {
        WatchEvent::Put(v) => assert_eq!(v.version, v1),
        other => panic!("{other:?}"),
    }

    etcd.stop();
    etcd.restart();
    // A write made while nobody watched is still delivered after the resync.
    let v2 = loop {
        match writer
            .update(&LeaderRecord::held_by("b", Duration::from_secs(5)), &v1)
            .await
        {
            Ok(v) => break v,
            Err(StoreError::Unavailable { .. }) => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("{e}"),
        }
    };
    let mut saw_resync = false;
    loop {
        match next(&mut events).await {
            WatchEvent::Resync => saw_resync = true,
            WatchEvent::Put(v) => {
                assert_eq!(v.version, v2);
                assert_eq!(v.record.holder_identity, "b");
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(saw_resync, "a Resync after re-establishing the watch");

    // Deletes are reported too.
    raw_client(&eps)
        .await
        .delete(writer.key(), None)
        .await
        .unwrap();
    assert_eq!(next(&mut events).await, WatchEvent::Deleted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_recovers_from_compaction() {
    let etcd = EtcdServer::start_local();
    let eps = etcd.endpoints();
    let s = store(&eps, "watch-compact").await;
    let mut raw = raw_client(&eps).await;
    let mut events = s.watch().await.unwrap().unwrap();
    let v1 = s
        .create(&LeaderRecord::held_by("a", Duration::from_secs(5)))
        .await
        .unwrap();
    let rev = EtcdStore::revision_of(&v1).unwrap();
    assert!(matches!(
        tokio::time::timeout(Duration::from_secs(5), events.next()).await,
        Ok(Some(WatchEvent::Put(_)))
    ));
    // Compacting past what the watch has seen does not break it.
    let v2 = s.update(&LeaderRecord::default(), &v1).await.unwrap();
    raw.compact(rev + 1, None).await.unwrap();
    let v3 = s.update(&LeaderRecord::default(), &v2).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, events.next()).await {
            Ok(Some(WatchEvent::Put(v))) if v.version == v3 => break,
            Ok(Some(_)) => {}
            other => panic!("watch after compaction: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_endpoint_is_unavailable() {
    let port = tenure_conformance::fixtures::process::free_port();
    let s = EtcdStore::builder([format!("http://127.0.0.1:{port}")], "nowhere")
        .request_timeout(Duration::from_millis(500))
        .build()
        .await
        .expect("no round trip without a user");
    let start = Instant::now();
    let e = s.get().await.unwrap_err();
    assert!(matches!(e, StoreError::Unavailable { .. }), "{e:?}");
    assert!(start.elapsed() < Duration::from_secs(3));
    // The chain says why, each cause once.
    tenure_core::testing::assert_causes_said_once(&e);
    assert!(
        tenure_core::ErrorChain(&e).to_string().contains("connect"),
        "{e:?}"
    );
}

/// The compare-and-swap round trip against the local etcd:
/// `cargo test -p tenure-etcd --test etcd -- --ignored --nocapture txn_round_trip`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn txn_round_trip_latency() {
    let etcd = EtcdServer::start();
    let s = store(&etcd.endpoints(), "latency").await;
    let rec = LeaderRecord::held_by("a", Duration::from_secs(5));
    let mut v = match s.create(&rec).await {
        Ok(v) => v,
        Err(StoreError::Conflict { current: Some(c) }) => c.version,
        Err(e) => panic!("{e}"),
    };
    for _ in 0..50 {
        v = s.update(&rec, &v).await.unwrap(); // warm up
    }
    let mut samples = Vec::with_capacity(1000);
    for _ in 0..1000 {
        let start = Instant::now();
        v = s.update(&rec, &v).await.unwrap();
        samples.push(start.elapsed());
    }
    let mut conflicts = Vec::with_capacity(200);
    let stale = Version::from(1_i64);
    for _ in 0..200 {
        let start = Instant::now();
        assert!(s.update(&rec, &stale).await.is_err());
        conflicts.push(start.elapsed());
    }
    samples.sort();
    conflicts.sort();
    let pct = |s: &[Duration], p: usize| s[s.len() * p / 100];
    eprintln!(
        "update (Txn CAS) round trip over {} samples: p50 {:?}, p90 {:?}, p99 {:?}; \
         conflicting update (Txn else-branch read) p50 {:?}",
        samples.len(),
        pct(&samples, 50),
        pct(&samples, 90),
        pct(&samples, 99),
        pct(&conflicts, 50),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_member_rejoins_with_the_writes_it_missed() {
    // A real network partition (the fixtures' containers on their Docker
    // network), not a stopped process: the member runs on, cut off.
    let cluster = EtcdCluster::start();
    let eps = cluster.endpoints();
    let cut = raft_leader(&eps).await;
    let member = cluster.container(cut).unwrap_or_else(|| {
        panic!("partitions need the fixtures' containers: run with a Docker engine (not TENURE_FIXTURES=path)")
    });
    member.disconnect().expect("docker network disconnect");
    let others: Vec<String> = (0..3)
        .filter(|i| *i != cut)
        .map(|i| eps[i].clone())
        .collect();
    // The two others elect a raft leader among themselves and take writes.
    let mut new_leader = None;
    for _ in 0..100 {
        new_leader = cluster.leader().filter(|l| *l != cut);
        if new_leader.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(new_leader.is_some(), "no raft leader among the other two");
    let write = store(&others, "partition").await;
    let version = write
        .create(&LeaderRecord::held_by("a", Duration::from_secs(15)))
        .await
        .expect("a write to the majority");
    // The cut-off member cannot be reached on its own address.
    let alone = store(std::slice::from_ref(&eps[cut]), "partition").await;
    assert!(alone.get().await.is_err(), "the cut-off member answered");
    // Back on the network, it catches up and serves the write it missed.
    member.connect().expect("docker network connect");
    let mut seen = None;
    for _ in 0..150 {
        if let Ok(Some(v)) = alone.get().await {
            seen = Some(v);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seen = seen.expect("the member did not serve the missed write within 15 s");
    assert_eq!(seen.version, version);
    assert_eq!(seen.record.holder_identity, "a");
}
