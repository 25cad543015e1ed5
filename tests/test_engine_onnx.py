"""The ONNX Runtime engine: exported tap graphs equal torch, failures are specific, the model cache is
reused, repaired and keyed, threads and providers follow the caller."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
from torch import nn  # noqa: E402

from skfeaturize.engines import _onnx  # noqa: E402
from skfeaturize.engines._onnx import TOLERANCE, TapGraph, onnx_runner  # noqa: E402
from skfeaturize.exceptions import (  # noqa: E402
    CacheCorruptionWarning,
    EngineExportError,
    EngineMismatchError,
    MissingDependencyError,
)
from skfeaturize.pooling import pool_feature_map, pool_sequence, pool_tokens  # noqa: E402

KEY = "0123456789abcdef"


# -- tap modules as a featurizer builds them ---------------------------------------------------------

class TimmTaps(nn.Module):
    """timm: ``forward_intermediates`` at stage indices (pooled) and ``forward_head(pre_logits=True)``."""

    def __init__(self, model, requests):
        super().__init__()
        self.model, self.requests = model, list(requests)
        self.indices = sorted({i for i, _ in requests if i != "pre_logits"})

    def forward(self, x):
        final, inter = self.model.forward_intermediates(x, indices=self.indices)
        by_index = dict(zip(self.indices, inter, strict=True))
        return tuple(self.model.forward_head(final, pre_logits=True) if i == "pre_logits"
                     else pool_feature_map(by_index[i], how) for i, how in self.requests)


class FxTaps(nn.Module):
    """torchvision: ``create_feature_extractor`` at the nodes, pooled per request."""

    def __init__(self, model, requests, num_prefix_tokens=0):
        super().__init__()
        from torchvision.models.feature_extraction import create_feature_extractor

        self.requests, self.num_prefix_tokens = list(requests), num_prefix_tokens
        self.body = create_feature_extractor(model, return_nodes=list(dict.fromkeys(n for n, _ in requests)))

    def forward(self, x):
        feats = self.body(x)
        return tuple(pool_feature_map(feats[n], how) if feats[n].ndim == 4
                     else pool_tokens(feats[n], how, self.num_prefix_tokens) for n, how in self.requests)


class HiddenStateTaps(nn.Module):
    """transformers encoder: ``output_hidden_states=True``, masked pooling per (layer, pooling)."""

    def __init__(self, net, requests):
        super().__init__()
        self.net, self.requests = net, list(requests)

    def forward(self, input_ids, attention_mask, token_type_ids):
        hs = self.net(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                      output_hidden_states=True).hidden_states
        return tuple(pool_sequence(hs[layer], attention_mask, how) for layer, how in self.requests)


class SmallNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        y = self.conv(x)
        return pool_feature_map(y, "avg"), pool_feature_map(y, "gem")


class DataDependent(nn.Module):
    def forward(self, x):
        if x.sum() > 0:  # Python control flow on a tensor value
            return (x.mean(dim=(2, 3)) * 2,)
        return (x.mean(dim=(2, 3)) * 3,)


class NoOnnxOp(nn.Module):
    def forward(self, x):
        f = x.flatten(2)
        return (torch.linalg.eigvalsh(f @ f.transpose(1, 2)),)


class ExportDiffers(nn.Module):
    """Computes something else while being exported: the exported graph is off by 0.1 %."""

    def forward(self, x):
        scale = 1.001 if torch.onnx.is_in_onnx_export() else 1.0
        return (x.mean(dim=(2, 3)) * scale + 1.0,)


def _seeded(build):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build().eval()


def image_graph(module, size=32, batch=2):
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(1))
    return TapGraph(module, (x,), ("x",), {"x": {0: "batch"}})


def text_batch(batch, length, vocab=100, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (batch, length), generator=g)
    lengths = torch.randint(2, length + 1, (batch,), generator=g)
    lengths[0] = length
    mask = (torch.arange(length)[None, :] < lengths[:, None]).long()
    ids = ids * mask  # pad id 0
    return ids, mask, torch.zeros_like(ids)


def _outputs(module, inputs):
    with torch.inference_mode():
        return [t.numpy() for t in module(*inputs)]


def assert_close(ref, got):
    assert len(ref) == len(got)
    for a, b in zip(ref, got, strict=True):
        assert a.shape == b.shape and b.dtype == np.float32
        assert np.abs(a - b).max() <= TOLERANCE * max(1.0, np.abs(a).max())


# -- ORT equals torch --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx-models")


IMAGE_CASES = {
    "timm-efficientnet": (lambda: TimmTaps(_timm("test_efficientnet"),
                                           [(1, "avg"), (2, "gem"), (2, "max"), ("pre_logits", None)]), 64),
    "timm-resnet": (lambda: TimmTaps(_timm("test_resnet"), [(1, "avgmax"), (3, "flatten")]), 32),
    "torchvision-vit": (lambda: FxTaps(_tiny_vit(), [("encoder.layers.encoder_layer_0", "cls"),
                                                     ("encoder.layers.encoder_layer_1", "mean"),
                                                     ("encoder.layers.encoder_layer_1", "cls+mean")],
                                       num_prefix_tokens=1), 32),
}


def _timm(name):
    import timm

    return timm.create_model(name, pretrained=False)


def _tiny_vit():
    from torchvision.models import VisionTransformer

    return VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16,
                             mlp_dim=32)


@pytest.mark.parametrize("case", sorted(IMAGE_CASES))
def test_image_taps_equal_torch(case, cache):
    build, size = IMAGE_CASES[case]
    module = _seeded(build)
    runner = onnx_runner(image_graph(module, size), key=KEY + format(len(case), "02x"),
                         cache_dir=cache / case)
    assert runner.exported and runner.exporter == "dynamo" and runner.max_abs_diff <= TOLERANCE
    x = torch.randn(5, 3, size, size, generator=torch.Generator().manual_seed(7))  # unseen batch size
    assert_close(_outputs(module, (x,)), runner(x.numpy()))
    assert_close(_outputs(module, (x[:1],)), runner(x[:1].numpy()))  # batch 1 works too


@pytest.fixture(scope="module")
def tiny_bert():
    from transformers import BertConfig, BertModel

    cfg = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=37, max_position_embeddings=64)
    return _seeded(lambda: BertModel(cfg, add_pooling_layer=False))


TEXT_REQUESTS = [(0, "mean"), (1, "cls"), (2, "mean"), (2, "max"), (-1, "last")]


def text_graph(net):
    module = HiddenStateTaps(net, TEXT_REQUESTS).eval()
    names = ("input_ids", "attention_mask", "token_type_ids")
    axes = {n: {0: "batch", 1: "seq"} for n in names}
    return TapGraph(module, text_batch(2, 9), names, axes, probe_inputs=text_batch(3, 12, seed=1))


@pytest.fixture(scope="module")
def text_runner(tiny_bert, cache):
    return onnx_runner(text_graph(tiny_bert), key=KEY + "77", cache_dir=cache / "bert")


def test_text_layers_and_poolings_equal_torch(tiny_bert, text_runner):
    module = HiddenStateTaps(tiny_bert, TEXT_REQUESTS).eval()
    assert text_runner.input_names == ("input_ids", "attention_mask", "token_type_ids")
    for batch, length, seed in ((5, 17, 3), (1, 4, 4), (8, 30, 5)):  # lengths and padding never exported
        inputs = text_batch(batch, length, seed=seed)
        assert_close(_outputs(module, inputs), text_runner(*(t.numpy() for t in inputs)))


def test_runner_casts_inputs_to_graph_dtypes(tiny_bert, text_runner):
    module = HiddenStateTaps(tiny_bert, TEXT_REQUESTS).eval()
    inputs = text_batch(3, 6, seed=9)
    got = text_runner(*(t.numpy().astype(np.int32) for t in inputs))  # tokenizers may hand out int32
    assert_close(_outputs(module, inputs), got)
    with pytest.raises(TypeError, match=r"takes 3 inputs \['input_ids', 'attention_mask', "
                                        r"'token_type_ids'\], got 2"):
        text_runner(inputs[0].numpy(), inputs[1].numpy())


def test_torchscript_exporter_refuses_a_trace_with_tracer_warnings(tiny_bert, tmp_path):
    # transformers' mask code branches on tensors: a trace would bake one branch in, so it is refused
    with pytest.raises(EngineExportError, match=r"torchscript: RuntimeError: the trace turned a tensor "
                                                r"into a Python value") as info:
        onnx_runner(text_graph(tiny_bert), key=KEY, cache_dir=tmp_path, exporter="torchscript")
    assert info.value.reason.startswith("torchscript: ")
    assert not list(tmp_path.glob("*.onnx"))


def test_torchscript_exporter_on_a_conv_net(tmp_path):
    module = _seeded(SmallNet)
    runner = onnx_runner(image_graph(module), key=KEY, cache_dir=tmp_path, exporter="torchscript")
    assert runner.exporter == "torchscript"
    x = torch.randn(4, 3, 32, 32)
    assert_close(_outputs(module, (x,)), runner(x.numpy()))


# -- failures are specific ---------------------------------------------------------------------------

def test_data_dependent_control_flow_raises_export_error(tmp_path):
    with pytest.raises(EngineExportError, match=r"DataDependent could not be exported to ONNX \(dynamo: "
                                                r"GuardOnDataDependentSymNode: Could not guard on "
                                                r"data-dependent expression") as info:
        onnx_runner(image_graph(DataDependent(), 8), key=KEY, cache_dir=tmp_path)
    assert "torchscript: RuntimeError: the trace turned a tensor into a Python value" in info.value.reason
    assert isinstance(info.value, RuntimeError)
    assert not list(tmp_path.glob("*.onnx"))


def test_op_without_onnx_translation_raises_export_error(tmp_path):
    with pytest.raises(EngineExportError, match=r"dynamo: DispatchError: No ONNX function found for "
                                                r"<OpOverload\(op='aten._linalg_eigh'.*torchscript: "
                                                r"UnsupportedOperatorError: Exporting the operator "
                                                r"'aten::linalg_eigvalsh'"):
        onnx_runner(image_graph(NoOnnxOp(), 8), key=KEY, cache_dir=tmp_path)


def test_failed_export_prints_nothing(tmp_path, capfd):
    with pytest.raises(EngineExportError):
        onnx_runner(image_graph(NoOnnxOp(), 8), key=KEY, cache_dir=tmp_path)
    out, err = capfd.readouterr()
    assert out == "" and err == ""  # no progress lines, no TorchScript graph dump


def test_successful_export_prints_nothing(tiny_bert, tmp_path, capfd):
    onnx_runner(text_graph(tiny_bert), key=KEY, cache_dir=tmp_path)
    out, err = capfd.readouterr()
    assert out == "" and err == ""  # no "[torch.onnx] ..." progress, no torch.export log lines


def test_export_that_computes_something_else_raises_mismatch(tmp_path):
    with pytest.raises(EngineMismatchError, match=r"Tap output 0: ONNX Runtime differs from torch by "
                                                  r"max\|a-b\| = 0\.00[0-9]+, over the allowed 0\.0001 \* "
                                                  r"max\(1, max\|a\|\) = 0\.000[0-9]+") as info:
        onnx_runner(image_graph(ExportDiffers(), 8), key=KEY, cache_dir=tmp_path)
    assert info.value.output == 0 and info.value.max_abs_diff > 1e-4
    assert not list(tmp_path.glob("*.onnx"))  # an unverified graph is never stored


def test_mismatching_ort_output_raises_mismatch(tmp_path, monkeypatch):
    real = _onnx._session

    def skewed(*args):
        session = real(*args)
        run = session.run
        session.run = lambda names, feed: [o + np.float32(2e-3) for o in run(names, feed)]
        return session

    monkeypatch.setattr(_onnx, "_session", skewed)
    with pytest.raises(EngineMismatchError, match=r"max\|a-b\| = 0\.002"):
        onnx_runner(image_graph(_seeded(SmallNet)), key=KEY, cache_dir=tmp_path)


def test_tolerance_rule_is_relative_to_feature_scale():
    a = np.array([[1000.0, 1.0]], np.float32)
    assert _onnx.compare_outputs([a], [a + np.float32(0.05)]) <= TOLERANCE  # 0.05 <= 1e-4 * 1000
    with pytest.raises(EngineMismatchError, match=r"max\|a-b\| = 0\.2"):
        _onnx.compare_outputs([a], [a + np.float32(0.2)])
    small = np.array([[0.01, -0.02]], np.float32)
    with pytest.raises(EngineMismatchError, match=r"allowed 0\.0001 \* max\(1, max\|a\|\) = 0\.0001\."):
        _onnx.compare_outputs([small], [small + np.float32(2e-4)])
    with pytest.raises(EngineMismatchError, match="disagree on which features are finite"):
        _onnx.compare_outputs([small], [np.array([[np.nan, -0.02]], np.float32)])


def test_bad_tap_module_output_is_a_type_error(tmp_path):
    class Unpooled(nn.Module):
        def forward(self, x):
            return (x,)

    with pytest.raises(TypeError, match=r"Tap output 0 on the example inputs is torch.float32 "
                                        r"\(2, 3, 8, 8\); every output must be a float tensor of shape "
                                        r"\(batch=2, d\)"):
        onnx_runner(image_graph(Unpooled(), 8), key=KEY, cache_dir=tmp_path)


def test_example_batch_of_one_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"Dynamic axis 0 \('batch'\) of example input 'x' has size 1; "
                                         r"use at least 2"):
        onnx_runner(image_graph(SmallNet(), batch=1), key=KEY, cache_dir=tmp_path)


@pytest.mark.parametrize("key", ["../../etc/x", "abc", "g" * 16, 1234567890])
def test_key_must_be_hex(key, tmp_path):
    with pytest.raises(ValueError, match=r"key=.* must be a hex string of 8 to 128 characters"):
        onnx_runner(image_graph(SmallNet()), key=key, cache_dir=tmp_path)


# -- the model cache ---------------------------------------------------------------------------------

@pytest.fixture
def count_exports(monkeypatch):
    calls = []
    real = torch.onnx.export

    def counting(*args, **kwargs):
        calls.append(kwargs.get("dynamo"))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", counting)
    return calls


def test_cached_file_is_reused_without_building_the_model(tmp_path, count_exports):
    module = _seeded(SmallNet)
    first = onnx_runner(image_graph(module), key=KEY, cache_dir=tmp_path)
    assert count_exports == [True] and first.exported
    assert [p.name for p in tmp_path.glob("*.onnx")] == [f"{KEY}-v{_onnx.FORMAT}.onnx"]

    def must_not_build():
        raise AssertionError("the graph was rebuilt although the model cache holds it")

    second = onnx_runner(must_not_build, key=KEY, cache_dir=tmp_path)
    assert count_exports == [True] and not second.exported
    assert second.exporter == "dynamo" and second.max_abs_diff == first.max_abs_diff
    x = torch.randn(3, 3, 32, 32)
    assert_close(_outputs(module, (x,)), second(x.numpy()))


def test_cached_file_is_reused_by_another_process(tmp_path):
    onnx_runner(image_graph(_seeded(SmallNet)), key=KEY, cache_dir=tmp_path)
    code = textwrap.dedent(f"""
        import numpy as np
        from skfeaturize.engines._onnx import onnx_runner

        def must_not_build():
            raise AssertionError("rebuilt")

        r = onnx_runner(must_not_build, key={KEY!r}, cache_dir={str(tmp_path)!r})
        out = r(np.zeros((2, 3, 32, 32), np.float32))
        print(r.exported, [o.shape for o in out])
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False [(2, 4), (2, 4)]"


