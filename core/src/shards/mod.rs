//! Shards: `N` locks shared fairly among the live replicas, each shard an
//! ordinary tenure lock with every guarantee the single lock has (at most
//! one valid owner, a fencing token that rises, the work drained before
//! the release).
//!
//! Replicas count each other through **member slots**, each itself a tenure
//! lock (`NAME-member-K`): a replica holds one slot while it runs, and
//! judges another's alive while that slot's record keeps changing, by its
//! own clock. Nothing but the [`LockStore`] trait is used, so shards work
//! on every store.
//!
//! Each of the `L` live members, ranked by slot, has a **share**:
//! `N / L`, one more for the first `N % L` ranks. The shares add up to `N`,
//! so when each member holds its share every shard is owned and no two
//! members differ by more than one.
//! - A member above its share hands its least preferred shards back
//!   (their work drained, then released): a join rebalances.
//! - A member below its share campaigns for shards that are free, or
//!   whose holder is no longer a live member (the shard's lease is waited
//!   out as for any lock): a death is covered.
//! - A member at its share does nothing: no shard moves while the
//!   membership stays the same.
//!
//! Members prefer shards by rendezvous hashing of (identity, shard), so
//! they rarely campaign for the same shard.
//!
//! **Bounds** (timing `lease`, `retry`; each round is one retry period,
//! jittered up to 1.2 ×): after a member dies, its slot is seen dead
//! `lease` after its last renew, and each of its shards is taken `lease`
//! after the taker first read it: every shard is owned again within about
//! `2 × lease + 3 × retry`. A round reads at most 64 shard records, or a
//! quarter of the shards if more, so with more than 64 shards finding them
//! all can take three rounds more: `2 × lease + 6 × retry`. A joining
//! member has its share within a few rounds (a slot, then the shards the
//! others hand back; at most four rounds of reads to find them).
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use tenure_core::shards::Shards;
//! use tenure_core::{CancellationToken, LockStore, MemoryStore};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // One store per lock name; here in memory, in production Redis, etcd
//! // or Kubernetes locks of those names.
//! let shards = Shards::builder("reports", "replica-1", 8, |name: String| async move {
//!     Ok(Arc::new(MemoryStore::new(&name)?) as Arc<dyn LockStore>)
//! })
//! .build()?;
//! let mut owned = shards.owned();
//! let shutdown = CancellationToken::new();
//! let task = tokio::spawn({
//!     let (shards, shutdown) = (shards.clone(), shutdown.clone());
//!     async move {
//!         shards
//!             .run(shutdown, |shard| async move {
//!                 // Work on shard.index() until shard.leadership() is cancelled.
//!                 shard.leadership().cancelled().await;
//!             })
//!             .await
//!     }
//! });
//! // Alone, this replica soon owns all 8.
//! owned.wait_for(|set| set.len() == 8).await?;
//! shutdown.cancel();
//! task.await??;
//! # Ok(()) }
//! ```

#[cfg(feature = "test-hooks")]
mod log;
mod plan;
mod roster;

#[cfg(feature = "test-hooks")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-hooks")))]
pub use log::{ShardLog, ShardTerm};

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, warn};

use crate::clock::{Clock, TokioClock};
use crate::config::ConfigError;
use crate::elector::{ElectionError, ElectionTask, LeaderElector};
use crate::leadership::Leadership;
use crate::planted::{self, Bug};
use crate::store::{ErrorChain, LockStore, StoreError};
use roster::{Member, Roster};

/// Opens the store of one lock, by name (`NAME-shard-J`, `NAME-member-K`).
pub type StoreMaker = Arc<
    dyn Fn(String) -> futures::future::BoxFuture<'static, Result<Arc<dyn LockStore>, StoreError>>
        + Send
        + Sync,
>;

/// The most shard records one round reads looking for shards to take:
/// this many, or a quarter of the shards if more, so a member that must
/// find its share among 1,024 shards reads them all in four rounds.
const PROBES_PER_ROUND: usize = 64;
/// Shard records read at once while probing.
const PROBE_BATCH: usize = 16;

