//! Loading and saving [`PipelineState`] as the pipeline's document, compare-and-swap.

use cutover_core::{RolloutId, StateStore, StoreError};

use crate::error::PipelineError;
use crate::state::{PIPELINE_FORMAT, PipelineState};

/// The document kind pipelines are stored under.
pub const DOCUMENT_KIND: &str = "pipeline";

/// How often an update reads again after a conflicting save before it gives up.
const TRIES: u32 = 16;

/// The stored state and its version (`None`: never saved; the state is then empty).
pub(crate) async fn load(
    store: &dyn StateStore,
    id: &RolloutId,
) -> Result<(PipelineState, Option<u64>), PipelineError> {
    let doc = store
        .load_document(DOCUMENT_KIND, id)
        .await
        .map_err(|source| PipelineError::Store {
            id: id.clone(),
            source,
        })?;
    let Some(doc) = doc else {
        return Ok((PipelineState::new(), None));
    };
    let state: PipelineState =
        serde_json::from_value(doc.body).map_err(|source| PipelineError::Corrupt {
            id: id.clone(),
            source,
        })?;
    if state.format != PIPELINE_FORMAT {
        return Err(PipelineError::Format {
            id: id.clone(),
            found: state.format,
            expected: PIPELINE_FORMAT,
        });
    }
    Ok((state, Some(doc.version)))
}

/// Reads the state, lets `change` edit it, and saves it with the version read; on a conflict
/// reads again and calls `change` again. `change` returns `None` to save nothing.
pub(crate) async fn update<T>(
    store: &dyn StateStore,
    id: &RolloutId,
    mut change: impl FnMut(&mut PipelineState) -> Result<Option<T>, PipelineError>,
) -> Result<Option<T>, PipelineError> {
    for _ in 0..TRIES {
        let (mut state, version) = load(store, id).await?;
        let Some(result) = change(&mut state)? else {
            return Ok(None);
        };
        let body = serde_json::to_value(&state).map_err(|source| PipelineError::Corrupt {
            id: id.clone(),
            source,
        })?;
        match store.save_document(DOCUMENT_KIND, id, &body, version).await {
            Ok(_) => return Ok(Some(result)),
            Err(StoreError::Conflict { .. }) => {}
            Err(source) => {
                return Err(PipelineError::Store {
                    id: id.clone(),
                    source,
                });
            }
        }
    }
    Err(PipelineError::Contended {
        id: id.clone(),
        tries: TRIES,
    })
}
