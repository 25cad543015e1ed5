"""torchvision classification models: weights enums, their preprocessing, FX-node taps.

Layers are FX nodes (see :mod:`._fx`); the standard list that an int ``layer`` indexes is the model's stages
(ResNet ``layer1..4``, RegNet ``trunk_output.*``, ViT ``encoder.layers.*``, ``features.*``), then
``pre_logits``, the input of the classifier's final ``Linear`` (after global pooling).

Pretrained weights load through torchvision's own downloader, but always with ``weights_only=True``: a file
planted in ``$TORCH_HOME/hub/checkpoints`` cannot run code.
"""

from __future__ import annotations

import contextlib
import os
import threading

from .._loader import load, loader_key
from ..cache._keys import file_identity
from ..exceptions import WeightsNotFoundError
from ._base import PRE_LOGITS, ImageBackend
from .checkpoints import checkpoint_path, looks_like_path

_SAFE_LOAD_LOCK = threading.Lock()
_SKIP_CHILDREN = {"fc", "classifier", "heads", "head", "dropout", "avgpool", "aux1", "aux2", "AuxLogits"}


def _tv():
    from .._optional import import_optional

    return import_optional("torchvision")


def list_models() -> list[str]:
    tv = _tv()
    return tv.models.list_models(module=tv.models)


def has_model(name: str) -> bool:
    return name in list_models()


def _enum(name: str):
    return _tv().models.get_model_weights(name)


def _weights_member(name: str, weights):
    enum = _enum(name)
    try:
        return enum.DEFAULT if weights == "DEFAULT" else enum[weights]
    except KeyError as e:
        raise ValueError(
            f"weights={weights!r} is not a weights name of torchvision model {name!r}; choose one of "
            f"{['DEFAULT'] + [m.name for m in enum]}, None, or a checkpoint path.") from e


@contextlib.contextmanager
def _weights_only_state_dicts():
    """torchvision's builders call ``weights.get_state_dict(...)``, which reaches ``torch.load`` with
    ``weights_only=False``; inside this context the same call loads with ``weights_only=True``."""
    from torch.hub import load_state_dict_from_url
    from torchvision.models._api import WeightsEnum

    def safe(self, *args, **kwargs):
        kwargs["weights_only"] = True
        return load_state_dict_from_url(self.url, *args, **kwargs)

    with _SAFE_LOAD_LOCK:
        original = WeightsEnum.get_state_dict
        WeightsEnum.get_state_dict = safe
        try:
            yield
        finally:
            WeightsEnum.get_state_dict = original


def build(name: str, weights, *, meta: bool = False):
    """Build ``name``: ``weights`` None (seeded random init), a weights enum name, or a checkpoint path."""
    import torch

    from .._torch import seeded_init
    from .checkpoints import load_checkpoint

    tv = _tv()
    if meta:
        try:
            with torch.device("meta"):
                return tv.models.get_model(name, weights=None)
        except (NotImplementedError, RuntimeError):  # a builder that computes with tensors (RegNet)
            pass
    if weights is None or looks_like_path(weights):
        with seeded_init():
            model = tv.models.get_model(name, weights=None)
        if weights is not None:
            load_checkpoint(model, weights)
        return model
    w = _weights_member(name, weights)
    try:
        with _weights_only_state_dicts():
            return tv.models.get_model(name, weights=w)
    except Exception as e:  # offline, a broken download, or a file that is not a plain state dict
        target = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(w.url))
        if os.path.isfile(target):
            raise WeightsNotFoundError(
                f"Could not obtain torchvision weights {name}.{w.name}: the file at {target!r} is not a "
                f"plain state dict ({_unpickling_cause(e)}); it is read with torch.load(weights_only=True), "
                f"which never runs code from a file. Delete it and download {w.url} again.") from e
        raise WeightsNotFoundError(
            f"Could not obtain torchvision weights {name}.{w.name} ({type(e).__name__}: {e}). Download "
            f"{w.url} and put it at {target!r} (it is read with torch.load(weights_only=True)), or pass "
            "weights=<path to a checkpoint file>.") from e


def _unpickling_cause(e: BaseException) -> str:
    """The line of torch's weights-only error that says what was refused (its advice to retry with
    ``weights_only=False`` is left out: that would run the file's code)."""
    lines = [ln.strip() for ln in str(e).splitlines()]
    refused = [ln.split("error: ", 1)[-1] for ln in lines if "Unsupported global" in ln]
    return refused[0] if refused else f"{type(e).__name__}: {lines[0] if lines else e}"


