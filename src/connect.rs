//! Opening a store from one URL.

use std::sync::Arc;

use tenure_core::{LockStore, MemoryStore, StoreError};

/// Why [`connect`] could not open a store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The URL is malformed.
    #[error("invalid lock URL: {0}")]
    InvalidUrl(String),
    /// The scheme is not one tenure knows.
    #[error("unknown scheme {0:?} (expected memory, redis, rediss, etcd, etcds or k8s)")]
    UnknownScheme(String),
    /// The scheme is known but its backend was not compiled in.
    #[error("the {scheme} backend is not enabled: build with the `{feature}` feature")]
    FeatureDisabled {
        /// The URL's scheme.
        scheme: String,
        /// The cargo feature that enables it.
        feature: &'static str,
    },
    /// The store refused or could not be reached.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A lock URL split into its parts. Secrets stay inside; `Debug` hides them.
#[derive(Clone, PartialEq, Eq)]
pub struct LockUrl {
    /// `memory`, `redis`, `rediss`, `etcd`, `etcds` or `k8s`.
    pub scheme: String,
    /// `user:password` before the `@`, if any.
    pub userinfo: Option<String>,
    /// The hosts (`host:port`, comma-separated in the URL).
    pub hosts: Vec<String>,
    /// The path without its leading `/`.
    pub path: String,
    /// `key=value` pairs of the query.
    pub query: Vec<(String, String)>,
}

impl std::fmt::Debug for LockUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockUrl")
            .field("scheme", &self.scheme)
            .field(
                "userinfo",
                &self
                    .userinfo
                    .as_ref()
                    .map(|_| tenure_core::backend::REDACTED),
            )
            .field("hosts", &self.hosts)
            .field("path", &self.path)
            .field("query", &self.query)
            .finish()
    }
}

impl LockUrl {
    /// Parses `scheme://[userinfo@]host[:port][,host[:port]...]/path[?k=v&...]`.
    ///
    /// ```
    /// let url = tenure::LockUrl::parse("etcd://a:2379,b:2379/my-lock").unwrap();
    /// assert_eq!(url.hosts, ["a:2379", "b:2379"]);
    /// assert_eq!(url.path, "my-lock");
    /// ```
    pub fn parse(url: &str) -> Result<LockUrl, ConnectError> {
        let bad = |why: &str| ConnectError::InvalidUrl(format!("{why} (in {})", redact(url)));
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad("expected scheme://..."))?;
        if scheme.is_empty()
            || !scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '+')
        {
            return Err(bad("bad scheme"));
        }
        // Userinfo ends at the *last* `@`: passwords may hold `/`, `?` and
        // `@` unencoded, and no part after the hosts may hold an `@`.
        let (userinfo, rest) = match rest.rsplit_once('@') {
            Some((u, r)) => (Some(u.to_owned()), r),
            None => (None, rest),
        };
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, q),
            None => (rest, ""),
        };
        let (hosts, path) = match rest.split_once('/') {
            Some((a, p)) => (a, p),
            None => (rest, ""),
        };
        let hosts: Vec<String> = hosts
            .split(',')
            .filter(|h| !h.is_empty())
            .map(str::to_owned)
            .collect();
        let mut pairs = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            pairs.push((k.to_owned(), v.to_owned()));
        }
        Ok(LockUrl {
            scheme: scheme.to_ascii_lowercase(),
            userinfo,
            hosts,
            path: path.trim_end_matches('/').to_owned(),
            query: pairs,
        })
    }

    /// The user name and password of the userinfo, percent-decoded.
    pub fn credentials(&self) -> Option<(String, String)> {
        let info = self.userinfo.as_deref()?;
        let (user, password) = info.split_once(':').unwrap_or((info, ""));
        Some((percent_decode(user), percent_decode(password)))
    }

    /// The value of query parameter `key`.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// The URL with any password replaced by `***`, for messages (the same
/// rule every store uses: [`tenure_core::backend::redact_url`]).
///
/// ```
/// assert_eq!(tenure::redact("redis://app:s3cret@h:1/l"), "redis://app:***@h:1/l");
/// ```
pub fn redact(url: &str) -> String {
    tenure_core::backend::redact_url(url)
}

