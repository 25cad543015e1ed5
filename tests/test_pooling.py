import numpy as np
import pytest
import torch

from skfeaturize.pooling import (
    pool_feature_map,
    pool_image,
    pool_sequence,
    pool_tokens,
    pooled_width,
    resolve_image_pooling,
)


@pytest.fixture
def fmap():
    g = torch.Generator().manual_seed(0)
    return torch.rand(3, 5, 4, 6, generator=g)


def test_feature_map_poolings_match_numpy(fmap):
    a = fmap.numpy()
    np.testing.assert_allclose(pool_feature_map(fmap, "avg").numpy(), a.mean(axis=(2, 3)), rtol=1e-6)
    np.testing.assert_allclose(pool_feature_map(fmap, "max").numpy(), a.max(axis=(2, 3)), rtol=1e-6)
    gem = np.power(np.power(np.clip(a, 1e-6, None), 3).mean(axis=(2, 3)), 1 / 3)
    np.testing.assert_allclose(pool_feature_map(fmap, "gem").numpy(), gem, rtol=1e-5)
    am = pool_feature_map(fmap, "avgmax").numpy()
    np.testing.assert_allclose(am, np.concatenate([a.mean(axis=(2, 3)), a.max(axis=(2, 3))], 1), rtol=1e-6)
    assert pool_feature_map(fmap, "flatten").shape == (3, 5 * 4 * 6)


def test_token_poolings_exclude_prefix_tokens():
    x = torch.arange(2 * 5 * 3, dtype=torch.float32).reshape(2, 5, 3)
    assert torch.equal(pool_tokens(x, "cls", 1), x[:, 0])
    assert torch.allclose(pool_tokens(x, "mean", 1), x[:, 1:].mean(1))
    assert torch.allclose(pool_tokens(x, "mean", 2), x[:, 2:].mean(1))  # e.g. a register token
    assert pool_tokens(x, "cls+mean", 1).shape == (2, 6)
    with pytest.raises(ValueError, match="needs a class token"):
        pool_tokens(x, "cls", 0)


def test_sequence_pooling_ignores_padding_right_and_left():
    g = torch.Generator().manual_seed(1)
    h = torch.randn(2, 6, 4, generator=g)
    right = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1]])
    left = torch.tensor([[0, 0, 0, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
    assert torch.allclose(pool_sequence(h, right, "mean")[0], h[0, :3].mean(0))
    assert torch.allclose(pool_sequence(h, right, "max")[0], h[0, :3].amax(0))
    assert torch.equal(pool_sequence(h, right, "last")[0], h[0, 2])
    assert torch.equal(pool_sequence(h, left, "last")[0], h[0, 5])
    assert torch.allclose(pool_sequence(h, left, "mean")[0], h[0, 3:].mean(0))
    with pytest.raises(ValueError, match="does not apply to text"):
        pool_sequence(h, right, "gem")


def test_image_pooling_resolution_widths_and_dispatch(fmap):
    assert resolve_image_pooling("vector", "gem", 0, "pre_logits") == "none"
    assert torch.equal(pool_image(torch.ones(2, 7), "vector", "none"), torch.ones(2, 7))
    assert resolve_image_pooling("map", "auto", 0, "layer1") == "avg"
    assert resolve_image_pooling("tokens", "auto", 1, "blocks.0") == "cls"
    assert resolve_image_pooling("tokens", "auto", 0, "blocks.0") == "mean"
    nhwc = fmap.permute(0, 2, 3, 1)
    assert torch.allclose(pool_image(nhwc, "map", "avg", layout="NHWC"), fmap.mean((2, 3)))
    c, h, w = fmap.shape[1:]
    assert pooled_width("map", (c, h, w), "avgmax") == 2 * c
    assert pooled_width("map", (h, w, c), "gem", "NHWC") == c
    assert pooled_width("map", (c, h, w), "flatten") == c * h * w
    assert pooled_width("tokens", (5, 3), "cls+mean") == 6
    assert pooled_width("vector", (9,), "none") == 9
    with pytest.raises(ValueError, match="pooling='cls' does not apply to layer 'layer1', a feature map"):
        resolve_image_pooling("map", "cls", 0, "layer1")
    with pytest.raises(ValueError, match="does not apply to layer 'blocks.0', a tokens"):
        resolve_image_pooling("tokens", "avgmax", 1, "blocks.0")
    with pytest.raises(ValueError, match="needs a class token, but layer 'blocks.0' has none"):
        resolve_image_pooling("tokens", "cls", 0, "blocks.0")
    with pytest.raises(ValueError, match="cannot be pooled"):
        resolve_image_pooling("other", "avg", 0, "attn")
