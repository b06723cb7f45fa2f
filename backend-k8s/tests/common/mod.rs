//! What the tests share: the API server (the in-repo fixture, or a real
//! cluster with `TENURE_K8S_REAL=1` and `KUBECONFIG`), clients for it,
//! plain HTTP requests that bypass our locks, and the suite's factory.
#![allow(dead_code)]

pub(crate) mod go;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use kube::{Client, Config};
use serde_json::{Value, json};
use tenure_conformance::{FaultProxy, FaultSwitch, StoreFactory};
use tenure_core::{LockStore, StoreError};
use tenure_k8s::LEADER_ANNOTATION;
use tenure_k8s::{ConfigMapLock, LeaseLock, MultiLock, SharedWatch};
use tenure_kube_fixture::KubeApiServer;

/// The namespace the fixture's tests use.
pub(crate) const NAMESPACE: &str = "tenure-test";

/// The annotation `put_raw` parks a non-JSON raw value in on a Lease, whose
/// spec it then makes a non-record (a holder without a lease duration).
pub(crate) const RAW_ANNOTATION: &str = "tenure.test/raw";

/// The annotation a [`Env::touch_object`] writes: another tool's, which
/// moves `resourceVersion` without changing the record.
pub(crate) const TOUCHED_ANNOTATION: &str = "example.com/touched";

/// The request timeout of the suite's locks (the suite's renew deadline is
/// 0.6 s, so 1 s by the builder's rule).
pub(crate) const RENEW_DEADLINE: Duration = Duration::from_millis(600);
/// Each request's timeout: longer than half the renew deadline, for a slow
/// CI machine; the engine still bounds every attempt by the term's validity.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);

enum Cluster {
    Fixture(KubeApiServer),
    Real(Box<Config>),
}

/// An API server for one test, with its namespace.
pub(crate) struct Env {
    cluster: Cluster,
    pub namespace: String,
    http: reqwest::Client,
    proxies: Mutex<Vec<FaultProxy>>,
    /// Makes each touch a different write (the API server keeps the
    /// `resourceVersion` of an update that changes nothing).
    touches: AtomicU64,
}

/// True when the suite should run on the cluster of `KUBECONFIG`.
pub(crate) fn real_cluster() -> bool {
    std::env::var("TENURE_K8S_REAL").is_ok_and(|v| v == "1")
        && std::env::var_os("KUBECONFIG").is_some()
}

impl Env {
    /// The fixture, or with `TENURE_K8S_REAL=1` and `KUBECONFIG` the real
    /// cluster, in a new namespace labelled `tenure.rs/test=true`.
    pub(crate) async fn start() -> Env {
        if real_cluster() {
            let config = Config::infer().await.expect("KUBECONFIG is readable");
            Env::real(config).await
        } else {
            Env::fixture(KubeApiServer::start().await.expect("start the API fixture"))
        }
    }

    /// The real API server of the kubeconfig at `path` (one a test started
    /// itself), in a new namespace.
    pub(crate) async fn from_kubeconfig(path: &std::path::Path) -> Env {
        let kubeconfig = kube::config::Kubeconfig::read_from(path).expect("a readable kubeconfig");
        let config = Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .expect("a usable kubeconfig");
        Env::real(config).await
    }

