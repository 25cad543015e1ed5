"""Adapter for Hugging Face ``transformers`` encoders (BERT, RoBERTa, DistilBERT, MiniLM, ...).

Everything here imports ``transformers``/``huggingface_hub`` inside functions. A model is named by a hub
id (read from the local Hugging Face cache when ``HF_HUB_OFFLINE=1``) or a local folder.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import threading
import warnings
from dataclasses import dataclass

from .._warnings import warn
from ..exceptions import WeightsNotFoundError

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".h5", ".msgpack", ".ckpt")
IDENTITY_SUFFIXES = WEIGHT_SUFFIXES + (".json", ".txt", ".model", ".tiktoken")


_HUB_ID = re.compile(r"\w[\w.-]*/[\w.-]*\w")
"""A bare ``org/name`` (huggingface_hub's repo id grammar): no ``./``, ``/``, ``~`` or trailing slash."""
_SHADOW_WARNED: set[tuple[str, str]] = set()


def is_local(model) -> bool:
    """Whether ``model`` names a local folder: a path-like object, or a string naming an existing folder.

    A bare ``org/name`` string that is also a folder under the working directory is that folder, as in
    ``from_pretrained`` (which looks for a folder first, so the hub model cannot be had under that name
    here); it warns once per process and folder, since the user may have meant the hub model."""
    if isinstance(model, os.PathLike):
        return True
    path = os.path.expanduser(str(model))
    if not os.path.isdir(path):
        return False
    if _HUB_ID.fullmatch(path) and "--" not in path and ".." not in path:
        _warn_shadowed(path)
    return True


def _warn_shadowed(hub_id: str) -> None:
    folder = os.path.abspath(hub_id)
    if (hub_id, folder) in _SHADOW_WARNED:
        return
    _SHADOW_WARNED.add((hub_id, folder))
    warn(
        f"model={hub_id!r} is both a Hugging Face hub id and a folder in the working directory: it resolved "
        f"to the local folder './{hub_id}' ({folder}), not the hub model. Write './{hub_id}' or an absolute "
        "path to mean the folder (no warning); to use the hub model, run from another directory or pass its "
        f"downloaded snapshot folder, huggingface_hub.snapshot_download({hub_id!r}, revision=...).")


def model_ref(model) -> str:
    """The string ``from_pretrained`` receives: the absolute path of a local folder (so that a loaded model
    is shared by the folder it came from, not by what the working directory made of a relative name), or
    the hub id."""
    model = os.fspath(model)
    return os.path.abspath(os.path.expanduser(model)) if is_local(model) else model


def model_file(model, filename: str, revision: str | None = None) -> str | None:
    """Local path of ``filename`` in the model folder or in the hub cache (None when absent).

    Never downloads when the hub is offline; with a connection, ``hf_hub_download`` fetches small files."""
    ref = model_ref(model)
    if is_local(model):
        path = os.path.join(ref, filename)
        return path if os.path.isfile(path) else None
    try:
        from huggingface_hub import hf_hub_download

        return hf_hub_download(ref, filename, revision=revision)
    except Exception:  # noqa: BLE001 - absent file, offline, unknown repo: all mean "not here"
        return None


def read_json(model, filename: str, revision: str | None = None) -> dict | None:
    path = model_file(model, filename, revision)
    if path is None:
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


_LONG_SEQUENCE = "sequence length is longer than the specified maximum"
_QUIET_LOCK = threading.RLock()


class _DropLongSequenceWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return _LONG_SEQUENCE not in record.getMessage()


@contextlib.contextmanager
def quiet():
    """Inside skfeaturize's own calls only: no "Loading weights" progress bars, and no "sequence length is
    longer than the specified maximum" warning (long texts are windowed on purpose, see ``long_text``).
    Both are restored on exit; nothing changes for the user's own transformers calls."""
    tf_logging = _transformers().utils.logging
    logger = logging.getLogger("transformers.tokenization_utils_base")
    drop = _DropLongSequenceWarning()
    with _QUIET_LOCK:
        bars = tf_logging.is_progress_bar_enabled()
        tf_logging.disable_progress_bar()
        logger.addFilter(drop)
        try:
            yield
        finally:
            logger.removeFilter(drop)
            if bars:
                tf_logging.enable_progress_bar()


def _transformers():
    from .._optional import import_optional

    return import_optional("transformers", "text")


def load_config(model, revision: str | None = None, trust_remote_code: bool = False):
    """The model's ``AutoConfig`` (no weights)."""
    AutoConfig = _transformers().AutoConfig  # noqa: N806

    try:
        return AutoConfig.from_pretrained(model_ref(model), revision=revision,
                                          trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:  # ValueError: huggingface_hub rejects a malformed repo id
        raise WeightsNotFoundError(
            f"model={os.fspath(model)!r}: no Hugging Face model config found ({e}). Give a local folder "
            "holding config.json, or a hub id that is in the local Hugging Face cache (or reachable online)."
        ) from e


def num_hidden_layers(config) -> int:
    for attr in ("num_hidden_layers", "n_layer", "num_layers", "n_layers"):
        value = getattr(config, attr, None)
        if isinstance(value, int):
            return value
    raise ValueError(f"Cannot tell how many layers {type(config).__name__} has.")


def hidden_size(config) -> int:
    for attr in ("hidden_size", "d_model", "n_embd", "dim"):
        value = getattr(config, attr, None)
        if isinstance(value, int):
            return value
    raise ValueError(f"Cannot tell the hidden size of {type(config).__name__}.")


def max_positions(config) -> int | None:
    """How many tokens the position embeddings hold (RoBERTa's offset of 2 removed)."""
    n = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    if not isinstance(n, int):
        return None
    if getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert", "longformer"):
        n -= 2
    return n


def has_safetensors(model, revision: str | None = None) -> bool:
    if is_local(model):
        ref = model_ref(model)
        return any(f.endswith(".safetensors") for f in os.listdir(ref))
    return (model_file(model, "model.safetensors", revision) is not None
            or model_file(model, "model.safetensors.index.json", revision) is not None)


def load_model(model, revision: str | None = None, trust_remote_code: bool = False):
    """``AutoModel`` in eval mode, safetensors when the model has them (never an unrestricted pickle)."""
    AutoModel = _transformers().AutoModel  # noqa: N806

    kwargs = {"revision": revision, "trust_remote_code": trust_remote_code}
    if has_safetensors(model, revision):
        kwargs["use_safetensors"] = True
    try:
        with quiet():
            net = AutoModel.from_pretrained(model_ref(model), **kwargs)
    except OSError as e:
        raise WeightsNotFoundError(
            f"model={os.fspath(model)!r}: weights could not be loaded ({e})."
        ) from e
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def load_tokenizer(model, revision: str | None = None, trust_remote_code: bool = False):
    AutoTokenizer = _transformers().AutoTokenizer  # noqa: N806

    try:
        with quiet():
            return AutoTokenizer.from_pretrained(model_ref(model), revision=revision,
                                                 trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:  # ValueError: huggingface_hub rejects a malformed repo id
        raise WeightsNotFoundError(f"model={os.fspath(model)!r}: no tokenizer found ({e}).") from e


def special_tokens(tokenizer) -> tuple[list[int], list[int]]:
    """The ids the tokenizer puts before and after one sequence (``[CLS]``/``[SEP]``, ``<s>``/``</s>``).

    Found by tokenizing a probe with and without special tokens, so it works for any tokenizer."""
    probe = "hello"
    bare = tokenizer(probe, add_special_tokens=False)["input_ids"]
    full = tokenizer(probe, add_special_tokens=True)["input_ids"]
    for start in range(len(full) - len(bare) + 1):
        if full[start:start + len(bare)] == bare:
            return list(full[:start]), list(full[start + len(bare):])
    return [], []


def forward_accepts(net, name: str) -> bool:
    import inspect

    try:
        return name in inspect.signature(net.forward).parameters
    except (TypeError, ValueError):
        return False


def _quantized(rt: Runtime) -> Runtime:
    """``rt`` with a dynamically int8-quantized copy of its encoder (and head)."""
    import copy
    import dataclasses

    import torch

    def quantize(module):
        # torch 2.14 deprecates its quantized tensor types on every call: a note for us, not the user
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"(?s).*(quantize_per_tensor|torch\.ao\.quantization)")
            return torch.ao.quantization.quantize_dynamic(copy.deepcopy(module), {torch.nn.Linear},
                                                          dtype=torch.qint8).eval()

    head = quantize(rt.head) if rt.head is not None else None
    return dataclasses.replace(rt, net=quantize(rt.net), head=head)


def cheap_identity(model, revision: str | None = None) -> dict | None:
    """What :func:`identity` depends on, read without hashing files or importing transformers: a local
    folder's listing (names, sizes, modification times), or a hub id's cached snapshot commit; None when
    it cannot be told (then a plan is resolved afresh)."""
    if is_local(model):
        root = model_ref(model)
        listing = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if name.endswith(IDENTITY_SUFFIXES) and not name.startswith("."):
                    st = os.stat(os.path.join(dirpath, name))
                    listing.append([os.path.relpath(os.path.join(dirpath, name), root), st.st_size,
                                    st.st_mtime_ns])
        return {"folder": os.path.abspath(root), "files": listing}
    commit = _cached_commit(model, revision)
    return None if commit is None else {"hub": model_ref(model), "commit": commit}


def _cached_commit(model, revision: str | None) -> str | None:
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(model_ref(model), "config.json", revision=revision)
    except Exception:  # noqa: BLE001 - no cache, malformed id: unknown
        return None
    if isinstance(cached, str):
        parts = os.path.normpath(cached).split(os.sep)
        if "snapshots" in parts:
            return parts[parts.index("snapshots") + 1]
    return None


def identity(model, revision: str | None = None) -> str:
    """What the weights are: for a local folder, a hash of its weight, config and tokenizer files'
    contents; for a hub id, the id and the commit hash of the cached snapshot (or the revision asked)."""
    from ..cache._keys import file_identity, fingerprint

    if is_local(model):
        root = model_ref(model)
        files = {}
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if name.endswith(IDENTITY_SUFFIXES) and not name.startswith("."):
                    full = os.path.join(dirpath, name)
                    files[os.path.relpath(full, root)] = file_identity(full)
        return "folder:" + fingerprint(files)
    return f"hub:{model_ref(model)}@{_cached_commit(model, revision) or revision or 'main'}"


# -- the text backend ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelInfo:
    """What a model's configuration files say (no weights)."""

    n_layers: int
    hidden: int
    max_positions: int | None
    model_max_length: int | None
    st: object  # sentence_transformers.STConfig or None


@dataclass
class Runtime:
    """A loaded encoder: the network, its tokenizer, a sentence-transformers head (or None), the special
    tokens around one sequence, and which optional inputs its forward takes."""

    net: object
    tokenizer: object
    head: object
    prefix: list
    suffix: list
    pass_positions: bool
    pass_token_types: bool


class TransformersBackend:
    """A Hugging Face encoder by hub id or folder, with its sentence-transformers configuration if any.

    The same small interface as the image backends: ``identity()``, ``info()`` (the layers: hidden states
    ``0 … L``), ``load(device)`` through the process-wide loader cache."""

    source = "transformers"

    def __init__(self, model, revision=None, trust_remote_code=False):
        self.model, self.revision, self.trust_remote_code = model, revision, bool(trust_remote_code)

    @property
    def label(self) -> str:
        return os.fspath(self.model)

    def _spec(self) -> dict:
        """What a loaded model is keyed by: its folder and that folder's content (a model saved again into
        it is another model), or its hub id and revision."""
        content = identity(self.model, self.revision) if is_local(self.model) else None
        return {"model": model_ref(self.model), "revision": self.revision, "remote": self.trust_remote_code,
                "content": content}

    def info(self) -> ModelInfo:
        from .._loader import load, loader_key

        return load(loader_key("text-info", **self._spec()), self._read_info)

    def _read_info(self) -> ModelInfo:
        from . import sentence_transformers as st_backend

        config = load_config(self.model, self.revision, self.trust_remote_code)
        mml = (read_json(self.model, "tokenizer_config.json", self.revision) or {}).get("model_max_length")
        return ModelInfo(n_layers=num_hidden_layers(config), hidden=hidden_size(config),
                         max_positions=max_positions(config),
                         model_max_length=int(mml) if isinstance(mml, (int, float)) and mml < 1e6 else None,
                         st=st_backend.read_config(self.model, self.revision))

    def identity(self) -> str:
        return identity(self.model, self.revision)

    def needs_st_head(self) -> bool:
        st = self.info().st
        return st is not None and st.own_pooling is None

    def load(self, device, int8: bool = False) -> Runtime:
        """The loaded encoder; ``int8``: with its Linear layers dynamically quantized (a copy, CPU)."""
        from .._loader import load, loader_key

        key = loader_key("text-weights", device=str(device), st_head=self.needs_st_head(), **self._spec())
        if not int8:
            return load(key, lambda: self._build(device))
        return load(loader_key("text-int8-weights", **dict(key[1])), lambda: _quantized(self.load(device)))

    def _build(self, device) -> Runtime:
        from . import sentence_transformers as st_backend

        if self.needs_st_head():
            net, tokenizer, head = st_backend.load_head(self.model, self.revision, self.trust_remote_code,
                                                        device)
        else:
            net = load_model(self.model, self.revision, self.trust_remote_code)
            tokenizer = load_tokenizer(self.model, self.revision, self.trust_remote_code)
            head = None
        net = net.to(device).eval()
        prefix, suffix = special_tokens(tokenizer)
        return Runtime(net=net, tokenizer=tokenizer, head=head, prefix=prefix, suffix=suffix,
                       pass_positions=forward_accepts(net, "position_ids"),
                       pass_token_types=forward_accepts(net, "token_type_ids"))
