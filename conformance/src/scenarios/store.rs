//! Store-level scenarios: compare-and-swap semantics, round trips, watch,
//! bad records and names.

use std::time::{Duration, SystemTime};

use futures::StreamExt;
use tenure_core::record::truncate_micros;
use tenure_core::{LeaderRecord, StoreError, Version, WatchEvent};

use crate::StoreFactory;

fn record(holder: &str, transitions: u64) -> LeaderRecord {
    let now = truncate_micros(SystemTime::now());
    {
        let mut r = LeaderRecord::default();
        r.holder_identity = holder.to_owned();
        r.holder_key = String::new();
        r.lease_duration = Duration::from_secs(15);
        r.acquire_time = Some(now);
        r.renew_time = Some(now);
        r.leader_transitions = transitions;
        r
    }
}

async fn open(f: &dyn StoreFactory, lock: &str) -> std::sync::Arc<dyn tenure_core::LockStore> {
    f.open(lock)
        .await
        .unwrap_or_else(|e| panic!("open {lock}: {e}"))
}

fn assert_conflict<T: std::fmt::Debug>(r: Result<T, StoreError>, what: &str) {
    match r {
        Err(StoreError::Conflict { .. }) => {}
        other => panic!("{what}: expected Conflict, got {other:?}"),
    }
}

/// `get` of a lock that was never written returns `None`.
pub async fn get_missing_is_none(f: &dyn StoreFactory) {
    let store = open(f, "get-missing").await;
    assert_eq!(store.get().await.unwrap(), None);
}

/// `create` then `get` returns every field: unicode identity, empty and long
/// holder keys, timestamps to the microsecond, large transition counts.
pub async fn create_then_get_round_trips(f: &dyn StoreFactory) {
    let mut unicode = record("pød-ä 🦀 ☸", 7);
    unicode.holder_key = String::new();
    let mut long_key = record("replica-2", u32::MAX as u64 + 5);
    long_key.holder_key = "k".repeat(1024);
    let mut fractional = record("replica-3", 0);
    fractional.acquire_time =
        Some(SystemTime::UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456));
    fractional.renew_time =
        Some(SystemTime::UNIX_EPOCH + Duration::from_micros(1_700_000_001_000_001));
    for (i, written) in [unicode, long_key, fractional].into_iter().enumerate() {
        let store = open(f, &format!("round-trip-{i}")).await;
        let version = store.create(&written).await.unwrap();
        let read = store.get().await.unwrap().expect("the record just created");
        assert_eq!(read.record, written, "record {i} must round-trip");
        assert_eq!(
            read.version, version,
            "get must return the version create gave"
        );
        // A second client sees the same.
        let other = open(f, &format!("round-trip-{i}")).await;
        assert_eq!(other.get().await.unwrap().unwrap().record, written);
    }
}

/// A second `create` of the same lock is a `Conflict` and changes nothing.
pub async fn create_twice_conflicts(f: &dyn StoreFactory) {
    let a = open(f, "create-twice").await;
    let b = open(f, "create-twice").await;
    let first = record("a", 1);
    let version = a.create(&first).await.unwrap();
    assert_conflict(b.create(&record("b", 1)).await, "second create");
    let read = a.get().await.unwrap().unwrap();
    assert_eq!((read.record, read.version), (first, version));
}

/// `update` with the current version succeeds and returns a new version.
pub async fn update_with_current_version_succeeds(f: &dyn StoreFactory) {
    let store = open(f, "update-current").await;
    let v1 = store.create(&record("a", 1)).await.unwrap();
    let second = record("b", 2);
    let v2 = store.update(&second, &v1).await.unwrap();
    assert_ne!(v1, v2, "a successful update must give a new version");
    let read = store.get().await.unwrap().unwrap();
    assert_eq!((read.record, read.version), (second, v2.clone()));
    // And again from the new version, from another client.
    let other = open(f, "update-current").await;
    let third = record("c", 3);
    let v3 = other.update(&third, &v2).await.unwrap();
    assert!(v3 != v2 && v3 != v1);
}

/// `update` with a stale version is a `Conflict` and changes nothing; when
/// the store returns the current record with the conflict, it is the truth.
pub async fn update_with_stale_version_conflicts(f: &dyn StoreFactory) {
    let store = open(f, "update-stale").await;
    let v1 = store.create(&record("a", 1)).await.unwrap();
    let second = record("b", 2);
    let v2 = store.update(&second, &v1).await.unwrap();
    match store.update(&record("c", 3), &v1).await {
        Err(StoreError::Conflict { current }) => {
            if let Some(current) = current {
                assert_eq!(
                    (current.record, current.version),
                    (second.clone(), v2.clone())
                );
            }
        }
        other => panic!("stale update: expected Conflict, got {other:?}"),
    }
    // A version the store never gave is stale too.
    assert_conflict(
        store
            .update(&record("d", 4), &Version::new("999999999"))
            .await,
        "update with an unknown version",
    );
    let read = store.get().await.unwrap().unwrap();
    assert_eq!((read.record, read.version), (second, v2));
    // Updating a lock that does not exist is a conflict, not a create.
    let missing = open(f, "update-missing").await;
    assert_conflict(
        missing.update(&record("e", 1), &v1).await,
        "update of a missing lock",
    );
    assert_eq!(missing.get().await.unwrap(), None);
}

