//! `tenure shard`: `N` shards shared fairly among the live replicas, one
//! command per owned shard, each under its own supervisor with the same
//! deadline guarantee as `tenure run`.

use std::sync::{Arc, Mutex};

use clap::Args;
use tenure::shards::{Shards, shard_selector};
use tenure::{CancellationToken, LockStore, StoreError};

use crate::Failure;
use crate::output::say;
use crate::run::{Timing, TimingArgs};
use crate::term::{self, CommandSpec, Outcome, OutcomeSlot};

/// Arguments of `tenure shard`.
#[derive(Args, Debug)]
pub(crate) struct ShardArgs {
    /// The shards' base lock: its name N makes the locks N-shard-J and
    /// N-member-K (memory://jobs, redis://host:port/jobs, etcd://..., k8s://ns/jobs).
    #[arg(long, value_name = "URL")]
    lock: String,
    /// How many shards.
    #[arg(long)]
    shards: u32,
    /// This replica's identity (unique among replicas); default: hostname-pid.
    #[arg(long)]
    identity: Option<String>,
    /// Member slots (each a lock): at least the most replicas that ever
    /// run at once.
    #[arg(long, default_value = "32")]
    member_slots: u32,
    #[command(flatten)]
    timing: TimingArgs,
    /// The command to run for each owned shard, with TENURE_SHARD,
    /// TENURE_SHARDS, TENURE_FENCING_TOKEN and TENURE_SHARD_SELECTOR.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<String>,
}

/// The URL of lock `name` on the store of `base` (its last path segment,
/// or a memory lock's name, replaced).
fn lock_url(base: &str, name: &str) -> String {
    let (head, query) = match base.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (base, None),
    };
    let cut = head.rfind('/').map_or(0, |i| i + 1);
    let mut url = format!("{}{name}", &head[..cut]);
    if let Some(q) = query {
        url = format!("{url}?{q}");
    }
    url
}

/// The base lock's name (the URL's last path segment, or host for memory).
fn base_name(base: &str) -> &str {
    let head = base.split('?').next().unwrap_or(base);
    head.rsplit('/').next().unwrap_or(head)
}

pub(crate) async fn shard(args: ShardArgs) -> Result<u8, Failure> {
    let timing = Timing::from_args(&args.timing, None)?;
    if args.shards == 0 {
        return Err(Failure::input("--shards must be at least 1"));
    }
    let identity = args
        .identity
        .clone()
        .unwrap_or_else(crate::run::default_identity);
    let base = args.lock.clone();
    let name = base_name(&base).to_owned();
    if name.is_empty() || name.contains(':') {
        return Err(Failure::input(format!(
            "--lock {}: name the shards' base lock, as in redis://host:6379/jobs",
            tenure::redact(&base)
        )));
    }
    // Every lock opened once before the shards start, so a bad URL or an
    // unreachable store is one clear line, as with `tenure run`.
    // Signals first: a SIGTERM while the store is reached ends the run
    // cleanly (nothing is held yet), never by the default action.
    let mut signals =
        crate::run::Signals::new().map_err(|e| Failure::runtime(format!("signals: {e}")))?;
    let reach = async {
        let first = tenure::connect(&lock_url(&base, &format!("{name}-member-0"))).await?;
        first.get().await?;
        Ok::<(), Failure>(())
    };
    tokio::select! {
        reached = reach => reached?,
        _ = signals.next() => {
            say("signal received before the store answered: stopped");
            return Ok(0);
        }
    }
    let opener = {
        let base = base.clone();
        move |lock: String| {
            let url = lock_url(&base, &lock);
            async move {
                tenure::connect(&url).await.map_err(|e| match e {
                    tenure::ConnectError::Store(s) => s,
                    other => StoreError::InvalidConfig {
                        message: crate::said(&other),
                        source: None,
                    },
                })
            }
        }
    };
    let shards = Shards::builder(name, identity.clone(), args.shards, opener)
        .member_slots(args.member_slots)
        .lease_duration(args.timing.lease_duration)
        .renew_deadline(timing.engine_renew_deadline)
        .retry_period(args.timing.retry_period)
        .build()
        .map_err(|e| Failure::input(format!("invalid timing: {e}")))?;
    say(format!(
        "{identity} campaigning for its share of {} shards of {}",
        args.shards,
        tenure::redact(&base)
    ));
    let shutdown = CancellationToken::new();
    let run = {
        let (shards, shutdown) = (shards.clone(), shutdown.clone());
        let (argv, grace, count) = (args.command.clone(), timing.grace, args.shards);
        tokio::spawn(async move {
            shards
                .run(shutdown, move |shard| {
                    let index = shard.index();
                    let spec = CommandSpec {
                        argv: argv.clone(),
                        lock: shard.leadership().lock_description().to_owned(),
                        grace,
                        sync: None,
                        env: vec![
                            ("TENURE_SHARD".into(), index.to_string()),
                            ("TENURE_SHARDS".into(), count.to_string()),
                            (
                                "TENURE_SHARD_SELECTOR".into(),
                                shard_selector(index, count, "object.metadata.uid"),
                            ),
                        ],
                        tag: Some(format!("shard {index}")),
                    };
                    async move {
                        let outcome: OutcomeSlot = Arc::new(Mutex::new(None));
                        // The command's end ends this shard's term only: the
                        // shard is handed back and campaigned for again.
                        let ended = CancellationToken::new();
                        term::lead(spec, shard.leadership().clone(), outcome.clone(), ended).await;
                        if let Some(Outcome::Failed(why)) = outcome.lock().unwrap().take() {
                            say(format!("shard {index}: {why}"));
                        }
                    }
                })
                .await
        })
    };
    let mut owned = shards.owned();
    let mut last = owned.borrow_and_update().clone();
    let result = {
        tokio::pin!(run);
        loop {
            tokio::select! {
                result = &mut run => break result,
                _ = signals.next() => {
                    say("signal received: stopping every shard's command, then releasing");
                    shutdown.cancel();
                }
                changed = owned.changed() => {
                    if changed.is_err() { continue; }
                    let now = owned.borrow_and_update().clone();
                    if now != last {
                        say(format!("owning {} of {} shards: {:?}", now.len(), args.shards, now));
                        last = now;
                    }
                }
            }
        }
    };
    match result {
        Ok(Ok(())) => {
            say("released and stopped");
            Ok(0)
        }
        Ok(Err(e)) => Err(match &e {
            tenure::ElectionError::Store(s) if s.is_bad_input() => Failure::input(crate::said(&e)),
            _ => Failure::runtime(crate::said(&e)),
        }),
        Err(e) => Err(Failure::runtime(format!("the shards' task failed: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_urls_replace_the_name() {
        assert_eq!(
            lock_url("memory://jobs", "jobs-shard-1"),
            "memory://jobs-shard-1"
        );
        assert_eq!(
            lock_url("redis://u:p/w@h:6379/jobs?db=2", "jobs-member-0"),
            "redis://u:p/w@h:6379/jobs-member-0?db=2"
        );
        assert_eq!(
            lock_url("k8s://ns/jobs?kind=lease", "jobs-shard-3"),
            "k8s://ns/jobs-shard-3?kind=lease"
        );
        assert_eq!(base_name("etcd://h:1,h:2/jobs?prefix=x"), "jobs");
        assert_eq!(base_name("memory://jobs"), "jobs");
    }
}
