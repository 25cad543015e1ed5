"""Modality-aware estimator checks shared by every featurizer's tests (as imbalanced-learn does).

scikit-learn's ``parametrize_with_checks`` feeds numeric 2-D data, which featurizers do not take, so we call
its data-independent checks directly and add our own checks on real samples."""

from __future__ import annotations

import pickle

import numpy as np
from sklearn import clone
from sklearn.utils import estimator_checks as ec

API_CHECKS = [
    ec.check_estimator_cloneable,
    ec.check_estimator_repr,
    ec.check_no_attributes_set_in_init,
    ec.check_get_params_invariance,
    ec.check_set_params,
    ec.check_parameters_default_constructible,
    ec.check_do_not_raise_errors_in_init_or_set_params,
    ec.check_valid_tag_types,
    ec.check_mixin_order,
    ec.check_estimator_tags_renamed,
]


def run_api_checks(estimator) -> None:
    """scikit-learn's data-independent checks, called directly."""
    name = type(estimator).__name__
    for check in API_CHECKS:
        check(name, clone(estimator))


def check_batch_size_invariance(featurizer, X, sizes=(1, 3), atol=1e-5):
    ref = clone(featurizer).set_params(batch_size=len(X)).fit(X).transform(X)
    for b in sizes:
        out = clone(featurizer).set_params(batch_size=b).fit(X).transform(X)
        np.testing.assert_allclose(out, ref, atol=atol, rtol=0)
    return ref


def check_order_preservation(featurizer, X, atol=1e-5):
    f = clone(featurizer).fit(X)
    ref = f.transform(X)
    perm = np.random.default_rng(0).permutation(len(X))
    out = f.transform([X[i] for i in perm])
    np.testing.assert_allclose(out, ref[perm], atol=atol, rtol=0)


def check_output_contract(featurizer, X):
    f = clone(featurizer).fit(X)
    out = f.transform(X)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.flags.c_contiguous
    assert out.shape[0] == len(X) and np.isfinite(out).all()
    names = f.get_feature_names_out()
    assert len(names) == out.shape[1] and len(set(names)) == len(names)
    again = f.transform(X)
    assert np.array_equal(out, again), "repeated calls must be bit-identical on CPU"
    pd_out = clone(featurizer).set_output(transform="pandas").fit(X).transform(X)
    assert list(pd_out.columns) == list(names)
    np.testing.assert_array_equal(pd_out.to_numpy(), out)
    return out


def check_pickle_round_trip(featurizer, X, max_bytes=None):
    f = clone(featurizer).fit(X)
    before = f.transform(X)
    blob = pickle.dumps(f)
    if max_bytes is not None:
        assert len(blob) < max_bytes, f"pickle is {len(blob)} bytes: weights must not be pickled"
    g = pickle.loads(blob)
    np.testing.assert_array_equal(g.transform(X), before)
    return blob


def check_set_params_changes_output(featurizer, X, **params):
    f = clone(featurizer).fit(X)
    a = f.transform(X)
    b = clone(featurizer).set_params(**params).fit(X).transform(X)
    assert a.shape != b.shape or not np.allclose(a, b), f"set_params({params}) did not change features"


def check_parameters_need_a_refit(featurizer, X, changes: dict, runtime: set):
    """Every parameter is covered: changed after ``fit``, one that decides the numbers makes ``transform``
    raise :class:`RefitRequiredError` naming it (never a mix of old plan and new parameter); a runtime
    parameter (``runtime``) changes nothing; setting the original value back needs no refit either."""
    import pytest

    from skfeaturize import RefitRequiredError

    fitted = clone(featurizer).fit(X)
    ref = fitted.transform(X)
    names = set(fitted.get_params(deep=False))
    assert names == set(changes), f"parameters without a refit case: {sorted(names ^ set(changes))}"
    for name, value in changes.items():
        f = clone(featurizer).fit(X)
        original = f.get_params(deep=False)[name]
        f.set_params(**{name: value})
        if name in runtime:
            np.testing.assert_allclose(f.transform(X), ref, atol=1e-5, rtol=0, err_msg=name)
        else:
            with pytest.raises(RefitRequiredError, match=rf"{name}: .*call fit\(\) again"):
                f.transform(X)
        f.set_params(**{name: original})
        np.testing.assert_array_equal(f.transform(X), ref, err_msg=name)


def check_cache_hit_equals_miss(featurizer, X, folder):
    """With a cache: a miss, then a hit, then no cache at all give the same rows, bit for bit."""
    f = clone(featurizer).set_params(cache=str(folder)).fit(X)
    miss = f.transform(X)
    hit = f.transform(X)
    plain = clone(featurizer).set_params(cache=None).fit(X).transform(X)
    np.testing.assert_array_equal(hit, miss)
    np.testing.assert_array_equal(plain, miss)


def check_in_grid_search(featurizer, X, y, grid: dict):
    """Inside ``Pipeline`` + ``GridSearchCV``: every setting is searched, and the refitted best pipeline
    featurizes exactly as a fresh featurizer with the best parameters does."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import Pipeline

    pipe = Pipeline([("feat", clone(featurizer)), ("clf", LogisticRegression(max_iter=500))])
    search = GridSearchCV(pipe, {f"feat__{k}": v for k, v in grid.items()}, cv=2).fit(X, y)
    assert len(search.cv_results_["params"]) == int(np.prod([len(v) for v in grid.values()]))
    assert search.predict(X).shape == (len(X),)
    best = {k.split("__", 1)[1]: v for k, v in search.best_params_.items()}
    fresh = clone(featurizer).set_params(**best).fit(X, y).transform(X)
    np.testing.assert_array_equal(search.best_estimator_.named_steps["feat"].transform(X), fresh)
    return search
