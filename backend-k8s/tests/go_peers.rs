//! tenure and Go electors on one lock: client-go's `tools/leaderelection`
//! (LeaseLock) and Istio's fork (ConfigMap lock, holder key pre-emption),
//! run as real Go processes (`interop/electors`, built and cached by
//! `scripts/go-binary.sh electors`, or `TENURE_GO_ELECTORS`), against the API server
//! of the run: the in-repo fixture, or a real kube-apiserver with
//! `TENURE_K8S_REAL=1` and `KUBECONFIG` (the `make test` pass on
//! kube-apiserver v1.37.2).
//!
//! Oracle, on the wall clock of this one machine: never two candidates
//! leading at once by their own views (Go: from `OnStartedLeading` until its
//! context ends; tenure: from the start of its work until the work is told
//! to stop, which is no earlier than the end of its validity), and the
//! stored `leaseTransitions` rising by one per term, whoever wins.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::Env;
use common::go::*;
use tenure_core::{LeaderElector, LockStore};
use tenure_k8s::ConfigMapLock;

/// The Go candidate `ids[0]` leads, the tenure candidate `ids[1]` follows;
/// the Go leader releases (SIGTERM: `ReleaseOnCancel`) and tenure's watch
/// wakes it at once; the Go candidate `ids[2]` follows, tenure releases,
/// and Go takes the lock at its next retry. Each term raises the count by
/// one. Returns the count before the first hand-off and the Go leader.
/// `go_to_tenure` bounds the first hand-off.
async fn hand_offs_both_ways(
    store: &Arc<dyn LockStore>,
    terms: &Terms,
    go: &dyn Fn(&str) -> GoCandidate,
    ids: [&str; 3],
    go_to_tenure: Duration,
) -> (u64, GoCandidate) {
    hand_offs_both_ways_counting(store, terms, go, ids, go_to_tenure, 2).await
}

/// As [`hand_offs_both_ways`], with the count after the second hand-off
/// expected at `t0 + last` (a Go MultiLock counts from its ConfigMap only).
async fn hand_offs_both_ways_counting(
    store: &Arc<dyn LockStore>,
    terms: &Terms,
    go: &dyn Fn(&str) -> GoCandidate,
    ids: [&str; 3],
    go_to_tenure: Duration,
    last: u64,
) -> (u64, GoCandidate) {
    let [go_first, rust_id, go_second] = ids;
    let go_a = go(go_first);
    wait_for(LEASE * 3, "the Go candidate leads", || {
        terms.leading(go_first)
    })
    .await;
    let t0 = transitions(&**store).await;
    let rust = rust_candidate(store.clone(), rust_id, terms);
    tokio::time::sleep(2 * RETRY).await;
    assert!(!rust.elector.is_leader());
    assert_eq!(rust.elector.leader().as_deref(), Some(go_first));

    let stopped = tokio::time::Instant::now();
    go_a.stop();
    wait_for(go_to_tenure, "tenure takes the released lock", || {
        rust.elector.is_leader()
    })
    .await;
    eprintln!(
        "Go -> tenure hand-off: {:?} after SIGTERM (Go's shutdown and release included)",
        stopped.elapsed()
    );
    assert_eq!(transitions(&**store).await, t0 + 1, "one more term");

    let go_c = go(go_second);
    tokio::time::sleep(2 * RETRY).await;
    assert_eq!(terms.count(go_second), 0, "Go must not take a held lock");
    let released = tokio::time::Instant::now();
    rust.stop().await;
    // At its next retry; with a MultiLock on either side up to a lease
    // more: a Go MultiLock's own release can land on one object only (seen
    // once on the real server, loaded: the Lease ran out instead), and it
    // then reads the two objects as an unknown holder until they agree.
    wait_for(
        go_to_tenure.max(RETRY * 3 + Duration::from_secs(1)),
        "Go takes the released lock",
        || terms.leading(go_second),
    )
    .await;
    eprintln!("tenure -> Go hand-off: {:?}", released.elapsed());
    assert_eq!(
        transitions(&**store).await,
        t0 + last,
        "the count after Go's term"
    );
    (t0, go_c)
}

