//! Support for store crates: what every [`LockStore`](crate::LockStore)
//! needs and should do the same way: the watch's reconnect backoff, a
//! per-request timeout, and keeping secrets out of messages.
//!
//! # The shape of a store crate
//!
//! tenure's stores share one contract, which a store of yours should keep:
//!
//! - **A client and its locks.** `XClient` (in the crate's `client.rs`)
//!   holds the connections; `client.store(name)` opens a lock on them with
//!   no round trip. `XStore::builder(.., name)` is the same builder as
//!   `XClient::builder(..)`, building one lock on a client of its own
//!   (`RedisBuilder<Target>`, `EtcdBuilder<Target>`): one set of setters.
//! - **What `build()` checks.** Every setting and the lock name, without the
//!   network: [`StoreError::InvalidConfig`], [`StoreError::InvalidName`].
//!   It contacts the store only to check credentials it was given: Redis
//!   authenticates on connect, so its `build()` connects and `PING`s; etcd
//!   authenticates only when a user is set; Kubernetes sends nothing (the
//!   kubeconfig's credentials are checked by the first request). An
//!   application that must fail fast reads the lock once (`tenure run`
//!   does).
//! - **One name per knob.** `request_timeout` (one request, connecting
//!   included), `max_requests_in_flight` (a cap shared by a client's
//!   locks), `prefix`.
//! - **Timeouts and backoff from here.** Every request under
//!   [`within`]; every watch reconnect on [`Backoff::watch`]; a store's
//!   stream never ends by itself (the engine reopens one that does, after
//!   a retry period, for stores written elsewhere).
//! - **Builders are `#[must_use]`**, and `Debug` never shows a secret.
//!
//! Semver-exempt, as `sqlx-core` is for its drivers: this module serves
//! tenure's own stores (and yours, if you write one), and may change in a
//! minor release. Applications need nothing from it. tenure's own crates
//! depend on tenure-core with an exact requirement (`=0.1.0`) and are
//! released together; a store of yours that uses this module should pin
//! it the same way.

mod fanout;
pub use fanout::{Fanned, Fanout, FanoutStream};

use std::fmt;
use std::future::Future;
use std::time::Duration;

use crate::store::StoreError;

/// What a secret is replaced with, everywhere.
pub const REDACTED: &str = "***";

/// A secret (a password, a token) held by a builder or a client: its
/// `Debug` prints [`REDACTED`], so a derived `Debug` of the settings that
/// hold it cannot leak it.
///
/// ```
/// use tenure_core::backend::Secret;
///
/// let password = Secret::new("hunter2");
/// assert_eq!(password.expose(), "hunter2");
/// assert_eq!(format!("{password:?}"), "***");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Holds `secret`.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself, to hand to the store's client; never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// PEM bytes (a certificate) that `Debug` shows as `<pem>`, not as
/// thousands of numbers.
#[derive(Clone)]
pub struct Pem(pub Vec<u8>);

impl fmt::Debug for Pem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<pem>")
    }
}

/// Exponential backoff between reconnection attempts of a watch:
/// `min`, doubling up to `max`, back to `min` after a success; with
/// [`jittered`](Self::jittered), each wait drawn between half and all of
/// that.
///
/// Every store's watch uses [`Backoff::watch`] (jittered), so a server that
/// keeps closing streams is retried at the same pace whatever the store,
/// and 10,000 watches that lost one server do not reconnect in lockstep.
///
/// ```
/// use std::time::Duration;
/// use tenure_core::backend::Backoff;
///
/// let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(300));
/// assert_eq!(b.next_delay(), Duration::from_millis(100));
/// assert_eq!(b.next_delay(), Duration::from_millis(200));
/// assert_eq!(b.next_delay(), Duration::from_millis(300));
/// b.reset();
/// assert_eq!(b.next_delay(), Duration::from_millis(100));
/// ```
#[derive(Clone, Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
    jitter: bool,
}

impl Backoff {
    /// The first wait of [`Backoff::watch`].
    pub const WATCH_MIN: Duration = Duration::from_millis(100);
    /// The longest wait of [`Backoff::watch`].
    pub const WATCH_MAX: Duration = Duration::from_secs(2);

    /// Waits of `min`, doubling up to `max`.
    pub fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            min,
            max: max.max(min),
            next: min,
            jitter: false,
        }
    }

    /// Each wait drawn uniformly between half and all of the schedule's
    /// ("equal jitter"): clients that failed together spread out, and none
    /// waits less than half the schedule.
    #[must_use]
    pub fn jittered(mut self) -> Self {
        self.jitter = true;
        self
    }

    /// The policy of every store's watch: 100 ms doubling up to 2 s,
    /// jittered.
    pub fn watch() -> Self {
        Backoff::new(Self::WATCH_MIN, Self::WATCH_MAX).jittered()
    }

    /// The wait before the next attempt; each call doubles the one after.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        if self.jitter {
            use rand::RngExt;
            delay.mul_f64(rand::rng().random_range(0.5..=1.0))
        } else {
            delay
        }
    }

    /// Sleeps for [`next_delay`](Self::next_delay) on tokio's clock.
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.next_delay()).await;
    }

    /// A success: the next wait is `min` again.
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

/// The error of a request that got no answer within `timeout`:
/// [`StoreError::Unavailable`], worded the same for every store.
pub fn timed_out(what: impl fmt::Display, timeout: Duration) -> StoreError {
    StoreError::unavailable(format!("{what}: no answer within {timeout:?}"))
}

