//! The rounds: three `tenure run` candidates, each through its own fault
//! proxy to one real store; a fault drawn per round, applied to the leader
//! or the store; the heartbeat log and the downstream judge.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use tenure_conformance::fixtures::container::{way, Way};
use tenure_conformance::fixtures::etcd::{EtcdCluster, EtcdServer};
use tenure_conformance::fixtures::redis::{RedisServer, RedisServerOptions};
use tenure_conformance::{Fault as ProxyFault, FaultProxy};

use crate::downstream::{self, Ledger};
use crate::mono_ns;

/// Lease 2 s, renew deadline 1.5 s (tolerates a clock-rate ratio of 1.33),
/// retry 0.3 s: the CLI's default grace is then 0.57 s.
const TIMING: [&str; 6] = [
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
/// How long a `tenure run` may take to exit once signalled: the grace
/// (0.57 s) and a release bounded by the renew deadline, with margin.
const EXIT_LIMIT: Duration = Duration::from_secs(10);
/// The longest a frozen leader may go on after its resume: one beat
/// (10 ms) begun before the freeze, with margin for a loaded machine.
const TAIL_LIMIT_MS: f64 = 50.0;
/// A round that takes longer than this is stuck: the run stops and says so.
const ROUND_LIMIT: Duration = Duration::from_secs(90);

/// The faults a round can apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fault {
    Kill9,
    Sigterm,
    StopTenure,
    FreezeTree,
    CutOff,
    StoreRestart,
    StoreFreeze,
    /// The store's container taken off its Docker network for 3 s, then
    /// put back (containers only). A server alone: its clients' connections
    /// drop at once and new ones are refused (its published port goes with
    /// the network; a silent black hole is `cut-off`). A cluster: the raft
    /// leader is cut off from its peers (silence) and its clients (refused).
    StorePartition,
    SkewWithin,
    SkewBeyond,
    /// The etcd cluster's raft leader killed, then restarted (clusters only).
    RaftLeaderKill,
}

impl Fault {
    /// Every fault, in report order.
    pub const ALL: [Fault; 11] = [
        Fault::Kill9,
        Fault::Sigterm,
        Fault::StopTenure,
        Fault::FreezeTree,
        Fault::CutOff,
        Fault::StoreRestart,
        Fault::StoreFreeze,
        Fault::StorePartition,
        Fault::SkewWithin,
        Fault::SkewBeyond,
        Fault::RaftLeaderKill,
    ];

    /// The name on the command line and in the report.
    pub fn name(self) -> &'static str {
        match self {
            Fault::Kill9 => "kill-9",
            Fault::Sigterm => "sigterm",
            Fault::StopTenure => "sigstop-tenure",
            Fault::FreezeTree => "freeze-tree",
            Fault::CutOff => "cut-off",
            Fault::StoreRestart => "store-restart",
            Fault::StoreFreeze => "store-freeze",
            Fault::StorePartition => "store-partition",
            Fault::SkewWithin => "skew-x0.8-cut-off",
            Fault::SkewBeyond => "skew-x0.5-cut-off",
            Fault::RaftLeaderKill => "raft-leader-kill",
        }
    }
}

/// Which store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    Redis,
    Etcd,
    /// Three etcd members on loopback.
    EtcdCluster,
    /// The Kubernetes API fixture as a process (`tenure-chaos kube-api`),
    /// holding a Lease.
    Kube,
}

impl StoreKind {
    /// Whether `fault` applies: raft faults need a cluster; the API
    /// fixture keeps its objects in memory, and a real API server loses
    /// nothing when it restarts, so it is frozen but not restarted.
    fn allows(self, fault: Fault) -> bool {
        match fault {
            Fault::RaftLeaderKill => self == StoreKind::EtcdCluster,
            Fault::StoreRestart => self != StoreKind::Kube,
            Fault::StorePartition => self != StoreKind::Kube && way() == Way::Container,
            _ => true,
        }
    }
}

/// How the candidates run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CandidateKind {
    /// `tenure run` processes, each leader's command a `worker`.
    Cli,
    /// `tenure-chaos candidate` processes, each embedding the library.
    Library,
}

