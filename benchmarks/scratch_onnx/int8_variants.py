"""Accuracy and speed of dynamic int8 variants of the MiniLM tap graph (7 mean-pooled layers) against the
fp32 graph, on mixed real texts: which quantize_dynamic options keep the features closest."""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import QuantType, quantize_dynamic

sys.path.insert(0, os.path.dirname(__file__))
from packing_research import minilm, ort_pooled, ort_runners, windows_of  # noqa: E402
from texts import mixed_texts  # noqa: E402


class Runner:
    def __init__(self, path, threads=2):
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        self.s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        self.names = [i.name for i in self.s.get_inputs()]

    def __call__(self, ids, mask, tt):
        feed = dict(zip(["input_ids", "attention_mask", "token_type_ids"], (ids, mask, tt), strict=False))
        return self.s.run(None, {k: v for k, v in feed.items() if k in self.names})


def cos(a, b):
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def main():
    net, tok = minilm()
    windows = windows_of(tok, mixed_texts(int(sys.argv[1]) if len(sys.argv) > 1 else 500))
    fp32, _, _ = ort_runners(net)
    src = str(fp32.path)
    tmp = tempfile.mkdtemp()
    variants = {
        "MatMul, per-tensor (engine default)": {"op_types_to_quantize": ["MatMul", "Attention"]},
        "MatMul, per-channel": {"op_types_to_quantize": ["MatMul", "Attention"], "per_channel": True},
        "all dynamic ops (incl. Gather)": {},
    }
    ref = ort_pooled(fp32, windows)
    t0 = time.perf_counter()
    ort_pooled(fp32, windows)
    t_fp32 = time.perf_counter() - t0
    print(f"{len(windows)} texts; fp32 ORT {t_fp32:.2f} s")
    print(
        f"{'variant':38s} {'time s':>7s} {'vs fp32':>7s} {'last-layer cos mean/min':>24s} "
        f"{'all-layer cos min':>18s}"
    )
    for name, opts in variants.items():
        dst = os.path.join(tmp, f"{abs(hash(name))}.onnx")
        quantize_dynamic(src, dst, weight_type=QuantType.QInt8, **opts)
        r = Runner(dst)
        out = ort_pooled(r, windows)
        ts = []
        for _ in range(3):
            t0 = time.perf_counter()
            ort_pooled(r, windows)
            ts.append(time.perf_counter() - t0)
        c_last = cos(out[:, -1], ref[:, -1])
        c_all = cos(out[:, 1:], ref[:, 1:])
        print(
            f"{name:38s} {statistics.median(ts):7.2f} {t_fp32 / statistics.median(ts):7.2f} "
            f"{c_last.mean():12.4f} / {c_last.min():.4f} {c_all.min():18.4f}"
        )


if __name__ == "__main__":
    main()
