"""Which engine runs a featurizer's forward passes: eager torch, or ONNX Runtime on a verified export.

``engine="onnxruntime"`` exports the backbone cut at the plan's taps, with the pooling inside
(:mod:`skfeaturize.engines`), once per (fingerprint, taps and poolings, input shape policy), into a model
cache folder next to the embedding cache (``<cache>/models``; without a cache,
``$XDG_CACHE_HOME/skfeaturize/models``), reused by every process and clone. ``fit`` resolves the engine:
the export is made (or found) and verified against torch there, so ``engine_`` — part of the cache
identity — is known before any vector is computed. ``"auto"`` is ONNX Runtime on the CPU when it is
installed and the export verifies, else torch. An export that fails or does not verify falls back to
torch with one warning naming the reason; a graph that did not verify is remembered (a ``.rejected`` file
beside the models) so the next fit does not export it again.
"""

from __future__ import annotations

import os

from ._loader import load, loader_key
from ._warnings import warn
from .exceptions import EngineError, MissingDependencyError

ENGINES = ("auto", "torch", "onnxruntime")


def model_cache_dir(cache) -> str:
    """``<cache folder>/models``, or the user cache's ``skfeaturize/models`` without an embedding cache."""
    if cache is not None:
        root = cache.path if hasattr(cache, "path") else os.path.abspath(os.path.expanduser(os.fspath(cache)))
        return os.path.join(root, "models")
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "skfeaturize", "models")


def graph_key(identity: dict, requests, policy) -> str:
    """Hex key of an exported graph: the featurizer's identity, the requests in output order, the inputs."""
    from .cache._keys import fingerprint

    return fingerprint({"identity": {k: v for k, v in identity.items() if k != "engine"},
                        "requests": [list(r) for r in requests], "inputs": policy})


def resolve_engine(engine: str, device, graph, key: str, cache_dir: str, owner: str) -> str:
    """``"torch"`` or ``"onnxruntime"`` for the ``engine`` parameter; exports and verifies when needed."""
    if engine == "torch":
        return "torch"
    if engine == "auto" and getattr(device, "type", str(device)) != "cpu":
        return "torch"
    try:
        runner(graph, key, cache_dir, device)
    except MissingDependencyError:
        if engine == "auto":
            return "torch"
        raise
    except EngineError as e:
        warn(f"{owner}: engine={engine!r} runs on torch for this model: ONNX Runtime cannot serve "
             f"it ({type(e).__name__}: {_reason(e)}).", UserWarning)
        return "torch"
    return "onnxruntime"


def runner(graph, key: str, cache_dir: str, device, int8: bool = False):
    """The process-wide ONNX Runtime runner of one exported graph (clones share the session)."""
    from .engines import onnx_runner
    from .engines._onnx import resolve_threads

    rejected = os.path.join(cache_dir, f"{key}.rejected")
    if os.path.isfile(rejected):
        from .exceptions import EngineMismatchError

        with open(rejected, encoding="utf-8") as fh:
            raise EngineMismatchError(f"rejected before: {fh.read().strip()}")
    threads = resolve_threads(None)  # the user's torch setting, read on each call
    spec = loader_key("onnx-runner", key=key, device=str(device), threads=threads, int8=bool(int8))
    try:
        return load(spec, lambda: onnx_runner(graph, key=key, cache_dir=cache_dir, threads=threads,
                                              device=str(device), int8=int8))
    except EngineError as e:
        if type(e).__name__ == "EngineMismatchError":
            _remember_rejection(rejected, _reason(e))
        raise


def _remember_rejection(path: str, reason: str) -> None:
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(reason + "\n")
    except OSError:  # an unwritable model cache only means the check is repeated next time
        pass


def _reason(e: BaseException) -> str:
    return str(getattr(e, "reason", None) or e).splitlines()[0][:300]
