//! The store under test: a container, a process, or a cluster.

use super::*;

pub(super) enum Server {
    Redis(RedisServer),
    Etcd(EtcdServer),
    Cluster(EtcdCluster),
    Kube(KubeProcess),
    RealKube(RealKube),
}

/// `tenure-chaos kube-api`, killed on drop.
pub(super) struct KubeProcess {
    pub(super) child: Child,
    pub(super) addr: std::net::SocketAddr,
}

impl KubeProcess {
    pub(super) fn start() -> Result<KubeProcess, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = Command::new(exe)
            .arg("kube-api")
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("start the API fixture: {e}"))?;
        let mut url = String::new();
        let stdout = child.stdout.take().ok_or("no stdout")?;
        BufReader::new(stdout)
            .read_line(&mut url)
            .map_err(|e| e.to_string())?;
        let addr = url
            .trim()
            .trim_start_matches("http://")
            .parse()
            .map_err(|_| format!("the API fixture printed {url:?}, not its URL"))?;
        Ok(KubeProcess { child, addr })
    }
}

impl Drop for KubeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// The addresses a client connects to (one per member).
    pub(super) fn addrs(&self) -> Vec<std::net::SocketAddr> {
        match self {
            Server::Redis(s) => vec![s.addr()],
            Server::Etcd(s) => vec![s.addr()],
            Server::Cluster(c) => (0..3).map(|i| c.addr(i)).collect(),
            Server::Kube(k) => vec![k.addr],
            Server::RealKube(k) => vec![k.addr],
        }
    }
    /// Restarts the store (a cluster: its raft leader; a real API server:
    /// kube-apiserver, its etcd staying up).
    pub(super) fn restart(&mut self) -> Result<(), String> {
        match self {
            Server::Redis(s) => s.restart(),
            Server::Etcd(s) => s.restart(),
            Server::Cluster(c) => {
                let i = c.leader().unwrap_or(0);
                c.restart(i);
            }
            Server::RealKube(k) => return k.restart_api(),
            // Excluded by `StoreKind::allows`.
            Server::Kube(_) => {}
        }
        Ok(())
    }
    /// Freezes the store (a cluster: its raft leader); returns what to thaw.
    pub(super) fn pause(&mut self) -> Option<usize> {
        match self {
            Server::Redis(s) => s.pause(),
            Server::Etcd(s) => s.pause(),
            Server::Cluster(c) => {
                let i = c.leader().unwrap_or(0);
                c.pause(i);
                return Some(i);
            }
            Server::Kube(k) => signal(k.child.id() as i32, libc::SIGSTOP),
            Server::RealKube(k) => k.pause_api(),
        }
        None
    }
    /// Takes the store's container (a cluster: its raft leader's) off its
    /// network; returns what to put back.
    pub(super) fn partition(&mut self) -> Result<Option<usize>, String> {
        const NEEDS: &str = "store-partition needs the store in a container";
        let (container, member) = match self {
            Server::Redis(s) => (s.container(), None),
            Server::Etcd(s) => (s.container(), None),
            Server::Cluster(c) => {
                let i = c.leader().ok_or("no raft leader found")?;
                (c.container(i), Some(i))
            }
            Server::Kube(_) | Server::RealKube(_) => (None, None),
        };
        container
            .ok_or(NEEDS)?
            .disconnect()
            .map_err(|e| e.to_string())?;
        Ok(member)
    }

    /// Puts a partitioned container back on its network.
    pub(super) fn heal(&mut self, member: Option<usize>) -> Result<(), String> {
        let container = match self {
            Server::Redis(s) => s.container(),
            Server::Etcd(s) => s.container(),
            Server::Cluster(c) => c.container(member.unwrap_or(0)),
            Server::Kube(_) | Server::RealKube(_) => None,
        };
        container
            .ok_or("no container")?
            .connect()
            .map_err(|e| e.to_string())
    }

    /// Undoes what a failed round may have left: thaws, reconnects (an
    /// error: it was connected), restarts a stopped cluster member.
    pub(super) fn heal_all(&mut self) {
        match self {
            Server::Cluster(c) => {
                for i in 0..3 {
                    c.resume(i);
                    if let Some(container) = c.container(i) {
                        let _ = container.connect();
                    }
                    if !c.is_running(i) {
                        c.restart(i);
                    }
                }
            }
            _ => {
                self.resume(None);
                let _ = self.heal(None);
            }
        }
    }
    pub(super) fn resume(&mut self, member: Option<usize>) {
        match self {
            Server::Redis(s) => s.resume(),
            Server::Etcd(s) => s.resume(),
            Server::Cluster(c) => c.resume(member.unwrap_or(0)),
            Server::Kube(k) => signal(k.child.id() as i32, libc::SIGCONT),
            Server::RealKube(k) => k.resume_all(),
        }
    }
}

/// A kubeconfig for the API fixture at `addr` (no credentials: the
/// fixture accepts every request).
pub(super) fn kubeconfig(addr: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: chaos\n  cluster:\n    server: http://{addr}\n\
         contexts:\n- name: chaos\n  context:\n    cluster: chaos\n    user: chaos\n    namespace: default\n\
         current-context: chaos\nusers:\n- name: chaos\n  user: {{}}\n"
    )
}
