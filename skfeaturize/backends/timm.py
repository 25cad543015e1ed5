"""timm models: pretrained tags, data configs, ``feature_info`` stage lists and ``forward_head``."""

from __future__ import annotations

from ..exceptions import WeightsNotFoundError


def _timm():
    from .._optional import import_optional

    return import_optional("timm")


def has_model(name: str) -> bool:
    timm = _timm()
    return timm.is_model(name.split(".")[0])


def build(name: str, weights, *, meta: bool = False):
    """``weights``: None (seeded random init), True/"DEFAULT" (timm's default pretrained tag), a tag such
    as ``"augreg_in21k"``, or a checkpoint file path."""
    import torch

    from .._torch import seeded_init
    from .checkpoints import load_checkpoint, looks_like_path

    timm = _timm()
    if meta:
        with torch.device("meta"):
            return timm.create_model(name, pretrained=False)
    if weights is None or looks_like_path(weights):
        with seeded_init():
            model = timm.create_model(name, pretrained=False)
        if weights is not None:
            load_checkpoint(model, weights)
        return model
    full = name if weights in (True, "DEFAULT") else f"{name.split('.')[0]}.{weights}"
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
            "checkpoint file> (safetensors or a .pth state dict)."
        ) from e


def transform(model):
    timm = _timm()
    cfg = timm.data.resolve_model_data_config(model)
    return timm.data.create_transform(**cfg, is_training=False)


def weights_identity(name: str, weights) -> str:
    timm = _timm()
    full = name if weights in (True, "DEFAULT") else f"{name.split('.')[0]}.{weights}"
    cfg = timm.models.get_pretrained_cfg(full)
    hub = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    tag = getattr(cfg, "tag", None) if cfg is not None else None
    return f"timm:{full}:{hub}:{tag}:{timm.__version__.split('.')[0]}"


def feature_layers(model) -> list[str]:
    return [f["module"] for f in getattr(model, "feature_info", [])]


def layout(model) -> str:
    fmt = getattr(model, "output_fmt", "NCHW")
    return fmt if isinstance(fmt, str) else "NCHW"


def num_prefix_tokens(model) -> int:
    return int(getattr(model, "num_prefix_tokens", 0) or 0)
