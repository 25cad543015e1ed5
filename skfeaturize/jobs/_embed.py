"""``embed``: featurize a folder or a table into Parquet (or ``.npy``) shards, streaming and resumable.

The job in one picture (each box its own module)::

    _inputs/_walk ──► chunks ──► engine (local: this process; _ray: an actor pool) ──► _chunks.ChunkWriter
      (sorted, lazy)                  featurize_chunk per chunk                       (decide, commit)
                                                                                          │
    _identity: may OUT be resumed? ◄── _store: shards + atomic manifest ◄─────────────────┘ ──► _npy
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..exceptions import FitDataRequiredError, ResumeMismatchError, SampleFailedError
from ._chunks import ChunkWriter, featurize_chunk
from ._identity import job_identity, mismatch, verify_committed
from ._inputs import InputSource, open_input
from ._npy import consolidate, remove_shards
from ._progress import Progress
from ._store import (
    FORMAT_VERSION,
    MANIFEST,
    ShardStore,
    atomic_write_bytes,
    holds_only_temp_files,
    json_lines,
)

FEATURIZERS = {
    "image": "skfeaturize.image:ImageFeaturizer",
    "text": "skfeaturize.text:TextFeaturizer",
    "words": "skfeaturize.words:WordVectorFeaturizer",
}
_MAX_SKIPPED_LINES = 20  # skipped folder entries printed; all of them go to <stem>.skipped.jsonl


@dataclass
class EmbedResult:
    """What an :func:`embed` run did.

    Parameters
    ----------
    out : str
        The output path.
    rows : int
        Rows in the output (all runs).
    failed : int
        Items recorded in the errors file (all runs).
    featurized : int
        Items featurized by this run.
    resumed_from : int
        Input position this run started at (0 for a fresh job).
    seconds : float
        Duration of this run.
    errors_path : str or None
        The errors file (``on_error="skip"``), if any item failed.
    manifest_path : str
        The job's manifest.
    skipped : int, default=0
        Folder entries not followed (links out of the folder, loops, FIFOs, ...), see ``skipped_path``.
    skipped_path : str or None, default=None
        The list of skipped folder entries (``<stem>.skipped.jsonl``).
    """

    out: str
    rows: int  # rows in the output (all runs)
    failed: int  # items recorded in the errors file (all runs)
    featurized: int  # items featurized by this run
    resumed_from: int  # input position this run started at (0 for a fresh job)
    seconds: float
    errors_path: str | None
    manifest_path: str
    skipped: int = 0  # folder entries not followed (links out of the folder, loops, ...), see skipped_path
    skipped_path: str | None = None


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


def _is_fitted(f) -> bool:
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    try:
        check_is_fitted(f)
    except NotFittedError:
        return False
    return True


def make_featurizer(featurizer="image", params: dict | None = None):
    """An unfitted featurizer: a name/class built with ``params``, or a clone of an instance with them set."""
    from sklearn.base import clone

    params = dict(params or {})
    if hasattr(featurizer, "get_params") and not inspect.isclass(featurizer):
        if not params and _is_fitted(featurizer):
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


def _wants_paths(f, root) -> bool:
    """Whether table cells are image paths to resolve against ``root``: for an ``ImageFeaturizer`` (or a
    subclass), or whenever ``root`` is given."""
    image = sys.modules.get("skfeaturize.image")  # loaded whenever f is one
    return root is not None or (image is not None and isinstance(f, image.ImageFeaturizer))


def _fit(f, source: InputSource, fit_rows: int, chunk_size: int) -> None:
    if _is_fitted(f):
        return
    if not fit_rows:
        try:
            f.fit(None)
        except FitDataRequiredError as e:
            raise FitDataRequiredError(
                f"{type(f).__name__} learns from the data with these parameters ({e}). A bulk job fits on "
                "nothing by default: pass --fit-rows N (fit_rows=N) to fit on the first N items, or "
                "--fit-rows -1 to fit on all of them (held in memory).") from e
        return
    fit_X: list = []
    for chunk in source.chunks(chunk_size):
        fit_X.extend(chunk.samples)
        if 0 < fit_rows <= len(fit_X):
            fit_X = fit_X[:fit_rows]
            break
    f.fit(fit_X)


# -- paths -------------------------------------------------------------------------------------------
def _paths(out: str, fmt: str) -> dict:
    out = os.path.expanduser(os.fspath(out))
    p = Path(out)
    stem = p.with_suffix("") if p.suffix else p
    return {"out": p, "parts": p if fmt == "parquet" else Path(out + ".parts"),
            "errors": Path(f"{stem}.errors.jsonl"), "skipped": Path(f"{stem}.skipped.jsonl"),
            "ids": Path(f"{stem}.ids.parquet")}


def _remove_job(paths: dict) -> None:
    parts = paths["parts"]
    if parts.exists():
        if parts.is_dir() and ((parts / MANIFEST).exists() or holds_only_temp_files(parts)):
            shutil.rmtree(parts)
        else:
            raise FileExistsError(f"--overwrite would delete {str(parts)!r}, which is not a skfeaturize job "
                                  "folder (no _manifest.json); remove it yourself or choose another OUT.")
    for key in ("errors", "skipped", "ids") + (("out",) if paths["out"] != parts else ()):
        if paths[key].exists() and paths[key].is_file():
            paths[key].unlink()


# -- opening OUT: new, resumed, complete, or refused ---------------------------------------------------
def _open_job(f, source: InputSource, paths: dict, fmt: str, layout: str, log: Progress):
    """``(store, complete)``: the job's store, ready to run (or complete: nothing to do)."""
    parts, where = paths["parts"], str(paths["parts"])
    store = ShardStore(parts)
    identity = job_identity(f, source, fmt, layout)
    old = store.load() if parts.is_dir() else None
    if old is None:
        if parts.exists() and (not parts.is_dir() or not holds_only_temp_files(parts)):
            raise FileExistsError(f"out={where!r} exists and is not a skfeaturize job folder (no "
                                  "_manifest.json); choose another output or remove it.")
        store.create(identity)
        return store, False
    if old.get("format_version") != FORMAT_VERSION and store.rows == 0:
        store.create(identity)  # nothing to keep
        return store, False
    if old.get("format_version") != FORMAT_VERSION:
        raise ResumeMismatchError(
            f"{where!r} holds a job written by another skfeaturize version (manifest format "
            f"{old.get('format_version')!r}, this version writes {FORMAT_VERSION}); it cannot be checked for "
            "resumption. Pass --overwrite (overwrite=True) to start over.")
    diff = mismatch(old["job"], identity, old["complete"])
    if diff and store.rows == 0:  # an earlier attempt committed nothing: it locks nothing
        log.log(f"skfeaturize embed: {where!r} holds an earlier attempt that wrote no row; starting over "
                f"with the new parameters ({diff})")
        store.create(identity)
        return store, False
    if diff:
        raise ResumeMismatchError(
            f"{where!r} holds a job started with different parameters or input ({diff}). Rerun with the "
            "original parameters to resume it, or pass --overwrite (overwrite=True) to delete it and start "
            "over.")
    if old["complete"]:
        _finish_complete(store, paths, fmt, where)
        return store, True
    store.clean_uncommitted()
    missing = store.missing_shards()
    if missing:
        raise ResumeMismatchError(f"{where!r}: committed shard(s) {missing[:3]} are missing (deleted?); the "
                                  "job cannot resume. Pass --overwrite (overwrite=True) to start over.")
    if store.position:
        log.log(f"skfeaturize embed: checking the {store.position} items committed earlier (ids and "
                "content hashes)")
        verify_committed(f, source, store, where)
    return store, False


