"""Bulk job overhead and memory: `skfeaturize.jobs.embed` vs the in-process featurizer on the same images.

1. Throughput: ``ImageFeaturizer.transform(paths)`` (the bare in-process featurizer, model loaded) against
   ``embed(folder, out.parquet)`` (walk, content hashes, chunking, Parquet shards, fsynced manifest) with
   the same featurizer; the features must be equal. Overhead = job time / featurizer time - 1.
2. Peak memory: the job in a fresh subprocess per input size (1x, 4x, 16x), peak RSS from
   ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` reported by the child; and, for contrast, the naive
   ``transform(all_paths)`` + ``np.save`` at the same sizes; with ``--ray``, also the Ray engine's driver
   (2 actors, a bounded number of chunks in flight; the actors are separate processes).

Run: ``python benchmarks/embed_job.py`` (a few minutes on 2 CPU cores); ``--n``, ``--mem-n``, ``--backbone``
for larger runs. Saves ``benchmarks/results/embed_job.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def make_images(folder: Path, n: int, size: int = 64, seed: int = 0) -> None:
    from PIL import Image

    rng = np.random.default_rng(seed)
    for i in range(n):
        sub = folder / f"d{i % 7}"
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(sub / f"{i:06d}.png")


_CHILD = r"""
import os, resource, sys, time, json
sys.path.insert(0, {repo!r})
mode, folder, out, backbone = sys.argv[1:5]
import numpy as np
t = time.perf_counter()
if mode in ("job", "ray"):
    from skfeaturize.jobs import embed
    extra = {{"engine": "ray", "concurrency": 2}} if mode == "ray" else {{}}
    embed(folder, out, model=backbone, params={{"weights": None}}, chunk_size=64, quiet=True, **extra)
else:
    from skfeaturize import ImageFeaturizer
    from skfeaturize.jobs._inputs import _walk, IMAGE_EXTENSIONS
    paths = list(_walk(folder, IMAGE_EXTENSIONS))
    X = ImageFeaturizer(backbone, weights=None).fit().transform(paths)
    np.save(out, X)
print("RESULT " + json.dumps({{"maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "seconds": time.perf_counter() - t}}))
"""


def child(mode: str, folder: Path, out: Path, backbone: str) -> dict:
    code = _CHILD.format(repo=str(REPO))
    r = subprocess.run([sys.executable, "-c", code, mode, str(folder), str(out), backbone],
                       capture_output=True, text=True, check=True,
                       env={**os.environ, "HF_HUB_OFFLINE": "1"})
    # Ray forwards its workers' output to this stdout too: the result is the line that says so
    return json.loads(next(ln for ln in r.stdout.splitlines() if ln.startswith("RESULT "))[len("RESULT "):])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=32, help="images for the throughput comparison")
    ap.add_argument("--backbone", default="resnet18", help="backbone for throughput (random weights)")
    ap.add_argument("--mem-n", type=int, default=20, help="1x size for the memory scaling runs")
    ap.add_argument("--mem-backbone", default="timm:test_resnet")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--ray", action="store_true", help="also measure the Ray engine's driver")
    args = ap.parse_args()

    from skfeaturize import ImageFeaturizer
    from skfeaturize.jobs import embed, read_embeddings
    from skfeaturize.jobs._inputs import IMAGE_EXTENSIONS, _walk

    results: dict = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_images(tmp / "imgs", args.n, size=96)
        paths = list(_walk(str(tmp / "imgs"), IMAGE_EXTENSIONS))
        f = ImageFeaturizer(args.backbone, weights=None).fit()
        f.transform(paths[:4])  # load the model once for both
        t_feat, t_job = [], []
        for r in range(args.repeats):
            t = time.perf_counter()
            X = f.transform(paths)
            t_feat.append(time.perf_counter() - t)
            t = time.perf_counter()
            embed(tmp / "imgs", tmp / f"o{r}.parquet", featurizer=f, chunk_size=64, quiet=True)
            t_job.append(time.perf_counter() - t)
        ids, _, Xj = read_embeddings(tmp / "o0.parquet")
        order = {p: i for i, p in enumerate(paths)}
        diff = float(np.abs(Xj - X[[order[str(tmp / 'imgs' / i)] for i in ids]]).max())
        feat, job = min(t_feat), min(t_job)
        results["throughput"] = {
            "backbone": args.backbone, "n_images": args.n, "featurizer_s": feat, "job_s": job,
            "featurizer_items_per_s": args.n / feat, "job_items_per_s": args.n / job,
            "overhead_pct": 100 * (job / feat - 1), "max_abs_diff": diff,
        }

        mem = []
        for mult in (1, 4, 16):
            n = args.mem_n * mult
            folder = tmp / f"mem{mult}"
            make_images(folder, n, size=48, seed=mult)
            job_r = child("job", folder, tmp / f"mem{mult}.parquet", args.mem_backbone)
            naive_r = child("naive", folder, tmp / f"mem{mult}.npy", args.mem_backbone)
            mem.append({"multiple": mult, "n_images": n, "job_peak_rss_mb": job_r["maxrss_mb"],
                        "job_s": job_r["seconds"], "naive_peak_rss_mb": naive_r["maxrss_mb"],
                        "naive_s": naive_r["seconds"]})
            if args.ray:
                ray_r = child("ray", folder, tmp / f"ray{mult}.parquet", args.mem_backbone)
                mem[-1].update({"ray_driver_peak_rss_mb": ray_r["maxrss_mb"], "ray_s": ray_r["seconds"]})
        results["memory"] = {"backbone": args.mem_backbone, "chunk_size": 64, "rows": mem}

    t = results["throughput"]
    print(f"\nThroughput ({t['backbone']}, random weights, {t['n_images']} images, CPU, best of "
          f"{args.repeats})")
    print(f"{'':24}{'seconds':>10}{'items/s':>10}")
    print(f"{'in-process featurizer':24}{t['featurizer_s']:>10.2f}{t['featurizer_items_per_s']:>10.1f}")
    print(f"{'skfeaturize embed job':24}{t['job_s']:>10.2f}{t['job_items_per_s']:>10.1f}")
    print(f"job overhead: {t['overhead_pct']:+.1f}%   max |job - featurizer| = {t['max_abs_diff']:.2e}")
    print(f"\nPeak RSS by input size ({args.mem_backbone}, chunk 64, one subprocess per run)")
    print(f"{'size':>5}{'images':>8}{'job MB':>10}{'naive MB':>10}{'job s':>8}{'naive s':>9}"
          + (f"{'ray driver MB':>15}{'ray s':>8}" if args.ray else ""))
    for r in mem:
        print(f"{str(r['multiple']) + 'x':>5}{r['n_images']:>8}{r['job_peak_rss_mb']:>10.0f}"
              f"{r['naive_peak_rss_mb']:>10.0f}{r['job_s']:>8.1f}{r['naive_s']:>9.1f}"
              + (f"{r['ray_driver_peak_rss_mb']:>15.0f}{r['ray_s']:>8.1f}" if args.ray else ""))
    out = REPO / "benchmarks" / "results" / "embed_job.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"\nsaved {out.relative_to(REPO)}")
    if diff > 1e-5:
        raise SystemExit(f"features differ between the job and the featurizer: {diff}")


if __name__ == "__main__":
    main()
