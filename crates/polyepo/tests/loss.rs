//! The PPO loss against a scalar hand computation, for every aggregation and clip setting.

use candle_core::{Device, Tensor, Var};
use polyepo::rl::loss::{Aggregation, KlEstimator, LossConfig, LossInputs, ppo_loss};

const LP: [[f64; 3]; 2] = [[-1.0, -0.5, -2.0], [-0.3, -1.2, -0.7]];
const OLD: [[f64; 3]; 2] = [[-1.1, -0.2, -2.0], [-0.3, -2.7, -0.1]];
const ADV: [f64; 2] = [1.0, -2.0];
const MASK: [[f64; 3]; 2] = [[1.0, 1.0, 1.0], [0.0, 1.0, 1.0]];
const MAX_LEN: usize = 4;

/// The per-token surrogate written out for one token: max(−A·r, −A·clip(r)), and for A < 0
/// also at most −A·c.
fn token_loss(lp: f64, old: f64, a: f64, cfg: &LossConfig) -> f64 {
    let r = (lp - old).exp();
    let clipped = r.clamp(1.0 - cfg.clip_low, 1.0 + cfg.clip_high);
    let l = (-a * r).max(-a * clipped);
    if a < 0.0 && cfg.dual_clip > 0.0 {
        l.min(-a * cfg.dual_clip)
    } else {
        l
    }
}

fn hand_loss(cfg: &LossConfig) -> f64 {
    let mut sums = [0.0; 2];
    let mut counts = [0.0; 2];
    for s in 0..2 {
        for t in 0..3 {
            sums[s] += MASK[s][t] * token_loss(LP[s][t], OLD[s][t], ADV[s], cfg);
            counts[s] += MASK[s][t];
        }
    }
    match cfg.aggregation {
        Aggregation::TokenMean => (sums[0] + sums[1]) / (counts[0] + counts[1]),
        Aggregation::SeqMeanTokenMean => (sums[0] / counts[0] + sums[1] / counts[1]) / 2.0,
        Aggregation::SeqMeanTokenSumNorm => {
            (sums[0] / MAX_LEN as f64 + sums[1] / MAX_LEN as f64) / 2.0
        }
    }
}

fn t2(v: [[f64; 3]; 2]) -> Tensor {
    Tensor::new(&v.map(|r| r.map(|x| x as f32)), &Device::Cpu).unwrap()
}

fn run(cfg: &LossConfig, adv: [f64; 2]) -> (f64, Tensor, f64) {
    let lp = Var::from_tensor(&t2(LP)).unwrap();
    let old = t2(OLD);
    let mask = t2(MASK);
    let advantages = Tensor::new(&adv.map(|a| a as f32), &Device::Cpu).unwrap();
    let out = ppo_loss(
        &LossInputs {
            log_probs: lp.as_tensor(),
            old_log_probs: &old,
            advantages: &advantages,
            mask: &mask,
            ref_log_probs: None,
            entropy: None,
            max_response_len: MAX_LEN,
        },
        cfg,
    )
    .unwrap();
    let grad = out
        .loss
        .backward()
        .unwrap()
        .get(lp.as_tensor())
        .unwrap()
        .clone();
    (
        out.loss.to_scalar::<f32>().unwrap() as f64,
        grad,
        out.clipfrac,
    )
}

#[test]
fn loss_matches_hand_computation_for_every_aggregation_and_clip() {
    for aggregation in [
        Aggregation::TokenMean,
        Aggregation::SeqMeanTokenMean,
        Aggregation::SeqMeanTokenSumNorm,
    ] {
        for (clip_low, clip_high, dual_clip) in [(0.2, 0.28, 3.0), (0.2, 0.2, 0.0), (0.1, 0.5, 1.5)]
        {
            let cfg = LossConfig {
                clip_low,
                clip_high,
                dual_clip,
                aggregation,
                ..LossConfig::default()
            };
            let (loss, _, _) = run(&cfg, ADV);
            let expected = hand_loss(&cfg);
            assert!(
                (loss - expected).abs() < 1e-5,
                "{aggregation:?} {clip_low}/{clip_high}/{dual_clip}: {loss} vs {expected}"
            );
        }
    }
}

