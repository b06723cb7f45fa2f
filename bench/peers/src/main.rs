//! tenure's `LeaseLock` beside the Rust crates a Kubernetes user would
//! otherwise pick, on one API server fixture run as a process of its own.
//!
//! ```text
//! (cd ../.. && cargo build --release -p tenure-kube-fixture)
//! cargo run --release -- [--peers tenure,kle,klm,kcoord,kubert] [--quick]
//! ```
//!
//! Measures, per elector, with the same 4 s lease (see `electors.rs`):
//! hand-off after a graceful exit, fail-over after a crash, API requests
//! per second and client CPU at N = 1 / 10 / 50 candidates, and four
//! fault rounds: five candidates racing for a fresh lease, four followers
//! racing for the lease of a leader that crashed, a candidate joining while
//! another leads, and a follower whose wall clock is 10 s ahead (run under
//! `faketime`). A "two leaders" figure
//! is time during which two candidates' own views said "I lead" at once.

mod electors;
mod fixture;

use std::collections::BTreeMap;
use std::time::Duration;

use electors::{Candidate, LEASE, Peer};
use tokio::io::AsyncBufReadExt;
use tokio::time::Instant;

struct Runs {
    handoff: usize,
    failover: usize,
    sizes: Vec<usize>,
    window: Duration,
    race: usize,
    crash_race: usize,
    skew: usize,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    if let Some(i) = args.iter().position(|a| a == "--candidate") {
        // A child: one candidate, reporting its view on stdout.
        let arg = |name: &str| {
            let j = args.iter().position(|a| a == name).expect(name);
            args[j + 1].clone()
        };
        let peer = Peer::from_slug(&args[i + 1]).expect("a peer slug");
        return rt.block_on(child(peer, arg("--url"), arg("--lease"), arg("--id")));
    }
    let quick = args.iter().any(|a| a == "--quick");
    let peers: Vec<Peer> = match args.iter().position(|a| a == "--peers") {
        Some(i) => args[i + 1]
            .split(',')
            .map(|s| Peer::from_slug(s).unwrap_or_else(|| panic!("unknown peer {s}")))
            .collect(),
        None => Peer::ALL.to_vec(),
    };
    let runs = if quick {
        Runs {
            handoff: 3,
            failover: 2,
            sizes: vec![1, 10],
            window: Duration::from_secs(4),
            race: 2,
            crash_race: 1,
            skew: 1,
        }
    } else {
        Runs {
            handoff: 10,
            failover: 5,
            sizes: vec![1, 10, 50],
            window: Duration::from_secs(10),
            race: 10,
            crash_race: 5,
            skew: 3,
        }
    };
    rt.block_on(run_all(&peers, &runs));
}

