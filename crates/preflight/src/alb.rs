//! AWS Application Load Balancer (feature `aws-alb`): enough healthy targets in the stable
//! target group.
//!
//! The client is cutover-aws-alb's ([`client_from_env`]): the standard AWS credential chain,
//! `AWS_ENDPOINT_URL` when set, the SDK's retries off (the checklist's timeout bounds the
//! check), and the region of the ARN checked. Credentials are never shown.

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use cutover_aws_alb::sdk::Client;
use cutover_aws_alb::sdk::config::Region;
use cutover_aws_alb::sdk::types::{
    Action, ActionTypeEnum, TargetDescription, TargetHealthStateEnum,
};
use cutover_aws_alb::{ElbArn, ResourceKind, classify, client_from_env};
use cutover_core::checklist::{Check, CheckContext, CheckResult};
use serde::Deserialize;

/// What names the target group.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    TargetGroup(ElbArn),
    /// The stable group of a listener rule's forward action.
    Rule(ElbArn),
    /// The stable group of a listener's default forward action.
    Listener(ElbArn),
}

/// At least `min_healthy` targets of a target group are `healthy` in `DescribeTargetHealth`.
/// The group is named by its ARN (`target_group`), or is the stable group of a listener rule
/// (`listener_rule`) or of a listener's default action (`listener`): the group its forward
/// action sends the largest weight to (a tie, as in the middle of a rollout, is an error that
/// asks for `target_group`). Targets in any other state (`initial`, `unhealthy`, `unused`,
/// `draining`, `unavailable`) are listed with their reason in the evidence.
///
/// ```yaml
/// alb_healthy_targets: { target_group: "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/web-stable/73e2d6bc24d8a067", min_healthy: 2 }
/// alb_healthy_targets: { listener_rule: "arn:aws:elasticloadbalancing:...:listener-rule/app/web/50dc6c495c0c9188/f2f7dc8efc522ab2/9683b2d02a6cabee", min_healthy: 2 }
/// ```
#[derive(Clone)]
pub struct AlbTargetsCheck {
    source: Source,
    min_healthy: u32,
    client: Option<Client>,
}

impl fmt::Debug for AlbTargetsCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlbTargetsCheck")
            .field("source", &self.source)
            .field("min_healthy", &self.min_healthy)
            .field(
                "client",
                &if self.client.is_some() {
                    "given"
                } else {
                    "from the environment"
                },
            )
            .finish()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AlbTargetsParams {
    #[serde(default)]
    target_group: Option<String>,
    #[serde(default)]
    listener_rule: Option<String>,
    #[serde(default)]
    listener: Option<String>,
    min_healthy: u32,
}

/// Parses `arn` as a `kind` ARN, the error naming `field`.
fn arn(field: &str, arn: &str, kind: ResourceKind) -> Result<ElbArn, (String, String)> {
    ElbArn::parse(arn, kind).map_err(|e| (field.to_owned(), e.to_string()))
}

impl AlbTargetsCheck {
    /// At least `min_healthy` healthy targets in the target group `target_group` (an ARN),
    /// with a client from the environment.
    ///
    /// # Errors
    ///
    /// A malformed ARN, or `min_healthy` of 0 (the field at fault and what is wrong).
    pub fn target_group(target_group: &str, min_healthy: u32) -> Result<Self, (String, String)> {
        Self::build(
            Source::TargetGroup(arn(
                "target_group",
                target_group,
                ResourceKind::TargetGroup,
            )?),
            min_healthy,
        )
    }

    /// At least `min_healthy` healthy targets in the stable target group of the listener rule
    /// `rule` (an ARN), with a client from the environment.
    ///
    /// # Errors
    ///
    /// A malformed ARN, or `min_healthy` of 0.
    pub fn listener_rule(rule: &str, min_healthy: u32) -> Result<Self, (String, String)> {
        Self::build(
            Source::Rule(arn("listener_rule", rule, ResourceKind::ListenerRule)?),
            min_healthy,
        )
    }

