//! Pipeline notices, read from each pipeline's `pipeline` document: one per entry of a stage's
//! history worth telling, in history order.

use cutover_core::{ErrorKind, RolloutId, StateStore, StoreError, Summary};
use cutover_pipeline::{DOCUMENT_KIND, Event, PipelineState, PromotionKind};

use crate::notice::{Notice, NoticeKind, PipelineRef, RolloutInfo, Severity};
use crate::release::Release;

const PAGE: usize = 100;

/// Every pipeline in `store` with its state, in id order. A store that keeps no documents has
/// none; a document that does not read as a pipeline state is skipped with a warning.
pub(crate) async fn pipelines(
    store: &dyn StateStore,
) -> Result<Vec<(RolloutId, PipelineState)>, StoreError> {
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let page = match store
            .list_documents(DOCUMENT_KIND, after.clone(), PAGE)
            .await
        {
            Ok(page) => page,
            Err(StoreError::Provider(e)) if e.kind() == ErrorKind::Unsupported => return Ok(all),
            Err(e) => return Err(e),
        };
        let done = page.len() < PAGE;
        after = page.last().map(|(id, _)| id.clone());
        for (id, doc) in page {
            match serde_json::from_value::<PipelineState>(doc.body) {
                Ok(state) => all.push((id, state)),
                Err(e) => {
                    tracing::warn!(pipeline = %id, error = %e, "pipeline document unreadable; no notices from it");
                }
            }
        }
        if done {
            return Ok(all);
        }
    }
}

/// The cursor key of a stage (rollout ids cannot hold `:`, so it meets none of theirs).
pub(crate) fn cursor_key(pipeline: &RolloutId, stage: &str) -> String {
    format!("pipeline:{pipeline}/{stage}")
}

/// The notices of `stage`'s history entries after position `acked` (positions count from 1),
/// with their positions, and the position of the last entry.
pub(crate) async fn stage_notices(
    store: &dyn StateStore,
    pipeline: &RolloutId,
    state: &PipelineState,
    stage: &str,
    acked: u64,
) -> Result<(Vec<(u64, Notice)>, u64), StoreError> {
    let stage_state = state.stage(stage);
    let history = &stage_state.history;
    let mut notices = Vec::new();
    for (i, entry) in history.iter().enumerate() {
        let position = i as u64 + 1;
        if position <= acked {
            continue;
        }
        // The promotion this entry belongs to: the latest start of the same freight here.
        let Some((rollout, kind)) = history[..=i].iter().rev().find_map(|h| match &h.event {
            Event::Started { rollout, kind } if h.freight == entry.freight => {
                Some((rollout, *kind))
            }
            _ => None,
        }) else {
            continue; // adopted freight: nothing was promoted
        };
        let name = state
            .freight(&entry.freight)
            .map_or_else(|| entry.freight.to_string(), |f| f.freight.name.clone());
        let (notice_kind, severity, summary, reason, by) = match &entry.event {
            Event::Started {
                kind: PromotionKind::Forward,
                ..
            } => {
                // Approved or rejected later, or waiting now: this promotion asked a person.
                let next = history[i + 1..]
                    .iter()
                    .take_while(|h| !matches!(h.event, Event::Started { .. }))
                    .any(|h| matches!(h.event, Event::Approval(_)));
                let gate = stage_state
                    .promotion
                    .as_ref()
                    .filter(|p| &p.rollout == rollout)
                    .and_then(|p| p.approval.clone());
                if !next && gate.is_none() {
                    continue;
                }
                (
                    NoticeKind::AwaitingApproval,
                    Severity::Info,
                    format!("promoting {name} to {stage} waits for an approval"),
                    gate.map(|g| format!("gate `{g}`")),
                    None,
                )
            }
            Event::Approval(a) if !a.approved => (
                NoticeKind::FreightBlocked,
                Severity::Warning,
                format!("{name} rejected for {stage} by {}", a.by),
                Some(a.reason.clone()).filter(|r| !r.is_empty()),
                Some(a.by.clone()),
            ),
            Event::RolledOut if kind == PromotionKind::Rollback => (
                NoticeKind::StageRolledBack,
                Severity::Critical,
                format!("{stage} rolled back to {name}"),
                None,
                None,
            ),
            Event::RolledOut => (
                NoticeKind::StagePromoted,
                Severity::Info,
                format!("{name} promoted to {stage}"),
                None,
                None,
            ),
            Event::Verified => (
                NoticeKind::StageVerified,
                Severity::Info,
                format!("{name} verified in {stage}"),
                None,
                None,
            ),
            Event::Failed { reason } => (
                NoticeKind::FreightFailed,
                Severity::Critical,
                format!("{name} failed in {stage}"),
                Some(reason.clone()),
                None,
            ),
            _ => continue,
        };
        let Some(stored) = store.load(rollout).await? else {
            tracing::warn!(pipeline = %pipeline, stage, rollout = %rollout, "the stage's rollout is not in the store; no notice");
            continue;
        };
        let summary_of = Summary::of(&stored.state, stored.version, None);
        let release = Release::load_if_kept(store, rollout).await?;
        let mut info = RolloutInfo::of(&summary_of, release.as_ref());
        if info.environment.is_none() {
            info.environment = Some(stage.to_owned());
        }
        notices.push((
            position,
            Notice {
                id: format!("{pipeline}/{stage}/{position}"),
                kind: notice_kind,
                severity,
                phase: summary_of.phase,
                rollout: info,
                seq: position,
                at: entry.at,
                step: None,
                split: None,
                summary,
                reason,
                by,
                link: None,
                pipeline: Some(PipelineRef {
                    pipeline: pipeline.to_string(),
                    stage: stage.to_owned(),
                    freight: entry.freight.to_string(),
                    freight_name: name,
                }),
            },
        ));
    }
    Ok((notices, history.len() as u64))
}
