//! The Go peers' harness: client-go's and Istio's electors as real Go
//! processes (`interop/electors`, built and cached by
//! `scripts/go-binary.sh electors`, or `TENURE_GO_ELECTORS`), tenure
//! candidates beside them, and every candidate's terms by its own view.
//! Also a kube-apiserver of a test's own, for faults that would break the
//! other tests on a shared one (a restart).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tenure_core::{CancellationToken, LeaderElector, LockStore};

use super::Env;

pub(crate) const LEASE: Duration = Duration::from_secs(3);
pub(crate) const RENEW: Duration = Duration::from_secs(2);
pub(crate) const RETRY: Duration = Duration::from_millis(500);

pub(crate) fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// A term: identity, start, end (open while `None`), in wall-clock ns.
pub(crate) type Term = (String, u128, Option<u128>);

/// Every candidate's terms.
#[derive(Clone, Default)]
pub(crate) struct Terms(pub Arc<Mutex<Vec<Term>>>);

impl Terms {
    /// `id`'s terms, as (start, end).
    pub(crate) fn of(&self, id: &str) -> Vec<(u128, Option<u128>)> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|t| t.0 == id)
            .map(|t| (t.1, t.2))
            .collect()
    }

    pub(crate) fn start(&self, id: &str) {
        self.0.lock().unwrap().push((id.to_owned(), now_ns(), None));
    }

    pub(crate) fn end(&self, id: &str) {
        let at = now_ns();
        for t in self.0.lock().unwrap().iter_mut() {
            if t.0 == id && t.2.is_none() {
                t.2 = Some(at);
            }
        }
    }

    pub(crate) fn leading(&self, id: &str) -> bool {
        self.0
            .lock()
            .unwrap()
            .iter()
            .any(|t| t.0 == id && t.2.is_none())
    }

    pub(crate) fn count(&self, id: &str) -> usize {
        self.0.lock().unwrap().iter().filter(|t| t.0 == id).count()
    }

    /// [`assert_no_overlap`](Self::assert_no_overlap), except that a
    /// client-go coordinated leader (an identity starting `go-`) may end up
    /// to `poll` after the next term began. client-go v0.37.2's coordinated
    /// leader does not step down by its own clock once the election
    /// controller prefers another: it stops when it sees the controller's
    /// write naming the new holder, the same write that names tenure's
    /// candidate. That is upstream behaviour (see RELIABILITY.md), not
    /// tenure's: a tenure term must still end before the next one begins,
    /// and tenure starts only a lease after the last change it saw.
    pub(crate) fn assert_no_overlap_but_client_go_coordinated(&self, poll: Duration) {
        let now = now_ns();
        let mut terms = self.0.lock().unwrap().clone();
        terms.sort_by_key(|t| t.1);
        for pair in terms.windows(2) {
            let end = pair[0].2.unwrap_or(now);
            let excused = if pair[0].0.starts_with("go-") {
                poll.as_nanos() as i128
            } else {
                0
            };
            assert!(
                end as i128 <= pair[1].1 as i128 + excused,
                "{} led until {end} but {} started at {}: {terms:?}",
                pair[0].0,
                pair[1].0,
                pair[1].1
            );
            if end > pair[1].1 {
                println!(
                    "client-go's {} stopped {} ns after {} began (upstream: it stops when it sees the new holder)",
                    pair[0].0,
                    end - pair[1].1,
                    pair[1].0
                );
            }
        }
    }

    /// No two terms overlap (an open term runs until now).
    pub(crate) fn assert_no_overlap(&self) {
        let now = now_ns();
        let mut terms = self.0.lock().unwrap().clone();
        terms.sort_by_key(|t| t.1);
        for pair in terms.windows(2) {
            let end = pair[0].2.unwrap_or(now);
            assert!(
                end <= pair[1].1,
                "{} led until {end} but {} started at {}: {terms:?}",
                pair[0].0,
                pair[1].0,
                pair[1].1
            );
        }
    }
}

/// The Go electors' binary (built once, cached).
pub(crate) fn electors() -> PathBuf {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/go-binary.sh");
    let out = Command::new("bash")
        .args([script, "electors"])
        .stderr(Stdio::inherit())
        .output()
        .expect("run scripts/go-binary.sh electors");
    assert!(
        out.status.success(),
        "scripts/go-binary.sh electors failed (Go >= 1.26 needed: the machine kind has it)"
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// A kubeconfig for the Go process: the real cluster's, or one written for
/// the fixture.
pub(crate) fn kubeconfig(env: &Env, dir: &tempfile::TempDir) -> PathBuf {
    if super::real_cluster() {
        return std::env::var_os("KUBECONFIG").unwrap().into();
    }
    let path = dir.path().join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: f\n  cluster:\n    server: {}\n\
             contexts:\n- name: f\n  context:\n    cluster: f\n    user: u\ncurrent-context: f\n\
             users:\n- name: u\n  user: {{}}\n",
            env.server().url()
        ),
    )
    .unwrap();
    path
}

