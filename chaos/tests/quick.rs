//! The chaos quick mix that CI runs, with real `tenure run` processes: two
//! cycles of every fault (each cycle in a seeded order) on redis-server and
//! on etcd, and one on a three-member etcd cluster. The harness exits 1
//! when a stale write was accepted, when two terms overlapped within the
//! skew tolerance, when tokens did not rise, when a `tenure run` exited by
//! itself, or when a clock skew beyond the tolerance produced *no* overlap
//! (the oracle would be blind).

use std::path::PathBuf;
use std::process::Command;

fn harness() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tenure-chaos"))
}

/// Runs `rounds` rounds on `store`; the report must name `fault`.
fn quick_mix(store: &str, rounds: &str, fault: &str) {
    let tenure = harness().with_file_name("tenure");
    assert!(
        tenure.exists(),
        "no tenure binary at {} (cargo build -p tenure-cli)",
        tenure.display()
    );
    let out = Command::new(harness())
        .args(["run", "--store", store, "--rounds", rounds, "--seed", "7"])
        .args(["--tenure".as_ref(), tenure.as_os_str()])
        .output()
        .expect("run the chaos harness");
    let report = String::from_utf8_lossy(&out.stdout);
    let errors = String::from_utf8_lossy(&out.stderr);
    eprintln!("{report}{errors}");
    assert!(
        out.status.success(),
        "chaos quick mix on {store} failed:\n{report}{errors}"
    );
    assert!(report.contains(&format!("| {fault} |")), "{report}");
}

#[test]
fn chaos_quick_mix_on_redis() {
    quick_mix("redis", "18", "skew-x0.5-cut-off");
}

#[test]
fn chaos_quick_mix_on_etcd() {
    quick_mix("etcd", "18", "skew-x0.5-cut-off");
}

#[test]
fn chaos_quick_mix_on_an_etcd_cluster() {
    quick_mix("etcd-cluster", "10", "raft-leader-kill");
}
