"""Identity of parameter values: what a callable, an object or a module *is*, for cache fingerprints.

A fingerprint is only correct if two parameter values with the same identity compute the same numbers. So
a Python function is identified by its code (bytecode, constants, nested code), its defaults, its closure
values and the module globals it reads; a ``functools.partial`` by its function and arguments; a bound method
by its function and its object; an object by its class and its state (``__dict__``/``__slots__``,
recursively);
arrays and tensors by their bytes. ``lambda x: x`` and ``lambda x: 1 - x`` differ, ``make(scale=1)`` and
``make(0.5)`` differ, two ``partial``\\s with different arguments differ.

What cannot be seen into raises :class:`Unidentifiable` with the reason: C functions (their behaviour is not
inspectable), open files, locks, generators, modules-as-values, and structures too deep or too large. The
featurizers then do not cache and say why (one warning). Torch is never imported here; tensors and modules
are recognised only when the caller has imported torch already.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
import inspect
import io
import sys
import threading
import types

import numpy as np

MAX_DEPTH = 12
MAX_NODES = 20_000
_LOCK_TYPES = (type(threading.Lock()), type(threading.RLock()))
_OPAQUE = (io.IOBase, types.GeneratorType, types.CoroutineType, types.AsyncGeneratorType, types.FrameType,
           threading.Thread) + _LOCK_TYPES


class Unidentifiable(Exception):
    """A value whose identity cannot be established; ``str(e)`` says why."""


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=20).hexdigest()


def tensor_digest(t) -> str:
    """Hash of a tensor's dtype, shape and bytes (copied to the CPU)."""
    import torch

    t = t.detach()
    if t.is_sparse or t.layout != torch.strided:
        t = t.to_dense()
    t = t.cpu().contiguous()
    raw = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
    return _digest(f"{t.dtype}{tuple(t.shape)}".encode() + raw)


