//! Device and dtype flags shared by the commands that run a model.

use anyhow::{Context, Result, bail};
use candle_core::{DType, Device};
use clap::Args;

/// `--device` and `--dtype`.
#[derive(Debug, Clone, Args)]
pub struct DeviceArgs {
    /// `cpu`, `cuda` or `cuda:N` (CUDA needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Weight and compute dtype: f32, bf16 or f16 (f32 is fastest on CPU).
    #[arg(long, default_value = "f32")]
    pub dtype: String,
}

impl DeviceArgs {
    /// The candle device.
    pub fn device(&self) -> Result<Device> {
        parse_device(&self.device)
    }

    /// The candle dtype.
    pub fn dtype(&self) -> Result<DType> {
        parse_dtype(&self.dtype)
    }
}

/// Parses `cpu`, `cuda`, `cuda:N`.
pub fn parse_device(spec: &str) -> Result<Device> {
    match spec {
        "cpu" => Ok(Device::Cpu),
        s if s == "cuda" || s.starts_with("cuda:") => {
            let ordinal = s
                .strip_prefix("cuda:")
                .map(str::parse)
                .transpose()
                .context("--device cuda:N needs a number")?
                .unwrap_or(0);
            Device::new_cuda(ordinal).with_context(|| {
                format!("cannot open {s} (was polyepo built with `--features cuda`?)")
            })
        }
        other => bail!("unknown device `{other}`: use cpu, cuda or cuda:N"),
    }
}

/// Parses `f32`, `bf16`, `f16`.
pub fn parse_dtype(spec: &str) -> Result<DType> {
    match spec {
        "f32" => Ok(DType::F32),
        "bf16" => Ok(DType::BF16),
        "f16" => Ok(DType::F16),
        other => bail!("unknown dtype `{other}`: use f32, bf16 or f16"),
    }
}
