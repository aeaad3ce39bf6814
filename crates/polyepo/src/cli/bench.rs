//! `polyepo bench`: the engine's speed and memory on a real model: sampling throughput at
//! several batch sizes, training forward+backward throughput, one AdamW step over every
//! parameter, and whole RL steps of a training config with their split. Numbers go to
//! README's performance section.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::{DType, Tensor};
use clap::Args;
use polyepo_engine::kernels::{MAX_FEW_ROWS, SimdLevel};
use polyepo_engine::model::file_blocks::untracked_product;
use polyepo_engine::model::logprobs::token_log_probs;
use polyepo_engine::model::{Batch, load_model};
use polyepo_engine::optim::{AdamW, AdamWConfig, grad_norm};
use polyepo_engine::sample::{SamplingParams, generate};

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use polyepo::rl::config::TrainConfig;
use polyepo::rl::train::run_dir::read_metrics;
use polyepo::rl::train::sequences::response_log_probs;
use polyepo::rl::train::{TrainOptions, train};

use super::device::DeviceArgs;

/// One measurement of `polyepo bench`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchPart {
    /// Sampling throughput at each batch size.
    Sample,
    /// Sampling throughput with the f32 weights only (not the model file's blocks), and the
    /// log-prob difference of both samplers against the training path.
    SampleF32,
    /// The few-rows kernels against candle's matmul on the model's weight shapes, by rows.
    Kernels,
    /// Training forward + backward throughput and peak memory.
    Train,
    /// One AdamW step over every parameter.
    Adamw,
    /// Whole RL steps of `--config` (sampling, rewards and labels, advantages, π_old,
    /// update) and the run's peak memory.
    RlStep,
}

/// Arguments of `polyepo bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Model: an HF directory or a .gguf file.
    #[arg(long, default_value = "models/SmolLM2-135M-Instruct.Q4_1.gguf")]
    pub model: PathBuf,
    /// What to measure (comma-separated).
    #[arg(
        long,
        value_enum,
        default_value = "sample,sample-f32,kernels,train,adamw",
        value_delimiter = ','
    )]
    pub only: Vec<BenchPart>,
    /// Batch sizes for sampling.
    #[arg(long, default_value = "1,8,32", value_delimiter = ',')]
    pub batches: Vec<usize>,
    /// New tokens per sampled sequence.
    #[arg(long, default_value_t = 128)]
    pub new_tokens: usize,
    /// Training batch: sequences × tokens.
    #[arg(long, default_value_t = 8)]
    pub train_batch: usize,
    /// Training sequence length.
    #[arg(long, default_value_t = 256)]
    pub train_len: usize,
    /// Training config for `rl-step` (its model, task and batch; `--model` is not used).
    #[arg(long, default_value = "configs/smollm2-lora.toml")]
    pub config: PathBuf,
    /// RL steps to time for `rl-step`.
    #[arg(long, default_value_t = 2)]
    pub steps: u64,
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// Peak resident memory of this process so far, in GiB (Linux; 0 elsewhere).
pub fn peak_rss_gib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / (1024.0 * 1024.0))
}

/// Mean and largest |log π_sampler(token) − log π_f32(token)| over the generated tokens, the
/// f32 side scored as training scores them.
fn log_prob_difference(
    model: &polyepo_engine::model::Llama,
    pad_id: u32,
    prompt: &[u32],
    generations: &[polyepo_engine::sample::Generation],
) -> Result<(f64, f64)> {
    let prompts = vec![prompt.to_vec(); generations.len()];
    let responses: Vec<Vec<u32>> = generations.iter().map(|g| g.tokens.clone()).collect();
    let lp = response_log_probs(&model.frozen(), &prompts, &responses, pad_id, 1.0)?
        .log_probs
        .to_vec2::<f32>()?;
    let (mut sum, mut max, mut n) = (0.0f64, 0.0f64, 0usize);
    for (row, g) in lp.iter().zip(generations) {
        for (a, b) in row.iter().zip(&g.log_probs) {
            let d = f64::from((a - b).abs());
            sum += d;
            max = max.max(d);
            n += 1;
        }
    }
    Ok((sum / n.max(1) as f64, max))
}

