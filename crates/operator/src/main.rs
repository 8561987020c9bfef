//! `cutover-operator`: runs the Rollout controller, or prints its CRD.
//!
//! ```text
//! cutover-operator                  run over every namespace (in-cluster or KUBECONFIG)
//! cutover-operator --namespace NS   run over one namespace
//! cutover-operator crd              print the CustomResourceDefinition
//! ```
//!
//! The engine id (the owner written in the store's leases) is `$POD_NAME`, or the host name.
#![forbid(unsafe_code)]

use std::process::ExitCode;

const USAGE: &str = "usage: cutover-operator [--namespace NS] | cutover-operator crd";

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut namespace = None;
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["crd"] => {
            return match cutover_operator::crd::crd_yaml() {
                Ok(yaml) => {
                    print!("{yaml}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("cutover-operator: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        [] => {}
        ["--namespace" | "-n", ns] => namespace = Some((*ns).to_owned()),
        ["--help" | "-h"] => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let client = match kube::Client::try_default().await {
        Ok(client) => client,
        Err(e) => {
            eprintln!("cutover-operator: no Kubernetes client (in-cluster or KUBECONFIG): {e}");
            return ExitCode::FAILURE;
        }
    };
    let engine = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "cutover-operator".into());
    cutover_operator::run(
        client,
        namespace.as_deref(),
        &format!("cutover-operator/{engine}"),
    )
    .await;
    ExitCode::SUCCESS
}
