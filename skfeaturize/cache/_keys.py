"""Content-addressed keys: what a sample *is*, and what changes the numbers computed from it.

A cache entry is addressed by ``(namespace, key)``:

* ``key`` hashes the sample's content only (file bytes, array bytes with shape and dtype, text, token
  lists), never its path or position, so a renamed file still hits and a changed file misses. Two samples
  share a key only if the model sees the same input: a text featurizer keys the text exactly as given (a
  cased tokenizer sees "café" composed and decomposed differently), the word featurizer, which
  NFC-normalises before tokenizing, keys the NFC form; token lists are length-prefixed, so
  ``['a\x1fb']`` is not ``['a', 'b']``; lone surrogates are encoded with ``surrogatepass``;
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
    """Unicode NFC: "café" composed and decomposed become the same text."""
    return unicodedata.normalize("NFC", text)


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")  # valid text: plain UTF-8; lone surrogates round-trip


def hash_text(text: str) -> str:
    """Key of a text exactly as given."""
    return hash_bytes(_utf8(text), tag=b"text")


def hash_nfc_text(text: str) -> str:
    """Key of a text that is NFC-normalised before anything sees it (composed = decomposed)."""
    return hash_bytes(_utf8(normalize_text(text)), tag=b"text-nfc")


def hash_tokens(tokens: Sequence[str]) -> str:
    """Key of a token list, NFC-normalised per token, each token length-prefixed (unambiguous)."""
    h = _h()
    h.update(b"tokens-v2\0")
    for t in tokens:
        data = _utf8(normalize_text(str(t)))
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
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
    """Content hash of a (weights) file, memoised on its path, inode, size and modification and change
    times, so it is computed once per version of the file."""
    st = os.stat(path)
    memo_key = (os.path.abspath(path), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if memo_key not in _FILE_HASHES:
        _FILE_HASHES[memo_key] = hash_file(path)
    return _FILE_HASHES[memo_key]
