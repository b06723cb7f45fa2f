//! The one watch state machine of tenure-k8s ([`Watcher`]): list to learn
//! a `resourceVersion`, watch from it, resume from the last version seen
//! when the server ends the watch, list again after 410 Gone. A lock's own
//! stream watches its object (a field selector on its name); a
//! [`SharedWatch`](crate::SharedWatch) watches the namespace and hands each
//! object's events to its locks.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use kube::api::{ListParams, WatchParams};
use kube::core::WatchEvent as KubeEvent;
use tenure_core::backend::{self, Backoff, Fanned};
use tenure_core::{StoreError, Versioned, WatchEvent, WatchStream};

use crate::error::map_error;
use crate::object::{Codec, ObjectLock};

/// How long the API server keeps one watch request open. A stream silent
/// for this and a request timeout more is hung: it is resumed.
pub(crate) const WATCH_SECONDS: u32 = 60;

/// What a list showed of the watched object.
#[derive(Clone, Debug)]
pub(crate) enum Seen {
    /// There is no such object.
    Absent,
    /// The object holds this record.
    Present(Versioned),
    /// The object is not a record, or changes may have been missed.
    Unknown,
}

/// Where the watch is.
enum Phase<K: Codec> {
    /// List to learn where to start: first, and after 410 Gone.
    List,
    /// Open a watch from this `resourceVersion` (after a list, or to
    /// resume one the server ended).
    Resume(String),
    /// A watch is open; `from` is the last version it showed.
    Open {
        from: String,
        events: BoxStream<'static, kube::Result<KubeEvent<K>>>,
    },
}

/// What [`Watcher::next`] yields.
pub(crate) enum Change<K> {
    /// A watch request is open: every change from now on will come. With
    /// `resync`, changes before it may have been missed (it follows a
    /// failure or a list after 410): re-read.
    Opened { resync: bool },
    /// An event of the object `name`, with the object it shows.
    Object {
        name: String,
        event: WatchEvent,
        object: Option<K>,
    },
    /// Changes may have been missed (of every object watched): re-read.
    Resync,
}

/// The watch of one object or of a namespace's objects of kind `K`.
pub(crate) struct Watcher<K: Codec> {
    api: kube::Api<K>,
    what: String,
    timeout: Duration,
    /// `metadata.name=NAME` for one object; none for the namespace.
    fields: Option<String>,
    /// Slots a list takes (a shared watch's locks' request cap).
    slots: Option<Arc<tokio::sync::Semaphore>>,
    phase: Phase<K>,
    backoff: Backoff,
    /// Changes may have been missed: say so once a watch is open again.
    resync: bool,
    /// The last watch request delivered an event or opened: one that ends
    /// or fails without is retried only after `backoff`, so a server that
    /// keeps ending watches at once is not hammered.
    delivered: bool,
}

impl<K: Codec> Watcher<K> {
    /// The watch of `lock`'s own object.
    pub(crate) fn object(lock: &ObjectLock<K>) -> Self {
        Watcher {
            api: lock.api.clone(),
            what: lock.describe(),
            timeout: lock.timeout,
            fields: Some(format!("metadata.name={}", lock.name)),
            slots: None,
            phase: Phase::List,
            backoff: Backoff::watch(),
            resync: false,
            delivered: true,
        }
    }

    /// The watch of every `K` object of `api`'s namespace.
    pub(crate) fn namespace(
        api: kube::Api<K>,
        what: String,
        timeout: Duration,
        slots: Arc<tokio::sync::Semaphore>,
    ) -> Self {
        Watcher {
            api,
            what,
            timeout,
            fields: None,
            slots: Some(slots),
            phase: Phase::List,
            backoff: Backoff::watch(),
            resync: false,
            delivered: true,
        }
    }

    fn map(&self, e: kube::Error) -> StoreError {
        map_error(e, K::KIND, &self.what)
    }