def test_truncated_cached_file_is_exported_again(tmp_path, count_exports):
    module = _seeded(SmallNet)
    onnx_runner(image_graph(module), key=KEY, cache_dir=tmp_path)
    path = tmp_path / f"{KEY}-v{_onnx.FORMAT}.onnx"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.warns(CacheCorruptionWarning, match=r"The cached ONNX model .* is damaged .*exporting it "
                                                    r"again"):
        runner = onnx_runner(image_graph(module), key=KEY, cache_dir=tmp_path)
    assert count_exports == [True, True] and runner.exported
    assert path.read_bytes() == data  # the repaired file is whole again
    x = torch.randn(2, 3, 32, 32)
    assert_close(_outputs(module, (x,)), runner(x.numpy()))


def test_file_of_another_key_is_not_trusted(tmp_path, count_exports):
    module = _seeded(SmallNet)
    onnx_runner(image_graph(module), key=KEY, cache_dir=tmp_path)
    other = "fedcba9876543210"
    (tmp_path / f"{KEY}-v{_onnx.FORMAT}.onnx").rename(tmp_path / f"{other}-v{_onnx.FORMAT}.onnx")
    with pytest.warns(CacheCorruptionWarning, match=f"it was written for key '{KEY}'"):
        onnx_runner(image_graph(module), key=other, cache_dir=tmp_path)
    assert count_exports == [True, True]


