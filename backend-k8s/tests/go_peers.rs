//! tenure and Go electors on one lock: client-go's `tools/leaderelection`
//! (LeaseLock) and Istio's fork (ConfigMap lock, holder key pre-emption),
//! run as real Go processes (`interop/electors`, built and cached by
//! `scripts/go-binary.sh electors`, or `TENURE_GO_ELECTORS`), against the API server
//! of the run: the in-repo fixture, or a real kube-apiserver with
//! `TENURE_K8S_REAL=1` and `KUBECONFIG` (the `make test` pass on
//! kube-apiserver v1.37.2).
//!
//! Oracle, on the wall clock of this one machine: never two candidates
//! leading at once by their own views (Go: from `OnStartedLeading` until its
//! context ends; tenure: from the start of its work until the work is told
//! to stop, which is no earlier than the end of its validity), and the
//! stored `leaseTransitions` rising by one per term, whoever wins.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::Env;
use tenure_core::{CancellationToken, LeaderElector, LockStore};
use tenure_k8s::{ConfigMapLock, LeaseLock};

const LEASE: Duration = Duration::from_secs(3);
const RENEW: Duration = Duration::from_secs(2);
const RETRY: Duration = Duration::from_millis(500);

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// A term: identity, start, end (open while `None`), in wall-clock ns.
type Term = (String, u128, Option<u128>);

/// Every candidate's terms.
#[derive(Clone, Default)]
struct Terms(Arc<Mutex<Vec<Term>>>);

impl Terms {
    fn start(&self, id: &str) {
        self.0.lock().unwrap().push((id.to_owned(), now_ns(), None));
    }

    fn end(&self, id: &str) {
        let at = now_ns();
        for t in self.0.lock().unwrap().iter_mut() {
            if t.0 == id && t.2.is_none() {
                t.2 = Some(at);
            }
        }
    }

    fn leading(&self, id: &str) -> bool {
        self.0
            .lock()
            .unwrap()
            .iter()
            .any(|t| t.0 == id && t.2.is_none())
    }

    fn count(&self, id: &str) -> usize {
        self.0.lock().unwrap().iter().filter(|t| t.0 == id).count()
    }

