//! `cargo run --release -p tenure-bench`: hand-off, fail-over, renew cost
//! and store load for every store, against real servers started by the
//! fixtures, with etcd's election service and a client-go-style elector
//! measured in the same run. Prints markdown (the tables of BENCHMARKS.md).
//! Asserts nothing about speed.

mod measure;
mod peers;
mod phases;
mod scale;
mod shards;
mod stats;
mod stores;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use measure::{DEFAULT, Exit, SHORT, Style};

/// A waiter that started 20 ms before the leader left.
const FRESH: Duration = Duration::from_millis(20);
/// A waiter that has waited 1 s: its watch is settled on the server.
const SETTLED: Duration = Duration::from_secs(1);
use phases::Phases;
use stats::{Ms, Samples, signed_ms};
use tenure_conformance::StoreFactory;

type Counter = Box<dyn Fn() -> Pin<Box<dyn Future<Output = u64> + Send>> + Send + Sync>;
type Raw = Box<dyn Fn(usize) -> Pin<Box<dyn Future<Output = Samples> + Send>> + Send + Sync>;

struct Bench {
    name: &'static str,
    factory: Arc<dyn StoreFactory>,
    /// Server-side operation counter and what it counts.
    counter: Option<(Counter, &'static str)>,
    /// The raw primitive a renew maps to, and its name.
    raw: Option<(Raw, &'static str)>,
    /// The Redis factory, for the raw hand-off floor.
    redis: Option<Arc<stores::RedisFactory>>,
}

struct Runs {
    handoff: usize,
    polling_handoff: usize,
    failover: usize,
    renew: usize,
    load_window: Duration,
    /// Only the renew-cost tables (`--only-renew`).
    only_renew: bool,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let only_renew = args.iter().any(|a| a == "--only-renew");
    let handoff_only = args.iter().any(|a| a == "--handoff");
    let scale_run = args.iter().any(|a| a == "--scale");
    // One client per lock instead of one per store (the layout before the
    // shared clients), for comparison.
    let separate = args.iter().any(|a| a == "--separate-clients");
    let sizes: Vec<usize> = args
        .iter()
        .position(|a| a == "--locks")
        .and_then(|i| args.get(i + 1))
        .map(|s| s.split(',').filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 100, 1000, 10_000]);
    if args.iter().any(|a| a == "--trace") {
        // Where a hand-off's time goes: the engine's log, stamped in µs.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                std::env::var("RUST_LOG").unwrap_or_else(|_| "tenure_core=debug".into()),
            ))
            .with_timer(tracing_subscriber::fmt::time::uptime())
            .with_target(false)
            .try_init();
    }
    let handoff_runs: usize = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(100);
    let only: Option<Vec<String>> = args
        .iter()
        .position(|a| a == "--stores")
        .and_then(|i| args.get(i + 1))
        .map(|s| s.split(',').map(str::to_owned).collect());
    let runs = if quick {
        Runs {
            handoff: 20,
            polling_handoff: 5,
            failover: 5,
            renew: 200,
            load_window: Duration::from_secs(6),
            only_renew,
        }
    } else {
        Runs {
            handoff: 200,
            polling_handoff: 20,
            failover: 30,
            renew: 2000,
            load_window: Duration::from_secs(20),
            only_renew,
        }
    };
    // `--current-thread`: every task on one thread, so no wake-up crosses
    // threads (to see what the cross-thread wake-ups cost a hand-off).
    let rt = if args.iter().any(|a| a == "--current-thread") {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
    }
    .expect("runtime");
    rt.block_on(async move {
        let wanted = |name: &str| only.as_ref().is_none_or(|o| o.iter().any(|s| s == name));
        if args.iter().any(|a| a == "--shards") {
            return shards_all(&wanted).await;
        }
        if scale_run {
            return scale_all(&wanted, &sizes, separate, quick, runs.load_window).await;
        }
        let mut benches = Vec::new();
        if wanted("memory") {
            benches.push(memory());
        }
        if wanted("redis") {
            benches.push(redis());
        }
        if wanted("k8s") {
            benches.push(kube().await);
        }
        if handoff_only {
            return fair_handoff(&benches, handoff_runs).await;
        }
        let mut etcd_endpoints = None;
        if wanted("etcd") {
            let (bench, endpoints) = etcd();
            benches.push(bench);
            etcd_endpoints = Some(endpoints);
        }
        println!("# tenure benchmarks\n");
        println!(
            "Runs: {} hand-offs with watch, {} without, {} crash fail-overs, {} renews; load window {:?}.\n",
            runs.handoff, runs.polling_handoff, runs.failover, runs.renew, runs.load_window
        );
        for bench in &benches {
            run_store(bench, &runs).await;
        }
        if let Some(endpoints) = etcd_endpoints.filter(|_| !runs.only_renew) {
            println!("\n## Peer: etcd's election service (same etcd server)\n");
            let h = peers::etcd_election_handoff(&endpoints, runs.handoff, FRESH).await;
            println!("| measure | p50 | p99 | max | n |\n|---|---|---|---|---|");
            row("resign → next campaign returns", &h);
            let f = peers::etcd_election_failover(&endpoints, runs.failover, 2).await;
            row("crash (keep-alive stops, TTL 2 s) → next campaign returns", &f);
            println!("\nfail-over − TTL: p50 {}, p99 {}", signed_ms(f.p50(), SHORT.lease), signed_ms(f.p99(), SHORT.lease));
        }
    });
}

