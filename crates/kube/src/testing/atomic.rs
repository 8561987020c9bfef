//! A model of atomic fields in front of kube-fake-client.
//!
//! A real API server treats some maps and lists as one value (`x-kubernetes-map-type: atomic`,
//! `x-kubernetes-list-type: atomic`): a Service's `spec.selector` is the best-known one. Server-
//! side apply then has one owner for the whole value, and an apply replaces it whole.
//! kube-fake-client 0.3 tracks ownership key by key and merges applied maps into the stored
//! ones, so code that applies one key of an atomic map passes there and breaks on a real
//! server. [`atomic_fields`] puts the real behaviour in front of the fake.

use http::{Method, Request, Response};
use kube::client::Body;
use serde_json::{Map, Value, json};

use super::failing::{json_response, status_response};

/// A field a real API server treats as one value: the resource (plural, as in the request
/// path: `services`) and the field's JSON pointer (`/spec/selector`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AtomicField {
    resource: String,
    pointer: String,
}

impl AtomicField {
    /// The field at JSON pointer `pointer` (`/spec/selector`) of the resource `resource`
    /// (`services`).
    pub fn new(resource: &str, pointer: &str) -> Self {
        AtomicField {
            resource: resource.to_owned(),
            pointer: pointer.to_owned(),
        }
    }

    /// A Service's `spec.selector`, an atomic map.
    pub fn service_selector() -> Self {
        AtomicField::new("services", "/spec/selector")
    }

    /// Whether a request to `path` writes an object (not a subresource) of this resource.
    fn matches(&self, path: &str) -> bool {
        let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
        segments.len() >= 2 && segments[segments.len() - 2] == self.resource
    }

    /// The field's path in `managedFields` (`f:spec`, `f:selector`).
    fn managed_path(&self) -> Vec<String> {
        self.pointer
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| format!("f:{s}"))
            .collect()
    }

    /// `.spec.selector`, as the API server names a field in a conflict.
    fn dotted(&self) -> String {
        self.pointer.replace('/', ".")
    }
}

/// `client` (a kube-fake-client built with `with_return_managed_fields()`, so that ownership
/// can be read) with `fields` behaving as on a real API server:
///
/// - a server-side apply that sets an atomic field to a value other than its current one, while
///   another field manager owns any part of it, fails with the API server's 409 `Apply failed
///   with 1 conflict: conflict with "<manager>": .spec.selector` (unless forced);
/// - an apply that succeeds leaves the field exactly as applied: keys it left out are gone;
/// - any other patch that changes the field makes its field manager (`fieldManager`, or
///   `unknown`) the field's only owner, as an `Update`, as the API server does.
///
/// `namespace` is the client's default namespace.
pub fn atomic_fields(
    client: kube::Client,
    namespace: &str,
    fields: Vec<AtomicField>,
) -> kube::Client {
    let service = tower::service_fn(move |request: Request<Body>| {
        let client = client.clone();
        let field = (request.method() == Method::PATCH)
            .then(|| fields.iter().find(|f| f.matches(request.uri().path())))
            .flatten()
            .cloned();
        async move {
            match field {
                Some(field) => patch(&client, &field, request).await,
                None => client.send(request).await,
            }
        }
    });
    kube::Client::new(service, namespace)
}

/// A PATCH of an object with the atomic `field`.
async fn patch(
    client: &kube::Client,
    field: &AtomicField,
    request: Request<Body>,
) -> Result<Response<Body>, kube::Error> {
    let (parts, body) = request.into_parts();
    let bytes = body.collect_bytes().await?;
    let forward = |bytes: &[u8]| Request::from_parts(parts.clone(), Body::from(bytes.to_vec()));
    let wanted = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|patch| patch.pointer(&field.pointer).cloned());
    let path = parts.uri.path().to_owned();
    // A patch that does not touch the field, or of an object that does not exist yet, passes.
    let (Some(_), Ok(current)) = (&wanted, read(client, &path).await) else {
        return client.send(forward(&bytes)).await;
    };
    let query = parts.uri.query().unwrap_or_default();
    let manager = query_param(query, "fieldManager").unwrap_or_else(|| "unknown".to_owned());
    let is_apply = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("apply-patch"));
    let before = current.pointer(&field.pointer).cloned();

    if is_apply {
        let force = query_param(query, "force").as_deref() == Some("true");
        if before != wanted
            && !force
            && let Some(owner) = other_owner(&current, field, &manager)
        {
            let message = format!(
                "Apply failed with 1 conflict: conflict with \"{owner}\": {}",
                field.dotted()
            );
            return status_response(409, &message);
        }
    }
    let response = client.send(forward(&bytes)).await?;
    if !response.status().is_success() {
        return response_again(response).await;
    }
    let (head, body) = response.into_parts();
    let mut object: Value =
        serde_json::from_slice(&body.collect_bytes().await?).map_err(kube::Error::SerdeError)?;
    let mut ops = Vec::new();
    if is_apply {
        // The applied value replaces the field whole.
        if object.pointer(&field.pointer) != wanted.as_ref() {
            ops.push(json!({ "op": "replace", "path": field.pointer, "value": wanted }));
        }
    } else if object.pointer(&field.pointer) != before.as_ref() {
        take_ownership(&mut object, field, &manager);
        let managed = object["metadata"]["managedFields"].clone();
        ops.push(json!({ "op": "replace", "path": "/metadata/managedFields", "value": managed }));
    }
    if ops.is_empty() {
        return json_response(head.status.as_u16(), &object);
    }
    let fix = Request::patch(&path)
        .header(http::header::CONTENT_TYPE, "application/json-patch+json")
        .body(Body::from(
            serde_json::to_vec(&ops).map_err(kube::Error::SerdeError)?,
        ))
        .map_err(kube::Error::HttpError)?;
    client.send(fix).await
}

