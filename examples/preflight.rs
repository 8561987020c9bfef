//! A pre-flight checklist before a rollout: the seed's 28-item template, run against servers
//! this example starts on 127.0.0.1.
//!
//! ```text
//! cargo run --example preflight --features preflight            # the service's cache is cold: refused, with the hint
//! cargo run --example preflight --features preflight -- --fix   # the offered fix warms the cache: the rollout proceeds
//! ```
//!
//! The template (`cutover::preflight::TEMPLATE`) is edited here the way a team would edit its
//! copy: the automated checks point at the local servers (an HTTP service, a TLS server with a
//! certificate made here, a signed webhook, two TCP listeners, a temp dir), the manual items
//! carry who confirmed them, and one check that cannot pass today (secrets still being moved)
//! gets an exemption with a reason and an expiry. The checklist runs once on its own and
//! prints its table, then guards a rollout as its pre-flight gate:
//!
//! - without `--fix`, `service-health` fails (503, cache cold) with its hint, and the rollout
//!   ends `refused` before any traffic moved;
//! - with `--fix`, the check's automatic fix (`POST /admin/warm-cache`) runs and is recorded,
//!   the check passes, security signs off through the store, and the canary is promoted.
//!
//! The example exits non-zero if either run ends otherwise.
//!
//! The file needs nothing but these dependencies, so it also runs as the `main.rs` of a
//! project of your own:
//!
//! ```toml
//! [dependencies]
//! cutover = { version = "0.1", features = ["preflight"] }
//! async-trait = "0.1"
//! axum = { version = "0.8", default-features = false, features = ["http1", "tokio"] }
//! rcgen = { version = "0.14", default-features = false, features = ["crypto", "aws_lc_rs", "pem"] }
//! rustls = { version = "0.23", default-features = false, features = ["aws_lc_rs", "std", "tls12"] }
//! serde_json = "1"
//! tempfile = "3"
//! tokio = { version = "1", features = ["macros", "rt-multi-thread", "net", "time"] }
//! tokio-rustls = { version = "0.26", default-features = false, features = ["aws-lc-rs", "tls12"] }
//! ```

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use cutover::checklist::{CheckContext, ChecklistSpec};
use cutover::{
    Clock, GateStage, Granularity, Outcome, Plan, ProviderError, Rollout, RouterCapabilities,
    TokioClock, TrafficRouter, TrafficSplit,
};

/// A router that prints each split (a real one moves a load balancer's weights).
#[derive(Debug, Default)]
struct PrintingRouter(std::sync::Mutex<Option<TrafficSplit>>);

#[async_trait::async_trait]
impl TrafficRouter for PrintingRouter {
    fn name(&self) -> &'static str {
        "printing"
    }
    fn capabilities(&self) -> RouterCapabilities {
        RouterCapabilities::new(Granularity::PERCENT)
    }
    async fn set_split(&self, split: &TrafficSplit) -> Result<(), ProviderError> {
        println!("  traffic: {split}");
        *self.0.lock().expect("not poisoned") = Some(split.clone());
        Ok(())
    }
    async fn current_split(&self) -> Result<Option<TrafficSplit>, ProviderError> {
        Ok(self.0.lock().expect("not poisoned").clone())
    }
}

/// The service: `/healthz` answers 503 until its cache is warmed through the admin endpoint.
async fn service() -> u16 {
    let warm = Arc::new(AtomicBool::new(false));
    let (w1, w2) = (Arc::clone(&warm), warm);
    let app = Router::new()
        .route(
            "/healthz",
            get(move || {
                let warm = w1.load(Ordering::SeqCst);
                async move {
                    if warm {
                        (StatusCode::OK, "ok")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "cache cold")
                    }
                }
            }),
        )
        .route(
            "/admin/warm-cache",
            post(move || {
                w2.store(true, Ordering::SeqCst);
                async { "cache warmed" }
            }),
        )
        // The scanner and the change-management system: they want a signed call.
        .route("/scan", post(webhook))
        .route("/change", post(webhook));
    serve(app).await
}

async fn webhook(headers: HeaderMap, body: String) -> (StatusCode, &'static str) {
    let signed = headers
        .get(cutover::preflight::SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("sha256="));
    match (signed, body.contains("\"metadata\"")) {
        (true, true) => (StatusCode::OK, "ok"),
        _ => (StatusCode::FORBIDDEN, "unsigned call"),
    }
}

async fn serve(app: Router) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    port
}

/// A TLS server with a certificate for `localhost` from a CA made here; returns its port and
/// the CA's PEM.
async fn tls_server() -> (u16, String) {
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let ca_pem = ca.self_signed(&ca_key).expect("CA").pem();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let leaf_key = rcgen::KeyPair::generate().expect("key");
    let mut leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    leaf.not_after = rcgen::date_time_ymd(2036, 1, 1);
    let leaf = leaf.signed_by(&leaf_key, &issuer).expect("leaf");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_no_client_auth()
    .with_single_cert(
        vec![leaf.der().clone()],
        rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).expect("key"),
    )
    .expect("TLS config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move { acceptor.accept(stream).await });
        }
    });
    (port, ca_pem)
}

