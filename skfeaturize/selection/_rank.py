"""Rank the layers (and poolings, and backbones) of a featurizer for one labelled data set.

``rank_layers`` computes every candidate block (one ``layer × pooling``) in **one backbone pass per sample
and backbone**, then scores each block with pure NumPy (LogME by default), optionally next to a
cross-validated linear model.

How the blocks come out of one pass, with the featurizers' public API only: ``precompute(X, layers=,
poolings=)`` runs the backbone once per sample for every ``layer × pooling`` and stores each block in the
cache (the featurizer's own ``cache`` when it has one, so that a later grid search over the same blocks is
all cache hits; otherwise a temporary folder, deleted afterwards). Then, per pooling, one ``transform`` of a
clone with ``layer=[every layer]`` reads all its blocks back (cache hits: the backbone does not run) and
``get_feature_names_out()`` splits the columns into blocks. The blocks are therefore exactly what
``featurizer.set_params(layer=L, pooling=P).fit_transform(X)`` returns (a text model's L2 normalisation
included), not a re-implementation. The other way, a single ``transform`` with a list of layers, needs no
cache but takes one pass per pooling (a featurizer has one ``pooling``); it is used only where the
featurizer's plan refuses the cache (an unidentifiable ``preprocess`` callable).
"""

from __future__ import annotations

import contextlib
import inspect
import tempfile
import time
from collections.abc import Mapping

import numpy as np
from sklearn.base import clone

from ..exceptions import TransferabilityError
from ._logme import _centred_targets, _check_targets, logme

# "logme_standardized": LogME with both of its options on, the evidence of the model the table's ``cv``
# column trains (StandardScaler + an L2 linear model with an intercept); measured closer to that model's
# cross-validated accuracy than the paper's plain LogME on both real data sets (docs/choosing.md).
SCORING_OPTIONS = {"logme_standardized": {"standardize": True, "fit_intercept": True}, "logme": {}}
SCORINGS = tuple(SCORING_OPTIONS)
DEFAULT_SCORING = SCORINGS[0]
CV_COLUMNS = {False: "cv_accuracy", True: "cv_r2"}  # classification, regression
CV_MAX_ITER = 2000  # LogisticRegression's iteration cap in the cross-validated comparison
RIDGE_ALPHAS = np.logspace(-3, 4, 15)


# -------------------------------------------------------------------------------------------- validation


def check_target(y, n_samples: int, *, regression=None, what: str = "X has", scoring=DEFAULT_SCORING):
    """``y`` checked for scoring ``n_samples`` samples: ``(y as an ndarray, is_regression)``.

    The one check of :func:`rank_layers` and :func:`score_blocks` (run before any backbone pass): one
    entry per sample, no missing value, at least two classes, and with ``scoring="logme_standardized"``
    (an intercept) no constant regression target; regression is inferred as
    :func:`~skfeaturize.selection.logme` does, unless ``regression`` says.
    """
    y = np.asarray(y)
    if y.ndim == 0:
        raise TransferabilityError(f"y must hold one target per sample; got the scalar {y.item()!r}.")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.shape[0] != n_samples:
        raise TransferabilityError(
            f"y has {y.shape[0]} entries but {what} {n_samples} samples; pass one target per sample, in "
            "the same order."
        )
    is_regression, targets, _ = _check_targets(y, n_samples, regression)
    if is_regression and isinstance(scoring, str) and SCORING_OPTIONS.get(scoring, {}).get("fit_intercept"):
        _centred_targets(targets)
    return y, is_regression


def _scorer(scoring, regression: bool):
    """``scoring`` as a function ``(features, y) -> float``, higher is better."""
    if callable(scoring):
        return lambda F, y: float(scoring(F, y))
    if isinstance(scoring, str) and scoring in SCORING_OPTIONS:
        return lambda F, y: logme(F, y, regression=regression, **SCORING_OPTIONS[scoring])
    raise TransferabilityError(
        f"scoring={scoring!r} is not allowed; use one of {list(SCORINGS)} or a callable "
        "(features, y) -> float where higher is better."
    )