def _finish_complete(store: ShardStore, paths: dict, fmt: str, where: str) -> None:
    if fmt == "npy":
        if not paths["out"].is_file() or not paths["ids"].is_file():
            raise ResumeMismatchError(
                f"{where!r} holds a complete job, but {str(paths['out'])!r} or {str(paths['ids'])!r} is "
                "missing (deleted?). Pass --overwrite (overwrite=True) to compute it again.")
        remove_shards(store)  # a kill while the shards were being deleted left some


def _record_skipped(source: InputSource, paths: dict, log: Progress, rows: int) -> list:
    skipped = source.listing().skipped if source.kind == "folder" else []
    if not skipped:
        paths["skipped"].unlink(missing_ok=True)
        return []
    atomic_write_bytes(paths["skipped"], json_lines([{"path": s.path, "reason": s.reason} for s in skipped]),
                       rows=rows)
    for s in skipped[:_MAX_SKIPPED_LINES]:
        log.log(f"skfeaturize embed: skipped {s.path!r}: {s.reason}")
    if len(skipped) > _MAX_SKIPPED_LINES:
        log.log(f"skfeaturize embed: ... and {len(skipped) - _MAX_SKIPPED_LINES} more skipped entries, all "
                f"listed in {str(paths['skipped'])!r}")
    return skipped


