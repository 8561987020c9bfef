//! YAML with positions: where each key and value of a document is, so that an error about a
//! field (`strategy.canary.steps[2].set_weight`) can name its line and column.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// A line and column, from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub(crate) struct Position {
    /// The line, from 1.
    pub(crate) line: u32,
    /// The column, from 1.
    pub(crate) column: u32,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

impl Position {
    fn of(location: &serde_saphyr::Location) -> Option<Self> {
        let (line, column) = (location.line(), location.column());
        (line > 0).then_some(Position {
            line: u32::try_from(line).unwrap_or(u32::MAX),
            column: u32::try_from(column).unwrap_or(u32::MAX),
        })
    }
}

/// A document's tree with the position of every key and value.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    /// A mapping: each key's text and position, and its value.
    Map(Vec<(String, Option<Position>, Located)>),
    /// A sequence.
    Seq(Vec<Located>),
    /// A scalar (its text does not matter here).
    Scalar,
}

/// A node and where it starts.
#[derive(Debug, Clone)]
pub(crate) struct Located {
    /// Where the value starts.
    pub(crate) at: Option<Position>,
    /// The value.
    pub(crate) node: Node,
}

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    /// A mapping key.
    Key(String),
    /// A sequence index.
    Index(usize),
}

/// Splits a path like `analyses.errors.threshold.metrics[0].max` into segments.
pub(crate) fn segments(path: &str) -> Vec<Segment> {
    let mut out = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let mut rest = part;
        if let Some(open) = rest.find('[') {
            let key = &rest[..open];
            if !key.is_empty() {
                out.push(Segment::Key(key.to_owned()));
            }
            rest = &rest[open..];
            while let Some(stripped) = rest.strip_prefix('[') {
                let Some(close) = stripped.find(']') else {
                    break;
                };
                if let Ok(i) = stripped[..close].parse() {
                    out.push(Segment::Index(i));
                }
                rest = &stripped[close + 1..];
            }
        } else {
            out.push(Segment::Key(rest.to_owned()));
        }
    }
    out
}

impl Located {
    /// Parses `text` (one YAML document).
    pub(crate) fn parse(text: &str) -> Result<Located, serde_saphyr::Error> {
        let spanned: Spanned<Node> = serde_saphyr::from_str(text)?;
        Ok(Located {
            at: Position::of(&spanned.referenced),
            node: spanned.value,
        })
    }

    /// The position of the deepest part of `path` that exists: the key for a field (where a
    /// person looks for it), the start of the element for an index.
    pub(crate) fn position(&self, path: &[Segment]) -> Option<Position> {
        let mut here = self;
        let mut best = self.at;
        for segment in path {
            match (segment, &here.node) {
                (Segment::Key(key), Node::Map(entries)) => {
                    let Some((_, key_at, value)) = entries.iter().find(|(k, _, _)| k == key) else {
                        break;
                    };
                    best = key_at.or(value.at).or(best);
                    here = value;
                }
                (Segment::Index(i), Node::Seq(items)) => {
                    let Some(item) = items.get(*i) else {
                        break;
                    };
                    best = item.at.or(best);
                    here = item;
                }
                _ => break,
            }
        }
        best
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<KeyText>>()? {
            let value: Spanned<Node> = map.next_value()?;
            entries.push((
                key.value.0,
                Position::of(&key.referenced),
                Located {
                    at: Position::of(&value.referenced),
                    node: value.value,
                },
            ));
        }
        Ok(Node::Map(entries))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Node>>()? {
            items.push(Located {
                at: Position::of(&item.referenced),
                node: item.value,
            });
        }
        Ok(Node::Seq(items))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

/// A mapping key as text, whatever scalar it is.
struct KeyText(String);

impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = KeyText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<KeyText, E> {
                Ok(KeyText(v.to_owned()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<KeyText, E> {
                Ok(KeyText("null".to_owned()))
            }
        }
        deserializer.deserialize_any(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
strategy:
  canary:
    steps:
      - set_weight: 10
      - pause: { duration: 5m }
analyses:
  errors:
    threshold: { metrics: [ { name: e, max: 1 } ] }
";

    fn at(path: &str) -> Option<(u32, u32)> {
        Located::parse(DOC)
            .unwrap()
            .position(&segments(path))
            .map(|p| (p.line, p.column))
    }

    #[test]
    fn paths_split_into_keys_and_indices() {
        assert_eq!(
            segments("a.b[2][3].c"),
            [
                Segment::Key("a".into()),
                Segment::Key("b".into()),
                Segment::Index(2),
                Segment::Index(3),
                Segment::Key("c".into()),
            ]
        );
    }

    #[test]
    fn fields_resolve_to_their_keys() {
        assert_eq!(at("strategy"), Some((1, 1)));
        assert_eq!(at("strategy.canary.steps"), Some((3, 5)));
        assert_eq!(at("strategy.canary.steps[1]"), Some((5, 9)));
        assert_eq!(at("strategy.canary.steps[1].pause.duration"), Some((5, 18)));
        assert_eq!(
            at("analyses.errors.threshold.metrics[0].max"),
            Some((8, 40))
        );
        // A part that does not exist: the deepest part that does.
        assert_eq!(at("strategy.canary.steps[7].set_weight"), Some((3, 5)));
    }
}
