//! Names of rollouts and revisions.

use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Why a name was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum IdError {
    /// The name was empty.
    #[error("{what} must not be empty")]
    Empty {
        /// "revision id" or "rollout id".
        what: &'static str,
    },
    /// The name was longer than allowed.
    #[error("{what} `{id}` is {len} bytes long; the limit is {max}")]
    TooLong {
        /// "revision id" or "rollout id".
        what: &'static str,
        /// The rejected name, shortened.
        id: String,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The name held a character that is not allowed.
    #[error("{what} `{id}` contains {ch:?}; allowed: {allowed}")]
    InvalidChar {
        /// "revision id" or "rollout id".
        what: &'static str,
        /// The rejected name.
        id: String,
        /// The first character that is not allowed.
        ch: char,
        /// The allowed characters.
        allowed: &'static str,
    },
    /// Stable and candidate were the same revision.
    #[error("stable and candidate must be different revisions, both are `{0}`")]
    SameRevision(RevisionId),
}

const MAX_LEN: usize = 253;

fn shorten(id: &str) -> String {
    id.chars().take(40).collect()
}

/// A named version of the service: `stable`, `canary`, `v2`, an image digest...
///
/// Any non-empty string of at most 253 bytes without control characters. Providers that need a
/// narrower form (a Kubernetes label value, say) check it themselves. Cloning one shares the
/// name rather than copying it: splits, contexts and records hold many copies.
///
/// ```
/// use cutover_core::RevisionId;
/// let v2: RevisionId = "v2".parse()?;
/// assert_eq!(v2.as_str(), "v2");
/// assert!(RevisionId::new("").is_err());
/// # Ok::<(), cutover_core::IdError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct RevisionId(Arc<str>);

impl RevisionId {
    /// Checks and wraps a revision name.
    pub fn new(id: impl Into<String>) -> Result<Self, IdError> {
        const WHAT: &str = "revision id";
        let id = id.into();
        if id.is_empty() {
            return Err(IdError::Empty { what: WHAT });
        }
        if id.len() > MAX_LEN {
            return Err(IdError::TooLong {
                what: WHAT,
                id: shorten(&id),
                len: id.len(),
                max: MAX_LEN,
            });
        }
        if let Some(ch) = id.chars().find(|c| c.is_control()) {
            return Err(IdError::InvalidChar {
                what: WHAT,
                id: shorten(&id),
                ch,
                allowed: "anything but control characters",
            });
        }
        Ok(RevisionId(id.into()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The id of one rollout: the key under which its state is stored.
///
/// 1 to 253 characters from `A-Z a-z 0-9 . _ -`, not starting with `.`, so that it is a safe
/// file name, ConfigMap key and label value prefix.
///
/// ```
/// use cutover_core::RolloutId;
/// assert!(RolloutId::new("checkout-2026-11-21").is_ok());
/// assert!(RolloutId::new("../etc/passwd").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct RolloutId(Arc<str>);

impl RolloutId {
    /// Checks and wraps a rollout id.
    pub fn new(id: impl Into<String>) -> Result<Self, IdError> {
        const WHAT: &str = "rollout id";
        const ALLOWED: &str = "A-Z a-z 0-9 . _ - (not starting with .)";
        let id = id.into();
        if id.is_empty() {
            return Err(IdError::Empty { what: WHAT });
        }
        if id.len() > MAX_LEN {
            return Err(IdError::TooLong {
                what: WHAT,
                id: shorten(&id),
                len: id.len(),
                max: MAX_LEN,
            });
        }
        let bad = id.char_indices().find(|&(i, c)| {
            !(c.is_ascii_alphanumeric() || c == '_' || c == '-' || (c == '.' && i > 0))
        });
        if let Some((_, ch)) = bad {
            return Err(IdError::InvalidChar {
                what: WHAT,
                id: shorten(&id),
                ch,
                allowed: ALLOWED,
            });
        }
        Ok(RolloutId(id.into()))
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! string_newtype {
    ($ty:ident) => {
        // Written as the string itself, without the copy `#[serde(into = "String")]` makes.
        impl Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl FromStr for $ty {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                $ty::new(s)
            }
        }
        impl TryFrom<String> for $ty {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                $ty::new(s)
            }
        }
        impl TryFrom<&str> for $ty {
            type Error = IdError;
            fn try_from(s: &str) -> Result<Self, IdError> {
                $ty::new(s)
            }
        }
        impl From<$ty> for String {
            fn from(id: $ty) -> String {
                id.0.as_ref().to_owned()
            }
        }
        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
        impl Borrow<str> for $ty {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
    };
}
string_newtype!(RevisionId);
string_newtype!(RolloutId);

/// The two revisions a rollout moves between.
///
/// ```
/// use cutover_core::Revisions;
/// let revs = Revisions::new("v1", "v2")?;
/// assert_eq!(revs.stable.as_str(), "v1");
/// assert!(Revisions::new("v1", "v1").is_err());
/// # Ok::<(), cutover_core::IdError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revisions {
    /// The revision serving traffic now, and the one every rollback returns to.
    pub stable: RevisionId,
    /// The revision being rolled out.
    pub candidate: RevisionId,
}

impl Revisions {
    /// Checks both names and that they differ.
    pub fn new(stable: impl Into<String>, candidate: impl Into<String>) -> Result<Self, IdError> {
        let stable = RevisionId::new(stable)?;
        let candidate = RevisionId::new(candidate)?;
        if stable == candidate {
            return Err(IdError::SameRevision(stable));
        }
        Ok(Revisions { stable, candidate })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollout_ids_are_safe_file_names() {
        for ok in ["a", "checkout", "svc.v2_1-x", "A.b"] {
            assert!(RolloutId::new(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".hidden", "a/b", "..", "a b", "é"] {
            assert!(RolloutId::new(bad).is_err(), "{bad}");
        }
        assert!(matches!(
            RolloutId::new("x".repeat(254)),
            Err(IdError::TooLong { len: 254, .. })
        ));
    }

    #[test]
    fn revision_ids_reject_only_empty_long_and_control() {
        assert!(RevisionId::new("image@sha256:abc \"quoted\"").is_ok());
        assert!(RevisionId::new("line\nbreak").is_err());
        assert!(RevisionId::new("").is_err());
    }

    #[test]
    fn ids_deserialize_through_validation() {
        let err = serde_json::from_str::<RolloutId>("\"a/b\"").unwrap_err();
        assert!(err.to_string().contains("contains '/'"), "{err}");
        let ok: RevisionId = serde_json::from_str("\"v2\"").unwrap();
        assert_eq!(ok.as_str(), "v2");
    }
}
