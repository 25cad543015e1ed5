"""The embedding store: one SQLite database in WAL mode, shared safely by many processes.

Why SQLite (see ``docs/cache.md``, "The store"): it is in the standard library, needs no server, commits
each ``put_many`` batch as one crash-safe transaction, and in WAL mode lets any number of readers run while
writers are serialised by a busy timeout, which is exactly the access pattern of the worker processes of a
``GridSearchCV(n_jobs=-1)``.

On-disk format (schema version 2; a version-1 database gains the ``plans`` table when first opened for
writing), in ``<folder>/embeddings.sqlite``:

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
``plans(key, plan, checksum, created)``
    fitted featurizer plans (JSON) by a hash of everything they were resolved from (:meth:`get_plan`), so a
    warm-cache ``fit`` in a fresh worker process needs no deep-learning library.

Faults degrade instead of losing work (``docs/cache.md``, "Faults and what the store promises"): a folder
that cannot be written is opened read-only (hits are served), a full disk, a lock held past
:data:`BUSY_TIMEOUT_S` or a disk I/O error skip the write with one :class:`CacheWriteWarning`, and a corrupt
database file is moved aside and rebuilt empty. :func:`_fault` decides which errors are faults; any other
error is a bug and is raised.
"""

from __future__ import annotations

import contextlib
import difflib
import errno
import json
import os
import shutil
import sqlite3
import stat
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

import numpy as np

from .._warnings import warn
from ..exceptions import (
    CacheCorruptionWarning,
    CacheError,
    CachePermissionWarning,
    CacheWriteWarning,
    NetworkFilesystemWarning,
)
from ._keys import _canonical

try:  # POSIX: serialises moving a corrupt database aside between processes
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = [
    "EmbeddingCache", "CacheError", "CachePermissionWarning", "CacheWriteWarning", "NetworkFilesystemWarning",
    "resolve_cache",
]

DB_NAME = "embeddings.sqlite"
SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)  # version 1 lacks only the plans table
BUSY_TIMEOUT_S = 60.0
"""How long a writer waits for another process's transaction before skipping its batch (read at open)."""
NEARLY_FULL_BYTES = 1 << 20
"""A disk I/O error while less than this is free on the cache's disk is reported as a full disk."""
TOUCH_TIMEOUT_MS = 100
"""Logging a hit for the LRU is best effort: it never waits longer than this for the write lock."""
FOLD_HITS = 100_000
"""Fold the hit log into ``entries.last_access`` once it holds this many rows (and before any eviction)."""
PAGE_SIZE = 65536
_MAGIC = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database file
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
CREATE TABLE IF NOT EXISTS plans (
    key      TEXT PRIMARY KEY,
    plan     TEXT NOT NULL,
    checksum INTEGER NOT NULL,
    created  REAL NOT NULL
);
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


# Connections inherited across fork() must never be used *or closed* in the child (closing may checkpoint
# or unlink the parent's WAL); keeping a reference here stops garbage collection from closing them.
_ABANDONED: list[sqlite3.Connection] = []


def _checksum(namespace: str, key: str, dim: int, code: str, blob: bytes) -> int:
    # 'surrogatepass': a key may hold a lone surrogate (os.fsdecode of a non-UTF-8 name); same bytes otherwise
    header = f"{namespace}\x1f{key}\x1f{dim}\x1f{code}\x1f".encode("utf-8", "surrogatepass")
    return zlib.crc32(blob, zlib.crc32(header))


def _sql_text(s: str) -> str | bytes:
    """``s`` in a form sqlite3 can bind.

    sqlite3 encodes a str as strict UTF-8, which a lone surrogate cannot pass. Such a string is bound as its
    ``'surrogatepass'`` bytes, a BLOB: SQLite never compares a BLOB equal to a TEXT, so it cannot collide
    with any other string, and :func:`_py_text` turns it back.
    """
    if s.isascii():  # the common case (hex keys and namespaces), and the fastest test
        return s
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return s.encode("utf-8", "surrogatepass")
    return s


def _py_text(value: str | bytes) -> str:
    return value.decode("utf-8", "surrogatepass") if isinstance(value, bytes) else value


def _folder_writable(folder: str, db_path: str) -> bool:
    """Whether this process may write the cache: the folder (where SQLite creates ``-wal``/``-shm``) and the
    database file; or, in a folder it may not write, the database and both companions, which all exist.

    The seam for tests of the read-only path: a test running as root cannot make a folder read-only with
    ``chmod`` (root passes every permission check), so it replaces this function, or runs the store as root
    without ``CAP_DAC_OVERRIDE`` or on a read-only mount (``tests/test_cache_faults.py`` does all three).
    """
    if os.access(folder, os.W_OK | os.X_OK):
        return not os.path.exists(db_path) or os.access(db_path, os.W_OK)
    return all(os.access(db_path + suffix, os.W_OK) for suffix in ("", "-wal", "-shm"))


def _not_a_database(db_path: str) -> tuple[int, int] | None:
    """The ``(st_dev, st_ino)`` of ``db_path`` if it is a non-empty file that does not start with SQLite's
    header: corrupt, and better not opened (SQLite would delete the -wal and -shm files next to it, which
    are part of the evidence). ``None`` otherwise."""
    try:
        with open(db_path, "rb") as f:
            head, st = f.read(len(_MAGIC)), os.fstat(f.fileno())
    except OSError:  # missing (a new cache), or unreadable: SQLite reports that better
        return None
    return (st.st_dev, st.st_ino) if head and head != _MAGIC[: len(head)] else None


