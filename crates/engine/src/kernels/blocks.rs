//! A frozen weight kept in the GGUF file's own blocks (Q4_1, Q8_0), and `y = x · wᵀ` for a
//! few f32 rows straight from them.
//!
//! The f32 weight the model trains against is the dequantization of these very blocks, and
//! the kernels decode each weight with the same two f32 operations (`q · d + m` for Q4_1,
//! `q · d` for Q8_0), so they multiply by bit-identical weights: a sampler on the blocks
//! differs from the f32 training path only in the order of summation, not in precision.
//! That is what lets RL sample from 4.5-bit weights (a quarter of f32's memory traffic)
//! without an off-policy correction; [`BlockWeights::decodes_to`] checks it before use.

use half::f16;

use super::{SharedOut, SimdLevel, for_column_ranges};

/// Weights per block (both formats).
pub const BLOCK: usize = 32;

/// The block format of a [`BlockWeights`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockFormat {
    /// 4-bit codes q ∈ [0, 15] with a scale d and an offset m per block: w = q·d + m.
    Q4_1,
    /// 8-bit codes q ∈ [−128, 127] with a scale d per block: w = q·d.
    Q8_0,
}

/// An (N, K) weight in blocks of 32 along K, unpacked from GGML's interleaved records into
/// flat arrays (codes, scales, offsets) so that the kernels load each with one instruction.
#[derive(Debug, Clone)]
pub struct BlockWeights {
    format: BlockFormat,
    rows: usize,
    cols: usize,
    /// Q8_0: one i8 per weight (stored as u8). Q4_1: 16 bytes per block, byte j holding
    /// weight j in its low nibble and weight j + 16 in its high one (GGML's order).
    codes: Vec<u8>,
    /// d of each block, row-major (rows × cols/32).
    scales: Vec<f32>,
    /// m of each block (Q4_1 only).
    offsets: Vec<f32>,
}

impl BlockWeights {
    /// Unpacks GGML block records (`data`, as a GGUF file stores them) of an (rows, cols)
    /// tensor. `None` for a format other than Q4_1 / Q8_0, a width that is not a whole
    /// number of blocks, or data of the wrong length.
    pub fn from_ggml(format: BlockFormat, rows: usize, cols: usize, data: &[u8]) -> Option<Self> {
        if !cols.is_multiple_of(BLOCK) {
            return None;
        }
        let blocks = rows * cols / BLOCK;
        let record = match format {
            BlockFormat::Q4_1 => 4 + BLOCK / 2,
            BlockFormat::Q8_0 => 2 + BLOCK,
        };
        if data.len() != blocks * record {
            return None;
        }
        let half = |b: &[u8]| f16::from_le_bytes([b[0], b[1]]).to_f32();
        let mut out = Self {
            format,
            rows,
            cols,
            codes: Vec::with_capacity(blocks * (record - 4)),
            scales: Vec::with_capacity(blocks),
            offsets: Vec::new(),
        };
        for r in data.chunks_exact(record) {
            out.scales.push(half(&r[0..2]));
            match format {
                BlockFormat::Q4_1 => {
                    out.offsets.push(half(&r[2..4]));
                    out.codes.extend_from_slice(&r[4..]);
                }
                BlockFormat::Q8_0 => out.codes.extend_from_slice(&r[2..]),
            }
        }
        Some(out)
    }

