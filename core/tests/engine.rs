//! The election engine on paused tokio time: client-go's `tryAcquireOrRenew`
//! table and the rules beyond it. Names follow client-go's where they fit.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use tenure_core::{LockStore, MemoryStore};
use tokio::time::Instant;

const SEC: Duration = Duration::from_secs(1);

fn memory() -> MemoryStore {
    MemoryStore::new("engine").unwrap()
}

#[tokio::test(start_paused = true)]
async fn acquire_from_no_object() {
    let store = memory();
    let t = Timeline::default();
    let a = start(Arc::new(store.clone()), spec("a"), &t);
    wait_until(Duration::from_millis(50), || a.elector.is_leader()).await;
    let r = record(&store).await;
    assert_eq!((r.holder_identity.as_str(), r.leader_transitions), ("a", 0));
    assert_eq!(r.lease_duration, 15 * SEC);
    assert_eq!(a.elector.state().fencing_token, Some(0));
}

#[tokio::test(start_paused = true)]
async fn acquire_from_unled_object() {
    let store = memory();
    store.create(&held("", 15, 5)).await.unwrap();
    let t = Timeline::default();
    let a = start(Arc::new(store.clone()), spec("a"), &t);
    wait_until(Duration::from_millis(50), || a.elector.is_leader()).await;
    assert_eq!(record(&store).await.leader_transitions, 6);
}

#[tokio::test(start_paused = true)]
async fn acquire_from_led_unacked_object() {
    // Held by a holder that never renews: taken exactly one lease after we
    // first saw it, by our clock, not before.
    let store = memory();
    store.create(&held("gone", 15, 3)).await.unwrap();
    let t = Timeline::default();
    let began = Instant::now();
    let a = start(Arc::new(store.clone()), spec("a"), &t);
    let took = wait_until(20 * SEC, || a.elector.is_leader()).await;
    assert!(
        took >= 15 * SEC,
        "took over after {took:?}, before the lease ran out"
    );
    assert!(
        began.elapsed() <= 15 * SEC + Duration::from_millis(20),
        "{took:?}"
    );
    let r = record(&store).await;
    assert_eq!((r.holder_identity.as_str(), r.leader_transitions), ("a", 4));
}

#[tokio::test(start_paused = true)]
async fn dont_acquire_from_led_acked_object() {
    // Another holder renews every 2 s: never taken, however long we wait.
    let store = memory();
    let t = Timeline::default();
    let holder = start(Arc::new(store.clone()), spec("holder"), &t);
    wait_until(SEC, || holder.elector.is_leader()).await;
    let a = start(Arc::new(store.clone()), spec("a"), &t);
    for _ in 0..120 {
        tokio::time::sleep(SEC).await;
        assert!(!a.elector.is_leader() && holder.elector.is_leader());
    }
    assert_eq!(a.elector.leader().as_deref(), Some("holder"));
}

#[tokio::test(start_paused = true)]
async fn observed_change_resets_the_expiry() {
    let store = memory();
    let v = store.create(&held("other", 15, 1)).await.unwrap();
    let t = Timeline::default();
    let a = start(Arc::new(store.clone()), spec("a"), &t);
    tokio::time::sleep(10 * SEC).await;
    store.update(&held("other", 15, 1), &v).await.unwrap(); // a renew at t = 10 s
    tokio::time::sleep(14 * SEC).await; // t = 24 s: 15 s after the first sight, 14 after the change
    assert!(
        !a.elector.is_leader(),
        "the change at 10 s must restart the wait"
    );
    wait_until(2 * SEC, || a.elector.is_leader()).await;
}

#[tokio::test(start_paused = true)]
async fn expiry_uses_the_holders_lease_duration() {
    let store = memory();
    store.create(&held("slow", 40, 1)).await.unwrap();
    let t = Timeline::default();
    let a = start(Arc::new(store.clone()), spec("a"), &t);
    tokio::time::sleep(39 * SEC).await;
    assert!(
        !a.elector.is_leader(),
        "must wait the holder's 40 s lease, not our 15 s"
    );
    wait_until(2 * SEC, || a.elector.is_leader()).await;
}