/// One shard's term, given to the work.
#[derive(Clone, Debug)]
pub struct Shard {
    index: u32,
    count: u32,
    leadership: Leadership,
}

impl Shard {
    /// This shard's number, `0..count`.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// How many shards there are.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The shard's term: its fencing token, validity and cancellation,
    /// independent of every other shard's.
    pub fn leadership(&self) -> &Leadership {
        &self.leadership
    }
}

/// Shard `index` of `count` as a range of 64-bit hashes, `[start, end)`,
/// the ranges of all shards covering `0..2^64` without overlap: what
/// Kubernetes' server-side sharded list and watch (KEP-5866) selects.
///
/// ```
/// use tenure_core::shards::hash_range;
/// assert_eq!(hash_range(0, 2), (0, 1 << 63));
/// assert_eq!(hash_range(1, 2), (1 << 63, 1 << 64));
/// ```
pub fn hash_range(index: u32, count: u32) -> (u128, u128) {
    let span = 1u128 << 64;
    let at = |i: u32| span * u128::from(i) / u128::from(count.max(1));
    (at(index), at(index + 1))
}

/// The shard selector of shard `index` of `count` for Kubernetes'
/// server-side sharded list and watch (KEP-5866), on `field`
/// (`object.metadata.uid` or `object.metadata.namespace`): the hash range
/// of [`hash_range`] in the API server's form.
///
/// ```
/// use tenure_core::shards::shard_selector;
/// assert_eq!(
///     shard_selector(1, 4, "object.metadata.uid"),
///     "shardRange(object.metadata.uid, '0x4000000000000000', '0x8000000000000000')"
/// );
/// assert_eq!(
///     shard_selector(3, 4, "object.metadata.uid"),
///     "shardRange(object.metadata.uid, '0xc000000000000000', '0x10000000000000000')"
/// );
/// ```
pub fn shard_selector(index: u32, count: u32, field: &str) -> String {
    let (start, end) = hash_range(index, count);
    format!("shardRange({field}, '0x{start:016x}', '0x{end:016x}')")
}

/// Builds [`Shards`].
pub struct ShardsBuilder {
    name: String,
    identity: String,
    count: u32,
    member_slots: u32,
    lease_duration: Duration,
    renew_deadline: Duration,
    retry_period: Duration,
    make: StoreMaker,
    clock: Arc<dyn Clock>,
    jitter_seed: Option<u64>,
}

impl std::fmt::Debug for ShardsBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardsBuilder")
            .field("name", &self.name)
            .field("identity", &self.identity)
            .field("count", &self.count)
            .field("member_slots", &self.member_slots)
            .finish_non_exhaustive()
    }
}

impl ShardsBuilder {
    /// How many member slots there are: at least the number of replicas
    /// that will ever run at once (default 32). A replica that finds no
    /// free slot owns no shard until one frees up.
    pub fn member_slots(mut self, slots: u32) -> Self {
        self.member_slots = slots;
        self
    }

    /// Every lock's lease (default 15 s, client-go's).
    pub fn lease_duration(mut self, d: Duration) -> Self {
        self.lease_duration = d;
        self
    }

    /// Every lock's renew deadline (default 10 s).
    pub fn renew_deadline(mut self, d: Duration) -> Self {
        self.renew_deadline = d;
        self
    }

    /// Every lock's retry period, and the period of a balancing round
    /// (default 2 s).
    pub fn retry_period(mut self, d: Duration) -> Self {
        self.retry_period = d;
        self
    }

    /// The clock of every lock and of the rounds (tests and the
    /// simulation: a clock at its own rate).
    #[cfg(feature = "test-hooks")]
    #[cfg_attr(docsrs, doc(cfg(feature = "test-hooks")))]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Seeds every lock's retry jitter (from `seed` and the lock), so a
    /// seeded simulation replays exactly.
    #[cfg(feature = "test-hooks")]
    #[cfg_attr(docsrs, doc(cfg(feature = "test-hooks")))]
    pub fn jitter_seed(mut self, seed: u64) -> Self {
        self.jitter_seed = Some(seed);
        self
    }

