//! Sets up the cluster in `KUBECONFIG` for tests and CI, with `cutover_kube::testing`:
//!
//! ```text
//! control_plane crds FILE [--without-validation-rules]   install the CRDs in FILE, wait until served
//! control_plane apply NAMESPACE FILE                      server-side apply every object in FILE (- for stdin)
//! control_plane kubelet NAMESPACE [SELECTOR]              mark matching Pods ready until killed
//! ```
//!
//! `scripts/ci` runs the Kubernetes and Istio examples against the control plane of
//! `shared/tools/kube/start` with it:
//! `cargo run -p cutover-kube --features test-util --example control_plane -- kubelet default`.

use std::io::Read as _;
use std::process::ExitCode;

use cutover_kube::testing::{FakeKubelet, apply_yaml, install_crds};

const USAGE: &str = "usage: control_plane crds FILE [--without-validation-rules] | \
                     apply NAMESPACE FILE | kubelet NAMESPACE [SELECTOR]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(run(&args))
}

async fn run(args: &[String]) -> ExitCode {
    let client = match kube::Client::try_default().await {
        Ok(client) => client,
        Err(e) => {
            eprintln!("control_plane: no client from KUBECONFIG: {e}");
            return ExitCode::FAILURE;
        }
    };
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["crds", file, rest @ ..] => {
            let strip = rest == ["--without-validation-rules"];
            let Some(yaml) = read(file) else {
                return ExitCode::FAILURE;
            };
            install_crds(&client, &yaml, strip).await;
            println!("control_plane: CRDs in {file} installed");
        }
        ["apply", namespace, file] => {
            let Some(yaml) = read(file) else {
                return ExitCode::FAILURE;
            };
            let n = apply_yaml(&client, namespace, &yaml).await;
            println!("control_plane: {n} objects applied in {namespace}");
        }
        ["kubelet", namespace, selector @ ..] if selector.len() <= 1 => {
            let selector = selector.first().copied().unwrap_or("");
            println!("control_plane: marking Pods `{selector}` in {namespace} ready");
            FakeKubelet::start(client, namespace, selector)
                .run_forever()
                .await;
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

/// The text of `file`, or of stdin for `-`.
fn read(file: &str) -> Option<String> {
    let text = if file == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).map(|_| text)
    } else {
        std::fs::read_to_string(file)
    };
    text.map_err(|e| eprintln!("control_plane: {file}: {e}"))
        .ok()
}
