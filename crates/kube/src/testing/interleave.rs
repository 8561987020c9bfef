//! A concurrent writer, interleaved between a caller's read and its write.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http::{Method, Request};
use kube::client::Body;
use serde_json::Value;

/// The field manager of the concurrent edit.
pub const OTHER_WRITER: &str = "someone-else";

/// `client` with a concurrent writer: just before the first request for which
/// `hit(method, path)` holds, the JSON merge patch `edit` is sent to the same path as field
/// manager [`OTHER_WRITER`]. A caller that read the object and writes it back under the
/// `resourceVersion` it read then meets a real conflict, on kube-fake-client and on a real API
/// server alike. `namespace` is the client's default namespace.
pub fn edited_before(
    client: kube::Client,
    namespace: &str,
    hit: impl Fn(&Method, &str) -> bool + Clone + Send + Sync + 'static,
    edit: Value,
) -> kube::Client {
    let done = Arc::new(AtomicBool::new(false));
    let service = tower::service_fn(move |request: Request<Body>| {
        let client = client.clone();
        let first =
            hit(request.method(), request.uri().path()) && !done.swap(true, Ordering::SeqCst);
        let edit = edit.clone();
        async move {
            if first {
                let path = format!("{}?fieldManager={OTHER_WRITER}", request.uri().path());
                let body = serde_json::to_vec(&edit).map_err(kube::Error::SerdeError)?;
                let patch = Request::patch(path)
                    .header(http::header::CONTENT_TYPE, "application/merge-patch+json")
                    .body(body)
                    .map_err(kube::Error::HttpError)?;
                client.request::<Value>(patch).await?;
            }
            client.send(request).await
        }
    });
    kube::Client::new(service, namespace)
}
