//! The compare-and-swap on one namespaced object, shared by the Lease and
//! the ConfigMap lock: `resourceVersion` is the version, an update is a
//! replace (PUT) that carries it, and HTTP 409 is a conflict.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;
use kube::api::{Api, PostParams};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tenure_core::{LeaderEvent, LeaderRecord, StoreError, Version, Versioned};

use crate::builder::Parts;
use crate::coordination::Candidate;
use crate::error::map_error;
use crate::events::Events;
use crate::wire;

/// How one kind of object holds the record.
pub(crate) trait Codec:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Debug
    + DeserializeOwned
    + Serialize
    + Send
    + Sync
    + 'static
{
    /// The kind, for messages.
    const KIND: &'static str;
    /// The plural resource name, for `describe`.
    const RESOURCE: &'static str;

    /// The record this object holds.
    fn to_record(&self) -> Result<LeaderRecord, StoreError>;

    /// A new object holding `record`, with `metadata` (name, namespace,
    /// owner references) as given.
    fn new_object(metadata: ObjectMeta, record: &LeaderRecord) -> Result<Self, StoreError>;

    /// `self` holding `record` instead, everything else kept.
    fn with_record(self, record: &LeaderRecord) -> Result<Self, StoreError>;
}

impl Codec for Lease {
    const KIND: &'static str = "Lease";
    const RESOURCE: &'static str = "leases";

    fn to_record(&self) -> Result<LeaderRecord, StoreError> {
        wire::lease_to_record(self.spec.as_ref(), self.metadata.annotations.as_ref())
    }

    fn new_object(mut metadata: ObjectMeta, record: &LeaderRecord) -> Result<Self, StoreError> {
        let mut annotations = BTreeMap::new();
        wire::set_lease_annotations(&mut annotations, record);
        metadata.annotations = Some(annotations).filter(|a| !a.is_empty());
        Ok(Lease {
            metadata,
            spec: Some(wire::record_to_lease_spec(record, None)),
        })
    }

    fn with_record(mut self, record: &LeaderRecord) -> Result<Self, StoreError> {
        self.spec = Some(wire::record_to_lease_spec(record, self.spec.as_ref()));
        let mut annotations = self.metadata.annotations.take().unwrap_or_default();
        wire::set_lease_annotations(&mut annotations, record);
        self.metadata.annotations = Some(annotations).filter(|a| !a.is_empty());
        Ok(self)
    }
}

impl Codec for ConfigMap {
    const KIND: &'static str = "ConfigMap";
    const RESOURCE: &'static str = "configmaps";

    fn to_record(&self) -> Result<LeaderRecord, StoreError> {
        // As client-go: a ConfigMap without the annotation holds a free record.
        match self
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(wire::LEADER_ANNOTATION))
        {
            Some(raw) => wire::annotation_to_record(raw),
            None => Ok({
                let mut r = LeaderRecord::default();
                r.lease_duration = Duration::ZERO;
                r
            }),
        }
    }

    fn new_object(mut metadata: ObjectMeta, record: &LeaderRecord) -> Result<Self, StoreError> {
        metadata.annotations = Some(BTreeMap::from([(
            wire::LEADER_ANNOTATION.to_owned(),
            wire::record_to_annotation(record),
        )]));
        Ok(ConfigMap {
            metadata,
            ..ConfigMap::default()
        })
    }

    fn with_record(mut self, record: &LeaderRecord) -> Result<Self, StoreError> {
        self.metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(
                wire::LEADER_ANNOTATION.to_owned(),
                wire::record_to_annotation(record),
            );
        Ok(self)
    }
}

