"""The one process-wide cache of loaded things: weights, tokenizers, word-vector tables, meta models and data
configs. Torch-free.

Clones of a featurizer in a grid search share one loaded copy; nothing here is part of a pickle, and nothing
here decides numbers: every entry is a pure function of its key, which :func:`loader_key` builds from the
specification that produced it (source, name, weights identity, device, ...). :func:`clear_loaded` empties it.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping

MAX_HEAVY = 4
"""Entries holding weights kept at once (least recently used dropped first): models, tables, sessions."""
MAX_LIGHT = 256
"""Entries holding only descriptions (meta skeletons, layer tables, configs, probed batch sizes)."""
_HEAVY_SUFFIXES = ("-weights", "-taps", "-runner", "word-vectors")

_ENTRIES: OrderedDict[Hashable, object] = OrderedDict()
_LOCK = threading.RLock()
_KEY_LOCKS: dict[Hashable, threading.Lock] = {}


def _freeze(value) -> Hashable:
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (str, bytes, int, float, bool)) or value is None:
        return value
    return ("id", id(value))  # an object parameter (a user's module): the object itself is the spec


def loader_key(kind: str, **spec) -> tuple:
    """The key of a loaded thing: its ``kind`` ("image-weights", "tokenizer", ...) and its specification."""
    return (kind, _freeze(spec))


def load(key: tuple, build: Callable[[], object]):
    """The entry under ``key``, calling ``build()`` once per process to create it. Concurrent callers asking
    for the same key wait for one build instead of building twice."""
    with _LOCK:
        if key in _ENTRIES:
            _ENTRIES.move_to_end(key)
            return _ENTRIES[key]
        key_lock = _KEY_LOCKS.setdefault(key, threading.Lock())
    with key_lock:
        with _LOCK:
            if key in _ENTRIES:
                _ENTRIES.move_to_end(key)
                return _ENTRIES[key]
        value = build()
        with _LOCK:
            _ENTRIES[key] = value
            _evict()
            _KEY_LOCKS.pop(key, None)
    return value


def peek(key: tuple):
    """The entry under ``key`` if one is loaded, else None (nothing is built)."""
    with _LOCK:
        return _ENTRIES.get(key)


def put(key: tuple, value) -> None:
    """Remember ``value`` under ``key`` (a measured result, such as a probed batch size)."""
    with _LOCK:
        _ENTRIES[key] = value
        _ENTRIES.move_to_end(key)
        _evict()


def is_heavy(key: tuple) -> bool:
    """Whether an entry holds weights (by its kind's name): those are few; descriptions are many."""
    return key[0].endswith(_HEAVY_SUFFIXES)


def _evict() -> None:
    for heavy, limit in ((True, MAX_HEAVY), (False, MAX_LIGHT)):
        keys = [k for k in _ENTRIES if is_heavy(k) == heavy]
        for k in keys[:max(0, len(keys) - limit)]:  # least recently used first
            del _ENTRIES[k]


def loaded_kinds() -> list[str]:
    """The kinds of the entries currently loaded, least recently used first (for tests and diagnostics)."""
    with _LOCK:
        return [k[0] for k in _ENTRIES]


def clear_loaded() -> None:
    """Forget every loaded model, table and configuration (they are reloaded on next use)."""
    with _LOCK:
        _ENTRIES.clear()
