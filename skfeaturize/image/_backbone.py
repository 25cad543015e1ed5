"""A loaded image backbone and how to tap it.

Every layer is a module path of the network (``named_modules``), plus one pseudo-layer, ``pre_logits``:
the input of the classifier (torchvision) or ``forward_head(..., pre_logits=True)`` (timm), i.e. the
standard embedding. Taps are forward hooks, which work the same on torchvision, timm and any
``nn.Module``; once every requested tap has fired, the forward pass stops early, so an early layer costs
only the layers before it.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

import torch
from torch import nn

from ..exceptions import LayerNotFoundError

PRE_LOGITS = "pre_logits"


class _TapsComplete(Exception):
    """Raised inside a hook to end the forward pass once every tap has fired."""


@dataclass
class BackboneSpec:
    """What a backbone is, without its weights: enough to resolve layer names (built on 'meta')."""

    source: str  # "torchvision", "timm" or "module"
    name: str
    feature_layers: list[str]
    module_names: list[str]
    layout: str = "NCHW"
    num_prefix_tokens: int = 0
    classifier: str | None = None
    layer_layouts: dict = field(default_factory=dict)  # per-module override of ``layout``

    def layout_of(self, layer: str) -> str:
        return self.layer_layouts.get(layer, self.layout)

    @property
    def layer_table(self) -> list[str]:
        return self.feature_layers + [PRE_LOGITS]

    def resolve_layer(self, layer, backbone_label: str) -> str:
        """An int indexes ``feature_layers + ['pre_logits']`` (negatives from the end); a str is a name."""
        table = self.layer_table
        if isinstance(layer, bool):
            raise TypeError(f"layer={layer!r} must be an int or a str, not a bool")
        if isinstance(layer, int):
            if -len(table) <= layer < len(table):
                return table[layer]
            raise LayerNotFoundError(
                f"layer={layer!r} is out of range for {backbone_label!r}, which has {len(table)} "
                f"feature layers (valid: {-len(table)} to {len(table) - 1}: {table}). "
                f"skfeaturize.list_layers({backbone_label!r}) lists all layers."
            )
        if layer == PRE_LOGITS or layer in self.module_names:
            return layer
        close = difflib.get_close_matches(str(layer), self.module_names + [PRE_LOGITS], n=3, cutoff=0.6)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise LayerNotFoundError(
            f"Layer {layer!r} not found in {backbone_label!r}.{hint} "
            f"skfeaturize.list_layers({backbone_label!r}) lists all layers."
        )


def layer_layouts(model: nn.Module, default: str) -> dict:
    """Modules whose 4-D output layout differs from the model's: convolutions and 2-D norms are NCHW;
    modules that declare ``output_fmt`` (timm's patch embeddings) are what they declare."""
    out = {}
    for name, mod in model.named_modules():
        fmt = getattr(mod, "output_fmt", None)
        fmt = getattr(fmt, "value", fmt)
        if isinstance(fmt, str) and fmt in ("NCHW", "NHWC"):
            layout = fmt
        elif isinstance(mod, (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, nn.AvgPool2d)):
            layout = "NCHW"
        else:
            continue
        if name and layout != default:
            out[name] = layout
    return out


def classifier_name(model: nn.Module) -> str | None:
    """The final classifier: timm's ``get_classifier``, else the last ``nn.Linear`` registered."""
    last = None
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Linear):
            last = name
    return last


