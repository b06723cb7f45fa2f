//! The record's two Kubernetes forms, exactly as client-go (and Istio's
//! fork) write them: a Lease `spec`, and the JSON of the ConfigMap
//! annotation `control-plane.alpha.kubernetes.io/leader`.
//!
//! Anything that is not a record, or a record with missing or negative
//! fields, is [`StoreError::Corrupt`]: such an object is reported, never
//! overwritten.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::coordination::v1::LeaseSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tenure_core::record::{format_time, parse_time, truncate_micros};
use tenure_core::{LeaderRecord, StoreError};

/// The ConfigMap annotation that holds the record (client-go's
/// `LeaderElectionRecordAnnotationKey`).
pub const LEADER_ANNOTATION: &str = "control-plane.alpha.kubernetes.io/leader";

/// The Lease annotation that holds Istio's holder key; absent when the key
/// is empty.
pub const HOLDER_KEY_ANNOTATION: &str = "leader.istio.io/holder-key";

/// The Lease annotation that holds `leader_transitions` when it exceeds
/// what the Lease's 32-bit `leaseTransitions` can hold (which then stays at
/// its maximum, so Go readers see a count that never goes down either).
pub const TRANSITIONS_ANNOTATION: &str = "tenure.rs/leader-transitions";

/// The holder a [`MultiLock`](crate::MultiLock) reports while its two
/// objects name different holders (client-go's `UnknownLeader`); the
/// engine treats it as held and never reports it as a leader.
pub const UNKNOWN_LEADER: &str = tenure_core::UNKNOWN_HOLDER;

/// Whole seconds, rounded up, as client-go's integer `leaseDurationSeconds`.
fn whole_seconds_up(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

pub(crate) fn timestamp(t: SystemTime) -> Timestamp {
    let t = truncate_micros(t);
    let nanos: i128 = match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    };
    Timestamp::from_nanosecond(nanos).unwrap_or(Timestamp::MAX)
}

fn system_time(t: Timestamp) -> SystemTime {
    let nanos = t.as_nanosecond();
    let magnitude = Duration::from_nanos(nanos.unsigned_abs().min(u64::MAX as u128) as u64);
    if nanos >= 0 {
        SystemTime::UNIX_EPOCH + magnitude
    } else {
        SystemTime::UNIX_EPOCH - magnitude
    }
}

/// Reads a record from a Lease's `spec` and annotations, as client-go's
/// `LeaseSpecToLeaderElectionRecord` does (absent fields are zero), plus
/// Istio's holder key from [`HOLDER_KEY_ANNOTATION`] (and a count above
/// `i32::MAX` from [`TRANSITIONS_ANNOTATION`]).
///
/// A Lease without a `spec` is free. A holder without
/// `leaseDurationSeconds`, or any negative field, is
/// [`StoreError::Corrupt`].
pub fn lease_to_record(
    spec: Option<&LeaseSpec>,
    annotations: Option<&BTreeMap<String, String>>,
) -> Result<LeaderRecord, StoreError> {
    let empty = LeaseSpec::default();
    let spec = spec.unwrap_or(&empty);
    let holder_identity = spec.holder_identity.clone().unwrap_or_default();
    let lease_duration = match spec.lease_duration_seconds {
        Some(s) if s < 0 => {
            return Err(StoreError::corrupt(format!(
                "Lease spec.leaseDurationSeconds is negative ({s})"
            )));
        }
        Some(s) => Duration::from_secs(s as u64),
        None if !holder_identity.is_empty() => {
            return Err(StoreError::corrupt(
                "Lease has a holder but no spec.leaseDurationSeconds",
            ));
        }
        None => Duration::ZERO,
    };
    let leader_transitions = match spec.lease_transitions {
        Some(n) if n < 0 => {
            return Err(StoreError::corrupt(format!(
                "Lease spec.leaseTransitions is negative ({n})"
            )));
        }
        Some(i32::MAX) => annotations
            .and_then(|a| a.get(TRANSITIONS_ANNOTATION))
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
            .max(i32::MAX as u64),
        Some(n) => n as u64,
        None => 0,
    };
    let annotation = |key: &str| annotations.and_then(|a| a.get(key)).cloned();
    Ok({
        let mut r = LeaderRecord::default();
        r.holder_identity = holder_identity;
        r.holder_key = annotation(HOLDER_KEY_ANNOTATION).unwrap_or_default();
        r.lease_duration = lease_duration;
        r.acquire_time = spec.acquire_time.as_ref().map(|t| system_time(t.0));
        r.renew_time = spec.renew_time.as_ref().map(|t| system_time(t.0));
        r.leader_transitions = leader_transitions;
        r.strategy = spec.strategy.clone().unwrap_or_default();
        r.preferred_holder = spec.preferred_holder.clone().unwrap_or_default();
        r
    })
}

