"""Progress of a bulk job: a tqdm bar on a terminal, plain periodic log lines otherwise."""

from __future__ import annotations

import sys
import time


def _fmt_seconds(s: float) -> str:
    s = int(round(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h{m:02d}m{sec:02d}s" if h else (f"{m}m{sec:02d}s" if m else f"{sec}s")


class Progress:
    """Counts items; ``mode`` is ``"bar"`` (tqdm), ``"log"`` (a line every ``every`` seconds) or ``"off"``."""

    def __init__(self, total: int | None, done: int = 0, *, mode: str = "auto", every: float = 10.0,
                 desc: str = "embed", stream=None):
        self.stream = stream or sys.stderr
        if mode == "auto":
            mode = "bar" if getattr(self.stream, "isatty", lambda: False)() else "log"
        self.mode, self.every, self.desc = mode, every, desc
        self.total, self.done, self.start_done = total, done, done
        self.t0 = self.last = time.monotonic()
        self.bar = None
        if mode == "bar":
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=done, unit="item", desc=desc, file=self.stream,
                            dynamic_ncols=True, smoothing=0.1)

    def update(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.mode == "log":
            now = time.monotonic()
            if now - self.last >= self.every:
                self.last = now
                self.log(self.line())

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.t0, 1e-9)
        rate = (self.done - self.start_done) / elapsed
        if self.total:
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            eta_s = _fmt_seconds(eta) if eta != float("inf") else "?"
            return (f"{self.desc}: {self.done}/{self.total} items ({100 * self.done / self.total:.1f}%), "
                    f"{rate:.1f} items/s, ETA {eta_s}")
        return f"{self.desc}: {self.done} items, {rate:.1f} items/s"

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
