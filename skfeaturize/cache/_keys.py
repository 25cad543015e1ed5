"""Content-addressed keys: what a sample *is*, and what changes the numbers computed from it.

A cache entry is addressed by ``(namespace, key)``:

* ``key`` hashes the sample's content only (file bytes, array bytes with shape and dtype, NFC-normalised
  text, token lists), never its path or position, so a renamed file still hits and a changed file misses;
* ``namespace`` hashes a fingerprint of everything that changes the vector: backbone, weights identity,
  preprocessing, precision, layer, pooling, and the library versions where they change features.
"""

from __future__ import annotations

import hashlib
import json
import os
import unicodedata
from collections.abc import Mapping, Sequence

import numpy as np

_DIGEST = 20  # bytes of blake2b: 160 bits, collision-free for any realistic dataset


def _h() -> hashlib.blake2b:
    return hashlib.blake2b(digest_size=_DIGEST)


def hash_bytes(data: bytes, tag: bytes = b"bytes") -> str:
    h = _h()
    h.update(tag + b"\0")
    h.update(data)
    return h.hexdigest()


def hash_file(path: str | os.PathLike) -> str:
    """Hash a file's bytes (its name plays no part)."""
    h = _h()
    h.update(b"bytes\0")  # same key as the same bytes passed in memory
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def normalize_text(text: str) -> str:
    """Unicode NFC: "café" composed and decomposed are the same text (and the same cache key)."""
    return unicodedata.normalize("NFC", text)


def hash_text(text: str) -> str:
    return hash_bytes(normalize_text(text).encode("utf-8"), tag=b"text")


def hash_tokens(tokens: Sequence[str]) -> str:
    h = _h()
    h.update(b"tokens\0")
    for t in tokens:
        h.update(normalize_text(str(t)).encode("utf-8"))
        h.update(b"\x1f")
    return h.hexdigest()


def hash_array(a: np.ndarray, tag: bytes = b"array") -> str:
    a = np.ascontiguousarray(a)
    h = _h()
    h.update(tag + b"\0")
    h.update(json.dumps([list(a.shape), a.dtype.str]).encode())
    h.update(a.tobytes())
    return h.hexdigest()


def _canonical(obj):
    if isinstance(obj, Mapping):
        return {str(k): _canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    return repr(obj)


def fingerprint(spec: Mapping) -> str:
    """A stable hash of a JSON-able description (dict order does not matter)."""
    blob = json.dumps(_canonical(spec), sort_keys=True, separators=(",", ":")).encode()
    return hash_bytes(blob, tag=b"fingerprint")


_FILE_HASHES: dict[tuple, str] = {}


def file_identity(path: str | os.PathLike) -> str:
    """Content hash of a (weights) file, memoised on (path, size, mtime) so it is computed once."""
    st = os.stat(path)
    memo_key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    if memo_key not in _FILE_HASHES:
        _FILE_HASHES[memo_key] = hash_file(path)
    return _FILE_HASHES[memo_key]
