//! `y = x · wᵀ` for a few f32 rows `x` (M, K) and an f32 weight `w` (N, K), N ≫ M.
//!
//! Each task takes a range of output columns; for every tile of C weight rows (a few KiB,
//! kept in L1) it runs all of x's rows through it, R rows at a time, with the R × C partial
//! sums in registers. The weight is read from memory once; x (≤ 64 rows) stays in L2.

// The register tiles are indexed by both loop counters (acc[c][r]); iterators would hide that.
#![allow(clippy::needless_range_loop)]

use super::{SharedOut, SimdLevel, for_column_ranges};

/// Writes `out[i·n + j] = Σ_k x[i·k + l] · w[j·k + l]` for i < m, j < n.
///
/// # Panics
/// When a slice is shorter than its shape says (an engine bug, not a user error).
pub fn rows_times_weight(
    level: SimdLevel,
    x: &[f32],
    m: usize,
    k: usize,
    w: &[f32],
    n: usize,
    out: &mut [f32],
) {
    assert!(x.len() >= m * k && w.len() >= n * k && out.len() >= m * n);
    let dst = SharedOut(out.as_mut_ptr());
    for_column_ranges(n, TILE_COLUMNS, m * n * k, |j0, cols| {
        // SAFETY: the ranges are in bounds (asserted above) and disjoint across tasks; the
        // instruction set was checked by `SimdLevel`.
        unsafe {
            columns(
                level,
                x.as_ptr(),
                m,
                k,
                w.as_ptr().add(j0 * k),
                cols,
                dst.at(j0),
                n,
            )
        }
    });
}

/// Weight rows a task's tile takes at most (a multiple of every level's column tile).
pub(super) const TILE_COLUMNS: usize = 4;

/// One task: `cols` output columns starting at `w` / `out`, whose rows are `ldo` apart.
/// Each (row, column) sum is the same whatever `m`, `cols` and the tile it falls in.
///
/// # Safety
/// x must hold (m, k), w (cols, k) and out (m, ldo) floats; `level` must run on this CPU.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn columns(
    level: SimdLevel,
    x: *const f32,
    m: usize,
    k: usize,
    w: *const f32,
    cols: usize,
    out: *mut f32,
    ldo: usize,
) {
    // SAFETY (whole body): the caller guarantees x (m, k), w (cols, k) and out (m, ldo).
    unsafe {
        let c_max = match level {
            SimdLevel::Avx512 => 4,
            _ => 2,
        };
        let mut j = 0;
        while j < cols {
            let c = if cols - j >= c_max { c_max } else { 1 };
            let mut i = 0;
            while i < m {
                let r = (m - i).min(4);
                let (xi, wj, o) = (x.add(i * k), w.add(j * k), out.add(i * ldo + j));
                tile(level, r, c, xi, wj, k, o, ldo);
                i += r;
            }
            j += c;
        }
    }
}

/// Dispatches one R × C tile to the kernel of `level`, with R ≤ 4 and C ∈ {1, 2, 4}.
#[allow(clippy::too_many_arguments)]
unsafe fn tile(
    level: SimdLevel,
    r: usize,
    c: usize,
    x: *const f32,
    w: *const f32,
    k: usize,
    out: *mut f32,
    ldo: usize,
) {
    macro_rules! by_shape {
        ($f:ident) => {
            match (r, c) {
                (1, 1) => $f::<1, 1>(x, w, k, out, ldo),
                (2, 1) => $f::<2, 1>(x, w, k, out, ldo),
                (3, 1) => $f::<3, 1>(x, w, k, out, ldo),
                (4, 1) => $f::<4, 1>(x, w, k, out, ldo),
                (1, 2) => $f::<1, 2>(x, w, k, out, ldo),
                (2, 2) => $f::<2, 2>(x, w, k, out, ldo),
                (3, 2) => $f::<3, 2>(x, w, k, out, ldo),
                (4, 2) => $f::<4, 2>(x, w, k, out, ldo),
                (1, _) => $f::<1, 4>(x, w, k, out, ldo),
                (2, _) => $f::<2, 4>(x, w, k, out, ldo),
                (3, _) => $f::<3, 4>(x, w, k, out, ldo),
                _ => $f::<4, 4>(x, w, k, out, ldo),
            }
        };
    }
    // SAFETY: forwarded from the caller; `level` was checked against the CPU.
    unsafe {
        match level {
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx512 => by_shape!(tile_avx512),
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx2 => by_shape!(tile_avx2),
            _ => by_shape!(tile_scalar),
        }
    }
}