/// The object at `path`.
async fn read(client: &kube::Client, path: &str) -> Result<Value, kube::Error> {
    let request = Request::get(path)
        .body(Vec::new())
        .map_err(kube::Error::HttpError)?;
    client.request(request).await
}

/// An answer read to the end and rebuilt, so that it can be returned.
async fn response_again(response: Response<Body>) -> Result<Response<Body>, kube::Error> {
    let (head, body) = response.into_parts();
    let bytes = body.collect_bytes().await?;
    Ok(Response::from_parts(head, Body::from(bytes.to_vec())))
}

/// The value of `name` in a query string.
fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then(|| value.to_owned())
    })
}

/// The `managedFields` entries of `object` (main resource, not a subresource).
fn entries(object: &Value) -> impl Iterator<Item = &Map<String, Value>> {
    object["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
        .filter(|e| {
            e.get("subresource")
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty()
        })
}

/// A field manager other than `manager` that owns any part of `field`.
fn other_owner(object: &Value, field: &AtomicField, manager: &str) -> Option<String> {
    let path = field.managed_path();
    entries(object).find_map(|entry| {
        let name = entry.get("manager").and_then(Value::as_str).unwrap_or("");
        let mut fields = entry.get("fieldsV1")?;
        for step in &path {
            fields = fields.get(step)?;
        }
        (name != manager).then(|| name.to_owned())
    })
}

/// Makes `manager` the only owner of `field`, as an `Update`.
fn take_ownership(object: &mut Value, field: &AtomicField, manager: &str) {
    let path = field.managed_path();
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let api_version = object["apiVersion"].clone();
    let mut entries: Vec<Value> = object["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for entry in &mut entries {
        let mut fields = &mut entry["fieldsV1"];
        for step in parents {
            fields = &mut fields[step.as_str()];
        }
        if let Some(map) = fields.as_object_mut() {
            map.remove(last);
        }
    }
    let mut owned = json!({});
    let mut cursor = &mut owned;
    for step in parents {
        cursor = &mut cursor[step.as_str()];
    }
    cursor[last.as_str()] = json!({});
    entries.push(json!({
        "manager": manager, "operation": "Update", "apiVersion": api_version,
        "fieldsType": "FieldsV1", "fieldsV1": owned,
    }));
    object["metadata"]["managedFields"] = Value::Array(entries);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_owners() {
        let field = AtomicField::service_selector();
        assert!(field.matches("/api/v1/namespaces/prod/services/web"));
        assert!(!field.matches("/api/v1/namespaces/prod/services/web/status"));
        assert!(!field.matches("/api/v1/namespaces/prod/configmaps/web"));
        assert_eq!(field.managed_path(), ["f:spec", "f:selector"]);
        assert_eq!(field.dotted(), ".spec.selector");
        let mut object = json!({
            "apiVersion": "v1",
            "metadata": { "managedFields": [
                { "manager": "kubectl", "operation": "Apply",
                  "fieldsV1": { "f:spec": { "f:selector": { "f:app": {} }, "f:ports": {} } } },
            ] },
        });
        assert_eq!(
            other_owner(&object, &field, "cutover").as_deref(),
            Some("kubectl")
        );
        assert_eq!(other_owner(&object, &field, "kubectl"), None);
        take_ownership(&mut object, &field, "cutover");
        assert_eq!(
            other_owner(&object, &field, "kubectl").as_deref(),
            Some("cutover")
        );
        assert_eq!(other_owner(&object, &field, "cutover"), None);
        assert_eq!(
            object["metadata"]["managedFields"][0]["fieldsV1"],
            json!({ "f:spec": { "f:ports": {} } })
        );
        assert_eq!(
            query_param("fieldManager=cutover&force=true", "force").as_deref(),
            Some("true")
        );
    }
}
