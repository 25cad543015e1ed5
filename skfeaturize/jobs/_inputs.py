"""Lazy readers for the inputs of a bulk job, yielding fixed-size chunks in a deterministic order.

An input is one of:

* a folder of images, walked recursively in sorted order (see :mod:`._walk`: each real directory once,
  links out of the folder skipped unless ``follow_symlinks``), kept by file extension; the id is the path
  relative to the folder, with ``/`` separators: a ``str``, or for every item ``bytes``
  (``os.fsencode`` of that path) when some file name in the folder is not valid UTF-8, since Parquet
  strings must be UTF-8 and the bytes are the only lossless form of such a name;
* a table file: CSV/TSV (``pyarrow.csv.open_csv``, streaming), Parquet (a file or a folder of files, read
  as ``pyarrow.dataset`` batches) or JSON Lines (``pyarrow.json.open_json``); the samples come from
  ``column`` and the ids from ``id_column`` (default: the row number, from 0). A null cell, an empty CSV
  cell, NaN and ``pd.NA`` become ``None``, so the featurizer's ``missing=`` parameter decides;
* any other file: a text file with one document per line (the id is the line number, from 0).

Nothing is read up front except a listing (names, sizes and modification times), so memory does not grow
with the input. The position of an item in this order is what makes resumption exact.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import pyarrow as pa

from ._walk import Skipped, walk

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
_TABLE_SUFFIXES = {".csv": "csv", ".tsv": "csv", ".parquet": "parquet", ".pq": "parquet",
                   ".jsonl": "jsonl", ".ndjson": "jsonl"}
_DEFAULT_COLUMNS = ("text", "path", "image", "filename", "file", "document", "sentence")
_PLAIN = (str, bytes, list, dict, int, bool)
_BATCH_ROWS, _BATCH_BYTES = 4096, 1 << 20  # what a reader holds before chunking (a CSV block is 1 MiB too)


@dataclass
class Chunk:
    """``len(samples)`` consecutive input items starting at position ``start``."""

    start: int
    ids: pa.Array
    samples: list

    def __len__(self) -> int:
        return len(self.samples)


@dataclass
class Listing:
    """One pass over what an input reads: how many files, a hash of their names, sizes and modification
    times, and the entries the folder walk skipped."""

    files: int
    digest: str
    skipped: list = field(default_factory=list)
    undecodable: bool = False  # some file name is not valid UTF-8


def as_sample(value):
    """A table cell as a sample: every missing marker (None, NaN, ``pd.NA``, ``NaT``) becomes ``None``."""
    if value is None or isinstance(value, _PLAIN):
        return value
    import pandas as pd

    try:
        return None if bool(pd.isna(value)) else value
    except (TypeError, ValueError):  # array-likes: not a missing marker
        return value


def _is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@dataclass
class InputSource:
    """What to read and how: created by :func:`open_input`; iterate with :meth:`chunks`."""

    path: str
    kind: str  # "folder" | "csv" | "parquet" | "jsonl" | "lines"
    column: str | None = None
    id_column: str | None = None
    extensions: tuple = IMAGE_EXTENSIONS
    root: str | None = None
    resolve_paths: bool = False
    encoding: str = "utf-8"
    id_type: pa.DataType = field(default_factory=pa.int64)
    total: int | None = None
    follow_symlinks: bool = False
    _listing: Listing | None = None

    # -- identity ------------------------------------------------------------------------------------
    def listing(self) -> Listing:
        """Walk the input once (memoised); a folder with a non-UTF-8 file name gets ``bytes`` ids."""
        if self._listing is None:
            h = hashlib.blake2b(digest_size=16)
            n, skipped, undecodable = 0, [], False
            for rel, st in self._files(skipped):
                h.update(os.fsencode(rel) + f"\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
                undecodable = undecodable or not _is_utf8(rel)
                n += 1
            self._listing = Listing(n, h.hexdigest(), skipped, undecodable)
            if self.kind == "folder":
                self.id_type = pa.binary() if undecodable else pa.string()
                self.total = n
        return self._listing

    def fingerprint(self) -> dict:
        """What was read (``path``, ``kind``, columns, id type) and a listing of its files."""
        listing = self.listing()
        return {"path": os.path.abspath(self.path), "kind": self.kind, "column": self.column,
                "id_column": self.id_column, "id_type": str(self.id_type), "files": listing.files,
                "listing": listing.digest,
                "extensions": list(self.extensions) if self.kind == "folder" else None}

    def _files(self, skipped: list) -> Iterator[tuple[str, os.stat_result]]:
        if not os.path.isdir(self.path):
            yield os.path.basename(self.path), os.stat(self.path)
            return
        exts = self.extensions if self.kind == "folder" else (".parquet", ".pq")
        for item in walk(self.path, exts, self.follow_symlinks):
            if isinstance(item, Skipped):
                skipped.append(item)
            else:
                yield self._rel(item), os.stat(item)

    def _rel(self, full: str) -> str:
        return os.path.relpath(full, self.path).replace(os.sep, "/")

    # -- reading -------------------------------------------------------------------------------------
    def chunks(self, chunk_size: int, skip: int = 0, stop: int | None = None) -> Iterator[Chunk]:
        """Chunks of ``chunk_size`` items of positions ``[skip, stop)``."""
        if self.kind == "folder":
            self.listing()  # fixes the id type
        buf_ids: list = []
        buf_samples: list = []
        start = skip
        end = float("inf") if stop is None else stop
        for ids, samples in self._batches(skip):
            room = int(min(len(samples), end - start - len(buf_samples)))
            buf_ids.extend(ids[:room])
            buf_samples.extend(samples[:room])
            while len(buf_samples) >= chunk_size:
                yield Chunk(start, pa.array(buf_ids[:chunk_size], type=self.id_type),
                            buf_samples[:chunk_size])
                del buf_ids[:chunk_size], buf_samples[:chunk_size]
                start += chunk_size
            if start + len(buf_samples) >= end:
                break
        if buf_samples:
            yield Chunk(start, pa.array(buf_ids, type=self.id_type), buf_samples)

    def _batches(self, skip: int) -> Iterator[tuple[list, list]]:
        if self.kind == "folder":
            yield from self._folder_batches(skip)
        elif self.kind == "lines":
            yield from self._line_batches(skip)
        else:
            yield from self._table_batches(skip)

    def _folder_batches(self, skip: int):
        binary = pa.types.is_binary(self.id_type)
        ids, samples = [], []
        pos = 0
        for full in walk(self.path, self.extensions, self.follow_symlinks):
            if isinstance(full, Skipped):
                continue
            pos += 1
            if pos <= skip:
                continue
            rel = self._rel(full)
            ids.append(os.fsencode(rel) if binary else rel)
            samples.append(full)
            if len(ids) >= _BATCH_ROWS:
                yield ids, samples
                ids, samples = [], []
        if ids:
            yield ids, samples

    def _line_batches(self, skip: int):
        ids, samples, size = [], [], 0
        with open(self.path, "rb") as f:
            for pos, raw in enumerate(f):
                if pos < skip:
                    continue
                raw = raw.rstrip(b"\r\n")
                try:
                    sample = raw.decode(self.encoding)
                except UnicodeDecodeError:
                    sample = raw  # the featurizer rejects bytes with a message naming the sample
                ids.append(pos)
                samples.append(sample)
                size += len(raw)
                if len(ids) >= _BATCH_ROWS or size >= _BATCH_BYTES:  # long documents: bound the bytes too
                    yield ids, samples
                    ids, samples, size = [], [], 0
        if ids:
            yield ids, samples

    def _table_batches(self, skip: int):
        pos = 0
        for batch in _record_batches(self.path, self.kind, [c for c in (self.column, self.id_column) if c]):
            n = batch.num_rows
            if pos + n <= skip:
                pos += n
                continue
            offset = max(0, skip - pos)
            batch = batch.slice(offset)
            samples = [as_sample(v) for v in batch.column(self.column).to_pylist()]
            if self.resolve_paths:
                samples = [self._resolve(s) for s in samples]
            if self.id_column:
                ids = batch.column(self.id_column).cast(self.id_type).to_pylist()
            else:
                ids = list(range(pos + offset, pos + n))
            pos += n
            yield ids, samples

    def _resolve(self, s):
        if isinstance(s, str) and s and not os.path.isabs(s):
            return os.path.join(self.root, s)
        return s


def _walk(folder: str, extensions) -> Iterator[str]:
    """The files of :func:`._walk.walk` (without the skipped entries), for callers that want paths only."""
    return (p for p in walk(folder, extensions) if not isinstance(p, Skipped))


def _csv_options(path: str, columns: list | None):
    from pyarrow import csv

    delimiter = "\t" if path.lower().endswith(".tsv") else ","
    convert = None
    if columns is not None:
        # only an empty cell is missing: a text "NA" or "null" stays text (pyarrow's default list would
        # turn it into null)
        convert = csv.ConvertOptions(include_columns=columns, column_types={columns[0]: pa.string()},
                                     null_values=[""], strings_can_be_null=True,
                                     quoted_strings_can_be_null=True)
    return (csv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
            csv.ReadOptions(block_size=1 << 20), convert)


def _record_batches(path: str, kind: str, columns: list) -> Iterator[pa.RecordBatch]:
    if kind == "parquet":
        import pyarrow.dataset as ds

        dataset = ds.dataset(path, format="parquet")
        yield from dataset.to_batches(columns=columns, batch_size=1024)
    elif kind == "csv":
        from pyarrow import csv

        parse, read, convert = _csv_options(path, columns)
        yield from csv.open_csv(path, parse_options=parse, read_options=read, convert_options=convert)
    else:
        from pyarrow import json as pajson

        reader = pajson.open_json(path, read_options=pajson.ReadOptions(block_size=1 << 20))
        for batch in reader:
            yield batch.select(columns)


def _table_schema(path: str, kind: str) -> pa.Schema:
    if kind == "parquet":
        import pyarrow.dataset as ds

        return ds.dataset(path, format="parquet").schema
    if kind == "csv":
        from pyarrow import csv

        parse, read, _ = _csv_options(path, None)
        return csv.open_csv(path, parse_options=parse, read_options=read).schema
    from pyarrow import json as pajson

    return pajson.open_json(path, read_options=pajson.ReadOptions(block_size=1 << 20)).schema


def _has_files(path: str, extensions, follow_symlinks: bool) -> bool:
    return any(not isinstance(p, Skipped) for p in walk(path, extensions, follow_symlinks))


def open_input(path, *, column: str | None = None, id_column: str | None = None, extensions=None,
               root=None, paths: bool = False, encoding: str = "utf-8",
               follow_symlinks: bool = False) -> InputSource:
    """Describe ``path`` as an :class:`InputSource` (reads only a table's schema).

    ``paths=True`` (image featurizers) resolves relative paths in a table column against ``root``
    (default: the table's folder)."""
    path = os.path.expanduser(os.fspath(path))
    if not os.path.exists(path):
        raise FileNotFoundError(f"INPUT {path!r} does not exist; give a folder of images, a CSV/Parquet/"
                                "JSONL table, or a text file with one document per line.")
    if os.path.isdir(path):
        is_parquet_dir = _has_files(path, (".parquet", ".pq"), follow_symlinks)
        is_image_dir = _has_files(path, extensions or IMAGE_EXTENSIONS, follow_symlinks)
        kind = "parquet" if (is_parquet_dir and not is_image_dir) or (column and is_parquet_dir) else "folder"
    else:
        kind = _TABLE_SUFFIXES.get(os.path.splitext(path)[1].lower(), "lines")
    if kind == "folder":
        exts = tuple(extensions) if extensions else IMAGE_EXTENSIONS
        exts = tuple(e if e.startswith(".") else "." + e for e in exts)
        if column or id_column:
            raise ValueError(f"column={column!r}/id_column={id_column!r} apply to tables; INPUT {path!r} is "
                             "a folder of images (ids are the relative paths).")
        return InputSource(path, "folder", extensions=exts, id_type=pa.string(),
                           follow_symlinks=follow_symlinks)
    if kind == "lines":
        if column or id_column:
            raise ValueError(f"column={column!r}/id_column={id_column!r} apply to tables; INPUT {path!r} is "
                             "read as a text file with one document per line (use a .csv, .parquet or "
                             ".jsonl suffix for a table).")
        return InputSource(path, "lines", encoding=encoding)
    return _open_table(path, kind, column, id_column, root, paths, follow_symlinks)


def _open_table(path, kind, column, id_column, root, paths, follow_symlinks) -> InputSource:
    schema = _table_schema(path, kind)
    names = list(schema.names)
    if column is None:
        found = [c for c in _DEFAULT_COLUMNS if c in names]
        if len(names) == 1:
            column = names[0]
        elif found:
            column = found[0]
        else:
            raise ValueError(f"Which column holds the samples? {path!r} has columns {names}; pass "
                             "--column NAME (column=NAME).")
    for what, name in (("column", column), ("id_column", id_column)):
        if name is not None and name not in names:
            import difflib

            close = difflib.get_close_matches(name, names, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"{what}={name!r} is not a column of {path!r}; columns are {names}.{hint}")
    id_type = schema.field(id_column).type if id_column else pa.int64()
    if pa.types.is_large_string(id_type) or pa.types.is_dictionary(id_type) or pa.types.is_null(id_type):
        id_type = pa.string()
    total = None
    if kind == "parquet":
        import pyarrow.dataset as ds

        total = ds.dataset(path, format="parquet").count_rows()
    root = root or (path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path)))
    return InputSource(path, kind, column=column, id_column=id_column, root=root, resolve_paths=paths,
                       id_type=id_type, total=total, follow_symlinks=follow_symlinks)