    async fn real(config: Config) -> Env {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let namespace = format!("tenure-test-{nanos}");
        let env = Env {
            cluster: Cluster::Real(Box::new(config)),
            namespace: namespace.clone(),
            http: reqwest::Client::new(),
            proxies: Mutex::new(Vec::new()),
            touches: AtomicU64::new(0),
        };
        let (code, body) = env
            .raw(
                http::Method::POST,
                "/api/v1/namespaces",
                Some(json!({"apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": namespace, "labels": {"tenure.rs/test": "true"}}})),
            )
            .await;
        // `raw` on a real cluster reports any success as 200.
        assert!(
            code == 200 || code == 201,
            "create namespace {namespace}: {code} {body}"
        );
        env
    }

    /// An env on the given fixture server.
    pub(crate) fn fixture(server: KubeApiServer) -> Env {
        Env {
            cluster: Cluster::Fixture(server),
            namespace: NAMESPACE.to_owned(),
            http: reqwest::Client::new(),
            proxies: Mutex::new(Vec::new()),
            touches: AtomicU64::new(0),
        }
    }

    /// The fixture server (panics on a real cluster).
    pub(crate) fn server(&self) -> &KubeApiServer {
        match &self.cluster {
            Cluster::Fixture(server) => server,
            Cluster::Real(_) => panic!("this test needs the fixture"),
        }
    }

    /// The real cluster's client configuration (panics on the fixture).
    pub(crate) fn config(&self) -> Config {
        match &self.cluster {
            Cluster::Real(config) => (**config).clone(),
            Cluster::Fixture(_) => panic!("this needs a real cluster"),
        }
    }

    /// A new client (its own connections), defaulting to our namespace:
    /// the one a lock builds when given none (`tenure_k8s::client_for`).
    pub(crate) fn client(&self) -> Client {
        tenure_k8s::client_for(self.client_config()).expect("a client")
    }

    /// A new client as kube itself builds it (`Client::try_from`: Nagle's
    /// algorithm on), for the measurement that compares the two.
    pub(crate) fn kube_client(&self) -> Client {
        Client::try_from(self.client_config()).expect("a client")
    }

    fn client_config(&self) -> Config {
        let mut config = match &self.cluster {
            Cluster::Fixture(server) => Config::new(server.url().parse().unwrap()),
            Cluster::Real(config) => (**config).clone(),
        };
        config.default_namespace = self.namespace.clone();
        config
    }

    /// A new client whose traffic passes a fault proxy.
    pub(crate) async fn faulty_client(&self) -> (Client, Arc<dyn FaultSwitch>) {
        let (mut config, upstream) = match &self.cluster {
            Cluster::Fixture(server) => (Config::new(server.url().parse().unwrap()), server.addr()),
            Cluster::Real(config) => {
                let uri = &config.cluster_url;
                let host = uri.host().expect("the cluster URL has a host").to_owned();
                let port = uri.port_u16().unwrap_or(443);
                let upstream = tokio::net::lookup_host((host.as_str(), port))
                    .await
                    .expect("resolve the API server")
                    .next()
                    .expect("an API server address");
                let mut config = (**config).clone();
                if host.parse::<std::net::IpAddr>().is_err() {
                    config.tls_server_name = Some(host);
                }
                (config, upstream)
            }
        };
        let proxy = FaultProxy::start(upstream)
            .await
            .expect("start a fault proxy");
        let scheme = config.cluster_url.scheme_str().unwrap_or("http").to_owned();
        config.cluster_url = format!("{scheme}://{}", proxy.addr()).parse().unwrap();
        config.default_namespace = self.namespace.clone();
        let switch = proxy.switch();
        self.proxies.lock().unwrap().push(proxy);
        (Client::try_from(config).expect("a client"), switch)
    }

    /// A plain request to the API server, bypassing our locks: plain HTTP to
    /// the fixture, or kube's authenticated transport to a real cluster.
    /// Returns the status code and the JSON body.
    pub(crate) async fn raw(
        &self,
        method: http::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        match &self.cluster {
            Cluster::Fixture(server) => {
                let mut req = self.http.request(method, format!("{}{path}", server.url()));
                if let Some(body) = body {
                    req = req
                        .header("Content-Type", "application/json")
                        .body(body.to_string());
                }
                let resp = req.send().await.expect("a plain HTTP request");
                let code = resp.status().as_u16();
                let text = resp.text().await.expect("a body");
                (
                    code,
                    serde_json::from_str(&text).unwrap_or(Value::String(text)),
                )
            }
            Cluster::Real(_) => {
                let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
                let req = http::Request::builder()
                    .method(method)
                    .uri(path)
                    .header("Content-Type", "application/json")
                    .body(body)
                    .unwrap();
                match self.client().request_text(req).await {
                    Ok(text) => (
                        200,
                        serde_json::from_str(&text).unwrap_or(Value::String(text)),
                    ),
                    Err(kube::Error::Api(status)) => {
                        (status.code, serde_json::to_value(&*status).unwrap())
                    }
                    Err(e) => panic!("raw request to {path}: {e}"),
                }
            }
        }
    }

    pub(crate) fn lease_path(&self, name: &str) -> String {
        format!(
            "/apis/coordination.k8s.io/v1/namespaces/{}/leases/{name}",
            self.namespace
        )
    }

    pub(crate) fn configmap_path(&self, name: &str) -> String {
        format!("/api/v1/namespaces/{}/configmaps/{name}", self.namespace)
    }

    /// Writes `object` at `path` whatever is there: create, else replace.
    pub(crate) async fn put_object(&self, path: &str, object: Value) {
        let collection = path.rsplit_once('/').unwrap().0;
        let (code, body) = self
            .raw(http::Method::POST, collection, Some(object.clone()))
            .await;
        if code == 409 {
            let (code, body) = self.raw(http::Method::PUT, path, Some(object)).await;
            assert_eq!(code, 200, "replace {path}: {body}");
        } else {
            assert!(code == 201 || code == 200, "create {path}: {code} {body}");
        }
    }

    /// The object at `path`, if any.
    pub(crate) async fn get_object(&self, path: &str) -> Option<Value> {
        match self.raw(http::Method::GET, path, None).await {
            (200, object) => Some(object),
            (404, _) => None,
            (code, body) => panic!("get {path}: {code} {body}"),
        }
    }

    /// Deletes the object at `path`, if there is one.
    pub(crate) async fn delete_object(&self, path: &str) {
        let (code, body) = self.raw(http::Method::DELETE, path, None).await;
        assert!(code == 200 || code == 404, "delete {path}: {code} {body}");
    }

    /// Another tool's write to the object at `path`, if there is one: a
    /// new value of [`TOUCHED_ANNOTATION`], the record kept. A replace at
    /// the version read, retried on 409, so a concurrent renew is never
    /// overwritten with the record read before it.
    pub(crate) async fn touch_object(&self, path: &str) {
        for _ in 0..20 {
            let Some(mut object) = self.get_object(path).await else {
                return;
            };
            let n = self.touches.fetch_add(1, Ordering::Relaxed) + 1;
            object["metadata"]["annotations"][TOUCHED_ANNOTATION] = json!(n.to_string());
            match self.raw(http::Method::PUT, path, Some(object)).await {
                (200, _) => return,
                (404, _) => return,
                (409, _) => continue,
                (code, body) => panic!("touch {path}: {code} {body}"),
            }
        }
        panic!("touch {path}: 20 conflicts in a row");
    }

    /// The record at `path` erased in place by another tool, the object
    /// kept: a Lease's spec cleared, a ConfigMap's leader annotation
    /// stripped. A replace at the version read, retried on 409.
    pub(crate) async fn erase_object(&self, path: &str) {
        for _ in 0..20 {
            let Some(mut object) = self.get_object(path).await else {
                return;
            };
            if path.contains("/leases/") {
                object["spec"] = json!({});
            } else if let Some(a) = object["metadata"]["annotations"].as_object_mut() {
                a.remove(LEADER_ANNOTATION);
            }
            match self.raw(http::Method::PUT, path, Some(object)).await {
                (200, _) => return,
                (404, _) => return,
                (409, _) => continue,
                (code, body) => panic!("erase {path}: {code} {body}"),
            }
        }
        panic!("erase {path}: 20 conflicts in a row");
    }

    /// A Lease `name` with this spec and annotations, written over whatever is there.
    pub(crate) async fn put_lease(&self, name: &str, spec: Value, annotations: Value) {
        let object = json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": name, "annotations": annotations},
            "spec": spec,
        });
        self.put_object(&self.lease_path(name), object).await;
    }

    /// A ConfigMap `name` with these annotations and data.
    pub(crate) async fn put_configmap(&self, name: &str, annotations: Value, data: Value) {
        let object = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "annotations": annotations},
            "data": data,
        });
        self.put_object(&self.configmap_path(name), object).await;
    }
}

