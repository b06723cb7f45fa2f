//! Safety scenarios every store must pass: a record that disappears, and
//! writes by other tools to the lock object. Same timing as the election
//! scenarios (lease 1 s, renew deadline 0.6 s, retry 0.2 s).

use std::time::Duration;

use tokio::time::Instant;

use super::election::{
    LEASE, MARGIN, MAX_POLL, PLAIN, RETRY, Timeline, candidate, leaders, spawn, wait_for,
    wait_for_leader,
};
use crate::{Fault, StoreFactory};

/// The record is deleted (by hand, by garbage collection, by a store that
/// lost its data) while its leader is alive but cut off from the store. A
/// follower that saw that leader takes finding the record missing for a
/// change: it creates a new one only a lease after that, so it never leads
/// while the old leader's term is still valid.
pub async fn deleted_record_is_not_a_free_lock(f: &dyn StoreFactory) {
    vanished_record_is_not_a_free_lock(f, "deleted", Vanish::Delete).await;
}

/// As [`deleted_record_is_not_a_free_lock`], with the record erased in
/// place instead ([`StoreFactory::erase`]: a Lease's spec cleared, a
/// ConfigMap's annotation stripped, a blank record): the object is still
/// there but no holder released it, so it is a missing record, not a free
/// one.
pub async fn erased_record_is_not_a_free_lock(f: &dyn StoreFactory) {
    vanished_record_is_not_a_free_lock(f, "erased", Vanish::Erase).await;
}

#[derive(Clone, Copy)]
enum Vanish {
    Delete,
    Erase,
}

async fn vanished_record_is_not_a_free_lock(f: &dyn StoreFactory, lock: &str, how: Vanish) {
    let t = Timeline::default();
    let (store, switch) = f.open_faulty(lock).await.unwrap();
    let old = spawn(store, "old", &t, PLAIN);
    wait_for(
        LEASE + MAX_POLL + MARGIN,
        "the first candidate leads",
        || old.is_leader(),
    )
    .await;
    let follower = candidate(f, lock, "follower", &t, PLAIN).await;
    tokio::time::sleep(3 * RETRY).await;
    assert_eq!(follower.elector.leader().as_deref(), Some("old"));
    switch.set(Fault::Hang);
    let cut = Instant::now();
    match how {
        Vanish::Delete => f.delete(lock).await,
        Vanish::Erase => f.erase(lock).await,
    }
    // It finds the record missing at once (a delete event, a poll) or, on a
    // store that announces no deletes (Redis), when the lease it saw runs
    // out; then it waits a whole lease from finding it missing.
    wait_for(
        2 * LEASE + 2 * RETRY + MARGIN,
        "the follower leads after the lease",
        || follower.is_leader(),
    )
    .await;
    let took = cut.elapsed();
    // The follower saw the old leader's last renew at most one retry
    // before the cut. Where it is told of the change, it finds the record
    // missing at once and waits a lease; where it is not (Redis), it finds
    // it missing when that renew's lease runs out, and then waits a whole
    // lease more: a follower that took the missing record for a free one
    // would lead a lease early there and still pass the first bound.
    let leases = if f.announces_foreign_writes() { 1 } else { 2 };
    assert!(
        took + RETRY + Duration::from_millis(50) >= leases * LEASE,
        "created the record {took:?} after it vanished: it waits a lease from finding it missing \
         ({leases} lease(s) here)"
    );
    assert!(!old.is_leader());
    t.assert_no_overlap();
    old.task.abort();
    follower.stop().await.unwrap();
}

/// After the leader crashed, another tool keeps writing the lock object
/// without changing the record (on Kubernetes: an annotation, which moves
/// `resourceVersion`; on etcd: the same bytes, which move `mod_revision`).
/// Those writes are not renewals: another candidate takes over within
/// the same bound as after any crash.
pub async fn foreign_write_is_not_a_renewal(f: &dyn StoreFactory) {
    let lock = "touched";
    let t = Timeline::default();
    let mut cands = Vec::new();
    for id in ["a", "b", "c"] {
        cands.push(candidate(f, lock, id, &t, PLAIN).await);
    }
    let leader = wait_for_leader(&cands, LEASE + MAX_POLL + MARGIN).await;
    let old = cands.remove(leader);
    let crashed = Instant::now();
    old.crash(&t);
    // Each takeover attempt's read and swap must land between two touches,
    // so attempts that straddle one conflict and take a retry each (a
    // MultiLock's read and two writes on a real, loaded API server take
    // tens of ms). Touches a quarter of a lease apart still keep a dead
    // leader's lease alive for good if a touch were taken for a renewal,
    // so a loose bound catches it (the planted `ChangeByVersion` fails it).
    let bound = 2 * LEASE + 4 * RETRY + MARGIN;
    while leaders(&cands).is_empty() {
        assert!(
            crashed.elapsed() < bound,
            "no candidate took over within {bound:?} while another tool wrote the lock object"
        );
        f.touch(lock).await;
        tokio::time::sleep(LEASE / 4).await;
    }
    let took = crashed.elapsed();
    assert!(
        took + RETRY + Duration::from_millis(50) >= LEASE,
        "took over after {took:?}: inside the crashed leader's lease"
    );
    for c in cands {
        c.stop().await.unwrap();
    }
    t.assert_no_overlap();
}

/// Where the store keeps a token floor (etcd, Redis, the memory store:
/// [`LockStore::token_floor`](tenure_core::LockStore::token_floor) answers
/// a number once the lock was written): after the record was deleted, a
/// candidate that never saw it creates a new one with a fencing token above
/// every token the lock had, so a fencing downstream keeps refusing the old
/// leader. Where it keeps none (Kubernetes: the floor is `None`), the count
/// starts again after a deletion, as its README says, and this checks that
/// the store says so rather than promise what it does not keep.
pub async fn fencing_token_rises_across_deletion(f: &dyn StoreFactory) {
    let lock = "recreated";
    let t = Timeline::default();
    let mut last = None;
    let mut floor_kept = None;
    for id in ["a", "b", "c"] {
        let c = candidate(f, lock, id, &t, PLAIN).await;
        wait_for(LEASE + MAX_POLL + MARGIN, "the candidate leads", || {
            c.is_leader()
        })
        .await;
        let token = c.elector.state().fencing_token.expect("a leader's token");
        // The store's own answer, asked once the lock was written; it must
        // not change its mind.
        let floor = f
            .open(lock)
            .await
            .expect("open")
            .token_floor()
            .await
            .expect("token_floor");
        let kept = *floor_kept.get_or_insert(floor.is_some());
        assert_eq!(floor.is_some(), kept, "token_floor: {floor:?}");
        if let Some(before) = last {
            if kept {
                assert!(
                    token > before,
                    "{id} got token {token} after {before}, on a record created again"
                );
            } else {
                assert!(
                    token <= before,
                    "{id} got token {token} after {before} on a store that reports no \
                     token floor: it keeps one, and should say so"
                );
            }
        }
        last = Some(token);
        c.stop().await.unwrap();
        f.delete(lock).await;
    }
    t.assert_no_overlap();
}
