//! The command never outlives the term, whatever happens to `tenure run`
//! itself: real `tenure run` processes on a real redis-server, commands
//! that heartbeat into one log (wall clock in ns, one machine).
//!
//! Timing: lease 3 s, renew deadline 2 s, retry 0.5 s, so the default grace
//! is 0.7 s and the term ends 1.3 s after the start of the last renew.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tenure_conformance::fixtures::redis::{RedisServer, RedisServerOptions};
mod common;
use common::procfs;
use common::{TIMING, is_gone, lines, signal, wait_for_line};

const LEASE: Duration = Duration::from_secs(3);

/// Logs `start ID PID NS TOKEN`, then `beat ID PID NS` every ~10 ms.
const HEARTBEAT: &str = r#"now() { date +%s%N; }
echo "start $TENURE_IDENTITY $$ $(now) $TENURE_FENCING_TOKEN" >> "$LOG"
while :; do echo "beat $TENURE_IDENTITY $$ $(now)" >> "$LOG"; sleep 0.01; done"#;

struct Fixture {
    _server: RedisServer,
    url: String,
    _dir: tempfile::TempDir,
    log: PathBuf,
}

fn fixture(lock: &str) -> Fixture {
    let server = RedisServer::local(RedisServerOptions::default());
    let url = format!("{}/{lock}", server.url().trim_end_matches('/'));
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("beats.log");
    Fixture {
        _server: server,
        url,
        _dir: dir,
        log,
    }
}

fn tenure_run(fx: &Fixture, id: &str, script: &str, stderr: Stdio) -> Child {
    Command::new(env!("CARGO_BIN_EXE_tenure"))
        .args(["run", "--lock", &fx.url, "--identity", id])
        .args(TIMING)
        .args(["--", "sh", "-c", script])
        .env("LOG", &fx.log)
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("start tenure run")
}

/// The last heartbeat of `id`'s command with this pid.
fn last_beat(log: &Path, id: &str, pid: u32) -> u128 {
    lines(log)
        .iter()
        .filter(|l| l.id == id && l.pid == pid)
        .map(|l| l.at)
        .max()
        .expect("the command beat at least once")
}

/// The state letter of a process (`T`: stopped).
fn state(pid: u32) -> Option<char> {
    procfs::state_of(pid)
}

/// Pids whose command line contains `needle`.
fn pids_with(needle: &str) -> Vec<u32> {
    procfs::pids()
        .into_iter()
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(needle))
                .unwrap_or(false)
        })
        .filter(|pid| !is_gone(*pid))
        .collect()
}

/// The pid of `tenure run`'s supervisor (its `__supervise` child).
fn supervisor_of(tenure: u32) -> u32 {
    pids_with("__supervise")
        .into_iter()
        .find(|pid| procfs::parent_of(*pid) == Some(tenure))
        .expect("the supervisor of a leading tenure run")
}

fn wait_until(limit: Duration, what: &str, cond: impl Fn() -> bool) -> Duration {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
    start.elapsed()
}

fn stop_and_reap(mut child: Child) {
    signal(child.id(), libc::SIGCONT);
    signal(child.id(), libc::SIGTERM);
    let _ = child.wait();
}

#[test]
fn sigstop_of_tenure_beyond_the_lease_stops_the_command_before_the_successor_starts() {
    let fx = fixture("sigstop");
    let a = tenure_run(&fx, "a", HEARTBEAT, Stdio::null());
    let first = wait_for_line(&fx.log, Duration::from_secs(10), |l| l.kind == "start");
    let b = tenure_run(&fx, "b", HEARTBEAT, Stdio::null());
    std::thread::sleep(Duration::from_secs(1));
    // Only tenure is stopped: the supervisor and the command run on.
    signal(a.id(), libc::SIGSTOP);
    let second = wait_for_line(&fx.log, 2 * LEASE + Duration::from_secs(5), |l| {
        l.kind == "start" && l.id == "b"
    });
    // Beats a's command writes after this would be overlap.
    std::thread::sleep(Duration::from_millis(300));
    let last = last_beat(&fx.log, "a", first.pid);
    assert!(
        last < second.at,
        "a's command beat {} ms into b's term",
        (last - second.at) / 1_000_000
    );
    assert!(is_gone(first.pid), "a's command still runs");
    eprintln!(
        "gap between a's last beat and b's start: {} ms",
        (second.at - last) / 1_000_000
    );
    // Continued, a's tenure finds its term over and campaigns again: it
    // neither exits nor leads while b renews.
    signal(a.id(), libc::SIGCONT);
    std::thread::sleep(LEASE);
    let mut a = a;
    assert!(
        a.try_wait().unwrap().is_none(),
        "tenure a exited after SIGCONT"
    );
    assert!(
        !lines(&fx.log)
            .iter()
            .any(|l| l.kind == "start" && l.id == "a" && l.pid != first.pid)
    );
    stop_and_reap(a);
    stop_and_reap(b);
}

