"""Faults of the embedding store degrade instead of failing or losing work (issue 11, the store's part).

Each test here failed on skfeaturize 0.1 (except the rows of the permission table that must not warn,
which guard against false alarms). Tests run as root on this project's machines, and root passes every
permission check, so a ``chmod`` alone does not make a folder read-only. Three ways are used instead: the
documented seam ``_store._folder_writable`` (in-process, everywhere); a child process whose root has lost
``CAP_DAC_OVERRIDE`` (the kernel then really denies writes; as a non-root user the chmod alone does it); and a
private mount namespace with a read-only bind mount or a 4 MiB tmpfs (a real read-only filesystem, a real full
disk). The mount namespaces need root and unshare(1); without them those tests are skipped, saying why.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from skfeaturize.cache import (
    CacheCorruptionWarning,
    CacheError,
    CachePermissionWarning,
    CacheWriteWarning,
    EmbeddingCache,
    _store,
)

REPO = Path(__file__).resolve().parents[1]
NS = "ns-resnet50-layer4-avg"
DESC = {"backbone": "resnet50", "weights": "IMAGENET1K_V2", "layer": "layer4", "pooling": "avg"}
KEYS = [f"k{i}" for i in range(5)]


def _vectors(n: int = 5, dim: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def _filled(path: Path, n_keys: int = 5, dim: int = 16) -> np.ndarray:
    """A closed cache at ``path`` holding ``KEYS`` (its -wal and -shm are gone, as after any clean exit)."""
    v = _vectors(n_keys, dim)
    cache = EmbeddingCache(path)
    cache.put_many(NS, KEYS[:n_keys], v, DESC)
    cache.close()
    return v


@pytest.fixture
def record():
    """Every warning of the test, in order (``pytest.warns`` would hide a second, unwanted one)."""
    with warnings.catch_warnings(record=True) as log:
        warnings.simplefilter("always")
        yield lambda category: [str(w.message) for w in log if issubclass(w.category, category)]


@pytest.fixture
def read_only(monkeypatch):
    """Call it to make folders read-only through the documented seam ``_store._folder_writable``."""
    return lambda: monkeypatch.setattr(_store, "_folder_writable", lambda folder, db: False)


# -------------------------------------------------------------------------------- 1. read-only
def test_read_only_folder_serves_hits_and_skips_writes_with_one_warning(tmp_path, read_only, record):
    v = _filled(tmp_path)
    read_only()
    cache = EmbeddingCache(tmp_path)
    got = cache.get_many(NS, KEYS + ["never-written"])
    assert sorted(got) == KEYS and all(np.array_equal(got[k], v[i]) for i, k in enumerate(KEYS))
    assert cache.mode == "ro"
    assert cache.put_many(NS, ["new"], np.ones((1, 16), np.float32)) == 0
    assert cache.put_many(NS, ["new2", "new3"], np.ones((2, 16), np.float32)) == 0
    (msg,) = record(CacheWriteWarning)  # one per cache and cause, not one per call
    assert f"Cache {cache.db_path!r}: the cache is read-only" in msg
    assert "1 computed vector(s) were returned but not stored" in msg and "pass a cache folder you can" in msg
    assert len(cache) == 5 and cache.get_many(NS, ["new"]) == {}
    with sqlite3.connect(cache.db_path) as raw:
        assert raw.execute("SELECT COUNT(*) FROM entries WHERE key LIKE 'new%'").fetchone() == (0,)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):  # the connection itself refuses writes
        cache._connection().execute("DELETE FROM entries")
    with pytest.raises(CacheError, match=r"evict\(\): cache .* cannot be changed: the cache is read-only"):
        cache.evict(backbone="resnet50")
    assert len(EmbeddingCache(tmp_path)) == 5


def test_read_only_folder_without_a_database_is_off(tmp_path, read_only, record):
    read_only()
    cache = EmbeddingCache(tmp_path)
    assert cache.get_many(NS, KEYS) == {} and len(cache) == 0 and cache.namespaces() == []
    assert cache.mode == "off" and cache.dim(NS) is None
    assert cache.put_many(NS, KEYS, _vectors()) == 0
    (msg,) = record(CacheWriteWarning)
    assert "the cache is read-only" in msg
    assert "the cache is off in this process: every lookup is a miss" in msg
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    ("error", "says"),
    [
        (PermissionError(errno.EACCES, "Permission denied"), "the cache is read-only (the folder cannot be "
                                                             "created: Permission denied)"),
        (OSError(errno.EROFS, "Read-only file system"), "the cache is read-only"),
        (OSError(errno.ENOSPC, "No space left on device"), "the disk is full (the folder cannot be created: "
                                                           "No space left on device)"),
    ],
    ids=["permission-denied", "read-only-fs", "disk-full"],
)
def test_folder_that_cannot_be_created_turns_the_cache_off(tmp_path, monkeypatch, record, error, says):
    def refuse(path, *args, **kwargs):
        raise error

    monkeypatch.setattr(os, "makedirs", refuse)
    cache = EmbeddingCache(tmp_path / "missing" / "cache")
    assert cache.get_many(NS, KEYS) == {} and cache.mode == "off" and len(cache) == 0
    assert cache.put_many(NS, KEYS, _vectors()) == 0
    assert cache.put_many(NS, KEYS, _vectors()) == 0
    (msg,) = record(CacheWriteWarning)
    assert says in msg and "every lookup is a miss" in msg and "delete" not in msg


_CHILD = f"""
import json, os, sys, warnings
import numpy as np
from skfeaturize.cache import EmbeddingCache
folder, scenario = sys.argv[1], sys.argv[2]
NS, KEYS = {NS!r}, {KEYS!r}
v = np.random.default_rng(0).standard_normal((5, 16)).astype(np.float32)
out = {{}}
def same(cache):
    got = cache.get_many(NS, KEYS + ["never-written"])
    return sorted(got) == KEYS and all(np.array_equal(got[k], v[i]) for i, k in enumerate(KEYS))
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    if scenario == "read-only":
        cache = EmbeddingCache(folder)
        out["hits"] = same(cache)
        out["puts"] = [cache.put_many(NS, ["new"], np.ones((1, 16), np.float32)) for _ in range(2)]
        out["mode"], out["len"] = cache.mode, len(cache)
        missing = EmbeddingCache(os.path.join(folder, "sub"))
        out["missing"] = [missing.get_many(NS, KEYS), missing.put_many(NS, KEYS, v), missing.mode]
    else:  # a real full disk: the folder is an empty 4 MiB tmpfs
        cache = EmbeddingCache(os.path.join(folder, "c"))
        cache.put_many(NS, KEYS, v)
        with open(os.path.join(folder, "filler"), "wb", buffering=0) as f:
            try:
                while True:
                    f.write(b"\\0" * 65536)
            except OSError as e:
                out["filled"] = e.errno
        big = np.ones((500, 16), np.float32)
        out["puts"] = [cache.put_many(NS, [f"b{{i}}-{{j}}" for j in range(500)], big) for i in range(2)]
        out["hits"] = same(cache)
        new = EmbeddingCache(os.path.join(folder, "new"))
        out["new"] = [new.put_many(NS, KEYS, v), new.mode]
        cache.close()
        reopened = EmbeddingCache(os.path.join(folder, "c"))
        out["reopened"] = [same(reopened), reopened.mode]
