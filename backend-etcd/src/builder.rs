//! Configuring and connecting an [`EtcdClient`] (and an [`EtcdStore`] on a
//! client of its own).

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
use tenure_core::backend::{self, Pem, REDACTED, Secret};
use tenure_core::{StoreError, validate_lock_name};

use crate::client::EtcdClient;
use crate::error::map_error;
use crate::store::EtcdStore;

/// The key prefix locks live under unless [`EtcdClientBuilder::prefix`] says otherwise.
pub const DEFAULT_PREFIX: &str = "/tenure/locks/";

/// How long one etcd call may take unless [`EtcdClientBuilder::request_timeout`]
/// says otherwise.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// How often an idle HTTP/2 connection with an open stream (a watch) is
/// pinged. etcd refuses pings more frequent than every 5 s by default
/// (`--grpc-keepalive-min-time`).
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);

/// TLS settings for talking to etcd (rustls): the CA that signed the
/// servers' certificates and, for mTLS, the client's certificate and key.
///
/// `Debug` never shows the private key.
///
/// ```
/// use tenure_etcd::EtcdTls;
/// # let (ca, cert, key) = (b"".to_vec(), b"".to_vec(), b"".to_vec());
/// let tls = EtcdTls::new().ca_pem(ca).client_identity_pem(cert, key);
/// assert!(!format!("{tls:?}").contains("PRIVATE"));
/// ```
#[derive(Clone, Default, Debug)]
pub struct EtcdTls {
    ca_pem: Option<Pem>,
    /// The certificate and its private key.
    identity: Option<(Pem, PrivateKey)>,
    domain: Option<String>,
}

impl EtcdTls {
    /// TLS with no CA and no client certificate yet. etcd clusters use their
    /// own CA, so give it with [`EtcdTls::ca_pem`]: no system roots are loaded.
    pub fn new() -> Self {
        Self::default()
    }

    /// Trusts the CA certificate(s) in `pem` for the servers' certificates.
    pub fn ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca_pem = Some(Pem(pem.into()));
        self
    }

    /// Presents this client certificate and private key (both PEM): mTLS.
    pub fn client_identity_pem(
        mut self,
        cert_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> Self {
        self.identity = Some((Pem(cert_pem.into()), PrivateKey(key_pem.into())));
        self
    }

    /// Checks the servers' certificates against this name instead of the
    /// endpoint's host.
    pub fn domain_name(mut self, name: impl Into<String>) -> Self {
        self.domain = Some(name.into());
        self
    }

    fn to_options(&self) -> TlsOptions {
        let mut tls = TlsOptions::new();
        if let Some(ca) = &self.ca_pem {
            tls = tls.ca_certificate(Certificate::from_pem(&ca.0));
        }
        if let Some((cert, key)) = &self.identity {
            tls = tls.identity(Identity::from_pem(&cert.0, &key.0));
        }
        if let Some(domain) = &self.domain {
            tls = tls.domain_name(domain.clone());
        }
        tls
    }
}

/// A client's private key (PEM): `Debug` never shows it.
#[derive(Clone)]
struct PrivateKey(Vec<u8>);

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// Builds an [`EtcdClient`] ([`EtcdClient::builder`], as
/// [`EtcdClientBuilder`]) or one [`EtcdStore`] on a client of its own
/// ([`EtcdStore::builder`], as [`EtcdStoreBuilder`]): one set of settings,
/// so the two cannot drift apart.
///
/// What [`build`](EtcdBuilder::build) checks, as every tenure store's
/// builder does (see `tenure_core::backend`): the settings and the lock
/// name, without the network; then, only when a user is given, it
/// authenticates, so a wrong password fails here. Without one it connects
/// on first use, so a client can be built before etcd is up.
#[must_use = "a builder does nothing until built"]
pub struct EtcdBuilder<Target = EtcdClient> {
    settings: EtcdSettings,
    target: PhantomData<fn() -> Target>,
}

/// What an [`EtcdBuilder`] holds, whatever it builds.
#[derive(Clone, Debug)]
struct EtcdSettings {
    endpoints: Vec<String>,
    /// The lock's name, when building an [`EtcdStore`].
    name: Option<String>,
    prefix: String,
    /// User and password.
    login: Option<(String, Secret)>,
    tls: Option<EtcdTls>,
    request_timeout: Duration,
    max_requests_in_flight: Option<usize>,
}

/// Builds an [`EtcdClient`], shared by many locks.
pub type EtcdClientBuilder = EtcdBuilder<EtcdClient>;

/// Builds one [`EtcdStore`] on a client of its own; for many locks in one
/// process, build one client and open each lock with
/// [`EtcdClient::store`]: they then share its connection.
pub type EtcdStoreBuilder = EtcdBuilder<EtcdStore>;

impl<T> Clone for EtcdBuilder<T> {
    fn clone(&self) -> Self {
        Self::with(self.settings.clone())
    }
}

impl<T> fmt::Debug for EtcdBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The settings' derived Debug: the password is a `Secret`.
        f.debug_tuple("EtcdBuilder").field(&self.settings).finish()
    }
}

