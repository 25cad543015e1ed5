"""ImageFeaturizer: torchvision, timm or any ``nn.Module`` as a scikit-learn transformer."""

from __future__ import annotations

import os
from numbers import Integral

import numpy as np
from sklearn.utils._param_validation import Interval, StrOptions

from ..base import BaseFeaturizer
from ..exceptions import InvalidSampleError
from ..pooling import IMAGE_POOLINGS
from . import _io

_SPECS: dict = {}
_TIMM_TRANSFORMS: dict = {}  # timm model name (with tag) → its eval preprocessing, shared by clones


def _split_backbone(backbone: str) -> tuple[str, str]:
    """``"timm:name"``/``"torchvision:name"`` → (source, name); a bare name: torchvision first, then timm."""
    from ..backends import timm as timm_backend
    from ..backends import torchvision as tv_backend

    if ":" in backbone:
        source, name = backbone.split(":", 1)
        if source not in ("timm", "torchvision"):
            raise ValueError(f"backbone={backbone!r}: unknown source {source!r}; use 'timm:NAME', "
                             "'torchvision:NAME', a bare model name, or a torch.nn.Module.")
        known = timm_backend.has_model(name) if source == "timm" else tv_backend.has_model(name)
        if not known:
            _raise_unknown(backbone, name)
        return source, name
    if tv_backend.has_model(backbone):
        return "torchvision", backbone
    if timm_backend.has_model(backbone):
        return "timm", backbone
    _raise_unknown(backbone, backbone)


def _raise_unknown(backbone, name):
    import difflib

    from ..backends import torchvision as tv_backend

    timm = __import__("timm")
    pool = tv_backend.list_models() + timm.list_models()
    close = difflib.get_close_matches(name, pool, n=3, cutoff=0.6)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(f"backbone={backbone!r} is neither a torchvision nor a timm model.{hint} "
                     "timm.list_models('*pattern*') lists timm's models.")


