//! Traffic weights in basis points and splits that always add up to 100 %.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use thiserror::Error;

use crate::RevisionId;

/// 100 % in basis points.
pub const TOTAL_BASIS_POINTS: u16 = 10_000;

/// Why a weight, a split or a granularity was rejected.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum SplitError {
    /// A weight above 100 %.
    #[error("weight {basis_points} bp is above 100 % (10000 bp)")]
    WeightOutOfRange {
        /// The rejected weight.
        basis_points: u32,
    },
    /// A percentage that is not a whole number of basis points (0.01 %).
    #[error("weight {percent} % is not a multiple of 0.01 % (one basis point)")]
    NotBasisPoints {
        /// The rejected percentage.
        percent: f64,
    },
    /// A split with no revisions.
    #[error("a traffic split needs at least one revision")]
    Empty,
    /// A revision listed twice.
    #[error("revision `{0}` appears twice in the split")]
    DuplicateRevision(RevisionId),
    /// Weights that do not add up to 100 %.
    #[error("weights add up to {sum} bp; they must add up to exactly 10000 bp (100 %)")]
    Sum {
        /// The sum found.
        sum: u32,
    },
    /// A granularity step that does not divide 100 %.
    #[error("granularity step {0} bp must be between 1 and 10000 and divide 10000")]
    Granularity(u16),
}

/// A share of traffic in basis points: 0 to 10 000 (0.01 % steps).
///
/// In plans it is written as a percentage: `set_weight: 12.5` is 1250 bp.
///
/// ```
/// use cutover_core::Weight;
/// let w = Weight::from_percent(10)?;
/// assert_eq!(w.basis_points(), 1000);
/// assert_eq!(w.complement().basis_points(), 9000);
/// assert_eq!(Weight::from_basis_points(1250)?.to_string(), "12.5%");
/// assert!(Weight::from_basis_points(10_001).is_err());
/// # Ok::<(), cutover_core::SplitError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Weight(u16);

impl Weight {
    /// No traffic.
    pub const ZERO: Weight = Weight(0);
    /// All traffic.
    pub const FULL: Weight = Weight(TOTAL_BASIS_POINTS);

    /// A weight of `bp` basis points.
    pub fn from_basis_points(bp: u16) -> Result<Self, SplitError> {
        if bp > TOTAL_BASIS_POINTS {
            return Err(SplitError::WeightOutOfRange {
                basis_points: u32::from(bp),
            });
        }
        Ok(Weight(bp))
    }

    /// A weight of a whole percentage.
    pub fn from_percent(percent: u8) -> Result<Self, SplitError> {
        Self::from_basis_points(u16::from(percent) * 100)
    }

    /// A weight from a fractional percentage, which must be a whole number of basis points.
    pub fn from_percent_f64(percent: f64) -> Result<Self, SplitError> {
        let bp = percent * 100.0;
        let rounded = bp.round();
        if !bp.is_finite() || (bp - rounded).abs() > 1e-6 {
            return Err(SplitError::NotBasisPoints { percent });
        }
        if !(0.0..=f64::from(TOTAL_BASIS_POINTS)).contains(&rounded) {
            return Err(SplitError::WeightOutOfRange {
                // Saturating float-to-int cast: out-of-range values are reported as the bound.
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                basis_points: rounded.max(0.0) as u32,
            });
        }
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        Ok(Weight(rounded as u16))
    }

    /// The weight in basis points.
    pub fn basis_points(self) -> u16 {
        self.0
    }

    /// The weight as a percentage.
    pub fn percent(self) -> f64 {
        f64::from(self.0) / 100.0
    }

    /// What is left for the other revisions: `100 % - self`.
    pub fn complement(self) -> Weight {
        Weight(TOTAL_BASIS_POINTS - self.0)
    }
}

impl fmt::Display for Weight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (whole, frac) = (self.0 / 100, self.0 % 100);
        match frac {
            0 => write!(f, "{whole}%"),
            f2 if f2 % 10 == 0 => write!(f, "{whole}.{}%", f2 / 10),
            f2 => write!(f, "{whole}.{f2:02}%"),
        }
    }
}

impl Serialize for Weight {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.0.is_multiple_of(100) {
            serializer.serialize_u16(self.0 / 100)
        } else {
            serializer.serialize_f64(self.percent())
        }
    }
}