    /// Checks the timing (as [`LeaderElector`] does) and the counts.
    pub fn build(self) -> Result<Shards, ConfigError> {
        if self.count == 0 {
            return Err(ConfigError::Zero("the shard count"));
        }
        if self.member_slots == 0 {
            return Err(ConfigError::Zero("member_slots"));
        }
        // The same rules as one lock's.
        let probe = Arc::new(crate::MemoryStore::new("probe").expect("a valid name"));
        LeaderElector::builder(probe, self.identity.clone())
            .lease_duration(self.lease_duration)
            .renew_deadline(self.renew_deadline)
            .retry_period(self.retry_period)
            .build()?;
        let (owned, _) = watch::channel(BTreeSet::new());
        Ok(Shards {
            inner: Arc::new(Inner {
                config: self,
                owned,
            }),
        })
    }
}

struct Inner {
    config: ShardsBuilder,
    owned: watch::Sender<BTreeSet<u32>>,
}

/// `count` shards shared fairly among the live replicas (see the
/// [module docs](self)). Cheap to clone.
#[derive(Clone)]
pub struct Shards {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Shards {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shards")
            .field("config", &self.inner.config)
            .field("owned", &*self.inner.owned.borrow())
            .finish()
    }
}

impl Shards {
    /// `count` shards of `name` for the replica `identity`; `make` opens
    /// the store of a lock by name, once per lock when `run` starts.
    pub fn builder<F, Fut>(
        name: impl Into<String>,
        identity: impl Into<String>,
        count: u32,
        make: F,
    ) -> ShardsBuilder
    where
        F: Fn(String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Arc<dyn LockStore>, StoreError>> + Send + 'static,
    {
        ShardsBuilder {
            name: name.into(),
            identity: identity.into(),
            count,
            member_slots: 32,
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
            make: Arc::new(move |name| Box::pin(make(name))),
            clock: Arc::new(TokioClock),
            jitter_seed: None,
        }
    }

    /// The shards this replica owns now, as a stream: a shard is in the set
    /// from the start of its term until its leadership is cancelled.
    pub fn owned(&self) -> watch::Receiver<BTreeSet<u32>> {
        self.inner.owned.subscribe()
    }

    /// The lock name of shard `index` (`NAME-shard-INDEX`).
    pub fn shard_lock(&self, index: u32) -> String {
        format!("{}-shard-{index}", self.inner.config.name)
    }

    /// The lock name of member slot `slot` (`NAME-member-SLOT`).
    pub fn member_lock(&self, slot: u32) -> String {
        format!("{}-member-{slot}", self.inner.config.name)
    }

    /// Takes part until `shutdown`: holds a member slot, campaigns for this
    /// replica's share, runs `work` once per shard term (on a task of its
    /// own), hands shards back above the share. On shutdown every shard's
    /// work is stopped and drained and every lock released before it
    /// returns. Fails only on a store error retrying cannot fix (such as
    /// [`StoreError::Unauthorized`]) or an invalid lock name.
    pub async fn run<W, Fut>(
        &self,
        shutdown: CancellationToken,
        work: W,
    ) -> Result<(), ElectionError>
    where
        W: Fn(Shard) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let cfg = &self.inner.config;
        let span = tracing::info_span!("shards", name = %cfg.name, identity = %cfg.identity);
        let mut round = Round::open(self, Arc::new(work)).await?;
        let result = async {
            loop {
                round.play().await?;
                let next = cfg.clock.now() + cfg.retry_period;
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = cfg.clock.sleep_until(next) => {}
                }
            }
        }
        .instrument(span.clone())
        .await;
        round.close().instrument(span).await;
        result
    }
}