class ImageFeaturizer(BaseFeaturizer):
    """Features from a pretrained image backbone, as a scikit-learn transformer.

    Parameters
    ----------
    backbone : str or torch.nn.Module, default="resnet50"
        A torchvision classification model name (``"resnet50"``), a timm model name
        (``"timm:vit_small_patch16_224"``, or a bare name torchvision does not know), or a module.
        A bare name known to both libraries means torchvision's.
    weights : str, path, bool or None, default="DEFAULT"
        torchvision: a weights name (``"DEFAULT"``, ``"IMAGENET1K_V2"``); timm: ``"DEFAULT"``/``True`` or
        a pretrained tag (``"augreg_in21k"``); a local checkpoint file (safetensors, or a state dict read
        with ``torch.load(weights_only=True)``); or ``None`` for a seeded random initialisation.
        Ignored when ``backbone`` is a module (its own weights are used).
    layer : int, str or list, default=-1
        An int indexes the backbone's feature layers (stages/blocks, then ``"pre_logits"``); ``-1`` is
        the standard pre-logits embedding. A str is a module path or ``"pre_logits"``. A list
        concatenates its layers' pooled outputs in the order given. ``list_layers()`` shows all.
    pooling : str, default="auto"
        Feature maps: ``avg``, ``max``, ``gem``, ``avgmax``, ``flatten``. Tokens: ``cls``, ``mean``
        (patch tokens only), ``cls+mean``, ``max``, ``gem``, ``flatten``. ``auto``: ``avg`` for maps,
        the class token for ViTs. Vectors such as ``pre_logits`` are used as they are.
    preprocess : "auto" or callable, default="auto"
        Preprocessing. ``"auto"`` uses the weights' own (torchvision ``weights.transforms()``, timm's data
        config). A callable receives an RGB PIL image and returns a ``(3, H, W)`` float tensor.
    batch_size : int, default=32
    device : str, default="auto"
        ``"auto"``: cuda, then mps, then cpu.
    precision : {"auto", "fp32", "bf16", "fp16"}, default="auto"
        ``"auto"``: bf16 (or fp16) autocast on CUDA, fp32 elsewhere.
    num_workers : int, default=0
        DataLoader workers that decode and preprocess images in parallel.
    cache : None, str, path or EmbeddingCache, default=None
        Per-sample embedding cache; see the cache guide.
    cache_layers, cache_poolings : list or None, default=None
        On a cache miss, also compute and store these layers × poolings in the same forward pass, so a
        grid search over them costs one backbone pass per sample.
    progress : bool, default=False
        Show a progress bar over batches.

    Attributes
    ----------
    layers_ : list of str
        The resolved layer names, in output order.
    device_ : str
    precision_ : str
    backbone_name_ : str
    """

    _input_what = "images"

    _parameter_constraints: dict = {
        "backbone": "no_validation",
        "weights": [str, os.PathLike, bool, None],
        "layer": [Integral, str, list, tuple],
        "pooling": [StrOptions(set(IMAGE_POOLINGS))],
        "preprocess": [StrOptions({"auto"}), callable],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "device": "no_validation",
        "precision": [StrOptions({"auto", "fp32", "bf16", "fp16"})],
        "num_workers": [Interval(Integral, 0, None, closed="left")],
        "cache": "no_validation",
        "cache_layers": [list, tuple, None],
        "cache_poolings": [list, tuple, None],
        "progress": ["boolean"],
    }

    def __init__(self, backbone="resnet50", *, weights="DEFAULT", layer=-1, pooling="auto",
                 preprocess="auto", batch_size=32, device="auto", precision="auto", num_workers=0,
                 cache=None, cache_layers=None, cache_poolings=None, progress=False):
        self.backbone = backbone
        self.weights = weights
        self.layer = layer
        self.pooling = pooling
        self.preprocess = preprocess
        self.batch_size = batch_size
        self.device = device
        self.precision = precision
        self.num_workers = num_workers
        self.cache = cache
        self.cache_layers = cache_layers
        self.cache_poolings = cache_poolings
        self.progress = progress

    # -- backbone identity ---------------------------------------------------------------------------
    def _source(self) -> tuple[str, str]:
        if isinstance(self.backbone, str):
            return _split_backbone(self.backbone)
        from torch import nn

        if not isinstance(self.backbone, nn.Module):
            raise TypeError(f"backbone must be a model name or a torch.nn.Module; got "
                            f"{type(self.backbone).__name__}.")
        return "module", type(self.backbone).__name__

    def _label(self) -> str:
        return self.backbone if isinstance(self.backbone, str) else type(self.backbone).__name__

    def _spec(self):
        """Layer names and layout without weights (architecture built on the 'meta' device, cached)."""
        from ..backends import timm as timm_backend
        from ..backends import torchvision as tv_backend
        from ._backbone import BackboneSpec, classifier_name, layer_layouts

        source, name = self._source()
        key = (source, name) if source != "module" else ("module", id(self.backbone))
        if key in _SPECS and source != "module":
            return _SPECS[key]
        if source == "torchvision":
            model = tv_backend.build(name, None, meta=True)
            spec = BackboneSpec(source, name, tv_backend.feature_layers(name, model),
                                [n for n, _ in model.named_modules() if n], tv_backend.layout(name),
                                tv_backend.num_prefix_tokens(name), classifier_name(model))
            spec.layer_layouts = layer_layouts(model, spec.layout)
        else:
            model = timm_backend.build(name, None, meta=True) if source == "timm" else self.backbone
            timm_like = source == "timm" or (hasattr(model, "feature_info")
                                             and hasattr(model, "forward_head"))
            if timm_like and source == "module":
                source = "timm"
            feature_layers = timm_backend.feature_layers(model)
            if not feature_layers:  # any nn.Module: its top-level children except the classifier
                cls = classifier_name(model)
                feature_layers = [n for n, m in model.named_children() if n != cls]
            spec = BackboneSpec(source, name, feature_layers, [n for n, _ in model.named_modules() if n],
                                timm_backend.layout(model), timm_backend.num_prefix_tokens(model),
                                classifier_name(model))
            spec.layer_layouts = layer_layouts(model, spec.layout)
        if key[0] != "module":
            _SPECS[key] = spec
        return spec

    def _weights_identity(self) -> str:
        from ..backends import timm as timm_backend
        from ..backends import torchvision as tv_backend
        from ..backends.checkpoints import looks_like_path
        from ..cache._keys import file_identity

        source, name = self._source()
        if source == "module":
            return "module:" + _module_hash(self.backbone)
        if self.weights is None:
            return f"random-init:seed0:{source}"
        if looks_like_path(self.weights):
            return "file:" + file_identity(os.path.expanduser(os.fspath(self.weights)))
        if source == "torchvision":
            return tv_backend.weights_identity(name, self.weights)
        return timm_backend.weights_identity(name, self.weights)

    def _fingerprint(self) -> dict:
        memo = self.__dict__.setdefault("_rt_fingerprints", {})
        key = (id(self.backbone), str(self.weights), id(self.preprocess) if callable(self.preprocess)
               else self.preprocess, self.precision_)
        if key not in memo:
            memo[key] = {
                "backbone": self._label(),
                "weights": self._weights_identity(),
                "transform": _transform_identity(self._transform_obj()),
                "precision": self.precision_,
            }
        return memo[key]

    # -- fit -----------------------------------------------------------------------------------------
    def _fit_state(self, X, y) -> None:
        from .._torch import resolve_device, resolve_precision

        layers = self._layer_list()
        if not layers:
            raise ValueError("layer=[] selects nothing; give at least one layer.")
        for layer in layers:
            if isinstance(layer, bool) or not isinstance(layer, (Integral, str)):
                raise TypeError(f"layer entries must be ints or strs; got {layer!r}.")
        spec = self._spec()
        device = resolve_device(self.device)
        self.device_ = str(device)
        self.precision_ = resolve_precision(self.precision, device)
        self.backbone_name_ = self._label()
        self.layers_ = [spec.resolve_layer(layer, self._label()) for layer in layers]
        self.fitted_ = True

    def _requests(self) -> list:
        return [(layer, self.pooling) for layer in self.layers_]

    def _resolve_requests(self, layers, poolings) -> list:
        spec = self._spec()
        for p in poolings:
            if p not in IMAGE_POOLINGS:
                raise ValueError(f"pooling={p!r} is not one of {sorted(IMAGE_POOLINGS)}.")
        names = [spec.resolve_layer(layer, self._label()) for layer in layers]
        return [(n, p) for n in names for p in poolings]

    def _feature_prefix(self) -> str:
        return self._source()[1].replace(":", "_")

    # -- loading -------------------------------------------------------------------------------------
    def _transform_obj(self):
        """The preprocessing, resolved without loading weights (timm's data config of a meta model)."""
        if self.preprocess != "auto":
            return self.preprocess
        memo_key = (self._label(), str(self.weights))
        memo = self.__dict__.get("_rt_transform")
        if memo is not None and memo[0] == memo_key:
            return memo[1]
        from ..backends import timm as timm_backend
        from ..backends import torchvision as tv_backend
        from ..backends.checkpoints import looks_like_path

        source, name = self._source()
        if source == "torchvision":
            transform = tv_backend.transform(name, self.weights)
        elif source == "timm":
            tagged = self.weights not in (None, True, "DEFAULT") and not looks_like_path(self.weights)
            full = f"{name.split('.')[0]}.{self.weights}" if tagged else name
            if full not in _TIMM_TRANSFORMS:  # a data config needs no weights: read it off a meta model
                _TIMM_TRANSFORMS[full] = timm_backend.transform(timm_backend.build(full, None, meta=True))
            transform = _TIMM_TRANSFORMS[full]
        elif self._spec().source == "timm":
            transform = timm_backend.transform(self.backbone)
        else:
            transform = _default_transform()
        self._rt_transform = (memo_key, transform)
        return transform

    def _load(self):
        """The loaded backbone (process-wide cache; clones share it)."""
        from .._torch import cached_load, resolve_device

        device = resolve_device(self.device)
        source, name = self._source()
        weights_key = self.weights if not isinstance(self.weights, os.PathLike) else os.fspath(self.weights)
        key = ("image", source, name, weights_key, str(device)) if source != "module" else None
        if key is None:
            memo = self.__dict__.get("_rt_module_backbone")
            if memo is None or memo[0] is not self.backbone or memo[1] != str(device):
                self._rt_module_backbone = (self.backbone, str(device), self._build(device))
            return self._rt_module_backbone[2]
        return cached_load(key, lambda: self._build(device))

    def _build(self, device):
        from ..backends import timm as timm_backend
        from ..backends import torchvision as tv_backend
        from ..backends.checkpoints import looks_like_path
        from ._backbone import Backbone

        source, name = self._source()
        spec = self._spec()
        weights = self.weights
        if weights is not None and looks_like_path(weights):
            weights = os.path.expanduser(os.fspath(weights))
        if source == "torchvision":
            model = tv_backend.build(name, weights)
        elif source == "timm":
            model = timm_backend.build(name, weights)
        else:
            model = self.backbone
        transform = self._transform_obj()
        model = model.to(device)
        if isinstance(self.backbone, str):
            model.eval()
            for p in model.parameters():
                p.requires_grad_(False)
        return Backbone(spec=spec, model=model, transform=transform)

    # -- compute -------------------------------------------------------------------------------------
    def _sample_key(self, index, sample) -> str:
        return _io.content_key(sample, index)

    def _compute(self, samples, requests, indices) -> dict:
        import torch
        from torch.utils.data import DataLoader

        from .._torch import OOMBackoff, autocast
        from ..pooling import pool_output

        backbone = self._load()
        device = torch.device(self.device_)
        transform = self._transform_obj()
        layers = list(dict.fromkeys(layer for layer, _ in requests))
        loader = DataLoader(
            _ImageDataset(samples, indices, transform), batch_size=self.batch_size, shuffle=False,
            num_workers=self.num_workers, pin_memory=device.type == "cuda",
            persistent_workers=False,
        )
        outputs: dict = {r: [] for r in requests}
        backoff = OOMBackoff(self.batch_size, device)
        model = backbone.model
        was_training = model.training
        model.eval()
        batches = loader
        if self.progress:
            from tqdm.auto import tqdm

            batches = tqdm(loader, total=len(loader), unit="batch", desc=self._label())
        try:
            with torch.inference_mode():
                for batch_idx, x in batches:
                    x = x.to(device, non_blocking=True)

                    def run(a, b, x=x):
                        with autocast(device, self.precision_):
                            raw = backbone.forward(x[a:b], layers)
                        for layer, pooling in requests:
                            pooled, _ = pool_output(raw[layer].float(), pooling,
                                                    layout=backbone.spec.layout_of(layer),
                                                    num_prefix_tokens=backbone.spec.num_prefix_tokens)
                            outputs[(layer, pooling)].append(pooled.float().cpu())

                    backoff.run(x.shape[0], run, indices=batch_idx.tolist())
        finally:
            model.train(was_training)
        return {r: torch.cat(outputs[r]).numpy().astype(np.float32, copy=False) for r in requests}

    def _probe_widths(self, requests) -> dict:
        computed = self._compute([_dummy_image()], requests, [0])
        return {r: v.shape[1] for r, v in computed.items()}

    # -- discovery -----------------------------------------------------------------------------------
    def list_layers(self):
        """Every tappable layer with its output shape, as a pandas DataFrame.

        ``index`` is the position an int ``layer`` selects (positive / negative). Built with random
        weights when the featurizer's weights are not local, so it works offline."""
        import pandas as pd
        import torch
        from sklearn.base import clone

        probe = self
        if isinstance(self.backbone, str):
            probe = clone(self).set_params(weights=None, device="cpu", cache=None)
        backbone = probe._load()
        x = probe._transform_obj()(_dummy_image())
        with torch.inference_mode():
            rows = backbone.probe(tuple(x.shape))
        return pd.DataFrame(rows, columns=["name", "index", "shape", "kind"])


def _default_transform():
    """ImageNet preprocessing for a module with no data config: resize 256, center crop 224, normalise."""
    import torch
    from torchvision.transforms import v2

    return v2.Compose([v2.PILToTensor(), v2.Resize(256, antialias=True), v2.CenterCrop(224),
                       v2.ToDtype(torch.float32, scale=True),
                       v2.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])


def _dummy_image():
    from PIL import Image

    return Image.new("RGB", (256, 256), (128, 128, 128))


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
                f"Sample {index} ({_io.describe(sample)}): preprocessing failed: {e}", index=index
            ) from e
        return index, x


def _transform_identity(transform) -> str:
    r = repr(transform)
    if " at 0x" not in r:
        return r
    import joblib

    try:
        return "joblib:" + joblib.hash(transform)
    except Exception:  # noqa: BLE001
        return f"{type(transform).__module__}.{type(transform).__qualname__}"


def _module_hash(module) -> str:
    """Hash of a user module's architecture and every parameter/buffer (so changed weights miss)."""
    import hashlib

    import torch

    h = hashlib.blake2b(digest_size=20)
    h.update(type(module).__qualname__.encode())
    for name, t in module.state_dict().items():
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(str(t.dtype).encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
