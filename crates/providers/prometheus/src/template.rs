//! PromQL templates with named arguments, and the escaping that keeps a hostile argument from
//! changing the query.
//!
//! A template is PromQL text with `{name}` placeholders (a `{`, an identifier, a `}`; label
//! matchers like `{code="200"}` are left alone). Filling a template treats each placeholder by
//! where it stands and what it is called:
//!
//! | placeholder | where it may stand | what is inserted |
//! |---|---|---|
//! | `{window}` | outside quotes | a PromQL duration (`30s`, `5m`, `1h30m`), validated, not escaped |
//! | `{quantile}` | outside quotes | a number in 0..=1, validated |
//! | any other (`{revision}`, `{service}`, `{namespace}`, ...) | inside a double-quoted string | the value escaped as a PromQL string (and, in a `=~` / `!~` matcher, as a literal regular expression) |
//!
//! A label placeholder outside a double-quoted string, or inside a single-quoted or backtick
//! string, is refused: there is no escaping that makes it safe there.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use cutover_core::ProviderError;

/// The placeholder filled with a PromQL duration.
pub const WINDOW: &str = "window";
/// The placeholder filled with a quantile between 0 and 1.
pub const QUANTILE: &str = "quantile";
/// The placeholder the metric source fills with the revision (a label value).
pub const REVISION: &str = "revision";

/// Why a template could not be filled. Each is a mistake in the template or its arguments, so
/// it becomes a [`ProviderError`] of kind `Permanent`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TemplateError {
    /// A placeholder has no value.
    #[error("template `{template}` needs a value for `{{{name}}}`")]
    MissingArgument {
        /// The template's name.
        template: String,
        /// The placeholder.
        name: String,
    },
    /// A label placeholder stands outside a double-quoted string.
    #[error(
        "template `{template}` uses `{{{name}}}` outside a double-quoted string; write `label=\"{{{name}}}\"`"
    )]
    Unquoted {
        /// The template's name.
        template: String,
        /// The placeholder.
        name: String,
    },
    /// `{window}` or `{quantile}` stands inside a string.
    #[error(
        "template `{template}` uses `{{{name}}}` inside a string; it must stand outside quotes"
    )]
    Quoted {
        /// The template's name.
        template: String,
        /// The placeholder.
        name: String,
    },
    /// A string in the template is not closed.
    #[error("template `{template}` has a string that is never closed")]
    Unterminated {
        /// The template's name.
        template: String,
    },
    /// The window is not a PromQL duration.
    #[error("`{value}` is not a PromQL duration (like 30s, 5m, 1h30m, 500ms; not zero)")]
    InvalidWindow {
        /// The value given.
        value: String,
    },
    /// The quantile is not a number in 0..=1.
    #[error("`{value}` is not a quantile (a number from 0 to 1)")]
    InvalidQuantile {
        /// The value given.
        value: String,
    },
}

impl From<TemplateError> for ProviderError {
    fn from(err: TemplateError) -> Self {
        ProviderError::permanent(err.to_string())
    }
}

/// What a template's PromQL yields, and so which [`Samples`](cutover_core::Samples) it becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Shape {
    /// One expression. Its result (vector, matrix or scalar) becomes `Samples::Values`.
    Value(Cow<'static, str>),
    /// Two expressions that each yield one number: events and total, which become
    /// `Samples::Counts` (rounded to whole requests).
    Counts {
        /// The events (errors, conversions...), like `sum(increase(..{code="5xx"}[{window}]))`.
        events: Cow<'static, str>,
        /// All requests, like `sum(increase(..[{window}]))`.
        total: Cow<'static, str>,
    },
}

/// A named PromQL template: the built-ins in [`templates`](crate::templates), or your own.
///
/// ```
/// use cutover_prometheus::{Args, Template};
///
/// let t = Template::custom_value(
///     "queue-depth",
///     r#"max(queue_depth{service="{service}",version="{revision}"}[{window}])"#,
/// );
/// let q = t.fill(&Args::new().set("service", "x\"}").set("revision", "v2").set("window", "1m"))?;
/// assert_eq!(q.value(), Some(r#"max(queue_depth{service="x\"}",version="v2"}[1m])"#));
/// # Ok::<(), cutover_prometheus::TemplateError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    name: Cow<'static, str>,
    description: Cow<'static, str>,
    shape: Shape,
}

