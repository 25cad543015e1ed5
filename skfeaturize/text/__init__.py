"""Text features from BERT-family encoders and sentence-transformers models."""

from ._featurizer import TextFeaturizer

__all__ = ["TextFeaturizer"]
