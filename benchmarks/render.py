"""Render saved benchmark results (benchmarks/results/*.json) as Markdown tables for the docs.

    python benchmarks/render.py image_throughput grid_search
"""

from __future__ import annotations

import json
import os
import sys

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
COLUMNS = {
    "image_throughput": ["workload", "contender", "images/s", "vs bare bs32", "max |diff|", "GFLOP/s",
                         "% of matmul", "note"],
    "grid_search": ["workload", "contender", "seconds", "speed-up vs no cache", "max |score diff|", "note"],
}


def fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
    return "" if v is None else str(v)


def render(name: str) -> str:
    with open(os.path.join(RESULTS, f"{name}.json")) as f:
        data = json.load(f)
    cols = [c for c in COLUMNS[name] if any(c in r for r in data["rows"])]
    esc = lambda text: text.replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(esc(c) for c in cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(esc(fmt(r.get(c))) for c in cols) + " |" for r in data["rows"]]
    m = data.get("machine", {})
    lines.append(f"\n<sub>{data.get('date')}, {m.get('cpus')} CPUs, torch {m.get('torch')}, "
                 f"threads {m.get('threads')}, CUDA {m.get('cuda')}; args {data.get('args')}</sub>")
    return "\n".join(lines)


if __name__ == "__main__":
    for name in sys.argv[1:] or list(COLUMNS):
        print(f"### {name}\n\n{render(name)}\n")
