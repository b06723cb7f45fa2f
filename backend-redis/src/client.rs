//! [`RedisClient`]: one server's connections, shared by every lock opened
//! through it.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisError, Script};
use tenure_core::StoreError;
use tenure_core::backend::{Pem, Redactor, Secret, redact_url};
use tokio::sync::Mutex;
use tracing::Instrument;

use crate::error::{classify, poisons_connection};
use crate::store::{CAS_SCRIPT, RedisStore};
use crate::watch::Hub;

/// The key prefix used unless [`RedisClientBuilder::prefix`] says otherwise.
pub const DEFAULT_PREFIX: &str = "tenure:";

/// The per-operation timeout used unless
/// [`RedisClientBuilder::request_timeout`] says otherwise.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A client of one Redis server, shared by many locks: every
/// [`RedisStore`] opened with [`store`](Self::store) sends its commands on
/// the client's one connection and receives its watch events on the
/// client's one pub/sub connection, so a process holding 10,000 locks keeps
/// two connections, not 20,000.
///
/// Clones share the connections. [`RedisStore::builder`] builds a client of
/// its own for one lock.
///
/// ```no_run
/// use tenure_core::LeaderElector;
/// use tenure_redis::RedisClient;
///
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// let redis = RedisClient::builder("redis://127.0.0.1:6379/0").build().await?;
/// let mut tasks = Vec::new();
/// for shard in 0..64 {
///     let store = redis.store(&format!("shard-{shard}"))?;
///     let elector = LeaderElector::builder(store, "replica-1").build()?;
///     tasks.push(elector.spawn(|leadership| async move { leadership.cancelled().await }));
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisClient {
    pub(crate) shared: Arc<Shared>,
}

/// What every lock of a client shares.
pub(crate) struct Shared {
    pub(crate) client: redis::Client,
    pub(crate) target: String,
    pub(crate) prefix: String,
    pub(crate) request_timeout: Duration,
    pub(crate) expire_after_leases: u32,
    pub(crate) redactor: Redactor,
    pub(crate) script: Script,
    pub(crate) hub: Hub,
    conn: Mutex<Option<Slot>>,
    /// The generation of a connection on which a request was abandoned
    /// (its caller gave up before the reply): never used again (0: none).
    abandoned: AtomicU64,
}

/// The connection in use, with a number so that a failed one is dropped
/// only once (and not a newer one by mistake).
struct Slot {
    generation: u64,
    manager: ConnectionManager,
}

impl fmt::Debug for RedisClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisClient")
            .field("target", &self.shared.target)
            .field("prefix", &self.shared.prefix)
            .field("request_timeout", &self.shared.request_timeout)
            .field("expire_after_leases", &self.shared.expire_after_leases)
            .finish_non_exhaustive()
    }
}

impl RedisClient {
    /// Starts a builder for a client of the server at `url`
    /// (`redis://[user[:password]@]host[:port][/db]`, or `rediss://` for TLS).
    pub fn builder(url: impl Into<String>) -> RedisClientBuilder {
        RedisClientBuilder::new(url.into())
    }

    /// The lock `name` on this client's server and connections. Makes no
    /// round trip.
    ///
    /// Errors: [`StoreError::InvalidName`] for a bad lock name.
    pub fn store(&self, name: &str) -> Result<RedisStore, StoreError> {
        tenure_core::validate_lock_name(name)?;
        Ok(RedisStore::from_client(
            self.shared.clone(),
            name.to_owned(),
        ))
    }

    /// How long one operation may take before it fails with
    /// [`StoreError::Unavailable`].
    pub fn request_timeout(&self) -> Duration {
        self.shared.request_timeout
    }

    /// Checks that the server answers (`PING`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.shared
            .run("ping", "", |mut conn| async move {
                redis::cmd("PING").query_async::<String>(&mut conn).await?;
                Ok(())
            })
            .await
    }
}

impl Shared {
    /// The connection to use, opening one when there is none.
    async fn connection(&self) -> Result<(u64, ConnectionManager), RedisError> {
        let mut slot = self.conn.lock().await;
        let abandoned = self.abandoned.load(Ordering::SeqCst);
        if let Some(s) = slot.as_ref().filter(|s| s.generation != abandoned) {
            return Ok((s.generation, s.manager.clone()));
        }
        let generation = NEXT_GENERATION.fetch_add(1, Ordering::Relaxed);
        let t = self.request_timeout;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(t)
            .set_response_timeout(t)
            .set_number_of_retries(1)
            .set_factor(100)
            .set_max_delay(1000);
        tracing::debug!(target = %self.target, generation, "connecting to redis");
        let manager = ConnectionManager::new_with_config(self.client.clone(), config).await?;
        *slot = Some(Slot {
            generation,
            manager: manager.clone(),
        });
        Ok((generation, manager))
    }