def _check_blocks(blocks) -> int:
    """The common number of rows of ``blocks`` (a non-empty mapping label -> 2-D numeric array)."""
    if not isinstance(blocks, Mapping) or not blocks:
        raise TransferabilityError(
            f"blocks must be a non-empty dict of label -> (n_samples, n_features) array; got "
            f"{type(blocks).__name__}{' (empty)' if isinstance(blocks, Mapping) else ''}."
        )
    n = None
    for label, F in blocks.items():
        shape = np.shape(F)
        if len(shape) != 2:
            raise TransferabilityError(
                f"block {label!r} must be a 2-D (n_samples, n_features) array; got shape {shape}."
            )
        if n is None:
            n, first = shape[0], label
        elif shape[0] != n:
            raise TransferabilityError(
                f"block {label!r} has {shape[0]} rows but block {first!r} has {n}; every block must "
                "hold the same samples, in the same order."
            )
    return n


def _check_featurizer(featurizer) -> str:
    """The name of the featurizer's first parameter (its backbone: ``backbone`` or ``model``)."""
    params = featurizer.get_params(deep=False) if hasattr(featurizer, "get_params") else {}
    if "layer" not in params or not hasattr(featurizer, "list_layers"):
        raise TransferabilityError(
            f"rank_layers needs a featurizer with layers (ImageFeaturizer, TextFeaturizer); got "
            f"{type(featurizer).__name__}, which has no 'layer' parameter or list_layers()."
        )
    return list(inspect.signature(type(featurizer).__init__).parameters)[1]  # [0] is self


def _as_list(value, name: str):
    if value is None:
        return None
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if not values:
        raise TransferabilityError(f"{name}=[] selects nothing; pass None (the default) or at least one "
                                   "value.")
    return values


def _reusable(X):
    """``X`` as something that can be iterated several times (a generator becomes a list)."""
    return X if hasattr(X, "__len__") else list(X)


# ---------------------------------------------------------------------------------------------- blocks


def feature_blocks(featurizer, X, layers=None, poolings=None) -> dict:
    """Every ``layer × pooling`` block of ``featurizer`` for ``X``, from one backbone pass per sample.

    Returns a dict ``(layer, pooling) -> float32 (n_samples, width)`` with the resolved names (those of
    ``layers_`` / ``poolings_``; a vector such as ``pre_logits`` has pooling ``"none"``), in layer order,
    pooling by pooling. Each block equals ``set_params(layer=layer, pooling=pooling).fit_transform(X)``.
    ``layers=None``: the standard list (``list_layers(stages_only=True)`` for images, every hidden state for
    text); ``poolings=None``: the featurizer's own. ``n_components`` is ignored (blocks before any PCA).
    """
    _check_featurizer(featurizer)
    return _blocks(featurizer, _reusable(X), _as_list(layers, "layers"), _as_list(poolings, "poolings"))[0]


def standard_layers(featurizer) -> list:
    """The layer names ``layers=None`` means: the standard list of an image backbone, every hidden state of
    a text model."""
    signature = inspect.signature(featurizer.list_layers)
    table = featurizer.list_layers(stages_only=True) if "stages_only" in signature.parameters \
        else featurizer.list_layers()
    return table["name"].tolist()


def _blocks(featurizer, X, layers, poolings):
    """``(blocks, positions, prefix)``: the blocks of :func:`feature_blocks`, each block's position in the
    layer list (0 = first layer) and the backbone's name as the feature names show it."""
    base = clone(featurizer)
    base.set_params(combine="concat", **({"n_components": None} if "n_components" in base.get_params()
                                         else {}))
    layers = standard_layers(base) if layers is None else layers
    poolings = [base.pooling] if poolings is None else poolings
    readers = [clone(base).set_params(layer=list(layers), pooling=p).fit() for p in poolings]
    cacheable = readers[0].plan_.cache_refusal is None
    with _cache_for(base, cacheable) as cache:
        if cache is not None:
            filler = clone(base).set_params(layer=list(layers), cache=cache)
            filler.precompute(X, layers=list(layers), poolings=list(poolings))
        blocks, positions = {}, {}
        for reader in readers:
            reader.set_params(cache=cache)  # a runtime parameter: no refit needed
            features = reader.transform(X)
            for label, columns, position in _split(reader):
                if label not in blocks:  # a vector layer gives the same block for every pooling
                    blocks[label], positions[label] = features[:, columns], position
    prefix = str(readers[0].get_feature_names_out()[0]).split("__", 1)[0]
    return blocks, positions, prefix


@contextlib.contextmanager
def _cache_for(featurizer, cacheable: bool):
    """The featurizer's own cache, a temporary one when it has none, or None when its plan refuses one."""
    if not cacheable:
        yield None
    elif featurizer.cache is not None:
        yield featurizer.cache
    else:
        from ..cache import EmbeddingCache

        with tempfile.TemporaryDirectory(prefix="skfeaturize-rank-") as folder:
            cache = EmbeddingCache(folder)
            try:
                yield cache
            finally:
                cache.close()


