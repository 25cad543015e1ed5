"""Build script for the optional C accelerator; all metadata lives in pyproject.toml.

``skfeaturize.words._speedups`` (the batch token encoder of WordVectorFeaturizer) is optional: when no C
compiler is available the build goes on without it and the pure Python/Arrow encoder is used (same
results, slower; see docs/words.md).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "skfeaturize.words._speedups",
            sources=["skfeaturize/words/_speedups.c"],
            extra_compile_args=["-O3"] if __import__("sys").platform != "win32" else [],
            optional=True,
        )
    ]
)