/// The run's options.
pub struct Options {
    store: StoreKind,
    rounds: usize,
    seed: u64,
    faults: Vec<Fault>,
    tenure: PathBuf,
    candidates: CandidateKind,
}

impl Options {
    /// Parses `--store`, `--rounds`, `--seed`, `--faults`, `--tenure`.
    pub fn parse(args: &[String]) -> Option<Options> {
        let mut o = Options {
            store: StoreKind::Redis,
            rounds: 0,
            seed: 1,
            faults: Vec::new(),
            tenure: std::env::current_exe().ok()?.with_file_name("tenure"),
            candidates: CandidateKind::Cli,
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let value = it.next()?;
            match flag.as_str() {
                "--store" => {
                    o.store = match value.as_str() {
                        "redis" => StoreKind::Redis,
                        "etcd" => StoreKind::Etcd,
                        "etcd-cluster" => StoreKind::EtcdCluster,
                        "k8s" => StoreKind::Kube,
                        _ => return None,
                    }
                }
                "--candidates" => {
                    o.candidates = match value.as_str() {
                        "cli" => CandidateKind::Cli,
                        "library" => CandidateKind::Library,
                        _ => return None,
                    }
                }
                "--rounds" => o.rounds = value.parse().ok()?,
                "--seed" => o.seed = value.parse().ok()?,
                "--tenure" => o.tenure = PathBuf::from(value),
                "--faults" if value == "all" => o.faults = Vec::new(),
                "--faults" => {
                    o.faults = value
                        .split(',')
                        .map(|n| Fault::ALL.into_iter().find(|f| f.name() == n))
                        .collect::<Option<Vec<_>>>()?
                }
                _ => return None,
            }
        }
        if o.faults.is_empty() {
            // Every fault that applies to the store.
            o.faults = Fault::ALL
                .into_iter()
                .filter(|f| o.store.allows(*f))
                .collect();
        }
        if !o.faults.iter().all(|f| o.store.allows(*f)) {
            return None;
        }
        if o.rounds == 0 {
            o.rounds = o.faults.len();
        }
        Some(o)
    }
}

enum Server {
    Redis(RedisServer),
    Etcd(EtcdServer),
    Cluster(EtcdCluster),
    Kube(KubeProcess),
}

/// `tenure-chaos kube-api`, killed on drop.
struct KubeProcess {
    child: Child,
    addr: std::net::SocketAddr,
}

impl KubeProcess {
    fn start() -> Result<KubeProcess, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = Command::new(exe)
            .arg("kube-api")
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("start the API fixture: {e}"))?;
        let mut url = String::new();
        let stdout = child.stdout.take().ok_or("no stdout")?;
        BufReader::new(stdout)
            .read_line(&mut url)
            .map_err(|e| e.to_string())?;
        let addr = url
            .trim()
            .trim_start_matches("http://")
            .parse()
            .map_err(|_| format!("the API fixture printed {url:?}, not its URL"))?;
        Ok(KubeProcess { child, addr })
    }
}

