//! The peer measured in the same run on the same server: etcd's own
//! election service (campaign / resign, a lease per candidate).

use std::time::Duration;

use etcd_client::{Client, LeaderKey, ResignOptions};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::stats::Samples;

struct EtcdCandidate {
    client: Client,
    lease: i64,
    keepalive: JoinHandle<()>,
}

impl EtcdCandidate {
    async fn new(endpoints: &[String], ttl: i64) -> EtcdCandidate {
        let mut client = Client::connect(endpoints, None)
            .await
            .expect("connect to etcd");
        let lease = client.lease_grant(ttl, None).await.expect("lease").id();
        let (mut keeper, mut stream) = client.lease_keep_alive(lease).await.expect("keep-alive");
        let period = Duration::from_millis((ttl as u64 * 1000) / 3);
        let keepalive = tokio::spawn(async move {
            loop {
                if keeper.keep_alive().await.is_err() {
                    return;
                }
                let _ = stream.message().await;
                tokio::time::sleep(period).await;
            }
        });
        EtcdCandidate {
            client,
            lease,
            keepalive,
        }
    }

    /// Campaigns in the background; the task ends with the leader key once elected.
    fn campaign(&self, name: &'static str, value: String) -> JoinHandle<Option<LeaderKey>> {
        let mut client = self.client.clone();
        let lease = self.lease;
        tokio::spawn(async move {
            let resp = client.campaign(name, value, lease).await.ok()?;
            resp.leader().cloned()
        })
    }

    async fn resign(&mut self, key: LeaderKey) {
        self.client
            .resign(Some(ResignOptions::new().with_leader(key)))
            .await
            .expect("resign");
    }
}

/// etcd election hand-off: the leader resigns; time until the waiting
/// candidate's `campaign` returns. The waiter campaigns `settle` before the
/// resign: 20 ms is a fresh waiter, whose watch on the previous key etcd has
/// not yet synced (it catches such watchers up only periodically, ~100 ms);
/// 1 s is a settled one, the steady state of a real deployment.
pub(crate) async fn etcd_election_handoff(
    endpoints: &[String],
    runs: usize,
    settle: Duration,
) -> Samples {
    let name = "bench-election-handoff";
    let mut a = EtcdCandidate::new(endpoints, 15).await;
    let mut b = EtcdCandidate::new(endpoints, 15).await;
    let mut leader_key = a
        .campaign(name, "a".into())
        .await
        .unwrap()
        .expect("a leads");
    let mut samples = Samples::default();
    for i in 0..runs {
        let (leader, follower) = if i % 2 == 0 {
            (&mut a, &mut b)
        } else {
            (&mut b, &mut a)
        };
        let waiting = follower.campaign(name, format!("f{i}"));
        tokio::time::sleep(settle).await;
        let t = Instant::now();
        leader.resign(leader_key).await;
        leader_key = waiting.await.unwrap().expect("elected");
        samples.push(t.elapsed());
    }
    a.keepalive.abort();
    b.keepalive.abort();
    samples
}

/// etcd election fail-over: the leader stops keeping its lease alive (a
/// crash); time until the waiting candidate's `campaign` returns.
pub(crate) async fn etcd_election_failover(endpoints: &[String], runs: usize, ttl: i64) -> Samples {
    let name = "bench-election-failover";
    let mut samples = Samples::default();
    let mut leader = EtcdCandidate::new(endpoints, ttl).await;
    leader
        .campaign(name, "first".into())
        .await
        .unwrap()
        .expect("first leads");
    for i in 0..runs {
        let follower = EtcdCandidate::new(endpoints, ttl).await;
        let waiting = follower.campaign(name, format!("f{i}"));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let t = Instant::now();
        leader.keepalive.abort();
        waiting.await.unwrap().expect("elected");
        samples.push(t.elapsed());
        leader = follower;
    }
    leader.keepalive.abort();
    samples
}
