//! Bugs planted on purpose, for the simulation's negative controls: a
//! harness that reports no failure with one of these switched on is itself
//! broken. Compiled only with the `planted-bugs` feature, and off unless a
//! test switches one on (per thread, so parallel tests do not mix).

use std::cell::Cell;

/// A known-unsafe variant of one safety rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Bug {
    /// A term is valid from the *reply* of the last successful renew, not
    /// from its request's start.
    ValidityFromReply,
    /// A record that disappeared is a free lock at once.
    DeletedRecordIsFree,
    /// A new version counts as a change even when the record is the same.
    ChangeByVersion,
    /// A takeover's token comes from the record and the tokens seen only,
    /// never from the store's floor.
    TakeoverIgnoresFloor,
    /// A record erased in place (no holder, no lease) is a free lock.
    ErasedRecordIsFree,
    /// A leader's renew adopts any record with its identity and token,
    /// also one another incarnation wrote.
    AdoptOtherIncarnation,
    /// `is_leader` and the state follow the election task, not validity.
    StateLagsValidity,
    /// `lock_delay` is waited before a candidate that never saw a record
    /// creates one (from the first time it found none), and a created
    /// record's term starts at once: a record created and lost between two
    /// of its looks, or while it was blind, goes unseen.
    LockDelayBeforeCreate,
    /// A renew that failed (unavailable, timed out) extends the term's
    /// validity as a successful one would.
    FailedRenewCountsAsDone,
    /// Shards: a member's share is every shard (it ignores the others).
    ShardIgnoresShare,
    /// Shards: a shard is released as soon as its work is told to stop,
    /// while the work still drains.
    ShardReleaseBeforeDrain,
}

thread_local! {
    static PLANTED: Cell<Option<Bug>> = const { Cell::new(None) };
}

/// Switches `bug` on (or every bug off, with `None`) for this thread.
pub fn plant(bug: Option<Bug>) {
    PLANTED.with(|p| p.set(bug));
}

/// True when `bug` is switched on for this thread.
pub(crate) fn is(bug: Bug) -> bool {
    PLANTED.with(|p| p.get() == Some(bug))
}