/// What every Go-peer test sets up: the API server, the electors' binary,
/// a kubeconfig for the Go processes, and every candidate's terms.
pub(crate) struct Setup {
    pub env: Env,
    pub bin: PathBuf,
    pub kubeconfig: PathBuf,
    pub terms: Terms,
    _dir: Option<tempfile::TempDir>,
}

impl Setup {
    /// On the API server of the run (`Env::start`).
    pub(crate) async fn start() -> Setup {
        let env = Env::start().await;
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = kubeconfig(&env, &dir);
        Setup {
            env,
            bin: electors(),
            kubeconfig,
            terms: Terms::default(),
            _dir: Some(dir),
        }
    }

    /// On a real API server of the test's own.
    pub(crate) async fn on(server: &OwnApiServer) -> Setup {
        let kubeconfig = server.kubeconfig();
        Setup {
            env: Env::from_kubeconfig(&kubeconfig).await,
            bin: electors(),
            kubeconfig,
            terms: Terms::default(),
            _dir: None,
        }
    }

    /// A Go candidate: `imp` (client-go or istio) on the `lock` kind
    /// (lease, configmap, multilock) named `name`, recording into `terms`.
    pub(crate) fn go(
        &self,
        imp: &str,
        lock: &str,
        name: &str,
        id: &str,
        extra: &[&str],
    ) -> GoCandidate {
        self.go_into(&self.terms, imp, lock, name, id, extra)
    }

    /// As [`go`](Self::go), recording into other terms.
    pub(crate) fn go_into(
        &self,
        terms: &Terms,
        imp: &str,
        lock: &str,
        name: &str,
        id: &str,
        extra: &[&str],
    ) -> GoCandidate {
        GoCandidate::start(
            &self.bin,
            &self.kubeconfig,
            &self.env,
            imp,
            lock,
            name,
            id,
            extra,
            terms,
        )
    }

    /// tenure's `LeaseLock` `name`, on a client of its own.
    pub(crate) async fn lease(&self, name: &str) -> Arc<dyn LockStore> {
        Arc::new(
            tenure_k8s::LeaseLock::builder(name)
                .namespace(self.env.namespace.clone())
                .client(self.env.client())
                .build()
                .await
                .unwrap(),
        )
    }
}

/// A Go candidate, its JSON lines turned into terms as they arrive.
pub(crate) struct GoCandidate {
    id: String,
    child: Child,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl GoCandidate {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn start(
        bin: &PathBuf,
        kubeconfig: &PathBuf,
        env: &Env,
        imp: &str,
        lock: &str,
        name: &str,
        id: &str,
        extra: &[&str],
        terms: &Terms,
    ) -> GoCandidate {
        let mut child = Command::new(bin)
            .args(["-impl", imp, "-lock", lock, "-name", name, "-identity", id])
            .args(["-namespace", &env.namespace])
            .args(["-lease", "3s", "-renew", "2s", "-retry", "500ms"])
            .args(extra)
            // client-go sends built-in types as protobuf; the in-repo
            // fixture speaks only JSON (a difference the real server shows).
            .args(if super::real_cluster() {
                &[][..]
            } else {
                &["-content-type", "application/json"][..]
            })
            .env("KUBECONFIG", kubeconfig)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the Go elector");
        let stdout = child.stdout.take().unwrap();
        let terms = terms.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                let who = event["identity"].as_str().unwrap_or_default();
                match event["event"].as_str() {
                    Some("started") => terms.start(who),
                    // The view ends when the work's context ends; if
                    // the process exits before that goroutine prints (a
                    // lost lease returns from client-go's `Run` at once),
                    // at `OnStoppedLeading` or the exit, both later.
                    Some("work_done" | "stopped" | "exit") => terms.end(who),
                    _ => {}
                }
            }
        });
        GoCandidate {
            id: id.to_owned(),
            child,
            reader: Some(reader),
        }
    }

    /// SIGTERM: client-go cancels, the work stops, it releases, it exits.
    pub(crate) fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }

    /// Sends `signal` (`STOP`, `CONT`) to the Go process.
    pub(crate) fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal}");
    }

    /// kill -9: its term ends now, unreleased.
    pub(crate) fn crash(mut self, terms: &Terms) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        terms.end(&self.id);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

impl Drop for GoCandidate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A tenure candidate whose work records its terms.
pub(crate) struct RustCandidate {
    pub elector: LeaderElector,
    pub shutdown: CancellationToken,
    pub task: tokio::task::JoinHandle<()>,
}

