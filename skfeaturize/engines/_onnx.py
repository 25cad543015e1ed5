"""ONNX Runtime engine for a *tap module*: export once, keep in a local model cache, verify, run.

A featurizer describes what to run with a :class:`TapGraph`: a ``torch.nn.Module`` whose
``forward(*inputs)`` returns a tuple of float tensors, one ``(batch, d_k)`` tensor per requested
(layer, pooling), with the pooling already inside; example inputs; and which input axes are dynamic (the
batch always, for text also the sequence). :func:`onnx_runner` turns it into an :class:`OnnxRunner` that
takes NumPy arrays and returns the list of float32 outputs.

Model cache. The exported graph is stored as ``<cache_dir>/<key>-v<FORMAT>.onnx``, where ``key`` is a hex
string the caller derives from everything that changes the graph (the model's fingerprint, the taps and
poolings, the input shape policy). It is written atomically (temp file, fsync, rename) under a lock file,
so processes of one grid search export a model once and never see a torn file; a file that fails to
parse, fails ``onnx.checker`` or carries another key is reported (:class:`CacheCorruptionWarning`) and
exported again. The int8 variant is a separate file, ``<key>-v<FORMAT>-int8.onnx``.

Verification. Before a new export is stored, a probe batch (by default the example inputs grown by one
along every dynamic axis, so a shape the exporter baked in shows up) runs through torch and ONNX Runtime.
The rule, per output ``k`` with torch output ``a`` and ORT output ``b``:

    same shape, same positions non-finite, and ``max|a - b| <= TOLERANCE * max(1, max|a|)``

with ``TOLERANCE = 1e-4``: an absolute 1e-4 for features of order one, relative to the largest feature
beyond that. A failure raises :class:`EngineMismatchError` (the caller disables ORT for the model with a
warning) and nothing is stored; an export failure raises :class:`EngineExportError` whose ``reason``
names what each exporter reported (the caller falls back to torch with one warning).

Exporters. ``torch.onnx.export(dynamo=True)`` (``torch.export``) is tried first: it exported every tap
module measured (torchvision resnet18 / mobilenet_v3_small / efficientnet_b0 / vit_b_16, timm
``forward_intermediates`` + ``forward_head``, transformers BERT with masked pooling). The TorchScript
exporter is the fallback; it cannot export torchvision's ViT (``aten::_native_multi_head_attention``) and,
because tracing records one path through Python control flow, a trace that emitted a ``TracerWarning``
(a tensor turned into a Python value) is refused rather than trusted.

Threads and devices. ONNX Runtime's intra-op threads are ``torch.get_num_threads()`` unless the caller
gives a number, set on the ``SessionOptions`` only (never process-wide). ``device="cuda[:i]"`` uses the
``CUDAExecutionProvider`` when ``onnxruntime.get_available_providers()`` lists it (onnxruntime-gpu), with
TF32 off. Verification always runs on the CPU (a module on a GPU is copied there for the probe): it
checks the graph, and torch's TF32 convolutions on a GPU would otherwise fail an exact graph.
"""

from __future__ import annotations

import contextlib
import copy
import io
import itertools
import os
import re
import tempfile
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .._optional import import_optional
from .._warnings import warn
from ..exceptions import (
    CacheCorruptionWarning,
    EngineExportError,
    EngineMismatchError,
    MissingDependencyError,
)

if TYPE_CHECKING:
    import torch

FORMAT = 1  # bump when the exported graphs change meaning (opset, naming, metadata): old files are ignored
TOLERANCE = 1e-4
OPSET = 18
EXPORTERS = ("auto", "dynamo", "torchscript")
INT8_OPS = ("MatMul", "Attention")  # dynamic int8 of the Linear layers; ConvInteger is slow on CPU
_KEY = re.compile(r"[0-9a-fA-F]{8,128}")
_META = "skfeaturize."


