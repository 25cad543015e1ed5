"""Several layers in one vector (`combine="mean"|"sum"`): the numbers are the per-layer blocks averaged or
summed, the cache and `precompute` serve them, and layers of unequal width are refused."""

from __future__ import annotations

import numpy as np
import pytest

from skfeaturize import EmbeddingCache, ImageFeaturizer, TextFeaturizer

from .test_text import _save_tiny

TEXTS = ["a good movie", "the plot is thin", "superb acting and a moving story", "dull"]
VIT = {"backbone": "timm:test_vit", "weights": None, "layer": ["blocks.1", "blocks.2", -1], "pooling": "cls"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return _save_tiny(tmp_path_factory.mktemp("combine-bert"))


def _blocks(out: np.ndarray, n: int) -> list[np.ndarray]:
    return np.split(out, n, axis=1)


@pytest.mark.parametrize("how", ["mean", "sum"])
def test_image_layers_combine_to_the_mean_or_sum_of_their_blocks(small_images, how):
    blocks = _blocks(ImageFeaturizer(**VIT).fit([]).transform(small_images), 3)
    f = ImageFeaturizer(**VIT, combine=how).fit([])
    out = f.transform(small_images)
    ref = np.mean(blocks, axis=0) if how == "mean" else np.sum(blocks, axis=0)
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-6)
    assert out.shape == (len(small_images), blocks[0].shape[1]) == (len(small_images), f.n_features_out_)
    assert f.get_feature_names_out()[0].startswith(f"test_vit__{how}(")


@pytest.mark.parametrize("how", ["mean", "sum"])
def test_text_layers_combine_to_the_mean_or_sum_of_their_blocks(tiny, how):
    layers = [-2, -1]
    blocks = _blocks(TextFeaturizer(tiny, layer=layers, normalize=False).fit(TEXTS).transform(TEXTS), 2)
    out = TextFeaturizer(tiny, layer=layers, combine=how, normalize=False).fit(TEXTS).transform(TEXTS)
    ref = np.mean(blocks, axis=0) if how == "mean" else np.sum(blocks, axis=0)
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-6)
    # normalize applies to the combined vector, not to each layer before combining
    unit = TextFeaturizer(tiny, layer=layers, combine=how, normalize=True).fit(TEXTS).transform(TEXTS)
    np.testing.assert_allclose(unit, ref / np.linalg.norm(ref, axis=1, keepdims=True), atol=1e-6)


def test_precompute_then_a_combined_transform_is_all_hits(small_images, tmp_path, monkeypatch):
    ref = ImageFeaturizer(**VIT, combine="sum").fit([]).transform(small_images)
    cache = EmbeddingCache(tmp_path)
    ImageFeaturizer(**VIT, cache=cache).precompute(small_images)
    stored = len(cache)

    def no_compute(*args, **kwargs):
        raise AssertionError("a cache miss: the backbone ran")

    monkeypatch.setattr(ImageFeaturizer, "_compute", no_compute)
    out = ImageFeaturizer(**VIT, combine="sum", cache=cache).fit([]).transform(small_images)
    assert len(cache) == stored  # the per-layer blocks were reused
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-6)


def test_unequal_widths_are_refused_with_the_fix(small_images):
    with pytest.raises(ValueError, match=r"combine='mean' averages or sums layers of equal width; these have "
                                         r"different widths .*Use combine='concat'"):
        ImageFeaturizer("timm:test_resnet", weights=None, layer=[1, -1], combine="mean").fit([])