async fn run_all(peers: &[Peer], runs: &Runs) {
    let fx = fixture::Fixture::start();
    println!("# Rust Kubernetes electors on one API server fixture\n");
    println!(
        "Lease {LEASE:?}; {} hand-offs, {} fail-overs per elector; load window {:?}.\n",
        runs.handoff, runs.failover, runs.window
    );
    let mut timing = Vec::new();
    for &peer in peers {
        let h = hand_offs(peer, &fx.url, false, runs.handoff).await;
        let f = hand_offs(peer, &fx.url, true, runs.failover).await;
        timing.push((peer, h, f));
    }
    println!("## Hand-off and fail-over (two candidates; the leaver is replaced)\n");
    println!("| elector | graceful hand-off p50 | max | crash fail-over p50 | max | timed out |");
    println!("|---|---|---|---|---|---|");
    for (peer, h, f) in &timing {
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            peer.name(),
            ms(h.p50()),
            ms(h.max()),
            ms(f.p50()),
            ms(f.max()),
            h.timeouts + f.timeouts
        );
    }

    println!("\n## Load: API requests per second, client CPU\n");
    println!(
        "| elector | N | requests/s | by verb (per s) | writes/s | requests per write | client CPU ms/s |"
    );
    println!("|---|---|---|---|---|---|---|");
    for &peer in peers {
        for &n in &runs.sizes {
            let l = load(peer, &fx, n, runs.window).await;
            let secs = runs.window.as_secs_f64();
            let total: u64 = l.counts.values().sum();
            let writes: u64 = ["create", "update", "patch"]
                .iter()
                .map(|v| l.counts.get(*v).copied().unwrap_or(0))
                .sum();
            let verbs: Vec<String> = l
                .counts
                .iter()
                .map(|(v, c)| format!("{v} {:.1}", *c as f64 / secs))
                .collect();
            println!(
                "| {} | {n} | {:.1} | {} | {:.2} | {} | {:.1} |",
                peer.name(),
                total as f64 / secs,
                verbs.join(", "),
                writes as f64 / secs,
                if writes > 0 {
                    format!("{:.2}", total as f64 / writes as f64)
                } else {
                    "–".into()
                },
                l.cpu.as_secs_f64() * 1000.0 / secs,
            );
        }
    }

    println!("\n## Fault rounds: did two candidates ever lead at once?\n");
    println!(
        "| elector | race of 5 for a new lease: rounds with two leaders | longest overlap | leader crash, 4 followers race: rounds with two leaders | longest overlap | late joiner: rounds with two leaders | longest overlap | joiner ended up leading | skewed clock (+10 s): rounds with two leaders | longest overlap | skewed follower took over |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for &peer in peers {
        let race = race(peer, &fx.url, runs.race).await;
        let crashed = crash_race(peer, &fx.url, runs.crash_race).await;
        let join = joiner(peer, &fx.url, runs.skew).await;
        let skew = skewed(peer, &fx.url, runs.skew).await;
        println!(
            "| {} | {} of {} | {} | {} of {} | {} | {} of {} | {} | {} of {} | {} of {} | {} | {} of {} |",
            peer.name(),
            race.rounds_with_two,
            runs.race,
            ms(race.longest),
            crashed.rounds_with_two,
            runs.crash_race,
            ms(crashed.longest),
            join.rounds_with_two,
            runs.skew,
            ms(join.longest),
            join.taken_over,
            runs.skew,
            skew.rounds_with_two,
            runs.skew,
            ms(skew.longest),
            skew.taken_over,
            runs.skew
        );
    }
}

fn ms(d: Option<Duration>) -> String {
    match d {
        Some(d) => format!("{:.1} ms", d.as_secs_f64() * 1000.0),
        None => "–".into(),
    }
}

#[derive(Default)]
struct Samples {
    values: Vec<Duration>,
    timeouts: usize,
}

impl Samples {
    fn sorted(&self) -> Vec<Duration> {
        let mut v = self.values.clone();
        v.sort();
        v
    }
    fn p50(&self) -> Option<Duration> {
        let v = self.sorted();
        v.get(v.len().saturating_sub(1) / 2).copied()
    }
    fn max(&self) -> Option<Duration> {
        self.sorted().last().copied()
    }
}

/// The index of a candidate that leads, waiting up to `limit`.
async fn leader_of(cands: &[Candidate], limit: Duration) -> Option<usize> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(i) = cands.iter().position(Candidate::is_leading) {
            return Some(i);
        }
        let waits = cands.iter().map(|c| {
            let mut rx = c.leading.clone();
            Box::pin(async move {
                let _ = rx.changed().await;
            })
        });
        if tokio::time::timeout_at(deadline, futures::future::select_all(waits))
            .await
            .is_err()
        {
            return None;
        }
    }
}

/// Two candidates; `runs` times the leader leaves (gracefully, or by a
/// crash) after the follower has waited 1.5 s; time until the other leads.
async fn hand_offs(peer: Peer, url: &str, crash: bool, runs: usize) -> Samples {
    let lease = format!(
        "{}-{}",
        peer.slug(),
        if crash { "crash" } else { "graceful" }
    );
    electors::prepare(peer, url, &lease).await;
    let mut cands = Vec::new();
    for id in 0..2 {
        cands.push(electors::start(peer, url, &lease, format!("c{id}")).await);
    }
    let limit = LEASE * 4;
    let mut samples = Samples::default();
    if leader_of(&cands, limit).await.is_none() {
        samples.timeouts = runs;
        return samples;
    }
    for run in 0..runs {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        // Leadership may have moved while we waited: the one leading now.
        let Some(leader) = leader_of(&cands, limit).await else {
            samples.timeouts += runs - run;
            break;
        };
        let old = cands.remove(leader);
        let t = Instant::now();
        if crash {
            old.crash();
        } else {
            // Stop it in the background: the clock runs from the request.
            tokio::spawn(old.stop());
        }
        match leader_of(&cands, limit).await {
            Some(_) => samples.values.push(t.elapsed()),
            None => samples.timeouts += 1,
        }
        cands.push(electors::start(peer, url, &lease, format!("c{}", run + 2)).await);
    }
    for c in cands {
        c.crash();
    }
    samples
}