@dataclass
class TapGraph:
    """What the featurizer hands the engine.

    ``module``: eval-mode ``nn.Module``; ``forward(*example_inputs)`` returns a tuple of float tensors of
    shape ``(batch, d_k)``. ``input_names``: one name per positional input. ``dynamic_axes``: per input
    name, ``{axis: axis_name}`` (``{0: "batch"}``, and ``{1: "seq"}`` for token inputs); an axis name
    shared by two inputs is one dimension. Every dynamic axis of the examples must have size >= 2
    (``torch.export`` specialises sizes 0 and 1). ``probe_inputs``: a verification batch, ideally real
    samples with other dynamic sizes than the examples (default: the examples grown by one).
    """

    module: torch.nn.Module
    example_inputs: tuple
    input_names: Sequence[str]
    dynamic_axes: Mapping[str, Mapping[int, str]]
    probe_inputs: tuple | None = None


class OnnxRunner:
    """An ONNX Runtime session for one exported tap graph: ``runner(*arrays) -> [float32 arrays]``.

    ``exported`` is True when this call exported the graph (False: read from the model cache);
    ``exporter`` names the exporter that produced the file; ``max_abs_diff`` is the verification's
    worst ``max|a - b| / max(1, max|a|)`` over the outputs (for int8, ``None``); ``providers`` are the
    execution providers the session really uses."""

    def __init__(self, session, meta: dict, *, path: Path, int8: bool, exported: bool, threads: int):
        self.session = session
        self.path = path
        self.int8 = int8
        self.exported = exported
        self.threads = threads
        self.exporter = meta.get(_META + "exporter")
        self.max_abs_diff = None if int8 else float(meta[_META + "max_abs_diff"])
        self.input_names = tuple(meta[_META + "inputs"].split(","))
        self.output_names = tuple(o.name for o in session.get_outputs())
        # the exporter may drop an input the graph does not use (token_type_ids of a model that ignores it)
        self._graph_inputs = {i.name: _NUMPY_DTYPES.get(i.type) for i in session.get_inputs()}
        self.providers = session.get_providers()

    def __call__(self, *inputs) -> list[np.ndarray]:
        if len(inputs) != len(self.input_names):
            raise TypeError(
                f"This ONNX graph takes {len(self.input_names)} inputs {list(self.input_names)}, "
                f"got {len(inputs)}. Pass them positionally in that order."
            )
        feed = {}
        for name, x in zip(self.input_names, inputs, strict=True):
            if name in self._graph_inputs:
                feed[name] = np.ascontiguousarray(x, dtype=self._graph_inputs[name])
        outs = self.session.run(list(self.output_names), feed)
        return [np.ascontiguousarray(o, dtype=np.float32) for o in outs]

    def __repr__(self) -> str:
        return (f"OnnxRunner(path={str(self.path)!r}, exporter={self.exporter!r}, int8={self.int8}, "
                f"providers={self.providers}, threads={self.threads})")


_NUMPY_DTYPES = {
    "tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16,
    "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(bool)": np.bool_,
    "tensor(uint8)": np.uint8, "tensor(int8)": np.int8,
}


def onnx_runner(
    graph: TapGraph | Callable[[], TapGraph],
    *,
    key: str,
    cache_dir: str | os.PathLike,
    threads: int | None = None,
    device: str = "cpu",
    int8: bool = False,
    exporter: str = "auto",
) -> OnnxRunner:
    """A verified ONNX Runtime runner for ``graph``, exported once per ``key`` into ``cache_dir``.

    ``graph`` may be a callable returning the :class:`TapGraph`: it is only called when the model cache
    has no valid file for ``key``, so a cache hit does not need the torch model at all. ``threads``: ORT
    intra-op threads (default ``torch.get_num_threads()``). ``device``: ``"cpu"``, ``"cuda"`` or
    ``"cuda:<i>"``. ``int8``: run the dynamically int8-quantized graph (changes the numbers; not verified
    against torch). Raises :class:`EngineExportError` or :class:`EngineMismatchError` when ORT cannot
    serve this graph, :class:`MissingDependencyError` when onnxruntime (or its CUDA provider) is missing.
    """
    ort = import_optional("onnxruntime", "onnx")
    _check_args(key, exporter, threads)
    providers = execution_providers(device)
    threads = resolve_threads(threads)
    folder = Path(os.path.expanduser(os.fspath(cache_dir)))
    path, data, meta, session = _fp32_graph(ort, graph, key, folder, exporter, threads)
    exported = session is not None
    if int8:
        path, data, meta = _int8_graph(folder, key, data, meta)
    if int8 or session is None or providers != ["CPUExecutionProvider"]:
        session = _session(ort, data, providers, threads)
    return OnnxRunner(session, meta, path=path, int8=int8, exported=exported, threads=threads)


