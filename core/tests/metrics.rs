//! The leader gauge `leader_election_master_status{name}` follows leadership.

mod common;

use std::sync::OnceLock;
use std::time::Duration;

use common::*;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use tenure_core::MemoryStore;
use tenure_core::metrics::LEADER_GAUGE;

fn gauge(snapshotter: &Snapshotter, name: &str) -> Option<f64> {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .find_map(|(key, _, _, value)| {
            let key = key.key();
            let labelled = key.labels().any(|l| l.key() == "name" && l.value() == name);
            match value {
                DebugValue::Gauge(v) if key.name() == LEADER_GAUGE && labelled => {
                    Some(v.into_inner())
                }
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
