//! The leader's own Pod labelled while it leads, so a Service can route to
//! the leader only (active/passive): `selector: {leader: "true"}`.
//!
//! The label goes on when a term starts, after the label of any other Pod
//! (a crashed leader's, left behind) is cleared; it comes off when the
//! term's validity ends or its work returns, and always before the work
//! returns, so before the elector releases the lock. Label errors are
//! logged and never end the term: the lock, not the label, says who leads.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;
use tenure_core::{ErrorChain, Leadership, StoreError};

use crate::error::map_error;

/// The label's value unless [`PodLabel::value`] says otherwise.
pub const DEFAULT_VALUE: &str = "true";

/// Labels this replica's Pod while it leads.
///
/// Needs `get`, `list` and `patch` on `pods` in the Pod's namespace.
///
/// ```no_run
/// # async fn f(client: kube::Client, elector: tenure_core::LeaderElector) {
/// use tenure_k8s::PodLabel;
///
/// // The Pod's name and namespace, from the downward API.
/// let pod = std::env::var("POD_NAME").unwrap();
/// let label = PodLabel::new(client, "default", pod, "leader");
/// let shutdown = tenure_core::CancellationToken::new();
/// elector
///     .run(shutdown, move |leadership| {
///         let label = label.clone();
///         async move {
///             let work = async { leadership.cancelled().await };
///             label.while_leading(&leadership, work).await
///         }
///     })
///     .await
///     .unwrap();
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct PodLabel {
    api: Api<Pod>,
    pod: String,
    key: String,
    value: String,
    timeout: Duration,
}

impl PodLabel {
    /// Labels the Pod `pod` in `namespace` with `key` (value
    /// [`DEFAULT_VALUE`]) while leading.
    pub fn new(
        client: Client,
        namespace: &str,
        pod: impl Into<String>,
        key: impl Into<String>,
    ) -> Self {
        PodLabel {
            api: Api::namespaced(client, namespace),
            pod: pod.into(),
            key: key.into(),
            value: DEFAULT_VALUE.to_owned(),
            timeout: crate::DEFAULT_REQUEST_TIMEOUT,
        }
    }

    /// The label's value (default [`DEFAULT_VALUE`]).
    pub fn value(mut self, value: impl Into<String>) -> Self {
        self.value = value.into();
        self
    }

    /// The timeout of each request (default 5 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Clears the label from every other Pod that has it (a crashed
    /// leader's), then sets it on ours. Returns how many were cleared.
    pub async fn set(&self) -> Result<usize, StoreError> {
        let selector = ListParams::default().labels(&self.key);
        let pods = self.call("list", self.api.list(&selector)).await?;
        let mut cleared = 0;
        for other in pods.items {
            let Some(name) = other.metadata.name else {
                continue;
            };
            if name != self.pod {
                self.patch(&name, serde_json::Value::Null).await?;
                cleared += 1;
            }
        }
        self.patch(&self.pod, json!(self.value)).await?;
        Ok(cleared)
    }

    /// Takes the label off our Pod.
    pub async fn clear(&self) -> Result<(), StoreError> {
        self.patch(&self.pod, serde_json::Value::Null).await
    }

    /// Runs `work` with the Pod labelled: sets the label as the work
    /// starts (beside it, not before it), and takes it off when the term's
    /// validity ends or the work returns, whichever comes first; returns
    /// only once it is off, so the elector's release comes after.
    pub async fn while_leading<F: Future>(&self, leadership: &Leadership, work: F) -> F::Output {
        let set = async {
            match self.set().await {
                Ok(cleared) if cleared > 0 => tracing::info!(
                    pod = %self.pod, key = %self.key, cleared,
                    "labelled the leader's Pod; cleared a stale label from other Pods"
                ),
                Ok(_) => {
                    tracing::debug!(pod = %self.pod, key = %self.key, "labelled the leader's Pod")
                }
                Err(e) => {
                    tracing::warn!(pod = %self.pod, key = %self.key, error = %ErrorChain(&e), "could not label the leader's Pod")
                }
            }
        };
        tokio::pin!(work, set);
        let mut set_done = false;
        let output = loop {
            tokio::select! {
                biased;
                // Validity ended: the label comes off now, whatever the
                // work does; the set must finish first, or it could land
                // after the clear.
                _ = leadership.cancelled(), if set_done => break None,
                _ = &mut set, if !set_done => set_done = true,
                out = &mut work => break Some(out),
            }
        };
        if !set_done {
            set.await;
        }
        if let Err(e) = self.clear().await {
            tracing::warn!(pod = %self.pod, key = %self.key, error = %ErrorChain(&e), "could not take the label off the Pod");
        }
        match output {
            Some(out) => out,
            None => work.await,
        }
    }

    async fn patch(&self, pod: &str, value: serde_json::Value) -> Result<(), StoreError> {
        let patch = Patch::Merge(json!({"metadata": {"labels": {&self.key: value}}}));
        let params = PatchParams::default();
        let request = self.api.patch(pod, &params, &patch);
        self.call("patch", request).await.map(|_| ())
    }

    async fn call<T>(
        &self,
        what: &str,
        request: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, StoreError> {
        let what = format!("{what} pods for the label {}", self.key);
        let request = async { request.await.map_err(|e| map_error(e, "Pod", &self.pod)) };
        tenure_core::backend::within(self.timeout, what, request).await
    }
}
