//! One candidate of each elector, behind the same handle: a `leading` flag
//! that follows the library's own view ("I lead now"), a graceful stop (the
//! library's own release, where it has one), and a crash (its tasks
//! aborted, nothing sent).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::task::{AbortHandle, JoinHandle};

use crate::fixture;

/// The namespace every lease lives in.
pub const NS: &str = "bench";

/// The same timing for everyone, in each library's own terms: a 4 s lease;
/// client-go style electors renew within 3 s and retry every 1 s; the
/// "grace" electors renew 1 s before expiry; kube-leader-election is called
/// every 1 s (its README's loop, at a third of a 4 s TTL, rounded down).
pub const LEASE: Duration = Duration::from_secs(4);
pub const RENEW_DEADLINE: Duration = Duration::from_secs(3);
pub const RETRY: Duration = Duration::from_secs(1);
pub const GRACE: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    Tenure,
    KubeLeaderElection,
    KubeLeaseManager,
    KubeCoordinate,
    Kubert,
}

impl Peer {
    pub const ALL: [Peer; 5] = [
        Peer::Tenure,
        Peer::KubeLeaderElection,
        Peer::KubeLeaseManager,
        Peer::KubeCoordinate,
        Peer::Kubert,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Peer::Tenure => "tenure LeaseLock (tenure-k8s 0.1, kube 5)",
            Peer::KubeLeaderElection => "kube-leader-election 0.44 (kube 4)",
            Peer::KubeLeaseManager => "kube-lease-manager 0.13.1 (kube 5)",
            Peer::KubeCoordinate => "kube-coordinate 2.0.0-rc.0 (kube 2)",
            Peer::Kubert => "kubert 0.25 lease (kube-client 1.1)",
        }
    }

    pub fn slug(self) -> &'static str {
        match self {
            Peer::Tenure => "tenure",
            Peer::KubeLeaderElection => "kle",
            Peer::KubeLeaseManager => "klm",
            Peer::KubeCoordinate => "kcoord",
            Peer::Kubert => "kubert",
        }
    }

    pub fn from_slug(slug: &str) -> Option<Peer> {
        Peer::ALL.into_iter().find(|p| p.slug() == slug)
    }
}

/// One running candidate.
pub struct Candidate {
    pub leading: watch::Receiver<bool>,
    stop: Option<oneshot::Sender<()>>,
    done: JoinHandle<()>,
    /// The library's own tasks, aborted on a crash.
    tasks: Tasks,
}

impl Candidate {
    pub fn is_leading(&self) -> bool {
        *self.leading.borrow()
    }

    /// Graceful exit: the library stops (and releases, if it can).
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), &mut self.done).await;
        self.crash();
    }

    /// A crash: every task of the candidate is aborted, nothing is sent.
    pub fn crash(self) {
        self.done.abort();
        for t in self.tasks.lock().unwrap().iter() {
            t.abort();
        }
    }
}

/// Makes the lease exist where the library needs it to (kubert refuses to
/// start without a Lease that has a spec; the others create their own).
pub async fn prepare(peer: Peer, url: &str, lease: &str) {
    if peer != Peer::Kubert {
        return;
    }
    use kube5::api::{Api, PostParams};
    let api: Api<k8s_openapi_029::api::coordination::v1::Lease> =
        Api::namespaced(fixture::kube5(url), NS);
    let mut object = k8s_openapi_029::api::coordination::v1::Lease::default();
    object.metadata.name = Some(lease.to_owned());
    object.spec = Some(Default::default());
    let _ = api.create(&PostParams::default(), &object).await;
}

/// Starts a candidate of `peer` with identity `id` on `lease`, with a
/// client of its own (a replica of its own).
pub async fn start(peer: Peer, url: &str, lease: &str, id: String) -> Candidate {
    let (tx, leading) = watch::channel(false);
    let (stop, stop_rx) = oneshot::channel();
    let (url, lease) = (url.to_owned(), lease.to_owned());
    let tasks = Tasks::default();
    let done = match peer {
        Peer::Tenure => tokio::spawn(tenure(url, lease, id, tx, stop_rx, tasks.clone())),
        Peer::KubeLeaderElection => tokio::spawn(kle(url, lease, id, tx, stop_rx)),
        Peer::KubeLeaseManager => tokio::spawn(klm(url, lease, id, tx, stop_rx, tasks.clone())),
        Peer::KubeCoordinate => tokio::spawn(kcoord(url, lease, id, tx, stop_rx)),
        Peer::Kubert => tokio::spawn(kubert(url, lease, id, tx, stop_rx, tasks.clone())),
    };
    Candidate {
        leading,
        stop: Some(stop),
        done,
        tasks,
    }
}

/// The library's own tasks, registered as they are spawned.
type Tasks = Arc<Mutex<Vec<AbortHandle>>>;

/// Mirrors a library's state channel into `tx` through `view`, until the
/// channel closes or `stop` fires; then says "not leading".
async fn follow<T>(
    rx: &mut watch::Receiver<T>,
    view: impl Fn(&T) -> bool,
    tx: &watch::Sender<bool>,
    stop: &mut oneshot::Receiver<()>,
) {
    loop {
        tx.send_replace(view(&rx.borrow_and_update()));
        tokio::select! {
            changed = rx.changed() => if changed.is_err() { break },
            _ = &mut *stop => break,
        }
    }
    tx.send_replace(false);
}

