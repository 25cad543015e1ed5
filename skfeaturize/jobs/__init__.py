"""Bulk jobs: featurize a folder of images or a table of texts into Parquet, streaming and resumable.

The command line ``skfeaturize embed`` (see :mod:`skfeaturize.cli`) is a thin wrapper over :func:`embed`.
"""

from ..exceptions import FitDataRequiredError, OutputWriteError, ResumeMismatchError, SampleFailedError
from ._embed import EmbedResult, embed, read_embeddings

__all__ = ["embed", "EmbedResult", "FitDataRequiredError", "OutputWriteError", "ResumeMismatchError",
           "SampleFailedError", "read_embeddings"]
