//! Ranking with ties, sorting, and the merged pass over two sorted samples that every rank
//! statistic here is built on.

use crate::AnalysisError;

/// Ranks of `values` from 1, ties getting the average of the ranks they span (R's
/// `rank(ties.method = "average")`, SciPy's `rankdata(method="average")`). Ties are exact f64
/// equality; NaN values sort last (`f64::total_cmp`), so filter them out first when that
/// matters.
///
/// ```
/// use cutover_analysis::rank_average;
/// assert_eq!(rank_average(&[10.0, 20.0, 10.0, 5.0]), vec![2.5, 4.0, 2.5, 1.0]);
/// ```
pub fn rank_average(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_unstable_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && values[order[end]] == values[order[start]] {
            end += 1;
        }
        #[allow(clippy::cast_precision_loss)]
        let rank = (start + end + 1) as f64 / 2.0;
        for &i in &order[start..end] {
            ranks[i] = rank;
        }
        start = end;
    }
    ranks
}

/// The order of `f64::total_cmp` as an unsigned key: flip every bit of negatives, only the
/// sign bit of positives.
fn key(v: f64) -> u64 {
    let bits = v.to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    }
}

fn from_key(k: u64) -> f64 {
    f64::from_bits(if k >> 63 == 1 { k & !(1 << 63) } else { !k })
}

/// Sorts ascending in `f64::total_cmp` order, identical to
/// `sort_unstable_by(f64::total_cmp)`, but on integer keys with the same order: integer
/// comparisons are cheaper than `total_cmp`, which makes this about 1.5x faster on 10^6
/// values (measured on this machine).
pub(crate) fn sort_f64(values: &mut [f64]) {
    let mut keys: Vec<u64> = values.iter().map(|&v| key(v)).collect();
    keys.sort_unstable();
    for (v, k) in values.iter_mut().zip(keys) {
        *v = from_key(k);
    }
}

/// `values` sorted ascending in `f64::total_cmp` order.
pub(crate) fn sorted(values: &[f64]) -> Vec<f64> {
    let mut v = values.to_vec();
    sort_f64(&mut v);
    v
}

/// What one merged pass over sorted `x - shift` and sorted `y` yields.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Merged {
    /// U of x: pairs with `x_i - shift > y_j`, ties counting one half.
    pub u: f64,
    /// Σ (t³ − t) over the tie groups of the combined sample.
    pub ties: f64,
}

fn t3(t: usize) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let t = t as f64;
    t * t * t - t
}

/// Σ (t³ − t) over the tie groups of one sorted sample.
pub(crate) fn tie_term<T: Copy + PartialEq>(sorted: &[T]) -> f64 {
    let mut ties = 0.0;
    let mut i = 0;
    while i < sorted.len() {
        let mut t = 1;
        while i + t < sorted.len() && sorted[i + t] == sorted[i] {
            t += 1;
        }
        if t > 1 {
            ties += t3(t);
        }
        i += t;
    }
    ties
}

/// Walks sorted `x` (each value mapped by `shift`, which must keep the order) and sorted `y`
/// together once, in O(nx + ny) without allocating: the exact definition, ties included.
/// `y_ties` is [`tie_term`] of `y`.
///
/// The tie term of the combined sample is `y_ties` plus, for each group of the shifted x of
/// size a meeting b equal y values, `(a+b)³ − (a+b) − (b³ − b)`. Groups of x are formed on
/// the shifted values, exactly as R ranks `c(x - d, y)`.
pub(crate) fn merge<T: Copy + PartialOrd>(
    x: &[T],
    y: &[T],
    y_ties: f64,
    shift: impl Fn(T) -> T,
) -> Merged {
    let (m, n) = (x.len(), y.len());
    let mut j = 0usize;
    let mut i = 0usize;
    let mut u = 0.0f64;
    let mut ties = y_ties;
    while i < m {
        let v = shift(x[i]);
        let mut tx = 1;
        while i + tx < m && shift(x[i + tx]) == v {
            tx += 1;
        }
        while j < n && y[j] < v {
            j += 1;
        }
        let mut ty = 0;
        while j + ty < n && y[j + ty] == v {
            ty += 1;
        }
        #[allow(clippy::cast_precision_loss)]
        {
            u += tx as f64 * (j as f64 + ty as f64 / 2.0);
        }
        if tx > 1 || ty > 0 {
            // y's own group is already in `y_ties`; add what joining the x values adds.
            ties += t3(tx + ty) - t3(ty);
        }
        i += tx;
    }
    Merged { u, ties }
}

