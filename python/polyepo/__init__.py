"""POLY-EPO set reinforcement learning for Python trainers.

The functions here are the Rust core of ``polyepo`` (the same code the ``polyepo train``
command runs), compiled into this package:

* :func:`set_advantages` - marginal set advantages (POLY-EPO's polychromatic objective, and
  the mean and max objectives) for a whole flat batch of samples with group ids;
* :func:`grpo_advantages`, :func:`drgrpo_advantages`, :func:`diversity_bonus_advantages` -
  the per-generation baselines over the same batch layout;
* :func:`pass_at_k` - the unbiased pass@k estimate;
* :class:`Judge` - the LM strategy judge over an OpenAI-compatible API;
* :func:`verify` and :func:`extract_answer` - the math answer verifier.

Adapters: :mod:`polyepo.trl` (a ``GRPOTrainer`` subclass) and :mod:`polyepo.verl` (an
advantage estimator loaded through verl's plugin entry points).
"""

from polyepo._core import (
    DEFAULT_MAX_SETS,
    GroupLabels,
    Outcome,
    Judge,
    JudgeUnusableError,
    diversity_bonus_advantages,
    drgrpo_advantages,
    extract_answer,
    grpo_advantages,
    pass_at_k,
    set_advantages,
    verify,
)
from polyepo._labels import failed_groups, flat_clusters

__all__ = [
    "DEFAULT_MAX_SETS",
    "GroupLabels",
    "Outcome",
    "Judge",
    "JudgeUnusableError",
    "diversity_bonus_advantages",
    "drgrpo_advantages",
    "extract_answer",
    "failed_groups",
    "flat_clusters",
    "grpo_advantages",
    "pass_at_k",
    "set_advantages",
    "verify",
]
__version__ = "0.1.0"
