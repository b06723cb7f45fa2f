//! How long a fixture takes to start a server, by the way this process
//! uses (`TENURE_FIXTURES=container` or `=path`). A measurement, not a
//! check: `cargo test -p tenure-conformance --test start_times -- --ignored --nocapture`.

use std::time::{Duration, Instant};

use tenure_conformance::fixtures::container::way;
use tenure_conformance::fixtures::etcd::{EtcdCluster, EtcdServer};
use tenure_conformance::fixtures::redis::{RedisServer, RedisServerOptions};

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn time<T>(runs: usize, start: impl Fn() -> T) -> (Duration, Duration) {
    let mut starts = Vec::new();
    let mut drops = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let server = start();
        starts.push(t.elapsed());
        let t = Instant::now();
        drop(server);
        drops.push(t.elapsed());
    }
    (median(starts), median(drops))
}

#[test]
#[ignore = "a measurement"]
fn fixture_start_times() {
    let way = way();
    let redis = time(5, || RedisServer::local(RedisServerOptions::default()));
    let etcd = time(5, EtcdServer::start_local);
    let cluster = time(3, EtcdCluster::start);
    println!("way {way:?} (median start / median stop-and-remove)");
    println!("redis: {:?} / {:?}", redis.0, redis.1);
    println!("etcd: {:?} / {:?}", etcd.0, etcd.1);
    println!("etcd cluster of 3: {:?} / {:?}", cluster.0, cluster.1);
}
