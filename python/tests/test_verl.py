"""The verl plugin: registered through verl's entry points, and on a hand-built batch the
estimator plus the labelling step give exactly set_advantages (legacy and v1 trainers)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
verl = pytest.importorskip("verl")  # importing verl loads the `verl.plugins` entry points
from omegaconf import OmegaConf  # noqa: E402
from tensordict import TensorDict  # noqa: E402
from tokenizers import Tokenizer, models, pre_tokenizers  # noqa: E402
from transformers import PreTrainedTokenizerFast  # noqa: E402
from verl.protocol import DataProto  # noqa: E402
from verl.trainer.ppo import core_algos, ray_trainer  # noqa: E402

import polyepo  # noqa: E402

WORDS = ["count", "add", "guess", "two", "three", "five", "so", "is"]
RESPONSES = [  # two prompts x four responses; the first word is the strategy
    "count two three", "add two three", "count five", "guess",
    "add so is", "add two", "guess five", "count three",
]
REWARDS = [1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0]
UIDS = ["u-a"] * 4 + ["u-b"] * 4


def first_word(problem: str, response: str):
    """A strategy labeler for the tests: the response's first word; `guess` is degenerate."""
    word = response.split()[0]
    return None if word == "guess" else WORDS.index(word)


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    vocab = {w: i for i, w in enumerate(["<pad>", "</s>", "<unk>"] + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    path = tmp_path_factory.mktemp("tok")
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>").save_pretrained(path)
    return path


def hand_built_batch(tokenizer_dir, with_raw_prompt=True):
    tokenizer = PreTrainedTokenizerFast.from_pretrained(tokenizer_dir)
    width = 4
    ids, mask = [], []
    for text in RESPONSES:
        row = tokenizer(text)["input_ids"]
        ids.append(row + [0] * (width - len(row)))
        mask.append([1] * len(row) + [0] * (width - len(row)))
    responses = torch.tensor(ids)
    response_mask = torch.tensor(mask, dtype=torch.float32)
    rewards = torch.zeros_like(response_mask)
    last = response_mask.sum(dim=1).long() - 1
    rewards[torch.arange(len(REWARDS)), last] = torch.tensor(REWARDS)  # verl: reward on the last token
    prompts = torch.tensor([tokenizer("add two three")["input_ids"]] * 8)
    non_tensors = {"uid": np.array(UIDS, dtype=object)}
    if with_raw_prompt:
        non_tensors["raw_prompt"] = np.array(
            [[{"role": "user", "content": "What is 2+3?"}]] * 8, dtype=object
        )
    return DataProto.from_dict(
        tensors={"prompts": prompts, "responses": responses, "response_mask": response_mask,
                 "token_level_rewards": rewards},
        non_tensors=non_tensors,
    )


def algorithm_config(tokenizer_dir, **extra):
    polyepo_section = {"set_size": 2, "tokenizer": str(tokenizer_dir), "strategy": "test_verl:first_word"}
    polyepo_section.update(extra)
    return OmegaConf.create({"adv_estimator": "polyepo", "polyepo": polyepo_section})


def expected(set_size=2):
    clusters = [first_word("", r) for r in RESPONSES]
    return polyepo.set_advantages(REWARDS, clusters, UIDS, set_size)


def test_the_plugin_registers_through_verl_entry_points():
    assert core_algos.get_adv_estimator_fn("polyepo") is not None
    assert getattr(ray_trainer.compute_advantage, "polyepo_labelling", False)
    from verl.trainer.ppo.v1 import trainer_base

    assert getattr(trainer_base.PPOTrainer._compute_advantage, "polyepo_labelling", False)


def test_legacy_trainer_labels_and_computes_set_advantages(tokenizer_dir):
    data = hand_built_batch(tokenizer_dir)
    out = ray_trainer.compute_advantage(data, adv_estimator="polyepo", num_repeat=4,
                                        config=algorithm_config(tokenizer_dir))
    advantages = out.batch["advantages"]
    per_sample = advantages.sum(dim=1) / out.batch["response_mask"].sum(dim=1)
    np.testing.assert_allclose(per_sample.numpy(), expected(), atol=1e-6)
    # Broadcast over the response's tokens only.
    assert torch.all(advantages[out.batch["response_mask"] == 0] == 0)
    assert list(out.non_tensor_batch["polyepo_cluster"]) == [first_word("", r) for r in RESPONSES]
    metrics = out.meta_info["polyepo_metrics"]
    assert metrics["polyepo/distinct_clusters"] == 2.0 and metrics["polyepo/judge_failed"] == 0.0
    assert np.abs(expected()).max() > 0


def test_v1_trainer_labels_from_the_transfer_queue(tokenizer_dir, monkeypatch):
    # verl's default trainer keeps rollouts in a TransferQueue; a hand-built batch stands in
    # for it, served through the same call the hook makes.
    from verl.trainer.ppo.v1 import trainer_base
    from verl.trainer.ppo.v1.utils import compute_advantage_for_multi_trajectories

    full = hand_built_batch(tokenizer_dir, with_raw_prompt=False)

    def kv_batch_get(keys, partition_id, select_fields):
        fields = {k: full.batch[k] for k in select_fields if k != "uid"}
        td = TensorDict(fields, batch_size=[len(keys)])
        td["uid"] = list(full.non_tensor_batch["uid"])
        return td

    monkeypatch.setattr(trainer_base.tq, "kv_batch_get", kv_batch_get)
    seen = {}

    def original(self, batch, metrics):
        # What verl's own method does with the labels: the estimator via compute_advantage.
        seen["data"] = compute_advantage_for_multi_trajectories(
            full, batch_keys=batch.keys, adv_estimator="polyepo", num_repeat=4, config=self.config.algorithm
        )
        return batch

    hooked = trainer_base.PPOTrainer._compute_advantage.__wrapped__  # verl's method, for reference
    assert callable(hooked)
    from polyepo.verl.plugin import with_v1_labelling

    class Trainer:
        config = OmegaConf.create({"algorithm": OmegaConf.to_container(algorithm_config(tokenizer_dir))})
        tokenizer = PreTrainedTokenizerFast.from_pretrained(tokenizer_dir)

    class Meta:
        keys = [f"{u}_0_{i}" for i, u in enumerate(UIDS)]
        partition_id = "train"

    metrics = {}
    with_v1_labelling(original)(Trainer(), Meta(), metrics)
    data = seen["data"]
    per_sample = data.batch["advantages"].sum(dim=1) / data.batch["response_mask"].sum(dim=1)
    np.testing.assert_allclose(per_sample.numpy(), expected(), atol=1e-6)
    assert metrics["polyepo/distinct_clusters"] == 2.0


def test_the_judge_labels_each_group(tokenizer_dir, server, copy_prompt):
    # The LM judge path against `polyepo serve`: a prompt the model copies gives three
    # responses clusters 0, 1 and degenerate.
    from polyepo.verl.plugin import label_batch

    data = hand_built_batch(tokenizer_dir).select_idxs([0, 1, 2, 4, 5, 6])
    data.non_tensor_batch["uid"] = np.array(["a"] * 3 + ["b"] * 3, dtype=object)
    cfg = algorithm_config(tokenizer_dir, strategy=None,
                           judge={"endpoint": server, "model": "smollm2", "prompt": copy_prompt, "max_tokens": 96})
    metrics = label_batch(data, cfg)
    assert list(data.non_tensor_batch["polyepo_cluster"]) == [0, 1, None, 0, 1, None]
    assert metrics["polyepo/judge_calls"] == 2.0 and metrics["polyepo/judge_failed"] == 0.0


def test_configuration_errors_are_clear(tokenizer_dir):
    data = hand_built_batch(tokenizer_dir)
    with pytest.raises(ValueError, match="algorithm.polyepo"):
        ray_trainer.compute_advantage(data, adv_estimator="polyepo", config=OmegaConf.create({"adv_estimator": "polyepo"}))
    with pytest.raises(ValueError, match="judge.*strategy|strategy.*judge"):
        ray_trainer.compute_advantage(data, adv_estimator="polyepo",
                                      config=algorithm_config(tokenizer_dir, strategy=None))
    with pytest.raises(ValueError, match="set size 9 is invalid for a group of 4"):
        ray_trainer.compute_advantage(data, adv_estimator="polyepo",
                                      config=algorithm_config(tokenizer_dir, set_size=9))


def test_the_example_config_composes_with_verls_own(tmp_path):
    # The shipped config, composed by Hydra against verl's trainer config as
    # `python -m verl.trainer.main_ppo --config-name polyepo_trainer` would: valid keys, the
    # paper's settings, and an algorithm section the estimator reads.
    import os

    from hydra import compose, initialize_config_dir

    import polyepo.verl
    from polyepo.verl.plugin import settings

    directory = os.path.dirname(polyepo.verl.__file__)
    with initialize_config_dir(config_dir=directory, version_base=None):
        cfg = compose(
            config_name="polyepo_trainer",
            overrides=[
                "actor_rollout_ref.model.path=/models/qwen", "data.train_batch_size=8",
                "trainer.n_gpus_per_node=1", "actor_rollout_ref.actor.ppo_mini_batch_size=8",
                "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=4",
                "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=4",
            ],
        )
    actor = cfg.actor_rollout_ref.actor
    assert (actor.clip_ratio_low, actor.clip_ratio_high, actor.clip_ratio_c) == (0.2, 0.28, 3.0)
    assert actor.loss_agg_mode == "seq-mean-token-sum-norm" and not actor.use_kl_loss
    assert actor.optim.lr == 1e-6 and cfg.actor_rollout_ref.rollout.n == 8
    assert cfg.algorithm.adv_estimator == "polyepo" and not cfg.algorithm.use_kl_in_reward
    # verl's own start-up checks accept it, and it needs neither a critic nor a reference model.
    from verl.trainer.main_ppo import validate_config
    from verl.trainer.ppo.utils import need_critic, need_reference_policy

    assert not need_critic(cfg) and not need_reference_policy(cfg)
    validate_config(config=cfg, use_reference_policy=False, use_critic=False)
    polyepo_settings = settings(cfg.algorithm)
    assert polyepo_settings["set_size"] == 4 and polyepo_settings["tokenizer"] == "/models/qwen"
