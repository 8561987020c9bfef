//! TLS verification against a real TLS server on 127.0.0.1 with a certificate made by the
//! `openssl` command for this test: refused by default, accepted once its CA is given with
//! `root_certificate_pem`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;

use bytes::Bytes;
use cutover_core::ErrorKind;
use cutover_prometheus::{PrometheusClient, QueryData};
use http_body_util::Full;
use hyper::Response;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};

/// A self-signed certificate for 127.0.0.1 and its key, as PEM.
fn certificate() -> (Vec<u8>, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("this test needs the `openssl` command");
    assert!(status.status.success(), "openssl: {status:?}");
    (std::fs::read(cert).unwrap(), std::fs::read(key).unwrap())
}

/// An HTTPS server answering every request with a one-series vector.
async fn tls_server(cert: &[u8], key: &[u8]) -> SocketAddr {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(key).unwrap();
    let config = ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let service = hyper::service::service_fn(|_req| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                        br#"{"status":"success","data":{"resultType":"scalar","result":[1,"5"]}}"#,
                    ))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn certificates_are_verified_unless_their_ca_is_given() {
    let (cert, key) = certificate();
    let addr = tls_server(&cert, &key).await;
    let url = format!("https://{addr}/");

    let err = PrometheusClient::builder(&url)
        .build()
        .unwrap()
        .query("up")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Permanent, "{}", err.chain());
    assert!(err.message().contains("TLS verification failed"), "{err}");

    let trusted = PrometheusClient::builder(&url)
        .root_certificate_pem(cert)
        .build()
        .unwrap();
    let data = trusted.query("up").await.unwrap();
    assert!(matches!(data, QueryData::Scalar(_, v) if (v - 5.0).abs() < f64::EPSILON));
}
