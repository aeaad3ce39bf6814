"""Strategy labels for a flat batch: one judge call per prompt group, results per sample."""

from __future__ import annotations

import logging
import numbers
from typing import Callable, Sequence

_log = logging.getLogger("polyepo.judge")

Strategy = Callable[[str, str], "int | None"]


def flat_clusters(
    problems: Sequence[str],
    responses: Sequence[str],
    group_ids: Sequence[object],
    labeler: "Strategy | object",
) -> tuple[list[int | None], dict[str, int]]:
    """Cluster ids for every sample of a flat batch, in input order.

    ``labeler`` is either a :class:`polyepo.Judge` (each group's responses go to the judge
    together, all groups in one concurrent call) or a function ``(problem, response) ->
    cluster id or None`` (a programmatic strategy labeler, called per sample).

    Returns the cluster ids and a count of groups by outcome name (``Outcome.name``:
    ``labelled``, ``cached``, ``skipped``, ``failed``; plain strings, so the counts pickle
    across processes), which trainers log (:func:`failed_groups` counts the failed ones). Failed groups are also reported on the
    ``polyepo.judge`` logger (a warning with the count and the first failure's detail,
    which includes the start of a reply that could not be used); a judge that keeps
    failing raises :class:`polyepo.JudgeUnusableError` (see ``Judge(max_failed_steps=...)``).
    """
    n = len(responses)
    if len(problems) != n or len(group_ids) != n:
        raise ValueError(
            f"problems ({len(problems)}), responses ({n}) and group_ids ({len(group_ids)}) "
            "must have one entry per sample"
        )
    from polyepo._core import Judge

    if not isinstance(labeler, Judge):
        clusters = [labeler(p, r) for p, r in zip(problems, responses)]
        for i, c in enumerate(clusters):
            if c is not None and (isinstance(c, bool) or not isinstance(c, numbers.Integral)):
                raise TypeError(f"the strategy function returned {c!r} for sample {i}: return an int or None")
        return clusters, {"labelled": len({_key(g) for g in group_ids})}
    order: dict[object, list[int]] = {}
    for i, g in enumerate(group_ids):
        order.setdefault(_key(g), []).append(i)
    members = list(order.values())
    labelled = labeler.label(
        [problems[m[0]] for m in members], [[responses[i] for i in m] for m in members]
    )
    clusters: list[int | None] = [None] * n
    outcomes: dict[str, int] = {}
    reasons: dict[str, int] = {}
    failures = []
    for m, labels in zip(members, labelled):
        outcomes[labels.outcome.name] = outcomes.get(labels.outcome.name, 0) + 1
        if not labels.ok:
            failures.append(labels)
            reasons[labels.reason] = reasons.get(labels.reason, 0) + 1
        for i, c in zip(m, labels.clusters):
            clusters[i] = c
    if failures:
        _log.warning(
            "the judge failed on %d of %d groups (%s); first failure: %s: %s",
            len(failures),
            len(members),
            ", ".join(f"{r} x{n}" for r, n in sorted(reasons.items())),
            failures[0].reason,
            failures[0].detail,
        )
    return clusters, outcomes


def failed_groups(outcomes: dict[str, int]) -> int:
    """Groups the judge failed on (skipped, or labelled by the failure policy), from the
    counts :func:`flat_clusters` returns."""
    from polyepo._core import Outcome

    return outcomes.get(Outcome.SKIPPED.name, 0) + outcomes.get(Outcome.FAILED.name, 0)


def _key(group_id: object) -> object:
    # numpy scalars and 0-d tensors hash by value only after conversion.
    item = getattr(group_id, "item", None)
    return item() if callable(item) else group_id
