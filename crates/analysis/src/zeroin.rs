//! R's `zeroin` root finder (Brent's method), ported line by line.

/// Machine epsilon as R's `zeroin.c` uses it (`DBL_EPSILON`).
const EPSILON: f64 = f64::EPSILON;

/// A root of `f` in `[ax, bx]`, found with R's `R_zeroin2` (Brent 1973, as in R's
/// `src/library/stats/src/zeroin.c` and Kayenta's `BrentSolver.java`, a line-by-line port).
///
/// `fa` and `fb` are `f(ax)` and `f(bx)`, which the caller has already computed (as R's
/// `uniroot` does). `tol` is the absolute tolerance (R's `uniroot` passes `tol`, Kayenta 1e-4)
/// and `max_iter` the iteration cap (1000 in both). When the iterations run out, the last
/// approximation is returned, as R does (with a warning there).
///
/// W in the Mann-Whitney interval is a step function, so every detail of the iteration
/// decides where inside a jump the root lands. That is why this is a verbatim port rather than
/// any Brent implementation.
///
/// ```
/// use cutover_analysis::zeroin;
/// let f = |x: f64| x * x - 2.0;
/// let root = zeroin(0.0, 2.0, f(0.0), f(2.0), f, 1e-12, 1000);
/// assert!((root - 2f64.sqrt()).abs() < 1e-11);
/// ```
pub fn zeroin(
    ax: f64,
    bx: f64,
    fa: f64,
    fb: f64,
    mut f: impl FnMut(f64) -> f64,
    tol: f64,
    max_iter: u32,
) -> f64 {
    let (mut a, mut b) = (ax, bx);
    let (mut fa, mut fb) = (fa, fb);
    let mut c = a;
    let mut fc = fa;
    // First test if we have found a root at an endpoint.
    if fa == 0.0 {
        return a;
    }
    if fb == 0.0 {
        return b;
    }
    let mut maxit = max_iter + 1;
    while maxit > 0 {
        maxit -= 1;
        let prev_step = b - a;
        if fc.abs() < fb.abs() {
            // Swap data for b to be the best approximation.
            a = b;
            b = c;
            c = a;
            fa = fb;
            fb = fc;
            fc = fa;
        }
        let tol_act = 2.0 * EPSILON * b.abs() + tol / 2.0;
        let mut new_step = (c - b) / 2.0;
        if new_step.abs() <= tol_act || fb == 0.0 {
            return b; // Acceptable approximation found.
        }
        // Decide if the interpolation can be tried.
        if prev_step.abs() >= tol_act && fa.abs() > fb.abs() {
            let cb = c - b;
            let (mut p, mut q);
            if a == c {
                // Only two distinct points: linear interpolation.
                let t1 = fb / fa;
                p = cb * t1;
                q = 1.0 - t1;
            } else {
                // Inverse quadratic interpolation.
                q = fa / fc;
                let t1 = fb / fc;
                let t2 = fb / fa;
                p = t2 * (cb * q * (q - t1) - (b - a) * (t1 - 1.0));
                q = (q - 1.0) * (t1 - 1.0) * (t2 - 1.0);
            }
            if p > 0.0 {
                q = -q;
            } else {
                p = -p;
            }
            if p < (0.75 * cb * q - (tol_act * q).abs() / 2.0) && p < (prev_step * q / 2.0).abs() {
                new_step = p / q;
            }
        }
        if new_step.abs() < tol_act {
            // Adjust the step to be not less than the tolerance.
            new_step = if new_step > 0.0 { tol_act } else { -tol_act };
        }
        a = b;
        fa = fb;
        b += new_step;
        fb = f(b);
        if (fb > 0.0 && fc > 0.0) || (fb < 0.0 && fc < 0.0) {
            // Adjust c for it to have a sign opposite to that of b.
            c = a;
            fc = fa;
        }
    }
    b
}

#[cfg(test)]
mod tests {
    use super::zeroin;

    #[test]
    fn finds_roots_and_endpoints() {
        let f = |x: f64| x.powi(3) - x - 1.0;
        let r = zeroin(1.0, 2.0, f(1.0), f(2.0), f, 1e-10, 1000);
        assert!(f(r).abs() < 1e-8, "{r}");
        assert_eq!(zeroin(0.0, 1.0, 0.0, 5.0, |_| 1.0, 1e-4, 1000), 0.0);
        assert_eq!(zeroin(0.0, 1.0, -5.0, 0.0, |_| 1.0, 1e-4, 1000), 1.0);
    }
}
