"""Bulk jobs depend on the featurizers' public surface only, and their engines do not import each other."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator

import skfeaturize.jobs
from skfeaturize.jobs import embed, read_embeddings
from tests.test_embed import TEXTS, CharNgramFeaturizer

JOBS = Path(skfeaturize.jobs.__file__).parent


class PublicOnly(BaseEstimator):
    """A featurizer with nothing but the public surface a job may use: scikit-learn's estimator API,
    ``content_key``, ``fingerprint_``, ``transform``, ``get_feature_names_out`` (no BaseFeaturizer hooks)."""

    def __init__(self, inner=None):
        self.inner = inner

    def fit(self, X=None, y=None):
        self.inner = self.inner.fit(X)
        self.fingerprint_ = self.inner.fingerprint_
        return self

    def __sklearn_is_fitted__(self):
        return hasattr(self, "fingerprint_")

    def content_key(self, sample, index=0):
        return self.inner.content_key(sample, index)

    def transform(self, X):
        return self.inner.transform(X)

    def get_feature_names_out(self, input_features=None):
        return self.inner.get_feature_names_out()


def test_a_job_needs_only_the_public_featurizer_surface(tmp_path):
    src = tmp_path / "docs.txt"
    src.write_bytes("\n".join(TEXTS[:9]).encode() + b"\nbad \x97\n")
    f = PublicOnly(CharNgramFeaturizer(8)).fit()
    res = embed(src, tmp_path / "o.parquet", featurizer=f, layout="columns", chunk_size=4, on_error="skip",
                quiet=True)
    assert (res.rows, res.failed) == (9, 1)
    ids, hashes, X = read_embeddings(res.out)
    np.testing.assert_array_equal(X, CharNgramFeaturizer(8).fit().transform(TEXTS[:9]))
    assert hashes == [f.content_key(t) for t in TEXTS[:9]] and ids == list(range(9))


def _imports(module: str) -> set:
    tree = ast.parse((JOBS / f"{module}.py").read_text())
    return {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 1}


def test_the_engines_share_chunk_code_without_importing_each_other():
    assert "_embed" not in _imports("_ray") and "_chunks" in _imports("_ray")
    assert "_chunks" in _imports("_embed")
