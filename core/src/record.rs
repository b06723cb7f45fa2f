//! The lock record every store keeps, its opaque version, and the JSON form
//! that the Redis, etcd and in-memory stores write.

use std::fmt;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::store::StoreError;

/// One lock's record: the same fields client-go writes, plus Istio's holder key.
///
/// Timestamps are informational: the elector never trusts them, it only trusts
/// its own monotonic clock and the fact that the record *changed*.
///
/// ```
/// use std::time::Duration;
/// use tenure_core::LeaderRecord;
///
/// let record = LeaderRecord::held_by("pod-a", Duration::from_secs(15));
/// assert!(!record.is_free());
/// assert!(LeaderRecord::default().is_free());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LeaderRecord {
    /// Who holds the lock; empty means free (released).
    pub holder_identity: String,
    /// Istio's priority key of the holder; empty means none.
    pub holder_key: String,
    /// How long others wait after they last saw the record change.
    pub lease_duration: Duration,
    /// When the current holder acquired the lock (informational).
    pub acquire_time: Option<SystemTime>,
    /// When the current holder last renewed (informational).
    pub renew_time: Option<SystemTime>,
    /// +1 on every new term; never goes down. The fencing token of a term.
    pub leader_transitions: u64,
    /// Coordinated leader election (Kubernetes KEP-4355): the strategy of
    /// a lock the cluster's election controller manages (say
    /// `OldestEmulationVersion`); empty for an ordinary lock. The engine
    /// never creates such a record, nor takes it by expiry or pre-emption:
    /// it leads when the controller names it.
    pub strategy: String,
    /// Coordinated leader election: the candidate the controller wants to
    /// lead next (empty: none). A holder it does not name drains its work
    /// and releases at once.
    pub preferred_holder: String,
}

impl Default for LeaderRecord {
    fn default() -> Self {
        LeaderRecord {
            holder_identity: String::new(),
            holder_key: String::new(),
            lease_duration: Duration::from_secs(1),
            acquire_time: None,
            renew_time: None,
            leader_transitions: 0,
            strategy: String::new(),
            preferred_holder: String::new(),
        }
    }
}

impl LeaderRecord {
    /// A record held by `identity` for `lease_duration`, acquired and renewed now.
    pub fn held_by(identity: impl Into<String>, lease_duration: Duration) -> Self {
        let now = now_micros();
        LeaderRecord {
            holder_identity: identity.into(),
            lease_duration,
            acquire_time: Some(now),
            renew_time: Some(now),
            ..LeaderRecord::default()
        }
    }

    /// True when nobody holds the lock (the holder identity is empty).
    pub fn is_free(&self) -> bool {
        self.holder_identity.is_empty()
    }

    /// True when the lock was released by its holder: free, with a lease
    /// (tenure and client-go write 1 s). Only such a record may be taken at
    /// once.
    pub fn is_released(&self) -> bool {
        self.is_free() && !self.is_erased()
    }

    /// True when the record was erased in place: no holder and no lease,
    /// as Kubernetes reads a Lease whose spec was cleared or a ConfigMap
    /// whose leader annotation was stripped. No holder writes that (a
    /// release keeps a lease), so the engine treats it as a missing record:
    /// a lease is waited from finding it, as after a deletion.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tenure_core::LeaderRecord;
    /// let mut r = LeaderRecord::default(); // a release: lease 1 s
    /// assert!(r.is_released() && !r.is_erased());
    /// r.lease_duration = Duration::ZERO;
    /// assert!(r.is_erased() && !r.is_released());
    /// ```
    pub fn is_erased(&self) -> bool {
        self.is_free() && self.lease_duration.is_zero()
    }

    /// The holder, when the record names one: `None` for a free lock and
    /// for [`UNKNOWN_HOLDER`] (a lock that is held, by whom is not known).
    ///
    /// ```
    /// use tenure_core::{LeaderRecord, UNKNOWN_HOLDER};
    /// let mut r = LeaderRecord::default();
    /// assert_eq!(r.known_holder(), None);
    /// r.holder_identity = UNKNOWN_HOLDER.into();
    /// assert_eq!(r.known_holder(), None);
    /// assert!(!r.is_free());
    /// r.holder_identity = "pod-a".into();
    /// assert_eq!(r.known_holder(), Some("pod-a"));
    /// ```
    pub fn known_holder(&self) -> Option<&str> {
        let h = self.holder_identity.as_str();
        (!h.is_empty() && h != UNKNOWN_HOLDER).then_some(h)
    }
}

/// The holder a store reports for a lock that is held when it cannot tell
/// by whom: a Kubernetes MultiLock whose two objects name different holders
/// (client-go's `UnknownLeader`, same string). The lock is not free; the
/// engine waits a lease from its last change as for any holder, but never
/// reports it as a new leader.
pub const UNKNOWN_HOLDER: &str = "leaderelection.k8s.io/unknown";

/// The wall-clock time now, truncated to microseconds: the finest precision
/// every store keeps (Kubernetes `MicroTime`), so records round-trip exactly.
pub fn now_micros() -> SystemTime {
    truncate_micros(SystemTime::now())
}

/// `t` truncated to whole microseconds.
pub fn truncate_micros(t: SystemTime) -> SystemTime {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => SystemTime::UNIX_EPOCH + Duration::from_micros(d.as_micros() as u64),
        Err(_) => t,
    }
}

