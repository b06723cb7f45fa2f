//! A MultiLock's change stream: the ConfigMap's and the Lease's streams
//! merged into one event per change of the lock as a whole.
//!
//! - A record that both objects came to hold (every MultiLock write ends
//!   so) is a `Put` of it at the MultiLock version of those two writes,
//!   once, in the order written. Each object's recent records are kept to
//!   pair them: one stream may run ahead of the other (a watch replays what
//!   it missed all at once), and a `Put` is never built from a guess at
//!   the other object.
//! - Both objects deleted: `Deleted`.
//! - A change that leaves the two different: the other object's write
//!   may be in flight (a MultiLock writes the ConfigMap, then the Lease),
//!   so wait up to [`SETTLE`] for it; then `Resync`: read and see. A
//!   Lease-only or ConfigMap-only candidate's writes are reported so.
//! - Either stream's `Resync` is passed on at once.

use std::collections::VecDeque;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use tenure_core::{StoreError, Versioned, WatchEvent, WatchStream};
use tokio::time::Instant;

use super::merge::merge;
use crate::object::ObjectLock;
use crate::watch::{Seen, watch_listed};

/// How long the two objects may disagree before the stream says `Resync`:
/// a MultiLock's second write (the same wait as `get`'s).
const SETTLE: Duration = Duration::from_millis(super::SECOND_WRITE_MS);
/// How many unpaired records of one object are kept.
const RECENT: usize = 32;

/// What the stream knows of one object.
#[derive(Default)]
struct Object {
    /// Its records since the last one both objects held, oldest first;
    /// the last is its current one.
    recent: VecDeque<Versioned>,
    /// It was deleted (or listed as absent) and not written since.
    absent: bool,
}

impl Object {
    fn new(seen: Seen) -> Self {
        match seen {
            Seen::Absent => Object {
                recent: VecDeque::new(),
                absent: true,
            },
            Seen::Present(v) => Object {
                recent: VecDeque::from([v]),
                absent: false,
            },
            Seen::Unknown => Object::default(),
        }
    }

    fn push(&mut self, v: Versioned) {
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(v);
        self.absent = false;
    }
}

struct Merged {
    events: BoxStream<'static, (usize, WatchEvent)>,
    /// The ConfigMap (0) and the Lease (1).
    objects: [Object; 2],
    /// Since when the two have disagreed without an event said.
    unsettled: Option<Instant>,
}

impl Merged {
    /// The next event of the lock; `None` when both streams ended.
    async fn next(&mut self) -> Option<WatchEvent> {
        loop {
            let next = match self.unsettled {
                Some(since) => {
                    match tokio::time::timeout_at(since + SETTLE, self.events.next()).await {
                        Ok(next) => next,
                        Err(_) => {
                            self.unsettled = None;
                            return Some(WatchEvent::Resync);
                        }
                    }
                }
                None => self.events.next().await,
            };
            let (side, event) = next?;
            if let Some(event) = self.apply(side, event) {
                return Some(event);
            }
        }
    }

    /// Takes in one object's event; returns the lock's, if there is one yet.
    fn apply(&mut self, side: usize, event: WatchEvent) -> Option<WatchEvent> {
        let other = 1 - side;
        match event {
            WatchEvent::Deleted => {
                self.objects[side] = Object::new(Seen::Absent);
                if self.objects[other].absent {
                    self.unsettled = None;
                    return Some(WatchEvent::Deleted);
                }
                self.unsettled.get_or_insert_with(Instant::now);
                None
            }
            WatchEvent::Put(v) => {
                // The latest record of the other object equal to this one:
                // the pair of writes of one MultiLock write (or one of them
                // touched since by another tool).
                let paired = self.objects[other]
                    .recent
                    .iter()
                    .rposition(|o| o.record == v.record);
                let Some(i) = paired else {
                    self.objects[side].push(v);
                    self.unsettled.get_or_insert_with(Instant::now);
                    return None;
                };
                // What came before the pair on either side is history.
                let theirs = &mut self.objects[other].recent;
                theirs.drain(..i);
                let o = theirs[0].clone();
                let ours = &mut self.objects[side];
                ours.recent.clear();
                ours.push(v.clone());
                let settled = self.objects[other].recent.len() == 1;
                self.unsettled = if settled { None } else { Some(Instant::now()) };
                let (p, s) = if side == 0 { (v, o) } else { (o, v) };
                Some(match merge(Some(p), Some(s)) {
                    Ok(Some(lock)) => WatchEvent::Put(lock),
                    _ => WatchEvent::Resync,
                })
            }
            // Resync, or a kind this version does not know: start over.
            _ => {
                self.objects[side] = Object::default();
                self.unsettled = None;
                Some(WatchEvent::Resync)
            }
        }
    }
}