/// The release hand-off, compared fairly: tenure and etcd's own election on
/// the same etcd, each with settled and with fresh waiters; tenure on Redis
/// beside its floor (two script round trips and one pub/sub delivery).
async fn fair_handoff(benches: &[Bench], runs: usize) {
    println!("## Release hand-off, settled and fresh waiters ({runs} per row)\n");
    println!(
        "Two candidates on each side: the leader and one waiter (the leaver is replaced). etcd rows: interleaved blocks of 10.\n"
    );
    println!("| store | elector | waiter | p50 | p99 | max | n |\n|---|---|---|---|---|---|---|");
    let (etcd, endpoints, raw_etcd) = etcd_with_factory();
    let line = |store: &str, who: &str, waiter: &str, s: &Samples| {
        println!(
            "| {store} | {who} | {waiter} | {} | {} | {} | {} |",
            Ms(s.p50()),
            Ms(s.p99()),
            Ms(s.max()),
            s.len()
        )
    };
    // The three electors run in interleaved blocks of 10, so a drift of the
    // machine's speed during the run falls on all three alike.
    const BLOCK: usize = 10;
    // Where each elector's settled hand-off went, step by step.
    let mut steps: Vec<(String, Phases, bool)> = Vec::new();
    for (waiter, settle) in [("settled (1 s)", SETTLED), ("fresh (20 ms)", FRESH)] {
        let f = etcd.factory.as_ref();
        let lock = format!("bench-fair-{}", settle.as_millis());
        let (mut t, mut e) = (Samples::default(), Samples::default());
        let (mut r, mut rt, mut st) = (Samples::default(), Samples::default(), Samples::default());
        let (mut tp, mut rp, mut rtp) = (Phases::default(), Phases::default(), Phases::default());
        let mut sp = Phases::default();
        for _ in 0..runs.div_ceil(BLOCK) {
            let (s, p) = measure::release_phases(f, &lock, BLOCK, settle).await;
            t.extend(s);
            tp.extend(p);
            e.extend(peers::etcd_election_handoff(&endpoints, BLOCK, settle).await);
            let store_lock = format!("{lock}-store");
            let (s, p) = measure::store_handoff(f, &store_lock, BLOCK, settle).await;
            st.extend(s);
            sp.extend(p);
            let (s, p) = raw_etcd.raw_handoff(BLOCK, settle, false).await;
            r.extend(s);
            rp.extend(p);
            let (s, p) = raw_etcd.raw_handoff(BLOCK, settle, true).await;
            rt.extend(s);
            rtp.extend(p);
        }
        if settle == SETTLED {
            steps.push(("etcd: tenure".into(), tp, true));
            steps.push(("etcd: tenure's store alone (no engine)".into(), sp, false));
            steps.push(("etcd: raw hand-off".into(), rp, false));
            steps.push((
                "etcd: raw hand-off with tenure's compares".into(),
                rtp,
                false,
            ));
        }
        line("etcd", "tenure (watch)", waiter, &t);
        line("etcd", "etcd election (campaign / resign)", waiter, &e);
        line(
            "etcd",
            "tenure's EtcdStore alone: update (release), watch event, update (swap); no engine",
            waiter,
            &st,
        );
        line(
            "etcd",
            "raw hand-off: Txn release, watch event, Txn swap (etcd-client, no tenure)",
            waiter,
            &r,
        );
        line(
            "etcd",
            "raw hand-off as above, each Txn also comparing the value as tenure's does",
            waiter,
            &rt,
        );
    }
    let w = raw_etcd.raw_txn(1000).await;
    line(
        "etcd",
        "raw: Txn (a write: compare mod_revision, put)",
        "–",
        &w,
    );
    let r = raw_etcd.raw_get(1000).await;
    line("etcd", "raw: Get (a linearizable read)", "–", &r);
    for b in benches.iter().filter(|b| b.name == "redis") {
        for (waiter, settle) in [("settled (1 s)", SETTLED), ("fresh (20 ms)", FRESH)] {
            let lock = format!("bench-fair-{}", settle.as_millis());
            let (t, p) = measure::release_phases(b.factory.as_ref(), &lock, runs, settle).await;
            line("redis", "tenure (watch)", waiter, &t);
            if settle == SETTLED {
                steps.push(("redis: tenure".into(), p, true));
            }
            let store_lock = format!("{lock}-store");
            let (t, p) =
                measure::store_handoff(b.factory.as_ref(), &store_lock, runs, settle).await;
            line(
                "redis",
                "tenure's RedisStore alone: update (release), watch event, update (swap); no engine",
                waiter,
                &t,
            );
            if settle == SETTLED {
                steps.push(("redis: tenure's store alone (no engine)".into(), p, false));
            }
        }
        if let Some((raw, label)) = &b.raw {
            let r = raw(1000).await;
            line("redis", &format!("raw: {label}"), "–", &r);
        }
        if let Some(redis) = &b.redis {
            for (waiter, settle) in [("settled (1 s)", SETTLED), ("fresh (20 ms)", FRESH)] {
                let (r, p) = redis.raw_handoff(runs, settle).await;
                if settle == SETTLED {
                    steps.push(("redis: raw hand-off".into(), p, false));
                }
                line(
                    "redis",
                    "raw hand-off: EVALSHA release, message, EVALSHA swap (redis-rs, no tenure)",
                    waiter,
                    &r,
                );
            }
        }
    }
    println!("\n## Where a settled hand-off's time goes (p50 of each step, ms)\n");
    println!(
        "Steps cut at the same points on both sides: tenure's by a store wrapper, the raw hand-offs' inline. p50s of steps do not add up to the p50 of their sum.\n"
    );
    println!(
        "| hand-off | shutdown → release sent | release sent → successor has the event | event → swap sent | swap round trip | swap answered → seen leading | release sent → seen leading | n |\n|---|---|---|---|---|---|---|---|"
    );
    for (who, p, tenure) in &steps {
        println!("{}", phases::row(who, p, *tenure));
    }
}

