//! The Prometheus HTTP API's JSON, and how a result becomes [`Samples`].
//!
//! | result | `Samples::Values` (value templates) | one number (each side of a counts template) |
//! |---|---|---|
//! | vector | one value per series | the sum of the series' values |
//! | matrix | every point of every series, series by series, oldest first | refused (`Permanent`) |
//! | scalar | the value | the value |
//! | string | refused (`Permanent`) | refused (`Permanent`) |
//!
//! NaN values are dropped (`0/0` when a revision had no requests, `histogram_quantile` over
//! empty buckets), so a result of only NaN, or no series at all, is **no data**: empty
//! samples, which the analysis counts as inconclusive, never zero and never an error. `+Inf`
//! is kept (a quantile beyond the largest bucket is a real, bad value).
//!
//! Counts: no data for the total, or a total under one request, is no data; no data for the
//! events while the total has some is zero events (the series of an error class may not exist
//! yet). Both are rounded to whole requests (`increase()` extrapolates) and the events are
//! capped at the total.

use std::collections::BTreeMap;

use cutover_core::{ProviderError, Samples};
use serde::Deserialize;

/// One series of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The series' labels (`__name__` included when Prometheus returns it).
    pub metric: BTreeMap<String, String>,
    /// Unix time of the value, seconds.
    pub timestamp: f64,
    /// The value (NaN and ±Inf as Prometheus sent them).
    pub value: f64,
}

/// One series of a range vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The series' labels.
    pub metric: BTreeMap<String, String>,
    /// `(unix time in seconds, value)`, oldest first.
    pub values: Vec<(f64, f64)>,
}

/// The `data` of a successful query.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum QueryData {
    /// An instant vector: one value per series.
    Vector(Vec<Sample>),
    /// A range vector: many values per series.
    Matrix(Vec<Series>),
    /// A scalar: `(unix time, value)`.
    Scalar(f64, f64),
    /// A string: `(unix time, text)`.
    String(f64, String),
}

/// The envelope every API answer has, success or error.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Envelope {
    pub(crate) status: String,
    #[serde(default)]
    pub(crate) data: Option<RawData>,
    #[serde(default)]
    pub(crate) error_type: Option<String>,
    #[serde(default)]
    pub(crate) error: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
pub(crate) enum RawData {
    Vector(Vec<RawSample>),
    Matrix(Vec<RawSeries>),
    Scalar((f64, String)),
    String((f64, String)),
}

#[derive(Debug, Deserialize)]
pub(crate) struct RawSample {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    value: (f64, String),
}

#[derive(Debug, Deserialize)]
pub(crate) struct RawSeries {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    values: Vec<(f64, String)>,
}

/// A value as Prometheus writes it: a decimal, `NaN`, `+Inf` or `-Inf`.
fn number(text: &str) -> Result<f64, String> {
    match text {
        "NaN" => Ok(f64::NAN),
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        other => other
            .parse()
            .map_err(|_| format!("`{other}` is not a number")),
    }
}

impl RawData {
    pub(crate) fn parse(self) -> Result<QueryData, String> {
        Ok(match self {
            RawData::Vector(samples) => QueryData::Vector(
                samples
                    .into_iter()
                    .map(|s| {
                        Ok(Sample {
                            metric: s.metric,
                            timestamp: s.value.0,
                            value: number(&s.value.1)?,
                        })
                    })
                    .collect::<Result<_, String>>()?,
            ),
            RawData::Matrix(series) => QueryData::Matrix(
                series
                    .into_iter()
                    .map(|s| {
                        Ok(Series {
                            metric: s.metric,
                            values: s
                                .values
                                .into_iter()
                                .map(|(t, v)| Ok((t, number(&v)?)))
                                .collect::<Result<_, String>>()?,
                        })
                    })
                    .collect::<Result<_, String>>()?,
            ),
            RawData::Scalar((t, v)) => QueryData::Scalar(t, number(&v)?),
            RawData::String((t, s)) => QueryData::String(t, s),
        })
    }
}

impl QueryData {
    /// The result as `Samples::Values` (see the module docs): NaN dropped, no data empty.
    pub fn to_values(&self, what: &str) -> Result<Samples, ProviderError> {
        let values: Vec<f64> = match self {
            QueryData::Vector(samples) => samples.iter().map(|s| s.value).collect(),
            QueryData::Matrix(series) => series
                .iter()
                .flat_map(|s| s.values.iter().map(|(_, v)| *v))
                .collect(),
            QueryData::Scalar(_, v) => vec![*v],
            QueryData::String(..) => return Err(not_a_number(what, "a string")),
        };
        Ok(Samples::Values(
            values.into_iter().filter(|v| !v.is_nan()).collect(),
        ))
    }

