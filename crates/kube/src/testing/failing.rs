//! Injecting the API server's errors into a client.

use serde_json::json;

/// `client` with every request for which `hit(method, path)` holds answered by the API
/// server's error `code` instead: a `Status` body with the reason that code carries
/// (403 Forbidden, 404 NotFound, 409 Conflict, 429 TooManyRequests, otherwise InternalError)
/// and `retryAfterSeconds: 7`. kube-fake-client cannot produce 403 or 429 by itself, so they
/// are injected at the HTTP layer. `namespace` is the client's default namespace.
pub fn failing(
    client: kube::Client,
    namespace: &str,
    code: u16,
    hit: impl Fn(&http::Method, &str) -> bool + Clone + Send + Sync + 'static,
) -> kube::Client {
    let service = tower::service_fn(move |request: http::Request<kube::client::Body>| {
        let client = client.clone();
        let hit = hit.clone();
        async move {
            if !hit(request.method(), request.uri().path()) {
                return client.send(request).await;
            }
            let message = format!("injected {code} for {}", request.uri().path());
            status_response(code, &message)
        }
    });
    kube::Client::new(service, namespace)
}

/// The API server's answer `code` with a `Status` body carrying `message`, the reason that
/// code carries and `retryAfterSeconds: 7`.
pub(crate) fn status_response(
    code: u16,
    message: &str,
) -> Result<http::Response<kube::client::Body>, kube::Error> {
    let reason = match code {
        403 => "Forbidden",
        404 => "NotFound",
        409 => "Conflict",
        429 => "TooManyRequests",
        _ => "InternalError",
    };
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "status": "Failure",
        "message": message, "reason": reason, "code": code,
        "details": { "retryAfterSeconds": 7 },
    });
    json_response(code, &body)
}

/// An answer `code` with the JSON `body`.
pub(crate) fn json_response(
    code: u16,
    body: &serde_json::Value,
) -> Result<http::Response<kube::client::Body>, kube::Error> {
    let body = serde_json::to_vec(body).map_err(kube::Error::SerdeError)?;
    http::Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(kube::client::Body::from(body))
        .map_err(kube::Error::HttpError)
}
