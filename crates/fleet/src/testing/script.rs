//! Scripted rollouts and the providers that play them: a ten-step canary whose analyses pass
//! or fail as its spec's parameters say, a router that keeps calls in memory, and one that
//! records every call with its fencing token in a PostgreSQL table.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cutover_core::{
    Analysis, AnalysisContext, AnalysisResult, AnalysisRun, Canary, CanaryStep, Granularity, Plan,
    ProviderError, RetryPolicy, Revisions, RolloutId, RouterCapabilities, TrafficRouter,
    TrafficSplit, Verdict,
};
use parking_lot::Mutex;
use tokio::time::Instant;

use crate::fence::FenceToken;
use crate::pg::sql::big;
use crate::{PgStateStore, ProviderContext, ProviderNames, RolloutSpec};

/// The name the scripted analysis and routers are offered under.
pub const SCRIPTED: &str = "scripted";

/// The scale benchmark's ten-step canary (`benches`' `ten_step_canary`: five weights, each
/// followed by an analysis of `count` measurements), with analyses `a1`..`a5` measured every
/// `interval` instead of every minute, so that it runs in real time.
pub fn ten_step_plan(count: u32, interval: Duration) -> Plan {
    let mut steps = Vec::new();
    for (i, percent) in [5, 10, 25, 50, 75].into_iter().enumerate() {
        steps.push(CanaryStep::set_weight(percent).expect("a valid weight"));
        steps.push(CanaryStep::Analysis(
            AnalysisRun::new(format!("a{}", i + 1))
                .with_count(count)
                .with_interval(interval),
        ));
    }
    Plan::new(Canary::new(steps)).with_retry(RetryPolicy {
        jitter: 0.0,
        ..RetryPolicy::default()
    })
}

/// A spec of [`ten_step_plan`] on the router `router` and the [`ScriptedVerdicts`] analysis;
/// with `fail_at` (`a1`..`a5`), that analysis fails and the rollout rolls back there.
pub fn scripted_spec(id: &str, plan: &Plan, router: &str, fail_at: Option<&str>) -> RolloutSpec {
    let providers = ProviderNames {
        routers: vec![router.to_owned()],
        analyses: (1..=5)
            .map(|i| (format!("a{i}"), SCRIPTED.to_owned()))
            .collect(),
        ..ProviderNames::default()
    };
    RolloutSpec::new(
        RolloutId::new(id).expect("a valid rollout id"),
        Revisions::new("v1", "v2").expect("valid revisions"),
        plan.clone(),
        providers,
    )
    .with_params(serde_json::json!({ "fail_at": fail_at }))
}

/// An analysis whose verdict is a function of the spec's `fail_at` parameter and the analysis
/// measured: the same on every worker and after every takeover.
#[derive(Debug, Clone)]
pub struct ScriptedVerdicts {
    fail_at: Option<String>,
}

impl ScriptedVerdicts {
    /// The analysis for a rollout whose spec parameters are `params`.
    pub fn from_params(params: &serde_json::Value) -> Self {
        ScriptedVerdicts {
            fail_at: params
                .get("fail_at")
                .and_then(|v| v.as_str())
                .map(str::to_owned),
        }
    }

    /// The factory a worker offers.
    pub fn factory(ctx: &ProviderContext) -> Result<Arc<dyn Analysis>, ProviderError> {
        Ok(Arc::new(Self::from_params(&ctx.params)))
    }
}

#[async_trait]
impl Analysis for ScriptedVerdicts {
    async fn evaluate(&self, ctx: &AnalysisContext) -> Result<AnalysisResult, ProviderError> {
        Ok(if self.fail_at.as_deref() == Some(ctx.analysis.as_str()) {
            AnalysisResult::new(
                Verdict::Fail,
                format!("scripted failure at {}", ctx.analysis),
            )
        } else {
            AnalysisResult::new(Verdict::Pass, "scripted pass")
        })
    }
}

/// A scripted spec as a rollout of this process on `store`, with an in-memory router and the
/// scripted analysis: the single-process run of the same script.
pub fn single_process_rollout(
    spec: &RolloutSpec,
    store: &cutover_core::MemoryStateStore,
) -> cutover_core::Rollout {
    let ctx = ProviderContext {
        rollout: spec.id.clone(),
        revisions: spec.revisions.clone(),
        params: spec.params.clone(),
        fence: FenceToken {
            rollout: spec.id.clone(),
            owner: "single-process".into(),
            epoch: 1,
        },
    };
    let router = MemoryRouters::default().factory();
    let mut builder = cutover_core::Rollout::builder(spec.id.as_str(), spec.plan.clone())
        .revisions(
            spec.revisions.stable.as_str(),
            spec.revisions.candidate.as_str(),
        )
        .router(router(&ctx).expect("a router"))
        .state_store(store.clone());
    for name in spec.providers.analyses.keys() {
        builder = builder.analysis(name.clone(), ScriptedVerdicts::from_params(&spec.params));
    }
    builder.build().expect("a valid rollout")
}

/// One call a router received.
#[derive(Debug, Clone)]
pub struct Call {
    /// The rollout.
    pub rollout: RolloutId,
    /// The caller's fencing token's epoch.
    pub epoch: u64,
    /// The caller's fencing token's owner: the worker.
    pub owner: String,
    /// The split set.
    pub split: TrafficSplit,
    /// When, on the process's monotonic clock.
    pub at: Instant,
}

