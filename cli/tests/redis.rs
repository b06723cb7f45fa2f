//! `tenure run` and `tenure status` against a real redis-server.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tenure_conformance::fixtures::redis::{RedisServer, RedisServerOptions};

mod common;
use common::{TIMING, is_gone, wait_for_line};

/// A child that logs `start ID PID NANOS` and, on SIGTERM, `stop ID PID NANOS`.
const CHILD: &str = r#"now() { date +%s%N; }
echo "start $TENURE_IDENTITY $$ $(now) $TENURE_FENCING_TOKEN" >> "$LOG"
trap 'echo "stop $TENURE_IDENTITY $$ $(now)" >> "$LOG"; exit 0' TERM
while :; do sleep 0.02; done"#;

fn candidate(url: &str, id: &str, log: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_tenure"))
        .args(["run", "--lock", url, "--identity", id])
        .args(TIMING)
        .args(["--", "sh", "-c", CHILD])
        .env("LOG", log)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tenure run")
}

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn tenure(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tenure"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn kill_9_and_sigterm_hand_offs_never_overlap_the_commands() {
    let server = RedisServer::local(RedisServerOptions::default());
    let url = format!("{}/cli-handoff", server.url().trim_end_matches('/'));
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("children.log");

    let mut a = candidate(&url, "a", &log);
    let first = wait_for_line(&log, Duration::from_secs(10), |l| l.kind == "start");
    assert_eq!(first.id, "a");
    let mut b = candidate(&url, "b", &log);
    std::thread::sleep(Duration::from_secs(1));

    // kill -9 of the leader's tenure: its command dies with it at once.
    a.kill().unwrap();
    let _ = a.wait();
    let killed = Instant::now();
    while !is_gone(first.pid) {
        assert!(
            killed.elapsed() < Duration::from_secs(2),
            "a's command outlived it"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let gone_at = now_nanos();
    let second = wait_for_line(&log, Duration::from_secs(10), |l| {
        l.kind == "start" && l.id == "b"
    });
    assert!(
        gone_at < second.at,
        "b's command started before a's was gone"
    );

    // status --json shows b with one transition.
    let out = tenure(&["status", "--lock", &url, "--json"]);
    assert!(out.status.success());
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["holder"], "b");
    // Tokens start at the store's floor; a takeover goes above the floor
    // again (Redis's is the server clock), so the token rises, by one or more.
    let token = first.token.expect("a's token");
    assert!(
        status["leaderTransitions"].as_u64().unwrap() > token,
        "{status}"
    );
    assert_eq!(
        second.token,
        status["leaderTransitions"].as_u64(),
        "b's token is the stored count"
    );
    assert!(status["leaseRemainingSeconds"].as_f64().unwrap() <= 3.0);

    // SIGTERM of the leader's tenure: its command is stopped, then the lock
    // is released, then the follower's command starts.
    let mut c = candidate(&url, "c", &log);
    std::thread::sleep(Duration::from_secs(1));
    // SAFETY: kill(2) on a child process of this test.
    unsafe { libc::kill(b.id() as i32, libc::SIGTERM) };
    let status = b.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(0),
        "a SIGTERMed tenure exits 0 after releasing"
    );
    let stopped = wait_for_line(&log, Duration::from_secs(5), |l| {
        l.kind == "stop" && l.id == "b"
    });
    assert_eq!(stopped.pid, second.pid);
    let third = wait_for_line(&log, Duration::from_secs(5), |l| {
        l.kind == "start" && l.id == "c"
    });
    assert!(
        stopped.at < third.at,
        "c's command started before b's stopped"
    );
    // Released: taken well before a lease would have run out.
    assert!(
        third.at - stopped.at < 2_500_000_000,
        "{stopped:?} {third:?}"
    );

    // SAFETY: kill with a pid and a signal number only.
    unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
    assert_eq!(c.wait().unwrap().code(), Some(0));
    let out = tenure(&["status", "--lock", &url, "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        status["holder"],
        serde_json::Value::Null,
        "released on exit"
    );
    // The release keeps c's count: the token c's command was given.
    assert_eq!(
        status["leaderTransitions"].as_u64(),
        third.token,
        "{status}"
    );
    assert!(third.token > second.token);
}

#[test]
fn unreachable_store() {
    let port = tenure_conformance::fixtures::process::free_port();
    let out = tenure(&["status", "--lock", &format!("redis://127.0.0.1:{port}/x")]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("tenure: error: store unavailable"), "{err}");
    assert_eq!(err.lines().count(), 1);
}

#[test]
fn wrong_credentials() {
    let server = RedisServer::local(RedisServerOptions {
        password: Some("right-password".into()),
        ..Default::default()
    });
    let addr = server.addr();
    let url = format!("redis://default:wrong-password@{addr}/x");
    for args in [
        vec!["status", "--lock", url.as_str()],
        vec!["run", "--lock", url.as_str(), "--", "true"],
    ] {
        let out = tenure(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("tenure: error: not authorized"), "{err}");
        assert!(
            !err.contains("wrong-password"),
            "the password leaked: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

#[test]
fn a_password_with_url_delimiters_logs_in() {
    // `LockUrl` accepts `/`, `?` and `@` in a password; the facade used to
    // put the raw userinfo back into the Redis URL, which then failed to
    // parse (or cut the password short).
    let password = "p/a?s@s#w%rd";
    let server = RedisServer::local(RedisServerOptions {
        password: Some(password.into()),
        ..Default::default()
    });
    let addr = server.addr();
    let url = format!("redis://default:{password}@{addr}/delims");
    let out = tenure(&["status", "--lock", url.as_str()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains(password), "the password leaked: {err}");
}

/// A command that ignores SIGTERM (only SIGKILL ends it) and logs its start.
const STUBBORN: &str = r#"echo "start $TENURE_IDENTITY $$ $(date +%s%N) $TENURE_FENCING_TOKEN" >> "$LOG"
trap '' TERM
while :; do sleep 0.02; done"#;

/// Another writer releases the leader's record while its lease is valid
/// (client-go v0.37.2's elector does so after a failed renew: it releases
/// the record it reads, whoever holds it; see RELIABILITY.md). A successor
/// may take a released lock at once, so the command must die at once, not
/// after the grace period. Before the fix, the stubborn command lived out
/// its whole 4 s grace after the release.
#[test]
fn a_lock_released_by_another_writer_kills_the_command_at_once() {
    let server = RedisServer::local(RedisServerOptions::default());
    let url = format!("{}/cli-taken", server.url().trim_end_matches('/'));
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("children.log");
    let mut a = Command::new(env!("CARGO_BIN_EXE_tenure"))
        .args(["run", "--lock", &url, "--identity", "a"])
        .args(["--lease-duration", "10s", "--renew-deadline", "8s"])
        .args(["--retry-period", "500ms", "--grace", "4s"])
        .args(["--", "sh", "-c", STUBBORN])
        .env("LOG", &log)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tenure run");
    let first = wait_for_line(&log, Duration::from_secs(10), |l| l.kind == "start");
    // The foreign release: a compare-and-swap of a free record over the
    // leader's, from a client of the test's own.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = tenure::connect(&url).await.unwrap();
        let current = store.get().await.unwrap().expect("the leader's record");
        assert_eq!(current.record.holder_identity, "a");
        store
            .update(&tenure::LeaderRecord::default(), &current.version)
            .await
            .expect("the foreign release");
    });
    let released = Instant::now();
    // The leader learns of it within a retry period (its watch, or its next
    // renew), then kills: well inside the 4 s grace.
    let limit = Duration::from_millis(500) + Duration::from_secs(1);
    while !is_gone(first.pid) {
        assert!(
            released.elapsed() < limit,
            "the command outlived the foreign release by {:?} (limit {limit:?}; grace 4 s)",
            released.elapsed()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = a.kill();
    let _ = a.wait();
}
