"""The PyTorch / transformers peer of `polyepo bench`: the same SmolLM2 GGUF (dequantized to
f32 by transformers), the same work, the same thread count.

    python scripts/peers/transformers_bench.py [--model models/...gguf] [--threads 2]

Prints sampling tokens/s at batch 1 / 8 / 32 (128 new tokens, temperature 1), training
forward+backward tokens/s on 8 x 256 tokens (mean next-token log-prob, second of two rounds),
one AdamW step over every parameter, and the peak RSS of the process."""

from __future__ import annotations

import argparse
import resource
import time

import torch
import transformers


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 * 1024)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/SmolLM2-135M-Instruct.Q4_1.gguf")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--new-tokens", type=int, default=128)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    directory, name = args.model.rsplit("/", 1)
    tokenizer = transformers.AutoTokenizer.from_pretrained(directory, gguf_file=name)
    model = transformers.AutoModelForCausalLM.from_pretrained(directory, gguf_file=name, dtype=torch.float32)
    params = sum(p.numel() for p in model.parameters())
    print(f"peer: torch {torch.__version__}, transformers {transformers.__version__}, "
          f"{params / 1e6:.1f}M parameters, {torch.get_num_threads()} threads")

    model.eval()
    prompt = tokenizer("Once upon a time", return_tensors="pt")
    for b in [int(x) for x in args.batches.split(",")]:
        ids = prompt["input_ids"].repeat(b, 1)
        mask = prompt["attention_mask"].repeat(b, 1)
        start = time.perf_counter()
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=mask, do_sample=True, temperature=1.0,
                                 top_p=1.0, top_k=0, max_new_tokens=args.new_tokens,
                                 min_new_tokens=args.new_tokens, pad_token_id=tokenizer.eos_token_id)
        secs = time.perf_counter() - start
        n = (out.shape[1] - ids.shape[1]) * b
        print(f"peer sample batch {b:>3}: {n} tokens in {secs:.2f} s = {n / secs:.1f} tokens/s")

    model.train()
    rows = torch.tensor([[((r * 7919 + i * 104_729) % 49_000) + 100 for i in range(256)] for r in range(8)])
    for round in range(2):
        model.zero_grad(set_to_none=True)
        start = time.perf_counter()
        logits = model(rows).logits[:, :-1].float()
        lp = torch.log_softmax(logits, dim=-1).gather(2, rows[:, 1:, None])[..., 0]
        loss = -lp.mean()
        fwd = time.perf_counter() - start
        loss.backward()
        secs = time.perf_counter() - start
        print(f"peer train fwd+bwd 8x256 (round {round + 1}): {secs:.2f} s (fwd {fwd:.2f} s) = "
              f"{8 * 256 / secs:.1f} tokens/s, peak RSS {peak_rss_gib():.2f} GiB")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6, foreach=True)
    for round in range(3):
        start = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.3)
        opt.step()
        print(f"peer adamw step over {params / 1e6:.1f}M parameters (round {round + 1}, incl. grad-norm clip): "
              f"{time.perf_counter() - start:.3f} s, peak RSS {peak_rss_gib():.2f} GiB")


if __name__ == "__main__":
    main()