#[test]
fn kill_9_of_tenure_leaves_no_grandchild() {
    let fx = fixture("grandchildren");
    // A child in the group, one that left it (setsid), and a double-forked
    // orphan: each sleeps with a marker of this test in its arguments.
    let marker = format!(
        "{}.{}",
        7000 + std::process::id() % 1000,
        std::process::id()
    );
    let script = format!(
        r#"echo "start $TENURE_IDENTITY $$ $(date +%s%N)" >> "$LOG"
sleep {marker}1 &
setsid sleep {marker}2 &
(sleep {marker}3 &)
wait"#
    );
    let mut a = tenure_run(&fx, "a", &script, Stdio::null());
    wait_for_line(&fx.log, Duration::from_secs(10), |l| l.kind == "start");
    // Their argv is `sleep\0MARKERn`; the scripts' text has a space there.
    let sleepers = format!("sleep\0{marker}");
    wait_until(Duration::from_secs(5), "three sleepers", || {
        pids_with(&sleepers).len() == 3
    });
    a.kill().unwrap();
    let _ = a.wait();
    // The supervisor sees tenure gone: SIGTERM now, SIGKILL after the grace.
    let took = wait_until(Duration::from_secs(3), "every sleeper gone", || {
        pids_with(&sleepers).is_empty()
    });
    eprintln!("all descendants gone {} ms after kill -9", took.as_millis());
}

#[test]
fn ctrl_z_steps_down_and_suspends_then_campaigns_again() {
    let fx = fixture("ctrl-z");
    let a = tenure_run(&fx, "a", HEARTBEAT, Stdio::null());
    let first = wait_for_line(&fx.log, Duration::from_secs(10), |l| l.kind == "start");
    let b = tenure_run(&fx, "b", HEARTBEAT, Stdio::null());
    std::thread::sleep(Duration::from_secs(1));
    signal(a.id(), libc::SIGTSTP);
    let second = wait_for_line(&fx.log, LEASE, |l| l.kind == "start" && l.id == "b");
    // Handed off by release, not by expiry, and without overlap.
    assert!(last_beat(&fx.log, "a", first.pid) < second.at);
    assert!(is_gone(first.pid));
    wait_until(Duration::from_secs(2), "tenure a suspended", || {
        state(a.id()) == Some('T')
    });
    // fg: a campaigns again and takes over when b leaves.
    signal(a.id(), libc::SIGCONT);
    std::thread::sleep(Duration::from_secs(1));
    signal(b.id(), libc::SIGTERM);
    let third = wait_for_line(&fx.log, LEASE, |l| {
        l.kind == "start" && l.id == "a" && l.pid != first.pid
    });
    assert!(third.token > second.token && second.token > first.token);
    let mut b = b;
    assert_eq!(b.wait().unwrap().code(), Some(0));
    stop_and_reap(a);
}

