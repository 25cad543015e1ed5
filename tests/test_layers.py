"""Layers come from the libraries themselves (issue 10): torchvision FX nodes equal
``create_feature_extractor``, timm standard layers equal ``forward_intermediates``, and ``layer=-1`` is the
model's real pre-logits embedding (or a clear error), never the logits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from torchvision.models.feature_extraction import create_feature_extractor

from skfeaturize import ImageFeaturizer, LayerNotFoundError
from skfeaturize.image._io import load_image


def _batch(f, images):
    tr = f.backend_.preprocessing()
    return torch.stack([tr(load_image(a, i)) for i, a in enumerate(images)])


def _model(f):
    return f.backend_.load(torch.device("cpu")).model


@pytest.fixture(scope="module")
def photos224(photos):
    return [np.ascontiguousarray(p[:224, :224]) for p in photos]


@pytest.mark.parametrize("name", ["squeezenet1_0", "vgg11", "mobilenet_v3_small", "vit_b_16", "convnext_tiny",
                                  "efficientnet_b0"])
def test_pre_logits_is_the_input_of_the_last_classifier_linear(photos224, name):
    f = ImageFeaturizer(name, weights=None, layer=-1).fit(photos224)
    X = f.transform(photos224)
    model = _model(f)
    linear = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    head = linear[-1] if linear else model.classifier[1]  # SqueezeNet's classifier is a 1x1 convolution
    seen = {}
    handle = head.register_forward_pre_hook(lambda m, args: seen.__setitem__("x", args[0]))
    with torch.inference_mode():
        logits = model(_batch(f, photos224))
    handle.remove()
    ref = seen["x"].mean((2, 3)) if seen["x"].ndim == 4 else seen["x"]
    assert f.layers_ == ["pre_logits"] and X.shape == tuple(ref.shape)
    np.testing.assert_allclose(X, ref.numpy(), atol=1e-5, rtol=1e-5)
    assert X.shape[1] != logits.shape[1], "layer=-1 must never be the logits"


def test_fx_node_taps_equal_create_feature_extractor(small_images):
    nodes = ["layer1.0.relu_1", "layer2.0.add", "layer3", "flatten"]
    f = ImageFeaturizer("resnet18", weights=None, layer=nodes, pooling="max").fit(small_images)
    X = f.transform(small_images)
    model = _model(f)
    ref = create_feature_extractor(model, return_nodes=nodes)(_batch(f, small_images))
    pooled = [ref[n].amax((2, 3)) if ref[n].ndim == 4 else ref[n] for n in nodes]
    np.testing.assert_allclose(X, torch.cat(pooled, 1).detach().numpy(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["test_resnet", "test_vit", "test_efficientnet", "test_convnext"])
def test_timm_standard_layers_equal_forward_intermediates(small_images, name):
    n_layers = len(ImageFeaturizer(f"timm:{name}", weights=None).list_layers(stages_only=True))
    f = ImageFeaturizer(f"timm:{name}", weights=None, layer=list(range(n_layers)), pooling="mean").fit([])
    X = f.transform(small_images)
    model = _model(f)
    x = _batch(f, small_images)
    n_std = len(f.layers_) - 1
    with torch.inference_mode():
        final, inter = model.forward_intermediates(x, indices=list(range(n_std)))
        pre = model.forward_head(final, pre_logits=True)
    blocks = [t.mean((2, 3)) for t in inter] + [pre]  # ViT: forward_intermediates' NCHW patch map
    np.testing.assert_allclose(X, torch.cat(blocks, 1).numpy(), atol=1e-5, rtol=1e-5)


def test_a_timm_model_instance_keeps_timm_layers(small_images):
    import timm

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = timm.create_model("test_resnet").eval()
    f = ImageFeaturizer(model, layer=[0, -1]).fit(small_images)
    assert f.layers_ == ["act1", "pre_logits"]
    named = ImageFeaturizer("timm:test_resnet", weights=None, layer=[0, -1]).fit(small_images)
    _model(named).load_state_dict(model.state_dict())
    np.testing.assert_allclose(f.transform(small_images), named.transform(small_images), atol=1e-6)


def test_a_torchvision_model_instance_keeps_torchvision_layers(small_images):
    model = torchvision.models.resnet18(weights=None).eval()
    f = ImageFeaturizer(model, layer=["layer2", -1]).fit(small_images)
    assert f.layers_ == ["layer2", "pre_logits"] and f.transform(small_images).shape == (12, 128 + 512)


def test_list_layers_shows_what_minus_one_means():
    from skfeaturize import list_layers

    stages = list_layers("squeezenet1_0", stages_only=True)
    assert stages.iloc[-1].to_dict() == {"name": "pre_logits", "index": f"{len(stages) - 1} / -1",
                                         "shape": (512,), "kind": "vector"}
    with pytest.raises(LayerNotFoundError, match="does not guess"):
        ImageFeaturizer(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1),
                                            torch.nn.Flatten(), torch.nn.Linear(4, 10))).fit([])


def test_a_clip_vision_tower_is_not_guessed(small_images):
    """0.1 returned the flattened MLP activations of ``encoder.layers.1.mlp.fc2`` as this module's vector."""
    from transformers import CLIPVisionConfig, CLIPVisionModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        tower = CLIPVisionModel(CLIPVisionConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                                                 num_attention_heads=2, image_size=224, patch_size=32)).eval()
    with pytest.raises(LayerNotFoundError, match=r"user module \(CLIPVisionModel\) .*does not guess"):
        ImageFeaturizer(tower).fit(small_images)
    f = ImageFeaturizer(tower, layer="post_layernorm", pooling="mean").fit(small_images)
    X = f.transform(small_images[:2])
    with torch.inference_mode():
        ref = tower(pixel_values=_batch(f, small_images[:2])).pooler_output
    np.testing.assert_allclose(X, ref.numpy(), atol=1e-5)


@pytest.mark.parametrize("name", ["test_resnet", "test_vit"])
def test_timm_early_layers_alone_stop_early_and_equal_forward_intermediates(small_images, name):
    """Without pre_logits the taps take forward_intermediates' stop_early path: same numbers, and the
    blocks after the last tap never run."""
    f = ImageFeaturizer(f"timm:{name}", weights=None, layer=[0, 1], pooling="mean", device="cpu",
                        precision="fp32").fit([])
    X = f.transform(small_images)
    model = _model(f)
    x = _batch(f, small_images)
    with torch.inference_mode():
        inter = model.forward_intermediates(x, indices=[0, 1], intermediates_only=True)
    np.testing.assert_allclose(X, torch.cat([t.mean((2, 3)) for t in inter], 1).numpy(), atol=1e-5)
    ran = []
    last = model.layer4 if hasattr(model, "layer4") else model.blocks[-1]
    hook = last.register_forward_hook(lambda *a: ran.append(1))
    try:
        f.transform(small_images[:1])
    finally:
        hook.remove()
    assert not ran  # stop_early: the last stage is never computed for early taps
