//! Interop: objects exactly as client-go and Istio write them are read
//! correctly, and what we write parses back into the same fields (checked
//! on the raw JSON the API server stores, read with plain HTTP).

mod common;

use std::time::{Duration, SystemTime};

use common::{Env, NAMESPACE};
use k8s_openapi::api::coordination::v1::Lease;
use serde_json::{Value, json};
use tenure_core::{LeaderRecord, LockStore};
use tenure_k8s::{self as wire, HOLDER_KEY_ANNOTATION, LEADER_ANNOTATION};
use tenure_k8s::{ConfigMapLock, LeaseLock};
use tenure_kube_fixture::KubeApiServer;

fn at_micros(micros: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_micros(micros)
}

/// 2024-05-01T10:00:00Z in microseconds.
const MAY_1: u64 = 1_714_557_600_000_000;

async fn env() -> Env {
    Env::fixture(KubeApiServer::start().await.unwrap())
}

/// A Lease as client-go's `LeaseLock` writes it (kube-scheduler's), with
/// Istio's holder-key annotation.
fn client_go_lease() -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": "kube-scheduler",
            "namespace": NAMESPACE,
            "annotations": { "leader.istio.io/holder-key": "revision-b" }
        },
        "spec": {
            "holderIdentity": "node-1_6d4c2c2e-59b2-4a8e-9a6f-4d1e2f3a4b5c",
            "leaseDurationSeconds": 15,
            "acquireTime": "2024-05-01T10:00:00.123456Z",
            "renewTime": "2024-05-01T10:00:05.654321Z",
            "leaseTransitions": 3
        }
    })
}

#[tokio::test]
async fn reads_a_lease_as_client_go_writes_it() {
    let env = env().await;
    let lease = client_go_lease();
    env.put_object(&env.lease_path("kube-scheduler"), lease.clone())
        .await;
    let lock = LeaseLock::new(env.client(), NAMESPACE, "kube-scheduler")
        .await
        .unwrap();
    let read = lock.get().await.unwrap().expect("the lease");
    let expected = {
        let mut r = LeaderRecord::default();
        r.holder_identity = "node-1_6d4c2c2e-59b2-4a8e-9a6f-4d1e2f3a4b5c".into();
        r.holder_key = "revision-b".into();
        r.lease_duration = Duration::from_secs(15);
        r.acquire_time = Some(at_micros(MAY_1 + 123_456));
        r.renew_time = Some(at_micros(MAY_1 + 5_654_321));
        r.leader_transitions = 3;
        r
    };
    assert_eq!(read.record, expected);

    // The pure conversion agrees.
    let typed: Lease = serde_json::from_value(lease).unwrap();
    assert_eq!(
        wire::lease_to_record(typed.spec.as_ref(), typed.metadata.annotations.as_ref()).unwrap(),
        expected
    );
}

#[tokio::test]
async fn reads_a_released_and_an_empty_lease_as_free() {
    let env = env().await;
    // client-go's release: empty holder, lease 1 s, times kept.
    env.put_lease(
        "released",
        json!({"holderIdentity": "", "leaseDurationSeconds": 1,
               "acquireTime": "2024-05-01T10:00:00.000000Z",
               "renewTime": "2024-05-01T10:00:00.000000Z", "leaseTransitions": 4}),
        json!({}),
    )
    .await;
    // `kubectl create` of a bare Lease.
    env.put_lease("bare", json!({}), json!({})).await;
    for name in ["released", "bare"] {
        let lock = LeaseLock::new(env.client(), NAMESPACE, name).await.unwrap();
        let read = lock.get().await.unwrap().unwrap();
        assert!(read.record.is_free(), "{name}: {read:?}");
        assert_eq!(read.record.holder_key, "");
    }
}

#[tokio::test]
async fn writes_a_lease_as_client_go_does() {
    let env = env().await;
    let lock = LeaseLock::new(env.client(), NAMESPACE, "ours")
        .await
        .unwrap();
    let record = {
        let mut r = LeaderRecord::default();
        r.holder_identity = "pod-a".into();
        r.holder_key = "key-1".into();
        r.lease_duration = Duration::from_millis(14_200);
        r.// rounds up to 15
        acquire_time = Some(at_micros(MAY_1 + 123_456));
        r.renew_time = Some(at_micros(MAY_1 + 5_654_321));
        r.leader_transitions = 3;
        r
    };
    let v1 = lock.create(&record).await.unwrap();
    let raw = env.get_object(&env.lease_path("ours")).await.unwrap();
    assert_eq!(
        raw["spec"],
        json!({
            "holderIdentity": "pod-a",
            "leaseDurationSeconds": 15,
            "acquireTime": "2024-05-01T10:00:00.123456Z",
            "renewTime": "2024-05-01T10:00:05.654321Z",
            "leaseTransitions": 3
        })
    );
    assert_eq!(
        raw["metadata"]["annotations"][HOLDER_KEY_ANNOTATION],
        "key-1"
    );
    assert_eq!(raw["metadata"]["resourceVersion"], v1.as_str());

    // Parses back into the same fields (the duration in whole seconds).
    let read = lock.get().await.unwrap().unwrap().record;
    assert_eq!(read.lease_duration, Duration::from_secs(15));
    assert_eq!(
        {
            let mut r = read;
            r.lease_duration = record.lease_duration;
            r
        },
        record
    );

    // Without a holder key the annotation goes; other annotations stay.
    let (code, _) = env
        .raw(http::Method::GET, &env.lease_path("ours"), None)
        .await;
    assert_eq!(code, 200);
    let mut foreign = raw.clone();
    foreign["metadata"]["annotations"]["team"] = json!("sre");
    env.put_object(&env.lease_path("ours"), foreign).await;
    let current = lock.get().await.unwrap().unwrap();
    let free = {
        let mut r = record.clone();
        r.holder_key = String::new();
        r
    };
    lock.update(&free, &current.version).await.unwrap();
    let raw = env.get_object(&env.lease_path("ours")).await.unwrap();
    assert_eq!(raw["metadata"]["annotations"], json!({"team": "sre"}));
}