/// A tenure candidate at the Go peers' timing.
pub(crate) fn rust_candidate(store: Arc<dyn LockStore>, id: &str, terms: &Terms) -> RustCandidate {
    let elector = LeaderElector::builder(store, id.to_owned())
        .lease_duration(LEASE)
        .renew_deadline(RENEW)
        .retry_period(RETRY)
        .build()
        .unwrap();
    spawn_candidate(elector, id, terms)
}

/// Runs `elector` on its own task, its work recording `id`'s terms.
pub(crate) fn spawn_candidate(elector: LeaderElector, id: &str, terms: &Terms) -> RustCandidate {
    let shutdown = CancellationToken::new();
    let task = {
        let elector = elector.clone();
        let shutdown = shutdown.clone();
        let terms = terms.clone();
        let id = id.to_owned();
        tokio::spawn(async move {
            let _ = elector
                .run(shutdown, move |leadership| {
                    let terms = terms.clone();
                    let id = id.clone();
                    async move {
                        terms.start(&id);
                        leadership.cancelled().await;
                        terms.end(&id);
                    }
                })
                .await;
        })
    };
    RustCandidate {
        elector,
        shutdown,
        task,
    }
}

impl RustCandidate {
    pub(crate) async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }
}

pub(crate) async fn wait_for(limit: Duration, what: &str, cond: impl Fn() -> bool) -> Duration {
    let start = tokio::time::Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    start.elapsed()
}

/// Waits for `rust` to lead after its leader stopped renewing (crashed,
/// frozen) and checks it did not take over inside the lease. Returns how
/// long it took from the call.
pub(crate) async fn takes_over_after_the_lease(rust: &RustCandidate, what: &str) -> Duration {
    let took = wait_for(LEASE * 2 + RETRY * 3, what, || rust.elector.is_leader()).await;
    assert!(
        took + RETRY >= LEASE,
        "{what}: took over {took:?} after, inside the lease"
    );
    took
}

pub(crate) async fn transitions(store: &dyn LockStore) -> u64 {
    store
        .get()
        .await
        .unwrap()
        .unwrap()
        .record
        .leader_transitions
}

/// A kube-apiserver and its etcd started for one test
/// (`scripts/kube-apiserver-up.sh`), so that it can be killed and
/// restarted without touching the other tests' server.
pub(crate) struct OwnApiServer {
    dir: tempfile::TempDir,
    api: u32,
    etcd: u32,
    argv: Vec<String>,
    restarted: Option<Child>,
}

impl OwnApiServer {
    /// Starts one (the binary is built once and cached by the script).
    pub(crate) fn start() -> OwnApiServer {
        let dir = tempfile::tempdir().unwrap();
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../scripts/kube-apiserver-up.sh"
        );
        let out = Command::new("bash")
            .arg(script)
            .arg(dir.path())
            .stderr(Stdio::inherit())
            .output()
            .expect("run scripts/kube-apiserver-up.sh");
        assert!(
            out.status.success(),
            "scripts/kube-apiserver-up.sh failed (it needs etcd: apt-get install -y etcd-server; \
             and Go for the build)"
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        let pids = stdout
            .lines()
            .find_map(|l| l.strip_prefix("TENURE_KUBE_PIDS="))
            .expect("the script prints TENURE_KUBE_PIDS");
        let mut pids = pids.split_whitespace().map(|p| p.parse::<u32>().unwrap());
        let (api, etcd) = (pids.next().unwrap(), pids.next().unwrap());
        let argv = std::fs::read(format!("/proc/{api}/cmdline"))
            .expect("kube-apiserver's command line")
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        OwnApiServer {
            dir,
            api,
            etcd,
            argv,
            restarted: None,
        }
    }

    /// The admin's kubeconfig.
    pub(crate) fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    /// kill -9 of kube-apiserver (its etcd stays), reaped.
    pub(crate) fn kill(&mut self) {
        kill9(self.api);
        if let Some(mut child) = self.restarted.take() {
            let _ = child.wait();
        }
        for _ in 0..500 {
            if is_gone(self.api) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!(
            "kube-apiserver (pid {}) still runs 5 s after kill -9",
            self.api
        );
    }

    /// Starts kube-apiserver again with the same command line (same port,
    /// certificates, tokens and etcd). Returns once the process runs; the
    /// caller waits for it to serve.
    pub(crate) fn restart(&mut self) {
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.path().join("kube-apiserver.log"))
            .unwrap();
        let child = Command::new(&self.argv[0])
            .args(&self.argv[1..])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("restart kube-apiserver");
        self.api = child.id();
        self.restarted = Some(child);
    }
}

impl Drop for OwnApiServer {
    fn drop(&mut self) {
        kill9(self.api);
        kill9(self.etcd);
        if let Some(mut child) = self.restarted.take() {
            let _ = child.wait();
        }
    }
}

/// No such process, or a zombie (dead, not yet reaped by whoever adopted it).
fn is_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

fn kill9(pid: u32) {
    let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
}
