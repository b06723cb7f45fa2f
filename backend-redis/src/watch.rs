//! The change stream: a pub/sub subscription to the lock's channel that
//! reconnects by itself.

use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, stream};
use redis::RedisError;
use redis::aio::{PubSubSink, PubSubStream};
use tenure_core::backend::{self, Backoff};
use tenure_core::{StoreError, WatchEvent, WatchStream};
use tokio::time::Instant;

use crate::envelope;
use crate::error::classify;
use crate::store::Inner;

/// An idle subscription is checked with a `PING` every operation timeout,
/// but not more often than this, so that a connection that silently died
/// is noticed and replaced.
const MIN_PING_EVERY: Duration = Duration::from_secs(1);

struct Subscription {
    sink: PubSubSink,
    messages: PubSubStream,
}

struct State {
    inner: Arc<Inner>,
    subscription: Option<Subscription>,
    backoff: Backoff,
    next_ping: Instant,
    /// The current subscription has delivered a message: one that closes
    /// without any is re-opened only after `backoff`, never in a tight loop.
    delivered: bool,
}

fn ping_every(inner: &Inner) -> Duration {
    inner.request_timeout.max(MIN_PING_EVERY)
}

async fn connect(inner: &Inner) -> Result<Subscription, RedisError> {
    let (mut sink, messages) = inner.client.get_async_pubsub().await?.split();
    sink.subscribe(&inner.channel).await?;
    Ok(Subscription { sink, messages })
}

async fn connect_within_timeout(inner: &Inner) -> Result<Subscription, StoreError> {
    let request = async {
        connect(inner)
            .await
            .map_err(|e| classify(e, &inner.redactor))
    };
    backend::within(inner.request_timeout, "redis SUBSCRIBE", request).await
}

/// Subscribes now (so no change after this call is missed), then streams
/// `Put` for each published change, and `Resync` after every reconnect.
pub(crate) async fn subscribe(inner: Arc<Inner>) -> Result<WatchStream, StoreError> {
    let subscription = connect_within_timeout(&inner).await?;
    tracing::debug!(channel = %inner.channel, "watching");
    let state = State {
        subscription: Some(subscription),
        backoff: Backoff::watch(),
        next_ping: Instant::now() + ping_every(&inner),
        delivered: false,
        inner,
    };
    Ok(Box::pin(stream::unfold(state, next_event)))
}

async fn next_event(mut st: State) -> Option<(WatchEvent, State)> {
    loop {
        if let Some(sub) = st.subscription.as_mut() {
            tokio::select! {
                message = sub.messages.next() => match message {
                    Some(message) => {
                        st.delivered = true;
                        st.backoff.reset();
                        st.next_ping = Instant::now() + ping_every(&st.inner);
                        return Some((event_of(&message), st));
                    }
                    None => {
                        tracing::debug!(channel = %st.inner.channel, "watch connection closed");
                        st.subscription = None;
                    }
                },
                _ = tokio::time::sleep_until(st.next_ping) => {
                    let alive = tokio::time::timeout(
                        st.inner.request_timeout,
                        sub.sink.ping::<redis::Value>(),
                    )
                    .await;
                    if matches!(alive, Ok(Ok(_))) {
                        tracing::trace!(channel = %st.inner.channel, "watch keep-alive answered");
                        st.next_ping = Instant::now() + ping_every(&st.inner);
                    } else {
                        tracing::debug!(channel = %st.inner.channel, "watch connection does not answer");
                        st.subscription = None;
                    }
                }
            }
            continue;
        }
        if !std::mem::replace(&mut st.delivered, false) {
            st.backoff.wait().await;
        }
        match connect_within_timeout(&st.inner).await {
            Ok(sub) => {
                tracing::debug!(channel = %st.inner.channel, "watch reconnected");
                st.subscription = Some(sub);
                st.next_ping = Instant::now() + ping_every(&st.inner);
                // Changes made while we were away were not seen.
                return Some((WatchEvent::Resync, st));
            }
            Err(e) => {
                tracing::debug!(channel = %st.inner.channel, error = %e, "watch reconnect failed");
            }
        }
    }
}

fn event_of(message: &redis::Msg) -> WatchEvent {
    match message.get_payload::<String>() {
        Ok(raw) => match envelope::decode(&raw) {
            Ok(versioned) => WatchEvent::Put(versioned),
            Err(_) => WatchEvent::Resync,
        },
        Err(_) => WatchEvent::Resync,
    }
}
