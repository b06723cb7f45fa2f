//! `tenure run --http`: the sidecar's endpoints in each state (leading,
//! following, stepping down, the store unreachable, waiting for the
//! store), and `--log-format json`. Memory locks where one process is
//! enough; a real redis-server where two candidates share a lock or the
//! store must go away.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use tenure_conformance::fixtures::redis::{RedisServer, RedisServerOptions};

mod common;
use common::TIMING;
use common::served::Served;

#[test]
fn http_endpoints_of_a_leader() {
    let a = &mut Served::start(&[
        "run",
        "--lock",
        "memory://served",
        "--identity",
        "pod-a",
        "--http",
        "127.0.0.1:0",
        "--ready",
        "leader",
        "--",
        "sleep",
        "30",
    ]);
    a.wait_for("elected leader", Duration::from_secs(10));
    assert_eq!(a.get("/healthz"), (200, "ok\n".to_owned()));
    assert_eq!(a.get("/readyz").0, 200, "ready while leading");
    let leader = a.leader();
    assert_eq!(leader["identity"], "pod-a");
    assert_eq!(leader["leader"], "pod-a");
    assert_eq!(leader["isLeader"], true);
    assert_eq!(leader["fencingToken"], 0);
    assert_eq!(leader["leaseTransitions"], 0);
    assert_eq!(leader["lock"], "memory://served");
    let start = leader["termStart"].as_str().expect("a term start");
    let start = chrono::DateTime::parse_from_rfc3339(start).unwrap();
    let age = chrono::Utc::now().signed_duration_since(start);
    assert!(
        age >= chrono::TimeDelta::zero() && age < chrono::TimeDelta::seconds(20),
        "term started {age} ago"
    );
    let lock = "name=\"memory://served\"";
    assert_eq!(a.metric("leader_election_master_status", &[lock]), 1.0);
    assert_eq!(a.metric("tenure_terms_total", &[lock]), 1.0);
    // The first renew is 2 s (the retry period) after the term began.
    let deadline = Instant::now() + Duration::from_secs(10);
    while a
        .samples(
            "tenure_renew_duration_seconds_count",
            &[lock, "result=\"ok\""],
        )
        .is_err()
    {
        assert!(Instant::now() < deadline, "no renew timed in 10 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    // A histogram, with buckets, not a summary.
    assert!(
        a.metric(
            "tenure_renew_duration_seconds_bucket",
            &[lock, "le=\"+Inf\""]
        ) >= 1.0
    );
    assert_eq!(a.get("/nowhere").0, 404);
}

/// A follower is healthy, not ready with `--ready leader`, and names the
/// leader, its term start and transitions as the leader does.
#[test]
fn http_endpoints_of_a_follower() {
    let server = RedisServer::local(RedisServerOptions::default());
    let url = format!("{}/cli-http", server.url().trim_end_matches('/'));
    let mut a = Served::start(
        &[
            &["run", "--lock", &url, "--identity", "a"][..],
            &TIMING,
            &["--http", "127.0.0.1:0", "--", "sleep", "60"],
        ]
        .concat(),
    );
    a.wait_for("elected leader", Duration::from_secs(10));
    let mut b = Served::start(
        &[
            &["run", "--lock", &url, "--identity", "b"][..],
            &TIMING,
            &["--http", "127.0.0.1:0", "--ready", "leader", "--", "true"],
        ]
        .concat(),
    );
    b.wait_for("leader is a", Duration::from_secs(10));
    assert_eq!(
        b.get("/healthz"),
        (200, "ok\n".to_owned()),
        "a follower is healthy"
    );
    assert_eq!(b.get("/readyz"), (503, "not leading\n".to_owned()));
    let (seen, held) = (b.leader(), a.leader());
    assert_eq!(
        (seen["leader"].as_str(), seen["isLeader"].as_bool()),
        (Some("a"), Some(false))
    );
    assert!(seen["fencingToken"].is_null());
    assert!(seen["termStart"].is_string());
    assert_eq!(seen["termStart"], held["termStart"]);
    assert_eq!(seen["leaseTransitions"], held["fencingToken"]);
    let lock = format!("name=\"{}\"", seen["lock"].as_str().unwrap());
    assert_eq!(b.metric("leader_election_master_status", &[&lock]), 0.0);
    assert_eq!(a.metric("leader_election_master_status", &[&lock]), 1.0);
    drop(a);
    // a released: b takes over with the next token.
    b.wait_for("elected leader", Duration::from_secs(10));
    assert_eq!(b.get("/readyz").0, 200);
    let now = b.leader();
    assert_eq!(now["leader"], "b");
    assert_eq!(
        now["leaseTransitions"],
        seen["leaseTransitions"].as_u64().unwrap() + 1
    );
    assert_ne!(now["termStart"], seen["termStart"]);
}

/// While the command drains after SIGTERM, the candidate is stepping
/// down: it still leads (it renews until the command is gone, so nobody
/// else can start the work meanwhile), and it is healthy, so a liveness
/// probe cannot kill a pod that is releasing.
#[test]
fn http_endpoints_while_stepping_down() {
    let a = &mut Served::start(&[
        "run",
        "--lock",
        "memory://stepping-down",
        "--identity",
        "a",
        "--http",
        "127.0.0.1:0",
        "--ready",
        "leader",
        "--grace",
        "5s",
        "--",
        "sh",
        "-c",
        "trap '' TERM; sleep 30",
    ]);
    a.wait_for("elected leader", Duration::from_secs(10));
    a.terminate();
    a.wait_for("signal received", Duration::from_secs(5));
    // The command ignores SIGTERM: it runs until SIGKILL, 5 s (the grace)
    // after it was told to stop. Look well inside that.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(a.get("/healthz"), (200, "ok\n".to_owned()));
    assert_eq!(a.get("/readyz"), (200, "ready\n".to_owned()));
    let leader = a.leader();
    assert_eq!(
        (
            leader["isLeader"].as_bool(),
            leader["fencingToken"].as_u64()
        ),
        (Some(true), Some(0))
    );
    let stopped = Instant::now();
    a.wait_for("released and stopped", Duration::from_secs(15));
    assert!(
        stopped.elapsed() >= Duration::from_secs(3),
        "released {:?} after the look, before the command's 5 s grace ran out",
        stopped.elapsed()
    );
}

/// The store goes away under a leader: the term ends by its renew
/// deadline; the candidate stays healthy, is not ready, and its metrics
/// count the failed renews and store errors.
#[test]
fn http_endpoints_with_the_store_unreachable() {
    let mut server = RedisServer::local(RedisServerOptions::default());
    let url = format!("{}/cli-http-gone", server.url().trim_end_matches('/'));
    let a = &mut Served::start(
        &[
            &["run", "--lock", &url, "--identity", "a"][..],
            &TIMING,
            &[
                "--http",
                "127.0.0.1:0",
                "--ready",
                "leader",
                "--",
                "sleep",
                "60",
            ],
        ]
        .concat(),
    );
    a.wait_for("elected leader", Duration::from_secs(10));
    server.stop();
    // Renew deadline 2 s: the term is over well within 10 s.
    a.wait_for("no longer leader", Duration::from_secs(10));
    assert_eq!(a.get("/healthz"), (200, "ok\n".to_owned()));
    assert_eq!(a.get("/readyz"), (503, "not leading\n".to_owned()));
    let leader = a.leader();
    assert_eq!(leader["isLeader"], false);
    assert!(leader["fencingToken"].is_null());
    let lock = format!("name=\"{}\"", leader["lock"].as_str().unwrap());
    assert_eq!(a.metric("leader_election_master_status", &[&lock]), 0.0);
    assert!(
        a.metric(
            "tenure_renew_duration_seconds_count",
            &[&lock, "result=\"error\""]
        ) >= 1.0
    );
    assert!(
        a.metric(
            "tenure_store_errors_total",
            &[&lock, "kind=\"unavailable\""]
        ) >= 1.0
    );
}

/// `--wait-for-store`: an unreachable store at start is tried again while
/// the endpoints serve (healthy, not ready, no leader); when the wait is
/// over, the one-line error and exit 1.
#[test]
fn waiting_for_an_unreachable_store() {
    let port = tenure_conformance::fixtures::process::free_port();
    let url = format!("redis://127.0.0.1:{port}/nobody");
    let started = Instant::now();
    let a = &mut Served::start(&[
        "run",
        "--lock",
        &url,
        "--http",
        "127.0.0.1:0",
        "--ready",
        "leader",
        "--wait-for-store",
        "4s",
        "--retry-period",
        "500ms",
        "--",
        "true",
    ]);
    a.wait_for("waiting for the store", Duration::from_secs(5));
    assert_eq!(a.get("/healthz"), (200, "ok\n".to_owned()));
    assert_eq!(a.get("/readyz").0, 503);
    assert!(a.leader()["leader"].is_null());
    let line = a.wait_for("tenure: error:", Duration::from_secs(15));
    assert!(line.contains("store unavailable"), "{line}");
    let code = a.child.wait().unwrap().code();
    assert_eq!(code, Some(1));
    assert!(
        started.elapsed() >= Duration::from_millis(3_500),
        "gave up after {:?}, before the 4 s wait",
        started.elapsed()
    );
}

/// `--log-format json`: every line of stderr is one JSON object with the
/// documented fields; the engine's lines name the lock and identity.
#[test]
fn json_logs() {
    let out = Command::new(env!("CARGO_BIN_EXE_tenure"))
        .args(["--log-format", "json", "--log", "info"])
        .args([
            "run",
            "--lock",
            "memory://json",
            "--identity",
            "pod-j",
            "--",
            "true",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(lines.len() >= 3, "{stderr}");
    for line in &lines {
        for field in ["timestamp", "level", "target", "message"] {
            assert!(line[field].is_string(), "no {field}: {line}");
        }
        chrono::DateTime::parse_from_rfc3339(line["timestamp"].as_str().unwrap()).unwrap();
    }
    let engine = lines
        .iter()
        .find(|l| l["message"] == "new leader observed")
        .unwrap_or_else(|| panic!("no engine line: {stderr}"));
    assert_eq!(engine["lock"], "memory://json");
    assert_eq!(engine["identity"], "pod-j");
    assert_eq!(engine["leader"], "pod-j");
    assert_eq!(engine["level"], "INFO");
    assert!(
        lines
            .iter()
            .any(|l| l["target"] == "tenure" && l["message"] == "released and stopped"),
        "{stderr}"
    );
}