/// tenure's LeaseLock and client-go's LeaseLock share one Lease: each
/// side's graceful release hands off to the other (tenure by its watch in
/// milliseconds, client-go at its next retry), a kill -9 of the Go leader
/// is taken over after the lease, and the transitions count rises by one
/// per term, whoever wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenure_and_client_go_share_a_lease() {
    let s = Setup::start().await;
    let terms = &s.terms;
    let name = "go-peers-lease";
    let store: Arc<dyn LockStore> = s.lease(name).await;
    let go = |id: &str| s.go("client-go", "lease", name, id, &[]);

    let (t0, go_c) = hand_offs_both_ways(
        &store,
        terms,
        &go,
        ["go-a", "rust-b", "go-c"],
        // A one-object release: tenure's watch delivers it at once.
        2 * RETRY + Duration::from_secs(1),
    )
    .await;

    // kill -9 of the Go leader: tenure takes over after the lease.
    let rust = rust_candidate(store.clone(), "rust-d", terms);
    tokio::time::sleep(2 * RETRY).await;
    go_c.crash(terms);
    takes_over_after_the_lease(&rust, "tenure takes the crashed leader's Lease").await;
    assert_eq!(transitions(&*store).await, t0 + 3, "one more term");
    rust.stop().await;
    terms.assert_no_overlap();
}

/// tenure's ConfigMapLock and Istio's ConfigMap lock share one ConfigMap,
/// and Istio's holder-key pre-emption works across the two: a tenure
/// candidate whose key pre-empts the Istio holder's takes the lock before
/// the lease runs out, and the Istio elector steps down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenure_preempts_istio_on_a_configmap_by_holder_key() {
    let s = Setup::start().await;
    let (env, terms) = (&s.env, &s.terms);
    let name = "go-peers-configmap";
    let store: Arc<dyn LockStore> = Arc::new(
        ConfigMapLock::builder(name)
            .namespace(env.namespace.clone())
            .client(env.client())
            .build()
            .await
            .unwrap(),
    );
    let istio = s.go("istio", "configmap", name, "istio-a", &["-key", "1"]);
    wait_for(LEASE * 3, "Istio leads", || terms.leading("istio-a")).await;
    let by_istio = leader_annotation(env, name).await;
    let held = store.get().await.unwrap().unwrap().record;
    assert_eq!(held.holder_key, "1", "Istio's holder key is read: {held:?}");
    let t0 = held.leader_transitions;

    let elector = LeaderElector::builder(store.clone(), "rust-b")
        .lease_duration(LEASE)
        .renew_deadline(RENEW)
        .retry_period(RETRY)
        .holder_key("2")
        .key_comparison(|holder: &str| holder < "2")
        .build()
        .unwrap();
    let rust = spawn_candidate(elector.clone(), "rust-b", terms);
    // Pre-emption: well before the lease, Istio steps down at its next renew.
    wait_for(LEASE - RETRY, "tenure pre-empts the Istio holder", || {
        elector.is_leader()
    })
    .await;
    wait_for(RENEW + RETRY * 2, "Istio steps down", || {
        !terms.leading("istio-a")
    })
    .await;
    let now = store.get().await.unwrap().unwrap().record;
    assert_eq!(
        (now.holder_identity.as_str(), now.holder_key.as_str()),
        ("rust-b", "2")
    );
    assert_eq!(now.leader_transitions, t0 + 1);
    // The annotation tenure wrote has Istio's fields, no more, no fewer.
    // One deliberate difference: Go writes whole seconds (`metav1.Time`),
    // tenure microseconds (RFC 3339 with a fraction, which Go's parser
    // takes, as this hand-off shows), so that two renews within one second
    // still differ and followers see each as a change.
    let by_tenure = leader_annotation(env, name).await;
    let keys = |v: &serde_json::Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(
        keys(&by_istio),
        keys(&by_tenure),
        "{by_istio} vs {by_tenure}"
    );
    for time in ["acquireTime", "renewTime"] {
        assert!(
            is_whole_second_time(&by_istio[time]),
            "Istio's {time}: {by_istio}"
        );
        assert!(
            is_micro_time(&by_tenure[time]),
            "tenure's {time}: {by_tenure}"
        );
    }
    rust.stop().await;
    istio.stop();
    // Istio's view and ours: never both leading. (Istio learns of the
    // pre-emption only at its next renew, so its view may end after ours
    // began: a pre-empted Go holder is exactly what fencing tokens are for.)
    let all = terms.0.lock().unwrap().clone();
    eprintln!("terms: {all:?}");
}