def _split(reader):
    """``(label, columns, position)`` per block of a fitted featurizer's concatenated output, found from
    ``get_feature_names_out()`` (``{prefix}__{layer}__{pooling}_{i}``)."""
    stems = np.asarray([name.rsplit("_", 1)[0] for name in reader.get_feature_names_out()], dtype=object)
    labels = list(zip(reader.layers_, reader.poolings_, strict=True))
    order = list(dict.fromkeys(stems))
    if len(order) != len(labels):  # a layer name that ends like a column number would make this ambiguous
        raise RuntimeError(f"{type(reader).__name__}: {len(labels)} blocks but {len(order)} feature-name "
                           f"stems ({order[:3]}...); cannot split the output into layers.")
    return [(label, np.flatnonzero(stems == stem), i) for i, (label, stem) in enumerate(zip(labels, order,
                                                                                            strict=True))]


# ------------------------------------------------------------------------------------------------ scores


def score_blocks(blocks, y, scoring=DEFAULT_SCORING, *, regression=None) -> dict:
    """Score each feature block for the target ``y``: ``{label: score}``, in the order of ``blocks``.

    Parameters
    ----------
    blocks : dict
        Any label to an ``(n_samples, n_features)`` array, every block of the same samples.
    y : array-like of shape (n_samples,) or (n_samples, n_targets)
        Class labels, or continuous targets; checked once, as in :func:`rank_layers`.
    scoring : "logme_standardized", "logme" or callable, default="logme_standardized"
        :func:`~skfeaturize.selection.logme` (higher is better) of each feature standardised, with an
        intercept (``standardize=True, fit_intercept=True``: the evidence of ``StandardScaler`` + an L2
        linear model), or of the features as given without intercept (``"logme"``, the paper's), or
        ``(features, y) -> float``.
    regression : bool or None, default=None
        Classification or regression for all blocks; ``None`` infers it from ``y``.

    Returns
    -------
    dict
        ``{label: score}``.
    """
    _scorer(scoring, False)  # an unknown scoring fails before anything else
    n = _check_blocks(blocks)
    y, is_regression = check_target(y, n, regression=regression, what="the blocks have", scoring=scoring)
    score = _scorer(scoring, is_regression)
    return {label: score(F, y) for label, F in blocks.items()}


def rank_layers(featurizer, X, y, layers=None, poolings=None, backbones=None, scoring=DEFAULT_SCORING,
                cv=None, *, regression=None):
    """Rank every ``(backbone, layer, pooling)`` of a featurizer for the labelled data ``X, y``.

    Parameters
    ----------
    featurizer : ImageFeaturizer or TextFeaturizer
        Its parameters (weights, preprocessing, ``max_length``, ``normalize``, device, cache ...) are kept;
        it is cloned, never changed. ``n_components`` is ignored: blocks are scored before any PCA.
    X : list or array of samples
        What the featurizer takes (images or texts).
    y : array-like of shape (n_samples,)
        Their targets: class labels, or continuous values for regression.
    layers : list or None
        ``None``: every layer of the standard list (``list_layers(stages_only=True)`` for images, every
        hidden state ``0 … L`` for text); otherwise any values ``layer=`` accepts.
    poolings : list or None
        ``None``: the featurizer's own ``pooling``.
    backbones : list or None
        Values for the featurizer's first parameter (``backbone`` / ``model``); ``None``: its own.
    scoring : "logme_standardized", "logme" or callable, default="logme_standardized"
        LogME (You et al., ICML 2021) of the standardised features with an intercept (the Bayesian
        counterpart of the ``cv`` model below), the paper's LogME of the features as given (``"logme"``),
        or ``(features, y) -> float``; higher is better.
    cv : None, int, cross-validation splitter or iterable of splits
        Also report the mean cross-validated score of ``make_pipeline(StandardScaler(),
        LogisticRegression(max_iter=2000))`` (accuracy, ``cv_accuracy``), or for regression of
        ``make_pipeline(StandardScaler(), RidgeCV(alphas))`` (R², ``cv_r2``), on the same folds for every
        block (scikit-learn's ``check_cv`` semantics: an int means stratified folds for classes).
    regression : bool or None
        ``None``: inferred from ``y`` as :func:`~skfeaturize.selection.logme` does.

    Returns
    -------
    pandas.DataFrame
        One row per distinct block, best score first: ``backbone`` (the name used in feature names),
        ``layer``, ``pooling`` (resolved names; ``"none"`` for a vector layer), ``layer_index`` (position
        in the layer list), ``score``, ``n_features``, ``seconds`` (time to score the block) and, with
        ``cv``, ``cv_accuracy`` or ``cv_r2``, ``cv_std`` and ``cv_seconds``. ``attrs`` holds ``scoring``,
        ``task`` and ``featurize_seconds`` (per backbone: the one backbone pass and cache reads).
        ``table.pipe(plot_layer_scores, path="layers.png")`` draws it.

    Notes
    -----
    One backbone pass per sample and backbone (see the module docstring), then NumPy only. With the
    featurizer's own ``cache``, the blocks stay there for the grid search that follows.
    """
    first = _check_featurizer(featurizer)
    X = _reusable(X)
    y, is_regression = check_target(y, len(X), regression=regression, scoring=scoring)
    score = _scorer(scoring, is_regression)
    layers, poolings = _as_list(layers, "layers"), _as_list(poolings, "poolings")
    backbones = [featurizer.get_params()[first]] if backbones is None else _as_list(backbones, "backbones")
    splits = None if cv is None else _splits(cv, y, is_regression)
    rows, featurize_seconds = [], {}
    for backbone in backbones:
        t0 = time.perf_counter()
        member = clone(featurizer).set_params(**{first: backbone})
        blocks, positions, prefix = _blocks(member, X, layers, poolings)
        name = _unique(prefix, featurize_seconds)
        featurize_seconds[name] = time.perf_counter() - t0
        for (layer, pooling), F in blocks.items():
            row = {"backbone": name, "layer": layer, "pooling": pooling,
                   "layer_index": positions[layer, pooling]}
            rows.append({**row, **_score_block(F, y, score, splits, is_regression)})
    return _table(rows, scoring, is_regression, featurize_seconds)


