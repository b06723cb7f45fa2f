//! Coordinated Leader Election (Kubernetes KEP-4355, beta and off by default
//! through 1.37): the cluster's election controller, in kube-apiserver,
//! picks the holder of a Lease among the candidates that publish a
//! `coordination.k8s.io/v1beta1` `LeaseCandidate` for it.
//!
//! A lock built with [`LockBuilder::coordinated`](crate::LockBuilder::coordinated):
//! - publishes the candidate (named after the elector's identity) when
//!   the elector starts campaigning, and answers the controller's
//!   `pingTime` by renewing `renewTime`;
//! - never creates the Lease (the controller does), and the engine never
//!   takes a Lease with a `strategy` by expiry: it leads when the
//!   controller names it;
//! - beyond client-go, which stops renewing and lets the lease run out
//!   when `preferredHolder` names another candidate, the engine drains the
//!   work and releases at once, so the controller can name the preferred
//!   holder without waiting a lease.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::coordination::v1beta1::LeaseCandidate;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::json;
use tenure_core::{ErrorChain, StoreError};

use crate::error::map_error;

/// The strategy kube-apiserver's controller runs: the candidate with the
/// oldest emulation version (then binary version) leads.
pub const OLDEST_EMULATION_VERSION: &str = "OldestEmulationVersion";

/// How often a candidate looks for the controller's ping. The controller
/// waits 5 s for answers, so a second leaves room for a slow request.
pub const PING_POLL: Duration = Duration::from_secs(1);

/// A candidate renews its `renewTime` at least this often even unpinged,
/// well inside the controller's 30-minute garbage collection.
const KEEP_ALIVE: Duration = Duration::from_secs(300);

/// A candidate's versions and strategy, from
/// [`LockBuilder::coordinated`](crate::LockBuilder::coordinated).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Coordination {
    binary_version: String,
    emulation_version: String,
    strategy: String,
}

impl Coordination {
    /// A candidate of `binary_version` emulating `emulation_version`, with
    /// the strategy [`OLDEST_EMULATION_VERSION`].
    pub(crate) fn new(binary_version: String, emulation_version: String) -> Self {
        Coordination {
            binary_version,
            emulation_version,
            strategy: OLDEST_EMULATION_VERSION.to_owned(),
        }
    }
}

/// The candidate a lock publishes, once it knows its identity.
pub(crate) struct Candidate {
    api: Api<LeaseCandidate>,
    lease: String,
    coordination: Coordination,
    timeout: Duration,
    /// The task answering pings, once started (aborted with the lock).
    task: Mutex<Option<(String, tokio::task::JoinHandle<()>)>>,
}

impl Drop for Candidate {
    fn drop(&mut self) {
        if let Some((_, task)) = self.task.lock().unwrap_or_else(|e| e.into_inner()).take() {
            task.abort();
        }
    }
}

impl Candidate {
    pub(crate) fn new(
        client: Client,
        namespace: &str,
        lease: &str,
        coordination: Coordination,
        timeout: Duration,
    ) -> Self {
        Candidate {
            api: Api::namespaced(client, namespace),
            lease: lease.to_owned(),
            coordination,
            timeout,
            task: Mutex::new(None),
        }
    }

    /// Publishes `identity`'s candidate and answers pings from now on;
    /// once per identity (a second elector on the same lock object with
    /// another identity replaces the first).
    pub(crate) fn start(&self, identity: &str) {
        let mut task = self.task.lock().unwrap_or_else(|e| e.into_inner());
        if task.as_ref().is_some_and(|(who, _)| who == identity) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(
                identity,
                "no tokio runtime: the LeaseCandidate is not published"
            );
            return;
        };
        let answer = Answer {
            api: self.api.clone(),
            name: identity.to_owned(),
            lease: self.lease.clone(),
            coordination: self.coordination.clone(),
            timeout: self.timeout,
        };
        if let Some((_, old)) = task.replace((identity.to_owned(), runtime.spawn(answer.run()))) {
            old.abort();
        }
    }
}

