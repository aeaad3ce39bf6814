"""Writes crates/judge/tests/data/math_pairs_written.jsonl: (response, reference, equivalent)
triples written the way models write final answers (boxed, "the answer is", inline `x = ...`,
fractions, decimals, percents, scientific notation, units, intervals, sets, negative numbers,
LaTeX and plain), each verdict true by construction: an equivalent pair writes the same value
two ways, a non-equivalent one writes a nearby different value. Deterministic (seeded):
re-running gives the same file. Run: python3 scripts/make_math_pairs.py"""
import json
import pathlib
import random
from fractions import Fraction

rng = random.Random(20261207)
out = pathlib.Path(__file__).resolve().parent.parent / "crates/judge/tests/data/math_pairs_written.jsonl"


def wrappers(answer: str) -> list[str]:
    """Ways a model states a final answer."""
    return [
        f"So the final answer is $\\boxed{{{answer}}}$.",
        f"Therefore, the answer is {answer}.",
        f"Adding these up gives x = {answer}",
        f"#### {answer}",
        answer,
        f"We compute step by step.\nFirst 2 + 3 = 5.\nThe answer is: {answer}",
    ]


def fraction_forms(f: Fraction) -> list[str]:
    p, q = f.numerator, f.denominator
    sign = "-" if p < 0 else ""
    p = abs(p)
    forms = [f"{sign}\\frac{{{p}}}{{{q}}}", f"{sign}{p}/{q}", f"{sign}\\dfrac{{{p}}}{{{q}}}"]
    if 10**6 % q == 0 or q in (1, 2, 4, 5, 8, 10, 20, 25, 40, 50):
        forms.append(f"{float(f):g}")
    return forms


rows = []


def add(response: str, reference: str, equivalent: bool, kind: str) -> None:
    rows.append({"response": response, "reference": reference, "equivalent": equivalent, "kind": kind})


# Fractions and decimals.
for _ in range(20):
    q = rng.choice([2, 4, 5, 8, 10, 20, 25])
    p = rng.randint(-30, 30) or 1
    f = Fraction(p, q)
    forms = fraction_forms(f)
    a, b = rng.sample(forms, 2)
    add(rng.choice(wrappers(a)), b, True, "fraction")
    add(rng.choice(wrappers(a)), fraction_forms(f + Fraction(1, q))[0], False, "fraction")

# Integers with thousands separators, negative numbers, units.
units = ["cm", "dollars", "meters", "apples", "km", "degrees"]
for _ in range(20):
    n = rng.randint(-5000, 20000)
    text = f"{n:,}" if n >= 1000 and rng.random() < 0.5 else str(n)
    unit = rng.choice(units)
    add(rng.choice(wrappers(f"{text} {unit}" if rng.random() < 0.5 else text)), str(n), True, "integer")
    add(rng.choice(wrappers(text)), str(n + rng.choice([-2, -1, 1, 3])), False, "integer")

# Percentages: as a percent and as a fraction of one.
for _ in range(20):
    pct = rng.choice([5, 10, 12.5, 20, 25, 40, 50, 75, 80, 150])
    as_text = f"{pct:g}\\%" if rng.random() < 0.5 else f"{pct:g}%"
    add(rng.choice(wrappers(as_text)), f"{pct / 100:g}", True, "percent")
    add(rng.choice(wrappers(as_text)), f"{pct:g}", True, "percent")
    add(rng.choice(wrappers(as_text)), f"{(pct + 5) / 100:g}", False, "percent")

# Scientific notation.
for _ in range(20):
    mant = rng.choice([1, 1.5, 2, 2.5, 3.2, 4, 6.02, 7.5, 9])
    exp = rng.randint(-4, 6)
    value = mant * 10**exp
    sci = rng.choice([f"{mant:g}e{exp}", f"{mant:g}E{exp:+d}", f"{mant:g} \\times 10^{{{exp}}}"])
    plain = f"{value:.10f}".rstrip("0").rstrip(".")
    add(rng.choice(wrappers(sci)), plain, True, "scientific")
    add(rng.choice(wrappers(sci)), f"{mant * 10 ** (exp + 1):.10f}".rstrip("0").rstrip("."), False, "scientific")

# Roots, pi and simple expressions.
for _ in range(15):
    k = rng.randint(2, 9)
    s = rng.choice([2, 3, 5, 7])
    add(rng.choice(wrappers(f"{k}\\sqrt{{{s}}}")), f"\\sqrt{{{k * k * s}}}", True, "radical")
    add(rng.choice(wrappers(f"{k}\\sqrt{{{s}}}")), f"{k}\\sqrt{{{s + 1 if s + 1 != 4 else 6}}}", False, "radical")
    add(rng.choice(wrappers(f"{k}\\pi")), f"{k}*\\pi", True, "pi")
    add(rng.choice(wrappers(f"\\frac{{{k}\\pi}}{{2}}")), f"{k / 2:g}\\pi", True, "pi")

# Expressions in a variable.
for _ in range(15):
    a, b = rng.randint(1, 9), rng.randint(1, 9)
    add(rng.choice(wrappers(f"{a}x + {b}")), f"{b} + {a}x", True, "polynomial")
    add(rng.choice(wrappers(f"(x+{a})(x+{b})")), f"x^2 + {a + b}x + {a * b}", True, "polynomial")
    add(rng.choice(wrappers(f"(x+{a})(x+{b})")), f"x^2 + {a + b + 1}x + {a * b}", False, "polynomial")

# Intervals and sets.
for _ in range(15):
    lo, hi = sorted(rng.sample(range(-10, 20), 2))
    left, right = rng.choice("[("), rng.choice("])")
    add(rng.choice(wrappers(f"{left}{lo}, {hi}{right}")), f"{left}{lo},{hi}{right}", True, "interval")
    other = "(" if left == "[" else "["
    add(rng.choice(wrappers(f"{left}{lo}, {hi}{right}")), f"{other}{lo},{hi}{right}", False, "interval")
    items = rng.sample(range(-5, 15), 3)
    shuffled = items[:]
    rng.shuffle(shuffled)
    add(rng.choice(wrappers("\\{" + ", ".join(map(str, items)) + "\\}")), "\\{" + ", ".join(map(str, items)) + "\\}", True, "set")
    add(rng.choice(wrappers(", ".join(map(str, items)))), ", ".join(map(str, shuffled)), True, "set")
    add(rng.choice(wrappers(", ".join(map(str, items)))), ", ".join(map(str, items[:2] + [items[2] + 1])), False, "set")

# Words and yes/no.
for word, other in [("Yes", "No"), ("True", "False"), ("Red", "Blue"), ("Tuesday", "Monday")]:
    for w in (word, word.lower(), word.upper()):
        add(rng.choice(wrappers(f"\\text{{{w}}}")), word, True, "word")
    add(rng.choice(wrappers(word)), other, False, "word")

out.write_text("".join(json.dumps(r) + "\n" for r in rows))
print(f"wrote {len(rows)} pairs to {out}")
