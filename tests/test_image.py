"""ImageFeaturizer: parity with the backbones' own outputs, layers, pooling, inputs, errors, contract."""

from __future__ import annotations

import io
import os
import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision
from PIL import Image
from sklearn import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.utils._param_validation import InvalidParameterError

from skfeaturize import (
    ImageFeaturizer,
    InvalidSampleError,
    LayerNotFoundError,
    RefitRequiredError,
    WeightsNotFoundError,
    list_layers,
)
from skfeaturize.image._io import load_image

from .contract import (
    check_batch_size_invariance,
    check_order_preservation,
    check_output_contract,
    check_pickle_round_trip,
    check_set_params_changes_output,
    run_api_checks,
)

HERE = os.path.dirname(__file__)


def _model(featurizer):
    """The loaded backbone module of a fitted featurizer (shared with the featurizer, on the CPU)."""
    return featurizer.backend_.load(torch.device("cpu")).model


def _batch(featurizer, images):
    tr = featurizer.backend_.preprocessing()
    return torch.stack([tr(load_image(a, i)) for i, a in enumerate(images)])


def _pool_hook(model, module_name, x):
    store = {}
    handle = dict(model.named_modules())[module_name].register_forward_hook(
        lambda m, i, o: store.__setitem__("out", o))
    with torch.no_grad():
        model(x)
    handle.remove()
    return store["out"]


# -- parity with the backbones' own outputs ------------------------------------------------------------

def test_torchvision_pre_logits_equals_resnet_with_identity_fc(small_images):
    f = ImageFeaturizer("resnet18", weights=None, layer=-1, pooling="avg", batch_size=5)
    X = f.fit_transform(small_images)
    ref_model = torchvision.models.resnet18(weights=None)
    ref_model.load_state_dict(_model(f).state_dict())
    ref_model.fc = torch.nn.Identity()
    ref_model.eval()
    with torch.no_grad():
        ref = ref_model(_batch(f, small_images)).numpy()
    assert X.shape == (12, 512)
    np.testing.assert_allclose(X, ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["test_resnet", "test_vit"])
def test_timm_pre_logits_equals_forward_head(small_images, name):
    f = ImageFeaturizer(f"timm:{name}", weights=None, layer=-1)
    X = f.fit_transform(small_images)
    model = _model(f)
    with torch.no_grad():
        ref = model.forward_head(model.forward_features(_batch(f, small_images)), pre_logits=True)
    np.testing.assert_allclose(X, ref.numpy(), atol=1e-5, rtol=0)


def test_intermediate_layers_equal_hooked_outputs_pooled_by_hand(small_images):
    f = ImageFeaturizer("resnet18", weights=None, layer=["layer3", "layer2.1.conv1"], pooling="gem")
    X = f.fit_transform(small_images)
    model, x = _model(f), _batch(f, small_images)
    l3 = _pool_hook(model, "layer3", x)
    conv = _pool_hook(model, "layer2.1.conv1", x)
    gem = lambda t: t.clamp(min=1e-6).pow(3).mean((2, 3)).pow(1 / 3)
    ref = torch.cat([gem(l3), gem(conv)], 1).numpy()
    assert X.shape == (12, 256 + 128)
    np.testing.assert_allclose(X, ref, atol=1e-5, rtol=1e-5)


def test_vit_token_poolings_exclude_class_token(small_images):
    f = ImageFeaturizer("timm:test_vit", weights=None, layer="blocks.2", pooling="cls+mean")
    X = f.fit_transform(small_images)
    model = _model(f)
    tokens = _pool_hook(model, "blocks.2", _batch(f, small_images))
    n = model.num_prefix_tokens
    ref = torch.cat([tokens[:, 0], tokens[:, n:].mean(1)], 1).numpy()
    np.testing.assert_allclose(X, ref, atol=1e-5, rtol=0)


def test_a_module_called_twice_has_both_calls(small_images):
    """torchvision's BasicBlock calls one ReLU module twice: FX names the calls relu and relu_1."""
    f = ImageFeaturizer("resnet18", weights=None, layer=["layer1.0.relu", "layer1.0.relu_1"], pooling="avg")
    X = f.fit_transform(small_images[:3])
    model = _model(f)
    calls = []
    h = model.layer1[0].relu.register_forward_hook(lambda m, i, o: calls.append(o))
    with torch.no_grad():
        model(_batch(f, small_images[:3]))
    h.remove()
    assert len(calls) == 2
    np.testing.assert_allclose(X, torch.cat([c.mean((2, 3)) for c in calls], 1).numpy(), atol=1e-6)


