//! [`SharedWatch`]: one watch per namespace and kind, shared by many locks.
//!
//! Each lock's own watch is a long HTTP request, and kube's client speaks
//! HTTP/1.1: every watching lock holds a connection of its own. A process
//! with thousands of locks would hold thousands of connections to the API
//! server. Locks built with the same [`SharedWatch`] instead share one
//! watch of their namespace's Leases (or ConfigMaps), whose events a hub
//! hands to each lock's stream by object name.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures::StreamExt;
use kube::api::{ListParams, WatchParams};
use kube::core::WatchEvent as KubeEvent;
use tenure_core::backend::{self, Backoff, Fanout, FanoutStream};
use tenure_core::{StoreError, WatchEvent};

use crate::error::map_error;
use crate::object::{Codec, ObjectLock};

/// How long the API server keeps one watch request open.
const WATCH_SECONDS: u32 = 60;

/// One watch per namespace and kind, shared by every lock built with it
/// ([`LockBuilder::shared_watch`](crate::LockBuilder::shared_watch)), and
/// a cap on those locks' requests in flight, so that the connections to the
/// API server do not grow with the number of locks.
///
/// kube's client speaks HTTP/1.1: each request in flight holds a
/// connection, which its pool then keeps. Without a cap, 1,000 locks renewing
/// at once opened about 3,000 connections; with the default cap of
/// [`DEFAULT_MAX_REQUESTS_IN_FLIGHT`], 17 (see BENCHMARKS.md). A request
/// that waits for a slot still counts against its lock's request timeout.
///
/// Clones share the watches and the cap. Use one per `kube::Client`: a
/// namespace's watch runs on the client of the first lock that watches it.
///
/// ```no_run
/// use tenure_k8s::{LeaseLock, SharedWatch};
///
/// # async fn f(client: tenure_k8s::kube::Client) -> Result<(), tenure_core::StoreError> {
/// let watches = SharedWatch::new();
/// let mut locks = Vec::new();
/// for shard in 0..1000 {
///     let lock = LeaseLock::builder(&format!("shard-{shard}"))
///         .client(client.clone())
///         .namespace("billing")
///         .shared_watch(&watches)
///         .build()
///         .await?;
///     locks.push(lock);
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SharedWatch {
    hubs: Arc<Mutex<Hubs>>,
    in_flight: Arc<tokio::sync::Semaphore>,
    max_in_flight: usize,
}

/// The requests in flight a [`SharedWatch`]'s locks may have at once,
/// unless [`SharedWatch::max_requests_in_flight`] says otherwise.
pub const DEFAULT_MAX_REQUESTS_IN_FLIGHT: usize = 16;

impl Default for SharedWatch {
    fn default() -> Self {
        SharedWatch {
            hubs: Arc::default(),
            in_flight: Arc::new(tokio::sync::Semaphore::new(DEFAULT_MAX_REQUESTS_IN_FLIGHT)),
            max_in_flight: DEFAULT_MAX_REQUESTS_IN_FLIGHT,
        }
    }
}

/// The hubs by kind and namespace (each a `Hub<K>` of that kind).
type Hubs = HashMap<(&'static str, String), Arc<dyn Any + Send + Sync>>;

impl fmt::Debug for SharedWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hubs = self.hubs.lock().unwrap_or_else(|e| e.into_inner());
        let keys: Vec<String> = hubs.keys().map(|(k, ns)| format!("{k}/{ns}")).collect();
        f.debug_struct("SharedWatch")
            .field("watches", &keys)
            .finish()
    }
}

impl SharedWatch {
    /// No watches yet: each starts with the first lock that watches its
    /// namespace and kind.
    pub fn new() -> Self {
        Self::default()
    }

    /// At most `max` requests of its locks in flight at once (default
    /// [`DEFAULT_MAX_REQUESTS_IN_FLIGHT`]; at least 1). Set it before
    /// building locks with it: each clone made before keeps the cap it had.
    pub fn max_requests_in_flight(mut self, max: usize) -> Self {
        let max = max.max(1);
        self.in_flight = Arc::new(tokio::sync::Semaphore::new(max));
        self.max_in_flight = max;
        self
    }

    /// The slots shared by the locks' requests.
    pub(crate) fn request_slots(&self) -> Arc<tokio::sync::Semaphore> {
        self.in_flight.clone()
    }

    /// The hub of `K` objects in `namespace`, made with `api` if new.
    pub(crate) fn hub<K: Codec>(
        &self,
        api: &kube::Api<K>,
        namespace: &str,
        timeout: Duration,
    ) -> Arc<Hub<K>> {
        let mut hubs = self.hubs.lock().unwrap_or_else(|e| e.into_inner());
        let entry = hubs
            .entry((K::KIND, namespace.to_owned()))
            .or_insert_with(|| {
                Arc::new(Hub::<K> {
                    api: api.clone(),
                    what: format!("{} in namespace {namespace}", K::RESOURCE),
                    timeout,
                    fanout: Fanout::default(),
                    ready: tokio::sync::watch::channel(0).0,
                    started: Mutex::new(false),
                    slots: self.in_flight.clone(),
                })
            });
        entry
            .clone()
            .downcast::<Hub<K>>()
            .expect("one kind per key")
    }
}

/// What the hub hands a lock's stream: each event with the object it
/// shows (kept by the lock for its next swap).
type Change<K> = (WatchEvent, Option<K>);

