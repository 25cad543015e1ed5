"""Safe loading of local checkpoint files, with converters for known foreign key layouts."""

from __future__ import annotations

import os
from collections import OrderedDict

from ..exceptions import CheckpointError, WeightsNotFoundError

CHECKPOINT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".ckpt")


def looks_like_path(weights) -> bool:
    if isinstance(weights, os.PathLike):
        return True
    return isinstance(weights, str) and (
        weights.endswith(CHECKPOINT_SUFFIXES) or os.sep in weights or os.path.exists(weights)
    )


def checkpoint_path(weights) -> str:
    """The expanded path of a checkpoint file, which must exist."""
    path = os.path.expanduser(os.fspath(weights))
    if not os.path.isfile(path):
        raise WeightsNotFoundError(f"Checkpoint file not found: {path!r}")
    return path


def read_state_dict(path: str | os.PathLike) -> dict:
    """Read a state dict: safetensors, or ``torch.load(weights_only=True)``, never an unrestricted pickle."""
    import torch

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise WeightsNotFoundError(f"Checkpoint file not found: {path!r}")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path, device="cpu")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # never retry with weights_only=False
        raise CheckpointError(
            f"Could not load {path!r} safely with torch.load(weights_only=True): {e}. skfeaturize does "
            "not unpickle arbitrary objects; re-save the checkpoint as a plain state dict or safetensors."
        ) from e
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path!r} does not hold a state dict (got {type(obj).__name__}).")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _convert_by_order(sd: dict, target: dict, layout: str) -> dict:
    """Map a foreign state dict onto ``target`` key by key in registration order, checking every shape.

    Works when both follow the same module order (true of EfficientNet-PyTorch vs timm's tf_efficientnet
    family); any count or shape mismatch is an error, so a wrong mapping cannot load silently."""
    src, dst = list(sd.items()), list(target.items())
    if len(src) != len(dst):
        raise CheckpointError(
            f"Checkpoint in the {layout} layout has {len(src)} tensors; the architecture has {len(dst)}."
        )
    out = OrderedDict()
    for (sk, sv), (dk, dv) in zip(src, dst, strict=True):
        if tuple(sv.shape) != tuple(dv.shape):
            raise CheckpointError(
                f"Checkpoint tensor {sk!r} {tuple(sv.shape)} does not fit {dk!r} {tuple(dv.shape)} "
                f"when converting from the {layout} layout."
            )
        out[dk] = sv
    return out


def convert_state_dict(sd: dict, model) -> dict:
    """Return ``sd`` in ``model``'s key layout, converting known foreign layouts."""
    target = model.state_dict()
    if set(sd) == set(target):
        return sd
    if "_conv_stem.weight" in sd and "conv_stem.weight" in target:  # lukemelas EfficientNet-PyTorch
        return _convert_by_order(sd, target, "EfficientNet-PyTorch")
    return sd


def load_checkpoint(model, path) -> None:
    """Load a checkpoint file into ``model`` strictly, with a readable error on mismatch."""
    sd = convert_state_dict(read_state_dict(path), model)
    missing, unexpected = [], []
    target = model.state_dict()
    missing = [k for k in target if k not in sd]
    unexpected = [k for k in sd if k not in target]
    if missing or unexpected:
        raise CheckpointError(
            f"Checkpoint {os.fspath(path)!r} does not match the architecture: "
            f"{len(missing)} missing keys (e.g. {missing[:3]}), {len(unexpected)} unexpected keys "
            f"(e.g. {unexpected[:3]}). Pick the backbone the checkpoint was trained with."
        )
    model.load_state_dict(sd, strict=True)
