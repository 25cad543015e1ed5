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

When the compiled accelerator :mod:`skfeaturize.words._speedups` is built (it is, wherever a C compiler
was found at install time), it replaces all of the above with one C pass over the batch: ASCII texts are
tokenized with the default tokenizer's rules and every token is numbered from its bytes in one hash table,
without a Python object per token; only the batch's distinct word types go back to Python (normalised
there when they are not ASCII, and looked up in the table). The three paths give the same result; tests
compare them, control characters included (they are separators in every path: a control byte is not a
word byte for the compiled and NumPy tokenizers, as a Cc character is not a word character for the regex).
"""

from __future__ import annotations

import os
import unicodedata
from dataclasses import dataclass
from itertools import chain

import numpy as np

try:
    from . import _speedups
except ImportError:  # built without a C compiler: the Arrow/pandas paths below
    _speedups = None

SEP = "\x1f"
USE_NATIVE = True  # False: never the compiled encoder (for tests comparing the paths)
_SEED = int.from_bytes(os.urandom(8), "little")  # keys the compiled encoder's hash table (no flooding)
USE_ARROW = True  # False: always the pandas path (for tests comparing both)
USE_VECTORISED_TOKENIZER = True  # False: the default tokenizer always runs its regex in Python


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


_WORD = np.zeros(256, bool)
for _lo, _hi in (("0", "9"), ("a", "z"), ("A", "Z"), ("_", "_")):
    _WORD[ord(_lo):ord(_hi) + 1] = True
_WORD_BYTES = _WORD.astype(np.uint8).tobytes()  # bytes.translate table: word byte -> 1, other -> 0
_B = {c: ord(c) for c in "'ntsrevlldm"}


def ascii_default_spans(texts: list, lowercase: bool):
    """See :func:`_ascii_spans` (without the cover mask)."""
    return _ascii_spans(texts, lowercase)[:4]


def _ascii_spans(texts: list, lowercase: bool):
    """The default tokenizer on ASCII texts, vectorised over the bytes of the whole batch.

    Returns ``(data, starts, ends, counts)``: token ``k`` is ``data[starts[k]:ends[k]]`` (the texts joined
    by ``"\\n"``, lowercased when asked), tokens in document order, ``counts[i]`` tokens in text ``i``.
    For ASCII text :data:`~skfeaturize.words._tokenize.DEFAULT_PATTERN` means: word runs ``[A-Za-z0-9_]+``;
    a run ending in ``n`` followed by ``'t`` and a non-word character gives ``run[:-1]`` and ``n't`` (just
    ``n't`` when the run is ``n``); ``'`` directly before a run that is exactly ``s``, ``re``, ``ve``, ``ll``,
    ``d`` or ``m`` joins it (``'s``). A test compares this with the regex on random strings.
    Fifth value: the mask of bytes inside tokens (word bytes and the clitics' apostrophes)."""
    joined = "\n".join(texts)
    if lowercase:
        joined = joined.lower()
    size = len(joined)
    raw = joined.encode("ascii") + b"\0\0\0"  # padding: non-word bytes
    bp = np.frombuffer(raw, np.uint8)
    wp = np.frombuffer(raw.translate(_WORD_BYTES), np.bool_)  # word-character mask, one C pass
    edges = np.flatnonzero(wp[1:] != wp[:-1]) + 1  # run starts and ends alternate (bp[-1] is padding)
    if size and wp[0]:
        edges = np.concatenate([[0], edges])
    run_s, run_e = edges[0::2], edges[1::2]
    starts, ends = run_s.copy(), run_e.copy()
    drop = np.zeros(0, np.int64)
    # "n't": a run ending in n, then "'t" and a non-word byte (few candidates: runs followed by "'")
    r = np.flatnonzero(bp[run_e] == _B["'"])
    e = run_e[r]
    nt = r[(bp[e - 1] == _B["n"]) & (bp[e + 1] == _B["t"]) & ~wp[e + 2]]
    split = nt[run_e[nt] - run_s[nt] >= 2]
    alone = nt[run_e[nt] - run_s[nt] == 1]
    ends[alone] = run_e[alone] + 2
    ends[split] = run_e[split] - 1
    drop = nt + 1  # the "t" run of "n't" is inside it
    # clitics: "'" directly before a run that is exactly s, re, ve, ll, d or m
    r = np.flatnonzero(bp[run_s - 1] == _B["'"])
    r = r[run_s[r] >= 1]
    st, ln = run_s[r], run_e[r] - run_s[r]
    c0, c1 = bp[st], bp[st + 1]
    clitic = r[((ln == 1) & ((c0 == _B["s"]) | (c0 == _B["d"]) | (c0 == _B["m"])))
               | ((ln == 2) & (((c0 == _B["r"]) | (c0 == _B["v"])) & (c1 == _B["e"])
                               | (c0 == _B["l"]) & (c1 == _B["l"])))]
    clitic = np.setdiff1d(clitic, drop, assume_unique=True)
    starts[clitic] -= 1
    if split.size:  # the "n't" of a split run follows it
        starts = np.insert(starts, split + 1, run_e[split] - 1)
        ends = np.insert(ends, split + 1, run_e[split] + 2)
        drop = drop + np.searchsorted(split, drop, side="right")  # positions after the insertions
    if drop.size:
        keep = np.ones(starts.size, bool)
        keep[drop] = False
        starts, ends = starts[keep], ends[keep]
    bounds = np.zeros(len(texts) + 1, np.int64)
    np.cumsum(np.fromiter(map(len, texts), np.int64, len(texts)) + 1, out=bounds[1:])
    counts = np.diff(np.searchsorted(starts, bounds))
    cover = wp[:size].copy()
    cover[run_e[nt]] = True
    cover[run_s[clitic] - 1] = True
    return bp[:size], starts, ends, counts, cover


def _arrow_plain_vocab(table):
    """The table's words as an Arrow ``large_string`` array (built once per table)."""
    memo = table.__dict__.get("_arrow_plain_words")
    if memo is None:
        import pyarrow as pa

        memo = table.__dict__["_arrow_plain_words"] = pa.array(table.words, pa.large_string())
    return memo


def _span_strings(data: np.ndarray, starts: np.ndarray, ends: np.ndarray, cover: np.ndarray | None = None):
    """(bytes, offsets) of the disjoint, ordered spans ``data[starts[k]:ends[k]]`` put end to end
    (``cover``: the mask of the bytes inside spans, when known)."""
    if cover is None:
        mark = np.zeros(data.size + 1, np.int8)
        mark[starts] = 1
        mark[ends] -= 1  # an end equal to the next start cancels it: the cover continues
        cover = np.cumsum(mark[:-1], dtype=np.int8).view(bool)
    offsets = np.zeros(starts.size + 1, np.int64)
    np.cumsum(ends - starts, out=offsets[1:])
    return data[cover], offsets


def _encode_spans(buf: np.ndarray, offsets: np.ndarray, table):
    """(codes, uniques, rows) of the Arrow strings ``buf[offsets[k]:offsets[k+1]]`` (no separators)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n = offsets.size - 1
    arr = pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(buf))
    enc = pc.dictionary_encode(arr)
    codes = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    found = pc.fill_null(pc.index_in(enc.dictionary, value_set=_arrow_plain_vocab(table)), -1)
    rows = found.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    return codes, enc.dictionary.to_pylist(), rows


def _encode_arrow_buffer(buf: np.ndarray, n: int, table):
    """(codes, uniques, rows) of ``n`` tokens each followed by :data:`SEP` in the UTF-8 bytes ``buf``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    ends = np.flatnonzero(buf == 0x1F)
    if ends.size != n:
        return None
    offsets = np.empty(n + 1, np.int64)
    offsets[0] = 0
    np.add(ends, 1, out=offsets[1:])
    arr = pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(buf))
    enc = pc.dictionary_encode(arr)
    codes = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    dictionary = enc.dictionary
    found = pc.fill_null(pc.index_in(dictionary, value_set=_arrow_vocab(table)), -1)
    rows = found.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    return codes, [u[:-1] for u in dictionary.to_pylist()], rows


def _encode_arrow(joined: str, n: int, table):
    """(codes, uniques, rows) of the ``n`` tokens in ``joined`` with Arrow, or ``None``.

    ``joined + SEP`` is cut after each separator, so every Arrow string is a token followed by
    :data:`SEP` (no copy to drop the separators); the vocabulary carries the same suffix."""
    if not USE_ARROW or _arrow_vocab(table) is None:
        return None
    try:
        data = (joined + SEP).encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates
        return None
    return _encode_arrow_buffer(np.frombuffer(data, np.uint8), n, table)


def _encode_vectorised(samples: list, fast: np.ndarray, table, tokenizer, lowercase: bool):
    """Arrow encoding where the ASCII texts (``fast``) are tokenized by :func:`ascii_default_spans` and
    the other samples by the Python path; tokens are put back in document order. ``None``: not possible."""
    from ._tokenize import tokenize_documents

    fast_idx = np.flatnonzero(fast)
    slow_idx = np.flatnonzero(~fast)
    data, starts, ends, fast_counts, cover = _ascii_spans([samples[i] for i in fast_idx], lowercase)
    counts = np.zeros(len(samples), np.int64)
    counts[fast_idx] = fast_counts
    buf, offsets = _span_strings(data, starts, ends, cover)
    n_fast = starts.size
    if slow_idx.size:
        slow = [samples[i] for i in slow_idx]
        if all(not isinstance(x, str) for x in slow):
            docs = slow
            joined = normalize_joined(SEP.join(chain.from_iterable(docs)), lowercase)
        else:
            docs = tokenize_documents(slow, tokenizer, lowercase)
            joined = SEP.join(chain.from_iterable(docs))
        slow_counts = np.fromiter(map(len, docs), np.int64, len(docs))
        counts[slow_idx] = slow_counts
        n_slow = int(slow_counts.sum())
        if n_slow:
            try:
                extra = np.frombuffer((joined + SEP).encode("utf-8"), np.uint8)
            except UnicodeEncodeError:
                return None
            is_sep = extra == 0x1F
            s_ends = np.flatnonzero(is_sep)
            if s_ends.size != n_slow:
                return None
            s_off = s_ends - np.arange(n_slow) + offsets[-1]
            buf = np.concatenate([buf, extra[~is_sep]])
            offsets = np.concatenate([offsets, s_off])
    n = int(counts.sum())
    if n == 0:
        return counts, (np.zeros(0, np.int64), [], np.zeros(0, np.int64))
    codes, uniques, rows = _encode_spans(buf, offsets, table)
    if n_fast < n:  # tokens are fast texts' then the others': put them in document order, types renumbered
        doc_first = np.cumsum(counts) - counts
        order = np.empty(n, np.int64)
        order[np.repeat(doc_first[fast_idx], fast_counts) + _ranks(fast_counts)] = np.arange(n_fast)
        slow_counts = counts[slow_idx]
        order[np.repeat(doc_first[slow_idx], slow_counts) + _ranks(slow_counts)] = np.arange(n_fast, n)
        codes = codes[order]
        first = np.full(len(uniques), n, np.int64)
        np.minimum.at(first, codes, np.arange(n))
        by_first = np.argsort(first, kind="stable")
        renumber = np.empty_like(by_first)
        renumber[by_first] = np.arange(by_first.size)
        codes, uniques, rows = renumber[codes], [uniques[k] for k in by_first], rows[by_first]
    return counts, (codes, uniques, rows)


def _ranks(counts: np.ndarray) -> np.ndarray:
    """0, 1, ..., counts[i]-1 for each i, concatenated."""
    total = int(counts.sum())
    return np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)


def _encode_python(flat: list, table):
    import pandas as pd

    codes, uniques = pd.factorize(pd.Series(flat, dtype=object))
    uniques = list(uniques)
    return codes.astype(np.int64), uniques, table.lookup(uniques)


def native_available() -> bool:
    """Whether the compiled encoder is built and enabled."""
    return _speedups is not None and USE_NATIVE


def _encode_native(samples: list, table, tokenizer, lowercase: bool) -> EncodedBatch:
    """:func:`encode` with the compiled encoder (see the module docstring)."""
    from ._tokenize import default_tokenize, normalize

    default = tokenizer is default_tokenize
    kinds = set(map(type, samples))  # str (or subclasses: np.str_) and list (other sequences became lists)
    if kinds <= {list}:
        todo = ()
    elif default and all(issubclass(k, str) for k in kinds):
        todo = np.flatnonzero(~np.fromiter(map(str.isascii, samples), bool, len(samples)))
    else:
        todo = [i for i, s in enumerate(samples)
                if type(s) is not list and not (default and isinstance(s, str) and s.isascii())]
    if len(todo):
        # ASCII texts are tokenized in C with the default rules; the other texts here (normalised, then
        # tokenized) and passed as tuples, which the encoder takes as already normalised
        samples = list(samples)
        for i in todo:
            samples[i] = tuple(tokenizer(normalize(samples[i], lowercase)))
    counts, codes, uniques, flags = _speedups.encode_batch(samples, bool(lowercase), _SEED)
    lengths = np.frombuffer(counts, np.int64)
    codes = np.frombuffer(codes, np.int32)
    if flags.count(1):  # user tokens that are not ASCII: normalised per type, equal types merged
        for k in np.flatnonzero(np.frombuffer(flags, np.uint8)):
            uniques[k] = normalize(uniques[k], lowercase)
        if len(set(uniques)) < len(uniques):
            first: dict = {}
            remap = np.fromiter((first.setdefault(u, len(first)) for u in uniques), np.int64, len(uniques))
            codes, uniques = remap[codes], list(first)
    return EncodedBatch(lengths, codes, uniques, table.lookup(uniques))


def encode(samples: list, table, tokenizer, lowercase: bool) -> EncodedBatch:
    """Tokenize (strings) or normalise (token lists) ``samples`` and encode them against ``table``.

    Token lists must hold only ``str`` (the compiled encoder raises ``TypeError`` naming the batch
    position otherwise; the other paths fail in ``str.join``; the caller turns it into a sample error)."""
    from ._tokenize import default_tokenize, normalize_tokens, tokenize_documents

    if native_available():
        return _encode_native(samples, table, tokenizer, lowercase)
    n_docs = len(samples)
    if (USE_ARROW and USE_VECTORISED_TOKENIZER and tokenizer is default_tokenize
            and _arrow_vocab(table) is not None):
        fast = np.fromiter((isinstance(s, str) and s.isascii() for s in samples), bool, n_docs)
        if fast.any():
            out = _encode_vectorised(samples, fast, table, tokenizer, lowercase)
            if out is not None:
                return EncodedBatch(out[0], *out[1])
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