/// Watches both objects: lists each now (so errors surface here), then
/// streams the merged changes from there.
pub(super) async fn watch(
    primary: &ObjectLock<ConfigMap>,
    secondary: &ObjectLock<Lease>,
) -> Result<WatchStream, StoreError> {
    let ((p, p_events), (s, s_events)) =
        futures::try_join!(watch_listed(primary), watch_listed(secondary))?;
    let events = futures::stream::select(p_events.map(|e| (0, e)), s_events.map(|e| (1, e)));
    let merged = Merged {
        events: events.boxed(),
        objects: [Object::new(p), Object::new(s)],
        unsettled: None,
    };
    let stream = futures::stream::unfold(merged, |mut merged| async move {
        let event = merged.next().await?;
        Some((event, merged))
    });
    Ok(Box::pin(stream))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tenure_core::{LeaderRecord, Version};

    use super::*;

    fn at(holder: &str, version: &str) -> Versioned {
        Versioned {
            record: {
                let mut r = LeaderRecord::default();
                r.holder_identity = holder.into();
                r.lease_duration = Duration::from_secs(15);
                r
            },
            version: Version::new(version),
        }
    }

    fn merged(p: Seen, s: Seen) -> Merged {
        Merged {
            events: futures::stream::empty().boxed(),
            objects: [Object::new(p), Object::new(s)],
            unsettled: None,
        }
    }

    fn put(holder: &str, version: &str) -> Option<WatchEvent> {
        Some(WatchEvent::Put(at(holder, version)))
    }

    #[test]
    fn each_write_of_both_is_one_put_however_the_streams_interleave() {
        // In step, and one stream replaying ahead of the other.
        let mut m = merged(Seen::Absent, Seen::Absent);
        assert_eq!(m.apply(0, WatchEvent::Put(at("a", "1"))), None);
        assert_eq!(m.apply(1, WatchEvent::Put(at("a", "2"))), put("a", "1/2"));
        assert!(m.unsettled.is_none());
        for (holder, v) in [("b", "3"), ("c", "5"), ("d", "7")] {
            assert_eq!(m.apply(0, WatchEvent::Put(at(holder, v))), None);
        }
        assert_eq!(m.apply(1, WatchEvent::Put(at("b", "4"))), put("b", "3/4"));
        assert!(m.unsettled.is_some(), "c and d are not paired yet");
        assert_eq!(m.apply(1, WatchEvent::Put(at("c", "6"))), put("c", "5/6"));
        assert_eq!(m.apply(1, WatchEvent::Put(at("d", "8"))), put("d", "7/8"));
        assert!(m.unsettled.is_none());
        // The Lease's stream ahead this time.
        assert_eq!(m.apply(1, WatchEvent::Put(at("e", "10"))), None);
        assert_eq!(m.apply(0, WatchEvent::Put(at("e", "9"))), put("e", "9/10"));
    }

    #[test]
    fn a_write_to_one_object_is_no_put() {
        let mut m = merged(Seen::Present(at("a", "1")), Seen::Present(at("a", "2")));
        assert_eq!(m.apply(1, WatchEvent::Put(at("lease-only", "3"))), None);
        assert!(m.unsettled.is_some(), "a Resync follows unless they agree");
        assert_eq!(m.apply(1, WatchEvent::Put(at("lease-only", "4"))), None);
        // The ConfigMap alone, Lease absent (a ConfigMap-only fleet).
        let mut m = merged(Seen::Present(at("a", "1")), Seen::Absent);
        assert_eq!(m.apply(0, WatchEvent::Put(at("cm-only", "2"))), None);
        assert!(m.unsettled.is_some());
    }

    #[test]
    fn another_tools_write_keeps_the_record_at_a_new_version() {
        let mut m = merged(Seen::Present(at("a", "1")), Seen::Present(at("a", "2")));
        assert_eq!(m.apply(1, WatchEvent::Put(at("a", "3"))), put("a", "1/3"));
        assert!(m.unsettled.is_none());
    }

    #[test]
    fn deletes_and_resyncs() {
        let mut m = merged(Seen::Present(at("a", "1")), Seen::Present(at("a", "2")));
        assert_eq!(m.apply(1, WatchEvent::Deleted), None);
        assert_eq!(m.apply(0, WatchEvent::Deleted), Some(WatchEvent::Deleted));
        assert_eq!(m.apply(0, WatchEvent::Put(at("b", "3"))), None);
        assert_eq!(m.apply(1, WatchEvent::Resync), Some(WatchEvent::Resync));
        assert!(m.unsettled.is_none());
        assert_eq!(m.apply(1, WatchEvent::Put(at("b", "4"))), put("b", "3/4"));
    }
}
