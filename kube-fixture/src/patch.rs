//! `PATCH`: JSON merge patch, strategic merge patch (for Leases and
//! ConfigMaps the same as a merge patch: neither has a list with a merge
//! key) and server-side apply, with field managers and apply conflicts.
//!
//! Field ownership is tracked per leaf field (objects are walked, lists are
//! atomic), as the real server does for these kinds, but kept beside the
//! object rather than in `metadata.managedFields`, which no client of ours
//! reads:
//! - an update (`PUT`, merge or strategic patch) makes its manager the only
//!   owner of each field it changes;
//! - an apply makes its manager an owner of each field it names. A field
//!   another manager owns, with a different value, is a 409 `Conflict`
//!   unless `force=true`, which takes it over. Fields the manager applied
//!   before and leaves out now are removed, unless someone else owns them.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use hyper::Response;
use serde_json::{Map, Value, json};

use super::objects::{
    check_type_and_namespace, keep_server_fields, metadata_mut, name_mismatch, now_rfc3339,
};
use super::*;

/// Who owns each leaf field of one object: path → managers.
pub(super) type Owners = BTreeMap<String, BTreeSet<String>>;

/// How a `PATCH` body is to be applied, from its content type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum PatchType {
    Merge,
    Strategic,
    Apply,
}

impl PatchType {
    pub(super) fn from_content_type(content_type: &str) -> Option<PatchType> {
        match content_type.split(';').next().unwrap_or_default().trim() {
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/strategic-merge-patch+json" => Some(PatchType::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => {
                Some(PatchType::Apply)
            }
            _ => None,
        }
    }
}