def test_golden_outputs_of_seeded_tiny_models(small_images):
    """Seeded random-init tiny models: a refactor must not change features silently."""
    for name, layer, pooling in [("test_resnet", -1, "auto"), ("test_vit", "blocks.3", "mean")]:
        X = ImageFeaturizer(f"timm:{name}", weights=None, layer=layer, pooling=pooling).fit_transform(
            small_images[:4])
        path = os.path.join(HERE, "expect", f"image_{name}.npy")  # committed; never written by the test
        np.testing.assert_allclose(X, np.load(path), atol=1e-4, rtol=1e-4)


# -- layers ------------------------------------------------------------------------------------------

def test_int_layers_index_feature_layers_then_pre_logits(small_images):
    f = ImageFeaturizer("resnet18", weights=None, layer=[0, -2, -1]).fit(small_images)
    assert f.layers_ == ["layer1", "layer4", "pre_logits"]
    g = ImageFeaturizer("timm:test_resnet", weights=None, layer=[0, 4]).fit(small_images)
    assert g.layers_ == ["act1", "layer4"]


def test_list_of_layers_concatenates_in_order(small_images):
    a = ImageFeaturizer("resnet18", weights=None, layer="layer2").fit_transform(small_images)
    b = ImageFeaturizer("resnet18", weights=None, layer="layer3").fit_transform(small_images)
    ab = ImageFeaturizer("resnet18", weights=None, layer=["layer3", "layer2"]).fit_transform(small_images)
    np.testing.assert_allclose(ab, np.hstack([b, a]), atol=1e-6)
    names = ImageFeaturizer("resnet18", weights=None, layer=["layer3", "layer2"]).fit(
        small_images).get_feature_names_out()
    assert names[0] == "resnet18__layer3__avg_0" and names[256] == "resnet18__layer2__avg_0"


def test_layer_errors_suggest_close_matches():
    with pytest.raises(LayerNotFoundError, match=r"Did you mean 'layer4.1'.*list_layers\('resnet18'\)"):
        ImageFeaturizer("resnet18", weights=None, layer="layer4.9").fit([])
    with pytest.raises(LayerNotFoundError, match=r"out of range .*\(valid: -5 to 4"):
        ImageFeaturizer("resnet18", weights=None, layer=7).fit([])
    with pytest.raises(ValueError, match="selects nothing"):
        ImageFeaturizer("resnet18", weights=None, layer=[]).fit([])
    with pytest.raises(TypeError, match="must be an int or a str"):
        ImageFeaturizer("resnet18", weights=None, layer=[1.5]).fit([])


def test_list_layers_shows_shapes_and_indices():
    table = list_layers("resnet18")
    row = table.set_index("name").loc["layer3"]
    assert row["shape"] == (256, 14, 14) and row["index"] == "2 / -3" and row["kind"] == "feature map"
    assert table.iloc[-1]["name"] == "pre_logits" and table.iloc[-1]["shape"] == (512,)
    vit = list_layers("timm:test_vit").set_index("name")
    assert vit.loc["blocks.5", "kind"] == "tokens" and vit.loc["blocks.5", "index"] == "5 / -2"


def test_unknown_backbone_suggests_names():
    with pytest.raises(ValueError, match="Did you mean 'resnet50'"):
        ImageFeaturizer("resnet5O", weights=None).fit([])
    with pytest.raises(ValueError, match="unknown source 'keras'"):
        ImageFeaturizer("keras:resnet50", weights=None).fit([])
    with pytest.raises(InvalidParameterError, match=r"'backbone' parameter .* model name \(str\) or a torch"):
        ImageFeaturizer(42, weights=None).fit([])


def test_pooling_vocabulary_is_validated(small_images):
    with pytest.raises(ValueError, match="'pooling' parameter"):
        ImageFeaturizer("resnet18", weights=None, pooling="median").fit(small_images)
    with pytest.raises(ValueError, match="pooling='cls' does not apply to layer 'layer4', a feature map"):
        ImageFeaturizer("resnet18", weights=None, layer="layer4", pooling="cls").fit(small_images[:1])


