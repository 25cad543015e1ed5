"""Errors of a bulk job (both engines raise them; the CLI prints each as one line)."""

from __future__ import annotations

from ..exceptions import SkfeaturizeError


class SampleFailedError(SkfeaturizeError, ValueError):
    """An input item could not be featurized (``on_error="raise"``); names the item's id and position."""

    def __init__(self, message: str, id=None, position: int | None = None):
        super().__init__(message)
        self.id, self.position = id, position

    def __reduce__(self):
        return (type(self), (self.args[0], self.id, self.position))


class ResumeMismatchError(SkfeaturizeError, ValueError):
    """``OUT`` holds a job started with other parameters, or its committed items changed since."""


class FitDataRequiredError(SkfeaturizeError, ValueError):
    """The featurizer learns from the data (a fitted pooling), but the job fits it on nothing."""


class OutputWriteError(SkfeaturizeError, OSError):
    """Writing the output failed (disk full, read-only, quota); the manifest is intact."""

    def __init__(self, message: str, errno: int | None = None):
        super().__init__(errno, message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):
        return (type(self), (self.message, self.errno))