def _nearly_full(folder: str) -> bool:
    try:
        return shutil.disk_usage(folder).free < NEARLY_FULL_BYTES
    except OSError:
        return False


_SQLITE_FAULTS = (  # (error-name prefixes, message fragments, fault); first match wins
    (("SQLITE_CORRUPT", "SQLITE_NOTADB"), ("malformed", "not a database"), "corrupt"),
    (("SQLITE_FULL",), ("disk is full",), "full"),
    (("SQLITE_BUSY", "SQLITE_LOCKED"), ("is locked",), "locked"),
    (("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM"), ("readonly", "unable to open"), "read-only"),
    (("SQLITE_IOERR",), ("disk I/O error",), "I/O error"),
)


def _fault(exc: BaseException, folder: str) -> str | None:
    """The store fault that ``exc`` reports (``"corrupt"``, ``"full"``, ``"locked"``, ``"read-only"``,
    ``"I/O error"``), or ``None`` for an error that is not a fault of the disk or of another process."""
    if isinstance(exc, OSError):
        if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
            return "full"
        return "read-only" if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS) else None
    if not isinstance(exc, sqlite3.DatabaseError):
        return None
    name, message = getattr(exc, "sqlite_errorname", "") or "", str(exc)  # the name exists from Python 3.11
    for prefixes, fragments, fault in _SQLITE_FAULTS:
        if name.startswith(prefixes) or any(f in message for f in fragments):
            # ENOSPC while growing the -shm file surfaces as a generic I/O error
            return "full" if fault == "I/O error" and _nearly_full(folder) else fault
    return None


def _rollback(conn: sqlite3.Connection) -> None:
    """Roll back the open transaction, if there still is one.

    On some errors (a full disk at COMMIT) SQLite has already rolled back by itself; a ROLLBACK then raises
    "cannot rollback - no transaction is active", which would replace the real error.
    """
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):  # the error being handled is the one to report
            conn.execute("ROLLBACK")


@contextlib.contextmanager
def _folder_lock(folder: str) -> Iterator[None]:
    """An exclusive ``flock`` on the folder itself (no extra file), where the platform has one."""
    if fcntl is None:
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _shared_writable(folder: str, db_path: str) -> list[str]:
    """What in the cache any user of the machine may write: the folder (without the sticky bit) and files."""
    found = []
    mode = os.stat(folder).st_mode
    if mode & stat.S_IWOTH and not mode & stat.S_ISVTX:
        found.append(f"the folder {folder!r} ({stat.filemode(mode)}, no sticky bit)")
    for path in (db_path, db_path + "-wal", db_path + "-shm"):
        with contextlib.suppress(FileNotFoundError):
            mode = os.stat(path).st_mode
            if mode & stat.S_IWOTH:
                found.append(f"{path!r} ({stat.filemode(mode)})")
    return found


def _chunks(seq: Sequence, size: int = _CHUNK) -> Iterator[Sequence]:
    for start in range(0, len(seq), size):
        yield seq[start : start + size]


