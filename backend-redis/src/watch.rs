//! The change streams of a client's locks, all on one pub/sub connection:
//! the [`Hub`] subscribes each watched lock's channel on it, hands every
//! message to the streams of its channel, and after the connection drops
//! opens a new one, subscribes every channel again and tells every stream
//! to [`Resync`](WatchEvent::Resync).

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use redis::aio::{PubSubSink, PubSubStream};
use tenure_core::StoreError;
use tenure_core::backend::{self, Backoff, Fanned, Fanout};
use tokio::time::Instant;

use crate::client::Shared;
use crate::error::classify;

/// An idle connection is checked with a `PING` every operation timeout,
/// but not more often than this, so that a connection that silently died
/// is noticed and replaced.
const MIN_PING_EVERY: Duration = Duration::from_secs(1);

/// What the hub hands a lock's stream: a published value as it came (the
/// store decodes it, and keeps its exact bytes for its next swap), or
/// `Resync` when changes may have been missed (a reconnect, a payload that
/// is not text, a stream that fell behind).
pub(crate) type Delivery = Fanned<Arc<str>>;

/// The pub/sub side of a client.
#[derive(Default)]
pub(crate) struct Hub {
    /// The open connection; held across its round trips, so subscribing
    /// and reconnecting never interleave.
    live: tokio::sync::Mutex<Option<Live>>,
    /// The open streams, by channel.
    fanout: Fanout<Arc<str>>,
    /// The generation of `live` (0: none), readable without its lock: a
    /// reader task whose connection was replaced stops.
    current: AtomicU64,
}

/// One open pub/sub connection.
struct Live {
    sink: PubSubSink,
    generation: u64,
    /// The channels subscribed on this connection.
    subscribed: HashSet<String>,
}

impl Hub {
    /// The channels that still have an open stream.
    fn watched_channels(&self) -> Vec<String> {
        self.fanout.keys()
    }

    /// Hands a message to every open stream of `channel`; true if one took it.
    fn dispatch(&self, channel: &str, message: &redis::Msg) -> bool {
        match message.get_payload::<String>() {
            Ok(raw) => self.fanout.dispatch(channel, raw.into()),
            Err(_) => self.fanout.resync(channel),
        }
    }

    /// Tells every open stream that it may have missed changes.
    fn resync_all(&self) {
        self.fanout.resync_all();
    }
}

fn ping_every(shared: &Shared) -> Duration {
    shared.request_timeout.max(MIN_PING_EVERY)
}

static NEXT_GENERATION: AtomicU64 = AtomicU64::new(1);

/// Forgets the open connection (its reader task notices and stops).
fn drop_live(shared: &Shared, live: &mut Option<Live>) {
    *live = None;
    shared.hub.current.store(0, Ordering::SeqCst);
}

/// A connection just opened, for its reader: generation, sink, messages.
type Opened = (u64, PubSubSink, PubSubStream);

/// Opens a pub/sub connection, subscribes every watched channel on it, and
/// tells every open stream to resync (it may have missed changes while
/// there was no connection). Called with `live` locked and empty; the
/// caller reads the connection.
async fn connect(shared: &Arc<Shared>, live: &mut Option<Live>) -> Result<Opened, StoreError> {
    let channels = shared.hub.watched_channels();
    let request = async {
        let (mut sink, messages) = shared.client.get_async_pubsub().await?.split();
        if !channels.is_empty() {
            sink.subscribe(&channels).await?;
        }
        Ok((sink, messages))
    };
    let request = async {
        request
            .await
            .map_err(|e: redis::RedisError| classify(e, &shared.redactor))
    };
    let (sink, messages) =
        backend::within(shared.request_timeout, "redis SUBSCRIBE", request).await?;
    let generation = NEXT_GENERATION.fetch_add(1, Ordering::Relaxed);
    *live = Some(Live {
        sink: sink.clone(),
        generation,
        subscribed: channels.into_iter().collect(),
    });
    shared.hub.current.store(generation, Ordering::SeqCst);
    shared.hub.resync_all();
    Ok((generation, sink, messages))
}

