//! Ranking with ties, and the merged pass over two sorted samples that every rank statistic
//! here is built on.

/// Ranks of `values` from 1, ties getting the average of the ranks they span (R's
/// `rank(ties.method = "average")`, SciPy's `rankdata(method="average")`). Ties are exact f64
/// equality; NaN sorts after every number (`f64::total_cmp`) and each NaN is its own group
/// only if its bit pattern differs, so filter NaN out first when that matters.
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

/// What one merged pass over sorted `x - shift` and sorted `y` yields.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Merged {
    /// U of x: pairs with `x_i - shift > y_j`, ties counting one half.
    pub u: f64,
    /// Σ (t³ − t) over the tie groups of the combined sample.
    pub ties: f64,
}

/// Walks sorted `x` (shifted down by `shift`) and sorted `y` together once, in O(nx + ny)
/// without allocating. Both slices must be sorted ascending and free of NaN.
pub(crate) fn merge(x: &[f64], y: &[f64], shift: f64) -> Merged {
    let (mut i, mut j) = (0usize, 0usize);
    let mut u = 0.0f64;
    let mut ties = 0.0f64;
    while i < x.len() || j < y.len() {
        let xv = if i < x.len() {
            x[i] - shift
        } else {
            f64::INFINITY
        };
        let yv = if j < y.len() { y[j] } else { f64::INFINITY };
        let v = if i < x.len() && (j >= y.len() || xv <= yv) {
            xv
        } else {
            yv
        };
        let mut tx = 0usize;
        while i < x.len() && x[i] - shift == v {
            tx += 1;
            i += 1;
        }
        let mut ty = 0usize;
        while j < y.len() && y[j] == v {
            ty += 1;
            j += 1;
        }
        // Every x in this group beats the `j - ty` y values before it and ties with `ty`.
        #[allow(clippy::cast_precision_loss)]
        {
            u += tx as f64 * ((j - ty) as f64 + ty as f64 / 2.0);
            let t = (tx + ty) as f64;
            if tx + ty > 1 {
                ties += t * t * t - t;
            }
        }
    }
    Merged { u, ties }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_counts_pairs_and_ties() {
        let x = [1.0, 2.0, 2.0, 3.0];
        let y = [2.0, 2.0, 4.0];
        let m = merge(&x, &y, 0.0);
        // x=1: 0; x=2: two ties each -> 1 each; x=3: beats two -> 2.
        assert_eq!(m.u, 4.0);
        // One group of four 2.0s: 64 - 4.
        assert_eq!(m.ties, 60.0);
        // x - 1 = [0, 1, 1, 2]: only the 2 ties with the two 2s.
        assert_eq!(merge(&x, &y, 1.0).u, 1.0);
        assert_eq!(merge(&[1.0, 1.0, 1.0], &[], 0.0).ties, 24.0);
    }

    #[test]
    fn ranks_with_ties() {
        assert_eq!(rank_average(&[]), Vec::<f64>::new());
        assert_eq!(rank_average(&[3.0, 3.0, 3.0]), vec![2.0, 2.0, 2.0]);
    }
}
