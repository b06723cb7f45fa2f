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

use tenure_core::backend::{self, Fanout, FanoutStream};
use tenure_core::{StoreError, WatchEvent};

use crate::object::Codec;
use crate::watch::{Change, Watcher};

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
type Delivery<K> = (WatchEvent, Option<K>);

/// The watch of one namespace's objects of kind `K`.
pub(crate) struct Hub<K: Codec> {
    api: kube::Api<K>,
    what: String,
    timeout: Duration,
    /// The open streams, by object name.
    fanout: Fanout<Delivery<K>>,
    /// The number of the watch request now open (0: none is).
    ready: tokio::sync::watch::Sender<u64>,
    started: Mutex<bool>,
    /// The locks' request slots: the hub's lists take one too.
    slots: Arc<tokio::sync::Semaphore>,
}

impl<K: Codec> Hub<K> {
    fn dispatch(&self, name: &str, event: Delivery<K>) {
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
    ) -> Result<FanoutStream<Delivery<K>>, StoreError> {
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

/// The hub's task: the namespace's [`Watcher`], its events handed to each
/// lock's stream by object name, every stream told to resync when changes
/// may have been missed. Stops once the hub is gone (every lock and stream
/// dropped), at its watch's next event or end.
async fn serve<K: Codec>(hub: Weak<Hub<K>>) {
    let mut watcher = match hub.upgrade() {
        Some(hub) => Watcher::namespace(
            hub.api.clone(),
            hub.what.clone(),
            hub.timeout,
            hub.slots.clone(),
        ),
        None => return,
    };
    let mut epoch = 0u64;
    loop {
        let change = watcher.next().await;
        let Some(hub) = hub.upgrade() else { return };
        match change {
            Change::Opened { resync } => {
                if resync && epoch > 0 {
                    hub.resync_all();
                }
                epoch += 1;
                hub.ready.send_replace(epoch);
            }
            Change::Object {
                name,
                event,
                object,
            } => hub.dispatch(&name, (event, object)),
            Change::Resync => hub.resync_all(),
        }
    }
}
