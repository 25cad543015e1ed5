"""Progress of a bulk job: a tqdm bar on a terminal, plain periodic log lines otherwise."""

from __future__ import annotations

import os
import sys
import time


def _fmt_seconds(s: float) -> str:
    s = int(round(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h{m:02d}m{sec:02d}s" if h else (f"{m}m{sec:02d}s" if m else f"{sec}s")


def _terminal_width(stream) -> int:
    """Columns of the terminal ``stream`` writes to; 0 when it is not a terminal or has no width (then
    progress goes to periodic log lines, which read well in a log file)."""
    if not getattr(stream, "isatty", lambda: False)():
        return 0
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (OSError, ValueError, AttributeError):
        return 0


class Progress:
    """Counts items; ``mode`` is ``"bar"`` (tqdm), ``"log"`` (a line every ``every`` seconds) or ``"off"``."""

    def __init__(self, total: int | None, done: int = 0, *, mode: str = "auto", every: float = 10.0,
                 desc: str = "embed", stream=None):
        self.stream = stream or sys.stderr
        if mode == "auto":
            mode = "bar" if _terminal_width(self.stream) > 0 else "log"
        self.partial = 0  # items of the chunk in flight already featurized (reported per batch)
        self.mode, self.every, self.desc = mode, every, desc
        self.total, self.done, self.start_done = total, done, done
        self.t0 = self.last = time.monotonic()
        self.bar = None
        if mode == "bar":
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=done, unit="item", desc=desc, file=self.stream,
                            dynamic_ncols=True, smoothing=0.1)

    def batch(self, n: int) -> None:
        """``n`` more items of the chunk in flight are featurized (called by the featurizer per batch)."""
        self.partial += n
        self._show(n)

    def update(self, n: int) -> None:
        """A chunk of ``n`` items is committed (its batches may have been reported already)."""
        shown = min(self.partial, n)
        self.done += n
        self.partial = 0
        self._show(n - shown)

    def _show(self, step: int) -> None:
        if self.bar is not None:
            if step:
                self.bar.update(step)
        elif self.mode == "log":
            now = time.monotonic()
            if now - self.last >= self.every:
                self.last = now
                self.log(self.line())

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.t0, 1e-9)
        done = self.done + self.partial
        rate = (done - self.start_done) / elapsed
        if self.total:
            eta = (self.total - done) / rate if rate > 0 else float("inf")
            eta_s = _fmt_seconds(eta) if eta != float("inf") else "?"
            return (f"{self.desc}: {done}/{self.total} items ({100 * done / self.total:.1f}%), "
                    f"{rate:.1f} items/s, ETA {eta_s}")
        return f"{self.desc}: {done} items, {rate:.1f} items/s"

    def log(self, message: str) -> None:
        if self.mode == "off":
            return
        if self.bar is not None:
            self.bar.write(message, file=self.stream)
        else:
            print(message, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
