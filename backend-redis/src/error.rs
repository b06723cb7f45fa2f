//! Mapping Redis errors to [`StoreError`], with secrets scrubbed from messages.

use redis::{ErrorKind, RedisError};
use tenure_core::StoreError;
use tenure_core::backend::Redactor;

/// Classifies a Redis error as tenure's [`StoreError`].
///
/// The message is the client's own, scrubbed of secrets, and there is no
/// source: a Redis error's text is the whole story (its I/O cause
/// included), so a chain says it once, and an unscrubbed copy of it can
/// never leak through `source()`.
pub(crate) fn classify(e: RedisError, redactor: &Redactor) -> StoreError {
    classify_kind(&e, redactor.scrub(e.to_string()))
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
        // The client's text is said once, in the message, with no source.
        let io2 = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        let said = classify(io2, &r);
        assert!(std::error::Error::source(&said).is_none());
        let chain = tenure_core::ErrorChain(&said).to_string();
        assert_eq!(chain.matches("refused").count(), 1, "{chain}");
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
