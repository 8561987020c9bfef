//! Append-only journals in chunk ConfigMaps: a rollout's decision log and command inbox.
//!
//! Chunk `n` of a journal is the ConfigMap `<state name>-<part>-<n>`. Its data has one key per
//! entry, the entry's `seq`, holding the entry as JSON; its annotations say which seqs it
//! holds (`first-seq`, `last-seq`), how many bytes of data (`bytes`), and whether it is full
//! (`sealed`). Chunks are created in order, each starting where the one before ended, and are
//! never changed once sealed.

use std::collections::BTreeMap;

use cutover_core::StoreError;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ObjectMeta, Patch, PatchParams};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::{CONFIGMAPS, ConfigMapStateStore, KNOWN_ROLLOUTS, Objects, annotation, corrupt};
use cutover_kube::{is_conflict, is_not_found};

const FIRST_SEQ: &str = "cutover.dev/first-seq";
const LAST_SEQ: &str = "cutover.dev/last-seq";
const BYTES: &str = "cutover.dev/bytes";
const SEALED: &str = "cutover.dev/sealed";

/// Which journal of a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Part {
    /// The decision log.
    Log,
    /// The command inbox.
    Inbox,
}

impl Part {
    fn label(self) -> &'static str {
        match self {
            Part::Log => "log",
            Part::Inbox => "inbox",
        }
    }

    /// What it is, for messages.
    pub(super) fn describe(self) -> &'static str {
        match self {
            Part::Log => "decision log",
            Part::Inbox => "command inbox",
        }
    }
}

/// One chunk, as its metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Chunk {
    index: usize,
    first: u64,
    /// The last seq it holds (a chunk is never empty).
    pub(super) last: u64,
    bytes: usize,
    sealed: bool,
    resource_version: String,
}

/// What a store remembers of one journal: where chunks start (facts that never change while
/// the rollout exists) and the last chunk seen open.
#[derive(Debug, Clone, Default)]
pub(super) struct Known {
    firsts: BTreeMap<usize, u64>,
    tail: Option<Chunk>,
}

/// Whether [`Journal::place`] wrote everything, or lost a race and must read again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Placed {
    Done,
    Stale,
}

/// The bytes an entry takes in a ConfigMap's data: its key and its value.
pub(super) fn entry_size(seq: u64, json: &str) -> usize {
    seq.to_string().len() + json.len()
}

/// How many of `entries`, from the first, fit in `room` bytes.
fn fitting(entries: &[(u64, String)], room: usize) -> usize {
    let mut used = 0;
    entries
        .iter()
        .take_while(|(seq, json)| {
            used += entry_size(*seq, json);
            used <= room
        })
        .count()
}

/// A JSON pointer to an annotation.
fn annotation_path(key: &str) -> String {
    format!(
        "/metadata/annotations/{}",
        key.replace('~', "~0").replace('/', "~1")
    )
}

/// One journal of one rollout.
pub(super) struct Journal<'a> {
    store: &'a ConfigMapStateStore,
    objects: &'a Objects,
    part: Part,
    /// `<state name>-<part>`: the chunks' names without their number, and the memory's key.
    stem: String,
}

impl<'a> Journal<'a> {
    pub(super) fn new(store: &'a ConfigMapStateStore, objects: &'a Objects, part: Part) -> Self {
        Journal {
            store,
            objects,
            part,
            stem: format!("{}-{}", objects.state, part.label()),
        }
    }

    fn chunk_name(&self, index: usize) -> String {
        format!("{}-{index}", self.stem)
    }

    fn location(&self, index: usize, what: &str) -> String {
        format!(
            "{} {what}",
            self.store.describe("ConfigMap", &self.chunk_name(index))
        )
    }

    // === What the store remembers ===

    fn remember<T>(&self, f: impl FnOnce(&mut Known) -> T) -> T {
        let mut known = self.store.known.lock();
        if !known.contains_key(&self.stem) && known.len() >= KNOWN_ROLLOUTS {
            known.clear();
        }
        f(known.entry(self.stem.clone()).or_default())
    }

    /// Remembers what a chunk's metadata says. Returns `false` if it contradicts what was
    /// remembered (the rollout was deleted and made again, or the chunks disagree): then
    /// everything is forgotten.
    fn learn(&self, chunk: &Chunk) -> bool {
        self.check(chunk).is_none()
    }

    /// Remembers a chunk, or returns the first seq remembered for it that it contradicts (and
    /// forgets everything).
    fn check(&self, chunk: &Chunk) -> Option<u64> {
        let contradicted = self.remember(|known| {
            if let Some(first) = known
                .firsts
                .get(&chunk.index)
                .filter(|f| **f != chunk.first)
            {
                return Some(*first);
            }
            known.firsts.insert(chunk.index, chunk.first);
            if chunk.sealed {
                known.firsts.insert(chunk.index + 1, chunk.last + 1);
            }
            if known.tail.as_ref().is_none_or(|t| t.index <= chunk.index) {
                known.tail = Some(chunk.clone());
            }
            None
        });
        if contradicted.is_some() {
            self.forget();
        }
        contradicted
    }

