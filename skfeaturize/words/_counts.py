"""Corpus statistics of a WordVectorFeaturizer's training texts, built batch by batch.

``fit`` counts one batch; ``partial_fit`` adds batch after batch; both then derive the fitted state (idf,
word probabilities, the OOV statistics, the unknown-word vector, the SIF component) from these counts alone,
so ``partial_fit`` over the halves of a corpus equals ``fit`` on all of it. For ``sif`` the documents' type
counts are kept too (about 12 bytes per distinct word per document): the SIF component is computed from the
training documents' vectors, which depend on every batch's word probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class WordCounts:
    words: list = field(default_factory=list)  # every word type seen, in order of first appearance
    rows: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # its table row, -1: OOV
    count: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # tokens of the type
    df: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # documents holding it
    n_docs: int = 0
    n_tokens: int = 0
    n_docs_without_known: int = 0  # documents with no in-vocabulary token
    n_docs_without_tokens: int = 0
    doc_types: object = None  # CSR documents × types (kept for sif), or None

    def add(self, enc, keep_documents: bool) -> None:
        """Add one encoded batch (see :class:`skfeaturize.words._encode.EncodedBatch`)."""
        from ._pooling import count_matrix

        index = {w: i for i, w in enumerate(self.words)}
        new = [w for w in enc.uniques if w not in index]
        for w in new:
            index[w] = len(self.words)
            self.words.append(w)
        gid = np.fromiter((index[w] for w in enc.uniques), np.int64, len(enc.uniques))
        n_types = len(self.words)
        self.rows = np.concatenate([self.rows, np.full(len(new), -1, np.int64)])
        self.rows[gid] = enc.rows
        tokens = gid[enc.codes]
        counts = count_matrix(tokens, enc.lengths, n_types)
        self.count = _grow(self.count, n_types) + np.bincount(tokens, minlength=n_types)
        self.df = _grow(self.df, n_types) + np.asarray((counts > 0).sum(axis=0)).ravel().astype(np.int64)
        known_per_doc = counts @ (self.rows >= 0).astype(np.float64)
        self.n_docs += int(enc.lengths.size)
        self.n_tokens += int(enc.codes.size)
        self.n_docs_without_known += int((known_per_doc == 0).sum())
        self.n_docs_without_tokens += int((enc.lengths == 0).sum())
        if keep_documents:
            self.doc_types = counts if self.doc_types is None else _vstack(self.doc_types, counts)

    @property
    def oov(self) -> np.ndarray:
        return self.rows < 0


def _grow(a: np.ndarray, n: int) -> np.ndarray:
    return np.concatenate([a, np.zeros(n - a.size, a.dtype)]) if a.size < n else a


def _vstack(a, b):
    from .._optional import import_optional

    sp = import_optional("scipy.sparse", "words")

    a = sp.csr_matrix((a.data, a.indices, a.indptr), shape=(a.shape[0], b.shape[1]))
    return sp.vstack([a, b], format="csr")