def _fp32_graph(ort, graph, key: str, folder: Path, exporter: str, threads: int):
    """``(path, bytes, metadata, session or None)``: the cached graph, or a new verified export (with
    the CPU session that verified it)."""
    path = folder / f"{key}-v{FORMAT}.onnx"
    with _file_lock(path):
        data, meta = _read_cached(path, key)
        if data is not None:
            return path, data, meta, None
        tap = graph if isinstance(graph, TapGraph) else graph()
        # verified on the CPU in fp32 whatever device runs it later: torch's default TF32 convolutions
        # on a GPU would make an exact graph look wrong
        data, meta, session = _export_verified(
            tap, exporter, key, lambda d: _session(ort, d, ["CPUExecutionProvider"], threads))
        _write_atomic(path, data)
        return path, data, meta, session


def _int8_graph(folder: Path, key: str, data: bytes, meta: dict):
    path = folder / f"{key}-v{FORMAT}-int8.onnx"
    with _file_lock(path):
        qdata, qmeta = _read_cached(path, key + "-int8")
        if qdata is None:
            qdata, qmeta = quantize_int8(data, meta, key + "-int8")
            _write_atomic(path, qdata)
    return path, qdata, qmeta


# -- arguments, providers, threads -------------------------------------------------------------------

def _check_args(key, exporter, threads) -> None:
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise ValueError(
            f"key={key!r} must be a hex string of 8 to 128 characters (a hash of the model fingerprint, "
            "taps and input shape policy); it names the cached file, so nothing else is allowed."
        )
    if exporter not in EXPORTERS:
        raise ValueError(f"exporter={exporter!r} is not one of {EXPORTERS}.")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads={threads!r} must be a positive int or None (torch.get_num_threads()).")


def resolve_threads(threads: int | None) -> int:
    """The caller's number, else torch's current intra-op thread count (the user's torch setting)."""
    if threads is not None:
        return threads
    import torch

    return torch.get_num_threads()


def execution_providers(device) -> list:
    """ORT providers for ``device``: CPU, or CUDA (device id kept) with the CPU for unsupported ops."""
    ort = import_optional("onnxruntime", "onnx")
    dev = str(device)
    if dev == "cpu":
        return ["CPUExecutionProvider"]
    if dev == "cuda" or dev.startswith("cuda:"):
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise MissingDependencyError(
                f"device={device!r} with engine='onnxruntime' needs the CUDAExecutionProvider, but this "
                f"onnxruntime has only {ort.get_available_providers()}. Install it with: pip install "
                "onnxruntime-gpu (instead of onnxruntime), or use engine='torch' on the GPU."
            )
        index = int(dev.split(":")[1]) if ":" in dev else 0
        # use_tf32=0: fp32 stays fp32 (ORT's CUDA EP would otherwise round matmul/conv inputs to TF32)
        return [("CUDAExecutionProvider", {"device_id": index, "use_tf32": 0}), "CPUExecutionProvider"]
    raise ValueError(
        f"device={device!r} is not supported by the onnxruntime engine; use 'cpu' or 'cuda[:i]'.")


def _session(ort, data: bytes, providers: list, threads: int):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3  # ORT's info lines about pruned initializers are noise to a user
    session = ort.InferenceSession(data, sess_options=so, providers=providers)
    wanted = providers[0][0] if isinstance(providers[0], tuple) else providers[0]
    if session.get_providers()[0] != wanted:  # ORT falls back to the CPU silently when CUDA fails to load
        raise MissingDependencyError(
            f"onnxruntime could not start the {wanted} (it uses {session.get_providers()}); check the CUDA "
            "and cuDNN libraries onnxruntime-gpu needs, or use engine='torch'."
        )
    return session


# -- export and verification -------------------------------------------------------------------------