/// Runs one store request with a timeout; no answer in time is
/// [`timed_out`]. A hung server must never hang the elector.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use std::time::Duration;
/// use tenure_core::{backend, StoreError};
///
/// let hung = std::future::pending::<Result<(), StoreError>>();
/// let err = backend::within(Duration::from_secs(1), "redis GET", hung).await.unwrap_err();
/// assert!(matches!(err, StoreError::Unavailable { .. }));
/// # }
/// ```
pub async fn within<T>(
    timeout: Duration,
    what: impl fmt::Display,
    request: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(timeout, request).await {
        Ok(result) => result,
        Err(_) => Err(timed_out(what, timeout)),
    }
}

/// Replaces known secrets in messages before they leave a store.
///
/// Each secret is also scrubbed in its percent-encoded and form-encoded
/// forms, as it may appear inside a URL the client library echoes.
///
/// ```
/// use tenure_core::backend::Redactor;
///
/// let mut r = Redactor::default();
/// r.add("p@ss word");
/// assert_eq!(
///     r.scrub("auth p@ss word failed for redis://u:p%40ss+word@h"),
///     "auth *** failed for redis://u:***@h"
/// );
/// ```
#[derive(Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Redactor({} secrets)", self.secrets.len())
    }
}

impl Redactor {
    /// Scrubs `secret` (and its encoded forms) from later messages.
    pub fn add(&mut self, secret: &str) {
        if secret.is_empty() {
            return;
        }
        for s in [
            secret.to_owned(),
            percent_encode(secret, false),
            percent_encode(secret, true),
        ] {
            if !self.secrets.contains(&s) {
                self.secrets.push(s);
            }
        }
        // Longest first, so a secret that contains another is replaced whole.
        self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }

    /// `message` with every secret replaced by [`REDACTED`].
    pub fn scrub(&self, message: impl Into<String>) -> String {
        let mut message = message.into();
        for secret in &self.secrets {
            if message.contains(secret.as_str()) {
                message = message.replace(secret.as_str(), REDACTED);
            }
        }
        message
    }
}

/// Every byte but ASCII letters and digits as `%XX`; with `form`, a space
/// as `+` (and `*`, `-`, `.`, `_` kept), as `application/x-www-form-urlencoded`.
fn percent_encode(s: &str, form: bool) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for &b in s.as_bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => out.push(b as char),
            b' ' if form => out.push('+'),
            b'*' | b'-' | b'.' | b'_' if form => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `url` with its password replaced by [`REDACTED`]: the one after
/// `user:` in the authority (up to the *last* `@`, as an unencoded `@`,
/// `/` or `?` may be part of it), and the value of a `pass` or `password`
/// query parameter.
///
/// ```
/// use tenure_core::backend::redact_url;
///
/// assert_eq!(redact_url("redis://app:s3cret@h:1/l"), "redis://app:***@h:1/l");
/// assert_eq!(redact_url("redis://app:ab/c?d@e==@h:1/l"), "redis://app:***@h:1/l");
/// assert_eq!(
///     redact_url("redis+unix:///run/redis.sock?db=1&pass=s3cret"),
///     "redis+unix:///run/redis.sock?db=1&pass=***"
/// );
/// ```
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let rest = match rest.rfind('@') {
        Some(at) => match rest[..at].split_once(':') {
            Some((user, _)) => format!("{user}:{REDACTED}@{}", &rest[at + 1..]),
            None => rest.to_owned(),
        },
        None => rest.to_owned(),
    };
    let (head, query) = match rest.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (rest.as_str(), None),
    };
    let Some(query) = query else {
        return format!("{scheme}://{head}");
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if k == "pass" || k == "password" => format!("{k}={REDACTED}"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{scheme}://{head}?{}", query.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_secrets_are_scrubbed_too() {
        let mut r = Redactor::default();
        r.add("a/b c");
        assert_eq!(r.scrub("x a%2Fb%20c y a%2Fb+c z"), "x *** y *** z");
        r.add("");
        assert_eq!(r.scrub("nothing"), "nothing");
        assert!(!format!("{r:?}").contains("a/b"));
    }

    #[test]
    fn urls_without_secrets_are_unchanged() {
        for url in [
            "redis://h:1/l",
            "etcd://h1:2379,h2:2379/l?prefix=p",
            "memory://x",
        ] {
            assert_eq!(redact_url(url), url);
        }
        assert_eq!(redact_url("redis://user@h:1/l"), "redis://user@h:1/l");
    }

    #[test]
    fn backoff_doubles_to_its_limit() {
        let mut b = Backoff::new(Backoff::WATCH_MIN, Backoff::WATCH_MAX);
        let waits: Vec<_> = (0..8).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1600, 2000, 2000, 2000]);
    }

    #[test]
    fn the_watch_backoff_is_jittered_within_half_its_schedule() {
        let schedule = [100, 200, 400, 800, 1600, 2000, 2000, 2000];
        let mut firsts = std::collections::BTreeSet::new();
        for _ in 0..50 {
            let mut b = Backoff::watch();
            for ms in schedule {
                let wait = b.next_delay();
                let full = Duration::from_millis(ms);
                assert!(wait >= full / 2 && wait <= full, "{wait:?} for {full:?}");
            }
            b.reset();
            firsts.insert(b.next_delay());
        }
        // 50 clients that failed together do not all wait the same.
        assert!(firsts.len() > 10, "{firsts:?}");
    }
}
