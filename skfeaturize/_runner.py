"""The one batch runner of the neural featurizers (images and texts).

It takes loaded batches ``(positions, inputs)`` (positions: where each item's results go), moves the inputs
to the device, runs ``forward`` under ``inference_mode`` and autocast, and writes every result block into a
preallocated ``(n_items, width)`` array at the batch's positions. Out of memory: the same slice is retried
at half the size *outside* the ``except`` block (so the failed attempt's memory is really freed), and the
smaller size is kept; results are scattered by position, so a retry can never duplicate rows, whatever the
number of outputs. At size 1 it raises an error naming the sample. Progress counts items.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch

from ._loader import loader_key, peek, put
from ._torch import autocast, guard_fork
from ._warnings import warn
from .exceptions import InvalidSampleError


def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def _take(inputs, a: int, b: int):
    if isinstance(inputs, dict):
        return {k: v[a:b] for k, v in inputs.items()}
    return inputs[a:b]


def _to(inputs, device: torch.device):
    non_blocking = device.type == "cuda"
    if isinstance(inputs, dict):
        return {k: v.to(device, non_blocking=non_blocking) for k, v in inputs.items()}
    return inputs.to(device, non_blocking=non_blocking)


class Progress:
    """``progress``: False, True (a tqdm bar) or a callable receiving the number of items just finished."""

    def __init__(self, progress, total: int, desc: str):
        self.bar, self.callback = None, None
        self.done, self.reported = 0.0, 0  # fractional items (a long text's windows), reported as ints
        if callable(progress):
            self.callback = progress
        elif progress:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, unit="item", desc=desc)

    def update(self, n: float) -> None:
        self.done += n
        step = int(round(self.done, 6)) - self.reported
        if step <= 0:
            return
        self.reported += step
        if self.bar is not None:
            self.bar.update(step)
        if self.callback is not None:
            self.callback(step)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


AUTO_SIZES = (1, 2, 4, 8, 16, 32)
"""Batch sizes ``batch_size="auto"`` times, each on its own real items of the first loaded batch."""
PROBE_ITEMS = 8
"""Items each candidate size is timed on per round (in as many slices as it takes): one slice is noise."""
PROBE_ROUNDS = 2
"""Timed rounds over the sizes, ascending then descending, the best kept: drift favours no size."""


class BatchRunner:
    """``batch_size="auto"``: the first loaded batch (``load_size`` items) is split into slices of 1, 2, 4,
    … items; each size runs once untimed (a new input shape costs extra the first time, in torch and in ONNX
    Runtime alike), then ``PROBE_ROUNDS`` timed rounds on ``PROBE_ITEMS`` items each; the fastest per item
    is used from then on and remembered in the process under ``probe_key`` (model, engine, device). Every
    item is computed once."""

    def __init__(self, device: torch.device, precision: str, batch_size, *,
                 sample_of: Callable[[int], int] = lambda i: i, progress=False, desc: str = "",
                 probe_key=None):
        self.device, self.precision = device, precision
        self.sample_of, self.progress, self.desc = sample_of, progress, desc
        self._memo = loader_key("batch-size", key=probe_key) if batch_size == "auto" else None
        self.size = int(batch_size) if self._memo is None else peek(self._memo)
        self.load_size = self.size if self.size is not None else sum(
            s + PROBE_ROUNDS * max(s, PROBE_ITEMS) for s in AUTO_SIZES)

    def run(self, batches: Iterable, n_items: int, forward: Callable, model=None, count=None) -> dict:
        """``forward(inputs) -> {key: (b, width) tensor}`` over every batch; returns ``{key: float32 array
        (n_items, width)}``. ``model`` is put in eval mode for the run and restored. ``count(positions)``
        gives how many progress units a batch finishes (default: its items)."""
        guard_fork()
        out: dict = {}
        filled = np.zeros(n_items, bool)
        bar = Progress(self.progress, n_items, self.desc)
        was_training = model.training if model is not None else False
        if model is not None:
            model.eval()
        try:
            with torch.inference_mode():
                for positions, inputs in batches:
                    positions = np.asarray(positions, dtype=np.int64)
                    inputs = _to(inputs, self.device)
                    if self.size is None:
                        rest, inputs = self._probe(positions, inputs, forward, out, n_items)
                        self._run_batch(rest, inputs, forward, out, n_items)
                    else:
                        self._run_batch(positions, inputs, forward, out, n_items)
                    filled[positions] = True
                    bar.update(len(positions) if count is None else count(positions))
        finally:
            if model is not None:
                model.train(was_training)
            bar.close()
        if n_items and not filled.all():
            raise RuntimeError(f"{int((~filled).sum())} items were never computed; this is a bug in "
                               "skfeaturize.")
        return out

    def _probe(self, positions, inputs, forward, out, n_items):
        """Time the batch sizes on this batch's items; returns the items left for the chosen size."""
        import time

        n, start = len(positions), 0

        def run(size, count):
            nonlocal start
            self.size = size
            t0 = time.perf_counter()
            self._run_batch(positions[start:start + count], _take(inputs, start, start + count), forward, out,
                            n_items)
            start += count
            return (time.perf_counter() - t0) / count

        sizes = [s for s in AUTO_SIZES if start + s <= n]
        for size in sizes:  # untimed: the first call at each input shape
            if start + size <= n:
                run(size, size)
        per_item: dict = {}
        for round_ in range(PROBE_ROUNDS):
            for size in (sizes if round_ % 2 == 0 else sizes[::-1]):
                count = max(size, PROBE_ITEMS)
                if start + count <= n:
                    per_item[size] = min(per_item.get(size, float("inf")), run(size, count))
        if len(per_item) == len(AUTO_SIZES):
            self.size = min(per_item, key=per_item.get)
            put(self._memo, self.size)
        else:  # too few items to time every size: a plain size now, the probe on a later, larger transform
            self.size = AUTO_SIZES[-1]
        return positions[start:], _take(inputs, start, n)

    def _run_batch(self, positions: np.ndarray, inputs, forward: Callable, out: dict, n_items: int) -> None:
        n, start = len(positions), 0
        while start < n:
            stop = min(n, start + self.size)
            oom = None
            try:
                with autocast(self.device, self.precision):
                    blocks = forward(_take(inputs, start, stop))
                for key, block in blocks.items():
                    block = block.float().cpu().numpy()
                    if key not in out:
                        out[key] = np.zeros((n_items, block.shape[1]), np.float32)
                    out[key][positions[start:stop]] = block
            except Exception as e:  # noqa: BLE001 - filtered just below
                if not _is_oom(e):
                    raise
                oom = e
            if oom is None:
                start = stop
                continue
            del oom
            self._back_off(stop - start, int(positions[start]))

    def _back_off(self, tried: int, first_position: int) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        if tried == 1:
            idx = self.sample_of(first_position)
            raise InvalidSampleError(
                f"Sample {idx}: out of memory on {self.device} even with batch size 1; use a smaller input "
                "size, precision='bf16'/'fp16', or device='cpu'.", index=idx)
        self.size = max(1, tried // 2)
        warn(f"Out of memory on {self.device}; retrying with batch size {self.size}.")
