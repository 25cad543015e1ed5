"""Any ``torch.nn.Module`` that is neither a torchvision nor a timm model: FX nodes when it traces, forward
hooks on its module paths when it does not (the fallback).

Such a module defines no standard list of feature layers and no pre-logits embedding, so an int ``layer``
(``-1`` included) is an error that says so; layers are named (``list_layers(module)`` shows them), and
``"output"`` is the module's own output.
"""

from __future__ import annotations

from .._loader import load, loader_key
from ._base import PRE_LOGITS, ImageBackend, LayerInfo, Taps, evaluating, kind_of

OUTPUT = "output"


class ModuleBackend(ImageBackend):
    source = "module"

    def __init__(self, module):
        super().__init__(type(module).__name__)
        self.module = module

    def identity(self) -> dict:
        from .._identity import module_digest

        return {"backbone": f"module:{type(self.module).__module__}.{type(self.module).__qualname__}",
                "weights": "module:" + module_digest(self.module)}

    def preprocessing(self):
        from .torchvision import default_transform

        return default_transform()

    def _spec(self) -> dict:
        from .._identity import module_state

        return {"module": self.module, "state": module_state(self.module)}

    def _graph(self):
        """The FX graph, or None when the module does not trace (then: hooks)."""
        from ._fx import Graph

        def trace():
            try:
                return Graph(self.module)
            except Exception:  # noqa: BLE001 - any tracing failure means: use forward hooks
                return None

        return load(loader_key("module-graph", **self._spec()), trace)

    def layers(self, input_shape: tuple) -> list:
        return load(loader_key("module-layers", shape=input_shape, **self._spec()),
                    lambda: self._layers(input_shape))

    def _layers(self, input_shape):
        import torch

        taps = self._taps(self.module)
        names = taps.names()
        device = next((p.device for p in self.module.parameters()), torch.device("cpu"))
        with torch.inference_mode(), evaluating(self.module):
            out = taps.run(torch.zeros((1, *input_shape), device=device), tuple(names), probing=True)
        infos = []
        for name in names:
            t = out.get(name)
            if isinstance(t, torch.Tensor):
                infos.append(LayerInfo(name, tuple(t.shape[1:]), kind_of(tuple(t.shape[1:]))))
        return infos

    def _taps(self, model):
        graph = self._graph()
        return _FxModuleTaps(model, graph) if graph is not None else HookTaps(model)

    def load(self, device):
        return load(loader_key("module-taps", device=str(device), **self._spec()),
                    lambda: self._taps(self.module.to(device)))

    def _no_standard_list(self, layer) -> str:
        return (f"layer={layer!r}: a user module ({self.label}) has no standard list of feature layers, and "
                "skfeaturize does not guess which of its layers is the embedding (for layer=-1 that would be "
                f"the pre-logits). Name a layer, e.g. layer='{OUTPUT}' for the module's own output; "
                "skfeaturize.list_layers(module) lists every layer with its shape.")

    def _no_pre_logits(self) -> str:
        return self._no_standard_list(PRE_LOGITS)


class _FxModuleTaps(Taps):
    """FX taps plus the module's own output."""

    def __init__(self, model, graph):
        from ._fx import FxTaps

        self.model, self._fx = model, FxTaps(model, graph)

    def names(self) -> list[str]:
        return self._fx.graph.layer_names() + [OUTPUT]

    def run(self, x, layers, probing=False):
        inner = tuple(n for n in layers if n != OUTPUT)
        out = self._fx.run(x, inner) if inner else {}
        if OUTPUT in layers:
            out[OUTPUT] = self.model(x)
        return out


class HookTaps(Taps):
    """Forward hooks on module paths; a module called several times gives its last call."""

    def __init__(self, model):
        self.model = model

    def names(self) -> list[str]:
        return [n for n, _ in self.model.named_modules() if n] + [OUTPUT]

    def run(self, x, layers, probing=False):
        modules = dict(self.model.named_modules())
        captured, handles = {}, []
        for name in layers:
            if name != OUTPUT:
                handles.append(modules[name].register_forward_hook(_last_call(captured, name)))
        try:
            output = self.model(x)
        finally:
            for h in handles:
                h.remove()
        if OUTPUT in layers:
            captured[OUTPUT] = output
        missing = [n for n in layers if n not in captured]
        if missing and not probing:
            raise RuntimeError(f"layers {missing} of {type(self.model).__name__} did not run in forward().")
        return captured


def _last_call(store: dict, name: str):
    def hook(_module, _inputs, output):
        store[name] = output[0] if isinstance(output, (tuple, list)) else output
    return hook
