//! [`Freight`]: what is released, named by a digest of its contents.

use std::fmt::{self, Write as _};

use cutover_core::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The id of a [`Freight`]: `sha256:` and the hex SHA-256 of the freight's contents as JSON
/// (its [`name`](Freight::name) left out), so the same contents always get the same id and
/// different contents never share one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FreightId(String);

impl FreightId {
    /// The id as written (`sha256:<64 hex digits>`).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 hex digits, for people.
    pub fn short(&self) -> &str {
        let hex = self.0.strip_prefix("sha256:").unwrap_or(&self.0);
        hex.get(..12).unwrap_or(hex)
    }
}

impl fmt::Display for FreightId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The commit a freight was built from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceCommit {
    /// The commit's id (a git SHA).
    pub id: String,
    /// When it was committed.
    pub at: Timestamp,
}

/// An immutable bundle of what is released together: the revision a rollout deploys (an image
/// digest, a version), the configuration version, the schema migrations, and the commit it was
/// built from. Kargo calls it the same.
///
/// ```
/// use cutover_pipeline::Freight;
/// let v2 = Freight::new("v2", "shop@sha256:9f2c").config("cfg-17").migration("0042_add_sku");
/// let same = Freight::new("another name", "shop@sha256:9f2c").config("cfg-17").migration("0042_add_sku");
/// assert_eq!(v2.id(), same.id()); // the name is not part of the contents
/// assert_ne!(v2.id(), Freight::new("v2", "shop@sha256:9f2c").id());
/// assert!(v2.id().as_str().starts_with("sha256:"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Freight {
    /// A name for people (`v2`, `2026-12-04.1`); not part of the id.
    pub name: String,
    /// The revision a stage's rollout deploys: the rollout's candidate (and, once promoted,
    /// the stable revision of the next rollout there).
    pub revision: String,
    /// The configuration version released with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    /// The schema migrations released with it, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub migrations: Vec<String>,
    /// The commit it was built from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<SourceCommit>,
}

/// What the id is computed over: everything but the name, in a fixed field order.
#[derive(Serialize)]
struct Contents<'a> {
    revision: &'a str,
    config: Option<&'a str>,
    migrations: &'a [String],
    commit: Option<&'a SourceCommit>,
}

impl Freight {
    /// Freight called `name` that deploys `revision`.
    pub fn new(name: impl Into<String>, revision: impl Into<String>) -> Self {
        Freight {
            name: name.into(),
            revision: revision.into(),
            config: None,
            migrations: Vec::new(),
            commit: None,
        }
    }

    /// With a configuration version.
    pub fn config(mut self, version: impl Into<String>) -> Self {
        self.config = Some(version.into());
        self
    }

    /// With one more migration.
    pub fn migration(mut self, id: impl Into<String>) -> Self {
        self.migrations.push(id.into());
        self
    }

    /// Built from this commit.
    pub fn commit(mut self, id: impl Into<String>, at: Timestamp) -> Self {
        self.commit = Some(SourceCommit { id: id.into(), at });
        self
    }

    /// The id: a SHA-256 over the contents as canonical JSON (fields in a fixed order, no
    /// whitespace; absent fields written as `null` or `[]`).
    pub fn id(&self) -> FreightId {
        let contents = Contents {
            revision: &self.revision,
            config: self.config.as_deref(),
            migrations: &self.migrations,
            commit: self.commit.as_ref(),
        };
        // Serializing plain strings, a list and a timestamp cannot fail.
        let json = serde_json::to_vec(&contents).unwrap_or_default();
        let digest = Sha256::digest(&json);
        let mut id = String::with_capacity(7 + 64);
        id.push_str("sha256:");
        for byte in digest {
            let _ = write!(id, "{byte:02x}"); // writing to a String cannot fail
        }
        FreightId(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_is_the_sha256_of_the_canonical_contents() {
        let f = Freight::new("v1", "app@v1");
        // printf '%s' '{"revision":"app@v1","config":null,"migrations":[],"commit":null}' | sha256sum
        assert_eq!(
            f.id().as_str(),
            "sha256:39434a2d6ebaf920ee1691874e3f5a4b4c15cdbf35087dac52a90ea9ac4ba60c"
        );
        assert_eq!(f.id().short().len(), 12);
    }

    #[test]
    fn every_content_field_changes_the_id() {
        let base = Freight::new("v1", "app@v1");
        let variants = [
            Freight::new("v1", "app@v2"),
            base.clone().config("c1"),
            base.clone().migration("m1"),
            base.clone().commit("abc", Timestamp::from_unix_millis(1)),
            base.clone().commit("abc", Timestamp::from_unix_millis(2)),
        ];
        let mut ids: Vec<_> = variants.iter().map(Freight::id).collect();
        ids.push(base.id());
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n);
    }
}
