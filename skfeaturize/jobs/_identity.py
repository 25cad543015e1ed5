"""What must hold for a job in ``OUT`` to be resumed: the same numbers, the same input, the same items.

Three checks, from cheap to thorough:

1. **The featurizer**: its class, its parameters (except those that never change the numbers) and its
   fitted ``fingerprint_`` (weights, preprocessing, layers, poolings, fitted state).
2. **The input's shape**: path, kind, columns, id type, extensions. A *complete* job also compares the
   listing (names, sizes and modification times of every file read): its output stands for that input.
3. **Every committed item** (:func:`verify_committed`, for an incomplete job): the input's first
   ``position`` items must still have the ids the shards hold, and the content hashes
   (``f.content_key``) the shards stored. This covers what a table *references* (a CSV of image paths
   whose image file was replaced), and it allows the rest of the input to change: a bad item after the
   committed ones can be fixed or removed, and the same command resumes.
"""

from __future__ import annotations

import itertools
import json
import re

import numpy as np

from .._version import __version__
from ..exceptions import ResumeMismatchError
from ._chunks import json_id

# parameters that never change the numbers: a job may resume with different values
_RUNTIME_PARAMS = {"batch_size", "device", "num_workers", "progress", "cache", "cache_layers",
                   "cache_poolings"}
_INPUT_SHAPE = ("path", "kind", "column", "id_column", "id_type", "extensions")


def class_path(f) -> str:
    return f"{type(f).__module__}:{type(f).__qualname__}"


def _jsonable(v):
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in sorted(v.items(), key=lambda kv: str(kv[0]))}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if v is None or isinstance(v, (str, int, float, bool)):
        return v
    if isinstance(v, np.generic):
        return v.item()
    # no memory address: two runs must describe the same object alike (the fingerprint decides)
    return re.sub(r" at 0x[0-9a-fA-F]+", "", repr(v))


def job_identity(f, source, fmt: str, layout: str) -> dict:
    """What must match for a job to resume: the featurizer's numbers, the input, the output format."""
    return {"featurizer": class_path(f), "params": _jsonable(f.get_params(deep=False)),
            "fingerprint": str(f.fingerprint_), "input": source.fingerprint(), "format": fmt,
            "layout": layout, "skfeaturize": __version__}


def mismatch(old: dict, new: dict, complete: bool) -> str | None:
    """The differences that forbid resuming (``None``: none)."""
    diffs = []
    if old["featurizer"] != new["featurizer"]:
        diffs.append(f"featurizer: {old['featurizer']!r} then, {new['featurizer']!r} now")
    for k in sorted(set(old["params"]) | set(new["params"])):
        if k not in _RUNTIME_PARAMS and old["params"].get(k) != new["params"].get(k):
            diffs.append(f"{k}: {old['params'].get(k)!r} then, {new['params'].get(k)!r} now")
    if old["fingerprint"] != new["fingerprint"] and not diffs:
        diffs.append("featurizer fingerprint (weights, preprocessing, precision or fitted state)")
    keys = [k for k in _INPUT_SHAPE if old["input"].get(k) != new["input"].get(k)]
    if keys:
        diffs.append(f"input ({', '.join(keys)}: {', '.join(repr(old['input'].get(k)) for k in keys)} then, "
                     f"{', '.join(repr(new['input'].get(k)) for k in keys)} now)")
    elif complete and any(old["input"][k] != new["input"][k] for k in ("files", "listing")):
        diffs.append("input (files, listing changed: files added, removed or modified since the job "
                     "completed)")
    for k in ("format", "layout"):
        if old.get(k) != new.get(k):
            diffs.append(f"{k}: {old.get(k)!r} then, {new.get(k)!r} now")
    return "; ".join(diffs) if diffs else None


# -- per-item verification -----------------------------------------------------------------------------
def _committed(store):
    """``(position, id, content_hash, featurized)`` of every committed item, in input order."""
    import pyarrow.parquet as pq

    for shard in store.manifest["shards"]:
        failed = {e["position"]: e for e in store.shard_errors(shard)}
        rows = pq.read_table(store.root / shard["file"], columns=["id", "content_hash"])
        ids, hashes = iter(rows.column("id").to_pylist()), iter(rows.column("content_hash").to_pylist())
        for p in range(shard["start"], shard["stop"]):
            if p in failed:
                yield p, failed[p]["id"], failed[p].get("content_hash"), False
            else:
                yield p, next(ids), next(hashes), True


def _same_id(a, b) -> bool:
    def norm(v):
        return json.loads(json.dumps(json_id(v), default=str))

    return a == b or norm(a) == norm(b)


def verify_committed(f, source, store, where: str) -> None:
    """Raise :class:`ResumeMismatchError` naming the first committed item that is not what it was."""
    items = ((c.start + j, c.ids[j].as_py(), s) for c in source.chunks(1024, stop=store.position)
             for j, s in enumerate(c.samples))
    for item, rec in itertools.zip_longest(items, _committed(store)):
        if rec is None:  # pragma: no cover - shards cover [0, position) by construction
            break
        if item is None:
            _refuse(where, rec[1], rec[0], "the input has fewer items now (it was removed, or items before "
                                           "it were)")
        pos, id_, sample = item
        _, old_id, old_hash, featurized = rec
        if not _same_id(id_, old_id):
            _refuse(where, old_id, pos, f"the item at this position is {json_id(id_)!r} now (items were "
                                        "added, removed or renamed before it)")
        if old_hash is None:
            continue  # it failed before it could be hashed: nothing to compare
        try:
            key = f.content_key(sample, pos)
        except Exception as e:  # noqa: BLE001
            if featurized:
                _refuse(where, old_id, pos, f"it cannot be read now ({type(e).__name__}: {e})")
            continue
        if key != old_hash:
            _refuse(where, old_id, pos, f"its content changed (content hash {old_hash[:12]}... then, "
                                        f"{key[:12]}... now)")


def _refuse(where: str, id_, pos: int, why: str):
    raise ResumeMismatchError(
        f"{where!r} holds a job whose committed item {json_id(id_)!r} (position {pos}) is not what was "
        f"featurized: {why}. Resuming would mix old and new inputs; restore it, or pass --overwrite "
        "(overwrite=True) to start over.")