impl<'de> Deserialize<'de> for Weight {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PercentVisitor;
        impl Visitor<'_> for PercentVisitor {
            type Value = Weight;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a percentage between 0 and 100, in steps of 0.01")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Weight, E> {
                match u8::try_from(v) {
                    Ok(percent) if percent <= 100 => {
                        Weight::from_percent(percent).map_err(E::custom)
                    }
                    _ => Err(E::custom(format!("weight {v} % is above 100 %"))),
                }
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Weight, E> {
                u64::try_from(v)
                    .map_err(|_| E::custom(format!("weight {v} % is negative")))
                    .and_then(|v| self.visit_u64(v))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Weight, E> {
                if v < 0.0 {
                    return Err(E::custom(format!("weight {v} % is negative")));
                }
                if v > 100.0 {
                    return Err(E::custom(format!("weight {v} % is above 100 %")));
                }
                Weight::from_percent_f64(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(PercentVisitor)
    }
}

/// How finely a router can split traffic: every weight must be a multiple of `step` basis
/// points. Istio routes in whole percent (`step` 100); a Service selector is all or nothing
/// (`step` 10 000).
///
/// ```
/// use cutover_core::{Granularity, Weight};
/// let percent = Granularity::PERCENT;
/// assert!(percent.allows(Weight::from_percent(5)?));
/// assert!(!percent.allows(Weight::from_basis_points(50)?));
/// assert!(Granularity::new(3).is_err()); // does not divide 10000
/// # Ok::<(), cutover_core::SplitError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Granularity(u16);

impl Granularity {
    /// Any whole number of basis points.
    pub const BASIS_POINT: Granularity = Granularity(1);
    /// Whole percent.
    pub const PERCENT: Granularity = Granularity(100);
    /// All traffic to one revision at a time.
    pub const ALL_OR_NOTHING: Granularity = Granularity(TOTAL_BASIS_POINTS);

    /// A granularity of `step` basis points; `step` must divide 10 000.
    pub fn new(step: u16) -> Result<Self, SplitError> {
        if step == 0 || step > TOTAL_BASIS_POINTS || !TOTAL_BASIS_POINTS.is_multiple_of(step) {
            return Err(SplitError::Granularity(step));
        }
        Ok(Granularity(step))
    }

    /// The step in basis points.
    pub fn step(self) -> u16 {
        self.0
    }

    /// Whether a weight can be expressed.
    pub fn allows(self, weight: Weight) -> bool {
        weight.0.is_multiple_of(self.0)
    }

    /// The first weight of `split` that cannot be expressed, if any.
    pub fn first_inexpressible(self, split: &TrafficSplit) -> Option<(&RevisionId, Weight)> {
        split.iter().find(|(_, w)| !self.allows(*w))
    }
}

impl fmt::Display for Granularity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", Weight(self.0))
    }
}

/// Traffic weights per revision that add up to exactly 100 % (10 000 bp).
///
/// Revisions are kept in name order, so two splits with the same weights are equal whatever
/// order they were built in. Zero weights are kept: a router may need to know about a revision
/// that gets no traffic yet. [`TrafficSplit::same_traffic`] compares ignoring them.
///
/// Serialized as a map from revision to percentage: `{"v1": 90, "v2": 10}`.
///
/// ```
/// use cutover_core::{RevisionId, TrafficSplit, Weight};
/// let v1: RevisionId = "v1".parse()?;
/// let v2: RevisionId = "v2".parse()?;
/// let split = TrafficSplit::canary(&v1, &v2, Weight::from_percent(10)?)?;
/// assert_eq!(split.weight(&v2).basis_points(), 1000);
/// assert_eq!(split.to_string(), "v1 90%, v2 10%");
///
/// let bad = TrafficSplit::new([(v1.clone(), Weight::from_percent(60)?), (v2, Weight::from_percent(60)?)]);
/// assert!(bad.is_err()); // adds up to 120 %
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(
    try_from = "BTreeMap<RevisionId, Weight>",
    into = "BTreeMap<RevisionId, Weight>"
)]
pub struct TrafficSplit {
    /// In revision name order, each revision once. A sorted slice rather than a map: splits
    /// are small and many (states, records, router histories), and a map node costs ten times
    /// the entries it holds.
    weights: Box<[(RevisionId, Weight)]>,
}

