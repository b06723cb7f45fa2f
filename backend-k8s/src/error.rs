//! Mapping `kube` errors to [`StoreError`]s.

use tenure_core::StoreError;

/// Maps a `kube` error of a request on the object `name` (a `kind`).
///
/// 401/403 → `Unauthorized` (failing to obtain credentials is `Unavailable`), 404 → `NotFound`, 409 → `Conflict`, 422 on
/// `metadata.name` → `InvalidName`, 408/429/5xx and transport errors →
/// `Unavailable`, an undecodable object → `Corrupt`, the rest → `Other`.
/// kube's messages carry no credentials (the API server's say who we are,
/// never with what).
pub(crate) fn map_error(e: kube::Error, kind: &str, name: &str) -> StoreError {
    // Each cause is said once: the API server's answer and a body that
    // does not decode are said in the message, as the whole story; a
    // failure below them (credentials, the connection) is the source, under
    // a message of our own.
    match &e {
        kube::Error::Api(status) => {
            let detail = if status.reason.is_empty() {
                status.message.clone()
            } else {
                format!("{} ({})", status.message, status.reason)
            };
            match status.code {
                401 | 403 => StoreError::unauthorized(detail),
                404 => StoreError::NotFound,
                409 => StoreError::conflict(),
                422 if status.message.contains("metadata.name") => {
                    StoreError::invalid_name(name, status.message.clone())
                }
                408 | 410 | 429 | 500..=599 => StoreError::unavailable(detail),
                code => StoreError::other(format!("HTTP {code}: {detail}")),
            }
        }
        kube::Error::SerdeError(err) => {
            StoreError::corrupt(format!("the {kind} {name:?} is not a valid {kind}: {err}"))
        }
        // Getting credentials failed (an exec plugin or a token file being
        // rotated): often transient, so not fatal; the API server's own
        // 401/403 above is.
        kube::Error::Auth(_) => StoreError::unavailable("cannot get credentials").with_source(e),
        kube::Error::HyperError(_)
        | kube::Error::Service(_)
        | kube::Error::ReadEvents(_)
        | kube::Error::FromUtf8(_)
        | kube::Error::LinesCodecMaxLineLengthExceeded => {
            StoreError::unavailable(format!("request for the {kind} {name:?} failed"))
                .with_source(e)
        }
        _ => StoreError::other(format!("request for the {kind} {name:?} failed")).with_source(e),
    }
}

/// The error of a write that lost a race, given a read made after it: a
/// conflict carrying what the lock holds now (so the elector need not read
/// again), or the read's `Corrupt` (never hide an unreadable object).
pub(crate) fn conflict_after(
    read: Result<Option<tenure_core::Versioned>, StoreError>,
) -> StoreError {
    match read {
        Ok(current) => StoreError::Conflict {
            current: current.map(Box::new),
        },
        Err(e @ StoreError::Corrupt { .. }) => e,
        Err(_) => StoreError::conflict(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16, message: &str) -> kube::Error {
        let status: kube::core::Status = serde_json::from_value(serde_json::json!({
            "status": "Failure", "message": message, "reason": "Invalid", "code": code
        }))
        .unwrap();
        kube::Error::Api(Box::new(status))
    }

    #[test]
    fn statuses_map_to_kinds() {
        let name_422 = api(
            422,
            "Lease.coordination.k8s.io \"a..b\" is invalid: metadata.name: Invalid value",
        );
        assert!(matches!(
            map_error(name_422, "Lease", "a..b"),
            StoreError::InvalidName { .. }
        ));
        assert!(matches!(
            map_error(api(422, "spec: Invalid"), "Lease", "x"),
            StoreError::Other { .. }
        ));
        assert!(matches!(
            map_error(api(403, "forbidden"), "Lease", "x"),
            StoreError::Unauthorized { .. }
        ));
        assert!(matches!(
            map_error(api(409, "conflict"), "Lease", "x"),
            StoreError::Conflict { .. }
        ));
        assert!(matches!(
            map_error(api(503, "down"), "Lease", "x"),
            StoreError::Unavailable { .. }
        ));
    }
}
