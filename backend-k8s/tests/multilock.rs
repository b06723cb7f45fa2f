//! MultiLock (ConfigMap + Lease) semantics on the fixture: one version over
//! both objects, compare-and-swap on both, nothing written by a read, and
//! never a lock taken from a Lease-only or ConfigMap-only leader — the
//! regression tests of issue 11 item 5.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Env, Kind, KubeFactory, NAMESPACE, foreign_spec};
use futures::StreamExt;
use serde_json::json;
use tenure_core::{
    CancellationToken, ElectionError, LeaderElector, LeaderRecord, LockStore, StoreError, Version,
    WatchEvent,
};
use tenure_k8s::{ConfigMapLock, LeaseLock, MultiLock};
use tenure_k8s::{LEADER_ANNOTATION, UNKNOWN_LEADER};
use tenure_kube_fixture::KubeApiServer;
use tokio::task::JoinHandle;
use tokio::time::Instant;

async fn env() -> Env {
    Env::fixture(KubeApiServer::start().await.unwrap())
}

fn held(holder: &str) -> LeaderRecord {
    LeaderRecord::held_by(holder, Duration::from_secs(15))
}

fn held_at(holder: &str, transitions: u64) -> LeaderRecord {
    {
        let mut r = held(holder);
        r.leader_transitions = transitions;
        r
    }
}

async fn multi(env: &Env, name: &str) -> MultiLock {
    MultiLock::new(env.client(), NAMESPACE, name).await.unwrap()
}

async fn lease(env: &Env, name: &str) -> LeaseLock {
    LeaseLock::new(env.client(), NAMESPACE, name).await.unwrap()
}

async fn configmap(env: &Env, name: &str) -> ConfigMapLock {
    ConfigMapLock::new(env.client(), NAMESPACE, name)
        .await
        .unwrap()
}

fn assert_conflict<T: std::fmt::Debug>(r: Result<T, StoreError>, what: &str) {
    assert!(
        matches!(r, Err(StoreError::Conflict { .. })),
        "{what}: expected a conflict, got {r:?}"
    );
}

// ---- the store ---------------------------------------------------------