#[tokio::test(start_paused = true)]
async fn empty_holder_is_free() {
    let store = memory();
    let mut free = held("", 15, 9);
    free.holder_key = "stale-key".into();
    store.create(&free).await.unwrap();
    let t = Timeline::default();
    let a = start(Arc::new(store.clone()), spec("a"), &t);
    wait_until(Duration::from_millis(50), || a.elector.is_leader()).await;
    assert_eq!(record(&store).await.leader_transitions, 10);
}

#[tokio::test(start_paused = true)]
async fn key_preemption() {
    let store = memory();
    let t = Timeline::default();
    let low = start(
        Arc::new(store.clone()),
        Spec {
            key: "1",
            ..spec("low")
        },
        &t,
    );
    wait_until(SEC, || low.elector.is_leader()).await;
    // Same key: no pre-emption; a higher key: at once.
    let same = start(
        Arc::new(store.clone()),
        Spec {
            key: "1",
            preempt_below: Some("1"),
            ..spec("same")
        },
        &t,
    );
    tokio::time::sleep(30 * SEC).await;
    assert!(!same.elector.is_leader() && low.elector.is_leader());
    let high = start(
        Arc::new(store.clone()),
        Spec {
            key: "2",
            preempt_below: Some("2"),
            ..spec("high")
        },
        &t,
    );
    wait_until(Duration::from_millis(50), || high.elector.is_leader()).await;
    // The pre-empted leader sees the change on its watch and steps down.
    wait_until(Duration::from_millis(50), || !low.elector.is_leader()).await;
    let r = record(&store).await;
    assert_eq!(
        (r.holder_identity.as_str(), r.holder_key.as_str()),
        ("high", "2")
    );
    assert_eq!(high.elector.state().fencing_token, Some(1));
}

#[tokio::test(start_paused = true)]
async fn renew_already_acquired_object_in_one_round_trip() {
    // Fast path after lock acquired: renew is one compare-and-swap, no read.
    let memory = memory();
    let store = test_store(&memory);
    let t = Timeline::default();
    let a = start(store.clone(), spec("a"), &t);
    wait_until(SEC, || a.elector.is_leader()).await;
    let first = record(&memory).await;
    let (gets, creates, updates) = store.calls();
    tokio::time::sleep(Duration::from_secs(20) + Duration::from_millis(1)).await;
    let (gets2, creates2, updates2) = store.calls();
    assert_eq!((gets2, creates2), (gets, creates), "renewing must not read");
    assert_eq!(updates2 - updates, 10, "one update per retry period");
    let r = record(&memory).await;
    assert_eq!(
        r.leader_transitions, first.leader_transitions,
        "transitions kept on renew"
    );
    assert_eq!(
        r.acquire_time, first.acquire_time,
        "acquire time kept on renew"
    );
    assert!(r.renew_time > first.renew_time);
    assert!(a.elector.is_leader());
}

#[tokio::test(start_paused = true)]
async fn fallback_to_slow_path_after_fast_path_fails() {
    // A renew lands but its reply is lost: the next compare-and-swap
    // conflicts, the leader reads, sees its own term, and renews on.
    let memory = memory();
    let store = test_store(&memory);
    let t = Timeline::default();
    let a = start(store.clone(), spec("a"), &t);
    wait_until(SEC, || a.elector.is_leader()).await;
    store.set(Fault::LoseNextReply);
    tokio::time::sleep(3 * SEC).await; // the renew at 2 s lands, its reply is lost
    let lost = record(&memory).await;
    tokio::time::sleep(10 * SEC).await;
    // The next compare-and-swap conflicts (the store returns the current
    // record with the conflict); the leader renews on the current version.
    assert!(
        record(&memory).await.renew_time > lost.renew_time,
        "renewing goes on"
    );
    assert!(a.elector.is_leader());
    assert_eq!(
        record(&memory).await.leader_transitions,
        0,
        "still the same term"
    );
    assert_eq!(t.terms().len(), 1);
}