    /// Drops the connection `generation` (or whatever is current, for
    /// `None`), so that the next operation opens a fresh one.
    async fn discard(&self, generation: Option<u64>) {
        let mut slot = self.conn.lock().await;
        let Some(current) = slot.as_ref().map(|s| s.generation) else {
            return;
        };
        if generation.unwrap_or(current) == current {
            tracing::debug!(target = %self.target, generation = current, "dropping redis connection");
            *slot = None;
        }
    }

    /// Runs one operation (on `key`, for the log) on the shared connection
    /// within the operation timeout, mapping errors and replacing a
    /// connection that cannot be trusted.
    pub(crate) async fn run<T, F, Fut>(
        &self,
        op: &'static str,
        key: &str,
        f: F,
    ) -> Result<T, StoreError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let span = tracing::debug_span!("redis", op, key);
        // If our caller gives up mid-request (the elector's own deadline is
        // often shorter than `request_timeout`), the request may still be
        // queued or lost on the connection: a silently dead connection
        // would then hang every later request too. Never use it again.
        let guard = AbandonGuard {
            shared: self,
            generation: AtomicU64::new(0),
        };
        let attempt = async {
            let (generation, conn) = self.connection().await.map_err(|e| (None, e))?;
            guard.generation.store(generation, Ordering::SeqCst);
            let result = f(conn).await.map_err(|e| (Some(generation), e));
            guard.generation.store(0, Ordering::SeqCst);
            result
        };
        match tokio::time::timeout(self.request_timeout, attempt)
            .instrument(span)
            .await
        {
            Ok(Ok(value)) => Ok(value),
            Ok(Err((generation, e))) => {
                if poisons_connection(&e) {
                    self.discard(generation).await;
                }
                let err = classify(e, &self.redactor);
                tracing::debug!(op, key, error = %tenure_core::ErrorChain(&err), "redis operation failed");
                Err(err)
            }
            Err(_) => {
                // A request may still be queued on the connection: its late
                // reply must never be taken for the reply of a later request.
                self.discard(None).await;
                tracing::debug!(op, key, "redis operation timed out");
                Err(tenure_core::backend::timed_out(
                    format_args!("redis {op}"),
                    self.request_timeout,
                ))
            }
        }
    }
}

static NEXT_GENERATION: AtomicU64 = AtomicU64::new(1);

/// Marks the connection of a request still in flight as abandoned when the
/// operation is dropped before its reply.
struct AbandonGuard<'a> {
    shared: &'a Shared,
    /// The connection's generation while a request is in flight (0: none).
    generation: AtomicU64,
}

impl Drop for AbandonGuard<'_> {
    fn drop(&mut self) {
        let generation = self.generation.load(Ordering::SeqCst);
        if generation != 0 {
            self.shared.abandoned.store(generation, Ordering::SeqCst);
        }
    }
}

/// Builds a [`RedisClient`] ([`RedisClient::builder`], as
/// [`RedisClientBuilder`]) or one [`RedisStore`] on a client of its own
/// ([`RedisStore::builder`], as [`RedisStoreBuilder`]): one set of
/// settings, so the two cannot drift apart.
///
/// What [`build`](RedisBuilder::build) checks, as every tenure store's
/// builder does (see `tenure_core::backend`): the settings and the lock
/// name, without the network; then, Redis being a server that
/// authenticates on connect, it connects and `PING`s, so a wrong password
/// or an unreachable server fails here.
///
/// ```no_run
/// use std::time::Duration;
/// use tenure_redis::RedisClient;
///
/// # async fn f() -> Result<(), tenure_core::StoreError> {
/// let redis = RedisClient::builder("rediss://redis.internal:6380/0")
///     .username("tenure")
///     .password(std::env::var("REDIS_PASSWORD").unwrap_or_default())
///     .prefix("myapp:locks:")
///     .request_timeout(Duration::from_secs(2))
///     .expire_after_leases(10)
///     .build()
///     .await?;
/// let billing = redis.store("billing-cron")?;
/// # Ok(()) }
/// ```
#[must_use = "a builder does nothing until built"]
pub struct RedisBuilder<Target = RedisClient> {
    settings: RedisSettings,
    target: PhantomData<fn() -> Target>,
}

/// What a [`RedisBuilder`] holds, whatever it builds.
#[derive(Clone, Debug)]
struct RedisSettings {
    url: Url,
    /// The lock's name, when building a [`RedisStore`].
    name: Option<String>,
    prefix: String,
    username: Option<String>,
    password: Option<Secret>,
    request_timeout: Duration,
    expire_after_leases: u32,
    root_cert_pem: Option<Pem>,
}

