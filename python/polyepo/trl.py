"""POLY-EPO for TRL: a ``GRPOTrainer`` whose advantages are marginal set advantages.

::

    from polyepo.trl import PolyEpoTrainer
    trainer = PolyEpoTrainer(
        model="Qwen/Qwen3-1.7B", reward_funcs=accuracy, train_dataset=dataset,
        args=GRPOConfig(num_generations=8, ...),
        strategy=polyepo.Judge("http://judge:8000/v1", "Qwen/Qwen3-32B", prompt="math"),
        set_size=4,
    )

Everything else is TRL's: generation (transformers or vLLM), rewards, the clipped loss.
Only the advantages change. TRL computes rewards for the whole batch across processes;
this trainer labels every completion's strategy (the judge sees each prompt's group
whole, even when the group is split across processes: the main process labels the
gathered batch and broadcasts the labels), computes the set advantages of each prompt's
group, and gives each process its slice, exactly where GRPO's advantages were.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Union

import numpy as np
import torch
from accelerate.utils import broadcast_object_list, gather_object
from trl import GRPOTrainer

import polyepo
from polyepo._core import Judge
from polyepo._labels import failed_groups

StrategyFn = Callable[[str, str], Union[int, None]]


def message_text(value: Any) -> str:
    """The text of a prompt or completion: a string, or the last message's content of a
    conversation (a list of ``{"role", "content"}`` dicts)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and isinstance(value[-1], dict):
        content = value[-1].get("content", "")
        if isinstance(content, list):  # multimodal content parts
            return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
        return str(content)
    return str(value)


class PolyEpoTrainer(GRPOTrainer):
    """A TRL ``GRPOTrainer`` that optimises POLY-EPO's set objective.

    Parameters (beyond ``GRPOTrainer``'s)
    -------------------------------------
    strategy : polyepo.Judge or callable
        Who labels each completion's reasoning strategy: the LM judge (one request per
        prompt group) or a function ``(problem, completion) -> cluster id or None``
        (``None`` means degenerate).
    set_size : int
        n, the set size (the paper: 4 with 8 generations per prompt); at most
        ``num_generations``.
    objective : "polychromatic", "mean" or "max"
    estimator : "exact", "enumerate" or "sampled"
    degenerate_id : int
        The cluster id that means degenerate.

    After each generation step ``self.polyepo_last`` holds the batch's rewards, clusters,
    group ids and advantages (all processes), and the metrics ``polyepo/distinct_clusters``
    (mean per group) and ``polyepo/judge_failed`` (groups) go to TRL's logs.
    """

    def __init__(
        self,
        *args: Any,
        strategy: Union[Judge, StrategyFn],
        set_size: int = 4,
        objective: str = "polychromatic",
        estimator: str = "exact",
        degenerate_id: int = 100,
        **kwargs: Any,
    ) -> None:
        if not (isinstance(strategy, Judge) or callable(strategy)):
            raise TypeError("strategy: pass a polyepo.Judge or a function (problem, completion) -> cluster id or None")
        super().__init__(*args, **kwargs)
        if not 1 <= set_size <= self.num_generations:
            raise ValueError(
                f"set_size is {set_size}: use 1 <= set_size <= num_generations ({self.num_generations})"
            )
        if getattr(self, "multi_objective_aggregation", "sum_then_normalize") != "sum_then_normalize":
            raise ValueError(
                "PolyEpoTrainer needs multi_objective_aggregation='sum_then_normalize': set advantages "
                "are computed from the weighted sum of the reward functions"
            )
        self.polyepo_strategy = strategy
        self.polyepo_settings = dict(
            set_size=set_size, objective=objective, estimator=estimator, degenerate_id=degenerate_id
        )
        # Every setting is checked now, by the code that will use it, on one dummy group:
        # a misspelt objective fails here, not inside step 1 after generation.
        n = self.num_generations
        polyepo.set_advantages([0.0] * n, list(range(n)), [0] * n, **self.polyepo_settings)
        self.polyepo_last: dict[str, Any] | None = None
        self._polyepo_batch: tuple[Any, list, list] | None = None

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        # All processes' rewards (TRL gathers them); the texts are this process's.
        self._polyepo_batch = (rewards_per_func, prompts, completions)
        return rewards_per_func

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        if not self.model.training or self._polyepo_batch is None:
            return output  # evaluation: GRPO's advantages are only logged, never trained on
        rewards_per_func, prompts, completions = self._polyepo_batch
        self._polyepo_batch = None
        weights = self.reward_weights.to(rewards_per_func.device).unsqueeze(0)
        unscorable = torch.isnan(rewards_per_func).all(dim=1)
        rewards = (rewards_per_func * weights).nansum(dim=1)
        rewards[unscorable] = 0.0
        rewards = rewards.detach().cpu().double().numpy()

        problems = [message_text(p) for p in gather_object(prompts)]
        texts = [message_text(c) for c in gather_object(completions)]
        labels: list[Any] = [None, None]
        if self.accelerator.is_main_process:
            group_ids = [i // self.num_generations for i in range(len(texts))]
            labels = list(polyepo.flat_clusters(problems, texts, group_ids, self.polyepo_strategy))
        labels = broadcast_object_list(labels, from_process=0)
        clusters, outcomes = labels
        group_ids = np.arange(len(rewards)) // self.num_generations
        advantages = polyepo.set_advantages(rewards, clusters, group_ids, **self.polyepo_settings)
        # TRL gives unscorable completions (every reward function returned None) no signal.
        advantages[unscorable.cpu().numpy()] = 0.0

        local = len(prompts)
        start = self.accelerator.process_index * local
        output["advantages"] = torch.as_tensor(
            advantages[start : start + local], dtype=output["advantages"].dtype, device=output["advantages"].device
        )
        self.polyepo_last = dict(rewards=rewards, clusters=clusters, group_ids=group_ids, advantages=advantages)
        distinct = [
            len({c for c in clusters[g : g + self.num_generations] if c is not None})
            for g in range(0, len(clusters), self.num_generations)
        ]
        self._metrics["train"]["polyepo/distinct_clusters"].append(float(np.mean(distinct)) if distinct else math.nan)
        failed = failed_groups(outcomes)
        self._metrics["train"]["polyepo/judge_failed"].append(float(failed))
        return output
