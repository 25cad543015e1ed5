"""``embed``: featurize a folder or a table into Parquet (or ``.npy``) shards, streaming and resumable."""

from __future__ import annotations

import importlib
import inspect
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from .._version import __version__
from ..exceptions import InvalidSampleError, SkfeaturizeError
from ._inputs import Chunk, InputSource, open_input
from ._progress import Progress
from ._store import MANIFEST, ShardStore, fsync_dir

FEATURIZERS = {
    "image": "skfeaturize.image:ImageFeaturizer",
    "text": "skfeaturize.text:TextFeaturizer",
    "words": "skfeaturize.words:WordVectorFeaturizer",
}
# parameters that never change the numbers: a job may resume with different values
_RUNTIME_PARAMS = {"batch_size", "device", "num_workers", "progress", "cache", "cache_layers",
                   "cache_poolings"}
_MAX_RETRIES = 8  # per chunk; past this many bad samples the chunk is featurized one sample at a time


class SampleFailedError(SkfeaturizeError, ValueError):
    """An input item could not be featurized (``on_error="raise"``); names the item's id and the cause."""

    def __init__(self, message: str, id=None, position: int | None = None):
        super().__init__(message)
        self.id, self.position = id, position

    def __reduce__(self):
        return (type(self), (self.args[0], self.id, self.position))


class ResumeMismatchError(SkfeaturizeError, ValueError):
    """``OUT`` holds a job started with other parameters or another input."""


@dataclass
class EmbedResult:
    """What an :func:`embed` run did."""

    out: str
    rows: int  # rows in the output (all runs)
    failed: int  # items recorded in the errors file (all runs)
    featurized: int  # items featurized by this run
    resumed_from: int  # input position this run started at (0 for a fresh job)
    seconds: float
    errors_path: str | None
    manifest_path: str


# -- featurizer ---------------------------------------------------------------------------------------
def featurizer_class(name):
    """``"image"``/``"text"``/``"words"``, ``"package.module:Class"``, or a class."""
    if inspect.isclass(name):
        return name
    target = FEATURIZERS.get(name, name)
    if not isinstance(target, str) or ":" not in target:
        raise ValueError(f"featurizer={name!r} is not one of {sorted(FEATURIZERS)} nor "
                         "'package.module:Class'.")
    module, cls = target.split(":", 1)
    return getattr(importlib.import_module(module), cls)


def model_param(cls) -> str:
    """The featurizer's first constructor parameter (``backbone``, ``model``, ``vectors``)."""
    params = [p for p in inspect.signature(cls.__init__).parameters.values() if p.name != "self"]
    return params[0].name


def make_featurizer(featurizer="image", params: dict | None = None):
    """An unfitted featurizer: a name/class built with ``params``, or a clone of an instance with them set."""
    from sklearn.base import clone

    params = dict(params or {})
    if hasattr(featurizer, "get_params") and not inspect.isclass(featurizer):
        if getattr(featurizer, "fitted_", False) and not params:
            return featurizer
        return clone(featurizer).set_params(**params)
    cls = featurizer_class(featurizer)
    known = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(params) - set(known))
    if unknown:
        import difflib

        hints = {u: difflib.get_close_matches(u, known, n=1) for u in unknown}
        hint = "; ".join(f"did you mean {h[0]!r} for {u!r}?" for u, h in hints.items() if h)
        raise ValueError(f"Unknown parameter(s) {unknown} for {cls.__name__}; valid parameters: {known}."
                         + (f" ({hint})" if hint else ""))
    return cls(**params)


def _class_path(f) -> str:
    return f"{type(f).__module__}:{type(f).__qualname__}"


def _canonical_params(f) -> dict:
    from ..cache._keys import _canonical

    return _canonical(f.get_params(deep=False))


def _fitted_state_hash(f) -> dict:
    import joblib

    return {k: joblib.hash(v) for k, v in sorted(vars(f).items())
            if k.endswith("_") and not k.startswith("_") and isinstance(v, np.ndarray)}


