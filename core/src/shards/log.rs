//! [`ShardLog`]: shard terms as their work saw them, and the one judge of
//! them, for the engine's tests, the conformance scenario and the
//! simulation (feature `test-hooks`).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::Shard;

/// One shard term: from its work's start until the work returned (or its
/// replica crashed).
#[derive(Clone, Debug)]
pub struct ShardTerm {
    /// The replica that owned it.
    pub replica: String,
    /// The shard.
    pub shard: u32,
    /// Its fencing token.
    pub token: u64,
    /// When its work started.
    pub start: Instant,
    /// When its work returned, or its replica crashed (`None`: still on).
    pub end: Option<Instant>,
}

/// Records every shard term of a test's replicas.
///
/// ```
/// use std::time::Duration;
/// use tenure_core::shards::ShardLog;
///
/// let log = ShardLog::default();
/// let work = log.work("replica-1", Duration::from_millis(300));
/// // Shards::run(shutdown, work) on each replica, then:
/// assert!(log.violations(tokio::time::Instant::now()).is_empty());
/// ```
#[derive(Clone, Debug, Default)]
pub struct ShardLog(Arc<Mutex<Vec<ShardTerm>>>);

type Work = Pin<Box<dyn Future<Output = ()> + Send>>;

impl ShardLog {
    /// The work of `replica`: records its term, runs until the term is
    /// cancelled, then takes `drain` to return (as real work drains).
    pub fn work(
        &self,
        replica: impl Into<String>,
        drain: Duration,
    ) -> impl Fn(Shard) -> Work + Send + Sync + 'static {
        let (log, replica) = (self.clone(), replica.into());
        move |shard: Shard| {
            let (log, replica) = (log.clone(), replica.clone());
            Box::pin(async move {
                let l = shard.leadership().clone();
                let at = {
                    let mut t = log.0.lock().unwrap_or_else(|e| e.into_inner());
                    t.push(ShardTerm {
                        replica,
                        shard: shard.index(),
                        token: l.fencing_token(),
                        start: Instant::now(),
                        end: None,
                    });
                    t.len() - 1
                };
                l.cancelled().await;
                tokio::time::sleep(drain).await;
                log.0.lock().unwrap_or_else(|e| e.into_inner())[at].end = Some(Instant::now());
            })
        }
    }

    /// Ends, at `at`, the open terms of `replica`: it crashed then, and its
    /// work with it.
    pub fn crashed(&self, replica: &str, at: Instant) {
        for t in self.0.lock().unwrap_or_else(|e| e.into_inner()).iter_mut() {
            if t.replica == replica && t.end.is_none() {
                t.end = Some(at);
            }
        }
    }

    /// Every term so far.
    pub fn terms(&self) -> Vec<ShardTerm> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// What broke the rules, in words: two terms of one shard whose work
    /// ran at once (a term still on counts as running until `now`), or a
    /// token that did not rise from one term to the next.
    pub fn violations(&self, now: Instant) -> Vec<String> {
        let mut by_shard: BTreeMap<u32, Vec<ShardTerm>> = BTreeMap::new();
        for t in self.terms() {
            by_shard.entry(t.shard).or_default().push(t);
        }
        let mut found = Vec::new();
        for (shard, mut ts) in by_shard {
            ts.sort_by_key(|t| t.start);
            for w in ts.windows(2) {
                let ended = w[0].end.unwrap_or(now);
                if ended > w[1].start {
                    found.push(format!(
                        "shard {shard}: {}'s work (token {}) ran until {ended:?}, after {} began (token {}) at {:?}",
                        w[0].replica, w[0].token, w[1].replica, w[1].token, w[1].start
                    ));
                }
                if w[1].token <= w[0].token {
                    found.push(format!(
                        "shard {shard}: token {} after {}",
                        w[1].token, w[0].token
                    ));
                }
            }
        }
        found
    }
}