out["warnings"] = [[w.category.__name__, str(w.message)] for w in caught]
print(json.dumps(out))
"""


def _drop_dac_override() -> None:
    """In the child, before exec: lose the capabilities that let root ignore permission bits."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def _child(folder: Path, scenario: str, wrap: list[str] | None = None, drop: bool = False) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-c", _CHILD, str(folder), scenario]
    if wrap:
        script = " && ".join(wrap) + ' && exec "$@"'
        cmd = ["unshare", "-m", "sh", "-c", script, "sh", *cmd]
    try:
        out = subprocess.run(
            cmd, env=env, cwd=str(REPO), capture_output=True, text=True, timeout=120,
            preexec_fn=_drop_dac_override if drop else None,
        )
    except subprocess.SubprocessError as e:  # prctl refused: root without CAP_SETPCAP
        pytest.skip(f"cannot drop CAP_DAC_OVERRIDE here ({e})")
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _mount_namespaces_reason() -> str | None:
    if sys.platform != "linux" or os.geteuid() != 0 or shutil.which("unshare") is None:
        return "needs Linux, root and unshare(1) for a private mount namespace"
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    return None if probe.returncode == 0 else "unshare -m is not permitted here"


@pytest.fixture
def shared_tmp():
    """A folder a process with fewer rights can reach (pytest's tmp_path lives in a 0700 folder)."""
    path = Path(tempfile.mkdtemp(prefix="skf-faults-"))
    path.chmod(0o755)
    yield path
    for root, dirs, _ in os.walk(path):
        for d in dirs:
            os.chmod(os.path.join(root, d), 0o755)
    shutil.rmtree(path, ignore_errors=True)


