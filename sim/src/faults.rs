//! The faults of one seed: drawn up front, so a seed replays exactly.

use std::time::Duration;

use rand::RngExt;
use rand::rngs::StdRng;
use tokio::time::Instant;

/// Which traffic a partition cuts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    /// Both directions between the candidate and the store.
    Both,
    /// Requests from the candidate are lost (replies would get through).
    Requests,
    /// Replies to the candidate are lost (requests are applied).
    Replies,
    /// Only the candidate's watch: its events are lost.
    Watch,
}

/// A partition of one candidate during a window of true time.
#[derive(Clone, Copy, Debug)]
pub struct Partition {
    /// Which candidate.
    pub candidate: usize,
    /// Which traffic.
    pub cut: Cut,
    /// From this true time.
    pub from: Instant,
    /// Until this true time.
    pub until: Instant,
}

/// An event of the schedule, at a true time.
#[derive(Clone, Copy, Debug)]
pub enum Event {
    /// The candidate stops (a GC pause, SIGSTOP) for this long.
    Pause(usize, Duration),
    /// The candidate crashes, and restarts with the same identity after this.
    Crash(usize, Duration),
    /// The record is deleted.
    Delete,
    /// Another tool writes the lock object this many times, 100 ms apart.
    ForeignWrites(u32),
    /// The store loses all its data.
    DataLoss,
    /// Every watch ends with "too old" (Kubernetes).
    WatchTooOld,
}

/// Every fault of one seed.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The longest one-way network delay, in ms.
    pub max_delay_ms: u64,
    /// Probability that a request is lost.
    pub p_lost_request: f64,
    /// Probability that a reply is lost (the request was applied).
    pub p_lost_reply: f64,
    /// Probability that a request lands after the client's timeout.
    pub p_late: f64,
    /// Probability that a watch event is lost (Redis only).
    pub p_watch_loss: f64,
    /// The Redis bug of issue 11: a refused write announced anyway.
    pub announce_refused_writes: bool,
    /// Probability of such a refused write, when switched on.
    pub p_refused: f64,
    /// The partitions.
    pub partitions: Vec<Partition>,
    /// Pauses, crashes, deletions and the rest, in time order.
    pub schedule: Vec<(Instant, Event)>,
    /// No fault after this true time.
    pub heal: Instant,
    /// Another tool touching the lock object this often, all along.
    pub background_touch: Option<Duration>,
}

impl Plan {
    fn cut(&self, candidate: usize, at: Instant, kinds: &[Cut]) -> bool {
        self.partitions.iter().any(|p| {
            p.candidate == candidate && kinds.contains(&p.cut) && p.from <= at && at < p.until
        })
    }

    /// True when the candidate's requests are lost at `at`.
    pub fn request_cut(&self, candidate: usize, at: Instant) -> bool {
        self.cut(candidate, at, &[Cut::Both, Cut::Requests])
    }

    /// True when replies to the candidate are lost at `at`.
    pub fn reply_cut(&self, candidate: usize, at: Instant) -> bool {
        self.cut(candidate, at, &[Cut::Both, Cut::Replies])
    }

    /// True when the candidate's watch events are lost at `at`.
    pub fn watch_cut(&self, candidate: usize, at: Instant) -> bool {
        self.cut(candidate, at, &[Cut::Both, Cut::Watch])
    }
}

/// How often each fault happened, summed over seeds.
#[derive(Clone, Debug, Default)]
pub struct Counts {
    /// Seeds run.
    pub seeds: u64,
    /// Candidates started.
    pub candidates: u64,
    /// Terms won.
    pub terms: u64,
    /// Requests lost.
    pub lost_requests: u64,
    /// Replies lost (the request applied).
    pub lost_replies: u64,
    /// Requests that landed after the client's timeout.
    pub late_requests: u64,
    /// Watch events lost.
    pub watch_events_dropped: u64,
    /// Partitions of a candidate from the store.
    pub partitions: u64,
    /// Partitions of a candidate's watch alone.
    pub watch_partitions: u64,
    /// Candidates paused (GC, SIGSTOP).
    pub pauses: u64,
    /// Pauses longer than the lease.
    pub pauses_beyond_lease: u64,
    /// Candidates crashed (and restarted).
    pub crashes: u64,
    /// Records deleted.
    pub deletions: u64,
    /// Writes by another tool that kept the record.
    pub foreign_writes: u64,
    /// Times the store lost all its data.
    pub data_losses: u64,
    /// Times every watch ended "too old".
    pub watch_too_old: u64,
    /// Refused writes that were announced.
    pub refused_writes_announced: u64,
    /// Overlaps of the documented gap: a create over a deleted record by a candidate that never saw it.
    pub blind_create_overlaps: u64,
}

