"""The one interface every image backbone source implements, and what it says about its layers.

A backend is chosen once, in ``fit``, from the ``backbone`` parameter
(:func:`skfeaturize.backends.image_backend`) and kept as the fitted ``backend_``; it holds a specification
(names, weights, a user's module), never loaded weights, so it pickles small. Its methods:

``identity()``
    What the weights and the architecture are, JSON-able (part of every cache namespace).
``preprocessing()``
    The default preprocessing (the weights' own), a callable PIL image → ``(3, H, W)`` tensor.
``layers(input_shape)``
    Every tappable layer with its output shape, kind and, for the *standard list* that an int ``layer``
    indexes, its position; ``pre_logits`` (the model's own embedding) last when the library defines one.
``load(device)``
    The loaded model as :class:`Taps`, from the process-wide loader cache.

A new source (say, a Keras or JAX image model) is a new module in this folder with one subclass of
:class:`ImageBackend`, and one line in :func:`skfeaturize.backends.image_backend`.
"""

from __future__ import annotations

import difflib
from abc import ABC, abstractmethod
from dataclasses import dataclass

from ..exceptions import LayerNotFoundError

PRE_LOGITS = "pre_logits"


@dataclass(frozen=True)
class LayerInfo:
    """One tappable layer: name, per-sample output shape, kind, and its place in the standard list."""

    name: str
    shape: tuple
    kind: str  # "map" (C, H, W), "tokens" (T, D), "vector" (D,), "other"
    index: int | None = None  # position in the standard list, None for the others
    layout: str = "NCHW"  # maps: channels first, or "NHWC" (Swin)
    prefix_tokens: int = 0  # tokens: class/register tokens before the patches

    @property
    def width(self) -> int | None:
        """Features of the pooled output for a vector; None for maps/tokens (depends on the pooling)."""
        return int(self.shape[0]) if self.kind == "vector" else None


class evaluating:  # noqa: N801 - used as a context manager
    """``model.eval()`` for the duration, the model's own mode restored after (a user's module)."""

    def __init__(self, model):
        self.model, self.was_training = model, model.training

    def __enter__(self):
        self.model.eval()
        return self.model

    def __exit__(self, *exc):
        self.model.train(self.was_training)


def kind_of(shape: tuple) -> str:
    return {1: "vector", 2: "tokens", 3: "map"}.get(len(shape), "other")


class Taps(ABC):
    """A loaded model that runs a batch to a set of named layers."""

    model: object

    @abstractmethod
    def run(self, x, layers: tuple[str, ...]) -> dict:
        """``{layer: raw output tensor}`` for a preprocessed batch ``x`` (stopping as early as it can)."""

    def module(self, layers: tuple[str, ...]):
        """The same as one ``nn.Module`` (``forward(x) -> {layer: tensor}``), for an exporter to trace."""
        from ._modules import CallLayers

        return CallLayers(self, layers)


class ImageBackend(ABC):
    source: str = "?"

    def __init__(self, label: str):
        self.label = label

    @abstractmethod
    def identity(self) -> dict: ...

    @abstractmethod
    def preprocessing(self): ...

    @abstractmethod
    def layers(self, input_shape: tuple) -> list[LayerInfo]: ...

    @abstractmethod
    def load(self, device) -> Taps: ...

    def library_identity(self, library: str, version: str, pretrained) -> dict:
        """The identity of a library model (``self.name``/``self.weights``) or of a module instance of one
        (``self.module``): random init, a checkpoint file's content, the library's pretrained weights
        (``pretrained()``, called only for those), or the module's current tensors."""
        from .._identity import module_digest
        from ..cache._keys import file_identity
        from .checkpoints import checkpoint_path, looks_like_path

        if getattr(self, "module", None) is not None:
            return {"backbone": f"{library}-module:{type(self.module).__qualname__}",
                    "weights": "module:" + module_digest(self.module), library: version}
        if self.weights is None:
            weights = "random-init:seed0"
        elif looks_like_path(self.weights):
            weights = "file:" + file_identity(checkpoint_path(self.weights))
        else:
            weights = pretrained()
        return {"backbone": f"{library}:{self.name}", "weights": weights, library: version}

    def standard(self, input_shape: tuple) -> list[LayerInfo]:
        return sorted((li for li in self.layers(input_shape) if li.index is not None),
                      key=lambda li: li.index)

    def resolve(self, layer, input_shape: tuple) -> LayerInfo:
        """An int indexes the standard list (negatives from the end); a str is any layer's name."""
        if isinstance(layer, bool) or not isinstance(layer, (int, str)):
            raise TypeError(f"layer={layer!r} must be an int or a str (a list concatenates several).")
        hint = f"skfeaturize.list_layers({self.label!r}) lists all layers."
        if isinstance(layer, int):
            table = self.standard(input_shape)
            if not table:
                raise LayerNotFoundError(self._no_standard_list(layer))
            if -len(table) <= layer < len(table):
                return table[layer]
            names = [li.name for li in table]
            raise LayerNotFoundError(
                f"layer={layer!r} is out of range for {self.label!r}, which has {len(table)} standard layers "
                f"(valid: {-len(table)} to {len(table) - 1}: {names}). {hint}")
        by_name = {li.name: li for li in self.layers(input_shape)}
        if layer in by_name:
            return by_name[layer]
        if layer == PRE_LOGITS:
            raise LayerNotFoundError(self._no_pre_logits())
        close = list(dict.fromkeys(difflib.get_close_matches(layer, list(by_name), n=3, cutoff=0.6)))
        did = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise LayerNotFoundError(f"Layer {layer!r} not found in {self.label!r}.{did} {hint}")

    def _no_standard_list(self, layer) -> str:
        return (f"layer={layer!r}: {self.label!r} has no standard list of feature layers for an int to "
                "index. Name a layer instead; skfeaturize.list_layers(...) lists them.")

    def _no_pre_logits(self) -> str:
        return (f"{self.label!r} defines no pre-logits embedding (layer=-1 / 'pre_logits'). Name the layer "
                "to use; skfeaturize.list_layers(...) lists them with their shapes.")
