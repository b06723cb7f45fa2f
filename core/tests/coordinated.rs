//! The engine's rules for a coordinated lock (a record with a `strategy`:
//! Kubernetes' coordinated leader election), on the paused clock, with the
//! test playing the cluster's election controller on a `MemoryStore`:
//! never created nor taken by expiry, taken when the controller names us
//! (after the previous holder's lease by our own clock), and a drained
//! release when the controller prefers another holder.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use tenure_core::{LeaderRecord, LockStore, MemoryStore, Versioned};

const SEC: Duration = Duration::from_secs(1);
const STRATEGY: &str = "OldestEmulationVersion";

fn memory() -> MemoryStore {
    MemoryStore::new("coordinated").unwrap()
}

/// What the controller writes: `holder` named, the strategy set.
fn named(holder: &str, transitions: u64) -> LeaderRecord {
    let mut r = LeaderRecord::held_by(holder, 5 * SEC);
    r.strategy = STRATEGY.into();
    r.leader_transitions = transitions;
    r
}

async fn current(store: &MemoryStore) -> Versioned {
    store.get().await.unwrap().expect("a record")
}

/// The controller's write over whatever the record is now.
async fn controller_writes(store: &MemoryStore, edit: impl FnOnce(&mut LeaderRecord)) {
    let now = current(store).await;
    let mut record = now.record.clone();
    edit(&mut record);
    store.update(&record, &now.version).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_coordinated_lock_is_never_created_nor_taken_by_expiry() {
    let memory = memory();
    memory.create(&named("b", 4)).await.unwrap();
    let t = Timeline::default();
    let a = start(Arc::new(memory.clone()), spec("a"), &t);
    // b's lease (5 s) runs out many times over: a never takes it.
    tokio::time::sleep(120 * SEC).await;
    assert!(!a.elector.is_leader());
    assert!(t.terms().is_empty());
    assert_eq!(current(&memory).await.record.holder_identity, "b");
    a.shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_candidate_leads_when_the_controller_names_it_with_a_higher_token() {
    let memory = memory();
    // b held it and released it (a drained yield): nothing to wait out.
    let mut released = named("", 4);
    released.lease_duration = SEC;
    memory.create(&released).await.unwrap();
    let t = Timeline::default();
    let a = start(Arc::new(memory.clone()), spec("a"), &t);
    tokio::time::sleep(5 * SEC).await;
    assert!(!a.elector.is_leader(), "not named yet");
    controller_writes(&memory, |r| {
        r.holder_identity = "a".into();
        r.lease_duration = 5 * SEC;
    })
    .await;
    let took = wait_until(3 * SEC, || a.elector.is_leader()).await;
    assert!(
        took <= 2 * SEC + SEC / 2,
        "within a retry period (jittered): {took:?}"
    );
    let held = current(&memory).await.record;
    assert_eq!(
        (held.holder_identity.as_str(), held.leader_transitions),
        ("a", 5)
    );
    assert_eq!(held.strategy, STRATEGY, "the lock stays coordinated");
    a.shutdown.cancel();
    a.task.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_named_candidate_waits_out_the_previous_holders_lease_by_its_own_clock() {
    let memory = memory();
    memory.create(&named("b", 4)).await.unwrap();
    let t = Timeline::default();
    let a = start(Arc::new(memory.clone()), spec("a"), &t);
    tokio::time::sleep(SEC).await;
    // b renews (a change a sees) ...
    controller_writes(&memory, |r| {
        r.renew_time = Some(std::time::SystemTime::now())
    })
    .await;
    let renewed = tokio::time::Instant::now();
    tokio::time::sleep(SEC).await;
    // ... and a skewed controller names a one second later: a waits until
    // b's lease, by a's clock, from the renew it saw (a's own lease, 15 s,
    // is the longer), never at once.
    controller_writes(&memory, |r| r.holder_identity = "a".into()).await;
    wait_until(30 * SEC, || a.elector.is_leader()).await;
    let waited = tokio::time::Instant::now() - renewed;
    assert!(waited >= 15 * SEC, "led {waited:?} after b's last renew");
    a.shutdown.cancel();
}

/// A first look that finds a record naming us (a previous incarnation's,
/// or one named while a duplicate of us may live) waits a lease, as the
/// engine waits out any record with our identity it did not write.
#[tokio::test(start_paused = true)]
async fn a_first_look_at_a_record_naming_us_is_waited_out_for_a_lease() {
    let memory = memory();
    memory.create(&named("a", 4)).await.unwrap();
    let t = Timeline::default();
    let a = start(Arc::new(memory.clone()), spec("a"), &t);
    tokio::time::sleep(14 * SEC).await;
    assert!(
        !a.elector.is_leader(),
        "not before a lease (15 s) from the first look"
    );
    wait_until(5 * SEC, || a.elector.is_leader()).await;
    assert_eq!(current(&memory).await.record.leader_transitions, 5);
    a.shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_leader_the_controller_no_longer_prefers_drains_and_releases_at_once() {
    let memory = memory();
    let mut released = named("", 4);
    released.lease_duration = SEC;
    memory.create(&released).await.unwrap();
    let t = Timeline::default();
    let mut a_spec = spec("a");
    a_spec.drain = 3 * SEC; // the work takes 3 s to stop
    let a = start(Arc::new(memory.clone()), a_spec, &t);
    tokio::time::sleep(SEC).await;
    controller_writes(&memory, |r| {
        r.holder_identity = "a".into();
        r.lease_duration = 5 * SEC;
    })
    .await;
    wait_until(3 * SEC, || a.elector.is_leader()).await;
    tokio::time::sleep(SEC).await;
    let asked = tokio::time::Instant::now();
    controller_writes(&memory, |r| r.preferred_holder = "c".into()).await;
    // a's term is told to stop at a's next renew (the version changed), its
    // work drains for 3 s while a keeps renewing, then a releases.
    wait_until(10 * SEC, || current_is_free(&memory)).await;
    let released = tokio::time::Instant::now() - asked;
    let term = t.terms()[0].clone();
    let end = term.end.expect("the work ended");
    assert!(
        end <= tokio::time::Instant::now(),
        "the work returned before the release"
    );
    assert!(
        released >= 3 * SEC && released <= 3 * SEC + 3 * SEC,
        "released {released:?} after the ask"
    );
    let free = current(&memory).await.record;
    assert_eq!(
        free.strategy, STRATEGY,
        "the release keeps the lock coordinated"
    );
    assert_eq!(free.leader_transitions, 5);
    // a does not lead again: the controller names the next holder.
    tokio::time::sleep(60 * SEC).await;
    assert_eq!(t.terms().len(), 1);
    assert!(a.elector.state().fencing_token.is_none());
    a.shutdown.cancel();
    a.task.await.unwrap().unwrap();
}

fn current_is_free(memory: &MemoryStore) -> bool {
    memory
        .raw()
        .and_then(|raw| tenure_core::record::from_json(&raw).ok())
        .is_some_and(|r| r.is_free() && r.strategy == STRATEGY)
}