/// The task that keeps one candidate published and answers its pings.
struct Answer {
    api: Api<LeaseCandidate>,
    name: String,
    lease: String,
    coordination: Coordination,
    timeout: Duration,
}

impl Answer {
    async fn run(self) {
        let mut last_renew: Option<tokio::time::Instant> = None;
        loop {
            match self.step(&mut last_renew).await {
                Ok(()) => {}
                Err(e) => tracing::warn!(
                    candidate = %self.name, lease = %self.lease, error = %ErrorChain(&e),
                    "could not publish or renew the LeaseCandidate; retrying"
                ),
            }
            tokio::time::sleep(PING_POLL).await;
        }
    }

    /// Creates the candidate if it is missing; renews it if pinged (or
    /// not renewed for [`KEEP_ALIVE`]).
    async fn step(&self, last_renew: &mut Option<tokio::time::Instant>) -> Result<(), StoreError> {
        let name = self.name.clone();
        let current = self
            .call("get", async { self.api.get_opt(&name).await })
            .await?;
        // Through JSON: `spec` is optional in k8s-openapi's types up to
        // Kubernetes 1.35 and required from 1.36, and the application picks
        // the version.
        let now = serde_json::to_value(MicroTime(crate::wire::timestamp(SystemTime::now())))
            .map_err(corrupt)?;
        let Some(current) = current else {
            let candidate: LeaseCandidate = serde_json::from_value(json!({
                "apiVersion": "coordination.k8s.io/v1beta1",
                "kind": "LeaseCandidate",
                "metadata": {"name": self.name},
                "spec": {
                    "leaseName": self.lease,
                    "binaryVersion": self.coordination.binary_version,
                    "emulationVersion": self.coordination.emulation_version,
                    "strategy": self.coordination.strategy,
                    "renewTime": now,
                },
            }))
            .map_err(corrupt)?;
            self.call("create", async {
                self.api.create(&PostParams::default(), &candidate).await
            })
            .await?;
            *last_renew = Some(tokio::time::Instant::now());
            tracing::info!(candidate = %self.name, lease = %self.lease, "published the LeaseCandidate");
            return Ok(());
        };
        let mut object = serde_json::to_value(&current).map_err(corrupt)?;
        let time = |key: &str| {
            object["spec"][key]
                .as_str()
                .and_then(|t| t.parse::<Timestamp>().ok())
        };
        let pinged = match (time("pingTime"), time("renewTime")) {
            (Some(ping), Some(renew)) => ping > renew,
            (Some(_), None) => true,
            _ => false,
        };
        let stale = last_renew.is_none_or(|t| t.elapsed() >= KEEP_ALIVE);
        if !pinged && !stale {
            return Ok(());
        }
        object["spec"]["renewTime"] = now;
        let candidate: LeaseCandidate = serde_json::from_value(object).map_err(corrupt)?;
        // The replace carries the resourceVersion read: a concurrent change
        // (a new ping) conflicts, and the next poll answers it.
        self.call("renew", async {
            self.api
                .replace(&self.name, &PostParams::default(), &candidate)
                .await
        })
        .await?;
        *last_renew = Some(tokio::time::Instant::now());
        tracing::debug!(candidate = %self.name, pinged, "renewed the LeaseCandidate");
        Ok(())
    }

    async fn call<T>(
        &self,
        what: &str,
        request: impl std::future::Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, StoreError> {
        let what = format!("{what} the LeaseCandidate {}", self.name);
        let request = async {
            request
                .await
                .map_err(|e| map_error(e, "LeaseCandidate", &self.name))
        };
        tenure_core::backend::within(self.timeout, what, request).await
    }
}

fn corrupt(e: serde_json::Error) -> StoreError {
    StoreError::corrupt(format!("a LeaseCandidate that does not encode: {e}"))
}
