"""The skeleton every featurizer shares: parameters, input checks, the cache hook, feature names, pickling.

A featurizer describes what it computes as *requests*, ``(layer, pooling)`` pairs in output order. The
base class turns a call to :meth:`transform` into::

    samples ─► content keys ─► cache lookup per request ─► misses, deduplicated ─► _compute ─► store
                                                                                        │
    float32 (n_samples, n_features) in input order ◄── concatenate requests in order ◄──┘

Subclasses implement:

``_check_sample(index, sample)``
    Validate one sample (raise :class:`InvalidSampleError` naming the index), or return it normalised.
``_sample_key(index, sample) -> str``
    Content hash of one sample (only called when a cache is configured).
``_fit_state(X, y)``
    Resolve and store fitted attributes (``layers_``, ``device_``, ...).
``_requests() -> list[tuple[str, str]]``
    The ``(layer, pooling)`` pairs of the output, resolved from fitted state.
``_fingerprint() -> dict``
    Everything except layer and pooling that changes the numbers (JSON-able).
``_compute(samples, requests, indices) -> dict[request, ndarray]``
    Run the backbone once over ``samples`` and return float32 ``(n, d)`` per request; ``indices`` are
    the samples' positions in the caller's input, for error messages.
``_probe_widths(requests) -> dict[request, int]``
    Output width per request without data (used by ``get_feature_names_out`` before any transform).
``_feature_prefix() -> str``
    Short model name for feature names.
"""

from __future__ import annotations

import itertools
import numbers
import os
from collections.abc import Iterable

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from ._version import __version__
from .exceptions import InvalidSampleError

Request = tuple  # (layer name, pooling name)


def _is_missing(x) -> bool:
    if x is None:
        return True
    try:
        return isinstance(x, numbers.Real) and bool(np.isnan(x))
    except TypeError:
        return False


def as_sample_list(X, *, what: str, allow_4d_array: bool = False) -> list:
    """Turn a list, tuple, NumPy array, pandas Series or one-column DataFrame into a list of samples."""
    if isinstance(X, (str, bytes, os.PathLike)):
        raise ValueError(
            f"Iterable over {what} expected, {type(X).__name__} object received. Wrap a single sample in "
            "a list: transform([sample])."
        )
    if hasattr(X, "iloc") and hasattr(X, "columns"):  # DataFrame
        if X.shape[1] != 1:
            raise ValueError(
                f"A DataFrame input must have exactly one column of {what}; got {X.shape[1]} columns "
                f"{list(X.columns)[:5]}. Select the column, or use a ColumnTransformer."
            )
        return X.iloc[:, 0].tolist()
    if hasattr(X, "iloc") and hasattr(X, "tolist"):  # Series
        return X.tolist()
    if isinstance(X, np.ndarray):
        if allow_4d_array and X.ndim == 4:
            return list(X)
        if X.ndim == 2 and X.shape[1] == 1 and X.dtype == object:
            return X[:, 0].tolist()
        if X.ndim != 1:
            raise ValueError(
                f"Expected a 1-D array of {what}"
                + (" or an (N, H, W, C) image array" if allow_4d_array else "")
                + f"; got an array of shape {X.shape}."
            )
        return list(X)
    if isinstance(X, dict) or not isinstance(X, Iterable):
        raise TypeError(f"Expected an iterable of {what}; got {type(X).__name__}.")
    return list(X)


