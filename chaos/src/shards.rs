//! `tenure-chaos shards`: three `tenure shard` replicas sharing eight
//! shards on a real store. Each shard's command is the worker, writing to
//! that shard's own fencing downstream with its token. A fault per round,
//! on a seeded choice of replica: `kill -9` (then restarted), SIGSTOP for
//! 3 s (then SIGCONT), SIGTERM (must exit 0; then restarted). Judged per
//! shard: no stale write accepted, no two terms' heartbeats interleaved,
//! tokens rising; and before each round every shard has a live command
//! again, and every replica one at least, within `2 × lease + 3 × retry`
//! and a margin.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tenure_conformance::fixtures::etcd::EtcdServer;
use tenure_conformance::fixtures::redis::{RedisServer, RedisServerOptions};

use crate::downstream::{self, Ledger};
use crate::mono_ns;

const SHARDS: usize = 8;
const REPLICAS: usize = 3;
/// The quick mix's timing (lease 2 s, renew deadline 1.5 s, retry 0.3 s).
use crate::harness::TIMING;
/// Every shard has a live command again within this: a dead replica's
/// slot, then its shards run out (2 × 2 s), three rounds (3 × 0.36 s),
/// and a margin for a loaded machine.
const OWNED_LIMIT: Duration = Duration::from_secs(12);
const HOLD: Duration = Duration::from_secs(3);

enum Server {
    Redis(RedisServer),
    Etcd(EtcdServer),
}

impl Server {
    fn url(&self) -> String {
        match self {
            Server::Redis(s) => format!("redis://{}/chaos", s.addr()),
            Server::Etcd(s) => format!("etcd://{}/chaos", s.addr()),
        }
    }
}

struct Fleet {
    tenure: PathBuf,
    worker: PathBuf,
    url: String,
    downstreams: String,
    log: PathBuf,
    replicas: Vec<Child>,
}

impl Fleet {
    fn spawn(&self, i: usize) -> Result<Child, String> {
        Command::new(&self.tenure)
            .args([
                "shard",
                "--lock",
                &self.url,
                "--shards",
                &SHARDS.to_string(),
            ])
            .args(["--member-slots", "6", "--identity", &format!("r{i}")])
            .args(TIMING)
            .arg("--")
            .arg(&self.worker)
            .args(["worker", &self.downstreams])
            .arg(&self.log)
            .stdout(Stdio::null())
            .stderr(self.stderr(i)?)
            .spawn()
            .map_err(|e| format!("start tenure shard: {e}"))
    }
}

impl Fleet {
    /// Replica `i`'s stderr, appended to a file of its own (shown when the
    /// run fails).
    fn stderr(&self, i: usize) -> Result<Stdio, String> {
        let path = self.log.with_file_name(format!("r{i}.log"));
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map(Stdio::from)
            .map_err(|e| e.to_string())
    }

    fn stderr_tail(&self, i: usize) -> String {
        let text = std::fs::read_to_string(self.log.with_file_name(format!("r{i}.log")))
            .unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

/// One command's life in the heartbeat log: `ID#SHARD`, pid, token, first
/// and last beat.
#[derive(Clone, Debug)]
struct Life {
    shard: usize,
    who: String,
    token: u64,
    first: i128,
    last: i128,
}

fn lives(log: &Path) -> Vec<Life> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut by_pid: BTreeMap<String, Life> = BTreeMap::new();
    for line in text.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        let (kind, id, pid, at) = match w.as_slice() {
            [kind, id, pid, at, ..] => (*kind, *id, *pid, *at),
            _ => continue,
        };
        let (Some((who, shard)), Ok(at)) = (id.split_once('#'), at.parse::<i128>()) else {
            continue;
        };
        let Ok(shard) = shard.parse::<usize>() else {
            continue;
        };
        let entry = by_pid.entry(pid.to_owned()).or_insert(Life {
            shard,
            who: who.to_owned(),
            token: 0,
            first: at,
            last: at,
        });
        if kind == "start" {
            entry.token = w.get(4).and_then(|t| t.parse().ok()).unwrap_or(0);
        }
        entry.first = entry.first.min(at);
        entry.last = entry.last.max(at);
    }
    by_pid.into_values().collect()
}

