"""Tests of the embedding store (skfeaturize.cache) and its content keys: real processes, real kills."""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import signal
import sqlite3
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

from skfeaturize.cache import (
    CacheError,
    EmbeddingCache,
    NetworkFilesystemWarning,
    _keys,
    _store,
    network_filesystem,
    resolve_cache,
)
from skfeaturize.exceptions import CacheCorruptionWarning, SkfeaturizeError

REPO = Path(__file__).resolve().parents[1]
NS = "ns-resnet50-layer4-avg"
DESC = {"backbone": "resnet50", "weights": "IMAGENET1K_V2", "layer": "layer4", "pooling": "avg"}


def _vectors(n: int, dim: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def _keys_for(n: int, prefix: str = "k") -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


def _run_python(code: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=str(REPO), capture_output=True, text=True,
        timeout=timeout, check=True,
    )


# ---------------------------------------------------------------------------------------------- round trip
def test_import_does_not_load_torch():
    out = _run_python("import sys, skfeaturize.cache; print('torch' in sys.modules)")
    assert out.stdout.strip() == "False"


def test_put_get_is_bit_identical_float32(tmp_path):
    cache = EmbeddingCache(tmp_path)
    v = _vectors(50, 384)
    v[0, :3] = [np.float32(1e-38), np.float32(-0.0), np.float32(3.4e38)]  # extreme but finite values
    cache.put_many(NS, _keys_for(50), v, DESC)
    got = cache.get_many(NS, _keys_for(50))
    assert len(got) == 50
    for i, k in enumerate(_keys_for(50)):
        assert got[k].dtype == np.float32 and got[k].shape == (384,)
        assert np.array_equal(got[k], v[i])
        assert got[k].tobytes() == v[i].tobytes()  # bit for bit, -0.0 included
    assert np.array_equal(cache.roundtrip(v), v)
    assert cache.dim(NS) == 384
    assert cache.dim("never-written") is None
    got[_keys_for(1)[0]][0] = 42.0  # returned arrays are writable copies


def test_get_many_returns_only_hits_and_accepts_many_keys(tmp_path):
    cache = EmbeddingCache(tmp_path)
    keys = _keys_for(1800)  # more than one SQL chunk
    v = _vectors(1800, 8)
    cache.put_many(NS, keys[::2], v[::2])
    got = cache.get_many(NS, keys)
    assert sorted(got) == sorted(keys[::2])
    assert all(np.array_equal(got[k], v[i]) for i, k in enumerate(keys) if i % 2 == 0)
    assert cache.get_many(NS, []) == {}


def test_stored_keys_says_which_keys_have_entries_without_reading_them(tmp_path, monkeypatch):
    cache = EmbeddingCache(tmp_path)
    keys = _keys_for(1800)  # more than one SQL chunk
    cache.put_many(NS, keys[::3], _vectors(600, 8))
    monkeypatch.setattr(EmbeddingCache, "_decode", lambda *a: pytest.fail("stored_keys decoded a vector"))
    assert cache.stored_keys(NS, keys) == set(keys[::3])
    assert cache.stored_keys("other-namespace", keys) == set() and cache.stored_keys(NS, []) == set()
    with pytest.raises(TypeError, match="stored_keys: keys must be a sequence of str"):
        cache.stored_keys(NS, "k0")


def test_float16_storage_equals_roundtrip_and_is_smaller(tmp_path):
    v = _vectors(400, 1280, seed=1)
    f32 = EmbeddingCache(tmp_path / "f32")
    f16 = EmbeddingCache(tmp_path / "f16", dtype="float16")
    empty = EmbeddingCache(tmp_path / "empty")
    empty.put_many(NS, ["x"], v[:1], DESC)
    empty.clear()
    empty.vacuum()
    for c in (f32, f16):
        c.put_many(NS, _keys_for(400), v, DESC)
        c.vacuum()
    rt = f16.roundtrip(v)
    assert rt.dtype == np.float32
    assert not np.array_equal(rt, v) and np.allclose(rt, v, atol=2e-3)
    got = f16.get_many(NS, _keys_for(400))
    assert all(np.array_equal(got[k], rt[i]) for i, k in enumerate(_keys_for(400)))
    assert f16.size_bytes() * 2 == f32.size_bytes() == 400 * 1280 * 4
    overhead = os.path.getsize(empty.db_path)  # the schema's own pages (tables, indexes, stats, plans)
    size32 = os.path.getsize(f32.db_path) - overhead
    size16 = os.path.getsize(f16.db_path) - overhead
    assert size16 < 0.6 * size32, (size16, size32)  # 4 KiB pages would give 0.75 here


def test_float16_overflow_row_is_stored_as_float32(tmp_path):
    # 0.1 stored 1e6 as inf (RuntimeWarning); now that entry alone keeps float32 (see test_cache_faults.py)
    cache = EmbeddingCache(tmp_path, dtype="float16")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cache.put_many(NS, ["big", "small"], np.array([[1e6, 1.0], [2.0, 0.1]], dtype=np.float32)) == 2
    got = cache.get_many(NS, ["big", "small"])
    assert got["big"].tolist() == [1e6, 1.0]
    assert got["small"].tolist() == [2.0, float(np.float16(0.1))]
    assert cache.size_bytes() == 2 * 4 + 2 * 2


def test_namespaces_isolate_same_key(tmp_path):
    cache = EmbeddingCache(tmp_path)
    a, b = _vectors(1, 16, seed=2), _vectors(1, 16, seed=3)
    cache.put_many("ns-a", ["same"], a)
    assert cache.get_many("ns-b", ["same"]) == {}
    cache.put_many("ns-b", ["same"], b)
    assert np.array_equal(cache.get_many("ns-a", ["same"])["same"], a[0])
    assert np.array_equal(cache.get_many("ns-b", ["same"])["same"], b[0])
    assert len(cache) == 2


def test_replace_overwrites_and_keeps_counts_exact(tmp_path):
    cache = EmbeddingCache(tmp_path)
    cache.put_many(NS, _keys_for(10), _vectors(10, 32, seed=0))
    new = _vectors(10, 32, seed=9)
    cache.put_many(NS, _keys_for(10), new)
    assert len(cache) == 10 and cache.size_bytes() == 10 * 32 * 4
    got = cache.get_many(NS, _keys_for(10))
    assert all(np.array_equal(got[k], new[i]) for i, k in enumerate(_keys_for(10)))
    with sqlite3.connect(cache.db_path) as raw:
        assert raw.execute("SELECT COUNT(*), SUM(nbytes) FROM entries").fetchone() == (10, 10 * 32 * 4)


def test_persists_across_instances_and_processes(tmp_path):
    v = _vectors(20, 64, seed=5)
    EmbeddingCache(tmp_path).put_many(NS, _keys_for(20), v, DESC)
    fresh = EmbeddingCache(tmp_path)
    got = fresh.get_many(NS, _keys_for(20))
    assert all(np.array_equal(got[k], v[i]) for i, k in enumerate(_keys_for(20)))
    # another process reads what this one wrote, and writes what this one then reads
    code = textwrap.dedent(f"""
        import numpy as np
        from skfeaturize.cache import EmbeddingCache
        c = EmbeddingCache({str(tmp_path)!r})
        v = np.random.default_rng(5).standard_normal((20, 64)).astype(np.float32)
        got = c.get_many({NS!r}, [f"k{{i}}" for i in range(20)])
        print(sum(np.array_equal(got[f"k{{i}}"], v[i]) for i in range(20)))
        c.put_many({NS!r}, ["from-child"], np.full((1, 64), 7.5, dtype=np.float32))
    """)
    assert _run_python(code).stdout.strip() == "20"
    assert np.array_equal(fresh.get_many(NS, ["from-child"])["from-child"], np.full(64, 7.5, np.float32))
    assert len(fresh) == 21


# ---------------------------------------------------------------------------------------------- concurrency
def _concurrent_value(worker: int, i: int, dim: int = 64) -> np.ndarray:
    return np.random.default_rng([worker, i]).standard_normal(dim).astype(np.float32)


def _concurrent_worker(cache: EmbeddingCache, worker: int, n: int, batch: int, nworkers: int) -> None:
    bad = 0
    for start in range(0, n, batch):
        idx = range(start, start + batch)
        keys = [f"w{worker}-{i}" for i in idx]
        cache.put_many(NS, keys, np.stack([_concurrent_value(worker, i) for i in idx]), DESC)
        # read back our own batch and whatever another worker has written so far
        own = cache.get_many(NS, keys)
        bad += sum(not np.array_equal(own.get(f"w{worker}-{i}"), _concurrent_value(worker, i)) for i in idx)
        other = (worker + 1) % nworkers
        theirs = cache.get_many(NS, [f"w{other}-{i}" for i in range(n)])
        bad += sum(
            not np.array_equal(v, _concurrent_value(other, int(k.split("-")[1])))
            for k, v in theirs.items()
        )
    os._exit(1 if bad else 0)


def test_four_processes_write_and_read_concurrently(tmp_path):
    cache = EmbeddingCache(tmp_path)
    cache.put_many(NS, ["parent"], np.zeros((1, 64), np.float32), DESC)  # parent holds an open connection
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    nworkers, n, batch = 4, 300, 10
    procs = [
        ctx.Process(target=_concurrent_worker, args=(cache, w, n, batch, nworkers)) for w in range(nworkers)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * nworkers
    keys = [f"w{w}-{i}" for w in range(nworkers) for i in range(n)]
    got = EmbeddingCache(tmp_path).get_many(NS, keys)
    assert len(got) == nworkers * n == 1200
    assert all(np.array_equal(got[k], _concurrent_value(int(k[1]), int(k.split("-")[1]))) for k in keys)
    assert len(cache) == 1201  # the parent's inherited handle still works after the children's forks
    assert cache.size_bytes() == 1201 * 64 * 4


def _count_entries_and_exit(cache: EmbeddingCache) -> None:
    os._exit(0 if len(cache) == 1 else 1)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX-only")
def test_fork_while_another_thread_holds_the_lock(tmp_path):
    import threading

    cache = EmbeddingCache(tmp_path)
    cache.put_many(NS, ["a"], np.ones((1, 4), np.float32))
    held, release = threading.Event(), threading.Event()

    def hold():
        with cache._locked():
            held.set()
            release.wait(30)

    t = threading.Thread(target=hold)
    t.start()
    held.wait(10)
    try:
        child = mp.get_context("fork").Process(target=_count_entries_and_exit, args=(cache,))
        child.start()
        child.join(20)
        assert child.exitcode == 0  # the child got its own lock and connection instead of hanging
    finally:
        release.set()
        t.join()


# ---------------------------------------------------------------------------------------------- crash
_WRITER = """
import sys, numpy as np
from skfeaturize.cache import EmbeddingCache
cache = EmbeddingCache(sys.argv[1])
batch, dim, start = 256, 1280, int(sys.argv[2])
for b in range(start, start + 10_000):
    v = np.random.default_rng(b).standard_normal((batch, dim)).astype(np.float32)
    print("begin", b, flush=True)
    cache.put_many("crash", [f"{b}-{i}" for i in range(batch)], v, {"backbone": "writer"})
    print("done", b, flush=True)
"""


def _kill_writer_mid_batch(path: Path, start: int, kill_after_begins: int) -> set[int]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path), str(start)], env=env, cwd=str(REPO),
        stdout=subprocess.PIPE, text=True,
    )
    done, begins = set(), 0
    try:
        for line in proc.stdout:
            word, b = line.split()
            if word == "done":
                done.add(int(b))
            elif word == "begin":
                begins += 1
                if begins == kill_after_begins:
                    proc.send_signal(signal.SIGKILL)  # while put_many of this batch runs
                    break
    finally:
        proc.kill()
        proc.wait(30)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    return done