impl Drop for KubeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// The addresses a client connects to (one per member).
    fn addrs(&self) -> Vec<std::net::SocketAddr> {
        match self {
            Server::Redis(s) => vec![s.addr()],
            Server::Etcd(s) => vec![s.addr()],
            Server::Cluster(c) => (0..3).map(|i| c.addr(i)).collect(),
            Server::Kube(k) => vec![k.addr],
        }
    }
    /// Restarts the store (a cluster: its raft leader).
    fn restart(&mut self) {
        match self {
            Server::Redis(s) => s.restart(),
            Server::Etcd(s) => s.restart(),
            Server::Cluster(c) => {
                let i = c.leader().unwrap_or(0);
                c.restart(i);
            }
            // Excluded by `StoreKind::allows`.
            Server::Kube(_) => {}
        }
    }
    /// Freezes the store (a cluster: its raft leader); returns what to thaw.
    fn pause(&mut self) -> Option<usize> {
        match self {
            Server::Redis(s) => s.pause(),
            Server::Etcd(s) => s.pause(),
            Server::Cluster(c) => {
                let i = c.leader().unwrap_or(0);
                c.pause(i);
                return Some(i);
            }
            Server::Kube(k) => signal(k.child.id() as i32, libc::SIGSTOP),
        }
        None
    }
    /// Takes the store's container (a cluster: its raft leader's) off its
    /// network; returns what to put back.
    fn partition(&mut self) -> Result<Option<usize>, String> {
        const NEEDS: &str = "store-partition needs the store in a container";
        let (container, member) = match self {
            Server::Redis(s) => (s.container(), None),
            Server::Etcd(s) => (s.container(), None),
            Server::Cluster(c) => {
                let i = c.leader().ok_or("no raft leader found")?;
                (c.container(i), Some(i))
            }
            Server::Kube(_) => (None, None),
        };
        container
            .ok_or(NEEDS)?
            .disconnect()
            .map_err(|e| e.to_string())?;
        Ok(member)
    }

    /// Puts a partitioned container back on its network.
    fn heal(&mut self, member: Option<usize>) -> Result<(), String> {
        let container = match self {
            Server::Redis(s) => s.container(),
            Server::Etcd(s) => s.container(),
            Server::Cluster(c) => c.container(member.unwrap_or(0)),
            Server::Kube(_) => None,
        };
        container
            .ok_or("no container")?
            .connect()
            .map_err(|e| e.to_string())
    }

    /// Undoes what a failed round may have left: thaws, reconnects (an
    /// error: it was connected), restarts a stopped cluster member.
    fn heal_all(&mut self) {
        match self {
            Server::Cluster(c) => {
                for i in 0..3 {
                    c.resume(i);
                    if let Some(container) = c.container(i) {
                        let _ = container.connect();
                    }
                    if !c.is_running(i) {
                        c.restart(i);
                    }
                }
            }
            _ => {
                self.resume(None);
                let _ = self.heal(None);
            }
        }
    }
    fn resume(&mut self, member: Option<usize>) {
        match self {
            Server::Redis(s) => s.resume(),
            Server::Etcd(s) => s.resume(),
            Server::Cluster(c) => c.resume(member.unwrap_or(0)),
            Server::Kube(k) => signal(k.child.id() as i32, libc::SIGCONT),
        }
    }
}

struct Candidate {
    id: String,
    /// Its stderr.
    log: PathBuf,
    child: Child,
    /// One proxy per store member.
    proxies: Vec<FaultProxy>,
    /// When this process was started: only terms begun after it are its.
    spawned: i128,
    /// `child` is the `faketime` wrapper; tenure is its child.
    wrapped: bool,
}

impl Candidate {
    /// The last lines of its stderr.
    fn last_words(&self) -> Vec<String> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        lines[lines.len().saturating_sub(3)..].to_vec()
    }

    /// The `tenure run` process (below the `faketime` wrapper, if any).
    fn tenure_pid(&self) -> i32 {
        if self.wrapped {
            if let Some(pid) = children_of(self.child.id()).into_iter().next() {
                return pid as i32;
            }
        }
        self.child.id() as i32
    }
}