def job_identity(f, source: InputSource, fmt: str, layout: str) -> dict:
    """What must match for a job to resume: featurizer numbers, input, output format."""
    from ..cache._keys import fingerprint

    spec = {"class": _class_path(f), "fingerprint": f._fingerprint(),
            "requests": [list(r) for r in f._requests()], "fitted": _fitted_state_hash(f)}
    params = _canonical_params(f)
    return {
        "featurizer": _class_path(f),
        "params": params,
        "fingerprint": fingerprint(spec),
        "fingerprint_spec": json.loads(json.dumps(spec, default=str)),
        "input": source.fingerprint(),
        "format": fmt,
        "layout": layout,
        "skfeaturize": __version__,
    }


def _mismatch(old: dict, new: dict) -> str | None:
    diffs = []
    if old["featurizer"] != new["featurizer"]:
        diffs.append(f"featurizer: {old['featurizer']!r} then, {new['featurizer']!r} now")
    for k in sorted(set(old["params"]) | set(new["params"])):
        if k not in _RUNTIME_PARAMS and old["params"].get(k) != new["params"].get(k):
            diffs.append(f"{k}: {old['params'].get(k)!r} then, {new['params'].get(k)!r} now")
    if old["fingerprint"] != new["fingerprint"] and not diffs:
        diffs.append("featurizer fingerprint (weights, preprocessing, precision or fitted state)")
    if old["input"] != new["input"]:
        keys = [k for k in new["input"] if old["input"].get(k) != new["input"].get(k)]
        diffs.append(f"input ({', '.join(keys)} changed: files added, removed or modified)")
    for k in ("format", "layout"):
        if old.get(k) != new.get(k):
            diffs.append(f"{k}: {old.get(k)!r} then, {new.get(k)!r} now")
    return "; ".join(diffs) if diffs else None