/// The migration lock: tenure's MultiLock and Istio's `configmapsleases`
/// MultiLock share one ConfigMap and one Lease; graceful hand-offs both
/// ways, never two leaders, and the count rises by one per term.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenure_and_istio_share_a_multilock() {
    let s = Setup::start().await;
    let (env, terms) = (&s.env, &s.terms);
    let name = "go-peers-multilock";
    let store: Arc<dyn LockStore> = Arc::new(
        tenure_k8s::MultiLock::builder(name)
            .namespace(env.namespace.clone())
            .client(env.client())
            .build()
            .await
            .unwrap(),
    );
    let istio = |id: &str| s.go("istio", "multilock", name, id, &[]);
    let (_, go_c) = hand_offs_both_ways(
        &store,
        terms,
        &istio,
        ["istio-a", "rust-b", "istio-c"],
        // A two-object release: once (under load, beside the whole
        // workspace's tests) tenure took it only by the lease's
        // fallback read, not a watch event; bounded by that fallback.
        LEASE + 2 * RETRY + Duration::from_secs(1),
    )
    .await;
    go_c.stop();
    terms.assert_no_overlap();
}

/// A Kubernetes `MicroTime` as client-go writes it: UTC, 6 fraction digits.
fn is_micro_time(v: &serde_json::Value) -> bool {
    let Some(s) = v.as_str() else { return false };
    let b = s.as_bytes();
    b.len() == 27
        && b[10] == b'T'
        && b[19] == b'.'
        && b[26] == b'Z'
        && b[20..26].iter().all(u8::is_ascii_digit)
        && chrono_like(&s[..19])
}

/// An RFC 3339 time without fraction, as client-go's ConfigMap annotation
/// writes it (`metav1.Time`).
fn is_whole_second_time(v: &serde_json::Value) -> bool {
    let Some(s) = v.as_str() else { return false };
    s.len() == 20 && s.ends_with('Z') && chrono_like(&s[..19])
}

/// `YYYY-MM-DDTHH:MM:SS`.
fn chrono_like(s: &str) -> bool {
    s.bytes().enumerate().all(|(i, c)| match i {
        4 | 7 => c == b'-',
        10 => c == b'T',
        13 | 16 => c == b':',
        _ => c.is_ascii_digit(),
    }) && s.len() == 19
}

/// The same keys, the same time formats, the same lease seconds.
fn assert_same_lease_spec(go: &serde_json::Value, ours: &serde_json::Value, what: &str) {
    let keys = |v: &serde_json::Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(
        keys(go),
        keys(ours),
        "{what}: spec fields differ: {go} vs {ours}"
    );
    for time in ["acquireTime", "renewTime"] {
        assert!(is_micro_time(&go[time]), "{what}: Go's {time}: {go}");
        assert!(is_micro_time(&ours[time]), "{what}: {time}: {ours}");
    }
    assert_eq!(
        go["leaseDurationSeconds"], ours["leaseDurationSeconds"],
        "{what}"
    );
}

/// The ConfigMap's leader annotation, parsed.
async fn leader_annotation(env: &Env, name: &str) -> serde_json::Value {
    let object = env.get_object(&env.configmap_path(name)).await.unwrap();
    let raw = object["metadata"]["annotations"][tenure_k8s::LEADER_ANNOTATION]
        .as_str()
        .expect("the leader annotation");
    serde_json::from_str(raw).unwrap()
}

/// A label added by another tool, at the version read (retried on 409).
async fn add_foreign_label(env: &Env, path: &str) {
    for _ in 0..20 {
        let mut object = env.get_object(path).await.expect("the lock object");
        object["metadata"]["labels"]["example.com/team"] = serde_json::json!("sre");
        match env.raw(http::Method::PUT, path, Some(object)).await {
            (200, _) => return,
            (409, _) => continue,
            (code, body) => panic!("label {path}: {code} {body}"),
        }
    }
    panic!("label {path}: 20 conflicts in a row");
}