/// Builds a [`RedisClient`], shared by many locks.
pub type RedisClientBuilder = RedisBuilder<RedisClient>;

/// Builds one [`RedisStore`] on a client of its own; for many locks in one
/// process, build one client and open each lock with
/// [`RedisClient::store`]: they then share its connections.
pub type RedisStoreBuilder = RedisBuilder<RedisStore>;

impl<T> Clone for RedisBuilder<T> {
    fn clone(&self) -> Self {
        Self::with(self.settings.clone())
    }
}

impl<T> fmt::Debug for RedisBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The settings' derived Debug: the passwords are redacted.
        f.debug_tuple("RedisBuilder").field(&self.settings).finish()
    }
}

/// A Redis URL, which may hold a password: `Debug` shows it redacted.
#[derive(Clone)]
struct Url(String);

impl fmt::Debug for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(&self.0))
    }
}

impl RedisClientBuilder {
    pub(crate) fn new(url: String) -> Self {
        Self::with(RedisSettings {
            url: Url(url),
            name: None,
            prefix: DEFAULT_PREFIX.to_owned(),
            username: None,
            password: None,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            expire_after_leases: 0,
            root_cert_pem: None,
        })
    }

    /// Checks the settings, connects and checks that the server answers.
    ///
    /// Errors: [`StoreError::Unauthorized`] for refused credentials,
    /// [`StoreError::Unavailable`] when the server cannot be reached within
    /// the operation timeout, [`StoreError::InvalidConfig`] for a bad URL or
    /// TLS setting.
    pub async fn build(self) -> Result<RedisClient, StoreError> {
        let client = self.build_unconnected()?;
        client.ping().await?;
        tracing::debug!(client = ?client, "connected to redis");
        Ok(client)
    }
}

impl RedisStoreBuilder {
    pub(crate) fn new_store(url: String, name: String) -> Self {
        let mut builder = RedisClientBuilder::new(url).retarget();
        builder.settings.name = Some(name);
        builder
    }

    /// Validates the lock name, then builds its client as
    /// [`RedisClientBuilder::build`] does (connects and `PING`s).
    ///
    /// Errors: [`StoreError::InvalidName`] for a bad lock name, then those
    /// of [`RedisClientBuilder::build`].
    pub async fn build(mut self) -> Result<RedisStore, StoreError> {
        let name = self.settings.name.take().unwrap_or_default();
        tenure_core::validate_lock_name(&name)?;
        self.retarget::<RedisClient>().build().await?.store(&name)
    }
}

impl<T> RedisBuilder<T> {
    fn with(settings: RedisSettings) -> Self {
        RedisBuilder {
            settings,
            target: PhantomData,
        }
    }

    /// The same settings, building something else.
    fn retarget<U>(self) -> RedisBuilder<U> {
        RedisBuilder::with(self.settings)
    }

