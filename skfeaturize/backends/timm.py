"""timm models: pretrained tags, data configs, taps through ``forward_intermediates``.

The standard list that an int ``layer`` indexes is the model's ``feature_info`` (its stages or blocks), then
``pre_logits``, ``forward_head(features, pre_logits=True)``: the embedding timm itself defines. Standard
layers are tapped with ``forward_intermediates`` (``stop_early`` when nothing later is needed); a ViT's
prefix tokens come back split off (``return_prefix_tokens``) and are put in front of the patch tokens again,
so a block's output is its ``(tokens, dim)`` sequence. Any other module path is tapped with a forward hook
(the fallback), in the same pass.
"""

from __future__ import annotations

import inspect

from .._loader import load, loader_key
from ..cache._keys import file_identity
from ..exceptions import WeightsNotFoundError
from ._base import PRE_LOGITS, ImageBackend, LayerInfo, Taps, evaluating, kind_of
from .checkpoints import checkpoint_path, looks_like_path


def _timm():
    from .._optional import import_optional

    return import_optional("timm")


def has_model(name: str) -> bool:
    return _timm().is_model(name.split(".")[0])


def is_timm_like(module) -> bool:
    """A timm model instance (or one built the same way): ``feature_info`` and ``forward_intermediates``."""
    return all(hasattr(module, a) for a in ("feature_info", "forward_intermediates", "forward_head",
                                            "forward_features"))


def full_name(name: str, weights) -> str:
    """``name`` with the pretrained tag ``weights`` (``"augreg_in21k"``); DEFAULT/True/None keep it."""
    if weights in (None, True, "DEFAULT") or looks_like_path(weights):
        return name
    return f"{name.split('.')[0]}.{weights}"


def build(name: str, weights, *, meta: bool = False):
    """``weights``: None (seeded random init), True/"DEFAULT" (timm's default pretrained tag), a tag such
    as ``"augreg_in21k"``, or a checkpoint file path."""
    import torch

    from .._torch import seeded_init
    from .checkpoints import load_checkpoint

    timm = _timm()
    if meta:
        with torch.device("meta"):
            return timm.create_model(full_name(name, weights), pretrained=False)
    if weights is None or looks_like_path(weights):
        with seeded_init():
            model = timm.create_model(name, pretrained=False)
        if weights is not None:
            load_checkpoint(model, weights)
        return model
    full = full_name(name, weights)
    try:
        return timm.create_model(full, pretrained=True)
    except Exception as e:  # offline, unknown tag
        hub = ""
        try:
            cfg = timm.models.get_pretrained_cfg(full)
            hub = f" (Hugging Face hub id {cfg.hf_hub_id!r})" if cfg and cfg.hf_hub_id else ""
        except Exception:  # noqa: BLE001 - best effort for the message
            pass
        raise WeightsNotFoundError(
            f"Could not obtain timm weights {full!r}{hub}: {type(e).__name__}: {e}. Download them into "
            "the Hugging Face cache (HF_HOME) on a machine with access, or pass weights=<path to a "
            "checkpoint file> (safetensors or a .pth state dict).") from e


def data_transform(model):
    timm = _timm()
    cfg = timm.data.resolve_model_data_config(model)
    return timm.data.create_transform(**cfg, is_training=False)


