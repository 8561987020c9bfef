//! The [`TrafficRouter`] over one Unleash flag in one environment.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::time::Duration;

use async_trait::async_trait;
use cutover_core::{
    Granularity, ProviderError, RevisionId, RouterCapabilities, TrafficRouter, TrafficSplit, Weight,
};
use serde_json::{Value, json};

use crate::api::{AdminApi, FeatureEnvironment, Strategy, Variant};
use crate::token::AdminToken;

/// Unleash's name for the gradual rollout strategy.
const FLEXIBLE_ROLLOUT: &str = "flexibleRollout";

/// What the rollout moves: users between a flag's off and on, or between its variants.
#[derive(Debug, Clone)]
enum Mode {
    /// The split's `on` weight is the strategy's `rollout` percentage.
    Rollout { off: RevisionId, on: RevisionId },
    /// The flag is on for everyone (`rollout` 100) and the split is the strategy's variants.
    Variants(Vec<RevisionId>),
}

/// Builds an [`UnleashRouter`]; see [`UnleashRouter::builder`].
#[derive(Debug)]
pub struct UnleashRouterBuilder {
    url: String,
    token: AdminToken,
    flag: String,
    project: String,
    environment: String,
    stickiness: String,
    group_id: Option<String>,
    title: String,
    timeout: Duration,
    mode: Option<Mode>,
}

impl UnleashRouterBuilder {
    /// The project that holds the flag (default `default`).
    pub fn project(mut self, project: impl Into<String>) -> Self {
        self.project = project.into();
        self
    }

    /// The environment whose strategy the router drives (default `production`).
    pub fn environment(mut self, environment: impl Into<String>) -> Self {
        self.environment = environment.into();
        self
    }

    /// The context field users are bucketed by (default `default`: the user id, else the
    /// session id, else random). Unleash hashes it with the group id, so a user in at 5 % stays
    /// in at 25 %.
    pub fn stickiness(mut self, stickiness: impl Into<String>) -> Self {
        self.stickiness = stickiness.into();
        self
    }

    /// The bucketing group (default: the flag name). Flags with the same group id and
    /// percentage reach the same users.
    pub fn group_id(mut self, group_id: impl Into<String>) -> Self {
        self.group_id = Some(group_id.into());
        self
    }

    /// The title of the strategy the router owns (default `cutover`); it is created when the
    /// environment has none with this title.
    pub fn strategy_title(mut self, title: impl Into<String>) -> Self {
        self.title = title.into();
        self
    }

    /// The time one request may take (default 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Rolls the flag out: the split is between `off` (users without the flag) and `on` (users
    /// with it), and the `on` weight is the gradual rollout percentage, to the percent. At 0 %
    /// the flag is also turned off in the environment.
    pub fn rollout(mut self, off: &RevisionId, on: &RevisionId) -> Self {
        self.mode = Some(Mode::Rollout {
            off: off.clone(),
            on: on.clone(),
        });
        self
    }