#[test]
fn a_command_stopped_at_a_deadline_the_term_outlived_steps_down_and_campaigns_again() {
    // The supervisor stops the command at the deadline it was last told.
    // With copies of the term's validity 60 s apart it is never told of a
    // renew, so it stops the command at the first term's first deadline
    // while the term goes on. The term must then end (released) and a new
    // one begin with a new command and a higher token: never the run giving
    // up, never a command restarted inside the same term.
    let fx = fixture("stale-deadline");
    let mut a = Command::new(env!("CARGO_BIN_EXE_tenure"))
        .args(["run", "--lock", &fx.url, "--identity", "a"])
        .args(TIMING)
        .args(["--deadline-sync", "60s"])
        .args(["--", "sh", "-c", HEARTBEAT])
        .env("LOG", &fx.log)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tenure run");
    let first = wait_for_line(&fx.log, Duration::from_secs(10), |l| l.kind == "start");
    // Stopped 1.3 s after the win (renew deadline 2 s − grace 0.7 s); the
    // run then waits up to the term's validity and 1 s for the term to end.
    let limit = Instant::now() + Duration::from_secs(15);
    let second = loop {
        let started = lines(&fx.log)
            .into_iter()
            .find(|l| l.kind == "start" && l.pid != first.pid);
        if let Some(line) = started {
            break line;
        }
        if let Some(status) = a.try_wait().unwrap() {
            panic!("tenure run gave up ({status}) instead of campaigning again");
        }
        assert!(Instant::now() < limit, "no new command within 15 s");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(
        second.token > first.token,
        "the new command runs in a new term: token {:?} after {:?}",
        second.token,
        first.token
    );
    assert!(is_gone(first.pid));
    assert!(last_beat(&fx.log, "a", first.pid) < second.at);
    stop_and_reap(a);
}

#[test]
fn sighup_steps_down_and_exits() {
    let fx = fixture("sighup");
    let mut a = tenure_run(&fx, "a", HEARTBEAT, Stdio::null());
    let first = wait_for_line(&fx.log, Duration::from_secs(10), |l| l.kind == "start");
    let b = tenure_run(&fx, "b", HEARTBEAT, Stdio::null());
    std::thread::sleep(Duration::from_secs(1));
    signal(a.id(), libc::SIGHUP);
    assert_eq!(
        a.wait().unwrap().code(),
        Some(0),
        "a hung-up tenure exits 0"
    );
    assert!(is_gone(first.pid));
    let second = wait_for_line(&fx.log, LEASE, |l| l.kind == "start" && l.id == "b");
    assert!(last_beat(&fx.log, "a", first.pid) < second.at);
    stop_and_reap(b);
}

#[test]
fn a_stderr_nobody_reads_does_not_stop_the_election() {
    // The command fills tenure's stderr (the same pipe) and the test never
    // reads it: tenure's own lines must be dropped, not block its loop.
    let fx = fixture("stderr");
    let script = format!("(yes stderr-filler >&2 &)\n{HEARTBEAT}");
    let a = tenure_run(&fx, "a", &script, Stdio::piped());
    let first = wait_for_line(&fx.log, Duration::from_secs(10), |l| l.kind == "start");
    let b = tenure_run(&fx, "b", HEARTBEAT, Stdio::null());
    // Three leases: a keeps renewing, b never starts.
    std::thread::sleep(3 * LEASE);
    assert!(
        !lines(&fx.log)
            .iter()
            .any(|l| l.kind == "start" && l.id == "b"),
        "b took over from a leader whose stderr was blocked"
    );
    assert!(!is_gone(first.pid), "a's command was stopped");
    // And a hand-off still works: SIGTERM, stop, release, b starts.
    signal(a.id(), libc::SIGTERM);
    let second = wait_for_line(&fx.log, LEASE, |l| l.kind == "start" && l.id == "b");
    assert!(last_beat(&fx.log, "a", first.pid) < second.at);
    let mut a = a;
    // Exits although its stderr never drains.
    let exited = Instant::now();
    while a.try_wait().unwrap().is_none() {
        assert!(
            exited.elapsed() < Duration::from_secs(5),
            "tenure a did not exit"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    stop_and_reap(b);
}

#[test]
fn the_supervisors_death_kills_the_command() {
    let fx = fixture("supervisor-death");
    let mut a = tenure_run(&fx, "a", HEARTBEAT, Stdio::piped());
    let first = wait_for_line(&fx.log, Duration::from_secs(10), |l| l.kind == "start");
    let supervisor = supervisor_of(a.id());
    signal(supervisor, libc::SIGKILL);
    wait_until(Duration::from_secs(2), "a's command gone", || {
        is_gone(first.pid)
    });
    let status = a.wait().unwrap();
    assert_eq!(status.code(), Some(1), "tenure reports the dead supervisor");
    let mut err = String::new();
    use std::io::Read;
    a.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(err.contains("supervisor died"), "{err}");
}

#[test]
fn the_supervisors_death_leaves_no_escaped_process_running_into_the_successors_term() {
    // Issue 26 item 3: when the supervisor died, tenure killed the
    // command's group and released at once; a process that had left the
    // group (setsid) was reparented to init and kept running while the
    // successor took the lock within milliseconds.
    let fx = fixture("supervisor-death-escaped");
    let script = r#"echo "start $TENURE_IDENTITY $$ $(date +%s%N) $TENURE_FENCING_TOKEN" >> "$LOG"
setsid sh -c 'while :; do echo "beat $TENURE_IDENTITY $$ $(date +%s%N)" >> "$LOG"; sleep 0.01; done' &
wait"#;
    let mut a = tenure_run(&fx, "a", script, Stdio::null());
    wait_for_line(&fx.log, Duration::from_secs(10), |l| {
        l.kind == "start" && l.id == "a"
    });
    let escaped = wait_for_line(&fx.log, Duration::from_secs(5), |l| {
        l.kind == "beat" && l.id == "a"
    })
    .pid;
    let b = tenure_run(&fx, "b", HEARTBEAT, Stdio::null());
    std::thread::sleep(Duration::from_secs(1));
    signal(supervisor_of(a.id()), libc::SIGKILL);
    let second = wait_for_line(&fx.log, 3 * LEASE, |l| l.kind == "start" && l.id == "b");
    std::thread::sleep(Duration::from_millis(500));
    let last = last_beat(&fx.log, "a", escaped);
    let alive = !is_gone(escaped);
    // Whatever happened, leave nothing behind.
    signal(escaped, libc::SIGKILL);
    let _ = a.wait();
    stop_and_reap(b);
    assert!(
        !alive,
        "the escaped loop (pid {escaped}) outlived the dead supervisor"
    );
    assert!(
        last < second.at,
        "the escaped loop beat {:.1} ms into b's term",
        (last - second.at) as f64 / 1e6
    );
}

/// The one case no local process can close: tenure, its supervisor and the
/// command all frozen (a paused VM, a frozen cgroup), then resumed together
/// after the successor took over. Prints how long the old command ran on
/// into the successor's term; run with `--ignored` (see RELIABILITY.md).
#[test]
#[ignore = "a measurement; run with --ignored"]
fn frozen_machine_tail() {
    let fx = fixture("frozen");
    let mut tails = Vec::new();
    for round in 0..10 {
        let _ = fs::remove_file(&fx.log);
        let a = tenure_run(&fx, "a", HEARTBEAT, Stdio::null());
        let first = wait_for_line(&fx.log, Duration::from_secs(10), |l| {
            l.kind == "start" && l.id == "a"
        });
        let b = tenure_run(&fx, "b", HEARTBEAT, Stdio::null());
        std::thread::sleep(Duration::from_secs(1));
        // The whole tree: tenure, its supervisor, the command's group.
        let frozen = [
            a.id() as i32,
            supervisor_of(a.id()) as i32,
            -(first.pid as i32),
        ];
        for pid in frozen {
            // SAFETY: kill(2) on processes this test started.
            unsafe { libc::kill(pid, libc::SIGSTOP) };
        }
        let second = wait_for_line(&fx.log, 3 * LEASE, |l| l.kind == "start" && l.id == "b");
        std::thread::sleep(Duration::from_millis(500));
        let resumed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        for pid in frozen {
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGCONT) };
        }
        wait_until(Duration::from_secs(5), "a's command gone", || {
            is_gone(first.pid)
        });
        let last = last_beat(&fx.log, "a", first.pid);
        // Beats after the resume happened inside b's term.
        let tail_ms = last.saturating_sub(resumed) as f64 / 1e6;
        eprintln!(
            "round {round}: a's command beat {tail_ms:.1} ms after the resume ({} ms into b's term)",
            last.saturating_sub(second.at) / 1_000_000
        );
        tails.push(tail_ms);
        stop_and_reap(a);
        stop_and_reap(b);
    }
    eprintln!("frozen-machine tails (ms): {tails:?}");
}
