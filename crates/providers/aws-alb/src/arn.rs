//! Checks on Elastic Load Balancing ARNs, made before any call to AWS.
//!
//! moto accepts any string where AWS expects an ARN, so cutover checks the shape itself: a
//! typo or an ARN of the wrong kind fails when the router is built, not halfway through a
//! rollout.

use std::fmt;

use crate::AlbError;

/// The kind of Elastic Load Balancing resource an ARN names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ResourceKind {
    /// `listener/app/<lb-name>/<lb-id>/<listener-id>`
    Listener,
    /// `listener-rule/app/<lb-name>/<lb-id>/<listener-id>/<rule-id>`
    ListenerRule,
    /// `targetgroup/<name>/<id>`
    TargetGroup,
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ResourceKind::Listener => "listener",
            ResourceKind::ListenerRule => "listener rule",
            ResourceKind::TargetGroup => "target group",
        })
    }
}

/// A checked Elastic Load Balancing ARN.
///
/// ```
/// use cutover_aws_alb::{ElbArn, ResourceKind};
/// let tg = ElbArn::parse(
///     "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/web-v2/73e2d6bc24d8a067",
///     ResourceKind::TargetGroup,
/// )?;
/// assert_eq!(tg.region(), "eu-west-1");
/// assert!(ElbArn::parse("arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/web", ResourceKind::TargetGroup).is_err());
/// # Ok::<(), cutover_aws_alb::AlbError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ElbArn {
    arn: String,
}

impl ElbArn {
    /// Parses `arn` and checks that it names a resource of `kind`: partition `aws` or
    /// `aws-<name>`, service `elasticloadbalancing`, a region, a 12-digit account, and the
    /// resource path of `kind` (listeners and rules of an Application Load Balancer only).
    pub fn parse(arn: &str, kind: ResourceKind) -> Result<Self, AlbError> {
        let bad = |why: &str| AlbError::InvalidArn {
            arn: arn.to_owned(),
            kind,
            reason: why.to_owned(),
        };
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        let [prefix, partition, service, region, account, resource] = parts[..] else {
            return Err(bad(
                "expected arn:PARTITION:elasticloadbalancing:REGION:ACCOUNT:RESOURCE",
            ));
        };
        if prefix != "arn" {
            return Err(bad("does not start with `arn:`"));
        }
        let partition_ok = partition == "aws"
            || partition.strip_prefix("aws-").is_some_and(|rest| {
                !rest.is_empty()
                    && rest
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            });
        if !partition_ok {
            return Err(bad("unknown partition"));
        }
        if service != "elasticloadbalancing" {
            return Err(bad("not an elasticloadbalancing ARN"));
        }
        if region.is_empty()
            || !region
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(bad("invalid region"));
        }
        if account.len() != 12 || !account.chars().all(|c| c.is_ascii_digit()) {
            return Err(bad("the account must be 12 digits"));
        }
        let segments: Vec<&str> = resource.split('/').collect();
        let (head, ids) = match kind {
            ResourceKind::Listener => ("listener", 3),
            ResourceKind::ListenerRule => ("listener-rule", 4),
            ResourceKind::TargetGroup => ("targetgroup", 2),
        };
        if segments.first() != Some(&head) {
            return Err(bad(&format!("the resource must start with `{head}/`")));
        }
        let rest = &segments[1..];
        let rest = if kind == ResourceKind::TargetGroup {
            rest
        } else {
            match rest.split_first() {
                Some((&"app", rest)) => rest,
                Some((&"net" | &"gwy", _)) => {
                    return Err(bad(
                        "not an Application Load Balancer (weighted forward actions need one)",
                    ));
                }
                _ => return Err(bad("the resource must continue with `app/`")),
            }
        };
        let name_ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 32
                && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        };
        let id_ok = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric());
        if rest.len() != ids || !name_ok(rest[0]) || !rest[1..].iter().all(|s| id_ok(s)) {
            return Err(bad("malformed resource path"));
        }
        Ok(ElbArn {
            arn: arn.to_owned(),
        })
    }

    /// The ARN.
    pub fn as_str(&self) -> &str {
        &self.arn
    }

    fn field(&self, index: usize) -> &str {
        self.arn.split(':').nth(index).unwrap_or_default()
    }

    /// The partition, region and account: resources that differ in any of them cannot be used
    /// together.
    pub fn scope(&self) -> (&str, &str, &str) {
        (self.field(1), self.field(3), self.field(4))
    }

    /// The resource part, after the account: `targetgroup/web-v2/73e2d6bc24d8a067`.
    pub fn resource(&self) -> &str {
        self.arn.splitn(6, ':').nth(5).unwrap_or_default()
    }

    /// The region.
    pub fn region(&self) -> &str {
        self.field(3)
    }

    /// The account.
    pub fn account(&self) -> &str {
        self.field(4)
    }
}

impl fmt::Display for ElbArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.arn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LB: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012";

    #[test]
    fn accepts_each_kind() {
        let listener = format!("{LB}:listener/app/web/50dc6c495c0c9188/f2f7dc8efc522ab2");
        let rule = format!(
            "{LB}:listener-rule/app/web/50dc6c495c0c9188/f2f7dc8efc522ab2/9683b2d02a6cabee"
        );
        let tg = format!("{LB}:targetgroup/web-v1/73e2d6bc24d8a067");
        assert!(ElbArn::parse(&listener, ResourceKind::Listener).is_ok());
        assert!(ElbArn::parse(&rule, ResourceKind::ListenerRule).is_ok());
        let tg = ElbArn::parse(&tg, ResourceKind::TargetGroup).unwrap();
        assert_eq!(tg.account(), "123456789012");
        assert_eq!(tg.scope(), ("aws", "us-east-1", "123456789012"));
        let cn = "arn:aws-cn:elasticloadbalancing:cn-north-1:123456789012:targetgroup/a/1";
        assert!(ElbArn::parse(cn, ResourceKind::TargetGroup).is_ok());
    }

    #[test]
    fn rejects_malformed_and_wrong_kinds() {
        let tg = format!("{LB}:targetgroup/web-v1/73e2d6bc24d8a067");
        let cases = [
            (tg.as_str(), ResourceKind::Listener),
            (
                "targetgroup/web-v1/73e2d6bc24d8a067",
                ResourceKind::TargetGroup,
            ),
            (
                "arn:aws:ec2:us-east-1:123456789012:targetgroup/a/1",
                ResourceKind::TargetGroup,
            ),
            (
                "arn:aws:elasticloadbalancing:us-east-1:1234:targetgroup/a/1",
                ResourceKind::TargetGroup,
            ),
            (
                "arn:aws:elasticloadbalancing::123456789012:targetgroup/a/1",
                ResourceKind::TargetGroup,
            ),
            (
                "arn:gcp:elasticloadbalancing:us-east-1:123456789012:targetgroup/a/1",
                ResourceKind::TargetGroup,
            ),
            (
                "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/a/1/2",
                ResourceKind::TargetGroup,
            ),
            (
                "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/a b/1",
                ResourceKind::TargetGroup,
            ),
            (
                "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/net/nlb/1/2",
                ResourceKind::Listener,
            ),
            (
                "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/web/1",
                ResourceKind::Listener,
            ),
            ("", ResourceKind::TargetGroup),
        ];
        for (arn, kind) in cases {
            let err = ElbArn::parse(arn, kind).unwrap_err();
            assert!(err.to_string().contains(arn), "{err}");
        }
    }
}
