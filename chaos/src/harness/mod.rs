//! The rounds: three `tenure run` candidates, each through its own fault
//! proxy to one real store; a fault drawn per round, applied to the leader
//! or the store; the heartbeat log and the downstream judge.

mod candidate;
mod log;
mod options;
mod real_kube;
mod report;
mod server;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use tenure_conformance::fixtures::container::{Way, way};
use tenure_conformance::fixtures::etcd::{EtcdCluster, EtcdServer};
use tenure_conformance::fixtures::redis::{RedisServer, RedisServerOptions};
use tenure_conformance::{Fault as ProxyFault, FaultProxy};

use crate::downstream::{self, Ledger};
use crate::mono_ns;

/// Lease 2 s, renew deadline 1.5 s (tolerates a clock-rate ratio of 1.33),
/// retry 0.3 s: the CLI's default grace is then 0.57 s.
pub(crate) const TIMING: [&str; 6] = [
    "--lease-duration",
    "2s",
    "--renew-deadline",
    "1500ms",
    "--retry-period",
    "300ms",
];
/// How long a freeze, a stop or a cut lasts: beyond the lease.
const HOLD: Duration = Duration::from_millis(3000);
const CANDIDATES: usize = 3;
/// A mixed fleet: two `tenure run` candidates (c0, c1), client-go's
/// elector (g2) and Istio's (i3).
const MIXED: [&str; 4] = ["c0", "c1", "g2", "i3"];
/// How long a `tenure run` may take to exit once signalled: the grace
/// (0.57 s) and a release bounded by the renew deadline, with margin.
const EXIT_LIMIT: Duration = Duration::from_secs(10);
/// The longest a frozen leader may go on after its resume: one beat
/// (10 ms) begun before the freeze, with margin for a loaded machine.
const TAIL_LIMIT_MS: f64 = 50.0;
/// A round that takes longer than this is stuck: the run stops and says so.
const ROUND_LIMIT: Duration = Duration::from_secs(90);

use candidate::*;
use log::*;
pub(crate) use options::*;
use real_kube::*;
use report::*;
use server::*;

struct Harness {
    options: Options,
    server: Server,
    candidates: Vec<Candidate>,
    log_path: PathBuf,
    log: Log,
    ledger: Arc<Mutex<Ledger>>,
    downstream: String,
    worker: PathBuf,
    dir: tempdir::Dir,
    /// Terms that began before this were judged by an earlier round.
    judged_until: i128,
    /// Go electors that did not exit within `EXIT_LIMIT` of SIGTERM, and
    /// were killed (not counted yet in a round's outcome).
    go_stuck: usize,
}