class TimmBackend(ImageBackend):
    """A timm model by name (``weights``: DEFAULT/True, a tag, None, or a checkpoint), or a timm model
    instance (its own weights)."""

    source = "timm"

    def __init__(self, name: str, weights="DEFAULT", module=None):
        super().__init__(name if module is None else type(module).__name__)
        self.name, self.weights, self.module = name, weights, module

    def identity(self) -> dict:
        timm = _timm()

        def pretrained() -> str:
            full = full_name(self.name, self.weights)
            cfg = timm.models.get_pretrained_cfg(full)
            return f"timm:{full}:{getattr(cfg, 'hf_hub_id', None)}:{getattr(cfg, 'tag', None)}"

        return self.library_identity("timm", timm.__version__.split("+")[0], pretrained)

    def _spec(self) -> dict:
        if self.module is None:
            return {"name": full_name(self.name, self.weights)}
        from .._identity import module_state

        return {"module": self.module, "state": module_state(self.module)}

    def _skeleton(self):
        if self.module is not None:
            return self.module
        name = full_name(self.name, self.weights)
        return load(loader_key("timm-meta", name=name), lambda: build(name, None, meta=True))

    def preprocessing(self):
        return load(loader_key("timm-transform", **self._spec()), lambda: data_transform(self._skeleton()))

    def layers(self, input_shape: tuple) -> list:
        return load(loader_key("timm-layers", shape=input_shape, **self._spec()),
                    lambda: self._layers(input_shape))

    def _layers(self, input_shape):
        import torch

        model = self._skeleton()
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        taps = TimmTaps(model)
        hooked = [n for n, _ in model.named_modules() if n]
        x = torch.zeros((1, *input_shape), device=device)
        with torch.inference_mode(), evaluating(model):
            out = taps.run(x, tuple(taps.standard) + (PRE_LOGITS,), shapes_of=hooked)
        infos = []
        prefix = taps.prefix_tokens
        index = {name: i for i, name in enumerate(taps.standard)}
        for name in dict.fromkeys(taps.standard + hooked):
            if name in out and out[name] is not None:
                shape = tuple(out[name].shape[1:])
                kind = kind_of(shape)
                infos.append(LayerInfo(name, shape, kind, index.get(name), "NCHW",
                                       prefix if kind == "tokens" and name in index else 0))
        infos.append(LayerInfo(PRE_LOGITS, tuple(out[PRE_LOGITS].shape[1:]), "vector", len(taps.standard)))
        return infos

    def load(self, device):
        if self.module is not None:
            key = loader_key("timm-module-taps", device=str(device), **self._spec())
            return load(key, lambda: TimmTaps(self.module.to(device)))
        weights = checkpoint_path(self.weights) if looks_like_path(self.weights) else self.weights
        content = file_identity(weights) if looks_like_path(self.weights) else None  # a file saved again: new
        key = loader_key("timm-weights", name=self.name, weights=weights, content=content, device=str(device))
        return load(key, lambda: TimmTaps(_frozen(build(self.name, weights)).to(device)))


def _frozen(model):
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


class TimmTaps(Taps):
    """Standard layers from ``forward_intermediates``, ``pre_logits`` from ``forward_head``, any other
    module path from a forward hook, all in one pass."""

    def __init__(self, model):
        self.model = model
        self.standard = [f["module"] for f in model.feature_info]
        self.prefix_tokens = int(getattr(model, "num_prefix_tokens", 0) or 0)
        params = inspect.signature(model.forward_intermediates).parameters
        self._split_prefix = self.prefix_tokens > 0 and "return_prefix_tokens" in params

    def run(self, x, layers, shapes_of=()):
        """``shapes_of``: extra module paths whose outputs to capture if they run (for ``layers()``)."""
        std = [self.standard.index(n) for n in layers if n in self.standard]
        hooked = [n for n in dict.fromkeys(list(layers) + list(shapes_of))
                  if n not in self.standard and n != PRE_LOGITS]
        captured, handles = {}, []
        modules = dict(self.model.named_modules())
        for name in hooked:
            handles.append(modules[name].register_forward_hook(_capture(captured, name)))
        try:
            out = self._forward(x, sorted(set(std)), need_final=PRE_LOGITS in layers or bool(hooked),
                                pre_logits=PRE_LOGITS in layers)
            if any(n not in captured for n in hooked):
                self.model.forward_head(out.pop("_final"))  # taps inside the classifier head
        finally:
            for h in handles:
                h.remove()
        out.pop("_final", None)
        missing = [n for n in layers if n not in out and n not in captured]
        if missing:
            raise RuntimeError(f"layers {missing} did not run in forward_intermediates + forward_head.")
        out.update({n: captured[n] for n in captured if n in layers or n in shapes_of})
        return out

    def _forward(self, x, indices, *, need_final: bool, pre_logits: bool) -> dict:
        model, out = self.model, {}
        kwargs = {"return_prefix_tokens": True} if self._split_prefix else {}
        if indices and not need_final:
            inter = model.forward_intermediates(x, indices=indices, stop_early=True, intermediates_only=True,
                                                **kwargs)
            final = None
        elif indices:
            final, inter = model.forward_intermediates(x, indices=indices, intermediates_only=False, **kwargs)
        else:
            final, inter = model.forward_features(x), []
        for i, t in zip(indices, inter, strict=True):
            out[self.standard[i]] = self._tokens(t)
        if pre_logits:
            out[PRE_LOGITS] = model.forward_head(final, pre_logits=True).flatten(1)
        if final is not None:
            out["_final"] = final
        return out

    def _tokens(self, t):
        """A ViT block's ``(patches as NCHW map, prefix tokens)`` back to its ``(N, T, D)`` token sequence."""
        if isinstance(t, (tuple, list)):
            patches, prefix = t
            import torch

            return torch.cat([prefix, patches.flatten(2).transpose(1, 2)], dim=1)
        return t


def _capture(store: dict, name: str):
    def hook(_module, _inputs, output):
        store[name] = output[0] if isinstance(output, (tuple, list)) else output
    return hook