    /// (rows, cols).
    pub fn shape(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    /// The block format.
    pub fn format(&self) -> BlockFormat {
        self.format
    }

    /// Bytes held (codes, scales, offsets).
    pub fn bytes(&self) -> usize {
        self.codes.len() + 4 * (self.scales.len() + self.offsets.len())
    }

    /// The same weight with its rows reordered: row i of the result is row `order[i]`.
    ///
    /// # Panics
    /// When `order` is not a permutation of the rows (an engine bug).
    pub fn permute_rows(&self, order: &[usize]) -> Self {
        assert_eq!(order.len(), self.rows);
        let nb = self.cols / BLOCK;
        let code_row = self.codes.len() / self.rows;
        let pick = |v: &[f32], per: usize| -> Vec<f32> {
            order
                .iter()
                .flat_map(|&r| v[r * per..(r + 1) * per].iter().copied())
                .collect()
        };
        Self {
            format: self.format,
            rows: self.rows,
            cols: self.cols,
            codes: order
                .iter()
                .flat_map(|&r| self.codes[r * code_row..(r + 1) * code_row].iter().copied())
                .collect(),
            scales: pick(&self.scales, nb),
            offsets: if self.offsets.is_empty() {
                Vec::new()
            } else {
                pick(&self.offsets, nb)
            },
        }
    }

    /// Dequantizes row `row` into `out` (cols), with the kernels' arithmetic.
    fn decode_row(&self, row: usize, out: &mut [f32]) {
        let nb = self.cols / BLOCK;
        for b in 0..nb {
            let blk = row * nb + b;
            let d = self.scales[blk];
            let dst = &mut out[b * BLOCK..(b + 1) * BLOCK];
            match self.format {
                BlockFormat::Q4_1 => {
                    let m = self.offsets[blk];
                    let q = &self.codes[blk * 16..blk * 16 + 16];
                    for j in 0..16 {
                        dst[j] = (q[j] & 0x0F) as f32 * d + m;
                        dst[j + 16] = (q[j] >> 4) as f32 * d + m;
                    }
                }
                BlockFormat::Q8_0 => {
                    let q = &self.codes[blk * BLOCK..(blk + 1) * BLOCK];
                    for j in 0..BLOCK {
                        dst[j] = q[j] as i8 as f32 * d;
                    }
                }
            }
        }
    }

    /// The dequantized (rows · cols) weight, row-major.
    pub fn decode(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.rows * self.cols];
        for (r, row) in out.chunks_exact_mut(self.cols).enumerate() {
            self.decode_row(r, row);
        }
        out
    }

    /// Whether these blocks decode to exactly `weight` (row-major, bit for bit): the
    /// condition for sampling from them instead of the f32 weight.
    pub fn decodes_to(&self, weight: &[f32]) -> bool {
        if weight.len() != self.rows * self.cols {
            return false;
        }
        let mut row = vec![0f32; self.cols];
        weight.chunks_exact(self.cols).enumerate().all(|(r, want)| {
            self.decode_row(r, &mut row);
            row.iter()
                .zip(want)
                .all(|(a, b)| a.to_bits() == b.to_bits())
        })
    }

    /// Writes `out[i·n + j] = Σ_l x[i·k + l] · w[j, l]` for the m rows of x (m, k = cols),
    /// n = rows: each tile of weight rows is decoded once into an L1-sized buffer and run
    /// through all m rows by the f32 kernel, so the result is bit-identical to
    /// [`super::dense::rows_times_weight`] on [`BlockWeights::decode`]'s weight.
    ///
    /// # Panics
    /// When a slice is shorter than its shape says (an engine bug).
    pub fn rows_times(&self, level: SimdLevel, x: &[f32], m: usize, out: &mut [f32]) {
        let (n, k) = (self.rows, self.cols);
        assert!(x.len() >= m * k && out.len() >= m * n);
        let dst = SharedOut(out.as_mut_ptr());
        let tile = super::dense::TILE_COLUMNS;
        for_column_ranges(n, tile, m * n * k, |j0, cols| {
            let mut buf = vec![0f32; tile * k];
            let mut j = j0;
            while j < j0 + cols {
                let c = tile.min(j0 + cols - j);
                for (t, row) in buf.chunks_exact_mut(k).take(c).enumerate() {
                    self.decode_row_with(level, j + t, row);
                }
                // SAFETY: buf holds c decoded rows of k; out columns j..j+c of m rows are in
                // bounds (asserted above) and written by this task only.
                unsafe {
                    super::dense::columns(level, x.as_ptr(), m, k, buf.as_ptr(), c, dst.at(j), n)
                };
                j += c;
            }
        });
    }

