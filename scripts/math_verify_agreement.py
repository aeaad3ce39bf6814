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

# The replies written the way models write them (scripts/make_math_pairs.py): math-verify
# extracts from the whole reply, as polyepo's reward does.
written = pathlib.Path(__file__).resolve().parent.parent / "crates/judge/tests/data/math_pairs_written.jsonl"
rows = [json.loads(line) for line in written.read_text().splitlines() if line.strip()]
agree = 0
by_kind: dict[str, list[int]] = {}
for r in rows:
    verdict = bool(verify(parse(f"${r['reference']}$"), parse(r["response"])))
    hit = verdict == r["equivalent"]
    agree += hit
    by_kind.setdefault(r["kind"], [0, 0])
    by_kind[r["kind"]][0] += hit
    by_kind[r["kind"]][1] += 1
    if not hit:
        print(f"differs: {r['response']!r} vs {r['reference']!r}: true verdict {r['equivalent']}, math-verify {verdict}", file=sys.stderr)
print(f"math-verify gets {agree} of {len(rows)} model-written replies right ({100 * agree / len(rows):.1f}%); by kind: "
      + ", ".join(f"{k} {a}/{n}" for k, (a, n) in sorted(by_kind.items())))