/// A store's version of a record: opaque, compared only for equality.
///
/// Redis uses a counter, etcd the key's `mod_revision`, Kubernetes the
/// object's `resourceVersion`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Version(String);

impl Version {
    /// A version from the store's own token.
    pub fn new(token: impl Into<String>) -> Self {
        Version(token.into())
    }

    /// The store's token.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<u64> for Version {
    fn from(n: u64) -> Self {
        Version(n.to_string())
    }
}

impl From<i64> for Version {
    fn from(n: i64) -> Self {
        Version(n.to_string())
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A record together with the version the store holds it at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versioned {
    /// The record.
    pub record: LeaderRecord,
    /// Its version in the store.
    pub version: Version,
}

/// The JSON form of a record, with client-go's field names plus Istio's
/// `holderKey`. `leaseDurationSeconds` may be fractional (client-go writes
/// whole seconds, which we read too).
///
/// ```json
/// {"holderIdentity":"pod-a","holderKey":"","leaseDurationSeconds":15,
///  "acquireTime":"2026-11-25T16:43:16.123456Z","renewTime":"2026-11-25T16:43:18.123456Z",
///  "leaderTransitions":3}
/// ```
///
/// `holderIdentity` must stay the first field: the etcd store's update
/// guard recognises our records by that prefix (never overwrite a foreign
/// value), and serde writes fields in declaration order.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RecordJson {
    #[serde(default)]
    holder_identity: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    holder_key: String,
    lease_duration_seconds: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    acquire_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    renew_time: Option<String>,
    #[serde(default)]
    leader_transitions: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    strategy: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    preferred_holder: String,
}

/// Formats a time as RFC 3339 in UTC with microseconds, as `MicroTime` does.
pub fn format_time(t: SystemTime) -> String {
    DateTime::<Utc>::from(t).to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Parses an RFC 3339 time (any offset, any fraction).
pub fn parse_time(s: &str) -> Result<SystemTime, StoreError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| SystemTime::from(t.with_timezone(&Utc)))
        .map_err(|e| StoreError::corrupt(format!("bad timestamp {s:?}: {e}")))
}

/// Serialises a record to the JSON form documented on this module.
pub fn to_json(record: &LeaderRecord) -> String {
    let json = RecordJson {
        holder_identity: record.holder_identity.clone(),
        holder_key: record.holder_key.clone(),
        lease_duration_seconds: record.lease_duration.as_secs_f64(),
        acquire_time: record.acquire_time.map(format_time),
        renew_time: record.renew_time.map(format_time),
        leader_transitions: record.leader_transitions,
        strategy: record.strategy.clone(),
        preferred_holder: record.preferred_holder.clone(),
    };
    serde_json::to_string(&json).expect("a record always serialises")
}

/// Parses the JSON form. Anything else (foreign JSON, a plain string, a
/// negative or missing lease) is [`StoreError::Corrupt`].
pub fn from_json(raw: &str) -> Result<LeaderRecord, StoreError> {
    let json: RecordJson = serde_json::from_str(raw)
        .map_err(|e| StoreError::corrupt(format!("not a tenure lock record: {e}")))?;
    let lease = json.lease_duration_seconds;
    if !(0.0..=1e9).contains(&lease) {
        return Err(StoreError::corrupt(format!(
            "leaseDurationSeconds {lease} is not a valid duration"
        )));
    }
    Ok(LeaderRecord {
        holder_identity: json.holder_identity,
        holder_key: json.holder_key,
        lease_duration: Duration::from_secs_f64(lease),
        acquire_time: json.acquire_time.as_deref().map(parse_time).transpose()?,
        renew_time: json.renew_time.as_deref().map(parse_time).transpose()?,
        leader_transitions: json.leader_transitions,
        strategy: json.strategy,
        preferred_holder: json.preferred_holder,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trips_every_field() {
        let record = LeaderRecord {
            holder_identity: "pød-ä 🦀".into(),
            holder_key: "k".repeat(300),
            lease_duration: Duration::from_millis(1500),
            acquire_time: Some(now_micros()),
            renew_time: Some(now_micros()),
            leader_transitions: 42,
            strategy: "OldestEmulationVersion".into(),
            preferred_holder: "pod-b".into(),
        };
        assert_eq!(from_json(&to_json(&record)).unwrap(), record);
    }

    #[test]
    fn reads_client_go_whole_seconds_and_offsets() {
        let raw = r#"{"holderIdentity":"a","leaseDurationSeconds":15,"acquireTime":"2024-01-02T03:04:05Z","renewTime":"2024-01-02T05:04:05+02:00","leaderTransitions":2}"#;
        let r = from_json(raw).unwrap();
        assert_eq!(r.lease_duration, Duration::from_secs(15));
        assert_eq!(r.acquire_time, r.renew_time);
        assert_eq!(r.leader_transitions, 2);
    }

    #[test]
    fn holder_identity_is_written_first() {
        assert!(to_json(&LeaderRecord::default()).starts_with(r#"{"holderIdentity":"#));
    }

    #[test]
    fn foreign_values_are_corrupt() {
        for raw in [
            "hello",
            "[]",
            r#"{"name":"x"}"#,
            r#"{"holderIdentity":"a","leaseDurationSeconds":-1}"#,
            r#"{"holderIdentity":"a","leaseDurationSeconds":1,"renewTime":"yesterday"}"#,
        ] {
            assert!(
                matches!(from_json(raw), Err(StoreError::Corrupt { .. })),
                "{raw}"
            );
        }
    }
}
