//! Each built-in check against the real thing it checks, started here on 127.0.0.1.

mod common;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use common::{run, serve, serve_tls};
use cutover_core::Timestamp;
use cutover_core::checklist::{Check, CheckContext, CheckStatus};
use cutover_preflight::{
    BusinessHoursCheck, DiskCheck, EnvCheck, FreezeCheck, HttpCheck, SIGNATURE_HEADER, TcpCheck,
    TlsCheck, WebhookCheck,
};

fn app(warm: &Arc<AtomicBool>) -> Router {
    common::cache_app(warm)
        .route("/ok", get(|| async { "all ok" }))
        .route(
            "/slow",
            get(|| async {
                // The server is slow on purpose; the check measures it.
                tokio::time::sleep(Duration::from_millis(300)).await;
                "late"
            }),
        )
}

#[tokio::test]
async fn http_smoke_checks_status_body_and_latency_and_hides_tokens() {
    let addr = serve(app(&Arc::default())).await;
    let base = format!("http://127.0.0.1:{}", addr.port());

    let r = run(&HttpCheck::new(format!("{base}/ok?token=hunter2")).body_contains("ok")).await;
    assert_eq!(r.status, CheckStatus::Pass, "{r:?}");
    assert_eq!(r.evidence["status"], 200);
    let shown = serde_json::to_string(&r).unwrap();
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("token=***"), "{shown}");

    let r = run(&HttpCheck::new(format!("{base}/ok")).body_contains("missing")).await;
    assert_eq!(r.status, CheckStatus::Fail);
    assert!(r.message.contains("lacks `missing`"), "{}", r.message);

    let r = run(&HttpCheck::new(format!("{base}/cache"))).await;
    assert_eq!(r.status, CheckStatus::Fail);
    assert!(
        r.message.contains("answered 503, expected 2xx: cache cold"),
        "{}",
        r.message
    );
    assert!(r.hint.is_some());

    let r = run(&HttpCheck::new(format!("{base}/nope")).status(404)).await;
    assert_eq!(r.status, CheckStatus::Pass, "an expected 404 passes: {r:?}");

    let r = run(&HttpCheck::new(format!("{base}/slow")).latency(Duration::from_millis(100))).await;
    assert_eq!(r.status, CheckStatus::Fail);
    assert!(r.message.contains("over the 100ms budget"), "{}", r.message);

    // Nothing listens on a port just released.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let r = run(&HttpCheck::new(format!(
        "http://user:pw1@127.0.0.1:{closed}/x?key=k3y"
    )))
    .await;
    assert_eq!(r.status, CheckStatus::Error);
    let shown = serde_json::to_string(&r).unwrap();
    assert!(!shown.contains("pw1") && !shown.contains("k3y"), "{shown}");
}

#[tokio::test]
async fn tcp_reachability() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let r = run(&TcpCheck::new(addr.to_string())).await;
    assert_eq!(r.status, CheckStatus::Pass, "{r:?}");
    drop(listener);
    let r = run(&TcpCheck::new(addr.to_string())).await;
    assert_eq!(r.status, CheckStatus::Fail, "{r:?}");
    assert!(r.message.contains("cannot connect"), "{}", r.message);
}

/// A CA, and leaf certificates it signs.
struct Pki {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    ca_pem: String,
}

