//! `deploy/example.yaml` on a real kube-apiserver, so the manifest cannot
//! rot: every object is applied server side with strict field validation
//! (the Namespace, ServiceAccount and RBAC for real; the Deployment and
//! Service as a dry run, as no kubelet runs there), two Pods are created
//! from the Deployment's template (they stay Pending), and the container's
//! own arguments run here as two replicas, as the manifest's
//! ServiceAccount (impersonated), with `$(POD_NAME)` and
//! `$(POD_NAMESPACE)` as the downward API gives them. They must lead and
//! follow, answer the manifest's probes, label the leader's Pod, record
//! Events, and hand over on SIGTERM.
//!
//! Real server only: `make test` runs it in its kube-apiserver pass
//! (`TENURE_K8S_REAL=1`); elsewhere it fails naming what it needs.

mod common;

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::served::Served;
use serde_json::{Value, json};
use tenure::k8s::k8s_openapi::api::core::v1::{Event, Pod};
use tenure::k8s::kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use tenure::k8s::kube::core::GroupVersionKind;
use tenure::k8s::kube::{Client, Config, discovery};

const LABEL: &str = "tenure.dev/leader";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

/// The manifest's objects, moved to `namespace` (a test's own).
fn manifest(namespace: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(repo().join("deploy/example.yaml")).unwrap();
    let mut docs: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
    for doc in &mut docs {
        if doc["kind"] == "Namespace" {
            doc["metadata"]["name"] = namespace.into();
        } else {
            doc["metadata"]["namespace"] = namespace.into();
        }
        // `get_mut`: indexing would add a null `subjects` to every object.
        if let Some(subjects) = doc.get_mut("subjects").and_then(Value::as_array_mut) {
            for s in subjects {
                s["namespace"] = namespace.into();
            }
        }
    }
    docs
}

/// Server-side apply of `doc` (a dry run if asked), strict validation.
async fn apply(client: &Client, doc: &Value, dry_run: bool) {
    let (group, version) = match doc["apiVersion"].as_str().unwrap().split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", doc["apiVersion"].as_str().unwrap()),
    };
    let gvk = GroupVersionKind::gvk(group, version, doc["kind"].as_str().unwrap());
    let (resource, caps) = discovery::pinned_kind(client, &gvk).await.unwrap();
    let name = doc["metadata"]["name"].as_str().unwrap();
    let api: Api<DynamicObject> = match caps.scope {
        discovery::Scope::Namespaced => Api::namespaced_with(
            client.clone(),
            doc["metadata"]["namespace"].as_str().unwrap(),
            &resource,
        ),
        discovery::Scope::Cluster => Api::all_with(client.clone(), &resource),
    };
    let mut params = PatchParams::apply("tenure-test").validation_strict();
    params.dry_run = dry_run;
    api.patch(name, &params, &Patch::Apply(doc))
        .await
        .unwrap_or_else(|e| panic!("apply {} {name}: {e}", doc["kind"]));
}

fn needs_a_real_server() -> String {
    if std::env::var("TENURE_K8S_REAL").as_deref() != Ok("1") {
        panic!(
            "needs a real kube-apiserver: `make test` runs this in its kube-apiserver pass; by hand: \
             bash scripts/kube-apiserver-up.sh DIR, then TENURE_K8S_REAL=1 KUBECONFIG=DIR/kubeconfig \
             cargo test -p tenure-cli --test deploy -- --include-ignored"
        );
    }
    std::env::var("KUBECONFIG").expect("KUBECONFIG: the admin kubeconfig of the real server")
}