/// The annotation as client-go writes it (whole seconds, RFC 3339 times
/// without fraction), as Istio writes it (with `holderKey`), and as
/// client-go 1.31+ writes it (`strategy`, `preferredHolder`, zero times as
/// `null`).
#[tokio::test]
async fn reads_configmap_annotations_as_client_go_and_istio_write_them() {
    let env = env().await;
    let cases = [
        (
            "client-go",
            r#"{"holderIdentity":"node-1","leaseDurationSeconds":15,"acquireTime":"2024-05-01T10:00:00Z","renewTime":"2024-05-01T10:00:05Z","leaderTransitions":3}"#,
            {
                let mut r = LeaderRecord::default();
                r.holder_identity = "node-1".into();
                r.holder_key = String::new();
                r.lease_duration = Duration::from_secs(15);
                r.acquire_time = Some(at_micros(MAY_1));
                r.renew_time = Some(at_micros(MAY_1 + 5_000_000));
                r.leader_transitions = 3;
                r
            },
        ),
        (
            "istio",
            r#"{"holderIdentity":"istiod-7f9c","holderKey":"default","leaseDurationSeconds":30,"acquireTime":"2024-05-01T12:00:00+02:00","renewTime":"2024-05-01T10:00:01.5Z","leaderTransitions":0}"#,
            {
                let mut r = LeaderRecord::default();
                r.holder_identity = "istiod-7f9c".into();
                r.holder_key = "default".into();
                r.lease_duration = Duration::from_secs(30);
                r.acquire_time = Some(at_micros(MAY_1));
                r.renew_time = Some(at_micros(MAY_1 + 1_500_000));
                r.leader_transitions = 0;
                r
            },
        ),
        (
            "client-go-1-31",
            r#"{"holderIdentity":"","leaseDurationSeconds":1,"acquireTime":null,"renewTime":null,"leaderTransitions":9,"strategy":"","preferredHolder":""}"#,
            {
                let mut r = LeaderRecord::default();
                r.holder_identity = String::new();
                r.holder_key = String::new();
                r.lease_duration = Duration::from_secs(1);
                r.acquire_time = None;
                r.renew_time = None;
                r.leader_transitions = 9;
                r
            },
        ),
    ];
    for (name, raw, expected) in cases {
        env.put_configmap(name, json!({ LEADER_ANNOTATION: raw }), json!({}))
            .await;
        let lock = ConfigMapLock::new(env.client(), NAMESPACE, name)
            .await
            .unwrap();
        let read = lock.get().await.unwrap().expect("the configmap");
        assert_eq!(read.record, expected, "{name}");
        assert_eq!(wire::annotation_to_record(raw).unwrap(), expected, "{name}");
    }
}

#[tokio::test]
async fn writes_the_configmap_annotation_with_client_go_field_names() {
    let env = env().await;
    env.put_configmap(
        "cm",
        json!({"other": "kept"}),
        json!({"config.yaml": "a: 1"}),
    )
    .await;
    let lock = ConfigMapLock::new(env.client(), NAMESPACE, "cm")
        .await
        .unwrap();
    // A ConfigMap without the annotation holds a free record.
    let current = lock.get().await.unwrap().unwrap();
    assert!(current.record.is_free());
    let record = {
        let mut r = LeaderRecord::default();
        r.holder_identity = "pod-a".into();
        r.holder_key = "k".into();
        r.lease_duration = Duration::from_millis(1500);
        r.acquire_time = Some(at_micros(MAY_1 + 123_456));
        r.renew_time = Some(at_micros(MAY_1 + 5_654_321));
        r.leader_transitions = 7;
        r
    };
    lock.update(&record, &current.version).await.unwrap();
    let raw = env.get_object(&env.configmap_path("cm")).await.unwrap();
    assert_eq!(raw["data"], json!({"config.yaml": "a: 1"}));
    assert_eq!(raw["metadata"]["annotations"]["other"], "kept");
    let annotation: Value = serde_json::from_str(
        raw["metadata"]["annotations"][LEADER_ANNOTATION]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        annotation,
        json!({
            "holderIdentity": "pod-a",
            "holderKey": "k",
            "leaseDurationSeconds": 2,
            "acquireTime": "2024-05-01T10:00:00.123456Z",
            "renewTime": "2024-05-01T10:00:05.654321Z",
            "leaderTransitions": 7
        })
    );
    assert!(
        annotation["leaseDurationSeconds"].is_u64(),
        "an integer, as Go's int"
    );
    let read = lock.get().await.unwrap().unwrap().record;
    assert_eq!(read, {
        let mut r = record;
        r.lease_duration = Duration::from_secs(2);
        r
    });
}
