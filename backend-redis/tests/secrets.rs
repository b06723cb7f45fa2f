//! The password never shows: not in `Debug`, `describe()`, logs or errors.
//!
//! Its own test binary, so that no other test's tracing subscriber is
//! around while the logs are captured.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tenure_conformance::fixtures::redis::{RedisServer, RedisServerOptions};
use tenure_core::{LeaderRecord, LockStore, StoreError};
use tenure_redis::RedisStore;

fn record(holder: &str) -> LeaderRecord {
    LeaderRecord::held_by(holder, Duration::from_secs(15))
}

/// A `tracing` writer that keeps everything written, to search the logs.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn password_never_appears_in_debug_describe_logs_or_errors() {
    const SECRET: &str = "Sup3r-S3cret/pw";
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer({
            let logs = logs.clone();
            move || logs.clone()
        })
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let mut server = RedisServer::local(RedisServerOptions {
        password: Some(SECRET.into()),
        tls: None,
    });
    let port = server.addr().port();
    let encoded = "Sup3r-S3cret%2Fpw";
    let url_with_secret = format!("redis://default:{encoded}@127.0.0.1:{port}/0");
    let mut shown = Vec::new();

    let builder = RedisStore::builder(url_with_secret.clone(), "secret").password(SECRET);
    shown.push(format!("{builder:?}"));
    let store = builder.build().await.expect("right password");
    shown.push(format!("{store:?}"));
    shown.push(format!("{store:#?}"));
    shown.push(store.describe());
    assert_eq!(
        store.describe(),
        format!("redis://default@127.0.0.1:{port}/0 key tenure:{{secret}}")
    );
    store.create(&record("a")).await.unwrap();

    // Errors: wrong passwords (a secret too), a bad URL, a stopped server.
    let wrong = format!("{SECRET}-wrong");
    for result in [
        RedisStore::builder(server.url(), "secret")
            .password(wrong.clone())
            .build()
            .await,
        RedisStore::builder(
            format!("redis://default:{wrong}@127.0.0.1:{port}"),
            "secret",
        )
        .build()
        .await,
        RedisStore::builder(format!("nope://u:{SECRET}@x"), "secret")
            .build()
            .await,
    ] {
        let err = result.expect_err("must fail");
        shown.push(err.to_string());
        shown.push(format!("{err:?}"));
    }
    server.stop();
    let err = store.get().await.expect_err("server stopped");
    assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}");
    shown.push(format!("{err} {err:?}"));

    let logged = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    assert!(logged.contains("connecting to redis"), "logs were captured");
    shown.push(logged);
    for text in &shown {
        for secret in [SECRET, encoded, &wrong] {
            assert!(!text.contains(secret), "secret shown in: {text}");
        }
    }
}
