//! The leader's Pod labelled while it leads (`PodLabel`), on a real API
//! server with Pod objects (no kubelet: the Pods stay Pending, which is
//! all a label needs). The in-repo fixture has no Pods, so this runs only
//! on a real server: `make test` runs it in its kube-apiserver pass, and
//! elsewhere it fails naming what it needs, never skips.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use common::Env;
use serde_json::json;
use tenure_core::testing::{Fault, FaultyStore};
use tenure_core::{
    CancellationToken, LeaderElector, LeaderRecord, LockStore, StoreError, Version, Versioned,
    WatchStream,
};
use tenure_k8s::{LeaseLock, PodLabel};

const KEY: &str = "example.com/leader";

fn require_real_server() {
    assert!(
        common::real_cluster(),
        "Pod labels need a real API server (Pods): run `make test` (its kube-apiserver pass), \
         or TENURE_K8S_REAL=1 KUBECONFIG=... with scripts/kube-apiserver-up.sh"
    );
}

/// The namespace's `default` ServiceAccount (no controller manager runs to
/// make it) and Pods named `pods`.
async fn pods(env: &Env, pods: &[&str]) {
    let ns = &env.namespace;
    let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}});
    let (code, body) = env
        .raw(
            http::Method::POST,
            &format!("/api/v1/namespaces/{ns}/serviceaccounts"),
            Some(sa),
        )
        .await;
    assert!(matches!(code, 200 | 201 | 409), "{code} {body}");
    for pod in pods {
        let object = json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod},
            "spec": {"containers": [{"name": "job", "image": "example.invalid/job"}]},
        });
        let (code, body) = env
            .raw(
                http::Method::POST,
                &format!("/api/v1/namespaces/{ns}/pods"),
                Some(object),
            )
            .await;
        assert!(matches!(code, 200 | 201), "{code} {body}");
    }
}

/// The label `KEY` on `pod`, if any.
async fn label(env: &Env, pod: &str) -> Option<String> {
    let path = format!("/api/v1/namespaces/{}/pods/{pod}", env.namespace);
    let object = env.get_object(&path).await.expect("the pod exists");
    object["metadata"]["labels"][KEY]
        .as_str()
        .map(str::to_owned)
}

async fn until_label(env: &Env, pod: &str, want: Option<&str>) {
    let start = tokio::time::Instant::now();
    while label(env, pod).await.as_deref() != want {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{pod}: label not {want:?} within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn pod_label(env: &Env, pod: &str) -> PodLabel {
    PodLabel::new(env.client(), &env.namespace, pod, KEY)
}

/// A Lease that notes, as each release reaches it, the label on `pod`.
struct ReleaseProbe {
    lock: LeaseLock,
    env_path: String,
    http: Arc<Env>,
    at_release: Mutex<Vec<Option<String>>>,
}

impl std::fmt::Debug for ReleaseProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ReleaseProbe").field(&self.lock).finish()
    }
}

#[async_trait]
impl LockStore for ReleaseProbe {
    async fn get(&self) -> Result<Option<Versioned>, StoreError> {
        self.lock.get().await
    }
    async fn create(&self, record: &LeaderRecord) -> Result<Version, StoreError> {
        self.lock.create(record).await
    }
    async fn update(&self, record: &LeaderRecord, v: &Version) -> Result<Version, StoreError> {
        if record.holder_identity.is_empty() {
            let object = self.http.get_object(&self.env_path).await.unwrap();
            let seen = object["metadata"]["labels"][KEY]
                .as_str()
                .map(str::to_owned);
            self.at_release.lock().unwrap().push(seen);
        }
        self.lock.update(record, v).await
    }
    async fn watch(&self) -> Result<Option<WatchStream>, StoreError> {
        self.lock.watch().await
    }
    fn describe(&self) -> String {
        self.lock.describe()
    }
}

fn elector(store: Arc<dyn LockStore>, id: &str) -> LeaderElector {
    LeaderElector::builder(store, id.to_owned())
        .lease_duration(Duration::from_secs(3))
        .renew_deadline(Duration::from_secs(2))
        .retry_period(Duration::from_millis(500))
        .build()
        .unwrap()
}

/// Runs `elector` with its Pod labelled by `labeller` while it leads, its
/// work waiting for the term to end; cancel the token to shut it down.
fn labelled(
    elector: &LeaderElector,
    labeller: PodLabel,
) -> (
    CancellationToken,
    tokio::task::JoinHandle<Result<(), tenure_core::ElectionError>>,
) {
    let shutdown = CancellationToken::new();
    let (elector, token) = (elector.clone(), shutdown.clone());
    let run = tokio::spawn(async move {
        elector
            .run(token, move |l| {
                let labeller = labeller.clone();
                async move {
                    labeller
                        .while_leading(&l, async { l.cancelled().await })
                        .await
                }
            })
            .await
    });
    (shutdown, run)
}

