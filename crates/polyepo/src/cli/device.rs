//! Device and dtype flags shared by the commands that run a model.

use anyhow::Result;
use candle_core::{DType, Device};
use clap::Args;
use polyepo::rl::config::{DTypeSpec, DeviceSpec};

/// `--device` and `--dtype`.
#[derive(Debug, Clone, Args)]
pub struct DeviceArgs {
    /// `cpu`, `cuda` or `cuda:N` (CUDA needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu", value_name = "cpu|cuda|cuda:N")]
    pub device: DeviceSpec,
    /// Weight and compute dtype (f32 is the fastest on CPU).
    #[arg(long, value_enum, default_value = "f32")]
    pub dtype: DTypeSpec,
}

impl DeviceArgs {
    /// The candle device, opened.
    pub fn device(&self) -> Result<Device> {
        self.device.open().map_err(anyhow::Error::msg)
    }

    /// The candle dtype.
    pub fn dtype(&self) -> DType {
        self.dtype.into()
    }
}
