//! A release seen on the watch is taken in one request: the lock keeps the
//! object the watch delivered, so its replace needs no read first. With a
//! watch of its own and with a shared one.

mod common;

use std::time::Duration;

use common::{Env, NAMESPACE};
use tenure_core::{LeaderRecord, LockStore};
use tenure_k8s::{LeaseLock, SharedWatch};
use tenure_kube_fixture::KubeApiServer;

async fn lease(env: &Env, name: &str, watches: Option<&SharedWatch>) -> LeaseLock {
    let mut builder = LeaseLock::builder(name)
        .client(env.client())
        .namespace(NAMESPACE)
        .request_timeout(Duration::from_millis(500));
    if let Some(watches) = watches {
        builder = builder.shared_watch(watches);
    }
    builder.build().await.unwrap()
}

async fn swap_on_the_watched_release(watches: Option<SharedWatch>) {
    let env = Env::fixture(KubeApiServer::start().await.unwrap());
    let leader = lease(&env, "watched-swap", None).await;
    let follower = lease(&env, "watched-swap", watches.as_ref()).await;
    let seen = tenure_conformance::watched_release(&leader, &follower).await;
    let server = env.server();
    let gets = server.requests("get");
    let taken = LeaderRecord::held_by("follower", Duration::from_secs(15));
    follower
        .update(&taken, &seen.version)
        .await
        .expect("the swap on the watched version succeeds");
    assert_eq!(server.requests("get") - gets, 0, "GETs the swap needed");
    assert_eq!(follower.get().await.unwrap().unwrap().record, taken);
}

#[tokio::test]
async fn a_swap_on_a_version_its_own_watch_showed_reads_nothing_first() {
    swap_on_the_watched_release(None).await;
}

#[tokio::test]
async fn a_swap_on_a_version_a_shared_watch_showed_reads_nothing_first() {
    swap_on_the_watched_release(Some(SharedWatch::new())).await;
}
