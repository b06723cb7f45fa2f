//! A release seen on the watch is taken in one round trip: the store keeps
//! the exact bytes the watch delivered, so its swap needs no read first.

use std::time::Duration;

use tenure_conformance::fixtures::redis::RedisServer;
use tenure_core::{LeaderRecord, LockStore};
use tenure_redis::RedisStore;

/// How many times the server ran `command` (its `INFO commandstats`).
async fn calls(url: &str, command: &str) -> u64 {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .unwrap();
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_swap_on_a_version_the_watch_showed_reads_nothing_first() {
    let server = RedisServer::start();
    let open = |lock: &str| RedisStore::builder(server.url(), lock).build();
    let leader = open("watched-swap").await.unwrap();
    let follower = open("watched-swap").await.unwrap();
    let seen = tenure_conformance::watched_release(&leader, &follower).await;
    // The script's own GET counts too: compare with a swap on bytes the
    // store wrote itself, which never needs a read first.
    let gets = calls(&server.url(), "get").await;
    let taken = LeaderRecord::held_by("follower", Duration::from_secs(15));
    let version = follower
        .update(&taken, &seen.version)
        .await
        .expect("the swap on the watched version succeeds");
    let after_swap = calls(&server.url(), "get").await;
    follower.update(&taken, &version).await.expect("a renew");
    let after_renew = calls(&server.url(), "get").await;
    assert_eq!(
        after_swap - gets,
        after_renew - after_swap,
        "GETs of a swap on a watched version, against those of a renew"
    );
    assert_eq!(follower.get().await.unwrap().unwrap().record, taken);
}
