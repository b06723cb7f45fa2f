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
        "lease-duration (5s) must be greater than renew-deadline (10s)",
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
        "renew-deadline",
    );
    assert_fails(
        &["run", "--lock", "memory://x", "--grace", "8s", "--", "true"],
        2,
        "--grace",
    );
}

#[test]
fn unparsable_duration_is_a_usage_error() {
    assert_fails(
        &[
            "run",
            "--lock",
            "memory://x",
            "--retry-period",
            "soon",
            "--",
            "true",
        ],
        2,
        "--retry-period",
    );
    assert_fails(&["run", "--lock", "memory://x"], 2, "COMMAND");
}

#[test]
fn stopping_the_command_stops_what_it_started() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("grandchild.pid");
    let mut run = Command::new(env!("CARGO_BIN_EXE_tenure"))
        .args([
            "run",
            "--lock",
            "memory://group",
            "--identity",
            "a",
            "--",
            "sh",
            "-c",
        ])
        .arg(format!("sleep 300 & echo $! > {}; wait", pidfile.display()))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while std::fs::read_to_string(&pidfile).map_or(true, |s| !s.ends_with('\n')) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the command did not start"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let grandchild: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: kill(2) on processes this test started.
    unsafe { libc::kill(run.id() as i32, libc::SIGTERM) };
    assert_eq!(run.wait().unwrap().code(), Some(0));
    let gone = |pid: i32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
            s.rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        })
    };
    let start = Instant::now();
    while !gone(grandchild) {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the command's child outlived it"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
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

#[test]
fn run_and_status_on_the_kubernetes_fixture() {
    use tenure_kube_fixture::KubeApiServer;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(KubeApiServer::start()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fixture\n  cluster:\n    server: {}\n\
             contexts:\n- name: fixture\n  context:\n    cluster: fixture\n    user: me\n    namespace: default\n\
             current-context: fixture\nusers:\n- name: me\n  user: {{}}\n",
            server.url()
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_tenure"))
            .args(args)
            .env("KUBECONFIG", &kubeconfig)
            .output()
            .unwrap()
    };
    let out = run(&[
        "run",
        "--lock",
        "k8s://default/cli-lease?kind=lease",
        "--identity",
        "pod-a",
        "--",
        "sh",
        "-c",
        "echo $TENURE_FENCING_TOKEN",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "0\n");
    let out = run(&["status", "--lock", "k8s://default/cli-lease", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["exists"], true);
    assert_eq!(
        status["holder"],
        serde_json::Value::Null,
        "released after the command exited"
    );
    assert!(server.requests("update") >= 1, "the release was a PUT");
    assert_fails_with_env(
        &["status", "--lock", "k8s://default/x?kind=secret"],
        "kind=secret",
    );
}

fn assert_fails_with_env(args: &[&str], needle: &str) {
    let out = tenure(args);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains(needle), "{}", stderr(&out));
}

#[test]
fn a_port_out_of_range_is_bad_input() {
    // Bad input (exit 2), not a store error (exit 1): retrying cannot fix it.
    assert_fails(
        &["status", "--lock", "redis://127.0.0.1:99999/jobs"],
        2,
        "invalid",
    );
    assert_fails(
        &["status", "--lock", "etcd://127.0.0.1:99999/jobs"],
        2,
        "invalid",
    );
}

#[test]
fn kubernetes_flags_need_a_kubernetes_lock_and_a_valid_value() {
    assert_fails(
        &[
            "run",
            "--lock",
            "memory://x",
            "--events",
            "my-job",
            "--",
            "true",
        ],
        2,
        "it needs a k8s:// lock",
    );
    assert_fails(
        &[
            "run",
            "--lock",
            "k8s://ns/x",
            "--events",
            "a&b",
            "--",
            "true",
        ],
        2,
        "give a component name",
    );
}
