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

MAX_ENTRIES = 8
"""Entries kept (least recently used dropped first): a few models and their meta skeletons."""

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
            while len(_ENTRIES) > MAX_ENTRIES:
                _ENTRIES.popitem(last=False)
            _KEY_LOCKS.pop(key, None)
    return value


def loaded_kinds() -> list[str]:
    """The kinds of the entries currently loaded, least recently used first (for tests and diagnostics)."""
    with _LOCK:
        return [k[0] for k in _ENTRIES]


def clear_loaded() -> None:
    """Forget every loaded model, table and configuration (they are reloaded on next use)."""
    with _LOCK:
        _ENTRIES.clear()
