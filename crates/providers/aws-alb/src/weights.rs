//! Basis points to ALB target-group weights and back.
//!
//! An ALB forward action gives each target group a relative weight from 0 to 999. cutover
//! splits traffic in basis points (10 000 = 100 %). The rule:
//!
//! - **Granularity 0.1 % (10 bp).** A split whose weights are not multiples of 10 bp is
//!   rejected before any call ([`granularity`]; the engine checks plans against it at build
//!   time).
//! - **Writing:** `weight = bp / 10`, exactly, so the managed weights add up to 1000. The one
//!   exception is a revision with all the traffic (10 000 bp, which would be 1000): it is written
//!   as 999 ([`MAX_WEIGHT`]), and every other managed target group as 0. A sole positive weight
//!   takes all traffic whatever its value.
//! - **Reading:** with one positive managed weight, that revision has 10 000 bp; with managed
//!   weights adding up to 1000, `bp = weight × 10`. This inverts writing exactly. Weights set by
//!   someone else (say 1 and 1) are converted to the nearest basis points: `weight × 10 000 /
//!   sum`, rounded down, the basis points left over going to the largest remainders (ties to
//!   the first revision by name), so the result always adds up to 100 %.
//!
//! Target groups in the same forward action that cutover does not manage keep their weights;
//! they get `w / (w + 1000)` of the traffic at every managed split, except at 100 % to one
//! revision, where the managed total is 999 and they get `w / (w + 999)`.

use cutover_core::{Granularity, ProviderError, RevisionId, TrafficSplit, Weight};

/// The finest split an ALB router sets, in basis points: 0.1 %.
pub const STEP_BASIS_POINTS: u16 = 10;

/// The finest split an ALB router sets: 0.1 % ([`STEP_BASIS_POINTS`]).
pub fn granularity() -> Granularity {
    // 10 divides 10 000, so this never falls back.
    Granularity::new(STEP_BASIS_POINTS).unwrap_or(Granularity::BASIS_POINT)
}

/// The largest weight AWS accepts in a forward action.
pub const MAX_WEIGHT: i32 = 999;

/// The ALB weight of each revision of `split`, in the split's (name) order.
///
/// ```
/// use cutover_aws_alb::weights::to_alb;
/// use cutover_core::{TrafficSplit, Weight};
/// let (v1, v2) = ("v1".parse()?, "v2".parse()?);
/// let split = TrafficSplit::canary(&v1, &v2, Weight::from_basis_points(1250)?)?;
/// assert_eq!(to_alb(&split)?, vec![(v1.clone(), 875), (v2.clone(), 125)]);
/// let all = TrafficSplit::all_to(&v2);
/// assert_eq!(to_alb(&all)?, vec![(v2, 999)]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn to_alb(split: &TrafficSplit) -> Result<Vec<(RevisionId, i32)>, ProviderError> {
    let granularity = granularity();
    if let Some((revision, weight)) = granularity.first_inexpressible(split) {
        return Err(ProviderError::permanent(format!(
            "weight {weight} of `{revision}` is not a multiple of {granularity}, the finest split an ALB router sets"
        )));
    }
    Ok(split
        .iter()
        .map(|(revision, weight)| {
            let bp = weight.basis_points();
            let alb = if bp == Weight::FULL.basis_points() {
                MAX_WEIGHT
            } else {
                i32::from(bp / 10)
            };
            (revision.clone(), alb)
        })
        .collect())
}

