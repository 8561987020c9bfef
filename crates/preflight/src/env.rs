//! Required environment variables.

use async_trait::async_trait;
use cutover_core::checklist::{Check, CheckContext, CheckResult};
use serde::Deserialize;

/// Environment variables are set and not empty. Only their names are ever reported, never
/// their values.
///
/// ```yaml
/// env: { names: [DATABASE_URL, API_TOKEN] }
/// ```
#[derive(Debug, Clone)]
pub struct EnvCheck {
    names: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EnvParams {
    names: Vec<String>,
}

impl EnvCheck {
    /// Checks that each of `names` is set.
    pub fn new(names: impl IntoIterator<Item = impl Into<String>>) -> Self {
        EnvCheck {
            names: names.into_iter().map(Into::into).collect(),
        }
    }

    pub(crate) fn from_params(p: EnvParams) -> Result<Self, (String, String)> {
        if p.names.is_empty() {
            return Err(("names".into(), "name at least one variable".into()));
        }
        Ok(EnvCheck::new(p.names))
    }
}

#[async_trait]
impl Check for EnvCheck {
    async fn run(&self, _ctx: &CheckContext) -> CheckResult {
        let missing: Vec<&str> = self
            .names
            .iter()
            .filter(|n| std::env::var_os(n.as_str()).is_none_or(|v| v.is_empty()))
            .map(String::as_str)
            .collect();
        let result = if missing.is_empty() {
            CheckResult::pass(format!("all {} variables are set", self.names.len()))
        } else {
            CheckResult::fail(format!("not set: {}", missing.join(", ")))
                .hint("set them in the deployment's environment (secret store, config map)")
        };
        result
            .evidence("required", &self.names)
            .evidence("missing", missing)
    }
}