impl EtcdStoreBuilder {
    pub(crate) fn new_store(endpoints: Vec<String>, name: String) -> Self {
        let mut builder = EtcdClientBuilder::new(endpoints).retarget();
        builder.settings.name = Some(name);
        builder
    }

    /// Validates the lock name, then builds its client as
    /// [`EtcdClientBuilder::build`] does.
    pub async fn build(mut self) -> Result<EtcdStore, StoreError> {
        let name = self.settings.name.take().unwrap_or_default();
        validate_lock_name(&name)?;
        let store = self.retarget::<EtcdClient>().build().await?.store(&name)?;
        tracing::debug!(lock = %store.inner.describe, "etcd store ready");
        Ok(store)
    }
}

impl<T> EtcdBuilder<T> {
    fn with(settings: EtcdSettings) -> Self {
        EtcdBuilder {
            settings,
            target: PhantomData,
        }
    }

    /// The same settings, building something else.
    fn retarget<U>(self) -> EtcdBuilder<U> {
        EtcdBuilder::with(self.settings)
    }

    /// The key prefix (default [`DEFAULT_PREFIX`]); a lock's key is the
    /// prefix followed by the lock name, so give the separator too
    /// (`/app/locks/`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.settings.prefix = prefix.into();
        self
    }

    /// Logs in as `username` with `password` (etcd's user/password
    /// auth), one setter for both because etcd needs both. The password is
    /// kept out of every `Debug`, description, log and error.
    pub fn auth(mut self, username: impl Into<String>, password: impl Into<String>) -> Self {
        self.settings.login = Some((username.into(), Secret::new(password)));
        self
    }

    /// Talks TLS (mTLS with a client identity). Endpoints are then given as
    /// `https://host:port` or `host:port`.
    pub fn tls(mut self, tls: EtcdTls) -> Self {
        self.settings.tls = Some(tls);
        self
    }

    /// The longest one store call may take (default [`DEFAULT_REQUEST_TIMEOUT`]);
    /// a call that does not answer in time fails with
    /// [`StoreError::Unavailable`], so a hung server cannot hang a caller.
    /// Also bounds connecting and detecting a dead watch connection.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.settings.request_timeout = timeout;
        self
    }

    /// At most `max` calls of the client's stores in flight at once (no
    /// cap unless set); the others wait their turn, in order, and the wait
    /// counts against their request timeout. Watches do not count. 0 is
    /// refused by [`build`](Self::build).
    ///
    /// For thousands of locks on one client that start together: without
    /// a cap they put thousands of calls on the server at once, and those
    /// queued past the request timeout fail and wait a retry period before
    /// their next attempt (10,000 locks: all held after 73 s without a cap,
    /// 5–7 s with 64; see BENCHMARKS.md, many locks). The cap couples the
    /// locks: a member that accepts calls and never answers holds a slot
    /// per call for the whole request timeout, and enough of them stall
    /// every lock of the client; and it bounds how many writes the server
    /// can batch. So it is off by default.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), tenure_core::StoreError> {
    /// use tenure_etcd::EtcdClient;
    /// let client = EtcdClient::builder(["http://127.0.0.1:2379"])
    ///     .max_requests_in_flight(16)
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn max_requests_in_flight(mut self, max: usize) -> Self {
        self.settings.max_requests_in_flight = Some(max);
        self
    }

    /// The old name of [`max_requests_in_flight`](Self::max_requests_in_flight)
    /// (Kubernetes' `SharedWatch` uses that one).
    #[deprecated(note = "use max_requests_in_flight")]
    pub fn max_calls_in_flight(self, max: usize) -> Self {
        self.max_requests_in_flight(max)
    }
}

impl EtcdClientBuilder {
    pub(crate) fn new(endpoints: Vec<String>) -> Self {
        Self::with(EtcdSettings {
            endpoints,
            name: None,
            prefix: DEFAULT_PREFIX.to_owned(),
            login: None,
            tls: None,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_requests_in_flight: None,
        })
    }