/// Runs the selected measurements and prints one line each.
pub fn run(args: &BenchArgs) -> Result<()> {
    if args.only == [BenchPart::RlStep] {
        return rl_steps(args);
    }
    let device = args.device.device()?;
    let mut loaded = load_model(&args.model, args.device.dtype(), &device)
        .with_context(|| format!("loading {}", args.model.display()))?;
    let params = loaded.model.num_parameters();
    println!(
        "model {} ({:.1}M parameters), {} threads",
        args.model.display(),
        params as f64 / 1e6,
        rayon::current_num_threads()
    );
    let wants = |part: BenchPart| args.only.contains(&part);
    if wants(BenchPart::Sample) || wants(BenchPart::SampleF32) {
        let prompt = loaded.tokenizer.encode("<|im_start|>user\nTell me a long story about a robot.<|im_end|>\n<|im_start|>assistant\n")?;
        // Never stop early: every row generates exactly `new_tokens`.
        let mut tok = loaded.tokenizer.clone();
        tok.stop_ids.clear();
        let p = SamplingParams {
            max_new_tokens: args.new_tokens,
            temperature: 1.0,
            seed: 1,
            ..SamplingParams::default()
        };
        let from_blocks = loaded.model.file_block_weights();
        println!(
            "decoding: {} kernels, {:.1}M of {:.1}M weights read from the file's blocks, products of up to {} rows",
            SimdLevel::get().name(),
            from_blocks as f64 / 1e6,
            params as f64 / 1e6,
            MAX_FEW_ROWS
        );
        let mut samplers = Vec::new();
        if wants(BenchPart::Sample) {
            let name = if from_blocks > 0 { "blocks" } else { "f32" };
            samplers.push((name, loaded.model.detached()));
        }
        if wants(BenchPart::SampleF32) {
            samplers.push(("f32", loaded.model.without_file_blocks().detached()));
        }
        for (name, model) in &samplers {
            // Warm-up (first touch of the weights and buffers), as the peers' scripts do.
            let warm = SamplingParams {
                max_new_tokens: 8,
                ..p.clone()
            };
            generate(model, &tok, std::slice::from_ref(&prompt), &warm)?;
            for &b in &args.batches {
                let start = Instant::now();
                let out = generate(model, &tok, &vec![prompt.clone(); b], &p)?;
                let secs = start.elapsed().as_secs_f64();
                let n: usize = out.iter().map(|g| g.tokens.len()).sum();
                println!(
                    "sample {name} batch {b:>3}: {n} tokens in {secs:.2} s = {:.1} tokens/s",
                    n as f64 / secs
                );
                if b == args.batches[0] {
                    let (mean, max) =
                        log_prob_difference(&loaded.model, tok.pad_id, &prompt, &out)?;
                    println!(
                        "sample {name} log-prob vs f32 training path over those {n} tokens: mean |d| {mean:.2e}, max |d| {max:.2e}"
                    );
                }
            }
        }
    }
    if wants(BenchPart::Kernels) {
        kernels(&loaded.model)?;
    }
    if wants(BenchPart::Train) || wants(BenchPart::Adamw) {
        let vars = loaded.model.train_all()?;
        // Spread-out token ids inside the vocabulary (the tiny models have a few dozen).
        let vocab = loaded.model.cfg.vocab_size;
        let rows: Vec<Vec<u32>> = (0..args.train_batch)
            .map(|r| {
                (0..args.train_len)
                    .map(|i| ((r * 7919 + i * 104_729 + 100) % vocab) as u32)
                    .collect()
            })
            .collect();
        let batch = Batch::left_padded(&rows, 0, &device)?;
        let t = args.train_len;
        let mut grads = None;
        if wants(BenchPart::Train) {
            for round in 0..2 {
                // The previous round's gradients go first, as the peer's
                // `zero_grad(set_to_none=True)` does.
                drop(grads.take());
                let start = Instant::now();
                // Logits only where a next token exists: the vocabulary projection dominates memory.
                let hidden = loaded.model.forward_hidden(
                    &batch.tokens,
                    &batch.positions,
                    &batch.mask,
                    None,
                )?;
                let logits = loaded.model.logits(&hidden.narrow(1, 0, t - 1)?)?;
                let lp = token_log_probs(&logits, &batch.tokens.narrow(1, 1, t - 1)?)?;
                let loss = lp.mean_all()?.neg()?;
                let fwd = start.elapsed().as_secs_f64();
                let g = loss.backward()?;
                let secs = start.elapsed().as_secs_f64();
                let tokens = args.train_batch * t;
                println!(
                    "train fwd+bwd {}x{} (round {}): {secs:.2} s (fwd {fwd:.2} s) = {:.1} tokens/s, peak RSS {:.2} GiB",
                    args.train_batch,
                    t,
                    round + 1,
                    tokens as f64 / secs,
                    peak_rss_gib()
                );
                grads = Some(g);
            }
        }
        if wants(BenchPart::Adamw) {
            let grads = match grads {
                Some(g) => g,
                None => {
                    // Gradients of Σ p² for every parameter: full-size, cheap to make.
                    let mut loss = Tensor::zeros((), DType::F32, &device)?;
                    for (_, v) in &vars {
                        loss = (loss + v.as_tensor().sqr()?.sum_all()?)?;
                    }
                    loss.backward()?
                }
            };
            let mut opt = AdamW::new(vars.clone(), AdamWConfig::default())?;
            for round in 0..3 {
                let start = Instant::now();
                let norm = grad_norm(opt.params(), &grads)?;
                let scale = (0.3 / norm).min(1.0);
                opt.step(&grads, 1e-6, scale)?;
                println!(
                    "adamw step over {:.1}M parameters (round {}, incl. grad-norm clip): {:.3} s, peak RSS {:.2} GiB",
                    params as f64 / 1e6,
                    round + 1,
                    start.elapsed().as_secs_f64(),
                    peak_rss_gib()
                );
            }
        }
    }
    if wants(BenchPart::RlStep) {
        rl_steps(args)?;
    }
    Ok(())
}

