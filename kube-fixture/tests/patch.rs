//! `PATCH` on the fixture (merge, strategic merge, server-side apply) and
//! its request counter path, checked with plain HTTP requests, as the
//! peers' `kube` clients send them.

use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use tenure_kube_fixture::{KubeApiServer, REQUESTS_PATH};

const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/ns/leases/l";
const MERGE: &str = "application/merge-patch+json";
const STRATEGIC: &str = "application/strategic-merge-patch+json";
const APPLY: &str = "application/apply-patch+yaml";

async fn send(
    server: &KubeApiServer,
    method: Method,
    path: &str,
    content_type: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = Client::new().request(method, format!("{}{path}", server.url()));
    if let Some(body) = body {
        req = req
            .header("Content-Type", content_type)
            .body(body.to_string());
    }
    let resp = req.send().await.expect("request");
    let code = resp.status();
    let text = resp.text().await.expect("body");
    (
        code,
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}")),
    )
}

async fn patch(
    server: &KubeApiServer,
    query: &str,
    kind: &str,
    body: Value,
) -> (StatusCode, Value) {
    send(
        server,
        Method::PATCH,
        &format!("{LEASE}{query}"),
        kind,
        Some(body),
    )
    .await
}

fn applied(holder: &str) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": { "name": "l" },
        "spec": { "holderIdentity": holder, "leaseDurationSeconds": 15 }
    })
}

fn rv(object: &Value) -> String {
    object["metadata"]["resourceVersion"]
        .as_str()
        .expect("a resourceVersion")
        .to_owned()
}

async fn create(server: &KubeApiServer, holder: &str) -> Value {
    let path = "/apis/coordination.k8s.io/v1/namespaces/ns/leases";
    let (code, o) = send(
        server,
        Method::POST,
        path,
        "application/json",
        Some(applied(holder)),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED, "{o}");
    o
}

#[tokio::test]
async fn a_merge_patch_without_resource_version_is_unconditional() {
    let server = KubeApiServer::start().await.unwrap();
    let (code, body) = patch(&server, "", MERGE, json!({"spec": {"holderIdentity": "b"}})).await;
    assert_eq!(code, StatusCode::NOT_FOUND, "{body}");
    let created = create(&server, "a").await;
    // Another writer moved it on: a patch that names no version still lands.
    let (_, moved) = patch(&server, "", MERGE, json!({"spec": {"holderIdentity": "c"}})).await;
    assert_ne!(rv(&moved), rv(&created));
    let (code, o) = patch(
        &server,
        "",
        MERGE,
        json!({"spec": {"holderIdentity": "b", "leaseDurationSeconds": null}}),
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{o}");
    assert_eq!(
        o["spec"],
        json!({"holderIdentity": "b"}),
        "null removes a field"
    );
    assert_eq!(o["metadata"]["uid"], created["metadata"]["uid"]);
    assert!(rv(&o).parse::<u64>().unwrap() > rv(&moved).parse::<u64>().unwrap());
}

#[tokio::test]
async fn a_patch_naming_a_stale_resource_version_is_a_409() {
    let server = KubeApiServer::start().await.unwrap();
    let created = create(&server, "a").await;
    let stale = rv(&created);
    let (code, _) = patch(
        &server,
        "",
        STRATEGIC,
        json!({"spec": {"holderIdentity": "b"}}),
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    let body = json!({"metadata": {"resourceVersion": stale}, "spec": {"holderIdentity": "c"}});
    for kind in [MERGE, STRATEGIC] {
        let (code, status) = patch(&server, "", kind, body.clone()).await;
        assert_eq!(code, StatusCode::CONFLICT, "{kind}: {status}");
        assert_eq!(status["reason"], "Conflict");
    }
    let (_, now) = send(&server, Method::GET, LEASE, "", None).await;
    assert_eq!(now["spec"]["holderIdentity"], "b");
}

#[tokio::test]
async fn apply_creates_then_conflicts_with_another_manager_unless_forced() {
    let server = KubeApiServer::start().await.unwrap();
    let (code, o) = patch(&server, "", APPLY, applied("a")).await;
    assert_eq!(
        code,
        StatusCode::BAD_REQUEST,
        "fieldManager is required: {o}"
    );
    let (code, o) = patch(&server, "?fieldManager=a", APPLY, applied("a")).await;
    assert_eq!(code, StatusCode::CREATED, "{o}");
    assert_eq!(o["spec"]["holderIdentity"], "a");
    // The same values from another manager: shared, no conflict, no write.
    let (code, same) = patch(&server, "?fieldManager=b", APPLY, applied("a")).await;
    assert_eq!(code, StatusCode::OK, "{same}");
    assert_eq!(rv(&same), rv(&o));
    // A different value for a field "a" owns: refused...
    let (code, status) = patch(&server, "?fieldManager=b", APPLY, applied("b")).await;
    assert_eq!(code, StatusCode::CONFLICT, "{status}");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains(".spec.holderIdentity"),
        "{status}"
    );
    // ...unless forced, which takes it over.
    let (code, forced) = patch(&server, "?fieldManager=b&force=true", APPLY, applied("b")).await;
    assert_eq!(code, StatusCode::OK, "{forced}");
    assert_eq!(forced["spec"]["holderIdentity"], "b");
    // Now "a" conflicts with "b".
    let (code, _) = patch(&server, "?fieldManager=a", APPLY, applied("a")).await;
    assert_eq!(code, StatusCode::CONFLICT);
}

#[tokio::test]
async fn an_update_takes_the_fields_it_changes_from_appliers() {
    let server = KubeApiServer::start().await.unwrap();
    patch(&server, "?fieldManager=a", APPLY, applied("a")).await;
    let (code, _) = patch(
        &server,
        "?fieldManager=u",
        MERGE,
        json!({"spec": {"holderIdentity": "u"}}),
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    let (code, _) = patch(&server, "?fieldManager=a", APPLY, applied("a")).await;
    assert_eq!(
        code,
        StatusCode::CONFLICT,
        "the merge patch's manager owns the holder now"
    );
}

#[tokio::test]
async fn apply_removes_what_its_manager_no_longer_names() {
    let server = KubeApiServer::start().await.unwrap();
    patch(&server, "?fieldManager=a", APPLY, applied("a")).await;
    let mut less = applied("a");
    less["spec"]
        .as_object_mut()
        .unwrap()
        .remove("leaseDurationSeconds");
    let (code, o) = patch(&server, "?fieldManager=a", APPLY, less).await;
    assert_eq!(code, StatusCode::OK, "{o}");
    assert_eq!(o["spec"], json!({"holderIdentity": "a"}));
}

#[tokio::test]
async fn other_patch_types_are_415_and_the_counter_path_answers_counts() {
    let server = KubeApiServer::start().await.unwrap();
    create(&server, "a").await;
    let (code, _) = patch(&server, "", "application/json-patch+json", json!([])).await;
    assert_eq!(code, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    patch(&server, "", MERGE, json!({"spec": {"holderIdentity": "b"}})).await;
    let (code, counts) = send(&server, Method::GET, REQUESTS_PATH, "", None).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(counts, json!({"create": 1, "patch": 2}));
    let (_, taken) = send(&server, Method::DELETE, REQUESTS_PATH, "", None).await;
    assert_eq!(
        taken,
        json!({"create": 1, "patch": 2}),
        "answered, then reset"
    );
    assert!(server.request_counts().is_empty());
}
