"""Token streams → table rows in a few C-level passes, for :class:`WordVectorFeaturizer`.

A batch of documents becomes one :class:`EncodedBatch`: tokens per document, a word-type code per token
(types numbered in order of first appearance, like ``pandas.factorize``), the types' strings and their
table rows (``-1``: out of vocabulary).

The per-token work is done on one string: the batch's tokens are joined with a unit separator (one
``str.join``), normalised once for the whole batch (NFC / ``’`` → ``'`` / lowercase; ASCII text only
needs ``lower``), encoded to UTF-8 and handed to Arrow as a string array without creating a Python object
per token; Arrow's hash kernels then number the types (``dictionary_encode``) and look the types up in the
table (``index_in``, exact byte equality = exact ``str`` equality, first occurrence of a duplicated word
wins). When that is not possible (a token holds the separator or a lone surrogate, a word list that Arrow
cannot hold) the same result is computed with ``pandas.factorize`` on Python strings.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from itertools import chain

import numpy as np

SEP = "\x1f"
USE_ARROW = True  # False: always the pandas path (for tests comparing both)


@dataclass
class EncodedBatch:
    """``lengths[i]`` tokens for document ``i``; ``codes[t]``: the type of token ``t`` (documents'
    tokens in order); ``uniques[k]``: the type's string; ``rows[k]``: its table row or ``-1``."""

    lengths: np.ndarray
    codes: np.ndarray
    uniques: list
    rows: np.ndarray

    @property
    def n_tokens(self) -> int:
        return int(self.codes.size)

    def document_tokens(self, i: int) -> list:
        """Tokens of document ``i`` (normalised), for error messages."""
        start = int(self.lengths[:i].sum())
        return [self.uniques[c] for c in self.codes[start:start + int(self.lengths[i])]]


def normalize_joined(joined: str, lowercase: bool) -> str:
    """Normalise tokens joined by :data:`SEP` in one pass. The separator is a starter with no
    composition and not cased, so NFC and lowercasing (final sigma included) act on each token as if it
    were alone."""
    if not joined.isascii():
        joined = unicodedata.normalize("NFC", joined).replace("\u2019", "'")
    return joined.lower() if lowercase else joined


def _arrow_vocab(table):
    """The table's words, each followed by :data:`SEP`, as an Arrow ``large_string`` array (built once per
    table), or ``None`` when Arrow cannot hold them."""
    memo = table.__dict__.get("_arrow_words")
    if memo is None:
        try:
            import pyarrow as pa

            memo = (pa.array([w + SEP for w in table.words], pa.large_string()),)
        except Exception:  # noqa: BLE001 - e.g. a word with a lone surrogate: use the Python path
            memo = (None,)
        table.__dict__["_arrow_words"] = memo
    return memo[0]


def _encode_arrow(joined: str, n: int, table):
    """(codes, uniques, rows) of the ``n`` tokens in ``joined`` with Arrow, or ``None``.

    ``joined + SEP`` is cut after each separator, so every Arrow string is a token followed by
    :data:`SEP` (no copy to drop the separators); the vocabulary carries the same suffix."""
    if not USE_ARROW:
        return None
    vocab = _arrow_vocab(table)
    if vocab is None:
        return None
    try:
        data = (joined + SEP).encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates
        return None
    import pyarrow as pa
    import pyarrow.compute as pc

    buf = np.frombuffer(data, np.uint8)
    ends = np.flatnonzero(buf == 0x1F)
    if ends.size != n:
        return None
    offsets = np.empty(n + 1, np.int64)
    offsets[0] = 0
    np.add(ends, 1, out=offsets[1:])
    arr = pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))
    enc = pc.dictionary_encode(arr)
    codes = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    dictionary = enc.dictionary
    found = pc.fill_null(pc.index_in(dictionary, value_set=vocab), -1)
    rows = found.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    return codes, [u[:-1] for u in dictionary.to_pylist()], rows


def _encode_python(flat: list, table):
    import pandas as pd

    codes, uniques = pd.factorize(pd.Series(flat, dtype=object))
    uniques = list(uniques)
    return codes.astype(np.int64), uniques, table.lookup(uniques)


def encode(samples: list, table, tokenizer, lowercase: bool) -> EncodedBatch:
    """Tokenize (strings) or normalise (token lists) ``samples`` and encode them against ``table``.

    Token lists must hold only ``str`` (checked by the caller)."""
    from ._tokenize import normalize_tokens, tokenize_documents

    n_docs = len(samples)
    all_lists = all(not isinstance(s, str) for s in samples)
    if all_lists:
        docs = samples
        needs_norm = True
    else:
        docs = tokenize_documents(samples, tokenizer, lowercase)
        needs_norm = False
    lengths = np.fromiter(map(len, docs), np.int64, n_docs)
    n = int(lengths.sum())
    if n == 0:
        return EncodedBatch(lengths, np.zeros(0, np.int64), [], np.zeros(0, np.int64))
    joined = SEP.join(chain.from_iterable(docs))
    if needs_norm:
        joined = normalize_joined(joined, lowercase)
    out = _encode_arrow(joined, n, table)  # None when a token holds the separator, or no Arrow
    if out is not None:
        return EncodedBatch(lengths, *out)
    if joined.count(SEP) == n - 1:
        flat = joined.split(SEP)
    else:  # a token holds the separator itself: token by token
        if needs_norm:
            docs = [normalize_tokens(d, lowercase) for d in docs]
        flat = list(chain.from_iterable(docs))
    return EncodedBatch(lengths, *_encode_python(flat, table))
