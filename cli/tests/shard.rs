//! `tenure shard` against a real redis-server: two replicas split four
//! shards two each, one command per shard with its environment; when one
//! replica is killed (-9) its commands are stopped and the other takes its
//! shards after their leases; no shard's commands ever overlap.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tenure_conformance::fixtures::redis::{RedisServer, RedisServerOptions};

mod common;
use common::TIMING;

/// A shard's command: logs `start ID SHARD PID NANOS TOKEN SELECTOR` and, on
/// SIGTERM, `stop ID SHARD PID NANOS`.
const SHARD_CHILD: &str = r#"now() { date +%s%N; }
echo "start $TENURE_IDENTITY $TENURE_SHARD $$ $(now) $TENURE_FENCING_TOKEN $TENURE_SHARDS" >> "$LOG"
trap 'echo "stop $TENURE_IDENTITY $TENURE_SHARD $$ $(now)" >> "$LOG"; exit 0' TERM
while :; do sleep 0.02; done"#;

fn replica(url: &str, id: &str, log: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_tenure"))
        .args([
            "shard",
            "--lock",
            url,
            "--shards",
            "4",
            "--member-slots",
            "4",
            "--identity",
            id,
        ])
        .args(TIMING)
        .args(["--", "sh", "-c", SHARD_CHILD])
        .env("LOG", log)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tenure shard")
}

/// One command's life: (replica, shard, token, start, stop).
#[derive(Debug, Clone)]
struct Life {
    replica: String,
    shard: u32,
    pid: u32,
    token: u64,
    start: u128,
    stop: Option<u128>,
}

fn lives(log: &Path) -> Vec<Life> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut lives: Vec<Life> = Vec::new();
    for line in text.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.as_slice() {
            ["start", id, shard, pid, at, token, shards] => {
                assert_eq!(*shards, "4", "TENURE_SHARDS");
                lives.push(Life {
                    replica: id.to_string(),
                    shard: shard.parse().unwrap(),
                    pid: pid.parse().unwrap(),
                    token: token.parse().unwrap(),
                    start: at.parse().unwrap(),
                    stop: None,
                });
            }
            ["stop", _, _, pid, at] => {
                let pid: u32 = pid.parse().unwrap();
                if let Some(l) = lives.iter_mut().find(|l| l.pid == pid && l.stop.is_none()) {
                    l.stop = Some(at.parse().unwrap());
                }
            }
            _ => {} // a line being written
        }
    }
    lives
}

/// Shards with a running command, by replica.
fn running(log: &Path) -> BTreeMap<String, Vec<u32>> {
    let mut by: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for l in lives(log).into_iter().filter(|l| l.stop.is_none()) {
        by.entry(l.replica).or_default().push(l.shard);
    }
    by
}

fn wait_until(
    limit: Duration,
    what: &str,
    log: &Path,
    cond: impl Fn(&BTreeMap<String, Vec<u32>>) -> bool,
) {
    let start = Instant::now();
    loop {
        let now = running(log);
        if cond(&now) {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "{what} not within {limit:?}: {now:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn two_replicas_split_the_shards_and_one_takes_over_after_a_kill_9() {
    let server = RedisServer::local(RedisServerOptions::default());
    let url = format!("{}/jobs", server.url().trim_end_matches('/'));
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("shards.log");
    let mut a = replica(&url, "a", &log);
    let mut b = replica(&url, "b", &log);
    // Lease 3 s, retry 0.5 s: a slot, then the shards, within a few rounds.
    wait_until(Duration::from_secs(15), "two shards each", &log, |r| {
        r.get("a").map(Vec::len) == Some(2) && r.get("b").map(Vec::len) == Some(2)
    });

    // SAFETY: kill with a pid and a signal number only.
    unsafe { libc::kill(a.id() as i32, libc::SIGKILL) };
    let _ = a.wait();
    // Its supervisors stop its commands at once (they lose their parent).
    wait_until(Duration::from_secs(5), "a's commands stopped", &log, |r| {
        !r.contains_key("a")
    });
    // b takes a's shards after a's slot and then each shard ran out:
    // 2 × lease + 3 × retry (with jitter) = 7.8 s, and a margin.
    wait_until(Duration::from_secs(15), "b running all four", &log, |r| {
        r.get("b").map(Vec::len) == Some(4)
    });

    // SAFETY: as above.
    unsafe { libc::kill(b.id() as i32, libc::SIGTERM) };
    assert_eq!(b.wait().unwrap().code(), Some(0), "b exits 0 on SIGTERM");
    let all = lives(&log);
    assert!(
        all.iter().all(|l| l.stop.is_some()),
        "every command stopped: {all:?}"
    );
    for shard in 0..4 {
        let mut ls: Vec<&Life> = all.iter().filter(|l| l.shard == shard).collect();
        ls.sort_by_key(|l| l.start);
        for w in ls.windows(2) {
            assert!(
                w[0].stop.unwrap() <= w[1].start,
                "shard {shard}: commands overlap: {ls:?}"
            );
            assert!(
                w[1].token > w[0].token,
                "shard {shard}: the token did not rise: {ls:?}"
            );
        }
    }
}