impl Pki {
    fn new(name: &str) -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let key = rcgen::KeyPair::generate().unwrap();
        let ca = params.self_signed(&key).unwrap();
        Pki {
            ca_pem: ca.pem(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// A leaf for `names`, valid from 2019 to `not_after` (y, m, d).
    fn leaf(&self, names: &[&str], not_after: (i32, u8, u8)) -> (String, String) {
        let mut params = rcgen::CertificateParams::new(
            names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>(),
        )
        .unwrap();
        params.not_before = rcgen::date_time_ymd(2019, 1, 1);
        params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// The civil date `days` from now, in UTC.
fn in_days(days: i64) -> (i32, u8, u8) {
    let date = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_hours(24 * days))
        .unwrap()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    (
        i32::from(date.year()),
        u8::try_from(date.month()).unwrap(),
        u8::try_from(date.day()).unwrap(),
    )
}

#[tokio::test]
async fn tls_certificates_expired_wrong_host_untrusted_close_to_expiry_and_good() {
    let pki = Pki::new("preflight test CA");
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &pki.ca_pem).unwrap();
    let check = |addr: std::net::SocketAddr| {
        TlsCheck::new(addr.to_string(), "localhost")
            .ca_file(&ca_file)
            .days(30, 7)
    };

    let (cert, key) = pki.leaf(&["localhost"], in_days(400));
    let r = run(&check(serve_tls(&cert, &key).await)).await;
    assert_eq!(r.status, CheckStatus::Pass, "{r:?}");
    assert!(r.evidence["days_left"].as_i64().unwrap() >= 398, "{r:?}");

    let (cert, key) = pki.leaf(&["localhost"], (2020, 1, 1));
    let r = run(&check(serve_tls(&cert, &key).await)).await;
    assert_eq!(r.status, CheckStatus::Fail, "{r:?}");
    assert!(r.message.contains("expired on 2020-01-01"), "{}", r.message);
    assert!(r.hint.as_deref().unwrap().contains("renew"));

    let (cert, key) = pki.leaf(&["other.example"], in_days(400));
    let r = run(&check(serve_tls(&cert, &key).await)).await;
    assert_eq!(r.status, CheckStatus::Fail, "{r:?}");
    assert!(
        r.message
            .contains("not valid for `localhost` (it names other.example)"),
        "{}",
        r.message
    );

    let (cert, key) = pki.leaf(&["localhost"], in_days(4));
    let r = run(&check(serve_tls(&cert, &key).await)).await;
    assert_eq!(r.status, CheckStatus::Fail, "{r:?}");
    assert!(r.message.contains("fewer than 7"), "{}", r.message);

    let (cert, key) = pki.leaf(&["localhost"], in_days(20));
    let r = run(&check(serve_tls(&cert, &key).await)).await;
    assert_eq!(r.status, CheckStatus::Warn, "{r:?}");

    // Signed by a CA the check does not trust.
    let stranger = Pki::new("some other CA");
    let (cert, key) = stranger.leaf(&["localhost"], in_days(400));
    let r = run(&check(serve_tls(&cert, &key).await)).await;
    assert_eq!(r.status, CheckStatus::Fail, "{r:?}");
    assert!(r.message.contains("not trusted"), "{}", r.message);
}

#[tokio::test]
async fn disk_space_on_a_path() {
    let dir = tempfile::tempdir().unwrap();
    let r = run(&DiskCheck::new(dir.path()).min_free_mb(1)).await;
    assert_eq!(r.status, CheckStatus::Pass, "{r:?}");
    let free = r.evidence["free_mb"].as_u64().unwrap();
    assert!(free >= 1);
    let r = run(&DiskCheck::new(dir.path()).min_free_mb(free * 1000 + 1)).await;
    assert_eq!(r.status, CheckStatus::Fail, "{r:?}");
    assert!(r.message.contains("MiB needed"), "{}", r.message);
    let r = run(&DiskCheck::new(dir.path().join("missing")).min_free_mb(1)).await;
    assert_eq!(r.status, CheckStatus::Error, "{r:?}");
}

#[tokio::test]
async fn environment_variables_by_name_only() {
    let path_value = std::env::var("PATH").unwrap();
    let r = run(&EnvCheck::new(["PATH"])).await;
    assert_eq!(r.status, CheckStatus::Pass, "{r:?}");
    let r = run(&EnvCheck::new(["PATH", "CUTOVER_PREFLIGHT_TEST_NEVER_SET"])).await;
    assert_eq!(r.status, CheckStatus::Fail);
    assert_eq!(r.message, "not set: CUTOVER_PREFLIGHT_TEST_NEVER_SET");
    assert!(!serde_json::to_string(&r).unwrap().contains(&path_value));
}

fn at(rfc3339: &str) -> CheckContext {
    let t: jiff::Timestamp = rfc3339.parse().unwrap();
    let mut ctx = CheckContext::default();
    ctx.now = Timestamp::from_unix_millis(u64::try_from(t.as_millisecond()).unwrap());
    ctx
}

#[tokio::test]
async fn freeze_windows_and_business_hours_in_a_time_zone() {
    let freeze = cutover_preflight::load_yaml(
        r#"
name: p
checks:
  - id: freeze
    category: configuration
    freeze:
      zone: Europe/Berlin
      windows: [ { start: "2026-12-21T00:00", end: "2027-01-04T00:00", reason: year-end } ]
"#,
    )
    .unwrap();
    // The checklist from YAML, its clock at 00:30 on the 21st in Berlin.
    let t: jiff::Timestamp = "2026-12-20T23:30:00Z".parse().unwrap();
    let clock = cutover_core::TokioClock::starting_at(Timestamp::from_unix_millis(
        u64::try_from(t.as_millisecond()).unwrap(),
    ));
    let report = freeze.clock(clock).run(&CheckContext::default()).await;
    assert_eq!(
        report.checks[0].result.status,
        CheckStatus::Fail,
        "{}",
        report.table()
    );
    let f = FreezeCheck::new(
        "Europe/Berlin",
        vec![cutover_preflight::FreezeWindow {
            start: "2026-12-21T00:00".parse().unwrap(),
            end: "2027-01-04T00:00".parse().unwrap(),
            reason: "year-end".into(),
        }],
    )
    .unwrap();
    // 23:30 UTC on the 20th is 00:30 on the 21st in Berlin: frozen.
    let r = f.run(&at("2026-12-20T23:30:00Z")).await;
    assert_eq!(r.status, CheckStatus::Fail, "{r:?}");
    assert!(r.message.contains("year-end"), "{}", r.message);
    let r = f.run(&at("2026-12-20T22:30:00Z")).await;
    assert_eq!(r.status, CheckStatus::Pass, "{r:?}");

    let b = BusinessHoursCheck::new("America/New_York", "09:00", "17:00").unwrap();
    // Friday 2026-12-04 14:00 UTC is 09:00 in New York.
    assert_eq!(
        b.run(&at("2026-12-04T14:00:00Z")).await.status,
        CheckStatus::Pass
    );
    let r = b.run(&at("2026-12-04T13:59:00Z")).await;
    assert_eq!(r.status, CheckStatus::Fail);
    assert!(
        r.message.contains("outside business hours"),
        "{}",
        r.message
    );
    let r = b.run(&at("2026-12-05T15:00:00Z")).await;
    assert!(
        r.message.contains("not a business day (Saturday)"),
        "{}",
        r.message
    );
}

#[tokio::test]
async fn webhook_is_flagger_compatible_and_signed() {
    const KEY: &[u8] = b"shared-secret";
    let app = Router::new().route(
        "/hook",
        post(|headers: HeaderMap, body: String| async move {
            use hmac::{KeyInit, Mac};
            let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(KEY).unwrap();
            mac.update(body.as_bytes());
            let expected = mac
                .finalize()
                .into_bytes()
                .iter()
                .fold(String::new(), |mut hex, b| {
                    use std::fmt::Write as _;
                    let _ = write!(hex, "{b:02x}");
                    hex
                });
            let given = headers
                .get(SIGNATURE_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if given != format!("sha256={expected}") {
                return (StatusCode::FORBIDDEN, "bad signature".to_owned());
            }
            let json: serde_json::Value = serde_json::from_str(&body).unwrap();
            for field in ["name", "namespace", "phase", "metadata"] {
                if json.get(field).is_none() {
                    return (StatusCode::BAD_REQUEST, format!("no {field}"));
                }
            }
            if json["metadata"]["ticket"] == "CHG-1" {
                (StatusCode::OK, "approved".to_owned())
            } else {
                (StatusCode::CONFLICT, "ticket not approved".to_owned())
            }
        }),
    );
    let addr = serve(app).await;
    let url = format!("http://127.0.0.1:{}/hook?token=t0k3n", addr.port());
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, [KEY, b"\n"].concat()).unwrap();
    let wrong_file = dir.path().join("wrong");
    std::fs::write(&wrong_file, b"not-the-key").unwrap();

    let hook = WebhookCheck::new(&url)
        .secret_file(&key_file)
        .metadata("ticket", "CHG-1");
    let r = run(&hook).await;
    assert_eq!(r.status, CheckStatus::Pass, "{r:?}");
    let shown = format!("{} {hook:?}", serde_json::to_string(&r).unwrap());
    assert!(!shown.contains("t0k3n"), "{shown}");

    let r = run(&WebhookCheck::new(&url)
        .secret_file(&key_file)
        .metadata("ticket", "CHG-2"))
    .await;
    assert_eq!(r.status, CheckStatus::Fail);
    assert!(
        r.message.contains("409: ticket not approved"),
        "{}",
        r.message
    );

    let r = run(&WebhookCheck::new(&url)
        .secret_file(&wrong_file)
        .metadata("ticket", "CHG-1"))
    .await;
    assert_eq!(r.status, CheckStatus::Fail);
    assert!(r.message.contains("403: bad signature"), "{}", r.message);

    let r = run(&WebhookCheck::new(&url).secret_env("CUTOVER_PREFLIGHT_TEST_NEVER_SET")).await;
    assert_eq!(r.status, CheckStatus::Error);
}
