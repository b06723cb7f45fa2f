//! Coordinated Leader Election (KEP-4355) on a real kube-apiserver with its
//! election controller (`scripts/kube-apiserver-up.sh` turns on the
//! `CoordinatedLeaderElection` gate and `coordination.k8s.io/v1beta1`):
//! tenure candidates publish `LeaseCandidate`s, the controller names the
//! holder by `OldestEmulationVersion`, and a preferred holder gets the
//! Lease after a drained hand-off. Beside client-go's coordinated electors
//! (`interop/electors -coordinated`), for the hand-off figure.
//!
//! The in-repo fixture has no controller, so this runs only on a real
//! server: `make test` runs it in its kube-apiserver pass, and elsewhere it
//! fails naming what it needs, never skips. The controller works in steps
//! of 5 s (it pings candidates and waits 5 s for answers), so the bounds
//! here are tens of seconds; the figures are printed.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::go::*;
use tenure_core::LockStore;
use tenure_k8s::LeaseLock;

/// Long enough for the controller to ping, wait its 5 s and name a holder
/// (two rounds), with a margin for a loaded machine.
const ELECTION: Duration = Duration::from_secs(40);

fn require_real_server() {
    assert!(
        common::real_cluster(),
        "coordinated election needs a real kube-apiserver with its controller: run `make test` \
         (its kube-apiserver pass), or TENURE_K8S_REAL=1 KUBECONFIG=... with scripts/kube-apiserver-up.sh"
    );
}

/// A coordinated tenure LeaseLock of `emulation` (binary 1.37.0).
async fn coordinated(s: &Setup, name: &str, emulation: &str) -> Arc<dyn LockStore> {
    Arc::new(
        LeaseLock::builder(name)
            .namespace(s.env.namespace.clone())
            .client(s.env.client())
            .coordinated("1.37.0", emulation)
            .build()
            .await
            .unwrap(),
    )
}

/// The Lease's spec, as the server has it.
async fn lease_spec(s: &Setup, name: &str) -> serde_json::Value {
    let path = format!(
        "/apis/coordination.k8s.io/v1/namespaces/{}/leases/{name}",
        s.env.namespace
    );
    s.env
        .get_object(&path)
        .await
        .map(|l| l["spec"].clone())
        .unwrap_or_default()
}

