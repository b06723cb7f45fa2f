//! A real kube-apiserver on an etcd of its own, started by
//! `scripts/kube-apiserver-up.sh` (which builds the server once and caches
//! it), frozen and killed by the harness: either process alone.

use super::*;

/// One of the two processes: its pid, and the command line that starts it
/// again (read from /proc, so that a restart is the same server).
struct Proc {
    pid: u32,
    argv: Vec<String>,
    log: PathBuf,
    /// Set once the harness restarted it (then it is our child).
    child: Option<Child>,
}

impl Proc {
    fn adopt(pid: u32, log: PathBuf) -> Result<Proc, String> {
        let argv = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map_err(|e| format!("the command line of pid {pid}: {e}"))?
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        Ok(Proc {
            pid,
            argv,
            log,
            child: None,
        })
    }

    fn kill(&mut self) {
        signal(self.pid as i32, libc::SIGCONT);
        signal(self.pid as i32, libc::SIGKILL);
        match self.child.take() {
            Some(mut child) => {
                let _ = child.wait();
            }
            // Not ours to reap (the script started it): wait for it to go.
            None => {
                let deadline = mono_ns() + 5_000_000_000;
                while std::path::Path::new(&format!("/proc/{}", self.pid)).exists()
                    && !is_zombie(self.pid)
                    && mono_ns() < deadline
                {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }

    /// Kills it and starts it again with the same command line.
    fn restart(&mut self) -> Result<(), String> {
        self.kill();
        let log = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&self.log)
            .map_err(|e| e.to_string())?;
        let mut cmd = Command::new(&self.argv[0]);
        cmd.args(&self.argv[1..])
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log);
        die_with_the_harness(&mut cmd);
        let child = cmd
            .spawn()
            .map_err(|e| format!("restart {}: {e}", self.argv[0]))?;
        self.pid = child.id();
        self.child = Some(child);
        Ok(())
    }
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(true)
}

/// kube-apiserver and its etcd; both killed on drop.
pub(super) struct RealKube {
    api: Proc,
    etcd: Proc,
    /// The API server's address (https).
    pub(super) addr: std::net::SocketAddr,
    /// The admin's kubeconfig, for copies that point at a proxy.
    kubeconfig: String,
    _dir: tempdir::Dir,
}

impl RealKube {
    pub(super) fn start() -> Result<RealKube, String> {
        let dir = std::env::temp_dir().join(format!("tenure-chaos-kube-{}", mono_ns()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let dir = tempdir::Dir(dir);
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../scripts/kube-apiserver-up.sh"
        );
        let out = Command::new("bash")
            .arg(script)
            .arg(&dir.0)
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| format!("run {script}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "{script} failed: it needs etcd (apt-get install -y etcd-server), openssl and Go \
                 to build kube-apiserver once"
            ));
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let pids: Vec<u32> = stdout
            .lines()
            .find_map(|l| l.strip_prefix("TENURE_KUBE_PIDS="))
            .ok_or("the script printed no TENURE_KUBE_PIDS")?
            .trim_matches('"')
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        let [api, etcd] = pids[..] else {
            return Err(format!("TENURE_KUBE_PIDS: {pids:?}"));
        };
        let kubeconfig = std::fs::read_to_string(dir.0.join("kubeconfig"))
            .map_err(|e| format!("the script's kubeconfig: {e}"))?;
        let addr = kubeconfig
            .lines()
            .find_map(|l| l.trim().strip_prefix("server: https://"))
            .and_then(|a| a.parse().ok())
            .ok_or("no https server in the script's kubeconfig")?;
        Ok(RealKube {
            api: Proc::adopt(api, dir.0.join("kube-apiserver.log"))?,
            etcd: Proc::adopt(etcd, dir.0.join("etcd.log"))?,
            addr,
            kubeconfig,
            _dir: dir,
        })
    }

    /// The admin's kubeconfig, pointed at `host` (a fault proxy on
    /// 127.0.0.1, which the serving certificate names).
    pub(super) fn kubeconfig_via(&self, host: &str) -> String {
        self.kubeconfig.replace(
            &format!("https://{}", self.addr),
            &format!("https://{host}"),
        )
    }

    pub(super) fn restart_api(&mut self) -> Result<(), String> {
        self.api.restart()
    }
    pub(super) fn restart_etcd(&mut self) -> Result<(), String> {
        self.etcd.restart()
    }
    pub(super) fn pause_api(&self) {
        signal(self.api.pid as i32, libc::SIGSTOP);
    }
    pub(super) fn pause_etcd(&self) {
        signal(self.etcd.pid as i32, libc::SIGSTOP);
    }
    pub(super) fn resume_all(&self) {
        signal(self.api.pid as i32, libc::SIGCONT);
        signal(self.etcd.pid as i32, libc::SIGCONT);
    }
}

impl Drop for RealKube {
    fn drop(&mut self) {
        self.api.kill();
        self.etcd.kill();
    }
}

/// A process started by the harness dies with it.
pub(super) fn die_with_the_harness(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches no memory of ours.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}