def test_unwritable_cache_still_returns_a_runner(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    module = _seeded(SmallNet)
    with pytest.warns(UserWarning, match=r"Could not store the ONNX model in .*a-file/models.*exported "
                                         r"again"):
        runner = onnx_runner(image_graph(module), key=KEY, cache_dir=blocker / "models")
    x = torch.randn(2, 3, 32, 32)
    assert_close(_outputs(module, (x,)), runner(x.numpy()))


def test_no_temp_files_left_behind(tmp_path):
    onnx_runner(image_graph(_seeded(SmallNet)), key=KEY, cache_dir=tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [f"{KEY}-v{_onnx.FORMAT}.onnx", f"{KEY}-v{_onnx.FORMAT}.onnx.lock"]


# -- threads, providers, int8 ------------------------------------------------------------------------

def test_threads_follow_torch_or_the_caller(tmp_path):
    before = torch.get_num_threads()
    default = onnx_runner(image_graph(_seeded(SmallNet)), key=KEY, cache_dir=tmp_path)
    assert default.threads == before
    assert default.session.get_session_options().intra_op_num_threads == before
    one = onnx_runner(image_graph(_seeded(SmallNet)), key=KEY, cache_dir=tmp_path, threads=1)
    assert one.session.get_session_options().intra_op_num_threads == 1
    assert torch.get_num_threads() == before  # nothing process-wide changed
    with pytest.raises(ValueError, match=r"threads=0 must be a positive int or None"):
        onnx_runner(image_graph(SmallNet()), key=KEY, cache_dir=tmp_path, threads=0)


def test_cuda_provider_when_available(monkeypatch):
    monkeypatch.setattr(ort, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert _onnx.execution_providers("cuda:1") == [("CUDAExecutionProvider", {"device_id": 1, "use_tf32": 0}),
                                                   "CPUExecutionProvider"]
    assert _onnx.execution_providers("cuda")[0] == ("CUDAExecutionProvider", {"device_id": 0, "use_tf32": 0})
    assert _onnx.execution_providers("cpu") == ["CPUExecutionProvider"]


def test_cuda_without_the_provider_names_the_package(monkeypatch, tmp_path):
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(MissingDependencyError, match=r"device='cuda' .* needs the CUDAExecutionProvider.*"
                                                     r"pip install onnxruntime-gpu"):
        onnx_runner(image_graph(SmallNet()), key=KEY, cache_dir=tmp_path, device="cuda")
    with pytest.raises(ValueError, match=r"device='mps' is not supported by the onnxruntime engine"):
        onnx_runner(image_graph(SmallNet()), key=KEY, cache_dir=tmp_path, device="mps")


def test_int8_is_a_separate_cached_file(tiny_bert, text_runner, count_exports):
    folder = text_runner.path.parent
    runner = onnx_runner(lambda: text_graph(tiny_bert), key=KEY + "77", cache_dir=folder, int8=True)
    assert count_exports == []  # the fp32 graph came from the cache
    assert runner.int8 and runner.path.name == f"{KEY}77-v{_onnx.FORMAT}-int8.onnx"
    assert runner.max_abs_diff is None
    ops = {n.op_type for n in __import__("onnx").load(runner.path).graph.node}
    assert "MatMulInteger" in ops or "DynamicQuantizeMatMul" in ops
    inputs = [t.numpy() for t in text_batch(6, 14, seed=11)]
    fp32, int8 = text_runner(*inputs), runner(*inputs)
    assert np.array_equal(fp32[0], int8[0])  # layer 0 (embeddings) has no MatMul to quantize
    for (layer, _), a, b in zip(TEXT_REQUESTS[1:], fp32[1:], int8[1:], strict=True):
        cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        assert cos.min() > 0.98, layer  # close to fp32 ...
        assert np.abs(a - b).max() > 1e-4, layer  # ... but not the same numbers
    again = onnx_runner(lambda: text_graph(tiny_bert), key=KEY + "77", cache_dir=folder, int8=True)
    assert not again.exported and again.path == runner.path


def test_importing_the_engines_loads_no_heavy_library():
    code = ("import sys, skfeaturize.engines as e, skfeaturize.engines._onnx, skfeaturize.engines._packed; "
            "assert e.onnx_runner is skfeaturize.engines._onnx.onnx_runner; "
            "print(sorted(m for m in ('torch', 'onnx', 'onnxruntime', 'transformers') if m in sys.modules))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.gpu
def test_cuda_provider_runs_the_graph(tmp_path):
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu (the CUDAExecutionProvider) is not installed")
    module = _seeded(SmallNet).cuda()
    x = torch.randn(2, 3, 32, 32, device="cuda")
    runner = onnx_runner(TapGraph(module, (x,), ("x",), {"x": {0: "batch"}}), key=KEY, cache_dir=tmp_path,
                         device="cuda")
    assert runner.providers[0] == "CUDAExecutionProvider"
    probe = torch.randn(5, 3, 32, 32)
    assert_close(_outputs(module.cpu(), (probe,)), runner(probe.numpy()))