# -- one chunk ------------------------------------------------------------------------------------------
def _cause(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"


def featurize_chunk(f, samples: list, ids: list, start: int, on_error: str):
    """Featurize one chunk. Returns ``(kept, keys, X, errors)``: positions (in the chunk) that succeeded,
    their content hashes, their float32 features, and ``[{"id", "position", "error"}]`` for the rest.

    ``on_error="raise"`` raises :class:`SampleFailedError` naming the first bad item; ``"skip"`` records
    it and keeps the chunk's good samples: after an :class:`InvalidSampleError` (which names its index) the
    chunk is retried without the bad sample; after any other error, one sample at a time."""
    n = len(samples)
    keys: list = [None] * n
    errors: dict[int, str] = {}

    def fail(i: int, e: BaseException) -> None:
        if on_error == "raise":
            raise SampleFailedError(f"Input item {ids[i]!r} (position {start + i}) failed: {_cause(e)}. "
                                    "Fix or remove it, or pass --on-error skip (on_error='skip') to record "
                                    "failures in the errors file and carry on.", id=ids[i],
                                    position=start + i) from e
        errors[i] = _cause(e)

    for i, s in enumerate(samples):
        try:
            keys[i] = f._sample_key(i, f._check_sample(i, s))
        except Exception as e:  # noqa: BLE001 - any failure is this sample's
            fail(i, e)
    good = [i for i in range(n) if i not in errors]
    X = None
    one_by_one = False
    retries = 0
    while good:
        try:
            X = f.transform([samples[i] for i in good])
            break
        except InvalidSampleError as e:
            if e.index is None or not 0 <= e.index < len(good):
                if on_error == "raise":
                    raise
                one_by_one = True
                break
            bad = good[e.index]
            fail(bad, e)
            good = [i for i in good if i != bad]
            retries += 1
            if retries >= _MAX_RETRIES:
                one_by_one = True
                break
        except Exception as e:  # noqa: BLE001
            if on_error == "raise":
                raise SampleFailedError(
                    f"Featurizing input items {ids[0]!r}..{ids[-1]!r} (positions {start}..{start + n - 1}) "
                    f"failed: {_cause(e)}", id=None, position=start) from e
            one_by_one = True
            break
    if one_by_one:
        rows, kept = [], []
        for i in good:
            try:
                rows.append(f.transform([samples[i]]))
                kept.append(i)
            except Exception as e:  # noqa: BLE001
                fail(i, e)
        good = kept
        X = np.concatenate(rows) if rows else None
    err_list = [{"id": ids[i], "position": start + i, "error": errors[i]} for i in sorted(errors)]
    if X is None:
        X = np.zeros((0, 0), np.float32)
    return good, [keys[i] for i in good], np.ascontiguousarray(X, dtype=np.float32), err_list


# -- output tables ------------------------------------------------------------------------------------
def embedding_schema(id_type, width: int, layout: str, feature_names, metadata: dict) -> pa.Schema:
    fields = [pa.field("id", id_type), pa.field("content_hash", pa.string())]
    if layout == "columns":
        fields += [pa.field(str(name), pa.float32()) for name in feature_names]
    else:
        fields.append(pa.field("embedding", pa.list_(pa.float32(), width)))
    return pa.schema(fields, metadata={b"skfeaturize": json.dumps(metadata, default=str).encode()})


def build_table(schema: pa.Schema, ids, keys: list, X: np.ndarray) -> pa.Table:
    id_type = schema.field("id").type
    n = len(keys)
    cols = [pa.array(list(ids), type=id_type) if not isinstance(ids, pa.Array) else ids.cast(id_type),
            pa.array(keys, type=pa.string())]
    if "embedding" in schema.names:
        width = schema.field("embedding").type.list_size
        flat = pa.array(np.ascontiguousarray(X, np.float32).reshape(-1) if n else np.zeros(0, np.float32))
        cols.append(pa.FixedSizeListArray.from_arrays(flat, width))
    else:
        width = len(schema.names) - 2
        X = X.reshape(n, width) if n else np.zeros((0, width), np.float32)
        cols += [pa.array(X[:, j]) for j in range(width)]
    return pa.Table.from_arrays(cols, schema=schema)


# -- paths -------------------------------------------------------------------------------------------
def _paths(out: str, fmt: str) -> dict:
    out = os.path.expanduser(os.fspath(out))
    p = Path(out)
    stem = p.with_suffix("") if p.suffix else p
    return {"out": p, "parts": p if fmt == "parquet" else Path(out + ".parts"),
            "errors": Path(f"{stem}.errors.jsonl"), "ids": Path(f"{stem}.ids.parquet")}


def _remove_job(paths: dict) -> None:
    parts = paths["parts"]
    if parts.exists():
        if parts.is_dir() and ((parts / MANIFEST).exists() or not any(parts.iterdir())):
            shutil.rmtree(parts)
        else:
            raise FileExistsError(f"--overwrite would delete {str(parts)!r}, which is not a skfeaturize job "
                                  "folder (no _manifest.json); remove it yourself or choose another OUT.")
    for key in ("errors", "ids") + (("out",) if paths["out"] != parts else ()):
        if paths[key].exists() and paths[key].is_file():
            paths[key].unlink()


# -- the job -----------------------------------------------------------------------------------------
def embed(input, out, *, featurizer="image", params: dict | None = None, model=None, layer=None,
          pooling=None, batch_size: int | None = None, device: str | None = None, cache=None,
          column: str | None = None, id_column: str | None = None, extensions=None, root=None,
          encoding: str = "utf-8", chunk_size: int = 256, format: str = "parquet", layout: str = "list",
          on_error: str = "raise", overwrite: bool = False, fit_rows: int = 0, engine: str = "local",
          ray_address: str | None = None, concurrency: int | None = None,
          gpus_per_actor: float | None = None, progress: str = "auto", quiet: bool = False,
          log_every: float = 10.0) -> EmbedResult:
    """Featurize every item of ``input`` into ``out``, streaming, in shards, resumable after a kill.

    Parameters
    ----------
    input : path
        A folder of images (recursive, by extension), a CSV/TSV, Parquet (file or folder) or JSON Lines
        table (samples in ``column``, ids in ``id_column``), or a text file with one document per line.
    out : path
        ``format="parquet"``: a folder of Parquet shards (``pandas.read_parquet(out)`` reads one table)
        with columns ``id``, ``content_hash`` and ``embedding`` (fixed-size list of float32; or one column
        per dimension with ``layout="columns"``). ``format="npy"``: ``out`` is a float32 ``.npy`` matrix
        (``np.load(out, mmap_mode="r")``) plus ``<stem>.ids.parquet`` (``id``, ``content_hash``) in row
        order; shards are kept in ``<out>.parts`` until the job completes.
    featurizer : "image", "text", "words", "package.module:Class", a class or an instance
    params : dict
        Featurizer parameters; ``model`` (the first constructor parameter: ``backbone``/``model``/
        ``vectors``), ``layer``, ``pooling``, ``batch_size``, ``device`` and ``cache`` override them.
    cache : path or EmbeddingCache
        Passed as the featurizer's ``cache=``: the job reads hits from it and fills it, so a later
        ``GridSearchCV`` with the same featurizer starts warm.
    chunk_size : int
        Items per chunk (and per shard); memory is bounded by one chunk.
    on_error : {"raise", "skip"}
        ``"raise"`` stops at the first bad item with its id and cause (everything committed so far is
        kept); ``"skip"`` records failed items in ``<stem>.errors.jsonl`` and carries on.
    overwrite : bool
        Delete an existing job in ``out`` and start over; otherwise a job with the same parameters and
        input resumes where it stopped, and one with different parameters is refused.
    fit_rows : int
        ``0``: ``fit(None)`` (pretrained featurizers learn nothing). ``N > 0``: fit on the first ``N``
        items; ``-1``: on all items (held in memory), for fitted poolings such as ``tfidf``/``sif``.
        A fitted instance passed as ``featurizer`` is used as it is.
    engine : {"local", "ray"}
        ``"ray"`` runs the chunks on a Ray actor pool (one featurizer per actor), see ``ray_address``,
        ``concurrency`` (actors) and ``gpus_per_actor`` (default: 1 when the cluster has GPUs).
    progress : {"auto", "bar", "log", "off"}
        ``"auto"``: a tqdm bar on a terminal, a log line every ``log_every`` seconds otherwise.
    quiet : bool
        No progress output at all (same as ``progress="off"``).
    """
    t0 = time.monotonic()
    if format not in ("parquet", "npy"):
        raise ValueError(f"format={format!r} is not one of ['npy', 'parquet'].")
    if layout not in ("list", "columns"):
        raise ValueError(f"layout={layout!r} is not one of ['columns', 'list'].")
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error={on_error!r} is not one of ['raise', 'skip'].")
    if engine not in ("local", "ray"):
        raise ValueError(f"engine={engine!r} is not one of ['local', 'ray'].")
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size={chunk_size!r} must be a positive int.")
    if format == "npy" and layout == "columns":
        raise ValueError("layout='columns' applies to format='parquet'; an .npy output is one matrix.")

    params = dict(params or {})
    f = make_featurizer(featurizer, {})
    for key, value in ((model_param(type(f)), model), ("layer", layer), ("pooling", pooling),
                       ("batch_size", batch_size), ("device", device), ("cache", cache)):
        if value is not None:
            params[key] = value
    f = make_featurizer(featurizer, params)

    source = open_input(input, column=column, id_column=id_column, extensions=extensions, root=root,
                        paths=getattr(f, "_input_what", "") == "images", encoding=encoding)
    if not getattr(f, "fitted_", False):
        if fit_rows:
            fit_X = []
            for chunk in source.chunks(chunk_size):
                fit_X.extend(chunk.samples)
                if 0 < fit_rows <= len(fit_X):
                    fit_X = fit_X[:fit_rows]
                    break
            f.fit(fit_X)
        else:
            f.fit(None)

    paths = _paths(out, format)
    if overwrite:
        _remove_job(paths)
    store = ShardStore(paths["parts"])
    identity = job_identity(f, source, format, layout)
    old = store.load() if paths["parts"].is_dir() else None
    parts = paths["parts"]
    if parts.exists() and old is None and (not parts.is_dir() or any(parts.iterdir())):
        raise FileExistsError(f"out={str(paths['parts'])!r} exists and is not a skfeaturize job folder (no "
                              "_manifest.json); choose another output or remove it.")
    if old is not None:
        diff = _mismatch(old["job"], identity)
        if diff:
            raise ResumeMismatchError(
                f"{str(paths['parts'])!r} holds a job started with different parameters or input ({diff}). "
                "Rerun with the original parameters to resume it, or pass --overwrite (overwrite=True) to "
                "delete it and start over.")
        store.clean_uncommitted()
    else:
        store.create(identity)
    mode = "off" if quiet else progress
    if store.manifest["complete"] and (format == "parquet" or paths["out"].exists()):
        prog = Progress(None, mode=mode, every=log_every)
        prog.log(f"skfeaturize embed: {str(paths['out'])!r} is already complete "
                 f"({store.manifest['rows']} rows); nothing to do (--overwrite starts over).")
        return _result(paths, store, format, 0, t0)

    store.start_run(engine)
    total = source.total if source.total is not None else (
        identity["input"]["files"] if source.kind == "folder" else None)
    prog = Progress(total, done=store.position, mode=mode, every=log_every)
    if store.position:
        prog.log(f"skfeaturize embed: resuming at item {store.position} ({store.manifest['rows']} rows "
                 "already written)")
    metadata = {"featurizer": identity["featurizer"], "params": identity["params"],
                "fingerprint": identity["fingerprint"], "fingerprint_spec": identity["fingerprint_spec"],
                "requests": identity["fingerprint_spec"]["requests"], "skfeaturize": __version__}
    try:
        if engine == "ray":
            from ._ray import run_ray

            run_ray(f, source, store, chunk_size=chunk_size, on_error=on_error, layout=layout,
                    metadata=metadata, progress=prog, address=ray_address, concurrency=concurrency,
                    gpus_per_actor=gpus_per_actor)
        else:
            run_local(f, source, store, chunk_size=chunk_size, on_error=on_error, layout=layout,
                      metadata=metadata, progress=prog)
    finally:
        prog.close()
        store.write_errors_file(paths["errors"])
    if format == "npy":
        _consolidate_npy(store, paths)
    store.finish()
    result = _result(paths, store, format, store.manifest["runs"][-1]["featurized"], t0)
    prog.log(f"skfeaturize embed: done: {result.rows} rows in {str(paths['out'])!r}, {result.failed} failed, "
             f"featurized {result.featurized} items in this run (resumed from {result.resumed_from}), "
             f"{result.seconds:.1f} s")
    return result


def _result(paths, store, fmt, featurized, t0) -> EmbedResult:
    m = store.manifest
    return EmbedResult(out=str(paths["out"]), rows=int(m["rows"]), failed=int(m["errors"]),
                       featurized=int(featurized),
                       resumed_from=int(m["runs"][-1]["resumed_from"]) if m["runs"] else 0,
                       seconds=time.monotonic() - t0,
                       errors_path=str(paths["errors"]) if paths["errors"].exists() else None,
                       manifest_path=str(paths["parts"] / MANIFEST))


class ShardBuilder:
    """Turns featurized chunks into tables with one schema (fixed at the first non-empty chunk)."""

    def __init__(self, f, source: InputSource, layout: str, metadata: dict, store: ShardStore):
        self.f, self.source, self.layout, self.metadata, self.store = f, source, layout, metadata, store
        self.schema = None
        if store.manifest["shards"]:  # a resumed job keeps the committed schema
            import pyarrow.parquet as pq

            self.schema = pq.read_schema(store.shard_paths()[0])

    def table(self, ids, keys, X) -> pa.Table:
        if self.schema is None:
            # width from the data, or (a first chunk where everything failed) from the featurizer
            names = self.f.get_feature_names_out() if self.layout == "columns" or not len(keys) else None
            width = X.shape[1] if len(keys) else len(names)
            self.schema = embedding_schema(self.source.id_type, width, self.layout, names, self.metadata)
        return build_table(self.schema, ids, keys, X)


def run_local(f, source: InputSource, store: ShardStore, *, chunk_size: int, on_error: str, layout: str,
              metadata: dict, progress: Progress) -> None:
    """Featurize chunk after chunk in this process; commit each as a shard."""
    builder = ShardBuilder(f, source, layout, metadata, store)
    for chunk in _prefetch(source.chunks(chunk_size, skip=store.position)):
        ids = chunk.ids.to_pylist()
        kept, keys, X, errors = featurize_chunk(f, chunk.samples, ids, chunk.start, on_error)
        table = builder.table(chunk.ids.take(pa.array(kept, pa.int64())), keys, X)
        store.commit(table, chunk.start, chunk.start + len(chunk), errors)
        progress.update(len(chunk))
        for e in errors:
            progress.log(f"skfeaturize embed: skipped {e['id']!r}: {e['error']}")


def _prefetch(iterator, depth: int = 2):
    """Read the next chunks in a background thread while the current one is featurized."""
    import queue
    import threading

    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def worker():
        try:
            for item in iterator:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(done)
        except BaseException as e:  # noqa: BLE001 - re-raised in the consumer
            q.put(e)

    t = threading.Thread(target=worker, daemon=True, name="skfeaturize-reader")
    t.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


def _consolidate_npy(store: ShardStore, paths: dict) -> None:
    """Shards → one float32 ``.npy`` (memory-mappable) + ``<stem>.ids.parquet``, streaming, atomically."""
    import pyarrow.parquet as pq

    rows = int(store.manifest["rows"])
    shard_paths = store.shard_paths()
    schema = None
    for p in shard_paths:
        s = pq.read_schema(p)
        if "embedding" in s.names:
            schema = s
            break
    width = schema.field("embedding").type.list_size if schema is not None else 0
    out, ids_path = paths["out"], paths["ids"]
    tmp = out.with_name(f".{out.name}.tmp.npy")
    tmp_ids = ids_path.with_name(f".{ids_path.name}.tmp")
    mat = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(rows, width))
    writer = None
    pos = 0
    for p in shard_paths:
        t = pq.read_table(p)
        n = t.num_rows
        if n:
            flat = t.column("embedding").combine_chunks().flatten().to_numpy(zero_copy_only=False)
            mat[pos:pos + n] = flat.reshape(n, width)
            pos += n
            ids_t = t.select(["id", "content_hash"]).replace_schema_metadata(schema.metadata)
            if writer is None:
                writer = pq.ParquetWriter(tmp_ids, ids_t.schema)
            writer.write_table(ids_t)
    mat.flush()
    del mat
    if writer is None:
        writer = pq.ParquetWriter(tmp_ids, pa.schema([("id", pa.string()), ("content_hash", pa.string())]))
    writer.close()
    for t in (tmp, tmp_ids):
        with open(t, "rb+") as fh:
            os.fsync(fh.fileno())
    os.replace(tmp_ids, ids_path)
    os.replace(tmp, out)
    fsync_dir(out.parent)
    store.manifest["consolidated"] = {"npy": out.name, "ids": ids_path.name, "rows": rows, "width": width}
    for p in shard_paths:  # the matrix now holds them; keep only the manifest (a rerun sees "complete")
        p.unlink()


def read_embeddings(out) -> tuple:
    """``(ids, content_hashes, X)`` of a finished job (either format), in input order."""
    import pandas as pd

    out = Path(os.path.expanduser(os.fspath(out)))
    if out.suffix == ".npy":
        ids = pd.read_parquet(_paths(str(out), "npy")["ids"])
        return ids["id"].tolist(), ids["content_hash"].tolist(), np.load(out, mmap_mode="r")
    df = pd.read_parquet(out)
    if "embedding" in df.columns:
        X = (np.stack(df["embedding"].to_numpy()).astype(np.float32) if len(df)
             else np.zeros((0, 0), np.float32))
    else:
        X = df.drop(columns=["id", "content_hash"]).to_numpy(np.float32)
    return df["id"].tolist(), df["content_hash"].tolist(), X


__all__ = ["embed", "EmbedResult", "SampleFailedError", "ResumeMismatchError", "read_embeddings",
           "featurize_chunk", "Chunk"]
