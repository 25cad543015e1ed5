"""Warnings that point at the user's line: the first frame outside skfeaturize (and scikit-learn, whose
``Pipeline`` and ``set_output`` wrappers call our methods), however deep inside the library they start."""

from __future__ import annotations

import os
import sys
import warnings

_SKIP = tuple(os.path.dirname(os.path.abspath(m.__file__)) + os.sep
              for m in (sys.modules[__name__.rpartition(".")[0]],))


def _skipped(filename: str) -> bool:
    if filename.startswith(_SKIP):
        return True
    sklearn = sys.modules.get("sklearn")
    return sklearn is not None and filename.startswith(os.path.dirname(sklearn.__file__) + os.sep)


def warn(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn`` with the ``stacklevel`` of the first caller outside skfeaturize and scikit-learn."""
    frame, level = sys._getframe(1), 2
    while frame is not None and _skipped(frame.f_code.co_filename):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)
