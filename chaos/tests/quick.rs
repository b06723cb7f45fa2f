//! The chaos quick mix that CI runs, with real `tenure run` processes: two
//! cycles of every fault (each cycle in a seeded order; with the stores in
//! containers, `store-partition` is one) on redis-server and on etcd, and
//! one on a three-member etcd cluster and on a real kube-apiserver with
//! client-go's and Istio's electors among the candidates (every other round
//! strikes a Go leader); and one cycle of library candidates (a
//! `LeaderElector` in each process) on redis-server. The harness exits 1
//! when a stale write was accepted, when two terms overlapped within the
//! skew tolerance, when tokens did not rise, when a `tenure run` exited by
//! itself, or when a clock skew beyond the tolerance produced *no* overlap
//! (the oracle would be blind).

use std::path::PathBuf;
use std::process::Command;

use std::time::{Duration, Instant};
use tenure_conformance::fixtures::container::{Way, way};

fn harness() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tenure-chaos"))
}

/// The most a quick mix may take; a stuck run is killed and fails.
const LIMIT: Duration = Duration::from_secs(240);

/// Runs `rounds` rounds on `store`; the report must name `fault`. The
/// harness's per-round lines go to stderr as they happen (shown on failure).
fn quick_mix(store: &str, candidates: &str, rounds: &str, fault: &str) -> String {
    // One mix at a time, also under `cargo test` (nextest has a test group
    // for this): the mixes' timing must not compete for two cores.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let tenure = harness().with_file_name("tenure");
    assert!(
        tenure.exists(),
        "no tenure binary at {} (cargo build -p tenure-cli)",
        tenure.display()
    );
    let report_path = std::env::temp_dir().join(format!(
        "tenure-chaos-quick-{store}-{}.md",
        std::process::id()
    ));
    let report_file = std::fs::File::create(&report_path).expect("create the report file");
    let mut child = Command::new(harness())
        .args(["run", "--store", store, "--candidates", candidates])
        .args(["--rounds", rounds, "--seed", "7"])
        .args(["--tenure".as_ref(), tenure.as_os_str()])
        .stdout(report_file)
        .spawn()
        .expect("run the chaos harness");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the harness") {
            break Some(status);
        }
        if started.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let report = std::fs::read_to_string(&report_path).unwrap_or_default();
    let _ = std::fs::remove_file(&report_path);
    eprintln!("{report}");
    let status = status.unwrap_or_else(|| {
        panic!("chaos quick mix on {store} still running after {LIMIT:?}:\n{report}")
    });
    assert!(
        status.success(),
        "chaos quick mix on {store} failed ({status}):\n{report}"
    );
    assert!(report.contains(&format!("| {fault} |")), "{report}");
    // With the stores in containers, their network is cut too.
    if !store.starts_with("k8s") && way() == Way::Container {
        assert!(report.contains("| store-partition |"), "{report}");
    }
    report
}

#[test]
fn chaos_quick_mix_on_redis() {
    quick_mix("redis", "cli", "20", "skew-x0.5-cut-off");
}

#[test]
fn chaos_quick_mix_on_etcd() {
    quick_mix("etcd", "cli", "20", "skew-x0.5-cut-off");
}

#[test]
fn chaos_quick_mix_on_an_etcd_cluster() {
    quick_mix("etcd-cluster", "cli", "11", "raft-leader-kill");
}

/// The real kube-apiserver (`scripts/kube-apiserver-up.sh`, built once and
/// cached) on an etcd of its own, both faulted; two `tenure run`
/// candidates, client-go's and Istio's electors (`interop/electors`).
#[test]
fn chaos_quick_mix_on_a_real_kube_apiserver_with_go_electors() {
    let report = quick_mix("k8s", "mixed", "11", "kube-etcd-restart");
    // The mix proves something about Go peers only if Go electors led and
    // were struck: the column "rounds led by Go" sums above zero.
    let go_led: usize = report
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| fault"))
        .filter_map(|l| l.split('|').nth(10)?.trim().parse::<usize>().ok())
        .sum();
    assert!(go_led > 0, "no round struck a Go leader:\n{report}");
}

#[test]
fn chaos_quick_mix_of_library_candidates_on_redis() {
    quick_mix("redis", "library", "10", "skew-x0.5-cut-off");
}

/// `tenure shard`: three replicas, eight shards, on redis-server and on
/// etcd; two cycles of kill -9, SIGSTOP and SIGTERM (`tenure-chaos
/// shards`). The harness exits 1 on a stale write accepted on any shard,
/// two terms of one shard overlapping, a shard left without a command past
/// the bound, or a SIGTERM exit other than 0.
fn shard_mix(store: &str) {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let tenure = harness().with_file_name("tenure");
    assert!(
        tenure.exists(),
        "no tenure binary at {} (cargo build -p tenure-cli)",
        tenure.display()
    );
    let out = Command::new(harness())
        .args(["shards", "--store", store, "--rounds", "6", "--seed", "7"])
        .args(["--tenure".as_ref(), tenure.as_os_str()])
        .output()
        .expect("run the chaos harness");
    let report = String::from_utf8_lossy(&out.stdout);
    eprintln!("{report}");
    assert!(
        out.status.success(),
        "shard mix on {store} failed:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        report.contains("stale writes accepted: 0; overlapping terms: 0"),
        "{report}"
    );
    for fault in ["kill-9", "sigstop", "sigterm"] {
        assert!(report.contains(&format!("| {fault} |")), "{report}");
    }
}

#[test]
fn chaos_shard_mix_on_redis() {
    shard_mix("redis");
}

#[test]
fn chaos_shard_mix_on_etcd() {
    shard_mix("etcd");
}