class _Walker:
    def __init__(self):
        self.nodes = 0
        self.path: set[int] = set()

    def value(self, obj, depth: int):
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise Unidentifiable(f"more than {MAX_NODES} objects to inspect")
        if depth > MAX_DEPTH:
            raise Unidentifiable(f"nested deeper than {MAX_DEPTH} levels")
        if obj is None or isinstance(obj, (bool, int, str)):
            return obj
        if isinstance(obj, float):
            return ["float", repr(obj)]
        if isinstance(obj, (bytes, bytearray, memoryview)):
            return ["bytes", _digest(bytes(obj))]
        if isinstance(obj, enum.Enum):
            return ["enum", _qualname(type(obj)), obj.name]
        if isinstance(obj, np.ndarray):
            a = np.ascontiguousarray(obj)
            if a.dtype == object:
                return ["object-array", list(a.shape), self.value(a.ravel().tolist(), depth + 1)]
            return ["array", a.dtype.str, list(a.shape), _digest(a.tobytes())]
        if isinstance(obj, np.generic):
            return ["scalar", obj.dtype.str, repr(obj.item())]
        torch = sys.modules.get("torch")
        if torch is not None and isinstance(obj, torch.Tensor):
            return ["tensor", tensor_digest(obj)]
        if isinstance(obj, type):
            return ["class", _qualname(obj)]
        if isinstance(obj, types.ModuleType):
            return ["module", obj.__name__]
        if id(obj) in self.path:
            return ["cycle"]
        self.path.add(id(obj))
        try:
            return self._container_or_object(obj, depth)
        finally:
            self.path.discard(id(obj))

    def _container_or_object(self, obj, depth: int):
        if isinstance(obj, (list, tuple)):
            return [type(obj).__name__, [self.value(v, depth + 1) for v in obj]]
        if isinstance(obj, (set, frozenset)):
            items = sorted((self.value(v, depth + 1) for v in obj), key=repr)
            return ["set", items]
        if isinstance(obj, dict):
            items = [[self.value(k, depth + 1), self.value(v, depth + 1)] for k, v in obj.items()]
            return [type(obj).__name__, sorted(items, key=repr)]
        if isinstance(obj, functools.partial):
            return ["partial", self.value(obj.func, depth + 1), self.value(obj.args, depth + 1),
                    self.value(obj.keywords, depth + 1)]
        if isinstance(obj, types.MethodType):
            return ["method", self.function(obj.__func__, depth + 1), self.value(obj.__self__, depth + 1)]
        if isinstance(obj, types.FunctionType):
            return self.function(obj, depth)
        if isinstance(obj, (types.BuiltinFunctionType, types.BuiltinMethodType, types.WrapperDescriptorType,
                            types.MethodDescriptorType, types.MethodWrapperType)):
            raise Unidentifiable(f"{_describe(obj)} is a C function: its behaviour cannot be inspected")
        if isinstance(obj, _OPAQUE):
            raise Unidentifiable(f"{_describe(obj)} has no stable state")
        return self.instance(obj, depth)

    def function(self, fn: types.FunctionType, depth: int):
        library = _library_version(fn.__module__)
        if library is not None:  # installed library code changes only with its version
            return ["library-function", fn.__module__, fn.__qualname__, library,
                    self.value(fn.__defaults__, depth + 1), self.value(fn.__kwdefaults__, depth + 1),
                    [self.value(c.cell_contents, depth + 1)
                     for c in (fn.__closure__ or ()) if _cell_filled(c)]]
        code = fn.__code__
        closure = [self.value(c.cell_contents, depth + 1) if _cell_filled(c) else ["empty-cell"]
                   for c in (fn.__closure__ or ())]
        return ["function", fn.__module__, fn.__qualname__, self.code(code),
                self.value(fn.__defaults__, depth + 1), self.value(fn.__kwdefaults__, depth + 1), closure,
                self.globals_read(fn, code, depth)]

    def code(self, code: types.CodeType):
        consts = [self.code(c) if isinstance(c, types.CodeType) else repr(c) for c in code.co_consts]
        return [_digest(code.co_code), consts, list(code.co_names), list(code.co_varnames),
                list(code.co_freevars)]

    def globals_read(self, fn, code: types.CodeType, depth: int) -> list:
        """Values of the module globals the function (and its nested code) reads: ``x * SCALE`` changes
        when ``SCALE`` does. Modules and classes count by name, functions by their own identity."""
        names = sorted(_global_names(code))
        out = []
        for name in names:
            if name in fn.__globals__:
                out.append([name, self.value(fn.__globals__[name], depth + 1)])
        return out

    def instance(self, obj, depth: int):
        cls = type(obj)
        if dataclasses.is_dataclass(obj):
            state = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
        elif hasattr(obj, "__getstate__") and cls.__getstate__ is not object.__getstate__:
            try:
                state = obj.__getstate__()
            except Exception as e:  # noqa: BLE001 - an object that cannot report its state
                raise Unidentifiable(f"{_describe(obj)}: __getstate__ failed ({e})") from e
        else:
            state = dict(getattr(obj, "__dict__", {}))
            for name in _slot_names(cls):
                if hasattr(obj, name):
                    state[name] = getattr(obj, name)
            if not state and not hasattr(obj, "__dict__") and not _slot_names(cls):
                if cls.__module__ == "builtins":
                    raise Unidentifiable(f"{_describe(obj)} has no inspectable state")
        torch = sys.modules.get("torch")
        if torch is not None and isinstance(obj, torch.nn.Module):
            state = {k: v for k, v in state.items() if k not in ("training", "_is_full_backward_hook")}
        call = cls.__dict__.get("__call__") or next(
            (k.__dict__["__call__"] for k in cls.__mro__ if "__call__" in k.__dict__), None)
        behaviour = self.function(call, depth + 1) if isinstance(call, types.FunctionType) else None
        return ["object", _qualname(cls), behaviour, self.value(state, depth + 1)]


