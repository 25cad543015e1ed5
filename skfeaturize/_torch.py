"""Torch runtime shared by the neural featurizers: devices, precision, seeded initialisation, fork safety.
Imported only when a featurizer first needs torch."""

from __future__ import annotations

import contextlib
import os
import re

from ._optional import import_optional
from ._warnings import warn

torch = import_optional("torch")  # first use of a neural featurizer: a missing torch says how to install it

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def check_device(device) -> None:
    """Validate a ``device`` parameter: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"`` or a
    ``torch.device``."""
    if device is None or isinstance(device, torch.device):
        return
    if not isinstance(device, str) or not _DEVICE_RE.match(device):
        raise ValueError(f"device={device!r} is not a device; allowed: 'auto' (cuda, then mps, then cpu), "
                         "'cpu', 'cuda', 'cuda:N' (N = GPU index) or 'mps'.")


def resolve_device(device) -> torch.device:
    """``"auto"`` → cuda, then mps, then cpu. A CUDA/MPS request on a machine without one falls back to
    the CPU with a warning (an unpickled featurizer may land on a CPU-only machine)."""
    check_device(device)
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        warn(f"device={device!r} was requested but CUDA is not available; using the CPU.")
        return torch.device("cpu")
    if dev.type == "mps" and not _mps_available():
        warn(f"device={device!r} was requested but MPS is not available; using the CPU.")
        return torch.device("cpu")
    return dev


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def resolve_precision(precision: str, device: torch.device) -> str:
    """``"auto"`` → bf16 autocast on CUDA devices that support it, fp16 on other CUDA devices, fp32
    elsewhere. A reduced precision asked for explicitly on the CPU is kept, with a warning: it changes the
    numbers and is slower there (3–9× in our measurements: CPU autocast is not a speed-up)."""
    if precision == "int8":
        if device.type != "cpu":
            raise ValueError(f"precision='int8' is dynamic int8 quantization, which runs on the CPU; got "
                             f"device {str(device)!r}. Use device='cpu', or precision='auto' on a GPU.")
        return precision
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "fp32"
    if precision != "fp32" and device.type == "cpu":
        warn(f"precision={precision!r} on the CPU is usually several times slower than fp32 and "
             "changes the numbers; use precision='auto' (fp32 on the CPU) unless you need it.",
             UserWarning)
    return precision


def autocast(device: torch.device, precision: str):
    """Mixed-precision context for ``precision`` (a no-op for fp32)."""
    if precision in ("fp32", "int8"):  # int8: the model itself is quantized, no autocast
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=_DTYPES[precision])


def seeded_init(seed: int = 0):
    """Context in which randomly initialised weights are deterministic, without touching the global RNG."""
    stack = contextlib.ExitStack()
    stack.enter_context(torch.random.fork_rng(devices=[]))
    torch.manual_seed(seed)
    return stack


# -- fork safety ------------------------------------------------------------------------------------------
# torch's intra-op thread pool (OpenMP) does not survive fork(): a child that runs a model after its parent
# did can hang forever. A forked child therefore runs torch with one intra-op thread, as PyTorch's own
# DataLoader workers do; the change is made once, in the child only, and said in a warning.

_FORKED = {"child": False, "handled": False}


def _after_fork_in_child() -> None:
    _FORKED["child"] = True
    _FORKED["handled"] = False


os.register_at_fork(after_in_child=_after_fork_in_child)


def guard_fork() -> None:
    if not _FORKED["child"] or _FORKED["handled"]:
        return
    _FORKED["handled"] = True
    if torch.get_num_threads() > 1:
        torch.set_num_threads(1)
        warn("skfeaturize: this process was forked from one that had imported torch; torch's thread "
             "pool does not survive fork() (a model run here could hang), so it now runs with one "
             "intra-op thread. Start worker processes with 'spawn' (or joblib's default 'loky') for "
             "full speed.", RuntimeWarning)
