//! A change stream on one object: a list to learn the `resourceVersion`,
//! then a watch with a field selector on the object's name, resumed from
//! the last version seen when the stream ends, and re-listed after 410 Gone.

use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use kube::api::{ListParams, WatchParams};
use kube::core::WatchEvent as KubeEvent;
use tenure_core::backend::{self, Backoff, Fanned};
use tenure_core::{StoreError, Versioned, WatchEvent, WatchStream};

use crate::error::map_error;
use crate::object::{Codec, ObjectLock};

/// How long the API server keeps one watch request open.
const WATCH_SECONDS: u32 = 60;

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

struct State<K: Codec> {
    api: kube::Api<K>,
    name: String,
    what: String,
    timeout: Duration,
    /// Where to resume; `None` means list first.
    resource_version: Option<String>,
    events: Option<BoxStream<'static, kube::Result<KubeEvent<K>>>>,
    /// Changes may have been missed: say so once the stream is back.
    resync: bool,
    backoff: Backoff,
    /// The current stream has delivered an event: a stream that ends (or
    /// fails) without one is reconnected only after `backoff`, so a server
    /// that keeps ending watches at once is not hammered.
    delivered: bool,
}

impl<K: Codec> State<K> {
    fn fields(&self) -> String {
        format!("metadata.name={}", self.name)
    }

    fn map(&self, e: kube::Error) -> StoreError {
        map_error(e, K::KIND, &self.name)
    }

    /// Lists the object (the field selector leaves at most it): where to
    /// start watching from, and what it was then.
    async fn list(&mut self) -> Result<Seen, StoreError> {
        let params = ListParams::default().fields(&self.fields());
        let request =
            async { (self.api.list(&params).await).map_err(|e| map_error(e, K::KIND, &self.name)) };
        let list = backend::within(self.timeout, format!("list {}", self.what), request).await?;
        self.resource_version = Some(list.metadata.resource_version.unwrap_or_default());
        Ok(match list.items.first() {
            None => Seen::Absent,
            Some(object) => match ObjectLock::versioned(object) {
                Ok(versioned) => Seen::Present(versioned),
                Err(_) => Seen::Unknown,
            },
        })
    }

    async fn connect(&mut self) -> Result<(), StoreError> {
        if self.resource_version.is_none() {
            self.list().await?;
        }
        let params = WatchParams::default()
            .fields(&self.fields())
            .timeout(WATCH_SECONDS);
        let from = self.resource_version.clone().unwrap_or_default();
        let what = format!("watch {}", self.what);
        let opened = backend::within(self.timeout, what, async {
            Ok(self.api.watch(&params, &from).await)
        })
        .await?;
        let events = match opened {
            Ok(events) => events,
            Err(e) => {
                if matches!(&e, kube::Error::Api(status) if status.code == 410) {
                    self.resource_version = None; // too old: list again
                }
                return Err(self.map(e));
            }
        };
        self.events = Some(events.boxed());
        Ok(())
    }

    /// The next event for the consumer, with the object it shows; loops
    /// through reconnects.
    async fn next(&mut self) -> (WatchEvent, Option<K>) {
        loop {
            if self.events.is_none() {
                if !std::mem::replace(&mut self.delivered, false) {
                    self.backoff.wait().await;
                }
                if let Err(e) = self.connect().await {
                    tracing::debug!(lock = %self.what, error = %e, "watch: reconnecting");
                    self.resync = true;
                    continue;
                }
                if std::mem::take(&mut self.resync) {
                    return (WatchEvent::Resync, None);
                }
            }
            // The server ends each watch after WATCH_SECONDS; a stream
            // silent for longer than that is hung.
            let idle = Duration::from_secs(u64::from(WATCH_SECONDS)) + self.timeout;
            let events = self.events.as_mut().expect("connected above");
            let next = match tokio::time::timeout(idle, events.next()).await {
                Ok(next) => next,
                Err(_) => {
                    tracing::debug!(lock = %self.what, "watch: silent stream, reconnecting");
                    self.events = None;
                    self.resync = true;
                    continue;
                }
            };
            if matches!(next, Some(Ok(_))) {
                self.delivered = true;
                self.backoff.reset();
            }
            match next {
                // The server ended the watch: resume where we were.
                None => self.events = None,
                Some(Ok(KubeEvent::Added(object))) | Some(Ok(KubeEvent::Modified(object))) => {
                    self.resource_version = object.meta().resource_version.clone();
                    return match ObjectLock::versioned(&object) {
                        Ok(versioned) => (WatchEvent::Put(versioned), Some(object)),
                        // Not a record: let the consumer read it and see.
                        Err(_) => (WatchEvent::Resync, None),
                    };
                }
                Some(Ok(KubeEvent::Deleted(object))) => {
                    self.resource_version = object.meta().resource_version.clone();
                    return (WatchEvent::Deleted, None);
                }
                Some(Ok(KubeEvent::Bookmark(bookmark))) => {
                    self.resource_version = Some(bookmark.metadata.resource_version);
                }
                Some(Ok(KubeEvent::Error(status))) => {
                    // 410 Gone / Expired: our version is too old. Re-list
                    // and watch again first, then say Resync: a read after
                    // it misses nothing the new watch will not report.
                    tracing::debug!(lock = %self.what, code = status.code, reason = %status.reason,
                        "watch: error event, re-listing");
                    self.resource_version = None;
                    self.events = None;
                    self.resync = true;
                }
                // One undecodable event: the stream goes on.
                Some(Err(kube::Error::SerdeError(_))) => return (WatchEvent::Resync, None),
                Some(Err(e)) => {
                    tracing::debug!(lock = %self.what, error = %e, "watch: stream dropped, resuming");
                    self.events = None;
                    self.resync = true;
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
    if let Some(hub) = &lock.hub {
        // Listening first, then listing: every change after the list
        // comes on the stream (some from before it may too; a stale
        // event only costs the consumer a read or a failed swap).
        let rx = hub.listen(&lock.name).await?;
        let mut state = State::<K>::new(lock);
        let seen = {
            let slot = backend::within(lock.timeout, format!("list {}", lock.describe()), async {
                Ok(lock.slot().await)
            });
            let _slot = slot.await?;
            state.list().await?
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
    let mut state = State::new(lock);
    let seen = state.list().await?;
    let stream = futures::stream::unfold(state, |mut state| async move {
        let event = state.next().await;
        Some((event, state))
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

impl<K: Codec> State<K> {
    fn new(lock: &ObjectLock<K>) -> Self {
        State {
            api: lock.api.clone(),
            name: lock.name.clone(),
            what: lock.describe(),
            timeout: lock.timeout,
            resource_version: None,
            events: None,
            resync: false,
            backoff: Backoff::watch(),
            delivered: true,
        }
    }
}
