//! Least privilege on a real API server: tenure's LeaseLock works with
//! exactly the rules of `deploy/rbac.yaml` (bound here to the user `tenure`
//! of the server `scripts/kube-apiserver-up.sh` starts, whose token is in
//! `TENURE_K8S_TENURE_KUBECONFIG`), and without `update` the first write is
//! the typed `Unauthorized`.
//!
//! The in-repo fixture has no RBAC, so this runs only on a real server:
//! `make test` runs it in its kube-apiserver pass (`TENURE_K8S_REAL=1`),
//! and elsewhere it fails naming what it needs, never skips.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::Env;
use serde_json::{Value, json};
use tenure_core::{CancellationToken, LeaderElector, LeaderRecord, LockStore, StoreError};
use tenure_k8s::{EventReporter, LeaseLock, LockBuilder};

/// The Role of `deploy/rbac.yaml` for Lease locks, with its verbs on the
/// named lock replaced by `verbs`, bound to the user `tenure`.
async fn grant(env: &Env, role: &str, lock: &str, verbs: &[&str]) {
    grant_with(env, role, lock, verbs, &[]).await;
}

/// The file's optional rules, read rather than copied, so the tests follow
/// it: Events (`LockBuilder::events`) and coordinated election's candidates
/// (`LockBuilder::coordinated`).
const EVENTS_RULE: &str = "resources: [\"events\"]\n    verbs: [\"create\"]";
const CANDIDATES_RULE: &str =
    "resources: [\"leasecandidates\"]\n    verbs: [\"get\", \"create\", \"update\"]";

/// As [`grant`], with the rules `extra` (of the constants above).
async fn grant_with(env: &Env, role: &str, lock: &str, verbs: &[&str], extra: &[&str]) {
    let yaml = include_str!("../deploy/rbac.yaml");
    assert!(
        yaml.contains("resources: [\"leases\"]")
            && yaml.contains("verbs: [\"get\", \"update\", \"list\", \"watch\"]")
            && yaml.contains(EVENTS_RULE)
            && yaml.contains(CANDIDATES_RULE)
    );
    let mut rules = vec![
        json!({"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]}),
        json!({"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
               "resourceNames": [lock], "verbs": verbs}),
    ];
    for rule in extra {
        rules.push(match *rule {
            EVENTS_RULE => json!({"apiGroups": [""], "resources": ["events"], "verbs": ["create"]}),
            _ => json!({"apiGroups": ["coordination.k8s.io"], "resources": ["leasecandidates"],
                        "verbs": ["get", "create", "update"]}),
        });
    }
    let ns = &env.namespace;
    let objects: [(String, Value); 2] = [
        (
            format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles"),
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                "metadata": {"name": role, "namespace": ns},
                "rules": rules,
            }),
        ),
        (
            format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings"),
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {"name": role, "namespace": ns},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "tenure"}],
            }),
        ),
    ];
    for (path, object) in objects {
        let (code, body) = env.raw(http::Method::POST, &path, Some(object)).await;
        assert!(code == 200 || code == 201, "create {path}: {code} {body}");
    }
}

/// A LeaseLock through the least-privilege user's token.
async fn lock_as_tenure(env: &Env, name: &str) -> LeaseLock {
    lock_as_tenure_with(env, name, |b| b).await
}

/// As [`lock_as_tenure`], with more of the builder's settings.
async fn lock_as_tenure_with(
    env: &Env,
    name: &str,
    more: impl FnOnce(LockBuilder<LeaseLock>) -> LockBuilder<LeaseLock>,
) -> LeaseLock {
    let path = std::env::var("TENURE_K8S_TENURE_KUBECONFIG").expect(
        "TENURE_K8S_TENURE_KUBECONFIG: the least-privilege kubeconfig that scripts/kube-apiserver-up.sh writes",
    );
    let kubeconfig = kube::config::Kubeconfig::read_from(path).unwrap();
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    config.default_namespace = env.namespace.clone();
    more(LeaseLock::builder(name))
        .namespace(env.namespace.clone())
        .client(kube::Client::try_from(config).unwrap())
        .build()
        .await
        .unwrap()
}

fn require_real_server() {
    assert!(
        common::real_cluster(),
        "least privilege needs a real API server with RBAC: run `make test` (its kube-apiserver pass), \
         or TENURE_K8S_REAL=1 KUBECONFIG=... TENURE_K8S_TENURE_KUBECONFIG=... with scripts/kube-apiserver-up.sh"
    );
}

#[tokio::test]
#[ignore = "needs a real kube-apiserver with RBAC: make test runs it in its kube-apiserver pass"]
async fn rbac_yaml_is_enough_to_lead_watch_and_release() {
    require_real_server();
    let env = Env::start().await;
    grant(
        &env,
        "tenure-lease-lock",
        "rbac-ok",
        &["get", "update", "list", "watch"],
    )
    .await;
    let lock = lock_as_tenure(&env, "rbac-ok").await;
    assert!(
        lock.watch().await.unwrap().is_some(),
        "list and watch are granted"
    );
    // Leads, renews (update) for a couple of retries, then releases.
    lead_and_release(Arc::new(lock), "pod-a", Duration::from_secs(5)).await;
}

