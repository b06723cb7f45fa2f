//! The release hand-off on paused tokio time: what a leader and its
//! successor do between the leader being told to go and the successor
//! leading (the fewer calls and task hops, the faster the hand-off).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;
use tenure_core::{CancellationToken, LeaderElector, MemoryStore};
use tokio::time::Instant;

const SEC: Duration = Duration::from_secs(1);

fn memory() -> MemoryStore {
    MemoryStore::new("handoff").unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_release_seen_on_the_watch_is_taken_with_one_write() {
    // The watch delivers the released record with its version: the
    // follower compare-and-swaps on it at once, without reading it again.
    let memory = memory();
    let t = Timeline::default();
    let leader = start(Arc::new(memory.clone()), spec("leader"), &t);
    wait_until(SEC, || leader.elector.is_leader()).await;
    let follower_store = test_store(&memory);
    let follower = start(follower_store.clone(), spec("follower"), &t);
    tokio::time::sleep(5 * SEC).await;
    let before = follower_store.calls();
    let released = Instant::now();
    leader.shutdown.cancel();
    wait_until(SEC, || follower.elector.is_leader()).await;
    let (gets, creates, updates) = follower_store.calls();
    assert_eq!(
        (gets - before.0, creates - before.1, updates - before.2),
        (0, 0, 1),
        "the follower's calls to take a released lock (gets, creates, updates)"
    );
    assert!(released.elapsed() < Duration::from_millis(50));
    t.assert_no_overlap();
}

/// Candidate `id` on `store`, its work sending each term's `Leadership`
/// and waiting for the term to end.
#[allow(clippy::type_complexity)]
fn reporting(
    id: &'static str,
    store: &MemoryStore,
) -> (
    LeaderElector,
    CancellationToken,
    tokio::task::JoinHandle<Result<(), tenure_core::ElectionError>>,
    tokio::sync::mpsc::UnboundedReceiver<tenure_core::Leadership>,
) {
    let elector = LeaderElector::builder(Arc::new(store.clone()), id)
        .build()
        .unwrap();
    let shutdown = CancellationToken::new();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let run = tokio::spawn({
        let (elector, shutdown) = (elector.clone(), shutdown.clone());
        async move {
            elector
                .run(shutdown, move |l| {
                    let _ = tx.send(l.clone());
                    async move { l.cancelled().await }
                })
                .await
        }
    });
    (elector, shutdown, run, rx)
}

#[tokio::test(start_paused = true)]
async fn a_shutdown_reaches_the_work_in_the_same_call() {
    // The work is told to stop by the shutdown itself, not after the
    // election task has woken up to pass it on: the release waits for the
    // work's return only, one task hop sooner.
    let store = memory();
    let (_, shutdown, run, mut rx) = reporting("a", &store);
    let leadership = rx.recv().await.expect("the work started");
    assert!(!leadership.is_cancelled());
    shutdown.cancel();
    assert!(
        leadership.is_cancelled(),
        "the work was not told to stop by the shutdown call itself"
    );
    run.await.unwrap().unwrap();
    assert!(
        record(&store).await.is_free(),
        "released after the work returned"
    );
}

#[tokio::test(start_paused = true)]
async fn a_work_told_to_stop_by_shutdown_still_holds_the_lock_until_it_returns() {
    // Stopping the work sooner must not release sooner: the lock stays
    // ours (and valid) until the work has returned.
    let store = memory();
    let elector = LeaderElector::builder(Arc::new(store.clone()), "a")
        .build()
        .unwrap();
    let shutdown = CancellationToken::new();
    let returned = Arc::new(AtomicBool::new(false));
    let flag = returned.clone();
    let probe = store.clone();
    let run = tokio::spawn({
        let (elector, shutdown) = (elector.clone(), shutdown.clone());
        async move {
            elector
                .run(shutdown, move |l| {
                    let flag = flag.clone();
                    let probe = probe.clone();
                    async move {
                        l.cancelled().await;
                        // Still stopping: the record is still ours, the term valid.
                        tokio::time::sleep(3 * SEC).await;
                        assert_eq!(record(&probe).await.holder_identity, "a");
                        assert!(l.is_valid());
                        flag.store(true, Ordering::SeqCst);
                    }
                })
                .await
        }
    });
    wait_until(SEC, || elector.is_leader()).await;
    let began = Instant::now();
    shutdown.cancel();
    run.await.unwrap().unwrap();
    assert!(returned.load(Ordering::SeqCst), "the work ran to its end");
    assert!(began.elapsed() >= 3 * SEC);
    assert!(record(&store).await.is_free());
}

#[tokio::test(start_paused = true)]
async fn a_follower_runs_in_one_task_that_reads_the_watch_itself() {
    // No task between the store's change stream and the election: a
    // release wakes the successor's election task directly.
    let store = memory();
    let t = Timeline::default();
    let leader = start(Arc::new(store.clone()), spec("leader"), &t);
    wait_until(SEC, || leader.elector.is_leader()).await;
    let metrics = tokio::runtime::Handle::current().metrics();
    let before = metrics.num_alive_tasks();
    let follower = start(Arc::new(store.clone()), spec("follower"), &t);
    tokio::time::sleep(5 * SEC).await;
    assert_eq!(
        metrics.num_alive_tasks() - before,
        1,
        "tasks a following candidate keeps alive"
    );
    leader.shutdown.cancel();
    wait_until(SEC, || follower.elector.is_leader()).await;
    t.assert_no_overlap();
}

#[tokio::test(start_paused = true)]
async fn is_leader_turns_false_when_validity_ends_not_when_the_release_lands() {
    // A release can take up to `renew_deadline`; nobody leads meanwhile,
    // and the state must not say otherwise.
    let memory = memory();
    let store = test_store(&memory);
    let t = Timeline::default();
    let leader = start(store.clone(), spec("leader"), &t);
    wait_until(SEC, || leader.elector.is_leader()).await;
    let mut states = leader.elector.subscribe();
    store.set(Fault::Slow(2 * SEC));
    leader.shutdown.cancel();
    tokio::time::timeout(Duration::from_millis(10), states.wait_for(|s| !s.is_leader))
        .await
        .expect("is_leader still true 10 ms after the shutdown")
        .unwrap();
    let state = leader.elector.state();
    assert_eq!(state.fencing_token, None);
    assert_eq!(
        record(&memory).await.holder_identity,
        "leader",
        "the release has not landed yet"
    );
    assert_eq!(
        state.leader.as_deref(),
        Some("leader"),
        "the store still names us"
    );
    tokio::time::sleep(3 * SEC).await;
    assert!(record(&memory).await.is_free(), "released after the delay");
    assert_eq!(leader.elector.state().leader, None);
}

#[tokio::test(start_paused = true)]
async fn a_candidate_stepping_down_is_healthy_while_its_release_is_slow() {
    // The health check fails a candidate that believes it leads but has not
    // renewed for `lease_duration`. One whose validity has ended does not
    // believe it leads, however long its release takes.
    let memory = memory();
    let store = test_store(&memory);
    let t = Timeline::default();
    let leader = start(store.clone(), spec("leader"), &t);
    wait_until(SEC, || leader.elector.is_leader()).await;
    // The release gives up at `renew_deadline` (10 s). The check dates the
    // last renew at the term's validity minus `renew_deadline`; ending
    // validity at the shutdown moves that to 10 s before it. So 9 s into
    // the release, a term still counted would be 19 s without a renew,
    // past the 15 s lease (the old code failed here with `since: 19s`).
    store.set(Fault::Slow(20 * SEC));
    leader.shutdown.cancel();
    tokio::time::sleep(9 * SEC).await;
    assert!(!leader.elector.is_leader());
    assert_eq!(
        record(&memory).await.holder_identity,
        "leader",
        "the release has not landed yet"
    );
    assert_eq!(leader.elector.check(Duration::ZERO), Ok(()));
}

#[test]
fn a_term_names_its_holder_and_its_token_in_one_change() {
    // Subscribers on other threads must never see this candidate named
    // holder while it does not lead yet: the term is published at once.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut torn = 0;
    for round in 0..300 {
        let store = MemoryStore::new("handoff").unwrap();
        let elector = LeaderElector::builder(Arc::new(store), "a")
            .build()
            .unwrap();
        let flag = || Arc::new(AtomicBool::new(false));
        let (stop, seen, led) = (flag(), flag(), flag());
        let spy = std::thread::spawn({
            let (elector, stop, seen, led) =
                (elector.clone(), stop.clone(), seen.clone(), led.clone());
            move || {
                while !stop.load(Ordering::SeqCst) {
                    let s = elector.state();
                    if s.is_leader {
                        return;
                    }
                    // Read after the state: still unset, so the state was
                    // read before the term ended (a spy that missed the
                    // whole term sees us named holder after it, rightly).
                    if s.leader.as_deref() == Some("a") && !led.load(Ordering::SeqCst) {
                        seen.store(true, Ordering::SeqCst);
                    }
                }
            }
        });
        rt.block_on(async {
            let task = elector.spawn(|l| async move { l.cancelled().await });
            let mut rx = elector.subscribe();
            tokio::time::timeout(Duration::from_secs(5), rx.wait_for(|s| s.is_leader))
                .await
                .unwrap_or_else(|_| panic!("round {round}: no term"))
                .unwrap();
            led.store(true, Ordering::SeqCst);
            task.shutdown().await.unwrap();
        });
        stop.store(true, Ordering::SeqCst);
        spy.join().unwrap();
        torn += seen.load(Ordering::SeqCst) as usize;
    }
    assert_eq!(
        torn, 0,
        "rounds in which a subscriber saw us named holder before we led"
    );
}

/// `Leadership::was_taken`: true when another writer released the record
/// under a valid lease (a successor may lead at once, so work must stop
/// without grace: `tenure run` SIGKILLs its command then), false when the
/// term ends by shutdown.
#[tokio::test(start_paused = true)]
async fn a_term_ended_by_another_writer_says_it_was_taken() {
    use tenure_core::{LeaderRecord, LockStore};
    for foreign in [true, false] {
        let store = memory();
        let (elector, shutdown, run, mut rx) = reporting("a", &store);
        wait_until(SEC, || elector.is_leader()).await;
        if foreign {
            let current = store.get().await.unwrap().unwrap();
            store
                .update(&LeaderRecord::default(), &current.version)
                .await
                .unwrap();
        } else {
            shutdown.cancel();
        }
        let leadership = rx.recv().await.expect("the work started");
        tokio::time::timeout(5 * SEC, leadership.cancelled())
            .await
            .expect("the term ended");
        assert_eq!(
            leadership.was_taken(),
            foreign,
            "foreign release: {foreign}"
        );
        shutdown.cancel();
        let _ = run.await;
    }
}