def default_transform():
    """ImageNet preprocessing for a model without its own: resize 256, center crop 224, normalise."""
    import torch
    from torchvision.transforms import v2

    return v2.Compose([v2.PILToTensor(), v2.Resize(256, antialias=True), v2.CenterCrop(224),
                       v2.ToDtype(torch.float32, scale=True),
                       v2.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])


def stage_names(name: str, model) -> list[str]:
    """Stage/block module names in depth order (what an int ``layer`` indexes, before ``pre_logits``)."""
    mods = dict(model.named_children())
    if all(f"layer{i}" in mods for i in range(1, 5)):  # ResNet family
        return [f"layer{i}" for i in range(1, 5)]
    if "trunk_output" in mods:  # RegNet
        return [f"trunk_output.{n}" for n, _ in model.trunk_output.named_children()]
    if name.startswith("vit_"):
        return [f"encoder.layers.{n}" for n, _ in model.encoder.layers.named_children()]
    if "features" in mods:
        return [f"features.{n}" for n, _ in model.features.named_children()]
    return [n for n in mods if n not in _SKIP_CHILDREN]


class TorchvisionBackend(ImageBackend):
    """A torchvision model by name (``weights``: enum name, None, or a checkpoint file), or a module whose
    class is a torchvision model (its own weights)."""

    source = "torchvision"

    def __init__(self, name: str, weights="DEFAULT", module=None):
        super().__init__(name if module is None else type(module).__name__)
        self.name, self.weights, self.module = name, weights, module

    # -- identity and preprocessing ---------------------------------------------------------------------
    def identity(self) -> dict:
        def pretrained() -> str:
            w = _weights_member(self.name, self.weights)
            return f"torchvision:{w.name}:{w.url}"

        return self.library_identity("torchvision", _tv().__version__.split("+")[0], pretrained)

    def preprocessing(self):
        if self.module is not None:
            return default_transform()
        enum = _enum(self.name)
        w = enum[self.weights] if isinstance(self.weights, str) and self.weights in enum.__members__ \
            else enum.DEFAULT
        return w.transforms()

    # -- layers -----------------------------------------------------------------------------------------
    def _skeleton(self):
        if self.module is not None:
            return self.module
        return load(loader_key("torchvision-meta", name=self.name), lambda: build(self.name, None, meta=True))

    def _graph(self):
        from ._fx import Graph

        return load(loader_key("torchvision-graph", **self._spec()), lambda: Graph(self._skeleton()))

    def _spec(self) -> dict:
        """What identifies the architecture: the name, or the user's module and its tensors' state."""
        if self.module is None:
            return {"name": self.name}
        from .._identity import module_state

        return {"module": self.module, "state": module_state(self.module)}

    def layers(self, input_shape: tuple) -> list:
        key = loader_key("torchvision-layers", shape=input_shape, **self._spec())
        return load(key, lambda: self._layers(input_shape))

    def _layers(self, input_shape):
        from ._fx import layer_infos, probe_shapes

        model, graph = self._skeleton(), self._graph()
        standard = stage_names(self.name, model)
        names = list(dict.fromkeys(standard + graph.layer_names()))
        shapes = probe_shapes(model, graph, names + ([PRE_LOGITS] if graph.pre_logits else []), input_shape)
        return layer_infos(graph, shapes, standard, self._layout_of(model),
                           prefix_tokens=1 if self.name.startswith("vit_") else 0)

    def _layout_of(self, model):
        """Swin's stages emit channels-last maps; its convolutions and norms stay channels-first."""
        from torch import nn

        if not self.name.startswith("swin"):
            return lambda name: "NCHW"
        modules = dict(model.named_modules())
        channels_first = (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, nn.AvgPool2d)
        return lambda name: "NCHW" if isinstance(modules.get(name), channels_first) else "NHWC"

    # -- loading ----------------------------------------------------------------------------------------
    def load(self, device):
        from ._fx import FxTaps

        if self.module is not None:
            key = loader_key("torchvision-module-taps", device=str(device), **self._spec())
            return load(key, lambda: FxTaps(self.module.to(device), self._graph()))
        weights = checkpoint_path(self.weights) if looks_like_path(self.weights) else self.weights
        content = file_identity(weights) if looks_like_path(self.weights) else None  # a file saved again: new
        key = loader_key("torchvision-weights", name=self.name, weights=weights, content=content,
                         device=str(device))
        return load(key, lambda: FxTaps(_frozen(build(self.name, weights)).to(device), self._graph()))


def _frozen(model):
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
