//! Building a lock: which client, namespace, timeout and owners.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Client;
use tenure_core::{StoreError, validate_lock_name};

use crate::SharedWatch;
use crate::coordination::Coordination;
use crate::events::EventReporter;

/// How long one request to the API server may take unless
/// [`LockBuilder::request_timeout`] says otherwise: half the elector's
/// default renew deadline, as the Redis and etcd stores' default.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Builds a [`LeaseLock`](crate::LeaseLock),
/// [`ConfigMapLock`](crate::ConfigMapLock) or
/// [`MultiLock`](crate::MultiLock); see their `builder` functions.
///
/// Each request to the API server times out after
/// [`request_timeout`](Self::request_timeout) (default 5 s). Keep it at
/// most half the elector's renew deadline, so that a hung API server costs
/// a leader at most half its renew deadline per attempt and leaves time
/// for a retry.
#[must_use = "a builder does nothing until built"]
pub struct LockBuilder<L> {
    name: String,
    namespace: Option<String>,
    client: Option<Client>,
    request_timeout: Duration,
    owners: Vec<OwnerReference>,
    shared_watch: Option<SharedWatch>,
    events: Option<EventReporter>,
    labels: BTreeMap<String, String>,
    coordination: Option<Coordination>,
    lock: PhantomData<fn() -> L>,
}

impl<L> fmt::Debug for LockBuilder<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockBuilder")
            .field("lock", &std::any::type_name::<L>())
            .field("name", &self.name)
            .field("namespace", &self.namespace)
            .field("client", &self.client.as_ref().map(|_| "given"))
            .field("request_timeout", &self.request_timeout)
            .field("owners", &self.owners.len())
            .field("shared_watch", &self.shared_watch.is_some())
            .field("events", &self.events)
            .field("labels", &self.labels)
            .field("coordination", &self.coordination)
            .finish()
    }
}

/// What a built lock is made of.
#[derive(Clone)]
pub(crate) struct Parts {
    pub(crate) client: Client,
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) timeout: Duration,
    pub(crate) owners: Vec<OwnerReference>,
    pub(crate) shared_watch: Option<SharedWatch>,
    pub(crate) events: Option<EventReporter>,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) coordination: Option<Coordination>,
}

impl<L> LockBuilder<L> {
    pub(crate) fn new(name: &str) -> Self {
        LockBuilder {
            name: name.to_owned(),
            namespace: None,
            client: None,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            owners: Vec::new(),
            shared_watch: None,
            events: None,
            labels: BTreeMap::new(),
            coordination: None,
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

    /// The timeout of each request (default [`DEFAULT_REQUEST_TIMEOUT`]);
    /// a timed-out request is [`StoreError::Unavailable`]. Give at most
    /// half the elector's renew deadline, so a leader whose request hung
    /// has time to retry before its term ends.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets the request timeout to `max(1 s, renew_deadline / 2)`. This
    /// copied the elector's setting and could drift from it: give
    /// [`request_timeout`](Self::request_timeout) instead, as on every
    /// other store.
    #[deprecated(note = "use request_timeout (at most half the elector's renew deadline)")]
    pub fn renew_deadline(self, renew_deadline: Duration) -> Self {
        self.request_timeout((renew_deadline / 2).max(Duration::from_secs(1)))
    }

    /// Adds a label to the lock object when the lock creates it, as
    /// client-go's `NewWithLabels` does (say, `app: billing`, to find or
    /// clean up the locks of one app); an existing object's labels are
    /// kept as they are.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Adds an owner reference to the object when the lock creates it (say,
    /// the Deployment, so the lock is garbage-collected with it).
    pub fn owner_reference(mut self, owner: OwnerReference) -> Self {
        self.owners.push(owner);
        self
    }

    /// Records Events on the lock object when a term starts and ends, as
    /// client-go's resource locks do: `<identity> became leader` and
    /// `<identity> stopped leading`, reason `LeaderElection`, reported by
    /// `reporter`. Off by default. Needs `create` on `events` (core group)
    /// in the lock's namespace: see `deploy/rbac.yaml`.
    ///
    /// Never in the election's way: each Event is created by a task of its
    /// own, at most [`MAX_IN_FLIGHT`](crate::events::MAX_IN_FLIGHT) at once;
    /// an error (RBAC forbids Events, the server is down) is logged and
    /// counted ([`LeaseLock::event_counts`](crate::LeaseLock::event_counts)), never returned.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), tenure_core::StoreError> {
    /// use tenure_k8s::{EventReporter, LeaseLock};
    ///
    /// let lock = LeaseLock::builder("billing-cron")
    ///     .events(EventReporter::new("billing-cron"))
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn events(mut self, reporter: EventReporter) -> Self {
        self.events = Some(reporter);
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

    /// Validates the name and resolves the client and namespace.
    pub(crate) async fn parts(self) -> Result<Parts, StoreError> {
        validate_lock_name(&self.name)?;
        let timeout = self.request_timeout;
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
            events: self.events,
            labels: self.labels,
            coordination: self.coordination,
        })
    }
}

impl LockBuilder<crate::LeaseLock> {
    /// Coordinated Leader Election (Kubernetes KEP-4355; beta, and off by
    /// default through Kubernetes 1.37: kube-apiserver needs the
    /// `CoordinatedLeaderElection` feature gate and
    /// `coordination.k8s.io/v1beta1`). The lock publishes a
    /// `LeaseCandidate` named after the elector's identity, of
    /// `binary_version` emulating `emulation_version` (semver without a
    /// `v`), strategy `OldestEmulationVersion`, and answers the
    /// controller's pings. The controller picks the holder: the lock never
    /// creates the Lease, and a candidate leads only when the controller
    /// names it, never by expiry. When the controller prefers another
    /// candidate, the leader drains its work and releases at once (client-go
    /// lets its lease run out instead). Needs `get`, `create`, `update` on
    /// `leasecandidates` (`coordination.k8s.io`): see `deploy/rbac.yaml`.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), tenure_core::StoreError> {
    /// use tenure_k8s::LeaseLock;
    ///
    /// let lock = LeaseLock::builder("my-controller")
    ///     .namespace("kube-system")
    ///     .coordinated("1.37.0", "1.36.0")
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn coordinated(
        mut self,
        binary_version: impl Into<String>,
        emulation_version: impl Into<String>,
    ) -> Self {
        self.coordination = Some(Coordination::new(
            binary_version.into(),
            emulation_version.into(),
        ));
        self
    }
}
