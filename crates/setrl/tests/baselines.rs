//! The per-generation baselines and pass@k, checked against hand computations and brute force.

use setrl::{Group, SetRlError, Strategy, diversity_bonus, drgrpo, grpo, pass_at_k};

#[test]
fn grpo_normalises_by_sample_std() {
    let group = Group::unlabelled(vec![1.0, 0.0, 0.0, 0.0]).unwrap();
    let adv = grpo(&group);
    // mean 0.25, sample std sqrt(0.75 / 3) = 0.5
    let expected = [0.75 / (0.5 + 1e-6), -0.25 / (0.5 + 1e-6)];
    assert!((adv.advantages[0] - expected[0]).abs() < 1e-12);
    assert!((adv.advantages[1] - expected[1]).abs() < 1e-12);
    assert_eq!(adv.baseline, 0.25);
    // Equal rewards: no signal, and no NaN.
    assert_eq!(
        grpo(&Group::unlabelled(vec![1.0; 5]).unwrap()).advantages,
        vec![0.0; 5]
    );
    assert_eq!(
        grpo(&Group::unlabelled(vec![0.3]).unwrap()).advantages,
        vec![0.0]
    );
}

#[test]
fn drgrpo_only_centres() {
    let adv = drgrpo(&Group::unlabelled(vec![2.0, 0.0, 1.0]).unwrap());
    assert_eq!(adv.advantages, vec![1.0, -1.0, 0.0]);
    assert_eq!(adv.baseline, 1.0);
}

#[test]
fn diversity_bonus_counts_other_clusters() {
    let group = Group::new(
        vec![1.0, 1.0, 0.0, 0.0],
        vec![
            Strategy::Cluster(5),
            Strategy::Cluster(5),
            Strategy::Cluster(9),
            Strategy::Degenerate,
        ],
    )
    .unwrap();
    let adv = diversity_bonus(&group, 0.5);
    // div = [1/3, 1/3, 2/3, 0]; scores = [1 + 1/6, 1 + 1/6, 1/3, 0]; mean = 2/3
    let scores = [1.0 + 1.0 / 6.0, 1.0 + 1.0 / 6.0, 1.0 / 3.0, 0.0];
    let mean = scores.iter().sum::<f64>() / 4.0;
    for (a, s) in adv.advantages.iter().zip(scores) {
        assert!((a - (s - mean)).abs() < 1e-12);
    }
    assert!((adv.baseline - mean).abs() < 1e-12);
    // λ = 0 is Dr.GRPO.
    assert_eq!(
        diversity_bonus(&group, 0.0).advantages,
        drgrpo(&group).advantages
    );
}

/// pass@k by definition: the fraction of k-subsets of the samples holding a correct one.
fn pass_at_k_brute(samples: usize, correct: usize, k: usize) -> f64 {
    let (mut hits, mut total) = (0u64, 0u64);
    for mask in 0u32..(1 << samples) {
        if mask.count_ones() as usize == k {
            total += 1;
            // The first `correct` samples are the correct ones.
            if mask & ((1u32 << correct) - 1) != 0 {
                hits += 1;
            }
        }
    }
    hits as f64 / total as f64
}

#[test]
fn pass_at_k_matches_enumeration() {
    for samples in 1..=12 {
        for correct in 0..=samples {
            for k in 1..=samples {
                let fast = pass_at_k(samples, correct, k).unwrap();
                let brute = pass_at_k_brute(samples, correct, k);
                assert!(
                    (fast - brute).abs() < 1e-12,
                    "n={samples} c={correct} k={k}: {fast} vs {brute}"
                );
            }
        }
    }
    // Large n: no overflow, sensible value.
    let p = pass_at_k(4096, 10, 1024).unwrap();
    assert!(p > 0.9 && p < 1.0);
    assert!(matches!(
        pass_at_k(4, 5, 1),
        Err(SetRlError::InvalidPassAtK { .. })
    ));
    assert!(matches!(
        pass_at_k(4, 1, 0),
        Err(SetRlError::InvalidPassAtK { .. })
    ));
    assert!(matches!(
        pass_at_k(4, 1, 5),
        Err(SetRlError::InvalidPassAtK { .. })
    ));
}