    /// Splits users between the flag's variants for an A/B test: one variant per revision,
    /// named like it, weighted to the tenth of a percent; the flag is on for everyone.
    pub fn variants<'a>(mut self, revisions: impl IntoIterator<Item = &'a RevisionId>) -> Self {
        self.mode = Some(Mode::Variants(revisions.into_iter().cloned().collect()));
        self
    }

    /// The router. Fails (`Permanent`) on a bad URL or token, an empty name, no mode
    /// ([`rollout`](Self::rollout) or [`variants`](Self::variants)), or a variant listed twice.
    pub fn build(self) -> Result<UnleashRouter, ProviderError> {
        for (what, value) in [
            ("flag", &self.flag),
            ("project", &self.project),
            ("environment", &self.environment),
            ("stickiness", &self.stickiness),
            ("strategy title", &self.title),
        ] {
            if value.is_empty() {
                return Err(ProviderError::permanent(format!(
                    "the Unleash router's {what} is empty"
                )));
            }
        }
        let mode = self.mode.ok_or_else(|| {
            ProviderError::permanent(format!(
                "the Unleash router for flag `{}` needs rollout(off, on) or variants(...)",
                self.flag
            ))
        })?;
        match &mode {
            Mode::Rollout { off, on } if off == on => {
                return Err(ProviderError::permanent(format!(
                    "flag `{}`: off and on are the same revision `{on}`",
                    self.flag
                )));
            }
            Mode::Variants(vs) => {
                if vs.is_empty() {
                    return Err(ProviderError::permanent(format!(
                        "flag `{}`: variants(...) lists no revision",
                        self.flag
                    )));
                }
                if let Some((_, v)) = vs.iter().enumerate().find(|(i, v)| vs[..*i].contains(v)) {
                    return Err(ProviderError::permanent(format!(
                        "flag `{}`: variant `{v}` is listed twice",
                        self.flag
                    )));
                }
            }
            Mode::Rollout { .. } => {}
        }
        let api = AdminApi::new(&self.url, self.project.clone(), self.token, self.timeout)?;
        Ok(UnleashRouter {
            api,
            name: format!("unleash/{}/{}", self.environment, self.flag),
            group_id: self.group_id.unwrap_or_else(|| self.flag.clone()),
            flag: self.flag,
            environment: self.environment,
            stickiness: self.stickiness,
            title: self.title,
            mode,
            baseline: tokio::sync::Mutex::new(None),
        })
    }
}

/// A [`TrafficRouter`] that moves users, not requests: it drives one Unleash flag's gradual
/// rollout strategy (`flexibleRollout`, with its stickiness and group id) in one environment
/// through the admin API, or its variants for an A/B split.
///
/// - **Owns one strategy**, found by its title (`cutover` unless
///   [`strategy_title`](UnleashRouterBuilder::strategy_title) says otherwise) and created
///   when missing. Other enabled strategies in the environment would hand the flag to users
///   the split does not count, so they are an error, not something to ignore.
/// - **Reads back after every change** and keeps what it read. Before the next change it
///   reads again: if anything differs (someone moved the percentage in the Unleash UI,
///   turned the flag off, edited a constraint), the change fails `Permanent` with a conflict
///   naming both states, and nothing is overwritten. [`adopt`](Self::adopt) accepts the
///   flag as it is now. The first change after start adopts what it finds.
/// - **Rollback**: a split with the `on` revision at 0 % turns the flag off in the
///   environment, then sets the percentage to 0.
/// - The admin token is sent in `Authorization`, never shown in `Debug`, logs or errors.
///   401/403 and 404 are `Permanent`, 429 `Throttled`, 5xx and lost connections `Transient`.
///
/// ```
/// use cutover_unleash::{AdminToken, UnleashRouter};
/// let router = UnleashRouter::builder(
///     "https://unleash.example.com/",
///     AdminToken::new("*:*.s3cr3t"),
///     "checkout.new-path",
/// )
/// .environment("production")
/// .stickiness("userId")
/// .rollout(&"old".parse()?, &"new".parse()?)
/// .build()?;
/// assert!(!format!("{router:?}").contains("s3cr3t"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct UnleashRouter {
    api: AdminApi,
    name: String,
    flag: String,
    environment: String,
    stickiness: String,
    group_id: String,
    title: String,
    mode: Mode,
    /// What the last read after our own change found; `None` until the first change.
    baseline: tokio::sync::Mutex<Option<Observed>>,
}

impl fmt::Debug for UnleashRouter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnleashRouter")
            .field("api", &self.api)
            .field("flag", &self.flag)
            .field("environment", &self.environment)
            .field("stickiness", &self.stickiness)
            .field("group_id", &self.group_id)
            .field("title", &self.title)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// The flag in the environment, as far as the router cares.
