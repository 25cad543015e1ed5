"""gensim adapter: word-vector files, gensim-data downloads, fastText subwords, Word2Vec OOV training.

gensim is imported inside the functions, so importing skfeaturize never imports it.
"""

from __future__ import annotations

import os
import struct

import numpy as np

from .._optional import import_optional
from ..exceptions import VectorFileError, WeightsNotFoundError

FASTTEXT_MAGIC = 793712314  # first int32 of a Facebook fastText .bin file


def _gensim():
    return import_optional("gensim", extra="words")


def unwrap(obj):
    """A gensim ``Word2Vec``/``FastText`` model → its ``KeyedVectors``; a ``KeyedVectors`` → itself;
    anything else → ``None``."""
    if obj is None or isinstance(obj, (str, bytes, os.PathLike, np.ndarray, tuple, list)):
        return None
    mod = type(obj).__module__ or ""
    if not mod.startswith("gensim"):
        return None
    if hasattr(obj, "wv") and hasattr(obj.wv, "key_to_index"):
        return obj.wv
    if hasattr(obj, "key_to_index") and hasattr(obj, "vectors"):
        return obj
    return None


def has_subwords(kv) -> bool:
    """True for fastText vectors that can build a vector for an unseen word from its character n-grams."""
    return (hasattr(kv, "vectors_ngrams") and getattr(kv, "bucket", 0) > 0
            and getattr(kv, "vectors_ngrams", np.zeros((0, 0))).shape[0] > 0)


def subword_vectors(kv, words: list[str]) -> np.ndarray:
    """fastText n-gram vectors for ``words`` (zeros for a word with no known n-gram, as gensim gives)."""
    if not words:
        return np.zeros((0, kv.vector_size), np.float32)
    return np.stack([kv.get_vector(w) for w in words]).astype(np.float32, copy=False)


def is_fasttext_head(head: bytes) -> bool:
    """Whether a ``.bin`` file starting with ``head`` is fastText: word2vec binary starts with an ASCII
    ``"N D"`` header line, fastText with its magic number (files older than fastText 0.2 with raw ints)."""
    if len(head) >= 4 and int(np.frombuffer(head[:4], "<i4")[0]) == FASTTEXT_MAGIC:
        return True
    first = head.split(b"\n", 1)[0].split()
    return not (len(first) == 2 and all(t.isdigit() for t in first))


# what gensim's binary readers raise on a damaged or foreign file (struct.error, EOFError, a bad header's
# ValueError, a broadcasting ValueError, UnicodeDecodeError, an assert on the sizes, NotImplementedError for
# an unsupported fastText version, MemoryError for absurd sizes read from junk)
_READ_ERRORS = (ValueError, EOFError, struct.error, AssertionError, NotImplementedError, MemoryError,
                OverflowError, IndexError)


def _unreadable(path: str, what: str, e: Exception) -> VectorFileError:
    kind = "struct.error" if isinstance(e, struct.error) else type(e).__name__
    return VectorFileError(f"Word-vector file {path!r}: not a readable {what} ({kind}: {e}). "
                           "Check that the file is complete and of that format (word2vec text is read from "
                           ".txt/.vec, word2vec binary and fastText from .bin).", path=path)


def load_fasttext_bin(path: str):
    """A Facebook fastText ``.bin`` (with subword n-grams) as gensim ``FastTextKeyedVectors``."""
    _gensim()
    from gensim.models.fasttext import load_facebook_vectors

    try:
        return load_facebook_vectors(path)
    except _READ_ERRORS as e:
        raise _unreadable(path, "fastText binary model", e) from e


def load_text_or_binary(path: str, *, binary: bool, no_header: bool):
    """word2vec text/binary, or GloVe text (``no_header=True``), as gensim ``KeyedVectors`` (text files
    are read by :mod:`skfeaturize.words._vectorfiles`, which checks them line by line)."""
    gensim = _gensim()
    try:
        return gensim.models.KeyedVectors.load_word2vec_format(path, binary=binary, no_header=no_header,
                                                               unicode_errors="replace")
    except _READ_ERRORS as e:
        raise _unreadable(path, "word2vec binary file" if binary else "word2vec/GloVe text file", e) from e


def download(name: str):
    """A gensim-data table by name (``"glove-wiki-gigaword-100"``) through ``gensim.downloader``: the
    local copy in ``~/gensim-data`` when present, else a download. Offline, a clear error."""
    _gensim()
    import gensim.downloader as api

    try:
        obj = api.load(name)
    except Exception as e:  # noqa: BLE001 - gensim raises ValueError/URLError/OSError/HTTPError offline
        raise WeightsNotFoundError(
            f"vectors={name!r} could not be loaded with gensim.downloader ({type(e).__name__}: {e}). "
            f"It is downloaded once into {api.BASE_DIR!r} when online; offline, pass a local file instead "
            "(word2vec .bin/.txt, GloVe .txt, fastText .bin/.vec, or an .npy matrix with a word list)."
        ) from e
    kv = unwrap(obj)
    if kv is None:
        raise ValueError(f"vectors={name!r}: gensim.downloader returned {type(obj).__name__}, not word "
                         "vectors; pick a model from gensim.downloader.info()['models'].")
    return kv


def train_oov_vectors(sentences: list[list[str]], table, oov_words: list[str], *, epochs: int, seed: int,
                      window: int = 5, negative: int = 5, sg: int = 1) -> tuple[list[str], np.ndarray]:
    """Learn vectors for ``oov_words`` from ``sentences`` with gensim ``Word2Vec``, inside the space of the
    pretrained ``table``.

    The vocabulary is every token of ``sentences``. Pretrained rows are copied into ``wv.vectors`` and
    frozen with ``wv.vectors_lockf`` (0.0 = frozen, 1.0 = trained; gensim 4 reads it per word). The output
    layer ``syn1neg`` starts from the pretrained vectors too (GloVe/word2vec word and context spaces are
    close), so from the first epoch an unknown word is pulled towards the pretrained vectors of the words
    around it. Only the OOV rows are returned. One worker thread: deterministic for a fixed ``seed``.
    """
    gensim = _gensim()
    dim = table.dim
    model = gensim.models.Word2Vec(vector_size=dim, window=window, min_count=1, sg=sg, negative=negative,
                                   hs=0, sample=0, workers=1, seed=seed, epochs=epochs)
    model.build_vocab(sentences)
    vocab = model.wv.index_to_key
    rows = table.lookup(vocab)
    known = rows >= 0
    vectors = model.wv.vectors
    pretrained = table.rows(rows[known])
    vectors[known] = pretrained
    lockf = np.ones(len(vocab), dtype=np.float32)
    lockf[known] = 0.0
    model.wv.vectors_lockf = lockf
    if model.negative:
        model.syn1neg[known] = pretrained
    total = sum(len(s) for s in sentences)
    model.train(sentences, total_examples=len(sentences), total_words=total, epochs=epochs)
    index = model.wv.key_to_index
    wanted = [w for w in oov_words if w in index]
    out = np.stack([model.wv.vectors[index[w]] for w in wanted]) if wanted else np.zeros((0, dim))
    if known.any() and not np.allclose(model.wv.vectors[known], pretrained):
        raise RuntimeError("gensim changed the frozen pretrained vectors during OOV training; the "
                           "vectors_lockf API of this gensim version is not supported.")
    return wanted, out.astype(np.float32)