def _export_verified(tap: TapGraph, exporter: str, key: str, make_session) -> tuple[bytes, dict, object]:
    """Export ``tap``, verify it on the probe batch; return (file bytes, metadata, session)."""
    import onnx
    import torch

    _check_tap(tap)
    tap.module.eval()  # a tap module in training mode would bake dropout into the graph
    with torch.inference_mode():
        n_out = _check_outputs(tap.module(*tap.example_inputs), len(tap.example_inputs[0]), "example")
    output_names = [f"tap{k}" for k in range(n_out)]
    proto, used = export_onnx(tap, exporter, output_names)
    session = make_session(proto.SerializeToString())
    probe = tap.probe_inputs if tap.probe_inputs is not None else grow_dynamic(tap)
    diff = verify(tap.module, session, tap.input_names, probe)
    meta = {_META + "key": key, _META + "exporter": used, _META + "max_abs_diff": repr(diff),
            _META + "inputs": ",".join(tap.input_names), _META + "format": str(FORMAT)}
    _set_metadata(proto, meta)
    onnx.checker.check_model(proto)
    return proto.SerializeToString(), meta, session


def _set_metadata(proto, meta: dict) -> None:
    del proto.metadata_props[:]
    for k, v in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v


def _check_tap(tap: TapGraph) -> None:
    if len(tap.input_names) != len(tap.example_inputs):
        raise ValueError(
            f"TapGraph has {len(tap.example_inputs)} example inputs but {len(tap.input_names)} input names "
            f"{list(tap.input_names)}; give one name per positional input."
        )
    for name, axes in tap.dynamic_axes.items():
        if name not in tap.input_names:
            raise ValueError(f"dynamic_axes names {name!r}, which is not an input {list(tap.input_names)}.")
        x = tap.example_inputs[list(tap.input_names).index(name)]
        for axis, axis_name in axes.items():
            if not str(axis_name).isidentifier():
                raise ValueError(f"Axis name {axis_name!r} of input {name!r} must be an identifier.")
            if x.shape[axis] < 2:
                raise ValueError(
                    f"Dynamic axis {axis} ({axis_name!r}) of example input {name!r} has size "
                    f"{x.shape[axis]}; use at least 2 (torch.export treats sizes 0 and 1 as constants)."
                )


def _check_outputs(outputs, batch: int, what: str) -> int:
    import torch

    if isinstance(outputs, torch.Tensor) or not isinstance(outputs, (tuple, list)) or not outputs:
        raise TypeError(
            f"A tap module must return a non-empty tuple of (batch, d) float tensors; on the {what} "
            f"inputs it returned {type(outputs).__name__}."
        )
    for k, t in enumerate(outputs):
        if not (isinstance(t, torch.Tensor) and t.is_floating_point() and t.ndim == 2 and len(t) == batch):
            desc = f"{t.dtype} {tuple(t.shape)}" if isinstance(t, torch.Tensor) else type(t).__name__
            raise TypeError(
                f"Tap output {k} on the {what} inputs is {desc}; every output must be a float tensor of "
                f"shape (batch={batch}, d), pooled inside the module."
            )
    return len(outputs)


def export_onnx(tap: TapGraph, exporter: str, output_names: list[str]):
    """``(ModelProto, exporter used)``; tries dynamo then TorchScript for ``"auto"``."""
    order = ("dynamo", "torchscript") if exporter == "auto" else (exporter,)
    reasons = []
    for name in order:
        try:
            return _EXPORT[name](tap, output_names), name
        except Exception as e:  # noqa: BLE001 - every exporter failure is a reason to report
            reasons.append(f"{name}: {export_reason(e)}")
    reason = "; ".join(reasons)
    raise EngineExportError(
        f"{type(tap.module).__name__} could not be exported to ONNX ({reason}). The onnxruntime engine "
        "is not available for this model; engine='torch' runs it eagerly.",
        reason=reason,
    )


def _export_dynamo(tap: TapGraph, output_names: list[str]):
    import torch

    shapes = tuple(dict(tap.dynamic_axes.get(n, {})) or None for n in tap.input_names)
    with _quiet(), _quiet_fds(), torch.no_grad():
        program = torch.onnx.export(
            tap.module, tuple(tap.example_inputs), dynamo=True, input_names=list(tap.input_names),
            output_names=output_names, dynamic_shapes=shapes, external_data=False, optimize=True,
            verbose=False, opset_version=OPSET,
        )
    return program.model_proto