/// The admin kubeconfig, impersonating `user` (written as JSON, which a
/// YAML reader reads).
fn impersonating(admin: &str, user: &str, dir: &Path) -> String {
    let text = std::fs::read_to_string(admin).unwrap();
    let mut config: Value = serde_saphyr::from_str(&text).unwrap();
    for u in config["users"].as_array_mut().unwrap() {
        u["user"]["as"] = user.into();
    }
    let path = dir.join("kubeconfig-sa");
    std::fs::write(&path, config.to_string()).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
#[ignore = "needs a real kube-apiserver (make test's kube-apiserver pass)"]
fn the_example_deployment_applies_and_its_replicas_lead_as_its_service_account() {
    let admin = needs_a_real_server();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client =
        runtime.block_on(async { Client::try_from(Config::infer().await.unwrap()).unwrap() });
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let ns = format!("tenure-example-{nanos}");
    let docs = manifest(&ns);
    let deployment = docs
        .iter()
        .find(|d| d["kind"] == "Deployment")
        .unwrap()
        .clone();
    let template = &deployment["spec"]["template"];
    let container = &template["spec"]["containers"][0];
    runtime.block_on(async {
        for doc in &docs {
            let dry_run = matches!(doc["kind"].as_str(), Some("Deployment" | "Service"));
            apply(&client, doc, dry_run).await;
        }
        // The replicas' Pods, from the template: Pending, but there to label.
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        for name in ["example-job-0", "example-job-1"] {
            let mut pod = json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": template["metadata"].clone(), "spec": template["spec"].clone()});
            pod["metadata"]["name"] = name.into();
            let pod: Pod = serde_json::from_value(pod).unwrap();
            pods.create(&PostParams::default(), &pod).await.unwrap();
        }
    });

    // The container's arguments, as the kubelet would expand them.
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = impersonating(
        &admin,
        &format!("system:serviceaccount:{ns}:example-job"),
        dir.path(),
    );
    let replica = |pod: &str| {
        let args: Vec<String> = container["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                let a = a
                    .as_str()
                    .unwrap()
                    .replace("$(POD_NAMESPACE)", &ns)
                    .replace("$(POD_NAME)", pod);
                // Test traffic stays on loopback.
                if a == "--http=0.0.0.0:8080" {
                    "--http=127.0.0.1:0".to_owned()
                } else {
                    a
                }
            })
            .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Served::start_with(
            &args,
            &[
                ("KUBECONFIG", &kubeconfig),
                ("POD_NAME", pod),
                ("POD_NAMESPACE", &ns),
            ],
        )
    };
    let mut first = replica("example-job-0");
    first.wait_for("elected leader", Duration::from_secs(30));
    let mut second = replica("example-job-1");
    second.wait_for("leader is example-job-0", Duration::from_secs(30));

    // The manifest's probes answer on both replicas.
    for probe in ["livenessProbe", "readinessProbe"] {
        let path = container[probe]["httpGet"]["path"].as_str().unwrap();
        for replica in [&first, &second] {
            assert_eq!(replica.get(path).0, 200, "{probe} {path}");
        }
    }
    assert_eq!(first.leader()["isLeader"], true);
    assert_eq!(second.leader()["leader"], "example-job-0");

    let labelled = |pod: &str| {
        runtime.block_on(async {
            let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
            let pod = pods.get(pod).await.unwrap();
            pod.metadata.labels.unwrap_or_default().get(LABEL).cloned()
        })
    };
    let wait_label = |pod: &str, want: Option<&str>| {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while labelled(pod).as_deref() != want {
            assert!(
                std::time::Instant::now() < deadline,
                "{pod}'s {LABEL} is not {want:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    wait_label("example-job-0", Some("true"));
    assert_eq!(labelled("example-job-1"), None);

    // SIGTERM to the leader: it releases, the other takes over, the label
    // moves with the lead.
    first.terminate();
    first.wait_for("released and stopped", Duration::from_secs(30));
    second.wait_for("elected leader", Duration::from_secs(30));
    wait_label("example-job-1", Some("true"));
    wait_label("example-job-0", None);
    drop(second);

    let reasons: Vec<String> = runtime.block_on(async {
        let events: Api<Event> = Api::namespaced(client.clone(), &ns);
        let params = ListParams::default().fields("involvedObject.name=example-job");
        let list = events.list(&params).await.unwrap();
        list.items.into_iter().filter_map(|e| e.message).collect()
    });
    for said in [
        "example-job-0 became leader",
        "example-job-0 stopped leading",
        "example-job-1 became leader",
    ] {
        assert!(
            reasons.iter().any(|m| m == said),
            "no Event {said:?} in {reasons:?}"
        );
    }
    runtime.block_on(async {
        let namespaces: Api<tenure::k8s::k8s_openapi::api::core::v1::Namespace> =
            Api::all(client.clone());
        let _ = namespaces.delete(&ns, &Default::default()).await;
    });
}