/// Times `x · wᵀ` on each distinct weight shape of the model (one layer's, and the LM head)
/// for several row counts: candle's matmul against the few-rows kernels (f32 and, where the
/// file has them, blocks). The crossover is what [`MAX_FEW_ROWS`] is set from.
fn kernels(model: &polyepo_engine::model::Llama) -> Result<()> {
    let device = model.device().clone();
    for (name, weight, blocks) in model.weight_samples() {
        let (n, k) = weight.dims2()?;
        for m in [1usize, 4, 8, 16, 32, 64] {
            let x = Tensor::randn(0f32, 1.0, (m, k), &device)?;
            let time = |f: &dyn Fn() -> candle_core::Result<Tensor>| -> Result<f64> {
                f()?; // warm caches and pools
                let reps = (2e8 / (m * n * k) as f64).clamp(3.0, 200.0) as usize;
                let start = Instant::now();
                for _ in 0..reps {
                    f()?;
                }
                Ok(start.elapsed().as_secs_f64() / reps as f64 * 1e6)
            };
            let gemm = time(&|| x.matmul(&weight.t()?))?;
            let dense = time(&|| untracked_product(&x, &weight, None))?;
            let from_blocks = match &blocks {
                Some(b) => format!(
                    ", blocks {:.0} us",
                    time(&|| untracked_product(&x, &weight, Some(b)))?
                ),
                None => String::new(),
            };
            println!(
                "kernels {name} ({n}x{k}) rows {m:>2}: matmul {gemm:.0} us, few-rows f32 {dense:.0} us{from_blocks}"
            );
        }
    }
    Ok(())
}

/// Trains `--steps` steps of `--config` in a scratch directory and prints each step's split.
fn rl_steps(args: &BenchArgs) -> Result<()> {
    let settings = [
        format!("run.steps={}", args.steps),
        "run.checkpoint_every=0".to_owned(),
    ];
    let cfg = TrainConfig::load(Some(&args.config), &settings)?;
    let dir = std::env::temp_dir().join(format!("polyepo-bench-rl-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let options = TrainOptions {
        resume: false,
        stop: Arc::new(AtomicBool::new(false)),
        on_event: &mut |_| {},
    };
    let result = train(&cfg, &dir, options).and_then(|_| read_metrics(&dir));
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "rl-step {} ({} prompts x {} samples, up to {} new tokens)",
        args.config.display(),
        cfg.rollout.prompts_per_step,
        cfg.rollout.samples_per_prompt,
        cfg.rollout.max_new_tokens
    );
    for m in result? {
        let update = m.time_update - m.update.pi_old_s;
        let total = m.time_rollout + m.time_judge + m.time_advantage + m.time_update;
        println!(
            "rl-step {}: total {total:.1} s = sampling {:.1} s ({:.1} tokens/s) + rewards and labels {:.2} s + advantages {:.3} s + pi_old {:.1} s + update {update:.1} s; prompts {:.0} tokens, responses {:.1} tokens on average",
            m.step,
            m.time_rollout,
            m.tokens_per_s,
            m.time_judge,
            m.time_advantage,
            m.update.pi_old_s,
            m.prompt_len,
            m.response_len
        );
    }
    println!("rl-step peak RSS {:.2} GiB", peak_rss_gib());
    Ok(())
}