fn row(what: &str, s: &Samples) {
    println!(
        "| {what} | {} | {} | {} | {} |",
        Ms(s.p50()),
        Ms(s.p99()),
        Ms(s.max()),
        s.len()
    );
}

async fn run_store(b: &Bench, runs: &Runs) {
    let f = b.factory.as_ref();
    println!("\n## {}\n", b.name);
    if runs.only_renew {
        return renew_cost(b, runs).await;
    }

    println!("### Release hand-off (lease 15 s, renew 10 s, retry 2 s)\n");
    println!("| elector | p50 | p99 | max | n |\n|---|---|---|---|---|");
    for (label, lock, n, style) in [
        (
            "tenure (watch)",
            "bench-handoff",
            runs.handoff,
            Style::Tenure,
        ),
        (
            "tenure, watch off (polling)",
            "bench-handoff-poll",
            runs.polling_handoff,
            Style::NoWatch,
        ),
        (
            "client-go style (no watch, read before write)",
            "bench-handoff-cgo",
            runs.polling_handoff,
            Style::ClientGo,
        ),
    ] {
        let s = measure::hand_offs(f, lock, n, DEFAULT, style, Exit::Release(FRESH), 3).await;
        row(label, &s);
    }

    println!("\n### Crash fail-over (lease 2 s, renew 1.5 s, retry 0.4 s)\n");
    println!(
        "| elector | p50 | p99 | max | p50 − lease | p99 − lease | n |\n|---|---|---|---|---|---|---|"
    );
    for (label, style) in [
        ("tenure (watch)", Style::Tenure),
        ("client-go style", Style::ClientGo),
    ] {
        let lock = format!("bench-failover-{}", style as u8);
        let s = measure::hand_offs(f, &lock, runs.failover, SHORT, style, Exit::Crash, 3).await;
        println!(
            "| {label} | {} | {} | {} | {} | {} | {} |",
            Ms(s.p50()),
            Ms(s.p99()),
            Ms(s.max()),
            signed_ms(s.p50(), SHORT.lease),
            signed_ms(s.p99(), SHORT.lease),
            s.len()
        );
    }

    renew_cost(b, runs).await;

    if let Some((count, what)) = &b.counter {
        println!("\n### Store load at default timing ({what})\n");
        println!("| candidates | ops/s | ratio to N = 1 |\n|---|---|---|");
        let mut base = None;
        for n in [1, 10, 50] {
            let ops =
                measure::store_load(f, &format!("bench-load-{n}"), n, runs.load_window, || {
                    count()
                })
                .await;
            let base = *base.get_or_insert(ops);
            println!("| {n} | {ops:.2} | {:.2} |", ops / base);
        }
    }
}

