//! Properties of the marginal set advantage that any correct estimator must have.

use proptest::prelude::*;
use setrl::Strategy as Label;
use setrl::{DEFAULT_MAX_SETS, Group, Objective, SetRlError, enumerate, sampled};

const OBJECTIVES: [Objective; 3] = [Objective::Mean, Objective::Max, Objective::Polychromatic];

/// Rewards that mix exact ties (0/1, as verifiers give) with arbitrary values.
fn reward() -> impl Strategy<Value = f64> {
    prop_oneof![Just(0.0), Just(1.0), -2.0..2.0f64]
}

/// A cluster id from a small alphabet, so that clusters repeat, or degenerate.
fn label() -> impl Strategy<Value = Label> {
    prop_oneof![1 => Just(Label::Degenerate), 4 => (0i64..5).prop_map(Label::Cluster)]
}

/// A group of 1..=12 generations with a set size in 1..=N.
fn group_and_set_size() -> impl Strategy<Value = (Group, usize)> {
    (1usize..=12)
        .prop_flat_map(|n| {
            (
                prop::collection::vec(reward(), n),
                prop::collection::vec(label(), n),
                1..=n,
            )
        })
        .prop_map(|(r, c, k)| (Group::new(r, c).unwrap(), k))
}

fn assert_close(a: &[f64], b: &[f64], tol: f64) -> Result<(), TestCaseError> {
    prop_assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        prop_assert!((x - y).abs() <= tol, "generation {}: {} vs {}", i, x, y);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn closed_forms_equal_enumeration((group, n) in group_and_set_size()) {
        for objective in OBJECTIVES {
            let exact = objective.exact(&group, n).unwrap();
            let brute = enumerate(&objective, &group, n, DEFAULT_MAX_SETS).unwrap();
            assert_close(&exact.advantages, &brute.advantages, 1e-10)?;
            prop_assert!((exact.baseline - brute.baseline).abs() <= 1e-10);
        }
    }

    #[test]
    fn exact_advantages_sum_to_zero((group, n) in group_and_set_size()) {
        for objective in OBJECTIVES {
            let sum: f64 = objective.exact(&group, n).unwrap().advantages.iter().sum();
            prop_assert!(sum.abs() < 1e-10, "{:?}: sum {}", objective, sum);
        }
    }

    #[test]
    fn permuting_the_group_permutes_the_advantages(
        (group, n) in group_and_set_size(),
        seed in any::<u64>(),
    ) {
        // A seeded Fisher-Yates shuffle of the generation order.
        let len = group.len();
        let mut perm: Vec<usize> = (0..len).collect();
        let mut state = seed | 1;
        for i in (1..len).rev() {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17;
            perm.swap(i, (state % (i as u64 + 1)) as usize);
        }
        let shuffled = Group::new(
            perm.iter().map(|&p| group.rewards()[p]).collect(),
            perm.iter().map(|&p| group.strategies()[p]).collect(),
        ).unwrap();
        for objective in OBJECTIVES {
            let original = objective.exact(&group, n).unwrap().advantages;
            let permuted = objective.exact(&shuffled, n).unwrap().advantages;
            let expected: Vec<f64> = perm.iter().map(|&p| original[p]).collect();
            assert_close(&permuted, &expected, 1e-12)?;
        }
    }

    #[test]
    fn relabelling_clusters_changes_nothing((group, n) in group_and_set_size(), offset in -1000i64..1000) {
        // An injective relabelling that also reverses the order of the ids.
        let relabelled = Group::new(
            group.rewards().to_vec(),
            group.strategies().iter().map(|s| match s {
                Label::Cluster(c) => Label::Cluster(offset - 7 * c),
                Label::Degenerate => Label::Degenerate,
            }).collect(),
        ).unwrap();
        let a = Objective::Polychromatic.exact(&group, n).unwrap().advantages;
        let b = Objective::Polychromatic.exact(&relabelled, n).unwrap().advantages;
        assert_close(&a, &b, 1e-12)?;
    }

    #[test]
    fn own_clusters_give_scaled_drgrpo(rewards in prop::collection::vec(reward(), 2..=64), frac in 0.0..1.0f64) {
        let big_n = rewards.len();
        let n = 1 + ((big_n - 1) as f64 * frac) as usize;
        let strategies = (0..big_n as i64).map(Label::Cluster).collect();
        let group = Group::new(rewards.clone(), strategies).unwrap();
        let r_bar = rewards.iter().sum::<f64>() / big_n as f64;
        let scale = (big_n - n) as f64 / (n * (big_n - 1)) as f64;
        let expected: Vec<f64> = rewards.iter().map(|r| scale * (r - r_bar)).collect();
        assert_close(&Objective::Polychromatic.exact(&group, n).unwrap().advantages, &expected, 1e-12)?;
    }
}