impl Drop for Candidate {
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            // Reaped: its pid may belong to another process by now.
            return;
        }
        let tenure = self.tenure_pid();
        signal(tenure, libc::SIGCONT);
        signal(tenure, libc::SIGKILL);
        if self.wrapped {
            // The faketime wrapper exits with its child and removes its
            // semaphore and shared memory; killed, it leaves them behind.
            let deadline = mono_ns() + 2_000_000_000;
            while matches!(self.child.try_wait(), Ok(None)) && mono_ns() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Removes the semaphores and shared memory that faketime wrappers killed
/// before they could clean up left in /dev/shm: a new wrapper whose pid
/// matches a leftover fails (`sem_open: File exists`) and exits 1. Seen
/// in a quick mix once pids had wrapped around.
fn remove_faketime_leftovers() {
    let Ok(entries) = std::fs::read_dir("/dev/shm") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let pid = name
            .strip_prefix("sem.faketime_sem_")
            .or_else(|| name.strip_prefix("faketime_shm_"))
            .and_then(|p| p.parse::<i32>().ok());
        // SAFETY: kill(2) with signal 0 only asks whether the pid exists.
        if pid.is_some_and(|p| unsafe { libc::kill(p, 0) } != 0) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// One term, from the heartbeat log.
#[derive(Clone, Debug)]
struct Term {
    id: String,
    /// The term's key: its writer in the log (the command's pid for
    /// `tenure run`, `PID.N` for a library candidate's N-th term) and the
    /// time of its "start" line.
    key: String,
    /// The process that did the term's work.
    pid: u32,
    token: u64,
    first: i128,
    last: i128,
}

/// Reads the heartbeat log as it grows.
struct Log {
    reader: BufReader<std::fs::File>,
    terms: HashMap<String, Term>,
    /// Each writer's (pid's) current term.
    current: HashMap<String, String>,
    partial: String,
}

impl Log {
    fn open(path: &Path) -> std::io::Result<Log> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(path)?;
        let mut reader = BufReader::new(file);
        reader.seek(SeekFrom::Start(0))?;
        Ok(Log {
            reader,
            terms: HashMap::new(),
            current: HashMap::new(),
            partial: String::new(),
        })
    }

    fn refresh(&mut self) {
        let mut line = String::new();
        while self.reader.read_line(&mut line).unwrap_or(0) > 0 {
            if !line.ends_with('\n') {
                self.partial.push_str(&line);
                line.clear();
                continue;
            }
            let full = std::mem::take(&mut self.partial) + &line;
            line.clear();
            let f: Vec<&str> = full.split_whitespace().collect();
            let (Some(kind), Some(id), Some(key), Some(ns)) = (
                f.first(),
                f.get(1),
                f.get(2),
                f.get(3).and_then(|n| n.parse::<i128>().ok()),
            ) else {
                continue;
            };
            let Some(pid) = key.split('.').next().and_then(|p| p.parse::<u32>().ok()) else {
                continue;
            };
            // A writer's "start" line begins a term: pids are reused (a
            // long run wraps pid_max), so a term is its writer and start.
            if *kind == "start" {
                self.current.insert(key.to_string(), format!("{key}@{ns}"));
            }
            let term_key = self
                .current
                .entry(key.to_string())
                .or_insert_with(|| format!("{key}@{ns}"))
                .clone();
            let term = self.terms.entry(term_key.clone()).or_insert(Term {
                id: id.to_string(),
                key: term_key,
                pid,
                token: 0,
                first: ns,
                last: ns,
            });
            if *kind == "start" {
                term.token = f.get(4).and_then(|t| t.parse().ok()).unwrap_or(0);
                term.first = term.first.min(ns);
            }
            term.last = term.last.max(ns);
        }
    }

    fn sorted(&self) -> Vec<Term> {
        let mut terms: Vec<Term> = self.terms.values().cloned().collect();
        terms.sort_by_key(|t| t.first);
        terms
    }
}

/// What one round measured.
struct Outcome {
    fault: Fault,
    /// Fault to the next term's first beat, when a new term was expected.
    failover_ms: Option<f64>,
    /// Worst overlap of two terms that began in this round (ms; 0: none).
    overlap_ms: f64,
    /// Frozen-tree rounds: how long the old command ran after the resume.
    tail_ms: Option<f64>,
    stale_accepted: usize,
    stale_rejected: usize,
    tokens_rose: bool,
    /// Candidates found exited (and restarted) before this round: a
    /// `tenure run` that gives up is a finding.
    exits: usize,
}

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
}

