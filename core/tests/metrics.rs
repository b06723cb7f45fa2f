//! What the engine reports through `metrics` (the leader gauge
//! `leader_election_master_status{name}`, terms, holder changes, renew
//! times, slow renews, store errors), and the state it publishes.

mod common;

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use common::*;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use tenure_core::MemoryStore;
use tenure_core::metrics::{
    LEADER_CHANGES, LEADER_GAUGE, RENEW_SECONDS, SLOW_RENEWS, STORE_ERRORS, TERMS,
};

/// Every series now: gauges and counters as they are, histograms as the
/// number of samples recorded since the start. A snapshot drains the
/// recorder's histogram samples, and the tests of this file run in
/// parallel against the process's one recorder, so the counts are kept
/// here across every test's snapshots.
fn series(snapshotter: &Snapshotter) -> Vec<(metrics::Key, DebugValue)> {
    static SAMPLES: Mutex<BTreeMap<String, usize>> = Mutex::new(BTreeMap::new());
    let mut samples = SAMPLES.lock().unwrap_or_else(|e| e.into_inner());
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let key = key.key().clone();
            let value = match value {
                DebugValue::Histogram(new) => {
                    let seen = samples.entry(format!("{key:?}")).or_default();
                    *seen += new.len();
                    DebugValue::Counter(*seen as u64)
                }
                other => other,
            };
            (key, value)
        })
        .collect()
}

fn gauge(snapshotter: &Snapshotter, name: &str) -> Option<f64> {
    series(snapshotter).into_iter().find_map(|(key, value)| {
        let labelled = key.labels().any(|l| l.key() == "name" && l.value() == name);
        match value {
            DebugValue::Gauge(v) if key.name() == LEADER_GAUGE && labelled => Some(v.into_inner()),
            _ => None,
        }
    })
}

/// The process's one recorder (a recorder is installed once per process;
/// each test reads its own lock's gauge).
fn snapshotter() -> &'static Snapshotter {
    static SNAPSHOTTER: OnceLock<Snapshotter> = OnceLock::new();
    SNAPSHOTTER.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder.install().unwrap();
        snapshotter
    })
}

