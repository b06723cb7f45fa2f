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

#[tokio::test(start_paused = true)]
async fn a_shutdown_reaches_the_work_in_the_same_call() {
    // The work is told to stop by the shutdown itself, not after the
    // election task has woken up to pass it on: the release waits for the
    // work's return only, one task hop sooner.
    let store = memory();
    let elector = LeaderElector::builder(Arc::new(store.clone()), "a")
        .build()
        .unwrap();
    let shutdown = CancellationToken::new();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
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
