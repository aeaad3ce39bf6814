"""The Python API against the Rust core's reference vectors, and its handling of inputs."""

from __future__ import annotations

import itertools
import json
import random

import numpy as np
import pytest

import polyepo
from conftest import ROOT

CASES = json.loads((ROOT / "crates/setrl/tests/data/setrl_cases.json").read_text())


def brute_force(objective, rewards, clusters, n):
    """Marginal set advantages by enumerating every n-subset (the definition)."""
    def score(s):
        r = [rewards[i] for i in s]
        if objective == "mean":
            return sum(r) / n
        if objective == "max":
            return max(r)
        distinct = len({clusters[i] for i in s if clusters[i] is not None})
        return sum(r) / n * distinct / n

    sets = list(itertools.combinations(range(len(rewards)), n))
    scores = {s: score(s) for s in sets}
    b = sum(scores.values()) / len(sets)
    return [np.mean([scores[s] - b for s in sets if i in s]) for i in range(len(rewards))]


def test_objective_names_are_setrls_with_their_aliases():
    # The same spellings as the CLI's `algorithm.name` and `polyepo advantages`.
    args = ([1, 1, 0, 1], [0, 1, 2, 0], [0, 0, 0, 0], 2)
    want = polyepo.set_advantages(*args, objective="polychromatic")
    for alias in ("polyepo", "poly-epo", "Polychromatic"):
        np.testing.assert_array_equal(polyepo.set_advantages(*args, objective=alias), want)
    with pytest.raises(ValueError, match=r"objective: unknown objective `polychromatc`; use `polychromatic`, `mean`, `max`"):
        polyepo.set_advantages(*args, objective="polychromatc")
    with pytest.raises(ValueError, match=r"estimator: unknown estimator `mc`"):
        polyepo.set_advantages(*args, estimator="mc")


@pytest.mark.parametrize("estimator", ["exact", "enumerate"])
def test_reference_vectors_one_batch(estimator):
    # Every case in one flat batch, interleaved, string ids: each group must come out as if
    # computed alone (the vectors are the brute-force values shipped with the Rust core).
    for objective in ("mean", "max", "polychromatic"):
        cases = [c for c in CASES if c["objective"] == objective]
        for n in sorted({c["set_size"] for c in cases}):
            batch = [c for c in cases if c["set_size"] == n]
            rows = [(f"case-{k}", j) for k, c in enumerate(batch) for j in range(len(c["rewards"]))]
            random.Random(n).shuffle(rows)
            rewards = [batch[int(g[5:])]["rewards"][j] for g, j in rows]
            clusters = [batch[int(g[5:])]["clusters"][j] for g, j in rows]
            got = polyepo.set_advantages(
                rewards, clusters, [g for g, _ in rows], n, objective=objective, estimator=estimator
            )
            want = [batch[int(g[5:])]["advantages"][j] for g, j in rows]
            np.testing.assert_allclose(got, want, atol=1e-9, rtol=0)


def test_matches_brute_force_on_random_groups():
    rng = random.Random(7)
    for _ in range(40):
        size = rng.randint(1, 9)
        n = rng.randint(1, size)
        rewards = [rng.choice([0.0, 1.0, rng.random()]) for _ in range(size)]
        clusters = [rng.choice([None, 0, 1, 2, 3]) for _ in range(size)]
        for objective in ("mean", "max", "polychromatic"):
            got = polyepo.set_advantages(rewards, clusters, [0] * size, n, objective=objective)
            np.testing.assert_allclose(got, brute_force(objective, rewards, clusters, n), atol=1e-12)


def test_input_types_agree():
    rewards = [1.0, 0.0, 1.0, 1.0, 0.0, 0.5]
    clusters = [0, 1, 100, 2, None, 0]
    groups = [3, 3, 3, 9, 9, 9]
    want = polyepo.set_advantages(rewards, clusters, groups, 2)
    as_array = np.array([c if c is not None else 100 for c in clusters])
    variants = [
        (tuple(rewards), clusters, tuple(groups)),
        (np.array(rewards, dtype=np.float32), as_array.astype(np.int8), np.array(groups, dtype=np.uint16)),
        (np.array(rewards) > 0.25, as_array.astype(np.float64), np.array(["a", "a", "a", "b", "b", "b"])),
        (np.array(rewards)[::-1][::-1], as_array, np.array(groups, dtype=object)),
    ]
    for r, c, g in variants:
        got = polyepo.set_advantages(r, c, g, 2)
        if r.dtype == bool if isinstance(r, np.ndarray) else False:
            assert got.shape == want.shape
        else:
            np.testing.assert_allclose(got, want, atol=1e-12)
    torch = pytest.importorskip("torch")
    got = polyepo.set_advantages(torch.tensor(rewards), torch.tensor(as_array), torch.tensor(groups), 2)
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_groups_of_unequal_size_and_order():
    got = polyepo.set_advantages([1, 0, 1, 1, 0], [0, 1, 0, 1, 0], ["x", "y", "x", "y", "x"], 1, objective="mean")
    np.testing.assert_allclose(got, [1 / 3, -0.5, 1 / 3, 0.5, -2 / 3], atol=1e-12)


