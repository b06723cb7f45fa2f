//! Lead a lock on etcd until Ctrl-C.
//!
//! ```text
//! etcd &
//! cargo run --example etcd --features etcd -- http://127.0.0.1:2379 my-lock
//! ```

use tenure::{EtcdStore, LeaderElector};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let endpoint = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:2379".into());
    let lock = args.next().unwrap_or_else(|| "example".into());
    let identity = format!("example-{}", std::process::id());
    let store = EtcdStore::builder([endpoint], lock).build().await?;
    let elector = LeaderElector::builder(store, identity).build()?;
    let task = elector.spawn(|leadership| async move {
        // The etcd revision of the winning write orders terms of every lock.
        println!(
            "leading, fencing token {}, revision {:?}",
            leadership.fencing_token(),
            EtcdStore::revision_of(leadership.version())
        );
        leadership.cancelled().await;
    });
    tokio::signal::ctrl_c().await?;
    task.shutdown().await?;
    Ok(())
}
