"""Choosing features without training on them: transferability scores and layer ranking.

``logme`` and ``score_blocks`` are NumPy only; ``rank_layers`` and ``feature_blocks`` run a featurizer
(torch loads with it, on first use); ``plot_layer_scores`` needs matplotlib.
"""

from ._logme import LogMEResult, logme, logme_details
from ._plot import plot_layer_scores
from ._rank import check_target, feature_blocks, rank_layers, score_blocks, standard_layers

__all__ = ["LogMEResult", "logme", "logme_details", "rank_layers", "score_blocks", "feature_blocks",
           "standard_layers", "check_target", "plot_layer_scores"]