def _export_torchscript(tap: TapGraph, output_names: list[str]):
    import onnx
    import torch

    axes = {n: dict(a) for n, a in tap.dynamic_axes.items()}
    axes.update({n: {0: "batch"} for n in output_names})
    buffer = io.BytesIO()
    with _quiet() as caught, _quiet_fds(), torch.no_grad():
        torch.onnx.export(
            tap.module, tuple(tap.example_inputs), buffer, dynamo=False, input_names=list(tap.input_names),
            output_names=output_names, dynamic_axes=axes, opset_version=17, do_constant_folding=True,
        )
    traced = [w for w in caught if type(w.message).__name__ == "TracerWarning"]
    if traced:
        first = str(traced[0].message).splitlines()[0][:120]
        raise RuntimeError(
            f"the trace turned a tensor into a Python value ({first}), so it may have baked in one branch "
            "of data-dependent code"
        )
    return onnx.load_from_string(buffer.getvalue())


_EXPORT = {"dynamo": _export_dynamo, "torchscript": _export_torchscript}


@contextlib.contextmanager
def _quiet():
    """Keep the exporters' progress prints, deprecation notes and warnings away from the user's
    console; yields the recorded warnings."""
    with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("always")
        yield caught


@contextlib.contextmanager
def _quiet_fds():
    """Point file descriptors 1 and 2 at a scratch file during an export: the TorchScript exporter's C++
    logger prints the whole graph to stderr when an export fails (torch 2.14 enables it unconditionally),
    and torch.export's loggers hold their own handle on stderr. Failures come back as exceptions."""
    import sys

    saved = []
    with tempfile.TemporaryFile() as sink:
        try:
            for fd, stream in ((1, sys.__stdout__), (2, sys.__stderr__)):
                if stream is not None:
                    stream.flush()
                saved.append((fd, os.dup(fd)))
                os.dup2(sink.fileno(), fd)
        except OSError:  # no real descriptors (embedded interpreter): nothing to silence
            pass
        try:
            yield
        finally:
            for fd, copy in saved:
                os.dup2(copy, fd)
                os.close(copy)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def export_reason(e: BaseException) -> str:
    """One readable line for an export failure: the root cause's type and first line, not the
    exporter's generic "this is step 1/3" banner."""
    cause = e
    while cause.__cause__ is not None:
        cause = cause.__cause__
    lines = [ln.strip() for ln in _ANSI.sub("", str(cause)).splitlines() if ln.strip()]
    text = lines[0] if lines else ""
    return f"{type(cause).__name__}: {text[:300]}"


def grow_dynamic(tap: TapGraph) -> tuple:
    """The example inputs with every dynamic axis one longer (slice 0 appended), so verification runs
    on shapes the export did not see: a size the exporter baked in fails there."""
    import torch

    grown = []
    for name, x in zip(tap.input_names, tap.example_inputs, strict=True):
        for axis in sorted(tap.dynamic_axes.get(name, {})):
            x = torch.cat([x, x.narrow(axis, 0, 1)], dim=axis)
        grown.append(x)
    return tuple(grown)


def verify(module, session, input_names: Sequence[str], probe: tuple) -> float:
    """Run ``probe`` through torch and ORT; return the worst scaled difference or raise
    :class:`EngineMismatchError` (rule in the module docstring)."""
    import torch

    if any(t.device.type != "cpu" for t in itertools.chain(module.parameters(), module.buffers())):
        module = copy.deepcopy(module).cpu()  # once per export; see onnx_runner on why the CPU
    with torch.inference_mode():
        ref = module(*(t.cpu() for t in probe))
    _check_outputs(ref, len(probe[0]), "probe")
    ref = [t.detach().float().cpu().numpy() for t in ref]
    graph_inputs = {i.name for i in session.get_inputs()}
    feed = {n: t.detach().cpu().numpy() for n, t in zip(input_names, probe, strict=True) if n in graph_inputs}
    got = session.run(None, feed)
    return compare_outputs(ref, got)