/// Shards with a beat in the last 300 ms from a command that is not the
/// struck replica's (`struck`, at `since`) or began after that; and
/// whether every replica runs one such command at least (a replica just
/// restarted has rejoined: the next fault strikes a working replica).
fn live_shards(log: &Path, struck: Option<(&str, i128)>) -> (usize, bool) {
    let now = mono_ns();
    let mut live = [false; SHARDS];
    let mut working = [false; REPLICAS];
    for l in lives(log) {
        let fresh = match struck {
            Some((who, since)) => l.who != who || l.first > since,
            None => true,
        };
        if now - l.last < 300_000_000 && fresh {
            live[l.shard] = true;
            if let Some(i) = l
                .who
                .strip_prefix('r')
                .and_then(|i| i.parse::<usize>().ok())
            {
                working[i.min(REPLICAS - 1)] = true;
            }
        }
    }
    (
        live.iter().filter(|x| **x).count(),
        working.iter().all(|w| *w),
    )
}

/// Each thread of `pid`: its name, state and kernel wait channel.
fn threads(pid: u32) -> String {
    let mut out = String::new();
    let dir = format!("/proc/{pid}/task");
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let p = entry.path();
        let read = |f: &str| std::fs::read_to_string(p.join(f)).unwrap_or_default();
        let state = read("stat");
        let state = state
            .rsplit_once(')')
            .map(|(_, r)| r.trim().chars().next().unwrap_or('?'));
        out += &format!(
            "\n  {} {:?} wchan={} stack={}",
            read("comm").trim(),
            state,
            read("wchan"),
            read("stack")
                .lines()
                .take(4)
                .collect::<Vec<_>>()
                .join(" < ")
        );
    }
    out
}

fn signal(child: &Child, sig: libc::c_int) {
    // SAFETY: kill(2) with a pid and a signal number.
    unsafe { libc::kill(child.id() as i32, sig) };
}

