"""The skeleton every featurizer shares: the fitted plan, input checks, the cache, output assembly, names.

The data's way through a featurizer, in one place::

    fit(X, y):   validate params ─► _make_plan(X, y) ─► plan_  (requests, widths, identity, param snapshot)
                                                     └► PCA on the training features (n_components=)
    transform(X):
      plan_ unchanged? ─► samples checked ─► content keys ─► cache hits per request ─► misses, deduplicated
                                                                                          │
                                                                 _compute(plan, misses) ◄─┘ (backbone, once)
                                                                          │  finite? stored
      float32/16 (n_samples, n_features) ◄── PCA ◄── combine requests (concat/mean/sum) ◄─┘

Subclasses implement:

``_make_plan(X, y) -> Plan``
    Resolve every decision (backend, requests with ``auto`` resolved, widths, identity); may set public
    fitted attributes (``layers_``, ``device_``, ...). Called by ``fit``, after parameter validation.
``_check_sample(index, sample)``
    Validate one sample (raise :class:`InvalidSampleError` naming the index) and return it normalised.
``_sample_key(sample, index) -> str``
    Content hash of one checked sample: equal keys mean the same input *to the model*.
``_compute(plan, samples, requests, indices) -> dict[Request, ndarray]``
    Featurize ``samples`` once for every request: float32 ``(n, width)`` each; ``indices`` are the samples'
    positions in the caller's input, for error messages.
``_resolve_requests(plan, layers, poolings) -> list[Request]``
    Requests for ``precompute`` and ``cache_layers``/``cache_poolings`` (defaults: the plan's own).
"""

from __future__ import annotations

import dataclasses
import itertools
import numbers
import os
import sys
from collections.abc import Iterable

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from ._plan import (
    Plan,
    Request,
    check_unchanged,
    environment,
    plain_params,
    plan_from_json,
    plan_to_json,
    refresh_object_tokens,
    snapshot,
)
from ._warnings import warn
from .exceptions import FitDataRequiredError, InvalidSampleError, UncachedWarning

OUTPUT_DTYPES = ("float32", "float16")


def is_missing(x) -> bool:
    """None, NaN, ``pd.NA`` and ``pd.NaT``: every missing marker of Python, NumPy and pandas."""
    if x is None:
        return True
    if isinstance(x, numbers.Real) and not isinstance(x, bool):
        return bool(np.isnan(x))
    pd = sys.modules.get("pandas")
    return pd is not None and (x is pd.NA or x is pd.NaT)


def as_sample_list(X, *, what: str, image_arrays: bool = False) -> list:
    """A list, tuple, NumPy array, pandas Series or one-column DataFrame as a list of samples.

    With ``image_arrays``, an ``(N, H, W, C)`` array is N images and an ``(N, H, W)`` array N grayscale
    images; a single ``(H, W, 3)``/``(H, W, 4)`` image passed unwrapped is refused as ambiguous."""
    if isinstance(X, (str, bytes, os.PathLike)):
        raise ValueError(_single_sample_message(X, what))
    if hasattr(X, "iloc") and hasattr(X, "columns"):  # DataFrame
        if X.shape[1] != 1:
            raise ValueError(
                f"A DataFrame input must have exactly one column of {what}; got {X.shape[1]} columns "
                f"{list(X.columns)[:5]}. Select the column, or use a ColumnTransformer.")
        return X.iloc[:, 0].tolist()
    if hasattr(X, "iloc") and hasattr(X, "tolist"):  # Series
        return X.tolist()
    if isinstance(X, np.ndarray):
        return _array_samples(X, what, image_arrays)
    if type(X).__module__.startswith("datasets.") and hasattr(X, "column_names"):
        raise TypeError(
            f"A Hugging Face datasets.{type(X).__name__} holds columns {list(X.column_names)[:5]}; pass one "
            "column of " + what + ", e.g. transform(ds['text']) (or ds.with_format('numpy')['image']).")
    if isinstance(X, dict) or not isinstance(X, Iterable):
        raise TypeError(f"Expected an iterable of {what}; got {type(X).__name__}.")
    return list(X)