def _check_options(format, layout, on_error, engine, chunk_size) -> None:
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


# -- the job -----------------------------------------------------------------------------------------
def embed(input, out, *, featurizer="image", params: dict | None = None, model=None, layer=None,
          pooling=None, batch_size: int | None = None, device: str | None = None, cache=None,
          column: str | None = None, id_column: str | None = None, extensions=None, root=None,
          encoding: str = "utf-8", follow_symlinks: bool = False, chunk_size: int = 256,
          format: str = "parquet", layout: str = "list", on_error: str = "raise", overwrite: bool = False,
          fit_rows: int = 0, engine: str = "local", ray_address: str | None = None,
          concurrency: int | None = None, gpus_per_actor: float | None = None, progress: str = "auto",
          quiet: bool = False, log_every: float = 10.0) -> EmbedResult:
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
    featurizer : str, featurizer class or instance, default="image"
        ``"image"``, ``"text"``, ``"words"`` (:class:`~skfeaturize.ImageFeaturizer`,
        :class:`~skfeaturize.TextFeaturizer`, :class:`~skfeaturize.WordVectorFeaturizer`),
        ``"package.module:Class"`` or a class (built with ``params``), or an instance (used as it is; a
        fitted one is not fitted again).
    params : dict or None, default=None
        Featurizer parameters; ``model`` (the first constructor parameter: ``backbone``/``model``/
        ``vectors``), ``layer``, ``pooling``, ``batch_size``, ``device`` and ``cache`` override them.
    model : str, path or None, default=None
        The featurizer's first parameter (``backbone``, ``model`` or ``vectors``); ``None``: its default.
    layer : int, str, list or None, default=None
        The featurizer's ``layer``; ``None``: its default.
    pooling : str or None, default=None
        The featurizer's ``pooling``; ``None``: its default.
    batch_size : int or None, default=None
        The featurizer's ``batch_size``; ``None``: its default.
    device : str or None, default=None
        The featurizer's ``device``; ``None``: its default.
    cache : str, path, EmbeddingCache or None, default=None
        Passed as the featurizer's ``cache=``: the job reads hits from it and fills it, so a later
        ``GridSearchCV`` with the same featurizer starts warm.
    column : str or None, default=None
        Table input: the column holding the samples (paths or texts). ``None``: the only column, else the
        first of ``text``, ``path``, ``image``, ``filename``, ``file``, ``document``, ``sentence``.
    id_column : str or None, default=None
        Table input: the column holding the ids. ``None``: the row number from 0.
    extensions : list of str or None, default=None
        Folder input: image extensions to take (``None``: jpg, jpeg, png, bmp, gif, tif, tiff, webp,
        ppm, pgm).
    root : str, path or None, default=None
        Folder that relative paths in a table column are relative to (``None``: the table's folder).
        Table cells are treated as paths for an ``ImageFeaturizer``, or for any featurizer when ``root``
        is given.
    encoding : str, default="utf-8"
        Text-file input: its encoding (a line that does not decode becomes a failed item).
    follow_symlinks : bool, default=False
        Folder input: also follow symbolic links that point outside the folder (by default they are
        skipped and listed in ``<stem>.skipped.jsonl``). Each real directory is walked once either way.
    chunk_size : int, default=256
        Items per chunk (and per shard); memory is bounded by a few chunks.
    format : {"parquet", "npy"}, default="parquet"
        Output format (see ``out``).
    layout : {"list", "columns"}, default="list"
        Parquet output: the embedding as one fixed-size list column, or one float32 column per dimension
        named like ``get_feature_names_out()``.
    on_error : {"raise", "skip"}, default="raise"
        ``"raise"`` stops at the first bad item with its id, position and cause (the items before it are
        kept, and the same command resumes at it once it is fixed or removed); ``"skip"`` records failed
        items in ``<stem>.errors.jsonl`` and carries on.
    overwrite : bool, default=False
        Delete an existing job in ``out`` and start over; otherwise a job with the same parameters and
        input resumes where it stopped, and one with different parameters is refused (unless it had not
        written any row yet).
    fit_rows : int, default=0
        ``0``: ``fit(None)`` (pretrained featurizers learn nothing). ``N > 0``: fit on the first ``N``
        items; ``-1``: on all items (held in memory), for fitted poolings such as ``tfidf``/``sif``.
        A fitted instance passed as ``featurizer`` is used as it is.
    engine : {"local", "ray"}, default="local"
        ``"ray"`` runs the chunks on Ray actors (one featurizer per actor, a bounded number of chunks in
        flight), see ``ray_address``, ``concurrency`` and ``gpus_per_actor``.
    ray_address : str or None, default=None
        Ray cluster address (``"auto"``, ``"ray://head:10001"``); ``None``: ``$RAY_ADDRESS``, else a local
        Ray instance. A Ray already initialised in this process (``ray.init(...)``) is used as it is.
    concurrency : int or None, default=None
        Ray actors; ``None``: the cluster's GPUs divided by ``gpus_per_actor``, else half its CPUs.
    gpus_per_actor : float or None, default=None
        GPUs per Ray actor; ``None``: 1 when the cluster has GPUs, else 0.
    progress : {"auto", "bar", "log", "off"}, default="auto"
        ``"auto"``: a tqdm bar on a terminal, a log line every ``log_every`` seconds otherwise.
    quiet : bool, default=False
        No progress output at all (same as ``progress="off"``).
    log_every : float, default=10.0
        Seconds between two progress log lines.

    Returns
    -------
    EmbedResult
        Rows written, failed and featurized items, where the run resumed, and the paths it wrote.

    Raises
    ------
    SampleFailedError
        ``on_error="raise"`` and an item failed (the message names its id and position).
    ResumeMismatchError
        ``out`` holds a job with other parameters, or committed items changed since.
    FitDataRequiredError
        The featurizer learns from the data and ``fit_rows=0``.
    OutputWriteError
        The output cannot be written (disk full, read-only); the manifest is intact.
    """
    t0 = time.monotonic()
    _check_options(format, layout, on_error, engine, chunk_size)
    params = dict(params or {})
    first = model_param(type(make_featurizer(featurizer, {})))
    for key, value in ((first, model), ("layer", layer), ("pooling", pooling), ("batch_size", batch_size),
                       ("device", device), ("cache", cache)):
        if value is not None:
            params[key] = value
    f = make_featurizer(featurizer, params)
    source = open_input(input, column=column, id_column=id_column, extensions=extensions, root=root,
                        paths=_wants_paths(f, root), encoding=encoding, follow_symlinks=follow_symlinks)
    _fit(f, source, fit_rows, chunk_size)
    paths = _paths(out, format)
    mode = "off" if quiet else progress
    log = Progress(None, mode="off" if mode == "off" else "log", every=log_every)
    if overwrite:
        _remove_job(paths)
    store, complete = _open_job(f, source, paths, format, layout, log)
    skipped = _record_skipped(source, paths, log, store.rows)
    if complete:
        log.log(f"skfeaturize embed: {str(paths['out'])!r} is already complete ({store.rows} rows); nothing "
                "to do (--overwrite starts over).")
        return _result(paths, store, 0, t0, skipped)
    _run(f, source, store, paths, mode=mode, every=log_every, chunk_size=chunk_size, on_error=on_error,
         layout=layout, engine=engine, ray=dict(address=ray_address, concurrency=concurrency,
                                                gpus_per_actor=gpus_per_actor))
    if format == "npy":
        consolidate(store, paths)
    else:
        store.finish()
    result = _result(paths, store, store.manifest["runs"][-1]["featurized"], t0, skipped)
    log.log(f"skfeaturize embed: done: {result.rows} rows in {str(paths['out'])!r}, {result.failed} failed, "
            f"featurized {result.featurized} items in this run (resumed from {result.resumed_from}), "
            f"{result.seconds:.1f} s")
    return result


def _run(f, source, store, paths, *, mode, every, chunk_size, on_error, layout, engine, ray) -> None:
    store.start_run(engine)
    prog = Progress(source.total, done=store.position, mode=mode, every=every)
    if store.position:
        prog.log(f"skfeaturize embed: resuming at item {store.position} ({store.rows} rows already written)")
    job = store.manifest["job"]
    metadata = {k: job[k] for k in ("featurizer", "params", "fingerprint", "skfeaturize")}
    writer = ChunkWriter(f, store, id_type=source.id_type, layout=layout, metadata=metadata,
                         on_error=on_error, progress=prog)
    try:
        if engine == "ray":
            from ._ray import run_ray

            run_ray(f, source, writer, chunk_size=chunk_size, **ray)
        else:
            run_local(f, source, writer, chunk_size=chunk_size)
    except BaseException:
        prog.close()
        with contextlib.suppress(OSError):  # the job's own error is the one to report
            store.write_errors_file(paths["errors"])
        raise
    prog.close()
    store.write_errors_file(paths["errors"])


def _result(paths, store, featurized, t0, skipped) -> EmbedResult:
    m = store.manifest
    return EmbedResult(out=str(paths["out"]), rows=int(m["rows"]), failed=int(m["errors"]),
                       featurized=int(featurized),
                       resumed_from=int(m["runs"][-1]["resumed_from"]) if m["runs"] else 0,
                       seconds=time.monotonic() - t0,
                       errors_path=str(paths["errors"]) if paths["errors"].exists() else None,
                       manifest_path=str(paths["parts"] / MANIFEST), skipped=len(skipped),
                       skipped_path=str(paths["skipped"]) if skipped else None)


def run_local(f, source: InputSource, writer: ChunkWriter, *, chunk_size: int) -> None:
    """Featurize chunk after chunk in this process; commit each as a shard. Progress moves per batch: the
    featurizer's ``progress`` parameter (a runtime one) is the job's counter for the run."""
    with _batch_progress(f, writer.progress.batch):
        for chunk in _prefetch(source.chunks(chunk_size, skip=writer.store.position)):
            writer.commit(chunk, featurize_chunk(f, chunk.samples, chunk.start, writer.on_error,
                                                 with_names=writer.wants_names))


@contextlib.contextmanager
def _batch_progress(f, callback):
    """``f.progress = callback`` for the run, the original value restored after."""
    if "progress" not in f.get_params(deep=False):
        yield
        return
    original = f.get_params(deep=False)["progress"]
    f.set_params(progress=callback)
    try:
        yield
    finally:
        f.set_params(progress=original)


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


def read_embeddings(out) -> tuple:
    """The output of a finished job (either format), in input order.

    Parameters
    ----------
    out : str or path
        The job's ``out``: a Parquet folder, or the ``.npy`` file.

    Returns
    -------
    ids : list
        The items' ids (relative paths, ids from ``id_column``, or row/line numbers).
    content_hashes : list of str
        Each item's content key (``f.content_key``).
    X : ndarray of float32, shape (n_items, n_features)
        The embeddings (a read-only memory map for ``.npy``).
    """
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


__all__ = ["embed", "EmbedResult", "SampleFailedError", "ResumeMismatchError", "read_embeddings"]
