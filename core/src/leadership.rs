//! What a leader holds while it leads, and the state anyone can observe.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use crate::clock::Clock;
use crate::record::Version;

/// One term of leadership, handed to the leader's work.
///
/// It carries a fencing token (`leader_transitions` when the term was won,
/// strictly increasing from term to term) and knows whether the term is
/// still valid *now* by the local clock: until the start of the last
/// successful renew plus `renew_deadline`, never longer.
///
/// ```no_run
/// # async fn write_with_token(_: u64) {}
/// # async fn example(leadership: tenure_core::Leadership) {
/// while !leadership.is_cancelled() {
///     if leadership.is_valid() {
///         write_with_token(leadership.fencing_token()).await;
///     }
///     tokio::select! {
///         _ = leadership.cancelled() => break,
///         _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
///     }
/// }
/// # }
/// ```
#[derive(Clone)]
pub struct Leadership {
    inner: Arc<LeadershipInner>,
}

struct LeadershipInner {
    token: u64,
    version: Version,
    identity: String,
    lock: String,
    stop: CancellationToken,
    /// Until when the term is valid; receivers are told of each change.
    valid_until: watch::Sender<Instant>,
    clock: Arc<dyn Clock>,
    /// Set before `stop` fires when another writer ended the term.
    taken: std::sync::atomic::AtomicBool,
}

impl fmt::Debug for Leadership {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Leadership")
            .field("lock", &self.inner.lock)
            .field("identity", &self.inner.identity)
            .field("fencing_token", &self.inner.token)
            .field("valid", &self.is_valid())
            .finish()
    }
}

impl Leadership {
    /// `stop` fires when the work must stop: a child of the elector's
    /// shutdown token, so a shutdown reaches the work in the same call that
    /// wakes the election task (the release then waits for one task hop
    /// fewer), and the election task cancels it itself on a lost term.
    pub(crate) fn new(
        token: u64,
        version: Version,
        identity: String,
        lock: String,
        valid_until: Instant,
        clock: Arc<dyn Clock>,
        stop: CancellationToken,
    ) -> Self {
        Leadership {
            inner: Arc::new(LeadershipInner {
                token,
                version,
                identity,
                lock,
                stop,
                valid_until: watch::Sender::new(valid_until),
                clock,
                taken: std::sync::atomic::AtomicBool::new(false),
            }),
        }
    }

    /// The fencing token: `leader_transitions` at the moment this term was
    /// won. Downstream systems can reject writes carrying a smaller token.
    pub fn fencing_token(&self) -> u64 {
        self.inner.token
    }

    /// The store's version of the write that won this term. On etcd it is
    /// the cluster revision of that write (`EtcdStore::revision_of`), which
    /// rises across every key of the cluster: a second fencing token that
    /// also orders terms of different locks.
    pub fn version(&self) -> &Version {
        &self.inner.version
    }

    /// Our identity.
    pub fn identity(&self) -> &str {
        &self.inner.identity
    }

    /// The lock's description (the store's
    /// [`describe`](crate::LockStore::describe), e.g. `redis://host:6379/0 key tenure:{jobs}`).
    pub fn lock_description(&self) -> &str {
        &self.inner.lock
    }

    /// True while the term is still ours by the local clock: before the
    /// start of the last successful renew plus `renew_deadline`.
    pub fn is_valid(&self) -> bool {
        self.inner.clock.now() < self.valid_until()
    }

    /// The instant (on the elector's clock) until which the term is valid
    /// unless renewed again.
    pub fn valid_until(&self) -> Instant {
        *self.inner.valid_until.borrow()
    }

    /// A receiver of [`valid_until`](Self::valid_until), woken each time it
    /// changes: a renew extends it, the end of the term brings it to now.
    /// For passing the deadline on (to a process that must stop by it, or
    /// a downstream that checks it) without polling.
    ///
    /// ```no_run
    /// # async fn tell_downstream(_: tokio::time::Instant) {}
    /// # async fn example(leadership: tenure_core::Leadership) {
    /// let mut validity = leadership.validity();
    /// loop {
    ///     let until = *validity.borrow_and_update();
    ///     tell_downstream(until).await;
    ///     tokio::select! {
    ///         _ = leadership.cancelled() => break,
    ///         changed = validity.changed() => if changed.is_err() { break },
    ///     }
    /// }
    /// # }
    /// ```
    pub fn validity(&self) -> watch::Receiver<Instant> {
        self.inner.valid_until.subscribe()
    }

    /// Resolves when the work must stop: leadership was lost, or the elector
    /// is shutting down (it keeps the lease until the work has returned).
    pub fn cancelled(&self) -> WaitForCancellationFuture<'_> {
        self.inner.stop.cancelled()
    }

    /// True when the term ended because another writer took, released or
    /// deleted the record while the term was still ours by its lease (a
    /// pre-emption by holder key, an operator, a peer's bad release). A
    /// successor may then lead at once: work that stops gracefully (a
    /// drain, a grace period) overlaps it, so stop at once where you can.
    /// Set before [`cancelled`](Self::cancelled) resolves; false for every
    /// other end (shutdown, the lease running out, a refusing store).
    ///
    /// `tenure run` kills its command at once (SIGKILL) in this case, and
    /// gives it the grace period otherwise.
    pub fn was_taken(&self) -> bool {
        self.inner.taken.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Marks the term as ended by another writer (before it is cancelled).
    pub(crate) fn mark_taken(&self) {
        self.inner
            .taken
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// True once the work has been asked to stop.
    pub fn is_cancelled(&self) -> bool {
        self.inner.stop.is_cancelled()
    }

    /// A cancellation token that fires when the work must stop, for APIs
    /// that take one.
    pub fn cancellation_token(&self) -> CancellationToken {
        self.inner.stop.clone()
    }

    pub(crate) fn extend(&self, until: Instant) {
        self.inner.valid_until.send_if_modified(|v| {
            let modified = *v != until;
            *v = until;
            modified
        });
    }

    pub(crate) fn stop_work(&self) {
        self.inner.stop.cancel();
    }

    /// Ends the term: the work is told to stop and validity ends now.
    pub(crate) fn end(&self) {
        self.stop_work();
        let now = self.inner.clock.now();
        self.inner.valid_until.send_if_modified(|until| {
            let modified = *until > now;
            if modified {
                *until = now;
            }
            modified
        });
    }
}

/// What an elector currently believes, published on
/// [`LeaderElector::subscribe`](crate::LeaderElector::subscribe).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ElectionState {
    /// The holder we last observed (`None`: free or not yet read). A store
    /// that cannot name the holder reports [`UNKNOWN_HOLDER`](crate::UNKNOWN_HOLDER),
    /// and so does this field; `on_new_leader` is never called with it.
    pub leader: Option<String>,
    /// True while this candidate leads: from the moment its term begins
    /// (published together with `leader` naming it) until its validity ends
    /// (before a release is written, not after).
    pub is_leader: bool,
    /// Our fencing token while we lead.
    pub fencing_token: Option<u64>,
    /// When the observed holder's term began: the record's acquire time,
    /// by the clock of the candidate that wrote it (`None`: free, or not
    /// yet read).
    pub acquire_time: Option<SystemTime>,
    /// The record's transition count as last observed (client-go's
    /// `leaderTransitions`; a holder's fencing token), free records
    /// included (`None`: not yet read).
    pub leader_transitions: Option<u64>,
}
