"""``format="npy"``: the committed shards become one float32 ``.npy`` matrix plus ``<stem>.ids.parquet``.

Consolidation steps, each safe to be killed after (tested by crashing at every filesystem call):

1. write the matrix and the ids to hidden temp files (plain writes, so a full disk raises ``ENOSPC``
   instead of the ``SIGBUS`` a memory map would get), fsync both;
2. rename the ids, then the matrix, into place; fsync the folder;
3. replace the manifest by one marked complete (which names the consolidated files);
4. delete the shard files (the matrix holds them now).

Killed before 3, the job is incomplete and its shards are all there: the rerun consolidates again,
overwriting the temp files and the renamed ones. Killed after 3, the rerun sees a complete job and only
finishes step 4.
"""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ._store import ShardStore, fsync_dir, fsync_file, writing


def _width(store: ShardStore) -> tuple[int, pa.Schema | None]:
    for p in store.shard_paths():
        s = pq.read_schema(p)
        if "embedding" in s.names:
            return s.field("embedding").type.list_size, s
    return 0, None


def _write_matrix(store: ShardStore, tmp, rows: int, width: int) -> None:
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype("<f4")), "fortran_order": False,
              "shape": (rows, width)}
    written = 0
    with open(tmp, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, header)
        for p in store.shard_paths():
            t = pq.read_table(p, columns=["embedding"])
            if t.num_rows:
                flat = t.column("embedding").combine_chunks().flatten().to_numpy(zero_copy_only=False)
                fh.write(np.ascontiguousarray(flat, dtype="<f4").tobytes())
                written += t.num_rows
        fh.flush()
        os.fsync(fh.fileno())
    if written != rows:  # pragma: no cover - the manifest counts the shards' rows
        raise RuntimeError(f"consolidation wrote {written} rows, the manifest says {rows}; this is a bug.")


def _write_ids(store: ShardStore, tmp, schema: pa.Schema | None) -> None:
    id_schema = (pa.schema([schema.field("id"), schema.field("content_hash")], metadata=schema.metadata)
                 if schema is not None else pa.schema([("id", pa.string()), ("content_hash", pa.string())]))
    with pq.ParquetWriter(tmp, id_schema) as writer:
        for p in store.shard_paths():
            writer.write_table(pq.read_table(p, columns=["id", "content_hash"]))
    fsync_file(tmp)


def consolidate(store: ShardStore, paths: dict) -> None:
    """Shards → ``paths["out"]`` (``.npy``) + ``paths["ids"]``, then the manifest says complete."""
    rows = store.rows
    width, schema = _width(store)
    out, ids_path = paths["out"], paths["ids"]
    tmp, tmp_ids = out.with_name(f".{out.name}.tmp"), ids_path.with_name(f".{ids_path.name}.tmp")
    with writing(out, rows, tmp):
        _write_matrix(store, tmp, rows, width)
    with writing(ids_path, rows, tmp_ids):
        _write_ids(store, tmp_ids, schema)
    with writing(out, rows):
        os.replace(tmp_ids, ids_path)
        os.replace(tmp, out)
    fsync_dir(out.parent)
    store.finish({"consolidated": {"npy": out.name, "ids": ids_path.name, "rows": rows, "width": width}})
    remove_shards(store)


def remove_shards(store: ShardStore) -> None:
    """Step 4 (also what a rerun of a complete job finishes, if it was killed during it)."""
    for p in store.shard_paths():
        p.unlink(missing_ok=True)
