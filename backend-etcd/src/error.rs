//! Mapping etcd client errors to [`StoreError`], without secrets.

use etcd_client::Error;
use tenure_core::StoreError;
use tonic::Code;

/// Maps an etcd client error to a [`StoreError`]. Only the gRPC code and
/// the server's message are kept: neither carries the request's
/// credentials or token.
pub(crate) fn map_error(err: Error) -> StoreError {
    let mapped = match &err {
        Error::GRpcStatus(status) => map_status(status.code(), status.message()),
        Error::TransportError(e) => StoreError::unavailable(format!("etcd transport error: {e}")),
        Error::IoError(e) => StoreError::unavailable(format!("etcd I/O error: {e}")),
        Error::WatchError(e) => StoreError::unavailable(format!("etcd watch error: {e}")),
        Error::InvalidUri(e) => StoreError::invalid_config(format!("invalid etcd endpoint: {e}")),
        Error::InvalidArgs(e) => {
            StoreError::invalid_config(format!("invalid etcd client arguments: {e}"))
        }
        Error::EndpointError(e) => StoreError::invalid_config(format!("etcd endpoint error: {e}")),
        other => StoreError::other(format!("etcd client error: {other}")),
    };
    mapped.with_source(err)
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
