//! Group suppression threshold and accuracy of discrete Laplace noise.
//!
//! For discrete Laplace noise `Z` of scale `b` (`P[Z = z] ∝ exp(-|z| / b)`) and
//! `α = exp(-1/b)`, the upper tail is `P[Z >= t] = α^t / (1 + α)` for every integer
//! `t >= 1`. NOTES.md beside this file derives the threshold from it.

/// Noisy distinct-person count a group needs to be released:
/// `τ = (max(m, 2) - 1) + ceil(b × ln(k / δ))` for minimum group size `m`, noise scale
/// `b`, at most `k` rows per person and the query's `δ`.
///
/// A group with at most `m - 1` persons is released with probability below `δ / k`, and
/// so is a group that contains only one person.
///
/// Returns `None` if `τ` exceeds `i64::MAX`. Noisy counts saturate at `i64::MAX`, so a
/// saturated threshold could let a saturated count through.
pub(crate) fn release_threshold(
    min_group_size: u64,
    max_rows: u32,
    delta: f64,
    scale: f64,
) -> Option<i64> {
    let base = i64::try_from(min_group_size.max(2) - 1).ok()?;
    let margin = scale * (f64::from(max_rows) / delta).ln();
    // Rounding in ln and the product is far below 1e-12 relative, so enlarging by that
    // much makes the ceiling at least the exact real value.
    let margin = (margin * (1.0 + 1e-12)).next_up().ceil();
    // 2^63 is the first f64 above i64::MAX.
    let limit = 2f64.powi(63);
    if margin.is_nan() || margin >= limit {
        return None;
    }
    base.checked_add(margin as i64)
}

/// Returns `P[Z >= t]` for discrete Laplace noise of scale `scale` and an integer `t >= 1`.
#[cfg(test)]
pub(crate) fn upper_tail(scale: f64, t: i64) -> f64 {
    let alpha = (-1.0 / scale).exp();
    (-(t as f64) / scale).exp() / (1.0 + alpha)
}

/// Returns the smallest whole number of steps `t` with `P[|Z| > t] <= 0.05`, from
/// `P[|Z| > t] = 2 α^(t+1) / (1 + α)`.
///
/// For large scales this approaches the continuous Laplace value `b × ln 20`.
pub(crate) fn ci95_steps(scale: f64) -> f64 {
    if scale <= 0.0 {
        return 0.0;
    }
    let alpha = (-1.0 / scale).exp();
    let steps = (scale * (40.0 / (1.0 + alpha)).ln() * (1.0 + 1e-12)).ceil() - 1.0;
    steps.max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_matches_formula() {
        // m = 10, k = 1, δ = 1e-9, b = 1: 9 + ceil(ln 1e9) = 9 + 21.
        assert_eq!(release_threshold(10, 1, 1e-9, 1.0), Some(30));
        // k = 3 divides δ by 3: 9 + ceil(2 ln 3e9) = 9 + 44.
        assert_eq!(release_threshold(10, 3, 1e-9, 2.0), Some(53));
        // A minimum below 2 still hides a group of one person.
        assert_eq!(release_threshold(0, 1, 1e-9, 1.0), Some(22));
        assert_eq!(release_threshold(1, 1, 1e-9, 1.0), Some(22));
    }

    #[test]
    fn threshold_overflow_is_none() {
        assert_eq!(release_threshold(10, 1, 1e-9, 1e200), None);
        assert_eq!(release_threshold(u64::MAX, 1, 1e-9, 1.0), None);
    }

    #[test]
    fn small_group_release_probability_is_below_delta() {
        for &(m, k, delta, scale) in &[
            (10u64, 1u32, 1e-9, 1.0),
            (10, 1, 1e-9, 2.0),
            (5, 4, 1e-6, 8.0),
            (2, 1, 1e-3, 0.3),
            (100, 10, 1e-12, 40.0),
        ] {
            let tau = release_threshold(m, k, delta, scale).unwrap();
            // The largest group below the minimum has m - 1 persons (at least 1).
            let largest_small = m.max(2) - 1;
            let p = upper_tail(scale, tau - largest_small as i64);
            assert!(
                p < delta / f64::from(k),
                "m={m} k={k} b={scale}: {p} >= {delta}"
            );
        }
    }

    #[test]
    fn ci_steps_cover_95_percent() {
        for scale in [0.1f64, 0.5, 1.0, 2.0, 7.3, 100.0] {
            let alpha = (-1.0 / scale).exp();
            let t = ci95_steps(scale);
            let outside = 2.0 * alpha.powf(t + 1.0) / (1.0 + alpha);
            assert!(outside <= 0.05, "b={scale}: P[|Z|>{t}] = {outside}");
            if t >= 1.0 {
                let outside_smaller = 2.0 * alpha.powf(t) / (1.0 + alpha);
                assert!(outside_smaller > 0.05, "b={scale}: {t} is not the smallest");
            }
        }
        assert_eq!(ci95_steps(1.0), 3.0);
    }
}
