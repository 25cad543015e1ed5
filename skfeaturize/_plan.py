"""The fitted plan: everything that decides a featurizer's numbers, resolved once in ``fit``.

``transform`` reads only the plan. It holds the output *requests* (``(layer, pooling)`` pairs with ``auto``
resolved, in output order) and their widths, the extra requests to fill on a cache miss, how several layers
combine into one vector, and the *identity*: a JSON-able description of everything else that changes the
numbers (backbone, weights, preprocessing, tokenizer, precision, fitted state). The cache namespace of a
request is a hash of the identity plus the request.

It also keeps a snapshot of the parameters it was made from. A parameter that decides the numbers and was
changed after ``fit`` (``set_params`` does not refit; a module's weights edited in place count as a change)
makes ``transform`` raise :class:`~skfeaturize.exceptions.RefitRequiredError`: a plan never mixes with
parameters it was not made from.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
from typing import NamedTuple

from .exceptions import RefitRequiredError

NAMESPACE_VERSION = "0.2"
"""Bumped when what a namespace covers changes, so that entries computed under older rules are never read."""

COMBINES = ("concat", "mean", "sum")


class Request(NamedTuple):
    """One block of output columns: a layer and a pooling, both resolved."""

    layer: str
    pooling: str


@dataclasses.dataclass(frozen=True)
class Plan:
    requests: tuple[Request, ...]
    widths: dict  # Request -> int, for requests and extra
    identity: dict
    params: dict  # parameter name -> snapshot token (see param_token)
    extra: tuple[Request, ...] = ()
    combine: str = "concat"
    prefix: str = "features"
    cache_refusal: str | None = None  # why the cache cannot be used, or None

    @property
    def n_features(self) -> int:
        widths = [self.widths[r] for r in self.requests]
        return widths[0] if self.combine != "concat" else sum(widths)

    def namespace_spec(self, request: Request) -> dict:
        return {**self.identity, "layer": request.layer, "pooling": request.pooling,
                "skfeaturize": NAMESPACE_VERSION}

    def namespace(self, request: Request) -> str:
        from .cache._keys import fingerprint

        return fingerprint(self.namespace_spec(request))

    def description(self, request: Request) -> dict:
        """What a namespace was made of, as plain fields (what ``EmbeddingCache.evict`` matches on)."""
        flat = {k: v for k, v in self.identity.items() if isinstance(v, (str, int, float, bool))}
        return {**flat, "layer": request.layer, "pooling": request.pooling}

    @property
    def fingerprint(self) -> str:
        """Everything that decides the output: identity, requests, how they combine."""
        from .cache._keys import fingerprint

        return fingerprint({"identity": self.identity, "requests": [list(r) for r in self.requests],
                            "combine": self.combine, "skfeaturize": NAMESPACE_VERSION})


# -- persisted plans -------------------------------------------------------------------------------------

def plan_to_json(plan: Plan) -> dict:
    return {"requests": [list(r) for r in plan.requests],
            "widths": [[r.layer, r.pooling, int(w)] for r, w in plan.widths.items()],
            "identity": plan.identity, "params": plan.params, "extra": [list(r) for r in plan.extra],
            "combine": plan.combine, "prefix": plan.prefix, "cache_refusal": plan.cache_refusal}


def plan_from_json(d: dict) -> Plan:
    return Plan(requests=tuple(Request(*r) for r in d["requests"]),
                widths={Request(layer, pooling): int(w) for layer, pooling, w in d["widths"]},
                identity=d["identity"], params=d["params"], extra=tuple(Request(*r) for r in d["extra"]),
                combine=d["combine"], prefix=d["prefix"], cache_refusal=d["cache_refusal"])


def plain_params(params: dict, runtime: frozenset) -> dict | None:
    """The parameters that decide the numbers, if all are plain values (JSON-able); else None."""
    out = {}
    for k, v in params.items():
        if k in runtime:
            continue
        token = param_token(v)
        if isinstance(token, list) and token[:1] in (["object"], ["module"]):
            return None
        out[k] = token
    return out


@functools.lru_cache(maxsize=1)
def environment() -> dict:
    """What besides the parameters can change a resolved plan, read without importing any library: the
    versions of the libraries it comes from, Python's, and whether this machine has a GPU driver (device
    and precision ``"auto"`` resolve by it)."""
    from importlib import metadata

    versions = {}
    for dist in ("skfeaturize", "torch", "torchvision", "timm", "transformers", "sentence-transformers",
                 "tokenizers", "huggingface-hub", "numpy", "scikit-learn", "pillow", "gensim"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return {"versions": versions, "python": list(sys.version_info[:2]), "platform": sys.platform,
            "nvidia": os.path.exists("/dev/nvidiactl") or os.path.exists("/proc/driver/nvidia"),
            "cuda_visible": os.environ.get("CUDA_VISIBLE_DEVICES")}


# -- parameter snapshots --------------------------------------------------------------------------------

def param_token(value):
    """What must stay equal for a parameter to count as unchanged: plain values by value, objects by
    identity (and a torch module by the version counters of its tensors too)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, os.PathLike):
        return ["path", os.fspath(value)]
    if isinstance(value, (list, tuple)) and all(v is None or isinstance(v, (bool, int, float, str))
                                                 for v in value):
        return [type(value).__name__, list(value)]
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.nn.Module):
        from ._identity import module_state

        return ["module", id(value), module_state(value)]
    return ["object", id(value)]


