//! [`RedisStore`]: the [`LockStore`] on one Redis key.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use redis::RedisError;
use redis::aio::ConnectionManager;
use tenure_core::record;
use tenure_core::{
    LeaderRecord, LockStore, StoreError, Version, Versioned, WatchEvent, WatchStream,
};

use crate::client::RedisStoreBuilder;
use crate::client::Shared;
use crate::envelope;
use crate::watch;

/// The compare-and-swap Lua script itself, for tools that measure or audit it.
pub const CAS_SCRIPT: &str = include_str!("cas.lua");

/// The Redis key of `lock` under `prefix`: `{prefix}{{lock}}`, e.g.
/// `tenure:{scheduler}`.
///
/// The lock name is a Redis Cluster hash tag, so the key and everything the
/// script touches live in one slot.
///
/// ```
/// assert_eq!(tenure_redis::lock_key("tenure:", "scheduler"), "tenure:{scheduler}");
/// ```
pub fn lock_key(prefix: &str, lock: &str) -> String {
    format!("{prefix}{{{lock}}}")
}

/// The pub/sub channel on which every change of `key` is published:
/// `{key}:changes`, e.g. `tenure:{scheduler}:changes`.
///
/// ```
/// assert_eq!(tenure_redis::change_channel("tenure:{scheduler}"), "tenure:{scheduler}:changes");
/// ```
pub fn change_channel(key: &str) -> String {
    format!("{key}:changes")
}

