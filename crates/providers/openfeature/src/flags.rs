//! The in-process flags: definitions, weights, and one evaluation.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;
use cutover_core::{RevisionId, TrafficSplit, Weight};
use parking_lot::Mutex;
use thiserror::Error;

use crate::bucket::{BUCKETS, bucket, group_seed};

/// Why a flag could not be defined, changed or evaluated.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum FlagError {
    /// No flag with this key is defined.
    #[error("no flag `{key}` is defined")]
    NotFound {
        /// The flag key asked for.
        key: String,
    },
    /// A flag with this key is already defined.
    #[error("flag `{key}` is already defined")]
    Duplicate {
        /// The flag key.
        key: String,
    },
    /// The flag splits users between variants, which needs a targeting key, and none was given.
    #[error("flag `{key}` is split between variants and needs a targeting key to bucket by")]
    TargetingKeyMissing {
        /// The flag key.
        key: String,
    },
    /// The flag holds values of another type.
    #[error("flag `{key}` holds {actual} values, not {expected}")]
    TypeMismatch {
        /// The flag key.
        key: String,
        /// The type asked for.
        expected: &'static str,
        /// The flag's type.
        actual: &'static str,
    },
    /// A split or definition names a revision that is not one of the flag's variants.
    #[error("flag `{key}` has no variant `{revision}`; its variants are {variants}")]
    UnknownVariant {
        /// The flag key.
        key: String,
        /// The revision named.
        revision: String,
        /// The flag's variants, comma-separated.
        variants: String,
    },
    /// A definition that cannot work: no variants, a variant listed twice, an empty key.
    #[error("flag `{key}`: {problem}")]
    Invalid {
        /// The flag key.
        key: String,
        /// What is wrong.
        problem: String,
    },
}

/// The values a flag's variants hold.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Values {
    /// `true` for the `on` variant, `false` for `off`.
    Bool,
    /// One string per variant, in variant order.
    String(Vec<String>),
}

/// How to define a flag: its key, its variants (each a revision of the traffic split, with the
/// value the flag resolves to for it), and its bucketing group.
///
/// Variants own consecutive ranges of the 10 000 buckets in the order they are listed; a
/// boolean flag lists `on` first. A variant whose share grows at the expense of its neighbour
/// keeps every user it had, so a canary between two variants never moves a user back.
///
/// ```
/// use cutover_openfeature::FlagDefinition;
/// let canary = FlagDefinition::boolean("checkout.new-path", "old", "new")?;
/// let colors = FlagDefinition::strings("checkout.button", [("blue", "#00f"), ("green", "#0f0")])?
///     .group("checkout-experiments");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct FlagDefinition {
    key: String,
    group: Option<String>,
    variants: Vec<RevisionId>,
    values: Values,
}

impl FlagDefinition {
    /// A boolean flag: `off` resolves to `false` and starts with all users, `on` resolves to
    /// `true`. The variant names are the revisions a traffic split names (the rollout's stable
    /// and candidate).
    pub fn boolean(key: impl Into<String>, off: &str, on: &str) -> Result<Self, FlagError> {
        let key = key.into();
        let variants = vec![revision(&key, on)?, revision(&key, off)?];
        Self::checked(key, variants, Values::Bool)
    }

    /// A string flag with one variant per `(revision, value)`; the first starts with all users.
    pub fn strings<'a>(
        key: impl Into<String>,
        variants: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, FlagError> {
        let key = key.into();
        let mut names = Vec::new();
        let mut values = Vec::new();
        for (name, value) in variants {
            names.push(revision(&key, name)?);
            values.push(value.to_owned());
        }
        Self::checked(key, names, Values::String(values))
    }

