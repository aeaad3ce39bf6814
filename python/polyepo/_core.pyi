"""Type stubs of the compiled core (see the docstrings in ``polyepo``)."""

from os import PathLike
from typing import Literal, Sequence, Union

import numpy as np
import numpy.typing as npt

DEFAULT_MAX_SETS: int

_Floats = Union[Sequence[float], npt.ArrayLike]
_Clusters = Union[Sequence[Union[int, None]], npt.ArrayLike]
_GroupIds = Union[Sequence[Union[int, str]], npt.ArrayLike]
_Objective = Literal["polychromatic", "mean", "max"]
_Estimator = Literal["exact", "enumerate", "sampled"]

def set_advantages(
    rewards: _Floats,
    clusters: _Clusters | None,
    group_ids: _GroupIds,
    set_size: int,
    objective: _Objective = "polychromatic",
    estimator: _Estimator = "exact",
    degenerate_id: int = 100,
    sets: int = 16,
    seed: int = 0,
    max_sets: int = ...,
) -> np.ndarray: ...
def grpo_advantages(rewards: _Floats, group_ids: _GroupIds) -> np.ndarray: ...
def drgrpo_advantages(rewards: _Floats, group_ids: _GroupIds) -> np.ndarray: ...
def diversity_bonus_advantages(
    rewards: _Floats,
    clusters: _Clusters,
    group_ids: _GroupIds,
    weight: float,
    degenerate_id: int = 100,
) -> np.ndarray: ...
def pass_at_k(samples: int, correct: int, k: int) -> float: ...
def verify(response: str, answer: str) -> bool: ...
def extract_answer(response: str) -> str | None: ...

class Outcome:
    LABELLED: Outcome
    CACHED: Outcome
    SKIPPED: Outcome
    FAILED: Outcome
    @property
    def name(self) -> Literal["labelled", "cached", "skipped", "failed"]: ...

class GroupLabels:
    @property
    def clusters(self) -> list[int | None]: ...
    @property
    def outcome(self) -> Outcome: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def detail(self) -> str: ...
    @property
    def ok(self) -> bool: ...

class JudgeUnusableError(RuntimeError): ...

class Judge:
    def __init__(
        self,
        endpoint: str,
        model: str,
        prompt: str = "math",
        failure_policy: Literal["skip", "distinct", "single"] = "skip",
        max_concurrency: int = 8,
        cache: str | PathLike[str] | None = None,
        timeout_s: float = 60.0,
        retries: int = 3,
        backoff_s: float = 1.0,
        api_key_env: str = "POLYEPO_JUDGE_API_KEY",
        degenerate_id: int = 100,
        max_tokens: int = 1024,
        response_format: Literal["auto", "json_schema", "json_object", "none"] = "auto",
        max_failure_rate: float = 0.5,
        max_failed_steps: int = 3,
    ) -> None: ...
    def label(self, problems: Sequence[str], responses: Sequence[Sequence[str]]) -> list[GroupLabels]: ...
    def stats(self) -> dict[str, object]: ...
    @property
    def degenerate_id(self) -> int: ...