/// Writes a record into a Lease `spec`, as client-go's
/// `LeaderElectionRecordToLeaseSpec` does: `leaseDurationSeconds` in whole
/// seconds rounded up (at least 1, which the API server requires), times as
/// `MicroTime`, `leaseTransitions` at most `i32::MAX` (see
/// [`set_lease_annotations`] for the rest), and the coordinated election's
/// `strategy` and `preferredHolder` from the record, as client-go does.
/// `base` is the Lease's current spec: its `strategy` is kept when the
/// record has none, so a coordinated Lease stays coordinated whoever
/// writes it.
pub(crate) fn record_to_lease_spec(record: &LeaderRecord, base: Option<&LeaseSpec>) -> LeaseSpec {
    let seconds = whole_seconds_up(record.lease_duration).clamp(1, i32::MAX as u64) as i32;
    let transitions = record.leader_transitions.min(i32::MAX as u64) as i32;
    LeaseSpec {
        holder_identity: Some(record.holder_identity.clone()),
        lease_duration_seconds: Some(seconds),
        acquire_time: record.acquire_time.map(|t| MicroTime(timestamp(t))),
        renew_time: record.renew_time.map(|t| MicroTime(timestamp(t))),
        lease_transitions: Some(transitions),
        strategy: Some(record.strategy.clone())
            .filter(|s| !s.is_empty())
            .or_else(|| base.and_then(|b| b.strategy.clone())),
        preferred_holder: Some(record.preferred_holder.clone()).filter(|p| !p.is_empty()),
    }
}

/// Sets [`HOLDER_KEY_ANNOTATION`] (removed when the key is empty) and
/// [`TRANSITIONS_ANNOTATION`] (removed unless the count exceeds
/// `i32::MAX`) for `record` in a Lease's `annotations`; the others are kept.
pub(crate) fn set_lease_annotations(
    annotations: &mut BTreeMap<String, String>,
    record: &LeaderRecord,
) {
    if record.holder_key.is_empty() {
        annotations.remove(HOLDER_KEY_ANNOTATION);
    } else {
        annotations.insert(HOLDER_KEY_ANNOTATION.to_owned(), record.holder_key.clone());
    }
    if record.leader_transitions > i32::MAX as u64 {
        annotations.insert(
            TRANSITIONS_ANNOTATION.to_owned(),
            record.leader_transitions.to_string(),
        );
    } else {
        annotations.remove(TRANSITIONS_ANNOTATION);
    }
}

/// The annotation JSON as written: client-go's `LeaderElectionRecord` field
/// order, with Istio's `holderKey` after the identity.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AnnotationOut<'a> {
    holder_identity: &'a str,
    holder_key: &'a str,
    lease_duration_seconds: u64,
    acquire_time: Option<String>,
    renew_time: Option<String>,
    leader_transitions: u64,
}

/// The annotation JSON as read: client-go's and Istio's fields, and the
/// two that client-go 1.31+ adds for coordinated election. Anything else is
/// not a record.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AnnotationIn {
    #[serde(default)]
    holder_identity: String,
    #[serde(default)]
    holder_key: String,
    lease_duration_seconds: f64,
    #[serde(default)]
    acquire_time: Option<String>,
    #[serde(default)]
    renew_time: Option<String>,
    #[serde(default)]
    leader_transitions: i64,
    #[serde(default)]
    #[allow(dead_code)]
    strategy: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    preferred_holder: Option<String>,
}

