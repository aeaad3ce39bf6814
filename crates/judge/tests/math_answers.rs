//! Answer equivalence against a table of answer pairs with known verdicts
//! (`data/math_pairs.jsonl`; `scripts/math_verify_agreement.py` scores the same table with the
//! Python library math-verify).

use polyepo_judge::math::equivalent;

#[test]
fn verdicts_match_the_table() {
    let text = include_str!("data/math_pairs.jsonl");
    let mut wrong = Vec::new();
    let mut total = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let (p, r, expected) = (
            v["predicted"].as_str().unwrap(),
            v["reference"].as_str().unwrap(),
            v["equivalent"].as_bool().unwrap(),
        );
        total += 1;
        if equivalent(p, r) != expected {
            wrong.push(format!("{p:?} vs {r:?}: expected {expected}"));
        }
    }
    assert!(total >= 100);
    assert!(
        wrong.is_empty(),
        "{} of {total} wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// Replies written the way models write them (`data/math_pairs_written.jsonl`, made by
/// `scripts/make_math_pairs.py` with verdicts true by construction), through extraction and
/// equivalence as a reward sees them. The pairs it gets wrong are listed here on purpose.
#[test]
fn model_written_replies_are_verified() {
    let text = include_str!("data/math_pairs_written.jsonl");
    let mut wrong = Vec::new();
    let mut total = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let (response, reference, expected) = (
            v["response"].as_str().unwrap(),
            v["reference"].as_str().unwrap(),
            v["equivalent"].as_bool().unwrap(),
        );
        total += 1;
        let got = polyepo_judge::math::verify(response, reference);
        if got != expected {
            wrong.push(format!(
                "{response:?} vs {reference:?}: expected {expected}"
            ));
        }
    }
    assert!(total >= 300, "{total} pairs");
    eprintln!("{} of {total} right", total - wrong.len());
    assert!(
        wrong.is_empty(),
        "{} of {total} wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}