type Work = Arc<dyn Fn(Shard) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// One lock this replica campaigns for or holds.
struct Lock {
    elector: LeaderElector,
    task: ElectionTask,
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The balancing state of one `run`. Dropped without [`Round::close`] (a
/// `run` future dropped), it stops every election at once, as a crash
/// would: the locks run out by their leases.
struct Round {
    shards: Shards,
    work: Work,
    members: Vec<Arc<dyn LockStore>>,
    stores: Vec<Arc<dyn LockStore>>,
    roster: Roster,
    /// Our member slot's election.
    member: Option<(u32, Lock)>,
    /// Shard electors, won or not.
    locks: BTreeMap<u32, Lock>,
    /// Shards being handed back: their electors' shutdowns, still running.
    leaving: BTreeMap<u32, tokio::task::JoinHandle<()>>,
    /// Where the next probe starts, in our preference order.
    cursor: usize,
    /// The next shard to read for records a previous incarnation left
    /// (`None`: all read).
    reclaim_from: Option<u32>,
    /// Shards handed back: read again once their election ended, in case
    /// the release did not land (a member cut off from the store) and the
    /// record still names us; nobody else would take it from a live
    /// member.
    recheck: BTreeSet<u32>,
    preference: Vec<u32>,
}

impl Round {
    async fn open<W, Fut>(shards: &Shards, work: Arc<W>) -> Result<Round, ElectionError>
    where
        W: Fn(Shard) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let cfg = &shards.inner.config;
        let names: Vec<String> = (0..cfg.member_slots)
            .map(|k| shards.member_lock(k))
            .chain((0..cfg.count).map(|j| shards.shard_lock(j)))
            .collect();
        let mut opened = Vec::with_capacity(names.len());
        for name in names {
            opened.push((cfg.make)(name).await.map_err(ElectionError::Store)?);
        }
        let stores = opened.split_off(cfg.member_slots as usize);
        let members = opened;
        let work: Work = Arc::new(move |shard| Box::pin(work(shard)));
        Ok(Round {
            shards: shards.clone(),
            work,
            members,
            stores,
            roster: Roster::new(cfg.member_slots, cfg.lease_duration),
            member: None,
            locks: BTreeMap::new(),
            leaving: BTreeMap::new(),
            cursor: 0,
            reclaim_from: Some(0),
            recheck: BTreeSet::new(),
            preference: plan::preference(&cfg.identity, cfg.count),
        })
    }

    /// An elector for lock number `n` (members first, then shards).
    fn elector(&self, store: Arc<dyn LockStore>, n: u64) -> Result<LeaderElector, ElectionError> {
        let cfg = &self.shards.inner.config;
        let mut builder = LeaderElector::builder(store, cfg.identity.clone())
            .lease_duration(cfg.lease_duration)
            .renew_deadline(cfg.renew_deadline)
            .retry_period(cfg.retry_period);
        builder = builder.with_clock(cfg.clock.clone());
        if let Some(seed) = cfg.jitter_seed {
            builder = builder.jitter_seed(seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        }
        builder.build().map_err(|e| {
            ElectionError::Store(StoreError::InvalidConfig {
                message: e.to_string(),
                source: None,
            })
        })
    }

    /// One balancing round.
    async fn play(&mut self) -> Result<(), ElectionError> {
        let inner = self.shards.inner.clone();
        let cfg = &inner.config;
        let identity = cfg.identity.clone();
        self.leaving.retain(|_, h| !h.is_finished());
        // A lock whose election ended by itself (a store refusing it) ends
        // the run: retrying cannot fix it.
        let ended: Vec<u32> = self
            .locks
            .iter()
            .filter(|(_, l)| l.task.is_finished())
            .map(|(&j, _)| j)
            .collect();
        for j in ended {
            let lock = self.locks.remove(&j).expect("listed");
            lock.task.join().await?;
        }

        // Who is alive, by our clock.
        let now = cfg.clock.now();
        for (k, store) in self.members.iter().enumerate() {
            match store.get().await {
                Ok(v) => self.roster.observe(k as u32, v.map(|v| v.record), now),
                Err(e) if e.is_fatal() => return Err(ElectionError::Store(e)),
                Err(e) => debug!(slot = k, error = %ErrorChain(&e), "member slot unreadable"),
            }
        }
        let me = match &self.member {
            Some((slot, lock)) if lock.elector.is_leader() => Some(Member {
                slot: *slot,
                identity: identity.clone(),
            }),
            _ => None,
        };
        self.keep_a_member_slot(now, me.is_some()).await?;
        let live = self.roster.live(now, me.clone());
        let share = match &me {
            Some(me) => {
                // By identity: while a previous incarnation's slot is
                // still alive, every member ranks us by that lower slot.
                let rank = live
                    .iter()
                    .position(|m| m.identity == me.identity)
                    .unwrap_or(0) as u32;
                if planted::is(Bug::ShardIgnoresShare) {
                    cfg.count
                } else {
                    plan::share(cfg.count, live.len() as u32, rank)
                }
            }
            // Not counted by the others yet: holding shards would break
            // their arithmetic.
            None => 0,
        };

        // What we hold and campaign for.
        let mut held = BTreeSet::new();
        let mut campaigning = BTreeSet::new();
        for (&j, lock) in &self.locks {
            if lock.elector.is_leader() {
                held.insert(j);
            } else {
                campaigning.insert(j);
            }
        }
        // A campaign for a shard a live member holds will not succeed.
        let live_ids: BTreeSet<&str> = live.iter().map(|m| m.identity.as_str()).collect();
        for &j in &campaigning.clone() {
            let leader = self.locks[&j].elector.state().leader;
            if leader.is_some_and(|l| l != identity && live_ids.contains(l.as_str())) {
                self.leave(j);
                campaigning.remove(&j);
            }
        }
        // Campaigns for shards a dead member held are kept apart: each
        // must wait out its lease, so a member below its share follows
        // all it finds (up to its share), not just the number it lacks,
        // and hands back what it wins above its share. The dead member's
        // shards are then all taken one lease after they are found, not
        // one lease per shard a first campaign missed.
        // A record naming us that we do not hold is a previous
        // incarnation's (a crash and restart): followed until it runs out
        // and taken, whatever the share, or nobody would ever free it.
        let mine: BTreeSet<u32> = campaigning
            .iter()
            .copied()
            .filter(|j| self.locks[j].elector.state().leader.as_deref() == Some(identity.as_str()))
            .collect();
        let orphaned: BTreeSet<u32> = campaigning
            .iter()
            .copied()
            .filter(|j| {
                let leader = self.locks[j].elector.state().leader;
                leader.is_some_and(|l| l != identity && !live_ids.contains(l.as_str()))
            })
            .collect();
        let plain: BTreeSet<u32> = campaigning
            .iter()
            .copied()
            .filter(|j| !mine.contains(j) && !orphaned.contains(j))
            .collect();
        let moves = plan::moves(&identity, &held, &plain, share);
        if !moves.release.is_empty() {
            info!(share, held = held.len(), release = ?moves.release, "above the share: handing shards back");
        }
        let orphan_room = if (held.len() as u32) < share {
            share as usize
        } else {
            0
        };
        let extra_orphans = plan::least_preferred(
            &identity,
            &orphaned,
            orphaned.len().saturating_sub(orphan_room),
        );
        for j in moves
            .release
            .into_iter()
            .chain(moves.abandon)
            .chain(extra_orphans)
        {
            self.leave(j);
        }
        let orphans_wanted = orphan_room.saturating_sub(orphaned.len());
        if moves.wanted > 0 || orphans_wanted > 0 {
            self.campaign(moves.wanted as usize, orphans_wanted, &live_ids)
                .await?;
        }
        self.reclaim().await
    }

    /// Reads the shards once after start, a round's worth of probes at a
    /// time, for records naming us that a previous incarnation left, and
    /// the shards we handed back once their elections ended, for a release
    /// that did not land; follows each record still naming us until it can
    /// be taken (then the share decides).
    async fn reclaim(&mut self) -> Result<(), ElectionError> {
        let count = self.shards.inner.config.count;
        let identity = self.shards.inner.config.identity.clone();
        // Handed back, but perhaps not released.
        let done: Vec<u32> = self
            .recheck
            .iter()
            .copied()
            .filter(|j| !self.locks.contains_key(j) && !self.leaving.contains_key(j))
            .collect();
        for j in done {
            match self.stores[j as usize].get().await {
                Ok(Some(v)) if v.record.holder_identity == identity => {
                    self.recheck.remove(&j);
                    self.follow(j)?;
                }
                Ok(_) => {
                    self.recheck.remove(&j);
                }
                Err(e) if e.is_fatal() => return Err(ElectionError::Store(e)),
                Err(_) => {}
            }
        }
        let Some(from) = self.reclaim_from else {
            return Ok(());
        };
        let to = (from + PROBES_PER_ROUND as u32).min(count);
        for j in from..to {
            if !self.locks.contains_key(&j) && !self.leaving.contains_key(&j) {
                match self.stores[j as usize].get().await {
                    Ok(Some(v)) if v.record.holder_identity == identity => self.follow(j)?,
                    Ok(_) => {}
                    Err(e) if e.is_fatal() => return Err(ElectionError::Store(e)),
                    // Unreadable now: read again next round.
                    Err(_) => return Ok(()),
                }
            }
            self.reclaim_from = Some(j + 1);
        }
        if to == count {
            self.reclaim_from = None;
        }
        Ok(())
    }

    /// Holds a member slot: campaigns for the lowest free one, moves on
    /// when a live member holds the one we campaign for.
    async fn keep_a_member_slot(
        &mut self,
        now: Instant,
        member: bool,
    ) -> Result<(), ElectionError> {
        if member {
            return Ok(());
        }
        let identity = self.shards.inner.config.identity.clone();
        if let Some((slot, lock)) = &self.member {
            let taken = self.roster.holder(*slot).is_some_and(|h| h != identity)
                && self.roster.live(now, None).iter().any(|m| m.slot == *slot);
            if !taken && !lock.task.is_finished() {
                return Ok(());
            }
            let (slot, lock) = self.member.take().expect("checked");
            debug!(slot, "member slot taken by another: trying another");
            let _ = lock.task.shutdown().await;
        }
        let Some(slot) = self.roster.free_slot(now, None) else {
            warn!("no free member slot: raise member_slots; owning no shard meanwhile");
            return Ok(());
        };
        let elector = self.elector(self.members[slot as usize].clone(), u64::from(slot))?;
        let task = elector.spawn(|leadership: Leadership| async move {
            leadership.cancelled().await;
        });
        self.member = Some((slot, Lock { elector, task }));
        Ok(())
    }

    /// Hands shard `j` back: its work is told to stop, drained, and the
    /// lock released, on a task of its own.
    fn leave(&mut self, j: u32) {
        if let Some(lock) = self.locks.remove(&j) {
            self.recheck.insert(j);
            let handle = tokio::spawn(async move {
                if let Err(e) = lock.task.shutdown().await {
                    warn!(shard = j, error = %ErrorChain(&e), "handing a shard back failed");
                }
            });
            self.leaving.insert(j, handle);
        }
    }

    /// Campaigns for up to `wanted` more free shards, and up to `orphans`
    /// shards whose holder is no longer a live member, in our order of
    /// preference.
    async fn campaign(
        &mut self,
        mut wanted: usize,
        mut orphans: usize,
        live: &BTreeSet<&str>,
    ) -> Result<(), ElectionError> {
        let inner = self.shards.inner.clone();
        let cfg = &inner.config;
        let count = self.preference.len();
        let mut left = count.min(PROBES_PER_ROUND.max(count / 4));
        while left > 0 && (wanted > 0 || orphans > 0) {
            // The next batch in our order of preference, read at once.
            let mut batch = Vec::with_capacity(PROBE_BATCH);
            while left > 0 && batch.len() < PROBE_BATCH {
                left -= 1;
                let j = self.preference[self.cursor % count];
                self.cursor = (self.cursor + 1) % count;
                if !self.locks.contains_key(&j) && !self.leaving.contains_key(&j) {
                    batch.push(j);
                }
            }
            let reads = batch.iter().map(|&j| self.stores[j as usize].get());
            let records = futures::future::join_all(reads).await;
            for (j, read) in batch.into_iter().zip(records) {
                let budget = match read {
                    Ok(None) => &mut wanted,
                    Ok(Some(v)) => match v.record.known_holder() {
                        None if v.record.is_free() => &mut wanted,
                        None => continue,
                        Some(h) if h == cfg.identity => {
                            self.follow(j)?;
                            continue;
                        }
                        Some(h) if !live.contains(h) => &mut orphans,
                        Some(_) => continue,
                    },
                    Err(e) if e.is_fatal() => return Err(ElectionError::Store(e)),
                    Err(_) => continue,
                };
                if *budget == 0 {
                    continue;
                }
                *budget -= 1;
                self.follow(j)?;
            }
        }
        Ok(())
    }

    /// Starts the election of shard `j`: it campaigns, and once it wins,
    /// runs the work for the term.
    fn follow(&mut self, j: u32) -> Result<(), ElectionError> {
        let inner = self.shards.inner.clone();
        let cfg = &inner.config;
        let n = u64::from(cfg.member_slots) + u64::from(j);
        let elector = self.elector(self.stores[j as usize].clone(), n)?;
        let (work, owned, count) = (self.work.clone(), self.shards.inner.clone(), cfg.count);
        let stop = CancellationToken::new();
        let hand_back = stop.clone();
        let task = elector.spawn_with(stop, move |leadership: Leadership| {
            let (work, owned, hand_back) = (work.clone(), owned.clone(), hand_back.clone());
            async move {
                let shard = Shard {
                    index: j,
                    count,
                    leadership: leadership.clone(),
                };
                owned.owned.send_modify(|s| {
                    s.insert(j);
                });
                // Its own task, so a panic stays in it; aborted with
                // the term if the election is (a dropped `run`).
                let mut job = AbortOnDrop(tokio::spawn(work(shard)));
                tokio::select! {
                    _ = leadership.cancelled() => {
                        owned.owned.send_modify(|s| { s.remove(&j); });
                        if planted::is(Bug::ShardReleaseBeforeDrain) {
                            // The work goes on draining, detached.
                            std::mem::forget(job);
                            return;
                        }
                        let _ = (&mut job.0).await;
                    }
                    _ = &mut job.0 => {
                        // The work ended by itself: the shard is handed
                        // back (released), to be campaigned for again.
                        owned.owned.send_modify(|s| { s.remove(&j); });
                        hand_back.cancel();
                    }
                }
            }
        });
        debug!(shard = j, "campaigning");
        self.locks.insert(j, Lock { elector, task });
        Ok(())
    }

    /// Stops every shard (drained, released), then leaves the member slot.
    async fn close(mut self) {
        let locks = std::mem::take(&mut self.locks);
        let stops = locks.into_values().map(|l| l.task.shutdown());
        for result in futures::future::join_all(stops).await {
            if let Err(e) = result {
                warn!(error = %ErrorChain(&e), "releasing a shard failed");
            }
        }
        for (_, handle) in std::mem::take(&mut self.leaving) {
            let _ = handle.await;
        }
        if let Some((_, lock)) = self.member.take() {
            let _ = lock.task.shutdown().await;
        }
    }
}

impl Drop for Round {
    fn drop(&mut self) {
        for lock in self.locks.values() {
            lock.task.abort();
        }
        for handle in self.leaving.values() {
            handle.abort();
        }
        if let Some((_, lock)) = &self.member {
            lock.task.abort();
        }
    }
}
