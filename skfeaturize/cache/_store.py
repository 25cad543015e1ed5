"""The embedding store: one SQLite database in WAL mode, shared safely by many processes.

Why SQLite (see ``docs/cache.md``, "The store"): it is in the standard library, needs no server, commits
each ``put_many`` batch as one crash-safe transaction, and in WAL mode lets any number of readers run while
writers are serialised by a busy timeout, which is exactly the access pattern of the worker processes of a
``GridSearchCV(n_jobs=-1)``.

On-disk format (schema version 1), in ``<folder>/embeddings.sqlite``:

``entries(namespace, key, dim, dtype, checksum, nbytes, last_access, vector)``
    primary key ``(namespace, key)``; ``vector`` is the raw little-endian float bytes (``'f4'`` or ``'f2'``),
    never a pickle; ``checksum`` is CRC-32 over namespace, key, dim, dtype and the bytes; ``last_access`` is
    a Unix time in seconds used for least-recently-used eviction.
``namespaces(namespace, description, dim, created)``
    ``description`` is the JSON of what the namespace fingerprint was made of (backbone, weights, layer, ...).
``hits(entry, t)``
    append-only log of reads (entry rowid, time), written only while a ``max_bytes`` is set and folded into
    ``entries.last_access`` when eviction needs it. Updating ``last_access`` in place on every hit would
    rewrite one random 64 KiB page per hit (reads measured ~10x slower); appending to the log dirties one page
    per ``get_many`` call.
``stats(id, count, nbytes)``
    one row kept exact by triggers, so ``len()``, ``size_bytes()`` and the ``max_bytes`` check are O(1).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import warnings
import zlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from ..exceptions import CacheCorruptionWarning, CacheError
from ._keys import _canonical

__all__ = ["EmbeddingCache", "CacheError", "NetworkFilesystemWarning", "resolve_cache"]

DB_NAME = "embeddings.sqlite"
SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 60.0
"""How long a writer waits for another process's transaction before giving up."""
TOUCH_TIMEOUT_MS = 100
"""Logging a hit for the LRU is best effort: it never waits longer than this for the write lock."""
FOLD_HITS = 100_000
"""Fold the hit log into ``entries.last_access`` once it holds this many rows (and before any eviction)."""
PAGE_SIZE = 65536
_CHUNK = 500  # keys per ``IN (...)`` query, far below SQLite's variable limit (32766 since 3.32, 999 before)
_DTYPES = {"float32": "<f4", "float16": "<f2"}
_CODES = {"<f4": "f4", "<f2": "f2"}
_ITEMSIZE = {"f4": 4, "f2": 2}
_MOUNTS_FILE = "/proc/mounts"
_NETWORK_FS = frozenset(
    {"nfs", "nfs4", "cifs", "smb", "smb2", "smb3", "smbfs", "afs", "9p", "ncpfs", "glusterfs", "ceph",
     "lustre", "gpfs", "beegfs", "fuse.sshfs", "fuse.s3fs", "fuse.gcsfuse", "fuse.rclone", "fuse.glusterfs",
     "fuse.cephfs", "davfs", "fuse.davfs2"}
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS namespaces (
    namespace   TEXT PRIMARY KEY,
    description TEXT NOT NULL,
    dim         INTEGER NOT NULL,
    created     REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS entries (
    namespace   TEXT NOT NULL,
    key         TEXT NOT NULL,
    dim         INTEGER NOT NULL,
    dtype       TEXT NOT NULL,
    checksum    INTEGER NOT NULL,
    nbytes      INTEGER NOT NULL,
    last_access REAL NOT NULL,
    vector      BLOB NOT NULL,
    PRIMARY KEY (namespace, key)
);
CREATE INDEX IF NOT EXISTS entries_lru ON entries (last_access);
CREATE TABLE IF NOT EXISTS hits (
    entry INTEGER NOT NULL,
    t     REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS stats (
    id     INTEGER PRIMARY KEY CHECK (id = 0),
    count  INTEGER NOT NULL,
    nbytes INTEGER NOT NULL
);
INSERT OR IGNORE INTO stats (id, count, nbytes) VALUES (0, 0, 0);
CREATE TRIGGER IF NOT EXISTS entries_ins AFTER INSERT ON entries BEGIN
    UPDATE stats SET count = count + 1, nbytes = nbytes + NEW.nbytes WHERE id = 0;
END;
CREATE TRIGGER IF NOT EXISTS entries_del AFTER DELETE ON entries BEGIN
    UPDATE stats SET count = count - 1, nbytes = nbytes - OLD.nbytes WHERE id = 0;
END;
CREATE TRIGGER IF NOT EXISTS entries_upd AFTER UPDATE OF nbytes ON entries BEGIN
    UPDATE stats SET nbytes = nbytes - OLD.nbytes + NEW.nbytes WHERE id = 0;
END;
"""


class NetworkFilesystemWarning(UserWarning):
    """The cache folder is on a network filesystem, where SQLite's file locking is unreliable."""


# Connections inherited across fork() must never be used *or closed* in the child (closing may checkpoint
# or unlink the parent's WAL); keeping a reference here stops garbage collection from closing them.
_ABANDONED: list[sqlite3.Connection] = []


def _checksum(namespace: str, key: str, dim: int, code: str, blob: bytes) -> int:
    header = f"{namespace}\x1f{key}\x1f{dim}\x1f{code}\x1f".encode()
    return zlib.crc32(blob, zlib.crc32(header))


def _chunks(seq: Sequence, size: int = _CHUNK) -> Iterator[Sequence]:
    for start in range(0, len(seq), size):
        yield seq[start : start + size]


def _check_keys(keys: Sequence[str], what: str) -> list[str]:
    if isinstance(keys, (str, bytes)):
        raise TypeError(
            f"{what}: keys must be a sequence of str, got a single {type(keys).__name__} {keys!r:.60}; "
            "wrap it in a list."
        )
    keys = list(keys)
    for i, k in enumerate(keys):
        if not isinstance(k, str):
            raise TypeError(
                f"{what}: keys[{i}] is {type(k).__name__} {k!r:.60}; keys must be str "
                "(use skfeaturize.cache._keys.hash_* to make one)."
            )
    return keys


def _decode_mount_field(field: str) -> str:
    # /proc/mounts escapes space, tab, newline and backslash as octal (\040 ...)
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def network_filesystem(path: str | os.PathLike, mounts_file: str | None = None) -> str | None:
    """The filesystem type of ``path``'s mount point if it is a network filesystem, else ``None``.

    Reads ``/proc/mounts`` (Linux); elsewhere, or if that file cannot be read, returns ``None``.
    """
    mounts_file = _MOUNTS_FILE if mounts_file is None else mounts_file
    try:
        with open(mounts_file, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    real = os.path.realpath(path)
    best, best_type = "", None
    for line in lines:
        parts = line.split()
        if len(parts) < 3:
            continue
        mount, fstype = _decode_mount_field(parts[1]), parts[2]
        prefix = mount.rstrip("/") + "/"
        if (real == mount or (real + "/").startswith(prefix)) and len(mount) >= len(best):
            best, best_type = mount, fstype
    if best_type is not None and (best_type in _NETWORK_FS or best_type.split(".")[0] in _NETWORK_FS):
        return best_type
    return None


class EmbeddingCache:
    """A persistent, process-safe store of float vectors addressed by ``(namespace, key)``.

    Parameters
    ----------
    path : str or os.PathLike
        Folder of the cache (created on first use; ``~`` is expanded). The data lives in one SQLite file,
        ``<path>/embeddings.sqlite``, plus SQLite's ``-wal`` and ``-shm`` companions while it is in use.
        Use a local disk: network filesystems (NFS, SMB, ...) break SQLite's locking, and opening a cache
        there emits a :class:`NetworkFilesystemWarning`.
    dtype : {"float32", "float16"}, default="float32"
        Storage precision. ``"float16"`` halves the size; every vector (computed or read back) is then
        rounded through float16, see :meth:`roundtrip`. Vectors are always returned as float32.
    max_bytes : int or None, default=None
        Upper bound on the stored vector bytes (:meth:`size_bytes`). After each :meth:`put_many` the least
        recently *read or written* entries are evicted until the bound holds. ``None`` means unbounded.
        Reads are recorded for the LRU only by instances with a ``max_bytes`` (an unbounded cache never
        writes on a read); an entry never read that way ranks by its write time.

    Notes
    -----
    Nothing is opened in ``__init__``; the connection opens on first use, once per process (a forked child
    opens its own). Pickling keeps only ``path``, ``dtype`` and ``max_bytes``. An instance is thread-safe
    (calls are serialised by a lock).

    Durability: ``synchronous=NORMAL`` in WAL mode. A killed process (SIGKILL, OOM killer, crash) never loses
    a committed batch and never corrupts the database. After a power cut or kernel crash the last few
    committed batches may roll back (the database is still consistent), which for a cache only means they
    are recomputed; ``synchronous=FULL`` would fsync on every commit for no benefit a cache can use.
    """

    def __init__(self, path: str | os.PathLike, *, dtype: str = "float32", max_bytes: int | None = None):
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(
                f"EmbeddingCache path must be a str or os.PathLike folder, got {type(path).__name__} "
                f"{path!r:.80}."
            )
        if dtype not in _DTYPES:
            raise CacheError(
                f"EmbeddingCache dtype={dtype!r} is not supported; allowed: 'float32' (exact) or 'float16' "
                "(half the size, about 3 significant digits)."
            )
        if max_bytes is not None and (
            isinstance(max_bytes, bool) or not isinstance(max_bytes, (int, np.integer)) or max_bytes <= 0
        ):
            raise CacheError(
                f"EmbeddingCache max_bytes={max_bytes!r} is invalid; allowed: None (unbounded) or a positive "
                "int number of bytes, e.g. max_bytes=10 * 2**30 for 10 GiB."
            )
        self.path = os.path.abspath(os.path.expanduser(os.fspath(path)))
        self.dtype = dtype
        self.max_bytes = None if max_bytes is None else int(max_bytes)
        self._reset_runtime()

    # ------------------------------------------------------------------ lifecycle, pickling, repr
    def _reset_runtime(self) -> None:
        self._conn: sqlite3.Connection | None = None
        self._pid: int | None = None
        self._lock = threading.RLock()

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "dtype": self.dtype, "max_bytes": self.max_bytes}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path = state["path"]
        self.dtype = state["dtype"]
        self.max_bytes = state["max_bytes"]
        self._reset_runtime()

    def __repr__(self) -> str:
        extra = "" if self.max_bytes is None else f", max_bytes={self.max_bytes}"
        return f"{type(self).__name__}({self.path!r}, dtype={self.dtype!r}{extra})"

    @property
    def db_path(self) -> str:
        """The SQLite file inside the cache folder."""
        return os.path.join(self.path, DB_NAME)

    def _locked(self) -> threading.RLock:
        """This process's lock. Checked before locking: a lock held by a parent's thread at fork() time would
        stay held forever in the child."""
        if self._pid != os.getpid():  # first use, or first use in a forked child
            if self._conn is not None:
                _ABANDONED.append(self._conn)
            self._conn, self._pid, self._lock = None, os.getpid(), threading.RLock()
        return self._lock

    def _connection(self) -> sqlite3.Connection:
        """This process's connection, opened on first use; call with ``self._locked()`` held."""
        self._locked()
        if self._conn is None:
            self._conn = self._open()
        return self._conn

    def _open(self) -> sqlite3.Connection:
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise CacheError(
                f"Cache path {self.path!r} exists and is not a folder; pass a folder (it will hold "
                f"{DB_NAME!r}), e.g. cache='~/.cache/skfeaturize'."
            )
        os.makedirs(self.path, exist_ok=True)
        fstype = network_filesystem(self.path)
        if fstype is not None:
            warnings.warn(
                f"Cache folder {self.path!r} is on a network filesystem ({fstype}), where SQLite's file "
                "locking is unreliable: concurrent processes may corrupt the cache. Use a folder on a local "
                "disk (e.g. cache='/tmp/skfeaturize-cache' or a node-local scratch directory).",
                NetworkFilesystemWarning,
                stacklevel=4,
            )
        conn = sqlite3.connect(
            self.db_path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            # Only takes effect on a new, empty file (before WAL). 64 KiB pages pack vectors of any common
            # width tightly: with 4 KiB pages a 1280-d float16 row (2.6 KB) fills a page alone (1.65x the
            # vector bytes on disk); with 64 KiB pages every width up to 2048-d costs <= 1.2x.
            conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
            mode = self._retry(lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
            if str(mode).lower() != "wal":
                warnings.warn(
                    f"Cache {self.db_path!r} could not switch to WAL mode (got {mode!r}); readers will block "
                    "writers. Use a folder on a local disk.",
                    NetworkFilesystemWarning,
                    stacklevel=4,
                )
            conn.execute("PRAGMA synchronous = NORMAL")  # see the class docstring for why not FULL
            conn.execute("PRAGMA recursive_triggers = ON")  # REPLACE's implicit delete fires entries_del
            conn.execute("PRAGMA journal_size_limit = 67108864")  # truncate the WAL back to 64 MiB
            conn.execute("PRAGMA cache_size = -16384")  # 16 MiB of page cache per connection
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise CacheError(
                    f"Cache {self.db_path!r} has schema version {version}, newer than this skfeaturize "
                    f"understands ({SCHEMA_VERSION}); upgrade skfeaturize or use another cache folder."
                )
            if version < SCHEMA_VERSION:
                self._retry(lambda: self._create_schema(conn))
        except sqlite3.DatabaseError as e:
            conn.close()
            raise CacheError(
                f"Cache file {self.db_path!r} is not a readable skfeaturize cache ({e}); delete it (the "
                "cache is recomputed) or pass another cache folder."
            ) from e
        except BaseException:
            conn.close()
            raise
        return conn

    @staticmethod
    def _retry(fn, attempts: int = 20):
        # Switching to WAL and creating the schema can race between processes opening a new cache at once;
        # SQLite then reports "locked" without calling the busy handler. Back off and retry.
        for i in range(attempts):
            try:
                return fn()
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) and "busy" not in str(e) or i == attempts - 1:
                    raise
                time.sleep(0.05 * (i + 1))

    @staticmethod
    def _create_schema(conn: sqlite3.Connection) -> None:
        # every statement is idempotent (IF NOT EXISTS / OR IGNORE), so racing creators are harmless
        try:
            conn.executescript(f"BEGIN IMMEDIATE;{_SCHEMA}PRAGMA user_version = {SCHEMA_VERSION};COMMIT;")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        """Close this process's connection (it reopens on next use)."""
        with self._locked():
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    # ------------------------------------------------------------------ conversions
    @property
    def _storage(self) -> str:
        return _DTYPES[self.dtype]

    def roundtrip(self, vectors: np.ndarray) -> np.ndarray:
        """``vectors`` as they will read back: cast to the storage dtype and back to float32.

        A featurizer returns ``roundtrip(computed)`` for its misses, so a miss now and a hit later are equal
        bit for bit, whatever the storage dtype.
        """
        stored = np.asarray(vectors, dtype=np.float32)
        if self._storage != "<f4":
            with np.errstate(over="ignore"):  # out-of-range values become inf, as put_many stores them
                stored = stored.astype(self._storage)
        return np.ascontiguousarray(stored, dtype=np.float32)

    # ------------------------------------------------------------------ reads
    def get_many(self, namespace: str, keys: Sequence[str]) -> dict[str, np.ndarray]:
        """The stored vectors of ``keys`` in ``namespace``, as ``{key: float32 1-D array}``; hits only.

        An entry that fails its checksum (or has an inconsistent dim, dtype or length) is deleted, reported
        with a :class:`~skfeaturize.exceptions.CacheCorruptionWarning`, and left out, so it is recomputed.
        """
        keys = _check_keys(keys, "get_many")
        if not keys:
            return {}
        out: dict[str, np.ndarray] = {}
        hit_rows: list[int] = []
        corrupt: list[tuple[int, int, str]] = []
        now = time.time()
        with self._locked():
            conn = self._connection()
            for chunk in _chunks(list(dict.fromkeys(keys))):
                rows = conn.execute(
                    "SELECT rowid, key, dim, dtype, checksum, vector FROM entries "
                    f"WHERE namespace = ? AND key IN ({','.join('?' * len(chunk))})",
                    (namespace, *chunk),
                ).fetchall()
                for rowid, key, dim, code, checksum, blob in rows:
                    vec = self._decode(namespace, key, dim, code, checksum, blob)
                    if vec is None:
                        corrupt.append((rowid, checksum, key))
                        continue
                    out[key] = vec
                    hit_rows.append(rowid)
            if corrupt:
                self._drop_corrupt(conn, namespace, corrupt)
            if hit_rows and self.max_bytes is not None:
                self._log_hits(conn, hit_rows, now)
        return out

    @staticmethod
    def _decode(namespace: str, key: str, dim, code, checksum, blob) -> np.ndarray | None:
        if (
            code not in _ITEMSIZE
            or not isinstance(dim, int)
            or dim <= 0
            or not isinstance(blob, bytes)
            or len(blob) != dim * _ITEMSIZE[code]
            or _checksum(namespace, key, dim, code, blob) != checksum
        ):
            return None
        return np.frombuffer(blob, dtype="<" + code).astype(np.float32)  # astype copies: writable

    def _drop_corrupt(self, conn: sqlite3.Connection, namespace: str, corrupt: list[tuple[int, int, str]]):
        names = ", ".join(repr(k) for _, _, k in corrupt[:5]) + (" ..." if len(corrupt) > 5 else "")
        warnings.warn(
            f"{len(corrupt)} corrupt cache entr{'y' if len(corrupt) == 1 else 'ies'} in {self.db_path!r} "
            f"(namespace {namespace!r}, key {names}): checksum, dim or length mismatch. Deleted; they will "
            "be recomputed. If this repeats, check the disk, or delete the cache folder.",
            CacheCorruptionWarning,
            stacklevel=3,
        )
        # delete by rowid *and* checksum: if another process rewrote the entry meanwhile, keep its new value
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(
                "DELETE FROM entries WHERE rowid = ? AND checksum = ?", [(r, c) for r, c, _ in corrupt]
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    @staticmethod
    def _log_hits(conn: sqlite3.Connection, rowids: list[int], now: float) -> None:
        # Best effort: a reader never waits long for the write lock just to record a hit for the LRU.
        conn.execute(f"PRAGMA busy_timeout = {TOUCH_TIMEOUT_MS}")
        try:
            conn.execute("BEGIN IMMEDIATE")  # one transaction, not one per row (autocommit mode)
            try:
                conn.executemany("INSERT INTO hits (entry, t) VALUES (?, ?)", [(r, now) for r in rowids])
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) and "busy" not in str(e):
                raise
        finally:
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")

    def dim(self, namespace: str) -> int | None:
        """The vector length registered for ``namespace``, or ``None`` if it was never written."""
        with self._locked():
            row = self._connection().execute(
                "SELECT dim FROM namespaces WHERE namespace = ?", (namespace,)
            ).fetchone()
        return None if row is None else int(row[0])

    # ------------------------------------------------------------------ writes
    def put_many(
        self,
        namespace: str,
        keys: Sequence[str],
        vectors: np.ndarray,
        description: Mapping[str, Any] | None = None,
    ) -> None:
        """Store ``vectors[i]`` under ``(namespace, keys[i])`` in one transaction, replacing old values.

        ``vectors`` is 2-D ``(len(keys), dim)``; it is stored in the cache's dtype (read back equals
        :meth:`roundtrip`). ``description`` (JSON-able, e.g. ``{"backbone": "resnet50", "layer": "layer4"}``)
        is recorded for the namespace and is what :meth:`evict` matches on. Afterwards, ``max_bytes`` is
        enforced by evicting least recently used entries.
        """
        if not isinstance(namespace, str) or not namespace:
            raise TypeError(f"put_many: namespace must be a non-empty str, got {namespace!r:.80}.")
        keys = _check_keys(keys, "put_many")
        vecs = np.asarray(vectors)
        if vecs.ndim != 2 or vecs.shape[0] != len(keys) or vecs.shape[1] == 0:
            raise CacheError(
                f"put_many: vectors must be 2-D of shape (len(keys), dim) = ({len(keys)}, dim>0), got shape "
                f"{vecs.shape}; pass one row per key."
            )
        if not (np.issubdtype(vecs.dtype, np.floating) or np.issubdtype(vecs.dtype, np.integer)):
            raise CacheError(f"put_many: vectors must be numeric, got dtype {vecs.dtype}.")
        if not keys:
            return
        dim = int(vecs.shape[1])
        with np.errstate(over="ignore"):  # reported below, with advice
            stored = np.asarray(vecs, dtype=np.float32).astype(self._storage, order="C", copy=False)
        if self._storage == "<f2":
            overflow = np.isinf(stored) & np.isfinite(vecs)
            if overflow.any():
                warnings.warn(
                    f"put_many: {int(overflow.sum())} value(s) in namespace {namespace!r} exceed float16's "
                    "range (|x| > 65504) and are stored as inf; use EmbeddingCache(dtype='float32').",
                    RuntimeWarning,
                    stacklevel=2,
                )
        code = _CODES[self._storage]
        if description is None:
            desc_json = "{}"
        else:
            if not isinstance(description, Mapping):
                raise TypeError(
                    f"put_many: description must be a dict or None, got {type(description).__name__}."
                )
            desc_json = json.dumps(_canonical(description), sort_keys=True)
        now = time.time()
        rows = []
        for key, row in zip(keys, stored, strict=True):
            blob = row.tobytes()
            checksum = _checksum(namespace, key, dim, code, blob)
            rows.append((namespace, key, dim, code, checksum, len(blob), now, blob))
        with self._locked():
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                known = conn.execute(
                    "SELECT dim FROM namespaces WHERE namespace = ?", (namespace,)
                ).fetchone()
                if known is not None and int(known[0]) != dim:
                    raise CacheError(
                        f"put_many: namespace {namespace!r} holds {known[0]}-d vectors, got {dim}-d. A "
                        "namespace must fingerprint all that changes the output (layer, pooling, ...); "
                        f"if this one is stale, call cache.evict(namespace={namespace!r}) first."
                    )
                conn.execute(
                    "INSERT INTO namespaces (namespace, description, dim, created) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (namespace) DO UPDATE SET description = excluded.description "
                    "WHERE excluded.description != '{}'",
                    (namespace, desc_json, dim, now),
                )
                conn.executemany(
                    "INSERT OR REPLACE INTO entries "
                    "(namespace, key, dim, dtype, checksum, nbytes, last_access, vector) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
                if self.max_bytes is not None:
                    self._enforce_max_bytes(conn, self.max_bytes)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    @staticmethod
    def _fold_hits(conn: sqlite3.Connection) -> None:
        # a stale hit whose rowid was reused by a newer entry only makes that entry look fresher: harmless
        latest = conn.execute("SELECT entry, MAX(t) FROM hits GROUP BY entry").fetchall()
        conn.executemany(
            "UPDATE entries SET last_access = ? WHERE rowid = ? AND last_access < ?",
            [(t, entry, t) for entry, t in latest],
        )
        conn.execute("DELETE FROM hits")

    @classmethod
    def _enforce_max_bytes(cls, conn: sqlite3.Connection, max_bytes: int) -> int:
        total = conn.execute("SELECT nbytes FROM stats WHERE id = 0").fetchone()[0]
        excess = total - max_bytes
        if excess <= 0:
            # the log is only ever emptied as a whole, so the rowid span is its length (and O(1) to get)
            logged = conn.execute("SELECT COALESCE(MAX(rowid) - MIN(rowid) + 1, 0) FROM hits").fetchone()[0]
            if logged >= FOLD_HITS:
                cls._fold_hits(conn)  # keep the log bounded
            return 0
        cls._fold_hits(conn)
        victims, freed = [], 0
        cursor = conn.execute("SELECT rowid, nbytes FROM entries ORDER BY last_access, rowid")
        for rowid, nbytes in cursor:
            victims.append(rowid)
            freed += nbytes
            if freed >= excess:
                break
        cursor.close()
        for chunk in _chunks(victims):
            conn.execute(f"DELETE FROM entries WHERE rowid IN ({','.join('?' * len(chunk))})", chunk)
        return len(victims)

    # ------------------------------------------------------------------ housekeeping
    def __len__(self) -> int:
        """Number of entries, all namespaces together."""
        with self._locked():
            return int(self._connection().execute("SELECT count FROM stats WHERE id = 0").fetchone()[0])

    def size_bytes(self) -> int:
        """Bytes of vector data stored (what ``max_bytes`` bounds); the file adds ~5-10 % of overhead."""
        with self._locked():
            return int(self._connection().execute("SELECT nbytes FROM stats WHERE id = 0").fetchone()[0])

    def namespaces(self) -> list[dict[str, Any]]:
        """One dict per namespace, oldest first.

        Keys: ``namespace``, ``description`` (dict), ``dim``, ``count``, ``bytes`` (of vectors), ``created``.
        """
        with self._locked():
            rows = self._connection().execute(
                "SELECT n.namespace, n.description, n.dim, n.created, "
                "       COUNT(e.rowid), COALESCE(SUM(e.nbytes), 0) "
                "FROM namespaces n LEFT JOIN entries e ON e.namespace = n.namespace "
                "GROUP BY n.namespace ORDER BY n.created, n.namespace"
            ).fetchall()
        return [
            {"namespace": ns, "description": json.loads(desc), "dim": int(dim), "count": int(count),
             "bytes": int(nbytes), "created": float(created)}
            for ns, desc, dim, created, count, nbytes in rows
        ]

    def clear(self) -> int:
        """Delete every entry and namespace; returns the number of entries deleted."""
        return self._delete_namespaces(None)

    def evict(self, namespace: str | None = None, **match: Any) -> int:
        """Delete the entries of one namespace, or of every namespace whose description matches ``match``.

        ``cache.evict(backbone="resnet50")`` drops everything computed with that backbone;
        ``cache.evict(backbone="resnet50", layer="layer2")`` needs both to match;
        ``cache.evict(namespace)`` drops one namespace. Returns the number of entries deleted.
        """
        if namespace is None and not match:
            raise TypeError(
                "evict() needs a namespace or at least one description field, e.g. "
                "evict(backbone='resnet50'); cache.namespaces() lists them, cache.clear() deletes everything."
            )
        wanted = {k: _canonical(v) for k, v in match.items()}
        chosen = []
        for info in self.namespaces():
            if namespace is not None and info["namespace"] != namespace:
                continue
            desc = info["description"]
            if all(k in desc and desc[k] == v for k, v in wanted.items()):
                chosen.append(info["namespace"])
        return self._delete_namespaces(chosen) if chosen else 0

    def _delete_namespaces(self, names: list[str] | None) -> int:
        with self._locked():
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                before = conn.execute("SELECT count FROM stats WHERE id = 0").fetchone()[0]
                if names is None:
                    conn.execute("DELETE FROM entries")
                    conn.execute("DELETE FROM namespaces")
                    conn.execute("DELETE FROM hits")
                else:
                    for name in names:
                        conn.execute("DELETE FROM entries WHERE namespace = ?", (name,))
                        conn.execute("DELETE FROM namespaces WHERE namespace = ?", (name,))
                after = conn.execute("SELECT count FROM stats WHERE id = 0").fetchone()[0]
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return int(before - after)

    def vacuum(self) -> None:
        """Give free pages back to the filesystem (after evictions) and truncate the WAL."""
        with self._locked():
            conn = self._connection()
            conn.execute("VACUUM")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


_SHARED: dict[str, EmbeddingCache] = {}
_SHARED_LOCK = threading.Lock()


def resolve_cache(cache: None | str | os.PathLike | EmbeddingCache) -> EmbeddingCache | None:
    """Turn a featurizer's ``cache`` parameter into an :class:`EmbeddingCache` (or ``None``).

    ``None`` -> ``None``; an ``EmbeddingCache`` -> itself; a folder (str or path-like, ``~`` expanded) ->
    the process-wide shared ``EmbeddingCache`` of that absolute path, so every clone of a featurizer in a
    grid search uses one connection.
    """
    if cache is None or isinstance(cache, EmbeddingCache):
        return cache
    if isinstance(cache, (str, os.PathLike)):
        path = os.path.abspath(os.path.expanduser(os.fspath(cache)))
        with _SHARED_LOCK:
            if path not in _SHARED:
                _SHARED[path] = EmbeddingCache(path)
            return _SHARED[path]
    raise TypeError(
        f"cache={cache!r:.80} ({type(cache).__name__}) is not supported; allowed: None (no cache), a folder "
        "path (str or pathlib.Path, e.g. '~/.cache/skfeaturize') or an skfeaturize.cache.EmbeddingCache "
        "(e.g. EmbeddingCache(path, dtype='float16', max_bytes=...))."
    )
