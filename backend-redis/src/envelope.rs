//! The value stored under a lock's key: the record and its version counter.

use serde::Deserialize;
use serde_json::value::RawValue;
use tenure_core::record;
use tenure_core::{StoreError, Version, Versioned};

/// `{"version":N,"record":{...}}`, as the CAS script writes it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope<'a> {
    version: u64,
    #[serde(borrow)]
    record: &'a RawValue,
}

/// Parses a stored value into the record and its version; anything that is
/// not our envelope around a valid record is [`StoreError::Corrupt`].
pub(crate) fn decode(raw: &str) -> Result<Versioned, StoreError> {
    let envelope: Envelope<'_> = serde_json::from_str(raw).map_err(|e| {
        StoreError::corrupt(format!("the value is not a tenure lock envelope: {e}"))
    })?;
    Ok(Versioned {
        record: record::from_json(envelope.record.get())?,
        version: Version::from(envelope.version),
    })
}

/// Builds the envelope the way the script does (used by tests and docs).
#[cfg(test)]
pub(crate) fn encode(version: u64, record: &tenure_core::LeaderRecord) -> String {
    format!(
        r#"{{"version":{version},"record":{}}}"#,
        record::to_json(record)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tenure_core::LeaderRecord;

    #[test]
    fn round_trips() {
        let mut record = LeaderRecord::held_by("pod-a", Duration::from_millis(1500));
        record.leader_transitions = u64::MAX;
        let got = decode(&encode(1_764_089_000_123_456, &record)).unwrap();
        assert_eq!(got.record, record);
        assert_eq!(got.version.as_str(), "1764089000123456");
    }

    #[test]
    fn foreign_values_are_corrupt() {
        for raw in [
            "hello",
            "",
            "[]",
            "{}",
            r#"{"version":1}"#,
            r#"{"version":-1,"record":{"leaseDurationSeconds":1}}"#,
            r#"{"version":1,"record":{"name":"x"}}"#,
            r#"{"version":1,"record":{"leaseDurationSeconds":1},"extra":true}"#,
            r#"{"holderIdentity":"a","leaseDurationSeconds":1}"#,
        ] {
            assert!(
                matches!(decode(raw), Err(StoreError::Corrupt { .. })),
                "{raw:?}"
            );
        }
    }
}