impl TrafficSplit {
    /// A split from `(revision, weight)` pairs. Fails on no revisions, a revision listed twice,
    /// or weights that do not add up to 100 %.
    pub fn new(
        weights: impl IntoIterator<Item = (RevisionId, Weight)>,
    ) -> Result<Self, SplitError> {
        let mut list: Vec<(RevisionId, Weight)> = Vec::new();
        let mut sum = 0u32;
        for (revision, weight) in weights {
            sum += u32::from(weight.0);
            if list.iter().any(|(r, _)| *r == revision) {
                return Err(SplitError::DuplicateRevision(revision));
            }
            list.push((revision, weight));
        }
        if list.is_empty() {
            return Err(SplitError::Empty);
        }
        if sum != u32::from(TOTAL_BASIS_POINTS) {
            return Err(SplitError::Sum { sum });
        }
        list.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Ok(TrafficSplit {
            weights: list.into_boxed_slice(),
        })
    }

    /// A split from relative weights, as load balancers and meshes state them (Gateway API
    /// `backendRefs[].weight`, Istio `route[].weight`, replica counts), rounded to basis points
    /// by the largest-remainder method: each revision gets `weight × 10000 / total` rounded
    /// down, and the basis points left over go one each to the largest remainders (the earlier
    /// revision first on a tie). So the result always adds up to 100 %, and weights that are
    /// already exact (`1:3`, `25:75`) come back exactly.
    ///
    /// Fails on no revisions, a revision listed twice, or weights that are all zero
    /// ([`SplitError::Sum`] with a sum of 0).
    ///
    /// ```
    /// # use cutover_core::{RevisionId, TrafficSplit};
    /// let (a, b): (RevisionId, RevisionId) = ("a".parse()?, "b".parse()?);
    /// let split = TrafficSplit::from_relative_weights([(a.clone(), 1), (b.clone(), 2)])?;
    /// assert_eq!(split.weight(&a).basis_points(), 3333);
    /// assert_eq!(split.weight(&b).basis_points(), 6667);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_relative_weights(
        weights: impl IntoIterator<Item = (RevisionId, u64)>,
    ) -> Result<Self, SplitError> {
        let weights: Vec<(RevisionId, u128)> = weights
            .into_iter()
            .map(|(revision, weight)| (revision, u128::from(weight)))
            .collect();
        let total: u128 = weights.iter().map(|(_, w)| w).sum();
        if weights.is_empty() {
            return Err(SplitError::Empty);
        }
        if total == 0 {
            return Err(SplitError::Sum { sum: 0 });
        }
        let scale = u128::from(TOTAL_BASIS_POINTS);
        // (index, floor in bp, remainder); every floor is at most 10 000, so it fits in u16.
        let mut shares: Vec<(usize, u16, u128)> = weights
            .iter()
            .enumerate()
            .map(|(i, (_, w))| {
                let floor = u16::try_from(w * scale / total).unwrap_or(TOTAL_BASIS_POINTS);
                (i, floor, w * scale % total)
            })
            .collect();
        let assigned: u32 = shares.iter().map(|&(_, bp, _)| u32::from(bp)).sum();
        let left =
            usize::try_from(u32::from(TOTAL_BASIS_POINTS).saturating_sub(assigned)).unwrap_or(0);
        shares.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)));
        for share in shares.iter_mut().take(left) {
            share.1 += 1;
        }
        shares.sort_by_key(|&(i, _, _)| i);
        Self::new(
            weights
                .into_iter()
                .zip(shares)
                .map(|((revision, _), (_, bp, _))| (revision, Weight(bp))),
        )
    }

    /// All traffic to one revision.
    pub fn all_to(revision: &RevisionId) -> Self {
        TrafficSplit {
            weights: Box::new([(revision.clone(), Weight::FULL)]),
        }
    }

    /// `candidate_weight` to the candidate and the rest to stable; both are listed, even at 0 %.
    pub fn canary(
        stable: &RevisionId,
        candidate: &RevisionId,
        candidate_weight: Weight,
    ) -> Result<Self, SplitError> {
        Self::new([
            (stable.clone(), candidate_weight.complement()),
            (candidate.clone(), candidate_weight),
        ])
    }

    /// The weight of `revision`; zero if it is not in the split.
    pub fn weight(&self, revision: &RevisionId) -> Weight {
        self.weights
            .binary_search_by(|(r, _)| r.cmp(revision))
            .map_or_else(|_| Weight::default(), |i| self.weights[i].1)
    }

    /// The revisions and their weights, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&RevisionId, Weight)> {
        self.weights.iter().map(|(r, w)| (r, *w))
    }

    /// Number of revisions listed (including those at 0 %).
    pub fn len(&self) -> usize {
        self.weights.len()
    }

    /// Always false: a split lists at least one revision. Present for API completeness.
    pub fn is_empty(&self) -> bool {
        self.weights.is_empty()
    }

    /// Whether all traffic goes to `revision`.
    pub fn is_all_to(&self, revision: &RevisionId) -> bool {
        self.weight(revision) == Weight::FULL
    }

    /// Whether both splits send the same traffic to every revision, ignoring revisions at 0 %.
    /// This is how the engine compares a split read back from a router with the one it set.
    pub fn same_traffic(&self, other: &TrafficSplit) -> bool {
        let nonzero = |s: &TrafficSplit| {
            s.weights
                .iter()
                .filter(|(_, w)| w.0 > 0)
                .map(|(r, w)| (r.clone(), *w))
                .collect::<Vec<_>>()
        };
        nonzero(self) == nonzero(other)
    }
}

