//! Measurements, not tests: tenure's `LeaseLock` and client-go's elector
//! side by side on one real kube-apiserver (a server of this run's own, so
//! its request counts are theirs alone). Run by hand and reported in
//! BENCHMARKS.md:
//!
//! ```sh
//! cargo test --release -p tenure-k8s --all-features --test go_bench -- --ignored --nocapture
//! ```
//!
//! - graceful hand-off: from the leader being told to stop (tenure: its
//!   shutdown token; client-go: SIGTERM, `ReleaseOnCancel`) to the
//!   successor's work starting, at lease 3 s / renew 2 s / retry 0.5 s;
//! - crash fail-over: from kill -9 (client-go) or an abort without release
//!   (tenure) to the successor's work starting, same timing;
//! - Lease requests per second the server served for N = 1, 10, 50
//!   candidates on one Lease at client-go's default timing (15 s / 10 s /
//!   2 s), from the server's own `apiserver_request_total`, and the mean
//!   server-side time of their writes;
//! - tenure's graceful hand-off on kube's own client and on tenure's
//!   default (`TCP_NODELAY`; `... --nocapture nagle`): what Nagle costs;
//! - renew latency seen by the client (tenure's default client, kube's own,
//!   client-go's `LeaseLock.Update`), and tenure's graceful hand-off on each
//!   lock kind (`... --nocapture renew_latency`).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::Env;
use common::go::*;
use tenure_core::{LeaderElector, LockStore};

const ROUNDS: usize = 10;
const WINDOW: Duration = Duration::from_secs(30);

fn percentiles(mut v: Vec<Duration>) -> String {
    v.sort();
    let at = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    format!(
        "p50 {:.1} ms, min {:.1}, max {:.1} ({} rounds)",
        at(0.5).as_secs_f64() * 1e3,
        v[0].as_secs_f64() * 1e3,
        v[v.len() - 1].as_secs_f64() * 1e3,
        v.len()
    )
}

fn since_ns(from: u128, to: u128) -> Duration {
    Duration::from_nanos(to.saturating_sub(from) as u64)
}

/// The server's Lease request count (every verb, watches included) and
/// the sum and count of its PUT (update) latencies.
async fn lease_metrics(env: &Env) -> (f64, f64, f64) {
    let req = http::Request::builder()
        .uri("/metrics")
        .body(Vec::new())
        .unwrap();
    let text = env.client().request_text(req).await.expect("/metrics");
    let (mut total, mut put_sum, mut put_count) = (0.0, 0.0, 0.0);
    for line in text.lines() {
        if !line.contains(r#"resource="leases""#) {
            continue;
        }
        let value: f64 = line
            .rsplit_once(' ')
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0.0);
        if line.starts_with("apiserver_request_total{") {
            total += value;
        } else if line.contains(r#"verb="PUT""#) {
            if line.starts_with("apiserver_request_duration_seconds_sum{") {
                put_sum += value;
            } else if line.starts_with("apiserver_request_duration_seconds_count{") {
                put_count += value;
            }
        }
    }
    (total, put_sum, put_count)
}

/// Requests per second and mean PUT time over `WINDOW` with the fleet
/// already running.
async fn rate(env: &Env) -> (f64, f64) {
    // Let the fleet settle (every candidate started, one leading).
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (t0, s0, c0) = lease_metrics(env).await;
    tokio::time::sleep(WINDOW).await;
    let (t1, s1, c1) = lease_metrics(env).await;
    let put_ms = if c1 > c0 {
        (s1 - s0) / (c1 - c0) * 1e3
    } else {
        f64::NAN
    };
    ((t1 - t0) / WINDOW.as_secs_f64(), put_ms)
}