mod tempdir {
    //! A directory removed when dropped.
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Runs the rounds; prints the report; true when every rule held.
pub async fn run(options: Options) -> Result<bool, String> {
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
        StoreKind::Kube => Server::Kube(KubeProcess::start()?),
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
    };
    for i in 0..CANDIDATES {
        let c = h.spawn(&format!("c{i}"), None).await?;
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
        let outcome = match tokio::time::timeout(ROUND_LIMIT, h.round(fault)).await {
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
            "round {round}: {} overlap {:.1} ms, stale accepted {}, fail-over {:?} ms",
            fault.name(),
            outcome.overlap_ms,
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
    let exits = h.respawn_exited().await?;
    if let Some(last) = outcomes.last_mut() {
        last.exits += exits;
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
            StoreKind::Kube => "k8s://default/chaos?kind=lease".to_owned(),
        };
        let logs = std::env::var_os("TENURE_CHAOS_LOGS");
        let library = self.options.candidates == CandidateKind::Library;
        let program = if library {
            self.worker.clone()
        } else {
            self.options.tenure.clone()
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
        if library {
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
        if self.options.store == StoreKind::Kube {
            // Each candidate reaches the API server through its own proxy.
            let config = self.dir.0.join(format!("kubeconfig-{id}-{}", mono_ns()));
            std::fs::write(&config, kubeconfig(&hosts[0])).map_err(|e| e.to_string())?;
            cmd.env("KUBECONFIG", config);
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
        {
            use std::os::unix::process::CommandExt;
            // SAFETY: prctl is async-signal-safe and touches no memory of ours.
            unsafe {
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
        }
        let child = cmd.spawn().map_err(|e| format!("start tenure run: {e}"))?;
        Ok(Candidate {
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

    /// Restarts candidates whose `tenure run` exited (as a process manager
    /// would); returns how many did.
    async fn respawn_exited(&mut self) -> Result<usize, String> {
        let mut exited = 0;
        for i in 0..self.candidates.len() {
            if let Ok(Some(status)) = self.candidates[i].child.try_wait() {
                eprintln!(
                    "candidate {} exited ({status}); restarting it; its last words: {:?}",
                    self.candidates[i].id,
                    self.candidates[i].last_words()
                );
                exited += 1;
                self.replace(i, None).await?;
            }
        }
        Ok(exited)
    }

    async fn round(&mut self, fault: Fault) -> Result<Outcome, String> {
        let exits = self.respawn_exited().await?;
        let mut leader = self.stable_leader(Duration::from_secs(20)).await?;
        let mut resumed = None;
        let library = self.options.candidates == CandidateKind::Library;
        if matches!(fault, Fault::SkewWithin | Fault::SkewBeyond) {
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
        let writes_before = self.ledger.lock().unwrap().writes.len();
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
                let supervisor = children_of(tenure as u32).into_iter().next();
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
                    p.set(ProxyFault::BlackHole);
                }
                tokio::time::sleep(HOLD).await;
                for p in &self.candidates[i].proxies {
                    p.set(ProxyFault::Pass);
                }
            }
            Fault::StoreRestart => {
                expect_new = self.options.store == StoreKind::Redis;
                self.server.restart();
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
        // Overlap of each pair of terms that began since the fault.
        let mut overlap_ms: f64 = 0.0;
        let mut tokens_rose = true;
        for pair in terms.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            if b.first <= t0 {
                continue;
            }
            if b.token <= a.token {
                tokens_rose = false;
            }
            if resumed.is_some() && a.key == leader.key {
                continue; // reported as the tail
            }
            overlap_ms = overlap_ms.max((a.last - b.first) as f64 / 1e6);
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
            overlap_ms: overlap_ms.max(0.0),
            tail_ms,
            stale_accepted,
            stale_rejected: writes.iter().filter(|w| !w.accepted).count(),
            tokens_rose,
            exits,
        })
    }
}

fn signal(pid: i32, sig: libc::c_int) {
    // SAFETY: kill(2) on processes this harness started.
    unsafe { libc::kill(pid, sig) };
}

/// The pids whose parent is `parent`.
fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit_once(')')?
                        .1
                        .split_whitespace()
                        .nth(1)?
                        .parse()
                        .ok()
                })
                == Some(parent)
        })
        .collect()
}

/// A kubeconfig for the API fixture at `addr` (no credentials: the
/// fixture accepts every request).
fn kubeconfig(addr: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: chaos\n  cluster:\n    server: http://{addr}\n\
         contexts:\n- name: chaos\n  context:\n    cluster: chaos\n    user: chaos\n    namespace: default\n\
         current-context: chaos\nusers:\n- name: chaos\n  user: {{}}\n"
    )
}

/// The `faketime` wrapper (Debian package `faketime`).
fn faketime_command() -> Result<PathBuf, String> {
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("faketime"))
                .find(|p| p.exists())
        })
        .ok_or_else(|| "faketime not found: apt-get install faketime".into())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Prints the table; true when no stale write was accepted and no overlap
