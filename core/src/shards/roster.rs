//! Who is alive, as one member sees the member slots: each slot is a tenure
//! lock, and a slot's holder is alive while its record keeps changing
//! (every renew writes a new renew time), judged by this member's own clock
//! as a follower judges a leader. No clock of another machine is read.

use std::time::Duration;

use tokio::time::Instant;

use crate::record::LeaderRecord;

/// What one slot showed last, and when that changed.
#[derive(Debug, Default)]
struct Seen {
    record: Option<LeaderRecord>,
    changed_at: Option<Instant>,
}

/// The member slots as seen from here.
#[derive(Debug)]
pub(crate) struct Roster {
    slots: Vec<Seen>,
    lease: Duration,
}

/// A live member: its lowest slot and its identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Member {
    pub(crate) slot: u32,
    pub(crate) identity: String,
}

impl Roster {
    pub(crate) fn new(slots: u32, lease: Duration) -> Roster {
        Roster {
            slots: (0..slots).map(|_| Seen::default()).collect(),
            lease,
        }
    }

    /// Records what slot `slot` holds now (`None`: no record).
    pub(crate) fn observe(&mut self, slot: u32, record: Option<LeaderRecord>, now: Instant) {
        let seen = &mut self.slots[slot as usize];
        if seen.changed_at.is_none() || seen.record != record {
            seen.record = record;
            seen.changed_at = Some(now);
        }
    }

    /// True if the slot's holder is alive by what we saw: held, and
    /// changed within the longer of its lease and ours.
    fn is_live(&self, slot: &Seen, now: Instant) -> bool {
        let (Some(record), Some(changed_at)) = (&slot.record, slot.changed_at) else {
            return false;
        };
        if record.known_holder().is_none() {
            return false;
        }
        let lease = record.lease_duration.max(self.lease);
        now.saturating_duration_since(changed_at) < lease
    }

    /// The live members, by lowest slot; `me` (this member, when it holds
    /// `my_slot`) counts whatever the records say, since our own renews
    /// keep it alive.
    pub(crate) fn live(&self, now: Instant, me: Option<Member>) -> Vec<Member> {
        let mut members: Vec<Member> = Vec::new();
        for (i, seen) in self.slots.iter().enumerate() {
            let slot = i as u32;
            let identity = match &me {
                Some(m) if m.slot == slot => m.identity.clone(),
                _ if self.is_live(seen, now) => {
                    seen.record.as_ref().unwrap().holder_identity.clone()
                }
                _ => continue,
            };
            // One identity in two slots (a restarted member whose old slot
            // has not run out yet) is one member.
            if !members.iter().any(|m| m.identity == identity) {
                members.push(Member { slot, identity });
            }
        }
        members
    }

    /// The lowest slot nobody alive holds, other than `except`.
    pub(crate) fn free_slot(&self, now: Instant, except: Option<u32>) -> Option<u32> {
        (0..self.slots.len() as u32)
            .find(|&s| Some(s) != except && !self.is_live(&self.slots[s as usize], now))
    }

    /// The holder slot `slot` shows, alive or not.
    pub(crate) fn holder(&self, slot: u32) -> Option<&str> {
        self.slots[slot as usize]
            .record
            .as_ref()
            .and_then(LeaderRecord::known_holder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(by: &str, renew: u64) -> Option<LeaderRecord> {
        Some(LeaderRecord {
            holder_identity: by.into(),
            lease_duration: Duration::from_secs(15),
            renew_time: Some(std::time::UNIX_EPOCH + Duration::from_secs(renew)),
            ..LeaderRecord::default()
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_slot_is_live_while_its_record_changes_within_the_lease() {
        let lease = Duration::from_secs(15);
        let mut r = Roster::new(3, lease);
        let t0 = Instant::now();
        r.observe(0, held("a", 1), t0);
        r.observe(1, None, t0);
        r.observe(2, Some(LeaderRecord::default()), t0); // released
        let ids = |v: Vec<Member>| v.into_iter().map(|m| m.identity).collect::<Vec<_>>();
        assert_eq!(ids(r.live(t0, None)), ["a"]);
        assert_eq!(r.free_slot(t0, None), Some(1));
        // Unchanged for 14 s: still alive; a renew at 14 s; unchanged again
        // until 29 s: alive; 29 s after: gone.
        assert_eq!(ids(r.live(t0 + Duration::from_secs(14), None)), ["a"]);
        r.observe(0, held("a", 2), t0 + Duration::from_secs(14));
        r.observe(0, held("a", 2), t0 + Duration::from_secs(20));
        assert_eq!(ids(r.live(t0 + Duration::from_secs(28), None)), ["a"]);
        assert!(r.live(t0 + Duration::from_secs(29), None).is_empty());
        assert_eq!(r.free_slot(t0 + Duration::from_secs(29), None), Some(0));
    }

    #[tokio::test(start_paused = true)]
    async fn our_own_slot_counts_and_an_identity_counts_once() {
        let mut r = Roster::new(3, Duration::from_secs(15));
        let t0 = Instant::now();
        r.observe(0, held("b", 1), t0);
        r.observe(1, held("b", 1), t0);
        let me = Member {
            slot: 2,
            identity: "a".into(),
        };
        let live = r.live(t0, Some(me.clone()));
        assert_eq!(
            live,
            [
                Member {
                    slot: 0,
                    identity: "b".into()
                },
                me
            ]
        );
        assert_eq!(r.free_slot(t0, None), Some(2));
        assert_eq!(r.free_slot(t0, Some(2)), None);
    }
}
