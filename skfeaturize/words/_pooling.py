"""Document vectors from word types: everything is decided per word *type*, then one sparse product.

Per type: its vector under the OOV policy, whether it counts, and its weight (1, idf, or the SIF weight).
A CSR (documents × types) count matrix times the (types × (dim + 1)) matrix ``[weight·vector | weight]``
gives, in one pass over the tokens, the weighted sums and their denominators. ``max`` is a segment maximum
over the kept tokens' rows, in bounded chunks. The same functions pool a transform batch and, at fit, the
training corpus (for the SIF component), so both follow one rule.
"""

from __future__ import annotations

import hashlib

import numpy as np

HASH_SEED_BYTES = 8


def stable_hash(token: str, seed: int) -> int:
    """A 64-bit hash of ``token`` that is the same in every process (Python's ``hash`` is salted)."""
    data = token.encode("utf-8", "surrogatepass")  # same bytes as utf-8 for valid text; lone surrogates too
    digest = hashlib.blake2b(data, digest_size=HASH_SEED_BYTES, key=str(int(seed)).encode()).digest()
    return int.from_bytes(digest, "little")


def hash_matrix(buckets: int, dim: int, scale: float, seed: int) -> np.ndarray:
    """The ``oov="hash"`` vectors: ``buckets`` deterministic random vectors at the table's scale."""
    rng = np.random.default_rng(int(seed))
    return (rng.standard_normal((int(buckets), dim)) * scale).astype(np.float32)


def count_matrix(codes: np.ndarray, lengths: np.ndarray, n_types: int):
    """Documents × types token counts (CSR; duplicates are summed by the products)."""
    from .._optional import import_optional

    sp = import_optional("scipy.sparse", "words")

    bounds = np.zeros(lengths.size + 1, np.int64)
    np.cumsum(lengths, out=bounds[1:])
    return sp.csr_matrix((np.ones(codes.size), codes, bounds), shape=(lengths.size, n_types))


def lookup(words: list, known: list) -> np.ndarray:
    """Position of each of ``words`` in ``known`` (-1 if absent)."""
    import pandas as pd

    if not words or not len(known):
        return np.full(len(words), -1, np.int64)
    return pd.Index(list(known), dtype=object).get_indexer(pd.Index(words, dtype=object)).astype(np.int64)


def type_vectors(f, uniques: list, rows: np.ndarray, table) -> tuple[np.ndarray, np.ndarray]:
    """Per type, its vector under ``f.oov`` and whether it counts (a dropped type: zero, False)."""
    n_types, dim = len(uniques), table.dim
    vectors = np.zeros((n_types, dim), np.float32)
    oov = rows < 0
    counted = ~oov
    known = np.flatnonzero(counted)
    vectors[known] = table.rows(rows[known])
    idx = np.flatnonzero(oov)
    if not idx.size or f.oov in ("ignore", "error"):
        return vectors, counted
    words = [uniques[i] for i in idx]
    if f.oov == "unk":
        vectors[idx] = f.unk_vector_
    elif f.oov == "hash":
        buckets = np.fromiter((stable_hash(w, f.random_state) % f.hash_buckets for w in words), np.int64,
                              len(words))
        vectors[idx] = hash_matrix(f.hash_buckets, dim, f.hash_scale_, f.random_state)[buckets]
    elif f.oov == "subword":
        from ..backends import gensim as gensim_backend

        vectors[idx] = gensim_backend.subword_vectors(table.subword_kv, words)
    elif f.oov == "learn":
        pos = lookup(words, f.learned_words_)
        keep = pos >= 0
        idx = idx[keep]
        vectors[idx] = f.learned_vectors_[pos[keep]]
    counted[idx] = True  # "zero": counted, with a zero vector
    return vectors, counted


def type_weights(f, pooling: str, uniques: list) -> np.ndarray:
    """Per type: 1, its idf (``tfidf``), or its SIF weight ``a / (a + p(w))`` (``sif``)."""
    if pooling == "tfidf":
        pos = lookup(uniques, f.vocabulary_)
        max_idf = np.log(1 + f.n_fit_documents_) + 1.0  # smooth idf of a word in no document
        return np.where(pos >= 0, f.idf_[np.maximum(pos, 0)], max_idf)
    if pooling == "sif":
        pos = lookup(uniques, f.vocabulary_)
        floor = 1.0 / max(f.n_fit_tokens_, 1)  # an unseen word counts as seen once
        p = np.where(pos >= 0, f.word_prob_[np.maximum(pos, 0)], floor)
        return f.sif_a / (f.sif_a + p)
    return np.ones(len(uniques))


def weighted_mean(counts, vectors: np.ndarray, weights: np.ndarray, pooling: str) -> np.ndarray:
    """``mean``/``tfidf``/``sif`` (weighted means) or ``sum`` of the types' vectors per document, float64."""
    dim = vectors.shape[1]
    right = np.empty((vectors.shape[0], dim + 1))
    np.multiply(weights[:, None], vectors, out=right[:, :dim])
    right[:, dim] = weights
    summed = counts @ right
    out, denom = summed[:, :dim], summed[:, dim]
    if pooling == "sum":
        return out
    return np.divide(out, denom[:, None], out=np.zeros_like(out), where=denom[:, None] > 0)


def remove_component(out: np.ndarray, component) -> np.ndarray:
    if component is None:
        return out
    u = np.asarray(component, np.float64)
    return out - np.outer(out @ u, u)


def max_pool(vectors: np.ndarray, counted: np.ndarray, codes: np.ndarray, lengths: np.ndarray,
             chunk_tokens: int = 1 << 18) -> np.ndarray:
    """Per document, the element-wise maximum of its counted tokens' vectors (zero when none), gathering at
    most about ``chunk_tokens`` token rows at a time."""
    bounds = np.zeros(lengths.size + 1, np.int64)
    np.cumsum(lengths, out=bounds[1:])
    n, dim = lengths.size, vectors.shape[1]
    out = np.zeros((n, dim), np.float32)
    start = 0
    while start < n:  # whole documents per chunk (a long document is a chunk of its own)
        stop = max(int(np.searchsorted(bounds, bounds[start] + chunk_tokens, side="right")) - 1, start + 1)
        tok = codes[bounds[start]:bounds[stop]]
        kept = counted[tok]
        cum = np.zeros(tok.size + 1, np.int64)
        np.cumsum(kept, out=cum[1:])
        kept_bounds = cum[bounds[start:stop + 1] - bounds[start]]  # documents' ranges of kept tokens
        nonempty = np.flatnonzero(np.diff(kept_bounds) > 0)
        if nonempty.size:  # a nonempty document's segment ends where the next nonempty one starts
            out[start + nonempty] = np.maximum.reduceat(vectors[tok[kept]], kept_bounds[nonempty], axis=0)
        start = stop
    return out


def first_principal_component(doc_vectors: np.ndarray) -> np.ndarray | None:
    """SIF's common component: the first right singular vector of the non-zero document vectors (sign fixed:
    its largest entry positive), or None when there are none."""
    nonzero = np.abs(doc_vectors).sum(1) > 0
    if not nonzero.any():
        return None
    _, _, vt = np.linalg.svd(doc_vectors[nonzero].astype(np.float64), full_matrices=False)
    comp = vt[0]
    return (comp * np.sign(comp[np.argmax(np.abs(comp))])).astype(np.float32)