async fn lease(env: &Env, name: &str) -> LeaseLock {
    LeaseLock::builder(name)
        .namespace(env.namespace.clone())
        .client(env.client())
        .build()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real kube-apiserver (Pods): make test runs it in its kube-apiserver pass"]
async fn the_leader_labels_its_pod_and_takes_the_label_off_before_the_release() {
    require_real_server();
    let env = Arc::new(Env::start().await);
    pods(&env, &["job-1", "job-2"]).await;
    let probe = Arc::new(ReleaseProbe {
        lock: lease(&env, "labelled").await,
        env_path: format!("/api/v1/namespaces/{}/pods/job-1", env.namespace),
        http: env.clone(),
        at_release: Mutex::new(Vec::new()),
    });
    let elector = elector(probe.clone(), "job-1");
    let (shutdown, run) = labelled(&elector, pod_label(&env, "job-1"));
    until_label(&env, "job-1", Some("true")).await;
    assert!(elector.is_leader());
    assert_eq!(label(&env, "job-2").await, None, "only the leader's Pod");
    shutdown.cancel();
    run.await.unwrap().unwrap();
    assert_eq!(label(&env, "job-1").await, None, "off after the term");
    assert_eq!(
        *probe.at_release.lock().unwrap(),
        [None],
        "the label was off when the release reached the Lease"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real kube-apiserver (Pods): make test runs it in its kube-apiserver pass"]
async fn the_next_leader_clears_a_crashed_leaders_label() {
    require_real_server();
    let env = Env::start().await;
    pods(&env, &["job-1", "job-2"]).await;
    // job-1 led and crashed with its Pod labelled.
    pod_label(&env, "job-1").set().await.unwrap();
    assert_eq!(label(&env, "job-1").await.as_deref(), Some("true"));
    let elector = elector(Arc::new(lease(&env, "stale").await), "job-2");
    let (shutdown, run) = labelled(&elector, pod_label(&env, "job-2"));
    until_label(&env, "job-2", Some("true")).await;
    assert_eq!(
        label(&env, "job-1").await,
        None,
        "the stale label is cleared"
    );
    shutdown.cancel();
    run.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real kube-apiserver (Pods): make test runs it in its kube-apiserver pass"]
async fn the_label_comes_off_when_validity_ends_without_waiting_for_the_work() {
    require_real_server();
    let env = Env::start().await;
    pods(&env, &["job-1"]).await;
    let store = FaultyStore::new(lease(&env, "lost").await);
    let elector = elector(store.clone(), "job-1");
    let labeller = pod_label(&env, "job-1");
    let work_returned = Arc::new(Mutex::new(None));
    let run = tokio::spawn({
        let (elector, returned) = (elector.clone(), work_returned.clone());
        async move {
            elector
                .run(CancellationToken::new(), move |l| {
                    let (labeller, returned) = (labeller.clone(), returned.clone());
                    async move {
                        let work = async {
                            l.cancelled().await;
                            // A slow work: 3 s more after its term ended.
                            tokio::time::sleep(Duration::from_secs(3)).await;
                        };
                        labeller.while_leading(&l, work).await;
                        *returned.lock().unwrap() = Some(tokio::time::Instant::now());
                    }
                })
                .await
        }
    });
    until_label(&env, "job-1", Some("true")).await;
    // Every renew fails: validity ends at the renew deadline (2 s).
    store.set(Fault::Fail);
    until_label(&env, "job-1", None).await;
    assert!(!elector.is_leader());
    assert!(
        work_returned.lock().unwrap().is_none(),
        "the label came off before the work returned"
    );
    run.abort();
}

/// `tenure run --label-pod`: the same label around a command's term.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real kube-apiserver (Pods): make test runs it in its kube-apiserver pass"]
async fn tenure_run_labels_its_pod_while_the_command_runs() {
    require_real_server();
    let env = Env::start().await;
    pods(&env, &["job-1"]).await;
    let lock = format!("k8s://{}/cli-labelled", env.namespace);
    let mut child = tokio::process::Command::new(common::tenure_binary())
        .args(["run", "--lock", &lock, "--label-pod", &format!("{KEY}=yes")])
        .args("--lease-duration 3s --renew-deadline 2s --retry-period 500ms".split(' '))
        .args(["--", "sleep", "60"])
        .env("POD_NAME", "job-1")
        .env("POD_NAMESPACE", &env.namespace)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    until_label(&env, "job-1", Some("yes")).await;
    let pid = child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.code().is_some(), "{status:?}");
    assert_eq!(
        label(&env, "job-1").await,
        None,
        "off once run has released and exited"
    );
}
