"""Engines (issue 13): ONNX Runtime equals torch through the featurizers, falls back with one warning,
remembers a rejected graph; packed (unpadded) text equals padded batches; batch_size="auto" changes nothing
but speed; int8 is opt-in and changes the numbers a little."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import torch

from skfeaturize import ImageFeaturizer, TextFeaturizer, clear_loaded

from .test_image import BranchyNet
from .test_text import _save_tiny

pytest.importorskip("onnxruntime")

TEXTS = ["good movie", "a long and rather boring plot with a great cast and a fine score " * 3, "bad",
         "the acting was excellent", "", "so so " * 20, "fine film"]


def _rel_diff(a, b) -> float:
    return float(np.abs(a - b).max() / max(1.0, np.abs(b).max()))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return _save_tiny(tmp_path_factory.mktemp("engine-bert"))


@pytest.mark.parametrize("backbone,layer,pooling", [("resnet18", ["layer2.1.relu_1", -1], "gem"),
                                                   ("timm:test_vit", ["blocks.2", -1], "cls+mean")])
def test_onnxruntime_equals_torch_for_image_taps(small_images, tmp_path, backbone, layer, pooling):
    ort = ImageFeaturizer(backbone, weights=None, layer=layer, pooling=pooling, engine="onnxruntime",
                          cache=str(tmp_path / "c")).fit([])
    ref = ImageFeaturizer(backbone, weights=None, layer=layer, pooling=pooling).fit([])
    assert ort.engine_ == "onnxruntime" and ref.engine_ == "torch"
    assert _rel_diff(ort.transform(small_images), ref.transform(small_images)) <= 1e-4
    assert ort.fingerprint_ != ref.fingerprint_  # the engine is part of the cache identity
    models = os.listdir(tmp_path / "c" / "models")
    assert any(name.endswith(".onnx") for name in models)  # next to the embedding cache
    again = ImageFeaturizer(backbone, weights=None, layer=layer, pooling=pooling, engine="onnxruntime",
                            cache=str(tmp_path / "c")).fit([])
    assert sorted(os.listdir(tmp_path / "c" / "models")) == sorted(models)  # reused, not exported again
    np.testing.assert_array_equal(again.transform(small_images[:3]), ort.transform(small_images[:3]))


def test_onnxruntime_equals_torch_for_text_layers_and_poolings(tiny, tmp_path):
    kwargs = dict(layer=[0, 1, -1], pooling="max", long_text="chunk", max_length=24)
    ort = TextFeaturizer(tiny, engine="onnxruntime", cache=str(tmp_path / "c"), **kwargs).fit(TEXTS)
    ref = TextFeaturizer(tiny, **kwargs).fit(TEXTS)
    assert ort.engine_ == "onnxruntime"
    assert _rel_diff(ort.transform(TEXTS), ref.transform(TEXTS)) <= 1e-4
    for pooling in ("mean", "cls", "last"):  # the same graph? no: another request set, another export
        a = ort.set_params(pooling=pooling).fit(TEXTS).transform(TEXTS)
        b = ref.set_params(pooling=pooling).fit(TEXTS).transform(TEXTS)
        assert _rel_diff(a, b) <= 1e-4, pooling


def test_an_unexportable_module_falls_back_to_torch_with_one_warning(small_images, tmp_path):
    torch.manual_seed(0)
    net = BranchyNet().eval()
    with pytest.warns(UserWarning, match=r"engine='auto' runs on torch for this model: ONNX Runtime cannot "
                                         r"serve it \(EngineExportError: .*dynamo: .*torchscript: "):
        f = ImageFeaturizer(net, layer=["body.0", "pool"], engine="auto", cache=str(tmp_path / "c")).fit([])
    assert f.engine_ == "torch"
    ref = ImageFeaturizer(net, layer=["body.0", "pool"]).fit([])
    np.testing.assert_array_equal(f.transform(small_images[:2]), ref.transform(small_images[:2]))


def test_a_graph_that_does_not_verify_is_rejected_and_remembered(small_images, tmp_path, monkeypatch):
    from skfeaturize.engines import _onnx

    monkeypatch.setattr(_onnx, "TOLERANCE", -1.0)  # any difference fails verification
    exports = []
    real = _onnx.export_onnx
    monkeypatch.setattr(_onnx, "export_onnx", lambda *a, **k: exports.append(1) or real(*a, **k))
    with pytest.warns(UserWarning, match=r"cannot serve it \(EngineMismatchError"):
        f = ImageFeaturizer("timm:test_resnet", weights=None, engine="auto", cache=str(tmp_path / "c")).fit(
            [])
    assert f.engine_ == "torch" and len(exports) == 1
    assert any(n.endswith(".rejected") for n in os.listdir(tmp_path / "c" / "models"))
    from skfeaturize import EmbeddingCache

    EmbeddingCache(tmp_path / "c").clear()  # no stored plan: the next fit resolves its engine again
    with pytest.warns(UserWarning, match="rejected before"):
        g = ImageFeaturizer("timm:test_resnet", weights=None, engine="auto", cache=str(tmp_path / "c")).fit(
            [])
    assert g.engine_ == "torch" and len(exports) == 1  # not exported again


def test_packed_text_equals_padded_batches(tiny, monkeypatch):
    from skfeaturize.text import _engines

    f = TextFeaturizer(tiny, layer=[0, 1, 2], pooling="mean", long_text="chunk", max_length=24, batch_size=3)
    packed = f.fit(TEXTS).transform(TEXTS)
    monkeypatch.setattr(_engines, "can_pack", lambda rt, requests: False)
    padded = f.fit(TEXTS).transform(TEXTS)
    np.testing.assert_allclose(packed, padded, atol=1e-5, rtol=0)
    for pooling in ("cls", "max", "last"):
        monkeypatch.undo()
        a = f.set_params(pooling=pooling).fit(TEXTS).transform(TEXTS)
        monkeypatch.setattr(_engines, "can_pack", lambda rt, requests: False)
        b = f.fit(TEXTS).transform(TEXTS)
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=0, err_msg=pooling)


def test_batch_size_auto_gives_the_fixed_batch_output(small_images, tiny):
    fixed = ImageFeaturizer("timm:test_resnet", weights=None, batch_size=4).fit([])
    auto = ImageFeaturizer("timm:test_resnet", weights=None, batch_size="auto").fit([])
    np.testing.assert_allclose(auto.transform(small_images * 3), fixed.transform(small_images * 3), atol=1e-5)
    np.testing.assert_allclose(TextFeaturizer(tiny, batch_size="auto").fit(TEXTS).transform(TEXTS),
                               TextFeaturizer(tiny, batch_size=2).fit(TEXTS).transform(TEXTS), atol=1e-5)


def test_int8_is_opt_in_and_close(tiny):
    fp32 = TextFeaturizer(tiny, normalize=True).fit(TEXTS).transform(TEXTS)
    int8 = TextFeaturizer(tiny, normalize=True, precision="int8").fit(TEXTS)
    out = int8.transform(TEXTS)
    cos = (out * fp32).sum(1)
    assert not np.array_equal(out, fp32) and cos.min() > 0.9, cos
    assert int8.plan_.identity["precision"] == "int8"
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"precision='int8' is dynamic int8 quantization, which runs "
                                             r"on the CPU"):
            TextFeaturizer(tiny, precision="int8", device="cuda").fit(TEXTS)
    clear_loaded()  # quantize afresh: torch's deprecation note on its quantized tensors stays inside
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and no "slower on the CPU" warning for int8
        TextFeaturizer(tiny, precision="int8").fit(TEXTS).transform(TEXTS)