fn register(tasks: &Tasks, task: AbortHandle) {
    tasks.lock().unwrap().push(task);
}

async fn tenure(
    url: String,
    lease: String,
    id: String,
    tx: watch::Sender<bool>,
    stop: oneshot::Receiver<()>,
    tasks: Tasks,
) {
    let lock = tenure_k8s::LeaseLock::builder(&lease)
        .namespace(NS)
        .client(fixture::kube5(&url))
        .renew_deadline(RENEW_DEADLINE)
        .build()
        .await
        .expect("a tenure LeaseLock");
    let elector = tenure_core::LeaderElector::builder(Arc::new(lock), id)
        .lease_duration(LEASE)
        .renew_deadline(RENEW_DEADLINE)
        .retry_period(RETRY)
        .build()
        .expect("valid timing");
    let shutdown = tenure_core::CancellationToken::new();
    let run = tokio::spawn({
        let elector = elector.clone();
        let shutdown = shutdown.clone();
        async move {
            let _ = elector
                .run(shutdown, |l| async move { l.cancelled().await })
                .await;
        }
    });
    register(&tasks, run.abort_handle());
    let mut state = elector.subscribe();
    let mut stop = stop;
    follow(&mut state, |s| s.is_leader, &tx, &mut stop).await;
    shutdown.cancel();
    let _ = run.await;
}

async fn kle(
    url: String,
    lease: String,
    id: String,
    tx: watch::Sender<bool>,
    mut stop: oneshot::Receiver<()>,
) {
    use kube_leader_election::{LeaseLock, LeaseLockParams, LeaseLockResult};
    let lock = LeaseLock::new(
        fixture::kube4(&url),
        NS,
        LeaseLockParams {
            lease_name: lease,
            holder_id: id,
            lease_ttl: LEASE,
        },
    );
    loop {
        let lead = matches!(
            lock.try_acquire_or_renew().await,
            Ok(LeaseLockResult::Acquired(_))
        );
        tx.send_replace(lead);
        tokio::select! {
            _ = tokio::time::sleep(RETRY) => {}
            _ = &mut stop => {
                tx.send_replace(false);
                if lead {
                    let _ = lock.step_down().await;
                }
                return;
            }
        }
    }
}

async fn klm(
    url: String,
    lease: String,
    id: String,
    tx: watch::Sender<bool>,
    mut stop: oneshot::Receiver<()>,
    tasks: Tasks,
) {
    use kube_lease_manager::{LeaseManagerBuilder, LeaseParams};
    let manager = LeaseManagerBuilder::new(fixture::kube5(&url), lease)
        .with_namespace(NS)
        .with_parameters(LeaseParams::new(id, LEASE.as_secs(), GRACE.as_secs()))
        .build()
        .await
        .expect("a kube-lease-manager");
    let (mut rx, task) = manager.watch().await;
    register(&tasks, task.abort_handle());
    follow(&mut rx, |lead| *lead, &tx, &mut stop).await;
    drop(rx); // its documented graceful exit: the task releases and ends
    let _ = task.await;
}

async fn kcoord(
    url: String,
    lease: String,
    id: String,
    tx: watch::Sender<bool>,
    mut stop: oneshot::Receiver<()>,
) {
    use kube_coordinate::{Config, LeaderElector};
    let config = Config::default()
        .name(&lease)
        .namespace(NS)
        .identity(&id)
        .manager(&id)
        .lease_duration(LEASE)
        .renew_deadline(RENEW_DEADLINE)
        .retry_period(RETRY);
    // Its task ends when this handle is dropped (a crash aborts us).
    let handle = LeaderElector::spawn(config, fixture::kube2(&url)).expect("kube-coordinate");
    let mut rx = handle.state();
    follow(&mut rx, |s| s.is_leader(), &tx, &mut stop).await;
    let _ = handle.shutdown().await; // no release: it stops renewing
}

async fn kubert(
    url: String,
    lease: String,
    id: String,
    tx: watch::Sender<bool>,
    mut stop: oneshot::Receiver<()>,
    tasks: Tasks,
) {
    use kubert::lease::{ClaimParams, LeaseManager};
    let api: kube_client_1::Api<k8s_openapi_025::api::coordination::v1::Lease> =
        kube_client_1::Api::namespaced(fixture::kube1(&url), NS);
    let manager = LeaseManager::init(api, lease)
        .await
        .expect("kubert lease manager");
    let params = ClaimParams {
        lease_duration: LEASE,
        renew_grace_period: GRACE,
    };
    let (mut rx, task) = manager.spawn(&id, params).await.expect("kubert claim task");
    register(&tasks, task.abort_handle());
    loop {
        // Its channel does not announce an expiry: the claim's validity
        // is read off the clock, as its docs say to, waking when it ends.
        let claim = rx.borrow_and_update().clone();
        let current = claim.is_current_for(&id);
        tx.send_replace(current);
        let until_expiry = (claim.expiry - chrono::Utc::now())
            .to_std()
            .unwrap_or(Duration::ZERO)
            + Duration::from_millis(1);
        tokio::select! {
            changed = rx.changed() => if changed.is_err() { break },
            _ = tokio::time::sleep(until_expiry), if current => {}
            _ = &mut stop => break,
        }
    }
    tx.send_replace(false);
    drop(rx); // every receiver gone: it vacates the lease and ends
    let _ = task.await;
}