/// happened within the tolerance, and beyond-tolerance skew was seen.
fn report(
    options: &Options,
    outcomes: &[Outcome],
    failures: &[(usize, Fault, String)],
    took: Duration,
) -> bool {
    println!(
        "store {:?}, {:?} candidates, {} rounds, seed {}, {:.0} s; lease 2 s, renew deadline 1.5 s, retry 0.3 s",
        options.store,
        options.candidates,
        outcomes.len(),
        options.seed,
        took.as_secs_f64()
    );
    println!("| fault | rounds | rounds with overlap | max overlap ms | frozen tail ms (max) | stale writes accepted | stale writes rejected | fail-over p50 / p99 / max ms | tokens rose |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let exits: usize = outcomes.iter().map(|o| o.exits).sum();
    println!("candidate processes that exited by themselves (restarted): {exits}");
    println!(
        "rounds that failed (no stable leader, or stuck): {}",
        failures.len()
    );
    for (round, fault, why) in failures {
        println!("- round {round} ({}): {why}", fault.name());
    }
    let mut ok = exits == 0 && failures.is_empty();
    for fault in Fault::ALL {
        let rows: Vec<&Outcome> = outcomes.iter().filter(|o| o.fault == fault).collect();
        if rows.is_empty() {
            continue;
        }
        let overlapping = rows.iter().filter(|o| o.overlap_ms > 0.0).count();
        let max_overlap = rows.iter().map(|o| o.overlap_ms).fold(0.0, f64::max);
        let tail = rows
            .iter()
            .filter_map(|o| o.tail_ms)
            .fold(f64::NAN, f64::max);
        let accepted: usize = rows.iter().map(|o| o.stale_accepted).sum();
        let rejected: usize = rows.iter().map(|o| o.stale_rejected).sum();
        let mut failovers: Vec<f64> = rows.iter().filter_map(|o| o.failover_ms).collect();
        failovers.sort_by(f64::total_cmp);
        let rose = rows.iter().all(|o| o.tokens_rose);
        println!(
            "| {} | {} | {} | {:.1} | {} | {} | {} | {} | {} |",
            fault.name(),
            rows.len(),
            overlapping,
            max_overlap,
            if tail.is_nan() {
                "–".into()
            } else {
                format!("{tail:.1}")
            },
            accepted,
            rejected,
            if failovers.is_empty() {
                "–".into()
            } else {
                format!(
                    "{:.0} / {:.0} / {:.0}",
                    percentile(&failovers, 0.5),
                    percentile(&failovers, 0.99),
                    failovers.last().unwrap()
                )
            },
            if rose { "yes" } else { "no" }
        );
        ok &= accepted == 0 && rose;
        // A frozen leader may finish the beat it was in when frozen (it
        // checked validity just before); one that goes on working after
        // the resume did not check. The tail is not an overlap, but it is
        // bounded.
        if tail > TAIL_LIMIT_MS {
            println!(
                "{}: the old leader worked {tail:.1} ms after the resume (limit {TAIL_LIMIT_MS} ms)",
                fault.name()
            );
            ok = false;
        }
        if fault == Fault::SkewBeyond {
            // The oracle must see what a clock beyond the bound does.
            if overlapping == 0 {
                println!("beyond-tolerance skew produced no overlap: the oracle is blind");
                ok = false;
            }
        } else if overlapping > 0 {
            ok = false;
        }
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::Log;

    #[test]
    fn a_reused_pid_starts_a_new_term() {
        // Seen in a long run: a pid that wrapped around merged a new term
        // into an old one, which then looked old, and no leader was found.
        let dir = std::env::temp_dir().join(format!("tenure-chaos-log-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("beats.log");
        std::fs::write(
            &path,
            "start c0 77 100 5\nbeat c0 77 110\nstart c1 77 900 9\nbeat c1 77 950\n",
        )
        .unwrap();
        let mut log = Log::open(&path).unwrap();
        log.refresh();
        let terms = log.sorted();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(terms.len(), 2, "{terms:?}");
        assert_eq!((terms[0].id.as_str(), terms[0].token), ("c0", 5));
        assert_eq!((terms[0].first, terms[0].last), (100, 110));
        assert_eq!((terms[1].id.as_str(), terms[1].token), ("c1", 9));
        assert_eq!((terms[1].first, terms[1].last), (900, 950));
    }
}