def test_sigkill_during_put_many_keeps_committed_entries(tmp_path):
    committed: set[int] = set()
    for round_, kills_at in enumerate((4, 7, 5)):  # three crashes in a row on the same cache
        committed |= _kill_writer_mid_batch(tmp_path, start=100 * round_, kill_after_begins=kills_at)
    with sqlite3.connect(tmp_path / "embeddings.sqlite") as raw:
        assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        present = {int(k.split("-")[0]) for (k,) in raw.execute("SELECT key FROM entries")}
    cache = EmbeddingCache(tmp_path)
    assert len(cache) % 256 == 0  # whole batches only: a killed transaction leaves nothing behind
    assert committed <= present and len(committed) >= 3 + 6 + 4
    assert len(cache) == 256 * len(present)
    for b in present:
        keys = [f"{b}-{i}" for i in range(256)]
        got = cache.get_many("crash", keys)
        expected = np.random.default_rng(b).standard_normal((256, 1280)).astype(np.float32)
        assert len(got) == 256
        assert all(np.array_equal(got[k], expected[i]) for i, k in enumerate(keys))
    # and the cache is writable after the crashes
    cache.put_many("crash", ["after"], np.ones((1, 1280), np.float32))
    assert "after" in cache.get_many("crash", ["after"])


