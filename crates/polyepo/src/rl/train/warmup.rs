//! The base policy for the synthetic task: a small model trained from scratch by supervised
//! learning on demonstrations from a skewed strategy distribution (as a pretrained model
//! prefers a few habitual strategies). Cached by its settings, so later runs reuse it.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use rand::SeedableRng;
use rand::seq::IndexedRandom;
use rand_chacha::ChaCha8Rng;

use super::error::{TrainError, TrainResult};
use super::sequences::response_log_probs;
use crate::rl::config::TrainConfig;
use crate::rl::loss::{Aggregation, aggregate};
use crate::rl::tasks::Task;
use polyepo_engine::model::checkpoint::export_hf;
use polyepo_engine::model::{Llama, LlamaConfig, TextTokenizer};
use polyepo_engine::optim::{AdamW, AdamWConfig, LrSchedule, grad_norm};

/// The directory of the warmed-up base model for `cfg`, training it first if no cached
/// copy exists.
pub fn cached_base(
    cfg: &TrainConfig,
    task: &dyn Task,
    cache_dir: &Path,
    log: &mut dyn FnMut(String),
) -> TrainResult<PathBuf> {
    let key_text = format!(
        "{}|{}|{}|{}|{}",
        cfg.task.kind(),
        toml::to_string(&cfg.task).unwrap_or_default(),
        toml::to_string(&cfg.model.tiny).unwrap_or_default(),
        toml::to_string(&cfg.warmup).unwrap_or_default(),
        cfg.run.seed
    );
    let dir = cache_dir.join(format!(
        "warmup-{:016x}",
        crate::rl::tasks::strategy_id(&key_text)
    ));
    if dir.join("model.safetensors").exists() {
        log(format!(
            "reusing the warmed-up base policy in {}",
            dir.display()
        ));
        return Ok(dir);
    }
    log(format!(
        "training the base policy (supervised warm-up, {} steps) into {}",
        cfg.warmup.steps,
        dir.display()
    ));
    let (model, tokenizer) = train_base(cfg, task, log)?;
    // Export into a temp directory, then rename: a crash never leaves a half-written cache.
    let tmp = cache_dir.join(format!(".warmup-tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    export_hf(&model, &tokenizer, &tmp)?;
    if let Err(e) = std::fs::rename(&tmp, &dir) {
        // Another process (a study running beside this one) finished the same warm-up
        // first: the settings are the same, so its copy is as good as ours.
        let _ = std::fs::remove_dir_all(&tmp);
        if !dir.join("model.safetensors").exists() {
            return Err(TrainError::io(&dir, e));
        }
    }
    Ok(dir)
}

fn train_base(
    cfg: &TrainConfig,
    task: &dyn Task,
    log: &mut dyn FnMut(String),
) -> TrainResult<(Llama, TextTokenizer)> {
    let tokenizer = TextTokenizer::char_level(task.alphabet())?;
    let t = &cfg.model.tiny;
    let model_cfg = LlamaConfig {
        vocab_size: tokenizer.vocab_size(),
        hidden_size: t.hidden_size,
        intermediate_size: t.intermediate_size,
        num_hidden_layers: t.layers,
        num_attention_heads: t.heads,
        num_key_value_heads: t.kv_heads,
        head_dim: t.hidden_size / t.heads.max(1),
        max_position_embeddings: 128,
        ..LlamaConfig::tiny(tokenizer.vocab_size())
    };
    let mut model = Llama::random(model_cfg, cfg.run.seed, &Device::Cpu)?;
    let vars = model.train_all()?;
    let mut opt = AdamW::new(
        vars,
        AdamWConfig {
            lr: cfg.warmup.lr,
            weight_decay: 0.0,
            ..AdamWConfig::default()
        },
    )?;
    let schedule = LrSchedule::WarmupCosine {
        warmup_steps: cfg.warmup.steps / 10,
        total_steps: cfg.warmup.steps,
        min_ratio: 0.1,
    };
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.run.seed ^ 0x5EED);
    let eos = tokenizer.stop_ids.first().copied().unwrap_or(1);
    for step in 0..cfg.warmup.steps {
        let mut prompts = Vec::with_capacity(cfg.warmup.batch);
        let mut answers = Vec::with_capacity(cfg.warmup.batch);
        let mut attempts = 0;
        while prompts.len() < cfg.warmup.batch {
            attempts += 1;
            if attempts > 100 * cfg.warmup.batch {
                return Err(TrainError::NoDemonstrations {
                    task: task.name().to_owned(),
                });
            }
            let Some(p) = task.train_prompts().choose(&mut rng) else {
                break;
            };
            if let Some(answer) = task.demonstration(p, cfg.warmup.skew, &mut rng) {
                prompts.push(tokenizer.encode(&p.text)?);
                let mut a = tokenizer.encode(&answer)?;
                a.push(eos);
                answers.push(a);
            }
        }
        let scored = response_log_probs(&model, &prompts, &answers, tokenizer.pad_id, 1.0)?;
        let loss = aggregate(&scored.log_probs, &scored.mask, Aggregation::TokenMean, 1)?.neg()?;
        let grads = loss.backward()?;
        let norm = grad_norm(opt.params(), &grads)?;
        opt.step(
            &grads,
            schedule.lr(cfg.warmup.lr, step),
            (1.0 / norm.max(1e-12)).min(1.0),
        )?;
        if (step + 1) % 100 == 0 || step + 1 == cfg.warmup.steps {
            log(format!(
                "warm-up step {}/{}: loss {:.4}",
                step + 1,
                cfg.warmup.steps,
                loss.to_dtype(DType::F32)?.to_scalar::<f32>()?
            ));
        }
    }
    Ok((model, tokenizer))
}