mod tempdir {
    //! A directory removed when dropped.
    pub(super) struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Runs the rounds; prints the report; true when every rule held.
pub(crate) async fn run(options: Options) -> Result<bool, String> {
    if !options.tenure.exists() {
        return Err(format!(
            "no tenure binary at {} (build it: cargo build -p tenure-cli, or pass --tenure)",
            options.tenure.display()
        ));
    }
    let server = match options.store {
        StoreKind::Redis => Server::Redis(RedisServer::local(RedisServerOptions::default())),
        StoreKind::Etcd => Server::Etcd(EtcdServer::start_local()),
        StoreKind::EtcdCluster => Server::Cluster(EtcdCluster::start()),
        StoreKind::Kube => Server::RealKube(RealKube::start()?),
        StoreKind::KubeFixture => Server::Kube(KubeProcess::start()?),
    };
    let dir = std::env::temp_dir().join(format!("tenure-chaos-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let log_path = dir.join("beats.log");
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let downstream = downstream::serve(ledger.clone())
        .await
        .map_err(|e| format!("downstream: {e}"))?;
    let mut h = Harness {
        log: Log::open(&log_path).map_err(|e| e.to_string())?,
        options,
        server,
        candidates: Vec::new(),
        log_path,
        ledger,
        downstream,
        worker: std::env::current_exe().map_err(|e| e.to_string())?,
        dir: tempdir::Dir(dir),
        judged_until: 0,
        go_stuck: 0,
    };
    let ids: Vec<String> = if h.options.candidates == CandidateKind::Mixed {
        MIXED.iter().map(|id| id.to_string()).collect()
    } else {
        (0..CANDIDATES).map(|i| format!("c{i}")).collect()
    };
    for id in ids {
        let c = h.spawn(&id, None).await?;
        h.candidates.push(c);
    }
    let mut rng = StdRng::seed_from_u64(h.options.seed);
    let mut outcomes = Vec::new();
    let mut failures: Vec<(usize, Fault, String)> = Vec::new();
    let started = std::time::Instant::now();
    for round in 0..h.options.rounds {
        // Every fault once per cycle, each cycle in a seeded order.
        let n = h.options.faults.len();
        if round % n == 0 {
            h.options.faults.shuffle(&mut rng);
        }
        let fault = h.options.faults[round % n];
        let outcome = match tokio::time::timeout(ROUND_LIMIT, h.round(fault, round)).await {
            Ok(Ok(outcome)) => outcome,
            // A round that finds no leader, or sticks, is a finding: it is
            // reported and fails the run, which goes on with fresh
            // candidates, so that one finding does not end a long run.
            failed => {
                let why = match failed {
                    Ok(Err(e)) => e,
                    _ => format!("stuck for {ROUND_LIMIT:?}"),
                };
                eprintln!("round {round}: {} FAILED: {why}", fault.name());
                failures.push((round, fault, why));
                if failures.len() >= 3 && failures[failures.len() - 3].0 + 2 == round {
                    report(&h.options, &outcomes, &failures, started.elapsed());
                    return Err("three rounds in a row failed".into());
                }
                h.server.heal_all();
                for i in 0..h.candidates.len() {
                    h.replace(i, None).await?;
                }
                continue;
            }
        };
        eprintln!(
            "round {round}: {} struck {} at {:.3} s (monotonic), overlap {:.1} ms, tail {:?} ms, stale accepted {}, fail-over {:?} ms",
            fault.name(),
            outcome.struck,
            outcome.at as f64 / 1e9,
            outcome.overlap_ms,
            outcome.tail_ms.map(|t| t.round()),
            outcome.stale_accepted,
            outcome.failover_ms.map(|f| f.round())
        );
        outcomes.push(outcome);
        if (round + 1) % 100 == 0 && round + 1 < h.options.rounds {
            // A long run reports as it goes.
            report(&h.options, &outcomes, &failures, started.elapsed());
        }
    }
    // A candidate that gave up in the last round counts too.
    let (exits, exits_by_design) = h.respawn_exited().await?;
    if let Some(last) = outcomes.last_mut() {
        last.exits += exits;
        last.exits_by_design += exits_by_design;
    }
    Ok(report(&h.options, &outcomes, &failures, started.elapsed()))
}

impl Harness {
    /// Starts `tenure run` for `id` through a new fault proxy, optionally on
    /// a clock running at `rate` (libfaketime).
    async fn spawn(&self, id: &str, rate: Option<f64>) -> Result<Candidate, String> {
        let mut proxies = Vec::new();
        for addr in self.server.addrs() {
            proxies.push(
                FaultProxy::start(addr)
                    .await
                    .map_err(|e| format!("fault proxy: {e}"))?,
            );
        }
        let hosts: Vec<String> = proxies.iter().map(|p| p.addr().to_string()).collect();
        let url = match self.options.store {
            StoreKind::Redis => format!("redis://{}/chaos", hosts.join(",")),
            StoreKind::Etcd | StoreKind::EtcdCluster => {
                format!("etcd://{}/chaos", hosts.join(","))
            }
            StoreKind::Kube | StoreKind::KubeFixture => "k8s://default/chaos?kind=lease".to_owned(),
        };
        let who = Who::of(id);
        let logs = std::env::var_os("TENURE_CHAOS_LOGS");
        let library = self.options.candidates == CandidateKind::Library;
        let program = match who {
            Who::Tenure if library => self.worker.clone(),
            Who::Tenure => self.options.tenure.clone(),
            Who::ClientGo | Who::Istio => go_electors()?,
        };
        // A skewed candidate runs under the `faketime` wrapper, which shares
        // one fake clock with every process below it (tenure, its
        // supervisor, the command): a bare LD_PRELOAD would give each
        // process a fake clock of its own, counted from its own start.
        let mut cmd = match rate {
            Some(rate) => {
                remove_faketime_leftovers();
                let mut c = Command::new(faketime_command()?);
                c.args(["-f", &format!("+0 x{rate}")]).arg(&program);
                c
            }
            None => Command::new(&program),
        };
        if who != Who::Tenure {
            // Client-go's and Istio's electors on the same Lease, with the
            // same timing, running the same worker while they lead. Each
            // process is a new identity (Go controllers name themselves
            // `hostname_uuid`) and ends with its term (`-once`: RunOrDie
            // returns then): the same identity winning again would not
            // raise leaseTransitions, so its token would not rise.
            cmd.args([
                "-impl",
                if who == Who::Istio {
                    "istio"
                } else {
                    "client-go"
                },
            ])
            .args(["-lock", "lease", "-name", "chaos", "-once", "-identity"])
            .arg(format!("{id}_{}", mono_ns()))
            .args(["-lease", "2s", "-renew", "1500ms", "-retry", "300ms", "--"])
            .arg(&self.worker)
            .args(["worker", &self.downstream])
            .arg(&self.log_path);
        } else if library {
            cmd.args(["candidate", &url, id, &self.downstream])
                .arg(&self.log_path);
        } else {
            cmd.args(["run", "--lock", &url, "--identity", id])
                .args(TIMING)
                .args(if logs.is_some() {
                    &["--log", "info"][..]
                } else {
                    &[]
                })
                .arg("--")
                .arg(&self.worker)
                .args(["worker", &self.downstream])
                .arg(&self.log_path);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let config = match &self.server {
            Server::Kube(_) => Some(kubeconfig(&hosts[0])),
            Server::RealKube(k) => Some(k.kubeconfig_via(&hosts[0])),
            _ => None,
        };
        if let Some(config) = config {
            // Each candidate reaches the API server through its own proxy.
            let path = self.dir.0.join(format!("kubeconfig-{id}-{}", mono_ns()));
            std::fs::write(&path, config).map_err(|e| e.to_string())?;
            cmd.env("KUBECONFIG", path);
        }
        // Each candidate's stderr goes to a file, so that one that exits by
        // itself can say why; TENURE_CHAOS_LOGS=DIR keeps them, at
        // `--log info`.
        let dir = logs.map_or_else(|| self.dir.0.clone(), PathBuf::from);
        let log = dir.join(format!("{id}-{}.log", mono_ns()));
        let file = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        cmd.stderr(file);
        // A harness killed by a signal takes its candidates with it (a
        // `tenure run`'s supervisor then stops its command).
        die_with_the_harness(&mut cmd);
        let child = cmd
            .spawn()
            .map_err(|e| format!("start {}: {e}", program.display()))?;
        Ok(Candidate {
            who,
            log,
            id: id.to_owned(),
            child,
            proxies,
            spawned: mono_ns(),
            wrapped: rate.is_some(),
        })
    }

    async fn replace(&mut self, i: usize, rate: Option<f64>) -> Result<(), String> {
        let id = self.candidates[i].id.clone();
        let new = self.spawn(&id, rate).await?;
        // Dropping the old one kills it (if it still runs).
        self.candidates[i] = new;
        Ok(())
    }

    /// The current term once it has run for a while; waits for one.
    async fn stable_leader(&mut self, limit: Duration) -> Result<Term, String> {
        let deadline = mono_ns() + limit.as_nanos() as i128;
        loop {
            self.log.refresh();
            let now = mono_ns();
            // A term of a candidate's current process that still runs (a
            // replaced one's command may still beat until its supervisor
            // kills it; a term that has just ended beat a moment ago).
            let live: Vec<(String, i128)> = self
                .candidates
                .iter_mut()
                .filter_map(|c| {
                    matches!(c.child.try_wait(), Ok(None)).then(|| (c.id.clone(), c.spawned))
                })
                .collect();
            let current = |t: &Term| {
                live.iter()
                    .any(|(id, spawned)| *id == t.id && t.first > *spawned)
            };
            if let Some(t) =
                self.log.sorted().into_iter().rev().find(|t| {
                    now - t.last < 60_000_000 && now - t.first > 300_000_000 && current(t)
                })
            {
                return Ok(t);
            }
            if now > deadline {
                // Say what the log shows, for the report and for a replay.
                let recent: Vec<String> = self
                    .log
                    .sorted()
                    .iter()
                    .rev()
                    .take(4)
                    .map(|t| {
                        format!(
                            "{} term {} token {} began {:.1} s ago, last beat {:.3} s ago",
                            t.id,
                            t.key,
                            t.token,
                            (now - t.first) as f64 / 1e9,
                            (now - t.last) as f64 / 1e9
                        )
                    })
                    .collect();
                let alive: Vec<String> = self
                    .candidates
                    .iter_mut()
                    .map(|c| match c.child.try_wait().ok().flatten() {
                        None => format!("{} pid {} runs", c.id, c.tenure_pid()),
                        Some(status) => format!(
                            "{} pid {} exited ({status}), last words {:?}",
                            c.id,
                            c.tenure_pid(),
                            c.last_words()
                        ),
                    })
                    .collect();
                return Err(format!(
                    "no stable leader within {limit:?}; latest terms: {recent:?}; candidates: {alive:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for a term other than `old` that began after `since`.
    async fn new_term(&mut self, old: &str, since: i128, limit: Duration) -> Option<Term> {
        let deadline = mono_ns() + limit.as_nanos() as i128;
        loop {
            self.log.refresh();
            if let Some(t) = self
                .log
                .sorted()
                .into_iter()
                .find(|t| t.key != old && t.first > since)
            {
                return Some(t);
            }
            if mono_ns() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits for candidate `i`'s process to exit; a `tenure run` that
    /// outlives `limit` after SIGTERM (grace, then a release bounded by the
    /// renew deadline) is a finding, and is killed.
    async fn ended(&mut self, i: usize, limit: Duration) -> Result<(), String> {
        let deadline = mono_ns() + limit.as_nanos() as i128;
        while self.candidates[i].child.try_wait().ok().flatten().is_none() {
            if mono_ns() > deadline {
                let _ = self.candidates[i].child.kill();
                if self.candidates[i].who != Who::Tenure {
                    // A Go elector stuck in its release (Istio's fork
                    // releases without a timeout, and a request the
                    // server holds can hang it): not the elector under
                    // test, so killed and counted, not a failed round.
                    let _ = self.candidates[i].child.wait();
                    self.go_stuck += 1;
                    return Ok(());
                }
                return Err(format!(
                    "candidate {} did not exit within {limit:?}",
                    self.candidates[i].id
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    fn index_of(&self, id: &str) -> usize {
        self.candidates
            .iter()
            .position(|c| c.id == id)
            .expect("a known candidate")
    }

    /// Restarts candidates whose process exited (as a process manager
    /// would); returns how many `tenure run`s did (a finding) and how many
    /// exits were by design: a client-go elector's (`RunOrDie` returns once
    /// its lease is lost, and a Go controller then exits), or a `tenure
    /// run` started while the store was down, which fails fast with one
    /// line before it campaigns (a real kube-apiserver takes seconds to
    /// serve again after a restart).
    async fn respawn_exited(&mut self) -> Result<(usize, usize), String> {
        let (mut exited, mut by_design) = (0, 0);
        for i in 0..self.candidates.len() {
            if let Ok(Some(status)) = self.candidates[i].child.try_wait() {
                if self.candidates[i].who == Who::Tenure && self.candidates[i].failed_fast() {
                    eprintln!(
                        "candidate {} failed fast at start (store unreachable); restarting it",
                        self.candidates[i].id
                    );
                    by_design += 1;
                } else if self.candidates[i].who == Who::Tenure {
                    eprintln!(
                        "candidate {} exited ({status}); restarting it; its last words: {:?}",
                        self.candidates[i].id,
                        self.candidates[i].last_words()
                    );
                    exited += 1;
                } else {
                    by_design += 1;
                }
                self.replace(i, None).await?;
            }
        }
        Ok((exited, by_design))
    }

    async fn round(&mut self, fault: Fault, round: usize) -> Result<Outcome, String> {
        // Every term that began since the last round's judgement is judged
        // here, those of this round's set-up (the steps down before a skew
        // or a Go leader's round) included.
        let taken_before: HashMap<String, usize> = self
            .candidates
            .iter()
            .map(|c| (c.id.clone(), c.terms_taken()))
            .collect();
        let judged_until = self.judged_until;
        let writes_before = self.ledger.lock().unwrap().writes.len();
        let (exits, exits_by_design) = self.respawn_exited().await?;
        let mut leader = self.stable_leader(Duration::from_secs(20)).await?;
        let skew = matches!(fault, Fault::SkewWithin | Fault::SkewBeyond);
        if self.options.candidates == CandidateKind::Mixed
            && round % 2 == 1
            && !skew
            && Who::of(&leader.id) == Who::Tenure
        {
            // Every other round strikes a Go leader: tenure's watchers win
            // every release race against pollers, so left alone the Go
            // electors would seldom lead. The tenure candidates step down
            // (SIGTERM releases) and come back once a Go elector leads.
            let tenure: Vec<usize> = (0..self.candidates.len())
                .filter(|&j| self.candidates[j].who == Who::Tenure)
                .collect();
            for &j in &tenure {
                signal(self.candidates[j].tenure_pid(), libc::SIGTERM);
            }
            for &j in &tenure {
                self.ended(j, EXIT_LIMIT).await?;
            }
            leader = self.stable_leader(Duration::from_secs(20)).await?;
            for &j in &tenure {
                self.replace(j, None).await?;
            }
        }
        let mut resumed = None;
        let library = self.options.candidates == CandidateKind::Library;
        if skew {
            // The skewed candidate must lead when it is cut off: the others
            // step down (SIGTERM releases the lock) so that it alone can
            // win, and come back once it leads. (Replacing c0 when it led
            // left the cut-off to fall on a follower.)
            let rate = if fault == Fault::SkewWithin { 0.8 } else { 0.5 };
            self.replace(0, Some(rate)).await?;
            for j in 1..self.candidates.len() {
                signal(self.candidates[j].tenure_pid(), libc::SIGTERM);
            }
            for j in 1..self.candidates.len() {
                self.ended(j, EXIT_LIMIT).await?;
            }
            leader = self.stable_leader(Duration::from_secs(20)).await?;
            for j in 1..self.candidates.len() {
                self.replace(j, None).await?;
            }
            if leader.id != "c0" {
                return Err(format!("{leader:?} leads, not the skewed c0"));
            }
        }
        let i = self.index_of(&leader.id);
        let tenure = self.candidates[i].tenure_pid();
        let t0 = mono_ns();
        let mut expect_new = true;
        match fault {
            Fault::Kill9 => {
                let _ = self.candidates[i].child.kill();
                self.ended(i, EXIT_LIMIT).await?;
            }
            Fault::Sigterm => {
                signal(tenure, libc::SIGTERM);
                self.ended(i, EXIT_LIMIT).await?;
            }
            Fault::StopTenure => {
                signal(tenure, libc::SIGSTOP);
                tokio::time::sleep(HOLD).await;
                if library {
                    // The library candidate's work is frozen with it: what
                    // it does after the resume is the frozen tail.
                    resumed = Some(mono_ns());
                }
                signal(tenure, libc::SIGCONT);
            }
            Fault::FreezeTree => {
                let supervisor = crate::procfs::children_of(tenure as u32).into_iter().next();
                // A `tenure run` command's process group (a library
                // candidate is one process).
                let group = if library {
                    tenure
                } else {
                    -(leader.pid as i32)
                };
                signal(tenure, libc::SIGSTOP);
                if let Some(s) = supervisor {
                    signal(s as i32, libc::SIGSTOP);
                }
                signal(group, libc::SIGSTOP);
                tokio::time::sleep(HOLD).await;
                resumed = Some(mono_ns());
                signal(tenure, libc::SIGCONT);
                if let Some(s) = supervisor {
                    signal(s as i32, libc::SIGCONT);
                }
                signal(group, libc::SIGCONT);
            }
            Fault::CutOff | Fault::SkewWithin | Fault::SkewBeyond => {
                for p in &self.candidates[i].proxies {
                    p.set(ProxyFault::Hang);
                }
                tokio::time::sleep(HOLD).await;
                for p in &self.candidates[i].proxies {
                    p.set(ProxyFault::Pass);
                }
            }
            Fault::StoreRestart => {
                expect_new = self.options.store == StoreKind::Redis;
                self.server.restart()?;
            }
            Fault::KubeEtcdFreeze | Fault::KubeEtcdRestart => {
                expect_new = false;
                if let Server::RealKube(k) = &mut self.server {
                    if fault == Fault::KubeEtcdRestart {
                        k.restart_etcd()?;
                    } else {
                        k.pause_etcd();
                        tokio::time::sleep(HOLD).await;
                        k.resume_all();
                    }
                }
            }
            Fault::StoreFreeze => {
                expect_new = false;
                let member = self.server.pause();
                tokio::time::sleep(HOLD).await;
                self.server.resume(member);
            }
            Fault::StorePartition => {
                expect_new = false;
                let member = self.server.partition()?;
                tokio::time::sleep(HOLD).await;
                self.server.heal(member)?;
            }
            Fault::RaftLeaderKill => {
                expect_new = false;
                if let Server::Cluster(c) = &mut self.server {
                    let i = c.leader().ok_or("no raft leader found")?;
                    c.stop(i);
                    tokio::time::sleep(HOLD).await;
                    c.restart(i);
                }
            }
        }
        let next = self
            .new_term(
                &leader.key,
                t0,
                Duration::from_secs(if expect_new { 10 } else { 4 }),
            )
            .await;
        // Heal: restart what was killed, put skewed clocks back.
        if matches!(fault, Fault::Kill9 | Fault::Sigterm) {
            self.replace(i, None).await?;
        }
        if matches!(fault, Fault::SkewWithin | Fault::SkewBeyond) {
            self.replace(0, None).await?;
        }
        tokio::time::sleep(Duration::from_millis(800)).await;
        self.log.refresh();
        let terms = self.log.sorted();
        if let Some(last) = terms.last() {
            self.judged_until = last.first;
        }
        // Overlap of each pair of terms that began since the fault, put on
        // the earlier term's elector (it worked on past the later term's
        // start): tenure's must be none; a Go elector's is reported.
        let who = |t: &Term| Who::of(&t.id);
        let mut overlap_ms: f64 = 0.0;
        let mut go_overlap_ms: f64 = 0.0;
        let mut taken_overlap_ms: f64 = 0.0;
        let mut tokens_rose = true;
        for pair in terms.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            if b.first <= judged_until {
                continue;
            }
            if b.token <= a.token {
                tokens_rose = false;
            }
            if resumed.is_some() && a.key == leader.key {
                continue; // reported as the tail
            }
            let overlap = (a.last - b.first) as f64 / 1e6;
            // A tenure term that another writer ended under a valid lease
            // (its `tenure run` says so, and kills the command at once):
            // in a mixed fleet, a Go elector's release of a lease it no
            // longer held. Its overlap is that writer's, reported apart.
            let taken = self
                .candidates
                .iter()
                .find(|c| c.id == a.id && c.who == Who::Tenure)
                .is_some_and(|c| c.terms_taken() > taken_before.get(&c.id).copied().unwrap_or(0));
            if who(a) == Who::Tenure && !taken {
                overlap_ms = overlap_ms.max(overlap);
            } else if who(a) == Who::Tenure {
                taken_overlap_ms = taken_overlap_ms.max(overlap);
            } else {
                go_overlap_ms = go_overlap_ms.max(overlap);
            }
        }
        let tail_ms = resumed.map(|r| {
            let old = terms.iter().find(|t| t.key == leader.key);
            old.map_or(0.0, |t| ((t.last - r).max(0)) as f64 / 1e6)
        });
        let writes = self.ledger.lock().unwrap().writes[writes_before..].to_vec();
        let all = self.ledger.lock().unwrap().writes.clone();
        let stale_accepted =
            downstream::stale_accepted(&all) - downstream::stale_accepted(&all[..writes_before]);
        Ok(Outcome {
            fault,
            failover_ms: if expect_new {
                next.map(|n| (n.first - t0) as f64 / 1e6)
            } else {
                None
            },
            led_by: who(&leader),
            struck: leader.id.clone(),
            at: t0,
            overlap_ms: overlap_ms.max(0.0),
            go_overlap_ms: go_overlap_ms.max(0.0),
            taken_overlap_ms: taken_overlap_ms.max(0.0),
            tail_ms,
            stale_accepted,
            stale_rejected: writes.iter().filter(|w| !w.accepted).count(),
            tokens_rose,
            exits,
            exits_by_design: exits_by_design + std::mem::take(&mut self.go_stuck),
        })
    }
}

fn signal(pid: i32, sig: libc::c_int) {
    // SAFETY: kill(2) on processes this harness started.
    unsafe { libc::kill(pid, sig) };
}
