//! The engine's own CPU kernels for the products candle's matmul serves badly: a few rows
//! (decoding: ≤ [`MAX_FEW_ROWS`] rows) times a large frozen weight, in f32 or straight from the
//! GGUF file's own 4/8-bit blocks.
//!
//! A product with many rows (training, prefill) is compute-bound and stays on candle's matmul
//! (the `gemm` crate, built with its AVX-512 kernels, which it picks at run time). A product
//! of a few rows reads every weight once and does a handful of flops with it: its speed is
//! the speed of streaming the weight from memory, and `gemm` packs and tiles it as if it were
//! compute-bound. These kernels read each weight once for all rows and keep the rows' partial
//! sums in registers.
//!
//! The instruction set is chosen at run time ([`SimdLevel::detect`]), so one binary is right
//! on an AVX-512 machine and on an AVX2-only one (Zen 3). Each (row, column) dot product is
//! summed in the same order whatever the number of rows, so a batch decodes exactly as its
//! rows would one at a time.

pub mod blocks;
pub mod dense;

use std::sync::OnceLock;

/// Products with at most this many rows take the kernels here; more rows take candle's
/// matmul. Measured on SmolLM2-135M, 2 threads (`polyepo bench --only kernels`): the few-rows
/// kernel is 2–4× ahead of gemm's AVX-512 path from 4 to 32 rows and level with it at 64
/// (the RL step's 8 × 8 rollout batch), where reading the file's blocks is still ahead.
pub const MAX_FEW_ROWS: usize = 64;

/// The widest vector instructions the kernels may use on this CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SimdLevel {
    /// Plain Rust loops (any CPU).
    Scalar,
    /// AVX2 with FMA: 8 lanes (Haswell and later, Zen).
    Avx2,
    /// AVX-512F: 16 lanes (Skylake-SP and later, Zen 4).
    Avx512,
}

impl SimdLevel {
    /// The level this process uses: the CPU's best, detected once, or the lower one named by
    /// `POLYEPO_SIMD` (`scalar`, `avx2`, `avx512`) — for measuring the AVX2 path on an
    /// AVX-512 machine. A level the CPU lacks is never used, whatever the variable says.
    pub fn get() -> Self {
        static LEVEL: OnceLock<SimdLevel> = OnceLock::new();
        *LEVEL.get_or_init(|| {
            let best = Self::detect();
            let asked = std::env::var("POLYEPO_SIMD")
                .ok()
                .and_then(|v| Self::parse(&v));
            asked.map_or(best, |a| a.min(best))
        })
    }

    /// The CPU's best level, by `cpuid` at run time.
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Self::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Self::Avx2;
            }
        }
        Self::Scalar
    }

    /// Every level this CPU can run, lowest first (tests run each of them).
    pub fn available() -> Vec<Self> {
        [Self::Scalar, Self::Avx2, Self::Avx512]
            .into_iter()
            .filter(|l| *l <= Self::detect())
            .collect()
    }

    fn parse(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "scalar" => Some(Self::Scalar),
            "avx2" => Some(Self::Avx2),
            "avx512" => Some(Self::Avx512),
            _ => None,
        }
    }

    /// Lower-case name, as `POLYEPO_SIMD` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Scalar => "scalar",
            Self::Avx2 => "avx2",
            Self::Avx512 => "avx512",
        }
    }
}

/// A raw output pointer shared by the tasks of one product: each task writes a disjoint set
/// of columns, so no two tasks touch the same element.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: tasks write disjoint elements (see above) and the buffer outlives the scope.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// The element `offset` places in. A method (not `.0`) so that closures capture the whole
    /// `SharedOut`, which is `Send`, rather than its raw pointer field, which is not.
    fn at(self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
}

/// Runs `task(first_column, columns)` over `n` output columns split into contiguous ranges
/// (multiples of `align` columns), in parallel on rayon's pool — the engine's one pool —
/// unless the product (`work` multiply-adds) is too small to pay for waking the pool.
fn for_column_ranges(n: usize, align: usize, work: usize, task: impl Fn(usize, usize) + Sync) {
    // About 10 µs of one core's work: below it, handing tasks to other threads costs more
    // than it saves (`polyepo bench --only kernels`, k_proj at 1 row).
    const SERIAL_WORK: usize = 1 << 20;
    let threads = if work < SERIAL_WORK {
        1
    } else {
        rayon::current_num_threads().max(1)
    };
    // A few ranges per thread so that a slow thread's share can be taken by another.
    let per = n.div_ceil(threads * 4).next_multiple_of(align).max(align);
    if per >= n {
        task(0, n);
        return;
    }
    rayon::scope(|s| {
        let task = &task;
        for start in (0..n).step_by(per) {
            s.spawn(move |_| task(start, per.min(n - start)));
        }
    });
}
