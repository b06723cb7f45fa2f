//! Mapping etcd client errors to [`StoreError`], without secrets.

use etcd_client::Error;
use tenure_core::StoreError;
use tonic::Code;

/// Maps an etcd client error to a [`StoreError`]. Only the gRPC code and
/// the server's message are kept: neither carries the request's
/// credentials or token.
pub(crate) fn map_error(err: Error) -> StoreError {
    // Each cause is said once: a gRPC status (the server's answer) in the
    // message, as the whole story; a failure below it as the source, under
    // a message of our own.
    let words = match &err {
        Error::GRpcStatus(status) => return map_status(status.code(), status.message()),
        Error::TransportError(_) | Error::IoError(_) | Error::WatchError(_) => {
            return StoreError::unavailable("etcd connection failed").with_source(err);
        }
        Error::InvalidUri(_) => "invalid etcd endpoint",
        Error::InvalidArgs(_) => "invalid etcd client arguments",
        Error::EndpointError(_) => "etcd endpoint error",
        _ => return StoreError::other("etcd client error").with_source(err),
    };
    StoreError::invalid_config(words).with_source(err)
}

/// True when the call failed before the request reached a server (the
/// connection could not be made), so retrying it is always safe.
pub(crate) fn is_connect_error(err: &Error) -> bool {
    match err {
        Error::GRpcStatus(status) => {
            status.code() == Code::Unavailable && status.message().contains("connect error")
        }
        _ => false,
    }
}

fn map_status(code: Code, message: &str) -> StoreError {
    let msg = format!("etcd: {message} ({code:?})");
    match code {
        Code::Unauthenticated | Code::PermissionDenied => StoreError::unauthorized(msg),
        // etcd reports a wrong user or password as InvalidArgument
        // ("etcdserver: authentication failed, invalid user ID or password"),
        // and "user name is empty" / "authentication is not enabled" as
        // InvalidArgument / FailedPrecondition.
        Code::InvalidArgument | Code::FailedPrecondition
            if message.contains("authentication") || message.contains("user name") =>
        {
            StoreError::unauthorized(msg)
        }
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::ResourceExhausted
        | Code::Aborted
        | Code::Unavailable => StoreError::unavailable(msg),
        // tonic reports broken connections as Unknown with a transport message.
        Code::Unknown if message.contains("transport") || message.contains("connection") => {
            StoreError::unavailable(msg)
        }
        _ => StoreError::other(msg),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_kinds() {
        let wrong_pw = map_status(
            Code::InvalidArgument,
            "etcdserver: authentication failed, invalid user ID or password",
        );
        assert!(matches!(wrong_pw, StoreError::Unauthorized { .. }));
        assert!(matches!(
            map_status(Code::PermissionDenied, "etcdserver: permission denied"),
            StoreError::Unauthorized { .. }
        ));
        assert!(matches!(
            map_status(Code::Unavailable, "etcdserver: no leader"),
            StoreError::Unavailable { .. }
        ));
        assert!(matches!(
            map_status(Code::InvalidArgument, "etcdserver: key is not provided"),
            StoreError::Other { .. }
        ));
    }
}
