"""The verl hooks: the ``polyepo`` estimator and the labelling step (see ``__init__``)."""

from __future__ import annotations

import importlib
import logging
import threading
from functools import lru_cache, wraps
from typing import Any, Callable

import numpy as np
import torch

import polyepo
from polyepo._core import Judge
from polyepo._labels import failed_groups

_log = logging.getLogger("polyepo.verl")
ESTIMATOR = "polyepo"
#: Labels of the batch the estimator is about to see, set by the labelling step, with that
#: batch's group ids: the estimator uses them only for a batch with the same ids in the
#: same order, so labels can never reach the wrong samples.
_pending = threading.local()


def _take_labels(index: Any) -> list | None:
    pending = getattr(_pending, "labels", None)
    _pending.labels = None
    if pending is None:
        return None
    uids, clusters = pending
    if list(uids) != list(index):
        raise RuntimeError(
            "the strategy labels were made for another batch (the group ids differ): "
            "the batch changed between labelling and the advantage computation"
        )
    return clusters


def _has_labels_for(index: Any) -> bool:
    pending = getattr(_pending, "labels", None)
    return pending is not None and list(pending[0]) == list(index)


def settings(config: Any) -> dict[str, Any]:
    """``algorithm.polyepo`` as a plain dict (OmegaConf, dataclass or dict), with defaults."""
    section = None
    if config is not None:
        section = config.get("polyepo") if hasattr(config, "get") else getattr(config, "polyepo", None)
    if section is None:
        raise ValueError(
            "algorithm.adv_estimator=polyepo needs an `algorithm.polyepo` section (at least "
            "`set_size`; see polyepo/verl/polyepo_trainer.yaml)"
        )
    try:
        from omegaconf import OmegaConf

        if OmegaConf.is_config(section):
            section = OmegaConf.to_container(section, resolve=True)
    except ImportError:
        pass
    out = {"objective": "polychromatic", "estimator": "exact", "degenerate_id": 100}
    out.update(dict(section))
    if "set_size" not in out:
        raise ValueError("algorithm.polyepo.set_size is missing: the set size n (the paper: 4)")
    return out


