//! The Kubernetes client a lock uses when it is given none: kube's own
//! client stack, with `TCP_NODELAY` on its sockets.
//!
//! kube's connector leaves Nagle's algorithm on. A renew is a small write
//! that waits for the one before it to be acknowledged, and the server
//! delays that acknowledgement (40 ms on Linux): measured on a real
//! kube-apiserver, a graceful hand-off took 57 ms with kube's client and
//! 13 ms with this one (BENCHMARKS.md). client-go sets `TCP_NODELAY` (Go's
//! default), so this is also what the Go electors beside tenure do.

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kube::client::ConfigExt;
use kube::client::retry::RetryPolicy;
use kube::{Client, Config};
use tenure_core::StoreError;
use tower::ServiceBuilder;
use tower::retry::RetryLayer;

/// A client for `config` built as kube's `Client::try_from(config)` builds
/// it (TLS, the connect/read/write timeouts, kube's retry of 429/503/504,
/// authentication, extra headers), with `TCP_NODELAY` on its connections.
///
/// A config kube's own builder must handle (a proxy, or credentials from an
/// exec plugin, whose client certificate kube tracks the expiry of) gets
/// kube's own client, Nagle and all.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let config = kube::Config::infer().await?;
/// let lock = tenure_k8s::LeaseLock::builder("my-controller")
///     .client(tenure_k8s::client_for(config)?)
///     .build()
///     .await?;
/// # Ok(()) }
/// ```
pub fn client_for(config: Config) -> Result<Client, StoreError> {
    let bad = |e: kube::Error| {
        StoreError::invalid_config("cannot build a Kubernetes client").with_source(e)
    };
    if config.proxy_url.is_some() || config.auth_info.exec.is_some() {
        return Client::try_from(config).map_err(bad);
    }
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    let https = config
        .rustls_https_connector_with_connector(http)
        .map_err(bad)?;
    let mut connector = hyper_timeout::TimeoutConnector::new(https);
    connector.set_connect_timeout(config.connect_timeout);
    connector.set_read_timeout(config.read_timeout);
    connector.set_write_timeout(config.write_timeout);
    connector.set_reset_reader_on_write(config.reset_reader_on_write);
    let hyper = hyper_util::client::legacy::Builder::new(TokioExecutor::new()).build(connector);
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(
            config
                .default_retry
                .then(|| RetryLayer::new(RetryPolicy::server_retry())),
        )
        .option_layer(config.auth_layer().map_err(bad)?)
        .layer(config.extra_headers_layer().map_err(bad)?)
        .map_err(tower::BoxError::from)
        .service(hyper);
    Ok(Client::new(service, config.default_namespace))
}

/// The client from the environment (in-cluster, or `KUBECONFIG`), as
/// `kube::Client::try_default()` finds it, built by [`client_for`].
pub(crate) async fn infer() -> Result<Client, StoreError> {
    let config = Config::infer().await.map_err(|e| {
        StoreError::invalid_config("no Kubernetes client configuration").with_source(e)
    })?;
    client_for(config)
}
