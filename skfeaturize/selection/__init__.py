"""Choosing features without training on them: transferability scores (NumPy only, no torch)."""

from ._logme import LogMEResult, logme, logme_details

__all__ = ["LogMEResult", "logme", "logme_details"]
