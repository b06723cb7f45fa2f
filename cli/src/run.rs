//! `tenure run`: campaign, run the command while leader, stop it before
//! anyone else can take over.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Args;
use tenure::{CancellationToken, LeaderElector, Leadership};
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::output::{self, say};
use crate::term::{self, CommandSpec, Outcome, OutcomeSlot};
use crate::{Failure, parse_duration};
#[cfg(feature = "k8s")]
use tenure::k8s::PodLabel;

/// Without the k8s feature there is no Pod to label.
#[cfg(not(feature = "k8s"))]
#[derive(Clone)]
enum PodLabel {}

#[cfg(not(feature = "k8s"))]
impl PodLabel {
    async fn while_leading<F: std::future::Future>(&self, _: &Leadership, _: F) -> F::Output {
        match *self {}
    }
}

/// Upper bounds (seconds) of the renew time histogram's buckets: from a
/// loopback store's milliseconds to a renew deadline's seconds.
const RENEW_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// The timing flags `tenure run` and `tenure shard` share.
#[derive(Args, Debug)]
pub(crate) struct TimingArgs {
    /// How long others wait after the last change they saw before taking over.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub(crate) lease_duration: Duration,
    /// The command is gone (SIGKILL) if no renew succeeded for this long;
    /// lease-duration / renew-deadline is the clock-rate skew tolerated.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub(crate) renew_deadline: Duration,
    /// Time between attempts.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub(crate) retry_period: Duration,
    /// Time between SIGTERM and SIGKILL when the command must stop. The term
    /// ends (SIGTERM) this long before renew-deadline, so the command is gone
    /// (SIGKILL) by renew-deadline after the start of the last successful
    /// renew. Must be shorter than renew-deadline − 1.2 × retry-period;
    /// default: half of that.
    #[arg(long, value_parser = parse_duration)]
    pub(crate) grace: Option<Duration>,
}

/// Arguments of `tenure run`.
#[derive(Args, Debug)]
pub(crate) struct RunArgs {
    /// The lock: memory://name, redis://host:port/name, etcd://host:port/name,
    /// k8s://namespace/name?kind=lease.
    #[arg(long, value_name = "URL")]
    lock: String,
    /// This candidate's identity (unique among candidates); default: hostname-pid.
    #[arg(long)]
    identity: Option<String>,
    #[command(flatten)]
    timing: TimingArgs,
    /// Istio-style priority key written with the record.
    #[arg(long, default_value = "")]
    holder_key: String,
    /// Record client-go's leader election Events on the lock object
    /// ("IDENTITY became leader", "IDENTITY stopped leading"), reported by
    /// COMPONENT. k8s:// locks only; needs `create` on events.
    #[arg(long, value_name = "COMPONENT")]
    events: Option<String>,
    /// Label this Pod KEY=VALUE (VALUE default "true") while leading, so a
    /// Service can select the leader; the label comes off before the
    /// release, and a crashed leader's is cleared by the next. k8s:// locks
    /// only; the Pod is $POD_NAME (else $HOSTNAME) in $POD_NAMESPACE (else
    /// the lock's namespace); needs get, list and patch on pods.
    #[arg(long, value_name = "KEY[=VALUE]")]
    label_pod: Option<String>,
    /// Kubernetes' coordinated leader election: publish a LeaseCandidate of
    /// this binary version (and emulation version, default the same); the
    /// cluster's election controller names the leader. k8s:// Lease locks
    /// only; kube-apiserver needs the CoordinatedLeaderElection gate.
    #[arg(long, value_name = "BINARY[:EMULATION]")]
    coordinated: Option<String>,
    /// Serve /healthz, /readyz, /leader and /metrics on ADDR (such as
    /// 0.0.0.0:8080; port 0 picks one, said on stderr).
    #[arg(long, value_name = "ADDR")]
    http: Option<std::net::SocketAddr>,
    /// When /readyz says ready: always, or only while leading (for a
    /// Service that routes to the leader only).
    #[arg(long, value_enum, default_value = "always")]
    ready: crate::http::Ready,
    /// /healthz fails while leading and not renewed for longer than the
    /// lease plus this (client-go's HealthzAdaptor timeout).
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    health_tolerance: Duration,
    /// Keep trying an unreachable store this long at start (the endpoints
    /// serve meanwhile: healthy, and not ready with --ready leader) instead
    /// of exiting at once; a store that refuses the lock (unauthorized, bad
    /// name, unreadable record) still exits at once. Default 0: exit.
    #[arg(long, default_value = "0s", value_parser = parse_duration, value_name = "DURATION")]
    wait_for_store: Duration,
    /// Copy the term's validity to the supervisor's deadline at this
    /// period, instead of at each renew. For tests only: a long period
    /// makes the supervisor stop the command at a deadline the term
    /// outlives.
    #[arg(long, value_parser = parse_duration, hide = true)]
    deadline_sync: Option<Duration>,
    /// The command to run while leader.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<String>,
}

