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
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

MANIFEST = "_manifest.json"
ERRORS_DIR = "_errors"
FORMAT_VERSION = 1


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


def atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


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

    def _save(self) -> None:
        atomic_write_bytes(self.root / MANIFEST,
                           json.dumps(self.manifest, indent=1, sort_keys=True).encode("utf-8"))

    def create(self, job: dict) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.manifest = {"format_version": FORMAT_VERSION, "job": job, "shards": [], "position": 0,
                         "rows": 0, "errors": 0, "complete": False, "runs": []}
        self._save()

    def start_run(self, engine: str) -> None:
        self.manifest["runs"].append({"engine": engine, "started": time.time(),
                                      "resumed_from": self.manifest["position"], "featurized": 0,
                                      "failed": 0, "finished": None})
        self._save()

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
            if p.name.endswith(".tmp") or (
                p.is_file() and rel != MANIFEST and rel not in committed and rel not in committed_err
                and (p.suffix == ".parquet" or rel.startswith(ERRORS_DIR + "/"))
            ):
                p.unlink()
                removed.append(rel)
        return removed

    # -- shards --------------------------------------------------------------------------------------
    def commit(self, table: pa.Table, start: int, stop: int, errors: list[dict]) -> None:
        """Write ``table`` (rows of input positions ``[start, stop)`` that succeeded) and commit it."""
        k = len(self.manifest["shards"])
        name = f"part-{k:06d}.parquet"
        tmp = self.root / f".{name}.tmp"
        pq.write_table(table, tmp, row_group_size=max(1, min(len(table), 65536)) if len(table) else None,
                       compression="zstd")
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, self.root / name)
        entry = {"file": name, "start": int(start), "stop": int(stop), "rows": int(table.num_rows),
                 "errors": len(errors), "errors_file": None}
        if errors:
            (self.root / ERRORS_DIR).mkdir(exist_ok=True)
            rel = f"{ERRORS_DIR}/part-{k:06d}.jsonl"
            atomic_write_bytes(self.root / rel,
                               "".join(json.dumps(e, default=str) + "\n" for e in errors).encode("utf-8"))
            entry["errors_file"] = rel
        fsync_dir(self.root)
        self.manifest["shards"].append(entry)
        self.manifest["position"] = int(stop)
        self.manifest["rows"] += int(table.num_rows)
        self.manifest["errors"] += len(errors)
        run = self.manifest["runs"][-1]
        run["featurized"] += int(table.num_rows)
        run["failed"] += len(errors)
        self._save()

    def finish(self, extra: dict | None = None) -> None:
        self.manifest["complete"] = True
        self.manifest["runs"][-1]["finished"] = time.time()
        if extra:
            self.manifest.update(extra)
        self._save()

    def shard_paths(self) -> list[Path]:
        return [self.root / s["file"] for s in self.manifest["shards"]]

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
        atomic_write_bytes(path, "".join(lines).encode("utf-8"))
        return len(lines)
