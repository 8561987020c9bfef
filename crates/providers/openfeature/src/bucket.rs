//! Sticky bucketing: which of 10 000 buckets (one per basis point) a targeting key falls in.
//!
//! The bucket is `xxh3_64(key, seed) % 10 000`, where the seed is `xxh3_64(group)`: XXH3 is a
//! specified hash with a fixed output on every platform and in every process (unlike the
//! standard library's `RandomState`), fast on short keys, and allocates nothing. A flag's
//! variants own consecutive ranges of buckets, so a key's variant depends only on the group,
//! the key and the weights; as a variant's share rises its range grows and keeps every key it
//! had (see [`Flags`](crate::Flags)).

use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

/// Buckets per flag: one per basis point, so a weight of `w` bp holds `w` buckets.
pub const BUCKETS: u16 = 10_000;

/// The seed of a bucketing group: flags in the same group put a key in the same bucket.
pub fn group_seed(group: &str) -> u64 {
    xxh3_64(group.as_bytes())
}

/// The bucket (`0..10_000`) of `key` in the group whose seed is `seed`.
///
/// ```
/// use cutover_openfeature::bucket::{bucket, group_seed};
/// let seed = group_seed("checkout.new-path");
/// assert_eq!(bucket(seed, "user-42"), bucket(seed, "user-42"));
/// assert!(bucket(seed, "user-42") < 10_000);
/// ```
#[inline]
pub fn bucket(seed: u64, key: &str) -> u16 {
    let b = xxh3_64_with_seed(key.as_bytes(), seed) % u64::from(BUCKETS);
    u16::try_from(b).unwrap_or(BUCKETS - 1)
}