/// Which lock the factory opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Lease,
    ConfigMap,
    Multi,
}

/// The suite's factory: each `open` is a new kube client on the env.
pub(crate) struct KubeFactory {
    pub env: Arc<Env>,
    kind: Kind,
    /// One client and one shared watch for every `open` (not `open_faulty`).
    shared: Option<(Client, SharedWatch)>,
}

impl KubeFactory {
    pub(crate) async fn start(kind: Kind) -> KubeFactory {
        KubeFactory::on(Arc::new(Env::start().await), kind)
    }

    /// A factory of `kind` locks on `env`: two factories on one env open
    /// two kinds of lock on the same objects (a mixed fleet).
    pub(crate) fn on(env: Arc<Env>, kind: Kind) -> KubeFactory {
        KubeFactory {
            env,
            kind,
            shared: None,
        }
    }

    /// Every `open` through one client and one [`SharedWatch`].
    pub(crate) async fn start_shared(kind: Kind) -> KubeFactory {
        let env = Arc::new(Env::start().await);
        let shared = Some((env.client(), SharedWatch::new()));
        KubeFactory { env, kind, shared }
    }

    /// The API paths of the objects that hold `lock`.
    fn paths(&self, lock: &str) -> Vec<String> {
        match self.kind {
            Kind::Lease => vec![self.env.lease_path(lock)],
            Kind::ConfigMap => vec![self.env.configmap_path(lock)],
            Kind::Multi => vec![self.env.configmap_path(lock), self.env.lease_path(lock)],
        }
    }

    pub(crate) async fn open_with(
        &self,
        client: Client,
        lock: &str,
    ) -> Result<Arc<dyn LockStore>, StoreError> {
        self.open_watching(client, None, lock).await
    }

