//! Servers the checks are tested against, started on 127.0.0.1 by the tests.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::http::StatusCode;
use axum::routing::{get, post};

use cutover_core::checklist::{Check, CheckContext, CheckResult};
use cutover_core::{Clock, TokioClock};

/// Serves `app` on a free loopback port.
pub async fn serve(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// Runs `check` with the current time.
pub async fn run(check: &impl Check) -> CheckResult {
    let mut ctx = CheckContext::default();
    ctx.now = TokioClock::new().now();
    check.run(&ctx).await
}

/// Serves TLS with `cert` (PEM chain) and `key` (PEM) on a free loopback port: each
/// connection does the handshake and is closed.
pub async fn serve_tls(cert_pem: &str, key_pem: &str) -> SocketAddr {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = acceptor.accept(stream).await;
            });
        }
    });
    addr
}

/// A service whose `GET /cache` answers 503 "cache cold" until `POST /warm`; `warm` says
/// whether it was warmed.
pub fn cache_app(warm: &Arc<AtomicBool>) -> axum::Router {
    let (w1, w2) = (Arc::clone(warm), Arc::clone(warm));
    axum::Router::new()
        .route(
            "/cache",
            get(move || {
                let ok = w1.load(Ordering::SeqCst);
                async move {
                    if ok {
                        (StatusCode::OK, "warm")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "cache cold")
                    }
                }
            }),
        )
        .route(
            "/warm",
            post(move || {
                w2.store(true, Ordering::SeqCst);
                async { "warmed" }
            }),
        )
}
