//! Regression tests of the safety rules (issue 11), on paused time: each
//! failed on the engine before its fix.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use tenure_core::{LeaderRecord, LockStore, MemoryStore};
use tokio::time::Instant;

const SEC: Duration = Duration::from_secs(1);
/// Longest gap between a follower's polls: retry × (1 + 1.2).
const POLL: Duration = Duration::from_millis(4_400);

fn memory() -> MemoryStore {
    MemoryStore::new("safety").unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_foreign_write_that_keeps_the_record_is_not_a_renewal() {
    // A crashed holder's record, and another tool writing the lock object
    // every 300 ms (on Kubernetes: an annotation) without changing the
    // record. Its versions are not renewals: the lock is taken one lease
    // after the last *record* change.
    let store = memory();
    store.create(&held("crashed", 15, 4)).await.unwrap();
    let toucher = {
        let store = store.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(300)).await;
                store.touch();
            }
        })
    };
    let t = Timeline::default();
    let a = start(Arc::new(store.clone()), spec("a"), &t);
    let took = wait_until(15 * SEC + POLL + SEC, || a.elector.is_leader()).await;
    toucher.abort();
    assert!(
        took >= 15 * SEC,
        "took over after {took:?}, inside the lease"
    );
    assert_eq!(record(&store).await.leader_transitions, 5);
}

#[tokio::test(start_paused = true)]
async fn a_deleted_record_is_the_last_holders_record_unchanged() {
    // The leader is alive but cut off from the store (its validity runs on
    // for up to renew_deadline); then the record is deleted (by hand, by
    // garbage collection, by a store that lost its data). A follower that
    // saw the leader must wait out the leader's lease from the last change
    // it saw, not create a record at once.
    let store = memory();
    let t = Timeline::default();
    let leader_store = test_store(&store);
    let leader = start(leader_store.clone(), spec("leader"), &t);
    wait_until(SEC, || leader.elector.is_leader()).await;
    let follower = start(Arc::new(store.clone()), spec("follower"), &t);
    tokio::time::sleep(5 * SEC).await;
    assert_eq!(follower.elector.leader().as_deref(), Some("leader"));
    leader_store.set(Fault::Hang);
    let cut = Instant::now();
    store.delete();
    wait_until(15 * SEC + POLL + SEC, || follower.elector.is_leader()).await;
    // The follower saw the leader's last renew at most one retry before
    // the cut, and waits a whole lease from it.
    assert!(
        cut.elapsed() >= 13 * SEC,
        "the follower created the record {:?} after the deletion, inside the lease",
        cut.elapsed()
    );
    t.assert_no_overlap();
}

#[tokio::test(start_paused = true)]
async fn a_candidate_that_never_saw_a_record_creates_at_once_unless_lock_delay() {
    // client-go's behaviour by default; with `lock_delay`, a fresh candidate
    // treats "no record" as held for that long (Chubby's lock-delay).
    let store = memory();
    let t = Timeline::default();
    let fast = start(Arc::new(store.clone()), spec("fast"), &t);
    let took = wait_until(SEC, || fast.elector.is_leader()).await;
    assert!(took < SEC);

    let store = memory();
    let elector = tenure_core::LeaderElector::builder(Arc::new(store.clone()), "careful")
        .lock_delay(15 * SEC)
        .build()
        .unwrap();
    let began = Instant::now();
    let shutdown = tenure_core::CancellationToken::new();
    let run = {
        let elector = elector.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            elector
                .run(shutdown, |l| async move { l.cancelled().await })
                .await
        })
    };
    wait_until(15 * SEC + POLL + SEC, || elector.is_leader()).await;
    assert!(
        began.elapsed() >= 15 * SEC,
        "led after {:?}",
        began.elapsed()
    );
    shutdown.cancel();
    run.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_recreated_record_never_repeats_a_fencing_token() {
    // Token 7 was issued; the record is deleted; the next leader's token
    // must be above 7 when the store keeps a floor, and above what the
    // candidate saw in any case.
    let store = memory();
    store.create(&held("old", 1, 7)).await.unwrap();
    let t = Timeline::default();
    let a = start(Arc::new(store.clone()), spec("a"), &t);
    wait_until(3 * SEC, || a.elector.is_leader()).await;
    assert_eq!(a.elector.state().fencing_token, Some(8));
    a.shutdown.cancel();
    a.task.await.unwrap().unwrap();
    store.delete();
    // A fresh candidate never saw any record: the store's floor decides.
    let b = start(Arc::new(store.clone()), spec("b"), &t);
    wait_until(SEC, || b.elector.is_leader()).await;
    let token = b.elector.state().fencing_token.unwrap();
    assert!(token > 8, "a new term after deletion got token {token}");
}