/// The template, pointed at this example's servers and confirmed the way a team would.
async fn checklist(dir: &std::path::Path, fix: bool) -> cutover::Checklist {
    let http = service().await;
    let (tls, ca_pem) = tls_server().await;
    let ca_file = dir.join("ca.pem");
    let key_file = dir.join("webhook.key");
    std::fs::write(&ca_file, ca_pem).expect("write CA");
    std::fs::write(&key_file, "demo-shared-secret").expect("write key");
    // Two services the rollout depends on, listening.
    let database = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let cache = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let (db_port, cache_port) = (
        database.local_addr().expect("address").port(),
        cache.local_addr().expect("address").port(),
    );
    tokio::spawn(async move {
        let _keep = (&database, &cache);
        std::future::pending::<()>().await;
    });

    let text = cutover::preflight::TEMPLATE
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{http}"))
        .replace("127.0.0.1:9000", &format!("127.0.0.1:{http}"))
        .replace("127.0.0.1:5432", &format!("127.0.0.1:{db_port}"))
        .replace("127.0.0.1:6379", &format!("127.0.0.1:{cache_port}"))
        .replace(
            "\"127.0.0.1:8443\", server_name: localhost,",
            &format!(
                "\"127.0.0.1:{tls}\", server_name: localhost, ca_file: \"{}\",",
                ca_file.display()
            ),
        )
        .replace(
            "secret_env: PREFLIGHT_HMAC_KEY",
            &format!("secret_file: \"{}\"", key_file.display()),
        )
        .replace(
            "path: /var/lib, min_free_percent: 10",
            &format!("path: \"{}\", min_free_mb: 1", dir.display()),
        )
        // Configuration this demo process surely has.
        .replace("names: [APP_ENV, LOG_LEVEL]", "names: [PATH]");
    let mut spec = ChecklistSpec::from_yaml(&text).expect("the template is valid");
    let now = TokioClock::new().now();
    let civil = |t: cutover::Timestamp| t.to_string()[..16].to_owned();
    for item in &mut spec.checks {
        // No Prometheus, PostgreSQL, cluster or AWS account in this demo: those items become
        // manual attestations.
        if [
            "prometheus_query",
            "prometheus_alerts",
            "burn_rate",
            "kubernetes_hpa",
            "alb_healthy_targets",
            "postgres_replication_lag",
            "postgres_migrations",
        ]
        .iter()
        .any(|k| item.kind.contains_key(*k))
        {
            item.kind = [("attestation".to_owned(), serde_json::json!({}))].into();
        }
        if let Some(attestation) = item.kind.get_mut("attestation") {
            attestation["confirmed_by"] = "release-manager".into();
            attestation["confirmed_at"] = now.to_string().into();
        }
        if let Some(freeze) = item.kind.get_mut("freeze") {
            // The next freeze starts in a month.
            let day = Duration::from_hours(24);
            freeze["windows"][0]["start"] = civil(now + day * 30).into();
            freeze["windows"][0]["end"] = civil(now + day * 44).into();
        }
        if item.id == "service-health" {
            item.fix = Some(
                [(
                    "http".to_owned(),
                    serde_json::json!({ "url": format!("http://127.0.0.1:{http}/admin/warm-cache") }),
                )]
                .into(),
            );
        }
    }
    spec.allow_fixes = fix;
    spec.exemptions.push(
        serde_json::from_value(serde_json::json!({
            "check": "secrets-present",
            "reason": "secrets move to the vault in CHG-2041; the old ones are still mounted",
            "by": "alice",
            "expires": (now + Duration::from_hours(7 * 24)).to_string(),
        }))
        .expect("an exemption"),
    );
    cutover::preflight::registry()
        .build(&spec)
        .expect("the edited template builds")
        .poll_interval(Duration::from_millis(200))
}

#[tokio::main]
async fn main() -> ExitCode {
    let fix = std::env::args().any(|a| a == "--fix");
    let dir = tempfile::tempdir().expect("temp dir");
    let checklist = checklist(dir.path(), fix).await;

    println!(
        "== pre-flight checklist `{}` on its own ==\n",
        checklist.name()
    );
    let report = checklist.run(&CheckContext::default()).await;
    println!("{}", report.table());

    println!("== the same checklist as the rollout's pre-flight gate ==");
    let plan = Plan::from_yaml(
        "strategy: { canary: { steps: [ { set_weight: 20 }, { set_weight: 50 } ] } }",
    )
    .expect("plan");
    let rollout = Rollout::builder("checkout", plan)
        .revisions("v1", "v2")
        .router(PrintingRouter::default())
        .gate(GateStage::PreFlight, checklist)
        .build()
        .expect("rollout");
    let handle = rollout.handle().by("security-lead");
    let run = tokio::spawn(rollout.run());
    if fix {
        // Security signs off through the rollout's store, as `cutover approve` would.
        // The store knows the rollout once the engine saved its first state.
        let mut approved = false;
        for _ in 0..100 {
            if handle
                .approve("preflight", "reviewed the diff")
                .await
                .is_ok()
            {
                approved = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(approved, "the rollout never reached its store");
    }
    let outcome = run.await.expect("the rollout task").expect("the rollout");
    println!("\noutcome: {outcome}");
    match (&outcome, fix) {
        (Outcome::Refused { .. }, false) => {
            println!("\nrun again with --fix to let the checklist warm the cache itself");
            ExitCode::SUCCESS
        }
        (Outcome::Promoted, true) => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}
