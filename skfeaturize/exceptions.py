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
    """One input sample cannot be featurized; the message names its index and the cause.

    Parameters
    ----------
    message : str
        What is wrong and what to do.
    index : int or None, default=None
        The sample's index in the input (also the ``index`` attribute).
    """

    def __init__(self, message: str, index: int | None = None):
        super().__init__(message)
        self.index = index

    def __reduce__(self):  # survive DataLoader worker re-raising and pickling
        return (type(self), (self.args[0], self.index))


class RefitRequiredError(SkfeaturizeError, ValueError, AttributeError):
    """A parameter that decides the numbers changed after ``fit`` (``set_params`` does not refit, and a
    module's weights edited in place are a changed parameter): call ``fit`` again. Its bases are those of
    scikit-learn's ``NotFittedError`` (not imported here, to keep ``import skfeaturize`` cheap)."""


class UncachedWarning(UserWarning):
    """A featurizer with ``cache=`` cannot cache: part of its parameters (a callable, an object) cannot be
    identified safely, so a cached vector could belong to another computation. It computes without the
    cache."""


class WeightsNotFoundError(SkfeaturizeError, FileNotFoundError):
    """Pretrained weights are not available locally (and cannot be downloaded)."""


class CheckpointError(SkfeaturizeError, ValueError):
    """A checkpoint file cannot be used: not a plain state dict readable with ``weights_only=True``, or not
    matching the architecture."""


class MissingDependencyError(SkfeaturizeError, ImportError):
    """An optional dependency needed for this feature is not installed."""


class CacheError(SkfeaturizeError, ValueError):
    """The cache cannot be used as asked (bad parameter, bad vectors, unreadable or foreign database)."""


class CacheCorruptionWarning(UserWarning):
    """A cache entry failed its checksum; it was discarded and recomputed."""


class CacheWriteWarning(UserWarning):
    """A cache write was skipped (read-only folder, full disk, lock held too long, disk I/O error).

    The computed vectors were still returned; they are only not stored, so they will be computed again.
    Shown once per cache instance and cause.
    """


class CachePermissionWarning(UserWarning):
    """The cache folder or its database is writable by every user, who could plant or change entries."""


class NetworkFilesystemWarning(UserWarning):
    """The cache folder is on a network filesystem, where SQLite's file locking is unreliable."""


class VectorFileError(SkfeaturizeError, ValueError):
    """A word-vector file cannot be used: the message names the file, the line (1-based) or row, and the
    cause (not a text file, a pickle, a row of the wrong width, a value that is not a finite number).

    Parameters
    ----------
    message : str
        What is wrong and what to do.
    path : str or None, default=None
        The file (also the ``path`` attribute).
    line : int or None, default=None
        The 1-based line, or the row for binary files (also the ``line`` attribute).
    """

    def __init__(self, message: str, path: str | None = None, line: int | None = None):
        super().__init__(message)
        self.path = path
        self.line = line

    def __reduce__(self):  # survive pickling (worker processes re-raise it)
        return (type(self), (self.args[0], self.path, self.line))


class TransferabilityError(SkfeaturizeError, ValueError):
    """Features or targets cannot be scored for transferability (LogME): bad shape, values or labels."""


# -- bulk jobs (skfeaturize embed) -----------------------------------------------------------------
class SampleFailedError(SkfeaturizeError, ValueError):
    """An input item could not be featurized (``on_error="raise"``); names the item's id and position.

    Parameters
    ----------
    message : str
        The item, its cause, how many rows are kept and how to resume.
    id : object, default=None
        The item's id (also the ``id`` attribute).
    position : int or None, default=None
        The item's position in the input (also the ``position`` attribute).
    """

    def __init__(self, message: str, id=None, position: int | None = None):
        super().__init__(message)
        self.id, self.position = id, position

    def __reduce__(self):
        return (type(self), (self.args[0], self.id, self.position))


class ResumeMismatchError(SkfeaturizeError, ValueError):
    """``OUT`` holds a job started with other parameters, or its committed items changed since."""


class FitDataRequiredError(SkfeaturizeError, ValueError):
    """``fit(None)`` on a featurizer that learns from the data (a fitted pooling or OOV policy)."""


class OutputWriteError(SkfeaturizeError, OSError):
    """Writing the output failed (disk full, read-only, quota); the manifest is intact.

    Parameters
    ----------
    message : str
        What could not be written, why, and that rerunning the same command resumes.
    errno : int or None, default=None
        The operating system's error number (``errno.ENOSPC``, ...).
    """

    def __init__(self, message: str, errno: int | None = None):
        super().__init__(errno, message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):
        return (type(self), (self.message, self.errno))


class EngineError(SkfeaturizeError, RuntimeError):
    """An inference engine other than eager torch cannot serve this model; the caller falls back to torch."""


class EngineExportError(EngineError):
    """The tap module could not be exported to ONNX; ``reason`` says why (one line per exporter tried).

    Parameters
    ----------
    message : str
        What could not be exported.
    reason : str, default=""
        Why, one line per exporter tried (also the ``reason`` attribute).
    """

    def __init__(self, message: str, reason: str = ""):
        super().__init__(message)
        self.reason = reason

    def __reduce__(self):
        return (type(self), (self.args[0], self.reason))


class EngineMismatchError(EngineError):
    """The exported graph does not reproduce torch on the probe batch within the engine's tolerance.

    Parameters
    ----------
    message : str
        What differed.
    max_abs_diff : float, default=nan
        The largest absolute difference found (also the ``max_abs_diff`` attribute).
    output : int, default=-1
        The output that differed (also the ``output`` attribute).
    """

    def __init__(self, message: str, max_abs_diff: float = float("nan"), output: int = -1):
        super().__init__(message)
        self.max_abs_diff = max_abs_diff
        self.output = output

    def __reduce__(self):
        return (type(self), (self.args[0], self.max_abs_diff, self.output))
