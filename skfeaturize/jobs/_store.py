"""Crash-safe output of a bulk job: Parquet shards plus an atomically replaced manifest.

Layout of ``OUT`` (a Parquet dataset: ``pandas.read_parquet(OUT)`` reads it as one table, in input order)::

    OUT/part-000000.parquet   rows of input positions [start, stop) of shard 0
    OUT/part-000001.parquet   ...
    OUT/_errors/part-000001.jsonl   samples of shard 1 that failed (``on_error="skip"``)
    OUT/_manifest.json        the job's identity and the committed shards

Commit protocol (HAZARDS.md: a Parquet file killed mid-write loses all its rows): a shard is written to a
hidden temp file, fsynced and renamed into place; then the manifest is written to a temp file, fsynced and
renamed over the old one; then the folder is fsynced. A shard exists for the job only once the manifest
lists it, so a kill at any point leaves either the old or the new manifest, and resuming deletes temp files
and orphan shards (written but never committed) before going on from the manifest's last position.
Files whose names start with ``.`` or ``_`` are ignored by pyarrow's dataset discovery.

A failed write (disk full, quota, read-only folder) removes its temp file and raises
:class:`OutputWriteError`; the manifest on disk is then still the last committed one.
"""

from __future__ import annotations

import errno as errno_codes
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..exceptions import OutputWriteError

MANIFEST = "_manifest.json"
ERRORS_DIR = "_errors"
FORMAT_VERSION = 2  # 2: identity from the featurizer's public fingerprint_, resume checks per item


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


@contextmanager
def writing(path: Path, rows: int, tmp: Path | None = None):
    """Turn an ``OSError`` while writing ``path`` into :class:`OutputWriteError` (temp file removed)."""
    try:
        yield
    except OSError as e:
        if isinstance(e, OutputWriteError):
            raise
        if tmp is not None:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
        code = errno_codes.errorcode.get(e.errno, "") if e.errno else ""
        what = "the disk is full" if e.errno in (errno_codes.ENOSPC, errno_codes.EDQUOT) else \
            (e.strerror or str(e))
        raise OutputWriteError(
            f"cannot write {str(path)!r}: {what}{f' ({code})' if code else ''}. The job's manifest is "
            f"intact: the {rows} rows committed so far are kept; free some space (or fix the output folder) "
            "and rerun the same command to resume.", e.errno) from e


