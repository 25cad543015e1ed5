"""Warnings that point at the user's line: the first frame outside skfeaturize and the libraries that call
our methods for the user (scikit-learn's ``Pipeline``, ``set_output`` and search wrappers, joblib's
sequential backend, ``contextlib``), however deep inside the library a warning starts."""

from __future__ import annotations

import os
import sys
import warnings

_PACKAGE = os.path.dirname(os.path.abspath(sys.modules[__name__.rpartition(".")[0]].__file__)) + os.sep
_CALLERS = ("sklearn", "joblib")  # their frames between the user's call and ours


def _skipped(filename: str) -> bool:
    # co_filename keeps the form the module was imported under (a relative sys.path entry gives
    # '/x/../skfeaturize/...'), so normalise before comparing; frozen and importlib frames are skipped too
    if filename.startswith("<frozen"):
        return True
    path = os.path.abspath(filename)
    if path.startswith(_PACKAGE) or path == os.path.abspath(sys.modules["contextlib"].__file__):
        return True
    for name in _CALLERS:
        module = sys.modules.get(name)
        if module is not None and path.startswith(os.path.dirname(os.path.abspath(module.__file__)) + os.sep):
            return True
    return False


def warn(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn`` with the ``stacklevel`` of the first caller outside skfeaturize and its callers."""
    frame, level = sys._getframe(1), 2
    while frame is not None and _skipped(frame.f_code.co_filename):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)