/// The watch of one namespace's objects of kind `K`.
pub(crate) struct Hub<K: Codec> {
    api: kube::Api<K>,
    what: String,
    timeout: Duration,
    /// The open streams, by object name.
    fanout: Fanout<Change<K>>,
    /// The number of the watch request now open (0: none is).
    ready: tokio::sync::watch::Sender<u64>,
    started: Mutex<bool>,
    /// The locks' request slots: the hub's lists take one too.
    slots: Arc<tokio::sync::Semaphore>,
}

impl<K: Codec> Hub<K> {
    fn dispatch(&self, name: &str, event: Change<K>) {
        self.fanout.dispatch(name, event);
    }

    fn resync_all(&self) {
        self.fanout.resync_all();
    }

    /// Registers a stream for `name` and waits until the shared watch is
    /// open: every change made after this returns reaches the stream.
    pub(crate) async fn listen(
        self: &Arc<Self>,
        name: &str,
    ) -> Result<FanoutStream<Change<K>>, StoreError> {
        let rx = self.fanout.listen(name);
        {
            let mut started = self.started.lock().unwrap_or_else(|e| e.into_inner());
            if !*started {
                *started = true;
                tokio::spawn(serve(Arc::downgrade(self)));
            }
        }
        let mut ready = self.ready.subscribe();
        let what = format!("watch {}", self.what);
        backend::within(self.timeout, what, async {
            match ready.wait_for(|n| *n > 0).await {
                Ok(_) => Ok(rx),
                Err(_) => Err(StoreError::unavailable("the shared watch ended")),
            }
        })
        .await
    }
}

/// The hub's task: lists to learn where to start, watches the namespace,
/// resumes after the server ends a watch, and after a failure or a 410
/// lists again and tells every stream to resync. Stops once the hub is
/// gone (every lock and stream dropped).
async fn serve<K: Codec>(hub: Weak<Hub<K>>) {
    let mut backoff = Backoff::watch();
    let mut resource_version: Option<String> = None;
    let mut epoch = 0u64;
    loop {
        let Some(strong) = hub.upgrade() else { return };
        let from = match &resource_version {
            Some(rv) => rv.clone(),
            None => {
                let params = ListParams::default().limit(1);
                let request = async {
                    let _slot = strong.slots.acquire().await;
                    strong
                        .api
                        .list(&params)
                        .await
                        .map_err(|e| map_error(e, K::KIND, &strong.what))
                };
                match backend::within(strong.timeout, format!("list {}", strong.what), request)
                    .await
                {
                    Ok(list) => list.metadata.resource_version.unwrap_or_default(),
                    Err(e) => {
                        tracing::debug!(watch = %strong.what, error = %e, "shared watch: list failed");
                        drop(strong);
                        backoff.wait().await;
                        continue;
                    }
                }
            }
        };
        let params = WatchParams::default().timeout(WATCH_SECONDS);
        let events =
            match tokio::time::timeout(strong.timeout, strong.api.watch(&params, &from)).await {
                Ok(Ok(events)) => events,
                Ok(Err(e)) => {
                    if matches!(&e, kube::Error::Api(status) if status.code == 410) {
                        resource_version = None;
                    }
                    tracing::debug!(watch = %strong.what, error = %e, "shared watch: watch failed");
                    drop(strong);
                    backoff.wait().await;
                    continue;
                }
                Err(_) => {
                    drop(strong);
                    backoff.wait().await;
                    continue;
                }
            };
        if resource_version.is_none() && epoch > 0 {
            // Started again: changes in between may have been missed.
            strong.resync_all();
        }
        resource_version = Some(from);
        epoch += 1;
        strong.ready.send_replace(epoch);
        drop(strong);
        let mut events = events.boxed();
        let idle = Duration::from_secs(u64::from(WATCH_SECONDS));
        loop {
            let next = match tokio::time::timeout(idle * 2, events.next()).await {
                Ok(next) => next,
                Err(_) => {
                    resource_version = None; // a silent stream: start again
                    break;
                }
            };
            let Some(strong) = hub.upgrade() else { return };
            match next {
                None => break, // the server ended the watch: resume
                Some(Ok(KubeEvent::Added(object))) | Some(Ok(KubeEvent::Modified(object))) => {
                    backoff.reset();
                    resource_version = object.meta().resource_version.clone();
                    let name = object.meta().name.clone().unwrap_or_default();
                    let event = match ObjectLock::versioned(&object) {
                        Ok(versioned) => (WatchEvent::Put(versioned), Some(object)),
                        Err(_) => (WatchEvent::Resync, None),
                    };
                    strong.dispatch(&name, event);
                }
                Some(Ok(KubeEvent::Deleted(object))) => {
                    backoff.reset();
                    resource_version = object.meta().resource_version.clone();
                    let name = object.meta().name.clone().unwrap_or_default();
                    strong.dispatch(&name, (WatchEvent::Deleted, None));
                }
                Some(Ok(KubeEvent::Bookmark(bookmark))) => {
                    resource_version = Some(bookmark.metadata.resource_version);
                }
                Some(Ok(KubeEvent::Error(status))) => {
                    tracing::debug!(watch = %strong.what, code = status.code, "shared watch: error event, listing again");
                    resource_version = None;
                    break;
                }
                // One undecodable event: every stream re-reads.
                Some(Err(kube::Error::SerdeError(_))) => strong.resync_all(),
                Some(Err(e)) => {
                    tracing::debug!(watch = %strong.what, error = %e, "shared watch: stream dropped");
                    // Resume where we were; whatever the gap held comes on
                    // the next watch, or a 410 makes us list again.
                    break;
                }
            }
        }
        if resource_version.is_none()
            && let Some(strong) = hub.upgrade()
        {
            strong.ready.send_replace(0);
        }
    }
}