struct Load {
    counts: BTreeMap<String, u64>,
    cpu: Duration,
}

/// `n` candidates on one lease; once one leads and 3 s have passed, the
/// requests the server answers and this process's CPU over `window`.
async fn load(peer: Peer, fx: &fixture::Fixture, n: usize, window: Duration) -> Load {
    let lease = format!("{}-load-{n}", peer.slug());
    electors::prepare(peer, &fx.url, &lease).await;
    let starts = (0..n).map(|i| electors::start(peer, &fx.url, &lease, format!("c{i}")));
    let mut cands = Vec::new();
    for s in starts {
        cands.push(s.await);
    }
    let _ = leader_of(&cands, LEASE * 4).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    fx.take_counts().await;
    let cpu0 = fixture::cpu_time();
    tokio::time::sleep(window).await;
    let cpu = fixture::cpu_time().saturating_sub(cpu0);
    let counts = fx.take_counts().await;
    for c in cands {
        c.crash();
    }
    Load { counts, cpu }
}

#[derive(Default)]
struct Overlap {
    rounds_with_two: usize,
    longest: Option<Duration>,
    taken_over: usize,
}

impl Overlap {
    fn add(&mut self, overlap: Duration) {
        if overlap > Duration::ZERO {
            self.rounds_with_two += 1;
            self.longest = Some(self.longest.unwrap_or_default().max(overlap));
        }
    }
}

/// Samples `views` every millisecond for `span`: the longest stretch
/// during which two or more said "I lead".
async fn watch_overlap(views: &[watch_view::View], span: Duration) -> Duration {
    let end = Instant::now() + span;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    let mut longest = Duration::ZERO;
    let mut since: Option<Instant> = None;
    while Instant::now() < end {
        tick.tick().await;
        let leaders = views.iter().filter(|v| v.leading()).count();
        match (leaders >= 2, since) {
            (true, None) => since = Some(Instant::now()),
            (false, Some(s)) => {
                longest = longest.max(s.elapsed());
                since = None;
            }
            _ => {}
        }
    }
    if let Some(s) = since {
        longest = longest.max(s.elapsed());
    }
    longest
}

mod watch_view {
    use tokio::sync::watch;
    /// A candidate's view, in this process or reported by a child.
    pub struct View(pub watch::Receiver<bool>);
    impl View {
        pub fn leading(&self) -> bool {
            *self.0.borrow()
        }
    }
}

/// Five candidates start at once on a fresh lease, `rounds` times.
async fn race(peer: Peer, url: &str, rounds: usize) -> Overlap {
    let mut result = Overlap::default();
    for round in 0..rounds {
        let lease = format!("{}-race-{round}", peer.slug());
        electors::prepare(peer, url, &lease).await;
        let starts = (0..5).map(|i| electors::start(peer, url, &lease, format!("r{i}")));
        let cands: Vec<Candidate> = futures::future::join_all(starts).await;
        let views: Vec<_> = cands
            .iter()
            .map(|c| watch_view::View(c.leading.clone()))
            .collect();
        result.add(watch_overlap(&views, Duration::from_secs(3)).await);
        for c in cands {
            c.crash();
        }
    }
    result
}

