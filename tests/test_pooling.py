import numpy as np
import pytest
import torch

from skfeaturize.pooling import pool_feature_map, pool_output, pool_sequence, pool_tokens


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


def test_pool_output_dispatch_and_errors(fmap):
    v, used = pool_output(torch.ones(2, 7), "gem")
    assert used == "none" and v.shape == (2, 7)
    _, used = pool_output(fmap, "auto")
    assert used == "avg"
    nhwc = fmap.permute(0, 2, 3, 1)
    assert torch.allclose(pool_output(nhwc, "avg", layout="NHWC")[0], fmap.mean((2, 3)))
    _, used = pool_output(torch.ones(2, 5, 3), "auto", num_prefix_tokens=1)
    assert used == "cls"
    with pytest.raises(ValueError, match="does not apply to a feature map"):
        pool_output(fmap, "cls")
    with pytest.raises(ValueError, match="does not apply to tokens"):
        pool_output(torch.ones(2, 5, 3), "avgmax")
    with pytest.raises(ValueError, match="cannot pool an output of shape"):
        pool_output(torch.ones(2, 3, 4, 5, 6), "avg")