    /// Buckets by `group` instead of the flag key: flags in one group put a user in the same
    /// bucket, so the same 5 % of users get every flag of the group at 5 %.
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }

    fn checked(key: String, variants: Vec<RevisionId>, values: Values) -> Result<Self, FlagError> {
        let invalid = |problem: &str| FlagError::Invalid {
            key: key.clone(),
            problem: problem.to_owned(),
        };
        if key.is_empty() {
            return Err(invalid("the key is empty"));
        }
        if variants.is_empty() {
            return Err(invalid("a flag needs at least one variant"));
        }
        for (i, v) in variants.iter().enumerate() {
            if variants[..i].contains(v) {
                return Err(invalid(&format!("variant `{v}` is listed twice")));
            }
        }
        Ok(FlagDefinition {
            key,
            group: None,
            variants,
            values,
        })
    }

    /// The flag key.
    pub fn key(&self) -> &str {
        &self.key
    }
}

fn revision(key: &str, name: &str) -> Result<RevisionId, FlagError> {
    RevisionId::new(name).map_err(|e| FlagError::Invalid {
        key: key.to_owned(),
        problem: format!("variant name: {e}"),
    })
}

/// One flag as evaluations see it: immutable, replaced whole when its weights change.
#[derive(Debug)]
pub(crate) struct Flag {
    pub(crate) definition: FlagDefinition,
    seed: u64,
    /// Weight of each variant in basis points, in variant order; they add up to 10 000.
    weights: Vec<u16>,
    /// The end (exclusive) of each variant's bucket range, in variant order.
    ends: Vec<u16>,
}

impl Flag {
    fn new(definition: FlagDefinition, weights: Vec<u16>) -> Self {
        let seed = group_seed(definition.group.as_deref().unwrap_or(&definition.key));
        let ends = weights
            .iter()
            .scan(0u16, |end, w| {
                *end += w;
                Some(*end)
            })
            .collect();
        Flag {
            definition,
            seed,
            weights,
            ends,
        }
    }

    fn split(&self) -> TrafficSplit {
        TrafficSplit::new(
            self.definition
                .variants
                .iter()
                .zip(&self.weights)
                .map(|(v, w)| (v.clone(), Weight::from_basis_points(*w).unwrap_or_default())),
        )
        .expect("a flag's weights add up to 100 % over distinct variants")
    }

    /// The variant holding all users, if one does.
    fn only(&self) -> Option<usize> {
        self.weights.iter().position(|w| *w == BUCKETS)
    }
}

/// Why a flag resolved to its variant, as the OpenFeature spec names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// One variant holds every user: no bucketing took place (`STATIC`).
    Static,
    /// The user's bucket chose among variants that share the users (`SPLIT`).
    Split,
}

/// The result of one evaluation; holds the flag it came from (one reference count, no copy).
#[derive(Clone)]
pub struct Evaluation {
    flag: Arc<Flag>,
    index: usize,
    reason: Reason,
    bucket: Option<u16>,
}

impl Evaluation {
    /// The variant: the revision the user is on.
    pub fn variant(&self) -> &RevisionId {
        &self.flag.definition.variants[self.index]
    }

    /// Why this variant.
    pub fn reason(&self) -> Reason {
        self.reason
    }

    /// The user's bucket (`0..10_000`) when the flag is split.
    pub fn bucket(&self) -> Option<u16> {
        self.bucket
    }

    /// The variant's share of users now.
    pub fn weight(&self) -> Weight {
        Weight::from_basis_points(self.flag.weights[self.index]).unwrap_or_default()
    }

    /// The boolean value, for a boolean flag.
    pub fn as_bool(&self) -> Result<bool, FlagError> {
        match &self.flag.definition.values {
            Values::Bool => Ok(self.index == 0),
            Values::String(_) => Err(self.mismatch("boolean")),
        }
    }

    /// The string value, for a string flag.
    pub fn as_str(&self) -> Result<&str, FlagError> {
        match &self.flag.definition.values {
            Values::String(values) => Ok(&values[self.index]),
            Values::Bool => Err(self.mismatch("string")),
        }
    }

    fn mismatch(&self, expected: &'static str) -> FlagError {
        FlagError::TypeMismatch {
            key: self.flag.definition.key.clone(),
            expected,
            actual: match self.flag.definition.values {
                Values::Bool => "boolean",
                Values::String(_) => "string",
            },
        }
    }
}

impl fmt::Debug for Evaluation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Evaluation")
            .field("flag", &self.flag.definition.key)
            .field("variant", self.variant())
            .field("reason", &self.reason)
            .field("bucket", &self.bucket)
            .finish_non_exhaustive()
    }
}

