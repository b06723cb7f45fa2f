//! [`RedisStoreBuilder`]: configuration of a [`RedisStore`].

use std::fmt;
use std::time::Duration;

use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo};
use tenure_core::{StoreError, validate_lock_name};

use crate::store::{RedisStore, lock_key};
use tenure_core::backend::{REDACTED, Redactor, redact_url};

/// The key prefix used unless [`RedisStoreBuilder::prefix`] says otherwise.
pub const DEFAULT_PREFIX: &str = "tenure:";

/// The per-operation timeout used unless [`RedisStoreBuilder::request_timeout`]
/// says otherwise.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Builds a [`RedisStore`]; see [`RedisStore::builder`].
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
pub struct RedisStoreBuilder {
    url: String,
    name: String,
    prefix: String,
    username: Option<String>,
    password: Option<String>,
    request_timeout: Duration,
    expire_after_leases: u32,
    root_cert_pem: Option<Vec<u8>>,
}

impl fmt::Debug for RedisStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStoreBuilder")
            .field("url", &redact_url(&self.url))
            .field("name", &self.name)
            .field("prefix", &self.prefix)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| REDACTED))
            .field("request_timeout", &self.request_timeout)
            .field("expire_after_leases", &self.expire_after_leases)
            .field("root_cert_pem", &self.root_cert_pem.is_some())
            .finish()
    }
}

impl RedisStoreBuilder {
    pub(crate) fn new(url: String, name: String) -> Self {
        RedisStoreBuilder {
            url,
            name,
            prefix: DEFAULT_PREFIX.to_owned(),
            username: None,
            password: None,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            expire_after_leases: 0,
            root_cert_pem: None,
        }
    }

    /// The prefix of the lock's key (default `tenure:`): the key is
    /// `{prefix}{{lock}}` (see [`lock_key`]).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The ACL user to log in as (overrides the URL's).
    pub fn username(mut self, username: impl Into<String>) -> Self {
        self.username = Some(username.into());
        self
    }

    /// The password to log in with (overrides the URL's). It never appears
    /// in `Debug`, [`describe`](tenure_core::LockStore::describe), logs or errors.
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// How long one operation (including connecting) may take before it
    /// fails with [`StoreError::Unavailable`] (default 5 s), so a server
    /// that stopped answering cannot hang a call.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Lets Redis delete the key when nobody has written it for `leases`
    /// times the written record's lease duration (`PEXPIRE`, renewed by
    /// every write); `0`, the default, keeps the key forever.
    ///
    /// An abandoned lock then cleans itself up. The cost: once the key has
    /// expired, the next holder starts from a new record, so
    /// `leader_transitions` (the fencing token) starts again from zero.
    /// Use a multiple large enough that a live candidate always writes
    /// before then (10 is a good value), and do not use expiry when
    /// fencing tokens must rise forever.
    pub fn expire_after_leases(mut self, leases: u32) -> Self {
        self.expire_after_leases = leases;
        self
    }

    /// Trusts only these CA certificates (PEM) for `rediss://` connections,
    /// instead of the system's roots (the default).
    pub fn tls_root_cert_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.root_cert_pem = Some(pem.into());
        self
    }

    /// Validates the lock name, connects and checks that the server answers.
    ///
    /// Errors: [`StoreError::InvalidName`] for a bad lock name,
    /// [`StoreError::Unauthorized`] for refused credentials,
    /// [`StoreError::Unavailable`] when the server cannot be reached within
    /// the operation timeout, [`StoreError::InvalidConfig`] for a bad URL or TLS
    /// setting.
    pub async fn build(self) -> Result<RedisStore, StoreError> {
        validate_lock_name(&self.name)?;
        if self.request_timeout.is_zero() {
            return Err(StoreError::invalid_config(
                "request_timeout must be above zero",
            ));
        }
        let mut redactor = Redactor::default();
        if let Ok(url) = url::Url::parse(&self.url)
            && let Some(p) = url.password()
        {
            redactor.add(p);
            if let Ok(decoded) = percent_encoding::percent_decode_str(p).decode_utf8() {
                redactor.add(&decoded);
            }
        }
        if let Some(p) = &self.password {
            redactor.add(p);
        }
        let mut info: ConnectionInfo = self.url.as_str().into_connection_info().map_err(|e| {
            StoreError::invalid_config(redactor.scrub(format!("invalid Redis URL: {e}")))
        })?;
        if let Some(p) = &info.redis.password {
            redactor.add(p);
        }
        if let Some(user) = self.username {
            info.redis.username = Some(user);
        }
        if let Some(password) = self.password {
            info.redis.password = Some(password);
        }
        let target = describe_target(&info);
        let client = match self.root_cert_pem {
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
                        root_cert: Some(root_cert),
                    },
                )
            }
        }
        .map_err(|e| {
            StoreError::invalid_config(redactor.scrub(format!("invalid Redis settings: {e}")))
        })?;
        let key = lock_key(&self.prefix, &self.name);
        let store = RedisStore::from_parts(
            client,
            self.name,
            key,
            target,
            self.request_timeout,
            self.expire_after_leases,
            redactor,
        );
        store.ping().await?;
        tracing::debug!(store = ?store, "connected to redis");
        Ok(store)
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
        let b = RedisStore::builder("redis://u:hunter2@h:1/0", "l").password("s3cret-pw");
        let shown = format!("{b:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("s3cret-pw"),
            "{shown}"
        );
        assert!(shown.contains("redis://u:***@h:1/0"), "{shown}");
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
