//! Reproduces the reference values in `data/setrl_cases.json` (a copy of
//! `shared/vectors/setrl_cases.json`, computed by brute-force enumeration outside this
//! project) with both the closed forms and this crate's own enumeration.

use setrl::{DEFAULT_MAX_SETS, Group, Objective, Strategy, enumerate};

fn objective(name: &str) -> Objective {
    match name {
        "mean" => Objective::Mean,
        "max" => Objective::Max,
        "polychromatic" => Objective::Polychromatic,
        other => panic!("unknown objective {other} in the reference file"),
    }
}

#[test]
fn closed_forms_and_enumeration_reproduce_reference_values() {
    let text = include_str!("data/setrl_cases.json");
    let cases: Vec<serde_json::Value> = serde_json::from_str(text).expect("reference file parses");
    assert!(cases.len() >= 20, "reference file unexpectedly small");
    for (index, case) in cases.iter().enumerate() {
        let rewards: Vec<f64> = serde_json::from_value(case["rewards"].clone()).unwrap();
        let clusters: Vec<Option<i64>> = serde_json::from_value(case["clusters"].clone()).unwrap();
        let expected: Vec<f64> = serde_json::from_value(case["advantages"].clone()).unwrap();
        let n = case["set_size"].as_u64().unwrap() as usize;
        let objective = objective(case["objective"].as_str().unwrap());
        let strategies = clusters
            .iter()
            .map(|c| c.map_or(Strategy::Degenerate, Strategy::Cluster))
            .collect();
        let group = Group::new(rewards, strategies).unwrap();
        let exact = objective.exact(&group, n).unwrap();
        let brute = enumerate(&objective, &group, n, DEFAULT_MAX_SETS).unwrap();
        for (i, &want) in expected.iter().enumerate() {
            assert!(
                (exact.advantages[i] - want).abs() < 1e-9,
                "case {index} ({objective:?}, n={n}) generation {i}: closed form {} vs reference {want}",
                exact.advantages[i],
            );
            assert!(
                (brute.advantages[i] - want).abs() < 1e-9,
                "case {index} generation {i}: enumeration {} vs reference {want}",
                brute.advantages[i],
            );
        }
    }
}