#[tokio::test(start_paused = true)]
async fn leader_gauge_follows_leadership() {
    let snapshotter = snapshotter();
    let memory = MemoryStore::new("gauge").unwrap();
    let store = test_store(&memory);
    let t = Timeline::default();
    let a = start(store.clone(), spec("a"), &t);
    wait_until(Duration::from_secs(1), || a.elector.is_leader()).await;
    assert_eq!(gauge(snapshotter, "memory://gauge"), Some(1.0));
    store.set(Fault::Fail);
    wait_until(Duration::from_secs(11), || !a.elector.is_leader()).await;
    // is_leader reads the clock; the gauge is set when the task runs next.
    wait_until(Duration::from_millis(100), || {
        gauge(snapshotter, "memory://gauge") == Some(0.0)
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn leader_gauge_turns_off_when_validity_ends_not_when_the_release_lands() {
    // A release can take up to `renew_deadline`; the gauge must not report
    // a leader meanwhile, when `is_leader` is already false.
    let snapshotter = snapshotter();
    let memory = MemoryStore::new("gauge-release").unwrap();
    let store = test_store(&memory);
    let t = Timeline::default();
    let a = start(store.clone(), spec("a"), &t);
    wait_until(Duration::from_secs(1), || a.elector.is_leader()).await;
    assert_eq!(gauge(snapshotter, "memory://gauge-release"), Some(1.0));
    store.set(Fault::Slow(Duration::from_secs(2)));
    a.shutdown.cancel();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(!a.elector.is_leader());
    assert_eq!(
        gauge(snapshotter, "memory://gauge-release"),
        Some(0.0),
        "the gauge still says leading 10 ms after the shutdown"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(record(&memory).await.is_free(), "released after the delay");
}

/// The value of counter `metric` for lock `name` with every label of
/// `labels` (0 when never counted), or the number of samples of histogram
/// `metric`.
fn count(snapshotter: &Snapshotter, metric: &str, name: &str, labels: &[(&str, &str)]) -> u64 {
    series(snapshotter)
        .into_iter()
        .filter_map(|(key, value)| {
            let has = |k: &str, v: &str| key.labels().any(|l| l.key() == k && l.value() == v);
            if key.name() != metric || !has("name", name) || !labels.iter().all(|(k, v)| has(k, v))
            {
                return None;
            }
            match value {
                DebugValue::Counter(n) => Some(n),
                _ => None,
            }
        })
        .sum()
}

#[tokio::test(start_paused = true)]
async fn terms_renews_and_store_errors_are_counted() {
    let snapshotter = snapshotter();
    let lock = "memory://counted";
    let memory = MemoryStore::new("counted").unwrap();
    let store = test_store(&memory);
    let t = Timeline::default();
    let a = start(store.clone(), spec("a"), &t);
    wait_until(Duration::from_secs(1), || a.elector.is_leader()).await;
    assert_eq!(count(snapshotter, TERMS, lock, &[]), 1);
    assert_eq!(
        count(snapshotter, LEADER_CHANGES, lock, &[]),
        1,
        "a observed itself"
    );
    // Retry period 2 s: a renew at 2 s, 4 s, 6 s.
    tokio::time::sleep(Duration::from_millis(6_500)).await;
    assert_eq!(
        count(snapshotter, RENEW_SECONDS, lock, &[("result", "ok")]),
        3
    );
    assert_eq!(count(snapshotter, STORE_ERRORS, lock, &[]), 0);
    store.set(Fault::Fail);
    wait_until(Duration::from_secs(11), || !a.elector.is_leader()).await;
    let failed = count(snapshotter, RENEW_SECONDS, lock, &[("result", "error")]);
    assert!(failed >= 2, "{failed} failed renews timed");
    assert!(
        count(
            snapshotter,
            STORE_ERRORS,
            lock,
            &[("op", "update"), ("kind", "unavailable")]
        ) >= failed,
        "each failed renew is a store error"
    );
    assert_eq!(count(snapshotter, SLOW_RENEWS, lock, &[]), 0);
}

#[tokio::test(start_paused = true)]
async fn a_renew_whose_reply_was_lost_takes_the_slow_path_once() {
    let snapshotter = snapshotter();
    let lock = "memory://slow-path";
    let memory = MemoryStore::new("slow-path").unwrap();
    let store = test_store(&memory);
    let t = Timeline::default();
    let a = start(store.clone(), spec("a"), &t);
    wait_until(Duration::from_secs(1), || a.elector.is_leader()).await;
    // The next renew lands, its reply is lost: the one after it misses its
    // compare-and-swap, reads the record, finds it still ours and renews.
    store.set(Fault::LoseNextReply);
    tokio::time::sleep(Duration::from_millis(6_500)).await;
    assert!(a.elector.is_leader(), "the term survives a lost reply");
    assert_eq!(count(snapshotter, SLOW_RENEWS, lock, &[]), 1);
    assert_eq!(
        count(snapshotter, STORE_ERRORS, lock, &[("kind", "unavailable")]),
        1
    );
    assert_eq!(
        count(snapshotter, STORE_ERRORS, lock, &[("kind", "conflict")]),
        1,
        "the slow path began with a missed compare-and-swap"
    );
    assert_eq!(count(snapshotter, TERMS, lock, &[]), 1);
}

#[tokio::test(start_paused = true)]
async fn followers_see_the_term_start_and_transitions() {
    let memory = MemoryStore::new("state").unwrap();
    let store = test_store(&memory);
    let t = Timeline::default();
    let a = start(store.clone(), spec("a"), &t);
    wait_until(Duration::from_secs(1), || a.elector.is_leader()).await;
    let b = start(store.clone(), spec("b"), &t);
    wait_until(Duration::from_secs(3), || {
        b.elector.state().leader.as_deref() == Some("a")
    })
    .await;
    let held = record(&memory).await;
    for (who, state) in [("a", a.elector.state()), ("b", b.elector.state())] {
        assert_eq!(state.acquire_time, held.acquire_time, "{who}");
        assert!(state.acquire_time.is_some(), "{who}");
        assert_eq!(
            state.leader_transitions,
            Some(held.leader_transitions),
            "{who}"
        );
    }
    assert_eq!(
        a.elector.state().fencing_token,
        Some(held.leader_transitions)
    );
    assert_eq!(b.elector.state().fencing_token, None);
    // a steps down and releases: b takes over with the next token, and both
    // see the new term.
    a.shutdown.cancel();
    wait_until(Duration::from_secs(5), || b.elector.is_leader()).await;
    let now = record(&memory).await;
    assert_eq!(now.leader_transitions, held.leader_transitions + 1);
    assert_eq!(
        b.elector.state().leader_transitions,
        Some(now.leader_transitions)
    );
    assert_eq!(b.elector.state().acquire_time, now.acquire_time);
    assert_ne!(now.acquire_time, held.acquire_time);
}

#[tokio::test(start_paused = true)]
async fn the_validity_receiver_is_told_of_each_renew_and_of_the_end() {
    use tenure_core::{CancellationToken, LeaderElector};
    let memory = MemoryStore::new("validity").unwrap();
    let elector = LeaderElector::builder(memory, "a").build().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn({
        let (elector, shutdown) = (elector.clone(), shutdown.clone());
        async move {
            elector
                .run(shutdown, move |leadership| {
                    let _ = tx.send(leadership.clone());
                    async move { leadership.cancelled().await }
                })
                .await
        }
    });
    let leadership = rx.recv().await.unwrap();
    let mut validity = leadership.validity();
    let first = *validity.borrow_and_update();
    assert_eq!(first, leadership.valid_until());
    // The first renew is one retry period (2 s) in: the receiver wakes then,
    // with the term 2 s longer.
    let woke = tokio::time::timeout(Duration::from_secs(3), validity.changed()).await;
    assert!(woke.is_ok(), "no change within 3 s");
    let renewed = *validity.borrow_and_update();
    assert_eq!(renewed - first, Duration::from_secs(2));
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(1), validity.changed())
        .await
        .expect("told of the end")
        .unwrap();
    assert!(*validity.borrow() <= tokio::time::Instant::now());
    task.await.unwrap().unwrap();
}