def _check_real_read_only(res: dict, db_path: str, writable_files: bool = False) -> None:
    assert res["hits"] is True and res["missing"] == [{}, 0, "off"]
    if writable_files:  # SQLite writes through the existing files; only the missing subfolder is off
        assert res["puts"] == [1, 1] and res["mode"] == "rw" and res["len"] == 6
        (msg,) = [m for _, m in res["warnings"]]
        assert "cannot be created: Permission denied" in msg
        return
    assert res["puts"] == [0, 0] and res["mode"] == "ro" and res["len"] == 5
    msgs = [m for cat, m in res["warnings"] if cat == "CacheWriteWarning"]
    assert len(msgs) == 2, res["warnings"]  # one per cache instance
    assert msgs[0].startswith(f"Cache {db_path!r}: the cache is read-only")
    assert [cat for cat, _ in res["warnings"]] == ["CacheWriteWarning"] * 2


@pytest.mark.parametrize("state", ["closed", "writer-open", "writer-open-writable-files"])
def test_read_only_for_real_root_without_dac_override(shared_tmp, state):
    """The kernel denies the writes: chmod 0555, and root without CAP_DAC_OVERRIDE (or a non-root user)."""
    folder = shared_tmp / "cache"
    folder.mkdir()
    writer = EmbeddingCache(folder)
    writer.put_many(NS, KEYS, _vectors(), DESC)  # while the writer is open, these are only in the -wal
    if state == "closed":
        writer.close()  # no -wal/-shm left: only an immutable=1 open can read it
    if state == "writer-open":
        for name in os.listdir(folder):
            (folder / name).chmod(0o444)
    folder.chmod(0o555)
    try:
        res = _child(folder, "read-only", drop=os.geteuid() == 0)
    finally:
        folder.chmod(0o755)
        writer.close()
    _check_real_read_only(res, str(folder / "embeddings.sqlite"), writable_files=state.endswith("files"))


def test_read_only_for_real_on_a_read_only_mount(shared_tmp):
    reason = _mount_namespaces_reason()
    if reason:
        pytest.skip(reason)
    folder = shared_tmp / "cache"
    _filled(folder)
    res = _child(folder, "read-only", wrap=[f"mount -o bind,ro '{folder}' '{folder}'"])
    _check_real_read_only(res, str(folder / "embeddings.sqlite"))
    assert res["warnings"][0][1].count("read-only") >= 1


# -------------------------------------------------------------------------------- 2. disk full
def test_full_database_skips_the_write_says_disk_full_and_recovers(tmp_path, record):
    v = _filled(tmp_path)
    cache = EmbeddingCache(tmp_path)
    conn = cache._connection()
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")  # SQLite's own SQLITE_FULL, as on a full disk
    big = np.ones((2000, 64), np.float32)
    assert cache.put_many("big", [f"b{i}" for i in range(2000)], big) == 0
    assert cache.put_many("big", [f"c{i}" for i in range(2000)], big) == 0
    (msg,) = record(CacheWriteWarning)
    assert f"Cache {cache.db_path!r}: the disk is full (database or disk is full)" in msg
    assert "The cache itself is intact" in msg and "delete" not in msg.lower()
    got = cache.get_many(NS, KEYS)
    assert all(np.array_equal(got[k], v[i]) for i, k in enumerate(KEYS))
    assert len(cache) == 5 and not conn.in_transaction
    conn.execute("PRAGMA max_page_count = 1073741823")  # space again: the next batch is stored
    assert cache.put_many("big", [f"b{i}" for i in range(2000)], big) == 2000 and len(cache) == 2005