/// A template with its placeholders filled: PromQL ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Filled {
    /// One expression.
    Value(String),
    /// Events and total.
    Counts {
        /// The events expression.
        events: String,
        /// The total expression.
        total: String,
    },
}

impl Filled {
    /// The expression of a [`Filled::Value`].
    pub fn value(&self) -> Option<&str> {
        match self {
            Filled::Value(q) => Some(q),
            Filled::Counts { .. } => None,
        }
    }
}

impl Template {
    /// A built-in style template with one expression (`Samples::Values`).
    pub const fn value(
        name: &'static str,
        description: &'static str,
        promql: &'static str,
    ) -> Self {
        Template {
            name: Cow::Borrowed(name),
            description: Cow::Borrowed(description),
            shape: Shape::Value(Cow::Borrowed(promql)),
        }
    }

    /// A built-in style template with an events and a total expression (`Samples::Counts`).
    pub const fn counts(
        name: &'static str,
        description: &'static str,
        events: &'static str,
        total: &'static str,
    ) -> Self {
        Template {
            name: Cow::Borrowed(name),
            description: Cow::Borrowed(description),
            shape: Shape::Counts {
                events: Cow::Borrowed(events),
                total: Cow::Borrowed(total),
            },
        }
    }

    /// Your own template with one expression.
    pub fn custom_value(name: impl Into<String>, promql: impl Into<String>) -> Self {
        Template {
            name: Cow::Owned(name.into()),
            description: Cow::Borrowed("user template"),
            shape: Shape::Value(Cow::Owned(promql.into())),
        }
    }

    /// Your own template with an events and a total expression.
    pub fn custom_counts(
        name: impl Into<String>,
        events: impl Into<String>,
        total: impl Into<String>,
    ) -> Self {
        Template {
            name: Cow::Owned(name.into()),
            description: Cow::Borrowed("user template"),
            shape: Shape::Counts {
                events: Cow::Owned(events.into()),
                total: Cow::Owned(total.into()),
            },
        }
    }

    /// The name the template is registered under, like `local/error-rate`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What it measures and in which unit.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Its PromQL.
    pub fn shape(&self) -> &Shape {
        &self.shape
    }

    /// The placeholders it uses, sorted, each once.
    pub fn placeholders(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .texts()
            .into_iter()
            .flat_map(|text| {
                let mut found = Vec::new();
                let mut rest = text;
                while let Some(at) = rest.find('{') {
                    rest = &rest[at..];
                    if let Some((name, len)) = placeholder(rest) {
                        found.push(name.to_owned());
                        rest = &rest[len..];
                    } else {
                        rest = &rest[1..];
                    }
                }
                found
            })
            .collect();
        names.sort();
        names.dedup();
        names
    }

    fn texts(&self) -> Vec<&str> {
        match &self.shape {
            Shape::Value(q) => vec![q],
            Shape::Counts { events, total } => vec![events, total],
        }
    }

    /// The PromQL with every placeholder replaced by its escaped or validated value.
    pub fn fill(&self, args: &Args) -> Result<Filled, TemplateError> {
        Ok(match &self.shape {
            Shape::Value(q) => Filled::Value(fill_text(&self.name, q, args)?),
            Shape::Counts { events, total } => Filled::Counts {
                events: fill_text(&self.name, events, args)?,
                total: fill_text(&self.name, total, args)?,
            },
        })
    }
}

/// Named values for a template's placeholders.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Args(BTreeMap<String, String>);

impl Args {
    /// No values.
    pub fn new() -> Self {
        Args::default()
    }

    /// Sets `name` to `value` (unescaped: [`Template::fill`] escapes it).
    pub fn set(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.insert(name, value);
        self
    }

