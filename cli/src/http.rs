//! `tenure run --http ADDR`: the sidecar's endpoints.
//!
//! - `/healthz`: client-go's `HealthzAdaptor` rule: fails only while
//!   leading and not renewed for longer than the lease plus a tolerance;
//!   never fails a follower or a candidate stepping down.
//! - `/readyz`: `always`, or `leader` (ready only while leading).
//! - `/leader`: JSON, what this candidate sees: `leader` (the holder, or
//!   null), `identity`, `isLeader`, `fencingToken` (while leading),
//!   `termStart` (the holder's acquire time, RFC 3339), `leaseTransitions`
//!   and `lock`.
//! - `/metrics`: Prometheus text from the library's `metrics` calls.
//!
//! Its own task, one task per connection, bounded work per request: the
//! server never delays the election or the supervisor.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::PrometheusHandle;
use tenure::{CancellationToken, LeaderElector};
use tokio::net::TcpListener;

/// When `/readyz` says ready.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Ready {
    /// Always (the process is up).
    Always,
    /// Only while this candidate leads.
    Leader,
}

/// What the endpoints read.
pub(crate) struct Endpoints {
    /// The candidate and its store's description, once the store answered
    /// (`--wait-for-store` serves before).
    pub(crate) elector: OnceLock<(LeaderElector, String)>,
    /// The lock URL, secrets redacted: the lock's name until then.
    pub(crate) url: String,
    pub(crate) identity: String,
    pub(crate) tolerance: Duration,
    pub(crate) ready: Ready,
    pub(crate) metrics: Option<PrometheusHandle>,
}

/// Binds `addr` and serves until `shutdown`; returns the bound address.
pub(crate) async fn serve(
    addr: SocketAddr,
    endpoints: Arc<Endpoints>,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                _ = shutdown.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(_) => continue,
                },
            };
            let endpoints = endpoints.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let endpoints = endpoints.clone();
                    async move { Ok::<_, Infallible>(answer(&endpoints, &req)) }
                });
                let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
                // A client that holds a connection open costs one task, and
                // a timeout ends it.
                let _ = tokio::time::timeout(Duration::from_secs(30), conn).await;
            });
        }
    });
    Ok(bound)
}

fn answer(endpoints: &Endpoints, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let elector = endpoints.elector.get();
    match req.uri().path() {
        "/healthz" => match elector.map(|(e, _)| e.check(endpoints.tolerance)) {
            // Waiting for the store is healthy: a restart would not help.
            None | Some(Ok(())) => text(StatusCode::OK, "ok\n".to_owned()),
            Some(Err(e)) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
        },
        "/readyz" => {
            let ready = match endpoints.ready {
                Ready::Always => true,
                Ready::Leader => elector.is_some_and(|(e, _)| e.is_leader()),
            };
            match ready {
                true => text(StatusCode::OK, "ready\n".to_owned()),
                false => text(StatusCode::SERVICE_UNAVAILABLE, "not leading\n".to_owned()),
            }
        }
        "/leader" => {
            let state = elector.map(|(e, _)| e.state()).unwrap_or_default();
            let lock = elector.map_or(&endpoints.url, |(_, store)| store);
            let body = serde_json::json!({
                "leader": state.leader,
                "identity": endpoints.identity,
                "isLeader": state.is_leader,
                "fencingToken": state.fencing_token,
                "termStart": state.acquire_time.map(|t| {
                    chrono::DateTime::<chrono::Utc>::from(t)
                        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                }),
                "leaseTransitions": state.leader_transitions,
                "lock": lock,
            });
            let mut response = text(StatusCode::OK, format!("{body}\n"));
            response.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/json"),
            );
            response
        }
        "/metrics" => match &endpoints.metrics {
            Some(handle) => text(StatusCode::OK, handle.render()),
            None => text(StatusCode::NOT_FOUND, "metrics are off\n".to_owned()),
        },
        _ => text(StatusCode::NOT_FOUND, "not found\n".to_owned()),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}