    /// Lists (one object: what it holds; a namespace: one item, for the
    /// version), and watches from there next.
    pub(crate) async fn list(&mut self) -> Result<Seen, StoreError> {
        let params = match &self.fields {
            Some(fields) => ListParams::default().fields(fields),
            None => ListParams::default().limit(1),
        };
        // The request borrows fields, never `self`: the watcher holds a
        // stream that is `Send` but not `Sync`.
        let (api, slots, what) = (&self.api, &self.slots, &self.what);
        let request = async {
            let _slot = match slots {
                Some(slots) => slots.acquire().await.ok(),
                None => None,
            };
            api.list(&params)
                .await
                .map_err(|e| map_error(e, K::KIND, what))
        };
        let list = backend::within(self.timeout, format!("list {}", self.what), request).await?;
        self.phase = Phase::Resume(list.metadata.resource_version.unwrap_or_default());
        Ok(match list.items.first() {
            _ if self.fields.is_none() => Seen::Unknown,
            None => Seen::Absent,
            Some(object) => match ObjectLock::versioned(object) {
                Ok(versioned) => Seen::Present(versioned),
                Err(_) => Seen::Unknown,
            },
        })
    }

    /// Opens a watch from `from`.
    async fn open(
        &mut self,
        from: &str,
    ) -> Result<BoxStream<'static, kube::Result<KubeEvent<K>>>, StoreError> {
        let mut params = WatchParams::default().timeout(WATCH_SECONDS);
        if let Some(fields) = &self.fields {
            params = params.fields(fields);
        }
        let api = &self.api;
        let opened = backend::within(self.timeout, format!("watch {}", self.what), async {
            Ok(api.watch(&params, from).await)
        })
        .await?;
        match opened {
            Ok(events) => Ok(events.boxed()),
            Err(e) => {
                if matches!(&e, kube::Error::Api(status) if status.code == 410) {
                    self.phase = Phase::List; // too old: list again
                }
                Err(self.map(e))
            }
        }
    }

    /// The next change; loops through lists, resumes and backoff, and never
    /// ends.
    pub(crate) async fn next(&mut self) -> Change<K> {
        loop {
            match std::mem::replace(&mut self.phase, Phase::List) {
                Phase::List => {
                    if !std::mem::replace(&mut self.delivered, false) {
                        self.backoff.wait().await;
                    }
                    match self.list().await {
                        // Watch from there at once.
                        Ok(_) => self.delivered = true,
                        Err(e) => {
                            tracing::debug!(watch = %self.what, error = %tenure_core::ErrorChain(&e), "watch: list failed");
                            self.phase = Phase::List;
                            self.resync = true;
                        }
                    }
                }
                Phase::Resume(from) => {
                    if !std::mem::replace(&mut self.delivered, false) {
                        self.backoff.wait().await;
                    }
                    self.phase = Phase::Resume(from.clone());
                    match self.open(&from).await {
                        Ok(events) => {
                            self.phase = Phase::Open { from, events };
                            let resync = std::mem::take(&mut self.resync);
                            return Change::Opened { resync };
                        }
                        Err(e) => {
                            tracing::debug!(watch = %self.what, error = %tenure_core::ErrorChain(&e), "watch: reconnecting");
                            self.resync = true;
                        }
                    }
                }
                Phase::Open { from, mut events } => {
                    let silence = Duration::from_secs(u64::from(WATCH_SECONDS)) + self.timeout;
                    let next = match tokio::time::timeout(silence, events.next()).await {
                        Ok(next) => next,
                        Err(_) => {
                            tracing::debug!(watch = %self.what, "watch: silent stream, resuming");
                            self.phase = Phase::Resume(from);
                            self.resync = true;
                            continue;
                        }
                    };
                    if matches!(next, Some(Ok(_))) {
                        self.delivered = true;
                        self.backoff.reset();
                    }
                    let (from, change) = match next {
                        // The server ended the watch: resume where we were.
                        None => {
                            self.phase = Phase::Resume(from);
                            continue;
                        }
                        Some(Ok(KubeEvent::Added(object)))
                        | Some(Ok(KubeEvent::Modified(object))) => {
                            let name = object.meta().name.clone().unwrap_or_default();
                            let version = object.meta().resource_version.clone();
                            let change = match ObjectLock::versioned(&object) {
                                Ok(versioned) => Change::Object {
                                    name,
                                    event: WatchEvent::Put(versioned),
                                    object: Some(object),
                                },
                                // Not a record: let the consumer read it and see.
                                Err(_) => Change::Object {
                                    name,
                                    event: WatchEvent::Resync,
                                    object: None,
                                },
                            };
                            (version.unwrap_or(from), change)
                        }
                        Some(Ok(KubeEvent::Deleted(object))) => {
                            let name = object.meta().name.clone().unwrap_or_default();
                            let change = Change::Object {
                                name,
                                event: WatchEvent::Deleted,
                                object: None,
                            };
                            (
                                object.meta().resource_version.clone().unwrap_or(from),
                                change,
                            )
                        }
                        Some(Ok(KubeEvent::Bookmark(bookmark))) => {
                            self.phase = Phase::Open {
                                from: bookmark.metadata.resource_version,
                                events,
                            };
                            continue;
                        }
                        Some(Ok(KubeEvent::Error(status))) => {
                            // 410 Gone / Expired: our version is too old.
                            // List and watch again first, then say Resync: a
                            // read after it misses nothing the new watch
                            // will not report.
                            tracing::debug!(watch = %self.what, code = status.code, reason = %status.reason,
                                "watch: error event, listing again");
                            self.resync = true;
                            continue; // phase is List
                        }
                        // One undecodable event: the stream goes on.
                        Some(Err(kube::Error::SerdeError(_))) => (from, Change::Resync),
                        Some(Err(e)) => {
                            tracing::debug!(watch = %self.what, error = %tenure_core::ErrorChain(&e), "watch: stream dropped, resuming");
                            self.phase = Phase::Resume(from);
                            self.resync = true;
                            continue;
                        }
                    };
                    self.phase = Phase::Open { from, events };
                    return change;
                }
            }
        }
    }
}