/// The lock URL, with `--events` and `--coordinated` as the k8s URL's
/// options of the same names.
fn lock_url(args: &RunArgs) -> Result<String, Failure> {
    let mut url = args.lock.clone();
    for (flag, value, example) in [
        (
            "events",
            &args.events,
            "a component name, such as my-controller",
        ),
        (
            "coordinated",
            &args.coordinated,
            "versions, such as 1.37.0:1.36.0",
        ),
    ] {
        let Some(value) = value else { continue };
        if !args.lock.starts_with("k8s://") {
            return Err(Failure::input(format!(
                "--{flag} is a Kubernetes feature: it needs a k8s:// lock"
            )));
        }
        if value.is_empty() || value.contains(['&', '?', '#', '=']) {
            return Err(Failure::input(format!(
                "--{flag} {value:?}: give {example}"
            )));
        }
        let sep = if url.contains('?') { '&' } else { '?' };
        url = format!("{url}{sep}{flag}={value}");
    }
    Ok(url)
}

/// `--label-pod`: the Pod to label while leading.
async fn pod_label(args: &RunArgs) -> Result<Option<PodLabel>, Failure> {
    let Some(label) = &args.label_pod else {
        return Ok(None);
    };
    let Some(rest) = args.lock.strip_prefix("k8s://") else {
        return Err(Failure::input(
            "--label-pod labels a Kubernetes Pod: it needs a k8s:// lock",
        ));
    };
    let (key, value) = label.split_once('=').unwrap_or((label, "true"));
    if key.is_empty() {
        return Err(Failure::input(
            "--label-pod: give a label key, as in --label-pod leader",
        ));
    }
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let Some(pod) = env("POD_NAME").or_else(|| env("HOSTNAME")) else {
        return Err(Failure::input(
            "--label-pod: set POD_NAME (the downward API's metadata.name) to the Pod's name",
        ));
    };
    pod_label_for(rest, key, value, pod, env("POD_NAMESPACE")).await
}

#[cfg(feature = "k8s")]
async fn pod_label_for(
    lock: &str,
    key: &str,
    value: &str,
    pod: String,
    namespace: Option<String>,
) -> Result<Option<PodLabel>, Failure> {
    use tenure::k8s::kube;
    let config = kube::Config::infer().await.map_err(|e| {
        Failure::input(format!(
            "--label-pod: no Kubernetes client configuration: {e}"
        ))
    })?;
    let lock_namespace = lock.split('/').next().filter(|ns| !ns.is_empty());
    let namespace = namespace
        .or(lock_namespace.map(str::to_owned))
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = tenure::k8s::client_for(config)?;
    Ok(Some(
        PodLabel::new(client, &namespace, pod, key).value(value),
    ))
}

#[cfg(not(feature = "k8s"))]
async fn pod_label_for(
    _: &str,
    _: &str,
    _: &str,
    _: String,
    _: Option<String>,
) -> Result<Option<PodLabel>, Failure> {
    Err(Failure::input(
        "--label-pod: this tenure was built without the k8s feature",
    ))
}

/// What ended one `elector.run`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    /// Ctrl-C, SIGTERM, SIGHUP: step down, release, exit.
    Exit,
    /// Ctrl-Z (SIGTSTP): step down, release, suspend; campaign again when
    /// continued.
    Suspend,
}

