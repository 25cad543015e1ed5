"""One chunk of a bulk job, shared by both engines: featurize it, then decide and commit it as a shard.

:func:`featurize_chunk` runs where the featurizer lives (this process, or a Ray actor) and uses only the
featurizer's public surface: ``content_key(sample, index)`` (validates and hashes one sample),
``transform`` and ``get_feature_names_out``. It never raises for a bad sample: it returns a
:class:`ChunkResult` listing the samples that failed, with the cause and their real input position.

:class:`ChunkWriter` runs in the driver: with ``on_error="raise"`` it commits the items before the first
bad one and raises :class:`SampleFailedError` naming it; with ``"skip"`` it commits the chunk, records the
failures and prints one line per skipped item. Both engines therefore write the same shards, the same
errors and the same messages.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from ..exceptions import InvalidSampleError, SampleFailedError
from ._inputs import Chunk

_MAX_RETRIES = 8  # per chunk; past this many bad samples the chunk is featurized one sample at a time


@dataclass
class ChunkResult:
    """What :func:`featurize_chunk` made of one chunk (small and picklable: it travels back from Ray)."""

    kept: list  # indices (in the chunk) of the samples featurized, in order
    keys: list  # their content hashes
    X: np.ndarray  # float32 (len(kept), n_features)
    errors: list = field(default_factory=list)  # {"position", "error", "content_hash"}, by position
    failure: str | None = None  # on_error="raise": the whole chunk failed (not one sample's fault)
    names: list | None = None  # get_feature_names_out(), when asked for (the first shard's schema)


class _ChunkFailure(Exception):
    pass


def cause(e: BaseException, position: int) -> str:
    """``"Type: message"``; a featurizer's ``Sample i`` (its index in the list it was given) is rewritten
    to the item's position in the job's input."""
    text = str(e)
    if isinstance(e, InvalidSampleError) and e.index is not None and e.index != position:
        text = re.sub(rf"^Sample {int(e.index)}\b", f"Sample {position}", text)
    return f"{type(e).__name__}: {text}"


def featurize_chunk(f, samples: list, start: int, on_error: str = "skip",
                    with_names: bool = False) -> ChunkResult:
    """Featurize the chunk of ``samples`` at input positions ``start, start + 1, ...``.

    Content keys first (a missing or empty file fails there); then the good samples are transformed
    together; after an :class:`InvalidSampleError` (which names its index) the rest is retried without
    the bad sample; after any other error, one sample at a time (``on_error="raise"``: such an error stops
    the chunk). With ``on_error="raise"`` nothing after the first bad item is featurized, so the first bad
    item by position is always found."""
    n = len(samples)
    keys: list = [None] * n
    errors: dict[int, str] = {}
    for i, s in enumerate(samples):
        try:
            keys[i] = f.content_key(s, start + i)
        except Exception as e:  # noqa: BLE001 - any failure here is this sample's
            errors[i] = cause(e, start + i)
            if on_error == "raise":
                break
    limit = min(errors) if errors and on_error == "raise" else n
    good = [i for i in range(limit) if i not in errors]
    try:
        kept, X = _transform(f, samples, good, start, errors, on_error)
    except _ChunkFailure as e:
        return ChunkResult([], [], np.zeros((0, 0), np.float32), _error_list(errors, keys, start),
                           failure=str(e))
    names = list(f.get_feature_names_out()) if with_names else None
    if X is None:
        X = np.zeros((0, len(names) if names is not None else 0), np.float32)
    return ChunkResult(kept, [keys[i] for i in kept], np.ascontiguousarray(X, dtype=np.float32),
                       _error_list(errors, keys, start), names=names)


def _error_list(errors: dict, keys: list, start: int) -> list:
    return [{"position": start + i, "error": errors[i], "content_hash": keys[i]} for i in sorted(errors)]


def _transform(f, samples, good, start, errors, on_error):
    """``(kept, X)`` for the samples ``good``; bad ones are added to ``errors``."""
    retries = 0
    while good:
        try:
            return good, f.transform([samples[i] for i in good])
        except InvalidSampleError as e:
            if e.index is None or not 0 <= e.index < len(good) or retries >= _MAX_RETRIES:
                break
            bad = good[e.index]
            errors[bad] = cause(e, start + bad)
            # "raise" only needs what comes before the first bad item
            good = [i for i in good if i != bad and (on_error != "raise" or i < bad)]
            retries += 1
        except Exception as e:  # noqa: BLE001
            if on_error == "raise":
                raise _ChunkFailure(cause(e, start + good[0])) from e
            break
    else:
        return [], None
    rows, kept = [], []
    for i in good:
        try:
            rows.append(f.transform([samples[i]]))
            kept.append(i)
        except Exception as e:  # noqa: BLE001
            errors[i] = cause(e, start + i)
            if on_error == "raise":
                break
    return kept, (np.concatenate(rows) if rows else None)


# -- output tables ------------------------------------------------------------------------------------
def json_id(value):
    """An id as JSON can hold it: ``bytes`` ids (non-UTF-8 file names) as ``os.fsdecode`` strings."""
    return os.fsdecode(value) if isinstance(value, bytes) else value


def feature_groups(names) -> list[str]:
    """``model__layer__pooling`` of each block of output columns, in order (from the feature names)."""
    return list(dict.fromkeys(re.sub(r"_\d+$", "", str(n)) for n in names))


def embedding_schema(id_type, width: int, layout: str, feature_names, metadata: dict) -> pa.Schema:
    fields = [pa.field("id", id_type), pa.field("content_hash", pa.string())]
    if layout == "columns":
        fields += [pa.field(str(name), pa.float32()) for name in feature_names]
    else:
        fields.append(pa.field("embedding", pa.list_(pa.float32(), width)))
    return pa.schema(fields, metadata={b"skfeaturize": json.dumps(metadata, default=str).encode()})


def build_table(schema: pa.Schema, ids: pa.Array, keys: list, X: np.ndarray) -> pa.Table:
    n = len(keys)
    cols = [ids.cast(schema.field("id").type), pa.array(keys, type=pa.string())]
    if "embedding" in schema.names:
        width = schema.field("embedding").type.list_size
        flat = pa.array(np.ascontiguousarray(X, np.float32).reshape(-1) if n else np.zeros(0, np.float32))
        cols.append(pa.FixedSizeListArray.from_arrays(flat, width))
    else:
        width = len(schema.names) - 2
        X = X.reshape(n, width) if n else np.zeros((0, width), np.float32)
        cols += [pa.array(X[:, j]) for j in range(width)]
    return pa.Table.from_arrays(cols, schema=schema)


class ChunkWriter:
    """The driver's half: turns :class:`ChunkResult` s into committed shards, in input order."""

    def __init__(self, f, store, *, id_type, layout: str, metadata: dict, on_error: str, progress):
        self.f, self.store, self.id_type, self.layout = f, store, id_type, layout
        self.metadata, self.on_error, self.progress = metadata, on_error, progress
        self.schema = None
        if store.manifest["shards"]:  # a resumed job keeps the committed schema
            import pyarrow.parquet as pq

            self.schema = pq.read_schema(store.shard_paths()[0])

    @property
    def wants_names(self) -> bool:
        """Whether the next result should carry the feature names (no schema yet)."""
        return self.schema is None

    def commit(self, chunk: Chunk, result: ChunkResult) -> None:
        errors = [{"id": json_id(chunk.ids[e["position"] - chunk.start].as_py()), **e} for e in result.errors]
        if self.on_error == "raise" and (errors or result.failure):
            self._commit_prefix_and_raise(chunk, result, errors)
        self._commit(chunk, result, len(chunk), errors)
        for e in errors:
            self.progress.log(f"skfeaturize embed: skipped item {e['id']!r} (position {e['position']}): "
                              f"{e['error']}")

    def _commit(self, chunk: Chunk, result: ChunkResult, n: int, errors: list) -> None:
        kept = [j for j, i in enumerate(result.kept) if i < n]
        table = self._table(chunk.ids.take(pa.array([result.kept[j] for j in kept], pa.int64())),
                            [result.keys[j] for j in kept], result.X[kept], result.names)
        self.store.commit(table, chunk.start, chunk.start + n, errors)
        self.progress.update(n)

    def _commit_prefix_and_raise(self, chunk: Chunk, result: ChunkResult, errors: list) -> None:
        if result.failure:
            first, what = chunk.start, (f"Featurizing input items {json_id(chunk.ids[0].as_py())!r}.."
                                        f"{json_id(chunk.ids[-1].as_py())!r} (positions {chunk.start}.."
                                        f"{chunk.start + len(chunk) - 1}) failed: {result.failure}")
            bad_id = None
        else:
            first, bad_id = errors[0]["position"], errors[0]["id"]
            what = f"Input item {bad_id!r} (position {first}) failed: {errors[0]['error']}"
        if first > chunk.start:  # the good items before it are kept: a rerun starts at the bad one
            self._commit(chunk, result, first - chunk.start, [])
        raise SampleFailedError(
            f"{what}. {self.store.rows} rows are kept (items before position {first}); fix or remove the "
            f"item and rerun the same command to resume at position {first}, or pass --on-error skip "
            "(on_error='skip') to record failures in the errors file and carry on.",
            id=bad_id, position=first)

    def _table(self, ids: pa.Array, keys: list, X: np.ndarray, names) -> pa.Table:
        if self.schema is None:
            if names is None:
                names = list(self.f.get_feature_names_out())
            width = X.shape[1] if len(keys) else len(names)
            meta = {**self.metadata, "feature_groups": feature_groups(names), "n_features": width}
            self.schema = embedding_schema(self.id_type, width, self.layout, names, meta)
        return build_table(self.schema, ids, keys, X)
