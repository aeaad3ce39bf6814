//! Choosing what trains: every weight (full fine-tuning) or LoRA adapters on a frozen base.

use candle_core::{DType, Tensor, Var};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Uniform};
use serde::{Deserialize, Serialize};

use super::error::{ModelError, ModelResult};
use super::linear::LoraAdapter;
use super::llama::Llama;

/// A trainable tensor and its checkpoint name.
pub type NamedVar = (String, Var);

/// LoRA hyperparameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoraConfig {
    /// Rank r of the adapters.
    pub rank: usize,
    /// Scaling α; the update is (α / r)·B·A.
    pub alpha: f64,
    /// Linear layers to adapt, by HF module name.
    pub targets: Vec<String>,
}

impl Default for LoraConfig {
    /// Rank 16, α 32, every linear layer of the blocks (not the output head).
    fn default() -> Self {
        Self {
            rank: 16,
            alpha: 32.0,
            targets: LORA_TARGETS[..7].iter().map(|t| t.to_string()).collect(),
        }
    }
}

/// Every module name LoRA can target.
pub const LORA_TARGETS: [&str; 8] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
    "lm_head",
];

impl Llama {
    /// Makes every weight trainable (full fine-tuning) and returns them. The weights are
    /// copied once into variables that the model then uses.
    pub fn train_all(&mut self) -> ModelResult<Vec<NamedVar>> {
        let mut vars = Vec::new();
        self.visit_mut::<ModelError>(&mut |name, t| {
            let var = Var::from_tensor(t)?;
            *t = var.as_tensor().clone();
            vars.push((name.to_owned(), var));
            Ok(())
        })?;
        Ok(vars)
    }

    /// Adds LoRA adapters to the target layers and returns them, the only trainable tensors:
    /// A ~ U(±1/√in) (as PEFT's Kaiming init), B = 0, so the model starts equal to its base.
    pub fn add_lora(&mut self, cfg: &LoraConfig, seed: u64) -> ModelResult<Vec<NamedVar>> {
        if cfg.rank == 0 {
            return Err(ModelError::format("lora", "`lora.rank` must be at least 1"));
        }
        if let Some(bad) = cfg
            .targets
            .iter()
            .find(|t| !LORA_TARGETS.contains(&t.as_str()))
        {
            return Err(ModelError::format(
                "lora",
                format!(
                    "`lora.targets` holds unknown module `{bad}`; choose from {LORA_TARGETS:?}"
                ),
            ));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let scale = cfg.alpha / cfg.rank as f64;
        let dtype = self.dtype();
        let device = self.device().clone();
        let mut vars = Vec::new();
        let mut add = |name: String, lin: &mut super::linear::Linear| -> ModelResult<()> {
            let (out, inp) = lin.weight.dims2()?;
            let bound = 1.0 / (inp as f32).sqrt();
            let uniform = Uniform::new(-bound, bound)
                .map_err(|e| ModelError::format("lora", e.to_string()))?;
            let a: Vec<f32> = (0..cfg.rank * inp)
                .map(|_| uniform.sample(&mut rng))
                .collect();
            let a =
                Var::from_tensor(&Tensor::from_vec(a, (cfg.rank, inp), &device)?.to_dtype(dtype)?)?;
            let b = Var::zeros((out, cfg.rank), dtype, &device)?;
            lin.lora = Some(LoraAdapter {
                a: a.as_tensor().clone(),
                b: b.as_tensor().clone(),
                scale,
            });
            vars.push((format!("{name}.lora_A.weight"), a));
            vars.push((format!("{name}.lora_B.weight"), b));
            Ok(())
        };
        let wants = |m: &str| cfg.targets.iter().any(|t| t == m);
        for (i, block) in self.layers.iter_mut().enumerate() {
            for (m, lin) in block.self_attn.linears_mut() {
                if wants(m) {
                    add(format!("model.layers.{i}.self_attn.{m}"), lin)?;
                }
            }
            for (m, lin) in block.mlp.linears_mut() {
                if wants(m) {
                    add(format!("model.layers.{i}.mlp.{m}"), lin)?;
                }
            }
        }
        if wants("lm_head") {
            match &mut self.lm_head {
                Some(head) => add("lm_head".into(), head)?,
                None => {
                    return Err(ModelError::format(
                        "lora",
                        "`lm_head` is tied to the embeddings in this model; remove it from `lora.targets`",
                    ));
                }
            }
        }
        Ok(vars)
    }

    /// Folds every adapter into its base weight and removes it (for export).
    pub fn merge_lora(&mut self) -> ModelResult<()> {
        let merge = |lin: &mut super::linear::Linear| -> ModelResult<()> {
            if lin.lora.is_some() {
                lin.weight = lin.merged_weight()?;
                lin.lora = None;
            }
            Ok(())
        };
        for lin in self.linears_mut() {
            merge(lin)?;
        }
        Ok(())
    }

    /// Casts every weight to `dtype` (detaching it).
    pub fn to_dtype(&mut self, dtype: DType) -> ModelResult<()> {
        self.visit_mut::<ModelError>(&mut |_, t| {
            *t = t.detach().to_dtype(dtype)?;
            Ok(())
        })?;
        self.rotary = super::rope::Rotary::new(&self.cfg, dtype, &self.device().clone())?;
        Ok(())
    }
}