def test_baselines():
    rewards = np.array([1.0, 0.0, 1.0, 1.0, 0.0, 0.0])
    groups = [0, 0, 0, 1, 1, 1]
    got = polyepo.grpo_advantages(rewards, groups)
    for g in (slice(0, 3), slice(3, 6)):
        r = rewards[g]
        np.testing.assert_allclose(got[g], (r - r.mean()) / (r.std(ddof=1) + 1e-6), rtol=1e-6)
    got = polyepo.drgrpo_advantages(rewards, groups)
    np.testing.assert_allclose(got, [1 / 3, -2 / 3, 1 / 3, 2 / 3, -1 / 3, -1 / 3], atol=1e-12)
    # Diversity bonus with weight 0 is Dr.GRPO.
    np.testing.assert_allclose(polyepo.diversity_bonus_advantages(rewards, [0, 1, 2, 0, 0, 0], groups, 0.0), got)
    bonus = polyepo.diversity_bonus_advantages([1, 1, 1], [0, 0, 1], [0, 0, 0], 1.0)
    assert bonus[2] > bonus[0] == pytest.approx(bonus[1])


def test_pass_at_k():
    assert polyepo.pass_at_k(10, 0, 3) == 0.0
    assert polyepo.pass_at_k(10, 10, 3) == 1.0
    assert polyepo.pass_at_k(4, 1, 2) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="k"):
        polyepo.pass_at_k(4, 1, 5)


def test_sampled_estimator_is_reproducible_and_close():
    rng = np.random.default_rng(0)
    rewards = rng.random(64)
    clusters = rng.integers(0, 5, 64)
    groups = np.repeat(np.arange(4), 16)
    a = polyepo.set_advantages(rewards, clusters, groups, 4, estimator="sampled", sets=2000, seed=3)
    b = polyepo.set_advantages(rewards, clusters, groups, 4, estimator="sampled", sets=2000, seed=3)
    exact = polyepo.set_advantages(rewards, clusters, groups, 4)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - exact).max() < 0.02


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: polyepo.set_advantages([1, float("nan")], [0, 0], [0, 0], 1), ValueError, r"rewards\[1\] is NaN"),
        (lambda: polyepo.set_advantages([1, "x"], [0, 0], [0, 0], 1), TypeError, r"rewards\[1\] is 'x'"),
        (lambda: polyepo.set_advantages([1, 0], [0, "x"], [0, 0], 1), TypeError, r"clusters\[1\] is 'x'"),
        (lambda: polyepo.set_advantages([1, 0], [0, 1.5], [0, 0], 1), TypeError, r"clusters\[1\]"),
        (lambda: polyepo.set_advantages([1, 0], np.array([0, 1.5]), [0, 0], 1), ValueError, r"clusters\[1\] is 1.5"),
        (lambda: polyepo.set_advantages([1, 0], [0, 1], [0, None], 1), TypeError, r"group_ids\[1\] is None"),
        (lambda: polyepo.set_advantages([1, 0], [0, 1], np.array([0.0, 1.0]), 1), TypeError, "group_ids"),
        (lambda: polyepo.set_advantages([1, 0], [0], [0, 0], 1), ValueError, "clusters has 1 entries"),
        (lambda: polyepo.set_advantages([1, 0], [0, 1], [0], 1), ValueError, "group_ids has 1 entries"),
        (lambda: polyepo.set_advantages([[1, 0]], [0, 1], [0, 0], 1), TypeError, r"rewards\[0\] is \[1, 0\] \(list\)"),
        (lambda: polyepo.set_advantages(np.ones((1, 2)), [0, 1], [0, 0], 1), ValueError, r"shape \(1, 2\)"),
        (lambda: polyepo.set_advantages([1, 0, 1], [0, 1, 0], ["a", "a", "b"], 2), ValueError, "group \"b\" \\(first at position 2, 1 samples\\)"),
        (lambda: polyepo.set_advantages([1, 0], None, [0, 0], 1), ValueError, "clusters"),
        (lambda: polyepo.set_advantages([1, 0], [0, 1], [0, 0], 1, objective="poly"), ValueError, "objective"),
        (lambda: polyepo.set_advantages([1, 0], [0, 1], [0, 0], 1, estimator="mc"), ValueError, "estimator"),
        (lambda: polyepo.set_advantages([1] * 40, [0] * 40, [0] * 40, 20, estimator="enumerate", max_sets=1000), ValueError, "sets"),
        (lambda: polyepo.set_advantages([1, 0], [0, 1], [0, 0], -1), ValueError, "set_size is -1"),
        (lambda: polyepo.set_advantages([1, 0], [0, 1], [0, 0], 1, seed=-2), ValueError, "seed is -2"),
        (lambda: polyepo.pass_at_k(-1, 0, 1), ValueError, "samples is -1"),
        (lambda: polyepo.pass_at_k(4, 1, -3), ValueError, "k is -3"),
        (lambda: polyepo.set_advantages([1e308, 1e308], [0, 1], [0, 0], 1, objective="mean"), ValueError, "too large.*rescale"),
    ],
)
def test_bad_input_names_the_argument(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_garbage_never_crashes_the_interpreter():
    rng = random.Random(1)
    junk = [None, "a", 1.5, float("inf"), -3, True, [1], {}, b"x", object(), 2**70, np.nan, np.int64(4)]
    for _ in range(2000):
        size = rng.randint(0, 5)
        args = [[rng.choice(junk) for _ in range(size)] for _ in range(3)]
        try:
            polyepo.set_advantages(*args, rng.randint(0, 6), objective=rng.choice(["mean", "max", "polychromatic"]))
        except (ValueError, TypeError, OverflowError):
            pass


def test_help_explains_the_arguments():
    doc = polyepo.set_advantages.__doc__
    for word in ("rewards", "clusters", "group_ids", "set_size", "degenerate_id", "estimator"):
        assert word in doc
