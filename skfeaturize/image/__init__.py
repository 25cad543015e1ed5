"""Image featurizer."""

from ._featurizer import ImageFeaturizer

__all__ = ["ImageFeaturizer"]