def _score_block(F, y, score, splits, is_regression) -> dict:
    t0 = time.perf_counter()
    out = {"score": score(F, y), "n_features": int(F.shape[1])}
    out["seconds"] = time.perf_counter() - t0
    if splits is not None:
        from sklearn.model_selection import cross_val_score

        t0 = time.perf_counter()
        folds = cross_val_score(_cv_model(is_regression), F, y, cv=splits,
                                scoring="r2" if is_regression else "accuracy")
        out.update({CV_COLUMNS[is_regression]: float(folds.mean()), "cv_std": float(folds.std()),
                    "cv_seconds": time.perf_counter() - t0})
    return out


def _cv_model(is_regression: bool):
    from sklearn.linear_model import LogisticRegression, RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    head = RidgeCV(alphas=RIDGE_ALPHAS) if is_regression else LogisticRegression(max_iter=CV_MAX_ITER)
    return make_pipeline(StandardScaler(), head)


def _splits(cv, y, is_regression: bool) -> list:
    """The folds, drawn once so that every block is evaluated on the same ones."""
    from sklearn.model_selection import check_cv

    try:
        splitter = check_cv(cv, y, classifier=not is_regression)
        return list(splitter.split(np.zeros((len(y), 1)), y))
    except (TypeError, ValueError) as e:
        raise TransferabilityError(
            f"cv={cv!r} cannot split these {len(y)} samples ({e}); pass None, an int >= 2 no larger than "
            "the smallest class, a scikit-learn splitter, or a list of (train, test) index pairs."
        ) from e


def _unique(name: str, taken) -> str:
    if name not in taken:
        return name
    k = 2
    while f"{name}#{k}" in taken:
        k += 1
    return f"{name}#{k}"


def _table(rows, scoring, is_regression, featurize_seconds):
    import pandas as pd

    columns = ["backbone", "layer", "pooling", "layer_index", "score", "n_features", "seconds"]
    if rows and "cv_std" in rows[0]:
        columns += [CV_COLUMNS[is_regression], "cv_std", "cv_seconds"]
    table = pd.DataFrame(rows, columns=columns)
    table = table.sort_values("score", ascending=False, kind="stable", na_position="last")
    table = table.reset_index(drop=True)
    scoring = scoring if isinstance(scoring, str) else getattr(scoring, "__name__", repr(scoring))
    table.attrs.update({"scoring": scoring,
                        "task": "regression" if is_regression else "classification",
                        "featurize_seconds": featurize_seconds})
    return table