def _single_sample_message(X, what: str) -> str:
    text = os.fspath(X) if not isinstance(X, bytes) else ""
    if what == "images" and text and os.path.isdir(os.path.expanduser(text)):
        return (f"transform() got the folder {text!r}, not a list of images. Pass the image paths, e.g. "
                f"sorted(glob.glob(os.path.join({text!r}, '*.jpg'))), or run "
                f"`skfeaturize embed {text} --out embeddings.parquet` for a whole folder.")
    return (f"Iterable over {what} expected, {type(X).__name__} object received. Wrap a single sample in a "
            "list: transform([sample]).")


def _array_samples(X: np.ndarray, what: str, image_arrays: bool) -> list:
    if image_arrays and X.ndim == 4:
        return list(X)
    if image_arrays and X.ndim == 3:
        if X.shape[-1] in (3, 4) and X.dtype != object:
            raise ValueError(
                f"An array of shape {X.shape} is ambiguous: one (H, W, C) image or {X.shape[0]} grayscale "
                "images? Pass [image] for one image, or an (N, H, W, 1) array for grayscale images.")
        return list(X)
    if X.ndim == 2 and X.shape[1] == 1 and X.dtype == object:
        return X[:, 0].tolist()
    if X.ndim != 1:
        raise ValueError(
            f"Expected a 1-D array of {what}"
            + (", an (N, H, W, C) or an (N, H, W) image array" if image_arrays else "")
            + f"; got an array of shape {X.shape}.")
    return list(X)


