"""Exceptions raised by skfeaturize.

Every exception subclasses :class:`SkfeaturizeError` *and* the builtin that matches its meaning, so
``except ValueError`` keeps working for code that does not know about skfeaturize.
"""

from __future__ import annotations


class SkfeaturizeError(Exception):
    """Root of every error raised by skfeaturize."""


class LayerNotFoundError(SkfeaturizeError, ValueError):
    """A requested layer does not exist in the backbone."""


class InvalidSampleError(SkfeaturizeError, ValueError):
    """One input sample cannot be featurized; the message names its index and the cause."""

    def __init__(self, message: str, index: int | None = None):
        super().__init__(message)
        self.index = index

    def __reduce__(self):  # survive DataLoader worker re-raising and pickling
        return (type(self), (self.args[0], self.index))


class WeightsNotFoundError(SkfeaturizeError, FileNotFoundError):
    """Pretrained weights are not available locally (and cannot be downloaded)."""


class MissingDependencyError(SkfeaturizeError, ImportError):
    """An optional dependency needed for this feature is not installed."""


class CacheError(SkfeaturizeError, ValueError):
    """The cache cannot be used as asked (bad parameter, bad vectors, unreadable or foreign database)."""


class CacheCorruptionWarning(UserWarning):
    """A cache entry failed its checksum; it was discarded and recomputed."""


class EngineError(SkfeaturizeError, RuntimeError):
    """An inference engine other than eager torch cannot serve this model; the caller falls back to torch."""


class EngineExportError(EngineError):
    """The tap module could not be exported to ONNX; ``reason`` says why (one line per exporter tried)."""

    def __init__(self, message: str, reason: str = ""):
        super().__init__(message)
        self.reason = reason

    def __reduce__(self):
        return (type(self), (self.args[0], self.reason))


class EngineMismatchError(EngineError):
    """The exported graph does not reproduce torch on the probe batch within the engine's tolerance."""

    def __init__(self, message: str, max_abs_diff: float = float("nan"), output: int = -1):
        super().__init__(message)
        self.max_abs_diff = max_abs_diff
        self.output = output

    def __reduce__(self):
        return (type(self), (self.args[0], self.max_abs_diff, self.output))
