//! The backend contract: optimistic concurrency with an explicit version.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use futures::Stream;

use crate::record::{LeaderRecord, Version, Versioned};

/// The underlying error of a [`StoreError`] (the client library's own),
/// shared so that errors stay cheap to clone. Its message never holds a
/// secret: stores wrap client errors only after scrubbing them.
pub type ErrorSource = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// Errors a [`LockStore`] reports. Messages never contain secrets.
///
/// Match on the kind; [`std::error::Error::source`] gives the client
/// library's error where there is one.
///
/// ```
/// use tenure_core::StoreError;
///
/// let e = StoreError::unavailable("connection refused");
/// assert!(!e.is_fatal());
/// assert!(matches!(e, StoreError::Unavailable { .. }));
/// let bad = StoreError::invalid_config("port 99999 is out of range");
/// assert!(bad.is_fatal());
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The lock record does not exist.
    #[error("lock record not found")]
    NotFound,
    /// The record exists already (create) or is no longer at the expected
    /// version (update). Carries the current record when the store returned
    /// it in the same round trip, so the caller need not read again.
    #[error("conflict: the lock record was changed by someone else")]
    Conflict {
        /// The record as the store holds it now, when known.
        current: Option<Box<Versioned>>,
    },
    /// The stored value is not a lock record. It is never overwritten.
    #[error("stored value is not a lock record: {reason}")]
    Corrupt {
        /// What is wrong with it.
        reason: String,
    },
    /// The store could not be reached or did not answer in time (transient).
    #[error("store unavailable: {message}")]
    Unavailable {
        /// What happened.
        message: String,
        /// The client library's error, if any.
        #[source]
        source: Option<ErrorSource>,
    },
    /// The store refused our credentials or permissions.
    #[error("not authorized by the store: {message}")]
    Unauthorized {
        /// What the store said.
        message: String,
        /// The client library's error, if any.
        #[source]
        source: Option<ErrorSource>,
    },
    /// The lock name is not valid for this store.
    #[error("invalid lock name {name:?}: {reason}")]
    InvalidName {
        /// The rejected name.
        name: String,
        /// Which rule it breaks.
        reason: String,
    },
    /// The store's configuration is invalid (a malformed URL, a port out
    /// of range, an unreadable certificate file, no kubeconfig): bad input
    /// that retrying cannot fix.
    #[error("invalid store configuration: {message}")]
    InvalidConfig {
        /// What is wrong.
        message: String,
        /// The underlying error, if any.
        #[source]
        source: Option<ErrorSource>,
    },
    /// Anything else the store reported.
    #[error("store error: {message}")]
    Other {
        /// What happened.
        message: String,
        /// The client library's error, if any.
        #[source]
        source: Option<ErrorSource>,
    },
}

impl StoreError {
    /// The kind of error in one word, for metrics and logs: `not_found`,
    /// `conflict`, `corrupt`, `unavailable`, `unauthorized`,
    /// `invalid_name`, `invalid_config` or `other`.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::NotFound => "not_found",
            StoreError::Conflict { .. } => "conflict",
            StoreError::Corrupt { .. } => "corrupt",
            StoreError::Unavailable { .. } => "unavailable",
            StoreError::Unauthorized { .. } => "unauthorized",
            StoreError::InvalidName { .. } => "invalid_name",
            StoreError::InvalidConfig { .. } => "invalid_config",
            StoreError::Other { .. } => "other",
        }
    }

    /// A [`StoreError::Corrupt`] with the given reason.
    pub fn corrupt(reason: impl Into<String>) -> Self {
        StoreError::Corrupt {
            reason: reason.into(),
        }
    }

    /// A [`StoreError::Conflict`] without the current record.
    pub fn conflict() -> Self {
        StoreError::Conflict { current: None }
    }

    /// A [`StoreError::InvalidName`].
    pub fn invalid_name(name: &str, reason: impl Into<String>) -> Self {
        StoreError::InvalidName {
            name: name.to_owned(),
            reason: reason.into(),
        }
    }

    /// A [`StoreError::Unavailable`] without a source.
    pub fn unavailable(message: impl Into<String>) -> Self {
        StoreError::Unavailable {
            message: message.into(),
            source: None,
        }
    }

    /// A [`StoreError::Unauthorized`] without a source.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        StoreError::Unauthorized {
            message: message.into(),
            source: None,
        }
    }

    /// A [`StoreError::InvalidConfig`] without a source.
    pub fn invalid_config(message: impl Into<String>) -> Self {
        StoreError::InvalidConfig {
            message: message.into(),
            source: None,
        }
    }

    /// A [`StoreError::Other`] without a source.
    pub fn other(message: impl Into<String>) -> Self {
        StoreError::Other {
            message: message.into(),
            source: None,
        }
    }

    /// The same error with `source` as its cause (kinds without a source
    /// field are returned unchanged). Scrub secrets from `source` first.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        match &mut self {
            StoreError::Unavailable { source: s, .. }
            | StoreError::Unauthorized { source: s, .. }
            | StoreError::InvalidConfig { source: s, .. }
            | StoreError::Other { source: s, .. } => *s = Some(Arc::new(source)),
            _ => {}
        }
        self
    }

    /// Errors that retrying cannot fix: the elector gives up on them.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            StoreError::Unauthorized { .. }
                | StoreError::InvalidName { .. }
                | StoreError::InvalidConfig { .. }
                | StoreError::Corrupt { .. }
        )
    }

    /// True for bad input from the caller (configuration or lock name),
    /// as opposed to what the store did: the CLI exits 2 for these.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            StoreError::InvalidName { .. } | StoreError::InvalidConfig { .. }
        )
    }
}

