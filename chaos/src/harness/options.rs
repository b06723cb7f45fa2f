//! What a run does: the faults, the stores, the candidates, and the options.

use super::*;

/// The faults a round can apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Fault {
    Kill9,
    Sigterm,
    StopTenure,
    FreezeTree,
    CutOff,
    StoreRestart,
    StoreFreeze,
    /// The store's container taken off its Docker network for 3 s, then
    /// put back (containers only). A server alone: its clients' connections
    /// drop at once and new ones are refused (its published port goes with
    /// the network; a silent black hole is `cut-off`). A cluster: the raft
    /// leader is cut off from its peers (silence) and its clients (refused).
    StorePartition,
    SkewWithin,
    SkewBeyond,
    /// The etcd cluster's raft leader killed, then restarted (clusters only).
    RaftLeaderKill,
    /// The real kube-apiserver's etcd frozen (SIGSTOP) for 3 s: the API
    /// server answers, but cannot read or write (real Kubernetes only).
    KubeEtcdFreeze,
    /// The real kube-apiserver's etcd killed (-9) and started again on its
    /// data (real Kubernetes only).
    KubeEtcdRestart,
}

impl Fault {
    /// Every fault, in report order.
    pub(crate) const ALL: [Fault; 13] = [
        Fault::Kill9,
        Fault::Sigterm,
        Fault::StopTenure,
        Fault::FreezeTree,
        Fault::CutOff,
        Fault::StoreRestart,
        Fault::StoreFreeze,
        Fault::StorePartition,
        Fault::SkewWithin,
        Fault::SkewBeyond,
        Fault::RaftLeaderKill,
        Fault::KubeEtcdFreeze,
        Fault::KubeEtcdRestart,
    ];

    /// The name on the command line and in the report.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Fault::Kill9 => "kill-9",
            Fault::Sigterm => "sigterm",
            Fault::StopTenure => "sigstop-tenure",
            Fault::FreezeTree => "freeze-tree",
            Fault::CutOff => "cut-off",
            Fault::StoreRestart => "store-restart",
            Fault::StoreFreeze => "store-freeze",
            Fault::StorePartition => "store-partition",
            Fault::SkewWithin => "skew-x0.8-cut-off",
            Fault::SkewBeyond => "skew-x0.5-cut-off",
            Fault::RaftLeaderKill => "raft-leader-kill",
            Fault::KubeEtcdFreeze => "kube-etcd-freeze",
            Fault::KubeEtcdRestart => "kube-etcd-restart",
        }
    }
}

/// Which store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StoreKind {
    Redis,
    Etcd,
    /// Three etcd members on loopback.
    EtcdCluster,
    /// A real kube-apiserver on an etcd of its own
    /// (`scripts/kube-apiserver-up.sh`), holding a Lease: `store-freeze`
    /// and `store-restart` are kube-apiserver's, `kube-etcd-*` its etcd's.
    Kube,
    /// The in-repo Kubernetes API fixture as a process (`tenure-chaos
    /// kube-api`), holding a Lease: quick, but only our own server.
    KubeFixture,
}

impl StoreKind {
    /// Whether `fault` applies: raft faults need a cluster; the API
    /// fixture keeps its objects in memory, so it is frozen but not
    /// restarted; a real API server's etcd is faulted apart from it.
    pub(super) fn allows(self, fault: Fault) -> bool {
        let kube = matches!(self, StoreKind::Kube | StoreKind::KubeFixture);
        match fault {
            Fault::RaftLeaderKill => self == StoreKind::EtcdCluster,
            Fault::StoreRestart => self != StoreKind::KubeFixture,
            Fault::StorePartition => !kube && way() == Way::Container,
            Fault::KubeEtcdFreeze | Fault::KubeEtcdRestart => self == StoreKind::Kube,
            _ => true,
        }
    }
}

/// How the candidates run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CandidateKind {
    /// `tenure run` processes, each leader's command a `worker`.
    Cli,
    /// `tenure-chaos candidate` processes, each embedding the library.
    Library,
    /// Kubernetes only: two `tenure run` candidates beside client-go's and
    /// Istio's electors (`interop/electors`, Lease locks), each Go leader
    /// running the same worker while it leads.
    Mixed,
}

/// The run's options.
pub(crate) struct Options {
    pub(super) store: StoreKind,
    pub(super) rounds: usize,
    pub(super) seed: u64,
    pub(super) faults: Vec<Fault>,
    pub(super) tenure: PathBuf,
    pub(super) candidates: CandidateKind,
}

impl Options {
    /// Parses `--store`, `--rounds`, `--seed`, `--faults`, `--tenure`.
    pub(crate) fn parse(args: &[String]) -> Option<Options> {
        let mut o = Options {
            store: StoreKind::Redis,
            rounds: 0,
            seed: 1,
            faults: Vec::new(),
            tenure: std::env::current_exe().ok()?.with_file_name("tenure"),
            candidates: CandidateKind::Cli,
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let value = it.next()?;
            match flag.as_str() {
                "--store" => {
                    o.store = match value.as_str() {
                        "redis" => StoreKind::Redis,
                        "etcd" => StoreKind::Etcd,
                        "etcd-cluster" => StoreKind::EtcdCluster,
                        "k8s" => StoreKind::Kube,
                        "k8s-fixture" => StoreKind::KubeFixture,
                        _ => return None,
                    }
                }
                "--candidates" => {
                    o.candidates = match value.as_str() {
                        "cli" => CandidateKind::Cli,
                        "library" => CandidateKind::Library,
                        "mixed" => CandidateKind::Mixed,
                        _ => return None,
                    }
                }
                "--rounds" => o.rounds = value.parse().ok()?,
                "--seed" => o.seed = value.parse().ok()?,
                "--tenure" => o.tenure = PathBuf::from(value),
                "--faults" if value == "all" => o.faults = Vec::new(),
                "--faults" => {
                    o.faults = value
                        .split(',')
                        .map(|n| Fault::ALL.into_iter().find(|f| f.name() == n))
                        .collect::<Option<Vec<_>>>()?
                }
                _ => return None,
            }
        }
        if o.faults.is_empty() {
            // Every fault that applies to the store.
            o.faults = Fault::ALL
                .into_iter()
                .filter(|f| o.store.allows(*f))
                .collect();
        }
        if !o.faults.iter().all(|f| o.store.allows(*f)) {
            return None;
        }
        if o.candidates == CandidateKind::Mixed
            && !matches!(o.store, StoreKind::Kube | StoreKind::KubeFixture)
        {
            return None;
        }
        if o.rounds == 0 {
            o.rounds = o.faults.len();
        }
        Some(o)
    }
}