async fn step_down_on(fault: Fault) {
    let memory = memory();
    let store = test_store(&memory);
    let t = Timeline::default();
    let a = start(store.clone(), spec("a"), &t);
    wait_until(SEC, || a.elector.is_leader()).await;
    tokio::time::sleep(Duration::from_millis(500)).await; // last renew at t0 + 0
    store.set(fault);
    wait_until(11 * SEC, || !a.elector.is_leader()).await;
    // is_leader turns off by the clock; the work is told when the task runs.
    wait_until(SEC, || t.terms()[0].end.is_some()).await;
    // No renew succeeded after the acquisition: the term ends exactly
    // renew_deadline after the winning request started.
    let term = t.terms()[0].clone();
    assert_eq!(
        term.end.unwrap() - term.start,
        10 * SEC,
        "{fault:?}: step down at the deadline"
    );
    assert!(t.events().contains(&"a stopped".to_owned()));
    // Losing is not the end: when the store is back, it campaigns again and
    // the new term gets a new token.
    store.set(Fault::Pass);
    wait_until(20 * SEC, || a.elector.is_leader()).await;
    assert_eq!(a.elector.state().fencing_token, Some(1));
}

#[tokio::test(start_paused = true)]
async fn renew_deadline_step_down_when_the_store_fails() {
    step_down_on(Fault::Fail).await;
}

#[tokio::test(start_paused = true)]
async fn renew_deadline_step_down_when_the_store_hangs() {
    step_down_on(Fault::Hang).await;
}

#[tokio::test(start_paused = true)]
async fn validity_counts_from_the_request_start() {
    // Each call takes 1 s to reach the store: acquiring from no object
    // (read, token floor, create, token floor again) takes 4 s, so the term
    // is valid for renew_deadline from the *start* of the winning attempt,
    // i.e. 6 s after the work started, not 10.
    let memory = memory();
    let store = test_store(&memory);
    store.set(Fault::Slow(SEC));
    let t = Timeline::default();
    let a = start(store.clone(), spec("a"), &t);
    wait_until(5 * SEC, || a.elector.is_leader()).await;
    store.set(Fault::Hang);
    wait_until(11 * SEC, || !a.elector.is_leader()).await;
    wait_until(SEC, || t.terms()[0].end.is_some()).await;
    let term = t.terms()[0].clone();
    assert_eq!(term.end.unwrap() - term.start, 6 * SEC);
}

#[tokio::test(start_paused = true)]
async fn release_on_cancel() {
    let store = memory();
    let t = Timeline::default();
    let a = start(Arc::new(store.clone()), spec("a"), &t);
    wait_until(SEC, || a.elector.is_leader()).await;
    a.shutdown.cancel();
    a.task.await.unwrap().unwrap();
    let r = record(&store).await;
    assert!(r.is_free());
    assert_eq!(r.lease_duration, SEC);
    assert_eq!(r.leader_transitions, 0, "release keeps the count");
    assert!(!a.elector.is_leader());
}

#[tokio::test(start_paused = true)]
async fn no_release_without_release_on_cancel() {
    let store = memory();
    let t = Timeline::default();
    let a = start(
        Arc::new(store.clone()),
        Spec {
            release: false,
            ..spec("a")
        },
        &t,
    );
    wait_until(SEC, || a.elector.is_leader()).await;
    a.shutdown.cancel();
    a.task.await.unwrap().unwrap();
    assert_eq!(record(&store).await.holder_identity, "a");
}

#[tokio::test(start_paused = true)]
async fn release_retries_on_conflict() {
    // The last renew's reply is lost, so the release conflicts; it re-reads,
    // sees its own term, and releases on the current version.
    let memory = memory();
    let store = test_store(&memory);
    let t = Timeline::default();
    let a = start(store.clone(), spec("a"), &t);
    wait_until(SEC, || a.elector.is_leader()).await;
    store.set(Fault::LoseNextReply);
    tokio::time::sleep(3 * SEC).await;
    a.shutdown.cancel();
    a.task.await.unwrap().unwrap();
    assert!(record(&memory).await.is_free());
}