# ---------------------------------------------------------------------------------------------- corruption
@pytest.mark.parametrize(
    "sql",
    [
        # flip the first byte of the vector (same length: only the checksum can tell)
        "UPDATE entries SET vector = CAST(X'FF' || substr(vector, 2) AS BLOB) WHERE key = 'k3'",
        "UPDATE entries SET vector = substr(vector, 1, 60) WHERE key = 'k3'",  # truncated blob
        "UPDATE entries SET dim = 17 WHERE key = 'k3'",  # header no longer matches the bytes
    ],
    ids=["flipped-byte", "truncated", "wrong-dim"],
)
def test_corrupt_entry_warns_is_a_miss_and_is_deleted(tmp_path, sql):
    cache = EmbeddingCache(tmp_path)
    v = _vectors(5, 16, seed=4)
    v[3, 0] = 1.5  # first byte 0x00, so writing 0xFF changes the value
    cache.put_many(NS, _keys_for(5), v)
    with sqlite3.connect(cache.db_path) as raw:
        raw.execute(sql)
    with pytest.warns(CacheCorruptionWarning, match=rf"namespace '{NS}', key 'k3'.*recomputed"):
        got = cache.get_many(NS, _keys_for(5))
    assert sorted(got) == ["k0", "k1", "k2", "k4"]
    assert all(np.array_equal(got[k], v[int(k[1])]) for k in got)
    with sqlite3.connect(cache.db_path) as raw:
        assert raw.execute("SELECT COUNT(*) FROM entries WHERE key = 'k3'").fetchone()[0] == 0
    assert len(cache) == 4
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert "k3" not in cache.get_many(NS, ["k3"])  # gone: a plain miss, no second warning
    cache.put_many(NS, ["k3"], v[3:4])  # recomputed
    assert np.array_equal(cache.get_many(NS, ["k3"])["k3"], v[3])


