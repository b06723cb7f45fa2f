//! Election timing and identity, validated when the elector is built.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// client-go's jitter factor: acquire attempts wait `retry_period` plus up
/// to `1.2 × retry_period`; the renew deadline must exceed `1.2 × retry_period`.
pub const JITTER_FACTOR: f64 = 1.2;

/// The longest duration a configuration accepts (about 31 years): longer
/// ones would overflow instants or be unreadable in stored records.
pub const MAX_DURATION: Duration = Duration::from_secs(1_000_000_000);

/// Decides whether our key pre-empts the current holder's key (Istio): given
/// the holder's key, true when we may take the lock from it before it expires.
pub type KeyComparison = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// Why a configuration was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The identity is empty.
    #[error("identity must not be empty")]
    EmptyIdentity,
    /// A duration is zero.
    #[error("{0} must be greater than zero")]
    Zero(&'static str),
    /// `lease_duration <= renew_deadline`.
    #[error("lease_duration ({lease:?}) must be greater than renew_deadline ({renew:?})")]
    LeaseNotAboveRenew {
        /// The lease duration.
        lease: Duration,
        /// The renew deadline.
        renew: Duration,
    },
    /// A duration longer than [`MAX_DURATION`].
    #[error("{0} must be at most {max:?}", max = MAX_DURATION)]
    TooLong(&'static str),
    /// `renew_deadline <= 1.2 × retry_period`.
    #[error("renew_deadline ({renew:?}) must be greater than retry_period × 1.2 ({retry:?} × 1.2)")]
    RenewNotAboveRetry {
        /// The renew deadline.
        renew: Duration,
        /// The retry period.
        retry: Duration,
    },
}

/// Timing and identity of one candidate. Built by
/// [`LeaderElectorBuilder`](crate::LeaderElectorBuilder); the fields are
/// readable for logs and tools.
#[derive(Clone)]
#[non_exhaustive]
pub struct ElectionConfig {
    /// Name for logs and the leader gauge's `name` label.
    pub name: String,
    /// This candidate's identity; unique among candidates.
    pub identity: String,
    /// This candidate's priority key (Istio); empty means none.
    pub holder_key: String,
    /// How long followers wait after the last change they saw before taking over.
    pub lease_duration: Duration,
    /// The leader steps down if no renew succeeded for this long.
    pub renew_deadline: Duration,
    /// Time between attempts.
    pub retry_period: Duration,
    /// On shutdown, after the leader's work ended, write a free record.
    pub release_on_cancel: bool,
    /// Wake on the store's change stream when it has one.
    pub use_watch: bool,
    /// Campaign again after a lost term (true by default).
    pub reacquire: bool,
    /// On shutdown, the longest wait for the work before abandoning the
    /// lock to expire (`None`: no limit).
    pub drain_timeout: Option<Duration>,
    /// How long a candidate holds a record it *created* (none was there)
    /// before its term starts (Chubby's lock-delay; zero by default, as
    /// client-go). A record that went before our create may have had a
    /// holder we never saw (we started after it was lost, were blind, or it
    /// came and went between two looks) who may act until its renew
    /// deadline runs out; held for the fleet's `lease_duration`, every such
    /// term is over before ours starts.
    pub lock_delay: Duration,
    /// Seeds the acquire loop's jitter, so that a simulation or a test
    /// replays exactly (`None`, the default: from the OS's entropy).
    pub jitter_seed: Option<u64>,
    /// Istio's pre-emption rule, if any.
    pub key_comparison: Option<KeyComparison>,
}

impl fmt::Debug for ElectionConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ElectionConfig")
            .field("name", &self.name)
            .field("identity", &self.identity)
            .field("holder_key", &self.holder_key)
            .field("lease_duration", &self.lease_duration)
            .field("renew_deadline", &self.renew_deadline)
            .field("retry_period", &self.retry_period)
            .field("release_on_cancel", &self.release_on_cancel)
            .field("use_watch", &self.use_watch)
            .field("reacquire", &self.reacquire)
            .field("drain_timeout", &self.drain_timeout)
            .field("lock_delay", &self.lock_delay)
            .field("jitter_seed", &self.jitter_seed)
            .field("key_comparison", &self.key_comparison.is_some())
            .finish()
    }
}

impl ElectionConfig {
    /// client-go's defaults: lease 15 s, renew deadline 10 s, retry 2 s.
    pub fn new(identity: impl Into<String>) -> Self {
        ElectionConfig {
            name: String::new(),
            identity: identity.into(),
            holder_key: String::new(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
            release_on_cancel: true,
            use_watch: true,
            reacquire: true,
            drain_timeout: None,
            lock_delay: Duration::ZERO,
            jitter_seed: None,
            key_comparison: None,
        }
    }

    /// The seed's `NewLeaderElector` checks, plus a non-empty identity.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.identity.is_empty() {
            return Err(ConfigError::EmptyIdentity);
        }
        for (what, d) in [
            ("lease_duration", self.lease_duration),
            ("renew_deadline", self.renew_deadline),
            ("retry_period", self.retry_period),
        ] {
            if d.is_zero() {
                return Err(ConfigError::Zero(what));
            }
            if d > MAX_DURATION {
                return Err(ConfigError::TooLong(what));
            }
        }
        if self.drain_timeout.is_some_and(|d| d > MAX_DURATION) {
            return Err(ConfigError::TooLong("drain_timeout"));
        }
        if self.lock_delay > MAX_DURATION {
            return Err(ConfigError::TooLong("lock_delay"));
        }
        if self.lease_duration <= self.renew_deadline {
            return Err(ConfigError::LeaseNotAboveRenew {
                lease: self.lease_duration,
                renew: self.renew_deadline,
            });
        }
        if self.renew_deadline <= self.retry_period.mul_f64(JITTER_FACTOR) {
            return Err(ConfigError::RenewNotAboveRetry {
                renew: self.renew_deadline,
                retry: self.retry_period,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(lease: u64, renew: u64, retry: u64) -> ElectionConfig {
        let mut c = ElectionConfig::new("a");
        c.lease_duration = Duration::from_millis(lease);
        c.renew_deadline = Duration::from_millis(renew);
        c.retry_period = Duration::from_millis(retry);
        c
    }

    #[test]
    fn config_validation() {
        assert_eq!(ElectionConfig::new("a").validate(), Ok(()));
        assert_eq!(
            ElectionConfig::new("").validate(),
            Err(ConfigError::EmptyIdentity)
        );
        assert!(matches!(
            cfg(10, 10, 2).validate(),
            Err(ConfigError::LeaseNotAboveRenew { .. })
        ));
        // 1.2 × 5 = 6: a renew deadline of exactly 6 is rejected, as in the seed.
        assert!(matches!(
            cfg(10, 6, 5).validate(),
            Err(ConfigError::RenewNotAboveRetry { .. })
        ));
        assert_eq!(cfg(10, 7, 5).validate(), Ok(()));
        assert_eq!(
            cfg(10, 5, 0).validate(),
            Err(ConfigError::Zero("retry_period"))
        );
        assert_eq!(
            cfg(0, 0, 0).validate(),
            Err(ConfigError::Zero("lease_duration"))
        );
        let mut huge = cfg(10, 7, 5);
        huge.lease_duration = Duration::MAX;
        assert_eq!(huge.validate(), Err(ConfigError::TooLong("lease_duration")));
    }
}