    /// Validates the settings and creates the client.
    ///
    /// Without a user this makes no round trip: the connection is made on
    /// first use, so a client can be built before etcd is up. With a user
    /// it authenticates now: a wrong password is
    /// [`StoreError::Unauthorized`], an unreachable cluster
    /// [`StoreError::Unavailable`].
    pub async fn build(self) -> Result<EtcdClient, StoreError> {
        let settings = self.settings;
        if settings.endpoints.is_empty() {
            return Err(StoreError::invalid_config("no etcd endpoint given"));
        }
        if settings.endpoints.iter().any(|e| e.contains('@')) {
            // Never echo the endpoint: it may hold a password.
            return Err(StoreError::invalid_config(
                "credentials in etcd endpoint URLs are not supported; use EtcdClientBuilder::auth",
            ));
        }
        if let Some(bad) = settings
            .endpoints
            .iter()
            .find_map(|e| endpoint_port_problem(e))
        {
            return Err(StoreError::invalid_config(bad));
        }
        if settings.request_timeout.is_zero() {
            return Err(StoreError::invalid_config(
                "request_timeout must be greater than 0",
            ));
        }
        if settings.max_requests_in_flight == Some(0) {
            return Err(StoreError::invalid_config(
                "max_requests_in_flight must be at least 1",
            ));
        }
        let mut options = ConnectOptions::new()
            .with_connect_timeout(settings.request_timeout)
            .with_keep_alive(KEEP_ALIVE_INTERVAL, settings.request_timeout)
            .with_keep_alive_while_idle(false)
            // A member cut off from the quorum fails calls instead of
            // serving a stale view (and cancels watches).
            .with_require_leader(true);
        if let Some((name, password)) = &settings.login {
            options = options
                .with_user(name.clone(), password.expose())
                .with_auto_token_refresh(true);
        }
        if let Some(tls) = &settings.tls {
            options = options.with_tls(tls.to_options());
        }
        let connect = Client::connect(&settings.endpoints, Some(options));
        let client = backend::within(settings.request_timeout, "connecting to etcd", async {
            connect.await.map_err(map_error)
        })
        .await?;
        let client = EtcdClient {
            client,
            endpoints: settings.endpoints.into(),
            username: settings.login.map(|(user, _)| user),
            prefix: settings.prefix,
            request_timeout: settings.request_timeout,
            tls: settings.tls.is_some(),
            slots: settings
                .max_requests_in_flight
                .map(|max| Arc::new(tokio::sync::Semaphore::new(max))),
            max_requests_in_flight: settings.max_requests_in_flight,
        };
        tracing::debug!(client = ?client, "etcd client ready");
        Ok(client)
    }
}

/// `etcd://[user@]host:port,host:port/key`: endpoints without scheme.
pub(crate) fn describe(endpoints: &[String], user: Option<&String>, key: &str) -> String {
    let hosts = endpoints
        .iter()
        .map(|e| e.split_once("://").map_or(e.as_str(), |(_, rest)| rest))
        .map(|e| e.trim_end_matches('/'))
        .collect::<Vec<_>>()
        .join(",");
    let user = user.map(|u| format!("{u}@")).unwrap_or_default();
    let sep = if key.starts_with('/') { "" } else { "/" };
    format!("etcd://{user}{hosts}{sep}{key}")
}

/// Why an endpoint's port is not a TCP port, if it is not: the client
/// would otherwise accept it and fail on every call as "unavailable".
fn endpoint_port_problem(endpoint: &str) -> Option<String> {
    let rest = endpoint.split_once("://").map_or(endpoint, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    // `[::1]:2379`: the port follows the bracket.
    let port = match authority.rsplit_once(']') {
        Some((_, after)) => after.strip_prefix(':')?,
        None => authority.rsplit_once(':')?.1,
    };
    match port.parse::<u16>() {
        Ok(p) if p > 0 => None,
        _ => Some(format!(
            "etcd endpoint {endpoint:?}: port {port:?} is not a TCP port (1-65535)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_lists_hosts_and_key() {
        let eps = vec!["http://a:1".to_owned(), "b:2/".to_owned()];
        assert_eq!(
            describe(&eps, Some(&"root".to_owned()), "/tenure/locks/x"),
            "etcd://root@a:1,b:2/tenure/locks/x"
        );
        assert_eq!(describe(&eps, None, "k"), "etcd://a:1,b:2/k");
    }

    #[test]
    fn debug_hides_password_and_key() {
        let b = EtcdStoreBuilder::new_store(vec!["h:1".into()], "l".into())
            .auth("root", "s3cret-pw")
            .tls(EtcdTls::new().client_identity_pem("CERT", "PRIVATE-KEY-BYTES"));
        let dbg = format!("{b:?}");
        assert!(!dbg.contains("s3cret-pw"), "{dbg}");
        assert!(!dbg.contains("PRIVATE-KEY-BYTES"), "{dbg}");
        assert!(dbg.contains("root"));
    }

    #[tokio::test]
    async fn invalid_settings_are_errors() {
        let bad_name = EtcdStoreBuilder::new_store(vec!["h:1".into()], "Bad Name".into());
        assert!(matches!(
            bad_name.build().await,
            Err(StoreError::InvalidName { .. })
        ));
        let no_eps = EtcdStoreBuilder::new_store(vec![], "ok".into());
        assert!(matches!(
            no_eps.build().await,
            Err(StoreError::InvalidConfig { .. })
        ));
        let creds = EtcdStoreBuilder::new_store(vec!["http://u:pw-in-url@h:1".into()], "ok".into());
        let client = EtcdClient::builder(["http://127.0.0.1:1"])
            .build()
            .await
            .unwrap();
        assert!(matches!(
            client.store("Bad Name"),
            Err(StoreError::InvalidName { .. })
        ));
        let (a, b) = (client.store("a").unwrap(), client.store("b").unwrap());
        assert_eq!((a.key(), b.key()), ("/tenure/locks/a", "/tenure/locks/b"));
        match creds.build().await {
            Err(StoreError::InvalidConfig { message: m, .. }) => assert!(!m.contains("pw-in-url")),
            other => panic!("{other:?}"),
        }
    }
}
