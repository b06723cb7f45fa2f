//! The Kubernetes API fixture's semantics, checked with plain HTTP requests
//! (not with the `kube` client), so the fixture cannot drift into agreeing
//! with our client by accident.

use std::time::Duration;

use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use tenure_kube_fixture::KubeApiServer;

const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/ns/leases";
const CONFIGMAPS: &str = "/api/v1/namespaces/ns/configmaps";

struct Http {
    client: Client,
    base: String,
    token: Option<String>,
}

impl Http {
    fn new(server: &KubeApiServer) -> Http {
        Http {
            client: Client::new(),
            base: server.url(),
            token: None,
        }
    }

    async fn send(&self, method: Method, path: &str, body: Option<&Value>) -> (StatusCode, Value) {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            req = req.header("Authorization", format!("Bearer {token}"));
        }
        if let Some(body) = body {
            req = req
                .header("Content-Type", "application/json")
                .body(body.to_string());
        }
        let resp = req.send().await.expect("request");
        let code = resp.status();
        let text = resp.text().await.expect("body");
        let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        (code, value)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(Method::GET, path, None).await
    }
    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(Method::POST, path, Some(&body)).await
    }
    async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(Method::PUT, path, Some(&body)).await
    }
    async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.send(Method::DELETE, path, None).await
    }

    async fn watch(&self, query: &str) -> Lines {
        let resp = self
            .client
            .get(format!("{}{LEASES}?{query}", self.base))
            .send()
            .await
            .expect("watch request");
        assert_eq!(resp.status(), StatusCode::OK);
        Lines {
            resp,
            buf: Vec::new(),
        }
    }
}

/// Newline-delimited JSON events from a streamed response.
struct Lines {
    resp: reqwest::Response,
    buf: Vec<u8>,
}

impl Lines {
    /// The next event, or `None` when the stream ended; panics after 5 s.
    async fn next(&mut self) -> Option<Value> {
        tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = self.buf.drain(..=i).collect();
                    return Some(serde_json::from_slice(&line).expect("a JSON event"));
                }
                match self.resp.chunk().await.expect("read the stream") {
                    Some(chunk) => self.buf.extend_from_slice(&chunk),
                    None => return None,
                }
            }
        })
        .await
        .expect("no watch event within 5 s")
    }

    /// Asserts nothing arrives for a while.
    async fn quiet(&mut self) {
        let waited = tokio::time::timeout(Duration::from_millis(200), self.next()).await;
        assert!(waited.is_err(), "unexpected event: {waited:?}");
    }
}

fn lease(name: &str, holder: &str) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": { "name": name, "annotations": { "a": "1" } },
        "spec": { "holderIdentity": holder, "leaseDurationSeconds": 15 }
    })
}

fn rv(object: &Value) -> u64 {
    object["metadata"]["resourceVersion"]
        .as_str()
        .expect("resourceVersion is a string")
        .parse()
        .expect("a decimal resourceVersion")
}

fn assert_status(value: &Value, code: u16, reason: &str) {
    assert_eq!(value["kind"], "Status", "{value}");
    assert_eq!(value["apiVersion"], "v1", "{value}");
    assert_eq!(value["status"], "Failure", "{value}");
    assert_eq!(value["reason"], reason, "{value}");
    assert_eq!(value["code"], code, "{value}");
    assert!(value["message"].is_string(), "{value}");
}

#[tokio::test]
async fn get_missing_is_a_404_status() {
    let server = KubeApiServer::start().await.unwrap();
    let http = Http::new(&server);
    let (code, body) = http.get(&format!("{LEASES}/nope")).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_status(&body, 404, "NotFound");
    assert_eq!(
        body["message"],
        "leases.coordination.k8s.io \"nope\" not found"
    );
    assert_eq!(body["details"]["name"], "nope");

    let (code, body) = http.get(&format!("{CONFIGMAPS}/nope")).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_eq!(body["message"], "configmaps \"nope\" not found");

    let (code, body) = http.get("/api/v1/namespaces/ns/secrets/x").await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_status(&body, 404, "NotFound");
}

