//! The supervisor: `tenure __supervise`, one process per term between
//! `tenure run` and the command.
//!
//! It holds the term's deadline on the machine's monotonic clock, so the
//! command is stopped on time whether or not `tenure run` can still act
//! (stopped with SIGSTOP or Ctrl-Z, blocked on a full stderr, dead). It is
//! the command's parent and a child subreaper, and the command leads a
//! process group of its own:
//!
//! - at the deadline: SIGTERM (and SIGCONT) to the command's group and to
//!   every process left behind; SIGKILL `grace` later;
//! - `tenure run` extends the deadline after each renew (`deadline NS` on
//!   the socket that is the supervisor's stdin), or asks it to `stop`;
//! - if `tenure run` dies (the socket closes), the same stop starts at once;
//! - when the command exits by itself, whatever it left behind is killed.
//!
//! It reports on the same socket: `started PID`, then `exited CODE` (the
//! command ended by itself) or `stopped REASON`. It writes nothing else
//! anywhere, so nothing can block it. It is plain blocking code with
//! `poll(2)`, with no runtime to stall.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The hidden subcommand that runs the supervisor.
pub(crate) const SUBCOMMAND: &str = "__supervise";

/// Longest sleep between checks when no deadline is nearer: bounds how
/// late an exit that raced with `poll` is noticed.
const TICK: Duration = Duration::from_millis(200);

static TERMINATED: AtomicBool = AtomicBool::new(false);
static CHILD_EXITED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_term(_: libc::c_int) {
    TERMINATED.store(true, Ordering::SeqCst);
}

extern "C" fn on_child(_: libc::c_int) {
    CHILD_EXITED.store(true, Ordering::SeqCst);
}

/// Now on the machine's monotonic clock (`CLOCK_MONOTONIC`, what `Instant`
/// uses), in nanoseconds: both processes read the same clock.
pub(crate) fn monotonic_ns() -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}

/// Why the supervisor stopped the command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reason {
    /// `tenure run` asked (the term ended, or shutdown).
    Requested,
    /// The deadline passed without an extension.
    Deadline,
    /// `tenure run` asked for SIGKILL at once: another writer took the lock
    /// while the term was valid, and a successor may already run.
    Taken,
    /// `tenure run` is gone (its end of the socket closed), or we got SIGTERM.
    Orphaned,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Reason::Requested => "requested",
            Reason::Deadline => "deadline",
            Reason::Taken => "taken",
            Reason::Orphaned => "orphaned",
        }
    }
}

/// Runs the supervisor; `args` are what follows the subcommand:
/// `GRACE_NS DEADLINE_NS -- COMMAND ARGS...`. Returns the exit code.
pub(crate) fn main(args: Vec<String>) -> u8 {
    let (grace, deadline, command) = match parse(&args) {
        Some(parsed) => parsed,
        None => return 2,
    };
    // SAFETY: fd 0 is the socket `tenure run` gave us as stdin; we own it.
    let socket = unsafe { UnixStream::from_raw_fd(0) };
    if socket.set_nonblocking(true).is_err() {
        return 1;
    }
    let mut sup = Supervisor {
        socket,
        inbox: Vec::new(),
        grace,
        deadline,
        pgid: 0,
        command_status: None,
        stopping: None,
        kill_at: i128::MAX,
        killed: false,
    };
    prepare_signals();
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with integer arguments only.
    unsafe {
        // Orphans the command leaves behind become our children, so they
        // can be found and stopped too.
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
    let child = match spawn(&command) {
        Ok(child) => child,
        Err(e) => {
            sup.report(&format!("failed {}", e.to_string().replace('\n', " ")));
            return 1;
        }
    };
    sup.pgid = child as libc::pid_t;
    sup.report(&format!("started {child}"));
    sup.run();
    0
}

fn parse(args: &[String]) -> Option<(i128, i128, Vec<String>)> {
    let grace = args.first()?.parse().ok()?;
    let deadline = args.get(1)?.parse().ok()?;
    if args.get(2).map(String::as_str) != Some("--") || args.len() < 4 {
        return None;
    }
    Some((grace, deadline, args[3..].to_vec()))
}

/// Terminal and job-control signals are `tenure run`'s to handle (it sits
/// in the same process group): the supervisor ignores them. SIGTERM starts
/// a stop; SIGCHLD only wakes the loop.
fn prepare_signals() {
    // SAFETY: installing handlers that only store to atomics.
    unsafe {
        for sig in [
            libc::SIGINT,
            libc::SIGQUIT,
            libc::SIGHUP,
            libc::SIGTSTP,
            libc::SIGTTIN,
            libc::SIGTTOU,
            libc::SIGPIPE,
        ] {
            libc::signal(sig, libc::SIG_IGN);
        }
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_term as *const () as usize;
        libc::sigaction(libc::SIGTERM, &action, std::ptr::null_mut());
        action.sa_sigaction = on_child as *const () as usize;
        libc::sigaction(libc::SIGCHLD, &action, std::ptr::null_mut());
    }
}

/// Starts the command as the leader of a new process group, with default
/// signal dispositions, no stdin (a background group cannot read the
/// terminal), and killed if the supervisor dies.
fn spawn(command: &[String]) -> std::io::Result<u32> {
    let mut cmd = Command::new(&command[0]);
    cmd.args(&command[1..])
        .stdin(Stdio::null())
        .process_group(0);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            for sig in 1..32 {
                if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                    libc::signal(sig, libc::SIG_DFL);
                }
            }
            #[cfg(target_os = "linux")]
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    // The supervisor reaps with waitpid(-1): the handle is not waited on.
    cmd.spawn().map(|child| child.id())
}

