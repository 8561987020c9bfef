//! The client against a real HTTP server on 127.0.0.1 that answers what each test scripts:
//! what is sent (form body, auth, custom headers) and how answers a real Prometheus rarely
//! gives on demand (429, 503 with `Retry-After`, 502, a stall) are classified.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cutover_core::{ErrorKind, MetricQuery, MetricSource, Samples};
use cutover_prometheus::{PrometheusClient, PrometheusSource, QueryData};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    headers: hyper::HeaderMap,
    body: String,
}

/// A canned answer: status, headers, body, and how long to stall before the headers.
#[derive(Clone)]
struct Answer {
    status: u16,
    headers: Vec<(&'static str, &'static str)>,
    body: String,
    stall: Duration,
}

fn answer(status: u16, body: &str) -> Answer {
    Answer {
        status,
        headers: vec![("content-type", "application/json")],
        body: body.to_owned(),
        stall: Duration::ZERO,
    }
}

const VECTOR_2: &str = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"2"]}]}}"#;

/// Serves `answers` in turn (the last one repeats) and records every request.
async fn server(answers: Vec<Answer>) -> (SocketAddr, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (log, answers) = (log.clone(), answers.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let (log, answers) = (log.clone(), answers.clone());
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map(http_body_util::Collected::to_bytes)
                            .unwrap_or_default();
                        let n = {
                            let mut log = log.lock().unwrap();
                            log.push(Seen {
                                path: parts.uri.path().to_owned(),
                                headers: parts.headers,
                                body: String::from_utf8_lossy(&body).into_owned(),
                            });
                            log.len() - 1
                        };
                        let a = answers[n.min(answers.len() - 1)].clone();
                        if !a.stall.is_zero() {
                            // The server being slow is what this answer simulates.
                            tokio::time::sleep(a.stall).await;
                        }
                        let mut resp = Response::builder().status(a.status);
                        for (k, v) in a.headers {
                            resp = resp.header(k, v);
                        }
                        Ok::<_, Infallible>(resp.body(Full::new(Bytes::from(a.body))).unwrap())
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, seen)
}

fn client(addr: SocketAddr) -> cutover_prometheus::PrometheusClientBuilder {
    PrometheusClient::builder(format!("http://{addr}/prom"))
}

#[tokio::test]
async fn sends_the_query_as_a_form_with_auth_and_custom_headers() {
    let (addr, seen) = server(vec![answer(200, VECTOR_2)]).await;
    let c = client(addr)
        .bearer_token("t0ken")
        .header("X-Scope-OrgID", "team-a")
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    let QueryData::Vector(v) = c.query("up{job=\"a b\"}").await.unwrap() else {
        panic!("vector")
    };
    assert!((v[0].value - 2.0).abs() < f64::EPSILON);
    let req = seen.lock().unwrap()[0].clone();
    assert_eq!(req.path, "/prom/api/v1/query");
    assert_eq!(req.headers["authorization"], "Bearer t0ken");
    assert_eq!(req.headers["x-scope-orgid"], "team-a");
    assert_eq!(
        req.headers["content-type"],
        "application/x-www-form-urlencoded"
    );
    assert_eq!(req.body, "query=up%7Bjob%3D%22a+b%22%7D&timeout=3s");
    assert!(!format!("{c:?}").contains("t0ken"));

    let basic = client(addr).basic_auth("alice", "pw").build().unwrap();
    basic.query("up").await.unwrap();
    let req = seen.lock().unwrap()[1].clone();
    // base64("alice:pw")
    assert_eq!(req.headers["authorization"], "Basic YWxpY2U6cHc=");
}

#[tokio::test]
async fn throttling_and_server_errors_are_classified() {
    let mut slow = answer(429, "slow down");
    slow.headers.push(("retry-after", "7"));
    let mut busy = answer(
        503,
        r#"{"status":"error","errorType":"unavailable","error":"draining"}"#,
    );
    busy.headers.push(("retry-after", "2"));
    let (addr, _) = server(vec![
        slow,
        busy,
        answer(503, "no retry-after"),
        answer(502, "<html>bad gateway</html>"),
        answer(401, "unauthorized"),
        answer(
            400,
            r#"{"status":"error","errorType":"bad_data","error":"1:1: parse error"}"#,
        ),
        answer(200, "<html>not prometheus</html>"),
    ])
    .await;
    let c = client(addr).build().unwrap();
    let expect = [
        (ErrorKind::Throttled, Some(7)),
        (ErrorKind::Throttled, Some(2)),
        (ErrorKind::Transient, None),
        (ErrorKind::Transient, None),
        (ErrorKind::Permanent, None),
        (ErrorKind::Permanent, None),
        (ErrorKind::Permanent, None),
    ];
    for (i, (kind, retry)) in expect.into_iter().enumerate() {
        let err = c.query("up").await.unwrap_err();
        assert_eq!(err.kind(), kind, "answer {i}: {err}");
        assert_eq!(
            err.retry_after(),
            retry.map(Duration::from_secs),
            "answer {i}"
        );
        assert!(err.message().contains(&format!("{addr}")), "{err}");
    }
}

#[tokio::test]
async fn a_stalled_server_is_a_transient_timeout() {
    let mut stall = answer(200, VECTOR_2);
    stall.stall = Duration::from_secs(5);
    let (addr, _) = server(vec![stall]).await;
    let c = client(addr)
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let err = c.query("up").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transient);
    assert!(err.message().contains("did not answer within"), "{err}");
}

#[tokio::test]
async fn a_refused_connection_is_transient() {
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let err = client(addr).build().unwrap().query("up").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transient, "{err}");
    assert!(err.message().contains("cannot connect"), "{err}");
}

#[tokio::test]
async fn tls_is_verified_so_https_to_a_plain_server_fails() {
    // Certificates are always verified; a server that does not speak TLS (or presents a
    // certificate we do not trust) is an error, never a silent plain-text fallback.
    let (addr, seen) = server(vec![answer(200, VECTOR_2)]).await;
    let c = PrometheusClient::builder(format!("https://{addr}/"))
        .build()
        .unwrap();
    assert!(c.query("up").await.is_err());
    assert!(
        seen.lock().unwrap().is_empty(),
        "no request reached the server"
    );
}

#[tokio::test]
async fn counts_come_from_two_queries() {
    let (addr, seen) = server(vec![answer(200, VECTOR_2), answer(200, VECTOR_2)]).await;
    let source = PrometheusSource::new("p", client(addr).build().unwrap());
    let q = MetricQuery::new(
        "errors",
        "local/error-rate",
        "v2".parse().unwrap(),
        Duration::from_mins(1),
    );
    assert_eq!(
        source.query(&q).await.unwrap(),
        Samples::Counts {
            events: 2,
            total: 2
        }
    );
    let bodies: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.body.clone())
        .collect();
    assert_eq!(bodies.len(), 2);
    assert!(
        bodies.iter().any(|b| b.contains("code_class%3D%225xx%22")),
        "{bodies:?}"
    );
}