fn memory() -> Bench {
    let factory = Arc::new(stores::CountingMemory::new());
    let ops = factory.ops.clone();
    Bench {
        name: "memory",
        factory,
        counter: Some((
            Box::new(move || {
                let ops = ops.clone();
                Box::pin(async move { ops.load(Ordering::Relaxed) })
            }),
            "LockStore calls",
        )),
        raw: None,
        redis: None,
    }
}

fn redis() -> Bench {
    let server = tenure_conformance::fixtures::redis::RedisServer::local(Default::default());
    let redis = Arc::new(stores::RedisFactory { server });
    let (c, r, h) = (redis.clone(), redis.clone(), redis.clone());
    Bench {
        name: "redis",
        redis: Some(h),
        factory: Arc::new(stores::OpenOnly(redis)),
        counter: Some((
            Box::new(move || {
                let c = c.clone();
                Box::pin(async move { c.commands().await })
            }),
            "server commands, INFO commandstats",
        )),
        raw: Some((
            Box::new(move |n| {
                let r = r.clone();
                Box::pin(async move { r.raw_cas(n).await })
            }),
            "EVALSHA of the same script, same arguments",
        )),
    }
}

async fn kube() -> Bench {
    let server = tenure_kube_fixture::KubeApiServer::start()
        .await
        .expect("start the Kubernetes API fixture");
    let kube = Arc::new(stores::KubeFactory { server });
    let (c, r) = (kube.clone(), kube.clone());
    Bench {
        redis: None,
        name: "kubernetes (LeaseLock on the in-repo API server fixture)",
        factory: Arc::new(stores::OpenOnly(kube)),
        counter: Some((
            Box::new(move || {
                let n = c.requests();
                Box::pin(async move { n })
            }),
            "HTTP requests, the fixture's counter",
        )),
        raw: Some((
            Box::new(move |n| {
                let r = r.clone();
                Box::pin(async move { r.raw_put(n).await })
            }),
            "HTTP PUT of the Lease with its resourceVersion",
        )),
    }
}

fn etcd() -> (Bench, Vec<String>) {
    let (bench, endpoints, _) = etcd_with_factory();
    (bench, endpoints)
}

fn etcd_with_factory() -> (Bench, Vec<String>, Arc<stores::EtcdFactory>) {
    let server = tenure_conformance::fixtures::etcd::EtcdServer::start_local();
    let endpoints = server.endpoints();
    let etcd = Arc::new(stores::EtcdFactory { server });
    let raw_etcd = etcd.clone();
    let (c, r) = (etcd.clone(), etcd.clone());
    (
        Bench {
            redis: None,
            name: "etcd",
            factory: Arc::new(stores::OpenOnly(etcd)),
            counter: Some((
                Box::new(move || {
                    let c = c.clone();
                    Box::pin(async move { c.requests().await })
                }),
                "unary gRPC requests, etcd /metrics",
            )),
            raw: Some((
                Box::new(move |n| {
                    let r = r.clone();
                    Box::pin(async move { r.raw_txn(n).await })
                }),
                "etcd Txn (compare mod_revision, put / else get)",
            )),
        },
        endpoints,
        raw_etcd,
    )
}