/// The one identity leading now, by the candidates' own views.
fn leader(terms: &Terms, ids: &[&str]) -> Option<String> {
    let leading: Vec<_> = ids.iter().filter(|id| terms.leading(id)).collect();
    assert!(leading.len() <= 1, "two lead at once: {leading:?}");
    leading.first().map(|id| id.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real kube-apiserver with its election controller: make test runs it in its kube-apiserver pass"]
async fn the_controller_names_the_candidate_with_the_oldest_emulation_version() {
    require_real_server();
    let s = Setup::start().await;
    let name = "coord-pick";
    let ids = ["c-137", "b-136", "a-135"];
    let mut candidates = Vec::new();
    for (id, emulation) in ids.iter().zip(["1.37.0", "1.36.0", "1.35.0"]) {
        let store = coordinated(&s, name, emulation).await;
        candidates.push(rust_candidate(store, id, &s.terms));
    }
    // The controller may elect before every candidate has published (it
    // names whom it has); then it prefers a-135, and the leader yields.
    let took = wait_for(
        ELECTION,
        "a-135 (the oldest emulation version) leads",
        || s.terms.leading("a-135"),
    )
    .await;
    println!("coordinated election: the controller named a-135 after {took:?}");
    let spec = lease_spec(&s, name).await;
    assert_eq!(spec["strategy"], "OldestEmulationVersion", "{spec}");
    assert_eq!(spec["holderIdentity"], "a-135", "{spec}");
    // It keeps leading; nobody else takes the Lease by expiry.
    tokio::time::sleep(2 * LEASE).await;
    assert_eq!(leader(&s.terms, &ids).as_deref(), Some("a-135"));
    assert_eq!(s.terms.count("a-135"), 1, "a-135 leads on");
    // Any earlier leader led once, and yielded: nobody takes it back.
    assert!(s.terms.count("b-136") <= 1 && s.terms.count("c-137") <= 1);
    for c in candidates {
        c.stop().await;
    }
    s.terms.assert_no_overlap();
}

/// How a hand-off to the preferred candidate `to` went: from the moment
/// the controller's `preferredHolder` appeared on the Lease to `to`'s term
/// start (the figure), and from `from`'s term end to it (the gap nobody led).
struct HandOff {
    from_preference: Duration,
    gap: Duration,
}

/// Watches the Lease until `to` leads (polling its spec every 10 ms).
async fn hand_off(s: &Setup, name: &str, from: &str, to: &str) -> HandOff {
    let start = tokio::time::Instant::now();
    let mut preferred_at = None;
    while !s.terms.leading(to) {
        assert!(
            start.elapsed() < ELECTION,
            "{to} did not lead within {ELECTION:?}"
        );
        let spec = lease_spec(s, name).await;
        if preferred_at.is_none() && (spec["preferredHolder"] == to || spec["holderIdentity"] == to)
        {
            preferred_at = Some(now_ns());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = s.terms.of(to).last().unwrap().0;
    let ended = s
        .terms
        .of(from)
        .last()
        .and_then(|t| t.1)
        .expect("the old term ended");
    // A preference tenure acts on within the 10 ms poll is never seen by
    // it: the old leader's term end (it stops at once) bounds it then.
    let preferred_at = preferred_at.unwrap_or(ended).min(ended);
    HandOff {
        from_preference: Duration::from_nanos(started.saturating_sub(preferred_at) as u64),
        gap: Duration::from_nanos(started.saturating_sub(ended) as u64),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real kube-apiserver with its election controller: make test runs it in its kube-apiserver pass"]
async fn a_preferred_holder_gets_the_lease_after_a_drained_handoff_faster_than_client_gos() {
    require_real_server();
    let s = Setup::start().await;

    // tenure: b (1.36) leads; a (1.35) joins; the controller prefers a; b
    // drains its work and releases at once; the controller names a.
    let name = "coord-tenure";
    let b = rust_candidate(coordinated(&s, name, "1.36.0").await, "b-136", &s.terms);
    wait_for(ELECTION, "b-136 leads", || s.terms.leading("b-136")).await;
    let t0 = transitions(&*s.lease(name).await).await;
    let a = rust_candidate(coordinated(&s, name, "1.35.0").await, "a-135", &s.terms);
    let tenure = hand_off(&s, name, "b-136", "a-135").await;
    assert!(!s.terms.leading("b-136"));
    assert_eq!(
        s.terms.count("b-136"),
        1,
        "b yielded once and does not lead again"
    );
    // One term more: a's token is above b's.
    assert_eq!(transitions(&*s.lease(name).await).await, t0 + 1);
    a.stop().await;
    b.stop().await;

    // client-go: the same fleet of client-go coordinated electors. Its
    // leader stops renewing when another is preferred, and the lease runs
    // out before the controller names the preferred one.
    let name = "coord-client-go";
    let flags = |emulation: &'static str| {
        [
            "-coordinated",
            "-binary-version",
            "1.37.0",
            "-emulation-version",
            emulation,
        ]
    };
    let go_b = s.go("client-go", "lease", name, "go-b-136", &flags("1.36.0"));
    wait_for(ELECTION, "go-b-136 leads", || s.terms.leading("go-b-136")).await;
    let go_a = s.go("client-go", "lease", name, "go-a-135", &flags("1.35.0"));
    let client_go = hand_off(&s, name, "go-b-136", "go-a-135").await;
    go_a.stop();
    go_b.stop();
    s.terms.assert_no_overlap();
    println!(
        "coordinated hand-off, from the controller's preference to the preferred holder leading: \
         tenure {:?} (drain + release; {:?} with nobody leading), client-go {:?} (it stops \
         renewing and waits out its renew deadline; {:?} with nobody leading); lease {LEASE:?}, \
         renew deadline {RENEW:?}",
        tenure.from_preference, tenure.gap, client_go.from_preference, client_go.gap
    );
    // tenure hands off without waiting out its renew deadline; client-go
    // waits it out (2 s here) before its lease can go.
    assert!(
        tenure.from_preference < RENEW && tenure.from_preference < client_go.from_preference,
        "tenure {:?}, client-go {:?}",
        tenure.from_preference,
        client_go.from_preference
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real kube-apiserver with its election controller: make test runs it in its kube-apiserver pass"]
async fn tenure_and_client_go_coordinated_candidates_share_one_election() {
    require_real_server();
    let s = Setup::start().await;
    let name = "coord-mixed";
    let flags = [
        "-coordinated",
        "-binary-version",
        "1.37.0",
        "-emulation-version",
        "1.36.0",
    ];
    let go = s.go("client-go", "lease", name, "go-136", &flags);
    wait_for(ELECTION, "go-136 leads", || s.terms.leading("go-136")).await;
    // tenure's candidate emulates the older version: the controller prefers
    // it, client-go's leader lets its lease run out, tenure is named.
    let rust = rust_candidate(coordinated(&s, name, "1.35.0").await, "rust-135", &s.terms);
    wait_for(ELECTION, "rust-135 leads", || s.terms.leading("rust-135")).await;
    // Then tenure yields to an older client-go candidate, drained, at once.
    let older = [
        "-coordinated",
        "-binary-version",
        "1.37.0",
        "-emulation-version",
        "1.34.0",
    ];
    let go_old = s.go("client-go", "lease", name, "go-134", &older);
    let to_go = hand_off(&s, name, "rust-135", "go-134").await;
    println!(
        "tenure yielded to client-go's preferred candidate: it led {:?} after the preference",
        to_go.from_preference
    );
    assert!(to_go.from_preference < RENEW, "{:?}", to_go.from_preference);
    go_old.stop();
    go.stop();
    rust.stop().await;
    s.terms.assert_no_overlap_but_client_go_coordinated(RETRY);
}

/// The uncoordinated path is unchanged beside a coordinated Lease of the
/// same name elsewhere: an ordinary lock still creates its Lease and leads
/// at once, with no strategy on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real kube-apiserver with its election controller: make test runs it in its kube-apiserver pass"]
async fn an_uncoordinated_lock_is_unchanged_with_the_controller_running() {
    require_real_server();
    let s = Setup::start().await;
    let rust = rust_candidate(s.lease("plain").await, "plain-a", &s.terms);
    wait_for(Duration::from_secs(5), "plain-a leads", || {
        s.terms.leading("plain-a")
    })
    .await;
    let spec = lease_spec(&s, "plain").await;
    assert!(spec["strategy"].is_null(), "{spec}");
    rust.stop().await;
}