#[test]
fn clipped_tokens_get_no_gradient_and_are_counted() {
    // Token (1, 1) has ratio e^1.5 with A = −2: dual-clipped at −A·3 = 6, so its gradient is 0.
    // Token (0, 1) has ratio e^−0.3 ≈ 0.74 with A = 1: below 1 − 0.2, but for A > 0 the
    // larger (pessimistic) surrogate is the unclipped one, so it keeps a gradient.
    let cfg = LossConfig::default();
    let (_, grad, clipfrac) = run(&cfg, ADV);
    let g: Vec<Vec<f32>> = grad.to_vec2().unwrap();
    assert_eq!(g[1][1], 0.0, "dual-clipped token");
    assert_ne!(g[0][1], 0.0);
    assert_eq!(g[1][0], 0.0, "masked token");
    // Token (1, 2): ratio e^−0.6 ≈ 0.55 < 0.8 with A < 0: clipped (gradient 0).
    assert_eq!(g[1][2], 0.0);
    // clipfrac counts the ratio clip only (verl's pg_clipfrac): token (1, 2) of the 5
    // response tokens; (1, 1) is bounded by the dual clip instead.
    assert!((clipfrac - 1.0 / 5.0).abs() < 1e-6, "{clipfrac}");
    // Without the dual clip, the huge-ratio token's loss is −A·r and has a gradient.
    let (_, grad, _) = run(
        &LossConfig {
            dual_clip: 0.0,
            ..cfg
        },
        ADV,
    );
    assert_ne!(grad.to_vec2::<f32>().unwrap()[1][1], 0.0);
}

#[test]
fn zero_advantage_gives_zero_gradient() {
    for aggregation in [
        Aggregation::TokenMean,
        Aggregation::SeqMeanTokenMean,
        Aggregation::SeqMeanTokenSumNorm,
    ] {
        let (loss, grad, _) = run(
            &LossConfig {
                aggregation,
                ..LossConfig::default()
            },
            [0.0, 0.0],
        );
        assert_eq!(loss, 0.0);
        assert!(
            grad.flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
                .iter()
                .all(|g| *g == 0.0)
        );
    }
}

#[test]
fn kl_penalty_matches_its_estimators() {
    let lp = Var::from_tensor(&t2(LP)).unwrap();
    let reference = t2(OLD);
    let mask = t2(MASK);
    let zero = Tensor::new(&[0f32, 0.0], &Device::Cpu).unwrap();
    for est in [KlEstimator::K1, KlEstimator::K3] {
        let cfg = LossConfig {
            kl_coef: 0.5,
            kl_estimator: est,
            aggregation: Aggregation::TokenMean,
            ..LossConfig::default()
        };
        let out = ppo_loss(
            &LossInputs {
                log_probs: lp.as_tensor(),
                old_log_probs: lp.as_tensor(),
                advantages: &zero,
                mask: &mask,
                ref_log_probs: Some(&reference),
                entropy: None,
                max_response_len: MAX_LEN,
            },
            &cfg,
        )
        .unwrap();
        let mut expected = 0.0;
        for s in 0..2 {
            for t in 0..3 {
                let d = OLD[s][t] - LP[s][t];
                let k = match est {
                    KlEstimator::K1 => -d,
                    KlEstimator::K3 => d.exp() - d - 1.0,
                };
                expected += MASK[s][t] * k;
            }
        }
        expected /= 5.0;
        assert!(
            (out.ref_kl - expected).abs() < 1e-5,
            "{est:?}: {} vs {expected}",
            out.ref_kl
        );
        assert!((out.loss.to_scalar::<f32>().unwrap() as f64 - 0.5 * expected).abs() < 1e-5);
    }
}