/// The in-process flags of one application: cheap to clone, shared by the OpenFeature
/// provider ([`CutoverProvider`](crate::CutoverProvider)), which evaluates them, and the
/// traffic routers ([`FlagRouter`](crate::FlagRouter)) through which rollouts set their
/// weights.
///
/// An evaluation loads the current table (lock-free, `arc-swap`), looks the key up, hashes
/// the targeting key once and finds the variant: no lock and no allocation.
///
/// ```
/// use cutover_openfeature::{FlagDefinition, Flags, Reason};
/// let flags = Flags::new();
/// flags.define(FlagDefinition::boolean("new-path", "old", "new")?)?;
/// let e = flags.evaluate("new-path", Some("user-1"))?;
/// assert_eq!((e.as_bool()?, e.reason()), (false, Reason::Static));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Default)]
pub struct Flags {
    table: Arc<ArcSwap<HashMap<String, Arc<Flag>>>>,
    /// Serializes writers, so that two changes to different flags never lose one another.
    writer: Arc<Mutex<()>>,
}

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let table = self.table.load();
        let mut keys: Vec<&String> = table.keys().collect();
        keys.sort();
        f.debug_struct("Flags")
            .field("keys", &keys)
            .finish_non_exhaustive()
    }
}

impl Flags {
    /// No flags.
    pub fn new() -> Self {
        Self::default()
    }

    /// Defines a flag with all users on its first variant.
    pub fn define(&self, definition: FlagDefinition) -> Result<(), FlagError> {
        let mut weights = vec![0; definition.variants.len()];
        weights[0] = BUCKETS;
        if matches!(definition.values, Values::Bool) {
            // A boolean flag starts off: all users on `off`, the second variant.
            weights.swap(0, 1);
        }
        let _guard = self.writer.lock();
        let current = self.table.load();
        if current.contains_key(&definition.key) {
            return Err(FlagError::Duplicate {
                key: definition.key,
            });
        }
        let mut next = HashMap::clone(&current);
        next.insert(
            definition.key.clone(),
            Arc::new(Flag::new(definition, weights)),
        );
        self.table.store(Arc::new(next));
        Ok(())
    }

    /// The users' split between the variants of flag `key`.
    pub fn split(&self, key: &str) -> Result<TrafficSplit, FlagError> {
        Ok(self.flag(key)?.split())
    }

