"""``layer="auto"`` (issue 12): the layer is chosen by LogME on the training data in ``fit(X, y)``, at the
cost of one backbone pass per sample (with a cache, even inside a cross-validated grid search)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline

from skfeaturize import ImageFeaturizer, TextFeaturizer
from skfeaturize.exceptions import TransferabilityError
from skfeaturize.selection import logme

from .test_text import _save_tiny


@pytest.fixture(scope="module")
def labelled(small_images):
    return small_images, np.array([0] * 6 + [1] * 6)


def test_auto_keeps_the_best_scored_candidate(labelled, tmp_path):
    X, y = labelled
    f = ImageFeaturizer("timm:test_resnet", weights=None, layer="auto", cache=str(tmp_path / "c")).fit(X, y)
    scores = f.layer_scores_
    assert {r.layer for r in scores} == {"act1", "layer1", "layer2", "layer3", "layer4", "pre_logits"}
    assert {r.pooling for r in scores if r.layer == "layer2"} == {"avg", "max"}
    best = max(scores, key=scores.get)
    assert (f.layers_, f.poolings_) == ([best.layer], [best.pooling])
    fixed = ImageFeaturizer("timm:test_resnet", weights=None, layer=best.layer, pooling=best.pooling).fit(X)
    np.testing.assert_array_equal(f.transform(X), fixed.transform(X))
    assert scores[best] == pytest.approx(logme(fixed.transform(X), y, standardize=True, fit_intercept=True))


def test_auto_inside_grid_search_runs_the_backbone_once_per_sample(labelled, tmp_path, image_passes):
    X, y = labelled
    f = ImageFeaturizer("timm:test_resnet", weights=None, layer="auto", cache=str(tmp_path / "c"))
    pipe = Pipeline([("feat", f), ("clf", LogisticRegression(max_iter=500))])
    search = GridSearchCV(pipe, {"clf__C": [0.1, 1.0]}, cv=StratifiedKFold(3, shuffle=True, random_state=0))
    search.fit(X, y)
    assert image_passes["samples"] == len(X)  # 2 settings x 3 folds + refit: every candidate block a hit
    chosen = search.best_estimator_[0].layers_[0]
    assert chosen in {"act1", "layer1", "layer2", "layer3", "layer4", "pre_logits"}


def test_text_auto_scores_every_hidden_state(tmp_path):
    tiny = _save_tiny(tmp_path / "tiny")
    X = ["good movie", "great film", "fine acting", "bad plot", "awful film", "boring movie"] * 2
    y = np.array([1, 1, 1, 0, 0, 0] * 2)
    f = TextFeaturizer(tiny, layer="auto").fit(X, y)
    assert {r.layer for r in f.layer_scores_} == {"0", "1", "2"}
    assert {r.pooling for r in f.layer_scores_} == {"mean", "cls"}
    assert f.transform(X).shape == (12, 32)


@pytest.mark.parametrize("y,error,match", [
    (None, ValueError, r"layer='auto' picks the layer .* call fit\(X, y\)"),
    (np.zeros(5), TransferabilityError, r"y has 5 entries but X has 12 samples"),
    (np.zeros(12, int), TransferabilityError, r"LogME needs at least two classes"),
    (np.r_[np.zeros(11), np.nan], TransferabilityError, r"missing|NaN"),
])
def test_auto_errors(labelled, y, error, match):
    X, _ = labelled
    with pytest.raises(error, match=match):
        ImageFeaturizer("timm:test_resnet", weights=None, layer="auto").fit(X, y)