/// A tenure lock kept in one Redis key, written only by one Lua script that
/// compares and swaps a version counter in a single round trip.
///
/// Built with [`RedisStore::builder`] (a client of its own) or
/// [`RedisClient::store`](crate::RedisClient::store) (the client's shared
/// connections). Clones share the connection. `Debug`,
/// [`describe`](LockStore::describe) and every error message are free of
/// the password.
///
/// ```no_run
/// use tenure_core::LockStore;
/// use tenure_redis::RedisStore;
///
/// # async fn f() -> Result<(), tenure_core::StoreError> {
/// let store = RedisStore::builder("redis://127.0.0.1:6379/0", "scheduler")
///     .expire_after_leases(10)
///     .build()
///     .await?;
/// assert_eq!(store.describe(), "redis://127.0.0.1:6379/0 key tenure:{scheduler}");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) shared: Arc<Shared>,
    pub(crate) name: String,
    pub(crate) key: String,
    pub(crate) channel: String,
    /// The last stored value this handle read or wrote, with its version:
    /// an update swaps only on these exact bytes (see `cas.lua`).
    last_value: std::sync::Mutex<Option<(Version, String)>>,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shared = &self.inner.shared;
        f.debug_struct("RedisStore")
            .field("target", &shared.target)
            .field("key", &self.inner.key)
            .field("request_timeout", &shared.request_timeout)
            .field("expire_after_leases", &shared.expire_after_leases)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Starts a builder for the lock `name` on the server at `url`
    /// (`redis://[user[:password]@]host[:port][/db]`, or `rediss://` for
    /// TLS), on connections of its own.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use tenure_redis::RedisStore;
    ///
    /// # async fn f() -> Result<(), tenure_core::StoreError> {
    /// let store = RedisStore::builder("rediss://redis.internal:6380/0", "billing-cron")
    ///     .username("tenure")
    ///     .password(std::env::var("REDIS_PASSWORD").unwrap_or_default())
    ///     .prefix("myapp:locks:")
    ///     .request_timeout(Duration::from_secs(2))
    ///     .expire_after_leases(10)
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn builder(url: impl Into<String>, name: impl Into<String>) -> RedisStoreBuilder {
        RedisStoreBuilder::new_store(url.into(), name.into())
    }

    pub(crate) fn from_client(shared: Arc<Shared>, name: String) -> Self {
        let key = lock_key(&shared.prefix, &name);
        let channel = change_channel(&key);
        RedisStore {
            inner: Arc::new(Inner {
                shared,
                name,
                key,
                channel,
                last_value: std::sync::Mutex::new(None),
            }),
        }
    }

    /// The lock's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The Redis key that holds the lock (see [`lock_key`]).
    pub fn key(&self) -> &str {
        &self.inner.key
    }

    /// The pub/sub channel on which changes are published (see [`change_channel`]).
    pub fn channel(&self) -> &str {
        &self.inner.channel
    }

    /// How long one operation may take before it fails with
    /// [`StoreError::Unavailable`].
    pub fn request_timeout(&self) -> Duration {
        self.inner.shared.request_timeout
    }

    /// Checks that the server answers (`PING`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.run("ping", |mut conn| async move {
            redis::cmd("PING").query_async::<String>(&mut conn).await?;
            Ok(())
        })
        .await
    }

    /// Runs one operation on the client's shared connection.
    async fn run<T, F, Fut>(&self, op: &'static str, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        self.inner.shared.run(op, &self.inner.key, f).await
    }

    /// The expiry to set with a write of `record`, in milliseconds (0: none).
    fn expiry_ms(&self, record: &LeaderRecord) -> u64 {
        if self.inner.shared.expire_after_leases == 0 {
            return 0;
        }
        let ms = record
            .lease_duration
            .saturating_mul(self.inner.shared.expire_after_leases)
            .as_millis();
        ms.clamp(1, u64::MAX as u128) as u64
    }

    /// Remembers the stored value `raw` at `version`.
    fn remember(&self, version: &Version, raw: String) {
        *self
            .inner
            .last_value
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some((version.clone(), raw));
    }

    /// Remembers a value a watch showed, unless what is remembered is newer
    /// (a late event must not displace the bytes of our own last write).
    fn remember_seen(&self, version: &Version, raw: &str) {
        let mut last = self
            .inner
            .last_value
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let newer = |held: &Version| match (
            held.as_str().parse::<u64>(),
            version.as_str().parse::<u64>(),
        ) {
            (Ok(held), Ok(seen)) => held > seen,
            _ => false,
        };
        if last.as_ref().is_some_and(|(held, _)| newer(held)) {
            return;
        }
        *last = Some((version.clone(), raw.to_owned()));
    }

    /// Decodes a stored value and remembers it.
    fn decode_and_remember(&self, raw: String) -> Result<Versioned, StoreError> {
        let versioned = envelope::decode(&raw)?;
        self.remember(&versioned.version, raw);
        Ok(versioned)
    }

    /// The exact stored bytes of `expected`: remembered from the last read
    /// or write, else read now (a second round trip, only when this handle
    /// never saw that version). A value that is not at `expected` is the
    /// conflict; one that does not parse is `Corrupt`.
    async fn expected_bytes(&self, expected: &Version) -> Result<String, StoreError> {
        {
            let last = self
                .inner
                .last_value
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if let Some((version, raw)) = last.as_ref()
                && version == expected
            {
                return Ok(raw.clone());
            }
        }
        let Some(raw) = self.get_raw().await? else {
            return Err(StoreError::conflict());
        };
        let current = self.decode_and_remember(raw.clone())?;
        if &current.version != expected {
            return Err(StoreError::Conflict {
                current: Some(Box::new(current)),
            });
        }
        Ok(raw)
    }

    /// The stored bytes, if any.
    async fn get_raw(&self) -> Result<Option<String>, StoreError> {
        let raw: Option<Vec<u8>> = self
            .run("get", |mut conn| async move {
                redis::cmd("GET")
                    .arg(&self.inner.key)
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        raw.map(|bytes| {
            String::from_utf8(bytes).map_err(|_| StoreError::corrupt("the value is not UTF-8 text"))
        })
        .transpose()
    }

    /// Runs the compare-and-swap script.
    async fn cas(
        &self,
        op: &'static str,
        record: &LeaderRecord,
        expected: Option<&Version>,
    ) -> Result<Version, StoreError> {
        let expected_raw = match expected {
            Some(version) => self.expected_bytes(version).await?,
            None => String::new(),
        };
        let json = record::to_json(record);
        let expiry = self.expiry_ms(record);
        let reply: Vec<Vec<u8>> = self
            .run(op, |mut conn| {
                let expected_raw = &expected_raw;
                let json = &json;
                async move {
                    self.inner
                        .shared
                        .script
                        .key(&self.inner.key)
                        .arg(op)
                        .arg(expected_raw)
                        .arg(json)
                        .arg(&self.inner.channel)
                        .arg(expiry)
                        .arg(record.leader_transitions)
                        .invoke_async(&mut conn)
                        .await
                }
            })
            .await?;
        // The stored value comes back as it is, and may not be text.
        let mut reply = reply.into_iter().map(|item| {
            String::from_utf8(item).map_err(|_| StoreError::corrupt("the value is not UTF-8 text"))
        });
        let kind = reply.next().transpose()?;
        match (kind.as_deref(), reply.next().transpose()?) {
            (Some("ok"), Some(version)) => {
                let version = Version::new(version);
                // The script builds the value exactly so.
                let raw = format!(r#"{{"version":{version},"record":{json}}}"#);
                self.remember(&version, raw);
                Ok(version)
            }
            (Some("conflict"), Some(current)) => Err(StoreError::Conflict {
                current: Some(Box::new(self.decode_and_remember(current)?)),
            }),
            (Some("absent"), None) => Err(StoreError::conflict()),
            (Some("corrupt"), Some(reason)) => Err(StoreError::corrupt(reason)),
            (kind, _) => Err(StoreError::other(format!(
                "unexpected reply from the compare-and-swap script: {kind:?}"
            ))),
        }
    }
}

#[async_trait]
impl LockStore for RedisStore {
    async fn get(&self) -> Result<Option<Versioned>, StoreError> {
        match self.get_raw().await? {
            None => Ok(None),
            Some(raw) => self.decode_and_remember(raw).map(Some),
        }
    }

    async fn create(&self, record: &LeaderRecord) -> Result<Version, StoreError> {
        self.cas("create", record, None).await
    }

    async fn update(
        &self,
        record: &LeaderRecord,
        expected: &Version,
    ) -> Result<Version, StoreError> {
        self.cas("update", record, Some(expected)).await
    }

    /// The server's clock in microseconds. Every version the script writes
    /// is at most the server's time when it wrote it (a create starts at
    /// that time, each update adds one and takes at least a microsecond),
    /// and every record's `leaderTransitions` is at most its version (a
    /// create's version is raised to its token), so this floor is at or
    /// above every token this lock ever had, also after the key was
    /// deleted, expired or lost in a restart. It fails only if the
    /// server's clock is set back (or the data moves to a server whose
    /// clock is behind).
    async fn token_floor(&self) -> Result<Option<u64>, StoreError> {
        let (secs, micros): (u64, u64) = self
            .run("time", |mut conn| async move {
                redis::cmd("TIME").query_async(&mut conn).await
            })
            .await?;
        Ok(Some(secs.saturating_mul(1_000_000).saturating_add(micros)))
    }

    async fn watch(&self) -> Result<Option<WatchStream>, StoreError> {
        let deliveries = watch::subscribe(&self.inner.shared, &self.inner.channel).await?;
        // Each value seen is kept with its exact bytes: a swap on the
        // version a watch just showed (a released lock) then needs no read
        // first, one round trip instead of two.
        let store = self.clone();
        Ok(Some(Box::pin(deliveries.map(
            move |delivery| match delivery {
                tenure_core::backend::Fanned::Event(raw) => match envelope::decode(&raw) {
                    Ok(versioned) => {
                        store.remember_seen(&versioned.version, &raw);
                        WatchEvent::Put(versioned)
                    }
                    Err(_) => WatchEvent::Resync,
                },
                tenure_core::backend::Fanned::Resync => WatchEvent::Resync,
            },
        ))))
    }

    fn describe(&self) -> String {
        format!("{} key {}", self.inner.shared.target, self.inner.key)
    }
}
