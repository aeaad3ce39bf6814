//! Quantized frozen weights for decoding: a sampler copy of the model whose frozen linear
//! weights (and tied LM head) also exist as 8-bit blocks (GGML Q8_0).
//!
//! Decoding one token per row multiplies a few rows by every weight matrix, so its speed is
//! the speed of reading the weights from memory: 4 bytes per weight in f32, 1.06 in Q8_0.
//! Products with many rows (prefill, training) are compute-bound, and candle's f32 matmul
//! is faster there, so they keep the f32 weights. Trainable weights (full fine-tuning, LoRA
//! adapters) are never quantized: they change every step. The precision this costs is
//! Q8_0's rounding of each weight (and of the activations, which candle quantizes to 8 bits
//! per block of 32 for the integer dot product); `polyepo bench` reports the log-prob
//! difference it makes.

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Result, Tensor};

use super::Llama;

/// Largest product (rows = batch × new tokens) that uses the quantized weights. Measured on
/// SmolLM2-135M (AVX-512, 2 threads; `polyepo bench --only sample`): Q8_0 is faster than
/// candle's f32 gemm for decoding a single row and slower from 8 rows on.
pub const MAX_ROWS: usize = 4;

fn quantize(weight: &Tensor) -> Result<Option<Arc<QMatMul>>> {
    // Q8_0 packs rows in blocks of 32 weights.
    if weight.is_variable() || weight.dim(1)? % 32 != 0 {
        return Ok(None);
    }
    let q = QTensor::quantize(&weight.contiguous()?, GgmlDType::Q8_0)?;
    Ok(Some(Arc::new(QMatMul::from_qtensor(q)?)))
}

impl Llama {
    /// A detached sampling copy (see [`Llama::detached`]) whose frozen weights also carry a
    /// Q8_0 copy for decoding. Quantizes once (about a second for 135M parameters): keep the
    /// copy while the frozen weights stay as they are. CPU only; other devices get a plain
    /// detached copy.
    pub fn quantized_for_sampling(&self) -> Result<Self> {
        let mut copy = self.detached();
        if !copy.device().is_cpu() {
            return Ok(copy);
        }
        // Which weights are trainable is read from `self`: the detached copy has no variables.
        let mut source = self.clone();
        for (from, to) in source.linears_mut().into_iter().zip(copy.linears_mut()) {
            to.quantized = quantize(&from.weight)?;
        }
        if self.lm_head.is_none() {
            copy.quantized_head = quantize(&self.embed_tokens)?;
        }
        Ok(copy)
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;
    use crate::model::{Batch, LlamaConfig, LoraConfig};

    /// Next-token logits of one decode step (one row, one position): the product shape that
    /// uses the quantized weights.
    fn decode_logits(model: &Llama, prefix: &[u32], token: u32) -> Tensor {
        let mut cache =
            crate::model::KvCache::new(&model.cfg, 1, 16, model.dtype(), model.device()).unwrap();
        let batch = Batch::left_padded(&[prefix.to_vec()], 0, model.device()).unwrap();
        model
            .forward_hidden(
                &batch.tokens,
                &batch.positions,
                &batch.mask,
                Some(&mut cache),
            )
            .unwrap();
        let tokens = Tensor::new(&[[token]], model.device()).unwrap();
        let positions = Tensor::new(&[[prefix.len() as u32]], model.device()).unwrap();
        let mask =
            crate::model::batch::attention_mask(&[0], prefix.len(), 1, model.device()).unwrap();
        let hidden = model
            .forward_hidden(&tokens, &positions, &mask, Some(&mut cache))
            .unwrap();
        model.logits(&hidden).unwrap().flatten_all().unwrap()
    }

    fn max_abs(t: &Tensor) -> f32 {
        crate::parity::max_abs(t).unwrap()
    }

    #[test]
    fn frozen_weights_are_quantized_and_decode_close_to_f32() {
        let mut model = Llama::random(LlamaConfig::tiny(64), 3, &Device::Cpu).unwrap();
        let adapters = model.add_lora(&LoraConfig::default(), 1).unwrap();
        let q = model.quantized_for_sampling().unwrap();
        let mut q_mut = q.clone();
        let quantized = q_mut
            .linears_mut()
            .iter()
            .filter(|l| l.quantized.is_some())
            .count();
        assert_eq!(quantized, 2 * 7, "every frozen linear of both layers");
        assert!(q.quantized_head.is_some());
        let exact = decode_logits(&model.detached(), &[5, 9, 2], 7);
        let approx = decode_logits(&q, &[5, 9, 2], 7);
        let d = max_abs(&(&exact - &approx).unwrap()) / max_abs(&exact);
        // Q8_0 keeps ~2 significant digits per weight and activation.
        assert!(d > 0.0 && d < 0.05, "relative logit difference {d}");
        // LoRA adapters stay trainable tensors in the f32 path.
        assert!(adapters.iter().all(|(_, v)| v.as_tensor().is_variable()));
    }

    #[test]
    fn trainable_weights_are_never_quantized() {
        let mut model = Llama::random(LlamaConfig::tiny(64), 4, &Device::Cpu).unwrap();
        model.train_all().unwrap();
        let mut q = model.quantized_for_sampling().unwrap();
        assert!(q.linears_mut().iter().all(|l| l.quantized.is_none()));
        assert!(q.quantized_head.is_none());
    }
}