def snapshot(params: dict, runtime: frozenset) -> dict:
    return {k: param_token(v) for k, v in params.items() if k not in runtime}


def check_unchanged(plan: Plan, params: dict, runtime: frozenset, owner: str) -> None:
    """Raise :class:`RefitRequiredError` naming every parameter that changed since the plan was made."""
    now = snapshot(params, runtime)
    changed = [k for k in sorted(set(now) | set(plan.params)) if now.get(k) != plan.params.get(k)]
    if not changed:
        return
    details = []
    for k in changed:
        old, new = plan.params.get(k), now.get(k)
        if isinstance(old, list) and old[:1] == ["module"] and isinstance(new, list) and old[1] == new[1]:
            edited = [n for (n, i, v), (_, i2, v2) in zip(old[2], new[2], strict=False) if (i, v) != (i2, v2)]
            names = edited[:3] or ["its parameters or buffers"]
            details.append(f"{k}: the module's weights changed since fit (in place: {', '.join(names)})")
        elif isinstance(old, list) and old[:1] in (["object"], ["module"]):
            details.append(f"{k}: another object than at fit")
        else:
            details.append(f"{k}: {_show(old)} at fit, {_show(new)} now")
    raise RefitRequiredError(
        f"{owner} was fitted with other parameters ({'; '.join(details)}). set_params() does not refit: "
        "call fit() again, so that the output and its cache namespace follow the new parameters.")


def _show(token) -> str:
    if isinstance(token, list) and token[:1] == ["path"]:
        return repr(token[1])
    if isinstance(token, list) and token[:1] in (["list"], ["tuple"]):
        return repr(token[1])
    return repr(token)


def refresh_object_tokens(plan: Plan, params: dict, runtime: frozenset) -> Plan:
    """After unpickling, object parameters are new objects equal to the old ones: re-take their tokens."""
    now = snapshot(params, runtime)
    fresh = {k: (now[k] if isinstance(v, list) and v[:1] in (["object"], ["module"]) and k in now else v)
             for k, v in plan.params.items()}
    return dataclasses.replace(plan, params=fresh)


__all__ = ["Plan", "Request", "COMBINES", "param_token", "snapshot", "check_unchanged",
           "refresh_object_tokens", "plan_to_json", "plan_from_json", "plain_params", "environment"]