/// Independent merge streams of [`count_below`] (a multiple of 4).
const STREAMS: usize = 8;

/// Σ over x of #{y < shift(x_i)}, or `None` when some shifted x equals some y (a cross tie:
/// the caller falls back to [`merge`]). `xs` and `ys` are sorted with one sentinel at the end
/// that is above every value (`+∞`, `u64::MAX`), so `m = xs.len() − 1`.
///
/// x is split into [`STREAMS`] chunks, each chunk's start found in y by binary search, and the
/// chunks are merged four at a time in lockstep without branches: their dependency chains
/// (load, compare, advance) overlap, which makes this several times faster than one merge.
fn count_below<T: Copy + PartialOrd>(xs: &[T], ys: &[T], shift: impl Fn(T) -> T) -> Option<u64> {
    let (m, n) = (xs.len() - 1, ys.len() - 1);
    let mut xb = [0usize; STREAMS + 1];
    let mut yb = [0usize; STREAMS + 1];
    for c in 0..=STREAMS {
        xb[c] = c * m / STREAMS;
        yb[c] = match c {
            0 => 0,
            STREAMS => n,
            _ => {
                let v = shift(xs[xb[c]]);
                ys[..n].partition_point(|&y| y < v)
            }
        };
    }
    let mut total: u64 = 0;
    let mut cross = false;
    for group in 0..STREAMS / 4 {
        let c0 = group * 4;
        let (mut i0, mut i1, mut i2, mut i3) = (xb[c0], xb[c0 + 1], xb[c0 + 2], xb[c0 + 3]);
        let (mut j0, mut j1, mut j2, mut j3) = (yb[c0], yb[c0 + 1], yb[c0 + 2], yb[c0 + 3]);
        let (mut u0, mut u1, mut u2, mut u3) = (0u64, 0u64, 0u64, 0u64);
        let steps = |c: usize| (xb[c + 1] - xb[c]) + (yb[c + 1] - yb[c]);
        let s = [steps(c0), steps(c0 + 1), steps(c0 + 2), steps(c0 + 3)];
        let common = s.iter().copied().min().unwrap_or(0);
        macro_rules! step {
            ($i:ident, $j:ident, $u:ident) => {{
                let xv = shift(xs[$i]);
                let yv = ys[$j];
                let take_x = usize::from(yv >= xv);
                $u += ($j * take_x) as u64;
                cross |= yv == xv;
                $i += take_x;
                $j += 1 - take_x;
            }};
        }
        for _ in 0..common {
            step!(i0, j0, u0);
            step!(i1, j1, u1);
            step!(i2, j2, u2);
            step!(i3, j3, u3);
        }
        for _ in common..s[0] {
            step!(i0, j0, u0);
        }
        for _ in common..s[1] {
            step!(i1, j1, u1);
        }
        for _ in common..s[2] {
            step!(i2, j2, u2);
        }
        for _ in common..s[3] {
            step!(i3, j3, u3);
        }
        total += u0 + u1 + u2 + u3;
    }
    (!cross).then_some(total)
}

fn with_sentinel<T: Copy>(v: &[T], sentinel: T) -> Vec<T> {
    let mut s = Vec::with_capacity(v.len() + 1);
    s.extend_from_slice(v);
    s.push(sentinel);
    s
}

/// Sorted samples prepared for many [`Shifted::merge`] calls: each with a `+∞` sentinel at
/// the end, and the tie structure of each on its own.
#[derive(Debug, Clone)]
pub(crate) struct Shifted<'a> {
    x: &'a [f64],
    y: &'a [f64],
    xs: Vec<f64>,
    ys: Vec<f64>,
    x_ties: f64,
    y_ties: f64,
    x_equal_pairs: usize,
    /// The smallest gap between distinct neighbouring x values.
    x_min_gap: f64,
}

impl<'a> Shifted<'a> {
    /// `x` and `y` sorted ascending and finite.
    pub(crate) fn new(x: &'a [f64], y: &'a [f64]) -> Self {
        Shifted {
            x,
            y,
            xs: with_sentinel(x, f64::INFINITY),
            ys: with_sentinel(y, f64::INFINITY),
            x_ties: tie_term(x),
            y_ties: tie_term(y),
            x_equal_pairs: x.windows(2).filter(|w| w[0] == w[1]).count(),
            x_min_gap: x
                .windows(2)
                .map(|w| w[1] - w[0])
                .filter(|&g| g > 0.0)
                .fold(f64::INFINITY, f64::min),
        }
    }

