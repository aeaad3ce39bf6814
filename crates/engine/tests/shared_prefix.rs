//! Scoring continuations with shared prompts equals scoring whole rows: same log-probs, same
//! gradients, every trainable tensor reached, each distinct prompt run once.

mod common;
use candle_core::{Device, Tensor};
use polyepo_engine::model::logprobs::token_log_probs;
use polyepo_engine::model::shared::continuation_hidden;
use polyepo_engine::model::{Batch, Llama, NamedVar};
use polyepo_engine::parity::variants;
use polyepo_engine::sample::{SamplingParams, generate};

/// Three distinct prompts of different lengths, repeated (not adjacent), with continuations
/// of different lengths, one of a single token.
fn prompts_and_continuations() -> (Vec<Vec<u32>>, Vec<Vec<u32>>) {
    let a = vec![3, 17, 5, 9, 22, 41, 8];
    let b = vec![7, 7, 30];
    let c = vec![12, 1, 44, 2, 19];
    let prompts = vec![a.clone(), a.clone(), b.clone(), a, c.clone(), b, c];
    let continuations = vec![
        vec![4, 4, 11],
        vec![9],
        vec![25, 13, 2, 40, 6],
        vec![1, 2],
        vec![33, 34, 35, 36],
        vec![8, 31],
        vec![21],
    ];
    (prompts, continuations)
}

/// Fixed per-token weights (0 on padding) so the loss touches every real position.
fn weights(mask: &Tensor) -> Tensor {
    let (b, r) = mask.dims2().unwrap();
    let pattern: Vec<f32> = (0..b * r).map(|i| 0.5 + (i % 5) as f32 / 5.0).collect();
    (Tensor::from_vec(pattern, (b, r), mask.device()).unwrap() * mask).unwrap()
}

/// Log-probs of the continuations from whole rows (prompt ++ continuation, left-padded),
/// laid out like `continuation_hidden`'s (left-aligned, R = longest continuation).
fn whole_row_log_probs(model: &Llama, prompts: &[Vec<u32>], conts: &[Vec<u32>]) -> Tensor {
    let r = conts.iter().map(Vec::len).max().unwrap();
    let mut per_row = Vec::new();
    for (p, c) in prompts.iter().zip(conts) {
        let row: Vec<u32> = p.iter().chain(c).copied().collect();
        let batch = Batch::left_padded(&[row], 0, model.device()).unwrap();
        let l = p.len() + c.len();
        let logits = model
            .forward(&batch.tokens, &batch.positions, &batch.mask)
            .unwrap();
        let lp = token_log_probs(
            &logits.narrow(1, p.len() - 1, c.len()).unwrap(),
            &batch.tokens.narrow(1, p.len(), c.len()).unwrap(),
        )
        .unwrap()
        .squeeze(0)
        .unwrap();
        assert_eq!(batch.dims().unwrap().1, l);
        per_row.push(lp.pad_with_zeros(0, 0, r - c.len()).unwrap());
    }
    Tensor::stack(&per_row, 0).unwrap()
}

fn max_abs(t: &Tensor) -> f32 {
    polyepo_engine::parity::max_abs(t).unwrap()
}

#[test]
fn shared_prompts_give_whole_row_log_probs_and_gradients() {
    let (prompts, conts) = prompts_and_continuations();
    for (name, cfg) in variants() {
        let mut model = Llama::random(cfg, 5, &Device::Cpu).unwrap();
        let vars: Vec<NamedVar> = model.train_all().unwrap();
        let shared = continuation_hidden(&model, &prompts, &conts, 0).unwrap();
        assert_eq!(shared.distinct_prompts, 3, "{name}");
        let lp_shared =
            token_log_probs(&model.logits(&shared.hidden).unwrap(), &shared.targets).unwrap();
        let lp_shared = (lp_shared * &shared.mask).unwrap();
        let lp_whole = whole_row_log_probs(&model, &prompts, &conts);
        let d = max_abs(&(&lp_shared - &lp_whole).unwrap());
        assert!(d < 1e-5, "{name}: log-probs differ by {d}");

        let w = weights(&shared.mask);
        let g_shared = (lp_shared * &w)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let g_whole = (lp_whole * &w)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        for (var_name, var) in &vars {
            let (Some(a), Some(b)) = (g_shared.get(var.as_tensor()), g_whole.get(var.as_tensor()))
            else {
                panic!("{name}: {var_name} has no gradient in one of the paths");
            };
            let scale = max_abs(b);
            assert!(scale > 0.0, "{name}: {var_name} has a zero gradient");
            let rel = max_abs(&(a - b).unwrap()) / scale;
            assert!(
                rel < 1e-4,
                "{name}: {var_name} gradient differs by {rel} (relative)"
            );
        }
    }
}