def test_error_after_sqlite_rolled_back_is_not_masked_by_rollback(tmp_path, monkeypatch, record):
    def full_and_rolled_back(cls, conn, max_bytes):
        conn.execute("ROLLBACK")  # what SQLite itself does on some errors, e.g. a full disk at COMMIT
        raise sqlite3.OperationalError("database or disk is full")

    cache = EmbeddingCache(tmp_path, max_bytes=10**6)
    cache.put_many(NS, ["a"], np.ones((1, 4), np.float32))
    monkeypatch.setattr(EmbeddingCache, "_enforce_max_bytes", classmethod(full_and_rolled_back))
    assert cache.put_many(NS, ["b"], np.ones((1, 4), np.float32)) == 0  # 0.1: "cannot rollback - no ..."
    (msg,) = record(CacheWriteWarning)
    assert "the disk is full (database or disk is full)" in msg
    assert sorted(cache.get_many(NS, ["a", "b"])) == ["a"]


def test_new_cache_on_a_full_disk_is_off_and_says_so(tmp_path, monkeypatch, record):
    real = EmbeddingCache._create_schema

    def on_a_full_disk(conn):
        conn.execute("PRAGMA max_page_count = 1")  # the schema needs more pages: SQLite reports SQLITE_FULL
        real(conn)

    monkeypatch.setattr(EmbeddingCache, "_create_schema", staticmethod(on_a_full_disk))
    cache = EmbeddingCache(tmp_path / "c")
    assert cache.get_many(NS, KEYS) == {}  # 0.1: CacheError "not a readable skfeaturize cache ... delete it"
    assert cache.put_many(NS, KEYS, _vectors()) == 0 and cache.mode == "off"
    (msg,) = record(CacheWriteWarning)
    assert "the disk is full (database or disk is full); the cache is off in this process" in msg
    assert "not a readable" not in msg and "delete" not in msg.lower()


def test_full_disk_for_real_on_a_small_tmpfs(shared_tmp):
    reason = _mount_namespaces_reason()
    if reason:
        pytest.skip(reason)
    folder = shared_tmp / "disk"
    folder.mkdir()
    res = _child(folder, "full", wrap=[f"mount -t tmpfs -o size=4m tmpfs '{folder}'"])
    assert res["filled"] == errno.ENOSPC
    assert res["puts"] == [0, 0] and res["hits"] is True  # 0.1: "cannot rollback - no transaction is active"
    assert res["new"] == [0, "off"]  # 0.1: "not a readable skfeaturize cache (database or disk is full)"
    assert res["reopened"][0] is True  # the cache is intact: hits are served after reopening
    msgs = [m for cat, m in res["warnings"] if cat == "CacheWriteWarning"]
    assert len(msgs) == 2 and all("the disk is full" in m and "delete" not in m.lower() for m in msgs), msgs
    assert {cat for cat, _ in res["warnings"]} == {"CacheWriteWarning"}


@pytest.mark.parametrize(
    ("error", "fault"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), "full"),
        (PermissionError(errno.EACCES, "Permission denied"), "read-only"),
        (OSError(errno.EROFS, "Read-only file system"), "read-only"),
        (FileNotFoundError(errno.ENOENT, "No such file or directory"), None),
        (sqlite3.OperationalError("database or disk is full"), "full"),
        (sqlite3.OperationalError("database is locked"), "locked"),
        (sqlite3.OperationalError("attempt to write a readonly database"), "read-only"),
        (sqlite3.OperationalError("unable to open database file"), "read-only"),
        (sqlite3.OperationalError("disk I/O error"), "I/O error"),
        (sqlite3.DatabaseError("file is not a database"), "corrupt"),
        (sqlite3.DatabaseError("database disk image is malformed"), "corrupt"),
        (sqlite3.OperationalError("no such table: entries"), None),  # a bug, not a fault: raised
        (ValueError("database or disk is full"), None),
    ],
)
def test_which_errors_are_faults(tmp_path, error, fault):
    assert _store._fault(error, str(tmp_path)) == fault


