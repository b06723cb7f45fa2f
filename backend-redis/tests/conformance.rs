//! The tenure behaviour suite on a real Redis server.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tenure_conformance::fixtures::redis::RedisServer;
use tenure_conformance::{FaultProxy, FaultSwitch, StoreFactory};
use tenure_core::{LockStore, StoreError, async_trait};
use tenure_redis::{RedisClient, RedisStore, lock_key};

/// Opens a [`RedisStore`] (own connection) per call on one server, or with
/// `shared`, every lock through that one client. Each factory uses its own
/// key prefix, so tests can share an external server.
pub struct RedisFactory {
    server: RedisServer,
    prefix: String,
    raw: redis::aio::MultiplexedConnection,
    proxies: Mutex<Vec<FaultProxy>>,
    shared: Option<RedisClient>,
}

impl RedisFactory {
    /// Every candidate on one [`RedisClient`]: one connection, one pub/sub
    /// connection for all of them.
    async fn start_shared() -> RedisFactory {
        let mut factory = Self::start().await;
        let client = RedisClient::builder(factory.server.url())
            .prefix(factory.prefix.clone())
            .request_timeout(REQUEST_TIMEOUT)
            .build()
            .await
            .expect("connect to redis");
        factory.shared = Some(client);
        factory
    }

    async fn start() -> RedisFactory {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let server = RedisServer::start();
        let prefix = format!(
            "tenure-test-{}-{}:",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let raw = redis::Client::open(server.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .expect("connect to redis");
        RedisFactory {
            server,
            prefix,
            raw,
            proxies: Mutex::new(Vec::new()),
            shared: None,
        }
    }

    async fn store(&self, url: String, lock: &str) -> Result<RedisStore, StoreError> {
        if let Some(client) = self.shared.as_ref().filter(|_| url == self.server.url()) {
            return client.store(lock);
        }
        RedisStore::builder(url, lock)
            .prefix(self.prefix.clone())
            .request_timeout(REQUEST_TIMEOUT)
            .build()
            .await
    }
}

#[async_trait]
impl StoreFactory for RedisFactory {
    async fn open(&self, lock: &str) -> Result<Arc<dyn LockStore>, StoreError> {
        Ok(Arc::new(self.store(self.server.url(), lock).await?))
    }

    async fn open_faulty(
        &self,
        lock: &str,
    ) -> Result<(Arc<dyn LockStore>, Arc<dyn FaultSwitch>), StoreError> {
        let proxy = FaultProxy::start(self.server.addr())
            .await
            .map_err(|e| StoreError::other(e.to_string()))?;
        let url = format!("redis://{}", proxy.addr());
        let switch = proxy.switch();
        self.proxies.lock().unwrap().push(proxy);
        Ok((Arc::new(self.store(url, lock).await?), switch))
    }

    async fn put_raw(&self, lock: &str, raw: &str) {
        let _: () = redis::cmd("SET")
            .arg(lock_key(&self.prefix, lock))
            .arg(raw)
            .query_async(&mut self.raw.clone())
            .await
            .expect("SET");
    }

    async fn get_raw(&self, lock: &str) -> Option<String> {
        redis::cmd("GET")
            .arg(lock_key(&self.prefix, lock))
            .query_async(&mut self.raw.clone())
            .await
            .expect("GET")
    }

    async fn delete(&self, lock: &str) {
        let _: () = redis::cmd("DEL")
            .arg(lock_key(&self.prefix, lock))
            .query_async(&mut self.raw.clone())
            .await
            .expect("DEL");
    }

    /// The same bytes again (the version lives inside the value, so it
    /// does not move: the record must still not look renewed).
    /// The envelope kept, its version moved on (as the store's script
    /// would), its record blanked: no holder, no lease.
    async fn erase(&self, lock: &str) {
        let Some(raw) = self.get_raw(lock).await else {
            return;
        };
        let envelope: serde_json::Value = serde_json::from_str(&raw).expect("an envelope");
        let version = envelope["version"].as_u64().expect("a version") + 1;
        let mut blank = tenure_core::LeaderRecord::default();
        blank.lease_duration = std::time::Duration::ZERO;
        let record = tenure_core::record::to_json(&blank);
        self.put_raw(
            lock,
            &format!(r#"{{"version":{version},"record":{record}}}"#),
        )
        .await;
    }

    async fn touch(&self, lock: &str) {
        if let Some(raw) = self.get_raw(lock).await {
            self.put_raw(lock, &raw).await;
        }
    }

    fn supports_watch(&self) -> bool {
        true
    }

    /// Deletions and raw writes by other tools are not published.
    fn announces_foreign_writes(&self) -> bool {
        false
    }

    fn request_timeout(&self) -> Option<std::time::Duration> {
        Some(REQUEST_TIMEOUT)
    }
}

async fn factory() -> RedisFactory {
    RedisFactory::start().await
}

tenure_conformance::conformance_tests!(factory);

/// The whole suite again with every candidate of a scenario on one shared
/// [`RedisClient`] (the faulty ones excepted: each sits behind a proxy of
/// its own).
mod shared_client {
    use super::RedisFactory;

    async fn factory() -> RedisFactory {
        RedisFactory::start_shared().await
    }

    // The scenarios where candidates share the client's connections: many
    // candidates, watches, hand-offs, races, a hung store. (The rest are
    // about records and run above; all of them at once doubled the suite's
    // load, and its timing-tight scenarios flaked under it.)
    tenure_conformance::conformance_tests!(shared factory);
}

/// The negative control of the vanished-record scenarios on a store that
/// announces no deletions: a follower that takes a missing record for a
/// free one (planted) finds it missing only when its lease runs out here,
/// so it creates one a lease after the deletion: only the store's own
/// bound (a lease after finding it missing) catches it. One thread, as the
/// planted bug is switched on per thread.
#[tokio::test]
async fn the_deleted_record_scenario_catches_a_follower_that_takes_it_for_free() {
    use futures::FutureExt;
    use tenure_core::planted::{Bug, plant};
    let f = factory().await;
    plant(Some(Bug::DeletedRecordIsFree));
    let outcome = std::panic::AssertUnwindSafe(
        tenure_conformance::scenarios::deleted_record_is_not_a_free_lock(&f),
    )
    .catch_unwind()
    .await;
    plant(None);
    let panic = outcome.expect_err("the scenario passed with the planted bug");
    let message = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    assert!(
        message.contains("waits a lease from finding it missing"),
        "failed for another reason: {message}"
    );
}

/// Each call's bound (shorter than the client's default 5 s, so the hung-store
/// scenario is quick; long enough for a loaded CI machine).
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);
