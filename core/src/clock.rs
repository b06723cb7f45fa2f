//! The elector's clock: tokio's by default, so tests can pause time; a scaled
//! clock models a machine whose clock runs fast or slow (skew *rate*).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
#[cfg(any(test, feature = "test-hooks"))]
use std::time::Duration;

use tokio::time::Instant;

/// A monotonic clock the elector measures every duration with.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Now, on this clock.
    fn now(&self) -> Instant;

    /// Sleeps until this clock reads `deadline`.
    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

/// tokio's clock (`tokio::time::Instant`): real time, or paused time in tests.
#[derive(Clone, Copy, Debug, Default)]
pub struct TokioClock;

impl Clock for TokioClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(tokio::time::sleep_until(deadline))
    }
}

/// A clock that runs `rate` times as fast as tokio's (2.0: twice as fast).
/// For testing the rule that lease / renew deadline must exceed the skew rate.
///
/// Test support (feature `test-hooks`): `tenure_core::testing::ScaledClock`.
///
/// ```
/// use tenure_core::testing::ScaledClock;
/// let fast = ScaledClock::new(2.0);
/// ```
#[cfg(any(test, feature = "test-hooks"))]
#[derive(Clone, Copy, Debug)]
pub struct ScaledClock {
    origin: Instant,
    rate: f64,
}

#[cfg(any(test, feature = "test-hooks"))]
impl ScaledClock {
    /// A clock starting now that advances `rate` seconds per real second.
    /// A `rate` that is not finite and positive is taken as 1.
    pub fn new(rate: f64) -> Self {
        let rate = if rate.is_finite() && rate > 0.0 {
            rate
        } else {
            1.0
        };
        ScaledClock {
            origin: Instant::now(),
            rate,
        }
    }
}

#[cfg(any(test, feature = "test-hooks"))]
impl Clock for ScaledClock {
    fn now(&self) -> Instant {
        self.origin + self.origin.elapsed().mul_f64(self.rate)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let ahead = deadline.saturating_duration_since(self.now());
        let real = Duration::from_secs_f64(ahead.as_secs_f64() / self.rate);
        Box::pin(tokio::time::sleep(real))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn scaled_clock_runs_fast() {
        let clock = ScaledClock::new(2.0);
        let start = clock.now();
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(clock.now() - start, Duration::from_secs(20));
        let real = Instant::now();
        clock
            .sleep_until(clock.now() + Duration::from_secs(30))
            .await;
        assert_eq!(real.elapsed(), Duration::from_secs(15));
    }
}