/// Five candidates; the leader crashes and the four followers race for the
/// expired lease, `rounds` times, each watched for two leases.
async fn crash_race(peer: Peer, url: &str, rounds: usize) -> Overlap {
    let mut result = Overlap::default();
    for round in 0..rounds {
        let lease = format!("{}-crash-race-{round}", peer.slug());
        electors::prepare(peer, url, &lease).await;
        let mut cands = Vec::new();
        for i in 0..5 {
            cands.push(electors::start(peer, url, &lease, format!("x{i}")).await);
        }
        let Some(leader) = leader_of(&cands, LEASE * 4).await else {
            panic!("{}: no leader for the crash race", peer.name());
        };
        tokio::time::sleep(Duration::from_millis(1500)).await;
        if let Some(i) = cands.iter().position(Candidate::is_leading) {
            cands.remove(i).crash();
        } else {
            cands.remove(leader).crash();
        }
        let views: Vec<_> = cands
            .iter()
            .map(|c| watch_view::View(c.leading.clone()))
            .collect();
        result.add(watch_overlap(&views, LEASE * 2).await);
        for c in cands {
            c.crash();
        }
    }
    result
}

/// A leader holds the lease; a new candidate joins, `rounds` times, each
/// watched for two leases (a joiner must wait, whatever it writes first).
async fn joiner(peer: Peer, url: &str, rounds: usize) -> Overlap {
    let mut result = Overlap::default();
    for round in 0..rounds {
        let lease = format!("{}-join-{round}", peer.slug());
        electors::prepare(peer, url, &lease).await;
        let leader = electors::start(peer, url, &lease, "first".into()).await;
        if leader_of(std::slice::from_ref(&leader), LEASE * 4)
            .await
            .is_none()
        {
            panic!("{}: no leader for the join round", peer.name());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let late = electors::start(peer, url, &lease, "late".into()).await;
        let views = [
            watch_view::View(leader.leading.clone()),
            watch_view::View(late.leading.clone()),
        ];
        let overlap = watch_overlap(&views, LEASE * 2).await;
        if late.is_leading() && !leader.is_leading() {
            result.taken_over += 1;
        }
        result.add(overlap);
        leader.crash();
        late.crash();
    }
    result
}

/// A leader here; then a follower in a child process whose wall clock is
/// 10 s ahead (`faketime`), `rounds` times, each watched for three leases.
async fn skewed(peer: Peer, url: &str, rounds: usize) -> Overlap {
    let mut result = Overlap::default();
    for round in 0..rounds {
        let lease = format!("{}-skew-{round}", peer.slug());
        electors::prepare(peer, url, &lease).await;
        let leader = electors::start(peer, url, &lease, "honest".into()).await;
        if leader_of(std::slice::from_ref(&leader), LEASE * 4)
            .await
            .is_none()
        {
            panic!("{}: no leader for the skew round", peer.name());
        }
        let exe = std::env::current_exe().expect("own path");
        let mut child = tokio::process::Command::new("faketime")
            .arg("-f")
            .arg("+10s")
            .arg(exe)
            .args([
                "--candidate",
                peer.slug(),
                "--url",
                url,
                "--lease",
                &lease,
                "--id",
                "skewed",
            ])
            // Only the wall clock is off: timers and Instants run true.
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("faketime (apt install faketime)");
        let (tx, rx) = tokio::sync::watch::channel(false);
        let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("piped")).lines();
        let reader = tokio::spawn(async move {
            let mut ever = false;
            while let Ok(Some(line)) = lines.next_line().await {
                let lead = line == "lead";
                ever |= lead;
                tx.send_replace(lead);
            }
            ever
        });
        let views = [
            watch_view::View(leader.leading.clone()),
            watch_view::View(rx),
        ];
        result.add(watch_overlap(&views, LEASE * 3).await);
        let _ = child.kill().await;
        if reader.await.unwrap_or(false) {
            result.taken_over += 1;
        }
        leader.crash();
    }
    result
}

/// The child of [`skewed`]: one candidate; prints `lead` / `follow` on
/// every change of its view; ends when stdin closes.
async fn child(peer: Peer, url: String, lease: String, id: String) {
    let cand = electors::start(peer, &url, &lease, id).await;
    let mut rx = cand.leading.clone();
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    loop {
        println!(
            "{}",
            if *rx.borrow_and_update() {
                "lead"
            } else {
                "follow"
            }
        );
        tokio::select! {
            changed = rx.changed() => if changed.is_err() { break },
            line = stdin.next_line() => if !matches!(line, Ok(Some(_))) { break },
        }
    }
    cand.crash();
}
