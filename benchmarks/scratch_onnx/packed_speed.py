"""Packed (unpadded) vs padded length-sorted MiniLM forward on ~1000 mixed real texts, every hidden layer
kept. Round-robin repeats; prints median and min seconds and the speed ratio of each.

    PYTHONPATH=$PWD python benchmarks/scratch_onnx/packed_speed.py [--n 1000] [--repeats 7] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
from packing_research import max_diff, minilm, padded, varlen, windows_of  # noqa: E402
from texts import mixed_texts  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)  # a benchmark script, not the library
    net, tok = minilm()
    windows = windows_of(tok, mixed_texts(args.n))
    lengths = np.array([len(w) for w in windows])
    contenders = {
        "padded sorted bs32": lambda: padded(net, windows, 32),
        "padded sorted bs128": lambda: padded(net, windows, 128),
        "packed rows<=2048": lambda: varlen(net, windows, 2048),
        "packed rows<=4096": lambda: varlen(net, windows, 4096),
        "packed rows<=8192": lambda: varlen(net, windows, 8192),
        "packed rows<=16384": lambda: varlen(net, windows, 16384),
    }
    outs = {k: fn() for k, fn in contenders.items()}
    times = {k: [] for k in contenders}
    for _ in range(args.repeats):
        for k, fn in contenders.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    ref = outs["padded sorted bs32"]
    base_med, base_min = statistics.median(times["padded sorted bs32"]), min(times["padded sorted bs32"])
    print(
        f"\nMiniLM-L6, {len(windows)} texts, {lengths.sum()} tokens (mean {lengths.mean():.1f}, "
        f"max {lengths.max()}), "
        f"all 7 hidden states, torch threads {torch.get_num_threads()}, {args.repeats} round-robin repeats\n"
    )
    print(
        f"{'contender':22s} {'median s':>9s} {'min s':>7s} {'tokens/s (min)':>14s} {'vs bs32 median':>14s} "
        f"{'vs bs32 min':>11s} {'max |diff| all layers':>21s}"
    )
    for k in contenders:
        med, mn = statistics.median(times[k]), min(times[k])
        print(
            f"{k:22s} {med:9.2f} {mn:7.2f} {lengths.sum() / mn:14.0f} {base_med / med:14.2f} "
            f"{base_min / mn:11.2f} "
            f"{max_diff(outs[k], ref):21.2e}"
        )


if __name__ == "__main__":
    main()