/// The split that ALB weights stand for (see the module docs for the rule). `describe` names
/// the forward action in error messages.
pub fn from_alb(
    weights: &[(RevisionId, i32)],
    describe: &str,
) -> Result<TrafficSplit, ProviderError> {
    if let Some((revision, weight)) = weights.iter().find(|(_, w)| !(0..=MAX_WEIGHT).contains(w)) {
        return Err(ProviderError::permanent(format!(
            "{describe}: weight {weight} of `{revision}` is outside 0..=999"
        )));
    }
    let positive: Vec<_> = weights.iter().filter(|(_, w)| *w > 0).collect();
    let bp_of = |bp: u32| Weight::from_basis_points(u16::try_from(bp).unwrap_or(u16::MAX));
    let result = match positive.as_slice() {
        [] => {
            return Err(ProviderError::permanent(format!(
                "{describe}: every target group cutover manages has weight 0"
            )));
        }
        [(only, _)] => Ok(weights
            .iter()
            .map(|(r, _)| {
                (
                    r.clone(),
                    if r == only {
                        Weight::FULL
                    } else {
                        Weight::ZERO
                    },
                )
            })
            .collect::<Vec<_>>()),
        _ => {
            // Weights are in 0..=999 here, so the casts below cannot lose anything.
            #[allow(clippy::cast_sign_loss)]
            let unsigned: Vec<u32> = weights.iter().map(|(_, w)| *w as u32).collect();
            let sum: u32 = unsigned.iter().sum();
            let mut bps: Vec<u32> = unsigned.iter().map(|w| w * 10_000 / sum).collect();
            let mut left = 10_000 - bps.iter().sum::<u32>();
            let mut order: Vec<usize> = (0..bps.len()).collect();
            // Largest remainder first; a stable sort keeps name order among ties.
            order.sort_by_key(|&i| std::cmp::Reverse(unsigned[i] * 10_000 % sum));
            for i in order {
                if left == 0 {
                    break;
                }
                bps[i] += 1;
                left -= 1;
            }
            weights
                .iter()
                .zip(bps)
                .map(|((r, _), bp)| bp_of(bp).map(|w| (r.clone(), w)))
                .collect::<Result<Vec<_>, _>>()
        }
    };
    result
        .and_then(TrafficSplit::new)
        .map_err(|e| ProviderError::permanent(format!("{describe}: {e}")))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn rev(i: usize) -> RevisionId {
        format!("r{i}").parse().unwrap()
    }

    fn split(bps: &[u16]) -> TrafficSplit {
        TrafficSplit::new(
            bps.iter()
                .enumerate()
                .map(|(i, &bp)| (rev(i), Weight::from_basis_points(bp).unwrap())),
        )
        .unwrap()
    }

    #[test]
    fn edges() {
        assert_eq!(
            to_alb(&split(&[0, 10_000])).unwrap(),
            [(rev(0), 0), (rev(1), 999)]
        );
        assert_eq!(
            to_alb(&split(&[10, 9_990])).unwrap(),
            [(rev(0), 1), (rev(1), 999)]
        );
        assert_eq!(
            to_alb(&split(&[5_000, 5_000])).unwrap(),
            [(rev(0), 500), (rev(1), 500)]
        );
        let err = to_alb(&split(&[5, 9_995])).unwrap_err();
        assert!(err.to_string().contains("0.05%"), "{err}");
        // 999 alone and 1 alone both mean all traffic.
        assert_eq!(
            from_alb(&[(rev(0), 0), (rev(1), 1)], "x").unwrap(),
            split(&[0, 10_000])
        );
        assert!(from_alb(&[(rev(0), 0), (rev(1), 0)], "x").is_err());
        assert!(from_alb(&[(rev(0), 1000), (rev(1), 0)], "x").is_err());
        assert!(from_alb(&[(rev(0), -1), (rev(1), 5)], "x").is_err());
        // Foreign weights: nearest basis points, adding up to 100 %.
        assert_eq!(
            from_alb(&[(rev(0), 1), (rev(1), 1), (rev(2), 1)], "x").unwrap(),
            split(&[3_334, 3_333, 3_333])
        );
        assert_eq!(
            from_alb(&[(rev(0), 1), (rev(1), 3)], "x").unwrap(),
            split(&[2_500, 7_500])
        );
    }

    fn splits() -> impl Strategy<Value = Vec<u16>> {
        // 2-5 revisions with weights in steps of 10 bp that add up to 10 000.
        proptest::collection::vec(0u16..=1_000, 1..5).prop_map(|cuts| {
            let mut cuts: Vec<u16> = cuts.into_iter().map(|c| c * 10).collect();
            cuts.sort_unstable();
            let mut bps = Vec::new();
            let mut last = 0;
            for c in cuts {
                bps.push(c - last);
                last = c;
            }
            bps.push(10_000 - last);
            bps
        })
    }

    proptest! {
        #[test]
        fn round_trips_exactly(bps in splits()) {
            let s = split(&bps);
            let alb = to_alb(&s).unwrap();
            prop_assert!(alb.iter().all(|(_, w)| (0..=MAX_WEIGHT).contains(w)));
            prop_assert_eq!(from_alb(&alb, "x").unwrap(), s);
        }

        #[test]
        fn writes_bp_over_ten(bps in splits()) {
            let alb = to_alb(&split(&bps)).unwrap();
            for (bp, (_, w)) in bps.iter().zip(&alb) {
                let expected = if *bp == 10_000 { 999 } else { i32::from(bp / 10) };
                prop_assert_eq!(*w, expected);
            }
        }

        #[test]
        fn rejects_what_the_granularity_excludes(bp in 1u16..10_000) {
            prop_assume!(bp % 10 != 0);
            prop_assert!(to_alb(&split(&[bp, 10_000 - bp])).is_err());
        }

        #[test]
        fn foreign_weights_always_give_a_valid_split(ws in proptest::collection::vec(0i32..=999, 1..6)) {
            prop_assume!(ws.iter().any(|w| *w > 0));
            let weights: Vec<_> = ws.iter().enumerate().map(|(i, w)| (rev(i), *w)).collect();
            let s = from_alb(&weights, "x").unwrap();
            for (i, w) in ws.iter().enumerate() {
                // Within one basis point of the exact share.
                let exact = f64::from(*w) * 10_000.0 / f64::from(ws.iter().sum::<i32>());
                prop_assert!((f64::from(s.weight(&rev(i)).basis_points()) - exact).abs() < 1.0);
            }
        }
    }
}