@functools.lru_cache(maxsize=512)
def _library_version(module_name: str | None) -> str | None:
    """``"<package> <version>"`` when ``module_name`` is installed library code (site-packages or the
    standard library), else None (user code, ``__main__``, notebooks: identified by their bytecode)."""
    import sysconfig

    if not module_name or module_name == "__main__":
        return None
    module = sys.modules.get(module_name)
    path = getattr(module, "__file__", None) or ""
    top = module_name.split(".")[0]
    if top in sys.builtin_module_names or top in getattr(sys, "stdlib_module_names", ()):
        return f"python {sys.version_info[0]}.{sys.version_info[1]}"
    roots = {sysconfig.get_paths()[k] for k in ("purelib", "platlib")}
    if not path or not any(path.startswith(r) for r in roots) and "site-packages" not in path:
        return None
    version = getattr(sys.modules.get(top), "__version__", None)
    return f"{top} {version}"


def _cell_filled(cell) -> bool:
    try:
        cell.cell_contents  # noqa: B018
    except ValueError:
        return False
    return True


def _global_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names


def _slot_names(cls) -> list[str]:
    out = []
    for klass in cls.__mro__:
        slots = klass.__dict__.get("__slots__", ())
        out.extend([slots] if isinstance(slots, str) else list(slots))
    return [s for s in out if s not in ("__dict__", "__weakref__")]


def _qualname(cls) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _describe(obj) -> str:
    name = getattr(obj, "__qualname__", None) or type(obj).__qualname__
    return f"{name!s} ({type(obj).__name__})"


def identify(obj):
    """A JSON-able structure that is equal for two values exactly when they compute the same (see the module
    docstring); raises :class:`Unidentifiable` when that cannot be established."""
    return _Walker().value(obj, 0)


def identity_digest(obj) -> str:
    """:func:`identify` as a hex digest, with the Python version (bytecode is version-specific)."""
    import json

    blob = json.dumps([sys.version_info[:2], identify(obj)], sort_keys=True, default=repr)
    return _digest(blob.encode())


def module_state(module) -> tuple:
    """Cheap snapshot of a torch module's tensors: ``(name, id, version counter)`` for each parameter and
    buffer. In-place edits (``weight.mul_(3)``, ``load_state_dict``) bump the version counter; a replaced
    tensor or submodule changes the id or the name set."""
    tensors = list(module.named_parameters(remove_duplicate=False)) + list(
        module.named_buffers(remove_duplicate=False))
    return tuple((name, id(t), int(t._version)) for name, t in tensors)


def module_digest(module) -> str:
    """Identity of a torch module: its architecture (``repr``), the code and state of every user-defined
    class in it (plain attributes such as ``self.scale``), and the bytes of every parameter and buffer."""
    walker = _Walker()
    parts = [repr(module)]
    for name, sub in module.named_modules():
        cls = type(sub)
        plain = {k: v for k, v in vars(sub).items() if not k.startswith("_") and k != "training"}
        user_code = None
        if not cls.__module__.startswith("torch."):
            forward = getattr(cls, "forward", None)
            user_code = walker.function(forward, 1) if isinstance(forward, types.FunctionType) else None
        parts.append([name, _qualname(cls), user_code, walker.value(plain, 1)])
    for name, t in list(module.named_parameters()) + list(module.named_buffers()):
        parts.append([name, tensor_digest(t)])
    import json

    return _digest(json.dumps([sys.version_info[:2], parts], default=repr).encode())


def describe_callable(fn) -> str:
    """Short human name of a callable for messages and namespace descriptions."""
    if isinstance(fn, functools.partial):
        return f"partial({describe_callable(fn.func)})"
    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    module = getattr(fn, "__module__", None) or inspect.getmodule(type(fn))
    return f"{module}.{name}" if isinstance(module, str) else str(name)
