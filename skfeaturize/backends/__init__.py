"""One small adapter per library, behind one interface per modality (see :mod:`._base` for images).

Each adapter imports its library inside functions, so importing skfeaturize stays cheap; featurizers talk
to these adapters, never to the libraries directly. :func:`image_backend` is the one place that decides
which source a ``backbone`` parameter means.
"""

from __future__ import annotations

import difflib
import os


def image_backend(backbone, weights="DEFAULT"):
    """The backend for an ImageFeaturizer's ``backbone``: ``"timm:NAME"``, ``"torchvision:NAME"``, a bare
    name (torchvision first, then timm), or a ``torch.nn.Module`` (timm-like and torchvision models keep
    their libraries' layers; any other module gets FX nodes or hooks)."""
    if isinstance(backbone, str):
        return named_image_backend(*split_name(backbone), weights)
    import sys

    torch = sys.modules.get("torch")
    if torch is None or not isinstance(backbone, torch.nn.Module):
        raise TypeError(f"backbone must be a model name or a torch.nn.Module; got {type(backbone).__name__}.")
    from .timm import TimmBackend, is_timm_like

    if is_timm_like(backbone):
        return TimmBackend(type(backbone).__name__, None, module=backbone)
    if type(backbone).__module__.startswith("torchvision.models"):
        from .torchvision import TorchvisionBackend

        family = {"VisionTransformer": "vit_", "SwinTransformer": "swin_"}.get(type(backbone).__name__, "")
        return TorchvisionBackend(family + type(backbone).__name__.lower(), None, module=backbone)
    from .module import ModuleBackend

    return ModuleBackend(backbone)


def named_image_backend(source: str, name: str, weights):
    """The backend of a named model whose source is known (``split_name``'s answer, or a stored plan's):
    no library is imported and no name is looked up, so a warm-cache ``fit`` stays light."""
    if source == "torchvision":
        from .torchvision import TorchvisionBackend

        return TorchvisionBackend(name, weights)
    from .timm import TimmBackend

    return TimmBackend(name, weights)


def split_name(backbone: str) -> tuple[str, str]:
    """``"timm:name"``/``"torchvision:name"`` → (source, name); a bare name: torchvision first, then timm."""
    from . import timm as timm_backend
    from . import torchvision as tv_backend

    if ":" in backbone and not os.path.exists(os.path.expanduser(backbone)):
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


def _raise_unknown(backbone: str, name: str):
    folder = os.path.expanduser(backbone)
    if os.path.isdir(folder) and os.path.isfile(os.path.join(folder, "config.json")):
        raise ValueError(
            f"backbone={backbone!r} is a Hugging Face model folder (it has config.json), not a torchvision "
            "or timm image model. For a text model use TextFeaturizer (`skfeaturize embed ... --featurizer "
            "text`, "
            "`skfeaturize layers ... --featurizer text`); for a transformers vision model, load it yourself "
            "and pass the torch.nn.Module as backbone.")
    from . import timm as timm_backend
    from . import torchvision as tv_backend

    pool = tv_backend.list_models() + timm_backend._timm().list_models()
    close = list(dict.fromkeys(difflib.get_close_matches(name, pool, n=3, cutoff=0.6)))
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(f"backbone={backbone!r} is neither a torchvision nor a timm model.{hint} "
                     "timm.list_models('*pattern*') lists timm's models.")
