"""The embedding cache: content-addressed keys (:mod:`._keys`) and the store (:class:`EmbeddingCache`).

Importing this package loads only the standard library and NumPy (no torch).
"""

from ..exceptions import CacheCorruptionWarning, CachePermissionWarning, CacheWriteWarning
from ._store import CacheError, EmbeddingCache, NetworkFilesystemWarning, network_filesystem, resolve_cache

__all__ = [
    "CacheCorruptionWarning",
    "CacheError",
    "CachePermissionWarning",
    "CacheWriteWarning",
    "EmbeddingCache",
    "NetworkFilesystemWarning",
    "network_filesystem",
    "resolve_cache",
]