/// One change seen on a store's watch.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WatchEvent {
    /// The record was created or updated to this.
    Put(Versioned),
    /// The record was deleted.
    Deleted,
    /// The stream may have missed changes (reconnect, compaction, lag,
    /// or a change it cannot decode): the consumer should re-read. Stores
    /// must not report their own successful writes as `Resync`.
    Resync,
}

/// A store's change stream. It is only a hint: consumers re-check every
/// decision with a read or a compare-and-swap.
pub type WatchStream = Pin<Box<dyn Stream<Item = WatchEvent> + Send>>;

/// A lock in a store that can compare-and-swap: the whole backend contract.
///
/// Each backend does the compare-and-swap with its own primitive in one
/// round trip. Implementations must be cheap to share (`Arc<dyn LockStore>`).
#[async_trait]
pub trait LockStore: Send + Sync + fmt::Debug {
    /// The current record and its version, or `None` when there is none.
    async fn get(&self) -> Result<Option<Versioned>, StoreError>;

    /// Creates the record; [`StoreError::Conflict`] if one exists already.
    async fn create(&self, record: &LeaderRecord) -> Result<Version, StoreError>;

    /// Replaces the record if the stored version is `expected`
    /// (compare-and-swap); [`StoreError::Conflict`] otherwise, changing nothing.
    async fn update(
        &self,
        record: &LeaderRecord,
        expected: &Version,
    ) -> Result<Version, StoreError>;

    /// A stream of changes to this lock, or `None` when the store cannot
    /// watch (the default). Used only to wake candidates early.
    async fn watch(&self) -> Result<Option<WatchStream>, StoreError> {
        Ok(None)
    }

    /// A number at least as large as every `leader_transitions` this lock
    /// has ever held in this store, also across deletion of the record, or
    /// `None` when the store keeps nothing that survives deletion (the
    /// default).
    ///
    /// The elector reads it only before it *creates* a record, and starts
    /// the new record's fencing token above it, so a token never goes down
    /// or repeats after the record was deleted or lost. A store that
    /// reports a floor must keep it above every `leader_transitions` that
    /// tenure writes to it later too, given that each write raises the
    /// count by at most one (etcd: the store's revision, which every write
    /// raises; Redis: the server clock in microseconds).
    async fn token_floor(&self) -> Result<Option<u64>, StoreError> {
        Ok(None)
    }

    /// Told that `identity` started campaigning, became leader or stopped
    /// leading, as client-go tells its lock (`RecordEvent`), for stores
    /// that publish such news (a Kubernetes lock records an Event on its
    /// object, when asked to, and announces a coordinated election's
    /// candidate). The default does nothing.
    ///
    /// Called on the election's task: it must return at once and never
    /// fail the election, so an implementation hands the work to a task
    /// of its own, bounded, and only logs what goes wrong.
    fn record_event(&self, identity: &str, event: LeaderEvent) {
        let _ = (identity, event);
    }

    /// A human name of the lock (store and key), with no secret in it.
    fn describe(&self) -> String;
}