/// Serialises a record as the ConfigMap annotation JSON: client-go's field
/// names (`holderIdentity`, `leaseDurationSeconds` in whole seconds rounded
/// up, `acquireTime`, `renewTime` as RFC 3339 — `null` when unset, as Go
/// writes a zero time — and `leaderTransitions`) plus Istio's `holderKey`.
pub(crate) fn record_to_annotation(record: &LeaderRecord) -> String {
    let out = AnnotationOut {
        holder_identity: &record.holder_identity,
        holder_key: &record.holder_key,
        lease_duration_seconds: whole_seconds_up(record.lease_duration),
        acquire_time: record.acquire_time.map(format_time),
        renew_time: record.renew_time.map(format_time),
        leader_transitions: record.leader_transitions,
    };
    serde_json::to_string(&out).expect("a record always serialises")
}

/// Parses the ConfigMap annotation JSON (as client-go writes it).
/// Anything that is not such a record — not JSON, other JSON, a missing or
/// negative `leaseDurationSeconds`, a negative `leaderTransitions`, a bad
/// time — is [`StoreError::Corrupt`].
pub fn annotation_to_record(raw: &str) -> Result<LeaderRecord, StoreError> {
    let json: AnnotationIn = serde_json::from_str(raw).map_err(|e| {
        StoreError::corrupt(format!(
            "annotation {LEADER_ANNOTATION} is not a leader record: {e}"
        ))
    })?;
    let seconds = json.lease_duration_seconds;
    if !seconds.is_finite() || !(0.0..=1e9).contains(&seconds) {
        return Err(StoreError::corrupt(format!(
            "leaseDurationSeconds {seconds} is not a valid duration"
        )));
    }
    if json.leader_transitions < 0 {
        return Err(StoreError::corrupt(format!(
            "leaderTransitions is negative ({})",
            json.leader_transitions
        )));
    }
    let time = |t: Option<String>| match t.as_deref() {
        None | Some("") => Ok(None),
        Some(t) => parse_time(t).map(Some),
    };
    Ok({
        let mut r = LeaderRecord::default();
        r.holder_identity = json.holder_identity;
        r.holder_key = json.holder_key;
        r.lease_duration = Duration::from_secs_f64(seconds);
        r.acquire_time = time(json.acquire_time)?;
        r.renew_time = time(json.renew_time)?;
        r.leader_transitions = json.leader_transitions as u64;
        r
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_annotation_reads_back_as_the_record_it_was_written_from() {
        let record = LeaderRecord::held_by("pod-a", Duration::from_secs(15));
        assert_eq!(
            annotation_to_record(&record_to_annotation(&record)).unwrap(),
            record
        );
    }

    #[test]
    fn lease_durations_round_up_to_whole_seconds() {
        let spec = |d: Duration| {
            let record = {
                let mut r = LeaderRecord::default();
                r.lease_duration = d;
                r
            };
            record_to_lease_spec(&record, None).lease_duration_seconds
        };
        assert_eq!(spec(Duration::from_secs(15)), Some(15));
        assert_eq!(spec(Duration::from_millis(1500)), Some(2));
        assert_eq!(spec(Duration::from_millis(1)), Some(1));
        assert_eq!(spec(Duration::ZERO), Some(1));
    }

    #[test]
    fn times_round_trip_through_micro_time() {
        for t in [
            SystemTime::UNIX_EPOCH + Duration::from_micros(1_714_557_600_123_456),
            SystemTime::UNIX_EPOCH - Duration::from_micros(1_500_000),
        ] {
            assert_eq!(system_time(timestamp(t)), t);
        }
    }

    #[test]
    fn transitions_beyond_int32_go_to_an_annotation() {
        for n in [
            0,
            7,
            i32::MAX as u64,
            i32::MAX as u64 + 1,
            u32::MAX as u64 + 5,
        ] {
            let record = {
                let mut r = LeaderRecord::default();
                r.holder_identity = "a".into();
                r.leader_transitions = n;
                r
            };
            let spec = record_to_lease_spec(&record, None);
            assert_eq!(spec.lease_transitions, Some(n.min(i32::MAX as u64) as i32));
            let mut annotations = BTreeMap::from([("other".to_owned(), "x".to_owned())]);
            set_lease_annotations(&mut annotations, &record);
            assert_eq!(
                annotations.contains_key(TRANSITIONS_ANNOTATION),
                n > i32::MAX as u64
            );
            assert_eq!(annotations["other"], "x");
            let read = lease_to_record(Some(&spec), Some(&annotations)).unwrap();
            assert_eq!(read.leader_transitions, n);
        }
    }
}
