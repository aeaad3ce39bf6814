"""Scores crates/judge/tests/data/math_pairs.jsonl with the Python library math-verify and
prints how often it agrees with the table's verdicts (which polyepo's checker reproduces;
see crates/polyepo/tests/math_answers.rs). Run once: pip install math-verify."""
import json
import pathlib
import sys

from math_verify import parse, verify

table = pathlib.Path(__file__).resolve().parent.parent / "crates/judge/tests/data/math_pairs.jsonl"
rows = [json.loads(line) for line in table.read_text().splitlines() if line.strip()]
agree = 0
for r in rows:
    # math-verify expects LaTeX in math mode; wrap bare answers the way it documents.
    gold = parse(f"${r['reference']}$")
    pred = parse(f"${r['predicted']}$")
    verdict = bool(verify(gold, pred))
    if verdict == r["equivalent"]:
        agree += 1
    else:
        print(f"differs: {r['predicted']!r} vs {r['reference']!r}: table {r['equivalent']}, math-verify {verdict}", file=sys.stderr)
print(f"math-verify agrees with the table on {agree} of {len(rows)} pairs ({100 * agree / len(rows):.1f}%)")
