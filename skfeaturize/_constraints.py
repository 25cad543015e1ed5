"""Parameter constraints that scikit-learn's vocabulary lacks, for ``_parameter_constraints``.

scikit-learn's ``make_constraint`` accepts ``Options`` instances, so these subclass it and redefine what
they accept; the error message is scikit-learn's own (``InvalidParameterError`` listing every allowed form).
None of them imports torch: a torch object is recognised only when torch is already imported.
"""

from __future__ import annotations

import re
import sys

from sklearn.utils._param_validation import Options

_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def _is_torch(val, name: str) -> bool:
    torch = sys.modules.get("torch")
    if torch is None:
        return False
    kind = {"device": torch.device, "module": torch.nn.Module}[name]
    return isinstance(val, kind)


class Device(Options):
    """``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"`` or a ``torch.device``."""

    def __init__(self):
        super().__init__(str, {"auto"})

    def is_satisfied_by(self, val):
        return (isinstance(val, str) and bool(_DEVICE_RE.match(val))) or _is_torch(val, "device")

    def __str__(self):
        return "a device: 'auto', 'cpu', 'cuda', 'cuda:N' (N = GPU index), 'mps' or a torch.device"


class ModelOrModule(Options):
    """A model name (str) or a ``torch.nn.Module``."""

    def __init__(self):
        super().__init__(str, {"resnet50"})

    def is_satisfied_by(self, val):
        return isinstance(val, str) or _is_torch(val, "module")

    def __str__(self):
        return "a model name (str) or a torch.nn.Module"
