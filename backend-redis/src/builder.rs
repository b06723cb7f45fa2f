//! [`RedisStoreBuilder`]: one lock on a client of its own.

use std::fmt;
use std::time::Duration;

use tenure_core::{StoreError, validate_lock_name};

use crate::client::RedisClientBuilder;
use crate::store::RedisStore;

/// Builds a [`RedisStore`] on a [`RedisClient`](crate::RedisClient) of its
/// own; see [`RedisStore::builder`]. For many locks in one process, build
/// one client and open each lock with
/// [`RedisClient::store`](crate::RedisClient::store): they then share its
/// connections.
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
#[derive(Clone)]
pub struct RedisStoreBuilder {
    client: RedisClientBuilder,
    name: String,
}

impl fmt::Debug for RedisStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStoreBuilder")
            .field("name", &self.name)
            .field("client", &self.client)
            .finish()
    }
}

impl RedisStoreBuilder {
    pub(crate) fn new(url: String, name: String) -> Self {
        RedisStoreBuilder {
            client: RedisClientBuilder::new(url),
            name,
        }
    }

    /// The prefix of the lock's key (default `tenure:`): the key is
    /// `{prefix}{{lock}}` (see [`lock_key`](crate::lock_key)).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.client = self.client.prefix(prefix);
        self
    }

    /// The ACL user to log in as (overrides the URL's).
    pub fn username(mut self, username: impl Into<String>) -> Self {
        self.client = self.client.username(username);
        self
    }

    /// The password to log in with (overrides the URL's). It never appears
    /// in `Debug`, [`describe`](tenure_core::LockStore::describe), logs or errors.
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.client = self.client.password(password);
        self
    }

    /// How long one operation (including connecting) may take before it
    /// fails with [`StoreError::Unavailable`] (default 5 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.client = self.client.request_timeout(timeout);
        self
    }

    /// Lets Redis delete the key when nobody has written it for `leases`
    /// times the record's lease duration; `0`, the default, keeps it
    /// forever. See
    /// [`RedisClientBuilder::expire_after_leases`] for the cost (the
    /// fencing token restarts after an expiry).
    pub fn expire_after_leases(mut self, leases: u32) -> Self {
        self.client = self.client.expire_after_leases(leases);
        self
    }

    /// Trusts only these CA certificates (PEM) for `rediss://` connections,
    /// instead of the system's roots (the default).
    pub fn tls_root_cert_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.client = self.client.tls_root_cert_pem(pem);
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
        let client = self.client.build().await?;
        client.store(&self.name)
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