@dataclass
class Backbone:
    spec: BackboneSpec
    model: nn.Module
    transform: object
    input_size: tuple = (3, 224, 224)
    _call_counts: dict = field(default_factory=dict)

    # -- forward with taps ------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, layers: list[str]) -> dict[str, torch.Tensor]:
        """Run the network on ``x`` and return ``{layer: raw output}`` for each requested layer."""
        if not self._call_counts:
            self._call_counts = self._count_calls(x[:1])
        wanted = [name for name in dict.fromkeys(layers) if name != PRE_LOGITS]
        need_pre_logits = PRE_LOGITS in layers
        captured: dict[str, torch.Tensor] = {}
        pending = set(wanted)
        timm_head = self.spec.source == "timm" and hasattr(self.model, "forward_head")
        if need_pre_logits:
            # timm: the head runs after forward_features, so a feature tap must not end the pass early
            pending.add(PRE_LOGITS if not timm_head else "<head>")
        seen: dict[str, int] = {}
        handles = []
        modules = dict(self.model.named_modules())
        muted = [False]

        def make_hook(name):
            expected = self._call_counts.get(name, 1)

            def hook(_module, _inputs, output):
                if muted[0]:
                    return
                seen[name] = seen.get(name, 0) + 1
                if seen[name] == expected:  # a reused module: keep its last call
                    captured[name] = output[0] if isinstance(output, (tuple, list)) else output
                    pending.discard(name)
                    if not pending:
                        raise _TapsComplete

            return hook

        def pre_logits_hook(_module, inputs):
            captured[PRE_LOGITS] = inputs[0].flatten(1)
            pending.discard(PRE_LOGITS)
            if not pending:
                raise _TapsComplete

        try:
            for name in wanted:
                handles.append(modules[name].register_forward_hook(make_hook(name)))
            if need_pre_logits and not timm_head:
                if self.spec.classifier is None:
                    pending.discard(PRE_LOGITS)
                else:
                    handles.append(
                        modules[self.spec.classifier].register_forward_pre_hook(pre_logits_hook)
                    )
            try:
                if timm_head:
                    feats = self.model.forward_features(x)
                    if need_pre_logits:
                        muted[0] = True  # the head's modules fire again below if they are tapped
                        captured[PRE_LOGITS] = self.model.forward_head(feats, pre_logits=True)
                        muted[0] = False
                    if pending - {"<head>"}:  # taps inside the head (global_pool, classifier, ...)
                        self.model.forward_head(feats)
                else:
                    out = self.model(x)
                    if need_pre_logits and PRE_LOGITS not in captured:  # no classifier: the output
                        captured[PRE_LOGITS] = out.flatten(1)
            except _TapsComplete:
                pass
        finally:
            for h in handles:
                h.remove()
        return captured

    def _count_calls(self, x: torch.Tensor) -> dict[str, int]:
        counts: dict[str, int] = {}
        handles = []
        for name, mod in self.model.named_modules():
            if name:
                handles.append(mod.register_forward_hook(
                    lambda _m, _i, _o, name=name: counts.__setitem__(name, counts.get(name, 0) + 1)))
        try:
            self.model(x)
        finally:
            for h in handles:
                h.remove()
        return counts

    def probe(self, input_size=None) -> list[dict]:
        """Every tappable layer with its output shape for one image of ``input_size`` (C, H, W)."""
        c, h, w = input_size or self.input_size
        device = next(self.model.parameters()).device
        x = torch.zeros(1, c, h, w, device=device)
        shapes: dict[str, tuple] = {}
        handles = []
        for name, mod in self.model.named_modules():
            if not name:
                continue

            def hook(_m, _i, out, name=name):
                out = out[0] if isinstance(out, (tuple, list)) else out
                if isinstance(out, torch.Tensor):
                    shapes[name] = tuple(out.shape[1:])

            handles.append(mod.register_forward_hook(hook))
        try:
            with torch.inference_mode():
                pre = self.forward(x, [PRE_LOGITS])[PRE_LOGITS]
        finally:
            for h in handles:
                h.remove()
        feature_index = {n: i for i, n in enumerate(self.spec.layer_table)}
        n_table = len(self.spec.layer_table)
        rows = []
        for name in self.spec.module_names:
            if name in shapes:
                rows.append({"name": name, "index": feature_index.get(name), "shape": shapes[name],
                             "kind": _kind(shapes[name])})
        rows.append({"name": PRE_LOGITS, "index": n_table - 1, "shape": tuple(pre.shape[1:]),
                     "kind": "vector"})
        for row in rows:
            i = row["index"]
            row["index"] = "" if i is None else f"{i} / {i - n_table}"
        return rows


def _kind(shape: tuple) -> str:
    return {1: "vector", 2: "tokens", 3: "feature map"}.get(len(shape), "other")
