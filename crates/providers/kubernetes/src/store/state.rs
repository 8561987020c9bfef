//! A rollout's state ConfigMap: load, compare-and-swap save, listing by metadata, and the
//! layout of cutover 0.1 refused.

use std::fmt::Write as _;

use cutover_core::state::Phase;
use cutover_core::store::kit::{check_format, check_version, decode_state};
use cutover_core::{ListFilter, RolloutId, RolloutState, StoreError, Stored, Summary};
use cutover_kube::is_conflict;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ListParams, ObjectMeta};

use super::journal::Part;
use super::{
    CONFIGMAPS, ConfigMapStateStore, LIST_PAGE, Objects, PART_LABEL, PHASE_LABEL,
    ROLLOUT_ID_ANNOTATION, ROLLOUT_LABEL, STATE_KEY, SUMMARY_ANNOTATION, VERSION_ANNOTATION,
    WRITE_ATTEMPTS, annotation, corrupt,
};
use crate::names::fnv1a;

/// Every phase, to select by phase.
const PHASES: [Phase; 6] = [
    Phase::PreFlight,
    Phase::Expanding,
    Phase::Progressing,
    Phase::Promoting,
    Phase::RollingBack,
    Phase::Done,
];

/// The value of [`PHASE_LABEL`] for a phase: its name in JSON (`pre_flight`, `done`...).
fn phase_label(phase: Phase) -> String {
    match serde_json::to_value(phase) {
        Ok(serde_json::Value::String(name)) => name,
        _ => phase.to_string(),
    }
}

/// The ConfigMap name cutover 0.1 gave a rollout's state.
fn legacy_name(prefix: &str, raw: &str) -> String {
    const MAX: usize = 253;
    let mut name: String = raw
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '-' | '.' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '-',
        })
        .collect();
    if name != raw || prefix.len() + name.len() > MAX {
        let hash = fnv1a(raw.as_bytes());
        name.truncate(MAX.saturating_sub(prefix.len() + 17));
        name = format!("{}-{hash:016x}", name.trim_end_matches(['-', '.']));
    }
    let name = format!("{prefix}{}", name.trim_matches(['-', '.']));
    name.trim_end_matches(['-', '.']).to_owned()
}

impl ConfigMapStateStore {
    async fn get_configmap(&self, name: &str) -> Result<Option<ConfigMap>, StoreError> {
        self.configmaps
            .get_opt(name)
            .await
            .map_err(|e| self.failed(e, "get", CONFIGMAPS, name))
    }

    pub(super) async fn load_state(&self, objects: &Objects) -> Result<Option<Stored>, StoreError> {
        let Some(cm) = self.get_configmap(&objects.state).await? else {
            self.refuse_legacy_elsewhere(objects).await?;
            return Ok(None);
        };
        let version = self.stored_version(objects, &cm)?;
        let json = cm
            .data
            .as_ref()
            .and_then(|d| d.get(STATE_KEY))
            .map_or("", String::as_str);
        let location = format!(
            "{} key {STATE_KEY}",
            self.describe("ConfigMap", &objects.state)
        );
        Ok(Some(Stored {
            version,
            state: decode_state(&objects.id, json.as_bytes(), &location)?,
        }))
    }

    /// The version of a state ConfigMap in this release's layout; any other is refused.
    fn stored_version(&self, objects: &Objects, cm: &ConfigMap) -> Result<u64, StoreError> {
        if !cm.data.as_ref().is_some_and(|d| d.contains_key(STATE_KEY)) {
            return Err(self.not_ours(objects, cm));
        }
        serde_json::from_str(annotation(&cm.metadata, VERSION_ANNOTATION).unwrap_or_default())
            .map_err(|source| StoreError::Corrupt {
                id: objects.id.clone(),
                location: format!(
                    "{} annotation {VERSION_ANNOTATION}",
                    self.describe("ConfigMap", &objects.state)
                ),
                source,
            })
    }