def _write_durably(tmp: Path, data: bytes) -> None:
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def atomic_write_bytes(path: Path, data: bytes, rows: int = 0) -> None:
    """``path`` holds ``data`` or its old content, never a torn mix (temp file, fsync, rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with writing(path, rows, tmp):
        _write_durably(tmp, data)
        os.replace(tmp, path)
    fsync_dir(path.parent)


def is_temp(p: Path) -> bool:
    """A hidden temp file of an interrupted write (``.NAME.tmp``)."""
    return p.name.startswith(".") and p.name.endswith(".tmp")


def holds_only_temp_files(folder: Path) -> bool:
    """An empty folder, or one where a job was killed before its first manifest: nothing to protect."""
    return all(is_temp(p) for p in folder.iterdir())


def json_lines(records: list[dict]) -> bytes:
    """JSON Lines; a str with lone surrogates (a non-UTF-8 file name) is written as ``\\udcXX`` escapes."""
    return "".join(json.dumps(r, default=str) + "\n" for r in records).encode("utf-8")


class ShardStore:
    """The shards and manifest of one job in folder ``root``."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.manifest: dict | None = None

    # -- manifest ------------------------------------------------------------------------------------
    def load(self) -> dict | None:
        path = self.root / MANIFEST
        if not path.exists():
            return None
        with open(path, encoding="utf-8") as f:
            self.manifest = json.load(f)
        return self.manifest

    def _save(self, manifest: dict | None = None) -> None:
        manifest = self.manifest if manifest is None else manifest
        rows = int(self.manifest["rows"]) if self.manifest else 0
        atomic_write_bytes(self.root / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode(),
                           rows=rows)
        self.manifest = manifest

    @property
    def rows(self) -> int:
        return int(self.manifest["rows"]) if self.manifest else 0

    def create(self, job: dict) -> None:
        """A new job (a folder's earlier job that committed no row is replaced: its shards go first)."""
        if self.manifest is not None:
            self._remove_committed()
        with writing(self.root, 0):
            self.root.mkdir(parents=True, exist_ok=True)
            for p in self.root.iterdir():
                if is_temp(p):
                    p.unlink()
        self.manifest = None
        self._save({"format_version": FORMAT_VERSION, "job": job, "shards": [], "position": 0, "rows": 0,
                    "errors": 0, "complete": False, "runs": []})

    def _remove_committed(self) -> None:
        for s in self.manifest["shards"]:
            for rel in (s["file"], s.get("errors_file")):
                if rel:
                    (self.root / rel).unlink(missing_ok=True)

    def start_run(self, engine: str) -> None:
        runs = self.manifest["runs"] + [{"engine": engine, "started": time.time(),
                                         "resumed_from": self.manifest["position"], "featurized": 0,
                                         "failed": 0, "finished": None}]
        self._save({**self.manifest, "runs": runs})

    @property
    def position(self) -> int:
        return int(self.manifest["position"]) if self.manifest else 0

    def clean_uncommitted(self) -> list[str]:
        """Delete temp files and shards the manifest does not list (a kill between shard and manifest)."""
        committed = {s["file"] for s in self.manifest["shards"]}
        committed_err = {s["errors_file"] for s in self.manifest["shards"] if s.get("errors_file")}
        removed = []
        for p in list(self.root.iterdir()) + (list((self.root / ERRORS_DIR).iterdir())
                                              if (self.root / ERRORS_DIR).is_dir() else []):
            rel = p.relative_to(self.root).as_posix()
            if is_temp(p) or (
                p.is_file() and rel != MANIFEST and rel not in committed and rel not in committed_err
                and (p.suffix == ".parquet" or rel.startswith(ERRORS_DIR + "/"))
            ):
                p.unlink()
                removed.append(rel)
        return removed

    def missing_shards(self) -> list[str]:
        return [s["file"] for s in self.manifest["shards"] if not (self.root / s["file"]).is_file()]

    # -- shards --------------------------------------------------------------------------------------
    def commit(self, table: pa.Table, start: int, stop: int, errors: list[dict]) -> None:
        """Write ``table`` (rows of input positions ``[start, stop)`` that succeeded) and commit it."""
        k = len(self.manifest["shards"])
        name = f"part-{k:06d}.parquet"
        tmp = self.root / f".{name}.tmp"
        with writing(self.root / name, self.rows, tmp):
            pq.write_table(table, tmp, row_group_size=max(1, min(len(table), 65536)) if len(table) else None,
                           compression="zstd")
            fsync_file(tmp)
            os.replace(tmp, self.root / name)
        entry = {"file": name, "start": int(start), "stop": int(stop), "rows": int(table.num_rows),
                 "errors": len(errors), "errors_file": None}
        if errors:
            with writing(self.root / ERRORS_DIR, self.rows):
                (self.root / ERRORS_DIR).mkdir(exist_ok=True)
            rel = f"{ERRORS_DIR}/part-{k:06d}.jsonl"
            atomic_write_bytes(self.root / rel, json_lines(errors), rows=self.rows)
            entry["errors_file"] = rel
        fsync_dir(self.root)
        m = self.manifest
        run = {**m["runs"][-1], "featurized": m["runs"][-1]["featurized"] + int(table.num_rows),
               "failed": m["runs"][-1]["failed"] + len(errors)}
        self._save({**m, "shards": m["shards"] + [entry], "position": int(stop),
                    "rows": m["rows"] + int(table.num_rows), "errors": m["errors"] + len(errors),
                    "runs": m["runs"][:-1] + [run]})

    def finish(self, extra: dict | None = None) -> None:
        runs = self.manifest["runs"][:-1] + [{**self.manifest["runs"][-1], "finished": time.time()}]
        self._save({**self.manifest, **(extra or {}), "complete": True, "runs": runs})

    def shard_paths(self) -> list[Path]:
        return [self.root / s["file"] for s in self.manifest["shards"]]

    def shard_errors(self, shard: dict) -> list[dict]:
        if not shard.get("errors_file"):
            return []
        with open(self.root / shard["errors_file"], encoding="utf-8") as f:
            return [json.loads(line) for line in f]

    def iter_errors(self):
        for s in self.manifest["shards"]:
            if s.get("errors_file"):
                with open(self.root / s["errors_file"], encoding="utf-8") as f:
                    yield from f

    def write_errors_file(self, path: Path) -> int:
        """Gather the committed shards' errors into one JSON Lines file (atomically); returns the count."""
        lines = list(self.iter_errors())
        if not lines:
            if path.exists():
                path.unlink()
            return 0
        atomic_write_bytes(path, "".join(lines).encode("utf-8"), rows=self.rows)
        return len(lines)
