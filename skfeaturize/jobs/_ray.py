"""The Ray engine of :func:`skfeaturize.jobs.embed`: the same chunks, featurized by a Ray Data actor pool.

The driver reads the input with the same lazy reader as the local engine (ids and positions must be exactly
those of a local run for the output and resumption to match), puts each chunk in Ray's object store, and
builds one ``ray.data`` dataset over them. ``Dataset.map_batches`` runs :class:`_FeaturizeActor`, a callable
class, in an actor pool (``concurrency`` actors, ``num_gpus`` each): every actor unpickles the featurizer
specification once and loads the backbone once, on its first chunk; the decoding, preprocessing and forward
passes, the heavy part of reading, run in parallel on the actors. Results stream back in input order
(``preserve_order``) and the driver commits them as Parquet shards with the same schema and manifest as the
local engine, so a Ray job resumes exactly (even with the local engine, and vice versa).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from .._optional import import_optional
from ._embed import SampleFailedError, ShardBuilder, featurize_chunk


class _FeaturizeActor:
    """One featurizer per actor; called with one chunk (a pandas DataFrame), returns numpy columns."""

    def __init__(self, featurizer, on_error: str):
        self.f = featurizer
        self.on_error = on_error
        self.width = None

    def __call__(self, batch):
        samples = batch["sample"].tolist()
        ids = batch["id"].tolist()
        pos = batch["_pos"].to_numpy(np.int64)
        start = int(pos[0]) if len(pos) else 0
        try:
            kept, keys, X, errors = featurize_chunk(self.f, samples, ids, start, "skip")
        except Exception as e:  # noqa: BLE001 - carried back to the driver, which decides
            cause = f"{type(e).__name__}: {e}"
            kept, keys, X = [], [], None
            errors = [{"id": i, "position": int(p), "error": cause} for i, p in zip(ids, pos, strict=True)]
        if self.width is None:
            self.width = X.shape[1] if X is not None and len(kept) else len(self.f.get_feature_names_out())
        n = len(samples)
        emb = np.zeros((n, self.width), np.float32)
        if kept:
            emb[kept] = X
        hashes = np.full(n, "", dtype=object)
        hashes[kept] = keys
        err = np.full(n, "", dtype=object)
        for e in errors:
            err[int(e["position"]) - start] = e["error"]
        return {"_pos": pos, "content_hash": hashes, "error": err, "embedding": emb}


def _init_ray(ray, address):
    if ray.is_initialized():
        return False
    ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    return True


def run_ray(f, source, store, *, chunk_size: int, on_error: str, layout: str, metadata: dict, progress,
            address=None, concurrency=None, gpus_per_actor=None) -> None:
    """Featurize the chunks after ``store.position`` on a Ray actor pool; commit shards in input order."""
    import pandas as pd

    ray = import_optional("ray", "ray")
    started = _init_ray(ray, address)
    try:
        resources = ray.cluster_resources()
        gpus = float(resources.get("GPU", 0))
        if gpus_per_actor is None:
            gpus_per_actor = 1.0 if gpus > 0 else 0.0
        if concurrency is None:
            concurrency = max(1, int(gpus / gpus_per_actor)) if gpus_per_actor else max(
                1, int(resources.get("CPU", 1)) // 2)
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True
        ctx.enable_progress_bars = False

        bounds, refs = [], []
        for chunk in source.chunks(chunk_size, skip=store.position):
            df = pd.DataFrame({"_pos": np.arange(chunk.start, chunk.start + len(chunk), dtype=np.int64),
                               "id": chunk.ids.to_pandas(), "sample": pd.Series(chunk.samples, dtype=object)})
            refs.append(ray.put(df))
            bounds.append((chunk.start, len(chunk), chunk.ids))
        if not refs:
            return
        ds = ray.data.from_pandas_refs(refs).map_batches(
            _FeaturizeActor, fn_constructor_kwargs={"featurizer": f, "on_error": on_error},
            batch_size=None, batch_format="pandas", compute=ray.data.ActorPoolStrategy(size=int(concurrency)),
            num_gpus=gpus_per_actor or None, zero_copy_batch=True,
        )
        builder = ShardBuilder(f, source, layout, metadata, store)
        pending: list[dict] = []
        buffered = 0
        k = 0
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            pending.append(batch)
            buffered += len(batch["_pos"])
            while k < len(bounds) and buffered >= bounds[k][1]:
                start, n, ids = bounds[k]
                cols = {c: np.concatenate([b[c] for b in pending]) for c in pending[0]}
                head = {c: v[:n] for c, v in cols.items()}
                rest = {c: v[n:] for c, v in cols.items()}
                pending = [rest] if len(rest["_pos"]) else []
                buffered -= n
                k += 1
                if not np.array_equal(head["_pos"], np.arange(start, start + n)):
                    raise RuntimeError("Ray returned rows out of order; this is a bug in skfeaturize.")
                err = head["error"]
                failed = [i for i in range(n) if err[i]]
                errors = [{"id": ids[i].as_py(), "position": start + i, "error": str(err[i])} for i in failed]
                if errors and on_error == "raise":
                    e = errors[0]
                    raise SampleFailedError(
                        f"Input item {e['id']!r} (position {e['position']}) failed: {e['error']}. Fix or "
                        "remove it, or pass --on-error skip (on_error='skip') to record failures in the "
                        "errors file and carry on.", id=e["id"], position=e["position"])
                kept = [i for i in range(n) if not err[i]]
                emb = np.asarray(head["embedding"], dtype=np.float32).reshape(n, -1)[kept]
                table = builder.table(ids.take(pa.array(kept, pa.int64())),
                                      [str(h) for h in head["content_hash"][kept]], emb)
                store.commit(table, start, start + n, errors)
                progress.update(n)
    finally:
        if started:
            ray.shutdown()