/// What [`LockStore::record_event`] is told: the same two moments, and
/// the same words, as client-go's elector records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeaderEvent {
    /// The elector started campaigning for the lock (before its first
    /// read): a store that must announce candidates (Kubernetes'
    /// coordinated election) does it now. Not recorded as an Event.
    Campaigning,
    /// A term started: `<identity> became leader`.
    BecameLeader,
    /// A term ended, however it ended: `<identity> stopped leading`.
    StoppedLeading,
}

impl LeaderEvent {
    /// client-go's words for it: `became leader`, `stopped leading`
    /// (and `started campaigning`, which client-go does not record).
    pub fn as_str(self) -> &'static str {
        match self {
            LeaderEvent::Campaigning => "started campaigning",
            LeaderEvent::BecameLeader => "became leader",
            LeaderEvent::StoppedLeading => "stopped leading",
        }
    }
}

/// A shared store is a store: an `Arc<S>` (or `Arc<dyn LockStore>`) can be
/// given wherever a store is wanted.
#[async_trait]
impl<S: LockStore + ?Sized> LockStore for Arc<S> {
    async fn get(&self) -> Result<Option<Versioned>, StoreError> {
        (**self).get().await
    }

    async fn create(&self, record: &LeaderRecord) -> Result<Version, StoreError> {
        (**self).create(record).await
    }

    async fn update(
        &self,
        record: &LeaderRecord,
        expected: &Version,
    ) -> Result<Version, StoreError> {
        (**self).update(record, expected).await
    }

    async fn watch(&self) -> Result<Option<WatchStream>, StoreError> {
        (**self).watch().await
    }

    async fn token_floor(&self) -> Result<Option<u64>, StoreError> {
        (**self).token_floor().await
    }

    fn record_event(&self, identity: &str, event: LeaderEvent) {
        (**self).record_event(identity, event)
    }

    fn describe(&self) -> String {
        (**self).describe()
    }
}

/// Checks a lock name against the rule every tenure store shares, so a name
/// is portable between stores: a DNS-1123 subdomain as Kubernetes requires
/// (1 to 253 characters of `a-z`, `0-9`, `-` and `.`; each dot-separated
/// part starts and ends with a letter or digit).
///
/// ```
/// use tenure_core::validate_lock_name;
/// assert!(validate_lock_name("my-controller.leader").is_ok());
/// assert!(validate_lock_name("My Lock").is_err());
/// ```
pub fn validate_lock_name(name: &str) -> Result<(), StoreError> {
    let err = |reason: &str| Err(StoreError::invalid_name(name, reason));
    if name.is_empty() {
        return err("must not be empty");
    }
    if name.len() > 253 {
        return err("must be at most 253 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    {
        return err("may contain only lowercase letters, digits, '-' and '.'");
    }
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    // Each dot-separated label starts and ends with a letter or digit.
    for label in name.split('.') {
        let bytes = label.as_bytes();
        if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
            return err(
                "each dot-separated part must start and end with a lowercase letter or digit",
            );
        }
    }
    Ok(())
}

/// An error and its causes on one line, `error: cause: cause`: how tenure
/// logs errors, and how the CLI prints them. Each cause appears once,
/// because tenure's errors put only their own words in their message and
/// leave the client library's to [`source`](std::error::Error::source).
///
/// ```
/// use tenure_core::{ErrorChain, StoreError};
///
/// let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
/// let e = StoreError::unavailable("redis GET").with_source(io);
/// assert_eq!(
///     ErrorChain(&e).to_string(),
///     "store unavailable: redis GET: connection refused"
/// );
/// ```
#[derive(Clone, Copy)]
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut said = self.0.to_string();
        f.write_str(&said)?;
        let mut cause = self.0.source();
        while let Some(e) = cause {
            // Client libraries often repeat their source in their own
            // message (kube's `ServiceError: {source}`): say it once.
            let text = e.to_string();
            if !said.contains(&text) {
                write!(f, ": {text}")?;
            }
            said = text;
            cause = e.source();
        }
        Ok(())
    }
}

impl fmt::Debug for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_names() {
        for ok in ["a", "lock-1", "a.b-c", &"x".repeat(253)] {
            assert!(validate_lock_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "A",
            "a b",
            "a/b",
            "a_b",
            "ü",
            &"x".repeat(254),
        ] {
            assert!(
                matches!(validate_lock_name(bad), Err(StoreError::InvalidName { .. })),
                "{bad}"
            );
        }
    }
}