/// Runs the rounds; prints one row per round and a verdict; true when every
/// rule held.
pub(crate) async fn run(
    store: &str,
    rounds: usize,
    seed: u64,
    tenure: PathBuf,
) -> Result<bool, String> {
    if !tenure.exists() {
        return Err(format!(
            "no tenure binary at {} (cargo build -p tenure-cli)",
            tenure.display()
        ));
    }
    let server = match store {
        "redis" => Server::Redis(RedisServer::local(RedisServerOptions::default())),
        "etcd" => Server::Etcd(EtcdServer::start_local()),
        other => return Err(format!("shards: --store redis or etcd, not {other}")),
    };
    let dir = std::env::temp_dir().join(format!("tenure-chaos-shards-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let ledgers: Vec<Arc<Mutex<Ledger>>> = (0..SHARDS).map(|_| Arc::default()).collect();
    let mut addrs = Vec::new();
    for l in &ledgers {
        addrs.push(
            downstream::serve(l.clone())
                .await
                .map_err(|e| format!("downstream: {e}"))?,
        );
    }
    let mut fleet = Fleet {
        tenure,
        worker: std::env::current_exe().map_err(|e| e.to_string())?,
        url: server.url(),
        downstreams: addrs.join(","),
        log: dir.join("beats.log"),
        replicas: Vec::new(),
    };
    for i in 0..REPLICAS {
        let child = fleet.spawn(i)?;
        fleet.replicas.push(child);
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut ok = true;
    println!(
        "| round | fault | replica | every shard has a command again, every replica one at least, after |\n|---|---|---|---|"
    );
    let mut struck: Option<(String, i128, Instant)> = None;
    for round in 0..=rounds {
        // Every shard has a live command again: not the struck replica's,
        // or begun after the fault.
        let started = struck.as_ref().map_or_else(Instant::now, |s| s.2);
        let by = struck.as_ref().map(|(who, at, _)| (who.as_str(), *at));
        while live_shards(&fleet.log, by) != (SHARDS, true) {
            if started.elapsed() > OWNED_LIMIT {
                print!(
                    "**not within {OWNED_LIMIT:?}** (live shards, every replica working: {:?}) ",
                    live_shards(&fleet.log, by)
                );
                for i in 0..REPLICAS {
                    eprintln!("r{i}'s stderr:\n{}", fleet.stderr_tail(i));
                }
                ok = false;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if round > 0 {
            println!("{:.2} s |", started.elapsed().as_secs_f64());
        }
        if round == rounds {
            break;
        }
        let i = rng.random_range(0..REPLICAS);
        let fault = ["kill-9", "sigstop", "sigterm"][round % 3];
        eprintln!("tenure-chaos shards: round {} {fault} r{i}", round + 1);
        print!("| {} | {fault} | r{i} | ", round + 1);
        struck = Some((format!("r{i}"), mono_ns(), Instant::now()));
        match fault {
            "kill-9" => {
                signal(&fleet.replicas[i], libc::SIGKILL);
                let _ = fleet.replicas[i].wait();
                fleet.replicas[i] = fleet.spawn(i)?;
            }
            "sigstop" => {
                signal(&fleet.replicas[i], libc::SIGSTOP);
                tokio::time::sleep(HOLD).await;
                signal(&fleet.replicas[i], libc::SIGCONT);
            }
            _ => {
                signal(&fleet.replicas[i], libc::SIGTERM);
                let stop = Instant::now();
                let code = loop {
                    if let Some(s) = fleet.replicas[i].try_wait().map_err(|e| e.to_string())? {
                        if s.code().is_none() {
                            use std::os::unix::process::ExitStatusExt;
                            eprintln!("r{i} ended by signal {:?}", s.signal());
                        }
                        break s.code();
                    }
                    if stop.elapsed() > Duration::from_secs(10) {
                        eprintln!(
                            "r{i} still runs 10 s after SIGTERM: {}",
                            threads(fleet.replicas[i].id())
                        );
                        let _ = fleet.replicas[i].kill();
                        break None;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                };
                if code != Some(0) {
                    print!("(exit {code:?}: **should be 0**) ");
                    eprintln!("r{i}'s stderr:\n{}", fleet.stderr_tail(i));
                    ok = false;
                }
                fleet.replicas[i] = fleet.spawn(i)?;
            }
        }
    }
    for r in &fleet.replicas {
        signal(r, libc::SIGTERM);
    }
    for r in &mut fleet.replicas {
        let _ = r.wait();
    }

    // The judges.
    let mut stale = 0;
    for l in &ledgers {
        stale += downstream::stale_accepted(&l.lock().unwrap().writes);
    }
    let all = lives(&fleet.log);
    let mut overlaps = Vec::new();
    for shard in 0..SHARDS {
        let mut ls: Vec<&Life> = all.iter().filter(|l| l.shard == shard).collect();
        ls.sort_by_key(|l| l.first);
        for w in ls.windows(2) {
            if w[1].first <= w[0].last || w[1].token <= w[0].token {
                overlaps.push(format!(
                    "shard {shard}: {}'s term (token {}, beats to {}) then {}'s (token {}, from {})",
                    w[0].who, w[0].token, w[0].last, w[1].who, w[1].token, w[1].first
                ));
            }
        }
    }
    let writes: usize = ledgers.iter().map(|l| l.lock().unwrap().writes.len()).sum();
    println!(
        "\n{} terms over {SHARDS} shards, {writes} fenced writes; stale writes accepted: {stale}; overlapping terms: {}",
        all.len(),
        overlaps.len()
    );
    for o in &overlaps {
        println!("- {o}");
    }
    let passed = ok && stale == 0 && overlaps.is_empty() && writes > 0;
    if passed {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        eprintln!("tenure-chaos shards: logs kept in {}", dir.display());
    }
    Ok(passed)
}