/// Starts watching `lock`'s object: lists it now (so errors surface here),
/// then streams from there.
pub(crate) async fn watch<K: Codec>(lock: &ObjectLock<K>) -> Result<WatchStream, StoreError> {
    watch_listed(lock).await.map(|(_, stream)| stream)
}

/// [`watch`], and what the list showed: the stream reports every change
/// after that state, in order.
pub(crate) async fn watch_listed<K: Codec>(
    lock: &ObjectLock<K>,
) -> Result<(Seen, WatchStream), StoreError> {
    let mut watcher = Watcher::object(lock);
    if let Some(hub) = &lock.hub {
        // Listening first, then listing: every change after the list
        // comes on the stream (some from before it may too; a stale
        // event only costs the consumer a read or a failed swap).
        let rx = hub.listen(&lock.name).await?;
        let seen = {
            let slot = backend::within(lock.timeout, format!("list {}", lock.describe()), async {
                Ok(lock.slot().await)
            });
            let _slot = slot.await?;
            watcher.list().await?
        };
        let owner = hub.clone();
        let stream = futures::stream::unfold((rx, owner), |(mut rx, owner)| async move {
            let event = match rx.next().await? {
                Fanned::Event(event) => event,
                Fanned::Resync => (WatchEvent::Resync, None),
            };
            Some((event, (rx, owner)))
        });
        return Ok((seen, remembering(lock, stream)));
    }
    let seen = watcher.list().await?;
    let stream = futures::stream::unfold(watcher, |mut watcher| async move {
        loop {
            let event = match watcher.next().await {
                Change::Opened { resync: false } => continue,
                Change::Opened { resync: true } => (WatchEvent::Resync, None),
                Change::Object { event, object, .. } => (event, object),
                Change::Resync => (WatchEvent::Resync, None),
            };
            return Some((event, watcher));
        }
    });
    Ok((seen, remembering(lock, stream)))
}

/// The lock's change stream: each object it shows is kept by the lock, so
/// a swap on the version just seen needs no read first (one round trip).
fn remembering<K: Codec>(
    lock: &ObjectLock<K>,
    changes: impl futures::Stream<Item = (WatchEvent, Option<K>)> + Send + 'static,
) -> WatchStream {
    let remember = lock.remember_seen();
    Box::pin(changes.map(move |(event, object)| {
        if let Some(object) = object {
            remember(object);
        }
        event
    }))
}
