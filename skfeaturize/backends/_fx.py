"""Layers of a traceable module from torch.fx, via torchvision's feature-extraction tools.

Layer names are FX node names (``get_graph_node_names``): module paths for module calls, a suffix for a
module called again (``layer1.0.relu_1`` is the second call of ``layer1.0.relu``), and functional nodes such
as ``layer1.0.add``; a module path (``layer1``) stands for that module's last node, as in
``create_feature_extractor``. Taps come from ``create_feature_extractor``, which prunes everything the taps do
not need, so an early layer costs only the layers before it.

``pre_logits`` is found in the traced graph, not guessed: walking back from the output through shape-only and
element-wise steps (flatten, reshape, dropout, activation, global pooling) to the classifier, the first
``Linear`` (or 1×1 ``Conv2d``, SqueezeNet's classifier); its input, globally average-pooled when it is a
feature map, is the embedding. A graph that does not end that way has no ``pre_logits``.
"""

from __future__ import annotations

import torch
from torch import fx, nn

from ._base import PRE_LOGITS, LayerInfo, Taps, kind_of

_PASS_MODULES = (nn.Dropout, nn.Flatten, nn.Identity, nn.ReLU, nn.GELU, nn.Hardswish, nn.SiLU, nn.Tanh,
                 nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Softmax, nn.LogSoftmax)
_PASS_FUNCTIONS = {"flatten", "reshape", "view", "squeeze", "relu", "dropout", "adaptive_avg_pool2d",
                   "contiguous", "softmax", "log_softmax"}


class Graph:
    """The traced eval graph of a module: node names in execution order, and the pre-logits node."""

    def __init__(self, model: nn.Module):
        from torchvision.models.feature_extraction import NodePathTracer, _set_default_tracer_kwargs

        was_training = model.training
        model.eval()
        try:
            tracer = NodePathTracer(**_set_default_tracer_kwargs(None))
            graph = tracer.trace(model)
        finally:
            model.train(was_training)
        self.names = [tracer.node_to_qualname[n] for n in graph.nodes if n in tracer.node_to_qualname]
        self._index = set(self.names)
        self.modules = self._module_names(model)
        self.pre_logits, self.pre_logits_pooled = self._find_pre_logits(model, graph, tracer.node_to_qualname)

    def _module_names(self, model) -> list[str]:
        """Module paths that are not nodes themselves (``layer1``, ``layer1.0``): each stands for its last
        node; listed after that node, inner modules first."""
        last = {}
        for name, _ in model.named_modules():
            if name and name not in self._index:
                node = self.node_of(name)
                if node is not None:
                    last.setdefault(node, []).append(name)
        ordered = []
        for node in self.names:
            ordered.extend(sorted(last.get(node, []), key=lambda m: -m.count(".")))
        return ordered

    def layer_names(self) -> list[str]:
        """Every name a layer can have: nodes in execution order, each followed by the modules it ends."""
        ends = {}
        for m in self.modules:
            ends.setdefault(self.node_of(m), []).append(m)
        out = []
        for node in self.names:
            if node != "x":
                out.append(node)
                out.extend(ends.get(node, []))
        return out

    def node_of(self, name: str) -> str | None:
        """The FX node a layer name stands for: itself, a module's last node, or the pre-logits node."""
        if name == PRE_LOGITS:
            return self.pre_logits
        if name in self._index:
            return name
        inside = [n for n in self.names if n.startswith(name + ".")]
        return inside[-1] if inside else None

    @staticmethod
    def _find_pre_logits(model, graph, qualname) -> tuple[str | None, bool]:
        outputs = [n for n in graph.nodes if n.op == "output"]
        node = outputs[0].args[0] if outputs else None
        while isinstance(node, fx.Node):
            inputs = [a for a in node.args if isinstance(a, fx.Node)]
            if node.op == "call_module":
                mod = model.get_submodule(node.target)
                if isinstance(mod, nn.Linear) or (isinstance(mod, nn.Conv2d) and mod.kernel_size == (1, 1)):
                    source = inputs[0] if inputs else None
                    return (qualname.get(source), isinstance(mod, nn.Conv2d)) if source in qualname \
                        else (None, False)
                if not isinstance(mod, _PASS_MODULES):
                    return None, False
            elif node.op in ("call_function", "call_method"):
                if getattr(node.target, "__name__", node.target) not in _PASS_FUNCTIONS:
                    return None, False
            else:
                return None, False
            if len(inputs) != 1:
                return None, False
            node = inputs[0]
        return None, False


def extractor(model: nn.Module, nodes: tuple[str, ...]):
    from torchvision.models.feature_extraction import create_feature_extractor

    return create_feature_extractor(model, return_nodes=list(nodes), suppress_diff_warning=True).eval()


def probe_shapes(model: nn.Module, graph: Graph, names: list[str], input_shape: tuple) -> dict:
    """Per-sample output shape of each layer name for one input of ``input_shape`` (a tuple output: None)."""
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    x = torch.zeros((1, *input_shape), device=device)
    nodes = {name: graph.node_of(name) for name in names}
    with torch.inference_mode():
        out = extractor(model, tuple(dict.fromkeys(n for n in nodes.values() if n)))(x)
    return {name: tuple(out[n].shape[1:]) if n and isinstance(out[n], torch.Tensor) else None
            for name, n in nodes.items()}


def layer_infos(graph: Graph, shapes: dict, standard: list[str], layout_of, prefix_tokens: int) -> list:
    """LayerInfo for every probed name (in ``shapes``' order), ``pre_logits`` last."""
    index = {name: i for i, name in enumerate(standard)}
    infos = []
    for name in shapes:
        shape = shapes[name]
        if shape is None or name == PRE_LOGITS:
            continue
        kind = kind_of(shape)
        infos.append(LayerInfo(name, shape, kind, index.get(name), layout_of(name),
                               prefix_tokens if kind == "tokens" else 0))
    if shapes.get(PRE_LOGITS) is not None:
        shape = shapes[PRE_LOGITS]
        width = shape[0] if graph.pre_logits_pooled or len(shape) == 3 else int(torch.Size(shape).numel())
        infos.append(LayerInfo(PRE_LOGITS, (int(width),), "vector", len(standard)))
    return infos


class FxTaps(Taps):
    """Runs a model to FX nodes with ``create_feature_extractor`` (one extractor per set of taps)."""

    def __init__(self, model: nn.Module, graph: Graph):
        self.model, self.graph = model, graph
        self._modules: dict[tuple, nn.Module] = {}  # compiled artefacts of this loaded model only

    def module(self, layers) -> nn.Module:
        from ._modules import FxLayers

        layers = tuple(layers)
        if layers not in self._modules:
            node = {name: self.graph.node_of(name) for name in layers}
            self._modules[layers] = FxLayers(extractor(self.model, tuple(dict.fromkeys(node.values()))),
                                             layers, node, PRE_LOGITS)
        return self._modules[layers]

    def run(self, x, layers):
        return self.module(layers)(x)
