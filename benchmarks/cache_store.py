"""Throughput of the embedding store: write and read 1280-d vectors in batches of 256.

Compares, in the same run, skfeaturize's ``EmbeddingCache`` (SQLite WAL, float32 and float16) with the
hand-written cache people write first: one ``.npy`` file per entry, written to a temporary file and renamed
into place (the crash-safe variant; fsync per file would be slower still). Every read is checked against
what was written, so a faster store cannot return different numbers.

    python benchmarks/cache_store.py [--n 25600] [--dim 1280] [--batch 256]

Prints a table and saves ``benchmarks/results/cache_store.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from skfeaturize.cache import EmbeddingCache  # noqa: E402
from skfeaturize.cache._keys import hash_bytes  # noqa: E402

NS = "bench"


def _data(n: int, dim: int) -> tuple[list[str], np.ndarray]:
    keys = [hash_bytes(str(i).encode()) for i in range(n)]  # realistic keys: 40 hex chars, random order
    return keys, np.random.default_rng(0).standard_normal((n, dim)).astype(np.float32)


def _bench_sqlite(
    folder: str, dtype: str, keys: list[str], vecs: np.ndarray, batch: int, max_bytes: int | None = None
) -> dict:
    cache = EmbeddingCache(folder, dtype=dtype, max_bytes=max_bytes)
    n = len(keys)
    t0 = time.perf_counter()
    for s in range(0, n, batch):
        cache.put_many(NS, keys[s : s + batch], vecs[s : s + batch], {"backbone": "bench"})
    write_s = time.perf_counter() - t0
    cache.close()
    cache = EmbeddingCache(folder, dtype=dtype, max_bytes=max_bytes)  # fresh connection
    order = np.random.default_rng(1).permutation(n)
    expected = cache.roundtrip(vecs)
    t0 = time.perf_counter()
    hits = 0
    equal = True
    for s in range(0, n, batch):
        idx = order[s : s + batch]
        got = cache.get_many(NS, [keys[i] for i in idx])
        hits += len(got)
        rows = np.stack([got[keys[i]] for i in idx])
        equal &= bool(np.array_equal(rows, expected[idx]))
    read_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for s in range(0, n, batch):
        cache.get_many("other-namespace", keys[s : s + batch])
    miss_s = time.perf_counter() - t0
    cache.vacuum()
    disk = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))
    with sqlite3.connect(cache.db_path) as raw:
        page_size = raw.execute("PRAGMA page_size").fetchone()[0]
    cache.close()
    return {
        "store": f"EmbeddingCache(dtype='{dtype}'{'' if max_bytes is None else ', max_bytes=2n'})",
        "write_per_s": n / write_s, "read_hit_per_s": n / read_s,
        "read_miss_per_s": n / miss_s, "disk_bytes_per_entry": disk / n, "hits": hits, "equal": equal,
        "page_size": page_size,
    }


def _bench_npy(folder: str, keys: list[str], vecs: np.ndarray, batch: int) -> dict:
    n = len(keys)
    os.makedirs(folder, exist_ok=True)

    def path(k: str) -> str:
        return os.path.join(folder, k[:2], k + ".npy")

    t0 = time.perf_counter()
    for s in range(0, n, batch):
        for k, v in zip(keys[s : s + batch], vecs[s : s + batch], strict=True):
            p = path(k)
            os.makedirs(os.path.dirname(p), exist_ok=True)
            tmp = p + f".tmp{os.getpid()}"
            with open(tmp, "wb") as f:
                np.save(f, v)
            os.replace(tmp, p)
    write_s = time.perf_counter() - t0
    order = np.random.default_rng(1).permutation(n)
    t0 = time.perf_counter()
    hits, equal = 0, True
    for s in range(0, n, batch):
        idx = order[s : s + batch]
        got = {}
        for i in idx:
            try:
                got[keys[i]] = np.load(path(keys[i]))
            except FileNotFoundError:
                pass
        hits += len(got)
        equal &= bool(np.array_equal(np.stack([got[keys[i]] for i in idx]), vecs[idx]))
    read_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for s in range(0, n, batch):
        for k in keys[s : s + batch]:
            os.path.exists(path(k) + "x")
    miss_s = time.perf_counter() - t0
    disk = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(folder) for f in fs)
    return {
        "store": "npy file per entry (tmp + rename)", "write_per_s": n / write_s,
        "read_hit_per_s": n / read_s,
        "read_miss_per_s": n / miss_s, "disk_bytes_per_entry": disk / n, "hits": hits, "equal": equal,
        "page_size": None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=25_600, help="entries (default 25600 = 100 batches)")
    ap.add_argument("--dim", type=int, default=1280)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "cache_store.json"))
    args = ap.parse_args()
    keys, vecs = _data(args.n, args.dim)
    rows = []
    root = tempfile.mkdtemp(prefix="skf-bench-")
    try:
        rows.append(_bench_sqlite(os.path.join(root, "f32"), "float32", keys, vecs, args.batch))
        rows.append(_bench_sqlite(os.path.join(root, "f16"), "float16", keys, vecs, args.batch))
        # bounded (LRU bookkeeping on every read) but large enough that nothing is evicted
        big = 2 * args.n * args.dim * 4
        rows.append(_bench_sqlite(os.path.join(root, "f32max"), "float32", keys, vecs, args.batch, big))
        rows.append(_bench_npy(os.path.join(root, "npy"), keys, vecs, args.batch))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    for r in rows:
        assert r["hits"] == args.n and r["equal"], f"{r['store']} returned wrong vectors"
    vec_bytes = args.dim * 4
    print(f"{args.n} entries of {args.dim}-d float32 ({vec_bytes} B), batches of {args.batch}, {root}")
    header = f"{'store':44} {'write/s':>9} {'read hit/s':>11} {'miss/s':>9} {'disk B/entry':>13} {'equal':>6}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['store']:44} {r['write_per_s']:9.0f} {r['read_hit_per_s']:11.0f} "
            f"{r['read_miss_per_s']:9.0f} {r['disk_bytes_per_entry']:13.0f} {str(r['equal']):>6}"
        )
    result = {
        "workload": {"n": args.n, "dim": args.dim, "batch": args.batch, "vector_dtype_in": "float32"},
        "machine": {
            "python": platform.python_version(), "sqlite": sqlite3.sqlite_version, "cpus": os.cpu_count(),
            "platform": platform.platform(), "tmpdir": tempfile.gettempdir(),
        },
        "results": rows,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
