"""The llama.cpp peer of `polyepo bench`'s single-stream sampling: the same Q4_1 GGUF, run by
llama.cpp (through llama-cpp-python, built from source from PyPI) with its own quantized
kernels, the same thread count.

    python scripts/peers/llamacpp_bench.py [--model models/...gguf] [--threads 2]

Prints tokens/s for one stream of 128 new tokens at temperature 1 (end-of-text suppressed so
every run generates them all), best of three runs after a warm-up, and the peak RSS."""

from __future__ import annotations

import argparse
import resource
import time

import llama_cpp


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 * 1024)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/SmolLM2-135M-Instruct.Q4_1.gguf")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--new-tokens", type=int, default=128)
    args = parser.parse_args()
    llm = llama_cpp.Llama(model_path=args.model, n_threads=args.threads, n_threads_batch=args.threads,
                          n_ctx=512, seed=0, verbose=False)
    print(f"peer: llama-cpp-python {llama_cpp.__version__}, {args.threads} threads")
    prompt = "<|im_start|>user\nTell me a long story about a robot.<|im_end|>\n<|im_start|>assistant\n"
    no_eos = {llm.token_eos(): -float("inf")}
    best = 0.0
    for run in range(4):
        start = time.perf_counter()
        out = llm.create_completion(prompt, max_tokens=args.new_tokens, temperature=1.0, top_p=1.0,
                                    top_k=0, logit_bias=no_eos, seed=run)
        secs = time.perf_counter() - start
        n = out["usage"]["completion_tokens"]
        if run > 0:  # the first run warms up
            best = max(best, n / secs)
            print(f"peer llama.cpp sample batch   1 (Q4_1): {n} tokens in {secs:.2f} s = {n / secs:.1f} tokens/s")
    print(f"peer llama.cpp best {best:.1f} tokens/s, peak RSS {peak_rss_gib():.2f} GiB")


if __name__ == "__main__":
    main()
