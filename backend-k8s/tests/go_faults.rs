//! Faults with Go electors and tenure on one lock: a client-go leader
//! frozen past its lease (on the API server of the run: the fixture, or
//! the real kube-apiserver of `make test`'s pass 4), and the API server
//! itself killed and restarted under a mixed fleet (on a kube-apiserver of
//! the test's own, so the other tests' server is untouched). Same oracle
//! as `go_peers.rs`: never two candidates leading by their own views, the
//! count up by one per term.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::Env;
use common::go::*;
use tenure_core::LockStore;

/// A client-go leader frozen (SIGSTOP) past its lease: tenure takes the
/// Lease after the lease, no earlier; when the Go process wakes it never
/// writes over tenure (the record still names tenure, the count rose
/// once) and steps down at the renew deadline of the round it starts on
/// waking. Its own view runs on from the wake-up until then: the
/// frozen-process tail, which fencing tokens are for; client-go's is a
/// renew deadline long, reported here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_go_leader_frozen_past_its_lease_is_taken_over_and_steps_down_on_waking() {
    let s = Setup::start().await;
    let terms = &s.terms;
    let name = "go-peers-frozen";
    let store: Arc<dyn LockStore> = s.lease(name).await;
    let go = s.go("client-go", "lease", name, "go-a", &[]);
    wait_for(LEASE * 3, "the Go candidate leads", || {
        terms.leading("go-a")
    })
    .await;
    let t0 = transitions(&*store).await;
    let rust = rust_candidate(store.clone(), "rust-b", terms);
    tokio::time::sleep(2 * RETRY).await;
    assert_eq!(rust.elector.leader().as_deref(), Some("go-a"));

    go.signal("STOP");
    let took = takes_over_after_the_lease(&rust, "tenure takes the frozen leader's Lease").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let woke = now_ns();
    go.signal("CONT");
    // client-go, woken, starts a new renew round with a fresh renew
    // deadline; its renews find another holder and fail, but it steps down
    // only when that deadline passes (tenure's leader steps down at the
    // first renew that finds another holder).
    wait_for(
        RENEW + RETRY * 2 + Duration::from_secs(1),
        "the woken Go leader steps down",
        || !terms.leading("go-a"),
    )
    .await;
    // Woken, client-go never takes the Lease back. It may release it,
    // though: v0.37.2's `tryRelease` reads the record and checks its own
    // *observed* holder, stale if the renew round it woke into ended
    // before reading (its deadline passed while frozen), and so it
    // releases the Lease tenure holds. tenure's term then ends as taken
    // and tenure wins the Lease again: the count rose twice, and tenure
    // had two terms. Either way tenure leads, and never two at once.
    tokio::time::sleep(LEASE + 2 * RETRY).await;
    assert!(
        rust.elector.is_leader(),
        "tenure lost the Lease to the woken leader"
    );
    let record = store.get().await.unwrap().unwrap().record;
    assert_eq!(record.holder_identity, "rust-b");
    let rust_terms = terms.of("rust-b").len() as u64;
    assert!(
        (1..=2).contains(&rust_terms),
        "tenure's terms: {rust_terms}"
    );
    assert_eq!(
        record.leader_transitions,
        t0 + rust_terms,
        "one rise per tenure term: nobody else led"
    );
    if rust_terms == 2 {
        eprintln!("the woken client-go leader released the Lease tenure held; tenure won it again");
    }
    // While frozen it could not act; its view's end comes after the wake.
    let go_end = terms.of("go-a")[0].1.expect("the Go term ended");
    let tail_ms = go_end.saturating_sub(woke) as f64 / 1e6;
    eprintln!(
        "frozen client-go leader: tenure took over {took:?} after the freeze \
         (lease {LEASE:?}); the woken Go leader's own view ran {tail_ms:.1} ms past its wake-up"
    );
    rust.stop().await;
    go.stop();
}

/// Waits until the API server answers `/readyz` with `ok`.
async fn ready(env: &Env, limit: Duration) -> Duration {
    let start = tokio::time::Instant::now();
    loop {
        let req = http::Request::builder()
            .uri("/readyz")
            .body(Vec::new())
            .unwrap();
        if let Ok(text) = env.client().request_text(req).await
            && text == "ok"
        {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "kube-apiserver not ready within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A mixed fleet on one Lease (client-go leading, a tenure and a second
/// client-go candidate following) through a kill -9 of kube-apiserver,
/// down past the renew deadline, and its restart on the same etcd: the
/// Go leader steps down at its renew deadline (its renews fail); nobody
/// leads while the server is down; after the restart one candidate takes
/// the Lease, no earlier than a lease after the last renew anyone saw,
/// and the count rises by one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "starts and restarts a kube-apiserver of its own: make test's pass 4 runs it"]
async fn a_mixed_fleet_keeps_one_leader_through_an_api_server_restart() {
    let mut server = OwnApiServer::start();
    let s = Setup::on(&server).await;
    let (env, terms) = (&s.env, &s.terms);
    let name = "go-faults-restart";
    let store: Arc<dyn LockStore> = s.lease(name).await;
    let go = |id: &str| s.go("client-go", "lease", name, id, &[]);
    let go_a = go("go-a");
    wait_for(LEASE * 3, "the Go candidate leads", || {
        terms.leading("go-a")
    })
    .await;
    let rust = rust_candidate(store.clone(), "rust-b", terms);
    let go_c = go("go-c");
    tokio::time::sleep(4 * RETRY).await;
    let t0 = transitions(&*store).await;

    let down = tokio::time::Instant::now();
    server.kill();
    let stepped_down = wait_for(
        RENEW + RETRY * 2 + Duration::from_secs(1),
        "the Go leader steps down at its renew deadline",
        || !terms.leading("go-a"),
    )
    .await;
    // Down past the lease too: every candidate's view of the last renew
    // has expired by the time the server is back.
    tokio::time::sleep((LEASE + RETRY).saturating_sub(down.elapsed())).await;
    let leaders = |terms: &Terms| {
        ["go-a", "rust-b", "go-c"]
            .into_iter()
            .filter(|id| terms.leading(id))
            .count()
    };
    assert_eq!(leaders(terms), 0, "a leader while the API server was down");
    let down_for = down.elapsed();
    server.restart();
    let serving = ready(env, Duration::from_secs(60)).await;
    let took = wait_for(
        LEASE + RETRY * 4 + Duration::from_secs(2),
        "a candidate takes the Lease after the restart",
        || leaders(terms) == 1,
    )
    .await;
    let record = store.get().await.unwrap().unwrap().record;
    assert_eq!(
        record.leader_transitions,
        t0 + 1,
        "one more term: {record:?}"
    );
    tokio::time::sleep(2 * RETRY).await;
    assert_eq!(leaders(terms), 1);
    eprintln!(
        "kube-apiserver restart: the Go leader stepped down {stepped_down:?} after the kill \
         (renew deadline {RENEW:?}); down {down_for:?}; serving {serving:?} after the restart; \
         {} took the Lease {took:?} after that",
        record.holder_identity
    );
    rust.stop().await;
    go_a.stop();
    go_c.stop();
    terms.assert_no_overlap();
}
