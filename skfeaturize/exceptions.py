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


class TransferabilityError(SkfeaturizeError, ValueError):
    """Features or targets cannot be scored for transferability (LogME): bad shape, values or labels."""