    /// [`BlockWeights::decode_row`] with the vector instructions of `level`.
    fn decode_row_with(&self, level: SimdLevel, row: usize, out: &mut [f32]) {
        match level {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `level` was checked against the CPU; `out` holds a row.
            SimdLevel::Avx512 => unsafe { decode_row_avx512(self, row, out) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above.
            SimdLevel::Avx2 => unsafe { decode_row_avx2(self, row, out) },
            _ => self.decode_row(row, out),
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn decode_row_avx512(w: &BlockWeights, row: usize, out: &mut [f32]) {
    use std::arch::x86_64::*;
    let nb = w.cols / BLOCK;
    assert!(out.len() >= w.cols);
    // SAFETY: block reads stay inside row `row`'s codes and scales, writes inside `out`.
    unsafe {
        for b in 0..nb {
            let blk = row * nb + b;
            let d = _mm512_set1_ps(*w.scales.get_unchecked(blk));
            // The weights of positions [0, 16) and [16, 32) of the block.
            let (lo, hi) = match w.format {
                BlockFormat::Q4_1 => {
                    let m = _mm512_set1_ps(*w.offsets.get_unchecked(blk));
                    let bytes = _mm_loadu_si128(w.codes.as_ptr().add(blk * 16) as *const __m128i);
                    let q = _mm512_cvtepu8_epi32(bytes);
                    let ql = _mm512_and_si512(q, _mm512_set1_epi32(0x0F));
                    let qh = _mm512_srli_epi32(q, 4);
                    // mul then add, not fma: the same rounding as the f32 dequantization.
                    (
                        _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(ql), d), m),
                        _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(qh), d), m),
                    )
                }
                BlockFormat::Q8_0 => {
                    let p = w.codes.as_ptr().add(blk * BLOCK) as *const __m128i;
                    let ql = _mm512_cvtepi8_epi32(_mm_loadu_si128(p));
                    let qh = _mm512_cvtepi8_epi32(_mm_loadu_si128(p.add(1)));
                    (
                        _mm512_mul_ps(_mm512_cvtepi32_ps(ql), d),
                        _mm512_mul_ps(_mm512_cvtepi32_ps(qh), d),
                    )
                }
            };
            let dst = out.as_mut_ptr().add(b * BLOCK);
            _mm512_storeu_ps(dst, lo);
            _mm512_storeu_ps(dst.add(16), hi);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn decode_row_avx2(w: &BlockWeights, row: usize, out: &mut [f32]) {
    use std::arch::x86_64::*;
    let nb = w.cols / BLOCK;
    assert!(out.len() >= w.cols);
    // SAFETY: as in `decode_row_avx512`.
    unsafe {
        for b in 0..nb {
            let blk = row * nb + b;
            let d = _mm256_set1_ps(*w.scales.get_unchecked(blk));
            let dst = out.as_mut_ptr().add(b * BLOCK);
            match w.format {
                BlockFormat::Q4_1 => {
                    let m = _mm256_set1_ps(*w.offsets.get_unchecked(blk));
                    let p = w.codes.as_ptr().add(blk * 16);
                    let nib = _mm256_set1_epi32(0x0F);
                    // Bytes [0, 8) hold positions [0, 8) and [16, 24); bytes [8, 16) the rest.
                    for half in 0..2 {
                        let q = _mm256_cvtepu8_epi32(_mm_loadl_epi64(
                            p.add(8 * half) as *const __m128i
                        ));
                        // mul then add, not fma: the same rounding as the f32 dequantization.
                        let lo = _mm256_add_ps(
                            _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_and_si256(q, nib)), d),
                            m,
                        );
                        let hi = _mm256_add_ps(
                            _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(q, 4)), d),
                            m,
                        );
                        _mm256_storeu_ps(dst.add(8 * half), lo);
                        _mm256_storeu_ps(dst.add(16 + 8 * half), hi);
                    }
                }
                BlockFormat::Q8_0 => {
                    let p = w.codes.as_ptr().add(blk * BLOCK);
                    for o in (0..BLOCK).step_by(8) {
                        let q = _mm256_cvtepi8_epi32(_mm_loadl_epi64(p.add(o) as *const __m128i));
                        _mm256_storeu_ps(dst.add(o), _mm256_mul_ps(_mm256_cvtepi32_ps(q), d));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// GGML records of a random (rows, cols) tensor in `format`.
    fn records(format: BlockFormat, rows: usize, cols: usize, seed: u64) -> Vec<u8> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut data = Vec::new();
        for _ in 0..rows * cols / BLOCK {
            data.extend(f16::from_f32(rng.random_range(0.001..0.1)).to_le_bytes());
            let codes = match format {
                BlockFormat::Q4_1 => {
                    data.extend(f16::from_f32(rng.random_range(-0.5..0.5)).to_le_bytes());
                    BLOCK / 2
                }
                BlockFormat::Q8_0 => BLOCK,
            };
            data.extend((0..codes).map(|_| rng.random::<u8>()));
        }
        data
    }

    #[test]
    fn every_level_multiplies_by_exactly_the_decoded_weight() {
        for format in [BlockFormat::Q4_1, BlockFormat::Q8_0] {
            let (n, k) = (37, 96);
            let w = BlockWeights::from_ggml(format, n, k, &records(format, n, k, 1)).unwrap();
            let dense = w.decode();
            assert!(w.decodes_to(&dense));
            for level in SimdLevel::available() {
                for m in [1, 3, 6] {
                    let x: Vec<f32> = (0..m * k)
                        .map(|i| ((i * 7919) % 13) as f32 / 13.0 - 0.5)
                        .collect();
                    let mut got = vec![f32::NAN; m * n];
                    w.rows_times(level, &x, m, &mut got);
                    let mut want = vec![0f32; m * n];
                    super::super::dense::rows_times_weight(level, &x, m, k, &dense, n, &mut want);
                    assert_eq!(got, want, "{format:?} {level:?} m={m}");
                }
            }
        }
    }

    #[test]
    fn decoding_matches_candles_dequantization_bit_for_bit() {
        use candle_core::quantized::{GgmlDType, QTensor};
        use candle_core::{Device, Tensor};
        for (format, dtype) in [
            (BlockFormat::Q4_1, GgmlDType::Q4_1),
            (BlockFormat::Q8_0, GgmlDType::Q8_0),
        ] {
            let (n, k) = (5, 64);
            let t = Tensor::randn(0f32, 1.0, (n, k), &Device::Cpu).unwrap();
            let q = QTensor::quantize(&t, dtype).unwrap();
            let candle: Vec<f32> = q
                .dequantize(&Device::Cpu)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let w = BlockWeights::from_ggml(format, n, k, &q.data().unwrap()).unwrap();
            assert!(w.decodes_to(&candle), "{format:?}");
            let mut off = candle.clone();
            off[17] = f32::from_bits(off[17].to_bits() ^ 1);
            assert!(!w.decodes_to(&off), "one flipped bit must fail the check");
        }
    }

    #[test]
    fn permuted_rows_follow_the_order() {
        let (n, k) = (4, 32);
        let w = BlockWeights::from_ggml(
            BlockFormat::Q4_1,
            n,
            k,
            &records(BlockFormat::Q4_1, n, k, 3),
        )
        .unwrap();
        let p = w.permute_rows(&[2, 0, 3, 1]).decode();
        let d = w.decode();
        for (i, &r) in [2, 0, 3, 1].iter().enumerate() {
            assert_eq!(p[i * k..(i + 1) * k], d[r * k..(r + 1) * k]);
        }
    }
}
