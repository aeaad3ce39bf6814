"""Times polyepo.set_advantages on a training step's batch: 1,024 groups x 16 samples,
set size 4, exact polychromatic, input conversion included (Python call to numpy result).

    python python/bench/bench_advantages.py [--groups 1024] [--samples 16] [--repeat 200]

Prints the median and 90th-percentile time per call for int group ids (numpy int64)
and for verl-style string uids (a numpy object array of str), and for GRPO on the same
batch as a floor."""

from __future__ import annotations

import argparse
import statistics
import time
import uuid

import numpy as np

import polyepo


def timed(fn, repeat):
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    times.sort()
    return statistics.median(times), times[int(0.9 * (len(times) - 1))]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=1024)
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--set-size", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    total = args.groups * args.samples
    rewards = (rng.random(total) < 0.5).astype(np.float32)
    clusters = rng.integers(0, 6, total)
    clusters[rng.random(total) < 0.1] = 100
    int_ids = np.repeat(np.arange(args.groups), args.samples)
    uids = np.array([str(uuid.uuid4()) for _ in range(args.groups)], dtype=object).repeat(args.samples)
    cases = {
        "polychromatic, int64 group ids": lambda: polyepo.set_advantages(rewards, clusters, int_ids, args.set_size),
        "polychromatic, str uids": lambda: polyepo.set_advantages(rewards, clusters, uids, args.set_size),
        "grpo, int64 group ids": lambda: polyepo.grpo_advantages(rewards, int_ids),
    }
    print(f"{args.groups} groups x {args.samples} samples, n = {args.set_size}, {args.repeat} calls each")
    for name, fn in cases.items():
        median, p90 = timed(fn, args.repeat)
        print(f"  {name:34s} median {median * 1e3:7.3f} ms   p90 {p90 * 1e3:7.3f} ms")


if __name__ == "__main__":
    main()