struct Supervisor {
    socket: UnixStream,
    inbox: Vec<u8>,
    grace: i128,
    /// SIGTERM when the monotonic clock passes this, unless extended.
    deadline: i128,
    /// The command's pid, which is its process group id.
    pgid: libc::pid_t,
    /// The command's wait status once it has exited.
    command_status: Option<libc::c_int>,
    stopping: Option<Reason>,
    kill_at: i128,
    killed: bool,
}

impl Supervisor {
    fn run(&mut self) {
        loop {
            let now = monotonic_ns();
            if TERMINATED.swap(false, Ordering::SeqCst) {
                self.stop(Reason::Orphaned, now);
            }
            if self.stopping.is_none() && now >= self.deadline {
                self.stop(Reason::Deadline, now);
            }
            if self.stopping.is_some() && !self.killed && now >= self.kill_at {
                self.signal_all(libc::SIGKILL);
                self.killed = true;
            }
            let no_children_left = self.reap();
            if let Some(status) = self.command_status {
                if no_children_left {
                    let line = match self.stopping {
                        Some(reason) => format!("stopped {}", reason.as_str()),
                        None => format!("exited {}", exit_code(status)),
                    };
                    self.report(&line);
                    return;
                }
                if self.stopping.is_none() && !self.killed {
                    // Nothing the command started may outlive it: the lock
                    // is released next.
                    self.signal_all(libc::SIGKILL);
                    self.killed = true;
                }
            }
            if self.killed {
                // Keep killing whatever reparents to us until none is left.
                self.signal_all(libc::SIGKILL);
            }
            let next = if self.stopping.is_some() {
                self.kill_at
            } else {
                self.deadline
            };
            let wait = (next - monotonic_ns()).clamp(0, TICK.as_nanos() as i128);
            let wait = if self.killed {
                wait.min(20_000_000)
            } else {
                wait
            };
            self.poll(wait, now);
        }
    }

    /// Starts stopping: SIGTERM now, SIGKILL `grace` later (never later
    /// than `grace` after the deadline).
    fn stop(&mut self, reason: Reason, now: i128) {
        if self.stopping.is_some() {
            return;
        }
        self.stopping = Some(reason);
        self.kill_at = (now + self.grace).min(self.deadline.saturating_add(self.grace));
        self.signal_all(libc::SIGCONT);
        self.signal_all(libc::SIGTERM);
    }

    /// Kills at once (no grace), also when a graceful stop is under way.
    fn kill_now(&mut self) {
        self.stopping.get_or_insert(Reason::Taken);
        self.kill_at = monotonic_ns();
        self.signal_all(libc::SIGCONT);
        self.signal_all(libc::SIGKILL);
    }

    /// Signals the command's group and every child of ours (orphans that
    /// left the group and were reparented to us, the subreaper).
    fn signal_all(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on our own descendants.
        unsafe {
            libc::kill(-self.pgid, sig);
            for pid in crate::procfs::children_of(std::process::id()) {
                libc::kill(pid as libc::pid_t, sig);
            }
        }
    }

    /// Reaps every exited child; true when we have no children left.
    fn reap(&mut self) -> bool {
        CHILD_EXITED.store(false, Ordering::SeqCst);
        loop {
            let mut status = 0;
            // SAFETY: waitpid on our own children.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid > 0 {
                if pid == self.pgid {
                    self.command_status = Some(status);
                }
                continue;
            }
            if pid == 0 {
                return false;
            }
            let err = std::io::Error::last_os_error();
            if err.kind() == ErrorKind::Interrupted {
                continue;
            }
            return err.raw_os_error() == Some(libc::ECHILD);
        }
    }

    /// Waits up to `wait_ns` for a message from `tenure run` (or a signal),
    /// and handles what arrived.
    fn poll(&mut self, wait_ns: i128, now: i128) {
        let mut fds = [libc::pollfd {
            fd: socket_fd(&self.socket),
            events: libc::POLLIN,
            revents: 0,
        }];
        let ms = ((wait_ns + 999_999) / 1_000_000).clamp(0, i32::MAX as i128) as libc::c_int;
        if CHILD_EXITED.load(Ordering::SeqCst) || TERMINATED.load(Ordering::SeqCst) {
            return;
        }
        // SAFETY: poll on one fd we own.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), 1, ms) };
        if ready <= 0 {
            return;
        }
        let mut buf = [0u8; 1024];
        loop {
            match self.socket.read(&mut buf) {
                Ok(0) => {
                    // `tenure run` is gone: nobody renews this term.
                    self.stop(Reason::Orphaned, now);
                    return;
                }
                Ok(n) => self.inbox.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.stop(Reason::Orphaned, now);
                    return;
                }
            }
        }
        while let Some(end) = self.inbox.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.inbox.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let mut words = line.split_whitespace();
            match (words.next(), words.next()) {
                (Some("deadline"), Some(ns)) if self.stopping.is_none() => {
                    if let Ok(ns) = ns.parse::<i128>() {
                        self.deadline = ns;
                    }
                }
                (Some("stop"), _) => self.stop(Reason::Requested, monotonic_ns()),
                (Some("kill"), _) => self.kill_now(),
                _ => {}
            }
        }
    }

    /// One line to `tenure run`; a full socket (it is stopped and does not
    /// read) loses the line rather than block us.
    fn report(&mut self, line: &str) {
        let _ = self.socket.write_all(format!("{line}\n").as_bytes());
    }
}

fn socket_fd(socket: &UnixStream) -> RawFd {
    use std::os::fd::AsRawFd;
    socket.as_raw_fd()
}

/// The shell's convention: the exit code, or 128 + the signal.
fn exit_code(status: libc::c_int) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        1
    }
}
