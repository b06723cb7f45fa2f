//! How a MultiLock sees its two objects as one lock: one version that
//! covers both `resourceVersion`s, and one record.

use tenure_core::{LeaderRecord, StoreError, Version, Versioned};

use crate::wire::UNKNOWN_LEADER;

/// Stands for an absent object in a MultiLock version.
const ABSENT: &str = "-";
/// Between the ConfigMap's and the Lease's part of a MultiLock version.
const SEPARATOR: char = '/';

/// The MultiLock version of the ConfigMap at `primary` and the Lease at
/// `secondary` (`None`: absent): `"<configmap rv>/<lease rv>"`, `-` for an
/// absent object. A write to either object moves it.
///
/// Kubernetes `resourceVersion`s are opaque but in every API server a
/// decimal etcd revision; one that could not be told apart from the
/// separator or the absent mark is refused rather than guessed at.
pub(crate) fn join(
    primary: Option<&Version>,
    secondary: Option<&Version>,
) -> Result<Version, StoreError> {
    let part = |v: Option<&Version>| match v {
        None => Ok(ABSENT.to_owned()),
        Some(v) if v.as_str() == ABSENT || v.as_str().contains(SEPARATOR) => Err(
            StoreError::other(format!("unexpected resourceVersion {:?}", v.as_str())),
        ),
        Some(v) => Ok(v.as_str().to_owned()),
    };
    Ok(Version::new(format!(
        "{}{SEPARATOR}{}",
        part(primary)?,
        part(secondary)?
    )))
}

/// The two objects' versions in a MultiLock version, `None` for each one
/// that was absent; `None` altogether for a version that is not a
/// MultiLock's (which can then only be a conflict).
pub(crate) fn split(version: &Version) -> Option<(Option<Version>, Option<Version>)> {
    let (primary, secondary) = version.as_str().split_once(SEPARATOR)?;
    let part = |p: &str| match p {
        "" => None,
        ABSENT => Some(None),
        p if p.contains(SEPARATOR) => None,
        p => Some(Some(Version::new(p))),
    };
    Some((part(primary)?, part(secondary)?))
}

/// The lock as the ConfigMap (`primary`) and the Lease (`secondary`) hold
/// it, each `None` when absent: see [`MultiLock`](crate::MultiLock).
pub(crate) fn merge(
    primary: Option<Versioned>,
    secondary: Option<Versioned>,
) -> Result<Option<Versioned>, StoreError> {
    let version = join(
        primary.as_ref().map(|p| &p.version),
        secondary.as_ref().map(|s| &s.version),
    )?;
    let record = match (primary, secondary) {
        (None, None) => return Ok(None),
        // One object alone is the lock: a ConfigMap-only or Lease-only
        // candidate's, which may well be leading on it.
        (Some(only), None) | (None, Some(only)) => only.record,
        (Some(p), Some(s)) => merge_records(p.record, s.record),
    };
    Ok(Some(Versioned { record, version }))
}

