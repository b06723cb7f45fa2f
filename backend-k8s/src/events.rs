//! Events on the lock object, as client-go's resource locks record them
//! (`RecordEvent`): `<identity> became leader` and `<identity> stopped
//! leading`, reason `LeaderElection`, type `Normal`, so `kubectl get events`
//! and the alerts written for client-go's electors see tenure's the same way.
//!
//! Never in the election's way: the engine hands each event over without
//! waiting, a task of its own creates it, at most [`MAX_IN_FLIGHT`] at once
//! (more are dropped and counted), each within the lock's request timeout,
//! and an API error (say, RBAC forbids Events) is logged and counted only.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::Client;
use kube::api::{Api, PostParams};
use tenure_core::{ErrorChain, LeaderEvent};
use tokio::sync::Semaphore;

use crate::error::map_error;

/// The most Events of one lock being created at once; more are dropped
/// (and counted), never queued without bound.
pub const MAX_IN_FLIGHT: usize = 4;

/// The reason of every Event, as client-go's.
pub const EVENT_REASON: &str = "LeaderElection";

/// Who reports the Events: the component (client-go's event source
/// component, say `my-controller`) and the instance (default: the
/// elector's identity, which is usually the pod name).
///
/// ```
/// use tenure_k8s::EventReporter;
///
/// let reporter = EventReporter::new("billing-cron").instance("billing-cron-7d9f-abcde");
/// ```
#[derive(Clone, Debug)]
pub struct EventReporter {
    component: String,
    instance: Option<String>,
}

impl EventReporter {
    /// Events reported by `component`.
    pub fn new(component: impl Into<String>) -> Self {
        EventReporter {
            component: component.into(),
            instance: None,
        }
    }

    /// The reporting instance (default: the elector's identity).
    pub fn instance(mut self, instance: impl Into<String>) -> Self {
        self.instance = Some(instance.into());
        self
    }
}

/// How a lock's Events fared so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventCounts {
    /// Created on the API server.
    pub recorded: u64,
    /// Refused or failed (logged at `warn`).
    pub failed: u64,
    /// Not sent: [`MAX_IN_FLIGHT`] were in flight, or no tokio runtime.
    pub dropped: u64,
}

#[derive(Default)]
struct Counters {
    recorded: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
}

/// A lock's Event recorder.
pub(crate) struct Events {
    api: Api<Event>,
    namespace: String,
    reporter: EventReporter,
    timeout: Duration,
    slots: Arc<Semaphore>,
    counters: Arc<Counters>,
}

impl Events {
    pub(crate) fn new(
        client: Client,
        namespace: &str,
        reporter: EventReporter,
        timeout: Duration,
    ) -> Self {
        Events {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
            reporter,
            timeout,
            slots: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            counters: Arc::default(),
        }
    }

    pub(crate) fn counts(&self) -> EventCounts {
        let c = &self.counters;
        EventCounts {
            recorded: c.recorded.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
        }
    }

    /// Creates the Event on `subject` in a task of its own; returns at once.
    /// Only the two moments client-go records make Events.
    pub(crate) fn record(&self, subject: ObjectReference, identity: &str, event: LeaderEvent) {
        if !matches!(
            event,
            LeaderEvent::BecameLeader | LeaderEvent::StoppedLeading
        ) {
            return;
        }
        let counters = self.counters.clone();
        let (Ok(permit), Ok(runtime)) = (
            self.slots.clone().try_acquire_owned(),
            tokio::runtime::Handle::try_current(),
        ) else {
            counters.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(lock = ?subject.name, identity, event = event.as_str(), "event dropped: too many in flight");
            return;
        };
        let object = self.event(subject, identity, event);
        let (api, timeout) = (self.api.clone(), self.timeout);
        runtime.spawn(async move {
            let _permit = permit;
            let name = object.involved_object.name.clone().unwrap_or_default();
            let create = async {
                api.create(&PostParams::default(), &object)
                    .await
                    .map_err(|e| map_error(e, "Event", &name))
            };
            match tenure_core::backend::within(timeout, "creating an Event", create).await {
                Ok(_) => {
                    counters.recorded.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    counters.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(lock = %name, error = %ErrorChain(&e), "could not record the leader election Event");
                }
            }
        });
    }

    /// The Event as client-go's legacy recorder writes it.
    fn event(&self, subject: ObjectReference, identity: &str, event: LeaderEvent) -> Event {
        let now = SystemTime::now();
        let nanos = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let time = Time(crate::wire::timestamp(now));
        let instance = self
            .reporter
            .instance
            .clone()
            .unwrap_or_else(|| identity.to_owned());
        let component = self.reporter.component.clone();
        Event {
            metadata: ObjectMeta {
                // client-go's name: the object's, then the time in hex nanoseconds.
                name: Some(format!(
                    "{}.{nanos:x}",
                    subject.name.as_deref().unwrap_or("lock")
                )),
                namespace: Some(self.namespace.clone()),
                ..ObjectMeta::default()
            },
            involved_object: subject,
            reason: Some(EVENT_REASON.to_owned()),
            message: Some(format!("{identity} {}", event.as_str())),
            type_: Some("Normal".to_owned()),
            source: Some(EventSource {
                component: Some(component.clone()),
                host: Some(instance.clone()),
            }),
            first_timestamp: Some(time.clone()),
            last_timestamp: Some(time),
            count: Some(1),
            reporting_component: Some(component),
            reporting_instance: Some(instance),
            ..Event::default()
        }
    }
}
