"""The math verifier is the Rust one: it reproduces the shared table of verdicts."""

import json

import polyepo
from conftest import ROOT


def test_verdicts_match_the_table():
    table = ROOT / "crates/judge/tests/data/math_pairs.jsonl"
    rows = [json.loads(line) for line in table.read_text().splitlines() if line.strip()]
    assert len(rows) > 50
    for row in rows:
        assert polyepo.verify(f"so the answer is \\boxed{{{row['predicted']}}}", row["reference"]) == row["equivalent"], row


def test_extraction():
    assert polyepo.extract_answer("... #### 42") == "42"
    assert polyepo.extract_answer("no answer") is None
    assert polyepo.verify("The answer is 1/2.", "0.5")
    assert not polyepo.verify("The answer is 3.", "0.5")
