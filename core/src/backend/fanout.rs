//! [`Fanout`]: one source of events (a store's shared watch connection)
//! handed to many locks' streams, by key.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures::Stream;
use tokio::sync::mpsc;

/// What a [`FanoutStream`] yields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fanned<T> {
    /// An event for this stream's key.
    Event(T),
    /// Events may have been missed: the source reconnected, or this stream
    /// fell [`capacity`](Fanout::new) events behind and lost some. Re-read.
    Resync,
}

struct Listener<T> {
    tx: mpsc::Sender<Fanned<T>>,
    /// Set when an event could not be queued: the stream says `Resync`
    /// before its next item.
    lagged: Arc<AtomicBool>,
}

/// Hands each event of a shared source to every open stream of its key,
/// through a bounded queue per stream: a stream that falls behind loses
/// events and is told to [`Resync`](Fanned::Resync), as
/// `MemoryStore`'s broadcast does, so a stuck consumer never grows memory
/// without bound and never holds the source up. Streams dropped by their
/// owners are forgotten at the next event for their key.
///
/// Redis (one pub/sub connection per client) and Kubernetes (one watch per
/// namespace, `SharedWatch`) hand their events to locks through it.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use futures::StreamExt;
/// use tenure_core::backend::{Fanned, Fanout};
///
/// let hub = Fanout::new(2);
/// let mut a = hub.listen("lock-a");
/// assert!(hub.dispatch("lock-a", 1));
/// assert!(!hub.dispatch("lock-b", 1)); // nobody listens
/// assert_eq!(a.next().await, Some(Fanned::Event(1)));
/// for n in 2..=4 {
///     hub.dispatch("lock-a", n); // the third does not fit
/// }
/// assert_eq!(a.next().await, Some(Fanned::Resync));
/// # }
/// ```
pub struct Fanout<T> {
    listeners: Mutex<HashMap<String, Vec<Listener<T>>>>,
    capacity: usize,
}

impl<T> std::fmt::Debug for Fanout<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fanout")
            .field(
                "keys",
                &self.listeners.lock().map(|l| l.len()).unwrap_or_default(),
            )
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl<T: Clone> Default for Fanout<T> {
    fn default() -> Self {
        Fanout::new(Self::CAPACITY)
    }
}

impl<T: Clone> Fanout<T> {
    /// The queue per stream of [`Fanout::default`]: a lock's events come
    /// a few per lease, so 64 behind means its consumer is stuck.
    pub const CAPACITY: usize = 64;

    /// At most `capacity` (at least 1) events queued per stream.
    pub fn new(capacity: usize) -> Self {
        Fanout {
            listeners: Mutex::default(),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Listener<T>>>> {
        self.listeners.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new stream of `key`'s events, from now on.
    pub fn listen(&self, key: &str) -> FanoutStream<T> {
        let (tx, rx) = mpsc::channel(self.capacity);
        let lagged = Arc::new(AtomicBool::new(false));
        self.lock()
            .entry(key.to_owned())
            .or_default()
            .push(Listener {
                tx,
                lagged: lagged.clone(),
            });
        FanoutStream { rx, lagged }
    }

    /// Hands `event` to every open stream of `key`; false when none is
    /// open (the source may stop following `key`).
    pub fn dispatch(&self, key: &str, event: T) -> bool {
        self.send(key, Fanned::Event(event))
    }

    /// Tells every open stream of `key` to re-read (an event for it that
    /// could not be decoded); false when none is open.
    pub fn resync(&self, key: &str) -> bool {
        self.send(key, Fanned::Resync)
    }

    /// Tells every open stream to re-read (the source reconnected).
    pub fn resync_all(&self) {
        let mut listeners = self.lock();
        for senders in listeners.values_mut() {
            senders.retain(|l| offer(l, Fanned::Resync));
        }
        listeners.retain(|_, senders| !senders.is_empty());
    }

    /// The keys that have an open stream (the closed ones forgotten).
    pub fn keys(&self) -> Vec<String> {
        let mut listeners = self.lock();
        listeners.retain(|_, senders| {
            senders.retain(|l| !l.tx.is_closed());
            !senders.is_empty()
        });
        listeners.keys().cloned().collect()
    }

    /// Whether `key` has an open stream.
    pub fn is_listened(&self, key: &str) -> bool {
        self.lock()
            .get(key)
            .is_some_and(|senders| senders.iter().any(|l| !l.tx.is_closed()))
    }

    fn send(&self, key: &str, item: Fanned<T>) -> bool {
        let mut listeners = self.lock();
        let Some(senders) = listeners.get_mut(key) else {
            return false;
        };
        senders.retain(|l| offer(l, item.clone()));
        if senders.is_empty() {
            listeners.remove(key);
            return false;
        }
        true
    }
}

/// Queues `item`, or marks the stream lagged when its queue is full; false
/// once the stream is gone.
fn offer<T>(listener: &Listener<T>, item: Fanned<T>) -> bool {
    match listener.tx.try_send(item) {
        Ok(()) => true,
        Err(mpsc::error::TrySendError::Full(_)) => {
            listener.lagged.store(true, Ordering::SeqCst);
            true
        }
        Err(mpsc::error::TrySendError::Closed(_)) => false,
    }
}

/// One stream of a [`Fanout`]: its key's events, a `Resync` where it lost
/// some. Never ends while the `Fanout` lives.
pub struct FanoutStream<T> {
    rx: mpsc::Receiver<Fanned<T>>,
    lagged: Arc<AtomicBool>,
}

impl<T> std::fmt::Debug for FanoutStream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FanoutStream").finish_non_exhaustive()
    }
}

impl<T> Stream for FanoutStream<T> {
    type Item = Fanned<T>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        // What was lost is older than anything still queued: say so first.
        if self.lagged.swap(false, Ordering::SeqCst) {
            return Poll::Ready(Some(Fanned::Resync));
        }
        self.rx.poll_recv(cx)
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    #[tokio::test]
    async fn each_key_gets_its_own_events_and_closed_streams_are_forgotten() {
        let hub = Fanout::new(8);
        let (mut a1, mut a2, b) = (hub.listen("a"), hub.listen("a"), hub.listen("b"));
        assert!(hub.dispatch("a", "x"));
        assert_eq!(a1.next().await, Some(Fanned::Event("x")));
        assert_eq!(a2.next().await, Some(Fanned::Event("x")));
        drop(b);
        assert!(!hub.dispatch("b", "y"), "b's only stream is gone");
        assert_eq!(hub.keys(), ["a"]);
        hub.resync_all();
        assert_eq!(a1.next().await, Some(Fanned::Resync));
        drop((a1, a2));
        assert!(!hub.is_listened("a"));
        assert!(hub.keys().is_empty());
    }

    #[tokio::test]
    async fn a_stuck_stream_is_bounded_and_told_to_resync() {
        let hub = Fanout::new(4);
        let mut slow = hub.listen("a");
        for n in 0..1000 {
            assert!(hub.dispatch("a", n), "a lagging stream stays open");
        }
        // It kept at most its capacity, and says Resync before them.
        assert_eq!(slow.next().await, Some(Fanned::Resync));
        let mut kept = Vec::new();
        while let Ok(Some(item)) =
            tokio::time::timeout(std::time::Duration::from_millis(10), slow.next()).await
        {
            kept.push(item);
        }
        assert_eq!(kept, (0..4).map(Fanned::Event).collect::<Vec<_>>());
    }
}