# -- inputs ------------------------------------------------------------------------------------------

def test_every_input_kind_gives_the_same_features(small_images, image_files):
    f = ImageFeaturizer("timm:test_resnet", weights=None).fit([])
    from_files = f.transform(image_files)
    raw = [open(p, "rb").read() for p in image_files]
    pil = [Image.open(p) for p in image_files]
    decoded = [np.asarray(Image.open(p).convert("RGB")) for p in image_files]
    np.testing.assert_array_equal(f.transform(raw), from_files)
    np.testing.assert_array_equal(f.transform(pil), from_files)
    np.testing.assert_array_equal(f.transform(decoded), from_files)
    np.testing.assert_array_equal(f.transform(np.stack(decoded)), from_files)
    np.testing.assert_array_equal(f.transform(pd.Series(image_files)), from_files)
    np.testing.assert_array_equal(f.transform(pd.DataFrame({"path": image_files})), from_files)
    from pathlib import Path

    np.testing.assert_array_equal(f.transform([Path(p) for p in image_files]), from_files)


def test_bad_containers_are_rejected(image_files):
    f = ImageFeaturizer("timm:test_resnet", weights=None).fit([])
    with pytest.raises(ValueError, match="Iterable over images expected, str object received"):
        f.transform(image_files[0])
    with pytest.raises(ValueError, match="exactly one column"):
        f.transform(pd.DataFrame({"a": image_files, "b": image_files}))
    with pytest.raises(ValueError, match="1-D array of images, an"):
        f.transform(np.zeros((2, 3, 4, 5, 3), np.uint8))
    with pytest.raises(ValueError, match=r"is ambiguous: one \(H, W, C\) image or 32 grayscale"):
        f.transform(np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match=r"got the folder .*glob.*skfeaturize embed"):
        f.transform(os.path.dirname(image_files[0]))


def _jpeg_bytes(a, **kw):
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="JPEG", **kw)
    return buf.getvalue()


def test_corrupt_inputs_name_the_sample(tmp_path, small_images):
    f = ImageFeaturizer("timm:test_resnet", weights=None).fit([])
    good = str(tmp_path / "good.jpg")
    Image.fromarray(small_images[0]).save(good)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(_jpeg_bytes(small_images[1])[:-400])
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    notimage = tmp_path / "notes.jpg"
    notimage.write_text("hello")
    cases = [
        (str(truncated), r"Sample 1 \('.*truncated.jpg'\): cannot decode image: truncated image"),
        (str(empty), r"Sample 1 .*empty.jpg'\): empty file"),
        (str(notimage), r"Sample 1 .*notes.jpg'\): cannot decode image"),
        (str(tmp_path / "missing.jpg"), r"Sample 1 .*missing.jpg'\): file not found"),
        (str(tmp_path), r"Sample 1 .*: not a regular file"),
        (None, r"Sample 1 is missing \(None\)"),
        (np.zeros((3, 32, 32), np.uint8), r"Sample 1 .*looks channels-first"),
        (np.zeros((32, 32, 3), np.float32), r"Sample 1 .*dtype float32 is not supported"),
        (np.zeros((0, 32, 3), np.uint8), r"Sample 1 .*zero-size image"),
        (12, r"Sample 1 .*unsupported sample type int"),
    ]
    for bad, pattern in cases:
        with pytest.raises(InvalidSampleError, match=pattern) as info:
            f.transform([good, bad, good])
        assert info.value.index == 1


def test_truncated_file_fails_even_if_pillow_global_is_set(tmp_path, small_images):
    from PIL import ImageFile

    truncated = tmp_path / "t.jpg"
    truncated.write_bytes(_jpeg_bytes(small_images[1])[:-400])
    saved = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = True
    try:
        with pytest.raises(InvalidSampleError, match="Sample 0 .*truncated"):
            load_image(str(truncated), 0)
        assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # the user's global is restored
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = saved


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX only")
def test_fifo_is_rejected_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    with pytest.raises(InvalidSampleError, match="Sample 0 .*not a regular file"):
        load_image(str(fifo), 0)


