//! `lock_delay`: a term won by *creating* the record starts only after the
//! record has been held that long.
//!
//! A create means the store had no record. One may have existed just
//! before, unseen by us (we never looked, we were paused or cut off, it
//! came and went between two of our looks, the watch lost its event), and
//! its holder may still act until its renew deadline runs out after the
//! record went. The record went before our create landed, so once we have
//! held the record for a lease (by our clock, the same skew bound as every
//! takeover), every such holder's term is over, whatever we missed. Waiting
//! *before* the create could not promise that: nothing bounds what the
//! view missed (issue 26: 100 overlaps in 102,000 simulated seeds).

use std::future::Future;

use tracing::{debug, warn};

use super::{Campaign, Won};
use crate::leadership::Leadership;
use crate::store::ErrorChain;
use crate::store::StoreError;

impl<W, Fut> Campaign<W>
where
    W: FnMut(Leadership) -> Fut + Send,
    Fut: Future<Output = ()> + Send + 'static,
{
    /// Holds a record we just created for `lock_delay`, renewing it every
    /// retry period, then returns it as won (validity from the start of the
    /// last renew). `None` when the hold was lost (another holder, no renew
    /// within the renew deadline) or shut down (the record is released).
    pub(super) async fn hold_created(&mut self, won: Won) -> Result<Option<Won>, StoreError> {
        let clock = self.inner.clock.clone();
        let config = &self.inner.config;
        let (retry, renew_deadline) = (config.retry_period, config.renew_deadline);
        let until = clock.now() + config.lock_delay;
        debug!(lock_delay = ?config.lock_delay, "created the record: holding it for lock_delay before the term starts");
        let mut held = won;
        loop {
            let now = clock.now();
            if now >= held.started + renew_deadline {
                warn!("could not renew the record held for lock_delay: starting over");
                return Ok(None);
            }
            if now >= until {
                return Ok(Some(held));
            }
            let wake = (now + retry).min(until);
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => {
                    if self.inner.config.release_on_cancel {
                        self.release(&held.record, held.version).await;
                    }
                    return Ok(None);
                }
                _ = clock.sleep_until(wake) => {}
            }
            let start = clock.now();
            let limit = held.started + renew_deadline;
            let attempt = tokio::select! {
                biased;
                r = self.try_renew(&held.record, &held.version) => r,
                _ = clock.sleep_until(limit) => Err(StoreError::unavailable("no answer within renew_deadline")),
            };
            match attempt {
                Ok(Some((record, version))) => {
                    self.last_written = Some(record.clone());
                    held = Won {
                        record,
                        version,
                        started: start,
                        created: true,
                    };
                }
                Ok(None) => return Ok(None),
                Err(e) if e.is_fatal() => return Err(e),
                Err(e) => {
                    warn!(error = %ErrorChain(&e), "failed to renew the record held for lock_delay; will retry")
                }
            }
        }
    }
}
