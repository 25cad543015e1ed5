"""Torch runtime shared by the neural featurizers: devices, precision, a process-wide model registry,
and the batch runner with out-of-memory backoff. Imported only when a featurizer first needs torch."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable

import torch

from .exceptions import InvalidSampleError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(device) -> torch.device:
    """``"auto"`` → cuda, then mps, then cpu. A CUDA/MPS request on a machine without one falls back to
    the CPU with a warning (an unpickled featurizer may land on a CPU-only machine)."""
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        warnings.warn(f"device={device!r} was requested but CUDA is not available; using the CPU.",
                      stacklevel=3)
        return torch.device("cpu")
    if dev.type == "mps" and not (
        getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    ):
        warnings.warn(f"device={device!r} was requested but MPS is not available; using the CPU.",
                      stacklevel=3)
        return torch.device("cpu")
    return dev


def resolve_precision(precision: str, device: torch.device) -> str:
    """``"auto"`` → bf16 autocast on CUDA devices that support it, fp16 on other CUDA devices, fp32
    elsewhere."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def autocast(device: torch.device, precision: str):
    """Mixed-precision context for ``precision`` (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=_DTYPES[precision])


# -- process-wide model registry (one for the whole process, shared with the torch-free featurizers) --

from ._registry import _REGISTRY, REGISTRY_SIZE, cached_load  # noqa: E402,F401  (re-exported)
from ._registry import clear_registry as clear_model_registry  # noqa: E402,F401


def seeded_init(seed: int = 0):
    """Context in which randomly initialised weights are deterministic, without touching the global RNG."""
    stack = contextlib.ExitStack()
    stack.enter_context(torch.random.fork_rng(devices=[]))
    torch.manual_seed(seed)
    return stack


# -- out-of-memory backoff ----------------------------------------------------------------------------

def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


class OOMBackoff:
    """Runs ``fn`` on slices of a batch, halving the slice size on out-of-memory and retrying the same
    slice *outside* the ``except`` block so the failed attempt's memory is really freed. The reduced size
    is kept for later batches. At size 1 it raises an error naming the sample."""

    def __init__(self, max_batch: int, device: torch.device):
        self.size = max_batch
        self.device = device
        self.backoffs = 0

    def run(self, n: int, fn: Callable[[int, int], None], indices=None) -> None:
        """Call ``fn(start, stop)`` for consecutive slices covering ``range(n)``."""
        start = 0
        while start < n:
            stop = min(n, start + self.size)
            oom = None
            try:
                fn(start, stop)
            except Exception as e:  # noqa: BLE001 - filtered just below
                if not _is_oom(e):
                    raise
                oom = e
            if oom is None:
                start = stop
                continue
            del oom
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            if stop - start == 1:
                idx = indices[start] if indices is not None else start
                raise InvalidSampleError(
                    f"Sample {idx}: out of memory on {self.device} even with batch size 1; use a "
                    "smaller input size, precision='bf16'/'fp16', or device='cpu'.", index=idx)
            self.size = max(1, (stop - start) // 2)
            self.backoffs += 1
            warnings.warn(f"Out of memory on {self.device}; retrying with batch size {self.size}.",
                          stacklevel=2)
