"""Pooling: pure functions from a backbone's raw output to one vector per sample.

One closed vocabulary, three kinds of raw output:

============  ===================  ================================================================
kind          shape                pooling names
============  ===================  ================================================================
feature map   ``(N, C, H, W)``     ``avg`` (= ``mean``), ``max``, ``gem``, ``avgmax``, ``flatten``
tokens        ``(N, T, D)``        ``cls``, ``mean`` (= ``avg``; patch tokens only), ``cls+mean``,
                                   ``max`` (patch tokens), ``gem`` (patch tokens), ``flatten``
vector        ``(N, D)``           any name: the output is already one vector per sample
sequence      ``(N, L, D)`` + mask ``mean``, ``cls``, ``max``, ``last`` (text; padding never counts)
============  ===================  ================================================================

``auto`` picks the backbone's own choice: ``avg`` for feature maps, ``cls`` for tokens when the model has
a class token (else ``mean``), and the identity for vectors.
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


def pool_output(x: torch.Tensor, how: str, *, layout: str = "NCHW", num_prefix_tokens: int = 0):
    """Pool any image-backbone output by its shape: feature map, tokens or vector.

    Returns ``(pooled, used)`` where ``used`` is the pooling actually applied (``"none"`` for a vector,
    the resolved name for ``"auto"``).
    """
    if isinstance(x, (tuple, list)):
        x = x[0]
    if x.ndim == 2:
        return x, "none"
    if x.ndim == 4:
        if layout == "NHWC":
            x = x.permute(0, 3, 1, 2)
        how = "avg" if how == "auto" else how
        if how not in FEATURE_MAP_POOLINGS:
            raise ValueError(
                f"pooling={how!r} does not apply to a feature map of shape {tuple(x.shape)}; "
                f"choose one of {FEATURE_MAP_POOLINGS}"
            )
        return pool_feature_map(x, how), how
    if x.ndim == 3:
        if how == "auto":
            how = "cls" if num_prefix_tokens > 0 else "mean"
        if how not in TOKEN_POOLINGS:
            raise ValueError(
                f"pooling={how!r} does not apply to tokens of shape {tuple(x.shape)}; "
                f"choose one of {TOKEN_POOLINGS}"
            )
        return pool_tokens(x, how, num_prefix_tokens), how
    raise ValueError(f"cannot pool an output of shape {tuple(x.shape)}; expected 2, 3 or 4 dims")
