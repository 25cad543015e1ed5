"""Pooling: pure functions from a backbone's raw output to one vector per sample.

One closed vocabulary, three kinds of raw output:

============  ===================  ================================================================
kind          shape                pooling names
============  ===================  ================================================================
feature map   ``(N, C, H, W)``     ``avg`` (= ``mean``), ``max``, ``gem``, ``avgmax``, ``flatten``
tokens        ``(N, T, D)``        ``cls``, ``mean`` (= ``avg``; patch tokens only), ``cls+mean``,
                                   ``max`` (patch tokens), ``gem`` (patch tokens), ``flatten``
vector        ``(N, D)``           ``none``: the output is already one vector per sample
sequence      ``(N, L, D)`` + mask ``mean``, ``cls``, ``max``, ``last`` (text; padding never counts)
============  ===================  ================================================================

``auto`` picks the backbone's own choice: ``avg`` for feature maps, ``cls`` for tokens when the model has
a class token (else ``mean``); a vector layer's pooling always resolves to ``none``
(:func:`resolve_image_pooling`), so a grid over poolings shares its cache entries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch loads on first pooling call, not on import (constants are torch-free)
    import torch

FEATURE_MAP_POOLINGS = ("avg", "mean", "max", "gem", "avgmax", "flatten")
TOKEN_POOLINGS = ("cls", "mean", "avg", "cls+mean", "max", "gem", "flatten")
SEQUENCE_POOLINGS = ("mean", "cls", "max", "last")
IMAGE_POOLINGS = ("auto",) + tuple(dict.fromkeys(FEATURE_MAP_POOLINGS + TOKEN_POOLINGS))

GEM_P = 3.0
GEM_EPS = 1e-6


def gem(x: torch.Tensor, dims, p: float = GEM_P, eps: float = GEM_EPS) -> torch.Tensor:
    """Generalized mean ``(mean(clamp(x, eps) ** p)) ** (1 / p)`` over ``dims`` (Radenović et al.)."""
    return x.clamp(min=eps).pow(p).mean(dim=dims).pow(1.0 / p)


def pool_feature_map(x: torch.Tensor, how: str) -> torch.Tensor:
    """Pool an ``(N, C, H, W)`` feature map to ``(N, F)``."""
    import torch

    if x.ndim != 4:
        raise ValueError(f"pool_feature_map expects (N, C, H, W), got shape {tuple(x.shape)}")
    if how in ("avg", "mean"):
        return x.mean(dim=(2, 3))
    if how == "max":
        return x.amax(dim=(2, 3))
    if how == "gem":
        return gem(x, (2, 3))
    if how == "avgmax":
        return torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1)
    if how == "flatten":
        return x.flatten(1)
    raise ValueError(
        f"pooling={how!r} does not apply to a feature map; choose one of {FEATURE_MAP_POOLINGS}"
    )


def pool_tokens(x: torch.Tensor, how: str, num_prefix_tokens: int) -> torch.Tensor:
    """Pool ``(N, T, D)`` transformer tokens; prefix tokens (class, registers) never enter ``mean``."""
    import torch

    if x.ndim != 3:
        raise ValueError(f"pool_tokens expects (N, T, D), got shape {tuple(x.shape)}")
    patches = x[:, num_prefix_tokens:]
    if how in ("cls", "cls+mean") and num_prefix_tokens < 1:
        raise ValueError(
            f"pooling={how!r} needs a class token, but this layer's tokens have none; "
            "use pooling='mean' instead"
        )
    if how == "cls":
        return x[:, 0]
    if how in ("mean", "avg"):
        return patches.mean(dim=1)
    if how == "cls+mean":
        return torch.cat([x[:, 0], patches.mean(dim=1)], dim=1)
    if how == "max":
        return patches.amax(dim=1)
    if how == "gem":
        return gem(patches, 1)
    if how == "flatten":
        return x.flatten(1)
    raise ValueError(f"pooling={how!r} does not apply to tokens; choose one of {TOKEN_POOLINGS}")


def pool_sequence(hidden: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    """Pool ``(N, L, D)`` text hidden states under an ``(N, L)`` attention mask.

    Padding never counts: ``mean`` averages real tokens only, ``max`` ignores padded positions, and
    ``last`` takes the last real token whether the batch is padded on the right or on the left.
    """
    import torch

    mask_f = mask.to(hidden.dtype).unsqueeze(-1)
    if how == "mean":
        summed = (hidden * mask_f).sum(dim=1)
        counts = mask_f.sum(dim=1).clamp(min=1e-9)
        return summed / counts
    if how == "cls":
        return hidden[:, 0]
    if how == "max":
        neg = torch.finfo(hidden.dtype).min
        return hidden.masked_fill(mask_f == 0, neg).amax(dim=1)
    if how == "last":
        positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
        last = torch.where(mask.bool(), positions, torch.full_like(positions, -1)).amax(dim=1)
        last = last.clamp(min=0)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    raise ValueError(f"pooling={how!r} does not apply to text; choose one of {SEQUENCE_POOLINGS}")


def resolve_image_pooling(kind: str, pooling: str, prefix_tokens: int, layer: str) -> str:
    """The pooling a request of a layer of ``kind`` really uses: ``auto`` resolved, ``"none"`` for a
    vector (used as it is), and an error when the pooling does not apply to the layer."""
    if kind == "vector":
        return "none"
    if kind == "map":
        how = "avg" if pooling == "auto" else pooling
        allowed = FEATURE_MAP_POOLINGS
    elif kind == "tokens":
        how = ("cls" if prefix_tokens > 0 else "mean") if pooling == "auto" else pooling
        allowed = TOKEN_POOLINGS
        if how in ("cls", "cls+mean") and prefix_tokens < 1:
            raise ValueError(f"pooling={pooling!r} needs a class token, but layer {layer!r} has none; use "
                             "pooling='mean' instead.")
    else:
        raise ValueError(f"Layer {layer!r} gives an output that cannot be pooled (not a feature map, tokens "
                         "or a vector); pick another layer.")
    if how not in allowed:
        what = "feature map" if kind == "map" else kind
        raise ValueError(f"pooling={pooling!r} does not apply to layer {layer!r}, a {what}; choose one of "
                         f"{list(allowed)}.")
    return how


def pooled_width(kind: str, shape: tuple, pooling: str, layout: str = "NCHW") -> int:
    """Features after ``pooling`` (resolved) of one sample's output of ``shape``."""
    if kind == "vector" or pooling == "none":
        return int(shape[0])
    if pooling == "flatten":
        n = 1
        for s in shape:
            n *= int(s)
        return n
    channels = int(shape[-1] if kind == "tokens" or layout == "NHWC" else shape[0])
    return 2 * channels if pooling in ("avgmax", "cls+mean") else channels


def pool_image(x: torch.Tensor, kind: str, pooling: str, *, layout: str = "NCHW",
               prefix_tokens: int = 0) -> torch.Tensor:
    """Pool an image backbone's raw output of a known ``kind`` with a resolved ``pooling``."""
    if kind == "vector" or pooling == "none":
        return x.flatten(1)
    if kind == "map":
        return pool_feature_map(x.permute(0, 3, 1, 2) if layout == "NHWC" else x, pooling)
    return pool_tokens(x, pooling, prefix_tokens)