fn assert_foreign_kept(object: &serde_json::Value, what: &str) {
    assert_eq!(
        object["metadata"]["labels"]["example.com/team"], "sre",
        "{what}: another tool's label lost: {object}"
    );
    assert!(
        object["metadata"]["annotations"][common::TOUCHED_ANNOTATION].is_string(),
        "{what}: another tool's annotation lost: {object}"
    );
}

/// Each side keeps what the other (and a third tool) wrote to the Lease,
/// and writes the record as the other does: tenure takes a Lease from
/// client-go, client-go takes it back, and the spec has the same fields,
/// `MicroTime`s with microseconds and whole lease seconds each time, with
/// another tool's label and annotation kept throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenure_and_client_go_write_the_same_lease_and_keep_each_others_fields() {
    let s = Setup::start().await;
    let (env, terms) = (&s.env, &s.terms);
    let name = "go-peers-fields";
    let path = env.lease_path(name);
    let store: Arc<dyn LockStore> = s.lease(name).await;
    let go = |id: &str| s.go("client-go", "lease", name, id, &[]);
    let go_a = go("go-a");
    wait_for(LEASE * 3, "the Go candidate leads", || {
        terms.leading("go-a")
    })
    .await;
    add_foreign_label(env, &path).await;
    env.touch_object(&path).await;
    let by_go = env.get_object(&path).await.unwrap();

    let rust = rust_candidate(store.clone(), "rust-b", terms);
    tokio::time::sleep(2 * RETRY).await;
    go_a.stop();
    wait_for(
        2 * RETRY + Duration::from_secs(1),
        "tenure takes the lock",
        || rust.elector.is_leader(),
    )
    .await;
    let by_tenure = env.get_object(&path).await.unwrap();
    assert_eq!(by_tenure["spec"]["holderIdentity"], "rust-b");
    assert_same_lease_spec(&by_go["spec"], &by_tenure["spec"], "tenure after client-go");
    assert_foreign_kept(&by_tenure, "tenure's takeover");

    let go_c = go("go-c");
    tokio::time::sleep(2 * RETRY).await;
    rust.stop().await;
    wait_for(
        RETRY * 3 + Duration::from_secs(1),
        "Go takes the released lock",
        || terms.leading("go-c"),
    )
    .await;
    let by_go_again = env.get_object(&path).await.unwrap();
    assert_eq!(by_go_again["spec"]["holderIdentity"], "go-c");
    assert_same_lease_spec(
        &by_go_again["spec"],
        &by_tenure["spec"],
        "client-go after tenure",
    );
    assert_foreign_kept(&by_go_again, "client-go's takeover");
    go_c.stop();
    terms.assert_no_overlap();
}

/// The migration's mixed fleets across languages: tenure's MultiLock with
/// client-go's Lease-only candidates on one name (the Rust side migrated
/// to the MultiLock, the Go side still on the Lease), and tenure's
/// Lease-only `LeaseLock` with Istio's MultiLock. Hand-offs both ways and
/// never two leaders in both. The count rises by one per term in the
/// first; in the second it does not: Istio's MultiLock (client-go's
/// `MultiLock.Get`) takes the count from its ConfigMap only, which a
/// Lease-only term never wrote, so the Go term after a tenure Lease-only
/// term repeats that term's count: a fencing token repeated. Mix Lease-only
/// candidates with tenure's MultiLock (which writes the larger count to
/// both objects), never with a Go MultiLock (the README says so).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_fleet_mixes_lease_only_and_multilock_candidates_across_languages() {
    let s = Setup::start().await;
    let env = &s.env;
    for (name, rust_multi, go_impl, go_lock, last) in [
        ("migrate-rust-multi", true, "client-go", "lease", 2),
        // Istio's term after tenure's repeats tenure's count (t0 + 1).
        ("migrate-go-multi", false, "istio", "multilock", 1),
    ] {
        let terms = Terms::default();
        let store: Arc<dyn LockStore> = if rust_multi {
            Arc::new(
                tenure_k8s::MultiLock::builder(name)
                    .namespace(env.namespace.clone())
                    .client(env.client())
                    .build()
                    .await
                    .unwrap(),
            )
        } else {
            s.lease(name).await
        };
        let go = |id: &str| s.go_into(&terms, go_impl, go_lock, name, id, &[]);
        let (_, go_c) = hand_offs_both_ways_counting(
            &store,
            &terms,
            &go,
            ["go-a", "rust-b", "go-c"],
            // A MultiLock on one side: bounded by the lease's fallback
            // read, as in `tenure_and_istio_share_a_multilock`.
            LEASE + 2 * RETRY + Duration::from_secs(1),
            last,
        )
        .await;
        go_c.stop();
        terms.assert_no_overlap();
    }
}

