//! The stores under test, each on a real server started by the fixtures,
//! with a server-side operation counter and the raw primitive a renew maps to.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tenure_conformance::fixtures::etcd::EtcdServer;
use tenure_conformance::fixtures::redis::RedisServer;
use tenure_conformance::{FaultSwitch, MemoryFactory, StoreFactory};
use tenure_core::{LeaderRecord, LockStore, StoreError, Version, Versioned, WatchStream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use crate::phases::{Phases, Stamps, Timed};
use crate::stats::Samples;

/// A factory whose stores count every call (the in-process "server side").
pub(crate) struct CountingMemory {
    inner: MemoryFactory,
    pub ops: Arc<AtomicU64>,
}

impl CountingMemory {
    pub(crate) fn new() -> Self {
        CountingMemory {
            inner: MemoryFactory::new(),
            ops: Arc::new(AtomicU64::new(0)),
        }
    }
}

#[derive(Debug)]
struct Counted(Arc<dyn LockStore>, Arc<AtomicU64>);

#[async_trait]
impl LockStore for Counted {
    async fn get(&self) -> Result<Option<Versioned>, StoreError> {
        self.1.fetch_add(1, Ordering::Relaxed);
        self.0.get().await
    }
    async fn create(&self, r: &LeaderRecord) -> Result<Version, StoreError> {
        self.1.fetch_add(1, Ordering::Relaxed);
        self.0.create(r).await
    }
    async fn update(&self, r: &LeaderRecord, v: &Version) -> Result<Version, StoreError> {
        self.1.fetch_add(1, Ordering::Relaxed);
        self.0.update(r, v).await
    }
    async fn watch(&self) -> Result<Option<WatchStream>, StoreError> {
        self.0.watch().await
    }
    async fn token_floor(&self) -> Result<Option<u64>, StoreError> {
        self.1.fetch_add(1, Ordering::Relaxed);
        self.0.token_floor().await
    }
    fn describe(&self) -> String {
        self.0.describe()
    }
}

#[async_trait]
impl StoreFactory for CountingMemory {
    async fn open(&self, lock: &str) -> Result<Arc<dyn LockStore>, StoreError> {
        Ok(Arc::new(Counted(
            self.inner.open(lock).await?,
            self.ops.clone(),
        )))
    }
    async fn open_faulty(
        &self,
        lock: &str,
    ) -> Result<(Arc<dyn LockStore>, Arc<dyn FaultSwitch>), StoreError> {
        self.inner.open_faulty(lock).await
    }
    async fn put_raw(&self, lock: &str, raw: &str) {
        self.inner.put_raw(lock, raw).await
    }
    async fn get_raw(&self, lock: &str) -> Option<String> {
        self.inner.get_raw(lock).await
    }
    async fn delete(&self, lock: &str) {
        self.inner.delete(lock).await
    }
    async fn touch(&self, lock: &str) {
        self.inner.touch(lock).await
    }
    fn supports_watch(&self) -> bool {
        true
    }
}

/// Redis: every `open` is a new `RedisStore` (its own connections).
pub(crate) struct RedisFactory {
    pub server: RedisServer,
}

impl RedisFactory {
    /// Commands the server executed so far (INFO commandstats), not
    /// counting the INFO calls themselves.
    pub(crate) async fn commands(&self) -> u64 {
        let client = redis::Client::open(self.server.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut conn)
            .await
            .unwrap();
        info.lines()
            .filter(|l| l.starts_with("cmdstat_") && !l.starts_with("cmdstat_info:"))
            .filter_map(|l| {
                let calls = l.split("calls=").nth(1)?;
                calls.split(',').next()?.parse::<u64>().ok()
            })
            .sum()
    }

    /// The raw primitive a renew maps to: EVALSHA of the same script with
    /// the same arguments, straight on a redis connection (no tenure code).
    /// The floor of a release hand-off on Redis, without tenure: on plain
    /// redis-rs connections, the leader EVALSHAs the free record; a waiter
    /// task, subscribed to the lock's channel, swaps on the announced value
    /// with its own EVALSHA as soon as the message comes. Timed from the
    /// release until the waiter's swap returns, after `settle` of idleness
    /// (as the real hand-off is), `runs` times.
    pub(crate) async fn raw_handoff(&self, runs: usize, settle: Duration) -> (Samples, Phases) {
        use futures::StreamExt;
        let stamps = Arc::new(Stamps::default());
        // A lock of its own per call: the record's JSON carries timestamps.
        let lock = format!("raw-handoff-{}", settle.as_millis());
        let store = tenure_redis::RedisStore::builder(self.server.url(), lock)
            .build()
            .await
            .unwrap();
        let held = LeaderRecord::held_by("bench-leader", Duration::from_secs(15));
        let version = match store.create(&held).await {
            Ok(v) => v,
            Err(_) => store.get().await.unwrap().expect("the record").version,
        };
        let held = tenure_core::record::to_json(&held);
        let free = tenure_core::record::to_json(&LeaderRecord::default());
        let (key, channel) = (store.key().to_owned(), store.channel().to_owned());
        let client = redis::Client::open(self.server.url()).unwrap();
        let mut leader = client.get_multiplexed_async_connection().await.unwrap();
        let mut waiter = client.get_multiplexed_async_connection().await.unwrap();
        let (mut sink, mut messages) = client.get_async_pubsub().await.unwrap().split();
        sink.subscribe(&channel).await.unwrap();
        let cas =
            move |conn: &mut redis::aio::MultiplexedConnection, expected: String, new: String| {
                let script = redis::Script::new(tenure_redis::CAS_SCRIPT);
                let (key, channel) = (key.clone(), channel.clone());
                let mut conn = conn.clone();
                async move {
                    let reply: redis::Value = script
                        .key(key)
                        .arg("update")
                        .arg(expected)
                        .arg(new)
                        .arg(channel)
                        .arg(0)
                        .invoke_async(&mut conn)
                        .await
                        .unwrap();
                    match reply {
                        redis::Value::Array(items) => match &items[1] {
                            redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
                            redis::Value::Int(n) => n.to_string(),
                            other => panic!("unexpected reply {other:?}"),
                        },
                        other => panic!("unexpected reply {other:?}"),
                    }
                }
            };
        let (done_tx, mut done) = tokio::sync::mpsc::channel::<String>(1);
        let waiter_task = {
            let held = held.clone();
            let cas = cas.clone();
            let stamps = stamps.clone();
            tokio::spawn(async move {
                while let Some(message) = messages.next().await {
                    let announced: String = message.get_payload().unwrap();
                    if !announced.contains(r#""holderIdentity":"""#) {
                        continue; // our own swap's announcement
                    }
                    stamps.mark(|m| &mut m.event, true);
                    stamps.mark(|m| &mut m.swap_sent, true);
                    let v = cas(&mut waiter, announced, held.clone()).await;
                    stamps.mark(|m| &mut m.swap_done, true);
                    if done_tx.send(v).await.is_err() {
                        return;
                    }
                }
            })
        };
        let mut expected = format!(r#"{{"version":{version},"record":{held}}}"#);
        let mut timed = Timed::default();
        for _ in 0..runs {
            let t = stamps.start_after(settle).await;
            cas(&mut leader, expected, free.clone()).await;
            let v = timed.finish(t, &stamps, &mut done).await;
            expected = format!(r#"{{"version":{v},"record":{held}}}"#);
        }
        waiter_task.abort();
        (timed.samples, timed.phases)
    }

    pub(crate) async fn raw_cas(&self, runs: usize) -> Samples {
        let store = tenure_redis::RedisStore::builder(self.server.url(), "raw-cas")
            .build()
            .await
            .unwrap();
        let record = LeaderRecord::held_by("bench-leader", Duration::from_secs(15));
        let mut version = match store.create(&record).await {
            Ok(v) => v,
            // A later block of the same run: continue from what is there.
            Err(_) => store.get().await.unwrap().expect("the record").version,
        };
        let json = tenure_core::record::to_json(&record);
        let script = redis::Script::new(tenure_redis::CAS_SCRIPT);
        let client = redis::Client::open(self.server.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let mut samples = Samples::default();
        for _ in 0..runs {
            let t = Instant::now();
            // The script swaps on the exact stored bytes.
            let expected = format!(r#"{{"version":{version},"record":{json}}}"#);
            let reply: redis::Value = script
                .key(store.key())
                .arg("update")
                .arg(expected)
                .arg(&json)
                .arg(store.channel())
                .arg(0)
                .invoke_async(&mut conn)
                .await
                .unwrap();
            samples.push(t.elapsed());
            version = match reply {
                redis::Value::Array(items) => match &items[1] {
                    redis::Value::Int(n) => Version::from(*n),
                    redis::Value::BulkString(b) => Version::new(String::from_utf8_lossy(b)),
                    other => panic!("unexpected reply {other:?}"),
                },
                other => panic!("unexpected reply {other:?}"),
            };
        }
        samples
    }
}

/// etcd: every `open` is a new `EtcdStore` (its own client).
pub(crate) struct EtcdFactory {
    pub server: EtcdServer,
}

impl EtcdFactory {
    /// Unary gRPC requests the server handled so far (its /metrics).
    pub(crate) async fn requests(&self) -> u64 {
        let body = http_get(self.server.addr(), "/metrics").await;
        body.lines()
            .filter(|l| {
                l.starts_with("grpc_server_handled_total{") && l.contains("grpc_type=\"unary\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }

    /// The raw primitive a renew maps to: one Txn comparing mod_revision,
    /// put on success, get on failure, straight on etcd-client.
    /// `runs` linearizable reads of one key (what etcd's election waiter
    /// does after the resign: a Get of the keys before its own).
    pub(crate) async fn raw_get(&self, runs: usize) -> Samples {
        let mut client = etcd_client::Client::connect(self.server.endpoints(), None)
            .await
            .unwrap();
        let key = "/bench/raw-get";
        client.put(key, "v", None).await.unwrap();
        let mut samples = Samples::default();
        for _ in 0..runs {
            let t = Instant::now();
            client.get(key, None).await.unwrap();
            samples.push(t.elapsed());
        }
        samples
    }

    /// The floor of tenure's release hand-off on etcd, without tenure: on
    /// two plain etcd-client connections, the leader's Txn writes the free
    /// record; a waiter task, watching the key, swaps on the watched
    /// revision with its own Txn as soon as the event comes. Timed from the
    /// release until the waiter's Txn returns, after `settle` of idleness,
    /// `runs` times. etcd's election does a Get where this does the Txn.
    ///
    /// With `as_tenure`, each Txn also compares the value as tenure's does
    /// (it must start like a record: never overwrite what we cannot read).
    pub(crate) async fn raw_handoff(
        &self,
        runs: usize,
        settle: Duration,
        as_tenure: bool,
    ) -> (Samples, Phases) {
        use etcd_client::{Compare, CompareOp, EventType, Txn, TxnOp};
        let stamps = Arc::new(Stamps::default());
        let key = format!("/bench/raw-handoff-{}", settle.as_millis());
        let held = tenure_core::record::to_json(&LeaderRecord::held_by(
            "bench-leader",
            Duration::from_secs(15),
        ));
        let free = tenure_core::record::to_json(&LeaderRecord::default());
        let connect = || etcd_client::Client::connect(self.server.endpoints(), None);
        let mut leader = connect().await.unwrap();
        let mut waiter = connect().await.unwrap();
        let swap = move |key: String, rev: i64, value: String| {
            let mut compares = vec![Compare::mod_revision(key.clone(), CompareOp::Equal, rev)];
            if as_tenure {
                compares.push(Compare::value(
                    key.clone(),
                    CompareOp::Greater,
                    "{\"holderIdentity\":",
                ));
                compares.push(Compare::value(
                    key.clone(),
                    CompareOp::Less,
                    "{\"holderIdentity\";",
                ));
            }
            Txn::new()
                .when(compares)
                .and_then([TxnOp::put(key.clone(), value, None)])
                .or_else([TxnOp::get(key, None)])
        };
        let mut rev = leader
            .put(key.clone(), held.clone(), None)
            .await
            .unwrap()
            .header()
            .unwrap()
            .revision();
        let mut events = waiter
            .watch_client()
            .watch(
                key.clone(),
                Some(etcd_client::WatchOptions::new().with_start_revision(rev + 1)),
            )
            .await
            .unwrap();
        let (done_tx, mut done) = tokio::sync::mpsc::channel::<i64>(1);
        let waiter_task = {
            let (key, held) = (key.clone(), held.clone());
            let stamps = stamps.clone();
            tokio::spawn(async move {
                while let Ok(Some(resp)) = events.message().await {
                    for event in resp.events() {
                        let Some(kv) = event.kv() else { continue };
                        if event.event_type() != EventType::Put || kv.value() == held.as_bytes() {
                            continue; // our own swap
                        }
                        stamps.mark(|m| &mut m.event, true);
                        let txn = swap(key.clone(), kv.mod_revision(), held.clone());
                        stamps.mark(|m| &mut m.swap_sent, true);
                        let resp = waiter.txn(txn).await.unwrap();
                        stamps.mark(|m| &mut m.swap_done, true);
                        assert!(resp.succeeded());
                        if done_tx
                            .send(resp.header().unwrap().revision())
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                }
            })
        };
        let mut timed = Timed::default();
        for _ in 0..runs {
            let t = stamps.start_after(settle).await;
            let resp = leader
                .txn(swap(key.clone(), rev, free.clone()))
                .await
                .unwrap();
            assert!(resp.succeeded());
            rev = timed.finish(t, &stamps, &mut done).await;
        }
        waiter_task.abort();
        (timed.samples, timed.phases)
    }

    pub(crate) async fn raw_txn(&self, runs: usize) -> Samples {
        use etcd_client::{Compare, CompareOp, Txn, TxnOp};
        let mut client = etcd_client::Client::connect(self.server.endpoints(), None)
            .await
            .unwrap();
        let key = "/bench/raw-txn";
        let value = tenure_core::record::to_json(&LeaderRecord::held_by(
            "bench-leader",
            Duration::from_secs(15),
        ));
        let mut rev = client
            .put(key, value.clone(), None)
            .await
            .unwrap()
            .header()
            .unwrap()
            .revision();
        let mut samples = Samples::default();
        for _ in 0..runs {
            let txn = Txn::new()
                .when([Compare::mod_revision(key, CompareOp::Equal, rev)])
                .and_then([TxnOp::put(key, value.clone(), None)])
                .or_else([TxnOp::get(key, None)]);
            let t = Instant::now();
            let resp = client.txn(txn).await.unwrap();
            samples.push(t.elapsed());
            assert!(resp.succeeded());
            rev = resp.header().unwrap().revision();
        }
        samples
    }
}

/// A plain HTTP/1.0 GET on loopback; the body.
pub(crate) async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default()
}

/// Kubernetes: `LeaseLock`s on the in-repo API server fixture; every `open`
/// is a new `kube::Client`.
pub(crate) struct KubeFactory {
    pub server: tenure_kube_fixture::KubeApiServer,
}

impl KubeFactory {
    fn client(&self) -> tenure_k8s::kube::Client {
        let config = tenure_k8s::kube::Config::new(self.server.url().parse().expect("fixture URL"));
        tenure_k8s::kube::Client::try_from(config).expect("a kube client")
    }

    /// Requests the fixture answered so far (all verbs).
    pub(crate) fn requests(&self) -> u64 {
        self.server.request_counts().values().sum()
    }

    /// The raw primitive a renew maps to: one HTTP PUT of the Lease with its
    /// resourceVersion, on a kept-alive loopback connection (no kube client).
    pub(crate) async fn raw_put(&self, runs: usize) -> Samples {
        let lock = tenure_k8s::LeaseLock::new(self.client(), "default", "raw-put")
            .await
            .unwrap();
        // Absent on the first block; there already on later ones.
        let _ = lock
            .create(&LeaderRecord::held_by(
                "bench-leader",
                Duration::from_secs(15),
            ))
            .await;
        let path = "/apis/coordination.k8s.io/v1/namespaces/default/leases/raw-put";
        let mut conn = tokio::net::TcpStream::connect(self.server.addr())
            .await
            .unwrap();
        let (_, body) = http11(&mut conn, "GET", path, "").await;
        let mut lease: serde_json::Value = serde_json::from_str(&body).unwrap();
        let mut samples = Samples::default();
        for _ in 0..runs {
            lease["spec"]["renewTime"] = serde_json::Value::String(
                tenure_core::record::format_time(tenure_core::record::now_micros()),
            );
            let body = lease.to_string();
            let t = Instant::now();
            let (status, reply) = http11(&mut conn, "PUT", path, &body).await;
            samples.push(t.elapsed());
            assert_eq!(status, 200, "{reply}");
            lease = serde_json::from_str(&reply).unwrap();
        }
        samples
    }
}

/// One HTTP/1.1 request on a kept-alive connection; status and body.
async fn http11(
    conn: &mut tokio::net::TcpStream,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, String) {
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = conn.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the server closed the connection");
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some((head, rest)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .expect("a content-length");
            if rest.len() >= len {
                let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
                return (status, rest[..len].to_owned());
            }
        }
    }
}

/// A store the benchmarks can open: a new client per `open`.
#[async_trait]
pub(crate) trait Open: Send + Sync + 'static {
    /// Opens `lock` with a new client.
    async fn open_lock(&self, lock: &str) -> Result<Arc<dyn LockStore>, StoreError>;
}

#[async_trait]
impl Open for RedisFactory {
    async fn open_lock(&self, lock: &str) -> Result<Arc<dyn LockStore>, StoreError> {
        let store = tenure_redis::RedisStore::builder(self.server.url(), lock)
            .build()
            .await?;
        Ok(Arc::new(store))
    }
}

#[async_trait]
impl Open for EtcdFactory {
    async fn open_lock(&self, lock: &str) -> Result<Arc<dyn LockStore>, StoreError> {
        let store = tenure_etcd::EtcdStore::builder(self.server.endpoints(), lock)
            .build()
            .await?;
        Ok(Arc::new(store))
    }
}

#[async_trait]
impl Open for KubeFactory {
    async fn open_lock(&self, lock: &str) -> Result<Arc<dyn LockStore>, StoreError> {
        Ok(Arc::new(
            tenure_k8s::LeaseLock::new(self.client(), "default", lock).await?,
        ))
    }
}

/// The measures take a conformance `StoreFactory`; the benchmarks only open
/// locks (no fault switch, no raw values).
pub(crate) struct OpenOnly<T>(pub Arc<T>);

#[async_trait]
impl<T: Open> StoreFactory for OpenOnly<T> {
    async fn open(&self, lock: &str) -> Result<Arc<dyn LockStore>, StoreError> {
        self.0.open_lock(lock).await
    }
    async fn open_faulty(
        &self,
        _: &str,
    ) -> Result<(Arc<dyn LockStore>, Arc<dyn FaultSwitch>), StoreError> {
        Err(StoreError::other("not used by the benchmarks"))
    }
    async fn put_raw(&self, _: &str, _: &str) {}
    async fn get_raw(&self, _: &str) -> Option<String> {
        None
    }
    async fn delete(&self, _: &str) {
        unreachable!("the benchmarks never delete a lock")
    }
    async fn touch(&self, _: &str) {
        unreachable!("the benchmarks never touch a lock")
    }
    fn supports_watch(&self) -> bool {
        true
    }
}

/// Opens Redis locks for the scale run: a new client per lock
/// (`separate`), or one client shared by every lock.
pub(crate) fn redis_opener(f: Arc<RedisFactory>, separate: bool) -> crate::scale::OpenFn {
    let shared = tokio::sync::OnceCell::new();
    let shared = Arc::new(shared);
    Box::new(move |lock| {
        let (f, shared) = (f.clone(), shared.clone());
        Box::pin(async move {
            if separate {
                return f.open_lock(&lock).await;
            }
            let client = shared
                .get_or_try_init(|| tenure_redis::RedisClient::builder(f.server.url()).build())
                .await?;
            Ok(Arc::new(client.store(&lock)?) as Arc<dyn LockStore>)
        })
    })
}

/// Opens etcd locks for the scale run (see [`redis_opener`]); the shared
/// client has at most `max_in_flight` calls in flight (0: no cap).
pub(crate) fn etcd_opener(
    f: Arc<EtcdFactory>,
    separate: bool,
    max_in_flight: usize,
) -> crate::scale::OpenFn {
    let shared = Arc::new(tokio::sync::OnceCell::new());
    Box::new(move |lock| {
        let (f, shared) = (f.clone(), shared.clone());
        Box::pin(async move {
            if separate {
                return f.open_lock(&lock).await;
            }
            let client = shared
                .get_or_try_init(|| {
                    let builder = tenure_etcd::EtcdClient::builder(f.server.endpoints());
                    match max_in_flight {
                        0 => builder,
                        max => builder.max_requests_in_flight(max),
                    }
                    .build()
                })
                .await?;
            Ok(Arc::new(client.store(&lock)?) as Arc<dyn LockStore>)
        })
    })
}

/// Opens Lease locks for the scale run: one `kube::Client` and one
/// `SharedWatch` shared by every lock (its requests in flight capped at
/// `max_in_flight`, else the default), or a client per lock and no shared
/// watch (`separate`).
pub(crate) fn kube_opener(
    f: Arc<KubeFactory>,
    separate: bool,
    max_in_flight: Option<usize>,
) -> crate::scale::OpenFn {
    let shared = f.client();
    let mut watches = tenure_k8s::SharedWatch::new();
    if let Some(max) = max_in_flight {
        watches = watches.max_requests_in_flight(max);
    }
    Box::new(move |lock| {
        let client = if separate { f.client() } else { shared.clone() };
        let watches = (!separate).then(|| watches.clone());
        Box::pin(async move {
            let mut builder = tenure_k8s::LeaseLock::builder(&lock)
                .client(client)
                .namespace("default");
            if let Some(watches) = &watches {
                builder = builder.shared_watch(watches);
            }
            let lock = builder.build().await?;
            Ok(Arc::new(lock) as Arc<dyn LockStore>)
        })
    })
}