pub(crate) async fn run(args: RunArgs) -> Result<u8, Failure> {
    let timing = Timing::from_args(&args.timing, args.deadline_sync)?;
    let identity = args.identity.clone().unwrap_or_else(default_identity);
    // Before the first metric is recorded: the library's `metrics` calls
    // go to it.
    let metrics = match args.http {
        Some(_) => Some(
            metrics_exporter_prometheus::PrometheusBuilder::new()
                // A histogram with buckets, not the exporter's default
                // summary: quantiles can then be taken over many replicas.
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full(
                        tenure::metrics::RENEW_SECONDS.to_owned(),
                    ),
                    &RENEW_BUCKETS,
                )
                .map_err(|e| Failure::runtime(format!("metrics: {e}")))?
                .install_recorder()
                .map_err(|e| Failure::runtime(format!("metrics: {e}")))?,
        ),
        None => None,
    };
    let url = lock_url(&args)?;
    let label = pod_label(&args).await?;
    let endpoints = Arc::new(crate::http::Endpoints {
        elector: std::sync::OnceLock::new(),
        url: tenure::redact(&url),
        identity: identity.clone(),
        tolerance: args.health_tolerance,
        ready: args.ready,
        metrics,
    });
    if let Some(addr) = args.http {
        let bound = crate::http::serve(addr, endpoints.clone(), CancellationToken::new())
            .await
            .map_err(|e| Failure::input(format!("--http {addr}: {e}")))?;
        say(format!(
            "serving /healthz /readyz /leader /metrics on http://{bound}"
        ));
    }
    // Signals first: a SIGTERM while the store is reached (or waited for)
    // ends the run cleanly (nothing is held yet), never by the default
    // action.
    let mut signals = Signals::new().map_err(|e| Failure::runtime(format!("signals: {e}")))?;
    let store = tokio::select! {
        store = connect(&url, args.wait_for_store, args.timing.retry_period) => store?,
        _ = signals.next() => {
            say("signal received before the store answered: stopped");
            return Ok(0);
        }
    };
    let elector = LeaderElector::builder(store.clone(), identity.clone())
        .lease_duration(args.timing.lease_duration)
        .renew_deadline(timing.engine_renew_deadline)
        .retry_period(args.timing.retry_period)
        .holder_key(args.holder_key.clone())
        .on_new_leader(|leader| say(format!("leader is {leader}")))
        .on_stopped_leading(|| say("no longer leader"))
        .build()
        .map_err(|e| Failure::input(format!("invalid timing: {e}")))?;
    let spec = CommandSpec {
        argv: args.command.clone(),
        lock: store.describe(),
        grace: timing.grace,
        sync: args.deadline_sync,
        env: Vec::new(),
        tag: None,
    };
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with integer arguments only.
    unsafe {
        // If a supervisor dies, the processes its command started (which
        // it, a subreaper, would have stopped) become our children, so
        // they can be found and stopped before the lock is released.
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
    let _ = endpoints.elector.set((elector.clone(), store.describe()));
    say(format!("{identity} campaigning for {}", store.describe()));
    loop {
        let shutdown = CancellationToken::new();
        let outcome: OutcomeSlot = Arc::new(Mutex::new(None));
        let work = {
            let spec = spec.clone();
            let outcome = outcome.clone();
            let shutdown = shutdown.clone();
            let label = label.clone();
            move |leadership: Leadership| {
                let lead = term::lead(
                    spec.clone(),
                    leadership.clone(),
                    outcome.clone(),
                    shutdown.clone(),
                );
                let label = label.clone();
                async move {
                    match label {
                        Some(label) => label.while_leading(&leadership, lead).await,
                        None => lead.await,
                    }
                }
            }
        };
        let stop = Arc::new(Mutex::new(Stop::Exit));
        let (result, signalled) = {
            let campaign = elector.run(shutdown.clone(), work);
            tokio::pin!(campaign);
            let mut stopping = false;
            loop {
                tokio::select! {
                    result = &mut campaign => break (result, stopping),
                    stop_kind = signals.next(), if !stopping => {
                        stopping = true;
                        *stop.lock().unwrap() = stop_kind;
                        match stop_kind {
                            Stop::Exit => say("signal received: stopping the command, then releasing"),
                            Stop::Suspend => say("Ctrl-Z: stepping down (stopping the command, releasing the lock), then suspending"),
                        }
                        shutdown.cancel();
                    }
                }
            }
        };
        result.map_err(|e| match &e {
            tenure::ElectionError::Store(s) if s.is_bad_input() => Failure::input(crate::said(&e)),
            _ => Failure::runtime(crate::said(&e)),
        })?;
        let ended = outcome.lock().unwrap().take();
        match ended {
            Some(Outcome::Exited(code)) => {
                say("released and stopped");
                return Ok(code);
            }
            Some(Outcome::Failed(message)) => return Err(Failure::runtime(message)),
            // A signal that came meanwhile is obeyed below.
            Some(Outcome::SteppedDown) if !signalled => {
                say("released; campaigning again");
                continue;
            }
            Some(Outcome::SteppedDown) | None => {}
        }
        let stop_kind = *stop.lock().unwrap();
        match stop_kind {
            Stop::Exit => {
                say("released and stopped");
                return Ok(0);
            }
            Stop::Suspend => {
                say("suspended; `fg` or `bg` (SIGCONT) campaigns again");
                output::flush(Duration::from_millis(200));
                // SAFETY: raise(3) stops this process until SIGCONT.
                unsafe {
                    libc::raise(libc::SIGSTOP);
                }
                say(format!("{identity} resumed: campaigning again"));
            }
        }
    }
}