    /// The error for a ConfigMap without `state.json`: written by cutover 0.1 (the state under
    /// a key named like the ConfigMap), or not by cutover at all.
    fn not_ours(&self, objects: &Objects, cm: &ConfigMap) -> StoreError {
        #[derive(serde::Deserialize)]
        struct Header {
            format: u32,
        }
        let id = &objects.id;
        let name = cm.metadata.name.clone().unwrap_or_default();
        let object = self.describe("ConfigMap", &name);
        let Some(json) = cm.data.as_ref().and_then(|d| d.get(&name)) else {
            return corrupt(
                id,
                object,
                format!("it has no key `{STATE_KEY}`: it was not written by cutover"),
            );
        };
        let found = match serde_json::from_str::<Header>(json) {
            Ok(header) => header.format,
            Err(source) => {
                return StoreError::Corrupt {
                    id: id.clone(),
                    location: format!("{object} key {name}"),
                    source,
                };
            }
        };
        match check_format(id, found) {
            Err(StoreError::Format { id, found, detail }) => StoreError::Format {
                id,
                found,
                detail: format!("{object}: {detail}"),
            },
            Err(other) => other,
            Ok(()) => StoreError::Format {
                id: id.clone(),
                found,
                detail: format!(
                    "{object} keeps the state under the key `{name}`, as cutover 0.1 did; this \
                     release keeps it under `{STATE_KEY}` with the decision log in chunks"
                ),
            },
        }
    }

    /// Refuses a rollout that cutover 0.1 stored under a name this release does not use (ids
    /// that had to be changed to make a name).
    async fn refuse_legacy_elsewhere(&self, objects: &Objects) -> Result<(), StoreError> {
        let legacy = legacy_name(&self.prefix, objects.id.as_str());
        if legacy == objects.state {
            return Ok(());
        }
        match self.get_configmap(&legacy).await? {
            Some(cm) if cm.data.as_ref().is_some_and(|d| d.contains_key(&legacy)) => {
                Err(self.not_ours(objects, &cm))
            }
            _ => Ok(()),
        }
    }

    pub(super) async fn save_state(
        &self,
        objects: &Objects,
        state: &RolloutState,
        expected: Option<u64>,
    ) -> Result<u64, StoreError> {
        let id = &objects.id;
        let encode = |what: &str, result: Result<String, serde_json::Error>| {
            result.map_err(|source| StoreError::Corrupt {
                id: id.clone(),
                location: format!("{what} being saved"),
                source,
            })
        };
        let json = encode("state", serde_json::to_string(state))?;
        let size = json.len() + STATE_KEY.len();
        if size > self.limit {
            return Err(StoreError::TooLarge {
                id: id.clone(),
                size,
                limit: self.limit,
            });
        }
        let version = expected.map_or(1, |v| v + 1);
        let summary = encode(
            "summary",
            serde_json::to_string(&Summary::of(state, version, None)),
        )?;
        for _ in 0..WRITE_ATTEMPTS {
            let existing = self.get_configmap(&objects.state).await?;
            if existing.is_none() {
                self.refuse_legacy_elsewhere(objects).await?;
            }
            let found = existing
                .as_ref()
                .map(|cm| self.stored_version(objects, cm))
                .transpose()?;
            check_version(id, expected, found)?;
            if found.is_none() {
                self.refuse_leftovers(objects).await?;
            }
            let mut cm = existing.unwrap_or_else(|| ConfigMap {
                metadata: Self::metadata(objects, &objects.state, "state"),
                ..ConfigMap::default()
            });
            let meta = &mut cm.metadata;
            meta.labels
                .get_or_insert_default()
                .extend(Self::labels(objects, "state"));
            meta.labels
                .get_or_insert_default()
                .insert(PHASE_LABEL.to_owned(), phase_label(state.phase));
            meta.annotations.get_or_insert_default().extend([
                (VERSION_ANNOTATION.to_owned(), version.to_string()),
                (ROLLOUT_ID_ANNOTATION.to_owned(), id.to_string()),
                (SUMMARY_ANNOTATION.to_owned(), summary.clone()),
            ]);
            cm.data = Some([(STATE_KEY.to_owned(), json.clone())].into());
            // `cm` carries the resourceVersion read: a write in between is a 409.
            let (verb, result) = if found.is_none() {
                ("create", self.configmaps.create(&Self::params(), &cm).await)
            } else {
                (
                    "update",
                    self.configmaps
                        .replace(&objects.state, &Self::params(), &cm)
                        .await,
                )
            };
            match result {
                Ok(_) => return Ok(version),
                // Read again: a save in between is a conflict; any other change is not.
                Err(e) if is_conflict(&e) => {}
                Err(e) => return Err(self.failed(e, verb, CONFIGMAPS, &objects.state)),
            }
        }
        Err(self.busy(id, "the state ConfigMap"))
    }