#[tokio::test(start_paused = true)]
async fn an_overflowing_transitions_count_is_corrupt_not_wrapped() {
    let store = memory();
    store.create(&held("", 15, u64::MAX)).await.unwrap();
    let t = Timeline::default();
    let a = start(Arc::new(store.clone()), spec("a"), &t);
    let result = tokio::time::timeout(5 * SEC, a.task)
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(
            result,
            Err(tenure_core::ElectionError::Store(
                tenure_core::StoreError::Corrupt { .. }
            ))
        ),
        "{result:?}"
    );
    assert!(t.terms().is_empty());
    let r: LeaderRecord = record(&store).await;
    assert_eq!(r.leader_transitions, u64::MAX, "the record was overwritten");
}

#[tokio::test(start_paused = true)]
async fn a_record_deleted_while_the_follower_was_blind_is_waited_out_from_when_it_was_found_missing()
 {
    // Found by the simulation (seed 1000626, Redis-like): a follower that
    // could not see the store for longer than a lease (a GC pause, a
    // partition, a lossy watch) did not see the leader's renews; when it
    // looked again the record was gone, and it took its last sighting, long
    // ago, for the last change. The disappearance is itself a change: wait
    // a whole lease from finding the record missing.
    let store = memory();
    let t = Timeline::default();
    let leader_store = test_store(&store);
    let leader = start(leader_store.clone(), spec("leader"), &t);
    wait_until(SEC, || leader.elector.is_leader()).await;
    let follower_store = test_store_without_watch(&store);
    let follower = start(follower_store.clone(), spec("follower"), &t);
    tokio::time::sleep(3 * SEC).await;
    assert_eq!(follower.elector.leader().as_deref(), Some("leader"));
    // The follower is blind for 20 s; the leader renews all along.
    follower_store.set(Fault::Hang);
    tokio::time::sleep(20 * SEC).await;
    assert!(leader.elector.is_leader());
    // The leader is cut off (still valid for up to renew_deadline), the
    // record is deleted, and the follower sees again.
    leader_store.set(Fault::Hang);
    store.delete();
    let found = Instant::now();
    follower_store.set(Fault::Pass);
    wait_until(15 * SEC + 10 * SEC + POLL + SEC, || {
        follower.elector.is_leader()
    })
    .await;
    assert!(
        found.elapsed() >= 15 * SEC,
        "created the record {:?} after it could have found it missing",
        found.elapsed()
    );
    t.assert_no_overlap();
}