def test_foreign_file_is_moved_aside_and_rebuilt(tmp_path):
    # 0.1 raised "not a readable skfeaturize cache ... delete it"; tests/test_cache_faults.py has the details
    (tmp_path / "embeddings.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.warns(CacheCorruptionWarning, match=r"is corrupt \(file is not a database\)\. Moved it"):
        assert len(EmbeddingCache(tmp_path)) == 0
    (moved,) = tmp_path.glob("embeddings.sqlite.corrupt-*")
    assert moved.read_bytes() == b"this is not a database" * 100


def test_newer_schema_is_refused(tmp_path):
    EmbeddingCache(tmp_path).put_many(NS, ["a"], np.ones((1, 2), np.float32))
    with sqlite3.connect(tmp_path / "embeddings.sqlite") as raw:
        raw.execute("PRAGMA user_version = 99")
    with pytest.raises(CacheError, match=r"schema version 99, newer .* upgrade skfeaturize"):
        EmbeddingCache(tmp_path).get_many(NS, ["a"])


# ---------------------------------------------------------------------------------------------- housekeeping
def test_len_size_namespaces_clear_evict(tmp_path):
    cache = EmbeddingCache(tmp_path)
    assert len(cache) == 0 and cache.size_bytes() == 0 and cache.namespaces() == []
    cache.put_many("r50-l4", _keys_for(10), _vectors(10, 32), {**DESC, "layer": "layer4"})
    cache.put_many("r50-l3", _keys_for(6), _vectors(6, 16), {**DESC, "layer": "layer3"})
    cache.put_many("vit-cls", _keys_for(4), _vectors(4, 8), {"backbone": "vit_small", "pooling": "cls"})
    assert len(cache) == 20
    assert cache.size_bytes() == (10 * 32 + 6 * 16 + 4 * 8) * 4
    info = {d["namespace"]: d for d in cache.namespaces()}
    assert info["r50-l3"]["description"]["layer"] == "layer3"
    assert (info["r50-l4"]["count"], info["r50-l4"]["bytes"], info["r50-l4"]["dim"]) == (10, 1280, 32)
    assert cache.evict(backbone="resnet50", layer="layer3") == 6
    assert cache.evict(backbone="nonexistent") == 0
    assert cache.evict(backbone="resnet50") == 10
    assert [d["namespace"] for d in cache.namespaces()] == ["vit-cls"]
    assert len(cache) == 4 and cache.size_bytes() == 4 * 8 * 4
    assert cache.evict("vit-cls") == 4 and len(cache) == 0
    cache.put_many("a", _keys_for(3), _vectors(3, 4))
    assert cache.clear() == 3
    assert len(cache) == 0 and cache.size_bytes() == 0 and cache.namespaces() == []
    cache.vacuum()
    with pytest.raises(TypeError, match=r"evict\(\) needs a namespace .* cache.clear\(\)"):
        cache.evict()


def test_max_bytes_evicts_least_recently_read_first(tmp_path):
    dim = 16
    entry = dim * 4
    cache = EmbeddingCache(tmp_path, max_bytes=10 * entry)
    v = _vectors(15, dim)
    cache.put_many(NS, _keys_for(10), v[:10])
    # make time pass: k0 is the oldest write, k9 the newest
    with sqlite3.connect(cache.db_path) as raw:
        raw.executemany(
            "UPDATE entries SET last_access = last_access - 3600 + ? WHERE key = ?",
            [(i, f"k{i}") for i in range(10)],
        )
    cache.get_many(NS, ["k0", "k1", "k2", "k3", "k4"])  # the five oldest writes are now the freshest reads
    cache.put_many(NS, [f"k{i}" for i in range(10, 15)], v[10:])
    assert len(cache) == 10 and cache.size_bytes() == 10 * entry
    got = cache.get_many(NS, _keys_for(15))
    assert sorted(got, key=lambda k: int(k[1:])) == [f"k{i}" for i in (0, 1, 2, 3, 4, 10, 11, 12, 13, 14)]
    # a batch larger than the bound keeps only what fits
    cache.put_many("big", _keys_for(30, "b"), _vectors(30, dim))
    assert cache.size_bytes() <= 10 * entry and len(cache) == 10


def _hit_log_rows(cache: EmbeddingCache) -> int:
    with sqlite3.connect(cache.db_path) as raw:
        return raw.execute("SELECT COUNT(*) FROM hits").fetchone()[0]


def test_hit_log_is_written_only_when_bounded_and_stays_bounded(tmp_path, monkeypatch):
    unbounded = EmbeddingCache(tmp_path)
    unbounded.put_many(NS, _keys_for(20), _vectors(20, 8))
    unbounded.get_many(NS, _keys_for(20))
    assert _hit_log_rows(unbounded) == 0  # reads of an unbounded cache write nothing
    monkeypatch.setattr(_store, "FOLD_HITS", 50)
    bounded = EmbeddingCache(tmp_path, max_bytes=10**6)
    for _ in range(3):
        bounded.get_many(NS, _keys_for(20))
    assert _hit_log_rows(bounded) == 60
    with sqlite3.connect(bounded.db_path) as raw:
        before = dict(raw.execute("SELECT key, last_access FROM entries"))
    bounded.put_many(NS, ["new"], _vectors(1, 8))  # under the bound, but the log is long: folded
    assert _hit_log_rows(bounded) == 0
    with sqlite3.connect(bounded.db_path) as raw:
        after = dict(raw.execute("SELECT key, last_access FROM entries"))
    assert all(after[k] >= before[k] for k in before) and any(after[k] > before[k] for k in before)


def test_put_many_validates_its_input(tmp_path):
    cache = EmbeddingCache(tmp_path)
    with pytest.raises(CacheError, match=r"shape \(len\(keys\), dim\) = \(2, dim>0\), got shape \(8,\)"):
        cache.put_many(NS, ["a", "b"], np.zeros(8, np.float32))
    with pytest.raises(CacheError, match=r"got shape \(3, 4\); pass one row per key"):
        cache.put_many(NS, ["a", "b"], np.zeros((3, 4), np.float32))
    with pytest.raises(CacheError, match=r"vectors must be numeric, got dtype <U1"):
        cache.put_many(NS, ["a"], np.array([["x"]]))
    with pytest.raises(TypeError, match=r"keys must be a sequence of str, got a single str 'ab'.*wrap it"):
        cache.put_many(NS, "ab", np.zeros((2, 4), np.float32))
    with pytest.raises(TypeError, match=r"keys\[1\] is int 7; keys must be str"):
        cache.get_many(NS, ["a", 7])
    with pytest.raises(TypeError, match=r"namespace must be a non-empty str, got ''"):
        cache.put_many("", ["a"], np.zeros((1, 4), np.float32))
    with pytest.raises(TypeError, match=r"description must be a dict or None, got list"):
        cache.put_many(NS, ["a"], np.zeros((1, 4), np.float32), ["resnet"])
    cache.put_many(NS, ["a"], np.zeros((1, 4), np.float32))
    with pytest.raises(CacheError, match=rf"namespace '{NS}' holds 4-d vectors, got 5-d.*evict\(namespace="):
        cache.put_many(NS, ["b"], np.zeros((1, 5), np.float32))
    assert len(cache) == 1  # the failed batch was rolled back


def test_constructor_validates_and_does_no_io(tmp_path):
    target = tmp_path / "not-yet"
    cache = EmbeddingCache(target, dtype="float16", max_bytes=2**20)
    assert not target.exists()  # nothing happens before first use
    assert repr(cache) == f"EmbeddingCache({str(target)!r}, dtype='float16', max_bytes=1048576)"
    assert repr(EmbeddingCache(target)) == f"EmbeddingCache({str(target)!r}, dtype='float32')"
    assert len(cache) == 0 and (target / "embeddings.sqlite").exists()
    with pytest.raises(CacheError, match=r"dtype='float64' is not supported; allowed: 'float32' .*'float16'"):
        EmbeddingCache(tmp_path, dtype="float64")
    with pytest.raises(CacheError, match=r"max_bytes=0 is invalid; allowed: None .* positive int"):
        EmbeddingCache(tmp_path, max_bytes=0)
    with pytest.raises(CacheError, match=r"max_bytes=True is invalid"):
        EmbeddingCache(tmp_path, max_bytes=True)
    with pytest.raises(TypeError, match=r"path must be a str or os.PathLike folder, got int 3"):
        EmbeddingCache(3)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(CacheError, match=r"exists and is not a folder; pass a folder"):
        EmbeddingCache(tmp_path / "afile").get_many(NS, ["a"])
    assert isinstance(CacheError("x"), SkfeaturizeError) and isinstance(CacheError("x"), ValueError)


def test_network_filesystem_detection_warns(tmp_path, monkeypatch):
    mounts = tmp_path / "mounts"
    mounts.write_text(
        "/dev/vda / ext4 rw 0 0\n"
        f"server:/export {tmp_path}/nfs\\040share nfs4 rw,relatime 0 0\n"
        f"//srv/x {tmp_path}/smb cifs rw 0 0\n"
    )
    assert network_filesystem(tmp_path / "nfs share" / "cache", str(mounts)) == "nfs4"
    assert network_filesystem(tmp_path / "smb", str(mounts)) == "cifs"
    assert network_filesystem(tmp_path / "local", str(mounts)) is None
    assert network_filesystem(tmp_path / "nfs", str(mounts)) is None  # a prefix of the name is not the mount
    assert network_filesystem(tmp_path, str(tmp_path / "missing")) is None
    monkeypatch.setattr(_store, "_MOUNTS_FILE", str(mounts))
    with pytest.warns(NetworkFilesystemWarning, match=r"filesystem \(nfs4\).*Use a folder on a local"):
        len(EmbeddingCache(tmp_path / "nfs share" / "cache"))


# -------------------------------------------------------------------------------------------- pickle / clone
def test_pickle_with_open_connection(tmp_path):
    cache = EmbeddingCache(tmp_path, dtype="float16", max_bytes=10**6)
    v = _vectors(3, 8)
    cache.put_many(NS, _keys_for(3), v)  # connection open
    blob = pickle.dumps(cache)
    assert b"sqlite" not in blob.replace(b"embeddings.sqlite", b"")
    clone = pickle.loads(blob)
    assert (clone.path, clone.dtype, clone.max_bytes) == (cache.path, "float16", 10**6)
    got = clone.get_many(NS, _keys_for(3))
    assert all(np.array_equal(got[k], cache.roundtrip(v)[i]) for i, k in enumerate(_keys_for(3)))
    cache.close()
    cache.close()  # idempotent
    assert len(cache) == 3  # reopens lazily


def test_resolve_cache(tmp_path, monkeypatch):
    assert resolve_cache(None) is None
    own = EmbeddingCache(tmp_path / "own")
    assert resolve_cache(own) is own
    a = resolve_cache(str(tmp_path / "shared"))
    assert isinstance(a, EmbeddingCache)
    assert resolve_cache(tmp_path / "shared") is a
    assert resolve_cache(str(tmp_path / "shared" / ".." / "shared")) is a
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_cache("~/shared") is a
    with pytest.raises(TypeError, match=r"cache=42 \(int\) is not supported; allowed: None .* folder"):
        resolve_cache(42)


# ---------------------------------------------------------------------------------------------- keys
def test_keys_text_normalisation_file_bytes_and_fingerprint(tmp_path):
    composed, decomposed = "caf\u00e9", "cafe\u0301"
    assert composed != decomposed
    assert _keys.hash_text(composed) != _keys.hash_text(decomposed)  # a cased tokenizer sees two inputs
    assert _keys.hash_nfc_text(composed) == _keys.hash_nfc_text(decomposed)  # normalised before use
    assert _keys.hash_tokens([composed, "au lait"]) == _keys.hash_tokens([decomposed, "au lait"])
    assert _keys.hash_tokens(["a\x1fb"]) != _keys.hash_tokens(["a", "b"])  # length-prefixed
    assert _keys.hash_tokens(["ab", ""]) != _keys.hash_tokens(["a", "b"])
    assert _keys.hash_text("\udce9") != _keys.hash_text("\udce8")  # lone surrogates hash too
    assert _keys.hash_text("cafe") != _keys.hash_text(composed)
    data = bytes(range(256)) * 5000  # > one read block of hash_file
    path = tmp_path / "img.bin"
    path.write_bytes(data)
    assert _keys.hash_file(path) == _keys.hash_bytes(data)
    assert _keys.hash_file(path) != _keys.hash_bytes(data[:-1])
    a = {"backbone": "resnet50", "layer": ["layer3", "layer4"], "pooling": "avg", "size": 224}
    b = {"size": 224, "pooling": "avg", "layer": ["layer3", "layer4"], "backbone": "resnet50"}
    assert _keys.fingerprint(a) == _keys.fingerprint(b)
    assert _keys.fingerprint(a) != _keys.fingerprint({**a, "layer": ["layer4", "layer3"]})
    arr = np.arange(6, dtype=np.float32)
    assert _keys.hash_array(arr) != _keys.hash_array(arr.reshape(2, 3))