def _entries(conn: sqlite3.Connection, namespace: str, keys: Sequence[str], columns: str) -> Iterator[tuple]:
    """``(rowid, key, *columns)`` of the stored entries of ``keys`` in ``namespace`` (``columns``: more
    column names, each after a comma), queried in chunks of at most ``_CHUNK`` keys, each chunk fetched
    whole before it is yielded, so that the caller may write on ``conn`` in between."""
    ns = _sql_text(namespace)
    for chunk in _chunks(list(dict.fromkeys(keys))):
        marks = ",".join("?" * len(chunk))
        rows = conn.execute(
            f"SELECT rowid, key{columns} FROM entries WHERE namespace = ? AND key IN ({marks})",
            (ns, *map(_sql_text, chunk)),
        ).fetchall()
        for rowid, key, *rest in rows:
            yield rowid, _py_text(key), *rest


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

    Faults degrade, they never lose the caller's vectors (:attr:`mode` says how the store is used): a folder
    this process cannot write is opened read-only, so hits are served and writes are skipped; a folder that
    cannot be created, or a database that cannot be read, turns the store off (every lookup a miss); a full
    disk, a lock held past :data:`BUSY_TIMEOUT_S` or a disk I/O error skip that write. Each cause is reported
    once per instance with a :class:`~skfeaturize.exceptions.CacheWriteWarning`. A corrupt database file is
    moved aside and rebuilt (:class:`~skfeaturize.exceptions.CacheCorruptionWarning`); a world-writable
    folder or database warns (:class:`~skfeaturize.exceptions.CachePermissionWarning`). ``evict``, ``clear``
    and ``vacuum`` raise :class:`CacheError` when the store cannot be changed: the user asked for a change.

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
        self._forget_connection()
        self._warned: set[str] = set()  # faults already reported by this instance: one warning each

    def _forget_connection(self) -> None:
        self._opened = False  # True once _open ran; the connection may then be None ("off")
        self._mode: str | None = None  # "rw", "ro" (hits only) or "off" (every lookup a miss)
        self._no_write: tuple[str, str] | None = None  # (fault, detail) while writes are impossible
        self._file_id: tuple[int, int] | None = None  # (st_dev, st_ino) of the database file opened

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

    @property
    def mode(self) -> str:
        """How this process uses the store: ``"rw"``, ``"ro"`` (hits are served, writes are skipped: the
        folder is read-only or the disk was full at open) or ``"off"`` (every lookup is a miss, nothing is
        stored: the store cannot be read). Opens the store if it is not open yet."""
        with self._locked():
            self._connection()
            return self._mode

    def _locked(self) -> threading.RLock:
        """This process's lock. Checked before locking: a lock held by a parent's thread at fork() time would
        stay held forever in the child."""
        if self._pid != os.getpid():  # first use, or first use in a forked child
            if self._conn is not None:
                _ABANDONED.append(self._conn)
            self._conn, self._pid, self._lock = None, os.getpid(), threading.RLock()
            self._forget_connection()
        return self._lock

    def _connection(self) -> sqlite3.Connection | None:
        """This process's connection, opened on first use (``None`` when the store is off); call with
        ``self._locked()`` held."""
        self._locked()
        if not self._opened:
            self._conn = self._open()
            self._opened = True
            if self._mode is None:
                self._mode = "off" if self._conn is None else "rw" if self._no_write is None else "ro"
        return self._conn

    # ------------------------------------------------------------------ opening, and faults at open
    def _open(self) -> sqlite3.Connection | None:
        """Read-write if possible, else read-only (hits only), else ``None`` (off); faults never raise."""
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise CacheError(
                f"Cache path {self.path!r} exists and is not a folder; pass a folder (it will hold "
                f"{DB_NAME!r}), e.g. cache='~/.cache/skfeaturize'."
            )
        if not self._make_folder():
            return None
        self._warn_about_folder()
        writable = _folder_writable(self.path, self.db_path)
        self._file_id = _not_a_database(self.db_path)
        if self._file_id is not None:
            exc = sqlite3.DatabaseError("file is not a database")
            if not writable:
                self._off_corrupt(exc, "it cannot be moved aside (the folder is not writable)")
                return None
            if not self._move_aside(exc):
                return None
        if not writable:
            self._no_write = ("read-only", "the folder or the database file is not writable by this process")
            return self._open_ro()
        return self._open_writable()

    def _open_writable(self) -> sqlite3.Connection | None:
        for attempt in range(2):
            try:
                return self._open_rw()
            except sqlite3.DatabaseError as e:
                fault = _fault(e, self.path)
                if fault is None:
                    raise CacheError(
                        f"Cache file {self.db_path!r} cannot be opened ({e}); pass another cache folder, or "
                        "report this error if the folder is a plain local one."
                    ) from e
                if fault != "corrupt":
                    self._no_write = (fault, str(e))
                    return self._open_ro()
                if attempt or not self._move_aside(e):
                    self._off_corrupt(e, "it could not be replaced")
                    return None
        return None  # pragma: no cover - the loop always returns

    def _make_folder(self) -> bool:
        try:
            os.makedirs(self.path, exist_ok=True)
            return True
        except OSError as e:
            fault = _fault(e, os.path.dirname(self.path))
            if fault is None:
                raise CacheError(
                    f"Cache folder {self.path!r} cannot be created ({e.strerror}); pass another folder, "
                    "e.g. cache='~/.cache/skfeaturize'."
                ) from e
            self._mode, self._no_write = "off", (fault, f"the folder cannot be created: {e.strerror}")
            self._warn_write(fault, 0, off=True)
            return False

    def _warn_about_folder(self) -> None:
        fstype = network_filesystem(self.path)
        if fstype is not None:
            warn(
                f"Cache folder {self.path!r} is on a network filesystem ({fstype}), where SQLite's file "
                "locking is unreliable: concurrent processes may corrupt the cache. Use a folder on a local "
                "disk (e.g. cache='/tmp/skfeaturize-cache' or a node-local scratch directory).",
                NetworkFilesystemWarning)
        shared = _shared_writable(self.path, self.db_path)
        if shared and "shared" not in self._warned:
            self._warned.add("shared")  # once per instance, like the write warnings
            warn(
                f"Cache {self.path!r}: {' and '.join(shared)} {'is' if len(shared) == 1 else 'are'} writable "
                "by every user of this machine. "
                "Another user could plant or change entries, and the entries' CRC-32 checksums are no "
                "defence against that (anyone can compute a valid checksum for a wrong vector). Make it "
                f"private: chmod o-w {self.path!r} (and the files in it), or use a folder only you can "
                "write, e.g. cache='~/.cache/skfeaturize'.",
                CachePermissionWarning)

    def _open_rw(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.db_path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        try:
            with contextlib.suppress(OSError):  # the file this connection reads, should it turn out corrupt
                st = os.stat(self.db_path)
                self._file_id = (st.st_dev, st.st_ino)
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            # Only takes effect on a new, empty file (before WAL). 64 KiB pages pack vectors of any common
            # width tightly: with 4 KiB pages a 1280-d float16 row (2.6 KB) fills a page alone (1.65x the
            # vector bytes on disk); with 64 KiB pages every width up to 2048-d costs <= 1.2x.
            conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
            mode = self._retry(lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
            if str(mode).lower() != "wal":
                warn(
                    f"Cache {self.db_path!r} could not switch to WAL mode (got {mode!r}); readers will block "
                    "writers. Use a folder on a local disk.",
                    NetworkFilesystemWarning)
            conn.execute("PRAGMA synchronous = NORMAL")  # see the class docstring for why not FULL
            conn.execute("PRAGMA recursive_triggers = ON")  # REPLACE's implicit delete fires entries_del
            conn.execute("PRAGMA journal_size_limit = 67108864")  # truncate the WAL back to 64 MiB
            conn.execute("PRAGMA cache_size = -16384")  # 16 MiB of page cache per connection
            if self._schema_version(conn) < SCHEMA_VERSION:
                self._retry(lambda: self._create_schema(conn))
            conn.execute("SELECT count FROM stats WHERE id = 0").fetchone()  # reads a table page: corrupt?
        except BaseException:
            conn.close()
            raise
        return conn

    def _schema_version(self, conn: sqlite3.Connection) -> int:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise CacheError(
                f"Cache {self.db_path!r} has schema version {version}, newer than this skfeaturize "
                f"understands ({SCHEMA_VERSION}); upgrade skfeaturize or use another cache folder."
            )
        return int(version)

    def _open_ro(self) -> sqlite3.Connection | None:
        """A read-only connection, or ``None`` if there is nothing that can be read."""
        if not os.path.isfile(self.db_path):
            self._mode = "off"  # nothing to serve; the first skipped write warns
            return None
        # mode=ro keeps SQLite's locking (and sees the -wal) where the -shm exists; immutable=1 reads a WAL
        # database whose -shm/-wal cannot be created (a read-only folder), ignoring any un-checkpointed -wal
        for query in ("mode=ro", "mode=ro&immutable=1"):
            conn = sqlite3.connect(
                f"file:{quote(self.db_path)}?{query}", uri=True, timeout=BUSY_TIMEOUT_S,
                isolation_level=None, check_same_thread=False,
            )
            try:
                if self._schema_version(conn) in READABLE_VERSIONS:
                    conn.execute("SELECT count FROM stats WHERE id = 0").fetchone()
                    return conn
                conn.close()  # a new file whose schema never reached it: nothing to read
                break
            except sqlite3.DatabaseError as e:
                conn.close()
                if _fault(e, self.path) == "corrupt":
                    self._off_corrupt(e, "it cannot be moved aside (the folder is not writable)")
                    return None
            except BaseException:
                conn.close()
                raise
        self._mode = "off"
        return None

    # ------------------------------------------------------------------ a corrupt database file
    def _move_aside(self, exc: BaseException) -> bool:
        """Move the corrupt database (and its -wal/-shm) to ``<db>.corrupt-<UTC time>``; ``True`` if the path
        is now free for a new database (also when another process moved it first)."""
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
        dest = f"{self.db_path}.corrupt-{stamp}"
        try:
            with _folder_lock(self.path):
                try:
                    st = os.stat(self.db_path)
                except FileNotFoundError:
                    return True
                if (st.st_dev, st.st_ino) != self._file_id:
                    return True  # another process already replaced the file we found corrupt
                # the companions first: a new database must never pick up the corrupt one's -wal
                for suffix in ("-wal", "-shm", ""):
                    with contextlib.suppress(FileNotFoundError):
                        os.replace(self.db_path + suffix, dest + suffix)
        except OSError as e:
            self._off_corrupt(exc, f"it cannot be moved aside ({e.strerror})")
            return False
        self._file_id = None
        warn(
            f"Cache file {self.db_path!r} is corrupt ({exc}). Moved it (with its -wal/-shm files, if any) to "
            f"{dest!r} and started an empty cache in its place: its vectors will be recomputed. Delete the "
            "moved file once you no longer need it.",
            CacheCorruptionWarning)
        return True

    def _off_corrupt(self, exc: BaseException, why: str) -> None:
        self._mode, self._no_write = "off", ("corrupt", f"the database file is corrupt: {exc}")
        self._conn = None
        if "corrupt" in self._warned:
            return
        self._warned.add("corrupt")
        warn(
            f"Cache file {self.db_path!r} is corrupt ({exc}) and {why}. The cache is off in this process: "
            "every lookup is a miss and computed vectors are returned but not stored. Remedy: move or delete "
            f"{self.db_path!r} and its -wal/-shm files, or pass another cache folder.",
            CacheCorruptionWarning)

    def _corrupt_in_use(self, exc: BaseException) -> None:
        """The open database turned out corrupt: move it aside (read-write) or switch off (read-only)."""
        conn, was = self._conn, self._mode
        self._conn = None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        if was != "rw":
            self._off_corrupt(exc, "it cannot be moved aside (the cache is read-only)")
        elif self._move_aside(exc):
            self._forget_connection()  # the next use opens a new, empty database
        # else: off, and _move_aside warned

    # ------------------------------------------------------------------ skipped writes
    _WRITE_FAULTS = {
        "read-only": (
            "the cache is read-only", "Make the folder writable, or pass a cache folder you can write."
        ),
        "full": (
            "the disk is full",
            "The cache itself is intact: free disk space, bound the cache with max_bytes=..., or move it to "
            "a larger disk.",
        ),
        "locked": (
            "another process held the database's write lock longer than the busy timeout",
            "Later writes are tried again. If no other skfeaturize process is running, look for a program "
            "holding the file open (e.g. an sqlite3 shell in a transaction).",
        ),
        "I/O error": ("the disk reported an I/O error", "Check the disk, or move the cache to another disk."),
        "corrupt": ("the database file is corrupt", "Move or delete the database file."),
    }

    def _warn_write(self, fault: str, n: int, detail: str | None = None, off: bool = False) -> None:
        """One :class:`CacheWriteWarning` per instance and fault (not one per call)."""
        if fault in self._warned:
            return
        self._warned.add(fault)
        what, advice = self._WRITE_FAULTS[fault]
        detail = detail if detail is not None else self._no_write[1] if self._no_write else ""
        consequence = (
            "the cache is off in this process: every lookup is a miss and computed vectors are returned but "
            "not stored" if off else f"{n} computed vector(s) were returned but not stored"
        )
        warn(
            f"Cache {self.db_path!r}: {what} ({detail}); {consequence}. {advice} "
            "(This warning is shown once per cache and cause.)",
            CacheWriteWarning)

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
            _rollback(conn)
            raise

    def close(self) -> None:
        """Close this process's connection; the next use reopens it and decides its mode again (a disk
        freed meanwhile, a folder made writable)."""
        with self._locked():
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None
            self._forget_connection()

    # ------------------------------------------------------------------ conversions
    @property
    def _storage(self) -> str:
        return _DTYPES[self.dtype]

    def _narrow(self, v32: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The float16 copy of ``v32`` and, per row, whether that row must stay float32 (a finite value
        beyond float16's +-65504 would become inf); ``(None, None)`` for float32 storage. The one rule that
        :meth:`put_many` stores by and :meth:`roundtrip` follows."""
        if self._storage == "<f4":
            return None, None
        with np.errstate(over="ignore"):  # detected just below
            half = v32.astype("<f2")
        return half, (np.isinf(half) & np.isfinite(v32)).any(axis=-1)

    def roundtrip(self, vectors: np.ndarray) -> np.ndarray:
        """``vectors`` as they will read back: per row, cast to the storage dtype and back to float32.

        A featurizer returns ``roundtrip(computed)`` for its misses, so a miss now and a hit later are equal
        bit for bit, whatever the storage dtype. With ``dtype="float16"`` a row holding a value beyond
        float16's range (``abs(x) > 65504``) is stored, and therefore returned, as float32.

        Parameters
        ----------
        vectors : array-like of shape (n, dim) or (dim,)
            Vectors as computed.

        Returns
        -------
        ndarray of float32, same shape
        """
        v32 = np.ascontiguousarray(vectors, dtype=np.float32)
        half, wide = self._narrow(v32)
        if half is None:
            return v32
        return np.ascontiguousarray(np.where(wide[..., None], v32, half.astype(np.float32)))

    # ------------------------------------------------------------------ reads
    def _read(self, fn: Callable[[sqlite3.Connection], Any], default: Any) -> Any:
        """``fn(conn)`` under the lock; ``default`` while the store is off, or when it turns out corrupt."""
        with self._locked():
            conn = self._connection()
            if conn is None:
                return default
            try:
                return fn(conn)
            except sqlite3.DatabaseError as e:
                if _fault(e, self.path) != "corrupt":
                    raise
                self._corrupt_in_use(e)
                return default

    # ------------------------------------------------------------------ fitted plans
    def get_plan(self, key: str) -> str | None:
        """The fitted featurizer plan stored under ``key``, or ``None``.

        ``None`` when it is absent, fails its checksum, or the store is off or older than plans (schema 1).
        Featurizers call this in ``fit``; there is no need to call it yourself.

        Parameters
        ----------
        key : str
            The plan key (a hash of the featurizer's class, parameters and environment).

        Returns
        -------
        str or None
            The plan as JSON text.
        """
        def select(conn):
            try:
                row = conn.execute("SELECT plan, checksum FROM plans WHERE key = ?", (key,)).fetchone()
            except sqlite3.OperationalError as e:
                if "no such table" in str(e):
                    return None
                raise
            if row is None or zlib.crc32(row[0].encode("utf-8", "surrogatepass")) != row[1]:
                return None
            return row[0]

        return self._read(select, None)

    def put_plan(self, key: str, plan: str) -> bool:
        """Store a fitted featurizer plan under ``key`` (featurizers call this in ``fit``).

        Parameters
        ----------
        key : str
            The plan key.
        plan : str
            The plan as JSON text (stored with a CRC-32 checksum).

        Returns
        -------
        bool
            ``True`` if stored; ``False`` when the store is not writable or a store fault skipped the write
            (one :class:`~skfeaturize.exceptions.CacheWriteWarning`).
        """
        checksum = zlib.crc32(plan.encode("utf-8", "surrogatepass"))
        with self._locked():
            conn = self._connection()
            if self._mode != "rw":
                return False
            try:
                conn.execute("INSERT OR REPLACE INTO plans (key, plan, checksum, created) "
                             "VALUES (?, ?, ?, ?)", (key, plan, checksum, time.time()))
                return True
            except sqlite3.DatabaseError as e:
                fault = _fault(e, self.path)
                if fault is None:
                    raise
                self._warn_write(fault, 0, str(e))
                return False

    def get_many(self, namespace: str, keys: Sequence[str]) -> dict[str, np.ndarray]:
        """The stored vectors of ``keys`` in ``namespace``, as ``{key: float32 1-D array}``; hits only.

        An entry that fails its checksum (or has an inconsistent dim, dtype or length) is deleted, reported
        with a :class:`~skfeaturize.exceptions.CacheCorruptionWarning`, and left out, so it is recomputed.
        A store that is off returns ``{}``; a corrupt database file is moved aside (see :meth:`put_many`).

        Parameters
        ----------
        namespace : str
            The namespace (a featurizer's fingerprint of one layer and pooling).
        keys : sequence of str
            Sample keys to look up.

        Returns
        -------
        dict of str to ndarray
            The hits only, as float32 1-D arrays.
        """
        keys = _check_keys(keys, "get_many")
        if not keys:
            return {}
        return self._read(lambda conn: self._select(conn, namespace, keys), {})

    def stored_keys(self, namespace: str, keys: Sequence[str]) -> set[str]:
        """Which of ``keys`` have an entry in ``namespace``, without reading or checking the vectors.

        For deciding what to compute (:meth:`~skfeaturize.base.BaseFeaturizer.precompute`): an entry that
        would fail its checksum counts as stored here; :meth:`get_many` drops it when it is read, and it is
        recomputed then. Counts as a use of the entries for ``max_bytes`` eviction, as a read does. A store
        that is off returns an empty set.

        Parameters
        ----------
        namespace : str
            The namespace.
        keys : sequence of str
            Sample keys to look up.

        Returns
        -------
        set of str
        """
        keys = _check_keys(keys, "stored_keys")
        if not keys:
            return set()
        return self._read(lambda conn: self._select_keys(conn, namespace, keys), set())

    def _select_keys(self, conn: sqlite3.Connection, namespace: str, keys: list[str]) -> set[str]:
        rows = list(_entries(conn, namespace, keys, ""))
        self._record_hits(conn, [rowid for rowid, _ in rows], time.time())
        return {key for _, key in rows}

    def _record_hits(self, conn: sqlite3.Connection, rowids: list[int], now: float) -> None:
        """Entries just used, for least-recently-used eviction (only kept when ``max_bytes`` is set)."""
        if rowids and self.max_bytes is not None and self._mode == "rw":
            self._best_effort(conn, lambda c: c.executemany(
                "INSERT INTO hits (entry, t) VALUES (?, ?)", [(r, now) for r in rowids]
            ))

    def _select(self, conn: sqlite3.Connection, namespace: str, keys: list[str]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        hit_rows: list[int] = []
        corrupt: list[tuple[int, int, str]] = []
        now = time.time()
        for rowid, key, dim, code, checksum, blob in _entries(conn, namespace, keys,
                                                              ", dim, dtype, checksum, vector"):
            vec = self._decode(namespace, key, dim, code, checksum, blob)
            if vec is None:
                corrupt.append((rowid, checksum, key))
                continue
            out[key] = vec
            hit_rows.append(rowid)
        if corrupt:
            self._drop_corrupt(conn, namespace, corrupt)
        self._record_hits(conn, hit_rows, now)
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
        done = "Deleted" if self._mode == "rw" else "Left in place (the cache is read-only), skipped"
        warn(
            f"{len(corrupt)} corrupt cache entr{'y' if len(corrupt) == 1 else 'ies'} in {self.db_path!r} "
            f"(namespace {namespace!r}, key {names}): checksum, dim or length mismatch. {done}; they will "
            "be recomputed. If this repeats, check the disk, or delete the cache folder.",
            CacheCorruptionWarning)
        if self._mode == "rw":  # by rowid *and* checksum: if another process rewrote the entry, keep that
            self._best_effort(conn, lambda c: c.executemany(
                "DELETE FROM entries WHERE rowid = ? AND checksum = ?", [(r, c_) for r, c_, _ in corrupt]
            ))

    def _best_effort(self, conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], Any]) -> None:
        """A write that a read makes (a hit for the LRU, deleting a corrupt entry): one transaction that never
        waits longer than ``TOUCH_TIMEOUT_MS`` for the lock and gives up on any fault; the next read can
        make it again."""
        conn.execute(f"PRAGMA busy_timeout = {TOUCH_TIMEOUT_MS}")
        try:
            conn.execute("BEGIN IMMEDIATE")  # one transaction, not one per row (autocommit mode)
            try:
                fn(conn)
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise
        except sqlite3.OperationalError as e:
            if _fault(e, self.path) is None:
                raise
        finally:
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")

    def dim(self, namespace: str) -> int | None:
        """The vector length registered for ``namespace``, or ``None`` if it was never written.

        Parameters
        ----------
        namespace : str
            The namespace.

        Returns
        -------
        int or None
        """
        row = self._read(lambda conn: conn.execute(
            "SELECT dim FROM namespaces WHERE namespace = ?", (_sql_text(namespace),)
        ).fetchone(), None)
        return None if row is None else int(row[0])

    # ------------------------------------------------------------------ writes
    def put_many(
        self,
        namespace: str,
        keys: Sequence[str],
        vectors: np.ndarray,
        description: Mapping[str, Any] | None = None,
    ) -> int:
        """Store ``vectors[i]`` under ``(namespace, keys[i])`` in one transaction, replacing old values.

        ``vectors`` is 2-D ``(len(keys), dim)``; it is stored in the cache's dtype (read back equals
        :meth:`roundtrip`). ``description`` (JSON-able, e.g. ``{"backbone": "resnet50", "layer": "layer4"}``)
        is recorded for the namespace and is what :meth:`evict` matches on. Afterwards, ``max_bytes`` is
        enforced by evicting least recently used entries.

        Returns the number of rows stored. A row holding NaN or inf is never stored (a ``RuntimeWarning``
        names it; the other rows are stored). A store fault never raises and never loses the caller's
        vectors, which are only not stored: a read-only folder, a full disk, a lock held by another process
        past :data:`BUSY_TIMEOUT_S`, or a disk I/O error skip the batch (returns 0) with one
        :class:`~skfeaturize.exceptions.CacheWriteWarning` per cache and cause; a database file found
        corrupt is moved aside to ``<db>.corrupt-<UTC time>``, rebuilt empty, and the batch is written there.

        Parameters
        ----------
        namespace : str
            The namespace to write to.
        keys : sequence of str
            One key per row of ``vectors``.
        vectors : array-like of shape (len(keys), dim)
            The vectors (float32, or anything that converts to it).
        description : mapping or None, default=None
            JSON-able fields describing the namespace, recorded once for it; what :meth:`evict` matches on.

        Returns
        -------
        int
            The number of rows stored.
        """
        dim = self._check_vectors(namespace, keys, vectors)
        keys = list(keys)
        if not keys:
            return 0
        with np.errstate(over="ignore"):  # a float64 beyond float32's range becomes inf: not finite, skipped
            v32 = np.ascontiguousarray(vectors, dtype="<f4")
        finite = np.isfinite(v32).all(axis=1)
        if not finite.all():
            _warn_non_finite(namespace, keys, finite)
        desc_json = _description_json(description)
        now = time.time()
        rows = self._rows(namespace, keys, v32, finite, now)
        if not rows:
            return 0
        with self._locked():
            return self._write(namespace, dim, desc_json, rows, now)

    @staticmethod
    def _check_vectors(namespace: str, keys: Sequence[str], vectors: np.ndarray) -> int:
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
        return int(vecs.shape[1])

    def _rows(self, namespace: str, keys: list[str], v32: np.ndarray, finite: np.ndarray, now: float) -> list:
        half, wide = self._narrow(v32)
        dim, ns = int(v32.shape[1]), _sql_text(namespace)
        rows = []
        for i in np.flatnonzero(finite):
            row, code = (v32[i], "f4") if half is None or wide[i] else (half[i], "f2")
            blob = row.tobytes()
            checksum = _checksum(namespace, keys[i], dim, code, blob)
            rows.append((ns, _sql_text(keys[i]), dim, code, checksum, len(blob), now, blob))
        return rows

    def _write(self, namespace: str, dim: int, desc_json: str, rows: list, now: float) -> int:
        """Write ``rows`` in one transaction; a fault skips them with a warning (call with the lock held)."""
        for attempt in range(2):
            conn = self._connection()
            if self._mode != "rw":
                self._warn_write(self._no_write[0], len(rows), off=self._mode == "off")
                return 0
            try:
                self._insert(conn, namespace, dim, desc_json, rows, now)
                return len(rows)
            except sqlite3.DatabaseError as e:
                fault = _fault(e, self.path)
                if fault is None:
                    raise
                if fault == "corrupt" and attempt == 0:
                    self._corrupt_in_use(e)  # moved aside: write the batch into the new database
                    continue
                self._warn_write(fault, len(rows), str(e))
                return 0
        return 0  # pragma: no cover - the loop always returns

    def _insert(self, conn: sqlite3.Connection, namespace: str, dim: int, desc_json: str, rows: list,
                now: float) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            known = conn.execute(
                "SELECT dim FROM namespaces WHERE namespace = ?", (_sql_text(namespace),)
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
                (_sql_text(namespace), desc_json, dim, now),
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
            _rollback(conn)
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
        """Number of entries, all namespaces together (0 while the store is off)."""
        return int(self._read(lambda c: c.execute("SELECT count FROM stats WHERE id = 0").fetchone()[0], 0))

    def size_bytes(self) -> int:
        """Bytes of vector data stored (what ``max_bytes`` bounds); the file adds ~5-10 % of overhead."""
        return int(self._read(lambda c: c.execute("SELECT nbytes FROM stats WHERE id = 0").fetchone()[0], 0))

    def namespaces(self) -> list[dict[str, Any]]:
        """One dict per namespace, oldest first.

        Keys: ``namespace``, ``description`` (dict), ``dim``, ``count``, ``bytes`` (of vectors), ``created``.
        """
        rows = self._read(lambda conn: conn.execute(
            "SELECT n.namespace, n.description, n.dim, n.created, "
            "       COUNT(e.rowid), COALESCE(SUM(e.nbytes), 0) "
            "FROM namespaces n LEFT JOIN entries e ON e.namespace = n.namespace "
            "GROUP BY n.namespace ORDER BY n.created, n.namespace"
        ).fetchall(), [])
        return [
            {"namespace": _py_text(ns), "description": json.loads(desc), "dim": int(dim), "count": int(count),
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
        ``cache.evict(namespace)`` drops one namespace. Returns the number of entries deleted. A field that
        no namespace's description has (a typo such as ``backbon=``) is a :class:`CacheError` naming the
        fields there are, rather than a silent 0.

        Parameters
        ----------
        namespace : str or None, default=None
            One namespace to delete (``None``: choose by ``match``).
        **match : dict
            Description fields that must all be equal (see :meth:`namespaces` for what is there).

        Returns
        -------
        int
            The number of entries deleted.

        Raises
        ------
        CacheError
            A field of ``match`` is in no namespace's description, or the store cannot be changed
            (read-only, off).
        TypeError
            Neither a namespace nor a field was given.
        """
        if namespace is None and not match:
            raise TypeError(
                "evict() needs a namespace or at least one description field, e.g. "
                "evict(backbone='resnet50'); cache.namespaces() lists them, cache.clear() deletes everything."
            )
        infos = self.namespaces()
        _check_fields(infos, match)
        wanted = {k: _canonical(v) for k, v in match.items()}
        chosen = []
        for info in infos:
            if namespace is not None and info["namespace"] != namespace:
                continue
            desc = info["description"]
            if all(k in desc and desc[k] == v for k, v in wanted.items()):
                chosen.append(info["namespace"])
        return self._delete_namespaces(chosen) if chosen else 0

    def _delete_namespaces(self, names: list[str] | None) -> int:
        def delete(conn: sqlite3.Connection) -> int:
            conn.execute("BEGIN IMMEDIATE")
            try:
                before = conn.execute("SELECT count FROM stats WHERE id = 0").fetchone()[0]
                if names is None:
                    conn.execute("DELETE FROM entries")
                    conn.execute("DELETE FROM namespaces")
                    conn.execute("DELETE FROM hits")
                    conn.execute("DELETE FROM plans")
                else:
                    for name in map(_sql_text, names):
                        conn.execute("DELETE FROM entries WHERE namespace = ?", (name,))
                        conn.execute("DELETE FROM namespaces WHERE namespace = ?", (name,))
                after = conn.execute("SELECT count FROM stats WHERE id = 0").fetchone()[0]
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise
            return int(before - after)

        return self._change("clear()" if names is None else "evict()", delete)

    def vacuum(self) -> None:
        """Give free pages back to the filesystem (after evictions) and truncate the WAL."""
        self._change("vacuum()", lambda conn: (
            conn.execute("VACUUM"), conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        ))

    def _change(self, what: str, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        """Housekeeping the user asked for: a store that cannot be changed is a :class:`CacheError`."""
        with self._locked():
            conn = self._connection()
            if self._mode != "rw":
                fault, detail = self._no_write
                raise CacheError(
                    f"{what}: cache {self.db_path!r} cannot be changed: {self._WRITE_FAULTS[fault][0]} "
                    f"({detail}). {self._WRITE_FAULTS[fault][1]}"
                )
            try:
                return fn(conn)
            except sqlite3.DatabaseError as e:
                fault = _fault(e, self.path)
                if fault is None:
                    raise
                if fault == "corrupt":
                    self._corrupt_in_use(e)
                what_fault, advice = self._WRITE_FAULTS[fault]
                raise CacheError(
                    f"{what}: cache {self.db_path!r} could not be changed: {what_fault} ({e}). {advice}"
                ) from e


def _warn_non_finite(namespace: str, keys: list[str], finite: np.ndarray) -> None:
    bad = np.flatnonzero(~finite)
    shown = ", ".join(f"{i} ({keys[i]!r:.50})" for i in bad[:5]) + (" ..." if len(bad) > 5 else "")
    warn(
        f"put_many: {len(bad)} of {len(keys)} row(s) for namespace {namespace!r} hold NaN or inf and were "
        f"not stored (row (key): {shown}); the cache never serves a non-finite vector. The other rows were "
        "stored.",
        RuntimeWarning)


def _description_json(description: Mapping[str, Any] | None) -> str:
    if description is None:
        return "{}"
    if not isinstance(description, Mapping):
        raise TypeError(f"put_many: description must be a dict or None, got {type(description).__name__}.")
    return json.dumps(_canonical(description), sort_keys=True)


def _check_fields(infos: list[dict[str, Any]], match: Mapping[str, Any]) -> None:
    """Refuse an ``evict`` field that no namespace's description has (an empty cache has nothing to check)."""
    present = sorted({field for info in infos for field in info["description"]})
    unknown = [field for field in match if field not in present]
    if not unknown or not infos:
        return
    field = unknown[0]
    close = difflib.get_close_matches(field, present, n=1)
    raise CacheError(
        f"evict({field}=...): no namespace in this cache has a description field {field!r}; the fields "
        f"present are {', '.join(map(repr, present)) or 'none'}."
        + (f" Did you mean {close[0]!r}?" if close else "")
        + " cache.namespaces() shows every description."
    )


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
