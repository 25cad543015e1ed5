"""skfeaturize: scikit-learn transformers that turn images, texts and words into features with pretrained
networks.

Importing this package is cheap: torch, timm, transformers and gensim load on first use of a featurizer.
"""

from __future__ import annotations

import importlib

from ._loader import clear_loaded
from ._version import __version__
from .exceptions import (
    CacheCorruptionWarning,
    InvalidSampleError,
    LayerNotFoundError,
    MissingDependencyError,
    RefitRequiredError,
    SkfeaturizeError,
    UncachedWarning,
    WeightsNotFoundError,
)

_LAZY = {
    "ImageFeaturizer": "skfeaturize.image",
    "TextFeaturizer": "skfeaturize.text",
    "WordVectorFeaturizer": "skfeaturize.words",
    "EmbeddingCache": "skfeaturize.cache",
    "rank_layers": "skfeaturize.selection",
    "score_blocks": "skfeaturize.selection",
    "plot_layer_scores": "skfeaturize.selection",
}

__all__ = [
    "__version__",
    "ImageFeaturizer",
    "TextFeaturizer",
    "WordVectorFeaturizer",
    "EmbeddingCache",
    "list_layers",
    "rank_layers",
    "score_blocks",
    "plot_layer_scores",
    "clear_loaded",
    "SkfeaturizeError",
    "RefitRequiredError",
    "UncachedWarning",
    "LayerNotFoundError",
    "InvalidSampleError",
    "WeightsNotFoundError",
    "MissingDependencyError",
    "CacheCorruptionWarning",
]


def __getattr__(name: str):  # PEP 562: heavy modules load on first access
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'skfeaturize' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))


def list_layers(backbone, stages_only: bool = False, **kwargs):
    """Every valid layer of a backbone with its output shape, as a pandas DataFrame.

    ``backbone`` is a featurizer (its own backbone and weights), an image model name
    (``"resnet50"``, ``"timm:vit_small_patch16_224"``), or a ``torch.nn.Module``. Keyword arguments go to
    the featurizer. ``stages_only`` keeps the standard list (what an int ``layer`` indexes, ``pre_logits``
    last). Text models: ``list_layers(TextFeaturizer("model-id-or-folder"))``.
    """
    if hasattr(backbone, "list_layers") and hasattr(backbone, "get_params"):
        return backbone.list_layers(stages_only=True) if stages_only else backbone.list_layers()
    from .image import ImageFeaturizer

    kwargs.setdefault("weights", None)
    return ImageFeaturizer(backbone, **kwargs).list_layers(stages_only=stages_only)
