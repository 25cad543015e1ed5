"""Document features from pretrained word vectors (word2vec, GloVe, fastText)."""

from ._featurizer import OOV_POLICIES, POOLINGS, WordVectorFeaturizer

__all__ = ["WordVectorFeaturizer", "POOLINGS", "OOV_POLICIES"]