#[tokio::test]
#[ignore = "needs a real kube-apiserver with RBAC: make test runs it in its kube-apiserver pass"]
async fn without_update_the_write_is_unauthorized() {
    require_real_server();
    let env = Env::start().await;
    grant(
        &env,
        "tenure-no-update",
        "rbac-no-update",
        &["get", "list", "watch"],
    )
    .await;
    let lock = lock_as_tenure(&env, "rbac-no-update").await;
    let version = lock
        .create(&LeaderRecord::held_by("pod-a", Duration::from_secs(15)))
        .await
        .expect("create is granted");
    match lock
        .update(
            &LeaderRecord::held_by("pod-a", Duration::from_secs(15)),
            &version,
        )
        .await
    {
        Err(StoreError::Unauthorized { message, .. }) => {
            assert!(
                message.contains("forbidden") || message.contains("Forbidden"),
                "{message}"
            )
        }
        other => panic!("update without the verb: expected Unauthorized, got {other:?}"),
    }
}

#[tokio::test]
#[ignore = "needs a real kube-apiserver with RBAC: make test runs it in its kube-apiserver pass"]
async fn the_cli_says_unauthorized_in_one_line_without_the_token() {
    require_real_server();
    let env = Env::start().await;
    grant(
        &env,
        "tenure-cli-no-update",
        "rbac-cli",
        &["get", "list", "watch"],
    )
    .await;
    // An expired record, so that the CLI's first write is the update it
    // may not make (create is granted: it would lead first otherwise).
    env.put_lease(
        "rbac-cli",
        json!({"holderIdentity": "gone", "leaseDurationSeconds": 1,
               "acquireTime": "2026-01-01T00:00:00.000000Z",
               "renewTime": "2026-01-01T00:00:00.000000Z", "leaseTransitions": 3}),
        json!({}),
    )
    .await;
    let kubeconfig = std::env::var("TENURE_K8S_TENURE_KUBECONFIG").unwrap();
    let token = std::fs::read_to_string(&kubeconfig)
        .unwrap()
        .lines()
        .find_map(|l| l.trim().strip_prefix("token: ").map(str::to_owned))
        .expect("the kubeconfig has a token");
    let marker = std::env::temp_dir().join(format!("tenure-rbac-cli-{}", std::process::id()));
    let lock = format!("k8s://{}/rbac-cli?kind=lease", env.namespace);
    for args in [
        vec!["status", "--lock", lock.as_str()],
        vec!["run", "--lock", lock.as_str(), "--", "touch"],
    ] {
        let mut args: Vec<String> = args.into_iter().map(str::to_owned).collect();
        if args[0] == "run" {
            args.push(marker.display().to_string());
        }
        let out = tokio::process::Command::new(common::tenure_binary())
            .args(&args)
            .env("KUBECONFIG", &kubeconfig)
            .output()
            .await
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        if args[0] == "status" {
            // get is granted: status reads the record.
            assert!(out.status.success(), "{args:?}: {err}");
            continue;
        }
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        // Progress lines come first; the error is one line, the last, and
        // said once.
        let last = err.lines().last().unwrap_or_default();
        assert!(last.starts_with("tenure: error: not authorized"), "{err}");
        assert!(last.contains("forbidden"), "the server's reason: {err}");
        assert_eq!(err.matches("not authorized").count(), 1, "{err}");
        assert!(!err.contains(&token), "the token leaked: {err}");
        assert!(!marker.exists(), "the command ran without a term");
    }
}

