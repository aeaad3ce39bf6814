//! Device and dtype names as users write them (`cpu`, `cuda:1`, `bf16`).

use candle_core::{DType, Device};

/// Parses `cpu`, `cuda` or `cuda:N`; the message says what is accepted.
pub fn parse_device(spec: &str) -> Result<Device, String> {
    match spec {
        "cpu" => Ok(Device::Cpu),
        s if s == "cuda" || s.starts_with("cuda:") => {
            let ordinal = match s.strip_prefix("cuda:") {
                Some(n) => n.parse().map_err(|_| {
                    format!("`{s}`: the CUDA ordinal must be a number, e.g. cuda:0")
                })?,
                None => 0,
            };
            Device::new_cuda(ordinal).map_err(|e| {
                format!("cannot open `{s}` ({e}); polyepo must be built with `--features cuda`")
            })
        }
        other => Err(format!("unknown device `{other}`: use cpu, cuda or cuda:N")),
    }
}

/// Parses `f32`, `bf16` or `f16` (f32 is the fastest on CPU).
pub fn parse_dtype(spec: &str) -> Result<DType, String> {
    match spec {
        "f32" => Ok(DType::F32),
        "bf16" => Ok(DType::BF16),
        "f16" => Ok(DType::F16),
        other => Err(format!("unknown dtype `{other}`: use f32, bf16 or f16")),
    }
}