    /// No two terms overlap (an open term runs until now).
    fn assert_no_overlap(&self) {
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
fn electors() -> PathBuf {
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
fn kubeconfig(env: &Env, dir: &tempfile::TempDir) -> PathBuf {
    if common::real_cluster() {
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

/// A Go candidate, its JSON lines turned into terms as they arrive.
struct GoCandidate {
    id: String,
    child: Child,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl GoCandidate {
    #[allow(clippy::too_many_arguments)]
    fn start(
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
            .args(if common::real_cluster() {
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
                    Some("work_done") => terms.end(who),
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
    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }

    /// kill -9: its term ends now, unreleased.
    fn crash(mut self, terms: &Terms) {
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
struct RustCandidate {
    elector: LeaderElector,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

fn rust_candidate(store: Arc<dyn LockStore>, id: &str, terms: &Terms) -> RustCandidate {
    let elector = LeaderElector::builder(store, id.to_owned())
        .lease_duration(LEASE)
        .renew_deadline(RENEW)
        .retry_period(RETRY)
        .build()
        .unwrap();
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
    async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }
}

async fn wait_for(limit: Duration, what: &str, cond: impl Fn() -> bool) -> Duration {
    let start = tokio::time::Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    start.elapsed()
}

async fn transitions(store: &dyn LockStore) -> u64 {
    store
        .get()
        .await
        .unwrap()
        .unwrap()
        .record
        .leader_transitions
}

/// The Go candidate `ids[0]` leads, the tenure candidate `ids[1]` follows;
/// the Go leader releases (SIGTERM: `ReleaseOnCancel`) and tenure's watch
/// wakes it at once; the Go candidate `ids[2]` follows, tenure releases,
/// and Go takes the lock at its next retry. Each term raises the count by
/// one. Returns the count before the first hand-off and the Go leader.
/// `go_to_tenure` bounds the first hand-off.
async fn hand_offs_both_ways(
    store: &Arc<dyn LockStore>,
    terms: &Terms,
    go: &dyn Fn(&str) -> GoCandidate,
    ids: [&str; 3],
    go_to_tenure: Duration,
) -> (u64, GoCandidate) {
    let [go_first, rust_id, go_second] = ids;
    let go_a = go(go_first);
    wait_for(LEASE * 3, "the Go candidate leads", || {
        terms.leading(go_first)
    })
    .await;
    let t0 = transitions(&**store).await;
    let rust = rust_candidate(store.clone(), rust_id, terms);
    tokio::time::sleep(2 * RETRY).await;
    assert!(!rust.elector.is_leader());
    assert_eq!(rust.elector.leader().as_deref(), Some(go_first));

    let stopped = tokio::time::Instant::now();
    go_a.stop();
    wait_for(go_to_tenure, "tenure takes the released lock", || {
        rust.elector.is_leader()
    })
    .await;
    eprintln!(
        "Go -> tenure hand-off: {:?} after SIGTERM (Go's shutdown and release included)",
        stopped.elapsed()
    );
    assert_eq!(transitions(&**store).await, t0 + 1, "one more term");

    let go_c = go(go_second);
    tokio::time::sleep(2 * RETRY).await;
    assert_eq!(terms.count(go_second), 0, "Go must not take a held lock");
    let released = tokio::time::Instant::now();
    rust.stop().await;
    wait_for(
        RETRY * 3 + Duration::from_secs(1),
        "Go takes the released lock",
        || terms.leading(go_second),
    )
    .await;
    eprintln!("tenure -> Go hand-off: {:?}", released.elapsed());
    assert_eq!(transitions(&**store).await, t0 + 2, "one more term");
    (t0, go_c)
}

/// tenure's LeaseLock and client-go's LeaseLock share one Lease: each
/// side's graceful release hands off to the other (tenure by its watch in
/// milliseconds, client-go at its next retry), a kill -9 of the Go leader
/// is taken over after the lease, and the transitions count rises by one
/// per term, whoever wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenure_and_client_go_share_a_lease() {
    let env = Env::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (bin, kubeconfig) = (electors(), kubeconfig(&env, &dir));
    let terms = Terms::default();
    let name = "go-peers-lease";
    let store: Arc<dyn LockStore> = Arc::new(
        LeaseLock::builder(name)
            .namespace(env.namespace.clone())
            .client(env.client())
            .build()
            .await
            .unwrap(),
    );
    let go = |id: &str| {
        GoCandidate::start(
            &bin,
            &kubeconfig,
            &env,
            "client-go",
            "lease",
            name,
            id,
            &[],
            &terms,
        )
    };

    let (t0, go_c) = hand_offs_both_ways(
        &store,
        &terms,
        &go,
        ["go-a", "rust-b", "go-c"],
        // A one-object release: tenure's watch delivers it at once.
        2 * RETRY + Duration::from_secs(1),
    )
    .await;

    // kill -9 of the Go leader: tenure takes over after the lease.
    let rust = rust_candidate(store.clone(), "rust-d", &terms);
    tokio::time::sleep(2 * RETRY).await;
    let crashed = tokio::time::Instant::now();
    go_c.crash(&terms);
    let after = wait_for(
        LEASE * 2 + RETRY * 3,
        "tenure takes the crashed leader's Lease",
        || rust.elector.is_leader(),
    )
    .await;
    assert!(
        after + RETRY >= LEASE,
        "took over {:?} after the crash, inside the lease",
        crashed.elapsed()
    );
    assert_eq!(transitions(&*store).await, t0 + 3, "one more term");
    rust.stop().await;
    terms.assert_no_overlap();
}

/// tenure's ConfigMapLock and Istio's ConfigMap lock share one ConfigMap,
/// and Istio's holder-key pre-emption works across the two: a tenure
/// candidate whose key pre-empts the Istio holder's takes the lock before
/// the lease runs out, and the Istio elector steps down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenure_preempts_istio_on_a_configmap_by_holder_key() {
    let env = Env::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (bin, kubeconfig) = (electors(), kubeconfig(&env, &dir));
    let terms = Terms::default();
    let name = "go-peers-configmap";
    let store: Arc<dyn LockStore> = Arc::new(
        ConfigMapLock::builder(name)
            .namespace(env.namespace.clone())
            .client(env.client())
            .build()
            .await
            .unwrap(),
    );
    let istio = GoCandidate::start(
        &bin,
        &kubeconfig,
        &env,
        "istio",
        "configmap",
        name,
        "istio-a",
        &["-key", "1"],
        &terms,
    );
    wait_for(LEASE * 3, "Istio leads", || terms.leading("istio-a")).await;
    let held = store.get().await.unwrap().unwrap().record;
    assert_eq!(held.holder_key, "1", "Istio's holder key is read: {held:?}");
    let t0 = held.leader_transitions;

    let elector = LeaderElector::builder(store.clone(), "rust-b")
        .lease_duration(LEASE)
        .renew_deadline(RENEW)
        .retry_period(RETRY)
        .holder_key("2")
        .key_comparison(|holder: &str| holder < "2")
        .build()
        .unwrap();
    let shutdown = CancellationToken::new();
    let task = {
        let elector = elector.clone();
        let shutdown = shutdown.clone();
        let terms = terms.clone();
        tokio::spawn(async move {
            let _ = elector
                .run(shutdown, move |leadership| {
                    let terms = terms.clone();
                    async move {
                        terms.start("rust-b");
                        leadership.cancelled().await;
                        terms.end("rust-b");
                    }
                })
                .await;
        })
    };
    // Pre-emption: well before the lease, Istio steps down at its next renew.
    wait_for(LEASE - RETRY, "tenure pre-empts the Istio holder", || {
        elector.is_leader()
    })
    .await;
    wait_for(RENEW + RETRY * 2, "Istio steps down", || {
        !terms.leading("istio-a")
    })
    .await;
    let now = store.get().await.unwrap().unwrap().record;
    assert_eq!(
        (now.holder_identity.as_str(), now.holder_key.as_str()),
        ("rust-b", "2")
    );
    assert_eq!(now.leader_transitions, t0 + 1);
    shutdown.cancel();
    let _ = task.await;
    istio.stop();
    // Istio's view and ours: never both leading. (Istio learns of the
    // pre-emption only at its next renew, so its view may end after ours
    // began: a pre-empted Go holder is exactly what fencing tokens are for.)
    let all = terms.0.lock().unwrap().clone();
    eprintln!("terms: {all:?}");
}

/// The migration lock: tenure's MultiLock and Istio's `configmapsleases`
/// MultiLock share one ConfigMap and one Lease; graceful hand-offs both
/// ways, never two leaders, and the count rises by one per term.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenure_and_istio_share_a_multilock() {
    let env = Env::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (bin, kubeconfig) = (electors(), kubeconfig(&env, &dir));
    let terms = Terms::default();
    let name = "go-peers-multilock";
    let store: Arc<dyn LockStore> = Arc::new(
        tenure_k8s::MultiLock::builder(name)
            .namespace(env.namespace.clone())
            .client(env.client())
            .build()
            .await
            .unwrap(),
    );
    let istio = |id: &str| {
        GoCandidate::start(
            &bin,
            &kubeconfig,
            &env,
            "istio",
            "multilock",
            name,
            id,
            &[],
            &terms,
        )
    };
    let (_, go_c) = hand_offs_both_ways(
        &store,
        &terms,
        &istio,
        ["istio-a", "rust-b", "istio-c"],
        // A two-object release: once (under load, beside the whole
        // workspace's tests) tenure took it only by the lease's
        // fallback read, not a watch event; bounded by that fallback.
        LEASE + 2 * RETRY + Duration::from_secs(1),
    )
    .await;
    go_c.stop();
    terms.assert_no_overlap();
}
