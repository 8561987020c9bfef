//! Walking a store's rollouts, a page at a time.

use cutover_core::state::Phase;
use cutover_core::{ListFilter, StateStore, StoreError, Summary};

/// Every rollout in `store` in id order (only those in `phases`, unless empty).
pub(crate) async fn summaries(
    store: &dyn StateStore,
    phases: &[Phase],
) -> Result<Vec<Summary>, StoreError> {
    let mut all = Vec::new();
    loop {
        let filter = ListFilter {
            phases: phases.to_vec(),
            after: all.last().map(|s: &Summary| s.id.clone()),
            ..ListFilter::default()
        };
        let page = store.list(&filter).await?;
        let done = page.len() < filter.limit;
        all.extend(page);
        if done {
            return Ok(all);
        }
    }
}
