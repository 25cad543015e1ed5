"""LogME: how well a block of features suits a target, by the evidence of a Bayesian linear model.

You, Liu, Wang and Long, "LogME: Practical Assessment of Pre-trained Models for Transfer Learning",
ICML 2021 (http://proceedings.mlr.press/v139/you21b.html), and the fixed-point form of their follow-up
"Ranking and Tuning Pre-trained Models" (https://arxiv.org/abs/2110.10545); reference implementation
https://github.com/thuml/LogME (``LogME.py``).

For one target ``y`` (n values) and features ``F`` (n × d), the model is ``y = F w + noise`` with
``w ~ N(0, I / alpha)`` and ``noise ~ N(0, I / beta)``. Its log evidence

    L(alpha, beta) = n/2 log beta + d/2 log alpha - n/2 log 2 pi
                     - beta/2 ||F m - y||^2 - alpha/2 m^T m - 1/2 log |A|,
    A = alpha I + beta F^T F,   m = beta A^{-1} F^T y,

is maximised over ``(alpha, beta)`` by MacKay's fixed-point updates ``alpha = gamma / m^T m``,
``beta = (n - gamma) / ||F m - y||^2``, ``gamma = sum_i beta sigma_i / (alpha + beta sigma_i)``, where
``sigma_i`` are the eigenvalues of ``F^T F``. Everything is evaluated on one eigendecomposition of the
smaller Gram matrix (``F^T F`` when ``n >= d``, else ``F F^T``), computed once per feature block and shared
by every target, so the cost per target and iteration is O(min(n, d)).

Departures from the reference code, each deliberate:

* ``log |A|`` counts the ``d - rank`` eigenvalues equal to ``alpha`` (the reference's fast variant drops
  them when ``d > n``: thuml/LogME issue #23, open pull request #24).
* No ``1e-5`` added to the denominators: the updates are exact and the evidence is the exact ``L`` at the
  returned ``(alpha, beta)``.
* The iteration starts from ``alpha / beta = ||F||_F^2 / n`` instead of ``alpha = beta = 1`` and runs to a
  tolerance rather than for at most 11 steps, so scaling the features by a constant leaves the score
  unchanged (the evidence itself is scale-invariant: ``alpha`` absorbs the scale).
* Two options the paper does not have, both off by default: ``fit_intercept`` (an intercept under a flat
  prior, integrated out: the paper's LogME of the data projected onto the complement of the constant
  vector, ``n - 1`` dimensions) and ``standardize`` (each feature divided by its standard deviation, so
  that the isotropic prior on ``w`` is the L2 penalty of a linear model fitted after ``StandardScaler``).
  Together they make LogME the evidence of the model a user then trains, ``StandardScaler`` + an L2
  linear model with an intercept; ``rank_layers`` and ``layer="auto"`` score with both on (measured in
  docs/choosing.md: they rank layers closer to cross-validated accuracy on both real data sets).
* The supremum of the evidence can lie at a boundary: ``alpha -> inf`` (the features explain nothing
  that noise does not) or, when ``rank(F) = n``, ``beta -> inf`` (an exact fit). The evidence has a finite
  limit there; the iteration stops once ``alpha / beta`` has left the spectrum by a factor of 1 / eps
  (the features, resp. the noise, are then invisible in float64) and reports that point.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._warnings import warn
from ..exceptions import TransferabilityError

_EPS = np.finfo(np.float64).eps
_MAX_FLOAT_CLASSES = 20  # whole-number float labels with more distinct values are a regression target


@dataclass(frozen=True)
class LogMEResult:
    """Everything :func:`logme_details` computed for one feature block.

    ``evidence``, ``alpha``, ``beta``, ``n_iter`` and ``converged`` have one entry per target: per class
    (in the order of ``classes``) for classification, per column of ``y`` for regression. ``evidence`` is
    the maximum log evidence divided by the number of samples (``n_samples - 1`` with ``fit_intercept``);
    ``score`` is its mean.
    """

    score: float
    evidence: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray
    n_iter: np.ndarray
    converged: np.ndarray
    regression: bool
    classes: np.ndarray | None
    n_samples: int
    n_features: int
    rank: int
    standardize: bool = False
    fit_intercept: bool = False


def logme(features, y, *, regression=None, standardize=False, fit_intercept=False, tol=1e-8,
          max_iter=10_000) -> float:
    """LogME score of ``features`` for the target ``y``: higher means the features suit ``y`` better.

    The maximum log evidence of a Bayesian linear model from the features to each target, divided by the
    number of samples (the paper's normalisation) and averaged over targets. Only differences between
    scores of the same samples and ``y`` are meaningful (e.g. to rank layers or backbones).

    Parameters
    ----------
    features : array-like of shape (n_samples, n_features)
        Finite numbers, at least 2 rows. Used as given (no centring, no intercept, as in the paper)
        unless ``standardize`` / ``fit_intercept`` say otherwise; computed in float64.
    y : array-like of shape (n_samples,) or (n_samples, n_targets)
        Class labels (ints, strings, bools, ...) or continuous targets.
    regression : bool or None, default None
        ``False``: ``y`` holds class labels; each class is one target, its one-vs-rest 0/1 indicator.
        ``True``: ``y`` holds continuous values; each column is one target.
        ``None``: inferred. A 2-D ``y`` with more than one column is regression. A 1-D ``y`` is regression
        exactly when it has a floating-point dtype and either some value is not a whole number or there
        are more than 20 distinct values; ints, bools, strings and objects are class labels.
    standardize : bool, default False
        Divide each feature by its standard deviation first (a constant feature is left as it is, as
        ``StandardScaler`` does), so that the score is the same for any per-feature scaling: the evidence
        of the linear model that ``StandardScaler`` + an L2-penalised model fits.
    fit_intercept : bool, default False
        Add an intercept under a flat prior and integrate it out: features and targets are centred and
        the evidence is that of the ``n - 1`` centred degrees of freedom. The score is then the same when
        a constant is added to any feature or target. ``False`` is the paper's model (no intercept).
    tol : float, default 1e-8
        The fixed-point iteration for a target stops when ``alpha / beta`` changes by a relative amount
        of at most ``tol`` in one step (the reference code uses 1e-3).
    max_iter : int, default 10000
        Iteration cap per target; a :class:`sklearn.exceptions.ConvergenceWarning` says when it was hit.

    Returns
    -------
    float
        The score. :func:`logme_details` also returns the per-target evidences and ``alpha``/``beta``.

    Notes
    -----
    Cost: one eigendecomposition of the smaller Gram matrix (``min(n, d)`` squared), shared by all targets,
    then about 10 updates per target of cost ``min(n, d)``. A target that is an exact linear function of
    ``n > d`` features (``n - 1 > d`` with ``fit_intercept``) has unbounded evidence; its score is then set
    by float64 rounding (about 14).
    """
    return logme_details(features, y, regression=regression, standardize=standardize,
                         fit_intercept=fit_intercept, tol=tol, max_iter=max_iter).score


def logme_details(features, y, *, regression=None, standardize=False, fit_intercept=False, tol=1e-8,
                  max_iter=10_000) -> LogMEResult:
    """:func:`logme`, with the per-target evidences, fitted ``alpha``/``beta`` and iteration counts."""
    _check_iteration_params(tol, max_iter)
    for name, flag in (("standardize", standardize), ("fit_intercept", fit_intercept)):
        if not isinstance(flag, (bool, np.bool_)):
            raise TransferabilityError(f"{name}={flag!r} is not allowed; pass True or False.")
    F = _check_features(features)
    n, d = F.shape
    is_regression, targets, classes = _check_targets(y, n, regression)
    if fit_intercept and is_regression:
        targets = _centred_targets(targets)
    F = _prepared(F, bool(standardize), bool(fit_intercept))
    sigma, x2, residual, norm2 = _project(F, targets, classes, bool(fit_intercept))
    n_full, n = n, n - bool(fit_intercept)  # the centred data have n - 1 degrees of freedom
    if sigma.size == 0:  # features of rank 0: only the noise model is left (the alpha -> inf limit)
        alpha = np.full(norm2.shape, np.inf)
        beta = n / norm2
        n_iter, converged = np.zeros(norm2.shape, dtype=int), np.ones(norm2.shape, dtype=bool)
    else:
        ratio, n_iter, converged = _fixed_point(sigma, x2, residual, n, tol, max_iter)
        alpha, beta = _update(ratio, sigma, x2, residual, n)
    evidence = _evidence(alpha, beta, sigma, x2, residual, n) / n
    return LogMEResult(
        score=float(evidence.mean()), evidence=evidence, alpha=alpha, beta=beta, n_iter=n_iter,
        converged=converged, regression=is_regression, classes=classes, n_samples=n_full, n_features=d,
        rank=int(sigma.size), standardize=bool(standardize), fit_intercept=bool(fit_intercept),
    )


# --------------------------------------------------------------------------------------------- validation


def _check_iteration_params(tol, max_iter):
    if isinstance(tol, bool) or not isinstance(tol, (int, float, np.number)) or not 0 < tol < 1:
        raise TransferabilityError(f"tol={tol!r} is not allowed; pass a float in (0, 1), e.g. 1e-8.")
    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 1:
        raise TransferabilityError(f"max_iter={max_iter!r} is not allowed; pass an int >= 1, e.g. 10000.")


def _check_features(features) -> np.ndarray:
    F = np.asarray(features)
    if F.dtype.kind not in "biuf":
        raise TransferabilityError(
            f"features must be real numbers; got an array of dtype {F.dtype}. Pass the numeric feature "
            "matrix, e.g. the output of a featurizer's transform."
        )
    if F.ndim != 2 or F.shape[0] < 2 or F.shape[1] < 1:
        raise TransferabilityError(
            f"features must be a 2-D array with at least 2 rows (samples) and 1 column; got shape "
            f"{F.shape}. Reshape to (n_samples, n_features)."
        )
    F = np.asarray(F, dtype=np.float64)
    finite = np.isfinite(F)
    if not finite.all():
        row, col = (int(i) for i in np.argwhere(~finite)[0])
        raise TransferabilityError(
            f"features must be finite; sample {row} has {F[row, col].item()!r} in column {col} "
            f"({int((~finite).any(axis=1).sum())} sample(s) affected). Drop or impute those samples."
        )
    return F


def _check_targets(y, n, regression):
    """``(is_regression, targets, classes)``: a float (n, k) array, or class indices with their classes."""
    if regression not in (None, True, False):
        raise TransferabilityError(f"regression={regression!r} is not allowed; pass None, True or False.")
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim not in (1, 2):
        raise TransferabilityError(
            f"y must be 1-D (n_samples,) or 2-D (n_samples, n_targets); got shape {y.shape}."
        )
    if y.shape[0] != n:
        raise TransferabilityError(
            f"y has {y.shape[0]} entries but features have {n} rows; pass one target per sample, in the "
            "same order."
        )
    _check_no_missing(y)
    if regression is None:
        regression = y.ndim == 2 or _looks_continuous(y)
    if regression:
        return True, _regression_targets(y), None
    if y.ndim == 2:
        raise TransferabilityError(
            f"regression=False needs 1-D class labels; got y of shape {y.shape}. Pass regression=True to "
            "score each column as a continuous target."
        )
    return False, *_class_targets(y)


def _check_no_missing(y):
    if y.dtype.kind == "f":
        missing = np.isnan(y)
    elif y.dtype.kind == "O":  # None, NaN, pandas.NA, NaT
        import pandas as pd

        missing = np.asarray(pd.isna(y), dtype=bool)
    else:
        return
    if missing.any():
        index = np.argwhere(missing)[0]
        where = int(index[0]) if y.ndim == 1 else tuple(int(i) for i in index)
        raise TransferabilityError(
            f"y must not contain missing values; y[{where}] is {_plain(y[tuple(index)])!r} "
            f"({int(missing.sum())} missing). Drop those samples or fill them before scoring."
        )


def _plain(value):
    """A NumPy scalar as the Python value, so that messages read ``nan``, not ``np.float64(nan)``."""
    return value.item() if isinstance(value, np.generic) else value


def _looks_continuous(y) -> bool:
    if y.dtype.kind != "f":
        return False
    if not np.isfinite(y).all():  # not a class label: let the regression check name it
        return True
    return bool(np.any(y != np.round(y)) or np.unique(y).size > _MAX_FLOAT_CLASSES)


def _regression_targets(y) -> np.ndarray:
    if y.dtype.kind not in "biuf":
        raise TransferabilityError(
            f"regression=True needs numeric targets; got y of dtype {y.dtype}. Pass numbers, or "
            "regression=False for class labels."
        )
    Y = np.asarray(y, dtype=np.float64).reshape(y.shape[0], -1)
    finite = np.isfinite(Y)
    if not finite.all():
        row, col = (int(i) for i in np.argwhere(~finite)[0])
        raise TransferabilityError(
            f"regression targets must be finite; y[{row}] is {Y[row, col].item()!r} (column {col}). Drop or "
            "clip those samples."
        )
    _refuse_exact_fits(~Y.any(axis=0), "is all zeros, which any model fits exactly", "")
    return Y


def _centred_targets(Y) -> np.ndarray:
    """Regression targets minus their means; a constant one (up to rounding) is refused."""
    mean = Y.mean(axis=0)
    Y = Y - mean
    _refuse_exact_fits(_spread(Y, mean)[1], "is constant, which the intercept fits exactly",
                       ", or score without an intercept (scoring='logme' in rank_layers and score_blocks, "
                       "fit_intercept=False in logme)")
    return Y


def _refuse_exact_fits(columns, what: str, remedy: str) -> None:
    if columns.any():
        raise TransferabilityError(
            f"regression target column {int(np.argmax(columns))} {what} (its evidence is unbounded); drop "
            f"that column{remedy}."
        )


def _spread(centred, mean) -> tuple[np.ndarray, np.ndarray]:
    """Each column's variance, and which columns are constant up to the rounding of their mean:
    scikit-learn's bound (``StandardScaler``, ``_is_constant_feature``) on the variance of the centred
    values."""
    n = centred.shape[0]
    var = np.einsum("ij,ij->j", centred, centred) / n
    return var, var <= n * _EPS * var + (n * mean * _EPS) ** 2


def _class_targets(y):
    try:
        classes, index = np.unique(y, return_inverse=True)
    except TypeError as e:
        raise TransferabilityError(
            f"class labels must be mutually comparable (all numbers or all strings); got {e}."
        ) from e
    if classes.size < 2:
        raise TransferabilityError(
            f"LogME needs at least two classes; y has only {_plain(classes[0])!r}. Score a sample that holds "
            "several classes, or pass regression=True for a continuous target."
        )
    return index.reshape(-1), classes


# --------------------------------------------------------------------------------------------- numerics


def _prepared(F, standardize: bool, fit_intercept: bool) -> np.ndarray:
    """``F`` centred (``fit_intercept``) and divided by each column's standard deviation (``standardize``).

    A column that is constant up to the rounding of its mean keeps the scale 1 (:func:`_spread`):
    dividing rounding noise by its own size would turn it into a unit-variance feature. Written out
    instead of calling ``StandardScaler`` to save its validation (1.3 ms of a 5 ms score for 200 x 384
    features).
    """
    if not (standardize or fit_intercept):
        return F
    mean = F.mean(axis=0)
    centred = F - mean
    var, constant = _spread(centred, mean)
    if fit_intercept:  # the intercept absorbs a constant column exactly; its rounding residue must go too
        centred[:, constant] = 0.0
    if standardize:
        scale = np.where(constant, 1.0, np.sqrt(var))
        return centred / scale if fit_intercept else F / scale
    return centred


def _project(F, targets, classes, centred=False):
    """The spectrum of ``F`` and each target's squared coordinates on it.

    Returns ``sigma`` (the r nonzero eigenvalues of ``F^T F``), ``x2`` (r × T: squared coordinates of the
    targets on the matching left singular vectors), ``residual`` (T: squared norm of the part of each
    target outside the column space of ``F``) and ``norm2`` (T: squared norm of each target).
    ``centred``: ``F`` has centred columns and class targets are taken centred (the indicator minus the
    class frequency; a regression target comes centred already).
    """
    n, d = F.shape
    by_class = classes is not None
    if by_class:
        counts = np.bincount(targets, minlength=classes.size).astype(np.float64)
        norm2 = counts - counts**2 / n if centred else counts
    else:
        norm2 = np.einsum("ij,ij->j", targets, targets)
    if n >= d:
        w, V = np.linalg.eigh(F.T @ F)
        keep = _numerical_support(w, n, d)
        Fty = _class_sums(F, targets, classes.size) if by_class else F.T @ targets  # (d, T)
        if by_class and centred:  # F^T (indicator - frequency); F^T 1 is 0 only up to rounding
            Fty -= F.sum(axis=0)[:, None] * (counts / n)
        x2 = (V[:, keep].T @ Fty) ** 2 / w[keep, None]  # (u_i^T y)^2 with u_i = F v_i / s_i
        residual = np.maximum(norm2 - x2.sum(axis=0), 0.0)
    else:
        w, U = np.linalg.eigh(F @ F.T)
        keep = _numerical_support(w, n, d)
        Uty = _class_sums(U, targets, classes.size) if by_class else U.T @ targets  # (n, T): all of y
        if by_class and centred:
            Uty -= U.sum(axis=0)[:, None] * (counts / n)  # U^T (indicator - frequency)
        x2 = Uty[keep] ** 2
        residual = (Uty[~keep] ** 2).sum(axis=0)
    return w[keep], x2, residual, norm2


def _numerical_support(w, n, d):
    """Eigenvalues of a Gram matrix that are nonzero beyond its rounding error (about eps * max)."""
    top = w.max(initial=0.0)
    return w > top * max(n, d) * _EPS if top > 0 else np.zeros(w.shape, dtype=bool)


def _class_sums(M, index, n_classes):
    """``M^T Y`` for the one-hot ``Y`` of ``index``, without building ``Y``: per-class sums of rows."""
    order = np.argsort(index, kind="stable")
    starts = np.searchsorted(index[order], np.arange(n_classes))
    return np.add.reduceat(M[order], starts, axis=0).T


def _terms(ratio, sigma, x2, residual, n):
    """gamma, n - gamma, m^T m and ||F m - y||^2 at ``alpha / beta = ratio`` (one per target).

    Written in ``rho = sigma / ratio`` so that neither limit of the ratio loses precision: ``n - gamma`` is
    summed directly, not subtracted.
    """
    rho = sigma[:, None] / ratio
    shrink = 1.0 / (1.0 + rho)
    gamma = (rho * shrink).sum(axis=0)
    n_minus_gamma = (n - sigma.size) + shrink.sum(axis=0)
    m2 = (rho * x2 * shrink**2).sum(axis=0) / ratio
    r2 = (x2 * shrink**2).sum(axis=0) + residual
    return gamma, n_minus_gamma, m2, r2


def _update(ratio, sigma, x2, residual, n):
    gamma, n_minus_gamma, m2, r2 = _terms(ratio, sigma, x2, residual, n)
    with np.errstate(divide="ignore"):  # m2 == 0 (y orthogonal to the features): alpha = inf, the limit
        return gamma / m2, n_minus_gamma / r2


def _fixed_point(sigma, x2, residual, n, tol, max_iter, accelerate=True):
    """Iterate the updates on ``alpha / beta`` (they depend on nothing else) for every target at once.

    The updates converge linearly, often at a rate close to 1 (thousands of steps for weak features), so
    every two updates are followed by Aitken's delta-squared extrapolation in ``log(alpha / beta)``
    (Steffensen's method), kept only when it raises the evidence. The fixed point is the paper's; it is
    reached in about 10 updates. ``accelerate=False`` runs the plain updates.
    """
    low, high = np.log(sigma.min() * _EPS), np.log(sigma.max() / _EPS)  # the limits, reached in float64
    u = np.full(x2.shape[1], np.log(sigma.sum() / n))  # ||F||_F^2 / n: prior and noise share y's variance
    active = np.ones(u.shape, dtype=bool)
    n_iter = np.zeros(u.shape, dtype=int)
    while active.any() and n_iter.max() < max_iter:
        index = np.flatnonzero(active)
        target = (sigma, x2[:, index], residual[index], n)
        u0 = u[index]
        u1 = _step(u0, *target, low, high)
        n_iter[index] += 1
        done = (np.abs(u1 - u0) <= tol) | (u1 == low) | (u1 == high)
        u[index] = u1
        if accelerate and n_iter.max() < max_iter:
            u2 = _step(u1, *target, low, high)
            n_iter[index[~done]] += 1
            u[index] = np.where(done, u1, _extrapolate(u0, u1, u2, target, low, high))
        active[index[done]] = False
    if active.any():
        warn(
            f"LogME's fixed-point iteration did not converge in max_iter={max_iter} steps for "
            f"{int(active.sum())} of {active.size} target(s); their evidence may be slightly low. "
            "Increase max_iter or tol.",
            _convergence_warning())
    return np.exp(u), n_iter, ~active


def _step(u, sigma, x2, residual, n, low, high):
    """One update of the paper, in ``u = log(alpha / beta)``, kept inside the limits."""
    alpha, beta = _update(np.exp(u), sigma, x2, residual, n)
    with np.errstate(divide="ignore"):
        return np.clip(np.log(alpha / beta), low, high)


def _extrapolate(u0, u1, u2, target, low, high):
    """Aitken's extrapolation of three iterates, or ``u2`` where it does not raise the evidence."""
    d1, d2 = u1 - u0, u2 - u1
    with np.errstate(divide="ignore", invalid="ignore"):
        jump = np.clip(u2 - d2**2 / (d2 - d1), low, high)  # no curvature (d2 == d1): a limit, or nan
    jump = np.where(np.isnan(jump), u2, jump)
    return np.where(_profile(jump, *target) >= _profile(u2, *target), jump, u2)


def _profile(u, sigma, x2, residual, n):
    """The log evidence maximised over ``beta`` at fixed ``alpha / beta = exp(u)``, up to a constant."""
    rho = sigma[:, None] * np.exp(-u)
    quad = (x2 / (1.0 + rho)).sum(axis=0) + residual
    return -n / 2 * np.log(quad) - 0.5 * np.log1p(rho).sum(axis=0)


def _evidence(alpha, beta, sigma, x2, residual, n):
    """The log evidence at ``(alpha, beta)``, as the Gaussian marginal ``y ~ N(0, I/beta + F F^T/alpha)``.

    Equal to the weight-space formula of the module docstring; this form also holds at ``alpha = inf``.
    """
    rho = sigma[:, None] * (beta / alpha)
    quad = (x2 / (1.0 + rho)).sum(axis=0) + residual
    return (n / 2 * np.log(beta) - 0.5 * np.log1p(rho).sum(axis=0) - beta / 2 * quad
            - n / 2 * np.log(2 * np.pi))


def _convergence_warning():
    from sklearn.exceptions import ConvergenceWarning

    return ConvergenceWarning
