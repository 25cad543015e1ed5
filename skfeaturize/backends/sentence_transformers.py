"""Adapter for sentence-transformers models: read their module configuration, and load their own pooling
head when skfeaturize cannot reproduce it.

A model is a sentence-transformers model when its folder (or hub repo) has ``modules.json``. Its first
module is a ``Transformer`` (the Hugging Face encoder, which skfeaturize runs itself); the rest is the
*head*: ``Pooling``, optionally ``Dense`` layers, ``Normalize``. The common head, one ``Pooling`` mode out
of ``mean``/``cls``/``max``/``lasttoken`` plus an optional ``Normalize``, maps exactly onto
:func:`skfeaturize.pooling.pool_sequence`; any other head (``Dense``, ``weightedmean``,
``mean_sqrt_len_tokens``, several modes at once) is run with sentence-transformers' own modules.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import transformers as hf

# sentence-transformers Pooling mode -> skfeaturize.pooling.pool_sequence name
_OUR_POOLING = {"mean": "mean", "cls": "cls", "max": "max", "lasttoken": "last"}
_LEGACY_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}


@dataclass
class STConfig:
    """What a sentence-transformers model's configuration files say."""

    module_types: list[str]
    pooling_modes: list[str] = field(default_factory=list)
    normalize: bool = False
    max_seq_length: int | None = None
    do_lower_case: bool = False
    head_width: int | None = None  # features out of the head (last Dense, else Pooling); None: unknown

    @property
    def own_pooling(self) -> str | None:
        """The equivalent ``pool_sequence`` name, or None when only ST's own head reproduces it."""
        kinds = [t.rsplit(".", 1)[-1] for t in self.module_types]
        if kinds[:1] != ["Transformer"] or any(k not in ("Transformer", "Pooling", "Normalize")
                                                for k in kinds):
            return None
        if kinds.count("Pooling") != 1 or len(self.pooling_modes) != 1:
            return None
        return _OUR_POOLING.get(self.pooling_modes[0])

    @property
    def fallback_pooling(self) -> str:
        """The closest ``pool_sequence`` name, for layers other than the last (where ST's head,
        e.g. ``Dense`` layers, does not apply)."""
        for mode in self.pooling_modes:
            if mode in _OUR_POOLING:
                return _OUR_POOLING[mode]
        return "mean"


def read_config(model, revision: str | None = None) -> STConfig | None:
    """Parse ``modules.json`` and the Pooling/Transformer configs; None for a plain transformers model."""
    modules = hf.read_json(model, "modules.json", revision)
    if not modules:
        return None
    modules = sorted(modules, key=lambda m: m.get("idx", 0))
    cfg = STConfig(module_types=[m.get("type", "") for m in modules])
    for m in modules:
        kind = m.get("type", "").rsplit(".", 1)[-1]
        path = m.get("path", "")
        if kind == "Pooling":
            pc = hf.read_json(model, f"{path}/config.json" if path else "config.json", revision) or {}
            modes = pc.get("pooling_mode")
            if modes is None:
                modes = [name for key, name in _LEGACY_KEYS.items() if pc.get(key)]
            cfg.pooling_modes = [modes] if isinstance(modes, str) else list(modes)
            dim = pc.get("word_embedding_dimension")
            cfg.head_width = int(dim) * len(cfg.pooling_modes) if isinstance(dim, int) else None
        elif kind == "Dense":
            dc = hf.read_json(model, f"{path}/config.json" if path else "config.json", revision) or {}
            out = dc.get("out_features")
            cfg.head_width = int(out) if isinstance(out, int) else None
        elif kind == "Normalize":
            cfg.normalize = True
        elif kind == "Transformer":
            sb = None
            for name in ("sentence_bert_config.json", "sentence_xlnet_config.json"):
                sb = hf.read_json(model, f"{path}/{name}" if path else name, revision)
                if sb is not None:
                    break
            sb = sb or {}
            cfg.max_seq_length = sb.get("max_seq_length")
            cfg.do_lower_case = bool(sb.get("do_lower_case", False))
    return cfg


def load_head(model, revision: str | None, trust_remote_code: bool, device):
    """Load the SentenceTransformer and return ``(encoder, tokenizer, head)``: its Hugging Face encoder,
    its tokenizer, and its modules after the Transformer as one ``nn.Sequential`` (``Normalize`` left
    out: skfeaturize applies ``normalize`` itself, after combining long-text windows)."""
    import torch

    from .._optional import import_optional

    SentenceTransformer = import_optional("sentence_transformers", "text").SentenceTransformer  # noqa: N806

    with hf.quiet():
        st = SentenceTransformer(hf.model_ref(model), device=str(device), revision=revision,
                                 trust_remote_code=trust_remote_code)
    st.eval()
    modules = list(st.children())
    encoder = modules[0].auto_model
    head = torch.nn.Sequential(*[m for m in modules[1:] if type(m).__name__ != "Normalize"]).eval()
    for p in st.parameters():
        p.requires_grad_(False)
    return encoder, st.tokenizer, head
