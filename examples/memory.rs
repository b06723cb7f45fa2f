//! Three candidates in one process on a `MemoryStore`: one leads; when it
//! shuts down it releases the lock, and another takes over at once.
//!
//! ```text
//! cargo run --example memory
//! ```

use std::sync::Arc;
use std::time::Duration;

use tenure::{LeaderElector, MemoryStore};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let store = Arc::new(MemoryStore::new("example")?);
    let mut candidates = Vec::new();
    for name in ["a", "b", "c"] {
        let elector = LeaderElector::builder(store.clone(), name).build()?;
        let task = elector.spawn(move |leadership| async move {
            println!("{name} leads, fencing token {}", leadership.fencing_token());
            leadership.cancelled().await;
            println!("{name} stops leading");
        });
        candidates.push((elector, task));
    }
    let first = wait_for_leader(&candidates).await?;
    let (_, task) = candidates.remove(first);
    task.shutdown().await?; // the work returns, then the lock is released
    wait_for_leader(&candidates).await?;
    for (_, task) in candidates {
        task.shutdown().await?;
    }
    Ok(())
}

/// The index of the candidate that leads, once one does.
async fn wait_for_leader(
    candidates: &[(LeaderElector, tenure::ElectionTask)],
) -> Result<usize, &'static str> {
    for _ in 0..500 {
        if let Some(i) = candidates.iter().position(|(e, _)| e.is_leader()) {
            return Ok(i);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Err("no leader within 5 s")
}