#[tokio::test(start_paused = true)]
async fn release_waits_for_the_leaders_work() {
    // kubernetes#87800: the lock is released only after the work returned,
    // and renewed meanwhile, so the successor never overlaps.
    let store = memory();
    let t = Timeline::default();
    let a = start(
        Arc::new(store.clone()),
        Spec {
            drain: 30 * SEC,
            ..spec("a")
        },
        &t,
    );
    wait_until(SEC, || a.elector.is_leader()).await;
    let b = start(Arc::new(store.clone()), spec("b"), &t);
    tokio::time::sleep(SEC).await;
    a.shutdown.cancel();
    tokio::time::sleep(29 * SEC).await;
    assert_eq!(
        record(&store).await.holder_identity,
        "a",
        "held (and renewed) while draining"
    );
    assert!(!b.elector.is_leader());
    a.task.await.unwrap().unwrap();
    wait_until(Duration::from_millis(50), || b.elector.is_leader()).await;
    t.assert_no_overlap();
}

#[tokio::test(start_paused = true)]
async fn callbacks_in_order() {
    let store = memory();
    let t = Timeline::default();
    let a = start(Arc::new(store.clone()), spec("a"), &t);
    wait_until(SEC, || a.elector.is_leader()).await;
    let b = start(Arc::new(store.clone()), spec("b"), &t);
    tokio::time::sleep(10 * SEC).await;
    a.shutdown.cancel();
    a.task.await.unwrap().unwrap();
    wait_until(SEC, || b.elector.is_leader()).await;
    tokio::time::sleep(10 * SEC).await;
    b.shutdown.cancel();
    b.task.await.unwrap().unwrap();
    assert_eq!(
        t.events(),
        vec![
            "a saw a",
            "a started 0",
            "b saw a",
            "a work done",
            "a stopped",
            "b saw b",
            "b started 1",
            "b work done",
            "b stopped",
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn fencing_token_rises_across_successive_leaders() {
    // Hand-offs by release, by crash, and by a step-down after the store
    // failed: each new leader's token is one more.
    let memory = memory();
    let t = Timeline::default();
    let a = start(Arc::new(memory.clone()), spec("a"), &t);
    wait_until(SEC, || a.elector.is_leader()).await;
    let b = start(Arc::new(memory.clone()), spec("b"), &t);
    tokio::time::sleep(SEC).await;
    a.shutdown.cancel(); // release
    a.task.await.unwrap().unwrap();
    wait_until(SEC, || b.elector.is_leader()).await;
    let c_store = test_store(&memory);
    let c = start(c_store.clone(), spec("c"), &t);
    tokio::time::sleep(SEC).await;
    b.task.abort(); // crash: c waits out the lease
    wait_until(20 * SEC, || c.elector.is_leader()).await;
    let d = start(Arc::new(memory.clone()), spec("d"), &t);
    tokio::time::sleep(SEC).await;
    c_store.set(Fault::Fail); // c steps down, d takes over after the lease
    wait_until(20 * SEC, || d.elector.is_leader()).await;
    let tokens: Vec<(String, u64)> = t
        .terms()
        .iter()
        .map(|t| (t.identity.clone(), t.token))
        .collect();
    let expected: Vec<(String, u64)> = [("a", 0), ("b", 1), ("c", 2), ("d", 3)]
        .iter()
        .map(|(i, n)| (i.to_string(), *n))
        .collect();
    assert_eq!(tokens, expected);
    assert_eq!(record(&memory).await.leader_transitions, 3);
}

#[tokio::test(start_paused = true)]
async fn check_fails_only_when_renewing_stalls() {
    // A clock whose timers never fire models a stuck election loop.
    #[derive(Debug)]
    struct StuckClock;
    impl tenure_core::Clock for StuckClock {
        fn now(&self) -> Instant {
            Instant::now()
        }
        fn sleep_until(
            &self,
            _: Instant,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
            Box::pin(std::future::pending())
        }
    }
    let store = memory();
    let t = Timeline::default();
    let healthy = start(Arc::new(store.clone()), spec("healthy"), &t);
    wait_until(SEC, || healthy.elector.is_leader()).await;
    tokio::time::sleep(60 * SEC).await;
    assert_eq!(healthy.elector.check(Duration::ZERO), Ok(()));
    healthy.shutdown.cancel();
    healthy.task.await.unwrap().unwrap();

    let stuck = start(
        Arc::new(store.clone()),
        Spec {
            clock: Some(Arc::new(StuckClock)),
            ..spec("stuck")
        },
        &t,
    );
    wait_until(SEC, || stuck.elector.is_leader()).await;
    tokio::time::sleep(16 * SEC).await;
    assert_eq!(
        stuck.elector.check(2 * SEC),
        Ok(()),
        "within lease + tolerance"
    );
    tokio::time::sleep(2 * SEC).await;
    let err = stuck.elector.check(2 * SEC).unwrap_err();
    assert!(err.to_string().contains("failed to renew"), "{err}");
    // A follower is always healthy.
    let follower = start(Arc::new(store.clone()), spec("f"), &t);
    tokio::time::sleep(SEC).await;
    assert_eq!(follower.elector.check(Duration::ZERO), Ok(()));
}

#[tokio::test(start_paused = true)]
async fn validation_errors_are_typed() {
    use tenure_core::{ConfigError, LeaderElector};
    let store: Arc<dyn LockStore> = Arc::new(memory());
    let build = |lease: u64, renew: u64, retry: u64, id: &str| {
        LeaderElector::builder(store.clone(), id)
            .lease_duration(Duration::from_millis(lease))
            .renew_deadline(Duration::from_millis(renew))
            .retry_period(Duration::from_millis(retry))
            .build()
            .map(|_| ())
    };
    assert_eq!(build(15_000, 10_000, 2_000, "a"), Ok(()));
    assert_eq!(
        build(15_000, 10_000, 2_000, ""),
        Err(ConfigError::EmptyIdentity)
    );
    assert!(matches!(
        build(10_000, 10_000, 2_000, "a"),
        Err(ConfigError::LeaseNotAboveRenew { .. })
    ));
    assert!(matches!(
        build(15_000, 2_400, 2_000, "a"),
        Err(ConfigError::RenewNotAboveRetry { .. })
    ));
    assert_eq!(
        build(15_000, 10_000, 0, "a"),
        Err(ConfigError::Zero("retry_period"))
    );
}

#[tokio::test(start_paused = true)]
async fn skew_rate_two_times_fast_clock_never_overlaps() {
    // lease 60 s / renew deadline 30 s tolerates a clock running up to 2×
    // fast. Hand the lock back and forth through store failures both ways.
    let timing = Timing {
        lease: 60,
        renew: 30,
        retry: 5,
    };
    let memory = memory();
    let t = Timeline::default();
    let fast_store = test_store(&memory);
    let slow_store = test_store(&memory);
    let fast = start(
        fast_store.clone(),
        Spec {
            timing,
            clock: Some(Arc::new(tenure_core::testing::ScaledClock::new(2.0))),
            ..spec("fast")
        },
        &t,
    );
    wait_until(SEC, || fast.elector.is_leader()).await;
    let slow = start(
        slow_store.clone(),
        Spec {
            timing,
            ..spec("slow")
        },
        &t,
    );
    for round in 0..4 {
        let (leader_store, next) = if round % 2 == 0 {
            (&fast_store, &slow)
        } else {
            (&slow_store, &fast)
        };
        tokio::time::sleep(20 * SEC).await;
        leader_store.set(Fault::Hang);
        wait_until(120 * SEC, || next.elector.is_leader()).await;
        leader_store.set(Fault::Pass);
        t.assert_no_overlap();
    }
    assert_eq!(t.terms().len(), 5);
}

#[tokio::test(start_paused = true)]
async fn followers_with_a_watch_do_not_poll() {
    // Every renew reaches followers on the watch and pushes their expiry
    // back, so they read only at start-up; without a watch they poll every
    // retry period (plus jitter).
    let memory = memory();
    let t = Timeline::default();
    let leader = start(Arc::new(memory.clone()), spec("leader"), &t);
    wait_until(SEC, || leader.elector.is_leader()).await;
    let watching = test_store(&memory);
    let polling = test_store_without_watch(&memory);
    let _w = start(watching.clone(), spec("watching"), &t);
    let _p = start(polling.clone(), spec("polling"), &t);
    tokio::time::sleep(60 * SEC).await;
    let (watch_gets, _, watch_updates) = watching.calls();
    let (poll_gets, _, _) = polling.calls();
    assert!(
        watch_gets <= 2 && watch_updates == 0,
        "watching follower read {watch_gets} times"
    );
    assert!(
        (13..=31).contains(&poll_gets),
        "polling follower read {poll_gets} times in 60 s"
    );
    // Crash the leader: the watching follower still takes over one lease
    // after the last renew it saw.
    leader.task.abort();
    let crashed = Instant::now();
    wait_until(20 * SEC, || {
        _w.elector.is_leader() || _p.elector.is_leader()
    })
    .await;
    assert!(crashed.elapsed() <= 15 * SEC + Duration::from_millis(20));
}

#[tokio::test(start_paused = true)]
async fn a_new_incarnation_waits_out_its_own_identitys_record() {
    // A record with our identity that this process did not write may belong
    // to a live twin (a force-restarted pod): wait the lease like any holder.
    let store = memory();
    store.create(&held("a", 15, 4)).await.unwrap();
    let t = Timeline::default();
    let a = start(Arc::new(store.clone()), spec("a"), &t);
    tokio::time::sleep(14 * SEC).await;
    assert!(!a.elector.is_leader());
    wait_until(2 * SEC, || a.elector.is_leader()).await;
    assert_eq!(record(&store).await.leader_transitions, 5, "a new term");
}

#[tokio::test(start_paused = true)]
async fn a_failing_store_after_expiry_is_retried_at_the_poll_rate() {
    let memory = memory();
    memory.create(&held("gone", 15, 1)).await.unwrap();
    let store = test_store(&memory);
    let t = Timeline::default();
    let a = start(store.clone(), spec("a"), &t);
    tokio::time::sleep(SEC).await;
    store.set(Fault::Fail);
    let before = store.attempts();
    tokio::time::sleep(40 * SEC).await; // the lease expires at 15 s
    let tries = store.attempts() - before;
    assert!(
        tries <= 45,
        "{tries} calls in 40 s: a retry loop without a pause"
    );
    store.set(Fault::Pass);
    wait_until(5 * SEC, || a.elector.is_leader()).await;
}

#[tokio::test(start_paused = true)]
async fn preemption_still_happens_when_the_first_attempt_failed() {
    let memory = memory();
    let t = Timeline::default();
    let low = start(
        Arc::new(memory.clone()),
        Spec {
            key: "1",
            ..spec("low")
        },
        &t,
    );
    wait_until(SEC, || low.elector.is_leader()).await;
    let store = test_store(&memory);
    store.set(Fault::Fail);
    let high = start(
        store.clone(),
        Spec {
            key: "2",
            preempt_below: Some("2"),
            ..spec("high")
        },
        &t,
    );
    tokio::time::sleep(3 * SEC).await;
    store.set(Fault::Pass);
    wait_until(6 * SEC, || high.elector.is_leader()).await;
    wait_until(SEC, || !low.elector.is_leader()).await;
}

#[tokio::test(start_paused = true)]
async fn a_panicking_work_ends_the_term_and_releases() {
    use tenure_core::{CancellationToken, ElectionError, LeaderElector};
    let store = memory();
    let elector = LeaderElector::builder(Arc::new(store.clone()), "a")
        .build()
        .unwrap();
    let run = elector.run(CancellationToken::new(), |_| async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        panic!("controller bug");
    });
    match run.await {
        Err(ElectionError::WorkPanicked(msg)) => {
            assert!(msg.contains("controller bug") || !msg.is_empty())
        }
        other => panic!("expected WorkPanicked, got {other:?}"),
    }
    assert!(
        record(&store).await.is_free(),
        "released for healthy candidates"
    );
    assert!(!elector.is_leader());
}

#[tokio::test(start_paused = true)]
async fn drain_timeout_abandons_the_lock_without_releasing() {
    use tenure_core::{CancellationToken, LeaderElector};
    let store = memory();
    let elector = LeaderElector::builder(Arc::new(store.clone()), "a")
        .drain_timeout(5 * SEC)
        .build()
        .unwrap();
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let began = Instant::now();
    let run = elector.run(shutdown, move |_| {
        let stop = stop.clone();
        async move {
            stop.cancel();
            std::future::pending::<()>().await; // ignores cancellation
        }
    });
    run.await.unwrap();
    assert_eq!(began.elapsed(), 5 * SEC);
    assert_eq!(
        record(&store).await.holder_identity,
        "a",
        "never released early"
    );
    assert!(!elector.is_leader());
}

#[tokio::test(start_paused = true)]
async fn without_reacquire_a_lost_term_is_an_error() {
    use tenure_core::{CancellationToken, ElectionError, LeaderElector};
    let memory = memory();
    let store = test_store(&memory);
    let elector = LeaderElector::builder(store.clone(), "a")
        .reacquire(false)
        .build()
        .unwrap();
    let failing = store.clone();
    let run = elector.run(CancellationToken::new(), move |l| {
        let failing = failing.clone();
        async move {
            failing.set(Fault::Fail);
            l.cancelled().await;
        }
    });
    assert!(matches!(run.await, Err(ElectionError::LeadershipLost)));
}

#[tokio::test(start_paused = true)]
async fn dropping_run_clears_the_leader_state() {
    use tenure_core::{CancellationToken, LeaderElector};
    let store = memory();
    let stopped = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stopped.clone();
    let elector = LeaderElector::builder(Arc::new(store.clone()), "a")
        .on_stopped_leading(move || flag.store(true, std::sync::atomic::Ordering::SeqCst))
        .build()
        .unwrap();
    let run = elector.run(
        CancellationToken::new(),
        |l| async move { l.cancelled().await },
    );
    let _ = tokio::time::timeout(5 * SEC, run).await; // dropped mid-term
    assert!(!elector.is_leader());
    assert_eq!(elector.state().fencing_token, None);
    assert!(stopped.load(std::sync::atomic::Ordering::SeqCst));
}

#[tokio::test(start_paused = true)]
async fn shutdown_during_a_winning_attempt_releases_what_it_won() {
    use tenure_core::{CancellationToken, LeaderElector};
    let memory = memory();
    let store = test_store(&memory);
    store.set(Fault::Slow(SEC)); // get lands at 1 s, the create at 2 s
    let elector = LeaderElector::builder(store.clone(), "a").build().unwrap();
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        stop.cancel();
    });
    let started = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = started.clone();
    elector
        .run(shutdown, move |_| {
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
            async {}
        })
        .await
        .unwrap();
    assert!(
        !started.load(std::sync::atomic::Ordering::SeqCst),
        "no work after shutdown"
    );
    assert!(
        record(&memory).await.is_free(),
        "what the attempt won is released"
    );
}