/// One record for two: the same record when they agree (as after every
/// MultiLock write). When they differ:
///
/// - the holder is theirs if they name the same one, else
///   [`UNKNOWN_LEADER`] (client-go), so nobody takes the lock before it
///   has been unchanged for a lease; the holder key is the ConfigMap's
///   (client-go reports the primary's record);
/// - `leader_transitions` and `lease_duration` are the larger of the two:
///   a new term's fencing token is above both objects' (client-go counts
///   from the primary alone, and a Lease-only fleet's terms would be
///   counted again), and followers wait the longer lease;
/// - `acquire_time` and `renew_time` are the earlier and the later of the
///   two renew times, so that a renew of *either* object changes the
///   record: followers wait a lease from the last change they saw, and a
///   Lease-only (or ConfigMap-only) leader renewing its object must count
///   as one, whatever its clock says. (The times are informational.)
fn merge_records(p: LeaderRecord, s: LeaderRecord) -> LeaderRecord {
    if p == s {
        return p;
    }
    let same_times = p.acquire_time == s.acquire_time && p.renew_time == s.renew_time;
    let (acquire_time, renew_time) = if p.holder_identity == s.holder_identity && same_times {
        (p.acquire_time, p.renew_time)
    } else {
        (
            p.renew_time.min(s.renew_time),
            p.renew_time.max(s.renew_time),
        )
    };
    let holder_identity = if p.holder_identity == s.holder_identity {
        p.holder_identity
    } else {
        UNKNOWN_LEADER.to_owned()
    };
    {
        let mut r = LeaderRecord::default();
        r.holder_identity = holder_identity;
        r.holder_key = p.holder_key;
        r.lease_duration = p.lease_duration.max(s.lease_duration);
        r.acquire_time = acquire_time;
        r.renew_time = renew_time;
        r.leader_transitions = p.leader_transitions.max(s.leader_transitions);
        r
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;

    fn v(s: &str) -> Version {
        Version::new(s)
    }

    fn record(holder: &str, renewed: u64, transitions: u64) -> LeaderRecord {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(renewed);
        {
            let mut r = LeaderRecord::default();
            r.holder_identity = holder.into();
            r.holder_key = String::new();
            r.lease_duration = Duration::from_secs(15);
            r.acquire_time = Some(t);
            r.renew_time = Some(t);
            r.leader_transitions = transitions;
            r
        }
    }

    fn at(record: LeaderRecord, version: &str) -> Option<Versioned> {
        Some(Versioned {
            record,
            version: v(version),
        })
    }

    #[test]
    fn versions_round_trip_and_mark_absent_objects() {
        for (p, s, joined) in [
            (Some(v("12")), Some(v("34")), "12/34"),
            (Some(v("12")), None, "12/-"),
            (None, Some(v("34")), "-/34"),
            (None, None, "-/-"),
        ] {
            let version = join(p.as_ref(), s.as_ref()).unwrap();
            assert_eq!(version.as_str(), joined);
            assert_eq!(split(&version), Some((p, s)));
        }
        for not_ours in ["", "12", "/", "1/", "/2", "1/2/3", "-/-/-"] {
            assert_eq!(split(&v(not_ours)), None, "{not_ours:?}");
        }
        assert!(join(Some(&v("a/b")), None).is_err());
        assert!(join(None, Some(&v("-"))).is_err());
    }

    #[test]
    fn agreeing_objects_are_their_record() {
        let r = record("a", 100, 3);
        let merged = merge(at(r.clone(), "1"), at(r.clone(), "2"))
            .unwrap()
            .unwrap();
        assert_eq!((merged.record, merged.version.as_str()), (r, "1/2"));
        assert_eq!(merge(None, None).unwrap(), None);
    }

    #[test]
    fn one_object_alone_is_the_lock() {
        let r = record("lease-only", 100, 3);
        let merged = merge(None, at(r.clone(), "9")).unwrap().unwrap();
        assert_eq!((merged.record, merged.version.as_str()), (r.clone(), "-/9"));
        let merged = merge(at(r.clone(), "9"), None).unwrap().unwrap();
        assert_eq!((merged.record, merged.version.as_str()), (r, "9/-"));
    }

    #[test]
    fn different_holders_are_unknown_with_the_larger_counts() {
        let mut p = record("a", 100, 3);
        p.holder_key = "key-a".into();
        let mut s = record("b", 200, 7);
        s.lease_duration = Duration::from_secs(30);
        let merged = merge_records(p, s);
        assert_eq!(merged.holder_identity, UNKNOWN_LEADER);
        assert_eq!(merged.holder_key, "key-a");
        assert_eq!(merged.leader_transitions, 7);
        assert_eq!(merged.lease_duration, Duration::from_secs(30));
        // A free object beside a held one is not a free lock.
        let merged = merge_records(record("", 100, 3), record("b", 200, 3));
        assert!(!merged.is_free());
    }

    #[test]
    fn a_renew_of_either_object_changes_the_record() {
        // However the writers' clocks compare: the ConfigMap's renew time
        // may be ahead of the Lease's, or behind.
        for cm_renewed in [50, 100, 10_000] {
            let cm = record("a", cm_renewed, 3);
            let mut seen = vec![merge_records(cm.clone(), record("b", 100, 4))];
            for renewed in [101, 102, 103] {
                seen.push(merge_records(cm.clone(), record("b", renewed, 4)));
            }
            for renewed in [cm_renewed + 1, cm_renewed + 2] {
                seen.push(merge_records(record("a", renewed, 3), record("b", 103, 4)));
            }
            for pair in seen.windows(2) {
                assert_ne!(pair[0], pair[1], "ConfigMap renewed at {cm_renewed}");
            }
        }
        // Same holder (one identity on both kinds of lock), one renewing.
        let a = merge_records(record("a", 100, 3), record("a", 200, 3));
        let b = merge_records(record("a", 100, 3), record("a", 201, 3));
        assert_eq!(a.holder_identity, "a");
        assert_ne!(a, b);
    }
}