    /// Sets `name` to `value` in place.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.0.insert(name.into(), value.into());
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// Whether `name` has a value.
    pub fn contains(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    /// These values, then `other`'s on top.
    pub fn merged(&self, other: &Args) -> Args {
        let mut out = self.clone();
        for (k, v) in &other.0 {
            out.0.insert(k.clone(), v.clone());
        }
        out
    }
}

/// `{ident}` at the start of `text`: the name and the length of the placeholder.
fn placeholder(text: &str) -> Option<(&str, usize)> {
    let rest = text.strip_prefix('{')?;
    let end = rest.find('}')?;
    let name = &rest[..end];
    let mut chars = name.chars();
    let first = chars.next()?;
    if !(first.is_ascii_alphabetic() || first == '_')
        || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return None;
    }
    Some((name, end + 2))
}

fn fill_text(template: &str, text: &str, args: &Args) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(text.len() + 32);
    // The quote character of the string we are in, and whether it is a regex matcher's.
    let mut string: Option<(char, bool)> = None;
    let mut escaped = false;
    let mut i = 0;
    while i < text.len() {
        let rest = &text[i..];
        let c = rest.chars().next().expect("i is on a char boundary");
        if escaped {
            escaped = false;
            out.push(c);
            i += c.len_utf8();
            continue;
        }
        if let Some((name, len)) = placeholder(rest) {
            let value = || {
                args.get(name)
                    .ok_or_else(|| TemplateError::MissingArgument {
                        template: template.to_owned(),
                        name: name.to_owned(),
                    })
            };
            let special = name == WINDOW || name == QUANTILE;
            match string {
                None if name == WINDOW => out.push_str(&validate_window(value()?)?),
                None if name == QUANTILE => out.push_str(&validate_quantile(value()?)?),
                Some(_) if special => {
                    return Err(TemplateError::Quoted {
                        template: template.to_owned(),
                        name: name.to_owned(),
                    });
                }
                Some(('"', regex)) => {
                    let v = value()?;
                    if regex {
                        out.push_str(&escape_label_value(&escape_regex(v)));
                    } else {
                        out.push_str(&escape_label_value(v));
                    }
                }
                _ => {
                    return Err(TemplateError::Unquoted {
                        template: template.to_owned(),
                        name: name.to_owned(),
                    });
                }
            }
            i += len;
            continue;
        }
        match string {
            Some((quote, _)) => {
                if c == '\\' && quote != '`' {
                    escaped = true;
                } else if c == quote {
                    string = None;
                }
            }
            None => {
                if matches!(c, '"' | '\'' | '`') {
                    let before = out.trim_end();
                    let regex = before.ends_with("=~") || before.ends_with("!~");
                    string = Some((c, regex));
                }
            }
        }
        out.push(c);
        i += c.len_utf8();
    }
    if string.is_some() {
        return Err(TemplateError::Unterminated {
            template: template.to_owned(),
        });
    }
    Ok(out)
}

/// `value` as the inside of a PromQL double-quoted string: backslash, double quote and every
/// control character escaped, so the string ends exactly where the template's quote ends it.
///
/// ```
/// use cutover_prometheus::template::escape_label_value;
/// assert_eq!(escape_label_value("a\"}\\\n"), r#"a\"}\\\n"#);
/// ```
pub fn escape_label_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

/// `value` as a regular expression (RE2) that matches exactly `value`: every metacharacter
/// escaped with a backslash. PromQL anchors regex matchers, so this is an exact match.
///
/// ```
/// use cutover_prometheus::template::escape_regex;
/// assert_eq!(escape_regex("v1.2|.*"), r"v1\.2\|\.\*");
/// ```
pub fn escape_regex(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 4);
    for c in value.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Checks that `value` is a PromQL duration: one or more `<digits><unit>` with units from
/// `y w d h m s ms`, each at most once and largest first, and not zero in total.
///
/// ```
/// use cutover_prometheus::template::validate_window;
/// assert_eq!(validate_window("1h30m").unwrap(), "1h30m");
/// assert!(validate_window("5m] or vector(1) #").is_err());
/// assert!(validate_window("0s").is_err());
/// ```
pub fn validate_window(value: &str) -> Result<String, TemplateError> {
    const UNITS: [&str; 7] = ["y", "w", "d", "h", "m", "s", "ms"];
    let invalid = || TemplateError::InvalidWindow {
        value: value.to_owned(),
    };
    let mut rest = value;
    let mut next_unit = 0;
    let mut nonzero = false;
    if rest.is_empty() {
        return Err(invalid());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(invalid)?;
        if digits == 0 {
            return Err(invalid());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| invalid())?;
        nonzero |= number > 0;
        rest = &rest[digits..];
        let unit_len = if rest.starts_with("ms") {
            2
        } else {
            usize::from(!rest.is_empty())
        };
        let unit = &rest[..unit_len.min(rest.len())];
        let index = UNITS.iter().position(|u| *u == unit).ok_or_else(invalid)?;
        if index < next_unit {
            return Err(invalid());
        }
        next_unit = index + 1;
        rest = &rest[unit.len()..];
    }
    if nonzero {
        Ok(value.to_owned())
    } else {
        Err(invalid())
    }
}