/// client-go's `RecordEvent`: the store is told "became leader" when a term
/// starts and "stopped leading" when it ends, however it ends (lost, or shut
/// down), once each, while the store fails (recording never fails).
#[tokio::test(start_paused = true)]
async fn the_store_is_told_of_each_term_start_and_end_once() {
    use tenure_core::LeaderEvent::{BecameLeader, Campaigning, StoppedLeading};
    let memory = memory();
    let store = test_store(&memory);
    let t = Timeline::default();
    let a = start(store.clone(), spec("a"), &t);
    wait_until(SEC, || a.elector.is_leader()).await;
    let a_ = || "a".to_owned();
    assert_eq!(store.events(), [(a_(), Campaigning), (a_(), BecameLeader)]);
    // A lost term (the store fails until the renew deadline passes).
    store.set(Fault::Fail);
    wait_until(11 * SEC, || !a.elector.is_leader()).await;
    wait_until(SEC, || store.events().len() == 3).await;
    store.set(Fault::Pass);
    wait_until(20 * SEC, || a.elector.is_leader()).await;
    // Then a shutdown.
    a.shutdown.cancel();
    a.task.await.unwrap().unwrap();
    let said: Vec<_> = store
        .events()
        .into_iter()
        .map(|(who, e)| (who, e.as_str()))
        .collect();
    assert_eq!(
        said,
        [
            (a_(), "started campaigning"),
            (a_(), "became leader"),
            (a_(), "stopped leading"),
            (a_(), "became leader"),
            (a_(), "stopped leading"),
        ]
    );
    assert_eq!(store.events()[4].1, StoppedLeading);
}
