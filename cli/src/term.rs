//! `tenure run`'s side of one term: start the supervisor, keep its
//! deadline equal to the term's validity, and learn how the command ended.

use std::os::fd::OwnedFd;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tenure::CancellationToken;
use tenure::Leadership;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::process::{Child, Command};

use crate::output::say;
use crate::supervisor::{SUBCOMMAND, monotonic_ns};

/// What the command needs besides its arguments.
#[derive(Clone, Debug)]
pub(crate) struct CommandSpec {
    pub argv: Vec<String>,
    pub lock: String,
    pub grace: Duration,
    /// `None`: the term's validity is copied to the supervisor's deadline
    /// each time it changes. `Some(period)` (tests only): copied at that
    /// period instead. A late copy only makes the deadline earlier than
    /// the term's, never later: safe, but a renew that lands within one
    /// period of the old deadline then stops the command while the term
    /// goes on.
    pub sync: Option<Duration>,
    /// More environment for the command (`tenure shard`'s `TENURE_SHARD`).
    pub env: Vec<(String, String)>,
    /// Said before each of this term's lines (`shard 3`), if any.
    pub tag: Option<String>,
}

/// How a term's command ended, when that ends the whole `tenure run`.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The command exited by itself with this code (or 128 + signal).
    Exited(u8),
    /// Something failed: the message says what.
    Failed(String),
    /// The command was stopped at a deadline the term then outlived (a
    /// renew landed just before it): end the term (release) and campaign
    /// again, so a new command runs only in a new term, with a new token.
    SteppedDown,
}

/// Where the outcome of a term is left for `run` to find.
pub(crate) type OutcomeSlot = Arc<Mutex<Option<Outcome>>>;

/// Runs the command for one term under a supervisor; returns when the
/// command and everything it started are gone.
pub(crate) async fn lead(
    spec: CommandSpec,
    leadership: Leadership,
    outcome: OutcomeSlot,
    shutdown: CancellationToken,
) {
    let token = leadership.fencing_token();
    let tag = spec.tag.clone();
    let say = move |line: String| match &tag {
        Some(tag) => say(format!("{tag}: {line}")),
        None => say(line),
    };
    say(format!("elected leader (fencing token {token})"));
    let (mut supervisor, socket) = match start(&spec, &leadership) {
        Ok(started) => started,
        Err(e) => {
            fail(
                &outcome,
                &shutdown,
                format!("cannot start the supervisor: {e}"),
            );
            return;
        }
    };
    let (reader, mut writer) = socket.into_split();
    let mut reports = BufReader::new(reader).lines();
    // Subscribed before the first read: no renew can fall between them.
    let mut validity = leadership.validity();
    let mut sent = *validity.borrow_and_update();
    let mut group: Option<libc::pid_t> = None;
    let mut stop_sent = false;
    // Each renew's new deadline goes to the supervisor when the engine
    // sets it (no polling: an idle leader costs nothing); with
    // `--deadline-sync` (tests only), copies go at that period instead.
    let mut tick = tokio::time::interval(spec.sync.unwrap_or(Duration::from_secs(3600)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            line = reports.next_line() => {
                let Ok(Some(line)) = line else {
                    // The supervisor is gone without a word: make sure its
                    // command is too.
                    let status = supervisor.wait().await;
                    if let Some(pgid) = group {
                        signal_group(pgid, libc::SIGKILL);
                    }
                    // Processes that left the group (setsid, a double
                    // fork) were the supervisor's to stop; reparented to
                    // us (a subreaper too), they are ours now. The term is
                    // kept (the engine renews while this work runs) until
                    // every one is gone: only then may a successor start.
                    let left = kill_descendants(Duration::from_secs(5)).await;
                    let message = if left == 0 {
                        format!("the supervisor died ({status:?}); its command and every process it started were killed")
                    } else {
                        format!("the supervisor died ({status:?}); {left} of its command's processes would not die")
                    };
                    fail(&outcome, &shutdown, message);
                    return;
                };
                let mut words = line.split_whitespace();
                match (words.next(), words.next()) {
                    (Some("started"), Some(pid)) => {
                        group = pid.parse().ok();
                        say(format!("started {:?} (pid {pid}, fencing token {token})", spec.argv[0]));
                    }
                    (Some("failed"), _) => {
                        let _ = supervisor.wait().await;
                        let why = line.trim_start_matches("failed ").to_owned();
                        fail(&outcome, &shutdown, format!("cannot start {:?}: {why}", spec.argv[0]));
                        return;
                    }
                    (Some("exited"), Some(code)) => {
                        let _ = supervisor.wait().await;
                        let code: i32 = code.parse().unwrap_or(1);
                        say(format!("command exited (code {code}); releasing the lock"));
                        *outcome.lock().unwrap() = Some(Outcome::Exited(code.clamp(0, 255) as u8));
                        shutdown.cancel();
                        return;
                    }
                    (Some("stopped"), reason) => {
                        let _ = supervisor.wait().await;
                        let reason = reason.unwrap_or("?");
                        say(format!("command stopped ({reason})"));
                        if reason == "deadline" && !leadership.is_cancelled() {
                            // We were stopped or starved past the deadline:
                            // the engine ends the term at the same moment, by
                            // the same clock, once it runs again. Wait for it,
                            // then campaign again. A term that goes on (a
                            // renew landed after the supervisor's last copy
                            // of the deadline) is ended here: step down and
                            // campaign again, for a new term and a new token.
                            let left = leadership
                                .valid_until()
                                .saturating_duration_since(tokio::time::Instant::now());
                            let ended = tokio::time::timeout(left + Duration::from_secs(1), leadership.cancelled()).await;
                            if ended.is_err() {
                                say("the command was stopped at a deadline the term outlived: stepping down to campaign again".to_owned());
                                outcome.lock().unwrap().get_or_insert(Outcome::SteppedDown);
                                shutdown.cancel();
                            }
                        }
                        return;
                    }
                    _ => {}
                }
            }
            _ = leadership.cancelled(), if !stop_sent => {
                stop_sent = true;
                // If the socket is gone the supervisor stops on its own.
                if leadership.was_taken() {
                    // Another writer took the lock while our lease held: a
                    // successor may already run, so no grace.
                    say("the lock was taken while the term was valid: killing the command at once (SIGKILL)".to_owned());
                    let _ = writer.write_all(b"kill\n").await;
                } else {
                    say(format!("stopping the command (SIGTERM, SIGKILL after {:?})", spec.grace));
                    let _ = writer.write_all(b"stop\n").await;
                }
            }
            until = next_deadline(&mut validity, &mut tick, spec.sync.is_some()), if !stop_sent => {
                if until != sent {
                    sent = until;
                    let line = format!("deadline {}\n", deadline_ns(until));
                    let _ = writer.write_all(line.as_bytes()).await;
                }
            }
        }
    }
}