/// One lock object: its API, its name and the last object seen (so that an
/// update at the version we last saw needs no read first).
pub(crate) struct ObjectLock<K: Codec> {
    pub(crate) api: Api<K>,
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) timeout: Duration,
    owners: Vec<OwnerReference>,
    /// The last object read, written or seen on the watch: an update
    /// builds on it when it is at the expected version, without a read.
    last_seen: Arc<Mutex<Option<K>>>,
    /// The namespace's shared watch, when the lock was built with one.
    pub(crate) hub: Option<std::sync::Arc<crate::shared_watch::Hub<K>>>,
    /// The shared watch's cap on requests in flight.
    slots: Option<std::sync::Arc<tokio::sync::Semaphore>>,
    /// Records Events on the object, when asked to.
    pub(crate) events: Option<Events>,
    /// Labels of an object the lock creates.
    labels: BTreeMap<String, String>,
    /// The coordinated election's candidate, when asked for: the lock then
    /// never creates its object (the election controller does).
    candidate: Option<Candidate>,
}

impl<K: Codec> ObjectLock<K> {
    pub(crate) fn new(parts: Parts) -> Self {
        let Parts {
            client,
            namespace,
            name,
            timeout,
            owners,
            shared_watch,
            events,
            labels,
            coordination,
        } = parts;
        let candidate =
            coordination.map(|c| Candidate::new(client.clone(), &namespace, &name, c, timeout));
        let events = events.map(|r| Events::new(client.clone(), &namespace, r, timeout));
        let api = Api::namespaced(client, &namespace);
        let hub = shared_watch
            .as_ref()
            .map(|s| s.hub::<K>(&api, &namespace, timeout));
        let slots = shared_watch.as_ref().map(|s| s.request_slots());
        ObjectLock {
            api,
            namespace,
            name,
            timeout,
            owners,
            last_seen: Arc::new(Mutex::new(None)),
            hub,
            slots,
            events,
            labels,
            candidate,
        }
    }

    /// Records an Event on the object (client-go's `RecordEvent`), if asked
    /// to; returns at once.
    pub(crate) fn record_event(&self, identity: &str, event: LeaderEvent) {
        if let (Some(candidate), LeaderEvent::Campaigning) = (&self.candidate, event) {
            candidate.start(identity);
        }
        let Some(events) = &self.events else { return };
        events.record(self.subject(), identity, event);
    }

    /// The object as an Event's subject: its uid and version as last seen.
    fn subject(&self) -> ObjectReference {
        let last = self.last_seen.lock().unwrap_or_else(|e| e.into_inner());
        let meta = last.as_ref().map(|o| o.meta());
        ObjectReference {
            api_version: Some(K::api_version(&()).into_owned()),
            kind: Some(K::kind(&()).into_owned()),
            namespace: Some(self.namespace.clone()),
            name: Some(self.name.clone()),
            uid: meta.and_then(|m| m.uid.clone()),
            resource_version: meta.and_then(|m| m.resource_version.clone()),
            ..ObjectReference::default()
        }
    }

    pub(crate) fn describe(&self) -> String {
        format!("k8s://{}/{}/{}", self.namespace, K::RESOURCE, self.name)
    }

    fn remember(&self, object: Option<K>) {
        *self.last_seen.lock().unwrap_or_else(|e| e.into_inner()) = object;
    }