async fn renew_cost(b: &Bench, runs: &Runs) {
    let f = b.factory.as_ref();
    println!("\n### Renew cost\n");
    println!("| operation | p50 | p99 | n |\n|---|---|---|---|");
    // Interleaved in four blocks, so drift on a busy machine hits both alike.
    let block = runs.renew / 4;
    let (mut renew, mut raw_samples) = (Samples::default(), Samples::default());
    for i in 0..4 {
        renew.extend(measure::renew_latency(f, &format!("bench-renew-{i}"), block).await);
        if let Some((raw, _)) = &b.raw {
            raw_samples.extend(raw(block).await);
        }
    }
    println!(
        "| tenure renew (LockStore::update, one CAS) | {} | {} | {} |",
        Ms(renew.p50()),
        Ms(renew.p99()),
        renew.len()
    );
    if let Some((_, label)) = &b.raw {
        let r = raw_samples;
        println!(
            "| raw: {label} | {} | {} | {} |",
            Ms(r.p50()),
            Ms(r.p99()),
            r.len()
        );
        println!(
            "\nratio tenure / raw: p50 {:.2}, p99 {:.2}",
            renew.p50().as_secs_f64() / r.p50().as_secs_f64(),
            renew.p99().as_secs_f64() / r.p99().as_secs_f64()
        );
    }
}

/// `--scale`: every wanted store at every size (see `scale.rs`), each size
/// in a child process of its own with its own server.
async fn scale_all(
    wanted: &dyn Fn(&str) -> bool,
    sizes: &[usize],
    separate: bool,
    quick: bool,
    window: Duration,
) {
    // `--long-timing`: four times client-go's defaults, for stores that
    // cannot take 10,000 renews every 2 s on this machine.
    let long = std::env::args().any(|a| a == "--long-timing");
    let timing = if long {
        measure::Timing {
            lease: Duration::from_secs(60),
            renew: Duration::from_secs(40),
            retry: Duration::from_secs(8),
        }
    } else {
        measure::DEFAULT
    };
    if std::env::var_os(SCALE_CHILD).is_some() {
        for store in ["memory", "redis", "etcd", "k8s"]
            .into_iter()
            .filter(|s| wanted(s))
        {
            for &n in sizes {
                scale::row(&scale_target(store, separate).await, n, window, timing).await;
            }
        }
        return;
    }
    println!(
        "## Many locks in one process (lease {:?}, renew {:?}, retry {:?}; load window {window:?})\n",
        timing.lease, timing.renew, timing.retry
    );
    if let Some(max) = kube_max_in_flight() {
        println!("The shared watch caps requests in flight at {max}.\n");
    }
    match etcd_max_in_flight() {
        0 => println!("The etcd client has no cap on calls in flight.\n"),
        max => {
            println!("The etcd client caps calls in flight at {max} (`max_requests_in_flight`).\n")
        }
    }
    println!(
        "Each lock has two candidates in this process, a leader and a follower; clients: {}. Each row is a process of its own, with a server of its own.",
        if separate {
            "one per lock (--separate-clients)"
        } else {
            "one per store, shared by every lock"
        }
    );
    for (store, title, counted) in [
        (
            "memory",
            "memory (in-process MemoryStore)",
            "LockStore calls",
        ),
        (
            "redis",
            "redis",
            "not counted: Redis counts the commands inside each script too",
        ),
        ("etcd", "etcd", "unary gRPC requests, etcd /metrics"),
        (
            "k8s",
            "kubernetes (LeaseLock, in-repo API server fixture, in this process)",
            "HTTP requests, the fixture's counter",
        ),
    ] {
        if !wanted(store) {
            continue;
        }
        scale::header(title);
        for &n in sizes {
            let mut cmd = std::process::Command::new(std::env::current_exe().expect("own path"));
            cmd.args(["--scale", "--stores", store, "--locks", &n.to_string()])
                .env(SCALE_CHILD, "1")
                .stderr(std::process::Stdio::inherit());
            if separate {
                cmd.arg("--separate-clients");
            }
            if quick {
                cmd.arg("--quick");
            }
            if long {
                cmd.arg("--long-timing");
            }
            if let Some(max) = kube_max_in_flight() {
                cmd.args(["--kube-max-in-flight", &max.to_string()]);
            }
            cmd.args(["--etcd-max-in-flight", &etcd_max_in_flight().to_string()]);
            let out = cmd.output().expect("run a scale child");
            let text = String::from_utf8_lossy(&out.stdout);
            let rows: Vec<&str> = text.lines().filter(|l| l.starts_with('|')).collect();
            if rows.is_empty() || !out.status.success() {
                println!("| {n} | failed: {} | | | | | | | | | |", out.status);
            }
            for r in rows {
                println!("{r}");
            }
        }
        println!(
            "\nServer requests: {counted}. Store calls: `LockStore` calls the candidates made."
        );
    }
}

/// Set in a shard child's environment: `STORE REPLICAS SHARDS`.
const SHARD_CHILD: &str = "TENURE_BENCH_SHARD_CHILD";