/// Subscribes `channel` now (so no change after this call is missed), then
/// streams each published value, and `Resync` after every reconnect. The
/// stream never ends on its own.
pub(crate) async fn subscribe(
    shared: &Arc<Shared>,
    channel: &str,
) -> Result<BoxStream<'static, Delivery>, StoreError> {
    let mut live = shared.hub.live.lock().await;
    if live.is_none() {
        let opened = connect(shared, &mut live).await?;
        tokio::spawn(serve(Arc::downgrade(shared), opened));
    }
    // Listening before the server confirms: no message after the
    // confirmation can pass unseen. (One the reader took just before may
    // reach us too: a stale event only costs the consumer a read or a
    // failed swap.)
    let rx = shared.hub.fanout.listen(channel);
    let conn = live.as_mut().expect("connected above");
    if !conn.subscribed.contains(channel) {
        let request = async {
            conn.sink
                .subscribe(channel)
                .await
                .map_err(|e| classify(e, &shared.redactor))
        };
        if let Err(e) = backend::within(shared.request_timeout, "redis SUBSCRIBE", request).await {
            // The connection cannot be trusted: the next watch opens a new
            // one (and its reader task notices that this one is gone).
            drop_live(shared, &mut live);
            drop(rx);
            return Err(e);
        }
        conn.subscribed.insert(channel.to_owned());
    }
    tracing::debug!(channel, "watching");
    drop(live);
    // The stream keeps the client alive: its reader task holds only a weak
    // reference, and stops once every store and stream is gone.
    let owner = shared.clone();
    Ok(Box::pin(futures::stream::unfold(
        (rx, owner),
        |(mut rx, owner)| async move {
            let event = rx.next().await?;
            Some((event, (rx, owner)))
        },
    )))
}

/// The reader task: reads each connection until it fails, then opens the
/// next (unless a newer connection has its own reader already, or nobody
/// watches any more, or the client is gone).
async fn serve(shared: Weak<Shared>, mut opened: Opened) {
    loop {
        let (generation, sink, messages) = opened;
        let worked = read(&shared, generation, sink, messages).await;
        match reconnect(&shared, generation, worked).await {
            Some(next) => opened = next,
            None => return,
        }
    }
}

/// Reads one connection until it fails or is replaced; whether it ever
/// worked (delivered a message or answered a ping).
async fn read(
    shared: &Weak<Shared>,
    generation: u64,
    mut sink: PubSubSink,
    mut messages: PubSubStream,
) -> bool {
    let Some(ping) = shared.upgrade().map(|s| ping_every(&s)) else {
        return true;
    };
    let mut next_ping = Instant::now() + ping;
    // A connection that closes before it ever worked is re-opened only
    // after a pause, never in a tight loop.
    let mut worked = false;
    loop {
        tokio::select! {
            message = messages.next() => match message {
                Some(message) => {
                    let Some(shared) = shared.upgrade() else { return true };
                    if shared.hub.current.load(Ordering::SeqCst) != generation {
                        break; // replaced
                    }
                    worked = true;
                    next_ping = Instant::now() + ping;
                    let channel = message.get_channel_name().to_owned();
                    if !shared.hub.dispatch(&channel, &message) {
                        unsubscribe(shared, generation, channel);
                    }
                }
                None => {
                    tracing::debug!(generation, "redis watch connection closed");
                    break;
                }
            },
            _ = tokio::time::sleep_until(next_ping) => {
                let Some(shared) = shared.upgrade() else { return true };
                let alive = tokio::time::timeout(shared.request_timeout, sink.ping::<redis::Value>()).await;
                if shared.hub.current.load(Ordering::SeqCst) != generation {
                    break; // replaced
                }
                if matches!(alive, Ok(Ok(_))) {
                    worked = true;
                    next_ping = Instant::now() + ping;
                } else {
                    tracing::debug!(generation, "redis watch connection does not answer");
                    break;
                }
            }
        }
    }
    worked
}

/// Drops `channel` from connection `generation` once no stream wants it.
fn unsubscribe(shared: Arc<Shared>, generation: u64, channel: String) {
    tokio::spawn(async move {
        let mut live = shared.hub.live.lock().await;
        let Some(conn) = live.as_mut().filter(|c| c.generation == generation) else {
            return;
        };
        // A stream may have come for it in the meantime.
        if shared.hub.fanout.is_listened(&channel) || !conn.subscribed.remove(&channel) {
            return;
        }
        let done =
            tokio::time::timeout(shared.request_timeout, conn.sink.unsubscribe(&channel)).await;
        if !matches!(done, Ok(Ok(()))) {
            drop_live(&shared, &mut live);
        }
    });
}

/// After connection `generation` failed: opens a new one with backoff
/// (which tells every stream to resync once it is up).
async fn reconnect(shared: &Weak<Shared>, generation: u64, worked: bool) -> Option<Opened> {
    let mut backoff = Backoff::watch();
    if !worked {
        backoff.wait().await;
    }
    loop {
        let strong = shared.upgrade()?;
        let mut live = strong.hub.live.lock().await;
        match live.as_ref() {
            Some(conn) if conn.generation != generation => return None, // a newer one serves
            Some(_) => drop_live(&strong, &mut live),
            None => {}
        }
        if strong.hub.watched_channels().is_empty() {
            return None; // the next watch connects
        }
        match connect(&strong, &mut live).await {
            Ok(opened) => {
                tracing::debug!("redis watch reconnected");
                return Some(opened);
            }
            Err(e) => {
                tracing::debug!(error = %tenure_core::ErrorChain(&e), "redis watch reconnect failed")
            }
        }
        drop(live);
        drop(strong);
        backoff.wait().await;
    }
}