impl TryFrom<BTreeMap<RevisionId, Weight>> for TrafficSplit {
    type Error = SplitError;
    fn try_from(map: BTreeMap<RevisionId, Weight>) -> Result<Self, SplitError> {
        Self::new(map)
    }
}

impl From<TrafficSplit> for BTreeMap<RevisionId, Weight> {
    fn from(split: TrafficSplit) -> Self {
        split.weights.into_vec().into_iter().collect()
    }
}

impl fmt::Display for TrafficSplit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (revision, weight)) in self.weights.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{revision} {weight}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn rev(s: &str) -> RevisionId {
        RevisionId::new(s).unwrap()
    }

    #[test]
    fn relative_weights_refuse_nothing_to_split() {
        assert_eq!(
            TrafficSplit::from_relative_weights([]),
            Err(SplitError::Empty)
        );
        assert_eq!(
            TrafficSplit::from_relative_weights([(rev("a"), 0), (rev("b"), 0)]),
            Err(SplitError::Sum { sum: 0 })
        );
        assert_eq!(
            TrafficSplit::from_relative_weights([(rev("a"), 1), (rev("a"), 1)]),
            Err(SplitError::DuplicateRevision(rev("a")))
        );
    }

    proptest! {
        #[test]
        fn relative_weights_round_by_largest_remainder(
            weights in proptest::collection::vec(0u64..=1_000_000, 1..6),
        ) {
            prop_assume!(weights.iter().any(|&w| w > 0));
            let revisions: Vec<RevisionId> =
                (0..weights.len()).map(|i| rev(&format!("r{i}"))).collect();
            let split = TrafficSplit::from_relative_weights(
                revisions.iter().cloned().zip(weights.iter().copied()),
            )
            .unwrap();
            let total: u64 = weights.iter().sum();
            for (revision, &w) in revisions.iter().zip(&weights) {
                // got / 10000 against w / total, cross-multiplied to stay in integers.
                let exact = w * u64::from(TOTAL_BASIS_POINTS);
                let got = u64::from(split.weight(revision).basis_points()) * total;
                // Within one basis point of the exact share, and exact when it is whole.
                prop_assert!(got.abs_diff(exact) < total, "{got} vs {exact} (total {total})");
                if exact % total == 0 {
                    prop_assert_eq!(got, exact);
                }
            }
        }
    }

    #[test]
    fn rejects_each_kind_of_bad_split() {
        let w = |bp| Weight::from_basis_points(bp).unwrap();
        assert_eq!(TrafficSplit::new([]), Err(SplitError::Empty));
        assert_eq!(
            TrafficSplit::new([(rev("a"), w(5000)), (rev("a"), w(5000))]),
            Err(SplitError::DuplicateRevision(rev("a")))
        );
        assert_eq!(
            TrafficSplit::new([(rev("a"), w(5000)), (rev("b"), w(4999))]),
            Err(SplitError::Sum { sum: 9999 })
        );
        assert_eq!(
            TrafficSplit::canary(&rev("a"), &rev("a"), w(10)),
            Err(SplitError::DuplicateRevision(rev("a")))
        );
    }

    #[test]
    fn percentages_parse_exactly() {
        let parse = |s: &str| serde_json::from_str::<Weight>(s).map(Weight::basis_points);
        assert_eq!(parse("10").unwrap(), 1000);
        assert_eq!(parse("0.5").unwrap(), 50);
        assert_eq!(parse("12.34").unwrap(), 1234);
        assert_eq!(parse("0.01").unwrap(), 1);
        assert_eq!(parse("100").unwrap(), 10_000);
        let err = |s: &str| parse(s).unwrap_err().to_string();
        // serde_json appends the position.
        assert_eq!(
            err("100.01"),
            "weight 100.01 % is above 100 % at line 1 column 6"
        );
        assert_eq!(err("150"), "weight 150 % is above 100 % at line 1 column 3");
        assert_eq!(
            err("70000"),
            "weight 70000 % is above 100 % at line 1 column 5"
        );
        assert!(err("-1").contains("negative"));
        assert!(err("0.001").contains("multiple of 0.01"));
        assert!(err("\"ten\"").contains("percentage"));
    }

    #[test]
    fn serializes_as_percent_map() {
        let split = TrafficSplit::canary(
            &rev("v1"),
            &rev("v2"),
            Weight::from_basis_points(1250).unwrap(),
        )
        .unwrap();
        let json = serde_json::to_string(&split).unwrap();
        assert_eq!(json, r#"{"v1":87.5,"v2":12.5}"#);
        assert_eq!(serde_json::from_str::<TrafficSplit>(&json).unwrap(), split);
        let err = serde_json::from_str::<TrafficSplit>(r#"{"v1":50,"v2":40}"#).unwrap_err();
        assert!(err.to_string().contains("add up to 9000"), "{err}");
    }

    #[test]
    fn same_traffic_ignores_zero_weights() {
        let a = TrafficSplit::canary(&rev("v1"), &rev("v2"), Weight::ZERO).unwrap();
        let b = TrafficSplit::all_to(&rev("v1"));
        assert_ne!(a, b);
        assert!(a.same_traffic(&b));
        assert!(!a.same_traffic(&TrafficSplit::all_to(&rev("v2"))));
    }

    #[test]
    fn weight_display() {
        let d = |bp| Weight::from_basis_points(bp).unwrap().to_string();
        assert_eq!(d(0), "0%");
        assert_eq!(d(5), "0.05%");
        assert_eq!(d(1250), "12.5%");
        assert_eq!(d(10_000), "100%");
    }

    proptest! {
        #[test]
        fn canary_splits_always_sum_to_total(bp in 0u16..=10_000) {
            let split = TrafficSplit::canary(&rev("s"), &rev("c"), Weight::from_basis_points(bp).unwrap()).unwrap();
            let sum: u32 = split.iter().map(|(_, w)| u32::from(w.basis_points())).sum();
            prop_assert_eq!(sum, 10_000);
        }

        #[test]
        fn new_accepts_exactly_the_splits_that_sum_to_total(ws in proptest::collection::vec(0u16..=10_000, 1..5)) {
            let entries = ws.iter().enumerate().map(|(i, &bp)| (rev(&format!("r{i}")), Weight::from_basis_points(bp).unwrap()));
            let sum: u32 = ws.iter().map(|&w| u32::from(w)).sum();
            prop_assert_eq!(TrafficSplit::new(entries).is_ok(), sum == 10_000);
        }

        #[test]
        fn weight_serde_round_trips(bp in 0u16..=10_000) {
            let w = Weight::from_basis_points(bp).unwrap();
            let back: Weight = serde_json::from_str(&serde_json::to_string(&w).unwrap()).unwrap();
            prop_assert_eq!(back, w);
        }

        #[test]
        fn granularity_steps_divide_total(step in 1u16..=10_000) {
            prop_assert_eq!(Granularity::new(step).is_ok(), 10_000 % step == 0);
        }
    }
}
