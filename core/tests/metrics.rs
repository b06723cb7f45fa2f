//! The leader gauge `leader_election_master_status{name}` follows leadership.

mod common;

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

#[tokio::test(start_paused = true)]
async fn leader_gauge_follows_leadership() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();

    let memory = MemoryStore::new("gauge").unwrap();
    let store = test_store(&memory);
    let t = Timeline::default();
    let a = start(store.clone(), spec("a"), &t);
    wait_until(Duration::from_secs(1), || a.elector.is_leader()).await;
    assert_eq!(gauge(&snapshotter, "memory://gauge"), Some(1.0));
    store.set(Mode::Fail);
    wait_until(Duration::from_secs(11), || !a.elector.is_leader()).await;
    assert_eq!(gauge(&snapshotter, "memory://gauge"), Some(0.0));
}
