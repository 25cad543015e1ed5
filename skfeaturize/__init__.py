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

    Built from the architecture (an image model name gets ``weights=None``): nothing is downloaded.

    Parameters
    ----------
    backbone : str, torch.nn.Module or featurizer
        An image model name (``"resnet50"``, ``"timm:vit_small_patch16_224"``), a ``torch.nn.Module``, or a
        featurizer (its own backbone and weights; for text models:
        ``list_layers(TextFeaturizer("model-id-or-folder"))``).
    stages_only : bool, default=False
        Keep only the standard list: what an int ``layer`` indexes, ``pre_logits`` (what ``layer=-1``
        means) last.
    **kwargs : dict
        Further :class:`ImageFeaturizer` parameters (``weights``, ``preprocess``) when ``backbone`` is a
        name or a module.

    Returns
    -------
    pandas.DataFrame
        Columns ``name``, ``index``, ``shape`` and ``kind`` (see :meth:`ImageFeaturizer.list_layers`).

    Examples
    --------
    >>> from skfeaturize import list_layers
    >>> print(list_layers("resnet50", stages_only=True).to_string(index=False))
          name  index          shape        kind
        layer1 0 / -5  (256, 56, 56) feature map
        layer2 1 / -4  (512, 28, 28) feature map
        layer3 2 / -3 (1024, 14, 14) feature map
        layer4 3 / -2   (2048, 7, 7) feature map
    pre_logits 4 / -1        (2048,)      vector
    """
    if hasattr(backbone, "list_layers") and hasattr(backbone, "get_params"):
        return backbone.list_layers(stages_only=True) if stages_only else backbone.list_layers()
    from .image import ImageFeaturizer

    kwargs.setdefault("weights", None)
    return ImageFeaturizer(backbone, **kwargs).list_layers(stages_only=stages_only)
