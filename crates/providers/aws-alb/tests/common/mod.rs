//! A moto server for the tests: started on a free loopback port, polled until it answers,
//! killed on drop.

#![allow(dead_code, unreachable_pub)]

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use aws_sdk_elasticloadbalancingv2::Client;
use cutover_aws_alb::moto::{Fixture, create_fixture, moto_client};

/// How long moto may take to answer after it starts.
const READY_DEADLINE: Duration = Duration::from_secs(30);

/// A running moto server.
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// A client for it.
    pub client: Client,
}

impl Moto {
    /// Starts `python3 -m moto.server` on a free port and waits until it answers ELBv2 calls.
    pub async fn start() -> Moto {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 -m moto.server (install with scripts/test-deps)");
        let endpoint = format!("http://127.0.0.1:{port}");
        let client = moto_client(&endpoint);
        let mut moto = Moto {
            child,
            endpoint,
            client,
        };
        let deadline = tokio::time::Instant::now() + READY_DEADLINE;
        loop {
            if moto.client.describe_load_balancers().send().await.is_ok() {
                return moto;
            }
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!("moto exited with {status} before answering");
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "moto did not answer within {READY_DEADLINE:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts moto and creates the fixture (`cutover_aws_alb::moto::create_fixture`).
    pub async fn with_fixture() -> (Moto, Fixture) {
        let moto = Moto::start().await;
        let fixture = create_fixture(&moto.client, &moto.endpoint, "web")
            .await
            .expect("the moto fixture");
        (moto, fixture)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