impl Counts {
    /// Adds another run's counts.
    pub fn add(&mut self, o: &Counts) {
        macro_rules! sum {
            ($($f:ident),*) => { $( self.$f += o.$f; )* };
        }
        sum!(
            seeds,
            candidates,
            terms,
            lost_requests,
            lost_replies,
            late_requests,
            watch_events_dropped,
            partitions,
            watch_partitions,
            pauses,
            pauses_beyond_lease,
            crashes,
            deletions,
            foreign_writes,
            data_losses,
            watch_too_old,
            refused_writes_announced,
            blind_create_overlaps
        );
    }
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "seeds {}, candidates {}, terms {}; lost requests {}, lost replies {}, \
             requests landing after the client's timeout {}, watch events dropped {}, \
             partitions {} (+{} of the watch alone), pauses {} ({} beyond the lease), \
             crashes {}, deletions {}, foreign writes {}, data losses {}, \
             watches ended too old {}, refused writes announced {}; \
             overlaps of the documented gap (a create over a deleted record its \
             candidate was never shown) {}",
            self.seeds,
            self.candidates,
            self.terms,
            self.lost_requests,
            self.lost_replies,
            self.late_requests,
            self.watch_events_dropped,
            self.partitions,
            self.watch_partitions,
            self.pauses,
            self.pauses_beyond_lease,
            self.crashes,
            self.deletions,
            self.foreign_writes,
            self.data_losses,
            self.watch_too_old,
            self.refused_writes_announced,
            self.blind_create_overlaps
        )
    }
}

/// Draws the faults of one run: `faulty` of true time, then none.
pub fn draw(
    rng: &mut StdRng,
    start: Instant,
    candidates: usize,
    faulty: Duration,
    lease: Duration,
    kind: crate::StoreKind,
) -> Plan {
    let heal = start + faulty;
    let at = |rng: &mut StdRng| start + faulty.mul_f64(rng.random_range(0.05..0.95));
    let mut partitions = Vec::new();
    for _ in 0..rng.random_range(0..=4) {
        let from = at(rng);
        let until = (from + Duration::from_millis(rng.random_range(200..6000))).min(heal);
        let cut = match rng.random_range(0..4) {
            0 => Cut::Both,
            1 => Cut::Requests,
            2 => Cut::Replies,
            _ => Cut::Watch,
        };
        partitions.push(Partition {
            candidate: rng.random_range(0..candidates),
            cut,
            from,
            until,
        });
    }
    let mut schedule = Vec::new();
    for _ in 0..rng.random_range(0..=6) {
        let when = at(rng);
        let who = rng.random_range(0..candidates);
        let event = match rng.random_range(0..7) {
            0 | 1 => Event::Pause(who, lease.mul_f64(rng.random_range(0.1..2.5))),
            2 => Event::Crash(who, Duration::from_millis(rng.random_range(0..3000))),
            3 if kind != crate::StoreKind::Kube => Event::Delete,
            4 => Event::ForeignWrites(rng.random_range(1..40)),
            5 if kind == crate::StoreKind::Redis => Event::DataLoss,
            5 | 6 if kind == crate::StoreKind::Kube => Event::WatchTooOld,
            _ => Event::Pause(who, lease.mul_f64(rng.random_range(0.1..2.5))),
        };
        schedule.push((when, event));
    }
    schedule.sort_by_key(|(when, _)| *when);
    let announce_refused_writes = kind == crate::StoreKind::Redis && rng.random_bool(0.5);
    Plan {
        max_delay_ms: *[2u64, 10, 50, 200]
            .get(rng.random_range(0..4))
            .unwrap_or(&10),
        p_lost_request: rng.random_range(0.0..0.05),
        p_lost_reply: rng.random_range(0.0..0.05),
        p_late: rng.random_range(0.0..0.02),
        p_watch_loss: if kind == crate::StoreKind::Redis {
            rng.random_range(0.0..0.3)
        } else {
            0.0
        },
        announce_refused_writes,
        p_refused: if announce_refused_writes { 0.05 } else { 0.0 },
        partitions,
        schedule,
        heal,
        background_touch: (kind != crate::StoreKind::Redis && rng.random_bool(0.3))
            .then(|| Duration::from_millis(rng.random_range(100..500))),
    }
}