def test_decompression_bomb_guard_stays_on(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.new("RGB", (400, 400)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100 * 100 // 2)  # 400×400 is > 2× the limit
    with pytest.raises(InvalidSampleError, match="Sample 0 .*decompression bomb"):
        load_image(str(path), 0)


def test_modes_become_rgb_correctly(tmp_path):
    # 16-bit: a 12-bit gradient must keep its gradient, not clip to white
    grad = (np.linspace(0, 4095, 64 * 64).reshape(64, 64)).astype(np.uint16)
    p16 = tmp_path / "g16.png"
    Image.fromarray(grad).save(p16)
    rgb = np.asarray(load_image(str(p16), 0))
    assert Image.open(p16).mode.startswith("I")
    assert rgb.shape == (64, 64, 3) and rgb.min() == 0 and rgb.max() == 255
    assert (rgb[..., 0] == 255).mean() < 0.01  # naive conversion makes most pixels white
    assert abs(np.median(rgb[..., 0]) - 127.5) < 2
    # RGBA: transparent pixels become white
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[:4, :, :] = (255, 0, 0, 255)
    out = np.asarray(load_image(rgba, 0))
    assert tuple(out[0, 0]) == (255, 0, 0) and tuple(out[7, 7]) == (255, 255, 255)
    # palette, grayscale, CMYK, 1-bit
    for mode in ["P", "L", "CMYK", "1", "LA"]:
        img = Image.new("RGB", (10, 6), (200, 30, 30)).convert(mode)
        got = load_image(img, 0)
        assert got.mode == "RGB" and got.size == (10, 6)
    # uint16 arrays are scaled by their real range
    arr = np.asarray(load_image(grad, 0))
    assert arr.max() == 255 and arr.min() == 0


def test_exif_orientation_is_applied(tmp_path):
    a = np.zeros((20, 40, 3), np.uint8)
    a[:, :20] = 255  # left half white, landscape 40×20
    img = Image.fromarray(a)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise when displayed
    path = tmp_path / "rot.jpg"
    img.save(path, exif=exif.tobytes())
    out = load_image(str(path), 0)
    assert out.size == (20, 40)  # portrait after applying the orientation
    assert np.asarray(out)[:20].mean() > 200  # the white half is now on top


def test_workers_decode_in_parallel_with_identical_results(image_files, tmp_path):
    f0 = ImageFeaturizer("timm:test_resnet", weights=None, batch_size=4, num_workers=0).fit([])
    f2 = clone(f0).set_params(num_workers=2).fit([])
    np.testing.assert_array_equal(f2.transform(image_files), f0.transform(image_files))
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(InvalidSampleError, match=r"Sample 5 .*bad.jpg'\): cannot decode image"):
        f2.transform(image_files[:5] + [str(bad)] + image_files[5:])


# -- weights -----------------------------------------------------------------------------------------

def test_checkpoint_files_load_safely(tmp_path, small_images):
    ref_model = torchvision.models.resnet18(weights=None)
    torch.nn.init.normal_(ref_model.layer1[0].conv1.weight)  # differs from the seeded init
    pth, st = tmp_path / "r18.pth", tmp_path / "r18.safetensors"
    torch.save(ref_model.state_dict(), pth)
    from safetensors.torch import save_file

    save_file(ref_model.state_dict(), st)
    a = ImageFeaturizer("resnet18", weights=str(pth)).fit_transform(small_images[:3])
    b = ImageFeaturizer("resnet18", weights=st).fit_transform(small_images[:3])
    ref_model.fc = torch.nn.Identity()
    ref_model.eval()
    f = ImageFeaturizer("resnet18", weights=None).fit([])
    with torch.no_grad():
        ref = ref_model(_batch(f, small_images[:3])).numpy()
    np.testing.assert_allclose(a, ref, atol=1e-5)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(WeightsNotFoundError, match="Checkpoint file not found"):
        ImageFeaturizer("resnet18", weights=str(tmp_path / "nope.pth")).fit_transform(small_images[:1])
    with pytest.raises(Exception, match="does not match the architecture"):
        ImageFeaturizer("resnet34", weights=str(pth)).fit_transform(small_images[:1])
    evil = tmp_path / "evil.pth"
    torch.save({"model": object()}, evil)  # a pickle with an arbitrary object: refused
    with pytest.raises(Exception, match="weights_only=True"):
        ImageFeaturizer("resnet18", weights=str(evil)).fit_transform(small_images[:1])


def test_bad_weights_name_lists_choices():
    with pytest.raises(ValueError, match=r"not a weights name .* 'IMAGENET1K_V1'"):
        ImageFeaturizer("resnet18", weights="IMAGENET9K").fit_transform([np.zeros((8, 8, 3), np.uint8)])


def test_offline_pretrained_weights_error_says_where_to_put_the_file(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))

    def refuse(*a, **k):
        raise OSError("network unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    with pytest.raises(WeightsNotFoundError, match=r"resnet18-f37072fd.pth.*put it at .*checkpoints"):
        ImageFeaturizer("resnet18", weights="DEFAULT").fit_transform([np.zeros((8, 8, 3), np.uint8)])


# -- modules passed directly ---------------------------------------------------------------------------

class TinyNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.ReLU())
        self.body = torch.nn.Sequential(torch.nn.Conv2d(8, 16, 3, stride=2), torch.nn.ReLU())
        self.pool = torch.nn.AdaptiveAvgPool2d(1)
        self.dropout = torch.nn.Dropout(0.5)
        self.fc = torch.nn.Linear(16, 4)

    def forward(self, x):
        return self.fc(self.dropout(self.pool(self.body(self.stem(x))).flatten(1)))


def test_user_module_backbone(small_images):
    torch.manual_seed(0)
    net = TinyNet().train()
    with pytest.raises(LayerNotFoundError, match=r"a user module \(TinyNet\) has no standard list .*"
                                                 r"does not guess .*layer='output'"):
        ImageFeaturizer(net).fit(small_images)
    f = ImageFeaturizer(net, layer=["stem", "flatten", "output"], pooling="max").fit(small_images)
    assert f.layers_ == ["stem", "flatten", "output"] and f.poolings_ == ["max", "none", "none"]
    X = f.transform(small_images)
    assert X.shape == (12, 8 + 16 + 4)
    assert net.training, "the user's module mode is restored"
    x = _batch(f, small_images)
    net.eval()
    with torch.no_grad():
        stem = net.stem(x)
        pooled = net.pool(net.body(stem)).flatten(1)
        ref = torch.cat([stem.amax((2, 3)), pooled, net.fc(pooled)], 1)
    np.testing.assert_allclose(X, ref.numpy(), atol=1e-6)
    blob = check_pickle_round_trip(f, small_images)  # the module pickles with the parameters
    assert len(blob) > 4 * sum(p.numel() for p in net.parameters())


class BranchyNet(TinyNet):
    """Python control flow on tensor values: torch.fx cannot trace it, so taps fall back to hooks."""

    def forward(self, x):
        h = self.stem(x)
        if h.mean() > -1e9:
            h = self.body(h)
        return self.fc(self.pool(h).flatten(1))


def test_untraceable_module_falls_back_to_forward_hooks(small_images):
    torch.manual_seed(0)
    net = BranchyNet().eval()
    f = ImageFeaturizer(net, layer=["body.0", "pool"], pooling="avg").fit(small_images)
    assert "body.1" in set(f.list_layers()["name"]) and "flatten" not in set(f.list_layers()["name"])
    X = f.transform(small_images)
    with torch.no_grad():
        body0 = net.body[0](net.stem(_batch(f, small_images)))
        ref = torch.cat([body0.mean((2, 3)), net.pool(net.body[1](body0)).flatten(1)], 1)
    np.testing.assert_allclose(X, ref.numpy(), atol=1e-6)


def test_user_module_edited_in_place_needs_a_refit(small_images):
    torch.manual_seed(0)
    net = TinyNet().eval()
    f = ImageFeaturizer(net, layer="flatten").fit(small_images)
    before = f.transform(small_images[:2])
    with torch.no_grad():
        net.body[0].weight.mul_(3)
    with pytest.raises(RefitRequiredError, match=r"backbone: the module's weights changed since fit "
                                                 r"\(in place: body.0.weight\).*call fit\(\) again"):
        f.transform(small_images[:2])
    after = f.fit(small_images).transform(small_images[:2])
    assert not np.allclose(before, after)


# -- runtime -------------------------------------------------------------------------------------------

def test_oom_backoff_halves_the_batch_and_keeps_results(small_images, monkeypatch):
    f = ImageFeaturizer("timm:test_resnet", weights=None, batch_size=8, layer=[-2, -1]).fit([])
    ref = f.transform(small_images)
    real = ImageFeaturizer._run_taps
    sizes = []

    def flaky(taps, x, layers):
        sizes.append(x.shape[0])
        if x.shape[0] > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(taps, x, layers)

    monkeypatch.setattr(ImageFeaturizer, "_run_taps", staticmethod(flaky))
    with pytest.warns(UserWarning, match="Out of memory .* retrying with batch size 4"):
        out = f.transform(small_images)
    np.testing.assert_allclose(out, ref, atol=1e-5)  # two layers: rows are scattered, never duplicated
    assert sizes[:3] == [8, 4, 2] and max(sizes[3:]) == 2  # the reduced size is kept

    def always(taps, x, layers):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory.")

    monkeypatch.setattr(ImageFeaturizer, "_run_taps", staticmethod(always))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(InvalidSampleError, match="Sample 0: out of memory .* batch size 1"):
            f.transform(small_images)


def test_precision_and_device_resolution(small_images):
    f = ImageFeaturizer("timm:test_resnet", weights=None, precision="bf16").fit([])
    assert f.precision_ == "bf16" and f.device_ == "cpu"
    low = f.transform(small_images[:4])
    high = ImageFeaturizer("timm:test_resnet", weights=None).fit_transform(small_images[:4])
    assert low.dtype == np.float32
    np.testing.assert_allclose(low, high, atol=0.15, rtol=0.1)  # bf16 keeps ~3 significant digits
    assert not np.array_equal(low, high)
    if not torch.cuda.is_available():
        with pytest.warns(UserWarning, match="CUDA is not available; using the CPU"):
            g = ImageFeaturizer("timm:test_resnet", weights=None, device="cuda").fit([])
        assert g.device_ == "cpu" and g.device == "cuda"


# -- scikit-learn contract -------------------------------------------------------------------------------

def test_sklearn_api_checks():
    run_api_checks(ImageFeaturizer("timm:test_resnet", weights=None))


def test_modality_contract(small_images):
    f = ImageFeaturizer("timm:test_vit", weights=None, layer=[-1, 2], pooling="auto")
    out = check_output_contract(f, small_images)
    assert out.shape == (12, 64 + 64)
    check_batch_size_invariance(f, small_images)
    check_order_preservation(f, small_images)
    blob = check_pickle_round_trip(ImageFeaturizer("resnet18", weights=None), small_images[:3],
                                   max_bytes=20_000)
    assert b"state_dict" not in blob
    check_set_params_changes_output(f, small_images, layer="blocks.0")
    check_set_params_changes_output(f, small_images, pooling="mean")
    check_set_params_changes_output(f, small_images, backbone="timm:test_resnet")


def test_fit_loads_nothing_and_unpickled_featurizer_reloads(small_images):
    from skfeaturize import _loader

    _loader.clear_loaded()
    f = ImageFeaturizer("resnet18", weights=None).fit(small_images)
    assert not [k for k in _loader.loaded_kinds() if k.endswith("weights")], "fit must not load weights"
    X = f.transform(small_images[:2])
    assert "torchvision-weights" in _loader.loaded_kinds()
    g = pickle.loads(pickle.dumps(f))
    _loader.clear_loaded()
    np.testing.assert_array_equal(g.transform(small_images[:2]), X)


def test_pipeline_and_grid_search_switch_layers(small_images):
    y = np.array([0] * 6 + [1] * 6)  # which photo the crop comes from
    pipe = make_pipeline(ImageFeaturizer("timm:test_resnet", weights=None),
                         LogisticRegression(max_iter=500))
    search = GridSearchCV(pipe, {"imagefeaturizer__layer": ["layer1", -1],
                                 "imagefeaturizer__pooling": ["avg", "max"]}, cv=3)
    search.fit(small_images, y)
    assert len(search.cv_results_["params"]) == 4
    assert search.best_estimator_.predict(small_images).shape == (12,)
    widths = {p["imagefeaturizer__layer"]: clone(pipe).set_params(**p)[0].fit(small_images)
              .transform(small_images[:1]).shape[1] for p in search.cv_results_["params"]}
    assert widths == {"layer1": 32, -1: 96}