class BaseFeaturizer(TransformerMixin, BaseEstimator):
    """Shared skeleton of :class:`ImageFeaturizer`, :class:`TextFeaturizer` and
    :class:`WordVectorFeaturizer` (see the module docstring for the subclass hooks)."""

    _input_what = "samples"
    _runtime_params = frozenset({"batch_size", "device", "num_workers", "progress", "cache"})
    """Parameters that never change the numbers: they may change after ``fit`` without a refit."""

    # -- scikit-learn API --------------------------------------------------------------------------
    def fit(self, X=None, y=None):
        """Validate the parameters and resolve everything that decides the numbers into ``plan_``.

        Pretrained featurizers learn nothing from ``X`` and load no weights here: the layers, their widths
        and the preprocessing come from the architecture alone. ``X`` is used when the featurizer learns
        from data (``n_components``: a PCA on the training features, which runs the backbone; the fitted
        poolings and OOV policies of :class:`WordVectorFeaturizer`). With a ``cache``, the resolved plan
        is stored there too: a later ``fit`` with the same parameters (a grid-search worker) reads it back
        without importing any deep-learning library.

        Parameters
        ----------
        X : list, array, pandas Series or one-column DataFrame of samples, or None, default=None
            Training samples; ``None`` for a featurizer that learns nothing from data.
        y : array-like or None, default=None
            Ignored; accepted for scikit-learn's API.

        Returns
        -------
        self
            The fitted featurizer.

        Raises
        ------
        InvalidParameterError
            scikit-learn's validation error (a ``ValueError`` and ``TypeError``): a parameter has a value or
            type that is not allowed; the message lists what is.
        FitDataRequiredError
            ``fit(None)`` on a featurizer that must learn from data (``n_components``, ``tfidf``, ...).
        """
        self._validate_params()
        plan = self._restore_plan()
        if plan is None:
            plan = self._make_plan(X, y)
            self._store_plan(plan)
        self._set_plan(plan)
        self.pca_ = None
        if getattr(self, "n_components", None) is not None:
            self._fit_pca(X)
        return self

    def partial_fit(self, X=None, y=None):
        """scikit-learn's out-of-core API: fit batch by batch.

        A pretrained featurizer learns nothing from data: the first call fits (validates the parameters and
        resolves the plan), later calls check that no parameter changed and return ``self`` unchanged.
        :class:`WordVectorFeaturizer` overrides this to add each batch to its corpus statistics.

        Parameters
        ----------
        X : list, array, pandas Series or one-column DataFrame of samples, or None, default=None
            One batch of training samples.
        y : array-like or None, default=None
            Ignored; accepted for scikit-learn's API.

        Returns
        -------
        self
            The fitted featurizer.

        Raises
        ------
        ValueError
            ``n_components`` is set: a PCA cannot grow batch by batch.
        RefitRequiredError
            A parameter that decides the numbers changed since the first call.
        """
        if getattr(self, "n_components", None) is not None:
            raise ValueError("partial_fit() cannot grow a PCA (n_components=...) batch by batch; use fit() "
                             "on a sample of the data, or n_components=None.")
        if not self.__sklearn_is_fitted__():
            return self.fit(X, y)
        self._checked_plan()
        return self

    def transform(self, X):
        """Featurize ``X``: one row per sample, in input order.

        Cache hits are read; only the misses run through the backbone (each distinct sample once).

        Parameters
        ----------
        X : list, tuple, array, pandas Series or one-column DataFrame of samples
            The samples (see the featurizer's guide for the accepted kinds). A bare single sample is refused:
            wrap it in a list.

        Returns
        -------
        ndarray of shape (n_samples, n_features)
            C-contiguous, of type ``dtype`` (float32 by default).

        Raises
        ------
        sklearn.exceptions.NotFittedError
            ``fit`` was not called.
        RefitRequiredError
            A parameter that decides the numbers changed after ``fit`` (``set_params`` does not refit). The
            runtime parameters (``batch_size``, ``device``, ``num_workers``, ``progress`` and ``cache``, those
            the featurizer has) may change freely.
        InvalidSampleError
            A sample cannot be featurized; the message names its index and the cause.
        """
        plan = self._checked_plan()
        samples = self._check_input(X)
        out = self._raw_features(plan, samples)
        if self.pca_ is not None:
            out = self.pca_.transform(out).astype(np.float32)
        return np.ascontiguousarray(out, dtype=getattr(self, "dtype", "float32"))

    def precompute(self, X, layers=None, poolings=None):
        """Fill the cache for every ``layer × pooling`` combination in one backbone pass per sample.

        Use it before a grid search over layers and poolings: afterwards every fit and transform of the
        search is a cache hit. An unfitted featurizer is fitted on ``X`` first. On a warm cache only the
        keys are looked up; a stored entry that turns out corrupt when read is recomputed then, by the
        ``transform`` that reads it.

        Parameters
        ----------
        X : list, tuple, array, pandas Series or one-column DataFrame of samples
            The samples the search will featurize.
        layers : int, str or list, default=None
            Layers to store (any value the ``layer`` parameter accepts, one or a list); ``None``: the fitted
            ones.
        poolings : str or list of str, default=None
            Poolings to store for each layer; ``None``: the fitted ones.

        Returns
        -------
        self
            The featurizer, unchanged.

        Raises
        ------
        ValueError
            ``cache=None``: there is nowhere to store the features.
        """
        if getattr(self, "cache", None) is None:
            raise ValueError("precompute() stores features in the cache, but cache=None; set cache= to a "
                             "folder or an EmbeddingCache first.")
        if not self.__sklearn_is_fitted__():
            self.fit(X)
        plan = self._checked_plan()
        samples = self._check_input(X)
        requests = self._requested(plan, layers, poolings)
        cache = self._cache(plan)
        if cache is None:  # the plan refuses the cache (and _cache said why): nothing could be kept
            return self
        unique = list(self._unique_keys(samples)[1])
        if any(len(cache.stored_keys(plan.namespace(r), unique)) < len(unique) for r in requests):
            self._features(plan, samples, requests, [])  # runs the misses only, names samples by index
        return self  # warm: one key lookup per request, no vector read or check (transform does that)

    def content_key(self, sample, index: int = 0) -> str:
        """The cache key of one sample's content: equal keys mean the same input to the model.

        Parameters
        ----------
        sample : object
            One sample, of a kind ``transform`` accepts.
        index : int, default=0
            The index an error message names.

        Returns
        -------
        str
            A hex digest of the sample's content (file bytes, array bytes with shape and dtype, text).

        Raises
        ------
        InvalidSampleError
            The sample is not valid (checked before it is hashed).
        """
        return self._sample_key(self._check_sample(index, sample), index)

    def get_feature_names_out(self, input_features=None):
        """Names of the output columns, in output order.

        ``{model}__{layer}__{pooling}_{i}`` with the resolved layer and pooling (``resnet50__layer4__avg_0``),
        ``{model}__{combine}({layers})__{pooling}_{i}`` when several layers are averaged or summed, and
        ``{model}__pca_{i}`` after a PCA (``n_components``).

        Parameters
        ----------
        input_features : None, default=None
            Ignored; accepted for scikit-learn's API (the input has no feature names).

        Returns
        -------
        ndarray of str objects, shape (n_features,)
        """
        plan = self._checked_plan()
        if self.pca_ is not None:
            return np.asarray([f"{plan.prefix}__pca_{i}" for i in range(self.pca_.n_components_)], object)
        blocks = [(f"{r.layer}__{r.pooling}", plan.widths[r]) for r in plan.requests]
        if plan.combine != "concat":
            poolings = "+".join(dict.fromkeys(r.pooling for r in plan.requests))
            layers = "+".join(r.layer for r in plan.requests)
            blocks = [(f"{plan.combine}({layers})__{poolings}", plan.n_features)]
        names = [f"{plan.prefix}__{stem}_{i}" for stem, width in blocks for i in range(width)]
        return np.asarray(names, dtype=object)

    def __sklearn_is_fitted__(self) -> bool:
        return "plan_" in self.__dict__

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.target_tags.required = False
        tags.transformer_tags.preserves_dtype = []
        tags.non_deterministic = False
        return tags

    def __setstate__(self, state):
        super().__setstate__(state)
        if "plan_" in self.__dict__:  # the object parameters are new (equal) objects now
            self.plan_ = refresh_object_tokens(self.plan_, self.get_params(deep=False), self._runtime_params)

    # -- the plan ------------------------------------------------------------------------------------
    def _plan_key(self) -> str | None:
        """Key of this featurizer's resolved plan in the cache: a hash of its class, its parameters (all
        plain values, else None: not persisted), :func:`~skfeaturize._plan.environment` and
        :meth:`_plan_sources` (None: not persisted)."""
        if getattr(self, "cache", None) is None:
            return None
        params = plain_params(self.get_params(deep=False), self._runtime_params)
        sources = self._plan_sources() if params is not None else None
        if sources is None:
            return None
        from .cache._keys import fingerprint

        return fingerprint({"class": f"{type(self).__module__}.{type(self).__qualname__}", "params": params,
                            "environment": environment(), "sources": sources})

    def _plan_sources(self) -> dict | None:
        """Cheap facts about the files a plan is resolved from (sizes and times of a checkpoint, a model
        folder's listing); None when the plan depends on what cannot be checked cheaply (data, objects)."""
        return None

    def _fitted_json(self) -> dict:
        """The public fitted attributes the plan comes with, and the backend's specification."""
        raise NotImplementedError

    def _restore_fitted(self, fitted: dict) -> None:
        raise NotImplementedError

    def _restore_plan(self) -> Plan | None:
        key = self._plan_key()
        if key is None:
            return None
        import json

        from .cache import resolve_cache

        text = resolve_cache(self.cache).get_plan(key)
        if text is None:
            return None
        stored = json.loads(text)
        self._restore_fitted(stored["fitted"])
        plan = plan_from_json(stored["plan"])
        return dataclasses.replace(plan, params=self._param_snapshot())

    def _store_plan(self, plan: Plan) -> None:
        key = self._plan_key()
        if key is None:
            return
        import json

        from .cache import resolve_cache

        resolve_cache(self.cache).put_plan(key, json.dumps(
            {"plan": plan_to_json(plan), "fitted": self._fitted_json()}, sort_keys=True))

    def _set_plan(self, plan: Plan) -> None:
        self.plan_ = plan
        self.fingerprint_ = plan.fingerprint
        self.n_features_out_ = plan.n_features

    def _param_snapshot(self) -> dict:
        return snapshot(self.get_params(deep=False), self._runtime_params)

    def _checked_plan(self) -> Plan:
        check_is_fitted(self)
        check_unchanged(self.plan_, self.get_params(deep=False), self._runtime_params, type(self).__name__)
        return self.plan_

    def _requested(self, plan: Plan, layers, poolings) -> list:
        if layers is None and poolings is None:
            return list(plan.requests)
        if layers is not None and not isinstance(layers, (list, tuple)):
            layers = [layers]
        if isinstance(poolings, str):
            poolings = [poolings]
        return list(dict.fromkeys(self._resolve_requests(plan, layers, poolings)))

    def _resolve_requests(self, plan: Plan, layers, poolings) -> list:
        layers = [r.layer for r in plan.requests] if layers is None else layers
        poolings = list(dict.fromkeys(r.pooling for r in plan.requests)) if poolings is None else poolings
        return [Request(str(layer), p) for layer, p in itertools.product(layers, poolings)]

    def _extra_requests(self, plan_requests, resolve) -> tuple:
        """``cache_layers`` × ``cache_poolings`` resolved with ``resolve(layers, poolings)``; empty without
        a cache or when neither is set."""
        layers, poolings = getattr(self, "cache_layers", None), getattr(self, "cache_poolings", None)
        if layers is None and poolings is None:
            return ()
        extra = resolve(None if layers is None else list(layers),
                        None if poolings is None else list(poolings))
        return tuple(r for r in dict.fromkeys(extra) if r not in plan_requests)

    # -- input ---------------------------------------------------------------------------------------
    def _check_input(self, X) -> list:
        samples = as_sample_list(X, what=self._input_what, image_arrays=self._input_what == "images")
        return [self._check_sample(i, s) for i, s in enumerate(samples)]

    def _check_sample(self, index: int, sample):
        if is_missing(sample):
            raise InvalidSampleError(f"Sample {index} is missing ({sample!r}).", index=index)
        return sample

    # -- features ------------------------------------------------------------------------------------
    def _raw_features(self, plan: Plan, samples: list) -> np.ndarray:
        """The output before PCA: requests computed (or read from the cache) and combined."""
        if not samples:
            return np.zeros((0, plan.n_features), np.float32)
        blocks = self._features(plan, samples, list(plan.requests), list(plan.extra))
        parts = [blocks[r] for r in plan.requests]
        if plan.combine == "concat":
            out = np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
        else:
            out = np.sum(np.stack(parts).astype(np.float64), axis=0)
            if plan.combine == "mean":
                out /= len(parts)
        return self._finish(plan, out.astype(np.float32, copy=False))

    def _finish(self, plan: Plan, out: np.ndarray) -> np.ndarray:
        """A last step over the combined output (e.g. L2 normalisation); identity by default."""
        return out

    def _cache(self, plan: Plan):
        if getattr(self, "cache", None) is None:
            return None
        if plan.cache_refusal is not None:
            warn(f"{type(self).__name__}: not caching: {plan.cache_refusal}. Features are computed "
                 "every time; give a parameter whose identity can be established to use the cache.",
                 UncachedWarning)
            return None
        from .cache import resolve_cache

        return resolve_cache(self.cache)

    def _features(self, plan: Plan, samples: list, requests: list, extra: list) -> dict:
        """Per request, an ``(n_samples, width)`` float32 block: cache hits plus computed misses."""
        cache = self._cache(plan)
        if cache is None:
            computed = self._compute_checked(plan, samples, requests, list(range(len(samples))))
            return {r: computed[r] for r in requests}
        keys, first = self._unique_keys(samples)
        unique = list(first)
        found = {r: cache.get_many(plan.namespace(r), unique) for r in requests}
        missing = [k for k in unique if any(k not in found[r] for r in requests)]
        if missing:
            todo = list(dict.fromkeys(requests + [e for e in extra if e not in requests]))
            rows = [first[k] for k in missing]
            computed = self._compute_checked(plan, [samples[i] for i in rows], todo, rows)
            for r in todo:
                block = cache.roundtrip(computed[r])
                cache.put_many(plan.namespace(r), missing, block, description=plan.description(r))
                if r in found:
                    found[r].update(zip(missing, block, strict=True))
        return {r: np.stack([found[r][k] for k in keys]).astype(np.float32, copy=False) for r in requests}

    def _unique_keys(self, samples: list) -> tuple[list, dict]:
        """Each sample's cache key, and each distinct key's first sample index (duplicates run once)."""
        keys = [self._sample_key(s, i) for i, s in enumerate(samples)]
        first = {}
        for i, k in enumerate(keys):
            first.setdefault(k, i)
        return keys, first

    def _compute_checked(self, plan: Plan, samples: list, requests: list, indices: list) -> dict:
        """``_compute``, then two guarantees: every block has the planned width, and no non-finite row is
        returned (or cached): a NaN/inf row raises an error naming its sample."""
        computed = self._compute(plan, samples, requests, indices)
        for r in requests:
            block = computed[r]
            width = plan.widths.get(r, block.shape[1] if block.ndim == 2 else None)
            if block.shape != (len(samples), width):
                raise RuntimeError(f"{type(self).__name__}: request {tuple(r)} gave shape {block.shape}, "
                                   f"planned ({len(samples)}, {width}): does the preprocessing give inputs "
                                   "of one fixed size?")
            bad = ~np.isfinite(block).all(axis=1)
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                raise InvalidSampleError(
                    f"Sample {indices[row]}: the model gave non-finite values (NaN or inf) for layer "
                    f"{r.layer!r}, pooling {r.pooling!r}"
                    + (" — reduced precision overflowed? try precision='fp32'" if getattr(
                        self, "precision_", "fp32") != "fp32" else "")
                    + f"; {int(bad.sum())} of {len(samples)} samples affected. Nothing was cached.",
                    index=indices[row])
        return computed

    def _choose_request(self, plan: Plan, X, y) -> tuple[Request, dict]:
        """``layer="auto"``: every candidate request of ``plan`` computed on the training samples in one
        pass (through the cache when there is one), scored by LogME against ``y``; the best one and every
        score. Model selection on the training data only, so it is legitimate inside a CV fold."""
        from .selection._rank import check_target, score_blocks

        if y is None:
            raise ValueError("layer='auto' picks the layer that best predicts y (LogME, on the training "
                             "data); call fit(X, y) with the labels, or name a layer.")
        if X is None:
            raise FitDataRequiredError("layer='auto' scores the layers on the training samples; call "
                                       "fit(X, y).")
        samples = self._check_input(X)
        check_target(y, len(samples))  # wrong length, NaN, one class: before any backbone pass
        scores = score_blocks(self._features(plan, samples, list(plan.requests), []), y)
        return max(plan.requests, key=lambda r: scores[r]), scores

    def _fit_pca(self, X) -> None:
        from sklearn.decomposition import PCA

        if X is None:
            raise FitDataRequiredError("n_components= fits a PCA on the training features; call fit(X) with "
                                       "the training samples, not fit(None).")
        plan = self.plan_
        feats = self._raw_features(plan, self._check_input(X))
        n = int(self.n_components)
        if n > min(feats.shape):
            raise ValueError(f"n_components={n} must be <= min(n_samples, n_features) = "
                             f"{min(feats.shape)} for these {feats.shape[0]} training samples.")
        self.pca_ = PCA(n_components=n, svd_solver="full").fit(feats.astype(np.float64))
        self.n_features_out_ = n