#[tokio::test(start_paused = true)]
async fn a_create_that_lands_late_still_gets_a_token_above_the_floor() {
    // Found by the simulation (seed 2023719, etcd-like): a candidate read
    // the token floor, was paused, and its create landed after other terms
    // on a record that was then deleted: its token came from the stale
    // floor, below theirs. After a create, a floor above our token raises
    // the token before the term starts.
    let store = memory();
    // Earlier terms reached token 7; the record is gone now.
    store.create(&held("earlier", 1, 7)).await.unwrap();
    store.delete();
    // A create whose floor read was stale: token 0 written as is.
    struct StaleFloor(MemoryStore, Arc<std::sync::atomic::AtomicUsize>);
    impl std::fmt::Debug for StaleFloor {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("StaleFloor")
        }
    }
    let reads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    #[tenure_core::async_trait]
    impl LockStore for StaleFloor {
        async fn get(&self) -> Result<Option<tenure_core::Versioned>, tenure_core::StoreError> {
            self.0.get().await
        }
        async fn create(
            &self,
            r: &LeaderRecord,
        ) -> Result<tenure_core::Version, tenure_core::StoreError> {
            self.0.create(r).await
        }
        async fn update(
            &self,
            r: &LeaderRecord,
            v: &tenure_core::Version,
        ) -> Result<tenure_core::Version, tenure_core::StoreError> {
            self.0.update(r, v).await
        }
        async fn token_floor(&self) -> Result<Option<u64>, tenure_core::StoreError> {
            // The first read is the stale one (taken before the others' terms).
            if self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                return Ok(None);
            }
            self.0.token_floor().await
        }
        fn describe(&self) -> String {
            "stale-floor".into()
        }
    }
    let t = Timeline::default();
    let a = start(Arc::new(StaleFloor(store.clone(), reads)), spec("a"), &t);
    wait_until(SEC, || a.elector.is_leader()).await;
    let token = a.elector.state().fencing_token.unwrap();
    assert!(
        token > 7,
        "a late create's term got token {token}, below the earlier 7"
    );
    assert_eq!(record(&store).await.leader_transitions, token);
}

#[tokio::test(start_paused = true)]
async fn a_stale_low_token_in_the_store_never_lowers_the_next_term_token() {
    // Found by the simulation (seed 2023719, etcd-like): a create delayed
    // past other terms (its candidate paused) landed with a token from a
    // stale floor, and its candidate never raised it. Whoever takes that
    // record over must still go above every token it has seen.
    let store = memory();
    let t = Timeline::default();
    store.create(&held("earlier", 15, 5)).await.unwrap();
    let a = start(Arc::new(store.clone()), spec("a"), &t);
    tokio::time::sleep(SEC).await;
    assert_eq!(a.elector.leader().as_deref(), Some("earlier"));
    // The record is replaced by a late create with token 0 that nobody
    // renews (a deletion, then the stale create).
    store.delete();
    store.create(&held("late", 15, 0)).await.unwrap();
    wait_until(40 * SEC, || a.elector.is_leader()).await;
    let token = a.elector.state().fencing_token.unwrap();
    assert!(token > 5, "took over with token {token} after seeing 5");
}

#[tokio::test(start_paused = true)]
async fn a_takeover_by_a_candidate_that_never_saw_the_higher_tokens_goes_above_the_floor() {
    takeover_above_the_floor().await;
}

async fn takeover_above_the_floor() {
    // Issue 26 item 2: a stale low token sits in the store (a create whose
    // raise to the floor never ran, a store restored from an old snapshot)
    // and a candidate that never saw the higher tokens (new, restarted)
    // takes it over. Its token must come from the store's floor too, not
    // only from the record and what it saw: before the fix it was 1.
    let store = memory();
    // Earlier terms reached token 7; the record is gone now.
    store.create(&held("earlier", 1, 7)).await.unwrap();
    store.delete();
    // A late create with a stale token, never renewed.
    store.create(&held("late", 15, 0)).await.unwrap();
    let t = Timeline::default();
    let a = start(Arc::new(store.clone()), spec("a"), &t);
    wait_until(15 * SEC + POLL + SEC, || a.elector.is_leader()).await;
    let token = a.elector.state().fencing_token.unwrap();
    assert!(
        token > 7,
        "took over with token {token}, at or below the 7 already issued"
    );
    assert_eq!(record(&store).await.leader_transitions, token);
}

#[tokio::test(start_paused = true)]
async fn a_record_of_another_incarnation_with_our_identity_and_token_is_not_adopted() {
    no_adoption_of_another_incarnation().await;
}