    /// Keeps each object a watch delivers as the last seen: a swap on the
    /// version the watch just showed (a released lock) then needs no read
    /// first. `resourceVersion`s are opaque, so a late event is not told
    /// from a new one: it replaces what was kept, and costs at most a read
    /// before the next update.
    pub(crate) fn remember_seen(&self) -> impl Fn(K) + Send + Sync + 'static {
        let last_seen = self.last_seen.clone();
        move |object| *last_seen.lock().unwrap_or_else(|e| e.into_inner()) = Some(object)
    }

    /// The remembered object, if it is at `version`.
    fn remembered_at(&self, version: &Version) -> Option<K> {
        let last = self.last_seen.lock().unwrap_or_else(|e| e.into_inner());
        last.as_ref()
            .filter(|o| o.meta().resource_version.as_deref() == Some(version.as_str()))
            .cloned()
    }

    pub(crate) fn versioned(object: &K) -> Result<Versioned, StoreError> {
        let record = object.to_record()?;
        let version = object
            .meta()
            .resource_version
            .clone()
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                StoreError::other(format!(
                    "the API server sent a {} without a resourceVersion",
                    K::KIND
                ))
            })?;
        Ok(Versioned {
            record,
            version: Version::new(version),
        })
    }

    async fn request<T>(
        &self,
        what: &str,
        request: impl std::future::Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, StoreError> {
        let what = format!("{what} {}", self.describe());
        let request = async {
            // Waiting for a slot counts against the request's timeout.
            let _slot = self.slot().await;
            request.await.map_err(|e| map_error(e, K::KIND, &self.name))
        };
        tenure_core::backend::within(self.timeout, what, request).await
    }

    /// A slot for one request, when the lock's requests are capped.
    pub(crate) async fn slot(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        match &self.slots {
            // Never closed.
            Some(slots) => slots.acquire().await.ok(),
            None => None,
        }
    }

    /// The object, or `None` when there is none.
    pub(crate) async fn get_object(&self) -> Result<Option<K>, StoreError> {
        self.request("get", self.api.get_opt(&self.name)).await
    }

    pub(crate) async fn get(&self) -> Result<Option<Versioned>, StoreError> {
        let object = self.get_object().await?;
        let current = object.as_ref().map(Self::versioned).transpose();
        self.remember(if current.is_ok() { object } else { None });
        current
    }

    /// After a 409: the conflict with the current record, or `Corrupt` when
    /// what is stored now is not a record.
    async fn conflict(&self) -> StoreError {
        crate::error::conflict_after(self.get().await)
    }

    pub(crate) async fn create(&self, record: &LeaderRecord) -> Result<Version, StoreError> {
        if self.candidate.is_some() {
            // Coordinated election: the controller creates the Lease and
            // names its holder. Lose the race, as to a faster candidate.
            tracing::debug!(lock = %self.describe(), "coordinated: the election controller creates the Lease");
            return Err(StoreError::conflict());
        }
        let metadata = ObjectMeta {
            name: Some(self.name.clone()),
            namespace: Some(self.namespace.clone()),
            owner_references: Some(self.owners.clone()).filter(|o| !o.is_empty()),
            labels: Some(self.labels.clone()).filter(|l| !l.is_empty()),
            ..ObjectMeta::default()
        };
        let object = K::new_object(metadata, record)?;
        match self
            .request("create", self.api.create(&PostParams::default(), &object))
            .await
        {
            Ok(created) => self.accept(created),
            Err(StoreError::Conflict { .. }) => Err(self.conflict().await),
            Err(e) => Err(e),
        }
    }

    pub(crate) async fn update(
        &self,
        record: &LeaderRecord,
        expected: &Version,
    ) -> Result<Version, StoreError> {
        let base = match self.remembered_at(expected) {
            Some(object) => object,
            None => {
                // Not the object we saw last: read it, and never build on
                // (or overwrite) what is not a record.
                let Some(object) = self.get_object().await? else {
                    return Err(StoreError::conflict());
                };
                let current = Self::versioned(&object)?;
                if &current.version != expected {
                    self.remember(Some(object));
                    return Err(StoreError::Conflict {
                        current: Some(Box::new(current)),
                    });
                }
                object
            }
        };
        let mut object = base.with_record(record)?;
        object.meta_mut().resource_version = Some(expected.as_str().to_owned());
        match self
            .request(
                "update",
                self.api
                    .replace(&self.name, &PostParams::default(), &object),
            )
            .await
        {
            Ok(updated) => self.accept(updated),
            Err(StoreError::Conflict { .. }) => Err(self.conflict().await),
            Err(StoreError::NotFound) => {
                self.remember(None);
                Err(StoreError::conflict())
            }
            Err(e) => Err(e),
        }
    }

    /// Remembers an object the server returned for our write.
    fn accept(&self, object: K) -> Result<Version, StoreError> {
        let version = Self::versioned(&object)?.version;
        self.remember(Some(object));
        Ok(version)
    }
}