/// `--shards`: every wanted store at 3 and 10 replicas × 64 and 1,024
/// shards (`--replicas 3,10 --shard-counts 64,1024` to choose), each in a
/// child process of its own with its own server.
async fn shards_all(wanted: &dyn Fn(&str) -> bool) {
    if let Ok(spec) = std::env::var(SHARD_CHILD) {
        let w: Vec<&str> = spec.split(' ').collect();
        let (store, r, n) = (w[0], w[1].parse().unwrap(), w[2].parse().unwrap());
        println!(
            "{}",
            shards::row(store, scale_target(store, false).await, r, n).await
        );
        return;
    }
    let list = |flag: &str, default: &str| -> Vec<u64> {
        let args: Vec<String> = std::env::args().collect();
        let v = args
            .iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1).cloned())
            .unwrap_or_else(|| default.to_owned());
        v.split(',').filter_map(|x| x.parse().ok()).collect()
    };
    shards::header();
    for store in ["memory", "redis", "etcd", "k8s"]
        .into_iter()
        .filter(|s| wanted(s))
    {
        for &r in &list("--replicas", "3,10") {
            for &n in &list("--shard-counts", "64,1024") {
                let out = std::process::Command::new(std::env::current_exe().expect("own path"))
                    .arg("--shards")
                    .env(SHARD_CHILD, format!("{store} {r} {n}"))
                    .stderr(std::process::Stdio::inherit())
                    .output()
                    .expect("run a shard child");
                let text = String::from_utf8_lossy(&out.stdout);
                match text.lines().find(|l| l.starts_with('|')) {
                    Some(row) if out.status.success() => println!("{row}"),
                    _ => println!(
                        "| {store} | {r} | {n} | failed: {} | | | | | | |",
                        out.status
                    ),
                }
            }
        }
    }
}

/// `--kube-max-in-flight N`: the scale run's `SharedWatch` caps its locks'
/// requests in flight at N instead of the default.
fn kube_max_in_flight() -> Option<usize> {
    let args: Vec<String> = std::env::args().collect();
    let i = args.iter().position(|a| a == "--kube-max-in-flight")?;
    args.get(i + 1)?.parse().ok()
}

/// `--etcd-max-in-flight N`: the scale run's shared `EtcdClient` has at
/// most N calls in flight (default 64; 0: no cap, the client's default).
fn etcd_max_in_flight() -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--etcd-max-in-flight")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(64)
}

/// Set in a scale child's environment.
const SCALE_CHILD: &str = "TENURE_BENCH_SCALE_CHILD";

/// The store `name` on a new server, for one scale child.
async fn scale_target(name: &str, separate: bool) -> scale::Target {
    use scale::Target;
    match name {
        "memory" => {
            let f = Arc::new(stores::CountingMemory::new());
            let (o, c) = (f.clone(), f.ops.clone());
            Target {
                open: Box::new(move |lock| {
                    let o = o.clone();
                    Box::pin(async move { o.open(&lock).await })
                }),
                count: Some(Box::new(move || {
                    let c = c.clone();
                    Box::pin(async move { c.load(Ordering::Relaxed) })
                })),
                port: None,
            }
        }
        "redis" => {
            let server =
                tenure_conformance::fixtures::redis::RedisServer::local(Default::default());
            let redis = Arc::new(stores::RedisFactory { server });
            let port = redis.server.addr().port();
            Target {
                open: stores::redis_opener(redis, separate),
                count: None,
                port: Some(port),
            }
        }
        "etcd" => {
            let server = tenure_conformance::fixtures::etcd::EtcdServer::start_local();
            let etcd = Arc::new(stores::EtcdFactory { server });
            let port = etcd.server.addr().port();
            let c = etcd.clone();
            Target {
                open: stores::etcd_opener(etcd, separate, etcd_max_in_flight()),
                count: Some(Box::new(move || {
                    let c = c.clone();
                    Box::pin(async move { c.requests().await })
                })),
                port: Some(port),
            }
        }
        _ => {
            let server = tenure_kube_fixture::KubeApiServer::start()
                .await
                .expect("start the Kubernetes API fixture");
            let kube = Arc::new(stores::KubeFactory { server });
            let port = kube.server.addr().port();
            let c = kube.clone();
            Target {
                open: stores::kube_opener(kube, separate, kube_max_in_flight()),
                count: Some(Box::new(move || {
                    let n = c.requests();
                    Box::pin(async move { n })
                })),
                port: Some(port),
            }
        }
    }
}