#[tokio::test]
async fn multilock_writes_both_and_its_version_covers_both() {
    let env = env().await;
    let lock = multi(&env, "multi").await;
    let v1 = lock.create(&held("a")).await.unwrap();
    let lease_raw = env.get_object(&env.lease_path("multi")).await.unwrap();
    let cm_raw = env.get_object(&env.configmap_path("multi")).await.unwrap();
    assert_eq!(lease_raw["spec"]["holderIdentity"], "a");
    assert!(
        cm_raw["metadata"]["annotations"][LEADER_ANNOTATION]
            .as_str()
            .unwrap()
            .contains(r#""holderIdentity":"a""#)
    );
    let read = lock.get().await.unwrap().unwrap();
    assert_eq!(
        (read.record.holder_identity.as_str(), &read.version),
        ("a", &v1)
    );

    let v2 = lock.update(&held("b"), &v1).await.unwrap();
    let lease_raw = env.get_object(&env.lease_path("multi")).await.unwrap();
    assert_eq!(lease_raw["spec"]["holderIdentity"], "b");
    let read = lock.get().await.unwrap().unwrap();
    assert_eq!(
        (read.record.holder_identity.as_str(), &read.version),
        ("b", &v2)
    );

    // A write to the Lease alone moves the MultiLock's version: the old
    // one is stale, for this handle and for any other.
    let lease_only = lease(&env, "multi").await;
    let current = lease_only.get().await.unwrap().unwrap();
    lease_only
        .update(&held("lease-only"), &current.version)
        .await
        .unwrap();
    let read = lock.get().await.unwrap().unwrap();
    assert_eq!(read.record.holder_identity, UNKNOWN_LEADER);
    assert_ne!(read.version, v2, "the version covers the Lease too");
    assert_conflict(
        lock.update(&held("c"), &v2).await,
        "update at the old version",
    );
    // Versions that were never the lock's are conflicts, never writes.
    for bogus in ["1", "", "-/-/-", "x/y"] {
        assert_conflict(lock.update(&held("c"), &Version::new(bogus)).await, bogus);
    }
    let lease_raw = env.get_object(&env.lease_path("multi")).await.unwrap();
    assert_eq!(lease_raw["spec"]["holderIdentity"], "lease-only");
}

#[tokio::test]
async fn multilock_get_writes_nothing() {
    let env = env().await;
    // A ConfigMap-only candidate's lock: no Lease.
    configmap(&env, "cm-only")
        .await
        .create(&held("old"))
        .await
        .unwrap();
    let lock = multi(&env, "cm-only").await;
    env.server().reset_request_counts();
    let read = lock.get().await.unwrap().unwrap();
    assert_eq!(read.record.holder_identity, "old");
    assert_eq!(
        (
            env.server().requests("create"),
            env.server().requests("update")
        ),
        (0, 0),
        "a read must not write: {:?}",
        env.server().request_counts()
    );
    assert!(env.get_object(&env.lease_path("cm-only")).await.is_none());
    // Its update creates the Lease, compare-and-swap on the ConfigMap.
    let v = lock.update(&held("new"), &read.version).await.unwrap();
    let lease_raw = env.get_object(&env.lease_path("cm-only")).await.unwrap();
    assert_eq!(lease_raw["spec"]["holderIdentity"], "new");
    assert_eq!(lock.get().await.unwrap().unwrap().version, v);
}

#[tokio::test]
async fn multilock_update_fails_when_the_secondary_write_conflicts() {
    let env = env().await;
    let lock = multi(&env, "m").await;
    lock.create(&held("a")).await.unwrap();
    let read = lock.get().await.unwrap().unwrap();
    // A Lease-only candidate renews the Lease after our read.
    let lease_only = lease(&env, "m").await;
    let current = lease_only.get().await.unwrap().unwrap();
    lease_only
        .update(&held("lease-only"), &current.version)
        .await
        .unwrap();
    let result = lock.update(&held_at("b", 1), &read.version).await;
    assert_conflict(result, "update over a changed secondary");
    let lease_raw = env.get_object(&env.lease_path("m")).await.unwrap();
    assert_eq!(
        lease_raw["spec"]["holderIdentity"], "lease-only",
        "the Lease-only write must stand"
    );
    // The primary was written before the secondary failed: the lock now
    // shows both holders (unknown) at a version unlike any before, so no
    // reader takes it as unchanged, and the next round converges.
    let after = lock.get().await.unwrap().unwrap();
    assert_eq!(after.record.holder_identity, UNKNOWN_LEADER);
    assert_ne!(after.version, read.version);
    let v = lock.update(&held_at("b", 2), &after.version).await.unwrap();
    let read = lock.get().await.unwrap().unwrap();
    assert_eq!(
        (read.record.holder_identity.as_str(), &read.version),
        ("b", &v)
    );
}

#[tokio::test]
async fn multilock_update_creates_an_absent_secondary_but_never_overwrites_one() {
    let env = env().await;
    configmap(&env, "s")
        .await
        .create(&held("old"))
        .await
        .unwrap();
    let lock = multi(&env, "s").await;
    let read = lock.get().await.unwrap().unwrap();
    // A Lease appears after the read: our create of it is a conflict.
    lease(&env, "s")
        .await
        .create(&held("lease-only"))
        .await
        .unwrap();
    assert_conflict(lock.update(&held("new"), &read.version).await, "update");
    let lease_raw = env.get_object(&env.lease_path("s")).await.unwrap();
    assert_eq!(lease_raw["spec"]["holderIdentity"], "lease-only");
}

#[tokio::test]
async fn multilock_with_only_a_lease_is_held_by_the_lease() {
    let env = env().await;
    let lease_only = lease(&env, "l").await;
    lease_only.create(&held_at("lease-only", 4)).await.unwrap();
    let lock = multi(&env, "l").await;
    let read = lock
        .get()
        .await
        .unwrap()
        .expect("a Lease alone holds the lock");
    assert_eq!(read.record.holder_identity, "lease-only");
    assert_eq!(read.record.leader_transitions, 4);
    assert!(env.get_object(&env.configmap_path("l")).await.is_none());
    // Taking it (after its lease, as the elector would) writes both.
    let v = lock
        .update(&held_at("new", 5), &read.version)
        .await
        .unwrap();
    let read = lock.get().await.unwrap().unwrap();
    assert_eq!(
        (read.record.holder_identity.as_str(), &read.version),
        ("new", &v)
    );
    assert_eq!(
        env.get_object(&env.lease_path("l")).await.unwrap()["spec"]["leaseTransitions"],
        5
    );
}

#[tokio::test]
async fn multilock_reports_the_larger_transitions_of_the_two() {
    let env = env().await;
    let lock = multi(&env, "t").await;
    lock.create(&held_at("a", 3)).await.unwrap();
    // Lease-only candidates went through terms the ConfigMap never saw.
    let lease_only = lease(&env, "t").await;
    let current = lease_only.get().await.unwrap().unwrap();
    lease_only
        .update(&held_at("x", 9), &current.version)
        .await
        .unwrap();
    assert_eq!(
        lock.get().await.unwrap().unwrap().record.leader_transitions,
        9
    );
    // ConfigMap-only ones too.
    let cm_only = configmap(&env, "t").await;
    let current = cm_only.get().await.unwrap().unwrap();
    cm_only
        .update(&held_at("y", 12), &current.version)
        .await
        .unwrap();
    assert_eq!(
        lock.get().await.unwrap().unwrap().record.leader_transitions,
        12
    );
}

#[tokio::test]
async fn multilock_record_changes_with_either_object() {
    // Followers wait a lease from the last *change of the record*: a
    // renew of either object alone must change what the MultiLock reads.
    let env = env().await;
    let lock = multi(&env, "c").await;
    lock.create(&held("a")).await.unwrap();
    let lease_only = lease(&env, "c").await;
    let cm_only = configmap(&env, "c").await;
    let mut last = lock.get().await.unwrap().unwrap();
    for i in 0..4 {
        tokio::time::sleep(Duration::from_millis(2)).await; // a new renew time
        let renewer: &dyn LockStore = if i % 2 == 0 { &lease_only } else { &cm_only };
        let current = renewer.get().await.unwrap().unwrap();
        renewer
            .update(&held_at(&format!("other-{i}"), 1), &current.version)
            .await
            .unwrap();
        let read = lock.get().await.unwrap().unwrap();
        assert_ne!(read.version, last.version, "round {i}");
        assert_ne!(
            read.record, last.record,
            "round {i}: a renew must change the record"
        );
        last = read;
    }
}

#[tokio::test]
async fn multilock_create_conflicts_when_either_object_exists() {
    let env = env().await;
    configmap(&env, "cm")
        .await
        .create(&held("x"))
        .await
        .unwrap();
    assert_conflict(
        multi(&env, "cm").await.create(&held("a")).await,
        "ConfigMap exists",
    );
    assert!(env.get_object(&env.lease_path("cm")).await.is_none());

    lease(&env, "ls").await.create(&held("x")).await.unwrap();
    let lock = multi(&env, "ls").await;
    assert_conflict(lock.create(&held("a")).await, "Lease exists");
    let lease_raw = env.get_object(&env.lease_path("ls")).await.unwrap();
    assert_eq!(lease_raw["spec"]["holderIdentity"], "x");
    // The ConfigMap was created first (as client-go does) and stays: it
    // names a holder that does not lead, so the lock reads as held by an
    // unknown leader, never as free or as the creator's.
    let read = lock.get().await.unwrap().unwrap();
    assert_eq!(read.record.holder_identity, UNKNOWN_LEADER);
}

#[tokio::test]
async fn multilock_reports_a_corrupt_secondary() {
    let env = env().await;
    let lock = multi(&env, "m").await;
    let v = lock.create(&held("a")).await.unwrap();
    env.put_lease("m", foreign_spec(), json!({})).await;
    let before = env.get_object(&env.lease_path("m")).await.unwrap();
    assert!(matches!(lock.get().await, Err(StoreError::Corrupt { .. })));
    assert!(lock.update(&held("b"), &v).await.is_err());
    assert_eq!(env.get_object(&env.lease_path("m")).await.unwrap(), before);
}

async fn next(stream: &mut tenure_core::WatchStream) -> WatchEvent {
    tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("an event within 5 s")
        .expect("the stream goes on")
}

#[tokio::test]
async fn multilock_watch_covers_both_objects() {
    let env = env().await;
    let lock = multi(&env, "w").await;
    let writer = multi(&env, "w").await;
    let mut stream = lock.watch().await.unwrap().unwrap();
    // A MultiLock's write of both is one Put, at the version `get` reports.
    let v = writer.create(&held("a")).await.unwrap();
    assert_eq!(
        next(&mut stream).await,
        WatchEvent::Put(lock.get().await.unwrap().unwrap())
    );
    let v = writer.update(&held("b"), &v).await.unwrap();
    match next(&mut stream).await {
        WatchEvent::Put(p) => {
            assert_eq!((p.record.holder_identity.as_str(), &p.version), ("b", &v))
        }
        other => panic!("expected a Put, got {other:?}"),
    }
    // A write to the Lease alone: the two disagree, the stream says read.
    let lease_only = lease(&env, "w").await;
    let current = lease_only.get().await.unwrap().unwrap();
    lease_only
        .update(&held("lease-only"), &current.version)
        .await
        .unwrap();
    assert_eq!(next(&mut stream).await, WatchEvent::Resync);
    // Both deleted: Deleted.
    env.delete_object(&env.lease_path("w")).await;
    env.delete_object(&env.configmap_path("w")).await;
    loop {
        match next(&mut stream).await {
            WatchEvent::Deleted => break,
            WatchEvent::Resync => {}
            other => panic!("expected Deleted, got {other:?}"),
        }
    }
}

// ---- elections -----------------------------------------------------------

/// Lease 2 s, renew deadline 1.5 s, retry 0.2 s: the rolling update of the
/// bug report.
const LEASE: Duration = Duration::from_secs(2);
const RENEW: Duration = Duration::from_millis(1500);
const RETRY: Duration = Duration::from_millis(200);

struct Candidate {
    elector: LeaderElector,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), ElectionError>>,
}

