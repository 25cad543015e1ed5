"""Inference engines other than eager torch, behind narrow interfaces the featurizers call.

* :mod:`skfeaturize.engines.onnx`: a *tap module* (the backbone cut at the requested taps, pooling
  inside) exported once to ONNX, kept in a local model cache, verified against torch, run by ONNX Runtime.
* :mod:`skfeaturize.engines.packed`: BERT-family encoders run on unpadded (packed) token sequences.

Importing this package loads neither torch nor onnxruntime; import the submodule that is needed.
"""