/// Events: tenure's `LockBuilder::events` and client-go's own recorder
/// (`tools/record`, wired into its LeaseLock as controllers do) record the
/// same Events on one Lease: the same reason, type, count, reporter and
/// subject (the same Lease uid), and the same two messages, each with its
/// own identity. A real API server only (the fixture has no Events).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real kube-apiserver (Events): make test runs it in its kube-apiserver pass"]
async fn tenure_and_client_go_record_the_same_events() {
    assert!(
        common::real_cluster(),
        "Events need a real API server: run `make test` (its kube-apiserver pass), \
         or TENURE_K8S_REAL=1 KUBECONFIG=... with scripts/kube-apiserver-up.sh"
    );
    let s = Setup::start().await;
    let name = "go-events";
    let go = s.go(
        "client-go",
        "lease",
        name,
        "go-a",
        &["-events", "billing-cron"],
    );
    wait_for(Duration::from_secs(10), "go-a leads", || {
        s.terms.leading("go-a")
    })
    .await;
    go.stop();
    let lock = tenure_k8s::LeaseLock::builder(name)
        .namespace(s.env.namespace.clone())
        .client(s.env.client())
        .events(tenure_k8s::EventReporter::new("billing-cron"))
        .build()
        .await
        .unwrap();
    let lock = Arc::new(lock);
    let rust = rust_candidate(lock.clone(), "rust-b", &s.terms);
    wait_for(Duration::from_secs(10), "rust-b leads", || {
        s.terms.leading("rust-b")
    })
    .await;
    rust.stop().await;

    let path = format!(
        "/api/v1/namespaces/{}/events?fieldSelector=involvedObject.name%3D{name}",
        s.env.namespace
    );
    let start = tokio::time::Instant::now();
    let events = loop {
        let (code, list) = s.env.raw(http::Method::GET, &path, None).await;
        assert_eq!(code, 200, "{list}");
        let items = list["items"].as_array().unwrap().clone();
        if items.len() >= 4 || start.elapsed() > Duration::from_secs(10) {
            break items;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let by = |id: &str| -> Vec<serde_json::Value> {
        let mut mine: Vec<_> = events
            .iter()
            .filter(|e| {
                e["message"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with(&format!("{id} "))
            })
            .cloned()
            .collect();
        mine.sort_by_key(|e| {
            e["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        });
        mine
    };
    let (theirs, ours) = (by("go-a"), by("rust-b"));
    let said = |es: &[serde_json::Value]| -> Vec<String> {
        es.iter()
            .map(|e| e["message"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        said(&theirs),
        ["go-a became leader", "go-a stopped leading"],
        "{events:?}"
    );
    assert_eq!(
        said(&ours),
        ["rust-b became leader", "rust-b stopped leading"],
        "{events:?}"
    );
    let fields = [
        "/reason",
        "/type",
        "/count",
        "/source/component",
        "/reportingComponent",
        "/involvedObject/kind",
        "/involvedObject/apiVersion",
        "/involvedObject/namespace",
        "/involvedObject/name",
        "/involvedObject/uid",
    ];
    for (go_event, our_event) in theirs.iter().zip(&ours) {
        for field in fields {
            let (g, o) = (go_event.pointer(field), our_event.pointer(field));
            assert!(g.is_some(), "client-go's Event has no {field}: {go_event}");
            assert_eq!(g, o, "{field}: client-go's {go_event}\nours {our_event}");
        }
        // The instance is each one's identity.
        assert_eq!(go_event["source"]["host"], "go-a");
        assert_eq!(our_event["source"]["host"], "rust-b");
        assert_eq!(our_event["reportingInstance"], "rust-b");
        for key in ["firstTimestamp", "lastTimestamp", "involvedObject"] {
            assert_eq!(go_event[key].is_null(), our_event[key].is_null(), "{key}");
        }
    }
}