fn candidate(store: Arc<dyn LockStore>, identity: &str) -> Candidate {
    let elector = LeaderElector::builder(store, identity)
        .lease_duration(LEASE)
        .renew_deadline(RENEW)
        .retry_period(RETRY)
        .build()
        .unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn({
        let elector = elector.clone();
        let shutdown = shutdown.clone();
        async move {
            elector
                .run(shutdown, |leadership| async move {
                    leadership.cancelled().await
                })
                .await
        }
    });
    Candidate {
        elector,
        shutdown,
        task,
    }
}

impl Candidate {
    async fn stop(self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }
}

async fn wait_leading(c: &Candidate, limit: Duration) {
    let start = Instant::now();
    while !c.elector.is_leader() {
        assert!(start.elapsed() < limit, "not leading within {limit:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A single-object leader (`old`) leads and renews; a MultiLock candidate
/// joins on the same name. Over three leases, sampled every 5 ms, the old
/// leader must lead throughout and the MultiLock candidate never.
async fn multilock_never_takes_from(env: &Env, old: Arc<dyn LockStore>, name: &str) {
    let old = candidate(old, "old");
    wait_leading(&old, LEASE).await;
    let new = candidate(Arc::new(multi(env, name).await), "multi");
    let (mut samples, mut both, mut old_lost) = (0u32, 0u32, 0u32);
    let until = Instant::now() + 3 * LEASE;
    while Instant::now() < until {
        let (o, n) = (old.elector.is_leader(), new.elector.is_leader());
        samples += 1;
        both += u32::from(o && n);
        old_lost += u32::from(!o);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let state = new.elector.state();
    new.stop().await;
    old.stop().await;
    assert!(
        both == 0 && old_lost == 0,
        "of {samples} samples: both led in {both}, the old leader did not lead in {old_lost}; \
         the MultiLock candidate ends as {state:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn multilock_does_not_take_a_lease_held_by_a_lease_only_leader() {
    let env = env().await;
    multilock_never_takes_from(&env, Arc::new(lease(&env, "roll").await), "roll").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn multilock_does_not_take_a_lease_held_by_a_lease_only_leader_beside_a_free_configmap() {
    let env = env().await;
    // What a MultiLock leader that released the lock leaves behind.
    let free = r#"{"holderIdentity":"","leaseDurationSeconds":1,"leaderTransitions":3}"#;
    env.put_configmap("roll", json!({ LEADER_ANNOTATION: free }), json!({}))
        .await;
    multilock_never_takes_from(&env, Arc::new(lease(&env, "roll").await), "roll").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn multilock_does_not_take_a_configmap_held_by_a_configmap_only_leader() {
    let env = env().await;
    multilock_never_takes_from(&env, Arc::new(configmap(&env, "roll").await), "roll").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mixed_fleet_of_multilock_and_lease_never_has_two_leaders() {
    tenure_conformance::init_logging();
    let env = Arc::new(Env::start().await);
    let multi = KubeFactory::on(env.clone(), Kind::Multi);
    let old = KubeFactory::on(env, Kind::Lease);
    tenure_conformance::scenarios::mixed::mixed_fleet_never_has_two_leaders(&multi, &old).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mixed_fleet_of_multilock_and_configmap_never_has_two_leaders() {
    tenure_conformance::init_logging();
    let env = Arc::new(Env::start().await);
    let multi = KubeFactory::on(env.clone(), Kind::Multi);
    let old = KubeFactory::on(env, Kind::ConfigMap);
    tenure_conformance::scenarios::mixed::mixed_fleet_never_has_two_leaders(&multi, &old).await;
}
