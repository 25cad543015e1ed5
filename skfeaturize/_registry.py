"""A torch-free, process-wide registry of loaded objects (word-vector tables, ...).

The same idea as :func:`skfeaturize._torch.cached_load`, without importing torch: clones of a featurizer
in a grid search share one loaded copy, and nothing loaded here is part of a pickle.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable

_REGISTRY: OrderedDict[Hashable, object] = OrderedDict()
_LOCK = threading.RLock()
_KEY_LOCKS: dict[Hashable, threading.Lock] = {}
REGISTRY_SIZE = 4


def cached_load(key: Hashable, loader: Callable[[], object]):
    """Return the object registered under ``key``, calling ``loader()`` once per process to create it.

    Concurrent callers asking for the same key wait for one load instead of loading twice. The
    ``REGISTRY_SIZE`` most recently used objects are kept."""
    with _LOCK:
        if key in _REGISTRY:
            _REGISTRY.move_to_end(key)
            return _REGISTRY[key]
        key_lock = _KEY_LOCKS.setdefault(key, threading.Lock())
    with key_lock:
        with _LOCK:
            if key in _REGISTRY:
                _REGISTRY.move_to_end(key)
                return _REGISTRY[key]
        value = loader()
        with _LOCK:
            _REGISTRY[key] = value
            _REGISTRY.move_to_end(key)
            while len(_REGISTRY) > REGISTRY_SIZE:
                _REGISTRY.popitem(last=False)
            _KEY_LOCKS.pop(key, None)
    return value


def clear_registry() -> None:
    """Forget every loaded object (they are reloaded on next use)."""
    with _LOCK:
        _REGISTRY.clear()


def registry_keys() -> list:
    """Keys currently loaded, least recently used first."""
    with _LOCK:
        return list(_REGISTRY)
