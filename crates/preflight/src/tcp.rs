//! TCP reachability.

use async_trait::async_trait;
use cutover_core::checklist::{Check, CheckContext, CheckResult};
use serde::Deserialize;

/// A TCP address (`host:port`) accepts connections.
///
/// ```yaml
/// tcp: { address: "db.internal:5432" }
/// ```
#[derive(Debug, Clone)]
pub struct TcpCheck {
    address: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TcpParams {
    address: String,
}

impl TcpCheck {
    /// Connects to `address`.
    pub fn new(address: impl Into<String>) -> Self {
        TcpCheck {
            address: address.into(),
        }
    }

    pub(crate) fn from_params(p: TcpParams) -> Result<Self, (String, String)> {
        if !p.address.contains(':') {
            return Err((
                "address".into(),
                format!("`{}` has no port: write it as host:port", p.address),
            ));
        }
        Ok(TcpCheck::new(p.address))
    }
}

#[async_trait]
impl Check for TcpCheck {
    async fn run(&self, _ctx: &CheckContext) -> CheckResult {
        let start = tokio::time::Instant::now();
        match tokio::net::TcpStream::connect(&self.address).await {
            Ok(stream) => {
                let peer = stream
                    .peer_addr()
                    .map(|a| a.to_string())
                    .unwrap_or_default();
                CheckResult::pass(format!(
                    "{} accepts connections ({} ms)",
                    self.address,
                    start.elapsed().as_millis()
                ))
                .evidence("address", &self.address)
                .evidence("peer", peer)
            }
            Err(e) => CheckResult::fail(format!("cannot connect to {}: {e}", self.address))
                .hint("check that the service listens there and that no firewall is in the way")
                .evidence("address", &self.address),
        }
    }
}