/// Decodes `%XX` escapes (invalid ones are kept as they are).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Opens the lock a URL names:
///
/// | URL | store |
/// |---|---|
/// | `memory://name` | a [`MemoryStore`] (this process only) |
/// | `redis://[user:pass@]host:port/name[?db=0&prefix=p]`, `rediss://...[&ca=ca.pem]` (TLS) | `RedisStore` (feature `redis`) |
/// | `etcd://[user:pass@]host:port[,host:port]/name[?prefix=p]`, `etcds://...?ca=ca.pem[&cert=c.pem&key=k.pem]` | `EtcdStore` (feature `etcd`) |
/// | `k8s://namespace/name[?kind=lease\|configmap\|multilock][&events=COMPONENT][&coordinated=BINARY[:EMULATION]]` | `LeaseLock` / `ConfigMapLock` / `MultiLock` (feature `k8s`); `events` records client-go's leader election Events, reported by `COMPONENT`; `coordinated` makes a Lease lock a candidate of Kubernetes' coordinated leader election |
///
/// The lock name must be a DNS-1123 subdomain ([`tenure_core::validate_lock_name`]).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tenure::ConnectError> {
/// let store = tenure::connect("memory://my-lock").await?;
/// assert_eq!(store.describe(), "memory://my-lock");
/// # Ok(()) }
/// ```
pub async fn connect(url: &str) -> Result<Arc<dyn LockStore>, ConnectError> {
    let parsed = LockUrl::parse(url)?;
    match parsed.scheme.as_str() {
        "memory" => {
            let name = parsed.hosts.first().map(String::as_str).unwrap_or("");
            Ok(Arc::new(MemoryStore::new(name)?))
        }
        "redis" | "rediss" => connect_redis(&parsed).await,
        "etcd" | "etcds" => connect_etcd(&parsed).await,
        "k8s" => connect_k8s(&parsed).await,
        other => Err(ConnectError::UnknownScheme(other.to_owned())),
    }
}

#[cfg(feature = "redis")]
async fn connect_redis(url: &LockUrl) -> Result<Arc<dyn LockStore>, ConnectError> {
    let lock = lock_name(url)?;
    let host = match url.hosts.as_slice() {
        [one] => one,
        _ => return Err(invalid(url, "a redis URL names exactly one host:port")),
    };
    let db = url.param("db").unwrap_or("0");
    // Credentials go to the builder decoded, never back into a URL: a
    // password may hold `/`, `?`, `@` or `%`, which would break it.
    let server = format!("{}://{host}/{db}", url.scheme);
    let mut builder = tenure_redis::RedisStore::builder(server, lock);
    if let Some((user, password)) = url.credentials() {
        if !user.is_empty() {
            builder = builder.username(user);
        }
        builder = builder.password(password);
    }
    if let Some(prefix) = url.param("prefix") {
        builder = builder.prefix(prefix);
    }
    if let Some(ca) = url.param("ca") {
        let pem = tokio::fs::read(ca)
            .await
            .map_err(|e| invalid(url, &format!("cannot read the CA file {ca:?}: {e}")))?;
        builder = builder.tls_root_cert_pem(pem);
    }
    Ok(Arc::new(builder.build().await?))
}

/// The lock name: the URL's path.
#[allow(dead_code)]
fn lock_name(url: &LockUrl) -> Result<&str, ConnectError> {
    if url.path.is_empty() {
        return Err(invalid(
            url,
            "the path must name the lock, as in scheme://host:port/my-lock",
        ));
    }
    Ok(&url.path)
}

#[allow(dead_code)]
fn invalid(url: &LockUrl, why: &str) -> ConnectError {
    ConnectError::InvalidUrl(format!("{why} ({}://{})", url.scheme, url.hosts.join(",")))
}

#[cfg(not(feature = "redis"))]
async fn connect_redis(url: &LockUrl) -> Result<Arc<dyn LockStore>, ConnectError> {
    Err(ConnectError::FeatureDisabled {
        scheme: url.scheme.clone(),
        feature: "redis",
    })
}

#[cfg(feature = "etcd")]
async fn connect_etcd(url: &LockUrl) -> Result<Arc<dyn LockStore>, ConnectError> {
    let lock = lock_name(url)?;
    if url.hosts.is_empty() {
        return Err(invalid(url, "an etcd URL names at least one host:port"));
    }
    let tls = url.scheme == "etcds";
    let http = if tls { "https" } else { "http" };
    let endpoints: Vec<String> = url.hosts.iter().map(|h| format!("{http}://{h}")).collect();
    let mut builder = tenure_etcd::EtcdStore::builder(endpoints, lock);
    if let Some(prefix) = url.param("prefix") {
        builder = builder.prefix(prefix);
    }
    if let Some((user, password)) = url.credentials() {
        builder = builder.auth(user, password);
    }
    if tls {
        // Read without blocking the runtime's thread (a slow or network file system).
        let read = |key: &'static str| async move {
            match url.param(key) {
                None => Ok(None),
                Some(path) => tokio::fs::read(path)
                    .await
                    .map(Some)
                    .map_err(|e| invalid(url, &format!("cannot read {key} file {path:?}: {e}"))),
            }
        };
        let ca = read("ca")
            .await?
            .ok_or_else(|| invalid(url, "etcds:// needs ?ca=/path/to/ca.pem"))?;
        let mut config = tenure_etcd::EtcdTls::new().ca_pem(ca);
        if let (Some(cert), Some(key)) = (read("cert").await?, read("key").await?) {
            config = config.client_identity_pem(cert, key);
        }
        builder = builder.tls(config);
    }
    Ok(Arc::new(builder.build().await?))
}

