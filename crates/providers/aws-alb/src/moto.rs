//! Test support (feature `moto`): a moto server started on a free loopback port
//! ([`MotoServer`]), a client for it, and a fixture with an Application Load Balancer, three
//! target groups, a listener and a rule.
//!
//! moto's ELBv2 needs subnets from its EC2 side. Rather than link the (very large) EC2 SDK,
//! the fixture asks moto for its default VPC's subnets with one plain HTTP request of the EC2
//! query API; moto does not check signatures.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use aws_sdk_elasticloadbalancingv2::Client;
use aws_sdk_elasticloadbalancingv2::config::{self, BehaviorVersion, Credentials, Region};
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, ForwardActionConfig, ProtocolEnum, RuleCondition, TargetGroupTuple,
    TargetTypeEnum,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::configure;

/// The region the fixture uses.
pub const REGION: &str = "us-east-1";

/// A boxed error for fixture setup.
pub type SetupError = Box<dyn std::error::Error + Send + Sync>;

/// An ELBv2 client for a moto server at `endpoint` (`http://127.0.0.1:PORT`): fake static
/// credentials, region [`REGION`], and cutover's settings ([`configure`]).
pub fn moto_client(endpoint: &str) -> Client {
    let creds = Credentials::new("testing", "testing", None, None, "cutover-moto");
    Client::from_conf(
        configure(
            config::Builder::new()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new(REGION))
                .credentials_provider(creds)
                .endpoint_url(endpoint),
        )
        .build(),
    )
}

/// How long moto may take to answer after it starts.
const READY_DEADLINE: Duration = Duration::from_secs(30);

/// A running moto server (`python3 -m moto.server`, installed by `scripts/test-deps`) on a
/// free 127.0.0.1 port, killed on drop.
#[derive(Debug)]
pub struct MotoServer {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// A client for it ([`moto_client`]).
    pub client: Client,
}

