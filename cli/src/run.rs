//! `tenure run`: campaign, run the command while leader, stop it before
//! anyone else can take over.

use std::process::ExitStatus;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Args;
use tenure::{CancellationToken, LeaderElector, Leadership};
use tokio::process::{Child, Command};

use crate::output::say;
use crate::{parse_duration, Failure};

/// Arguments of `tenure run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// The lock: memory://name, redis://host:port/name, etcd://host:port/name,
    /// k8s://namespace/name?kind=lease.
    #[arg(long, value_name = "URL")]
    lock: String,
    /// This candidate's identity (unique among candidates); default: hostname-pid.
    #[arg(long)]
    identity: Option<String>,
    /// How long others wait after the last change they saw before taking over.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    lease_duration: Duration,
    /// The leader stops if no renew succeeded for this long.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    renew_deadline: Duration,
    /// Time between attempts.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    retry_period: Duration,
    /// Time between SIGTERM and SIGKILL when the command must stop; must be
    /// shorter than lease-duration − renew-deadline so the command is gone
    /// before anyone else can take over. Default: half of that window.
    #[arg(long, value_parser = parse_duration)]
    grace: Option<Duration>,
    /// Istio-style priority key written with the record.
    #[arg(long, default_value = "")]
    holder_key: String,
    /// The command to run while leader.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<String>,
}

/// How the command ended when it ended by itself.
type ChildExit = Arc<Mutex<Option<Result<ExitStatus, String>>>>;

pub async fn run(args: RunArgs) -> Result<u8, Failure> {
    let window = args.lease_duration.saturating_sub(args.renew_deadline);
    let grace = args.grace.unwrap_or(window / 2);
    if args.lease_duration > args.renew_deadline && grace >= window {
        return Err(Failure::input(format!(
            "--grace ({grace:?}) must be shorter than lease-duration − renew-deadline ({window:?}), \
             or the command could outlive our lease"
        )));
    }
    let identity = args.identity.clone().unwrap_or_else(default_identity);
    let store = tenure::connect(&args.lock).await?;
    // Fail fast with one clear line on an unreachable or refusing store.
    store.get().await?;
    let elector = LeaderElector::builder(store.clone(), identity.clone())
        .lease_duration(args.lease_duration)
        .renew_deadline(args.renew_deadline)
        .retry_period(args.retry_period)
        .holder_key(args.holder_key.clone())
        .on_new_leader(|leader| say(format!("leader is {leader}")))
        .on_stopped_leading(|| say("no longer leader"))
        .build()
        .map_err(|e| Failure::input(format!("invalid timing: {e}")))?;

    let shutdown = CancellationToken::new();
    tokio::spawn(forward_signals(shutdown.clone()));
    say(format!("{identity} campaigning for {}", store.describe()));

    let exit: ChildExit = Arc::new(Mutex::new(None));
    let work = {
        let exit = exit.clone();
        let shutdown = shutdown.clone();
        let command = args.command.clone();
        let lock = store.describe();
        move |leadership: Leadership| {
            supervise(
                command.clone(),
                lock.clone(),
                leadership,
                grace,
                exit.clone(),
                shutdown.clone(),
            )
        }
    };
    elector
        .run(shutdown, work)
        .await
        .map_err(|e| Failure::runtime(e.to_string()))?;
    say("released and stopped");
    let ended = exit.lock().unwrap().take();
    match ended {
        None => Ok(0),
        Some(Ok(status)) => Ok(exit_code(status)),
        Some(Err(e)) => Err(Failure::runtime(e)),
    }
}

/// Runs the command for one term; stops it when the term ends.
async fn supervise(
    command: Vec<String>,
    lock: String,
    leadership: Leadership,
    grace: Duration,
    exit: ChildExit,
    shutdown: CancellationToken,
) {
    let token = leadership.fencing_token();
    say(format!("elected leader (fencing token {token})"));
    let mut cmd = Command::new(&command[0]);
    cmd.args(&command[1..])
        .env("TENURE_FENCING_TOKEN", token.to_string())
        .env("TENURE_IDENTITY", leadership.identity())
        .env("TENURE_LOCK", &lock)
        // Its own process group, so stopping it stops what it started too.
        .process_group(0)
        .kill_on_drop(true);
    die_with_parent(&mut cmd);
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => {
            *exit.lock().unwrap() = Some(Err(format!("cannot start {:?}: {e}", command[0])));
            shutdown.cancel();
            return;
        }
    };
    say(format!(
        "started {:?} (pid {}, fencing token {token})",
        command[0],
        child.id().unwrap_or(0)
    ));
    let group = child.id().map(|pid| pid as libc::pid_t);
    tokio::select! {
        status = child.wait() => {
            // Nothing it started may outlive it: the lock is released next.
            if let Some(pgid) = group {
                signal_group(pgid, libc::SIGKILL);
            }
            let status = status.map_err(|e| e.to_string());
            match &status {
                Ok(s) => say(format!("command exited ({s}); releasing the lock")),
                Err(e) => say(format!("lost track of the command: {e}")),
            }
            *exit.lock().unwrap() = Some(status);
            shutdown.cancel();
        }
        _ = leadership.cancelled() => {
            stop(&mut child, grace).await;
        }
    }
}

/// SIGTERM, then SIGKILL after `grace`; returns once the child is gone.
async fn stop(child: &mut Child, grace: Duration) {
    let group = child.id().map(|pid| pid as libc::pid_t);
    if let Some(pgid) = group {
        say(format!(
            "stopping the command (SIGTERM to process group {pgid})"
        ));
        signal_group(pgid, libc::SIGTERM);
    }
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(status) => say(format!("command stopped ({})", describe(status))),
        Err(_) => {
            say(format!("command still running after {grace:?}: SIGKILL"));
            let _ = child.kill().await;
        }
    }
    // Whatever the command started and left behind goes too.
    if let Some(pgid) = group {
        signal_group(pgid, libc::SIGKILL);
    }
}

fn signal_group(pgid: libc::pid_t, signal: libc::c_int) {
    // SAFETY: kill(2) on our child's process group has no memory effects.
    unsafe {
        libc::kill(-pgid, signal);
    }
}

fn describe(status: std::io::Result<ExitStatus>) -> String {
    match status {
        Ok(s) => s.to_string(),
        Err(e) => e.to_string(),
    }
}

/// On Linux the child is killed if `tenure` dies (even by SIGKILL), so a
/// crashed leader's command cannot outlive its lease.
#[cfg(target_os = "linux")]
fn die_with_parent(cmd: &mut Command) {
    // SAFETY: prctl is async-signal-safe and touches no memory of ours.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_: &mut Command) {}

fn exit_code(status: ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => code.clamp(0, 255) as u8,
        (None, Some(sig)) => (128 + sig).clamp(0, 255) as u8,
        _ => 1,
    }
}

fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "host".to_owned());
    format!("{host}-{}", std::process::id())
}

async fn forward_signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    say("signal received: stopping the command, then releasing");
    shutdown.cancel();
}