    async fn open_watching(
        &self,
        client: Client,
        watch: Option<&SharedWatch>,
        lock: &str,
    ) -> Result<Arc<dyn LockStore>, StoreError> {
        let ns = self.env.namespace.clone();
        macro_rules! build {
            ($lock:ty) => {{
                let mut builder = <$lock>::builder(lock)
                    .client(client)
                    .namespace(ns)
                    .request_timeout(REQUEST_TIMEOUT);
                if let Some(watch) = watch {
                    builder = builder.shared_watch(watch);
                }
                Arc::new(builder.build().await?)
            }};
        }
        Ok(match self.kind {
            Kind::Lease => build!(LeaseLock),
            Kind::ConfigMap => build!(ConfigMapLock),
            Kind::Multi => build!(MultiLock),
        })
    }
}

#[async_trait]
impl StoreFactory for KubeFactory {
    async fn open(&self, lock: &str) -> Result<Arc<dyn LockStore>, StoreError> {
        match &self.shared {
            Some((client, watch)) => self.open_watching(client.clone(), Some(watch), lock).await,
            None => self.open_with(self.env.client(), lock).await,
        }
    }

    async fn open_faulty(
        &self,
        lock: &str,
    ) -> Result<(Arc<dyn LockStore>, Arc<dyn FaultSwitch>), StoreError> {
        let (client, switch) = self.env.faulty_client().await;
        Ok((self.open_with(client, lock).await?, switch))
    }

    /// Lease: a raw JSON object becomes the spec; anything else is parked in
    /// [`RAW_ANNOTATION`] beside a spec that is not a record. ConfigMap (and
    /// the MultiLock's primary): the raw value is the leader annotation.
    async fn put_raw(&self, lock: &str, raw: &str) {
        match self.kind {
            Kind::Lease => match serde_json::from_str::<Value>(raw) {
                Ok(spec @ Value::Object(_)) => self.env.put_lease(lock, spec, json!({})).await,
                _ => {
                    self.env
                        .put_lease(lock, foreign_spec(), json!({ RAW_ANNOTATION: raw }))
                        .await
                }
            },
            Kind::ConfigMap | Kind::Multi => {
                self.env
                    .put_configmap(
                        lock,
                        json!({ LEADER_ANNOTATION: raw }),
                        json!({"foreign": "data"}),
                    )
                    .await
            }
        }
    }

    async fn get_raw(&self, lock: &str) -> Option<String> {
        match self.kind {
            Kind::Lease => {
                let lease = self.env.get_object(&self.env.lease_path(lock)).await?;
                let parked = lease["metadata"]["annotations"][RAW_ANNOTATION].as_str();
                match parked {
                    Some(raw) if lease["spec"] == foreign_spec() => Some(raw.to_owned()),
                    _ => Some(lease["spec"].to_string()),
                }
            }
            Kind::ConfigMap | Kind::Multi => {
                let cm = self.env.get_object(&self.env.configmap_path(lock)).await?;
                cm["metadata"]["annotations"][LEADER_ANNOTATION]
                    .as_str()
                    .map(str::to_owned)
            }
        }
    }

    /// The lock's object; both of a MultiLock's.
    async fn delete(&self, lock: &str) {
        for path in self.paths(lock) {
            self.env.delete_object(&path).await;
        }
    }

    /// The record erased in place on the lock's object; on both of a
    /// MultiLock's.
    async fn erase(&self, lock: &str) {
        for path in self.paths(lock) {
            self.env.erase_object(&path).await;
        }
    }

    /// A new [`TOUCHED_ANNOTATION`] on the lock's object; on both of a
    /// MultiLock's.
    /// A MultiLock's ConfigMap only: a touch of its Lease that lands
    /// between a takeover's two writes leaves the ConfigMap naming the new
    /// holder and the Lease the old one, which reads as an unknown holder
    /// and costs a lease, as in client-go (`multilock.rs` tests that write
    /// and that a change to either object is a change). Seen in a CI
    /// rehearsal on the real server: touches of both objects every 250 ms
    /// kept a takeover out for longer than the scenario's bound.
    async fn touch(&self, lock: &str) {
        let paths = self.paths(lock);
        self.env.touch_object(&paths[0]).await;
    }

    fn supports_watch(&self) -> bool {
        true
    }

    fn request_timeout(&self) -> Option<Duration> {
        Some(REQUEST_TIMEOUT)
    }
}

/// A Lease spec that is not a record: a holder without a lease duration
/// (which a real API server accepts too).
pub(crate) fn foreign_spec() -> Value {
    json!({"holderIdentity": "foreign"})
}

/// The `tenure` binary beside this test's (the workspace build makes it).
#[allow(dead_code)] // not every test file runs the CLI
pub(crate) fn tenure_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join("tenure");
    assert!(
        bin.exists(),
        "no tenure binary at {} (cargo build -p tenure-cli; make test builds it)",
        bin.display()
    );
    bin
}