    /// At least `min_healthy` healthy targets in the stable target group of the listener's
    /// default action (`listener`, an ARN), with a client from the environment.
    ///
    /// # Errors
    ///
    /// A malformed ARN, or `min_healthy` of 0.
    pub fn listener(listener: &str, min_healthy: u32) -> Result<Self, (String, String)> {
        Self::build(
            Source::Listener(arn("listener", listener, ResourceKind::Listener)?),
            min_healthy,
        )
    }

    /// With this ELBv2 client instead of one from the environment.
    #[must_use]
    pub fn client(mut self, client: Client) -> Self {
        self.client = Some(client);
        self
    }

    fn build(source: Source, min_healthy: u32) -> Result<Self, (String, String)> {
        if min_healthy == 0 {
            return Err((
                "min_healthy".into(),
                "must be at least 1 (a group with no healthy target serves nothing)".into(),
            ));
        }
        Ok(AlbTargetsCheck {
            source,
            min_healthy,
            client: None,
        })
    }

    pub(crate) fn from_params(p: AlbTargetsParams) -> Result<Self, (String, String)> {
        match (p.target_group, p.listener_rule, p.listener) {
            (Some(tg), None, None) => Self::target_group(&tg, p.min_healthy),
            (None, Some(rule), None) => Self::listener_rule(&rule, p.min_healthy),
            (None, None, Some(listener)) => Self::listener(&listener, p.min_healthy),
            _ => Err((
                String::new(),
                "give exactly one of `target_group`, `listener_rule` or `listener`".into(),
            )),
        }
    }

    /// The ARN that decides the region.
    fn anchor(&self) -> &ElbArn {
        match &self.source {
            Source::TargetGroup(a) | Source::Rule(a) | Source::Listener(a) => a,
        }
    }

    async fn client_for_run(&self) -> Client {
        if let Some(c) = &self.client {
            return c.clone();
        }
        let config = client_from_env()
            .await
            .config()
            .to_builder()
            .region(Region::new(self.anchor().region().to_owned()))
            .build();
        Client::from_conf(config)
    }

    /// The target group to look at, and where it came from (for the evidence).
    async fn target_group_arn(&self, client: &Client) -> Result<(String, Option<i32>), String> {
        let (actions, what) = match &self.source {
            Source::TargetGroup(tg) => return Ok((tg.to_string(), None)),
            Source::Rule(rule) => {
                let out = client
                    .describe_rules()
                    .rule_arns(rule.as_str())
                    .send()
                    .await
                    .map_err(|e| classify("DescribeRules", rule.as_str(), e).to_string())?;
                let actions = out
                    .rules()
                    .first()
                    .map(|r| r.actions().to_vec())
                    .unwrap_or_default();
                (actions, format!("listener rule `{rule}`"))
            }
            Source::Listener(listener) => {
                let out = client
                    .describe_listeners()
                    .listener_arns(listener.as_str())
                    .send()
                    .await
                    .map_err(|e| classify("DescribeListeners", listener.as_str(), e).to_string())?;
                let actions = out
                    .listeners()
                    .first()
                    .map(|l| l.default_actions().to_vec())
                    .unwrap_or_default();
                (
                    actions,
                    format!("the default action of listener `{listener}`"),
                )
            }
        };
        stable_group(&actions).map_err(|why| format!("{what}: {why}"))
    }
}

