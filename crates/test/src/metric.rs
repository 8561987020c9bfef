use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use async_trait::async_trait;
use cutover_core::{MetricQuery, MetricSource, ProviderError, RevisionId, Samples};
use parking_lot::Mutex;

use crate::Faults;

/// A [`MetricSource`] that answers from scripts keyed by query and revision: each query takes
/// the next answer and the last repeats. Unscripted queries return no data (empty samples), as
/// a real source with no data does. Operation for [`Faults`]: `query`.
///
/// ```
/// use cutover_core::{RevisionId, Samples};
/// use cutover_test::ScriptedMetricSource;
/// let v2: RevisionId = "v2".parse().unwrap();
/// let errors = ScriptedMetricSource::new("proxy");
/// errors.script("error_ratio", &v2, [Samples::Counts { events: 1, total: 1000 }]);
/// ```
#[derive(Debug, Clone)]
pub struct ScriptedMetricSource {
    name: String,
    faults: Faults,
    world: Arc<Mutex<MetricWorld>>,
}

#[derive(Debug, Default)]
struct MetricWorld {
    scripts: BTreeMap<(String, RevisionId), VecDeque<Samples>>,
    queries: Vec<MetricQuery>,
}

impl ScriptedMetricSource {
    /// A source called `name` with no scripts.
    pub fn new(name: impl Into<String>) -> Self {
        ScriptedMetricSource {
            name: name.into(),
            faults: Faults::default(),
            world: Arc::default(),
        }
    }

    /// `query` for `revision` returns these answers in turn; the last repeats.
    pub fn script(
        &self,
        query: &str,
        revision: &RevisionId,
        answers: impl IntoIterator<Item = Samples>,
    ) {
        self.world.lock().scripts.insert(
            (query.to_owned(), revision.clone()),
            answers.into_iter().collect(),
        );
    }

    /// `query` for `revision` returns `samples` from now on.
    pub fn set(&self, query: &str, revision: &RevisionId, samples: Samples) {
        self.script(query, revision, [samples]);
    }

    /// The injected errors.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Every query received, in order.
    pub fn queries(&self) -> Vec<MetricQuery> {
        self.world.lock().queries.clone()
    }
}

#[async_trait]
impl MetricSource for ScriptedMetricSource {
    fn name(&self) -> &str {
        &self.name
    }

    async fn query(&self, query: &MetricQuery) -> Result<Samples, ProviderError> {
        self.world.lock().queries.push(query.clone());
        self.faults.check("query")?;
        let mut world = self.world.lock();
        let key = (query.query.clone(), query.revision.clone());
        let Some(script) = world.scripts.get_mut(&key) else {
            return Ok(Samples::empty());
        };
        let samples = if script.len() > 1 {
            script.pop_front()
        } else {
            script.front().cloned()
        };
        Ok(samples.unwrap_or_else(Samples::empty))
    }
}