/// Checks that `value` is a number from 0 to 1 and writes it the way PromQL reads it.
pub fn validate_quantile(value: &str) -> Result<String, TemplateError> {
    match value.trim().parse::<f64>() {
        Ok(q) if (0.0..=1.0).contains(&q) => Ok(format!("{q}")),
        _ => Err(TemplateError::InvalidQuantile {
            value: value.to_owned(),
        }),
    }
}

/// A [`Duration`] as a PromQL duration: whole seconds as `Ns`, otherwise `Nms`. Less than a
/// millisecond is refused.
///
/// ```
/// use std::time::Duration;
/// use cutover_prometheus::template::promql_duration;
/// assert_eq!(promql_duration(Duration::from_secs(300)).unwrap(), "300s");
/// assert_eq!(promql_duration(Duration::from_millis(1500)).unwrap(), "1500ms");
/// assert!(promql_duration(Duration::ZERO).is_err());
/// ```
pub fn promql_duration(window: Duration) -> Result<String, TemplateError> {
    let ms = window.as_millis();
    if ms == 0 {
        return Err(TemplateError::InvalidWindow {
            value: format!("{window:?}"),
        });
    }
    Ok(if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names that try to break out of a label value.
    pub(crate) const HOSTILE: [&str; 8] = [
        "\"",
        "\\",
        "\"}",
        "v2\"} or vector(1) or x{a=\"",
        "v2\\\"} or vector(1) #",
        "line\nbreak",
        "tab\tnul\u{0}bell\u{7}del\u{7f}",
        "\\\\\"\"\\",
    ];

    /// Reads a filled query back: strips the contents of every double-quoted string (honouring
    /// escapes), returning the structure left and the decoded string values, the way PromQL's
    /// lexer does.
    fn lex(query: &str) -> (String, Vec<String>) {
        let mut skeleton = String::new();
        let mut strings = Vec::new();
        let mut chars = query.chars();
        while let Some(c) = chars.next() {
            if c != '"' {
                skeleton.push(c);
                continue;
            }
            skeleton.push_str("\"\"");
            let mut value = String::new();
            loop {
                match chars.next().expect("string closed") {
                    '"' => break,
                    '\\' => match chars.next().expect("escape complete") {
                        'n' => value.push('\n'),
                        'r' => value.push('\r'),
                        't' => value.push('\t'),
                        'u' => {
                            let hex: String = chars.by_ref().take(4).collect();
                            let code = u32::from_str_radix(&hex, 16).expect("hex");
                            value.push(char::from_u32(code).expect("char"));
                        }
                        other => value.push(other),
                    },
                    '\n' => panic!("raw newline in a string: {query}"),
                    other => value.push(other),
                }
            }
            strings.push(value);
        }
        (skeleton, strings)
    }

    const T: Template = Template::value(
        "t",
        "test",
        r#"sum(rate(http_requests_total{service="{service}",version="{revision}",code=~"5.."}[{window}]))"#,
    );

    #[test]
    fn hostile_names_stay_inside_their_label_values() {
        let benign = T
            .fill(
                &Args::new()
                    .set("service", "checkout")
                    .set("revision", "v2")
                    .set("window", "1m"),
            )
            .unwrap();
        let (expected_skeleton, _) = lex(benign.value().unwrap());
        for name in HOSTILE {
            let filled = T
                .fill(
                    &Args::new()
                        .set("service", name)
                        .set("revision", name)
                        .set("window", "1m"),
                )
                .unwrap();
            let q = filled.value().unwrap();
            assert!(!q.contains('\n'), "raw newline in {q:?}");
            let (skeleton, strings) = lex(q);
            assert_eq!(
                skeleton, expected_skeleton,
                "{name:?} changed the query: {q}"
            );
            assert_eq!(strings, [name, name, "5.."], "{name:?} did not round-trip");
            assert_eq!(q.matches('{').count() - name.matches('{').count() * 2, 1);
        }
    }

    #[test]
    fn values_are_never_filled_again() {
        let q = T
            .fill(
                &Args::new()
                    .set("service", "{revision}")
                    .set("revision", "{window}")
                    .set("window", "1m"),
            )
            .unwrap();
        assert!(
            q.value()
                .unwrap()
                .contains(r#"service="{revision}",version="{window}""#),
            "{q:?}"
        );
    }

    #[test]
    fn regex_matchers_match_the_name_literally() {
        let t = Template::custom_value("r", r#"up{version=~"{revision}"}"#);
        let q = t.fill(&Args::new().set("revision", ".*\"}")).unwrap();
        let (_, strings) = lex(q.value().unwrap());
        assert_eq!(strings, [r#"\.\*"\}"#]);
        // Plain matchers are not regex-escaped.
        let q = T
            .fill(
                &Args::new()
                    .set("service", ".*")
                    .set("revision", "v1")
                    .set("window", "5m"),
            )
            .unwrap();
        assert!(q.value().unwrap().contains("service=\".*\""));
    }

    #[test]
    fn placeholders_must_be_quoted_and_windows_must_not() {
        let unquoted = Template::custom_value("u", "up{job={service}}");
        assert!(matches!(
            unquoted.fill(&Args::new().set("service", "x")),
            Err(TemplateError::Unquoted { .. })
        ));
        let single = Template::custom_value("s", "up{job='{service}'}");
        assert!(matches!(
            single.fill(&Args::new().set("service", "x")),
            Err(TemplateError::Unquoted { .. })
        ));
        let quoted_window = Template::custom_value("w", r#"up{job="{window}"}"#);
        assert!(matches!(
            quoted_window.fill(&Args::new().set("window", "5m")),
            Err(TemplateError::Quoted { .. })
        ));
        let open = Template::custom_value("o", r#"up{job="{service}}"#);
        assert!(matches!(
            open.fill(&Args::new().set("service", "x")),
            Err(TemplateError::Unterminated { .. })
        ));
        assert_eq!(
            T.fill(&Args::new().set("service", "x").set("window", "1m")),
            Err(TemplateError::MissingArgument {
                template: "t".into(),
                name: "revision".into()
            })
        );
    }

    #[test]
    fn windows_are_validated_not_escaped() {
        for ok in [
            "1s",
            "30s",
            "5m",
            "1h30m",
            "500ms",
            "1y2w3d4h5m6s7ms",
            "90s",
        ] {
            assert_eq!(validate_window(ok).unwrap(), ok);
        }
        for bad in [
            "",
            "5",
            "m",
            "0s",
            "0m0s",
            "5m5m",
            "5s5m",
            "1.5m",
            "-5m",
            "5 m",
            "5M",
            "5m]",
            "5m] or vector(1)",
            "5m\n",
            "1h30",
            "\"5m\"",
        ] {
            assert!(validate_window(bad).is_err(), "{bad:?} accepted");
        }
        let hostile = Args::new()
            .set("service", "s")
            .set("revision", "r")
            .set("window", "5m])) or vector(1) or sum(rate(x[5m");
        assert!(matches!(
            T.fill(&hostile),
            Err(TemplateError::InvalidWindow { .. })
        ));
    }

    #[test]
    fn quantiles_are_numbers_from_zero_to_one() {
        assert_eq!(validate_quantile("0.99").unwrap(), "0.99");
        assert_eq!(validate_quantile("1").unwrap(), "1");
        for bad in ["1.5", "-0.1", "NaN", "0.9) or vector(1", ""] {
            assert!(validate_quantile(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn placeholders_are_listed_once_and_matchers_are_not_placeholders() {
        assert_eq!(T.placeholders(), ["revision", "service", "window"]);
        let c = Template::counts("c", "", "a{x=\"{a}\"}[{window}]", "b{x=\"{a}\"}");
        assert_eq!(c.placeholders(), ["a", "window"]);
    }
}