class BaseFeaturizer(TransformerMixin, BaseEstimator):
    """Shared skeleton of :class:`ImageFeaturizer`, :class:`TextFeaturizer` and
    :class:`WordVectorFeaturizer` (see the module docstring for the subclass hooks)."""

    _input_what = "samples"

    # -- scikit-learn API --------------------------------------------------------------------------
    def fit(self, X=None, y=None):
        """Validate parameters and resolve fitted attributes. Pretrained featurizers learn nothing from
        ``X``; the backbone is not loaded here (it loads on the first transform that needs it)."""
        self._validate_params()
        self._fit_state(X, y)
        from .cache._keys import fingerprint

        self.fingerprint_ = fingerprint({
            "class": f"{type(self).__module__}.{type(self).__qualname__}",
            "spec": self._fingerprint(), "requests": [list(r) for r in self._requests()]})
        return self

    def content_key(self, sample, index: int = 0) -> str:
        """The cache key of one sample's content (validated first: a bad sample raises
        :class:`InvalidSampleError` naming ``index``). Equal keys mean the same input to the model."""
        return self._sample_key(index, self._check_sample(index, sample))

    def transform(self, X):
        """Featurize ``X``: float32 ``(n_samples, n_features)``, C-contiguous, in input order."""
        check_is_fitted(self)
        samples = self._check_input(X)
        requests = self._requests()
        blocks = self._features(samples, requests, self._extra_requests())
        if not samples:
            widths = self._widths(requests)
            return np.zeros((0, sum(widths[r] for r in requests)), np.float32)
        out = np.concatenate([blocks[r] for r in requests], axis=1)
        return np.ascontiguousarray(out, dtype=np.float32)

    def precompute(self, X, layers=None, poolings=None):
        """Fill the cache for every ``layer × pooling`` combination in one backbone pass per sample.

        Use it before a grid search over layers/poolings: afterwards every fit and transform of the
        search is a cache hit. ``layers``/``poolings`` default to the current ``layer``/``pooling``.
        Returns ``self``.
        """
        if getattr(self, "cache", None) is None:
            raise ValueError("precompute() stores features in the cache, but cache=None; set cache= to a "
                             "folder or an EmbeddingCache first.")
        if not self.__sklearn_is_fitted__():
            self.fit(X)
        samples = self._check_input(X)
        requests = self._combine_requests(layers, poolings)
        self._features(samples, requests, [])
        return self

    def get_feature_names_out(self, input_features=None):
        """``{model}__{layer}__{pooling}_{i}`` for each output column, in output order."""
        check_is_fitted(self)
        requests = self._requests()
        widths = self._widths(requests)
        prefix = self._feature_prefix()
        names = []
        for layer, pooling in requests:
            stem = f"{prefix}__{layer}__{pooling}"
            names.extend(f"{stem}_{i}" for i in range(widths[(layer, pooling)]))
        return np.asarray(names, dtype=object)

    def __sklearn_is_fitted__(self) -> bool:
        return getattr(self, "fitted_", False)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.target_tags.required = False
        tags.transformer_tags.preserves_dtype = []
        tags.non_deterministic = False
        return tags

    # -- pickling: the specification, not the runtime ------------------------------------------------
    def __getstate__(self):
        state = super().__getstate__() if hasattr(super(), "__getstate__") else self.__dict__.copy()
        return {k: v for k, v in state.items() if not k.startswith("_rt_")}

    # -- overridable hooks ---------------------------------------------------------------------------
    def _fit_state(self, X, y) -> None:  # pragma: no cover - every featurizer overrides it
        self.fitted_ = True

    def _extra_requests(self) -> list:
        """Requests to fill in the same pass on a cache miss (``cache_layers`` × ``cache_poolings``)."""
        layers = getattr(self, "cache_layers", None)
        poolings = getattr(self, "cache_poolings", None)
        if getattr(self, "cache", None) is None or (layers is None and poolings is None):
            return []
        return self._combine_requests(layers, poolings)

    def _combine_requests(self, layers, poolings) -> list:
        if layers is None:
            layers = self._layer_list()
        elif not isinstance(layers, (list, tuple)):
            layers = [layers]
        if poolings is None:
            poolings = [self.pooling]
        elif isinstance(poolings, str):
            poolings = [poolings]
        return list(dict.fromkeys(self._resolve_requests(list(layers), list(poolings))))

    def _layer_list(self) -> list:
        layer = getattr(self, "layer", None)
        return list(layer) if isinstance(layer, (list, tuple)) else [layer]

    def _resolve_requests(self, layers: list, poolings: list) -> list:
        """Resolve raw layer specs into requests (subclasses map ints to names)."""
        return [(str(layer), pooling) for layer, pooling in itertools.product(layers, poolings)]

    # -- input ---------------------------------------------------------------------------------------
    def _check_input(self, X) -> list:
        samples = as_sample_list(X, what=self._input_what, allow_4d_array=self._input_what == "images")
        return [self._check_sample(i, s) for i, s in enumerate(samples)]

    def _check_sample(self, index: int, sample):
        if _is_missing(sample):
            raise InvalidSampleError(f"Sample {index} is missing (None/NaN).", index=index)
        return sample

    # -- cache plumbing ------------------------------------------------------------------------------
    def _cache(self):
        cache = getattr(self, "cache", None)
        if cache is None:
            return None
        handle = self.__dict__.get("_rt_cache")
        if handle is None or self.__dict__.get("_rt_cache_param") is not cache:
            from .cache import resolve_cache

            handle = resolve_cache(cache)
            self._rt_cache, self._rt_cache_param = handle, cache
        return handle

    def _namespace(self, request) -> str:
        from .cache._keys import fingerprint

        spec = dict(self._fingerprint())
        spec.update(layer=request[0], pooling=request[1], skfeaturize=__version__.rsplit(".", 1)[0])
        return fingerprint(spec)

    def _namespace_description(self, request) -> dict:
        desc = {k: v for k, v in self._fingerprint().items() if isinstance(v, (str, int, float, bool))}
        desc.update(layer=request[0], pooling=request[1])
        return desc

    def _features(self, samples: list, requests: list, extra: list) -> dict:
        """Per request, an ``(n_samples, d)`` float32 block: cache hits plus computed misses."""
        if not samples:
            return {}
        cache = self._cache()
        if cache is None:
            computed = self._compute(samples, requests, list(range(len(samples))))
            self._remember_widths(computed)
            return computed
        keys = [self._sample_key(i, s) for i, s in enumerate(samples)]
        first_index = {}
        for i, k in enumerate(keys):
            first_index.setdefault(k, i)
        unique = list(first_index)
        spaces = {r: self._namespace(r) for r in requests}
        found = {r: cache.get_many(spaces[r], unique) for r in requests}
        missing = [k for k in unique if any(k not in found[r] for r in requests)]
        if missing:
            todo = list(dict.fromkeys(list(requests) + [e for e in extra if e not in requests]))
            miss_samples = [samples[first_index[k]] for k in missing]
            computed = self._compute(miss_samples, todo, [first_index[k] for k in missing])
            self._remember_widths(computed)
            for r in todo:
                ns = spaces.get(r) or self._namespace(r)
                block = cache.roundtrip(computed[r])
                cache.put_many(ns, missing, block, description=self._namespace_description(r))
                if r in found:
                    found[r].update(zip(missing, block, strict=True))
        out = {r: np.stack([found[r][k] for k in keys]).astype(np.float32, copy=False) for r in requests}
        self._remember_widths(out)  # all hits: the widths are only known from the stored vectors
        return out

    # -- output widths (for feature names before/without a transform) -------------------------------
    def _remember_widths(self, blocks: dict) -> None:
        memo = self.__dict__.setdefault("_rt_widths", {})
        for r, block in blocks.items():
            memo[self._namespace(r)] = int(block.shape[1])

    def _widths(self, requests) -> dict:
        memo = self.__dict__.setdefault("_rt_widths", {})
        out, unknown = {}, []
        cache = self._cache()
        for r in requests:
            ns = self._namespace(r)
            if ns not in memo and cache is not None:
                dim = cache.dim(ns)
                if dim is not None:
                    memo[ns] = dim
            if ns in memo:
                out[r] = memo[ns]
            else:
                unknown.append(r)
        if unknown:
            probed = self._probe_widths(unknown)
            for r in unknown:
                memo[self._namespace(r)] = out[r] = int(probed[r])
        return out