#[tokio::test]
async fn create_sets_server_fields_and_keeps_the_rest() {
    let server = KubeApiServer::start().await.unwrap();
    let http = Http::new(&server);
    let (code, created) = http.post(LEASES, lease("l", "a")).await;
    assert_eq!(code, StatusCode::CREATED);
    assert!(rv(&created) > 0);
    assert!(
        created["metadata"]["uid"]
            .as_str()
            .is_some_and(|u| !u.is_empty())
    );
    let ts = created["metadata"]["creationTimestamp"].as_str().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(ts).is_ok(), "{ts}");
    assert_eq!(created["metadata"]["namespace"], "ns");
    assert_eq!(created["metadata"]["annotations"], json!({"a": "1"}));
    assert_eq!(created["spec"]["holderIdentity"], "a");

    let (code, got) = http.get(&format!("{LEASES}/l")).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(got, created);

    let cm = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": { "name": "c", "annotations": { "x": "{\"j\":1}" } },
        "data": { "k": "v" }
    });
    let (code, created_cm) = http.post(CONFIGMAPS, cm).await;
    assert_eq!(code, StatusCode::CREATED);
    assert_eq!(created_cm["data"], json!({"k": "v"}));
    assert_eq!(created_cm["metadata"]["annotations"]["x"], "{\"j\":1}");
    assert!(
        rv(&created_cm) > rv(&created),
        "resourceVersion is one global counter"
    );
    assert_ne!(created_cm["metadata"]["uid"], created["metadata"]["uid"]);
}

