"""Bulk jobs: featurize a folder of images or a table of texts into Parquet, streaming and resumable.

The command line ``skfeaturize embed`` (see :mod:`skfeaturize.cli`) is a thin wrapper over :func:`embed`.
"""

from ._embed import EmbedResult, ResumeMismatchError, SampleFailedError, embed, read_embeddings

__all__ = ["embed", "EmbedResult", "ResumeMismatchError", "SampleFailedError", "read_embeddings"]
