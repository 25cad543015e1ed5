"""Inference engines other than eager torch, behind narrow interfaces the featurizers call.

* ``onnx_runner`` / ``TapGraph`` / ``OnnxRunner`` (``_onnx``): a *tap module* (the backbone cut at the
  requested taps, pooling inside) exported once to ONNX, kept in a local model cache, verified against
  torch, run by ONNX Runtime.
* ``packed_hidden_states`` / ``PackedStates`` / ``pool_packed`` / ``supports_packing`` (``_packed``):
  BERT-family encoders run on unpadded (packed) token sequences.

Importing this package, or either module, loads neither torch nor onnxruntime: they load on first use.
"""

from __future__ import annotations

import importlib

_NAMES = {
    "onnx_runner": "_onnx", "TapGraph": "_onnx", "OnnxRunner": "_onnx",
    "packed_hidden_states": "_packed", "PackedStates": "_packed", "pool_packed": "_packed",
    "supports_packing": "_packed",
}
__all__ = sorted(_NAMES)


def __getattr__(name):
    if name in _NAMES:
        return getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
