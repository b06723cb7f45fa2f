//! The shared behaviour suite on a real etcd: `TENURE_ETCD_ENDPOINTS` if set,
//! else a fresh `etcd` from PATH per test.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tenure_conformance::fixtures::etcd::EtcdServer;
use tenure_conformance::{FaultProxy, FaultSwitch, StoreFactory};
use tenure_core::{LockStore, StoreError, async_trait};
use tenure_etcd::{EtcdClient, EtcdStore};

/// Opens [`EtcdStore`]s on one etcd server, under a key prefix of their own
/// (so factories can share a server given in the environment); with
/// `shared`, every lock on the server (not behind a proxy) through one
/// [`EtcdClient`].
struct EtcdFactory {
    server: EtcdServer,
    prefix: String,
    /// Kept alive as long as the stores that talk through them.
    proxies: Mutex<Vec<FaultProxy>>,
    shared: Option<tokio::sync::OnceCell<EtcdClient>>,
}

impl EtcdFactory {
    fn start() -> EtcdFactory {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let unique = format!(
            "{}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos()
        );
        EtcdFactory {
            server: EtcdServer::start(),
            prefix: format!("/tenure-conformance/{unique}/"),
            proxies: Mutex::new(Vec::new()),
            shared: None,
        }
    }

    async fn store(&self, endpoints: Vec<String>, lock: &str) -> Result<EtcdStore, StoreError> {
        if let Some(shared) = self
            .shared
            .as_ref()
            .filter(|_| endpoints == self.server.endpoints())
        {
            let client = shared
                .get_or_try_init(|| {
                    EtcdClient::builder(endpoints)
                        .prefix(&self.prefix)
                        .request_timeout(REQUEST_TIMEOUT)
                        .build()
                })
                .await?;
            return client.store(lock);
        }
        EtcdStore::builder(endpoints, lock)
            .prefix(&self.prefix)
            .request_timeout(REQUEST_TIMEOUT)
            .build()
            .await
    }

    async fn raw(&self) -> etcd_client::Client {
        etcd_client::Client::connect(self.server.endpoints(), None)
            .await
            .expect("plain etcd client")
    }
}

#[async_trait]
impl StoreFactory for EtcdFactory {
    async fn open(&self, lock: &str) -> Result<Arc<dyn LockStore>, StoreError> {
        Ok(Arc::new(self.store(self.server.endpoints(), lock).await?))
    }

    async fn open_faulty(
        &self,
        lock: &str,
    ) -> Result<(Arc<dyn LockStore>, Arc<dyn FaultSwitch>), StoreError> {
        let proxy = FaultProxy::start(self.server.addr())
            .await
            .map_err(|e| StoreError::other(format!("fault proxy: {e}")))?;
        let store = self
            .store(vec![format!("http://{}", proxy.addr())], lock)
            .await?;
        let switch = proxy.switch();
        self.proxies.lock().unwrap().push(proxy);
        Ok((Arc::new(store), switch))
    }

    async fn put_raw(&self, lock: &str, raw: &str) {
        self.raw()
            .await
            .put(format!("{}{lock}", self.prefix), raw, None)
            .await
            .expect("put a raw value");
    }

    async fn get_raw(&self, lock: &str) -> Option<String> {
        let resp = self
            .raw()
            .await
            .get(format!("{}{lock}", self.prefix), None)
            .await
            .expect("get a raw value");
        resp.kvs()
            .first()
            .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
    }

    async fn delete(&self, lock: &str) {
        self.raw()
            .await
            .delete(format!("{}{lock}", self.prefix), None)
            .await
            .expect("delete the lock key");
    }

    /// The same bytes again: a new `mod_revision`, the same record.
    async fn touch(&self, lock: &str) {
        if let Some(raw) = self.get_raw(lock).await {
            self.put_raw(lock, &raw).await;
        }
    }

    fn supports_watch(&self) -> bool {
        true
    }

    fn request_timeout(&self) -> Option<Duration> {
        Some(REQUEST_TIMEOUT)
    }
}

async fn factory() -> EtcdFactory {
    EtcdFactory::start()
}

tenure_conformance::conformance_tests!(factory);

/// The whole suite again with every candidate of a scenario on one shared
/// [`EtcdClient`] (the faulty ones excepted: each sits behind a proxy of
/// its own).
mod shared_client {
    use super::EtcdFactory;

    async fn factory() -> EtcdFactory {
        EtcdFactory {
            shared: Some(tokio::sync::OnceCell::new()),
            ..EtcdFactory::start()
        }
    }

    // The scenarios where candidates share the client's connections: many
    // candidates, watches, hand-offs, races, a hung store. (The rest are
    // about records and run above; all of them at once doubled the suite's
    // load, and its timing-tight scenarios flaked under it.)
    tenure_conformance::conformance_tests!(shared factory);
}

/// Each call's bound.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
