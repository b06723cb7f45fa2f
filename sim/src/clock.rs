//! Each candidate's clock: true (simulated) time at its own rate.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tenure_core::Clock;
use tokio::time::Instant;

/// A monotonic clock running `rate` times as fast as true time, from a
/// common origin; it can map its readings back to true time for the oracle.
#[derive(Clone, Copy, Debug)]
pub struct SimClock {
    origin: Instant,
    rate: f64,
}

impl SimClock {
    /// A clock at `rate` (1.0: true time), starting at `origin`.
    pub fn new(origin: Instant, rate: f64) -> Self {
        SimClock { origin, rate }
    }

    /// The true time at which this clock reads `reading`.
    pub fn to_true(&self, reading: Instant) -> Instant {
        if reading >= self.origin {
            self.origin + (reading - self.origin).div_f64(self.rate)
        } else {
            self.origin - (self.origin - reading).div_f64(self.rate)
        }
    }
}

impl Clock for SimClock {
    fn now(&self) -> Instant {
        self.origin
            + Instant::now()
                .duration_since(self.origin)
                .mul_f64(self.rate)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let ahead = deadline.saturating_duration_since(self.now());
        // Round up, so the clock has reached `deadline` when we wake.
        let real = Duration::from_nanos((ahead.as_nanos() as f64 / self.rate).ceil() as u64);
        Box::pin(tokio::time::sleep(real))
    }
}