/// The target group a forward action sends the largest weight to, and that weight.
fn stable_group(actions: &[Action]) -> Result<(String, Option<i32>), String> {
    let forward = actions
        .iter()
        .find(|a| a.r#type() == Some(&ActionTypeEnum::Forward))
        .ok_or("no forward action")?;
    let groups: Vec<(&str, i32)> = forward
        .forward_config()
        .map(|f| {
            f.target_groups()
                .iter()
                .filter_map(|t| Some((t.target_group_arn()?, t.weight().unwrap_or(1))))
                .collect()
        })
        .unwrap_or_default();
    if groups.is_empty() {
        return forward
            .target_group_arn()
            .map(|tg| (tg.to_owned(), None))
            .ok_or_else(|| "the forward action names no target group".to_owned());
    }
    let top = groups.iter().map(|(_, w)| *w).max().unwrap_or_default();
    let at_top: Vec<&str> = groups
        .iter()
        .filter(|(_, w)| *w == top)
        .map(|(g, _)| *g)
        .collect();
    match at_top.as_slice() {
        [one] => Ok(((*one).to_owned(), Some(top))),
        _ => Err(format!(
            "{} target groups share the largest weight {top}, so none is the stable one; name it with `target_group`",
            at_top.len()
        )),
    }
}

#[async_trait]
impl Check for AlbTargetsCheck {
    async fn run(&self, _ctx: &CheckContext) -> CheckResult {
        let client = self.client_for_run().await;
        let hint = "check the ARN, its region and the AWS credentials (AWS_PROFILE, AWS_ENDPOINT_URL, the role's elasticloadbalancing:Describe* permissions)";
        let (group, weight) = match self.target_group_arn(&client).await {
            Ok(g) => g,
            Err(e) => {
                return CheckResult::error(e)
                    .hint(hint)
                    .evidence("source", self.anchor().as_str());
            }
        };
        let evidence = |r: CheckResult| {
            let r = r
                .evidence("target_group", &group)
                .evidence("min_healthy", self.min_healthy);
            match (&self.source, weight) {
                (Source::TargetGroup(_), _) => r,
                (_, w) => r
                    .evidence("source", self.anchor().as_str())
                    .evidence("weight", w),
            }
        };
        let out = match client
            .describe_target_health()
            .target_group_arn(&group)
            .send()
            .await
        {
            Ok(o) => o,
            Err(e) => {
                let err = classify("DescribeTargetHealth", &group, e);
                return evidence(CheckResult::error(err.to_string()).hint(hint));
            }
        };
        let mut targets = BTreeMap::new();
        let mut healthy = 0_u32;
        for d in out.target_health_descriptions() {
            let target = d.target();
            let id = target.and_then(|t| t.id()).unwrap_or("?");
            let label = match target.and_then(TargetDescription::port) {
                Some(port) => format!("{id}:{port}"),
                None => id.to_owned(),
            };
            let health = d.target_health();
            let state = health.and_then(|h| h.state());
            if state == Some(&TargetHealthStateEnum::Healthy) {
                healthy += 1;
            }
            let mut text = state
                .map_or("unknown", TargetHealthStateEnum::as_str)
                .to_owned();
            if let Some(reason) = health.and_then(|h| h.reason()) {
                text = format!("{text} ({})", reason.as_str());
            }
            targets.insert(label, text);
        }
        let registered = targets.len();
        let result = if healthy >= self.min_healthy {
            CheckResult::pass(format!(
                "{healthy} of {registered} targets healthy in `{group}` (at least {} needed)",
                self.min_healthy
            ))
        } else {
            let not_healthy: Vec<String> = targets
                .iter()
                .filter(|(_, s)| s.as_str() != "healthy")
                .map(|(t, s)| format!("{t} {s}"))
                .collect();
            let hint = if not_healthy.is_empty() {
                "register more targets (scale the stable revision up) before moving traffic"
                    .to_owned()
            } else {
                format!(
                    "fix the targets that are not healthy ({}) or register more before moving traffic",
                    not_healthy.join("; ")
                )
            };
            CheckResult::fail(format!(
                "only {healthy} of {registered} registered targets healthy in `{group}`, {} needed",
                self.min_healthy
            ))
            .hint(hint)
        };
        evidence(
            result
                .evidence("healthy", healthy)
                .evidence("registered", registered)
                .evidence("targets", targets),
        )
    }
}