    /// [`merge`] of `x - shift` and `y`: the same numbers, computed with [`count_below`] when
    /// no shifted x equals a y and the shift merges no two x values (then the tie term is that
    /// of the samples on their own); otherwise by [`merge`].
    pub(crate) fn merge(&self, shift: f64) -> Merged {
        let exact = || merge(self.x, self.y, self.y_ties, |v| v - shift);
        if self.x.len() < 64 * STREAMS {
            return exact();
        }
        let Some(u) = count_below(&self.xs, &self.ys, |v| v - shift) else {
            return exact();
        };
        // Does the shift make two distinct x values equal? R ranks `x - d` as computed, so
        // this is checked rather than assumed. It cannot happen when every gap between distinct
        // x values is well above the rounding step at the largest |x - d|, which saves a pass.
        let largest = (self.x[0] - shift)
            .abs()
            .max((self.x[self.x.len() - 1] - shift).abs());
        if self.x_min_gap > 8.0 * f64::EPSILON * largest {
            #[allow(clippy::cast_precision_loss)]
            return Merged {
                u: u as f64,
                ties: self.x_ties + self.y_ties,
            };
        }
        let equal_pairs = self
            .x
            .windows(2)
            .filter(|w| w[0] - shift == w[1] - shift)
            .count();
        if equal_pairs != self.x_equal_pairs {
            return exact();
        }
        #[allow(clippy::cast_precision_loss)]
        Merged {
            u: u as f64,
            ties: self.x_ties + self.y_ties,
        }
    }
}

/// Target number of values per bucket in [`rank_sum`], as a power of two: small enough that a
/// bucket sorts within the L1 cache, large enough that the bucket counts stay in L2.
const LOG_BUCKET: u32 = 6;

/// t³ − t, exactly.
fn tie_count(t: u64) -> u128 {
    let t = u128::from(t);
    t * t * t - t
}

/// U of x and the tie term of the combined sample, for unsorted samples, in O(m + n) passes
/// plus sorts of cache-sized buckets. Errors naming the sample when one holds NaN. Values are
/// compared as `==` does (`-0.0` equal to `0.0`), on integer keys in `f64::total_cmp` order.
///
/// Both samples go into one array of buckets by the high bits of their key's offset from the
/// smallest key (about [`2^LOG_BUCKET`](LOG_BUCKET) values a bucket), each entry holding the
/// key's low bits and, in bit 0, which sample it came from. Equal values land in the same
/// bucket, so each bucket is sorted on its own and walked in order, counting for every x the y
/// below it; a bucket holding equal values is walked again group by group (ties count one
/// half), and a bucket holding one value only is counted without sorting. U is accumulated
/// as an integer (2U), the tie term in `u128`, so both are exact before the one conversion to
/// f64: the same numbers as sorting and merging give, except that a tie term above 2^53 is now
/// the correctly rounded one (a sum of f64 terms could differ from it in the last bit).
///
/// The bucket range comes from about a thousand values of each sample rather than from a pass
/// over all of them; values outside it (a few near each end, or far outliers) are kept aside,
/// sorted and counted before and after the buckets, which keeps the result exact. When more
/// than one value in [`OUTSIDE_SHARE`] falls outside (a sample whose sampled values were not
/// typical of it), the range is taken from every value and the buckets are filled again.
///
/// This replaced sorting each sample's keys with `sort_unstable` and merging them: at 10^6
/// lognormal values per sample that spent 74 % of its time in the two sorts. Measured on the
/// shared 2-core machine, 10^6 lognormal values per sample, alternating in one run (best of
/// 15): the buckets 28-34 ms, the two sorts 36-46 ms; the two sorts on two threads 39-45 ms
/// (the machine's other core was busy). LSD radix sorts (`radsort`, `rdst`, hand-written on
/// 8/11/16-bit digits) were no faster than `sort_unstable` alone there: their scatter passes
/// are memory-bound. Taking the range from a sample instead of a full pass saved 6-7 of 33 ms
/// at 10^6 (the pass read 16 MB that the next pass read again) and about 10 % at 10^4-10^5.
pub(crate) fn rank_sum(x: &[f64], y: &[f64]) -> Result<Merged, AnalysisError> {
    if x.is_empty() || y.is_empty() {
        for (v, group) in [(x, "x"), (y, "y")] {
            if v.iter().any(|v| v.is_nan()) {
                return Err(AnalysisError::NotANumber { group });
            }
        }
        let ties = tie_term(&sorted(if x.is_empty() { y } else { x }));
        return Ok(Merged { u: 0.0, ties });
    }
    let total = x.len() + y.len();
    let (mut range, mut outside_limit) = (sampled_range(x, y), total / OUTSIDE_SHARE);
    loop {
        if let Some(merged) = bucketed(x, y, range, outside_limit)? {
            return Ok(merged);
        }
        range = full_range(x, y)?;
        outside_limit = usize::MAX;
    }
}

