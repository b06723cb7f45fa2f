//! The seeded simulation: thousands of seeds per store kind, replay of one
//! seed, determinism, and the negative controls that must be caught.
//!
//! `TENURE_SIM_SEEDS=N` sets the seeds per kind (default 1000: 3,000 in
//! all); `TENURE_SIM_SEED=S TENURE_SIM_KIND=redis|etcd|kube` replays one.

use std::time::Instant;

use tenure_sim::{Bug, Counts, LOCK_DELAY, Options, StoreKind, plant, simulate};

fn kind_name(kind: StoreKind) -> &'static str {
    match kind {
        StoreKind::Redis => "redis",
        StoreKind::Etcd => "etcd",
        StoreKind::Kube => "kube",
    }
}

fn seeds() -> u64 {
    std::env::var("TENURE_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000)
}

fn replay_line(seed: u64, kind: StoreKind) -> String {
    format!(
        "TENURE_SIM_SEED={seed} TENURE_SIM_KIND={} cargo test -p tenure-sim --test sim replay -- --nocapture",
        kind_name(kind)
    )
}

/// Runs `count` seeds of `kind`; every failing seed prints its replay line.
fn run_seeds(kind: StoreKind, count: u64) {
    let started = Instant::now();
    let mut total = Counts::default();
    let mut failures = Vec::new();
    // Seeds differ per kind, so the kinds explore different schedules.
    let base = match kind {
        StoreKind::Redis => 1_000_000,
        StoreKind::Etcd => 2_000_000,
        StoreKind::Kube => 3_000_000,
    };
    for seed in base..base + count {
        let report = simulate(
            seed,
            Options {
                kind,
                skew_beyond_bound: false,
                lock_delay: LOCK_DELAY,
            },
        );
        total.add(&report.counts);
        if let Some(first) = report.violations.first() {
            failures.push(format!("{}  # {first}", replay_line(seed, kind)));
        }
    }
    eprintln!(
        "{}: {count} seeds in {:.1} s; {total}",
        kind_name(kind),
        started.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{} of {count} seeds failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn seeds_on_a_redis_like_store() {
    run_seeds(StoreKind::Redis, seeds());
}

#[test]
fn seeds_on_an_etcd_like_store() {
    run_seeds(StoreKind::Etcd, seeds());
}

#[test]
fn seeds_on_a_kubernetes_like_store() {
    run_seeds(StoreKind::Kube, seeds());
}

/// Replays `TENURE_SIM_SEED` (and prints its report); without it, checks
/// that a seed replays exactly: the same violations and counts twice.
#[test]
fn replay() {
    if let Ok(seed) = std::env::var("TENURE_SIM_SEED") {
        let seed: u64 = seed.parse().expect("TENURE_SIM_SEED is a number");
        let kind = match std::env::var("TENURE_SIM_KIND").as_deref() {
            Ok("etcd") => StoreKind::Etcd,
            Ok("kube") => StoreKind::Kube,
            _ => StoreKind::Redis,
        };
        let report = simulate(
            seed,
            Options {
                kind,
                skew_beyond_bound: false,
                lock_delay: LOCK_DELAY,
            },
        );
        eprintln!("{report:#?}");
        assert!(report.violations.is_empty(), "{:?}", report.violations);
        return;
    }
    for kind in [StoreKind::Redis, StoreKind::Etcd, StoreKind::Kube] {
        for seed in [1, 2, 3] {
            let options = Options {
                kind,
                skew_beyond_bound: false,
                lock_delay: LOCK_DELAY,
            };
            let a = simulate(seed, options);
            let b = simulate(seed, options);
            assert_eq!(
                (format!("{:?}", a.violations), format!("{}", a.counts)),
                (format!("{:?}", b.violations), format!("{}", b.counts)),
                "seed {seed} on {kind:?} did not replay exactly"
            );
        }
    }
}

/// Runs seeds until one fails; returns how many it took.
fn seeds_to_catch(options: Options, limit: u64) -> Option<(u64, String)> {
    (0..limit).find_map(|seed| {
        let report = simulate(seed, options);
        report.violations.first().map(|v| (seed + 1, v.clone()))
    })
}

fn assert_caught(what: &str, options: Options, limit: u64) {
    let caught = seeds_to_catch(options, limit);
    plant(None);
    match caught {
        Some((n, violation)) => eprintln!("{what}: caught after {n} seeds: {violation}"),
        None => panic!("{what} was not caught in {limit} seeds: the harness is broken"),
    }
}

#[test]
fn a_clock_skew_beyond_the_bound_is_caught() {
    for kind in [StoreKind::Redis, StoreKind::Etcd, StoreKind::Kube] {
        assert_caught(
            &format!("skew beyond lease/renew on {kind:?}"),
            Options {
                kind,
                skew_beyond_bound: true,
                lock_delay: LOCK_DELAY,
            },
            300,
        );
    }
}

#[test]
fn planted_validity_from_the_reply_is_caught() {
    plant(Some(Bug::ValidityFromReply));
    assert_caught(
        "validity from the reply",
        Options {
            kind: StoreKind::Etcd,
            skew_beyond_bound: false,
            lock_delay: LOCK_DELAY,
        },
        2000,
    );
}

#[test]
fn planted_deleted_record_is_free_is_caught() {
    plant(Some(Bug::DeletedRecordIsFree));
    // With no lock_delay: a held create would mask the bug (the hold alone
    // waits out a deleted record's holder).
    assert_caught(
        "a deleted record taken as free",
        Options {
            kind: StoreKind::Etcd,
            skew_beyond_bound: false,
            lock_delay: std::time::Duration::ZERO,
        },
        2000,
    );
}

#[test]
fn planted_change_by_version_is_caught() {
    plant(Some(Bug::ChangeByVersion));
    assert_caught(
        "a new version taken for a change",
        Options {
            kind: StoreKind::Kube,
            skew_beyond_bound: false,
            lock_delay: LOCK_DELAY,
        },
        2000,
    );
}

#[test]
fn planted_lock_delay_before_the_create_is_caught() {
    // The old `lock_delay` (issue 26 item 1): waited before creating, from
    // the first look, with the term starting at the create. The overlaps
    // the simulation once excused as the "documented gap" must show.
    plant(Some(Bug::LockDelayBeforeCreate));
    assert_caught(
        "lock_delay waited before the create",
        Options {
            kind: StoreKind::Redis,
            skew_beyond_bound: false,
            lock_delay: LOCK_DELAY,
        },
        20_000,
    );
}

#[test]
fn planted_failed_renew_counted_as_done_is_caught_on_every_store_kind() {
    // Issue 26 item 7: this class once failed 0 of 1,000 Redis-like seeds
    // (a Redis-like follower needs up to two leases to take over, and the
    // faults healed sooner). Every kind must catch it within the CI seeds.
    for kind in [StoreKind::Redis, StoreKind::Etcd, StoreKind::Kube] {
        plant(Some(Bug::FailedRenewCountsAsDone));
        assert_caught(
            &format!("a failed renew counted as done on {kind:?}"),
            Options {
                kind,
                skew_beyond_bound: false,
                lock_delay: LOCK_DELAY,
            },
            seeds(),
        );
    }
}
