"""WordVectorFeaturizer: pretrained word vectors (word2vec, GloVe, fastText) pooled into document vectors.

A batch is encoded in one pass (:mod:`skfeaturize.words._encode`: a word-type code per token, compiled
when the C accelerator is built); the OOV policy and the weights are applied per word type, and document
vectors come from one sparse product, a CSR (documents × types) count matrix times the types' weighted
vectors; ``max`` is a segment maximum over token rows (``np.maximum.reduceat``). Nothing loops over
tokens in Python.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from numbers import Integral, Real

import numpy as np
from sklearn.utils._param_validation import Interval, StrOptions

from ..base import BaseFeaturizer, as_sample_list
from ..exceptions import InvalidSampleError
from . import _encode, _tokenize
from ._vectors import VectorTable, load_table, table_name

POOLINGS = ("mean", "sum", "max", "tfidf", "sif")
OOV_POLICIES = ("ignore", "zero", "unk", "hash", "subword", "learn", "error")
_NEEDS_DATA = {"tfidf", "sif"}
_OOV_NEEDS_DATA = {"unk", "learn"}
N_OOV_REPORTED = 20


def stable_hash(token: str, seed: int) -> int:
    """A 64-bit hash of ``token`` that is the same in every process (Python's ``hash`` is salted)."""
    data = token.encode("utf-8", "surrogatepass")  # same bytes as utf-8 for valid text; lone surrogates too
    digest = hashlib.blake2b(data, digest_size=8, key=str(int(seed)).encode()).digest()
    return int.from_bytes(digest, "little")


def _array_digest(*arrays) -> str:
    h = hashlib.blake2b(digest_size=16)
    for a in arrays:
        if a is None:
            h.update(b"none")
            continue
        a = np.ascontiguousarray(a)
        h.update(str((a.shape, a.dtype.str)).encode())
        h.update(a.tobytes())
    return h.hexdigest()


class WordVectorFeaturizer(BaseFeaturizer):
    """Document features from pretrained word vectors, as a scikit-learn transformer.

    Parameters
    ----------
    vectors : str, path, gensim KeyedVectors/FastText/Word2Vec, or ndarray, default="glove-wiki-gigaword-100"
        The word-vector table: a gensim-data name (loaded with ``gensim.downloader``, needs the internet
        once), a local file (word2vec text/binary, GloVe text, fastText ``.bin`` with subwords or ``.vec``,
        or an ``.npy`` matrix memory-mapped with its word list), or a gensim object. Tables given by name
        or path are loaded once per process and are *not* part of a clone's or a pickle's state; a gensim
        object (or an array) is a parameter and pickles with the estimator.
    words : list, str, path or None, default=None
        The word list of an ``.npy``/array table (list, or ``.txt`` one word per line, ``.parquet``/``.csv``
        column). ``None``: found next to the ``.npy`` file.
    tokenizer : "default", "whitespace" or callable, default="default"
        See :mod:`skfeaturize.words._tokenize`: NFC normalisation, word-character runs including
        one-character words, English clitics split GloVe-style (``"don't" → "do", "n't"``).
        Pre-tokenized samples (lists of tokens) skip the tokenizer (they are still NFC-normalised and
        lowercased when ``lowercase=True``).
    lowercase : bool, default=True
    pooling : {"mean", "sum", "max", "tfidf", "sif"}, default="mean"
        ``tfidf``: idf-weighted mean, idf fitted on the training texts (smooth idf as scikit-learn's
        ``TfidfVectorizer``; a word unseen in fit gets the largest idf). ``sif``: smooth inverse frequency
        weights ``sif_a / (sif_a + p(w))`` with ``p(w)`` the word's relative frequency in the training
        corpus (an unseen word counts as seen once), then removal of the first principal component of the
        training documents' vectors (Arora et al., 2017).
    oov : {"ignore", "zero", "unk", "hash", "subword", "learn", "error"}, default="ignore"
        What an out-of-vocabulary token contributes (see the words guide for when to use which):
        ``ignore`` drops it; ``zero`` counts it as a zero vector (it dilutes the mean); ``unk`` uses one
        fitted vector, the frequency-weighted mean of the training corpus' in-vocabulary vectors
        (``unk_vector_``); ``hash`` maps it by a stable hash to one of ``hash_buckets`` deterministic random
        vectors (scale of the table), so different unknown words stay different; ``subword`` builds its
        vector from fastText character n-grams (fastText tables only); ``learn`` trains vectors for the
        training corpus' OOV words with gensim ``Word2Vec`` in ``fit``, pretrained vectors frozen (other
        unknown words at transform are dropped); ``error`` raises, naming the sample and its OOV tokens.
        A document with no usable token gives a zero vector (never NaN).
    hash_buckets : int, default=4096
    learn_epochs : int, default=20
        Training epochs over the fit corpus for ``oov="learn"``.
    sif_a : float, default=1e-3
    oov_feature : bool, default=False
        Append one column with each document's share of OOV tokens (relative to the pretrained table;
        0 for a document without tokens), named ``{table}__words__oov_share``.
    random_state : int, default=0
        Seed of the ``hash`` vectors and of ``learn``'s Word2Vec.
    cache : None, str, path or EmbeddingCache, default=None
        Per-document embedding cache (keys: NFC text or token list; namespace: table, tokenizer,
        parameters and a hash of the fitted state).

    Attributes
    ----------
    vocabulary_size_ : int
        Words in the pretrained table.
    n_features_out_ : int
    vectors_name_ : str
    oov_rate_ : float or None
        Share of the fit corpus' tokens missing from the pretrained table (``None`` after ``fit(None)``).
    oov_tokens_ : list of (str, int)
        The most frequent OOV tokens of the fit corpus with their counts.
    n_empty_documents_ : int or None
        Fit documents that got a zero vector (no usable token under the ``oov`` policy).
    vocabulary_, idf_ : dict, ndarray
        Fit-corpus words and their idf (``tfidf``); ``word_prob_`` (``sif``): their relative frequency.
    sif_component_ : ndarray of shape (dim,)
        First principal component removed by ``sif``.
    unk_vector_ : ndarray (``unk``); hash_scale_ : float (``hash``);
    learned_words_, learned_vectors_ : list, ndarray (``learn``)
    """

    _input_what = "texts"

    _parameter_constraints: dict = {
        "vectors": "no_validation",
        "words": [list, tuple, str, os.PathLike, np.ndarray, None],
        "tokenizer": [StrOptions({"default", "whitespace"}), callable],
        "lowercase": ["boolean"],
        "pooling": [StrOptions(set(POOLINGS))],
        "oov": [StrOptions(set(OOV_POLICIES))],
        "hash_buckets": [Interval(Integral, 1, None, closed="left")],
        "learn_epochs": [Interval(Integral, 1, None, closed="left")],
        "sif_a": [Interval(Real, 0, None, closed="neither")],
        "oov_feature": ["boolean"],
        "random_state": [Interval(Integral, 0, None, closed="left")],
        "cache": "no_validation",
    }

    def __init__(self, vectors="glove-wiki-gigaword-100", *, words=None, tokenizer="default", lowercase=True,
                 pooling="mean", oov="ignore", hash_buckets=4096, learn_epochs=20, sif_a=1e-3,
                 oov_feature=False, random_state=0, cache=None):
        self.vectors = vectors
        self.words = words
        self.tokenizer = tokenizer
        self.lowercase = lowercase
        self.pooling = pooling
        self.oov = oov
        self.hash_buckets = hash_buckets
        self.learn_epochs = learn_epochs
        self.sif_a = sif_a
        self.oov_feature = oov_feature
        self.random_state = random_state
        self.cache = cache

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True
        tags.input_tags.two_d_array = False
        return tags

    # -- table -----------------------------------------------------------------------------------------
    def _table(self) -> VectorTable:
        memo = self.__dict__.get("_rt_table")
        if memo is not None and memo[0] is self.vectors and memo[1] is self.words:
            return memo[2]
        table = load_table(self.vectors, self.words)
        self._rt_table = (self.vectors, self.words, table)
        return table

    def _tokenize(self, samples: list) -> list[list[str]]:
        return _tokenize.tokenize_documents(samples, _tokenize.resolve_tokenizer(self.tokenizer),
                                            self.lowercase)

    # -- input -----------------------------------------------------------------------------------------
    def _check_input(self, X) -> list:
        samples = as_sample_list(X, what=self._input_what)
        if set(map(type, samples)) <= {str, list}:  # the common case, checked in one C-level pass
            return samples
        return [self._check_sample(i, s) for i, s in enumerate(samples)]

    def _check_sample(self, index: int, sample):
        if type(sample) is list or isinstance(sample, str):  # never missing; token types: see _encode
            return sample
        sample = super()._check_sample(index, sample)
        if isinstance(sample, (list, tuple, np.ndarray)):
            # token types are checked once per batch (one str.join in _encode), not token by token here
            return sample if type(sample) is list else list(sample)
        if isinstance(sample, bytes):
            raise InvalidSampleError(f"Sample {index} is bytes; decode it to str first (e.g. "
                                     "b.decode('utf-8', errors='replace')).", index=index)
        raise InvalidSampleError(f"Sample {index} is {type(sample).__name__} {sample!r}; expected a str or a "
                                 "list of str tokens.", index=index)

    @staticmethod
    def _check_tokens(index: int, tokens: list) -> None:
        if set(map(type, tokens)) <= {str}:
            return
        for j, t in enumerate(tokens):
            if not isinstance(t, str):
                raise InvalidSampleError(
                    f"Sample {index}: token {j} is {type(t).__name__} {t!r}, not str; a pre-tokenized "
                    "sample must be a list of strings.", index=index)

    def _encode(self, samples: list, indices: list, table: VectorTable) -> _encode.EncodedBatch:
        """Tokens of ``samples`` as type codes and table rows (see :mod:`skfeaturize.words._encode`)."""
        tokenizer = _tokenize.resolve_tokenizer(self.tokenizer)
        try:  # token types are checked by the batch encoder, not token by token here
            return _encode.encode(samples, table, tokenizer, self.lowercase)
        except TypeError:  # name the sample: a token list, or a text the tokenizer turned into non-str
            for i, s in zip(indices, samples, strict=True):
                if not isinstance(s, str):
                    self._check_tokens(i, s)
                    continue
                bad = [t for t in tokenizer(_tokenize.normalize(s, self.lowercase)) if not isinstance(t, str)]
                if bad:
                    raise InvalidSampleError(
                        f"Sample {i}: the tokenizer returned {type(bad[0]).__name__} {bad[0]!r}, not a str "
                        "token.", index=i) from None
            raise

    def _sample_key(self, index, sample) -> str:
        from ..cache._keys import hash_text, hash_tokens

        if not isinstance(sample, str):
            self._check_tokens(index, sample)
        return hash_text(sample) if isinstance(sample, str) else hash_tokens(sample)

    # -- fit -------------------------------------------------------------------------------------------
    def _fit_state(self, X, y) -> None:
        _tokenize.resolve_tokenizer(self.tokenizer)
        table = self._table()
        if self.oov == "subword" and table.subword_kv is None:
            raise ValueError(
                f"oov='subword' needs fastText vectors with character n-grams, but vectors={self._label()!r} "
                "has none. Use a fastText .bin file (or gensim FastText model), or another oov policy "
                "('hash' keeps unknown words apart without subwords).")
        needs = (self.pooling in _NEEDS_DATA and self.pooling) or (self.oov in _OOV_NEEDS_DATA and self.oov)
        for name in ("vocabulary_", "idf_", "word_prob_", "sif_component_", "unk_vector_", "hash_scale_",
                     "learned_words_", "learned_vectors_"):
            self.__dict__.pop(name, None)
        for name in list(self.__dict__):
            if name.startswith("_rt_fit"):
                del self.__dict__[name]
        self.vectors_name_ = table.name
        self.vectors_identity_ = table.identity
        self.vocabulary_size_ = len(table)
        self.dim_ = table.dim
        self.n_features_out_ = table.dim + int(bool(self.oov_feature))
        self.oov_rate_, self.oov_tokens_, self.n_empty_documents_ = None, [], None
        self.n_fit_documents_, self.n_fit_tokens_ = 0, 0
        if self.oov == "hash":
            self.hash_scale_ = table.std()
        if X is None:
            if needs:
                raise ValueError(f"{'pooling' if needs in _NEEDS_DATA else 'oov'}={needs!r} is fitted on the "
                                 "training texts; call fit(X) with the texts, not fit(None).")
            self._finish_fit()
            return
        samples = self._check_input(X)
        if not samples:
            raise ValueError("fit(X) got no documents; pass the training texts.")
        enc = self._encode(samples, list(range(len(samples))), table)
        codes, uniques, rows = enc.codes, enc.uniques, enc.rows
        counts = np.bincount(codes, minlength=len(uniques))
        oov_mask = rows < 0
        n_tokens = int(counts.sum())
        n_docs = len(samples)
        self.n_fit_documents_, self.n_fit_tokens_ = n_docs, n_tokens
        self.oov_rate_ = float(counts[oov_mask].sum() / n_tokens) if n_tokens else 0.0
        oov_counts = Counter({uniques[i]: int(counts[i]) for i in np.flatnonzero(oov_mask)})
        self.oov_tokens_ = oov_counts.most_common(N_OOV_REPORTED)
        if self.pooling in ("tfidf", "sif"):
            self.vocabulary_ = {w: i for i, w in enumerate(uniques)}
            if self.pooling == "tfidf":
                doc_of = np.repeat(np.arange(n_docs), enc.lengths)
                pairs = np.unique(doc_of * max(len(uniques), 1) + codes)
                df = np.bincount(pairs % max(len(uniques), 1), minlength=len(uniques))
                self.idf_ = np.log((1 + n_docs) / (1 + df)) + 1.0
            else:
                self.word_prob_ = counts / max(n_tokens, 1)
        if self.oov == "unk":
            known = ~oov_mask
            if not known.any():
                raise ValueError("oov='unk' sets the unknown-word vector to the mean of the training corpus' "
                                 "in-vocabulary vectors, but no training token is in the table; check the "
                                 "tokenizer/lowercase settings or use oov='hash'.")
            vecs = table.rows(rows[known]).astype(np.float64)
            w = counts[known].astype(np.float64)
            self.unk_vector_ = (w[:, None] * vecs).sum(0) / w.sum()
            self.unk_vector_ = self.unk_vector_.astype(np.float32)
        if self.oov == "learn":
            from ..backends import gensim as gensim_backend

            oov_words = [uniques[i] for i in np.flatnonzero(oov_mask)]
            docs = self._tokenize(samples)
            learned_words, learned = gensim_backend.train_oov_vectors(
                [d for d in docs if d], table, oov_words, epochs=self.learn_epochs, seed=self.random_state)
            self.learned_words_ = learned_words
            self.learned_vectors_ = learned
        if self.pooling == "sif":
            self.sif_component_ = np.zeros(table.dim, np.float32)
            pre = self._pool(enc, list(range(n_docs)), table)[0]
            nonzero = np.abs(pre).sum(1) > 0
            if nonzero.any():
                _, _, vt = np.linalg.svd(pre[nonzero].astype(np.float64), full_matrices=False)
                comp = vt[0]
                comp = comp * np.sign(comp[np.argmax(np.abs(comp))])  # deterministic sign
                self.sif_component_ = comp.astype(np.float32)
        vectors_out = self._pool(enc, list(range(n_docs)), table)[0]
        self.n_empty_documents_ = int((np.abs(vectors_out).sum(1) == 0).sum())
        self._finish_fit()

    def _finish_fit(self) -> None:
        state = [getattr(self, n, None) for n in ("idf_", "word_prob_", "sif_component_", "unk_vector_",
                                                  "learned_vectors_")]
        words = getattr(self, "vocabulary_", None)
        learned_words = getattr(self, "learned_words_", None)
        extra = "\n".join(words) if words else ""
        extra += "\x1e" + ("\n".join(learned_words) if learned_words else "")
        extra += "\x1e" + repr(getattr(self, "hash_scale_", None))
        self.fitted_state_hash_ = _array_digest(*state) + ":" + hashlib.blake2b(
            extra.encode("utf-8"), digest_size=16).hexdigest()
        self.fitted_ = True

    # -- requests / names --------------------------------------------------------------------------------
    def _layer_list(self) -> list:
        return ["words"]

    def _requests(self) -> list:
        reqs = [("words", self.pooling)]
        if self.oov_feature:
            reqs.append(("words", "oov_share"))
        return reqs

    def _resolve_requests(self, layers, poolings) -> list:
        for layer in layers:
            if layer not in (None, "words"):
                raise ValueError(f"layer={layer!r}: WordVectorFeaturizer has one layer, 'words'.")
        for p in poolings:
            if p not in POOLINGS:
                raise ValueError(f"pooling={p!r} is not one of {sorted(POOLINGS)}.")
            if p in _NEEDS_DATA and p != self.pooling:
                raise ValueError(f"pooling={p!r} needs state fitted with pooling={p!r}; it cannot be "
                                 f"precomputed by a featurizer fitted with pooling={self.pooling!r}.")
        return [("words", p) for p in poolings]

    def get_feature_names_out(self, input_features=None):
        """``{table}__words__{pooling}_{i}``, then ``{table}__words__oov_share`` when ``oov_feature``."""
        names = super().get_feature_names_out(input_features)
        if self.oov_feature:
            names[-1] = f"{self._feature_prefix()}__words__oov_share"
        return names

    def _feature_prefix(self) -> str:
        return getattr(self, "vectors_name_", None) or table_name(self.vectors)

    def _label(self) -> str:
        return self.vectors if isinstance(self.vectors, str) else type(self.vectors).__name__

    def _fingerprint(self) -> dict:
        return {
            "vectors": self.vectors_identity_,
            "tokenizer": _tokenize.tokenizer_identity(self.tokenizer),
            "lowercase": bool(self.lowercase),
            "oov": self.oov,
            "hash_buckets": int(self.hash_buckets) if self.oov == "hash" else None,
            "random_state": int(self.random_state) if self.oov in ("hash", "learn") else None,
            "learn_epochs": int(self.learn_epochs) if self.oov == "learn" else None,
            "sif_a": float(self.sif_a) if self.pooling == "sif" else None,
            "fitted_state": self.fitted_state_hash_,
        }

    def _probe_widths(self, requests) -> dict:
        return {r: (1 if r[1] == "oov_share" else self.dim_) for r in requests}

    # -- compute -----------------------------------------------------------------------------------------
    def _compute(self, samples, requests, indices) -> dict:
        table = self._table()
        enc = self._encode(samples, indices, table)
        poolings = [p for _, p in requests if p != "oov_share"]
        out = {}
        share = None
        for p in dict.fromkeys(poolings):
            vecs, share = self._pool(enc, indices, table, pooling=p)
            out[("words", p)] = vecs
        if any(p == "oov_share" for _, p in requests):
            if share is None:
                share = self._pool(enc, indices, table, pooling="sum", share_only=True)[1]
            out[("words", "oov_share")] = share[:, None].astype(np.float32)
        return out

    def _fit_lookup(self, name: str, words: list) -> np.ndarray:
        """Positions of ``words`` in a fitted word list (``learned_words_``), -1 if absent."""
        import pandas as pd

        key = "_rt_fit_index_" + name
        memo = self.__dict__.get(key)
        source = getattr(self, name)
        if memo is None or memo[0] is not source:
            memo = (source, pd.Index(list(source), dtype=object))
            self.__dict__[key] = memo
        if not words:
            return np.zeros(0, np.int64)
        return memo[1].get_indexer(pd.Index(words, dtype=object)).astype(np.int64)

    def _hash_matrix(self) -> np.ndarray:
        key = (int(self.hash_buckets), int(self.random_state), float(self.hash_scale_), self.dim_)
        memo = self.__dict__.get("_rt_hash")
        if memo is None or memo[0] != key:
            rng = np.random.default_rng(int(self.random_state))
            mat = (rng.standard_normal((int(self.hash_buckets), self.dim_)) * self.hash_scale_)
            memo = (key, mat.astype(np.float32))
            self._rt_hash = memo
        return memo[1]

    def _type_weights(self, uniques: list) -> np.ndarray:
        pooling = self.pooling
        if pooling == "tfidf":
            pos = self._vocab_positions(uniques)
            max_idf = np.log(1 + self.n_fit_documents_) + 1.0  # smooth idf of a word in no document
            return np.where(pos >= 0, self.idf_[np.maximum(pos, 0)], max_idf)
        if pooling == "sif":
            pos = self._vocab_positions(uniques)
            floor = 1.0 / max(self.n_fit_tokens_, 1)  # an unseen word counts as seen once
            p = np.where(pos >= 0, self.word_prob_[np.maximum(pos, 0)], floor)
            return self.sif_a / (self.sif_a + p)
        return np.ones(len(uniques))

    def _vocab_positions(self, words: list) -> np.ndarray:
        import pandas as pd

        memo = self.__dict__.get("_rt_fit_vocab")
        if memo is None or memo[0] is not self.vocabulary_:
            memo = (self.vocabulary_, pd.Index(list(self.vocabulary_), dtype=object))
            self._rt_fit_vocab = memo
        return (memo[1].get_indexer(pd.Index(words, dtype=object)).astype(np.int64) if words
                else np.zeros(0, np.int64))

    def _pool(self, enc: _encode.EncodedBatch, indices: list, table: VectorTable, pooling: str | None = None,
              share_only: bool = False):
        """Document vectors for the encoded batch with the fitted state and OOV policy, and each
        document's OOV share.

        Everything is decided per word *type* (its vector under the OOV policy, its weight, zero for a
        type that does not count), then one CSR (documents × types) count matrix times a
        (types × (dim + 1)) matrix ``[weight·vector | weight]`` gives, in one pass over the tokens, the
        weighted sums and the weight totals (denominators); the same count matrix times the OOV indicator
        gives the OOV counts. ``max`` is a segment maximum over the kept tokens' rows, in chunks of
        documents."""
        import scipy.sparse as sp

        pooling = pooling or self.pooling
        lengths = enc.lengths
        n = lengths.size
        dim = table.dim
        if enc.n_tokens == 0:
            return np.zeros((n, dim), np.float32), np.zeros(n, np.float32)
        codes, uniques, rows = enc.codes, enc.uniques, enc.rows
        n_types = len(uniques)
        bounds = np.zeros(n + 1, np.int64)  # documents' token ranges
        np.cumsum(lengths, out=bounds[1:])
        # documents × types, one entry per token (duplicates are summed by the products)
        counts = sp.csr_matrix((np.ones(codes.size), codes, bounds), shape=(n, n_types))
        oov_type = rows < 0
        n_oov = (counts @ oov_type.astype(np.float64) if oov_type.any() else np.zeros(n))
        share = (n_oov / np.maximum(lengths, 1)).astype(np.float32)
        if share_only:
            return None, share
        if self.oov == "error" and oov_type.any():
            first_tok = int(np.flatnonzero(oov_type[codes])[0])
            first = int(np.searchsorted(bounds, first_tok, side="right")) - 1
            oov_set = {uniques[i] for i in np.flatnonzero(oov_type)}
            bad = list(dict.fromkeys(t for t in enc.document_tokens(first) if t in oov_set))
            raise InvalidSampleError(
                f"Sample {indices[first]}: out-of-vocabulary tokens {bad[:10]!r} (oov='error'). Use another "
                "oov policy ('ignore', 'hash', 'subword', 'learn', ...) or fix the tokenization.",
                index=indices[first])
        # per type: its vector under the OOV policy, and whether it counts (dropped types: zero, no)
        vectors = np.zeros((n_types, dim), np.float32)
        counted = ~oov_type
        known_idx = np.flatnonzero(counted)
        vectors[known_idx] = table.rows(rows[known_idx])
        oov_idx = np.flatnonzero(oov_type)
        if oov_idx.size and self.oov != "ignore":
            oov_words = [uniques[i] for i in oov_idx]
            if self.oov == "zero":
                pass  # counted, zero vector
            elif self.oov == "unk":
                vectors[oov_idx] = self.unk_vector_
            elif self.oov == "hash":
                buckets = np.fromiter((stable_hash(w, self.random_state) % self.hash_buckets
                                       for w in oov_words), np.int64, len(oov_words))
                vectors[oov_idx] = self._hash_matrix()[buckets]
            elif self.oov == "subword":
                from ..backends import gensim as gensim_backend

                vectors[oov_idx] = gensim_backend.subword_vectors(table.subword_kv, oov_words)
            elif self.oov == "learn":
                pos = self._fit_lookup("learned_words_", oov_words)
                keep = pos >= 0
                oov_idx = oov_idx[keep]
                vectors[oov_idx] = self.learned_vectors_[pos[keep]]
            counted[oov_idx] = True
        if pooling == "max":
            return self._max_pool(vectors, counted, codes, bounds), share
        if pooling in ("tfidf", "sif"):
            weights = np.where(counted, self._type_weights(uniques), 0.0)
        else:
            weights = counted.astype(np.float64)
        right = np.empty((n_types, dim + 1))
        np.multiply(weights[:, None], vectors, out=right[:, :dim])
        right[:, dim] = weights
        summed = counts @ right
        out, denom = summed[:, :dim], summed[:, dim]
        if pooling != "sum":
            out = np.divide(out, denom[:, None], out=np.zeros_like(out), where=denom[:, None] > 0)
        if pooling == "sif" and getattr(self, "sif_component_", None) is not None:
            u = self.sif_component_.astype(np.float64)
            out = out - np.outer(out @ u, u)
        return out.astype(np.float32), share

    @staticmethod
    def _max_pool(vectors: np.ndarray, counted: np.ndarray, codes: np.ndarray, bounds: np.ndarray,
                  chunk_tokens: int = 1 << 18) -> np.ndarray:
        """Per document, the element-wise maximum of its counted tokens' vectors (zero when none),
        gathering at most about ``chunk_tokens`` token rows at a time."""
        n, dim = bounds.size - 1, vectors.shape[1]
        out = np.zeros((n, dim), np.float32)
        start = 0
        while start < n:  # whole documents per chunk (a long document is a chunk of its own)
            stop = int(np.searchsorted(bounds, bounds[start] + chunk_tokens, side="right")) - 1
            stop = max(stop, start + 1)
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

    def list_layers(self):
        """The featurizer's single layer, ``words``, with its output width."""
        import pandas as pd

        return pd.DataFrame([{"name": "words", "index": 0, "shape": (self._table().dim,), "kind": "vector"}])
