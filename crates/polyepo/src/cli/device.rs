//! Device and dtype flags shared by the commands that run a model.

use anyhow::Result;
use candle_core::{DType, Device};
use clap::Args;
use polyepo_engine::model::device::{parse_device, parse_dtype};

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
        parse_device(&self.device).map_err(anyhow::Error::msg)
    }

    /// The candle dtype.
    pub fn dtype(&self) -> Result<DType> {
        parse_dtype(&self.dtype).map_err(anyhow::Error::msg)
    }
}