def compare_outputs(ref: Sequence[np.ndarray], got: Sequence[np.ndarray]) -> float:
    """Worst ``max|a - b| / max(1, max|a|)`` over the outputs; raises when one exceeds ``TOLERANCE``."""
    if len(ref) != len(got):
        raise EngineMismatchError(f"ONNX Runtime returned {len(got)} outputs, torch {len(ref)}.")
    worst = 0.0
    for k, (a, b) in enumerate(zip(ref, got, strict=True)):
        b = np.asarray(b)
        if a.shape != b.shape:
            raise EngineMismatchError(
                f"Tap output {k}: ONNX Runtime gave shape {b.shape}, torch {a.shape}.", output=k)
        finite = np.isfinite(a)
        if not np.array_equal(finite, np.isfinite(b)):
            raise EngineMismatchError(
                f"Tap output {k}: ONNX Runtime and torch disagree on which features are finite.",
                output=k)
        err = float(np.abs(a[finite] - b[finite]).max(initial=0.0))
        scale = max(1.0, float(np.abs(a[finite]).max(initial=0.0)))
        if not err <= TOLERANCE * scale:
            raise EngineMismatchError(
                f"Tap output {k}: ONNX Runtime differs from torch by max|a-b| = {err:.3g}, over the allowed "
                f"{TOLERANCE:g} * max(1, max|a|) = {TOLERANCE * scale:.3g}. The exported graph does not "
                "compute what the module computes; the onnxruntime engine is disabled for this model.",
                max_abs_diff=err, output=k,
            )
        worst = max(worst, err / scale)
    return worst


# -- int8 --------------------------------------------------------------------------------------------

def quantize_int8(data: bytes, meta: dict, key: str) -> tuple[bytes, dict]:
    """Dynamic int8 quantization (weights int8 per output channel, activations quantized per batch) of
    the MatMul/Attention nodes of an exported graph, with ``onnxruntime.quantization.quantize_dynamic``.

    Per channel, on MiniLM's 7 mean-pooled layers over 500 mixed real texts, the last layer's cosine to
    fp32 was 0.993 on average (min 0.984), against 0.959 (min 0.922) per tensor; quantizing Gather
    (the embeddings) as well lowered it further (benchmarks/scratch_onnx/int8_variants.py)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(prefix="skfeaturize-int8-") as tmp:
        src, dst = os.path.join(tmp, "fp32.onnx"), os.path.join(tmp, "int8.onnx")
        with open(src, "wb") as f:
            f.write(data)
        with _quiet():
            quantize_dynamic(src, dst, op_types_to_quantize=list(INT8_OPS), weight_type=QuantType.QInt8,
                             per_channel=True)
        proto = onnx.load(dst)
    meta = {**meta, _META + "key": key, _META + "int8": "per_channel;" + ",".join(INT8_OPS)}
    _set_metadata(proto, meta)
    return proto.SerializeToString(), meta


# -- the model cache ---------------------------------------------------------------------------------

def _read_cached(path: Path, key: str) -> tuple[bytes | None, dict | None]:
    """``(bytes, metadata)`` of the cached file when it is a valid ONNX model for ``key``; ``(None, None)``
    when absent or damaged (damaged files are reported and removed so they are exported again)."""
    import onnx

    try:
        data = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None, None
    except OSError as e:
        warn(f"Cannot read the cached ONNX model {str(path)!r} ({e}); exporting it again.")
        return None, None
    try:
        proto = onnx.load_from_string(data)
        onnx.checker.check_model(proto)
        meta = {p.key: p.value for p in proto.metadata_props}
        if meta.get(_META + "key") != key:
            raise ValueError(f"it was written for key {meta.get(_META + 'key')!r}")
    except Exception as e:  # noqa: BLE001 - truncated protobuf, checker error, foreign file: all "damaged"
        warn(
            f"The cached ONNX model {str(path)!r} is damaged ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:200] if str(e) else ''}); exporting it again.",
            CacheCorruptionWarning)
        with contextlib.suppress(OSError):
            path.unlink()
        return None, None
    return data, meta


def _write_atomic(path: Path, data: bytes) -> None:
    """temp file in the same folder + fsync + rename, so a reader sees the old file or the whole new
    one. A cache that cannot be written (read-only, full) costs a re-export later, never the result."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
        _fsync_dir(path.parent)
    except OSError as e:
        warn(f"Could not store the ONNX model in {str(path.parent)!r} ({e}); it will be exported "
             "again next time.")
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _fsync_dir(folder: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _file_lock(path: Path):
    """One exporter per cached file across processes (a grid search's workers wait for the first one
    instead of all exporting); without a writable folder, no lock (and no cache) is needed."""
    from filelock import FileLock, Timeout

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(path) + ".lock", timeout=1800)
        lock.acquire()
    except (OSError, Timeout):
        yield
        return
    try:
        yield
    finally:
        lock.release()
