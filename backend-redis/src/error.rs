//! Mapping Redis errors to [`StoreError`], with secrets scrubbed from messages.

use redis::{ErrorKind, RedisError};
use tenure_core::StoreError;
use tenure_core::backend::Redactor;

/// Classifies a Redis error as tenure's [`StoreError`].
pub(crate) fn classify(e: RedisError, redactor: &Redactor) -> StoreError {
    let raw = e.to_string();
    let message = redactor.scrub(raw.as_str());
    // The client's error is kept as the source only when its message holds
    // no secret: the source's own Display is not scrubbed.
    let clean = message == raw;
    let kind = classify_kind(&e, message);
    if clean { kind.with_source(e) } else { kind }
}

fn classify_kind(e: &RedisError, message: String) -> StoreError {
    match e.code() {
        Some("NOAUTH" | "WRONGPASS" | "NOPERM") => return StoreError::unauthorized(message),
        Some("WRONGTYPE") => {
            return StoreError::corrupt(format!("the key does not hold a string: {message}"));
        }
        _ => {}
    }
    match e.kind() {
        ErrorKind::AuthenticationFailed => StoreError::unauthorized(message),
        ErrorKind::IoError
        | ErrorKind::BusyLoadingError
        | ErrorKind::TryAgain
        | ErrorKind::ClusterDown
        | ErrorKind::MasterDown
        | ErrorKind::ReadOnly
        | ErrorKind::Moved
        | ErrorKind::Ask
        | ErrorKind::ClusterConnectionNotFound => StoreError::unavailable(message),
        _ if e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal() => {
            StoreError::unavailable(message)
        }
        _ => StoreError::other(message),
    }
}

/// True when the connection that produced `e` must not be used again: a
/// timed-out request may still be queued on it (its reply would be matched
/// to the next request), or the connection could not authenticate.
pub(crate) fn poisons_connection(e: &RedisError) -> bool {
    e.is_timeout()
        || matches!(
            e.kind(),
            ErrorKind::AuthenticationFailed | ErrorKind::ParseError | ErrorKind::ClientError
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies() {
        let r = Redactor::default();
        let auth = RedisError::from((ErrorKind::AuthenticationFailed, "bad"));
        assert!(matches!(
            classify(auth, &r),
            StoreError::Unauthorized { .. }
        ));
        let io = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(matches!(classify(io, &r), StoreError::Unavailable { .. }));
        // The client's error is the source, unless its message holds a secret.
        let io2 = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(std::error::Error::source(&classify(io2, &r)).is_some());
        let mut secret = Redactor::default();
        secret.add("hunter2");
        let leaky = RedisError::from((ErrorKind::AuthenticationFailed, "bad", "hunter2".into()));
        let scrubbed = classify(leaky, &secret);
        assert!(std::error::Error::source(&scrubbed).is_none());
        assert!(!format!("{scrubbed:?}").contains("hunter2"));
        let other = RedisError::from((ErrorKind::TypeError, "x"));
        assert!(matches!(classify(other, &r), StoreError::Other { .. }));
    }
}