/// Ten clients update with the same version at once: exactly one wins.
pub async fn concurrent_updates_exactly_one_wins(f: &dyn StoreFactory) {
    let store = open(f, "concurrent").await;
    let v1 = store.create(&record("start", 1)).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..10 {
        let client = open(f, "concurrent").await;
        let v1 = v1.clone();
        tasks.push(tokio::spawn(async move {
            let rec = record(&format!("writer-{i}"), 2);
            (rec.clone(), client.update(&rec, &v1).await)
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        let (rec, result) = task.await.unwrap();
        match result {
            Ok(v) => winners.push((rec, v)),
            Err(StoreError::Conflict { .. }) => {}
            Err(e) => panic!("unexpected error from a concurrent update: {e}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one concurrent update must win");
    let read = store.get().await.unwrap().unwrap();
    assert_eq!((read.record, read.version), winners.pop().unwrap());
}

/// `watch` reports each change, in order, with the written record (where
/// the store can watch); stores that cannot return `None`.
pub async fn watch_reports_each_change_in_order(f: &dyn StoreFactory) {
    let watcher = open(f, "watch-order").await;
    let stream = watcher.watch().await.unwrap();
    let Some(mut stream) = stream else {
        assert!(!f.supports_watch(), "this store must support watch");
        return;
    };
    assert!(
        f.supports_watch(),
        "watch returned a stream, but the factory says it cannot"
    );
    let writer = open(f, "watch-order").await;
    let records = [record("a", 1), record("b", 2), record("c", 3)];
    let mut versions = vec![writer.create(&records[0]).await.unwrap()];
    for r in &records[1..] {
        let v = writer.update(r, versions.last().unwrap()).await.unwrap();
        versions.push(v);
    }
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while seen.len() < 3 {
        let event = tokio::time::timeout_at(deadline, stream.next())
            .await
            .unwrap_or_else(|_| panic!("watch saw only {seen:?} within 10 s"))
            .expect("the watch stream ended");
        match event {
            WatchEvent::Put(v) => seen.push((v.record, v.version)),
            WatchEvent::Deleted => panic!("unexpected delete event"),
            // Resync (or a kind added later): nothing to compare.
            _ => {}
        }
    }
    let expected: Vec<_> = records.into_iter().zip(versions).collect();
    assert_eq!(seen, expected, "watch must report each change in order");
}

/// A stored value that is not a record is `Corrupt` on read, is never
/// overwritten (create and update refuse), and an elector gives up on it
/// with the typed error instead of taking the lock.
pub async fn corrupt_record_is_reported_and_kept(f: &dyn StoreFactory) {
    let foreign = "this is not a lock record";
    f.put_raw("corrupt", foreign).await;
    let store = open(f, "corrupt").await;
    match store.get().await {
        Err(StoreError::Corrupt { .. }) => {}
        other => panic!("get of a foreign value: expected Corrupt, got {other:?}"),
    }
    assert!(
        store.create(&record("a", 1)).await.is_err(),
        "create over a foreign value"
    );
    for version in ["0", "1", "2", "3"] {
        assert!(
            store
                .update(&record("a", 1), &Version::new(version))
                .await
                .is_err(),
            "update over a foreign value at version {version}"
        );
    }
    let elector = tenure_core::LeaderElector::builder(store.clone(), "candidate")
        .lease_duration(Duration::from_secs(1))
        .renew_deadline(Duration::from_millis(600))
        .retry_period(Duration::from_millis(200))
        .build()
        .unwrap();
    let run = elector.run(tenure_core::CancellationToken::new(), |_| async {});
    match tokio::time::timeout(Duration::from_secs(10), run).await {
        Ok(Err(tenure_core::ElectionError::Store(StoreError::Corrupt { .. }))) => {}
        Ok(other) => panic!("elector on a foreign value: expected Corrupt, got {other:?}"),
        Err(_) => panic!("the elector kept running on a foreign value"),
    }
    assert_eq!(
        f.get_raw("corrupt").await.as_deref(),
        Some(foreign),
        "the foreign value must be kept"
    );
}

/// Names that break the portable lock-name rule are `InvalidName`, either
/// when the store is opened or on its first call.
pub async fn invalid_lock_names_are_rejected(f: &dyn StoreFactory) {
    let long = "x".repeat(254);
    for name in [
        "",
        "Upper",
        "with space",
        "a/b",
        "-leading",
        "trailing-",
        "ünï",
        &long,
    ] {
        let result = match f.open(name).await {
            Err(e) => Err(e),
            Ok(store) => store.get().await.map(|_| ()),
        };
        match result {
            Err(StoreError::InvalidName { .. }) => {}
            other => panic!("lock name {name:?}: expected InvalidName, got {other:?}"),
        }
    }
}
