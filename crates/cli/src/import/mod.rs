//! `cutover import`: Argo Rollouts, Flagger and Kayenta configs as cutover plans.
//!
//! Every field of the input is accounted for: carried over into the plan, or listed with the
//! reason it was not (no cutover equivalent, or it belongs to the providers of a run file
//! rather than to the plan). A field nobody looked at is listed too, so nothing is dropped
//! silently. The plan is checked by cutover's own validation before it is written.

mod argo;
mod flagger;
mod kayenta;
#[cfg(test)]
mod shapes;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::rc::Rc;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::cli::{ImportArgs, Source};
use crate::exit::{Exit, Failure};

/// A field of the input that the plan does not carry, and why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Note {
    /// Where in the input, like `Rollout/checkout: spec.strategy.canary.trafficRouting`.
    pub(crate) field: String,
    /// Why it is not in the plan, or where it goes instead.
    pub(crate) reason: String,
}

/// A converted config: the plan (as JSON, only the fields set) and the notes.
#[derive(Debug)]
pub(crate) struct Imported {
    /// The plan.
    pub(crate) plan: PlanOut,
    /// What was not carried over.
    pub(crate) notes: Vec<Note>,
}

/// The plan written out, its sections in the order people read them.
#[derive(Debug, Default, Serialize)]
pub(crate) struct PlanOut {
    pub(crate) strategy: Value,
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub(crate) analyses: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) progress_deadline: Option<String>,
}

/// A value of the input and where it is.
#[derive(Debug, Clone)]
pub(crate) struct Node<'a> {
    pub(crate) value: &'a Value,
    path: Rc<str>,
}

impl<'a> Node<'a> {
    fn child(&self, key: &str, value: &'a Value) -> Node<'a> {
        let path = if self.path.ends_with(':') {
            format!("{} {key}", self.path)
        } else {
            format!("{}.{key}", self.path)
        };
        Node {
            value,
            path: path.into(),
        }
    }
}

/// Keeps track of which input fields were carried over or explained. Every read of the input
/// goes through it, even the reads that need none of its state, so that the code says at each
/// step what happens to the field it reads.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    /// Paths carried over, with everything under them.
    used: BTreeSet<String>,
    /// Paths explained by a note, with everything under them.
    notes: Vec<Note>,
}