/// At most one value in this many may fall outside the sampled range of [`rank_sum`].
const OUTSIDE_SHARE: usize = 16;

/// Values of each sample looked at by [`sampled_range`].
const RANGE_SAMPLE: usize = 1024;

/// The smallest and largest key (`lo`, `hi`) among evenly spaced values of both samples,
/// NaN left out; `(0, 0)` when every one looked at is NaN.
fn sampled_range(x: &[f64], y: &[f64]) -> (u64, u64) {
    let (mut lo, mut hi) = (u64::MAX, 0);
    for sample in [x, y] {
        let step = (sample.len() / RANGE_SAMPLE).max(1);
        for &v in sample.iter().step_by(step).filter(|v| !v.is_nan()) {
            let k = key(v + 0.0);
            (lo, hi) = (lo.min(k), hi.max(k));
        }
    }
    if lo > hi { (0, 0) } else { (lo, hi) }
}

/// The smallest and largest key over every value; errors naming the sample that holds NaN.
fn full_range(x: &[f64], y: &[f64]) -> Result<(u64, u64), AnalysisError> {
    let (lowest, highest) = (key(f64::NEG_INFINITY), key(f64::INFINITY));
    let (mut lo, mut hi) = (u64::MAX, 0);
    for (sample, group) in [(x, "x"), (y, "y")] {
        let (s_lo, s_hi) = sample.iter().fold((u64::MAX, 0u64), |(lo, hi), &v| {
            let k = key(v + 0.0);
            (lo.min(k), hi.max(k))
        });
        // NaN keys sort outside [-∞, +∞].
        if s_lo < lowest || s_hi > highest {
            return Err(AnalysisError::NotANumber { group });
        }
        (lo, hi) = (lo.min(s_lo), hi.max(s_hi));
    }
    Ok((lo, hi))
}

/// [`rank_sum`] with buckets over the keys in `lo..=hi` and the values outside kept aside;
/// `None` when more than `outside_limit` values fall outside. Both samples non-empty.
fn bucketed(
    x: &[f64],
    y: &[f64],
    (lo, hi): (u64, u64),
    outside_limit: usize,
) -> Result<Option<Merged>, AnalysisError> {
    let range = hi - lo;
    let total = x.len() + y.len();
    // Bucket b holds the keys k with (k − lo) >> shift = b: at most 2^index_bits buckets.
    let index_bits = (usize::BITS - (total >> LOG_BUCKET).leading_zeros()).max(1);
    let shift = (u64::BITS - range.leading_zeros()).saturating_sub(index_bits);
    // shift < 64, so the low bits and the sample bit fit in one u64.
    let low_mask = (1u64 << shift) - 1;
    #[allow(clippy::cast_possible_truncation)]
    let buckets = (range >> shift) as usize + 1;
    // Keys below lo and above hi, with 1 for x: each list is counted on its own, in order.
    let (mut below_range, mut above_range) = (Vec::new(), Vec::new());
    let mut start = vec![0usize; buckets + 1];
    for (sample, is_x, group) in [(x, 1u64, "x"), (y, 0u64, "y")] {
        let mut nan = false;
        for &v in sample {
            nan |= v.is_nan();
            let k = key(v + 0.0);
            let offset = k.wrapping_sub(lo);
            if offset <= range {
                #[allow(clippy::cast_possible_truncation)]
                let b = (offset >> shift) as usize;
                start[b + 1] += 1;
            } else {
                if below_range.len() + above_range.len() == outside_limit {
                    return Ok(None);
                }
                if k < lo {
                    &mut below_range
                } else {
                    &mut above_range
                }
                .push((k, is_x));
            }
        }
        if nan {
            return Err(AnalysisError::NotANumber { group });
        }
    }
    for b in 1..=buckets {
        start[b] += start[b - 1];
    }
    let mut next = start.clone();
    let mut entries = vec![0u64; start[buckets]];
    for (sample, is_x) in [(x, 1u64), (y, 0u64)] {
        for &v in sample {
            let offset = key(v + 0.0).wrapping_sub(lo);
            if offset <= range {
                #[allow(clippy::cast_possible_truncation)]
                let b = (offset >> shift) as usize;
                entries[next[b]] = ((offset & low_mask) << 1) | is_x;
                next[b] += 1;
            }
        }
    }
    let mut count = Count::default();
    count.aside(&mut below_range);
    for b in 0..buckets {
        count.bucket(&mut entries[start[b]..start[b + 1]]);
    }
    count.aside(&mut above_range);
    #[allow(clippy::cast_precision_loss)]
    Ok(Some(Merged {
        u: count.u2 as f64 / 2.0,
        ties: count.ties as f64,
    }))
}

