use std::fmt;

use cutover_core::{
    ErrorKind, HeaderRoute, Mirror, ProviderError, RevisionId, RouteMatch, StickySession,
    TrafficRouter, TrafficSplit, Weight,
};
use thiserror::Error;

/// A check of [`router_contract`] that the router failed.
#[derive(Debug, Error)]
#[error("router `{router}` breaks the contract at `{check}`: {detail}")]
pub struct ContractViolation {
    /// The router.
    pub router: String,
    /// The check.
    pub check: &'static str,
    /// What went wrong.
    pub detail: String,
}

/// The checks a router passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContractReport {
    /// Checks run, in order.
    pub passed: Vec<&'static str>,
    /// Optional capabilities the router does not declare (their checks only confirmed that
    /// they answer `Unsupported`).
    pub unsupported: Vec<&'static str>,
}

impl fmt::Display for ContractReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} checks passed", self.passed.len())?;
        if !self.unsupported.is_empty() {
            write!(f, "; not supported: {}", self.unsupported.join(", "))?;
        }
        Ok(())
    }
}

struct Contract<'a> {
    router: &'a dyn TrafficRouter,
    report: ContractReport,
}

impl Contract<'_> {
    fn violation(&self, check: &'static str, detail: impl Into<String>) -> ContractViolation {
        ContractViolation {
            router: self.router.name().to_owned(),
            check,
            detail: detail.into(),
        }
    }

    fn ok<T>(
        &self,
        check: &'static str,
        result: Result<T, ProviderError>,
    ) -> Result<T, ContractViolation> {
        result.map_err(|e| self.violation(check, format!("unexpected error: {}", e.chain())))
    }

    async fn set_and_read(
        &mut self,
        check: &'static str,
        split: &TrafficSplit,
    ) -> Result<(), ContractViolation> {
        self.ok(check, self.router.set_split(split).await)?;
        let read = self.ok(check, self.router.current_split().await)?;
        if let Some(read) = read
            && !read.same_traffic(split)
        {
            return Err(self.violation(check, format!("set {split}, read back {read}")));
        }
        self.report.passed.push(check);
        Ok(())
    }

    async fn optional(
        &mut self,
        check: &'static str,
        declared: bool,
        set: Result<(), ProviderError>,
        replace: impl Future<Output = Result<(), ProviderError>>,
        remove: impl Future<Output = Result<(), ProviderError>>,
        remove_again: impl Future<Output = Result<(), ProviderError>>,
    ) -> Result<(), ContractViolation> {
        if !declared {
            match set {
                Err(e) if e.kind() == ErrorKind::Unsupported => {
                    self.report.unsupported.push(check);
                    return Ok(());
                }
                Err(e) => {
                    return Err(self.violation(
                        check,
                        format!(
                            "not declared, so it must answer Unsupported, got: {}",
                            e.chain()
                        ),
                    ));
                }
                Ok(()) => {
                    return Err(
                        self.violation(check, "succeeded although the router does not declare it")
                    );
                }
            }
        }
        self.ok(check, set)?;
        self.ok(check, replace.await).map_err(|e| {
            self.violation(
                check,
                format!("setting it again (replace) failed: {}", e.detail),
            )
        })?;
        self.ok(check, remove.await)?;
        self.ok(check, remove_again.await).map_err(|e| {
            self.violation(
                check,
                format!("removing it twice must succeed: {}", e.detail),
            )
        })?;
        self.report.passed.push(check);
        Ok(())
    }
}

