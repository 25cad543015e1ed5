"""Small ``nn.Module`` wrappers that make a loaded model's taps one module (what ONNX export traces)."""

from __future__ import annotations

from torch import nn


class CallLayers(nn.Module):
    """``forward(x) -> {layer: raw output}`` through ``taps.run``; the model is registered as a submodule,
    so an exporter sees its parameters."""

    def __init__(self, taps, layers: tuple[str, ...]):
        super().__init__()
        self.model = taps.model
        self._taps, self._layers = taps, tuple(layers)

    def forward(self, x):
        return self._taps.run(x, self._layers)


class FxLayers(nn.Module):
    """A ``create_feature_extractor`` graph with skfeaturize's layer names (module names stand for their
    last node; ``pre_logits`` is the classifier's input, globally average-pooled when it is a map)."""

    def __init__(self, extractor: nn.Module, layers: tuple[str, ...], node: dict, pre_logits: str):
        super().__init__()
        self.extractor = extractor
        self._layers, self._node, self._pre_logits = tuple(layers), dict(node), pre_logits

    def forward(self, x):
        out = self.extractor(x)
        result = {}
        for name in self._layers:
            t = out[self._node[name]]
            if name == self._pre_logits:
                t = t.mean(dim=(2, 3)) if t.ndim == 4 else t.flatten(1)
            result[name] = t
        return result