    /// Refuses to create a rollout whose log or inbox is still there (its state ConfigMap was
    /// deleted, the rest not): the new rollout's records would be taken for the old ones'.
    async fn refuse_leftovers(&self, objects: &Objects) -> Result<(), StoreError> {
        for part in [Part::Log, Part::Inbox] {
            let journal = self.journal(objects, part);
            journal.forget();
            if let Some(name) = journal.first_chunk().await? {
                return Err(corrupt(
                    &objects.id,
                    self.describe("ConfigMap", &name),
                    format!(
                        "the rollout has no state ConfigMap `{}` but its {} is still there; \
                         delete what is left of it (`kubectl delete configmaps,leases -n {} -l \
                         {ROLLOUT_LABEL}={}`) or use another rollout id",
                        objects.state,
                        part.describe(),
                        self.namespace,
                        objects.label
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The summaries of stored rollouts the filter admits, in id order, from the state
    /// ConfigMaps' metadata.
    pub(super) async fn list_states(
        &self,
        filter: &ListFilter,
    ) -> Result<Vec<Summary>, StoreError> {
        let mut selector = format!("{PART_LABEL}=state");
        if !filter.phases.is_empty() {
            // `phase in (a,b)` as `phase, phase!=c, phase!=d...`: the same set (every state
            // has the label), in a selector without spaces, which some clients mangle.
            selector.push(',');
            selector.push_str(PHASE_LABEL);
            for phase in PHASES.iter().filter(|p| !filter.phases.contains(p)) {
                let _ = write!(selector, ",{PHASE_LABEL}!={}", phase_label(*phase));
            }
        }
        let mut params = ListParams::default().labels(&selector).limit(LIST_PAGE);
        let mut summaries = Vec::new();
        loop {
            let page = self
                .configmaps
                .list_metadata(&params)
                .await
                .map_err(|e| self.failed(e, "list", CONFIGMAPS, ""))?;
            for item in &page.items {
                if let Some(summary) = self.summary_of(&item.metadata, filter)? {
                    summaries.push(summary);
                }
            }
            match page.metadata.continue_.as_deref() {
                Some(token) if !token.is_empty() => params = params.continue_token(token),
                _ => break,
            }
        }
        summaries.sort_by(|a, b| a.id.cmp(&b.id));
        summaries.truncate(filter.limit);
        Ok(summaries)
    }

    /// The summary a state ConfigMap's metadata holds, if the ConfigMap is one of this store's
    /// and the filter admits it.
    fn summary_of(
        &self,
        meta: &ObjectMeta,
        filter: &ListFilter,
    ) -> Result<Option<Summary>, StoreError> {
        let Some(id) =
            annotation(meta, ROLLOUT_ID_ANNOTATION).and_then(|raw| RolloutId::new(raw).ok())
        else {
            return Ok(None);
        };
        // Another store's (another prefix), or not a state at all.
        if meta.name.as_deref() != Some(self.objects(&id).state.as_str()) || !filter.admits_id(&id)
        {
            return Ok(None);
        }
        let summary: Summary =
            serde_json::from_str(annotation(meta, SUMMARY_ANNOTATION).unwrap_or_default())
                .map_err(|source| StoreError::Corrupt {
                    location: format!(
                        "{} annotation {SUMMARY_ANNOTATION}",
                        self.describe("ConfigMap", meta.name.as_deref().unwrap_or_default())
                    ),
                    id: id.clone(),
                    source,
                })?;
        Ok(filter.admits_phase(summary.phase).then_some(summary))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_names_are_those_of_cutover_0_1() {
        assert_eq!(legacy_name("rollout-", "checkout"), "rollout-checkout");
        assert_eq!(legacy_name("rollout-", "a-"), "rollout-a");
        assert!(legacy_name("rollout-", "Checkout_1").starts_with("rollout-checkout-1-"));
    }

    #[test]
    fn phase_labels_are_the_json_names() {
        assert_eq!(phase_label(Phase::PreFlight), "pre_flight");
        assert_eq!(phase_label(Phase::Done), "done");
    }
}
