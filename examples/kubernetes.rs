//! Lead a Lease on the cluster of your kubeconfig (or in-cluster) until Ctrl-C.
//!
//! ```text
//! cargo run --example kubernetes --features k8s-latest -- default my-lock
//! ```

use tenure::{LeaderElector, LeaseLock};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let namespace = args.next().unwrap_or_else(|| "default".into());
    let lock = args.next().unwrap_or_else(|| "example".into());
    // In a pod, the pod's name is the usual identity.
    let identity =
        std::env::var("HOSTNAME").unwrap_or_else(|_| format!("example-{}", std::process::id()));
    let lease = LeaseLock::builder(&lock)
        .namespace(namespace)
        .build()
        .await?;
    let elector = LeaderElector::builder(lease, identity).build()?;
    let task = elector.spawn(|leadership| async move {
        println!("leading, fencing token {}", leadership.fencing_token());
        leadership.cancelled().await;
    });
    tokio::signal::ctrl_c().await?;
    task.shutdown().await?;
    Ok(())
}