/// The term's validity when it changes, or (`polled`) at the next tick.
async fn next_deadline(
    validity: &mut tokio::sync::watch::Receiver<tokio::time::Instant>,
    tick: &mut tokio::time::Interval,
    polled: bool,
) -> tokio::time::Instant {
    if polled {
        tick.tick().await;
    } else if validity.changed().await.is_err() {
        // The sender lives as long as the term's `Leadership` does.
        std::future::pending::<()>().await;
    }
    *validity.borrow_and_update()
}

/// Ends the run with `message` (printed once, as its last line).
/// SIGKILLs and reaps every child of this process (after the supervisor
/// died: the processes its command left behind, reparented to us) until
/// none is left, for at most `limit`. Returns how many were left then
/// (processes stuck in the kernel).
async fn kill_descendants(limit: Duration) -> usize {
    let me = std::process::id();
    let until = tokio::time::Instant::now() + limit;
    loop {
        let children = crate::procfs::children_of(me);
        if children.is_empty() || tokio::time::Instant::now() >= until {
            return children.len();
        }
        for pid in children {
            // SAFETY: kill(2) and a non-blocking waitpid(2) on our own
            // children; a pid tokio also waits for is simply not ours to
            // reap twice (waitpid then fails harmlessly).
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
                libc::waitpid(pid as libc::pid_t, std::ptr::null_mut(), libc::WNOHANG);
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn fail(outcome: &OutcomeSlot, shutdown: &CancellationToken, message: String) {
    outcome
        .lock()
        .unwrap()
        .get_or_insert(Outcome::Failed(message));
    shutdown.cancel();
}

/// `until` (on tokio's clock, which is the monotonic clock) as nanoseconds
/// on `CLOCK_MONOTONIC`, the clock the supervisor reads.
fn deadline_ns(until: tokio::time::Instant) -> i128 {
    let now = tokio::time::Instant::now();
    let mono = monotonic_ns();
    if until >= now {
        mono + (until - now).as_nanos() as i128
    } else {
        mono - (now - until).as_nanos() as i128
    }
}

/// Starts `tenure __supervise` with the term's deadline, its socket as
/// stdin, and the command's environment.
fn start(spec: &CommandSpec, leadership: &Leadership) -> std::io::Result<(Child, UnixStream)> {
    let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
    ours.set_nonblocking(true)?;
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.arg(SUBCOMMAND)
        .arg(spec.grace.as_nanos().to_string())
        .arg(deadline_ns(leadership.valid_until()).to_string())
        .arg("--")
        .args(&spec.argv)
        .env(
            "TENURE_FENCING_TOKEN",
            leadership.fencing_token().to_string(),
        )
        .env("TENURE_IDENTITY", leadership.identity())
        .env("TENURE_LOCK", &spec.lock)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        // Dropping the handle must not kill it: it stops the command.
        .kill_on_drop(false);
    let child = cmd.spawn()?;
    Ok((child, UnixStream::from_std(ours)?))
}

fn signal_group(pgid: libc::pid_t, signal: libc::c_int) {
    // SAFETY: kill(2) on our command's process group has no memory effects.
    unsafe {
        libc::kill(-pgid, signal);
    }
}