unsafe fn tile_scalar<const R: usize, const C: usize>(
    x: *const f32,
    w: *const f32,
    k: usize,
    out: *mut f32,
    ldo: usize,
) {
    // SAFETY: the caller guarantees R rows of x, C rows of w (k each) and out (R, ldo).
    unsafe {
        for r in 0..R {
            let xr = std::slice::from_raw_parts(x.add(r * k), k);
            for c in 0..C {
                let wc = std::slice::from_raw_parts(w.add(c * k), k);
                let dot = xr.iter().zip(wc).fold(0f32, |s, (a, b)| s + a * b);
                *out.add(r * ldo + c) = dot;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn tile_avx512<const R: usize, const C: usize>(
    x: *const f32,
    w: *const f32,
    k: usize,
    out: *mut f32,
    ldo: usize,
) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm512_setzero_ps(); R]; C];
    let full = k / 16 * 16;
    // SAFETY: loads stay inside the R rows of x and C rows of w (masked for the tail).
    unsafe {
        let mut l = 0;
        while l < full {
            let mut wv = [_mm512_setzero_ps(); C];
            for (c, v) in wv.iter_mut().enumerate() {
                *v = _mm512_loadu_ps(w.add(c * k + l));
            }
            for r in 0..R {
                let xv = _mm512_loadu_ps(x.add(r * k + l));
                for c in 0..C {
                    acc[c][r] = _mm512_fmadd_ps(xv, wv[c], acc[c][r]);
                }
            }
            l += 16;
        }
        if full < k {
            let mask: __mmask16 = ((1u32 << (k - full)) - 1) as u16;
            for r in 0..R {
                let xv = _mm512_maskz_loadu_ps(mask, x.add(r * k + full));
                for c in 0..C {
                    let wv = _mm512_maskz_loadu_ps(mask, w.add(c * k + full));
                    acc[c][r] = _mm512_fmadd_ps(xv, wv, acc[c][r]);
                }
            }
        }
        for c in 0..C {
            for r in 0..R {
                *out.add(r * ldo + c) = _mm512_reduce_add_ps(acc[c][r]);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_avx2<const R: usize, const C: usize>(
    x: *const f32,
    w: *const f32,
    k: usize,
    out: *mut f32,
    ldo: usize,
) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm256_setzero_ps(); R]; C];
    let full = k / 8 * 8;
    // SAFETY: loads stay inside the R rows of x and C rows of w; the tail is scalar.
    unsafe {
        let mut l = 0;
        while l < full {
            let mut wv = [_mm256_setzero_ps(); C];
            for (c, v) in wv.iter_mut().enumerate() {
                *v = _mm256_loadu_ps(w.add(c * k + l));
            }
            for r in 0..R {
                let xv = _mm256_loadu_ps(x.add(r * k + l));
                for c in 0..C {
                    acc[c][r] = _mm256_fmadd_ps(xv, wv[c], acc[c][r]);
                }
            }
            l += 8;
        }
        for c in 0..C {
            for r in 0..R {
                let mut s = hsum256(acc[c][r]);
                for t in full..k {
                    s = (*x.add(r * k + t)).mul_add(*w.add(c * k + t), s);
                }
                *out.add(r * ldo + c) = s;
            }
        }
    }
}

/// Sum of the 8 lanes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn hsum256(v: std::arch::x86_64::__m256) -> f32 {
    use std::arch::x86_64::*;
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    _mm_cvtss_f32(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn random(len: usize, seed: u64) -> Vec<f32> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..len).map(|_| rng.random_range(-1.0..1.0)).collect()
    }

    fn reference(x: &[f32], m: usize, k: usize, w: &[f32], n: usize) -> Vec<f64> {
        let mut y = vec![0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                y[i * n + j] = (0..k)
                    .map(|l| x[i * k + l] as f64 * w[j * k + l] as f64)
                    .sum();
            }
        }
        y
    }

    #[test]
    fn every_level_matches_a_double_precision_product_on_ragged_shapes() {
        // Ragged K (tails of every lane width), N not a multiple of the column tile, and M
        // across the row tiles.
        for level in SimdLevel::available() {
            for &(m, k, n) in &[
                (1, 7, 3),
                (3, 33, 9),
                (5, 64, 130),
                (8, 577, 37),
                (32, 96, 66),
            ] {
                let x = random(m * k, 1);
                let w = random(n * k, 2);
                let mut y = vec![f32::NAN; m * n];
                rows_times_weight(level, &x, m, k, &w, n, &mut y);
                let want = reference(&x, m, k, &w, n);
                for (a, b) in y.iter().zip(&want) {
                    assert!(
                        (*a as f64 - b).abs() <= 1e-5 * (k as f64).sqrt(),
                        "{level:?} m={m} k={k} n={n}: {a} vs {b}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_row_gives_the_same_bits_alone_and_in_a_batch() {
        // Batched sampling must equal one-at-a-time: each dot product is summed in one order
        // whatever the tile it lands in.
        let (k, n) = (200, 45);
        let w = random(n * k, 3);
        for level in SimdLevel::available() {
            for m in [2, 5, 13] {
                let x = random(m * k, 4);
                let mut batch = vec![0f32; m * n];
                rows_times_weight(level, &x, m, k, &w, n, &mut batch);
                for i in 0..m {
                    let mut one = vec![0f32; n];
                    rows_times_weight(level, &x[i * k..(i + 1) * k], 1, k, &w, n, &mut one);
                    assert_eq!(one, batch[i * n..(i + 1) * n], "{level:?} row {i} of {m}");
                }
            }
        }
    }
}
