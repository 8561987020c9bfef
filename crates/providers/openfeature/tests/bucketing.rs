//! Sticky bucketing: monotone membership as the percentage rises, the same buckets in every
//! process, and a uniform spread over many keys.

use cutover_core::{RevisionId, TrafficSplit, Weight};
use cutover_openfeature::bucket::{BUCKETS, bucket, group_seed};
use cutover_openfeature::{FlagDefinition, Flags};
use proptest::prelude::*;

fn canary(off: &str, on: &str, on_bp: u16) -> TrafficSplit {
    TrafficSplit::canary(
        &off.parse::<RevisionId>().unwrap(),
        &on.parse::<RevisionId>().unwrap(),
        Weight::from_basis_points(on_bp).unwrap(),
    )
    .unwrap()
}

fn is_on(flags: &Flags, key: &str, user: &str) -> bool {
    flags.evaluate(key, Some(user)).unwrap().as_bool().unwrap()
}

proptest! {
    /// A user who has the flag at some percentage keeps it at every higher one, and one who
    /// does not have it at a percentage did not have it at any lower one.
    #[test]
    fn membership_is_monotone_as_the_percentage_rises(
        users in prop::collection::vec("[a-zA-Z0-9@._-]{1,40}", 1..40),
        mut steps in prop::collection::vec(0u16..=10_000, 2..8),
        group in prop::option::of("[a-z.-]{1,20}"),
    ) {
        steps.sort_unstable();
        let mut definition = FlagDefinition::boolean("f", "old", "new").unwrap();
        if let Some(group) = group {
            definition = definition.group(group);
        }
        let flags = Flags::new();
        flags.define(definition).unwrap();
        let mut had = vec![false; users.len()];
        for bp in steps {
            flags.set_split("f", &canary("old", "new", bp)).unwrap();
            for (user, had) in users.iter().zip(&mut had) {
                let on = is_on(&flags, "f", user);
                prop_assert!(on || !*had, "user {user} lost the flag at {bp} bp");
                *had = on;
            }
        }
    }

    /// A string flag moving users from its first variant to its second never moves one back.
    #[test]
    fn a_variant_split_never_moves_a_user_back(
        users in prop::collection::vec("[a-z0-9]{1,16}", 1..40),
        mut steps in prop::collection::vec(0u16..=10_000, 2..8),
    ) {
        steps.sort_unstable();
        let flags = Flags::new();
        flags
            .define(FlagDefinition::strings("b", [("blue", "#00f"), ("green", "#0f0")]).unwrap())
            .unwrap();
        let mut green = vec![false; users.len()];
        for bp in steps {
            flags.set_split("b", &canary("blue", "green", bp)).unwrap();
            for (user, was) in users.iter().zip(&mut green) {
                let e = flags.evaluate("b", Some(user)).unwrap();
                let now = e.variant().as_str() == "green";
                prop_assert!(now || !*was, "user {user} went back to blue at {bp} bp");
                *was = now;
            }
        }
    }
}

/// Pinned values: XXH3 is specified, so these hold in every process, on every platform and
/// in every release (a change here would move users between variants on upgrade). They were
/// computed independently with the reference C implementation (Python `xxhash` 3:
/// `xxh3_64_intdigest(key, seed=xxh3_64_intdigest(group)) % 10000`).
#[test]
fn buckets_are_the_same_in_every_process() {
    let seed = group_seed("checkout.new-path");
    let got: Vec<u16> = ["user-1", "user-2", "alice@example.com", ""]
        .iter()
        .map(|k| bucket(seed, k))
        .collect();
    assert_eq!(got, PINNED);
}

const PINNED: [u16; 4] = [5773, 8192, 9729, 875];

/// 1,000,000 keys: every percentage from 1 to 100 reaches its share of them to within 0.1
/// percentage point, and every 1 % slice of buckets holds 1 % of them to within 5 %
/// (about five standard deviations of a fair spread).
#[test]
fn bucketing_is_uniform_over_a_million_keys() {
    const KEYS: u32 = 1_000_000;
    let seed = group_seed("checkout.new-path");
    let mut slices = [0u32; 100];
    for i in 0..KEYS {
        let b = bucket(seed, &format!("user-{i}"));
        assert!(b < BUCKETS);
        slices[usize::from(b / 100)] += 1;
    }
    let expected = f64::from(KEYS) / 100.0;
    let mut cumulative = 0u32;
    let mut chi2 = 0.0;
    for (percent, count) in (1u32..).zip(slices) {
        let deviation = f64::from(count) - expected;
        chi2 += deviation * deviation / expected;
        assert!(
            deviation.abs() <= expected * 0.05,
            "slice {percent} holds {count} keys, expected {expected}"
        );
        cumulative += count;
        let share = f64::from(cumulative) / f64::from(KEYS) * 100.0;
        assert!(
            (share - f64::from(percent)).abs() <= 0.1,
            "at {percent} % the flag reaches {share:.3} % of keys"
        );
    }
    // The 99.9th percentile of chi-square with 99 degrees of freedom is 148.2.
    assert!(chi2 < 148.2, "chi-square {chi2:.1} over 100 slices");
}
