//! The chaos quick mix that CI runs: every fault twice (two cycles, each in
//! a seeded order) on redis-server and on etcd, with real `tenure run`
//! processes. The harness exits 1 when a
//! stale write was accepted, when two terms overlapped within the skew
//! tolerance, when tokens did not rise, or when a clock skew beyond the
//! tolerance produced *no* overlap (the oracle would be blind).

use std::path::PathBuf;
use std::process::Command;

fn harness() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tenure-chaos"))
}

fn quick_mix(store: &str) {
    let tenure = harness().with_file_name("tenure");
    assert!(
        tenure.exists(),
        "no tenure binary at {} (cargo build -p tenure-cli)",
        tenure.display()
    );
    let out = Command::new(harness())
        .args(["run", "--store", store, "--rounds", "18", "--seed", "7"])
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
    assert!(report.contains("| skew-x0.5-cut-off |"), "{report}");
}

#[test]
fn chaos_quick_mix_on_redis() {
    quick_mix("redis");
}

#[test]
fn chaos_quick_mix_on_etcd() {
    quick_mix("etcd");
}

#[test]
fn chaos_quick_mix_on_an_etcd_cluster() {
    // One cycle (every fault once, the raft leader's death among them) on
    // three etcd members.
    let tenure = harness().with_file_name("tenure");
    let out = Command::new(harness())
        .args([
            "run",
            "--store",
            "etcd-cluster",
            "--rounds",
            "10",
            "--seed",
            "7",
        ])
        .args(["--tenure".as_ref(), tenure.as_os_str()])
        .output()
        .expect("run the chaos harness");
    let report = String::from_utf8_lossy(&out.stdout);
    let errors = String::from_utf8_lossy(&out.stderr);
    eprintln!("{report}{errors}");
    assert!(
        out.status.success(),
        "chaos quick mix on the etcd cluster failed:\n{report}{errors}"
    );
    assert!(report.contains("| raft-leader-kill |"), "{report}");
}