/// The manager of a write: `fieldManager`, else the user agent's product.
pub(super) fn manager(query: &HashMap<String, String>, user_agent: Option<&str>) -> String {
    query
        .get("fieldManager")
        .filter(|m| !m.is_empty())
        .cloned()
        .or_else(|| {
            user_agent
                .and_then(|ua| ua.split('/').next())
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

/// RFC 7386: objects merge key by key, `null` removes, anything else replaces.
pub(super) fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let target = target.as_object_mut().expect("made an object above");
    for (key, value) in patch {
        if value.is_null() {
            target.remove(key);
        } else {
            merge(target.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

/// Fields the server owns or that name the object: never managed.
fn unmanaged(path: &str) -> bool {
    matches!(
        path,
        ".apiVersion"
            | ".kind"
            | ".metadata.name"
            | ".metadata.namespace"
            | ".metadata.resourceVersion"
            | ".metadata.uid"
            | ".metadata.creationTimestamp"
            | ".metadata.managedFields"
    )
}

/// Every leaf of `value` as `(path, value)`; lists are leaves.
pub(super) fn leaves(value: &Value) -> BTreeMap<String, Value> {
    fn walk(prefix: &str, value: &Value, out: &mut BTreeMap<String, Value>) {
        match value {
            Value::Object(map) if !map.is_empty() || prefix.is_empty() => {
                for (k, v) in map {
                    walk(&format!("{prefix}.{k}"), v, out);
                }
            }
            _ if unmanaged(prefix) => {}
            _ => {
                out.insert(prefix.to_owned(), value.clone());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk("", value, &mut out);
    out
}

/// After an update by `manager` from `before` to `after`: it alone owns
/// what it changed; fields that are gone have no owner.
pub(super) fn record_update(
    owners: &mut Owners,
    before: Option<&Value>,
    after: &Value,
    manager: &str,
) {
    let old = before.map(leaves).unwrap_or_default();
    let new = leaves(after);
    owners.retain(|path, _| new.contains_key(path));
    for (path, value) in &new {
        if old.get(path) != Some(value) {
            owners.insert(path.clone(), BTreeSet::from([manager.to_owned()]));
        }
    }
}

/// Removes `path` (a dotted leaf path) from `object`, and parents it leaves empty.
fn remove_path(object: &mut Value, path: &str) {
    fn go(value: &mut Value, parts: &[&str]) {
        let Some(map) = value.as_object_mut() else {
            return;
        };
        match parts {
            [] => {}
            [last] => {
                map.remove(*last);
            }
            [first, rest @ ..] => {
                if let Some(child) = map.get_mut(*first) {
                    go(child, rest);
                    if child.as_object().is_some_and(Map::is_empty) {
                        map.remove(*first);
                    }
                }
            }
        }
    }
    let parts: Vec<&str> = path.trim_start_matches('.').split('.').collect();
    go(object, &parts);
}

/// Server-side apply of `applied` by `manager` onto `stored` (`None`: the
/// object is created). The new object, or the conflicting fields.
pub(super) fn apply(
    stored: Option<&Value>,
    owners: &mut Owners,
    applied: &Value,
    manager: &str,
    force: bool,
) -> Result<Value, Vec<(String, String)>> {
    let current = stored.map(leaves).unwrap_or_default();
    let wanted = leaves(applied);
    let mut conflicts = Vec::new();
    for (path, value) in &wanted {
        let Some(managers) = owners.get(path) else {
            continue;
        };
        if current.get(path) == Some(value) {
            continue;
        }
        for other in managers.iter().filter(|m| *m != manager) {
            conflicts.push((other.clone(), path.clone()));
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflicts);
    }
    let mut object = stored.cloned().unwrap_or_else(|| json!({}));
    // What this manager applied before and leaves out now: given up, and
    // removed when no one else owns it.
    let given_up: Vec<String> = owners
        .iter()
        .filter(|(path, m)| m.contains(manager) && !wanted.contains_key(*path))
        .map(|(path, _)| path.clone())
        .collect();
    for path in given_up {
        let managers = owners.get_mut(&path).expect("listed above");
        managers.remove(manager);
        if managers.is_empty() {
            owners.remove(&path);
            remove_path(&mut object, &path);
        }
    }
    for (path, value) in &wanted {
        let managers = owners.entry(path.clone()).or_default();
        if current.get(path) != Some(value) {
            // A changed value (forced, or unowned): this manager alone.
            managers.clear();
        }
        managers.insert(manager.to_owned());
    }
    let mut overlay = applied.clone();
    strip_nulls(&mut overlay);
    merge(&mut object, &overlay);
    Ok(object)
}

fn strip_nulls(value: &mut Value) {
    if let Value::Object(map) = value {
        map.retain(|_, v| !v.is_null());
        map.values_mut().for_each(strip_nulls);
    }
}

/// A `PATCH` of the object `target` names.
pub(super) fn patch(
    state: &State,
    target: &Target,
    kind_of_patch: PatchType,
    body: Map<String, Value>,
    manager: &str,
    force: bool,
) -> Response<Body> {
    let kind = target.kind;
    let name = target.name.clone().unwrap_or_default();
    let mut body = body;
    if kind_of_patch == PatchType::Apply {
        // An apply names the whole intent: type and name must be given.
        if let Err(r) = check_type_and_namespace(target, &mut body) {
            return r;
        }
        // A body without a name is the URL's object (as the real server
        // takes it); a different name is refused.
        let body_name = str_of(&body, "name");
        if !body_name.is_empty() && body_name != name {
            return name_mismatch(&body_name, &name);
        }
    }
    let precondition = body
        .get("metadata")
        .and_then(|m| m.get("resourceVersion"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let patch = Value::Object(body);

    let mut store = state.store();
    let key = (kind, target.namespace.clone(), name.clone());
    let stored = store.objects.get(&key).cloned();
    if stored.is_none() && kind_of_patch != PatchType::Apply {
        return not_found(kind, &name);
    }
    if let Some(stored) = &stored {
        let stored_rv = stored["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default();
        if !precondition.is_empty() && precondition != stored_rv {
            return conflict(kind, &name);
        }
    } else if !precondition.is_empty() {
        return not_found(kind, &name);
    }
    let mut owners = store.owners.get(&key).cloned().unwrap_or_default();
    let mut object = match kind_of_patch {
        PatchType::Apply => match apply(stored.as_ref(), &mut owners, &patch, manager, force) {
            Ok(object) => object,
            Err(conflicts) => return apply_conflict(kind, &name, &conflicts),
        },
        PatchType::Merge | PatchType::Strategic => {
            let mut object = stored.clone().expect("checked above");
            merge(&mut object, &patch);
            record_update(&mut owners, stored.as_ref(), &object, manager);
            object
        }
    };
    // The server owns these; a patch cannot move the object either.
    let Some(map) = object.as_object_mut() else {
        return status(
            400,
            "BadRequest",
            "the patch replaced the object".into(),
            None,
        );
    };
    map.insert("kind".into(), json!(kind.kind()));
    map.insert("apiVersion".into(), json!(kind.api_version()));
    let metadata = metadata_mut(map);
    metadata.insert("name".into(), json!(name));
    metadata.insert("namespace".into(), json!(target.namespace));
    keep_server_fields(metadata, stored.as_ref());
    if stored.as_ref() == Some(&object) {
        store.owners.insert(key, owners);
        return json_response(200, &object);
    }
    store.resource_version += 1;
    let rv = store.resource_version;
    let created = stored.is_none();
    if created {
        store.next_uid += 1;
        let uid = format!("00000000-0000-4000-8000-{:012x}", store.next_uid);
        object["metadata"]["uid"] = json!(uid);
        object["metadata"]["creationTimestamp"] = json!(now_rfc3339());
    }
    object["metadata"]["resourceVersion"] = json!(rv.to_string());
    store.objects.insert(key.clone(), object.clone());
    store.owners.insert(key, owners);
    state.publish(
        &mut store,
        Event {
            kind,
            namespace: target.namespace.clone(),
            name,
            resource_version: rv,
            kind_of_change: if created { "ADDED" } else { "MODIFIED" },
            object: object.clone(),
        },
    );
    json_response(if created { 201 } else { 200 }, &object)
}

fn str_of(body: &Map<String, Value>, field: &str) -> String {
    body.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

pub(super) fn conflict(kind: Kind, name: &str) -> Response<Body> {
    status(
        409,
        "Conflict",
        format!(
            "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; \
             please apply your changes to the latest version and try again",
            kind.qualified_resource()
        ),
        Some(details(kind, name)),
    )
}

fn apply_conflict(kind: Kind, name: &str, conflicts: &[(String, String)]) -> Response<Body> {
    let list: Vec<String> = conflicts
        .iter()
        .map(|(manager, path)| format!("conflict with \"{manager}\": {path}"))
        .collect();
    let mut details = details(kind, name);
    details["causes"] = json!(
        conflicts
            .iter()
            .map(|(manager, path)| json!({
                "reason": "FieldManagerConflict",
                "message": format!("conflict with \"{manager}\""),
                "field": path,
            }))
            .collect::<Vec<_>>()
    );
    status(
        409,
        "Conflict",
        format!(
            "Apply failed with {} conflict{}: {}",
            conflicts.len(),
            if conflicts.len() == 1 { "" } else { "s" },
            list.join("; ")
        ),
        Some(details),
    )
}
