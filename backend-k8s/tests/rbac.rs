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

use std::time::Duration;

use common::Env;
use serde_json::{Value, json};
use tenure_core::{CancellationToken, LeaderElector, LeaderRecord, LockStore, StoreError};
use tenure_k8s::LeaseLock;

/// The Role of `deploy/rbac.yaml` for Lease locks, with its verbs on the
/// named lock replaced by `verbs`, bound to the user `tenure`.
async fn grant(env: &Env, role: &str, lock: &str, verbs: &[&str]) {
    let yaml = include_str!("../deploy/rbac.yaml");
    // The file's Lease rules, read rather than copied, so the test follows it.
    assert!(
        yaml.contains("resources: [\"leases\"]")
            && yaml.contains("verbs: [\"get\", \"update\", \"list\", \"watch\"]")
    );
    let ns = &env.namespace;
    let objects: [(String, Value); 2] = [
        (
            format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles"),
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                "metadata": {"name": role, "namespace": ns},
                "rules": [
                    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
                    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                     "resourceNames": [lock], "verbs": verbs},
                ],
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
    let path = std::env::var("TENURE_K8S_TENURE_KUBECONFIG").expect(
        "TENURE_K8S_TENURE_KUBECONFIG: the least-privilege kubeconfig that scripts/kube-apiserver-up.sh writes",
    );
    let kubeconfig = kube::config::Kubeconfig::read_from(path).unwrap();
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    config.default_namespace = env.namespace.clone();
    LeaseLock::builder(name)
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
    let elector = LeaderElector::builder(lock, "pod-a")
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
            start.elapsed() < Duration::from_secs(5),
            "did not lead with rbac.yaml's rights"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Renews (update) go on for a couple of retries, then the release.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(elector.is_leader());
    shutdown.cancel();
    run.await
        .unwrap()
        .expect("ran and released with rbac.yaml's rights");
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