#[test]
fn lora_adapters_all_get_gradients_through_shared_prompts() {
    let (prompts, conts) = prompts_and_continuations();
    let (_, cfg) = variants().remove(0);
    let mut model = Llama::random(cfg, 6, &Device::Cpu).unwrap();
    let vars = common::add_lora(&mut model, 4, 1);
    let shared = continuation_hidden(&model, &prompts, &conts, 0).unwrap();
    let lp = token_log_probs(&model.logits(&shared.hidden).unwrap(), &shared.targets).unwrap();
    let grads = (lp * weights(&shared.mask))
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    for (name, var) in &vars {
        let g = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("{name}: no gradient"));
        // LoRA's B starts at zero, so A's gradient is zero at first; B's must not be.
        if name.contains("lora_B") {
            assert!(max_abs(g) > 0.0, "{name}: zero gradient");
        }
    }
}

#[test]
fn distinct_prompts_and_empty_continuations_are_handled() {
    let (_, cfg) = variants().remove(0);
    let model = Llama::random(cfg, 7, &Device::Cpu).unwrap();
    let prompts = vec![vec![1, 2, 3], vec![4, 5]];
    let conts = vec![vec![6, 7], vec![]];
    let shared = continuation_hidden(&model, &prompts, &conts, 0).unwrap();
    assert_eq!(shared.distinct_prompts, 2);
    assert_eq!(shared.hidden.dims3().unwrap().1, 2);
    assert_eq!(
        shared.mask.to_vec2::<f32>().unwrap(),
        vec![vec![1.0, 1.0], vec![0.0, 0.0]]
    );
    assert!(continuation_hidden(&model, &prompts, &conts[..1], 0).is_err());
}

#[test]
fn sampling_prefills_a_repeated_prompt_once_with_the_same_result() {
    // 47 characters + 3 specials = the tiny model's 50-token vocabulary.
    let alphabet: String = ('a'..='z').chain('A'..='U').collect();
    let tokenizer = polyepo_engine::model::TextTokenizer::char_level(&alphabet).unwrap();
    let (_, cfg) = variants().remove(2); // qwen3: q/k norms in the cached path too
    let model = Llama::random(cfg, 8, &Device::Cpu).unwrap();
    let a = vec![5, 9, 14, 3, 22, 7];
    let b = vec![30, 31];
    let c = vec![40, 12, 8, 19];
    let params = SamplingParams {
        max_new_tokens: 6,
        temperature: 1.0,
        seed: 3,
        ..SamplingParams::default()
    };
    // [a, b, a, a] prefills two prompts; [a, b, c, c] three. Row i draws from stream i, so
    // rows 0 and 1 must come out the same in both batches, and row 0 as when alone.
    let shared = generate(
        &model,
        &tokenizer,
        &[a.clone(), b.clone(), a.clone(), a.clone()],
        &params,
    )
    .unwrap();
    let other = generate(&model, &tokenizer, &[a.clone(), b, c.clone(), c], &params).unwrap();
    let alone = generate(&model, &tokenizer, &[a], &params).unwrap();
    for (x, y) in [
        (&shared[0], &other[0]),
        (&shared[1], &other[1]),
        (&shared[0], &alone[0]),
    ] {
        assert_eq!(x.tokens, y.tokens);
        for (p, q) in x.log_probs.iter().zip(&y.log_probs) {
            assert!((p - q).abs() < 1e-5, "{p} vs {q}");
        }
    }
}
