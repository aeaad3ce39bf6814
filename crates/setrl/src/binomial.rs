//! Ratios of binomial coefficients, computed as products of factors in [0, 1] so that they
//! neither overflow nor lose precision at N in the thousands (C(4096, 2048) ≈ 10^1231).

/// C(m − g, k) / C(m, k): the probability that a uniform k-subset of m items avoids g given
/// items. Zero when fewer than k items remain after removing g. The definition that
/// [`avoid_ratios`] is tested against.
#[cfg(test)]
pub(crate) fn avoid_ratio(m: usize, g: usize, k: usize) -> f64 {
    if g > m || m - g < k {
        return 0.0;
    }
    let mut ratio = 1.0;
    for t in 0..k {
        ratio *= (m - g - t) as f64 / (m - t) as f64;
        if ratio == 0.0 {
            break;
        }
    }
    ratio
}

/// [`avoid_ratio`]`(m, g, k)` for every g in `0..=max_g`, in O(max_g) with one division
/// per entry instead of k: consecutive ratios differ by the factor (m − g − k) / (m − g).
/// The exact estimator needs the ratio for every cluster size, and k divisions per cluster
/// were most of its time.
pub(crate) fn avoid_ratios(m: usize, k: usize, max_g: usize) -> Vec<f64> {
    let mut table = Vec::with_capacity(max_g + 1);
    let mut ratio = 1.0;
    for g in 0..=max_g {
        if g > m || m - g < k {
            ratio = 0.0;
        } else if g > 0 {
            ratio *= (m - g + 1 - k) as f64 / (m - g + 1) as f64;
        }
        table.push(ratio);
    }
    table
}

/// C(m, k) as an f64 (may be +inf for huge values); used only to compare against limits and
/// to report sizes.
pub(crate) fn binomial_f64(m: usize, k: usize) -> f64 {
    if k > m {
        return 0.0;
    }
    let k = k.min(m - k);
    (0..k).fold(1.0, |acc, t| acc * (m - t) as f64 / (t + 1) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ratio_table_matches_the_product_form() {
        for m in 0..40 {
            for k in 0..=m + 1 {
                let table = avoid_ratios(m, k, m + 2);
                for (g, &t) in table.iter().enumerate() {
                    let direct = avoid_ratio(m, g, k);
                    assert!(
                        (t - direct).abs() <= 1e-13 * direct.max(1e-300),
                        "m={m} g={g} k={k}: table {t} vs product {direct}"
                    );
                }
            }
        }
    }

    #[test]
    fn avoid_ratio_matches_small_binomials() {
        // C(5, 2) / C(8, 2) = 10 / 28
        assert!((avoid_ratio(8, 3, 2) - 10.0 / 28.0).abs() < 1e-15);
        assert_eq!(avoid_ratio(8, 7, 2), 0.0);
        assert_eq!(avoid_ratio(8, 9, 0), 0.0);
        assert_eq!(avoid_ratio(8, 3, 0), 1.0);
    }

    #[test]
    fn binomial_is_exact_for_small_values() {
        assert_eq!(binomial_f64(12, 6), 924.0);
        assert_eq!(binomial_f64(16, 8), 12870.0);
        assert_eq!(binomial_f64(3, 5), 0.0);
    }
}
