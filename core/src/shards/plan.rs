//! The pure part of sharding: each member's share, which shards it
//! prefers, and what it should do about its holdings. No I/O, no clock.

use std::collections::BTreeSet;

/// How many shards the member of `rank` (0-based, among `live` members
/// ordered by member slot) should hold: `shards / live`, one more for the
/// first `shards % live` ranks. The shares add up to `shards` exactly, so
/// when every member holds its share every shard is owned and any two
/// members differ by at most one.
pub(crate) fn share(shards: u32, live: u32, rank: u32) -> u32 {
    if live == 0 || rank >= live {
        return 0;
    }
    shards / live + u32::from(rank < shards % live)
}

/// A member's preference for a shard (rendezvous hashing): members prefer
/// different shards, so they rarely campaign for the same one, and a
/// member's order does not change when others come and go.
pub(crate) fn weight(identity: &str, shard: u32) -> u64 {
    // FNV-1a, then a finaliser (splitmix64) to spread close inputs.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in identity.bytes().chain(shard.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Every shard, most preferred first.
pub(crate) fn preference(identity: &str, shards: u32) -> Vec<u32> {
    let mut order: Vec<u32> = (0..shards).collect();
    order.sort_by_key(|&s| std::cmp::Reverse(weight(identity, s)));
    order
}

/// The `n` least preferred of `set`.
pub(crate) fn least_preferred(identity: &str, set: &BTreeSet<u32>, n: usize) -> Vec<u32> {
    let mut v: Vec<u32> = set.iter().copied().collect();
    v.sort_by_key(|&s| weight(identity, s));
    v.truncate(n);
    v
}

/// What a member does this round.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Moves {
    /// Held shards to hand back (drained, then released): the least
    /// preferred ones above the share.
    pub(crate) release: Vec<u32>,
    /// Campaigns to give up (not won yet): above the share.
    pub(crate) abandon: Vec<u32>,
    /// How many more shards to campaign for.
    pub(crate) wanted: u32,
}

/// Given what the member holds and campaigns for, and its share.
pub(crate) fn moves(
    identity: &str,
    held: &BTreeSet<u32>,
    campaigning: &BTreeSet<u32>,
    share: u32,
) -> Moves {
    let share = share as usize;
    let mut m = Moves::default();
    if held.len() > share {
        m.release = least_preferred(identity, held, held.len() - share);
        m.abandon = campaigning.iter().copied().collect();
        return m;
    }
    let room = share - held.len();
    if campaigning.len() > room {
        m.abandon = least_preferred(identity, campaigning, campaigning.len() - room);
    } else {
        m.wanted = (room - campaigning.len()) as u32;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up_and_differ_by_at_most_one() {
        for shards in [0, 1, 7, 64, 1024] {
            for live in 1..=12 {
                let all: Vec<u32> = (0..live).map(|r| share(shards, live, r)).collect();
                assert_eq!(all.iter().sum::<u32>(), shards, "{shards} over {live}");
                let (lo, hi) = (all.iter().min().unwrap(), all.iter().max().unwrap());
                assert!(hi - lo <= 1, "{shards} over {live}: {all:?}");
                assert!(*hi <= shards.div_ceil(live));
            }
        }
        assert_eq!(share(10, 0, 0), 0);
        assert_eq!(share(10, 3, 3), 0, "a rank past the live count has none");
        assert_eq!(
            (0..3).map(|r| share(10, 3, r)).collect::<Vec<_>>(),
            [4, 3, 3]
        );
    }

    #[test]
    fn preferences_differ_between_members_and_are_stable() {
        let a = preference("a", 64);
        let b = preference("b", 64);
        assert_ne!(a[..8], b[..8]);
        assert_eq!(a, preference("a", 64));
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..64).collect::<Vec<_>>());
    }

    #[test]
    fn a_member_above_its_share_releases_its_least_preferred() {
        let held: BTreeSet<u32> = (0..6).collect();
        let m = moves("a", &held, &BTreeSet::from([9]), 4);
        assert_eq!(m.release.len(), 2);
        assert_eq!(m.abandon, [9]);
        assert_eq!(m.wanted, 0);
        let kept: Vec<u32> = held
            .iter()
            .copied()
            .filter(|s| !m.release.contains(s))
            .collect();
        let least_kept = kept.iter().map(|&s| weight("a", s)).min().unwrap();
        assert!(m.release.iter().all(|&s| weight("a", s) < least_kept));
    }

    #[test]
    fn a_member_at_its_share_does_nothing() {
        let held: BTreeSet<u32> = (0..4).collect();
        assert_eq!(moves("a", &held, &BTreeSet::new(), 4), Moves::default());
    }

    #[test]
    fn a_member_below_its_share_campaigns_for_the_rest() {
        let held = BTreeSet::from([1]);
        let m = moves("a", &held, &BTreeSet::from([2]), 4);
        assert_eq!((m.release.len(), m.abandon.len(), m.wanted), (0, 0, 2));
        let m = moves("a", &held, &BTreeSet::from([2, 3, 5, 7]), 4);
        assert_eq!((m.release.len(), m.abandon.len(), m.wanted), (0, 1, 0));
    }
}