    pub(super) fn forget(&self) {
        self.store.known.lock().remove(&self.stem);
    }

    /// The last chunk as this store last saw it, if it remembers one.
    pub(super) fn cached_tail(&self) -> Option<Chunk> {
        self.remember(|known| known.tail.clone())
    }

    // === Reading chunks ===

    fn chunk_of(&self, index: usize, meta: &ObjectMeta) -> Result<Chunk, StoreError> {
        let id = &self.objects.id;
        let number = |key: &str| -> Result<u64, StoreError> {
            serde_json::from_str(annotation(meta, key).unwrap_or_default()).map_err(|source| {
                StoreError::Corrupt {
                    id: id.clone(),
                    location: self.location(index, &format!("annotation {key}")),
                    source,
                }
            })
        };
        let (first, last) = (number(FIRST_SEQ)?, number(LAST_SEQ)?);
        if last < first {
            return Err(corrupt(
                id,
                self.location(index, "annotations"),
                format!("last seq {last} is before first seq {first}"),
            ));
        }
        Ok(Chunk {
            index,
            first,
            last,
            bytes: usize::try_from(number(BYTES)?).unwrap_or(usize::MAX),
            sealed: annotation(meta, SEALED) == Some("true"),
            resource_version: meta.resource_version.clone().unwrap_or_default(),
        })
    }

    /// A chunk's metadata, or `None` if it does not exist.
    async fn metadata(&self, index: usize) -> Result<Option<Chunk>, StoreError> {
        let name = self.chunk_name(index);
        match self.store.configmaps.get_metadata_opt(&name).await {
            Ok(Some(meta)) => self.chunk_of(index, &meta.metadata).map(Some),
            Ok(None) => Ok(None),
            Err(e) => Err(self.store.failed(e, "get", CONFIGMAPS, &name)),
        }
    }

    /// The name of the first chunk, if the journal has one.
    pub(super) async fn first_chunk(&self) -> Result<Option<String>, StoreError> {
        let name = self.chunk_name(0);
        match self.store.configmaps.get_metadata_opt(&name).await {
            Ok(found) => Ok(found.map(|_| name)),
            Err(e) => Err(self.store.failed(e, "get", CONFIGMAPS, &name)),
        }
    }

