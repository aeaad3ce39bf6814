"""PolyEpoTrainer trains a tiny Llama end to end on CPU with TRL: the advantages the loss
used are set_advantages of the step's rewards and clusters, and the weights change."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
trl = pytest.importorskip("trl")
datasets = pytest.importorskip("datasets")
transformers = pytest.importorskip("transformers")
from tokenizers import Tokenizer, models, pre_tokenizers  # noqa: E402

import polyepo  # noqa: E402
from polyepo.trl import PolyEpoTrainer  # noqa: E402

WORDS = ["add", "two", "three", "four", "five", "count", "up", "times", "so", "it", "is"]


def tiny_model_and_tokenizer():
    """A word-level tokenizer and a 2-layer Llama built from a config: nothing downloaded."""
    vocab = {w: i for i, w in enumerate(["<pad>", "</s>", "<unk>"] + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        pad_token_id=0, eos_token_id=1, bos_token_id=None,
    )
    return transformers.LlamaForCausalLM(config), tokenizer


class Recording(PolyEpoTrainer):
    """Records the advantages every loss call received."""

    used: list

    def _compute_loss(self, model, inputs):
        self.used.append(inputs["advantages"].detach().cpu().numpy().copy())
        return super()._compute_loss(model, inputs)


def test_trains_with_set_advantages(tmp_path):
    model, tokenizer = tiny_model_and_tokenizer()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    dataset = datasets.Dataset.from_dict({"prompt": ["add two three", "count up four", "five times two", "so it is"]})

    def reward(completions, **kwargs):
        return [float(len(c.split()) % 2) for c in completions]

    def strategy(problem, completion):
        words = completion.split()
        return None if not words else vocab_id(words[0]) % 3

    vocab_id = tokenizer.convert_tokens_to_ids
    args = trl.GRPOConfig(
        output_dir=str(tmp_path), per_device_train_batch_size=8, num_generations=4,
        max_completion_length=6, max_steps=2, learning_rate=0.05, logging_steps=1,
        report_to=[], save_strategy="no", use_cpu=True, bf16=False, beta=0.0, seed=0,
        temperature=1.5,
    )
    trainer = Recording(
        model=model, reward_funcs=reward, args=args, train_dataset=dataset,
        processing_class=tokenizer, strategy=strategy, set_size=2,
    )
    trainer.used = []
    history = []
    original = trainer._generate_and_score_completions

    def record(inputs):
        out = original(inputs)
        history.append(dict(trainer.polyepo_last))
        return out

    trainer._generate_and_score_completions = record
    trainer.train()

    assert history, "no generation step ran"
    for step in history:
        want = polyepo.set_advantages(step["rewards"], step["clusters"], step["group_ids"], 2)
        np.testing.assert_allclose(step["advantages"], want, atol=1e-12)
        assert len(step["advantages"]) == 8
    # The loss saw exactly those advantages (TRL shuffles the batch: compare as multisets).
    used = np.sort(np.concatenate(trainer.used))
    made = np.sort(np.concatenate([h["advantages"] for h in history]))
    np.testing.assert_allclose(used, made.astype(np.float32), atol=1e-6)
    assert np.abs(made).max() > 0, "every advantage was zero: the test would not see a wrong sign"
    changed = [n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])]
    assert changed, "no weight changed"
    logged = [entry for entry in trainer.state.log_history if "polyepo/distinct_clusters" in entry]
    assert logged and logged[0]["polyepo/judge_failed"] == 0.0


def test_set_size_larger_than_the_group_is_refused(tmp_path):
    model, tokenizer = tiny_model_and_tokenizer()
    args = trl.GRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=4, num_generations=4,
                          report_to=[], use_cpu=True, max_steps=1)
    with pytest.raises(ValueError, match="set_size is 5"):
        PolyEpoTrainer(model=model, reward_funcs=lambda completions, **k: [0.0] * len(completions), args=args,
                       train_dataset=datasets.Dataset.from_dict({"prompt": ["add two"]}),
                       processing_class=tokenizer, strategy=lambda p, c: 0, set_size=5)


@pytest.mark.parametrize("setting, message", [({"objective": "polychromatc"}, "objective"), ({"estimator": "mc"}, "estimator")])
def test_bad_settings_are_refused_at_construction(tmp_path, setting, message):
    model, tokenizer = tiny_model_and_tokenizer()
    args = trl.GRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=4, num_generations=4,
                          report_to=[], use_cpu=True, max_steps=1)
    with pytest.raises(ValueError, match=message):
        PolyEpoTrainer(model=model, reward_funcs=lambda completions, **k: [0.0] * len(completions), args=args,
                       train_dataset=datasets.Dataset.from_dict({"prompt": ["add two"]}),
                       processing_class=tokenizer, strategy=lambda p, c: 0, set_size=2, **setting)
