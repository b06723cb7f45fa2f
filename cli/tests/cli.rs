//! The built `tenure` binary: demo, and every bad input gives one clear
//! line and its exit code, no panic.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn tenure(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tenure"))
        .args(args)
        .output()
        .expect("run tenure")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// One line `tenure: error: ...` containing `needle`, exit `code`.
fn assert_fails(args: &[&str], code: i32, needle: &str) {
    let out = tenure(args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{args:?}: {err}"
    );
    // Progress lines may come first; the error is one line, the last.
    let errors: Vec<&str> = err.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(
        errors.len(),
        1,
        "{args:?}: one error line expected, got {err}"
    );
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("tenure: error: ") && last.contains(needle),
        "{args:?}: {err}"
    );
}

#[test]
fn demo_shows_election_failover_and_handoff_in_under_15_seconds() {
    let start = Instant::now();
    let out = tenure(&["demo"]);
    let took = start.elapsed();
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    for step in [
        "1. election",
        "2. crash",
        "fail-over",
        "3. graceful hand-off",
        "hand-off:",
        "done in",
    ] {
        assert!(err.contains(step), "missing {step:?} in:\n{err}");
    }
    assert!(took < Duration::from_secs(15), "demo took {took:?}");
}

#[test]
fn invalid_url() {
    assert_fails(&["status", "--lock", "not a url"], 2, "invalid lock URL");
}

#[test]
fn unknown_scheme() {
    assert_fails(
        &["status", "--lock", "ftp://host/lock"],
        2,
        "unknown scheme \"ftp\"",
    );
}

#[test]
fn invalid_lock_name() {
    assert_fails(
        &["status", "--lock", "memory://Not_Valid"],
        2,
        "invalid lock name",
    );
}

#[test]
fn invalid_timing() {
    assert_fails(
        &[
            "run",
            "--lock",
            "memory://x",
            "--lease-duration",
            "5s",
            "--",
            "true",
        ],
        2,
        "lease_duration (5s) must be greater than renew_deadline (10s)",
    );
    assert_fails(
        &[
            "run",
            "--lock",
            "memory://x",
            "--renew-deadline",
            "2s",
            "--",
            "true",
        ],
        2,
        "renew_deadline",
    );
    assert_fails(
        &["run", "--lock", "memory://x", "--grace", "6s", "--", "true"],
        2,
        "--grace",
    );
}

#[test]
fn unparsable_duration_is_a_usage_error() {
    let out = tenure(&[
        "run",
        "--lock",
        "memory://x",
        "--retry-period",
        "soon",
        "--",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--retry-period"));
}

#[test]
fn command_that_cannot_start() {
    assert_fails(
        &["run", "--lock", "memory://x", "--", "/nonexistent/command"],
        1,
        "cannot start",
    );
}

#[test]
fn run_passes_the_fencing_token_and_the_commands_exit_code() {
    let out = tenure(&[
        "run",
        "--lock",
        "memory://x",
        "--identity",
        "me",
        "--",
        "sh",
        "-c",
        "echo \"$TENURE_IDENTITY $TENURE_FENCING_TOKEN $TENURE_LOCK\"; exit 7",
    ]);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "me 0 memory://x\n");
    let err = stderr(&out);
    assert!(err.contains("elected leader (fencing token 0)"), "{err}");
    assert!(err.contains("released and stopped"), "{err}");
}
