"""TextFeaturizer: Hugging Face encoders and sentence-transformers models as a scikit-learn transformer."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from numbers import Integral

import numpy as np
from sklearn.utils._param_validation import Interval, StrOptions

from ..base import BaseFeaturizer, _is_missing
from ..exceptions import InvalidSampleError, LayerNotFoundError
from ..pooling import SEQUENCE_POOLINGS
from ._windows import LONG_TEXT_MODES, combine, make_windows

TEXT_POOLINGS = ("auto",) + SEQUENCE_POOLINGS
ST_HEAD = "st"  # request pooling name: the sentence-transformers model's own head (Dense, ...)
POOLING_IMPL = "skfeaturize.pooling.pool_sequence/1"


@dataclass
class _ModelInfo:
    """What the configuration files say (read at fit; no weights)."""

    n_layers: int
    hidden: int
    max_positions: int | None
    st: object  # STConfig or None
    model_max_length: int | None


@dataclass
class _Runtime:
    net: object
    tokenizer: object
    head: object  # nn.Sequential of ST modules after the Transformer, or None
    prefix: list
    suffix: list
    pass_positions: bool
    pass_token_types: bool


class TextFeaturizer(BaseFeaturizer):
    """Features from a pretrained text encoder (BERT family, sentence-transformers), as a scikit-learn
    transformer.

    Parameters
    ----------
    model : str or path, default="sentence-transformers/all-MiniLM-L6-v2"
        A Hugging Face hub id (read from the local Hugging Face cache when offline) or a local folder.
        A model with ``modules.json`` is a sentence-transformers model: its Pooling and Normalize
        configuration define ``pooling="auto"`` and ``normalize=None``, and its ``max_seq_length`` the
        default ``max_length``.
    layer : int or list of int, default=-1
        Index into the hidden states: ``0`` is the embedding output, ``1 … L`` the transformer blocks,
        negatives count from the end (``-1`` is the last block). A list concatenates its layers in the
        order given. All layers come from one forward pass. ``list_layers()`` shows them.
    pooling : {"mean", "cls", "max", "last", "auto"}, default="mean"
        ``mean`` averages real tokens (padding never counts), ``cls`` takes the first token, ``max`` the
        element-wise max over real tokens, ``last`` the last real token (right or left padding).
        ``auto`` is the model's own pooling: a sentence-transformers model's Pooling mode (on the last
        layer its whole head, ``Dense`` layers included, when that is more than one plain mode), else
        ``mean``.
    max_length : int or None, default=None
        Tokens per window, special tokens included. ``None``: a sentence-transformers model's
        ``max_seq_length``, else the tokenizer's ``model_max_length`` capped by the position embeddings.
    long_text : {"head", "tail", "chunk"}, default="head"
        A text longer than ``max_length``: ``head`` keeps its first tokens (as sentence-transformers
        does), ``tail`` its last ones, ``chunk`` featurizes all of it in overlapping windows and combines
        the windows (token-weighted mean for ``mean``/``cls``, max for ``max``, the last window for
        ``last``; see ``docs/text.md``).
    stride : int or None, default=None
        ``chunk`` only: tokens shared by consecutive windows. ``None``: a quarter of a window.
    normalize : bool or None, default=False
        Scale each output block (each layer) to unit L2 norm. ``None``: the model's own choice (True when
        a sentence-transformers model ends with ``Normalize``).
    batch_size : int, default=32
    device : str, default="auto"
        ``"auto"``: cuda, then mps, then cpu.
    precision : {"auto", "fp32", "bf16", "fp16"}, default="auto"
        ``"auto"``: bf16 (or fp16) autocast on CUDA, fp32 elsewhere.
    missing : {"raise", "empty"}, default="raise"
        What ``None``/NaN samples do: raise an error naming the index, or be featurized as ``""``.
    revision : str or None, default=None
        Hub revision (branch, tag or commit) of a hub model.
    trust_remote_code : bool, default=False
        Allow a hub model to run its own Python code. Leave it off unless you trust the model's author.
    cache : None, str, path or EmbeddingCache, default=None
        Per-sample embedding cache; see the cache guide.
    cache_layers, cache_poolings : list or None, default=None
        On a cache miss, also compute and store these layers × poolings in the same forward pass.
    progress : bool, default=False
        Show a progress bar over batches.

    Attributes
    ----------
    layers_ : list of str
        The resolved hidden-state indices (``"0"`` … ``"L"``), in output order.
    pooling_ : str
        The resolved pooling (``"auto"`` replaced by the model's own; ``"st"`` for a sentence-transformers
        head run with its own modules).
    n_layers_ : int
        Number of transformer blocks ``L`` (hidden states ``0 … L``).
    max_length_ : int
    normalize_ : bool
    device_ : str
    precision_ : str
    model_name_ : str
    """

    _input_what = "texts"

    _parameter_constraints: dict = {
        "model": [str, os.PathLike],
        "layer": [Integral, list, tuple],
        "pooling": [StrOptions(set(TEXT_POOLINGS))],
        "max_length": [Interval(Integral, 1, None, closed="left"), None],
        "long_text": [StrOptions(set(LONG_TEXT_MODES))],
        "stride": [Interval(Integral, 0, None, closed="left"), None],
        "normalize": ["boolean", None],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "device": "no_validation",
        "precision": [StrOptions({"auto", "fp32", "bf16", "fp16"})],
        "missing": [StrOptions({"raise", "empty"})],
        "revision": [str, None],
        "trust_remote_code": ["boolean"],
        "cache": "no_validation",
        "cache_layers": [list, tuple, None],
        "cache_poolings": [list, tuple, None],
        "progress": ["boolean"],
    }

    def __init__(self, model="sentence-transformers/all-MiniLM-L6-v2", *, layer=-1, pooling="mean",
                 max_length=None, long_text="head", stride=None, normalize=False, batch_size=32,
                 device="auto", precision="auto", missing="raise", revision=None,
                 trust_remote_code=False, cache=None, cache_layers=None, cache_poolings=None,
                 progress=False):
        self.model = model
        self.layer = layer
        self.pooling = pooling
        self.max_length = max_length
        self.long_text = long_text
        self.stride = stride
        self.normalize = normalize
        self.batch_size = batch_size
        self.device = device
        self.precision = precision
        self.missing = missing
        self.revision = revision
        self.trust_remote_code = trust_remote_code
        self.cache = cache
        self.cache_layers = cache_layers
        self.cache_poolings = cache_poolings
        self.progress = progress

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True
        tags.input_tags.two_d_array = False
        return tags

    # -- model description (config files only) ------------------------------------------------------
    def _model_str(self) -> str:
        return os.fspath(self.model)

    def _info(self) -> _ModelInfo:
        key = (self._model_str(), self.revision, bool(self.trust_remote_code))
        memo = self.__dict__.get("_rt_info")
        if memo is not None and memo[0] == key:
            return memo[1]
        from ..backends import sentence_transformers as st_backend
        from ..backends import transformers as hf

        config = hf.load_config(self.model, self.revision, self.trust_remote_code)
        tok_cfg = hf.read_json(self.model, "tokenizer_config.json", self.revision) or {}
        mml = tok_cfg.get("model_max_length")
        info = _ModelInfo(
            n_layers=hf.num_hidden_layers(config), hidden=hf.hidden_size(config),
            max_positions=hf.max_positions(config), st=st_backend.read_config(self.model, self.revision),
            model_max_length=int(mml) if isinstance(mml, (int, float)) and mml < 1e6 else None,
        )
        self._rt_info = (key, info)
        return info

    def _default_max_length(self, info: _ModelInfo) -> int:
        if info.st is not None and info.st.max_seq_length:
            return int(info.st.max_seq_length)
        candidates = [n for n in (info.model_max_length, info.max_positions) if n]
        return min(candidates) if candidates else 512

    def _resolve_layer(self, layer, info: _ModelInfo) -> str:
        n_states = info.n_layers + 1
        raw = layer
        if isinstance(layer, str) and re.fullmatch(r"-?\d+", layer.strip()):
            layer = int(layer)
        if isinstance(layer, bool) or not isinstance(layer, Integral):
            raise LayerNotFoundError(
                f"layer={raw!r} is not a hidden-state index. {self._model_str()!r} has {n_states} hidden "
                f"states: 0 (embedding output) … {info.n_layers} (last block), or {-n_states} … -1 from "
                "the end. TextFeaturizer(model).list_layers() lists them.")
        idx = int(layer)
        if not -n_states <= idx < n_states:
            raise LayerNotFoundError(
                f"layer={raw!r} is out of range: {self._model_str()!r} has {n_states} hidden states, "
                f"0 (embedding output) … {info.n_layers} (last block), or {-n_states} … -1 from the end. "
                "TextFeaturizer(model).list_layers() lists them.")
        return str(idx % n_states)

    def _resolve_pooling(self, pooling: str, layer: str, info: _ModelInfo) -> str:
        if pooling not in TEXT_POOLINGS:
            raise ValueError(f"pooling={pooling!r} is not one of {list(TEXT_POOLINGS)}.")
        if pooling != "auto":
            return pooling
        if info.st is None:
            return "mean"
        if info.st.own_pooling is not None:
            return info.st.own_pooling
        return ST_HEAD if int(layer) == info.n_layers else info.st.fallback_pooling

    # -- fit -----------------------------------------------------------------------------------------
    def _fit_state(self, X, y) -> None:
        from .._torch import resolve_device, resolve_precision

        layers = self._layer_list()
        if not layers:
            raise ValueError("layer=[] selects nothing; give at least one layer.")
        info = self._info()
        max_length = self.max_length if self.max_length is not None else self._default_max_length(info)
        if info.max_positions is not None and max_length > info.max_positions:
            raise ValueError(
                f"max_length={max_length!r} exceeds the {info.max_positions} positions of "
                f"{self._model_str()!r}; use max_length <= {info.max_positions} and long_text='chunk' "
                "to featurize longer texts.")
        if max_length < 3:
            raise ValueError(f"max_length={max_length!r} leaves no room for text after the special "
                             "tokens; use at least 3.")
        content = max_length - 2  # conservative bound on the special tokens, checked again at compute
        if self.stride is not None and self.stride >= content:
            raise ValueError(f"stride={self.stride!r} must be smaller than the window's text tokens "
                             f"(max_length - special tokens = {content}).")
        device = resolve_device(self.device)
        self.device_ = str(device)
        self.precision_ = resolve_precision(self.precision, device)
        self.n_layers_ = info.n_layers
        self.layers_ = [self._resolve_layer(layer, info) for layer in layers]
        self.pooling_ = self._resolve_pooling(self.pooling, self.layers_[-1], info)
        self.max_length_ = int(max_length)
        self.normalize_ = bool(info.st is not None and info.st.normalize) if self.normalize is None \
            else bool(self.normalize)
        self.model_name_ = self._model_str()
        self.fitted_ = True

    def _requests(self) -> list:
        info = self._info()
        return [(layer, self._resolve_pooling(self.pooling, layer, info)) for layer in self.layers_]

    def _resolve_requests(self, layers, poolings) -> list:
        info = self._info()
        names = [self._resolve_layer(layer, info) for layer in layers]
        return [(n, self._resolve_pooling(p, n, info)) for n in names for p in poolings]

    def _feature_prefix(self) -> str:
        name = os.path.basename(os.path.normpath(self._model_str())) or "text"
        return re.sub(r"[^A-Za-z0-9._-]+", "_", name)

    def _fingerprint(self) -> dict:
        from ..backends import transformers as hf

        memo = self.__dict__.setdefault("_rt_fingerprints", {})
        key = (self._model_str(), self.revision, self.max_length_, self.long_text, self.stride,
               self.normalize_, self.precision_)
        if key not in memo:
            info = self._info()
            memo[key] = {
                "model": hf.identity(self.model, self.revision),
                "tokenizer": {"max_length": self.max_length_,
                              "do_lower_case": bool(info.st is not None and info.st.do_lower_case),
                              "padding": "positions-from-mask"},
                "long_text": self.long_text,
                "stride": self._stride(self.max_length_ - 2) if self.long_text == "chunk" else None,
                "normalize": self.normalize_,
                "precision": self.precision_,
                "pooling_impl": POOLING_IMPL,
                "st_head": None if info.st is None or info.st.own_pooling is not None
                else "sentence-transformers:" + "+".join(info.st.module_types),
            }
        return memo[key]

    def _stride(self, content: int) -> int:
        return content // 4 if self.stride is None else int(self.stride)

    # -- input ---------------------------------------------------------------------------------------
    def _check_sample(self, index, sample):
        if _is_missing(sample):
            if self.missing == "empty":
                return ""
            raise InvalidSampleError(
                f"Sample {index} is missing ({sample!r}). Drop or fill missing texts, or pass "
                "missing='empty' to featurize them as the empty text.", index=index)
        if isinstance(sample, (bytes, bytearray)):
            raise InvalidSampleError(
                f"Sample {index} is raw bytes, not text. Decode it first, e.g. "
                "b.decode('utf-8', errors='replace').", index=index)
        if not isinstance(sample, str):
            raise InvalidSampleError(
                f"Sample {index} is a {type(sample).__name__} ({sample!r:.50}), not a str. Convert the "
                "texts to str first.", index=index)
        try:
            sample.encode("utf-8")
        except UnicodeEncodeError as e:
            raise InvalidSampleError(
                f"Sample {index} is malformed Unicode ({e.reason} at position {e.start}); clean it, e.g. "
                "s.encode('utf-8', errors='replace').decode('utf-8').", index=index) from e
        return str(sample)

    def _sample_key(self, index, sample) -> str:
        from ..cache._keys import hash_text

        return hash_text(sample)

    # -- loading -------------------------------------------------------------------------------------
    def _load(self) -> _Runtime:
        """The encoder and tokenizer (process-wide registry: clones share one copy of the weights)."""
        from .._torch import cached_load, resolve_device

        device = resolve_device(self.device)
        info = self._info()
        st_head = info.st is not None and info.st.own_pooling is None
        key = ("text", self._model_str(), self.revision, bool(self.trust_remote_code), st_head, str(device))
        return cached_load(key, lambda: self._build(device, st_head))

    def _build(self, device, st_head: bool) -> _Runtime:
        from ..backends import sentence_transformers as st_backend
        from ..backends import transformers as hf

        if st_head:
            net, tokenizer, head = st_backend.load_head(self.model, self.revision, self.trust_remote_code,
                                                        device)
        else:
            net = hf.load_model(self.model, self.revision, self.trust_remote_code)
            tokenizer = hf.load_tokenizer(self.model, self.revision, self.trust_remote_code)
            head = None
        net = net.to(device).eval()
        prefix, suffix = hf.special_tokens(tokenizer)
        return _Runtime(net=net, tokenizer=tokenizer, head=head, prefix=prefix, suffix=suffix,
                        pass_positions=hf.forward_accepts(net, "position_ids"),
                        pass_token_types=hf.forward_accepts(net, "token_type_ids"))

    # -- compute -------------------------------------------------------------------------------------
    def _windows(self, rt: _Runtime, texts: list[str]):
        """Token-id windows (special tokens added) and, per window, the text it belongs to."""
        info = self._info()
        if info.st is not None and info.st.do_lower_case:
            texts = [t.lower() for t in texts]
        special = len(rt.prefix) + len(rt.suffix)
        content = self.max_length_ - special
        if content < 1:
            raise ValueError(f"max_length={self.max_length_!r} leaves no room for text after the "
                             f"{special} special tokens.")
        stride = self._stride(content)
        if self.long_text == "chunk" and stride >= content:
            raise ValueError(f"stride={self.stride!r} must be smaller than the window's text tokens "
                             f"({content}).")
        ids = rt.tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"] if texts else []
        windows, owner = [], []
        for t, seq in enumerate(ids):
            for w in make_windows(list(seq), self.long_text, content, stride):
                windows.append(rt.prefix + w + rt.suffix)
                owner.append(t)
        return windows, np.asarray(owner, dtype=np.int64)

    def _compute(self, samples, requests, indices) -> dict:
        import torch

        from .._torch import OOMBackoff, autocast
        from ..pooling import pool_sequence

        rt = self._load()
        device = next(rt.net.parameters()).device
        windows, owner = self._windows(rt, list(samples))
        lengths = np.fromiter((len(w) for w in windows), dtype=np.int64, count=len(windows))
        order = np.argsort(-lengths, kind="stable")  # longest first: little padding per batch
        layers = sorted({int(layer) for layer, _ in requests})
        all_states = layers != [self.n_layers_]
        pad_id = rt.tokenizer.pad_token_id if rt.tokenizer.pad_token_id is not None else 0
        left = getattr(rt.tokenizer, "padding_side", "right") == "left"
        per_window = {r: [None] * len(windows) for r in requests}

        def run(a: int, b: int) -> None:
            idx = order[a:b]
            width = int(lengths[idx].max())
            input_ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for row, w in enumerate(idx):
                seq = windows[w]
                sl = slice(width - len(seq), width) if left else slice(0, len(seq))
                input_ids[row, sl] = torch.as_tensor(seq, dtype=torch.long)
                mask[row, sl] = 1
            input_ids, mask = input_ids.to(device), mask.to(device)
            kwargs = {"input_ids": input_ids, "attention_mask": mask}
            if rt.pass_token_types:
                kwargs["token_type_ids"] = torch.zeros_like(input_ids)
            if left and rt.pass_positions:  # positions count real tokens only: left padding is invisible
                kwargs["position_ids"] = (mask.cumsum(1) - 1).clamp(min=0)
            with autocast(device, self.precision_):
                out = rt.net(**kwargs, output_hidden_states=all_states, return_dict=True)
                states = out.hidden_states if all_states else None
                pooled = {}
                for layer, pooling in requests:
                    hidden = states[int(layer)] if states is not None else out.last_hidden_state
                    if pooling == ST_HEAD:
                        feats = {"input_ids": input_ids, "attention_mask": mask,
                                 "token_embeddings": hidden}
                        vec = rt.head(feats)["sentence_embedding"]
                    else:
                        vec = pool_sequence(hidden.float(), mask, pooling)
                    pooled[(layer, pooling)] = vec.float().cpu().numpy()
            for r, block in pooled.items():
                for row, w in enumerate(idx):
                    per_window[r][w] = block[row]

        if windows:
            batches = OOMBackoff(self.batch_size, device)
            wrapped = run
            bar = None
            if self.progress:
                from tqdm.auto import tqdm

                bar = tqdm(total=len(windows), unit="window", desc=self._feature_prefix())

                def wrapped(a, b):
                    run(a, b)
                    bar.update(b - a)

            was_training = rt.net.training
            rt.net.eval()
            try:
                with torch.inference_mode():
                    batches.run(len(windows), wrapped,
                                indices=[indices[owner[w]] for w in order])
            finally:
                rt.net.train(was_training)
                if bar is not None:
                    bar.close()
        return {r: self._assemble(np.stack(per_window[r]) if windows else None, lengths, owner,
                                  len(samples), r[1]) for r in requests}

    def _assemble(self, vectors, lengths, owner, n: int, pooling: str) -> np.ndarray:
        """One row per text: its windows combined (see ``_windows.py``), then normalised if asked."""
        if vectors is None:
            return np.zeros((0, 0), np.float32)
        if len(owner) == n:  # one window per text (head/tail, or chunk with short texts)
            out = vectors.astype(np.float32, copy=True)
        else:
            bounds = np.searchsorted(owner, np.arange(n + 1))
            out = np.stack([combine(vectors[bounds[t]:bounds[t + 1]], lengths[bounds[t]:bounds[t + 1]],
                                    pooling) for t in range(n)]).astype(np.float32)
        if self.normalize_:
            norms = np.linalg.norm(out, axis=1, keepdims=True)
            out = out / np.maximum(norms, 1e-12)
        return np.ascontiguousarray(out, dtype=np.float32)

    def _probe_widths(self, requests) -> dict:
        info = self._info()
        widths = {}
        unknown = []
        for r in requests:
            if r[1] == ST_HEAD:
                unknown.append(r)
            else:
                widths[r] = info.hidden
        if unknown:
            computed = self._compute(["hello"], unknown, [0])
            widths.update({r: v.shape[1] for r, v in computed.items()})
        return widths

    # -- discovery -----------------------------------------------------------------------------------
    def list_layers(self):
        """Every hidden state an int ``layer`` selects, as a pandas DataFrame with columns ``name``
        (the layer name used in feature names), ``index`` (the int that selects it; ``index - (L+1)``
        selects it from the end), ``shape`` (per text: tokens × hidden size) and ``kind``. Read from the
        model's config: no weights are loaded."""
        import pandas as pd

        info = self._info()
        rows = []
        for i in range(info.n_layers + 1):
            kind = "embeddings" if i == 0 else "block"
            rows.append({"name": str(i), "index": i, "shape": ("tokens", info.hidden), "kind": kind})
        return pd.DataFrame(rows, columns=["name", "index", "shape", "kind"])