#[tokio::test]
async fn create_of_an_existing_name_is_409_already_exists() {
    let server = KubeApiServer::start().await.unwrap();
    let http = Http::new(&server);
    assert_eq!(
        http.post(LEASES, lease("l", "a")).await.0,
        StatusCode::CREATED
    );
    let (code, body) = http.post(LEASES, lease("l", "b")).await;
    assert_eq!(code, StatusCode::CONFLICT);
    assert_status(&body, 409, "AlreadyExists");
    assert_eq!(
        body["message"],
        "leases.coordination.k8s.io \"l\" already exists"
    );
    // Unchanged.
    assert_eq!(
        http.get(&format!("{LEASES}/l")).await.1["spec"]["holderIdentity"],
        "a"
    );
    // Same name in another namespace or kind is fine.
    let other = "/apis/coordination.k8s.io/v1/namespaces/other/leases";
    assert_eq!(
        http.post(other, lease("l", "b")).await.0,
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn invalid_names_are_422_invalid() {
    let server = KubeApiServer::start().await.unwrap();
    let http = Http::new(&server);
    for bad in ["Bad", "a_b", "-a", "a..b", "a.-b", &"a".repeat(254), ""] {
        let (code, body) = http.post(LEASES, lease(bad, "a")).await;
        assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{bad:?}");
        assert_status(&body, 422, "Invalid");
    }
    for ok in ["a.b-c", "0", &"a".repeat(253)] {
        assert_eq!(
            http.post(LEASES, lease(ok, "a")).await.0,
            StatusCode::CREATED,
            "{ok}"
        );
    }
}

#[tokio::test]
async fn update_is_a_compare_and_swap_on_resource_version() {
    let server = KubeApiServer::start().await.unwrap();
    let http = Http::new(&server);
    let path = format!("{LEASES}/l");
    let (_, created) = http.post(LEASES, lease("l", "a")).await;
    let v1 = rv(&created);

    let mut next = created.clone();
    next["spec"]["holderIdentity"] = json!("b");
    let (code, updated) = http.put(&path, next.clone()).await;
    assert_eq!(code, StatusCode::OK);
    let v2 = rv(&updated);
    assert!(v2 > v1);
    assert_eq!(updated["spec"]["holderIdentity"], "b");
    assert_eq!(updated["metadata"]["uid"], created["metadata"]["uid"]);
    assert_eq!(
        updated["metadata"]["creationTimestamp"],
        created["metadata"]["creationTimestamp"]
    );

    // The stale version is refused and changes nothing.
    next["spec"]["holderIdentity"] = json!("c");
    let (code, body) = http.put(&path, next.clone()).await;
    assert_eq!(code, StatusCode::CONFLICT);
    assert_status(&body, 409, "Conflict");
    assert_eq!(
        body["message"],
        "Operation cannot be fulfilled on leases.coordination.k8s.io \"l\": the object has been \
         modified; please apply your changes to the latest version and try again"
    );
    let (_, got) = http.get(&path).await;
    assert_eq!(rv(&got), v2);
    assert_eq!(got["spec"]["holderIdentity"], "b");

    // A no-op update keeps the resourceVersion.
    let (code, same) = http.put(&path, got.clone()).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(rv(&same), v2);

    // Without a resourceVersion the update is unconditional.
    let mut blind = got.clone();
    blind["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("resourceVersion");
    blind["spec"]["holderIdentity"] = json!("d");
    let (code, body) = http.put(&path, blind).await;
    assert_eq!(code, StatusCode::OK);
    assert!(rv(&body) > v2);

    // Absent object: 404; a name that differs from the URL: 400.
    let (code, body) = http
        .put(&format!("{LEASES}/gone"), lease("gone", "x"))
        .await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_status(&body, 404, "NotFound");
    let (code, _) = http.put(&path, lease("other", "x")).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn configmap_update_keeps_what_was_sent() {
    let server = KubeApiServer::start().await.unwrap();
    let http = Http::new(&server);
    let cm = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": { "name": "c", "annotations": { "keep": "me" } },
        "data": { "k": "v" }
    });
    let (_, mut created) = http.post(CONFIGMAPS, cm).await;
    created["metadata"]["annotations"]["new"] = json!("x");
    let (code, updated) = http.put(&format!("{CONFIGMAPS}/c"), created).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(
        updated["metadata"]["annotations"],
        json!({"keep": "me", "new": "x"})
    );
    assert_eq!(updated["data"], json!({"k": "v"}));
}

#[tokio::test]
async fn delete_removes_and_reports_success() {
    let server = KubeApiServer::start().await.unwrap();
    let http = Http::new(&server);
    http.post(LEASES, lease("l", "a")).await;
    let (code, body) = http.delete(&format!("{LEASES}/l")).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(body["status"], "Success");
    assert_eq!(
        http.get(&format!("{LEASES}/l")).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        http.delete(&format!("{LEASES}/l")).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        http.post(LEASES, lease("l", "a")).await.0,
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn list_has_a_kind_a_resource_version_and_a_name_selector() {
    let server = KubeApiServer::start().await.unwrap();
    let http = Http::new(&server);
    http.post(LEASES, lease("a", "x")).await;
    let (_, b) = http.post(LEASES, lease("b", "x")).await;
    let (code, list) = http.get(LEASES).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(list["kind"], "LeaseList");
    assert_eq!(list["apiVersion"], "coordination.k8s.io/v1");
    assert_eq!(rv(&list), rv(&b));
    assert_eq!(list["items"].as_array().unwrap().len(), 2);

    let (_, list) = http
        .get(&format!("{LEASES}?fieldSelector=metadata.name%3Db"))
        .await;
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["metadata"]["name"], "b");

    let (_, list) = http.get(CONFIGMAPS).await;
    assert_eq!(list["kind"], "ConfigMapList");
    assert_eq!(list["items"], json!([]));
    assert_eq!(rv(&list), rv(&b));
}

#[tokio::test]
async fn watch_streams_changes_after_the_resource_version_in_order() {
    let server = KubeApiServer::start().await.unwrap();
    let http = Http::new(&server);
    let (_, created) = http.post(LEASES, lease("l", "a")).await;
    let from = rv(&created);
    let mut events = http
        .watch(&format!(
            "watch=true&fieldSelector=metadata.name%3Dl&resourceVersion={from}"
        ))
        .await;
    events.quiet().await; // nothing after `from` yet

    let mut next = created.clone();
    next["spec"]["holderIdentity"] = json!("b");
    let (_, updated) = http.put(&format!("{LEASES}/l"), next).await;
    http.post(LEASES, lease("other", "z")).await; // filtered out
    let (_, cm) = http
        .post(
            CONFIGMAPS,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "l"}}),
        )
        .await; // another kind: filtered out
    http.delete(&format!("{LEASES}/l")).await;

    let e = events.next().await.unwrap();
    assert_eq!(e["type"], "MODIFIED");
    assert_eq!(e["object"], updated);
    assert_eq!(e["object"]["kind"], "Lease");
    let e = events.next().await.unwrap();
    assert_eq!(e["type"], "DELETED");
    assert_eq!(e["object"]["metadata"]["name"], "l");
    assert!(rv(&e["object"]) > rv(&cm));
    events.quiet().await;

    // Resuming from the creation replays the same events (watch=1 too).
    let mut replay = http
        .watch(&format!(
            "watch=1&fieldSelector=metadata.name%3Dl&resourceVersion={from}"
        ))
        .await;
    assert_eq!(replay.next().await.unwrap()["type"], "MODIFIED");
    assert_eq!(replay.next().await.unwrap()["type"], "DELETED");
    let (_, again) = http.post(LEASES, lease("l", "c")).await;
    let e = replay.next().await.unwrap();
    assert_eq!(e["type"], "ADDED");
    assert_eq!(e["object"], again);
}