#[allow(clippy::unused_self)] // see the type's docs
impl Tracker {
    /// The root of a document labelled `label` (for notes: `Rollout/checkout`).
    pub(crate) fn root<'a>(&mut self, value: &'a Value, label: &str) -> Node<'a> {
        Node {
            value,
            path: format!("{label}:").into(),
        }
    }

    /// The field `key` of `node`, if `node` is a mapping that has it.
    pub(crate) fn field<'a>(&mut self, node: &Node<'a>, key: &str) -> Option<Node<'a>> {
        let value = node.value.as_object()?.get(key)?;
        Some(node.child(key, value))
    }

    /// The elements of `node`, if it is a sequence.
    pub(crate) fn items<'a>(&mut self, node: &Node<'a>) -> Vec<Node<'a>> {
        let Some(items) = node.value.as_array() else {
            return Vec::new();
        };
        items
            .iter()
            .enumerate()
            .map(|(i, value)| Node {
                value,
                path: format!("{}[{i}]", node.path).into(),
            })
            .collect()
    }

    /// The entries of `node`, if it is a mapping.
    pub(crate) fn entries<'a>(&mut self, node: &Node<'a>) -> Vec<(&'a str, Node<'a>)> {
        let Some(map) = node.value.as_object() else {
            return Vec::new();
        };
        map.iter()
            .map(|(k, value)| (k.as_str(), node.child(k, value)))
            .collect()
    }

    /// Marks `node` (and all under it) as carried over, and returns its value.
    pub(crate) fn take<'a>(&mut self, node: &Node<'a>) -> &'a Value {
        self.used.insert(node.path.to_string());
        node.value
    }

    /// The field `key` as carried over.
    pub(crate) fn take_field<'a>(&mut self, node: &Node<'a>, key: &str) -> Option<&'a Value> {
        let field = self.field(node, key)?;
        Some(self.take(&field))
    }

    /// The string field `key`, carried over; a field of another type is noted.
    pub(crate) fn string(&mut self, node: &Node<'_>, key: &str) -> Option<String> {
        let field = self.field(node, key)?;
        match field.value {
            Value::String(s) => {
                self.take(&field);
                Some(s.clone())
            }
            Value::Number(n) => {
                self.take(&field);
                Some(n.to_string())
            }
            _ => {
                self.note(&field, "expected a string; not carried over");
                None
            }
        }
    }

    /// The number field `key`, carried over (numbers written as strings too).
    pub(crate) fn number(&mut self, node: &Node<'_>, key: &str) -> Option<f64> {
        let field = self.field(node, key)?;
        let number = match field.value {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        };
        if number.is_some() {
            self.take(&field);
        } else {
            self.note(&field, "expected a number; not carried over");
        }
        number
    }

    /// The boolean field `key`, carried over.
    pub(crate) fn boolean(&mut self, node: &Node<'_>, key: &str) -> Option<bool> {
        let field = self.field(node, key)?;
        let flag = match field.value {
            Value::Bool(b) => Some(*b),
            Value::String(s) => s.parse().ok(),
            _ => None,
        };
        if flag.is_some() {
            self.take(&field);
        } else {
            self.note(&field, "expected true or false; not carried over");
        }
        flag
    }

    /// Explains why `node` (and all under it) is not in the plan.
    pub(crate) fn note(&mut self, node: &Node<'_>, reason: impl Into<String>) {
        self.notes.push(Note {
            field: node.path.to_string(),
            reason: reason.into(),
        });
    }

    /// A remark about the plan that explains no input field (`about` names the part of the
    /// plan, like `strategy`).
    pub(crate) fn remark(&mut self, about: &str, reason: impl Into<String>) {
        self.notes.push(Note {
            field: format!("(plan) {about}"),
            reason: reason.into(),
        });
    }

    /// Explains the field `key` of `node`, if it is there.
    pub(crate) fn note_field(&mut self, node: &Node<'_>, key: &str, reason: impl Into<String>) {
        if let Some(field) = self.field(node, key) {
            self.note(&field, reason);
        }
    }

    /// Notes every leaf under `node` that was neither carried over nor explained, then
    /// returns all notes in input order.
    pub(crate) fn finish(mut self, roots: &[Node<'_>]) -> Vec<Note> {
        let mut left = Vec::new();
        for root in roots {
            self.leftovers(root.value, &root.path, &mut left);
        }
        self.notes.extend(left.into_iter().map(|field| Note {
            field,
            reason: "cutover has no equivalent; not carried over".to_owned(),
        }));
        for note in &mut self.notes {
            if note.field.ends_with(':') {
                note.field.pop();
            }
        }
        self.notes.sort();
        self.notes.dedup();
        self.notes
    }

    fn covered(&self, path: &str) -> bool {
        let under = |p: &str| {
            path == p
                || path
                    .strip_prefix(p)
                    .is_some_and(|rest| rest.starts_with(['.', '[', ' ']))
        };
        self.used.iter().any(|p| under(p)) || self.notes.iter().any(|n| under(&n.field))
    }

    fn leftovers(&self, value: &Value, path: &str, out: &mut Vec<String>) {
        if self.covered(path) {
            return;
        }
        let join = |key: &str| {
            if path.ends_with(':') {
                format!("{path} {key}")
            } else {
                format!("{path}.{key}")
            }
        };
        match value {
            Value::Object(map) if !map.is_empty() => {
                for (k, v) in map {
                    self.leftovers(v, &join(k), out);
                }
            }
            Value::Array(items) if !items.is_empty() => {
                for (i, v) in items.iter().enumerate() {
                    self.leftovers(v, &format!("{path}[{i}]"), out);
                }
            }
            _ => out.push(path.to_owned()),
        }
    }
}

/// A number as JSON: an integer when it is whole (`10`, not `10.0`).
pub(crate) fn number(n: f64) -> Value {
    #[allow(clippy::cast_possible_truncation)]
    let whole = n as i64;
    #[allow(clippy::cast_precision_loss, clippy::float_cmp)] // an exact round trip
    if n.fract() == 0.0 && (whole as f64) == n {
        Value::from(whole)
    } else {
        Value::from(n)
    }
}

/// An Argo or Kubernetes duration: whole seconds (a number) or a string with units
/// (`30s`, `10m`, `1h`, `1h30m`), as cutover writes it.
pub(crate) fn duration(value: &Value) -> Option<String> {
    match value {
        Value::Number(n) => n.as_u64().map(|s| format!("{s}s")),
        Value::String(s) => {
            let s = s.trim();
            if let Ok(secs) = s.parse::<u64>() {
                return Some(format!("{secs}s"));
            }
            humantime::parse_duration(s)
                .ok()
                .map(|d| humantime::format_duration(d).to_string().replace(' ', ""))
        }
        _ => None,
    }
}

/// Reads every YAML or JSON document of `text` (several per file, `---` apart).
pub(crate) fn documents(text: &str) -> Result<Vec<Value>, String> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| {
        e.to_string()
            .lines()
            .next()
            .unwrap_or("not valid YAML")
            .to_owned()
    })?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

/// Converts `docs` from `source`; fails only when there is nothing to convert or the result
/// would not be a valid plan.
pub(crate) fn convert(source: Source, docs: &[Value]) -> Result<Imported, String> {
    let imported = match source {
        Source::Argo => argo::convert(docs)?,
        Source::Flagger => flagger::convert(docs)?,
        Source::Kayenta => kayenta::convert(docs)?,
    };
    let json = serde_json::to_string(&imported.plan).map_err(|e| e.to_string())?;
    cutover::Plan::from_json(&json).map_err(|e| {
        format!(
            "the converted plan is not valid: {e}. A value of the input is out of cutover's \
             range (fix it there); if the input is valid for the tool, this is a bug in \
             `cutover import`"
        )
    })?;
    Ok(imported)
}