async fn no_adoption_of_another_incarnation() {
    // Issue 26 item 6: on a store without a floor (Kubernetes), two live
    // incarnations with one identity can both hold token 0. A leader whose
    // renew conflicts must not adopt the other's record (same identity,
    // same token, its own acquire time) and renew over it: both would lead.
    let store = memory();
    let t = Timeline::default();
    let a = start(Arc::new(store.clone()), spec("a"), &t);
    wait_until(SEC, || a.elector.is_leader()).await;
    let token = a.elector.state().fencing_token.unwrap();
    let current = store.get().await.unwrap().unwrap();
    let mut other = held("a", 15, token);
    let then = std::time::UNIX_EPOCH + Duration::from_secs(1_000_000);
    other.acquire_time = Some(then);
    other.renew_time = Some(then);
    store.update(&other, &current.version).await.unwrap();
    // Its next renew conflicts and finds the other incarnation's record.
    wait_until(3 * SEC, || !a.elector.is_leader()).await;
    assert_eq!(
        record(&store).await,
        other,
        "the other incarnation's record was overwritten"
    );
}

#[tokio::test(start_paused = true)]
async fn a_holder_the_store_cannot_name_is_never_reported_as_a_leader() {
    // A Kubernetes MultiLock whose ConfigMap names the new holder while its
    // Lease still names the old one reads as `UNKNOWN_HOLDER` (seen in CI:
    // a follower reported the placeholder between two real leaders). The
    // lock is held all along; the next leader reported is the one named.
    let store = memory();
    store.create(&held("a", 15, 1)).await.unwrap();
    let t = Timeline::default();
    let f = start(Arc::new(store.clone()), spec("f"), &t);
    tokio::time::sleep(SEC).await;
    for holder in [tenure_core::UNKNOWN_HOLDER, "d"] {
        let current = store.get().await.unwrap().unwrap();
        store
            .update(&held(holder, 15, 2), &current.version)
            .await
            .unwrap();
        tokio::time::sleep(5 * SEC).await;
    }
    assert!(
        !f.elector.is_leader(),
        "the unknown holder's lock was taken"
    );
    assert_eq!(t.events(), ["f saw a", "f saw d"]);
}

#[tokio::test(start_paused = true)]
async fn a_renew_that_answers_once_validity_ended_does_not_revive_the_term() {
    // Seen by the chaos harness (Redis, store-partition): the supervisor of
    // `tenure run` stopped the command at the end of validity, and then a
    // renew sent before that moment answered and the engine extended the
    // same term: validity lapsed and came back. Here each renew's answer
    // is handled past the end of validity (a renew deadline from the last
    // renew, one retry period before this one), yet inside the validity
    // this renew would give.
    let store = memory();
    let t = Timeline::default();
    let leader_store = test_store(&store);
    let leader = start(leader_store.clone(), spec("leader"), &t);
    wait_until(SEC, || leader.elector.is_leader()).await;
    let late = DEFAULT.renew - DEFAULT.retry + 1;
    leader_store.set(Fault::Starved(Duration::from_secs(late)));
    tokio::time::sleep(Duration::from_secs(3 * DEFAULT.renew)).await;
    assert!(
        t.events().iter().any(|e| e == "leader stopped"),
        "the term went on past the end of its validity: {:?}",
        t.events()
    );
}

/// A clock that can be jumped ahead without yielding, as a starved runtime
/// sees time: the election task does not run between two reads.
#[derive(Debug, Default)]
struct JumpClock(std::sync::Mutex<Duration>);

impl tenure_core::Clock for JumpClock {
    fn now(&self) -> Instant {
        Instant::now() + *self.0.lock().unwrap()
    }

    fn sleep_until(
        &self,
        deadline: Instant,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        let real = deadline
            .checked_sub(*self.0.lock().unwrap())
            .unwrap_or(deadline);
        Box::pin(tokio::time::sleep_until(real))
    }
}

#[tokio::test(start_paused = true)]
async fn is_leader_and_the_state_turn_off_when_validity_ends_even_if_the_task_is_starved() {
    state_follows_validity().await;
}