#[derive(Debug, Clone, PartialEq)]
struct Observed {
    enabled: bool,
    /// The strategy the router owns.
    ours: Option<Strategy>,
    /// Other enabled strategies, by name (and title).
    others: Vec<String>,
}

impl fmt::Display for Observed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", if self.enabled { "on" } else { "off" })?;
        match &self.ours {
            None => write!(f, ", no cutover strategy")?,
            Some(s) => {
                let p = |k: &str| s.parameters.get(k).map_or("-".to_owned(), show);
                write!(
                    f,
                    ", rollout {} stickiness {} group {}",
                    p("rollout"),
                    p("stickiness"),
                    p("groupId")
                )?;
                if s.disabled == Some(true) {
                    write!(f, " (strategy disabled)")?;
                }
                if !s.variants.is_empty() {
                    let vs: Vec<String> = s
                        .variants
                        .iter()
                        .map(|v| format!("{}={}", v.name, v.weight))
                        .collect();
                    write!(f, ", variants {}", vs.join(" "))?;
                }
                if !s.constraints.is_empty() {
                    write!(f, ", {} constraint(s)", s.constraints.len())?;
                }
            }
        }
        if !self.others.is_empty() {
            write!(f, ", other strategies {}", self.others.join(" "))?;
        }
        Ok(())
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl UnleashRouter {
    /// A builder for the router of `flag`, on the Unleash at `url` (like
    /// `http://127.0.0.1:4242`, or with a path prefix), authenticated by `token`.
    pub fn builder(
        url: impl Into<String>,
        token: AdminToken,
        flag: impl Into<String>,
    ) -> UnleashRouterBuilder {
        UnleashRouterBuilder {
            url: url.into(),
            token,
            flag: flag.into(),
            project: "default".to_owned(),
            environment: "production".to_owned(),
            stickiness: "default".to_owned(),
            group_id: None,
            title: "cutover".to_owned(),
            timeout: Duration::from_secs(10),
            mode: None,
        }
    }

    /// Accepts the flag as it is now in Unleash: after a reported conflict, once a person has
    /// checked the other change, the next [`set_split`](TrafficRouter::set_split) proceeds
    /// from what it finds.
    pub async fn adopt(&self) {
        *self.baseline.lock().await = None;
    }

    fn revisions(&self) -> Vec<&RevisionId> {
        match &self.mode {
            Mode::Rollout { off, on } => vec![off, on],
            Mode::Variants(vs) => vs.iter().collect(),
        }
    }

    async fn observe(&self) -> Result<Observed, ProviderError> {
        let env: FeatureEnvironment = self.api.environment(&self.flag, &self.environment).await?;
        let mut ours = Vec::new();
        let mut others = Vec::new();
        for s in env.strategies {
            if s.title.as_deref() == Some(&self.title) {
                ours.push(s);
            } else if s.disabled != Some(true) {
                others.push(match &s.title {
                    Some(t) if !t.is_empty() => format!("{} ({t})", s.name),
                    _ => s.name.clone(),
                });
            }
        }
        if ours.len() > 1 {
            return Err(ProviderError::permanent(format!(
                "flag `{}` in `{}` has {} strategies titled `{}`; cutover owns exactly one",
                self.flag,
                self.environment,
                ours.len(),
                self.title
            )));
        }
        Ok(Observed {
            enabled: env.enabled,
            ours: ours.pop(),
            others,
        })
    }

    /// The split `observed` applies, or `None` when it cannot be told (a variant split with
    /// the flag off).
    fn split_of(&self, observed: &Observed) -> Result<Option<TrafficSplit>, ProviderError> {
        if !observed.others.is_empty() {
            return Err(ProviderError::permanent(format!(
                "flag `{}` in `{}` has strategies cutover does not manage ({}); they give the \
                 flag to users the split does not count: remove or disable them",
                self.flag,
                self.environment,
                observed.others.join(", ")
            )));
        }
        let active = observed
            .ours
            .as_ref()
            .filter(|s| observed.enabled && s.disabled != Some(true));
        let rollout = active.map(|s| self.rollout_of(s)).transpose()?;
        match &self.mode {
            Mode::Rollout { off, on } => {
                let percent = rollout.unwrap_or(0);
                let weight = Weight::from_percent(percent)
                    .map_err(|e| ProviderError::permanent(e.to_string()))?;
                TrafficSplit::canary(off, on, weight)
                    .map(Some)
                    .map_err(|e| ProviderError::permanent(e.to_string()))
            }
            Mode::Variants(revisions) => {
                let Some(strategy) = active else {
                    return Ok(None);
                };
                if rollout != Some(100) {
                    return Err(self.unexpected(observed, "a variant split needs rollout 100"));
                }
                let mut weights = BTreeMap::new();
                for v in &strategy.variants {
                    let known = revisions.iter().find(|r| r.as_str() == v.name);
                    let (Some(revision), Ok(w)) = (known, u16::try_from(v.weight)) else {
                        return Err(self.unexpected(observed, "a variant cutover does not know"));
                    };
                    let weight = w
                        .checked_mul(10)
                        .and_then(|bp| Weight::from_basis_points(bp).ok())
                        .ok_or_else(|| self.unexpected(observed, "a variant weight over 1000"))?;
                    weights.insert(revision.clone(), weight);
                }
                TrafficSplit::new(weights)
                    .map(Some)
                    .map_err(|e| self.unexpected(observed, &e.to_string()))
            }
        }
    }

    fn rollout_of(&self, s: &Strategy) -> Result<u8, ProviderError> {
        let value = s.parameters.get("rollout");
        value
            .and_then(|v| match v {
                Value::String(t) => t.trim().parse::<u8>().ok(),
                Value::Number(n) => n.as_u64().and_then(|n| u8::try_from(n).ok()),
                _ => None,
            })
            .filter(|p| *p <= 100)
            .ok_or_else(|| {
                ProviderError::permanent(format!(
                    "flag `{}` in `{}`: the rollout parameter of strategy `{}` is {}, not a \
                     percentage from 0 to 100",
                    self.flag,
                    self.environment,
                    self.title,
                    value.map_or("missing".to_owned(), show)
                ))
            })
    }

    fn unexpected(&self, observed: &Observed, problem: &str) -> ProviderError {
        ProviderError::permanent(format!(
            "flag `{}` in `{}` is set up in a way cutover cannot read as a split ({problem}): {observed}",
            self.flag, self.environment
        ))
    }

    /// The strategy parameters and variants for `split`, and whether the flag is on.
    fn desired(
        &self,
        split: &TrafficSplit,
    ) -> Result<(Value, Option<Vec<Variant>>, bool), ProviderError> {
        let revisions = self.revisions();
        if let Some((r, _)) = split.iter().find(|(r, _)| !revisions.contains(r)) {
            let names: Vec<&str> = revisions.iter().map(|r| r.as_str()).collect();
            return Err(ProviderError::permanent(format!(
                "flag `{}`: the split names `{r}`, which is none of the router's revisions ({})",
                self.flag,
                names.join(", ")
            )));
        }
        if let Some((r, w)) = self.capabilities().granularity.first_inexpressible(split) {
            return Err(ProviderError::permanent(format!(
                "flag `{}`: Unleash cannot express {w} for `{r}` (steps of {})",
                self.flag,
                self.capabilities().granularity.step()
            )));
        }
        let parameters = |rollout: u16| {
            json!({
                "rollout": rollout.to_string(),
                "stickiness": self.stickiness,
                "groupId": self.group_id,
            })
        };
        Ok(match &self.mode {
            Mode::Rollout { on, .. } => {
                let percent = split.weight(on).basis_points() / 100;
                (parameters(percent), None, percent > 0)
            }
            Mode::Variants(revisions) => {
                let last = revisions.len() - 1;
                let variants = revisions
                    .iter()
                    .enumerate()
                    .map(|(i, r)| Variant {
                        name: r.as_str().to_owned(),
                        weight: u32::from(split.weight(r).basis_points() / 10),
                        // Unleash wants one `variable` variant; with fixed weights adding up
                        // to 1000 it gets exactly its own weight.
                        weight_type: Some(if i == last { "variable" } else { "fix" }.to_owned()),
                        stickiness: Some(self.stickiness.clone()),
                    })
                    .collect();
                (parameters(100), Some(variants), true)
            }
        })
    }

    async fn write(
        &self,
        observed: &Observed,
        parameters: Value,
        variants: Option<Vec<Variant>>,
        on: bool,
    ) -> Result<(), ProviderError> {
        let (flag, env) = (&self.flag, &self.environment);
        if !on && observed.enabled {
            // Rollback: nobody gets the flag from the first call on.
            self.api.set_enabled(flag, env, false).await?;
        }
        match observed.ours.as_ref().and_then(|s| s.id.as_deref()) {
            None => {
                let strategy = Strategy {
                    id: None,
                    name: FLEXIBLE_ROLLOUT.to_owned(),
                    title: Some(self.title.clone()),
                    disabled: Some(false),
                    parameters: serde_json::from_value(parameters).unwrap_or_default(),
                    constraints: Vec::new(),
                    variants: variants.unwrap_or_default(),
                };
                self.api.add_strategy(flag, env, &strategy).await?;
            }
            Some(id) => {
                let mut ops = vec![
                    json!({"op": "replace", "path": "/parameters", "value": parameters}),
                    json!({"op": "replace", "path": "/disabled", "value": false}),
                ];
                if let Some(variants) = variants {
                    ops.push(json!({"op": "replace", "path": "/variants", "value": variants}));
                }
                self.api
                    .patch_strategy(flag, env, id, Value::Array(ops))
                    .await?;
            }
        }
        if on && !observed.enabled {
            self.api.set_enabled(flag, env, true).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl TrafficRouter for UnleashRouter {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> RouterCapabilities {
        RouterCapabilities::new(match self.mode {
            Mode::Rollout { .. } => Granularity::PERCENT,
            // Variant weights are per mille.
            Mode::Variants(_) => Granularity::new(10).unwrap_or(Granularity::PERCENT),
        })
    }

    async fn set_split(&self, split: &TrafficSplit) -> Result<(), ProviderError> {
        let (parameters, variants, on) = self.desired(split)?;
        let mut baseline = self.baseline.lock().await;
        let observed = self.observe().await?;
        if let Some(last) = baseline.as_ref()
            && *last != observed
        {
            return Err(ProviderError::permanent(format!(
                "conflict: flag `{}` in `{}` was changed by someone else since cutover set it \
                 (cutover left it {last}; it is now {observed}); cutover does not overwrite \
                 others' changes: check who changed it, then adopt it or end the rollout",
                self.flag, self.environment
            )));
        }
        self.split_of(&observed)?;
        // A write that fails half way leaves a state we did not read: the next change adopts it.
        *baseline = None;
        self.write(&observed, parameters, variants, on).await?;
        let after = self.observe().await?;
        let actual = self.split_of(&after)?;
        if !actual.as_ref().is_some_and(|a| a.same_traffic(split)) {
            let mut shown = String::new();
            match &actual {
                Some(a) => write!(shown, "{a}"),
                None => write!(shown, "no split"),
            }
            .ok();
            return Err(ProviderError::transient(format!(
                "flag `{}` in `{}` reads back as {shown} ({after}) after cutover set {split}",
                self.flag, self.environment
            )));
        }
        tracing::info!(router = %self.name, %split, "unleash flag set");
        *baseline = Some(after);
        Ok(())
    }

    async fn current_split(&self) -> Result<Option<TrafficSplit>, ProviderError> {
        let observed = self.observe().await?;
        self.split_of(&observed)
    }
}