    /// Sets the weights of flag `key`. Every revision of `split` must be a variant of the flag;
    /// variants the split leaves out get no users.
    pub fn set_split(&self, key: &str, split: &TrafficSplit) -> Result<(), FlagError> {
        let _guard = self.writer.lock();
        let current = self.table.load();
        let flag = current.get(key).ok_or_else(|| FlagError::NotFound {
            key: key.to_owned(),
        })?;
        let variants = &flag.definition.variants;
        if let Some((unknown, _)) = split.iter().find(|(r, _)| !variants.contains(r)) {
            return Err(FlagError::UnknownVariant {
                key: key.to_owned(),
                revision: unknown.to_string(),
                variants: variants
                    .iter()
                    .map(RevisionId::as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        let weights = variants
            .iter()
            .map(|v| split.weight(v).basis_points())
            .collect();
        let mut next = HashMap::clone(&current);
        next.insert(
            key.to_owned(),
            Arc::new(Flag::new(flag.definition.clone(), weights)),
        );
        self.table.store(Arc::new(next));
        Ok(())
    }

    /// Evaluates flag `key` for the user `targeting_key`. A flag split between variants needs
    /// a targeting key; one variant holding every user does not.
    pub fn evaluate(
        &self,
        key: &str,
        targeting_key: Option<&str>,
    ) -> Result<Evaluation, FlagError> {
        let flag = self.flag(key)?;
        if let Some(index) = flag.only() {
            return Ok(Evaluation {
                flag,
                index,
                reason: Reason::Static,
                bucket: None,
            });
        }
        let Some(targeting_key) = targeting_key else {
            return Err(FlagError::TargetingKeyMissing {
                key: key.to_owned(),
            });
        };
        let b = bucket(flag.seed, targeting_key);
        let index = flag.ends.partition_point(|end| *end <= b);
        Ok(Evaluation {
            flag,
            index,
            reason: Reason::Split,
            bucket: Some(b),
        })
    }

    fn flag(&self, key: &str) -> Result<Arc<Flag>, FlagError> {
        self.table
            .load()
            .get(key)
            .cloned()
            .ok_or_else(|| FlagError::NotFound {
                key: key.to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(on: &str, off: &str, on_bp: u16) -> TrafficSplit {
        TrafficSplit::canary(
            &off.parse().unwrap(),
            &on.parse().unwrap(),
            Weight::from_basis_points(on_bp).unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn a_boolean_flag_starts_off_and_follows_its_split() {
        let flags = Flags::new();
        flags
            .define(FlagDefinition::boolean("f", "old", "new").unwrap())
            .unwrap();
        assert_eq!(flags.split("f").unwrap(), split("new", "old", 0));
        let off = flags.evaluate("f", None).unwrap();
        assert_eq!(off.variant().as_str(), "old");
        assert!(!off.as_bool().unwrap());
        assert_eq!(off.reason(), Reason::Static);

        flags.set_split("f", &split("new", "old", 10_000)).unwrap();
        let on = flags.evaluate("f", None).unwrap();
        assert!(on.as_bool().unwrap());
        assert_eq!(on.weight(), Weight::FULL);

        flags.set_split("f", &split("new", "old", 2_500)).unwrap();
        assert_eq!(
            flags.evaluate("f", None).unwrap_err(),
            FlagError::TargetingKeyMissing { key: "f".into() }
        );
        let e = flags.evaluate("f", Some("user-7")).unwrap();
        assert_eq!(e.reason(), Reason::Split);
        let b = e.bucket().unwrap();
        assert_eq!(e.as_bool().unwrap(), b < 2_500, "bucket {b}");
        assert!(matches!(
            e.as_str().unwrap_err(),
            FlagError::TypeMismatch {
                expected: "string",
                actual: "boolean",
                ..
            }
        ));
    }

    #[test]
    fn string_variants_hold_consecutive_ranges() {
        let flags = Flags::new();
        flags
            .define(FlagDefinition::strings("b", [("blue", "#00f"), ("green", "#0f0")]).unwrap())
            .unwrap();
        assert_eq!(flags.evaluate("b", None).unwrap().as_str().unwrap(), "#00f");
        let half = TrafficSplit::canary(
            &"blue".parse().unwrap(),
            &"green".parse().unwrap(),
            Weight::from_percent(50).unwrap(),
        )
        .unwrap();
        flags.set_split("b", &half).unwrap();
        for user in ["a", "b", "c", "d", "e", "f"] {
            let e = flags.evaluate("b", Some(user)).unwrap();
            let expected = if e.bucket().unwrap() < 5_000 {
                "#00f"
            } else {
                "#0f0"
            };
            assert_eq!(e.as_str().unwrap(), expected);
            assert!(e.as_bool().is_err());
        }
    }

    #[test]
    fn bad_definitions_and_splits_are_explained() {
        let flags = Flags::new();
        assert!(matches!(
            FlagDefinition::boolean("f", "same", "same").unwrap_err(),
            FlagError::Invalid { problem, .. } if problem.contains("listed twice")
        ));
        assert!(FlagDefinition::strings("f", []).is_err());
        assert!(FlagDefinition::boolean("", "a", "b").is_err());
        flags
            .define(FlagDefinition::boolean("f", "old", "new").unwrap())
            .unwrap();
        assert_eq!(
            flags
                .define(FlagDefinition::boolean("f", "x", "y").unwrap())
                .unwrap_err(),
            FlagError::Duplicate { key: "f".into() }
        );
        let err = flags.set_split("f", &split("v2", "old", 100)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "flag `f` has no variant `v2`; its variants are new, old"
        );
        assert_eq!(
            flags.evaluate("nope", Some("u")).unwrap_err(),
            FlagError::NotFound { key: "nope".into() }
        );
    }
}