async fn state_follows_validity() {
    // Issue 26 item 5: `is_leader` and the state were cleared only when the
    // election task ran; a starved task (the CLI's runtime stalled ~1.5 s
    // in chaos runs) left them true past `valid_until`, while
    // `Leadership::is_valid` (which reads the clock) was right.
    let store = memory();
    let clock = Arc::new(JumpClock::default());
    let elector = tenure_core::LeaderElector::builder(store.clone(), "a")
        .clock(clock.clone())
        .build()
        .unwrap();
    let task = elector.spawn(|leadership| async move { leadership.cancelled().await });
    wait_until(SEC, || elector.is_leader()).await;
    assert!(elector.state().fencing_token.is_some());
    // Past the validity (renew deadline 10 s) with no chance for the task to run.
    *clock.0.lock().unwrap() += 11 * SEC;
    assert!(
        !elector.is_leader(),
        "is_leader still true past the term's validity"
    );
    let state = elector.state();
    assert!(
        !state.is_leader && state.fencing_token.is_none(),
        "{state:?}"
    );
    drop(task);
}

#[tokio::test(start_paused = true)]
async fn lock_delay_holds_any_created_record_whatever_the_candidate_missed() {
    lock_delay_holds_the_created_record().await;
}

async fn lock_delay_holds_the_created_record() {
    // Issue 26 item 1: X looks at t0 and finds no record, then goes blind
    // (its store fails it). A creates the record at t0 + 1 s and leads; the
    // record is deleted at t0 + 18 s while A is still valid (A renewed
    // until then, so it may act up to renew_deadline after). X looks again
    // at t0 + 19 s: no record. Before the fix, lock_delay was waited before
    // the create, counted from t0: X created and led at once, inside A's
    // validity. Now a created record is held for lock_delay before the
    // term starts, whatever the view missed.
    let memory = memory();
    let x_store = tenure_core::testing::FaultyStore::without_watch(memory.clone());
    let x = tenure_core::LeaderElector::builder(x_store.clone(), "x")
        .lock_delay(15 * SEC)
        .build()
        .unwrap();
    let shutdown = tenure_core::CancellationToken::new();
    let run = {
        let x = x.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            x.run(shutdown, |l| async move { l.cancelled().await })
                .await
        })
    };
    tokio::time::sleep(SEC / 2).await;
    x_store.set(Fault::Fail);
    // Whatever X wrote meanwhile goes (deleted), then A's term begins.
    tokio::time::sleep(SEC * 4 / 10).await;
    memory.delete();
    tokio::time::sleep(SEC / 10).await;
    memory.create(&held("a", 15, 1)).await.unwrap();
    tokio::time::sleep(17 * SEC).await;
    memory.delete();
    let deleted = Instant::now();
    tokio::time::sleep(SEC).await;
    x_store.set(Fault::Pass);
    wait_until(15 * SEC + 2 * POLL, || x.is_leader()).await;
    let after = deleted.elapsed();
    assert!(
        after >= 10 * SEC,
        "x led {after:?} after the deletion, inside a's validity (renew deadline 10 s)"
    );
    shutdown.cancel();
    run.await.unwrap().unwrap();
}

/// Negative controls: each regression test of issue 26 above, run with the
/// rule it guards switched back to the old one (`tenure_core::planted`),
/// must fail. They show the tests can fail, as they did on the engine
/// before the fixes.
mod controls {
    use futures::FutureExt;
    use tenure_core::planted::{Bug, plant};

    async fn caught(bug: Bug, scenario: impl std::future::Future<Output = ()>) {
        plant(Some(bug));
        let outcome = std::panic::AssertUnwindSafe(scenario).catch_unwind().await;
        plant(None);
        assert!(
            outcome.is_err(),
            "{bug:?} planted, yet its regression test passed"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn takeover_above_the_floor_is_caught() {
        caught(Bug::TakeoverIgnoresFloor, super::takeover_above_the_floor()).await;
    }

    #[tokio::test(start_paused = true)]
    async fn no_adoption_of_another_incarnation_is_caught() {
        caught(
            Bug::AdoptOtherIncarnation,
            super::no_adoption_of_another_incarnation(),
        )
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn state_follows_validity_is_caught() {
        caught(Bug::StateLagsValidity, super::state_follows_validity()).await;
    }

    #[tokio::test(start_paused = true)]
    async fn lock_delay_holds_the_created_record_is_caught() {
        caught(
            Bug::LockDelayBeforeCreate,
            super::lock_delay_holds_the_created_record(),
        )
        .await;
    }
}
