//! Building a lock: which client, namespace, timeout and owners.

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Client;
use tenure_core::{StoreError, validate_lock_name};

use crate::SharedWatch;

/// The default renew deadline the request timeout is derived from, as
/// [`ElectionConfig`](tenure_core::ElectionConfig)'s default.
pub const DEFAULT_RENEW_DEADLINE: Duration = Duration::from_secs(10);

/// The shortest request timeout derived from a renew deadline.
pub const MIN_REQUEST_TIMEOUT: Duration = Duration::from_secs(1);

/// Builds a [`LeaseLock`](crate::LeaseLock),
/// [`ConfigMapLock`](crate::ConfigMapLock) or
/// [`MultiLock`](crate::MultiLock); see their `builder` functions.
///
/// Each request to the API server gets a timeout of
/// `max(1 s, renew_deadline / 2)` (with the default renew deadline of 10 s:
/// 5 s), so that a hung API server costs a leader at most half its renew
/// deadline per attempt; [`request_timeout`](Self::request_timeout) sets it
/// directly.
#[must_use = "a builder does nothing until built"]
pub struct LockBuilder<L> {
    name: String,
    namespace: Option<String>,
    client: Option<Client>,
    renew_deadline: Duration,
    request_timeout: Option<Duration>,
    owners: Vec<OwnerReference>,
    shared_watch: Option<SharedWatch>,
    lock: PhantomData<fn() -> L>,
}

impl<L> fmt::Debug for LockBuilder<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockBuilder")
            .field("lock", &std::any::type_name::<L>())
            .field("name", &self.name)
            .field("namespace", &self.namespace)
            .field("client", &self.client.as_ref().map(|_| "given"))
            .field("request_timeout", &self.effective_request_timeout())
            .field("owners", &self.owners.len())
            .field("shared_watch", &self.shared_watch.is_some())
            .finish()
    }
}

/// What a built lock is made of.
pub(crate) struct Parts {
    pub(crate) client: Client,
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) timeout: Duration,
    pub(crate) owners: Vec<OwnerReference>,
    pub(crate) shared_watch: Option<SharedWatch>,
}

impl<L> LockBuilder<L> {
    pub(crate) fn new(name: &str) -> Self {
        LockBuilder {
            name: name.to_owned(),
            namespace: None,
            client: None,
            renew_deadline: DEFAULT_RENEW_DEADLINE,
            request_timeout: None,
            owners: Vec::new(),
            shared_watch: None,
            lock: PhantomData,
        }
    }

    /// The namespace of the lock object (default: the client's default
    /// namespace — the pod's own in a cluster, else the kubeconfig's).
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// The client to use (default: [`client_for`](crate::client_for) the
    /// configuration `kube::Client::try_default()` would use, from the
    /// in-cluster service account or `KUBECONFIG`).
    pub fn client(mut self, client: Client) -> Self {
        self.client = Some(client);
        self
    }

    /// The elector's renew deadline: each request times out after
    /// `max(1 s, renew_deadline / 2)` unless
    /// [`request_timeout`](Self::request_timeout) is set.
    pub fn renew_deadline(mut self, renew_deadline: Duration) -> Self {
        self.renew_deadline = renew_deadline;
        self
    }

    /// The timeout of each request (a timed-out request is
    /// [`StoreError::Unavailable`]).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = Some(timeout);
        self
    }

    /// Adds an owner reference to the object when the lock creates it (say,
    /// the Deployment, so the lock is garbage-collected with it).
    pub fn owner_reference(mut self, owner: OwnerReference) -> Self {
        self.owners.push(owner);
        self
    }

    /// Watches the lock's object through `watches`, one watch of the
    /// namespace shared by every lock built with it, instead of a watch
    /// request of its own. kube's client speaks HTTP/1.1, so each watch
    /// request holds a connection: with many locks in one process, share
    /// the watch and the connections stay flat. See [`SharedWatch`].
    pub fn shared_watch(mut self, watches: &SharedWatch) -> Self {
        self.shared_watch = Some(watches.clone());
        self
    }

    /// The request timeout the built lock will use.
    pub fn effective_request_timeout(&self) -> Duration {
        self.request_timeout
            .unwrap_or_else(|| (self.renew_deadline / 2).max(MIN_REQUEST_TIMEOUT))
    }

    /// Validates the name and resolves the client and namespace.
    pub(crate) async fn parts(self) -> Result<Parts, StoreError> {
        validate_lock_name(&self.name)?;
        let timeout = self.effective_request_timeout();
        if timeout.is_zero() {
            return Err(StoreError::invalid_config(
                "the request timeout must be above zero",
            ));
        }
        let client = match self.client {
            Some(client) => client,
            None => crate::client::infer().await?,
        };
        let namespace = self
            .namespace
            .unwrap_or_else(|| client.default_namespace().to_owned());
        validate_lock_name(&namespace)?;
        Ok(Parts {
            client,
            namespace,
            name: self.name,
            timeout,
            owners: self.owners,
            shared_watch: self.shared_watch,
        })
    }
}