#[cfg(not(feature = "etcd"))]
async fn connect_etcd(url: &LockUrl) -> Result<Arc<dyn LockStore>, ConnectError> {
    Err(ConnectError::FeatureDisabled {
        scheme: url.scheme.clone(),
        feature: "etcd",
    })
}

#[cfg(feature = "k8s")]
async fn connect_k8s(url: &LockUrl) -> Result<Arc<dyn LockStore>, ConnectError> {
    use tenure_k8s::{ConfigMapLock, LeaseLock, MultiLock};
    let lock = lock_name(url)?;
    let namespace = match url.hosts.as_slice() {
        [] => None,
        [ns] => Some(ns.clone()),
        _ => return Err(invalid(url, "k8s://namespace/name names one namespace")),
    };
    // `coordinated=BINARY[:EMULATION]`: a candidate of Kubernetes'
    // coordinated leader election (Lease locks only).
    let kind = url.param("kind").unwrap_or("lease");
    let coordinated = match url.param("coordinated") {
        None => None,
        Some(_) if kind != "lease" => {
            return Err(invalid(
                url,
                "coordinated election is for Lease locks (kind=lease)",
            ));
        }
        Some(versions) => {
            let (binary, emulation) = versions.split_once(':').unwrap_or((versions, versions));
            if binary.is_empty() || emulation.is_empty() {
                return Err(invalid(
                    url,
                    "coordinated=BINARY[:EMULATION], as in coordinated=1.37.0:1.36.0",
                ));
            }
            Some((binary, emulation))
        }
    };
    // `$more`: what one lock kind adds to the shared settings.
    macro_rules! build {
        ($lock:ty $(, $more:expr)?) => {{
            let mut builder = <$lock>::builder(lock);
            if let Some(ns) = namespace {
                builder = builder.namespace(ns);
            }
            // `events=COMPONENT`: record client-go's leader election Events.
            if let Some(component) = url.param("events") {
                builder = builder.events(tenure_k8s::EventReporter::new(component));
            }
            $(builder = ($more)(builder);)?
            Arc::new(builder.build().await?) as Arc<dyn LockStore>
        }};
    }
    Ok(match kind {
        "lease" => build!(
            LeaseLock,
            |b: tenure_k8s::LockBuilder<LeaseLock>| match coordinated {
                Some((binary, emulation)) => b.coordinated(binary, emulation),
                None => b,
            }
        ),
        "configmap" => build!(ConfigMapLock),
        "multilock" => build!(MultiLock),
        other => {
            return Err(invalid(
                url,
                &format!("kind={other}: expected lease, configmap or multilock"),
            ));
        }
    })
}

#[cfg(not(feature = "k8s"))]
async fn connect_k8s(url: &LockUrl) -> Result<Arc<dyn LockStore>, ConnectError> {
    Err(ConnectError::FeatureDisabled {
        scheme: url.scheme.clone(),
        feature: "k8s",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_redacts() {
        let u = LockUrl::parse("rediss://app:s3cret@h:6380/my-lock?prefix=x").unwrap();
        assert_eq!(u.scheme, "rediss");
        assert_eq!(u.userinfo.as_deref(), Some("app:s3cret"));
        assert_eq!(u.hosts, ["h:6380"]);
        assert_eq!(u.path, "my-lock");
        assert_eq!(u.param("prefix"), Some("x"));
        assert!(!format!("{u:?}").contains("s3cret"));
        assert_eq!(redact("redis://app:s3cret@h:1/l"), "redis://app:***@h:1/l");
        assert!(matches!(
            LockUrl::parse("no-scheme"),
            Err(ConnectError::InvalidUrl(_))
        ));
        // Unencoded `/`, `?` and `@` in a password stay in the userinfo.
        let u = LockUrl::parse("redis://app:ab/c?d@e==@h:1/lock?db=2").unwrap();
        assert_eq!(u.userinfo.as_deref(), Some("app:ab/c?d@e=="));
        assert_eq!(
            (u.hosts.clone(), u.path.as_str()),
            (vec!["h:1".to_owned()], "lock")
        );
        assert_eq!(u.param("db"), Some("2"));
        assert_eq!(
            redact("redis://app:ab/c?d@e==@h:1/lock"),
            "redis://app:***@h:1/lock"
        );
        let u = LockUrl::parse("etcd://root:p%40ss%2F@h:2379/l").unwrap();
        assert_eq!(u.credentials(), Some(("root".into(), "p@ss/".into())));
    }

    #[tokio::test]
    async fn unknown_scheme_and_bad_names() {
        assert!(matches!(
            connect("ftp://x/y").await,
            Err(ConnectError::UnknownScheme(_))
        ));
        assert!(matches!(
            connect("memory://Bad_Name").await,
            Err(ConnectError::Store(StoreError::InvalidName { .. }))
        ));
    }
}
