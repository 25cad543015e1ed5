"""Walking an input folder: a sorted, stable order; each real directory once; no escape through symlinks.

:func:`walk` yields the path of every regular file whose name ends with one of the extensions, depth
first, each directory's entries sorted by name, and a :class:`Skipped` record (never an exception) for
what it does not follow:

* a symbolic link (to a file or a directory) whose target lies outside the input folder, unless
  ``follow_symlinks=True`` (HAZARDS.md: a link to a system file would otherwise be opened);
* a directory already walked (``os.walk(followlinks=True)`` loops forever on a link to an ancestor): each
  real directory, known by ``(st_dev, st_ino)``, is walked once, under the first path that reaches it;
* a broken link, a FIFO, socket or device with an image extension (opening a FIFO blocks forever);
* a directory that cannot be listed (permission denied).

Names are ``str`` as the OS gives them: a name that is not valid UTF-8 holds lone surrogates
(``os.fsdecode``), and ``os.fsencode`` gives its bytes back.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Skipped:
    """An entry the walk did not follow: its path relative to the folder (``/`` separators) and why."""

    path: str
    reason: str


def _listing(path: str) -> list:
    with os.scandir(path) as it:
        return sorted(it, key=lambda e: e.name)


def _inside(target: str, real_root: str) -> bool:
    return os.path.commonpath([real_root, target]) == real_root


def _dir_key(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def walk(root: str, extensions, follow_symlinks: bool = False) -> Iterator[str | Skipped]:
    """Files under ``root`` with one of ``extensions`` (case-insensitive), and :class:`Skipped` records."""
    exts = tuple(e.lower() for e in extensions)
    real_root = os.path.realpath(root)
    seen = {_dir_key(root): "."}
    stack = [("", iter(_listing(root)))]  # an explicit stack: deep trees do not hit the recursion limit
    while stack:
        entry = next(stack[-1][1], None)
        if entry is None:
            stack.pop()
            continue
        rel = f"{stack[-1][0]}/{entry.name}" if stack[-1][0] else entry.name
        is_dir = entry.is_dir()  # follows links; False for a broken link
        if not is_dir and not entry.name.lower().endswith(exts):
            continue  # not an input, whatever it is
        skip = _why_not(entry, is_dir, real_root, follow_symlinks)
        if skip is None and is_dir:
            skip, listing = _enter(entry.path, rel, seen)
            if skip is None:
                stack.append((rel, iter(listing)))
                continue
        if skip is not None:
            yield Skipped(rel, skip)
        elif not is_dir:
            yield entry.path


def _why_not(entry: os.DirEntry, is_dir: bool, real_root: str, follow_symlinks: bool) -> str | None:
    """Why the walk does not take ``entry`` (None: it does)."""
    if entry.is_symlink():
        target = os.path.realpath(entry.path)
        if not os.path.exists(entry.path):
            return f"broken symbolic link (to {target!r})"
        if not follow_symlinks and not _inside(target, real_root):
            return (f"symbolic link to {target!r}, outside the input folder; pass --follow-symlinks "
                    "(follow_symlinks=True) to follow it")
    if not is_dir and not entry.is_file():
        return "not a regular file (a FIFO, socket or device)"
    return None


def _enter(path: str, rel: str, seen: dict) -> tuple[str | None, list]:
    """``(None, sorted entries)`` for a directory walked for the first time, else ``(reason, [])``."""
    try:
        key = _dir_key(path)
        if key in seen:
            return (f"folder already walked as {seen[key]!r} (a symbolic link loop, or a second link to "
                    "the same folder)"), []
        listing = _listing(path)
    except OSError as e:
        return f"cannot list the folder: {type(e).__name__}: {e.strerror or e}", []
    seen[key] = rel
    return None, listing
