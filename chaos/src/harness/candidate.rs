//! One candidate process, and faketime for the skewed ones.

use super::*;

/// Whose elector a candidate runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Who {
    Tenure,
    /// client-go's `tools/leaderelection` (`interop/electors`).
    ClientGo,
    /// Istio's fork of it.
    Istio,
}

impl Who {
    /// By the identity's first letter: `c…` tenure, `g…` client-go, `i…`
    /// Istio (see `MIXED`).
    pub(super) fn of(id: &str) -> Who {
        match id.as_bytes().first() {
            Some(b'g') => Who::ClientGo,
            Some(b'i') => Who::Istio,
            _ => Who::Tenure,
        }
    }
}

/// The Go electors' binary: `TENURE_GO_ELECTORS`, or built once and
/// cached by `scripts/go-binary.sh electors`.
pub(super) fn go_electors() -> Result<PathBuf, String> {
    static BIN: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("TENURE_GO_ELECTORS") {
            return Ok(PathBuf::from(bin));
        }
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/go-binary.sh");
        let out = Command::new("bash")
            .args([script, "electors"])
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| format!("run {script}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "{script} electors failed (Go >= 1.26 needed: https://go.dev/dl)"
            ));
        }
        Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
    })
    .clone()
}

pub(super) struct Candidate {
    pub(super) id: String,
    pub(super) who: Who,
    /// Its stderr.
    pub(super) log: PathBuf,
    pub(super) child: Child,
    /// One proxy per store member.
    pub(super) proxies: Vec<FaultProxy>,
    /// When this process was started: only terms begun after it are its.
    pub(super) spawned: i128,
    /// `child` is the `faketime` wrapper; tenure is its child.
    pub(super) wrapped: bool,
}

impl Candidate {
    /// The last lines of its stderr.
    pub(super) fn last_words(&self) -> Vec<String> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        lines[lines.len().saturating_sub(3)..].to_vec()
    }

    /// How many of this process's terms another writer ended under a valid
    /// lease (`tenure run` kills its command at once then, and says so).
    pub(super) fn terms_taken(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .matches("the lock was taken while the term was valid")
            .count()
    }

    /// A `tenure run` that exited before it campaigned, saying the store
    /// was unreachable: its documented fail-fast at start.
    pub(super) fn failed_fast(&self) -> bool {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        !text.contains(" campaigning for ") && text.contains("tenure: error: store unavailable")
    }

    /// The `tenure run` process (below the `faketime` wrapper, if any).
    pub(super) fn tenure_pid(&self) -> i32 {
        if self.wrapped
            && let Some(pid) = crate::procfs::children_of(self.child.id())
                .into_iter()
                .next()
        {
            return pid as i32;
        }
        self.child.id() as i32
    }
}

impl Drop for Candidate {
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            // Reaped: its pid may belong to another process by now.
            return;
        }
        let tenure = self.tenure_pid();
        signal(tenure, libc::SIGCONT);
        signal(tenure, libc::SIGKILL);
        if self.wrapped {
            // The faketime wrapper exits with its child and removes its
            // semaphore and shared memory; killed, it leaves them behind.
            let deadline = mono_ns() + 2_000_000_000;
            while matches!(self.child.try_wait(), Ok(None)) && mono_ns() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Removes the semaphores and shared memory that faketime wrappers killed
/// before they could clean up left in /dev/shm: a new wrapper whose pid
/// matches a leftover fails (`sem_open: File exists`) and exits 1. Seen
/// in a quick mix once pids had wrapped around.
pub(super) fn remove_faketime_leftovers() {
    let Ok(entries) = std::fs::read_dir("/dev/shm") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let pid = name
            .strip_prefix("sem.faketime_sem_")
            .or_else(|| name.strip_prefix("faketime_shm_"))
            .and_then(|p| p.parse::<i32>().ok());
        // SAFETY: kill(2) with signal 0 only asks whether the pid exists.
        if pid.is_some_and(|p| unsafe { libc::kill(p, 0) } != 0) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// The `faketime` wrapper (Debian package `faketime`).
pub(super) fn faketime_command() -> Result<PathBuf, String> {
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("faketime"))
                .find(|p| p.exists())
        })
        .ok_or_else(|| "faketime not found: apt-get install faketime".into())
}