/// A tenure candidate at `timing` (lease, renew deadline, retry).
fn tenure_candidate(
    store: Arc<dyn LockStore>,
    id: &str,
    timing: (Duration, Duration, Duration),
    terms: &Terms,
) -> RustCandidate {
    let elector = LeaderElector::builder(store, id.to_owned())
        .lease_duration(timing.0)
        .renew_deadline(timing.1)
        .retry_period(timing.2)
        .build()
        .unwrap();
    spawn_candidate(elector, id, terms)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement on a kube-apiserver of its own; run by hand (BENCHMARKS.md)"]
async fn measure_tenure_and_client_go_side_by_side() {
    let server = OwnApiServer::start();
    let s = Setup::on(&server).await;
    let env = &s.env;
    let fast = (LEASE, RENEW, RETRY);
    let go = |name: &str, id: &str, terms: &Terms, extra: &[&str]| {
        s.go_into(terms, "client-go", "lease", name, id, extra)
    };

    // Graceful hand-offs and crash fail-overs, client-go to client-go.
    let terms = Terms::default();
    let (mut handoffs, mut failovers) = (Vec::new(), Vec::new());
    let mut leader = go("go-handoff", "go-0", &terms, &[]);
    wait_for(LEASE * 3, "go-0 leads", || terms.leading("go-0")).await;
    for round in 1..=2 * ROUNDS {
        let id = format!("go-{round}");
        let next = go("go-handoff", &id, &terms, &[]);
        tokio::time::sleep(4 * RETRY).await;
        let at = now_ns();
        if round <= ROUNDS {
            leader.stop();
        } else {
            leader.crash(&terms);
        }
        wait_for(LEASE * 3, "the successor leads", || terms.leading(&id)).await;
        let took = since_ns(at, terms.of(&id)[0].0);
        if round <= ROUNDS {
            handoffs.push(took)
        } else {
            failovers.push(took)
        }
        leader = next;
    }
    leader.stop();
    terms.assert_no_overlap();
    eprintln!("client-go graceful hand-off: {}", percentiles(handoffs));
    eprintln!("client-go crash fail-over: {}", percentiles(failovers));

    // The same with tenure.
    let terms = Terms::default();
    let store = s.lease("tenure-handoff").await;
    let (mut handoffs, mut failovers) = (Vec::new(), Vec::new());
    let mut leader = tenure_candidate(store.clone(), "rust-0", fast, &terms);
    wait_for(LEASE * 3, "rust-0 leads", || terms.leading("rust-0")).await;
    for round in 1..=2 * ROUNDS {
        let id = format!("rust-{round}");
        let next = tenure_candidate(s.lease("tenure-handoff").await, &id, fast, &terms);
        tokio::time::sleep(4 * RETRY).await;
        let at = now_ns();
        if round <= ROUNDS {
            leader.stop().await;
        } else {
            leader.task.abort();
            terms.end(&format!("rust-{}", round - 1));
        }
        wait_for(LEASE * 3, "the successor leads", || terms.leading(&id)).await;
        let took = since_ns(at, terms.of(&id)[0].0);
        if round <= ROUNDS {
            handoffs.push(took)
        } else {
            failovers.push(took)
        }
        leader = next;
    }
    leader.stop().await;
    terms.assert_no_overlap();
    eprintln!("tenure graceful hand-off: {}", percentiles(handoffs));
    eprintln!("tenure crash fail-over: {}", percentiles(failovers));

    // Requests per second, at client-go's default timing.
    let default = ["-lease", "15s", "-renew", "10s", "-retry", "2s"];
    let slow = (
        Duration::from_secs(15),
        Duration::from_secs(10),
        Duration::from_secs(2),
    );
    let (idle, _) = rate(env).await;
    eprintln!("no candidates: {idle:.2} Lease requests/s (the server's own)");
    for n in [1, 10, 50] {
        let terms = Terms::default();
        let name = format!("go-rate-{n}");
        let fleet: Vec<_> = (0..n)
            .map(|i| go(&name, &format!("go-{i}"), &terms, &default))
            .collect();
        let (go_rate, go_put) = rate(env).await;
        for c in fleet {
            c.stop();
        }
        let terms = Terms::default();
        let name = format!("tenure-rate-{n}");
        let mut fleet = Vec::new();
        for i in 0..n {
            fleet.push(tenure_candidate(
                s.lease(&name).await,
                &format!("rust-{i}"),
                slow,
                &terms,
            ));
        }
        let (rust_rate, rust_put) = rate(env).await;
        for c in fleet {
            c.stop().await;
        }
        eprintln!(
            "N = {n}: client-go {go_rate:.2} Lease requests/s (PUT {go_put:.2} ms mean), \
             tenure {rust_rate:.2} (PUT {rust_put:.2} ms mean)"
        );
    }
}

/// tenure's lock of `kind` (lease, configmap, multilock) named `name`.
async fn open_lock(kind: &str, name: &str, ns: &str, client: kube::Client) -> Arc<dyn LockStore> {
    let ns = ns.to_owned();
    match kind {
        "lease" => Arc::new(
            tenure_k8s::LeaseLock::builder(name)
                .namespace(ns)
                .client(client)
                .build()
                .await
                .unwrap(),
        ),
        "configmap" => Arc::new(
            tenure_k8s::ConfigMapLock::builder(name)
                .namespace(ns)
                .client(client)
                .build()
                .await
                .unwrap(),
        ),
        _ => Arc::new(
            tenure_k8s::MultiLock::builder(name)
                .namespace(ns)
                .client(client)
                .build()
                .await
                .unwrap(),
        ),
    }
}

/// One graceful hand-off from tenure candidate "a" (on `first`) to "b" (on
/// `second`), at the fast timing: from a's stop to b's "I lead".
async fn hand_off(
    first: Arc<dyn LockStore>,
    second: Arc<dyn LockStore>,
    terms: &Terms,
) -> Duration {
    let fast = (LEASE, RENEW, RETRY);
    let a = tenure_candidate(first, "a", fast, terms);
    wait_for(LEASE * 3, "a leads", || terms.leading("a")).await;
    let b = tenure_candidate(second, "b", fast, terms);
    tokio::time::sleep(4 * RETRY).await;
    let at = now_ns();
    a.stop().await;
    wait_for(LEASE * 3, "b leads", || terms.leading("b")).await;
    let took = since_ns(at, terms.of("b")[0].0);
    b.stop().await;
    terms.assert_no_overlap();
    took
}

/// tenure's graceful hand-off on the real server with kube's default
/// client and with tenure's (`TCP_NODELAY` on), interleaved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement on a kube-apiserver of its own; run by hand (BENCHMARKS.md)"]
async fn measure_tenure_hand_off_with_and_without_nagle() {
    let server = OwnApiServer::start();
    let s = Setup::on(&server).await;
    let mut by_kind: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    for round in 0..2 * ROUNDS {
        let nodelay = round % 2 == 1;
        let terms = Terms::default();
        let name = format!("nagle-{round}");
        let client = || {
            if nodelay {
                s.env.client()
            } else {
                s.env.kube_client()
            }
        };
        let ns = &s.env.namespace;
        let first = open_lock("lease", &name, ns, client()).await;
        let second = open_lock("lease", &name, ns, client()).await;
        let took = hand_off(first, second, &terms).await;
        by_kind[usize::from(nodelay)].push(took);
    }
    let [plain, nodelay] = by_kind;
    eprintln!(
        "tenure hand-off, kube's default client: {}",
        percentiles(plain)
    );
    eprintln!(
        "tenure hand-off, tenure's default client (TCP_NODELAY): {}",
        percentiles(nodelay)
    );
}

/// Client-side time of `n` Lease writes in a row, as a leader renews.
async fn tenure_updates(lock: &dyn LockStore, n: usize) -> Vec<Duration> {
    let record = |renewed| {
        let mut r = tenure_core::LeaderRecord::held_by("rust-m", Duration::from_secs(15));
        r.renew_time = Some(renewed);
        r
    };
    let mut version = lock
        .create(&record(std::time::SystemTime::now()))
        .await
        .unwrap();
    let mut took = Vec::with_capacity(n);
    for _ in 0..n {
        let r = record(std::time::SystemTime::now());
        let start = std::time::Instant::now();
        version = lock.update(&r, &version).await.unwrap();
        took.push(start.elapsed());
    }
    took
}

/// Renew latency seen by the client (tenure's default client, kube's own,
/// client-go's), interleaved, and tenure's graceful hand-off on each
/// Kubernetes lock kind, on a server of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement on a kube-apiserver of its own; run by hand (BENCHMARKS.md)"]
async fn measure_renew_latency_and_lock_kinds() {
    const WRITES: usize = 200;
    let server = OwnApiServer::start();
    let s = Setup::on(&server).await;
    let ns = s.env.namespace.clone();
    let (mut tenure, mut kube_own, mut client_go) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..3 {
        let lock = |client| {
            let ns = ns.clone();
            async move {
                tenure_k8s::LeaseLock::builder(&format!("renew-{round}-{}", rand_suffix()))
                    .namespace(ns)
                    .client(client)
                    .build()
                    .await
                    .unwrap()
            }
        };
        tenure.extend(tenure_updates(&lock(s.env.client()).await, WRITES).await);
        kube_own.extend(tenure_updates(&lock(s.env.kube_client()).await, WRITES).await);
        let out = std::process::Command::new(&s.bin)
            .arg("-kubeconfig")
            .arg(&s.kubeconfig)
            .args(["-namespace", &ns, "-name", &format!("renew-go-{round}")])
            .args(["-identity", "go-m", "-measure-updates", &WRITES.to_string()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        client_go.extend(
            line["durations_ns"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| Duration::from_nanos(d.as_u64().unwrap())),
        );
    }
    let p99 = |mut v: Vec<Duration>| {
        v.sort();
        let p = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e3;
        format!(
            "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} writes)",
            p(0.5),
            p(0.99),
            p(1.0),
            v.len()
        )
    };
    eprintln!("renew latency, tenure's default client: {}", p99(tenure));
    eprintln!("renew latency, kube's own client: {}", p99(kube_own));
    eprintln!("renew latency, client-go: {}", p99(client_go));

    // Graceful hand-off per lock kind, tenure's default client.
    for kind in ["lease", "configmap", "multilock"] {
        let mut took = Vec::new();
        for round in 0..ROUNDS {
            let terms = Terms::default();
            let name = format!("kind-{kind}-{round}");
            let open = || open_lock(kind, &name, &ns, s.env.client());
            took.push(hand_off(open().await, open().await, &terms).await);
        }
        eprintln!("tenure hand-off, {kind}: {}", percentiles(took));
    }
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        % 1_000_000
}
