//! The change stream of one lock key: an etcd watch that resumes from the
//! last revision seen after a disconnect, or from now after a compaction.

use std::collections::VecDeque;
use std::time::Duration;

use etcd_client::{Client, EventType, WatchOptions, WatchResponse};
use futures::stream;
use tenure_core::backend::{self, Backoff};
use tenure_core::{StoreError, WatchEvent, WatchStream};

use crate::error::map_error;
use crate::store::decode;

/// One open etcd watch on the key.
type Open = etcd_client::WatchStream;

struct State {
    client: Client,
    key: String,
    describe: String,
    request_timeout: Duration,
    /// The revision to resume from; 0 = from now (after a compaction).
    next_rev: i64,
    open: Option<Open>,
    pending: VecDeque<WatchEvent>,
    backoff: Backoff,
}

/// Opens the watch now (so no change made after this returns is missed) and
/// returns a stream that re-opens it after failures, emitting
/// [`WatchEvent::Resync`] each time. The stream never ends on its own.
pub(crate) async fn watch(
    client: Client,
    key: String,
    describe: String,
    request_timeout: Duration,
) -> Result<WatchStream, StoreError> {
    let mut state = State {
        client,
        key,
        describe,
        request_timeout,
        next_rev: 0,
        open: None,
        pending: VecDeque::new(),
        backoff: Backoff::watch(),
    };
    state.open().await?;
    Ok(Box::pin(stream::unfold(state, |mut state| async move {
        let event = state.next().await;
        Some((event, state))
    })))
}

impl State {
    /// Opens a watch from `next_rev` and waits for etcd to confirm it.
    async fn open(&mut self) -> Result<(), StoreError> {
        let mut options = WatchOptions::new();
        if self.next_rev > 0 {
            options = options.with_start_revision(self.next_rev);
        }
        let mut watch_client = self.client.watch_client();
        let key = self.key.clone();
        let opening = async {
            let mut stream = watch_client
                .watch(key, Some(options))
                .await
                .map_err(map_error)?;
            match stream.message().await.map_err(map_error)? {
                Some(resp) if resp.created() && !resp.canceled() => Ok((stream, resp)),
                Some(resp) => Err(StoreError::unavailable(format!(
                    "etcd refused the watch: {}",
                    resp.cancel_reason()
                ))),
                None => Err(StoreError::unavailable(
                    "etcd closed the watch before confirming it",
                )),
            }
        };
        let (stream, created) =
            backend::within(self.request_timeout, "opening the etcd watch", opening).await?;
        if self.next_rev == 0 {
            // Watching from now: everything after this revision will come.
            if let Some(h) = created.header() {
                self.next_rev = h.revision() + 1;
            }
        }
        self.open = Some(stream);
        self.backoff.reset();
        Ok(())
    }

    /// The next event, re-opening the watch as often as needed.
    async fn next(&mut self) -> WatchEvent {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return event;
            }
            let Some(open) = self.open.as_mut() else {
                self.backoff.wait().await;
                match self.open().await {
                    Ok(()) => {
                        tracing::debug!(lock = %self.describe, from = self.next_rev, "etcd watch re-established");
                        self.pending.push_back(WatchEvent::Resync);
                    }
                    Err(e) => {
                        tracing::debug!(lock = %self.describe, error = %tenure_core::ErrorChain(&e), "etcd watch could not be re-established; retrying")
                    }
                }
                continue;
            };
            match open.message().await {
                Ok(Some(resp)) => self.on_response(resp),
                Ok(None) => {
                    tracing::debug!(lock = %self.describe, "etcd watch stream ended; re-establishing");
                    self.open = None;
                }
                Err(e) => {
                    tracing::debug!(lock = %self.describe, error = %tenure_core::ErrorChain(&map_error(e)), "etcd watch failed; re-establishing");
                    self.open = None;
                }
            }
        }
    }

    fn on_response(&mut self, resp: WatchResponse) {
        if resp.canceled() {
            if resp.compact_revision() > 0 {
                // Changes were compacted away: resume from now; the Resync
                // emitted on re-opening tells the consumer to re-read.
                tracing::debug!(lock = %self.describe, compacted = resp.compact_revision(), "etcd watch fell behind a compaction");
                self.next_rev = 0;
            } else {
                tracing::debug!(lock = %self.describe, reason = resp.cancel_reason(), "etcd cancelled the watch");
            }
            self.open = None;
            return;
        }
        for event in resp.events() {
            let Some(kv) = event.kv() else { continue };
            self.next_rev = self.next_rev.max(kv.mod_revision() + 1);
            self.pending.push_back(match event.event_type() {
                EventType::Delete => WatchEvent::Deleted,
                EventType::Put => match decode(kv) {
                    Ok(versioned) => WatchEvent::Put(versioned),
                    // A foreign value: the consumer's re-read reports it.
                    Err(_) => WatchEvent::Resync,
                },
            });
        }
    }
}
