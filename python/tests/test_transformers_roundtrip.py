"""A model `polyepo train` exports (`final/`) loads in transformers, its tokenizer in
AutoTokenizer, and both give the same tokens and next-token log-probs as polyepo."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

TEXTS = ["12+3=15<eos>", "7*8=56", "1+1+1+1=4<eos>"]


def polyepo_logprobs(binary, model, text):
    out = subprocess.run(
        [str(binary), "logprobs", "--model", str(model), "--text", text],
        check=True, capture_output=True, text=True,
    )
    return json.loads(out.stdout)


def transformers_logprobs(model, tokens):
    ids = torch.tensor([tokens])
    with torch.no_grad():
        logits = model(ids).logits[0, :-1].double()
    return torch.log_softmax(logits, dim=-1).gather(1, ids[0, 1:, None])[:, 0].numpy()


@pytest.fixture(scope="module")
def trained_run(polyepo_bin, tmp_path_factory):
    run = tmp_path_factory.mktemp("roundtrip") / "run"
    subprocess.run(
        [str(polyepo_bin), "train", "--out", str(run), "--quiet",
         "--set", "run.steps=2", "--set", "run.checkpoint_every=0", "--set", "warmup.steps=20",
         "--set", "rollout.prompts_per_step=2", "--set", "rollout.samples_per_prompt=4",
         "--set", "algorithm.set_size=2", "--set", "task.reach.train_prompts=8",
         "--set", "task.reach.eval_prompts=4"],
        check=True, capture_output=True,
    )
    return run


def assert_round_trip(binary, run, texts, atol):
    final = run / "final"
    model = transformers.AutoModelForCausalLM.from_pretrained(final, dtype=torch.float32)
    tokenizer = transformers.AutoTokenizer.from_pretrained(final)
    assert type(model).__name__ == "LlamaForCausalLM"
    for text in texts:
        ours = polyepo_logprobs(binary, run, text)
        assert tokenizer(text)["input_ids"] == ours["tokens"], text
        theirs = transformers_logprobs(model, ours["tokens"])
        np.testing.assert_allclose(theirs, ours["logprobs"], atol=atol, rtol=0, err_msg=text)
    return tokenizer


def test_exported_tiny_model_matches_polyepo(polyepo_bin, trained_run):
    tokenizer = assert_round_trip(polyepo_bin, trained_run, TEXTS, atol=2e-4)
    assert tokenizer.eos_token == "<eos>"


def test_exported_smollm2_matches_polyepo(polyepo_bin, smollm2, tmp_path):
    # The real model: GGUF in, LoRA trained one step and merged, HF layout out (byte-level
    # BPE, chat special tokens, 30 layers of f32 sums: hence the looser tolerance).
    run = tmp_path / "run"
    subprocess.run(
        [str(polyepo_bin), "train", "--out", str(run), "--quiet", "--set", f"model.source={smollm2}",
         "--set", "task.kind=digits", "--set", "run.steps=1", "--set", "run.checkpoint_every=0",
         "--set", "rollout.prompts_per_step=2", "--set", "rollout.samples_per_prompt=2",
         "--set", "algorithm.set_size=1", "--set", "rollout.max_new_tokens=4"],
        check=True, capture_output=True,
    )
    texts = ["What is 2+3? The answer is 5.", "<|im_start|>user\nHi<|im_end|>"]
    tokenizer = assert_round_trip(polyepo_bin, run, texts, atol=1e-3)
    # The chat model's own end of turn, and generation stops on every stop token.
    assert tokenizer.eos_token == "<|im_end|>"
    generation = transformers.GenerationConfig.from_pretrained(run / "final")
    stops = set(tokenizer.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>"]))
    assert stops <= set(generation.eos_token_id)
