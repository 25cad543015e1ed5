"""The Ray engine of :func:`skfeaturize.jobs.embed`: the same chunks, featurized by a pool of Ray actors.

The driver reads the input lazily with the same reader as the local engine (ids and positions must be
exactly those of a local run for the output and resumption to match) and keeps at most ``max_in_flight``
chunks (two per actor) submitted and not yet committed: reading stops while the actors are busy, so the
driver's memory does not grow with the input. :class:`ray.util.ActorPool` hands each chunk to an idle actor
and gives the results back in submission order; each actor holds one featurizer (unpickled once from the
object store, backbone loaded on its first chunk) and runs :func:`._chunks.featurize_chunk`, the decoding,
preprocessing and forward passes. The driver commits the results with the same
:class:`._chunks.ChunkWriter` as the local engine: same shards, schema, manifest, errors and messages, so a
Ray job resumes exactly (even with the local engine, and vice versa).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator

from .._optional import import_optional
from ._chunks import ChunkResult, featurize_chunk


class _ChunkWorker:
    """One featurizer per actor."""

    def __init__(self, featurizer):
        self.f = featurizer

    def featurize(self, samples: list, start: int, on_error: str, with_names: bool) -> ChunkResult:
        return featurize_chunk(self.f, samples, start, on_error, with_names=with_names)


def ordered_results(pool, chunks: Iterable, call: Callable, max_in_flight: int) -> Iterator[tuple]:
    """``(chunk, result)`` in input order, with at most ``max_in_flight`` chunks read and not yet yielded.

    ``pool`` is a :class:`ray.util.ActorPool` (``submit(fn, value)``, ``get_next()`` in submission order)."""
    in_flight: deque = deque()
    for chunk in chunks:
        pool.submit(call, chunk)
        in_flight.append(chunk)
        if len(in_flight) >= max_in_flight:
            yield in_flight.popleft(), pool.get_next()
    while in_flight:
        yield in_flight.popleft(), pool.get_next()


def _init_ray(ray, address):
    if ray.is_initialized():
        return False
    ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    return True


def _pool_shape(ray, concurrency, gpus_per_actor) -> tuple[int, float, float]:
    """``(actors, GPUs per actor, CPUs per actor)`` from the options and the cluster's resources."""
    resources = ray.cluster_resources()
    gpus, cpus = float(resources.get("GPU", 0)), float(resources.get("CPU", 1))
    if gpus_per_actor is None:
        gpus_per_actor = 1.0 if gpus > 0 else 0.0
    if concurrency is None:
        concurrency = max(1, int(gpus / gpus_per_actor)) if gpus_per_actor else max(1, int(cpus) // 2)
    # more actors than CPUs would wait forever for a CPU: share them instead
    return int(concurrency), float(gpus_per_actor), min(1.0, cpus / int(concurrency))


def run_ray(f, source, writer, *, chunk_size: int, address=None, concurrency=None, gpus_per_actor=None,
            max_in_flight: int | None = None) -> None:
    """Featurize the chunks after ``writer.store.position`` on Ray actors; commit them in input order."""
    ray = import_optional("ray", "ray")
    from ray.util import ActorPool

    started = _init_ray(ray, address)
    actors = []
    try:
        n, gpus, cpus = _pool_shape(ray, concurrency, gpus_per_actor)
        worker = ray.remote(num_cpus=cpus, num_gpus=gpus)(_ChunkWorker)
        spec = ray.put(f)  # one copy in the object store, unpickled once per actor
        actors = [worker.remote(spec) for _ in range(n)]

        def call(actor, chunk):
            return actor.featurize.remote(chunk.samples, chunk.start, writer.on_error, writer.wants_names)

        chunks = source.chunks(chunk_size, skip=writer.store.position)
        for chunk, result in ordered_results(ActorPool(actors), chunks, call, max_in_flight or 2 * n):
            writer.commit(chunk, result)
    finally:
        for a in actors:
            ray.kill(a)
        if started:
            ray.shutdown()
