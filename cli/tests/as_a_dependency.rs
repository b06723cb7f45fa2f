//! tenure consumed the way users consume it: a crate outside this
//! workspace, in a temporary directory, with a path dependency on the
//! facade and one store feature only, whose `main` is the README's "Use it
//! in a service" snippet on that store. It must build alone (no workspace
//! member lending it features: the way `make demo` once broke) and lead
//! against this test's server.
//!
//! (In the CLI's package, not the facade's: the fixtures are dev-dependencies
//! here already, and `cargo run --example memory` stays light.)
//!
//! The outside crates share one target directory (`target/outside-crates`)
//! and start from this workspace's `Cargo.lock`, so a second run builds in
//! seconds and nothing newer than what CI tested is resolved.
#![cfg(all(feature = "redis", feature = "etcd", feature = "k8s"))]

use std::path::{Path, PathBuf};
use std::process::Command;

use tenure::LockStore;

/// Writes the outside crate: `Cargo.toml` with `deps`, `src/main.rs` =
/// `main`, and this workspace's lock file.
fn outside_crate(name: &str, deps: &str, main: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new().prefix(name).tempdir().unwrap();
    // This test lives in the CLI's package (whose dev-dependencies hold the
    // server fixtures); the facade is its parent directory.
    let facade = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    std::fs::write(
        dir.path().join("Cargo.toml"),
        format!(
            "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2024\"\npublish = false\n\n\
             # Not a member of any workspace above it.\n[workspace]\n\n\
             [dependencies]\n{deps}\n",
            deps = deps.replace("FACADE", &facade.display().to_string()),
        ),
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("src")).unwrap();
    std::fs::write(dir.path().join("src/main.rs"), main).unwrap();
    std::fs::copy(facade.join("Cargo.lock"), dir.path().join("Cargo.lock")).unwrap();
    dir
}

/// Builds the crate in `dir` and runs it with `env`; returns its stdout.
fn build_and_run(dir: &Path, env: &[(&str, &str)]) -> String {
    let target: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("target/outside-crates");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(&cargo)
        .args(["run", "--quiet"])
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", &target)
        // Whatever features the test build had must not leak in.
        .env_remove("RUSTFLAGS")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "the outside crate failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The README's snippet, on the store `$store` builds: it leads, prints its
/// token, then (unlike the README, so the test ends) shuts itself down,
/// which drains the work and releases the lock.
fn readme_main(store: &str) -> String {
    format!(
        r#"use tenure::{{CancellationToken, LeaderElector}};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {{
    {store}
    let elector = LeaderElector::builder(store, "replica-1").build()?; // 15 s / 10 s / 2 s
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    elector.run(shutdown, move |leadership| {{
        let stop = stop.clone();
        async move {{
            // Leading: do the singleton work until told to stop.
            println!("leading, fencing token {{}}", leadership.fencing_token());
            assert!(leadership.is_valid());
            stop.cancel();
            leadership.cancelled().await;
        }}
    }}).await?;
    println!("released");
    Ok(())
}}
"#
    )
}

/// It led, then released: the record on the server is the release the
/// holder wrote (holder empty, the term counted).
async fn assert_led_and_released(stdout: &str, store: &dyn LockStore) {
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("leading, fencing token ")),
        "{stdout}"
    );
    assert!(stdout.lines().any(|l| l == "released"), "{stdout}");
    let stored = store
        .get()
        .await
        .unwrap()
        .expect("the outside crate wrote no record");
    assert_eq!(stored.record.holder_identity, "", "{:?}", stored.record);
    // A release keeps the term's count: the token it led with.
    let token = format!(
        "leading, fencing token {}",
        stored.record.leader_transitions
    );
    assert!(
        stdout.lines().any(|l| l == token),
        "{stdout} vs {:?}",
        stored.record
    );
}

#[test]
fn a_crate_with_only_the_redis_feature_builds_and_leads() {
    let server = tenure_conformance::fixtures::redis::RedisServer::start();
    let dir = outside_crate(
        "outside-redis",
        r#"tenure = { path = "FACADE", features = ["redis"] }
tokio = { version = "1", features = ["rt-multi-thread", "macros"] }"#,
        &readme_main(
            r#"let url = std::env::var("REDIS_URL")?;
    let store = tenure::RedisStore::builder(&url, "my-controller").build().await?;"#,
        ),
    );
    let stdout = build_and_run(dir.path(), &[("REDIS_URL", &server.url())]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = tenure::RedisStore::builder(server.url(), "my-controller")
            .build()
            .await
            .unwrap();
        assert_led_and_released(&stdout, &store).await;
    });
}

#[test]
fn a_crate_with_only_the_etcd_feature_builds_and_leads() {
    let server = tenure_conformance::fixtures::etcd::EtcdServer::start();
    let endpoint = server.endpoints()[0].clone();
    let dir = outside_crate(
        "outside-etcd",
        r#"tenure = { path = "FACADE", features = ["etcd"] }
tokio = { version = "1", features = ["rt-multi-thread", "macros"] }"#,
        &readme_main(
            r#"let endpoint = std::env::var("ETCD_ENDPOINT")?;
    let store = tenure::EtcdStore::builder([endpoint], "my-controller").build().await?;"#,
        ),
    );
    let stdout = build_and_run(dir.path(), &[("ETCD_ENDPOINT", &endpoint)]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = tenure::EtcdStore::builder([endpoint.clone()], "my-controller")
            .build()
            .await
            .unwrap();
        assert_led_and_released(&stdout, &store).await;
    });
}

/// With plain `k8s`, the application picks the Kubernetes version in its own
/// k8s-openapi dependency, as the README tells users (here not the latest,
/// so the crate cannot be leaning on `k8s-latest`).
#[test]
fn a_crate_with_only_the_k8s_feature_and_its_own_kubernetes_version_builds_and_leads() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt
        .block_on(tenure_kube_fixture::KubeApiServer::start())
        .unwrap();
    let kubeconfig = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        kubeconfig.path(),
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fixture\n  cluster:\n    server: {}\n\
             contexts:\n- name: fixture\n  context:\n    cluster: fixture\n    user: me\n    namespace: default\n\
             current-context: fixture\nusers:\n- name: me\n  user: {{}}\n",
            server.url()
        ),
    )
    .unwrap();
    let dir = outside_crate(
        "outside-k8s",
        r#"tenure = { path = "FACADE", features = ["k8s"] }
k8s-openapi = { version = "0.29", features = ["v1_35"] }
tokio = { version = "1", features = ["rt-multi-thread", "macros"] }"#,
        &readme_main(
            r#"let store = tenure::LeaseLock::builder("my-controller").namespace("default").build().await?;"#,
        ),
    );
    let stdout = build_and_run(
        dir.path(),
        &[("KUBECONFIG", kubeconfig.path().to_str().unwrap())],
    );
    rt.block_on(async {
        let config = tenure::k8s::kube::Config::new(server.url().parse().unwrap());
        let client = tenure::k8s::kube::Client::try_from(config).unwrap();
        let store = tenure::LeaseLock::builder("my-controller")
            .namespace("default")
            .client(client)
            .build()
            .await
            .unwrap();
        assert_led_and_released(&stdout, &store).await;
    });
}