#[tokio::test]
async fn watch_without_a_resource_version_starts_with_the_current_objects() {
    let server = KubeApiServer::start().await.unwrap();
    let http = Http::new(&server);
    let (_, created) = http.post(LEASES, lease("l", "a")).await;
    let mut events = http
        .watch("watch=true&fieldSelector=metadata.name%3Dl")
        .await;
    let e = events.next().await.unwrap();
    assert_eq!(e["type"], "ADDED");
    assert_eq!(e["object"], created);
    events.quiet().await;
}

#[tokio::test]
async fn watch_from_a_compacted_resource_version_is_410_expired() {
    let server = KubeApiServer::start().await.unwrap();
    let http = Http::new(&server);
    let (_, created) = http.post(LEASES, lease("l", "a")).await;
    let from = rv(&created);
    let mut o = created.clone();
    for i in 0..3 {
        o["spec"]["holderIdentity"] = json!(format!("h{i}"));
        o = http.put(&format!("{LEASES}/l"), o).await.1;
    }
    server.compact_history();
    let mut events = http
        .watch(&format!("watch=true&resourceVersion={from}"))
        .await;
    let e = events.next().await.unwrap();
    assert_eq!(e["type"], "ERROR");
    assert_status(&e["object"], 410, "Expired");
    assert!(
        events.next().await.is_none(),
        "the stream ends after the error"
    );

    // From the current version it works.
    let mut events = http
        .watch(&format!("watch=true&resourceVersion={}", rv(&o)))
        .await;
    events.quiet().await;
    http.delete(&format!("{LEASES}/l")).await;
    assert_eq!(events.next().await.unwrap()["type"], "DELETED");
}

#[tokio::test]
async fn only_the_last_hundred_events_are_retained() {
    let server = KubeApiServer::start().await.unwrap();
    let http = Http::new(&server);
    let (_, mut o) = http.post(LEASES, lease("l", "a")).await;
    let first = rv(&o);
    for i in 0..150 {
        o["spec"]["holderIdentity"] = json!(format!("h{i}"));
        o = http.put(&format!("{LEASES}/l"), o).await.1;
    }
    let mut old = http
        .watch(&format!("watch=true&resourceVersion={first}"))
        .await;
    assert_eq!(old.next().await.unwrap()["type"], "ERROR");
    let recent = rv(&o) - 50;
    let mut events = http
        .watch(&format!("watch=true&resourceVersion={recent}"))
        .await;
    for _ in 0..50 {
        assert_eq!(events.next().await.unwrap()["type"], "MODIFIED");
    }
    events.quiet().await;
}

#[tokio::test]
async fn watches_end_on_close_and_on_timeout() {
    let server = KubeApiServer::start().await.unwrap();
    let http = Http::new(&server);
    let mut events = http.watch("watch=true&resourceVersion=0").await;
    server.close_watches();
    assert!(events.next().await.is_none());

    let mut events = http.watch("watch=true&timeoutSeconds=1").await;
    assert!(events.next().await.is_none());
}

#[tokio::test]
async fn token_mode_refuses_requests_without_the_bearer_token() {
    let server = KubeApiServer::start_with_token("s3cret").await.unwrap();
    let mut http = Http::new(&server);
    let (code, body) = http.get(&format!("{LEASES}/l")).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    assert_status(&body, 401, "Unauthorized");
    http.token = Some("wrong".into());
    assert_eq!(
        http.post(LEASES, lease("l", "a")).await.0,
        StatusCode::UNAUTHORIZED
    );
    http.token = Some("s3cret".into());
    assert_eq!(
        http.post(LEASES, lease("l", "a")).await.0,
        StatusCode::CREATED
    );
    assert_eq!(http.get(&format!("{LEASES}/l")).await.0, StatusCode::OK);
    assert!(!format!("{server:?}").contains("s3cret"));
}

#[tokio::test]
async fn requests_are_counted_per_verb() {
    let server = KubeApiServer::start().await.unwrap();
    let http = Http::new(&server);
    let (_, o) = http.post(LEASES, lease("l", "a")).await;
    http.get(&format!("{LEASES}/l")).await;
    http.get(&format!("{LEASES}/l")).await;
    http.put(&format!("{LEASES}/l"), o).await;
    http.get(LEASES).await;
    drop(http.watch("watch=true").await);
    http.delete(&format!("{LEASES}/l")).await;
    for (verb, n) in [
        ("create", 1),
        ("get", 2),
        ("update", 1),
        ("list", 1),
        ("watch", 1),
        ("delete", 1),
    ] {
        assert_eq!(server.requests(verb), n, "{verb}");
    }
    server.reset_request_counts();
    assert!(server.request_counts().is_empty());
}
