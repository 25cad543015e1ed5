"""torchvision classification models: weights enums, their preprocessing, and stage lists."""

from __future__ import annotations

import os

from ..exceptions import WeightsNotFoundError


def _tv():
    from .._optional import import_optional

    return import_optional("torchvision")


def list_models() -> list[str]:
    tv = _tv()
    return tv.models.list_models(module=tv.models)


def has_model(name: str) -> bool:
    return name in list_models()


def build(name: str, weights, *, meta: bool = False):
    """Build ``name``; ``weights`` is None (seeded random init), a weights enum name, or a file path."""
    import torch

    from .._torch import seeded_init
    from .checkpoints import load_checkpoint, looks_like_path

    tv = _tv()
    enum = tv.models.get_model_weights(name)
    if meta:
        with torch.device("meta"):
            return tv.models.get_model(name, weights=None)
    if weights is None or looks_like_path(weights):
        with seeded_init():
            model = tv.models.get_model(name, weights=None)
        if weights is not None:
            load_checkpoint(model, weights)
        return model
    try:
        w = enum[weights] if weights != "DEFAULT" else enum.DEFAULT
    except KeyError as e:
        raise ValueError(
            f"weights={weights!r} is not a weights name of torchvision model {name!r}; "
            f"choose one of {['DEFAULT'] + [m.name for m in enum]}, None, or a checkpoint path."
        ) from e
    try:
        return tv.models.get_model(name, weights=w)
    except Exception as e:  # offline, or a broken download
        target = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(w.url))
        raise WeightsNotFoundError(
            f"Could not obtain torchvision weights {name}.{w.name} ({type(e).__name__}: {e}). Download "
            f"{w.url} and put it at {target!r}, or pass weights=<path to a checkpoint file>."
        ) from e


def transform(name: str, weights):
    """The weights' own preprocessing (the DEFAULT weights' for random init or a checkpoint file)."""
    tv = _tv()
    enum = tv.models.get_model_weights(name)
    w = enum.DEFAULT
    if isinstance(weights, str) and weights in enum.__members__:
        w = enum[weights]
    return w.transforms()


def weights_identity(name: str, weights) -> str:
    tv = _tv()
    enum = tv.models.get_model_weights(name)
    if weights == "DEFAULT":
        return f"torchvision:{enum.DEFAULT.name}:{enum.DEFAULT.url}"
    return f"torchvision:{weights}:{enum[weights].url}"


def feature_layers(name: str, model) -> list[str]:
    """Stage/block names in depth order (what an int ``layer`` indexes, before ``pre_logits``)."""
    mods = dict(model.named_children())
    if all(f"layer{i}" in mods for i in range(1, 5)):  # ResNet family
        return [f"layer{i}" for i in range(1, 5)]
    if "trunk_output" in mods:  # RegNet
        return [f"trunk_output.{n}" for n, _ in model.trunk_output.named_children()]
    if name.startswith("vit_"):
        return [f"encoder.layers.{n}" for n, _ in model.encoder.layers.named_children()]
    if "features" in mods:
        return [f"features.{n}" for n, _ in model.features.named_children()]
    skip = {"fc", "classifier", "heads", "head", "dropout", "avgpool", "aux1", "aux2", "AuxLogits"}
    return [n for n in mods if n not in skip]


def layout(name: str) -> str:
    """Swin's stages emit channels-last maps."""
    return "NHWC" if name.startswith("swin") else "NCHW"


def num_prefix_tokens(name: str) -> int:
    return 1 if name.startswith("vit_") else 0