def compute_polyepo_outcome_advantage(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index: np.ndarray | None = None,
    config: Any = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """verl's estimator interface: per-token advantages (and returns) of shape (B, T).

    Each response's score is its summed token reward; the advantage is its marginal set
    advantage within its ``uid`` group, broadcast over its response tokens.
    """
    if index is None:
        raise ValueError("the polyepo estimator needs the group ids (`uid` in the batch)")
    cfg = settings(config)
    scores = token_level_rewards.sum(dim=-1).detach().double().cpu().numpy()
    clusters = _take_labels(index)
    if clusters is None:
        if cfg["objective"] == "polychromatic":
            raise RuntimeError(
                "no strategy labels for this batch: polyepo's labelling step did not run "
                "(is VERL_USE_EXTERNAL_PLUGINS excluding `polyepo`, or is compute_advantage "
                "called from a trainer other than verl.trainer.ppo.ray_trainer?)"
            )
    advantages = polyepo.set_advantages(
        scores,
        clusters,
        index,
        int(cfg["set_size"]),
        objective=cfg["objective"],
        estimator=cfg["estimator"],
        degenerate_id=int(cfg["degenerate_id"]),
    )
    per_token = torch.as_tensor(advantages, dtype=torch.float32, device=token_level_rewards.device)
    per_token = per_token.unsqueeze(-1) * response_mask
    return per_token, per_token


@lru_cache(maxsize=4)
def _tokenizer(path: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


@lru_cache(maxsize=4)
def _judge(frozen: tuple) -> Judge:
    return Judge(**dict(frozen))


def labeler(cfg: dict[str, Any]) -> Judge | Callable[[str, str], int | None]:
    """The judge (``algorithm.polyepo.judge``) or the strategy function
    (``algorithm.polyepo.strategy = "module:function"``)."""
    if cfg.get("judge") and cfg.get("strategy"):
        raise ValueError("algorithm.polyepo: set `judge` or `strategy`, not both")
    if cfg.get("judge"):
        judge = dict(cfg["judge"])
        missing = [k for k in ("endpoint", "model") if not judge.get(k)]
        if missing:
            raise ValueError(f"algorithm.polyepo.judge needs {' and '.join(missing)}")
        return _judge(tuple(sorted(judge.items())))
    if cfg.get("strategy"):
        module, _, name = str(cfg["strategy"]).partition(":")
        if not name:
            raise ValueError(f"algorithm.polyepo.strategy is {cfg['strategy']!r}: write it as 'module:function'")
        return getattr(importlib.import_module(module), name)
    raise ValueError("algorithm.polyepo needs `judge` (an LM judge) or `strategy` ('module:function') to label strategies")


def problem_text(raw_prompt: Any) -> str:
    """The problem a raw chat prompt asks: its last user message."""
    if isinstance(raw_prompt, (list, tuple, np.ndarray)):
        users = [m for m in raw_prompt if isinstance(m, dict) and m.get("role") == "user"]
        if users:
            return str(users[-1].get("content", ""))
    return str(raw_prompt)


def batch_texts(data: Any, tokenizer: Any) -> tuple[list[str], list[str]]:
    """(problem, response) text per sample of a verl ``DataProto``."""
    responses = data.batch["responses"]
    mask = data.batch["response_mask"] if "response_mask" in data.batch.keys() else None
    texts = []
    for i in range(responses.shape[0]):
        ids = responses[i] if mask is None else responses[i][mask[i].bool()]
        texts.append(tokenizer.decode(ids.tolist(), skip_special_tokens=True))
    if "raw_prompt" in data.non_tensor_batch:
        problems = [problem_text(p) for p in data.non_tensor_batch["raw_prompt"]]
    else:
        prompts = data.batch["prompts"]
        pad = tokenizer.pad_token_id
        problems = [tokenizer.decode([t for t in p.tolist() if t != pad], skip_special_tokens=True) for p in prompts]
    return problems, texts


def label_batch(data: Any, config: Any, tokenizer: Any = None) -> dict[str, float]:
    """The labelling step: labels every sample of ``data`` and leaves them for the
    estimator; also stores them in ``data.non_tensor_batch["polyepo_cluster"]`` (None is
    degenerate) for rollout dumps. Returns the step's judge metrics."""
    cfg = settings(config)
    if cfg["objective"] != "polychromatic":
        _pending.labels = None
        return {}
    if tokenizer is None:
        if not cfg.get("tokenizer"):
            raise ValueError("algorithm.polyepo.tokenizer is missing: e.g. ${actor_rollout_ref.model.path}")
        tokenizer = _tokenizer(str(cfg["tokenizer"]))
    problems, texts = batch_texts(data, tokenizer)
    uid = data.non_tensor_batch["uid"]
    who = labeler(cfg)
    before = who.stats() if isinstance(who, Judge) else None
    clusters, outcomes = polyepo.flat_clusters(problems, texts, list(uid), who)
    _pending.labels = (list(uid), clusters)
    data.non_tensor_batch["polyepo_cluster"] = np.array(clusters, dtype=object)
    groups = {}
    for g, c in zip(uid, clusters):
        groups.setdefault(g, set())
        if c is not None:
            groups[g].add(c)
    metrics = {
        "polyepo/distinct_clusters": float(np.mean([len(s) for s in groups.values()])) if groups else 0.0,
        "polyepo/degenerate_fraction": float(np.mean([c is None for c in clusters])) if clusters else 0.0,
        "polyepo/judge_failed": float(failed_groups(outcomes)),
    }
    if before is not None:
        after = who.stats()
        metrics["polyepo/judge_calls"] = float(after["calls"] - before["calls"])
        metrics["polyepo/judge_cache_hits"] = float(after["cache_hits"] - before["cache_hits"])
        metrics["polyepo/judge_latency_s"] = float(after["latency_s"] - before["latency_s"])
    return metrics


def with_labelling(compute_advantage: Callable) -> Callable:
    """Wraps verl's ``compute_advantage`` (the legacy trainer calls it with the whole batch):
    labels the batch first when the estimator is ``polyepo`` and nothing labelled it yet;
    otherwise calls it untouched."""

    @wraps(compute_advantage)
    def wrapper(data, adv_estimator, *args, **kwargs):
        wants = str(getattr(adv_estimator, "value", adv_estimator)) == ESTIMATOR
        uid = data.non_tensor_batch.get("uid")
        if wants and "responses" in data.batch.keys() and not (uid is not None and _has_labels_for(uid)):
            config = kwargs.get("config", args[4] if len(args) > 4 else None)
            data.meta_info["polyepo_metrics"] = label_batch(data, config)
        return compute_advantage(data, adv_estimator, *args, **kwargs)

    wrapper.polyepo_labelling = True
    return wrapper


def with_judge_metrics(compute_data_metrics: Callable) -> Callable:
    """Wraps verl's ``compute_data_metrics`` so the legacy trainer logs the labelling
    step's metrics."""

    @wraps(compute_data_metrics)
    def wrapper(batch, *args, **kwargs):
        metrics = compute_data_metrics(batch, *args, **kwargs)
        metrics.update(batch.meta_info.get("polyepo_metrics", {}))
        return metrics

    wrapper.polyepo_labelling = True
    return wrapper


def fetch_texts(batch_meta: Any, pad_token_id: int) -> Any:
    """The v1 trainer keeps rollouts in a TransferQueue and hands ``_compute_advantage``
    only their keys: fetch what labelling needs, as a ``DataProto``."""
    import transfer_queue as tq
    from verl.protocol import DataProto

    fetched = tq.kv_batch_get(
        keys=batch_meta.keys,
        partition_id=batch_meta.partition_id,
        select_fields=["uid", "prompts", "responses", "response_mask"],
    )
    data = DataProto(batch=fetched.to_padded_tensor(padding=pad_token_id))
    data.non_tensor_batch["uid"] = np.array(data.batch.pop("uid").tolist(), dtype=object)
    return data


def with_v1_labelling(compute_advantage_method: Callable) -> Callable:
    """Wraps the v1 trainer's ``PPOTrainer._compute_advantage(batch, metrics)``: fetches
    the batch's token ids, labels them, puts the judge's metrics in the step's metrics,
    then computes advantages as verl does (the estimator picks the labels up)."""

    @wraps(compute_advantage_method)
    def wrapper(self, batch, metrics, *args, **kwargs):
        algorithm = self.config.algorithm
        if str(algorithm.adv_estimator) == ESTIMATOR:
            data = fetch_texts(batch, self.tokenizer.pad_token_id or 0)
            metrics.update(label_batch(data, algorithm, tokenizer=self.tokenizer))
        try:
            return compute_advantage_method(self, batch, metrics, *args, **kwargs)
        finally:
            _pending.labels = None

    wrapper.polyepo_labelling = True
    return wrapper


def install() -> None:
    """Registers the estimator and the labelling step (idempotent)."""
    from verl.trainer.ppo import core_algos

    if ESTIMATOR not in core_algos.ADV_ESTIMATOR_REGISTRY:
        core_algos.register_adv_est(ESTIMATOR)(compute_polyepo_outcome_advantage)
    from verl.trainer.ppo import ray_trainer

    if not getattr(ray_trainer.compute_advantage, "polyepo_labelling", False):
        ray_trainer.compute_advantage = with_labelling(ray_trainer.compute_advantage)
    if not getattr(ray_trainer.compute_data_metrics, "polyepo_labelling", False):
        ray_trainer.compute_data_metrics = with_judge_metrics(ray_trainer.compute_data_metrics)
    try:  # the v1 trainer (verl's default) needs TransferQueue (verl[verl-core])
        from verl.trainer.ppo.v1 import trainer_base
    except ImportError as error:
        _log.warning("polyepo.verl: verl's v1 trainer is not importable (%s); only the legacy trainer is hooked", error)
        return
    method = trainer_base.PPOTrainer._compute_advantage
    if not getattr(method, "polyepo_labelling", False):
        trainer_base.PPOTrainer._compute_advantage = with_v1_labelling(method)