/// Leads within `within`, renews a few times and shuts down (releasing)
/// with `lock` (lease 3 s, renew deadline 2 s).
async fn lead_and_release(lock: Arc<LeaseLock>, identity: &str, within: Duration) {
    let elector = LeaderElector::builder(lock, identity.to_owned())
        .lease_duration(Duration::from_secs(3))
        .renew_deadline(Duration::from_secs(2))
        .retry_period(Duration::from_millis(500))
        .build()
        .unwrap();
    let shutdown = CancellationToken::new();
    let run = {
        let (elector, shutdown) = (elector.clone(), shutdown.clone());
        tokio::spawn(async move {
            elector
                .run(shutdown, |l| async move { l.cancelled().await })
                .await
        })
    };
    let start = tokio::time::Instant::now();
    while !elector.is_leader() {
        assert!(
            start.elapsed() < within,
            "{identity} did not lead within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(elector.is_leader(), "{identity} lost its term");
    shutdown.cancel();
    run.await.unwrap().expect("ran and released");
}

/// Waits (bounded) until `counts` says every Event was answered.
async fn settled(lock: &LeaseLock, answered: u64) -> tenure_k8s::EventCounts {
    let start = tokio::time::Instant::now();
    loop {
        let c = lock.event_counts().expect("events are on");
        if c.recorded + c.failed + c.dropped >= answered
            || start.elapsed() > Duration::from_secs(10)
        {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
#[ignore = "needs a real kube-apiserver with RBAC: make test runs it in its kube-apiserver pass"]
async fn events_are_recorded_on_the_lease_as_client_go_records_them() {
    require_real_server();
    let env = Env::start().await;
    let verbs = ["get", "update", "list", "watch"];
    grant_with(&env, "tenure-events", "rbac-events", &verbs, &[EVENTS_RULE]).await;
    let lock = Arc::new(
        lock_as_tenure_with(&env, "rbac-events", |b| {
            b.events(EventReporter::new("billing-cron"))
        })
        .await,
    );
    lead_and_release(lock.clone(), "pod-a", Duration::from_secs(5)).await;
    let counts = settled(&lock, 2).await;
    assert_eq!(
        (counts.recorded, counts.failed, counts.dropped),
        (2, 0, 0),
        "{counts:?}"
    );
    let ns = &env.namespace;
    let (code, lease) = env
        .raw(
            http::Method::GET,
            &format!("/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/rbac-events"),
            None,
        )
        .await;
    assert_eq!(code, 200, "{lease}");
    let (code, list) = env
        .raw(
            http::Method::GET,
            &format!(
                "/api/v1/namespaces/{ns}/events?fieldSelector=involvedObject.name%3Drbac-events"
            ),
            None,
        )
        .await;
    assert_eq!(code, 200, "{list}");
    let mut events: Vec<Value> = list["items"].as_array().unwrap().clone();
    events.sort_by_key(|e| {
        e["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    });
    let said: Vec<&str> = events
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        said,
        ["pod-a became leader", "pod-a stopped leading"],
        "{list}"
    );
    for e in &events {
        // The fields client-go's legacy recorder writes (tools/record).
        assert_eq!(e["reason"], "LeaderElection");
        assert_eq!(e["type"], "Normal");
        assert_eq!(e["count"], 1);
        assert_eq!(e["source"]["component"], "billing-cron");
        assert_eq!(e["source"]["host"], "pod-a");
        assert_eq!(e["reportingComponent"], "billing-cron");
        assert_eq!(e["reportingInstance"], "pod-a");
        let subject = &e["involvedObject"];
        assert_eq!(subject["kind"], "Lease");
        assert_eq!(subject["apiVersion"], "coordination.k8s.io/v1");
        assert_eq!(subject["namespace"], ns.as_str());
        assert_eq!(subject["uid"], lease["metadata"]["uid"], "{e}");
        assert!(
            e["firstTimestamp"].is_string() && e["lastTimestamp"].is_string(),
            "{e}"
        );
        let name = e["metadata"]["name"].as_str().unwrap();
        assert!(name.starts_with("rbac-events."), "{name}");
    }
}

#[tokio::test]
#[ignore = "needs a real kube-apiserver with RBAC: make test runs it in its kube-apiserver pass"]
async fn forbidden_events_are_counted_and_the_election_goes_on() {
    require_real_server();
    let env = Env::start().await;
    let verbs = ["get", "update", "list", "watch"];
    // The Lease rules only: no Events.
    grant(&env, "tenure-no-events", "rbac-no-events", &verbs).await;
    let lock = Arc::new(
        lock_as_tenure_with(&env, "rbac-no-events", |b| {
            b.events(EventReporter::new("billing-cron"))
        })
        .await,
    );
    // Leads, renews and releases as if Events were off.
    lead_and_release(lock.clone(), "pod-a", Duration::from_secs(5)).await;
    let counts = settled(&lock, 2).await;
    assert_eq!((counts.recorded, counts.failed), (0, 2), "{counts:?}");
}

#[tokio::test]
#[ignore = "needs a real kube-apiserver with RBAC: make test runs it in its kube-apiserver pass"]
async fn rbac_yaml_is_enough_for_a_coordinated_candidate() {
    require_real_server();
    let env = Env::start().await;
    let verbs = ["get", "update", "list", "watch"];
    let extra = [CANDIDATES_RULE];
    grant_with(&env, "tenure-coordinated", "rbac-coord", &verbs, &extra).await;
    let lock = lock_as_tenure_with(&env, "rbac-coord", |b| b.coordinated("1.37.0", "1.37.0")).await;
    // The controller names it once it has published its candidate (its
    // election takes up to two 5 s steps).
    lead_and_release(Arc::new(lock), "pod-a", Duration::from_secs(40)).await;
    let ns = &env.namespace;
    let path = format!("/apis/coordination.k8s.io/v1beta1/namespaces/{ns}/leasecandidates/pod-a");
    let (code, candidate) = env.raw(http::Method::GET, &path, None).await;
    assert_eq!(code, 200, "{candidate}");
    assert_eq!(candidate["spec"]["leaseName"], "rbac-coord");
}