/// The plan as YAML, with the notes as comments on top.
pub(crate) fn render(source: Source, imported: &Imported) -> Result<String, String> {
    let mut out = String::new();
    let tool = match source {
        Source::Argo => "Argo Rollouts",
        Source::Flagger => "Flagger",
        Source::Kayenta => "Kayenta",
    };
    let _ = writeln!(out, "# Imported from {tool} by `cutover import`.");
    if imported.notes.is_empty() {
        let _ = writeln!(out, "# Every field was carried over.");
    } else {
        let _ = writeln!(out, "# Not carried over:");
        for note in &imported.notes {
            let _ = writeln!(out, "#   {}: {}", note.field, note.reason);
        }
    }
    out.push_str(&serde_saphyr::to_string(&imported.plan).map_err(|e| e.to_string())?);
    Ok(out)
}

/// `cutover import`.
pub(crate) fn import(args: &ImportArgs) -> Result<Exit, Failure> {
    let mut docs = Vec::new();
    for file in &args.files {
        let text = std::fs::read_to_string(file)
            .map_err(|e| Failure::invalid(format!("cannot read {}: {e}", file.display())))?;
        docs.extend(
            documents(&text).map_err(|e| Failure::invalid(format!("{}: {e}", file.display())))?,
        );
    }
    let imported = convert(args.from, &docs).map_err(Failure::invalid)?;
    let text = render(args.from, &imported).map_err(Failure::failed)?;
    match &args.output {
        Some(path) => {
            std::fs::write(path, &text)
                .map_err(|e| Failure::failed(format!("cannot write {}: {e}", path.display())))?;
            eprintln!("wrote {}", path.display());
        }
        None => print!("{text}"),
    }
    for note in &imported.notes {
        eprintln!("not carried over: {}: {}", note.field, note.reason);
    }
    eprintln!(
        "{} field{} not carried over",
        imported.notes.len(),
        if imported.notes.len() == 1 { "" } else { "s" }
    );
    Ok(if args.strict && !imported.notes.is_empty() {
        Exit::Invalid
    } else {
        Exit::Ok
    })
}

/// The documents of `kind` (`Rollout`, `AnalysisTemplate`, ...).
pub(crate) fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter()
        .filter(|d| d.get("kind").and_then(Value::as_str) == Some(kind))
        .collect()
}

/// `Kind/name` of a Kubernetes document, for notes.
pub(crate) fn label(doc: &Value) -> String {
    let kind = doc
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("document");
    match doc.pointer("/metadata/name").and_then(Value::as_str) {
        Some(name) => format!("{kind}/{name}"),
        None => kind.to_owned(),
    }
}

/// Accounts for the Kubernetes envelope of a document: `apiVersion` and `kind` are read,
/// `metadata.name` names things, the rest of `metadata` is noted.
pub(crate) fn envelope(t: &mut Tracker, root: &Node<'_>) -> Option<String> {
    t.take_field(root, "apiVersion");
    t.take_field(root, "kind");
    if let Some(status) = t.field(root, "status") {
        t.note(
            &status,
            "status is written by the controller, not part of a plan",
        );
    }
    let metadata = t.field(root, "metadata")?;
    let name = t.string(&metadata, "name");
    for (key, node) in t.entries(&metadata) {
        if key != "name" {
            t.note(&node, "Kubernetes metadata, not part of a plan");
        }
    }
    name
}

#[cfg(test)]
mod tests {
    use proptest::prelude::{ProptestConfig, proptest};

    use super::*;

    #[test]
    fn durations_become_cutover_durations() {
        assert_eq!(duration(&Value::from(30)).as_deref(), Some("30s"));
        assert_eq!(duration(&Value::from("10m")).as_deref(), Some("10m"));
        assert_eq!(duration(&Value::from("1h30m")).as_deref(), Some("1h30m"));
        assert_eq!(duration(&Value::from("90")).as_deref(), Some("90s"));
        assert_eq!(duration(&Value::from("soon")), None);
    }

    #[test]
    fn fields_nobody_read_are_listed() {
        let doc: Value = serde_json::json!({ "a": 1, "b": { "c": 2, "d": [3, 4] } });
        let mut t = Tracker::default();
        let root = t.root(&doc, "Doc");
        t.take_field(&root, "a");
        let b = t.field(&root, "b").unwrap();
        t.note_field(&b, "c", "explained");
        let notes = t.finish(&[root]);
        let fields: Vec<&str> = notes.iter().map(|n| n.field.as_str()).collect();
        assert_eq!(fields, ["Doc: b.c", "Doc: b.d[0]", "Doc: b.d[1]"]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any text, from any tool: an import answers (a plan or an error), never panics.
        #[test]
        fn import_never_panics_on_any_text(text in "\\PC{0,300}") {
            if let Ok(docs) = documents(&text) {
                for source in [Source::Argo, Source::Flagger, Source::Kayenta] {
                    if let Ok(imported) = convert(source, &docs) {
                        let _ = render(source, &imported);
                    }
                }
            }
        }
    }
}