#[test]
fn sampled_estimator_is_unbiased() {
    let group = Group::new(
        vec![1.0, 0.0, 1.0, 1.0, 0.5, 0.0, 1.0, 0.2, 0.9, 1.0],
        [
            Some(0),
            Some(0),
            Some(1),
            None,
            Some(2),
            Some(1),
            Some(0),
            Some(3),
            Some(2),
            Some(0),
        ]
        .iter()
        .map(|c| c.map_or(Label::Degenerate, Label::Cluster))
        .collect(),
    )
    .unwrap();
    let n = 4;
    let exact = Objective::Polychromatic.exact(&group, n).unwrap();
    let seeds = 2000;
    let mut mean = vec![0.0; group.len()];
    let mut sq = vec![0.0; group.len()];
    for seed in 0..seeds {
        let est = sampled(&Objective::Polychromatic, &group, n, 2, seed).unwrap();
        for i in 0..group.len() {
            mean[i] += est.advantages[i] / seeds as f64;
            sq[i] += est.advantages[i].powi(2) / seeds as f64;
        }
    }
    for i in 0..group.len() {
        let stderr = ((sq[i] - mean[i].powi(2)).max(0.0) / seeds as f64).sqrt();
        let err = (mean[i] - exact.advantages[i]).abs();
        assert!(
            err < 5.0 * stderr + 1e-12,
            "generation {i}: mean {} vs exact {} (stderr {stderr})",
            mean[i],
            exact.advantages[i]
        );
    }
    // A single estimate is noisy but not degenerate: it varies with the seed.
    let a = sampled(&Objective::Polychromatic, &group, n, 2, 1).unwrap();
    let b = sampled(&Objective::Polychromatic, &group, n, 2, 2).unwrap();
    assert_ne!(a.advantages, b.advantages);
    // And it is reproducible for a fixed seed.
    assert_eq!(
        a,
        sampled(&Objective::Polychromatic, &group, n, 2, 1).unwrap()
    );
}

#[test]
fn sampled_accepts_user_closures() {
    let group = Group::unlabelled(vec![3.0, 1.0, 2.0, 0.0, 5.0]).unwrap();
    // Range of the set: a user objective with no closed form.
    let range = |g: &Group, s: &[usize]| {
        let r = s.iter().map(|&j| g.rewards()[j]);
        r.clone().fold(f64::MIN, f64::max) - r.fold(f64::MAX, f64::min)
    };
    let brute = enumerate(&range, &group, 3, DEFAULT_MAX_SETS).unwrap();
    let mut mean = [0.0; 5];
    for seed in 0..400 {
        for (m, a) in mean
            .iter_mut()
            .zip(sampled(&range, &group, 3, 8, seed).unwrap().advantages)
        {
            *m += a / 400.0;
        }
    }
    for (m, b) in mean.iter().zip(&brute.advantages) {
        assert!((m - b).abs() < 0.05, "{m} vs {b}");
    }
}

#[test]
fn closed_forms_are_stable_at_large_n() {
    for &big_n in &[1024usize, 4096] {
        let rewards: Vec<f64> = (0..big_n)
            .map(|i| ((i * 7919) % 101) as f64 / 100.0)
            .collect();
        let strategies: Vec<Label> = (0..big_n)
            .map(|i| {
                if i % 13 == 0 {
                    Label::Degenerate
                } else {
                    Label::Cluster((i % 37) as i64)
                }
            })
            .collect();
        let group = Group::new(rewards.clone(), strategies).unwrap();
        for n in [2, 16, big_n / 2, big_n - 1] {
            for objective in OBJECTIVES {
                let adv = objective.exact(&group, n).unwrap();
                assert!(adv.baseline.is_finite() && adv.advantages.iter().all(|a| a.is_finite()));
                let sum: f64 = adv.advantages.iter().sum();
                assert!(sum.abs() < 1e-8, "{objective:?} N={big_n} n={n}: sum {sum}");
            }
        }
        // All-distinct clusters at large N still reduce to the scaled Dr.GRPO form.
        let distinct = Group::new(
            rewards.clone(),
            (0..big_n as i64).map(Label::Cluster).collect(),
        )
        .unwrap();
        let n = big_n / 4;
        let r_bar = rewards.iter().sum::<f64>() / big_n as f64;
        let scale = (big_n - n) as f64 / (n * (big_n - 1)) as f64;
        for (a, r) in Objective::Polychromatic
            .exact(&distinct, n)
            .unwrap()
            .advantages
            .iter()
            .zip(&rewards)
        {
            assert!((a - scale * (r - r_bar)).abs() < 1e-12);
        }
    }
}

#[test]
fn bad_input_is_refused_with_typed_errors() {
    assert_eq!(Group::new(vec![], vec![]), Err(SetRlError::EmptyGroup));
    assert_eq!(
        Group::new(vec![1.0, 0.0], vec![Label::Degenerate]),
        Err(SetRlError::LengthMismatch {
            rewards: 2,
            clusters: 1
        })
    );
    assert!(matches!(
        Group::unlabelled(vec![1.0, f64::NAN]),
        Err(SetRlError::NonFiniteReward { index: 1, .. })
    ));
    assert!(matches!(
        Group::unlabelled(vec![f64::INFINITY]),
        Err(SetRlError::NonFiniteReward { index: 0, .. })
    ));
    let group = Group::unlabelled(vec![1.0, 0.0, 1.0]).unwrap();
    for n in [0, 4] {
        assert_eq!(
            Objective::Mean.exact(&group, n),
            Err(SetRlError::InvalidSetSize {
                set_size: n,
                group_size: 3
            })
        );
        assert!(matches!(
            sampled(&Objective::Max, &group, n, 4, 0),
            Err(SetRlError::InvalidSetSize { .. })
        ));
    }
    assert_eq!(
        sampled(&Objective::Max, &group, 2, 0, 0),
        Err(SetRlError::NoSampledSets)
    );
    let big = Group::unlabelled(vec![0.5; 64]).unwrap();
    let err = enumerate(&Objective::Mean, &big, 8, 1_000_000).unwrap_err();
    assert!(matches!(
        err,
        SetRlError::TooManySets {
            group_size: 64,
            set_size: 8,
            limit: 1_000_000,
            ..
        }
    ));
    assert!(err.to_string().contains("sampled estimator"), "{err}");
}