    /// The prefix of every lock's key (default `tenure:`): the key is
    /// `{prefix}{{lock}}` (see [`lock_key`](crate::lock_key)).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.settings.prefix = prefix.into();
        self
    }

    /// The ACL user to log in as (overrides the URL's).
    pub fn username(mut self, username: impl Into<String>) -> Self {
        self.settings.username = Some(username.into());
        self
    }

    /// The password to log in with (overrides the URL's). It never appears
    /// in `Debug`, [`describe`](tenure_core::LockStore::describe), logs or errors.
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.settings.password = Some(Secret::new(password));
        self
    }

    /// How long one operation (including connecting) may take before it
    /// fails with [`StoreError::Unavailable`] (default 5 s), so a server
    /// that stopped answering cannot hang a call.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.settings.request_timeout = timeout;
        self
    }

    /// Lets Redis delete a lock's key when nobody has written it for
    /// `leases` times the written record's lease duration (`PEXPIRE`,
    /// renewed by every write); `0`, the default, keeps keys forever.
    ///
    /// An abandoned lock then cleans itself up. The cost: once the key has
    /// expired, the next holder starts from a new record, so
    /// `leader_transitions` (the fencing token) starts again from zero.
    /// Use a multiple large enough that a live candidate always writes
    /// before then (10 is a good value), and do not use expiry when
    /// fencing tokens must rise forever.
    pub fn expire_after_leases(mut self, leases: u32) -> Self {
        self.settings.expire_after_leases = leases;
        self
    }

    /// Trusts only these CA certificates (PEM) for `rediss://` connections,
    /// instead of the system's roots (the default).
    pub fn tls_root_cert_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.settings.root_cert_pem = Some(Pem(pem.into()));
        self
    }

    /// Everything a client's `build` does but the round trip.
    pub(crate) fn build_unconnected(self) -> Result<RedisClient, StoreError> {
        let settings = self.settings;
        if settings.request_timeout.is_zero() {
            return Err(StoreError::invalid_config(
                "request_timeout must be above zero",
            ));
        }
        let mut redactor = Redactor::default();
        if let Ok(url) = url::Url::parse(&settings.url.0)
            && let Some(p) = url.password()
        {
            redactor.add(p);
            if let Ok(decoded) = percent_encoding::percent_decode_str(p).decode_utf8() {
                redactor.add(&decoded);
            }
        }
        if let Some(p) = &settings.password {
            redactor.add(p.expose());
        }
        let mut info: ConnectionInfo =
            settings
                .url
                .0
                .as_str()
                .into_connection_info()
                .map_err(|e| {
                    StoreError::invalid_config(redactor.scrub(format!("invalid Redis URL: {e}")))
                })?;
        if let Some(p) = &info.redis.password {
            redactor.add(p);
        }
        if let Some(user) = settings.username {
            info.redis.username = Some(user);
        }
        if let Some(password) = settings.password {
            info.redis.password = Some(password.expose().to_owned());
        }
        let target = describe_target(&info);
        let client = match settings.root_cert_pem {
            None => redis::Client::open(info),
            Some(root_cert) => {
                if !matches!(info.addr, ConnectionAddr::TcpTls { .. }) {
                    return Err(StoreError::invalid_config(
                        "a TLS root certificate was given for a URL without TLS (use rediss://)",
                    ));
                }
                redis::Client::build_with_tls(
                    info,
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(root_cert.0),
                    },
                )
            }
        }
        .map_err(|e| {
            StoreError::invalid_config(redactor.scrub(format!("invalid Redis settings: {e}")))
        })?;
        Ok(RedisClient {
            shared: Arc::new(Shared {
                client,
                target,
                prefix: settings.prefix,
                request_timeout: settings.request_timeout,
                expire_after_leases: settings.expire_after_leases,
                redactor,
                script: Script::new(CAS_SCRIPT),
                hub: Hub::default(),
                conn: Mutex::new(None),
                abandoned: AtomicU64::new(0),
            }),
        })
    }
}

/// `redis://user@host:port/db` without the password.
fn describe_target(info: &ConnectionInfo) -> String {
    let user = info
        .redis
        .username
        .as_deref()
        .map(|u| format!("{u}@"))
        .unwrap_or_default();
    let db = info.redis.db;
    match &info.addr {
        ConnectionAddr::Tcp(host, port) => format!("redis://{user}{host}:{port}/{db}"),
        ConnectionAddr::TcpTls { host, port, .. } => format!("rediss://{user}{host}:{port}/{db}"),
        ConnectionAddr::Unix(path) => format!("redis+unix://{user}{}?db={db}", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_passwords() {
        let url = "redis://u:hunter2@h:1/0";
        for shown in [
            format!("{:?}", RedisClient::builder(url).password("s3cret-pw")),
            format!("{:?}", RedisStore::builder(url, "l").password("s3cret-pw")),
        ] {
            assert!(
                !shown.contains("hunter2") && !shown.contains("s3cret-pw"),
                "{shown}"
            );
            assert!(shown.contains("redis://u:***@h:1/0"), "{shown}");
        }
    }

    #[tokio::test]
    async fn a_client_opens_stores_without_a_round_trip_and_checks_their_names() {
        // Nothing listens on port 1: opening locks must not need it.
        let client = RedisClient::builder("redis://127.0.0.1:1")
            .build_unconnected()
            .unwrap();
        let a = client.store("a").unwrap();
        let b = client.store("b").unwrap();
        assert!(Arc::ptr_eq(&a.inner.shared, &b.inner.shared));
        assert!(matches!(
            client.store("Bad Name"),
            Err(StoreError::InvalidName { .. })
        ));
    }

    #[tokio::test]
    async fn invalid_names_and_urls_fail_before_connecting() {
        let bad = RedisStore::builder("redis://127.0.0.1:1", "Bad Name")
            .build()
            .await;
        assert!(
            matches!(bad, Err(StoreError::InvalidName { .. })),
            "{bad:?}"
        );
        let bad = RedisStore::builder("http://u:hunter2@x", "ok")
            .build()
            .await;
        match bad {
            Err(StoreError::InvalidConfig { message: m, .. }) => {
                assert!(!m.contains("hunter2"), "{m}")
            }
            other => panic!("{other:?}"),
        }
    }
}