/// Connects and reads the lock once: one clear line and an exit on a
/// store that refuses it, or that cannot be reached within `patience`.
async fn connect(
    url: &str,
    patience: Duration,
    retry: Duration,
) -> Result<Arc<dyn tenure::LockStore>, Failure> {
    let until = tokio::time::Instant::now() + patience;
    loop {
        let error = match tenure::connect(url).await {
            Ok(store) => match store.get().await {
                Ok(_) => return Ok(store),
                Err(e) => e,
            },
            Err(tenure::ConnectError::Store(e)) => e,
            Err(e) => return Err(e.into()),
        };
        // Bad input, a refusal, a record that does not parse: waiting
        // cannot fix them.
        let transient = matches!(error, tenure::StoreError::Unavailable { .. });
        if !transient || tokio::time::Instant::now() + retry > until {
            return Err(error.into());
        }
        say(format!(
            "waiting for the store: {}; trying again in {retry:?}",
            crate::said(&error)
        ));
        tokio::time::sleep(retry).await;
    }
}

/// The timing `tenure run` and `tenure shard` use, derived from their
/// arguments.
#[derive(Debug)]
pub(crate) struct Timing {
    pub(crate) grace: Duration,
    /// The engine's renew deadline: `--renew-deadline` − grace, so the term
    /// ends (SIGTERM) `grace` before the command must be gone (SIGKILL).
    pub(crate) engine_renew_deadline: Duration,
}

impl Timing {
    pub(crate) fn from_args(
        args: &TimingArgs,
        deadline_sync: Option<Duration>,
    ) -> Result<Timing, Failure> {
        if deadline_sync.is_some_and(|d| d.is_zero()) {
            return Err(Failure::input("--deadline-sync must be greater than 0"));
        }
        if args.lease_duration <= args.renew_deadline {
            return Err(Failure::input(format!(
                "invalid timing: lease-duration ({:?}) must be greater than renew-deadline ({:?})",
                args.lease_duration, args.renew_deadline
            )));
        }
        let floor = args.retry_period.mul_f64(tenure::JITTER_FACTOR);
        let room = args.renew_deadline.saturating_sub(floor);
        let grace = args.grace.unwrap_or(room / 2);
        if room.is_zero() || grace >= room {
            return Err(Failure::input(format!(
                "--grace ({grace:?}) must be shorter than renew-deadline − 1.2 × retry-period ({room:?}): \
                 the term ends grace before renew-deadline, and must still outlast a retry"
            )));
        }
        Ok(Timing {
            grace,
            engine_renew_deadline: args.renew_deadline - grace,
        })
    }
}

/// The signals `tenure run` handles, as a stream of stops.
pub(crate) struct Signals {
    int: Signal,
    term: Signal,
    hup: Signal,
    tstp: Signal,
}

impl Signals {
    pub(crate) fn new() -> std::io::Result<Signals> {
        Ok(Signals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
            tstp: signal(SignalKind::from_raw(libc::SIGTSTP))?,
        })
    }

    pub(crate) async fn next(&mut self) -> Stop {
        tokio::select! {
            _ = self.int.recv() => Stop::Exit,
            _ = self.term.recv() => Stop::Exit,
            _ = self.hup.recv() => Stop::Exit,
            _ = self.tstp.recv() => Stop::Suspend,
        }
    }
}

pub(crate) fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "host".to_owned());
    format!("{host}-{}", std::process::id())
}