impl MotoServer {
    /// Starts moto on a free port and polls it until it answers ELBv2 calls.
    ///
    /// # Panics
    ///
    /// When moto cannot be started, exits, or does not answer within 30 s.
    pub async fn start() -> MotoServer {
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
        let mut moto = MotoServer {
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

    /// Starts moto and creates the fixture ([`create_fixture`]) with the name `web`.
    ///
    /// # Panics
    ///
    /// As [`MotoServer::start`], or when the fixture cannot be created.
    pub async fn with_fixture() -> (MotoServer, Fixture) {
        let moto = MotoServer::start().await;
        let fixture = create_fixture(&moto.client, &moto.endpoint, "web")
            .await
            .expect("the moto fixture");
        (moto, fixture)
    }

    /// Sends one EC2 query-API request (`Action=...&...`) to this server, for what the ELBv2
    /// SDK cannot do (instances to register as targets); returns the XML answer.
    pub async fn ec2(&self, query: &str) -> Result<String, SetupError> {
        ec2_query(&self.endpoint, query).await
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What [`create_fixture`] made.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// The load balancer.
    pub load_balancer: String,
    /// Its HTTP listener on port 80; the default action forwards to `stable`.
    pub listener: String,
    /// A rule on the listener (priority 10, path `/api/*`) that forwards to `stable` (weight 1)
    /// and `other` (weight 7, a target group cutover does not manage).
    pub rule: String,
    /// The target group of the stable revision.
    pub stable: String,
    /// The target group of the candidate revision.
    pub candidate: String,
    /// A target group cutover does not manage.
    pub other: String,
}

/// Creates a load balancer called `name` with target groups `NAME-stable`, `NAME-canary`,
/// `NAME-other` (IP targets, HTTP port 80), a listener and a rule, on the moto server at
/// `endpoint`.
pub async fn create_fixture(
    client: &Client,
    endpoint: &str,
    name: &str,
) -> Result<Fixture, SetupError> {
    let subnets = default_subnets(endpoint).await?;
    let lb = client
        .create_load_balancer()
        .name(name)
        .set_subnets(Some(subnets.subnets))
        .send()
        .await?;
    let lb = lb
        .load_balancers()
        .first()
        .and_then(|l| l.load_balancer_arn())
        .ok_or("CreateLoadBalancer returned no ARN")?
        .to_owned();
    let mut groups = Vec::new();
    for suffix in ["stable", "canary", "other"] {
        let out = client
            .create_target_group()
            .name(format!("{name}-{suffix}"))
            .protocol(ProtocolEnum::Http)
            .port(80)
            .vpc_id(&subnets.vpc)
            .target_type(TargetTypeEnum::Ip)
            .send()
            .await?;
        groups.push(
            out.target_groups()
                .first()
                .and_then(|g| g.target_group_arn())
                .ok_or("CreateTargetGroup returned no ARN")?
                .to_owned(),
        );
    }
    let [stable, candidate, other]: [String; 3] = groups.try_into().map_err(|_| "three groups")?;
    let forward_stable = Action::builder()
        .r#type(ActionTypeEnum::Forward)
        .target_group_arn(&stable)
        .build();
    let listener = client
        .create_listener()
        .load_balancer_arn(&lb)
        .protocol(ProtocolEnum::Http)
        .port(80)
        .default_actions(forward_stable)
        .send()
        .await?;
    let listener = listener
        .listeners()
        .first()
        .and_then(|l| l.listener_arn())
        .ok_or("CreateListener returned no ARN")?
        .to_owned();
    let rule_action = Action::builder()
        .r#type(ActionTypeEnum::Forward)
        .forward_config(
            ForwardActionConfig::builder()
                .target_groups(
                    TargetGroupTuple::builder()
                        .target_group_arn(&stable)
                        .weight(1)
                        .build(),
                )
                .target_groups(
                    TargetGroupTuple::builder()
                        .target_group_arn(&other)
                        .weight(7)
                        .build(),
                )
                .build(),
        )
        .build();
    let rule = client
        .create_rule()
        .listener_arn(&listener)
        .priority(10)
        .conditions(
            RuleCondition::builder()
                .field("path-pattern")
                .values("/api/*")
                .build(),
        )
        .actions(rule_action)
        .send()
        .await?;
    let rule = rule
        .rules()
        .first()
        .and_then(|r| r.rule_arn())
        .ok_or("CreateRule returned no ARN")?
        .to_owned();
    Ok(Fixture {
        load_balancer: lb,
        listener,
        rule,
        stable,
        candidate,
        other,
    })
}

struct Subnets {
    vpc: String,
    subnets: Vec<String>,
}

/// Two subnets of moto's default VPC, in different availability zones.
async fn default_subnets(endpoint: &str) -> Result<Subnets, SetupError> {
    let xml = ec2_query(endpoint, "Action=DescribeSubnets&Version=2016-11-15&Filter.1.Name=default-for-az&Filter.1.Value.1=true").await?;
    let values = |tag: &str| -> Vec<String> {
        let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
        xml.split(&open)
            .skip(1)
            .filter_map(|rest| rest.split(&close).next().map(str::to_owned))
            .collect()
    };
    let subnets: Vec<String> = values("subnetId").into_iter().take(2).collect();
    let vpc = values("vpcId")
        .into_iter()
        .next()
        .ok_or("moto reported no default VPC")?;
    if subnets.len() < 2 {
        return Err(format!("moto reported {} default subnets, need 2", subnets.len()).into());
    }
    Ok(Subnets { vpc, subnets })
}

/// One EC2 query-API request to a moto server over plain HTTP/1.0.
async fn ec2_query(endpoint: &str, body: &str) -> Result<String, SetupError> {
    let host = endpoint
        .strip_prefix("http://")
        .ok_or("the moto endpoint must be http://HOST:PORT")?
        .trim_end_matches('/');
    let mut stream = tokio::net::TcpStream::connect(host).await?;
    let request = format!(
        "POST / HTTP/1.0\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded; charset=utf-8\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential=testing/20260101/{REGION}/ec2/aws4_request, SignedHeaders=host, Signature=0\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let status = response.split_whitespace().nth(1).unwrap_or_default();
    if status != "200" {
        return Err(format!(
            "EC2 {body} on moto answered: {}",
            response.lines().next().unwrap_or_default()
        )
        .into());
    }
    Ok(response)
}
