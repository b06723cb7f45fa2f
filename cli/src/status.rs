//! `tenure status`: who holds a lock.

use std::time::{Duration, SystemTime};

use clap::Args;

use crate::Failure;

/// Arguments of `tenure status`.
#[derive(Args, Debug)]
pub(crate) struct StatusArgs {
    /// The lock URL (as for `tenure run`).
    #[arg(long, value_name = "URL")]
    lock: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn status(args: StatusArgs) -> Result<u8, Failure> {
    let store = tenure::connect(&args.lock).await?;
    let current = store.get().await?;
    let lock = store.describe();
    let Some(v) = current else {
        if args.json {
            println!(
                "{}",
                serde_json::json!({ "lock": lock, "exists": false, "holder": null })
            );
        } else {
            println!("lock     {lock}\nholder   (no record: never held)");
        }
        return Ok(0);
    };
    let r = &v.record;
    // Estimated from renewTime and this machine's wall clock: the record's
    // timestamps are informational, so this is only as good as the clocks.
    let remaining = r.renew_time.map(|renewed| {
        let age = SystemTime::now()
            .duration_since(renewed)
            .unwrap_or(Duration::ZERO);
        r.lease_duration.saturating_sub(age)
    });
    if args.json {
        let out = serde_json::json!({
            "lock": lock,
            "exists": true,
            "holder": (!r.is_free()).then_some(&r.holder_identity),
            "holderKey": r.holder_key,
            "leaseDurationSeconds": r.lease_duration.as_secs_f64(),
            "acquireTime": r.acquire_time.map(format_time),
            "renewTime": r.renew_time.map(format_time),
            "leaderTransitions": r.leader_transitions,
            "leaseRemainingSeconds": remaining.filter(|_| !r.is_free()).map(|d| d.as_secs_f64()),
            "version": v.version.as_str(),
        });
        println!("{out}");
    } else {
        let holder = if r.is_free() {
            "(free: released)".to_owned()
        } else {
            r.holder_identity.clone()
        };
        let time = |t: Option<SystemTime>| t.map(format_time).unwrap_or_else(|| "-".into());
        println!("lock          {lock}");
        println!("holder        {holder}");
        if !r.holder_key.is_empty() {
            println!("holder key    {}", r.holder_key);
        }
        println!("since         {}", time(r.acquire_time));
        println!("renewed       {}", time(r.renew_time));
        println!("transitions   {}", r.leader_transitions);
        println!("lease         {:?}", r.lease_duration);
        if let Some(rem) = remaining.filter(|_| !r.is_free()) {
            println!("remaining     {rem:.1?} (by renewTime and this machine's clock)");
        }
    }
    Ok(0)
}

/// A record's time as its JSON form writes it: RFC 3339 in UTC with
/// microseconds (Kubernetes' `MicroTime`).
fn format_time(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}
