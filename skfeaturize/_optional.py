"""Import optional dependencies at first use, with an actionable message when they are missing."""

from __future__ import annotations

import importlib
from types import ModuleType

from .exceptions import MissingDependencyError

_EXTRA_OF = {
    "torch": "image] (images) or 'skfeaturize[text",
    "torchvision": "image",
    "timm": "image",
    "PIL": "image",
    "transformers": "text",
    "sentence_transformers": "text",
    "tokenizers": "text",
    "gensim": "words",
    "scipy": "words",
    "ray": "ray",
    "onnxruntime": "onnx",
    "onnx": "onnx",
    "onnxscript": "onnx",
    "pyarrow": "all",
}


def import_optional(name: str, extra: str | None = None) -> ModuleType:
    """Import ``name`` or raise :class:`MissingDependencyError` naming the extra that provides it."""
    try:
        return importlib.import_module(name)
    except ImportError as e:
        top = name.split(".")[0]
        extra = extra or _EXTRA_OF.get(top, "all")
        raise MissingDependencyError(
            f"{top!r} is required for this feature but could not be imported ({e}). "
            f"Install it with: pip install 'skfeaturize[{extra}]'"
        ) from e
