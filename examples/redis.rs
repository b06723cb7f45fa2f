//! Lead a lock on Redis until Ctrl-C.
//!
//! ```text
//! redis-server --port 6379 &
//! cargo run --example redis --features redis -- redis://127.0.0.1:6379 my-lock
//! ```

use tenure::{LeaderElector, RedisStore};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    let lock = args.next().unwrap_or_else(|| "example".into());
    let identity = format!("example-{}", std::process::id());
    let store = RedisStore::builder(url, lock).build().await?;
    let elector = LeaderElector::builder(store, identity).build()?;
    let task = elector.spawn(|leadership| async move {
        println!("leading, fencing token {}", leadership.fencing_token());
        leadership.cancelled().await;
    });
    tokio::signal::ctrl_c().await?;
    task.shutdown().await?; // waits for the work, then releases
    Ok(())
}