    /// A chunk and its entries in order, or `None` if it does not exist.
    async fn fetch(&self, index: usize) -> Result<Option<(Chunk, Vec<(u64, String)>)>, StoreError> {
        let name = self.chunk_name(index);
        let cm = match self.store.configmaps.get_opt(&name).await {
            Ok(Some(cm)) => cm,
            Ok(None) => return Ok(None),
            Err(e) => return Err(self.store.failed(e, "get", CONFIGMAPS, &name)),
        };
        let chunk = self.chunk_of(index, &cm.metadata)?;
        let id = &self.objects.id;
        let mut entries = cm
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(key, json)| match key.parse::<u64>() {
                Ok(seq) => Ok((seq, json)),
                Err(e) => Err(corrupt(id, self.location(index, &format!("key {key}")), e)),
            })
            .collect::<Result<Vec<_>, _>>()?;
        entries.sort_unstable_by_key(|(seq, _)| *seq);
        let gap_free = entries
            .iter()
            .zip(chunk.first..)
            .all(|((seq, _), expected)| *seq == expected);
        if !gap_free || entries.last().map(|(seq, _)| *seq) != Some(chunk.last) {
            return Err(corrupt(
                id,
                self.location(index, "data"),
                format!(
                    "the chunk should hold seqs {} to {}, it holds {:?}",
                    chunk.first,
                    chunk.last,
                    entries.iter().map(|(seq, _)| seq).collect::<Vec<_>>()
                ),
            ));
        }
        Ok(Some((chunk, entries)))
    }

    fn decode<T: DeserializeOwned>(
        &self,
        index: usize,
        seq: u64,
        json: &str,
    ) -> Result<T, StoreError> {
        serde_json::from_str(json).map_err(|source| StoreError::Corrupt {
            id: self.objects.id.clone(),
            location: self.location(index, &format!("key {seq}")),
            source,
        })
    }

    /// Remembers a chunk. When it contradicts what was remembered, forgets everything and
    /// returns `false` the first time (`restarted` is set: start again from chunk 0); the
    /// second time the chunks themselves disagree, which is an error.
    fn learn_or_restart(&self, chunk: &Chunk, restarted: &mut bool) -> Result<bool, StoreError> {
        let Some(expected) = self.check(chunk) else {
            return Ok(true);
        };
        if !std::mem::replace(restarted, true) {
            return Ok(false);
        }
        Err(corrupt(
            &self.objects.id,
            self.location(chunk.index, "annotations"),
            format!(
                "the chunk starts at seq {}, but the chunk before it ends at seq {}",
                chunk.first,
                expected.saturating_sub(1)
            ),
        ))
    }

    /// Finds the last chunk from the chunks' metadata: the first one not sealed, or the last
    /// sealed one when the next was not created yet. `None` for an empty journal.
    pub(super) async fn probe(&self) -> Result<Option<Chunk>, StoreError> {
        let mut index = self.remember(|known| known.tail.as_ref().map_or(0, |t| t.index));
        let mut sealed: Option<Chunk> = None;
        let mut restarted = false;
        loop {
            match self.metadata(index).await? {
                Some(chunk) if !self.learn_or_restart(&chunk, &mut restarted)? => {
                    (index, sealed) = (0, None);
                }
                Some(chunk) if chunk.sealed => {
                    index += 1;
                    sealed = Some(chunk);
                }
                Some(chunk) => return Ok(Some(chunk)),
                None if sealed.is_some() => return Ok(sealed),
                None if index == 0 => return Ok(None),
                // Remembered chunks are gone: the rollout was deleted; start over.
                None => {
                    self.forget();
                    index = 0;
                }
            }
        }
    }

    /// The index of the chunk to start reading `want` from, or `None` if the journal has
    /// nothing at or after it.
    async fn locate(&self, want: u64) -> Result<Option<usize>, StoreError> {
        let (start, known_to_hold) = self.remember(|known| {
            let start = known
                .firsts
                .iter()
                .rev()
                .find(|(_, first)| **first <= want)
                .map_or(0, |(index, _)| *index);
            let holds = known.firsts.contains_key(&(start + 1))
                || known
                    .tail
                    .as_ref()
                    .is_some_and(|t| t.index == start && !t.sealed);
            (start, holds)
        });
        if known_to_hold || want <= 1 {
            return Ok(Some(start));
        }
        // Skip the chunks before `want` by their metadata, without reading their data.
        let mut index = start;
        let mut restarted = false;
        loop {
            match self.metadata(index).await? {
                Some(chunk) if !self.learn_or_restart(&chunk, &mut restarted)? => index = 0,
                Some(chunk) if chunk.sealed && chunk.last < want => index += 1,
                Some(_) => return Ok(Some(index)),
                None if index == start && start > 0 => {
                    self.forget();
                    index = 0;
                }
                None => return Ok(None),
            }
        }
    }

    /// Up to `limit` entries with `seq > after`, in order.
    pub(super) async fn read<T: DeserializeOwned>(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<T>, StoreError> {
        let want = after.saturating_add(1);
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let mut restarted = false;
        // Again from the start only if what the store remembered turned out wrong.
        'pass: loop {
            out.clear();
            let Some(mut index) = self.locate(want).await? else {
                return Ok(out);
            };
            let start = index;
            loop {
                let Some((chunk, entries)) = self.fetch(index).await? else {
                    if index == start && start > 0 && !std::mem::replace(&mut restarted, true) {
                        self.forget();
                        continue 'pass;
                    }
                    return Ok(out);
                };
                if !self.learn_or_restart(&chunk, &mut restarted)? {
                    continue 'pass;
                }
                for (seq, json) in entries.iter().filter(|(seq, _)| *seq >= want) {
                    out.push(self.decode(index, *seq, json)?);
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
                if !chunk.sealed {
                    return Ok(out);
                }
                index += 1;
            }
        }
    }

    /// Every entry, and the last chunk (to [`place`](Self::place) after it).
    pub(super) async fn read_all<T: DeserializeOwned>(
        &self,
    ) -> Result<(Vec<T>, Option<Chunk>), StoreError> {
        let mut out = Vec::new();
        let mut tail = None;
        let mut index = 0;
        while let Some((chunk, entries)) = self.fetch(index).await? {
            self.learn(&chunk);
            for (seq, json) in &entries {
                out.push(self.decode(index, *seq, json)?);
            }
            let sealed = chunk.sealed;
            tail = Some(chunk);
            if !sealed {
                break;
            }
            index += 1;
        }
        Ok((out, tail))
    }

    // === Writing chunks ===

    /// Writes `entries` (which continue the journal after `tail` without a gap) into the last
    /// chunk while they fit, then into new chunks. [`Placed::Stale`] when `tail` is no longer
    /// the last chunk as it was (someone else wrote): some entries may have been written;
    /// read again.
    pub(super) async fn place(
        &self,
        mut tail: Option<Chunk>,
        mut entries: &[(u64, String)],
    ) -> Result<Placed, StoreError> {
        let budget = self.store.budget();
        while !entries.is_empty() {
            let (written, count) = match &tail {
                Some(open) if !open.sealed => {
                    let fit = fitting(entries, budget.saturating_sub(open.bytes));
                    if fit > 0 {
                        (self.add(open, &entries[..fit]).await?, fit)
                    } else {
                        (self.seal(open).await?, 0)
                    }
                }
                _ => {
                    let index = tail.as_ref().map_or(0, |t| t.index + 1);
                    let fit = fitting(entries, budget).max(1);
                    (self.create(index, &entries[..fit]).await?, fit)
                }
            };
            let Some(chunk) = written else {
                self.forget_tail();
                return Ok(Placed::Stale);
            };
            self.learn(&chunk);
            tail = Some(chunk);
            entries = &entries[count..];
        }
        Ok(Placed::Done)
    }

    fn forget_tail(&self) {
        self.remember(|known| known.tail = None);
    }

    /// Adds entries to an open chunk, on the condition that it is unchanged.
    async fn add(
        &self,
        open: &Chunk,
        entries: &[(u64, String)],
    ) -> Result<Option<Chunk>, StoreError> {
        let bytes = open.bytes
            + entries
                .iter()
                .map(|(s, j)| entry_size(*s, j))
                .sum::<usize>();
        let last = entries.last().map_or(open.last, |(seq, _)| *seq);
        let mut ops = vec![json!({
            "op": "replace", "path": "/metadata/resourceVersion", "value": open.resource_version,
        })];
        ops.extend(entries.iter().map(
            |(seq, json)| json!({ "op": "add", "path": format!("/data/{seq}"), "value": json }),
        ));
        ops.push(json!({ "op": "replace", "path": annotation_path(LAST_SEQ), "value": last.to_string() }));
        ops.push(
            json!({ "op": "replace", "path": annotation_path(BYTES), "value": bytes.to_string() }),
        );
        self.patch(open.index, ops).await
    }

    /// Marks a full chunk sealed, on the condition that it is unchanged.
    async fn seal(&self, open: &Chunk) -> Result<Option<Chunk>, StoreError> {
        let ops = vec![
            json!({ "op": "replace", "path": "/metadata/resourceVersion", "value": open.resource_version }),
            json!({ "op": "add", "path": annotation_path(SEALED), "value": "true" }),
        ];
        self.patch(open.index, ops).await
    }

    /// Applies a JSON patch to a chunk; `None` if it changed or vanished meanwhile.
    async fn patch(&self, index: usize, ops: Vec<Value>) -> Result<Option<Chunk>, StoreError> {
        let name = self.chunk_name(index);
        let patch: json_patch::Patch =
            serde_json::from_value(Value::Array(ops)).map_err(|source| StoreError::Corrupt {
                id: self.objects.id.clone(),
                location: self.location(index, "patch being written"),
                source,
            })?;
        let params = PatchParams {
            field_manager: Some(cutover_kube::FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        };
        match self
            .store
            .configmaps
            .patch_metadata(&name, &params, &Patch::<()>::Json(patch))
            .await
        {
            Ok(meta) => self.chunk_of(index, &meta.metadata).map(Some),
            Err(e) if is_conflict(&e) || is_not_found(&e) => Ok(None),
            Err(e) => Err(self.store.failed(e, "patch", CONFIGMAPS, &name)),
        }
    }

    /// Creates chunk `index` holding `entries`; `None` if someone else created it first.
    async fn create(
        &self,
        index: usize,
        entries: &[(u64, String)],
    ) -> Result<Option<Chunk>, StoreError> {
        let name = self.chunk_name(index);
        let (Some((first, _)), Some((last, _))) = (entries.first(), entries.last()) else {
            return Ok(None);
        };
        let bytes: usize = entries.iter().map(|(s, j)| entry_size(*s, j)).sum();
        let mut metadata = ConfigMapStateStore::metadata(self.objects, &name, self.part.label());
        metadata.annotations.get_or_insert_default().extend([
            (FIRST_SEQ.to_owned(), first.to_string()),
            (LAST_SEQ.to_owned(), last.to_string()),
            (BYTES.to_owned(), bytes.to_string()),
        ]);
        let cm = ConfigMap {
            metadata,
            data: Some(
                entries
                    .iter()
                    .map(|(s, j)| (s.to_string(), j.clone()))
                    .collect(),
            ),
            ..ConfigMap::default()
        };
        match self
            .store
            .configmaps
            .create(&ConfigMapStateStore::params(), &cm)
            .await
        {
            Ok(created) => self.chunk_of(index, &created.metadata).map(Some),
            Err(e) if is_conflict(&e) => Ok(None),
            Err(e) => Err(self.store.failed(e, "create", CONFIGMAPS, &name)),
        }
    }
}