/// Routers that keep every split set, in memory, for all rollouts of a process.
#[derive(Debug, Clone, Default)]
pub struct MemoryRouters {
    calls: Arc<Mutex<Vec<Call>>>,
}

impl MemoryRouters {
    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().clone()
    }

    /// The factory a worker offers: one router per rollout, keeping its calls here.
    pub fn factory(
        &self,
    ) -> impl Fn(&ProviderContext) -> Result<Arc<dyn TrafficRouter>, ProviderError> + Send + Sync + 'static
    {
        let calls = self.calls.clone();
        move |ctx: &ProviderContext| {
            Ok(Arc::new(MemoryRouter {
                token: ctx.fence.clone(),
                calls: calls.clone(),
                current: Mutex::new(None),
            }) as Arc<dyn TrafficRouter>)
        }
    }
}

#[derive(Debug)]
struct MemoryRouter {
    token: FenceToken,
    calls: Arc<Mutex<Vec<Call>>>,
    current: Mutex<Option<TrafficSplit>>,
}

#[async_trait]
impl TrafficRouter for MemoryRouter {
    fn name(&self) -> &'static str {
        "memory"
    }
    fn capabilities(&self) -> RouterCapabilities {
        RouterCapabilities::new(Granularity::BASIS_POINT)
    }
    async fn set_split(&self, split: &TrafficSplit) -> Result<(), ProviderError> {
        self.calls.lock().push(Call {
            rollout: self.token.rollout.clone(),
            epoch: self.token.epoch,
            owner: self.token.owner.clone(),
            split: split.clone(),
            at: Instant::now(),
        });
        *self.current.lock() = Some(split.clone());
        Ok(())
    }
    async fn current_split(&self) -> Result<Option<TrafficSplit>, ProviderError> {
        Ok(self.current.lock().clone())
    }
}

/// The table the recording router writes; created by [`RecordingRouter::create_table`].
pub const CALLS_TABLE: &str = "chaos_router_calls";

/// A router whose backend is a table: every call is recorded with the caller's worker and
/// fencing token, and accepted only if that token's lease is the rollout's current one and
/// live, as a backend that checks fencing tokens does. It cannot read the split back.
#[derive(Debug)]
pub struct RecordingRouter {
    store: PgStateStore,
    token: FenceToken,
    worker: String,
}

impl RecordingRouter {
    /// Creates the calls table.
    pub async fn create_table(store: &PgStateStore) -> Result<(), cutover_core::StoreError> {
        store
            .db()
            .query(
                "creating the calls table",
                "CREATE TABLE IF NOT EXISTS chaos_router_calls ( \
                   seq bigserial PRIMARY KEY, \
                   rollout text COLLATE \"C\" NOT NULL, \
                   epoch bigint NOT NULL, \
                   worker text NOT NULL, \
                   pid bigint NOT NULL, \
                   candidate_bp integer NOT NULL, \
                   accepted boolean NOT NULL, \
                   at timestamptz NOT NULL DEFAULT clock_timestamp())",
                &[],
            )
            .await?;
        Ok(())
    }

    /// The factory a worker called `worker` offers.
    pub fn factory(
        store: PgStateStore,
        worker: String,
    ) -> impl Fn(&ProviderContext) -> Result<Arc<dyn TrafficRouter>, ProviderError> + Send + Sync + 'static
    {
        move |ctx: &ProviderContext| {
            Ok(Arc::new(RecordingRouter {
                store: store.clone(),
                token: ctx.fence.clone(),
                worker: worker.clone(),
            }) as Arc<dyn TrafficRouter>)
        }
    }
}

#[async_trait]
impl TrafficRouter for RecordingRouter {
    fn name(&self) -> &'static str {
        "recording"
    }
    fn capabilities(&self) -> RouterCapabilities {
        RouterCapabilities::new(Granularity::BASIS_POINT)
    }
    async fn set_split(&self, split: &TrafficSplit) -> Result<(), ProviderError> {
        let candidate = split
            .iter()
            .filter(|(revision, _)| revision.as_str() == "v2")
            .map(|(_, w)| i32::from(w.basis_points()))
            .sum::<i32>();
        let row = self
            .store
            .db()
            .query_opt(
                "recording a router call",
                "INSERT INTO chaos_router_calls (rollout, epoch, worker, pid, candidate_bp, accepted) \
                 SELECT $1, $2, $3, $6, $4, \
                   coalesce((SELECT lease_owner = $5 AND lease_epoch = $2 \
                               AND lease_deadline > now() \
                             FROM cutover_rollouts WHERE id = $1), false) \
                 RETURNING accepted",
                &[
                    &self.token.rollout.as_str(),
                    &big(self.token.epoch),
                    &self.worker,
                    &candidate,
                    &self.token.owner,
                    &i64::from(std::process::id()),
                ],
            )
            .await
            .map_err(|e| ProviderError::transient("the recording router's table failed").with_source(e))?;
        if row.is_some_and(|r| r.get::<_, bool>(0)) {
            Ok(())
        } else {
            Err(ProviderError::transient(format!(
                "refused a stale fencing token (epoch {})",
                self.token.epoch
            )))
        }
    }
    async fn current_split(&self) -> Result<Option<TrafficSplit>, ProviderError> {
        Ok(None)
    }
}
