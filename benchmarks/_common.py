"""Helpers shared by the benchmark scripts: timing, tables, JSON results, machine description."""

from __future__ import annotations

import json
import os
import platform
import time

RESULTS = os.path.join(os.path.dirname(__file__), "results")


def best_of(fn, repeats: int = 3):
    """Run ``fn`` ``repeats`` times; return (best seconds, last result)."""
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def machine() -> dict:
    info = {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()}
    try:
        import torch

        info["torch"] = torch.__version__
        info["threads"] = torch.get_num_threads()
        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        pass
    return info


def print_table(rows: list[dict], columns: list[str]) -> None:
    widths = {c: max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    print("  ".join("-" * widths[c] for c in columns))
    for r in rows:
        print("  ".join(_fmt(r.get(c)).ljust(widths[c]) for c in columns))


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def save(name: str, payload: dict) -> str:
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, f"{name}.json")
    payload = {"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M:%S"), **payload}
    with open(path, "w") as f:
        json.dump(payload, f, indent=2, default=str)
    print(f"\nsaved {path}")
    return path


def matmul_gflops(n: int = 1024, repeats: int = 5) -> float:
    """The machine's measured fp32 matmul rate (GFLOP/s) on an ``n³`` product: what the CPU can do, the
    yardstick for each contender's useful rate."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    seconds, _ = best_of(lambda: a @ b, repeats)
    return 2 * n ** 3 / seconds / 1e9


def forward_gflop(fn) -> float:
    """GFLOP of one call of ``fn()`` (torch ops), counted by ``torch.utils.flop_counter``: the useful work
    a contender does per input, whatever engine then runs it."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 1e9