    /// The result as one number: a scalar, or the sum of a vector's values. `None` is no data
    /// (no series, or only NaN).
    pub fn to_number(&self, what: &str) -> Result<Option<f64>, ProviderError> {
        let values: Vec<f64> = match self {
            QueryData::Vector(samples) => samples.iter().map(|s| s.value).collect(),
            QueryData::Scalar(_, v) => vec![*v],
            QueryData::Matrix(_) => return Err(not_a_number(what, "a range vector")),
            QueryData::String(..) => return Err(not_a_number(what, "a string")),
        };
        let values: Vec<f64> = values.into_iter().filter(|v| !v.is_nan()).collect();
        Ok((!values.is_empty()).then(|| values.iter().sum()))
    }
}

fn not_a_number(what: &str, got: &str) -> ProviderError {
    ProviderError::permanent(format!(
        "{what}: the query returned {got}; it must return an instant vector or a scalar"
    ))
}

/// Events and total, each one number or no data, as `Samples::Counts` (see the module docs).
pub fn counts(events: Option<f64>, total: Option<f64>) -> Samples {
    let Some(total) = total.filter(|t| t.is_finite() && *t >= 0.5) else {
        return Samples::empty();
    };
    let events = events.filter(|e| e.is_finite() && *e > 0.0).unwrap_or(0.0);
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let (events, total) = (events.round() as u64, total.round() as u64);
    Samples::Counts {
        events: events.min(total),
        total,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> QueryData {
        let env: Envelope = serde_json::from_str(json).unwrap();
        assert_eq!(env.status, "success");
        env.data.unwrap().parse().unwrap()
    }

    #[test]
    fn vector_gives_one_value_per_series_and_drops_nan() {
        let data = parse(
            r#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"revision":"v2"},"value":[1700000000.5,"0.25"]},
            {"metric":{"revision":"v2","x":"y"},"value":[1700000000.5,"NaN"]},
            {"metric":{},"value":[1700000000.5,"+Inf"]}]}}"#,
        );
        assert_eq!(
            data.to_values("q").unwrap(),
            Samples::Values(vec![0.25, f64::INFINITY])
        );
        assert_eq!(data.to_number("q").unwrap(), Some(f64::INFINITY));
        let QueryData::Vector(s) = &data else {
            panic!()
        };
        assert_eq!(s[0].metric["revision"], "v2");
        assert!((s[0].timestamp - 1_700_000_000.5).abs() < 1e-9);
    }

    #[test]
    fn matrix_gives_every_point_and_is_not_a_number() {
        let data = parse(
            r#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"a":"1"},"values":[[1,"1"],[2,"2"],[3,"NaN"]]},
            {"metric":{"a":"2"},"values":[[1,"10"]]}]}}"#,
        );
        assert_eq!(
            data.to_values("q").unwrap(),
            Samples::Values(vec![1.0, 2.0, 10.0])
        );
        let err = data.to_number("q").unwrap_err();
        assert_eq!(err.kind(), cutover_core::ErrorKind::Permanent);
        assert!(err.message().contains("range vector"));
    }

    #[test]
    fn scalar_nan_and_empty_are_no_data() {
        let nan =
            parse(r#"{"status":"success","data":{"resultType":"scalar","result":[1,"NaN"]}}"#);
        assert!(nan.to_values("q").unwrap().is_empty());
        assert_eq!(nan.to_number("q").unwrap(), None);
        let two = parse(r#"{"status":"success","data":{"resultType":"scalar","result":[1,"2"]}}"#);
        assert_eq!(two.to_values("q").unwrap(), Samples::Values(vec![2.0]));
        let empty = parse(r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#);
        assert!(empty.to_values("q").unwrap().is_empty());
        assert_eq!(empty.to_number("q").unwrap(), None);
        let string =
            parse(r#"{"status":"success","data":{"resultType":"string","result":[1,"hi"]}}"#);
        assert_eq!(
            string.to_values("q").unwrap_err().kind(),
            cutover_core::ErrorKind::Permanent
        );
    }

    #[test]
    fn counts_round_cap_and_treat_missing_totals_as_no_data() {
        assert_eq!(
            counts(Some(4.6), Some(99.6)),
            Samples::Counts {
                events: 5,
                total: 100
            }
        );
        assert_eq!(
            counts(None, Some(10.0)),
            Samples::Counts {
                events: 0,
                total: 10
            }
        );
        assert_eq!(
            counts(Some(12.0), Some(10.2)),
            Samples::Counts {
                events: 10,
                total: 10
            }
        );
        assert!(counts(Some(3.0), None).is_empty());
        assert!(counts(Some(0.0), Some(0.2)).is_empty());
        assert!(counts(None, Some(f64::INFINITY)).is_empty());
    }

    #[test]
    fn error_envelopes_parse() {
        let env: Envelope = serde_json::from_str(
            r#"{"status":"error","errorType":"bad_data","error":"1:5: parse error: unexpected"}"#,
        )
        .unwrap();
        assert_eq!(env.status, "error");
        assert_eq!(env.error_type.as_deref(), Some("bad_data"));
        assert!(env.error.unwrap().contains("parse error"));
        assert!(env.data.is_none());
        let bad: Result<Envelope, _> = serde_json::from_str(
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"x"]}]}}"#,
        );
        assert!(bad.unwrap().data.unwrap().parse().is_err());
    }
}
