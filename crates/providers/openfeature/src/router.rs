//! The [`TrafficRouter`] over one in-process flag.

use async_trait::async_trait;
use cutover_core::{Granularity, ProviderError, RouterCapabilities, TrafficRouter, TrafficSplit};

use crate::flags::{FlagError, Flags};

/// Moves users between the variants of one flag of [`Flags`]: a rollout's split becomes the
/// flag's weights, at basis-point granularity, effective for the next evaluation. The split's
/// revisions are the flag's variants (for a boolean flag, its `off` and `on` revisions).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use cutover_core::{TrafficRouter, TrafficSplit, Weight};
/// use cutover_openfeature::{FlagDefinition, FlagRouter, Flags};
/// let flags = Flags::new();
/// flags.define(FlagDefinition::boolean("new-path", "old", "new")?)?;
/// let router = FlagRouter::new(flags.clone(), "new-path");
/// let five = TrafficSplit::canary(&"old".parse()?, &"new".parse()?, Weight::from_percent(5)?)?;
/// router.set_split(&five).await?;
/// assert_eq!(router.current_split().await?, Some(five));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct FlagRouter {
    flags: Flags,
    key: String,
    name: String,
}

impl FlagRouter {
    /// A router for flag `key` of `flags`. The flag must be defined by the time the rollout
    /// first sets a split.
    pub fn new(flags: Flags, key: impl Into<String>) -> Self {
        let key = key.into();
        FlagRouter {
            flags,
            name: format!("openfeature/{key}"),
            key,
        }
    }
}

fn classify(e: &FlagError) -> ProviderError {
    // Every flag error here is a mistake in the setup that a retry cannot fix.
    ProviderError::permanent(e.to_string())
}

#[async_trait]
impl TrafficRouter for FlagRouter {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> RouterCapabilities {
        RouterCapabilities::new(Granularity::BASIS_POINT)
    }

    async fn set_split(&self, split: &TrafficSplit) -> Result<(), ProviderError> {
        self.flags
            .set_split(&self.key, split)
            .map_err(|e| classify(&e))
    }

    async fn current_split(&self) -> Result<Option<TrafficSplit>, ProviderError> {
        self.flags
            .split(&self.key)
            .map(Some)
            .map_err(|e| classify(&e))
    }
}

#[cfg(test)]
mod tests {
    use cutover_core::ErrorKind;
    use cutover_test::router_contract;

    use super::*;
    use crate::FlagDefinition;

    #[tokio::test]
    async fn passes_the_router_contract() {
        let flags = Flags::new();
        flags
            .define(FlagDefinition::boolean("f", "v1", "v2").unwrap())
            .unwrap();
        let router = FlagRouter::new(flags.clone(), "f");
        let report = router_contract(&router, &"v1".parse().unwrap(), &"v2".parse().unwrap())
            .await
            .unwrap();
        assert_eq!(report.unsupported.len(), 4, "{report}");
        assert!(flags.evaluate("f", None).unwrap().variant().as_str() == "v1");
    }

    #[tokio::test]
    async fn an_undefined_flag_or_a_foreign_revision_is_permanent() {
        let flags = Flags::new();
        let router = FlagRouter::new(flags.clone(), "missing");
        let all_v1 = TrafficSplit::all_to(&"v1".parse().unwrap());
        let err = router.set_split(&all_v1).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Permanent);
        assert!(err.message().contains("no flag `missing`"), "{err}");
        flags
            .define(FlagDefinition::boolean("missing", "off", "on").unwrap())
            .unwrap();
        let err = router.set_split(&all_v1).await.unwrap_err();
        assert!(err.message().contains("no variant `v1`"), "{err}");
    }
}