def test_io_error_skips_the_write_and_says_disk_full_only_when_it_is(tmp_path, monkeypatch, record):
    def io_error(cls, conn, max_bytes):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(EmbeddingCache, "_enforce_max_bytes", classmethod(io_error))
    cache = EmbeddingCache(tmp_path / "a", max_bytes=10**6)
    assert cache.put_many(NS, ["a"], np.ones((1, 4), np.float32)) == 0  # 0.1: raised
    monkeypatch.setattr(_store, "NEARLY_FULL_BYTES", 2**62)  # "less than 1 MiB free", as on a full disk
    full = EmbeddingCache(tmp_path / "b", max_bytes=10**6)
    assert full.put_many(NS, ["a"], np.ones((1, 4), np.float32)) == 0
    first, second = record(CacheWriteWarning)
    assert "the disk reported an I/O error (disk I/O error); 1 computed vector(s)" in first
    assert "the disk is full (disk I/O error)" in second
    assert len(cache) == 0 and len(full) == 0


# -------------------------------------------------------------------------------- 3. locked
def test_lock_held_past_the_busy_timeout_skips_the_write_and_reads_go_on(tmp_path, monkeypatch, record):
    v = _filled(tmp_path)
    monkeypatch.setattr(_store, "BUSY_TIMEOUT_S", 0.2)  # read when the connection opens
    cache = EmbeddingCache(tmp_path, max_bytes=10**6)  # bounded: reads also try to log hits
    assert len(cache) == 5
    other = sqlite3.connect(cache.db_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process's write transaction, held
    other.execute("DELETE FROM entries WHERE key = 'k0'")
    try:
        got = cache.get_many(NS, KEYS)  # WAL: a reader is never blocked, and sees only committed data
        assert sorted(got) == KEYS and all(np.array_equal(got[k], v[i]) for i, k in enumerate(KEYS))
        start = time.perf_counter()
        assert cache.put_many(NS, ["new"], np.ones((1, 16), np.float32)) == 0  # 0.1: "database is locked"
        assert 0.15 < time.perf_counter() - start < 10
        assert cache.put_many(NS, ["new2"], np.ones((1, 16), np.float32)) == 0
    finally:
        other.execute("ROLLBACK")
        other.close()
    (msg,) = record(CacheWriteWarning)
    assert "another process held the database's write lock longer than the busy timeout" in msg
    assert "(database is locked)" in msg and "Later writes are tried again" in msg
    assert cache.put_many(NS, ["new"], np.ones((1, 16), np.float32)) == 1  # the lock is gone: stored
    assert len(cache) == 6 and len(record(CacheWriteWarning)) == 1


# -------------------------------------------------------------------------------- 4. corrupt file
def _garbage(path: Path) -> bytes:
    path.mkdir(exist_ok=True)
    data = np.random.default_rng(7).bytes(100)
    (path / "embeddings.sqlite").write_bytes(data)
    (path / "embeddings.sqlite-wal").write_bytes(b"stale wal")
    return data


def _truncated(path: Path) -> bytes:
    cache = EmbeddingCache(path)
    cache.put_many(NS, [f"t{i}" for i in range(2000)], np.ones((2000, 64), np.float32))
    cache.close()
    db = path / "embeddings.sqlite"
    data = db.read_bytes()[: db.stat().st_size // 2]
    db.write_bytes(data)
    return data


@pytest.mark.parametrize(
    ("make", "error"),
    [(_garbage, "file is not a database"), (_truncated, "database disk image is malformed")],
    ids=["100-random-bytes", "truncated-to-half"],
)
def test_corrupt_file_is_moved_aside_and_rebuilt(tmp_path, record, make, error):
    old = make(tmp_path)
    cache = EmbeddingCache(tmp_path)
    assert len(cache) == 0 and cache.mode == "rw"  # 0.1: CacheError "... delete it" / a raw DatabaseError
    (msg,) = record(CacheCorruptionWarning)
    (moved,) = tmp_path.glob("embeddings.sqlite.corrupt-*[0-9]Z")
    assert msg.startswith(f"Cache file {cache.db_path!r} is corrupt ({error}). Moved it")
    assert f"to {str(moved)!r}" in msg
    assert moved.read_bytes() == old
    stamp = moved.name.removeprefix("embeddings.sqlite.corrupt-")
    assert time.strptime(stamp.split(".")[0], "%Y%m%dT%H%M%S")  # a UTC time stamp
    if make is _garbage:
        assert Path(f"{moved}-wal").read_bytes() == b"stale wal"  # the companion went with it
    v = _vectors()
    assert cache.put_many(NS, KEYS, v) == 5
    got = EmbeddingCache(tmp_path).get_many(NS, KEYS)
    assert all(np.array_equal(got[k], v[i]) for i, k in enumerate(KEYS))
    assert record(CacheWriteWarning) == []


def test_corruption_found_by_a_read_moves_the_file_once_for_all_processes(tmp_path, record):
    cache = EmbeddingCache(tmp_path)
    cache.put_many(NS, [f"t{i}" for i in range(2000)], np.ones((2000, 64), np.float32))
    cache.close()
    with open(tmp_path / "embeddings.sqlite", "r+b") as f:  # garbage over pages in the middle of the file
        f.seek(10 * _store.PAGE_SIZE)  # past the schema, stats and plans pages: entries' pages only
        f.write(np.random.default_rng(3).bytes(2 * _store.PAGE_SIZE))
    a, b = EmbeddingCache(tmp_path), EmbeddingCache(tmp_path)
    assert len(a) == len(b) == 2000  # both open: the header and the stats page are fine
    assert a.get_many(NS, ["t0", "t1999"]) == {}  # the entries' pages are not
    assert len(record(CacheCorruptionWarning)) == 1 and len(list(tmp_path.glob("*.corrupt-*[0-9]Z"))) == 1
    assert a.put_many(NS, ["fresh"], np.full((1, 64), 2.0, np.float32)) == 1
    # b still had the old file open; it finds it corrupt too, but must not move a's new database aside
    assert b.get_many(NS, ["t0", "t1999"]) == {}
    assert np.array_equal(b.get_many(NS, ["fresh"])["fresh"], np.full(64, 2.0, np.float32))
    assert len(list(tmp_path.glob("*.corrupt-*[0-9]Z"))) == 1


@pytest.mark.parametrize("why", ["read-only-folder", "rename-refused"])
def test_corrupt_file_that_cannot_be_moved_turns_the_cache_off(tmp_path, monkeypatch, record, why):
    old = _garbage(tmp_path)
    if why == "read-only-folder":
        monkeypatch.setattr(_store, "_folder_writable", lambda folder, db: False)
        reason = "it cannot be moved aside (the folder is not writable)"
    else:
        def refuse(src, dst):
            raise PermissionError(errno.EPERM, "Operation not permitted")

        monkeypatch.setattr(os, "replace", refuse)
        reason = "it cannot be moved aside (Operation not permitted)"
    cache = EmbeddingCache(tmp_path)
    assert cache.get_many(NS, KEYS) == {} and cache.mode == "off" and len(cache) == 0
    assert cache.put_many(NS, KEYS, _vectors()) == 0
    (msg,) = record(Warning)  # one warning in all: the write skipped later is the same cause
    assert msg.startswith(f"Cache file {cache.db_path!r} is corrupt (file is not a database) and {reason}.")
    assert f"Remedy: move or delete {cache.db_path!r} and its -wal/-shm files, or pass another" in msg
    assert (tmp_path / "embeddings.sqlite").read_bytes() == old


def test_newer_schema_is_still_refused_also_when_read_only(tmp_path, read_only):
    _filled(tmp_path)
    with sqlite3.connect(tmp_path / "embeddings.sqlite") as raw:
        raw.execute("PRAGMA user_version = 99")
    read_only()
    with pytest.raises(CacheError, match=r"schema version 99, newer .* upgrade skfeaturize"):
        EmbeddingCache(tmp_path).get_many(NS, KEYS)
    assert not list(tmp_path.glob("*.corrupt-*"))


# -------------------------------------------------------------------------------- 5. non-finite
def test_non_finite_rows_are_never_stored(tmp_path):
    cache = EmbeddingCache(tmp_path)
    v = _vectors(6, 8).astype(np.float64)
    v[1, 3], v[2, 0], v[3, 7], v[4, 2] = np.nan, np.inf, -np.inf, 1e300  # 1e300 overflows float32
    with pytest.warns(RuntimeWarning, match=r"4 of 6 row\(s\) .* not stored \(row \(key\): 1 \('k1'\), "
                                            r"2 \('k2'\), 3 \('k3'\), 4 \('k4'\)\)"):
        assert cache.put_many(NS, [f"k{i}" for i in range(6)], v) == 2  # 0.1: returned None, stored all 6
    got = cache.get_many(NS, [f"k{i}" for i in range(6)])
    assert sorted(got) == ["k0", "k5"] and np.array_equal(got["k5"], v[5].astype(np.float32))
    assert len(cache) == 2
    with pytest.warns(RuntimeWarning, match=r"1 of 1 row"):
        assert cache.put_many(NS, ["k0"], np.full((1, 8), np.nan)) == 0  # an old good entry is not replaced
    assert np.array_equal(cache.get_many(NS, ["k0"])["k0"], v[0].astype(np.float32))


# -------------------------------------------------------------------------------- 6. float16 range
def test_float16_row_beyond_its_range_is_stored_as_float32_and_miss_equals_hit(tmp_path):
    cache = EmbeddingCache(tmp_path, dtype="float16")
    computed = _vectors(4, 32, seed=11)
    computed[1, 5] = 70000.0  # beyond float16's 65504: 0.1 stored (and returned) inf
    computed[2, 0] = -1e6
    computed[3, 9] = 65510.0  # rounds to 65504 in float16: still finite, so that row stays float16
    miss = cache.roundtrip(computed)  # what a featurizer returns for its misses
    assert np.isfinite(miss).all()
    assert np.array_equal(miss[1], computed[1]) and np.array_equal(miss[2], computed[2])
    assert np.array_equal(miss[[0, 3]], computed[[0, 3]].astype(np.float16).astype(np.float32))
    assert miss[3, 9] == 65504.0
    assert np.array_equal(cache.roundtrip(miss), miss)  # idempotent: put_many decides the same per row
    assert cache.put_many(NS, KEYS[:4], miss) == 4
    hit = cache.get_many(NS, KEYS[:4])
    assert all(hit[k].tobytes() == miss[i].tobytes() for i, k in enumerate(KEYS[:4]))  # bit for bit
    assert cache.size_bytes() == 2 * 32 * 2 + 2 * 32 * 4
    with sqlite3.connect(cache.db_path) as raw:
        assert dict(raw.execute("SELECT key, dtype FROM entries")) == {"k0": "f2", "k1": "f4", "k2": "f4",
                                                                       "k3": "f2"}


# -------------------------------------------------------------------------------- 7. permissions
@pytest.mark.parametrize(
    ("folder_mode", "db_mode", "warned"),
    [
        (0o777, 0o644, "the folder {folder!r} (drwxrwxrwx, no sticky bit) is writable"),
        (0o755, 0o666, "{db!r} (-rw-rw-rw-) is writable"),
        (0o1777, 0o644, None),  # sticky, like /tmp: others cannot replace our files
        (0o755, 0o644, None),
        (0o775, 0o664, None),  # a group-shared cache is a choice, not an accident
    ],
    ids=["world-writable-folder", "world-writable-db", "sticky-folder", "private", "group-shared"],
)
def test_world_writable_cache_warns_once(tmp_path, record, folder_mode, db_mode, warned):
    folder = tmp_path / "c"
    _filled(folder)
    folder.chmod(folder_mode)
    (folder / "embeddings.sqlite").chmod(db_mode)
    cache = EmbeddingCache(folder)
    cache.get_many(NS, KEYS)
    cache.put_many(NS, ["new"], np.ones((1, 16), np.float32))
    cache.close()
    assert len(cache) == 6  # reopened: still one warning for this instance
    msgs = record(CachePermissionWarning)
    if warned is None:
        assert msgs == []
        return
    (msg,) = msgs
    assert warned.format(folder=str(folder), db=cache.db_path) + " by every user of this machine" in msg
    assert "CRC-32 checksums are no defence against that" in msg and f"chmod o-w {str(folder)!r}" in msg


# -------------------------------------------------------------------------------- 8. evict typo
def test_evict_with_an_unknown_field_names_it_and_suggests_one(tmp_path):
    cache = EmbeddingCache(tmp_path)
    assert cache.evict(backbon="resnet50") == 0  # an empty cache has no fields to check against
    cache.put_many("r50", KEYS, _vectors(), DESC)
    cache.put_many("vit", KEYS, _vectors(), {"backbone": "vit_small", "tokens": "cls"})
    with pytest.raises(CacheError, match=(
        r"evict\(backbon=\.\.\.\): no namespace in this cache has a description field 'backbon'; the fields "
        r"present are 'backbone', 'layer', 'pooling', 'tokens', 'weights'\. Did you mean 'backbone'\? "
        r"cache\.namespaces\(\) shows every description\."
    )) as info:
        cache.evict(backbon="resnet50")  # 0.1: returned 0, as if nothing matched
    assert isinstance(info.value, ValueError)
    with pytest.raises(CacheError, match=r"field 'zzz'; the fields present are .*'weights'\. cache\."):
        cache.evict("r50", zzz=1)  # no close match: no suggestion
    assert len(cache) == 10
    assert cache.evict(backbone="nonexistent") == 0  # a known field without a match is still a plain 0
    assert cache.evict(backbone="resnet50") == 5 and len(cache) == 5


# -------------------------------------------------------------------------------- 9. surrogates
def test_lone_surrogates_in_keys_and_namespaces(tmp_path):
    cache = EmbeddingCache(tmp_path)
    keys = ["caf\udce9", "caf\udce8", "caf\xe9", "caf\xed\xb3\xa9", "plain"]  # the 4th spells the 1st's bytes
    ns = "ns-\udcff"
    v = _vectors(5, 8)
    assert cache.put_many(ns, keys, v, {"backbone": "b\udce9"}) == 5  # 0.1: UnicodeEncodeError
    got = EmbeddingCache(tmp_path).get_many(ns, keys + ["caf\udce7"])
    assert sorted(got) == sorted(keys) and all(np.array_equal(got[k], v[i]) for i, k in enumerate(keys))
    assert cache.get_many("ns-\udcfe", keys) == {} and cache.dim(ns) == 8
    (info,) = cache.namespaces()
    assert info["namespace"] == ns and info["description"] == {"backbone": "b\udce9"} and info["count"] == 5
    with sqlite3.connect(cache.db_path) as raw:  # corrupt the surrogate key's vector: still caught
        raw.execute("UPDATE entries SET vector = zeroblob(32) WHERE typeof(key) = 'blob' AND "
                    "key = CAST(? AS BLOB)", ("caf\udce9".encode("utf-8", "surrogatepass"),))
    with pytest.warns(CacheCorruptionWarning, match=r"key 'caf\\udce9'"):
        assert sorted(cache.get_many(ns, keys)) == sorted(keys[1:])
    assert cache.evict(ns) == 4 and len(cache) == 0


# -------------------------------------------------------------------------------- the featurizer
def test_featurizer_returns_its_features_whatever_the_store_does(tmp_path, small_images, monkeypatch):
    """Read-only, full and locked stores: transform returns exactly the uncached features, every time."""
    from sklearn import clone

    from skfeaturize import ImageFeaturizer

    X = small_images[:4]
    f = ImageFeaturizer("timm:test_resnet", weights=None, layer="layer2", cache=EmbeddingCache(tmp_path))
    ref = clone(f).set_params(cache=None).fit([]).transform(X)
    assert np.array_equal(f.fit([]).transform(X[:2]), ref[:2])  # two images are cached
    real_schema = EmbeddingCache._create_schema

    def not_writable():
        monkeypatch.setattr(_store, "_folder_writable", lambda folder, db: False)
        return EmbeddingCache(tmp_path)

    def full_disk():
        def on_a_full_disk(conn):
            conn.execute("PRAGMA max_page_count = 1")
            real_schema(conn)

        monkeypatch.setattr(EmbeddingCache, "_create_schema", staticmethod(on_a_full_disk))
        return EmbeddingCache(tmp_path / "new-on-a-full-disk")

    holders = []

    def locked():
        monkeypatch.setattr(_store, "BUSY_TIMEOUT_S", 0.2)
        holders.append(sqlite3.connect(tmp_path / "embeddings.sqlite", isolation_level=None))
        holders[-1].execute("BEGIN IMMEDIATE")
        return EmbeddingCache(tmp_path)

    for fault, says in [(not_writable, "read-only"), (full_disk, "disk is full"), (locked, "write lock")]:
        g = clone(f).fit([]).set_params(cache=fault())  # set after clone: clone copies an EmbeddingCache
        with pytest.warns(CacheWriteWarning, match=says):
            assert np.array_equal(g.transform(X), ref)  # hits where there are any, misses computed
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert np.array_equal(g.transform(X), ref)  # and again, without a second warning
        monkeypatch.undo()
    holders[0].close()
    assert len(EmbeddingCache(tmp_path)) == 2