/// The running totals of [`rank_sum`]'s walk over the values in ascending order.
#[derive(Debug, Default)]
struct Count {
    /// 2U so far.
    u2: u64,
    /// Σ (t³ − t) over the tie groups so far.
    ties: u128,
    /// y values walked so far.
    below: u64,
}

impl Count {
    /// One group of `xs` x values and `ys` y values, all equal.
    fn group(&mut self, xs: u64, ys: u64) {
        self.u2 += xs * (2 * self.below + ys);
        self.below += ys;
        self.ties += tie_count(xs + ys);
    }

    /// Values kept aside as (key, 1 for x), all below or all above every bucketed one.
    fn aside(&mut self, values: &mut [(u64, u64)]) {
        values.sort_unstable();
        for group in values.chunk_by(|a, b| a.0 == b.0) {
            let xs = group.iter().map(|e| e.1).sum::<u64>();
            self.group(xs, group.len() as u64 - xs);
        }
    }

    /// One bucket's entries (low bits << 1 | 1 for x), sorted here.
    fn bucket(&mut self, entries: &mut [u64]) {
        // One value throughout (common in rounded data): one tie group, nothing to sort. On
        // continuous data the check stops at the second entry.
        if let Some(&first) = entries.first()
            && entries.len() > 1
            && entries.iter().all(|&e| (e ^ first) >> 1 == 0)
        {
            let xs = entries.iter().map(|e| e & 1).sum::<u64>();
            self.group(xs, entries.len() as u64 - xs);
            return;
        }
        entries.sort_unstable();
        let (u2_before, below_before) = (self.u2, self.below);
        // Without ties, without branches: each x adds the y values before it.
        let mut previous = u64::MAX; // no entry's value (the low bits) is this
        let mut tied = false;
        for &e in &*entries {
            let is_x = e & 1;
            self.u2 += 2 * self.below * is_x;
            self.below += 1 - is_x;
            tied |= e >> 1 == previous;
            previous = e >> 1;
        }
        if tied {
            (self.u2, self.below) = (u2_before, below_before);
            for group in entries.chunk_by(|a, b| a >> 1 == b >> 1) {
                let xs = group.iter().map(|e| e & 1).sum::<u64>();
                self.group(xs, group.len() as u64 - xs);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The straightforward definition: rank the combined sample, sum the ranks of x.
    fn reference(x: &[f64], y: &[f64], shift: f64) -> Merged {
        let combined: Vec<f64> = x
            .iter()
            .map(|v| v - shift)
            .chain(y.iter().copied())
            .collect();
        let ranks = rank_average(&combined);
        #[allow(clippy::cast_precision_loss)]
        let m = x.len() as f64;
        let u = ranks[..x.len()].iter().sum::<f64>() - m * (m + 1.0) / 2.0;
        let mut sorted = combined;
        sorted.sort_unstable_by(f64::total_cmp);
        Merged {
            u,
            ties: tie_term(&sorted),
        }
    }

    #[test]
    fn merge_counts_pairs_and_ties() {
        let x = [1.0, 2.0, 2.0, 3.0];
        let y = [2.0, 2.0, 4.0];
        let m = merge(&x, &y, tie_term(&y), |v| v);
        // x=1: 0; x=2: two ties each -> 1 each; x=3: beats two -> 2.
        assert_eq!(m.u, 4.0);
        // One group of four 2.0s: 64 - 4.
        assert_eq!(m.ties, 60.0);
        // x - 1 = [0, 1, 1, 2]: only the 2 ties with the two 2s.
        assert_eq!(merge(&x, &y, tie_term(&y), |v| v - 1.0).u, 1.0);
        assert_eq!(tie_term(&[1.0, 1.0, 1.0]), 24.0);
    }

    #[test]
    fn ranks_with_ties() {
        assert_eq!(rank_average(&[]), Vec::<f64>::new());
        assert_eq!(rank_average(&[3.0, 3.0, 3.0]), vec![2.0, 2.0, 2.0]);
    }

    /// The rank sum as computed before the buckets: each sample sorted with `sort_unstable`
    /// (in `f64::total_cmp` order) and the two walked together by the exact merge.
    fn by_sorting(x: &[f64], y: &[f64]) -> Merged {
        let (xs, ys) = (sorted(x), sorted(y));
        merge(&xs, &ys, tie_term(&ys), |v| v)
    }

    /// Uniform values in [0, 1) from a linear congruential generator started at `seed`.
    fn uniform(seed: u64) -> impl FnMut() -> f64 {
        let mut state = seed;
        move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            #[allow(clippy::cast_precision_loss)]
            let r = (state >> 11) as f64 / (1u64 << 53) as f64;
            r
        }
    }

    /// A generator of values over many magnitudes, both signs, ±0, ±∞, and many ties.
    fn mixed(n: usize, seed: u64) -> Vec<f64> {
        let mut next = uniform(seed);
        (0..n)
            .map(|i| {
                let r = next();
                match i % 11 {
                    0 => -r * 1e6,
                    1 => 0.0,
                    2 => -0.0,
                    3 if r < 0.1 => f64::INFINITY,
                    4 if r < 0.1 => f64::NEG_INFINITY,
                    5 | 6 => (r * 40.0).round() - 20.0,
                    7 => (r * 8.0 - 4.0).exp2() * 1e-300,
                    _ => (3.0 + 2.0 * r).exp(),
                }
            })
            .collect()
    }

    #[test]
    fn bucketed_rank_sum_equals_sorting_both_samples() {
        // Sizes across one bucket, a few, and many; both orders of x and y.
        for (m, n) in [
            (1, 1),
            (1, 700),
            (63, 65),
            (1000, 3),
            (5000, 7000),
            (40_000, 30_000),
        ] {
            let (x, y) = (mixed(m, 1 + m as u64), mixed(n, 2 + n as u64));
            let got = rank_sum(&x, &y).unwrap();
            assert_eq!(got, by_sorting(&x, &y), "m {m}, n {n}");
            if m + n > 100 {
                assert!(got.ties > 0.0, "the data has ties: m {m}, n {n}");
            }
            assert_eq!(
                rank_sum(&y, &x).unwrap(),
                by_sorting(&y, &x),
                "m {m}, n {n}"
            );
        }
        let (x, y) = (mixed(2000, 3), mixed(1500, 4));
        let want = reference(&x, &y, 0.0);
        let got = rank_sum(&x, &y).unwrap();
        assert_eq!((got.u, got.ties), (want.u, want.ties));
    }

    #[test]
    fn bucketed_rank_sum_on_skewed_and_tied_data() {
        // One far value puts every other value into one bucket.
        let mut x: Vec<f64> = (0..5000).map(|i| f64::from(i % 97) * 0.25).collect();
        x.push(1e300);
        let y: Vec<f64> = (0..3000).map(|i| f64::from(i % 89) * 0.5 - 3.0).collect();
        assert_eq!(rank_sum(&x, &y).unwrap(), by_sorting(&x, &y));
        // Every value equal, zeros of both signs: one tie group, U = m·n/2.
        let zeros: Vec<f64> = (0..1000)
            .map(|i| if i % 2 == 0 { 0.0 } else { -0.0 })
            .collect();
        let got = rank_sum(&zeros[..400], &zeros[400..]).unwrap();
        assert_eq!(got.u, 400.0 * 600.0 / 2.0);
        assert_eq!(got.ties, 1000.0f64.powi(3) - 1000.0);
        // Infinities only.
        let inf = [f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY];
        assert_eq!(
            rank_sum(&inf, &inf[1..]).unwrap(),
            by_sorting(&inf, &inf[1..])
        );
        // Continuous data without ties: no tie term, U as counted pair by pair.
        let (x, y) = (mixed(3000, 5), mixed(2000, 6));
        let (x, y): (Vec<f64>, Vec<f64>) = (
            x.iter()
                .map(|v| v.abs() + 1.0)
                .filter(|v| v.is_finite())
                .collect(),
            y.iter()
                .map(|v| v.abs() + 1.5)
                .filter(|v| v.is_finite())
                .collect(),
        );
        let pairs = |x: &[f64], y: &[f64]| {
            x.iter()
                .map(|a| {
                    y.iter()
                        .map(|b| f64::from(u8::from(a > b)) + if a == b { 0.5 } else { 0.0 })
                        .sum::<f64>()
                })
                .sum::<f64>()
        };
        assert_eq!(rank_sum(&x, &y).unwrap().u, pairs(&x, &y));
    }

    #[test]
    fn bucketed_rank_sum_names_the_sample_with_nan() {
        let y = mixed(100, 7);
        for nan in [
            f64::NAN,
            -f64::NAN,
            f64::from_bits(0x7FF0_0000_0000_0001),
            f64::from_bits(0xFFF0_0000_0000_0001),
        ] {
            let with_nan = [1.0, nan, 2.0];
            assert_eq!(
                rank_sum(&with_nan, &y),
                Err(AnalysisError::NotANumber { group: "x" })
            );
            assert_eq!(
                rank_sum(&y, &with_nan),
                Err(AnalysisError::NotANumber { group: "y" })
            );
        }
    }

    #[test]
    fn values_outside_the_sampled_range_are_counted_aside() {
        // 4,000 values a sample with ties: every third is looked at by `sampled_range`. Far
        // outliers at positions it skips lie outside the sampled range, below and above.
        let sample = |seed: u64| -> Vec<f64> {
            let mut next = uniform(seed);
            (0..4000).map(|_| (next() * 400.0).round() / 4.0).collect()
        };
        let (mut x, mut y) = (sample(11), sample(12));
        for (i, v) in [(1, -1e308), (2, 1e308), (5, f64::INFINITY), (3997, -1e308)] {
            x[i] = v;
            y[i + 1] = v;
        }
        let (lo, hi) = sampled_range(&x, &y);
        let outside = x
            .iter()
            .chain(&y)
            .filter(|&&v| !(lo..=hi).contains(&key(v + 0.0)))
            .count();
        assert!(outside > 0, "the test must put values outside the range");
        assert!(bucketed(&x, &y, (lo, hi), usize::MAX).unwrap().is_some());
        assert_eq!(rank_sum(&x, &y).unwrap(), by_sorting(&x, &y));
        assert_eq!(rank_sum(&y, &x).unwrap(), by_sorting(&y, &x));
    }

    #[test]
    fn untypical_sampled_values_fall_back_to_the_full_range() {
        // Every sampled position (each 8th of 8,192) holds 1.0, the rest 2.0 .. 3.0: the
        // sampled range is one value and nearly everything falls outside it.
        let sample = |seed: u64| -> Vec<f64> {
            let mut next = uniform(seed);
            (0..8192)
                .map(|i| if i % 8 == 0 { 1.0 } else { 2.0 + next() })
                .collect()
        };
        let (x, y) = (sample(13), sample(14));
        let range = sampled_range(&x, &y);
        assert_eq!(range, (key(1.0), key(1.0)));
        assert_eq!(bucketed(&x, &y, range, (x.len() + y.len()) / 16), Ok(None));
        assert_eq!(rank_sum(&x, &y).unwrap(), by_sorting(&x, &y));
        // NaN at a position the sample skips is still found, in either sample.
        let mut with_nan = x.clone();
        with_nan[8191] = f64::NAN;
        assert_eq!(
            rank_sum(&with_nan, &y),
            Err(AnalysisError::NotANumber { group: "x" })
        );
        assert_eq!(
            rank_sum(&y, &with_nan),
            Err(AnalysisError::NotANumber { group: "y" })
        );
        // Only NaN where the sample looks.
        let sampled_nan: Vec<f64> = (0..4096)
            .map(|i| if i % 4 == 0 { f64::NAN } else { 1.0 })
            .collect();
        assert_eq!(
            rank_sum(&[1.0, 2.0], &sampled_nan),
            Err(AnalysisError::NotANumber { group: "y" })
        );
    }

    #[test]
    fn fast_merge_on_continuous_data() {
        let x: Vec<f64> = (0..3000).map(|i| f64::from(i) * 0.37 + 0.011).collect();
        let y: Vec<f64> = (0..1700).map(|i| f64::from(i) * 0.53).collect();
        let s = Shifted::new(&x, &y);
        for shift in [-3.3, -0.001, 0.0, 0.5, 7.25, 100.0, 1e4, -1e4] {
            assert_eq!(
                s.merge(shift),
                merge(&x, &y, tie_term(&y), |v| v - shift),
                "shift {shift}"
            );
            assert_eq!(s.merge(shift), reference(&x, &y, shift), "shift {shift}");
        }
        let mut with_zeros = x.clone();
        with_zeros.extend([0.0, -0.0, 0.0]);
        let mut y0 = y.clone();
        y0.push(-0.0);
        assert_eq!(
            rank_sum(&with_zeros, &y0),
            Ok(reference(&with_zeros, &y0, 0.0))
        );
        assert_eq!(rank_sum(&x, &y), Ok(reference(&x, &y, 0.0)));
        assert!(rank_sum(&[1.0, -f64::NAN], &y).is_err());
        assert!(rank_sum(&x, &[f64::NAN, 2.0]).is_err());
    }

    #[test]
    fn a_shift_that_merges_x_values_takes_the_exact_path() {
        // Gaps of 2 at 1e16; shifted to 4e16 the rounding step is 8, so neighbours merge.
        let x: Vec<f64> = (0..600).map(|i| 1e16 + 2.0 * f64::from(i)).collect();
        // y above every shifted x, so no shifted x equals a y.
        let y: Vec<f64> = (0..600)
            .map(|i| 4e16 + 2048.0 + 16.0 * f64::from(i))
            .collect();
        let s = Shifted::new(&x, &y);
        for shift in [-3e16, 0.0, 1.5] {
            assert_eq!(s.merge(shift), reference(&x, &y, shift), "shift {shift}");
        }
        assert!(s.merge(-3e16).ties > 0.0, "the shifted x tie");
    }

    #[test]
    fn key_sort_matches_total_cmp() {
        let mut next = uniform(12345);
        let mut v: Vec<f64> = (0..20_000)
            .map(|i| {
                let r = next();
                match i % 7 {
                    0 => -r * 1e6,
                    1 => 0.0,
                    2 => -0.0,
                    3 => f64::INFINITY,
                    4 => f64::NEG_INFINITY,
                    _ => (r * 100.0).round(),
                }
            })
            .collect();
        let mut want = v.clone();
        want.sort_unstable_by(f64::total_cmp);
        sort_f64(&mut v);
        assert!(v.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()));
    }

    proptest! {
        #[test]
        fn key_sort_matches_total_cmp_on_any_bits(
            bits in proptest::collection::vec(
                prop_oneof![
                    any::<u64>(),
                    Just(f64::NAN.to_bits()),
                    Just((-f64::NAN).to_bits()),
                    Just(0),
                    Just(1 << 63),
                    (-3i32..3).prop_map(|v| f64::from(v).to_bits()),
                ],
                0..200,
            ),
        ) {
            // Arbitrary bit patterns: NaNs with any payload and sign, ±0, infinities,
            // subnormals, duplicates; empty and single-element inputs included.
            let mut got: Vec<f64> = bits.iter().map(|&b| f64::from_bits(b)).collect();
            let mut want = got.clone();
            want.sort_unstable_by(f64::total_cmp);
            sort_f64(&mut got);
            let (got, want): (Vec<u64>, Vec<u64>) = (
                got.iter().map(|v| v.to_bits()).collect(),
                want.iter().map(|v| v.to_bits()).collect(),
            );
            prop_assert_eq!(got, want);
        }

        #[test]
        fn bucketed_rank_sum_matches_sorting_on_any_values(
            x in proptest::collection::vec(prop_oneof![
                any::<f64>().prop_filter("not NaN", |v| !v.is_nan()),
                (-4i32..4).prop_map(f64::from),
                Just(-0.0),
                Just(f64::INFINITY),
                Just(f64::NEG_INFINITY),
            ], 1..300),
            y in proptest::collection::vec(prop_oneof![
                any::<f64>().prop_filter("not NaN", |v| !v.is_nan()),
                (-4i32..4).prop_map(f64::from),
                Just(0.0),
                Just(f64::INFINITY),
            ], 1..300),
        ) {
            // Arbitrary finite values (subnormals, both signs, any magnitude), small integers
            // for ties, zeros of both signs, infinities.
            prop_assert_eq!(rank_sum(&x, &y).unwrap(), by_sorting(&x, &y));
        }

        #[test]
        fn merge_matches_ranking(
            x in proptest::collection::vec(-5i32..5, 1..30),
            y in proptest::collection::vec(-5i32..5, 1..30),
            shift in -6i32..6,
            scale in prop_oneof![Just(1.0), Just(0.1), Just(0.3)],
        ) {
            let x: Vec<f64> = x.iter().map(|&v| f64::from(v) * scale).collect();
            let y: Vec<f64> = y.iter().map(|&v| f64::from(v) * scale).collect();
            let (xs, ys) = (sorted(&x), sorted(&y));
            let shift = f64::from(shift) * scale;
            let want = reference(&x, &y, shift);
            let mut all = vec![merge(&xs, &ys, tie_term(&ys), |v| v - shift), Shifted::new(&xs, &ys).merge(shift)];
            if shift == 0.0 {
                all.push(rank_sum(&x, &y).unwrap());
            }
            for got in all {
                prop_assert!((got.u - want.u).abs() < 1e-9, "{:?} vs {:?}", got, want);
                prop_assert!((got.ties - want.ties).abs() < 1e-9, "{:?} vs {:?}", got, want);
            }
        }
    }
}