/// The contract every [`TrafficRouter`] must meet, run against a real or fake router:
///
/// 1. its granularity divides 100 %;
/// 2. all traffic to stable, read back equal (where it reads back);
/// 3. the finest split it declares, then 50 % where expressible, then all to the candidate,
///    each read back equal;
/// 4. the same split set twice succeeds (idempotence);
/// 5. header routes, cookie routes, mirroring and sticky sessions: when declared, set, replace,
///    remove and remove again all succeed; when not declared, they answer `Unsupported`;
/// 6. it ends with all traffic on stable.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use cutover_test::{FakeRouter, router_contract};
/// let report = router_contract(&FakeRouter::new("fake"), &"v1".parse()?, &"v2".parse()?).await?;
/// assert!(report.unsupported.is_empty());
/// # Ok(()) }
/// ```
pub async fn router_contract(
    router: &dyn TrafficRouter,
    stable: &RevisionId,
    candidate: &RevisionId,
) -> Result<ContractReport, ContractViolation> {
    let mut c = Contract {
        router,
        report: ContractReport {
            passed: Vec::new(),
            unsupported: Vec::new(),
        },
    };
    let caps = router.capabilities();
    let step = caps.granularity.step();
    if step == 0 || 10_000 % step != 0 {
        return Err(c.violation(
            "granularity",
            format!("step {step} bp does not divide 100 %"),
        ));
    }
    c.report.passed.push("granularity");
    let name = router.name().to_owned();
    let split = |bp: u16| {
        let bad = |detail: String| ContractViolation {
            router: name.clone(),
            check: "split",
            detail,
        };
        let weight = Weight::from_basis_points(bp).map_err(|e| bad(e.to_string()))?;
        TrafficSplit::canary(stable, candidate, weight).map_err(|e| bad(e.to_string()))
    };
    let all_stable = split(0)?;
    let finest = split(step)?;
    let all_candidate = split(10_000)?;
    c.set_and_read("all traffic to stable", &all_stable).await?;
    if step < 10_000 {
        c.set_and_read("finest split", &finest).await?;
        if 5_000 % step == 0 {
            c.set_and_read("even split", &split(5_000)?).await?;
        }
    }
    c.set_and_read("all traffic to candidate", &all_candidate)
        .await?;
    c.set_and_read("idempotent set", &all_candidate).await?;

    let header = HeaderRoute::new(
        "contract-header",
        [RouteMatch::header_exact("x-cutover-contract", "1")],
    )
    .map_err(|e| c.violation("header routes", e.to_string()))?;
    let header2 = HeaderRoute::new(
        "contract-header",
        [RouteMatch::header_exact("x-cutover-contract", "2")],
    )
    .map_err(|e| c.violation("header routes", e.to_string()))?;
    let set = router.set_header_route(&header, candidate).await;
    c.optional(
        "header routes",
        caps.header_routes,
        set,
        router.set_header_route(&header2, candidate),
        router.remove_header_route(&header.name),
        router.remove_header_route(&header.name),
    )
    .await?;

    let cookie = HeaderRoute::new(
        "contract-cookie",
        [RouteMatch::cookie_exact("cutover-contract", "1")],
    )
    .map_err(|e| c.violation("cookie routes", e.to_string()))?;
    let set = router.set_header_route(&cookie, candidate).await;
    c.optional(
        "cookie routes",
        caps.cookie_routes,
        set,
        router.set_header_route(&cookie, candidate),
        router.remove_header_route(&cookie.name),
        router.remove_header_route(&cookie.name),
    )
    .await?;

    let mirror = Mirror::new(
        "contract-mirror",
        Weight::from_percent(10).unwrap_or_default(),
        [],
    )
    .map_err(|e| c.violation("mirroring", e.to_string()))?;
    let set = router.set_mirror(&mirror, candidate).await;
    c.optional(
        "mirroring",
        caps.mirroring,
        set,
        router.set_mirror(&mirror, candidate),
        router.remove_mirror(&mirror.name),
        router.remove_mirror(&mirror.name),
    )
    .await?;

    let sticky = StickySession {
        cookie: Some("cutover-contract".into()),
        duration: std::time::Duration::from_mins(1),
    };
    let set = router.set_sticky_sessions(Some(sticky.clone())).await;
    c.optional(
        "sticky sessions",
        caps.sticky_sessions,
        set,
        router.set_sticky_sessions(Some(sticky.clone())),
        router.set_sticky_sessions(None),
        router.set_sticky_sessions(None),
    )
    .await?;

    c.set_and_read("back to stable", &all_stable).await?;
    Ok(c.report)
}

#[cfg(test)]
mod tests {
    use cutover_core::{Granularity, RouterCapabilities};

    use super::*;
    use crate::FakeRouter;

    fn revs() -> (RevisionId, RevisionId) {
        ("v1".parse().unwrap(), "v2".parse().unwrap())
    }

    #[tokio::test]
    async fn fake_router_passes_with_everything_and_with_nothing() {
        let (s, c) = revs();
        let full = router_contract(&FakeRouter::new("full"), &s, &c)
            .await
            .unwrap();
        assert!(full.unsupported.is_empty());
        assert!(full.passed.contains(&"mirroring"));

        let bare = FakeRouter::new("bare")
            .with_capabilities(RouterCapabilities::new(Granularity::ALL_OR_NOTHING));
        let report = router_contract(&bare, &s, &c).await.unwrap();
        assert_eq!(
            report.unsupported,
            [
                "header routes",
                "cookie routes",
                "mirroring",
                "sticky sessions"
            ]
        );
        assert!(bare.current().unwrap().is_all_to(&s));
    }

    #[tokio::test]
    async fn catches_a_router_whose_data_plane_does_not_follow() {
        let (s, c) = revs();
        let router = FakeRouter::new("liar");
        router.misreport(TrafficSplit::all_to(&s), 10);
        let err = router_contract(&router, &s, &c).await.unwrap_err();
        assert_eq!(err.check, "finest split");
        assert!(err.detail.contains("read back"), "{err}");
    }

    #[tokio::test]
    async fn catches_a_router_that_fails() {
        let (s, c) = revs();
        let router = FakeRouter::new("broken");
        router.faults().fail("set_mirror", ErrorKind::Permanent, 1);
        let err = router_contract(&router, &s, &c).await.unwrap_err();
        assert_eq!(err.check, "mirroring");
    }
}
